//! What crosses into the `managed` registry (managed CLI agents and the code sandbox): the
//! operations the table of calls builds ([`ManagedOp`]), the call that carries them
//! ([`ManagedCall`], sent by `RoomsHandle::call`) and their settings; their errors are in
//! `managed_error.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::room::RoomError;
use crate::breaker::BreakerConfig;
use crate::delivery::Notify;

/// The default command template: Claude Code's print mode with a JSON answer.
pub const DEFAULT_TEMPLATE: &[&str] = &["claude", "-p", "{prompt}", "--output-format", "json"];

/// The placeholder replaced by the prompt, as one argv element.
pub const PROMPT: &str = "{prompt}";

/// Settings of the managed agents.
#[derive(Debug, Clone)]
pub struct ManagedConfig {
    /// Template name → argv (`{prompt}` is replaced by the prompt, as one argument).
    pub templates: BTreeMap<String, Vec<String>>,
    /// The template `agent.spawn` uses without `template`.
    pub default_template: String,
    /// A prompt's default timeout.
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL after a timeout.
    pub grace: Duration,
    /// Further attempts after a crash (non-zero exit), with exponential backoff from `backoff`.
    pub retries: u32,
    pub backoff: Duration,
    /// Failed attempts in a row that open an agent's circuit, and its cool-down.
    pub breaker: BreakerConfig,
    /// Most stdout (and stderr) bytes kept per prompt.
    pub max_output_bytes: usize,
    /// Most managed agents at once.
    pub max_agents: usize,
}

impl Default for ManagedConfig {
    fn default() -> Self {
        ManagedConfig {
            templates: BTreeMap::from([("claude".to_owned(), DEFAULT_TEMPLATE.iter().map(|s| (*s).to_owned()).collect())]),
            default_template: "claude".into(),
            timeout: Duration::from_secs(600),
            grace: Duration::from_secs(2),
            retries: 2,
            backoff: Duration::from_millis(200),
            breaker: BreakerConfig { threshold: 3, cooldown: Duration::from_secs(30) },
            max_output_bytes: 1 << 20,
            max_agents: 64,
        }
    }
}

/// Settings of the code sandbox (`code.run`).
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Off unless enabled: `code.run` answers `disabled`.
    pub enabled: bool,
    /// The broker's own binary: runs `sandbox-exec`, which limits itself and execs the interpreter.
    pub helper: PathBuf,
    /// PATH inside the sandbox (the only variable besides HOME and TMPDIR).
    pub path: String,
    /// Wall-clock default and maximum.
    pub timeout: Duration,
    pub max_timeout: Duration,
    pub cpu_s: u64,
    /// RLIMIT_DATA (heap and private mappings), bytes.
    pub memory_bytes: u64,
    /// RLIMIT_NPROC (processes of the sandbox's user).
    pub nproc: u64,
    /// RLIMIT_FSIZE, bytes.
    pub file_bytes: u64,
    /// RLIMIT_NOFILE.
    pub nofile: u64,
    /// Most stdout (and stderr) bytes kept per run.
    pub max_output_bytes: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enabled: false,
            helper: PathBuf::from("agent-bridge"),
            path: "/usr/local/bin:/usr/bin:/bin".into(),
            timeout: Duration::from_secs(10),
            max_timeout: Duration::from_secs(60),
            cpu_s: 10,
            memory_bytes: 512 << 20,
            nproc: 64,
            file_bytes: 16 << 20,
            nofile: 64,
            max_output_bytes: 64 << 10,
        }
    }
}

/// `code.run`'s languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    Python,
    Javascript,
    Bash,
}

impl Language {
    /// The interpreter and the file the code is written to.
    pub fn interpreter(self) -> (&'static str, &'static str) {
        match self {
            Language::Python => ("python3", "main.py"),
            Language::Javascript => ("node", "main.js"),
            Language::Bash => ("bash", "main.sh"),
        }
    }
}

/// One `code.run`.
#[derive(Debug, Clone)]
pub struct CodeRun {
    pub language: Language,
    pub code: String,
    pub stdin: Option<String>,
    pub timeout: Option<Duration>,
}

/// What a managed-agent or sandbox call does.
#[derive(Debug)]
pub enum ManagedOp {
    /// `agent.spawn`.
    Spawn { name: String, template: Option<String>, cwd: Option<PathBuf>, env: BTreeMap<String, String>, timeout: Option<Duration> },
    /// `agent.execute`; `progress`: the calling session, told each stdout line as a
    /// `command_progress` event.
    Execute { name: String, prompt: String, progress: Option<Recipient<Notify>> },
    /// `agent.stop`.
    Stop { name: String },
    /// `agent.managed`.
    List,
    /// `code.run`.
    Code(CodeRun),
}

/// A managed-agent or sandbox call by `caller`. Sent by `RoomsHandle::call` to the registry.
#[derive(Message)]
#[rtype(result = "Result<Value, RoomError>")]
pub struct ManagedCall {
    pub caller: String,
    pub op: ManagedOp,
}
