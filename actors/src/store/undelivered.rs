//! What becomes of messages that are not simply delivered: delivery attempts (`acks` tree,
//! `<client>\0<seq BE>` → `u32` BE), dead letters (`dead` tree, message id → [`DeadLetter`]) and
//! expired messages archived in the store (`archive` tree, message id → `Message`).

use agent_bridge_protocol::Message;
use serde::{Deserialize, Serialize};

use super::format::{decode, encode, Stored};
use super::legacy::{upgrade_from, DeadLetterV1};
use super::keys::ack_key;
use super::db::{Store, StoreError};

/// A message that exhausted its delivery attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub message: Message,
    pub recipient: String,
    pub attempts: u32,
    pub reason: String,
    pub at_ms: i64,
}

impl Stored for DeadLetter {
    const WHAT: &'static str = "dead letter";
    /// 2: its message gained `thread_id`.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, StoreError> {
        upgrade_from::<DeadLetterV1, _>(Self::WHAT, version, &[0, 1], body)
    }
}

impl From<DeadLetterV1> for DeadLetter {
    fn from(d: DeadLetterV1) -> Self {
        DeadLetter { message: d.message.into(), recipient: d.recipient, attempts: d.attempts, reason: d.reason, at_ms: d.at_ms }
    }
}

impl Store {
    /// Delivery attempts recorded for an inbox message.
    pub fn attempts(&self, client: &str, seq: u64) -> Result<u32, StoreError> {
        Ok(match self.acks.get(ack_key(client, seq))? {
            Some(v) => u32::from_be_bytes(v.as_ref().try_into().map_err(|_| StoreError::Corrupt("attempts".into()))?),
            None => 0,
        })
    }

    /// Records delivery attempts.
    pub fn set_attempts(&self, client: &str, seq: u64, attempts: u32) -> Result<(), StoreError> {
        self.acks.insert(ack_key(client, seq), &attempts.to_be_bytes())?;
        Ok(())
    }

    /// Forgets delivery attempts.
    pub fn clear_attempts(&self, client: &str, seq: u64) -> Result<(), StoreError> {
        self.acks.remove(ack_key(client, seq))?;
        Ok(())
    }

    /// Stores a dead letter.
    pub fn put_dead(&self, dead: &DeadLetter) -> Result<(), StoreError> {
        self.dead.insert(dead.message.id.as_bytes(), encode(dead)?)?;
        Ok(())
    }

    /// Up to `limit` dead letters.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead.iter().take(limit).map(|item| decode(&item?.1)).collect()
    }

    /// The dead letter of message `id`.
    pub fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        self.dead.get(id.as_bytes())?.map(|v| decode(&v)).transpose()
    }

    /// Forgets the dead letter of message `id` (it was redelivered).
    pub fn remove_dead(&self, id: &str) -> Result<(), StoreError> {
        self.dead.remove(id.as_bytes())?;
        Ok(())
    }

    /// Number of dead letters kept.
    pub fn dead_letter_count(&self) -> usize {
        self.dead.len()
    }

    /// Archives an expired message in the store.
    pub fn archive(&self, msg: &Message) -> Result<(), StoreError> {
        self.archive.insert(msg.id.as_bytes(), encode(msg)?)?;
        Ok(())
    }

    /// Number of archived messages.
    pub fn archived(&self) -> usize {
        self.archive.len()
    }
}
