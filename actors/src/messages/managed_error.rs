//! [`ManagedError`]: the errors of managed agents and the sandbox (a leaf, so that `RoomError`
//! can carry it).

use thiserror::Error;

/// The errors of managed agents and the sandbox, each with a stable code.
#[derive(Debug, Error)]
pub enum ManagedError {
    #[error("the code sandbox is disabled (start the broker with --sandbox)")]
    Disabled,
    #[error("no command template named {0:?}")]
    UnknownTemplate(String),
    #[error("no managed agent named {0:?}")]
    UnknownAgent(String),
    #[error("timed out after {0} s; the process group was killed")]
    Timeout(f64),
    #[error("managed agent {0:?} was stopped while running this prompt")]
    Stopped(String),
    #[error("the circuit of {0:?} is open after repeated failures; try again later")]
    CircuitOpen(String),
    #[error("the agent failed: {0}")]
    Failed(String),
    #[error("could not start the process: {0}")]
    Spawn(String),
}

impl ManagedError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ManagedError::Disabled => "disabled",
            ManagedError::UnknownTemplate(_) | ManagedError::UnknownAgent(_) => "not_found",
            ManagedError::Timeout(_) => "timeout",
            ManagedError::CircuitOpen(_) => "circuit_open",
            ManagedError::Stopped(_) => "stopped",
            ManagedError::Failed(_) => "agent_failed",
            ManagedError::Spawn(_) => "spawn_failed",
        }
    }
}
