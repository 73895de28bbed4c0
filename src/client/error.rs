//! The one error type of the client library.
//!
//! Broker-side failures keep the broker's machine-readable `code` ([`ClientError::code`]), so a
//! caller can tell "this server has no rooms yet" (`unknown_method`, `not_supported`) from a real
//! failure without parsing text.

use std::time::Duration;

use thiserror::Error;

/// Why a client operation failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The broker URL cannot be used.
    #[error("invalid broker URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The client id, room name or message type breaks the protocol's rules.
    #[error(transparent)]
    Invalid(#[from] agent_bridge_protocol::ProtocolError),
    /// The TCP or WebSocket connection could not be opened.
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The broker answered the upgrade request with an HTTP error (for example 401 without a token).
    #[error("the broker at {url} refused the connection with HTTP {status}: {body}")]
    Rejected { url: String, status: u16, body: String },
    /// The connection dropped while waiting for an answer; the operation may or may not have happened.
    #[error("the connection to the broker was lost before it answered")]
    Disconnected,
    /// No answer within the allowed time.
    #[error("timed out after {:.1} s waiting for {waiting_for}", after.as_secs_f64())]
    Timeout { after: Duration, waiting_for: String },
    /// The broker answered with an error (an `error` frame, or a `result` with `ok: false`).
    #[error("the broker answered {code}: {message}")]
    Server { code: String, message: String },
    /// The client was closed (or every handle dropped).
    #[error("the client is closed")]
    Closed,
    /// The broker sent something this client cannot decode.
    #[error("unexpected answer from the broker: {0}")]
    Protocol(String),
    /// An HTTP request (`/api/status`) failed.
    #[error("HTTP request to {url} failed: {reason}")]
    Http { url: String, reason: String },
}

impl ClientError {
    /// The broker's machine-readable code, for [`ClientError::Server`].
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when the broker does not offer the operation (yet): `unknown_method` or `not_supported`.
    pub fn is_unsupported(&self) -> bool {
        matches!(self.code(), Some("unknown_method" | "not_supported"))
    }

    /// True for failures that waiting and retrying can fix (the connection, a timeout, back-pressure).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Disconnected | ClientError::Timeout { .. } => true,
            ClientError::Server { code, .. } => matches!(code.as_str(), "rate_limited" | "unavailable" | "internal"),
            _ => false,
        }
    }

    pub(crate) fn timeout(after: Duration, waiting_for: impl Into<String>) -> Self {
        ClientError::Timeout { after, waiting_for: waiting_for.into() }
    }

    pub(crate) fn server(code: impl Into<String>, message: impl Into<String>) -> Self {
        ClientError::Server { code: code.into(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_is_recognised_by_code() {
        assert!(ClientError::server("unknown_method", "unknown method \"room.create\"").is_unsupported());
        assert!(ClientError::server("not_supported", "no rooms").is_unsupported());
        assert!(!ClientError::server("forbidden", "no").is_unsupported());
        assert!(!ClientError::Disconnected.is_unsupported());
        assert!(ClientError::Disconnected.is_transient());
        assert!(!ClientError::server("forbidden", "no").is_transient());
    }

    #[test]
    fn timeout_text_names_what_was_awaited() {
        let e = ClientError::timeout(Duration::from_millis(1500), "a reply");
        assert_eq!(e.to_string(), "timed out after 1.5 s waiting for a reply");
    }
}
