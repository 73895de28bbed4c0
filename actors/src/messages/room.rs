//! The errors of rooms and of the registry, answered to clients with a stable code.

use actix::MailboxError;
use thiserror::Error;

use super::desktop::DesktopError;
use super::github::GitHubError;
use super::managed_error::ManagedError;
use crate::store::StoreError;
use crate::supervisor::{Failure, Refusal};

/// Errors of room operations; each has a stable client-facing code.
#[derive(Debug, Error)]
pub enum RoomError {
    #[error("no room named {0:?}")]
    UnknownRoom(String),
    #[error("{client:?} is not a member of room {room:?}")]
    NotMember { room: String, client: String },
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("proposal {0} is closed")]
    ProposalClosed(String),
    #[error("file of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("bad column {0:?}: use todo, in_progress, review or done")]
    BadColumn(String),
    #[error("invalid params: {0}")]
    InvalidParams(String),
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotSupported(String),
    /// A bound on what the broker holds for clients (agents, tasks).
    #[error("{0}")]
    Limit(String),
    /// `task.assign` to a pool with no healthy member.
    #[error("pool {0:?} has no healthy member")]
    PoolEmpty(String),
    /// `room.create` beyond `max_rooms_per_client`.
    #[error("{client:?} has created {limit} rooms, the most one client id may create")]
    QuotaExceeded { client: String, limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the change could not be made durable (store flush failed)")]
    NotDurable,
    #[error("the room failed while handling this request ({0}); it has been restarted, try again")]
    Internal(String),
    #[error("the room is down after repeated failures")]
    Unavailable,
    /// `desktop.prompt`: the controller's own error and code.
    #[error(transparent)]
    Desktop(#[from] DesktopError),
    /// `github.issue`: the GitHub integration's error and code.
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    /// Managed agents and `code.run`: their own error and code.
    #[error(transparent)]
    Managed(#[from] ManagedError),
    #[error("room mailbox: {0}")]
    Mailbox(#[from] MailboxError),
}

impl RoomError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RoomError::UnknownRoom(_) => "unknown_room",
            RoomError::NotMember { .. } => "not_member",
            RoomError::AlreadyExists(_) => "already_exists",
            RoomError::ProposalClosed(_) => "proposal_closed",
            RoomError::TooLarge { .. } => "too_large",
            RoomError::BadColumn(_) => "bad_column",
            RoomError::InvalidParams(_) => "invalid_params",
            RoomError::UnknownMethod(_) => "unknown_method",
            RoomError::Forbidden(_) => "forbidden",
            RoomError::NotFound(_) => "not_found",
            RoomError::NotSupported(_) => "not_supported",
            RoomError::PoolEmpty(_) => "pool_empty",
            RoomError::Limit(_) => "quota_exceeded",
            RoomError::QuotaExceeded { .. } => "quota_exceeded",
            RoomError::Store(e) if e.is_unavailable() => "unavailable",
            RoomError::NotDurable => "unavailable",
            RoomError::Store(_) => "storage_error",
            RoomError::Internal(_) => "internal",
            RoomError::Unavailable | RoomError::Mailbox(_) => "unavailable",
            RoomError::Desktop(e) => e.code(),
            RoomError::GitHub(e) => e.code(),
            RoomError::Managed(e) => e.code(),
        }
    }
}

impl Refusal for RoomError {
    fn internal(failure: &Failure) -> Self {
        RoomError::Internal(failure.reason.clone())
    }
    fn unavailable() -> Self {
        RoomError::Unavailable
    }
}
