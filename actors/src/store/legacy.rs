//! Old layouts of stored types, kept to read what earlier releases wrote ([`super::Stored::upgrade`]).
//!
//! bincode is positional: a struct here must keep exactly the fields, order and types its release
//! wrote, and is never changed again. Each layout names the versions that used it.

use agent_bridge_protocol::{Message, Payload, Priority, Timestamp};
use serde::{Deserialize, Serialize};

use super::format::decode_body;
use super::db::StoreError;

/// `Message` at format versions 0 and 1 (releases up to the threads extension): no `thread_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageV1 {
    pub id: String,
    pub seq: u64,
    pub from: String,
    pub to: Option<String>,
    pub room: Option<String>,
    pub msg_type: String,
    pub payload: Payload,
    pub timestamp: Timestamp,
    pub priority: Priority,
    pub requires_ack: bool,
    pub correlation_id: Option<String>,
    pub expires_at: Option<Timestamp>,
}

impl From<MessageV1> for Message {
    fn from(m: MessageV1) -> Self {
        Message {
            id: m.id,
            seq: m.seq,
            from: m.from,
            to: m.to,
            room: m.room,
            msg_type: m.msg_type,
            payload: m.payload,
            timestamp: m.timestamp,
            priority: m.priority,
            requires_ack: m.requires_ack,
            correlation_id: m.correlation_id,
            expires_at: m.expires_at,
            thread_id: None,
        }
    }
}

/// `DeadLetter` at format versions 0 and 1: it held a [`MessageV1`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterV1 {
    pub message: MessageV1,
    pub recipient: String,
    pub attempts: u32,
    pub reason: String,
    pub at_ms: i64,
}

/// Reads `body` as the old layout `Old` when `version` is one that used it, and converts it.
pub(super) fn upgrade_from<Old, New>(what: &str, version: u8, old_versions: &[u8], body: &[u8]) -> Result<New, StoreError>
where
    Old: serde::de::DeserializeOwned + Into<New>,
{
    if old_versions.contains(&version) {
        decode_body::<Old>(body).map(Into::into)
    } else {
        Err(StoreError::Corrupt(format!("a stored {what} has format version {version}, which this build cannot upgrade")))
    }
}

/// Today's message in the old layout: what an earlier release would have written (for tests).
#[cfg(test)]
pub(crate) fn message_v1(m: &Message) -> MessageV1 {
    MessageV1 {
        id: m.id.clone(),
        seq: m.seq,
        from: m.from.clone(),
        to: m.to.clone(),
        room: m.room.clone(),
        msg_type: m.msg_type.clone(),
        payload: m.payload.clone(),
        timestamp: m.timestamp,
        priority: m.priority,
        requires_ack: m.requires_ack,
        correlation_id: m.correlation_id.clone(),
        expires_at: m.expires_at,
    }
}
