//! The one error type of the protocol crate.
//!
//! Every variant maps to a stable, machine-readable `code` that reaches clients in `error` frames and
//! HTTP error bodies; the human text may change between versions, the codes may not.

use thiserror::Error;

/// Why a frame or request could not be decoded or validated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// The bytes are not JSON (or not valid bincode).
    #[error("malformed frame: {detail}")]
    Malformed { detail: String },
    /// Valid JSON, but not an object with a string `type`.
    #[error("frame is not an object with a string \"type\" field")]
    NotAFrame,
    /// A `type` this server does not know.
    #[error("unknown frame type {frame_type:?}")]
    UnknownType { frame_type: String },
    /// A required field is absent.
    #[error("missing field {field:?} in {frame_type:?} frame")]
    MissingField { frame_type: String, field: String },
    /// A field has the wrong JSON type or an out-of-range value.
    #[error("invalid {frame_type:?} frame: {detail}")]
    InvalidField { frame_type: String, detail: String },
    /// The frame exceeds the configured size limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// A client id that does not match the id pattern.
    #[error("invalid client id {id:?}: {reason}")]
    InvalidClientId { id: String, reason: &'static str },
    /// A recipient that is neither a client id, `all`, nor `pool:<name>`.
    #[error("invalid recipient {to:?}: {reason}")]
    InvalidRecipient { to: String, reason: &'static str },
    /// A frame type of the original bridge that this protocol replaced; `instead` says what to send.
    #[error("{frame_type:?} frames are not supported: {instead}")]
    Superseded { frame_type: String, instead: String },
    /// A value (message type, room name, ttl ...) outside what the protocol allows.
    #[error("invalid {field}: {reason}")]
    InvalidValue { field: &'static str, reason: String },
}

impl ProtocolError {
    /// The stable machine-readable code sent to clients.
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::Malformed { .. }
            | ProtocolError::NotAFrame
            | ProtocolError::MissingField { .. }
            | ProtocolError::InvalidField { .. }
            | ProtocolError::InvalidValue { .. } => "bad_frame",
            ProtocolError::UnknownType { .. } => "unknown_type",
            ProtocolError::Superseded { .. } => "not_supported",
            ProtocolError::TooLarge { .. } => "too_large",
            ProtocolError::InvalidClientId { .. } => "invalid_client_id",
            ProtocolError::InvalidRecipient { .. } => "invalid_recipient",
        }
    }
}
