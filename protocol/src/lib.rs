//! The agent-bridge wire protocol, version 1: a pure codec with no I/O.
//!
//! - [`Message`]: the routed unit (PROTOCOL.md section 1).
//! - [`ClientFrame`] / [`ServerFrame`]: WebSocket frames, discriminated by `"type"` (section 2):
//!   client `send`, `ack`, `nack`, `ping`, `pong`, `subscribe`, `join`, `leave`, `call`, and (extension) `send_batch`;
//!   server `connection_confirmed`, `message`, `sent`, `receipt`, `result`, `event`, `ping`, `pong`, `error`,
//!   and (extensions) `dropped` and `sent_batch`.
//! - [`batch`]: the entries and per-message results of batch sends (WebSocket and HTTP).
//! - [`http`]: the HTTP bodies (section 3).
//! - [`ProtocolError`]: every decoding and validation failure, each with a stable [`ProtocolError::code`].
//!
//! JSON is the default encoding; bincode (standard config, serde) is the compact one, used by the
//! store and by sessions opened with `?encoding=bincode`.

pub mod batch;
mod error;
pub mod frames;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod ids;
mod message;

pub use error::ProtocolError;
pub use frames::{ClientFrame, ServerFrame};
pub use message::{Message, Payload, Priority, Timestamp};

/// Protocol version spoken by this crate.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default frame size limit (PROTOCOL.md: 1 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Encodes any serde value with the protocol's bincode configuration (used by the store).
pub fn encode_bincode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ProtocolError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| ProtocolError::Malformed { detail: e.to_string() })
}

/// Decodes a value written by [`encode_bincode`].
pub fn decode_bincode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| ProtocolError::Malformed { detail: e.to_string() })
}
