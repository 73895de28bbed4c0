//! Idempotency records (`k:<from>\0<to>\0<key>` in the `streams` tree): written with the message
//! they name (through a [`super::Batch`]), looked up on a repeated send, swept when old.

use serde::{Deserialize, Serialize};

use super::format::{decode, Stored};
use super::keys::{idempotency_key, IDEMPOTENCY};
use super::kv::KvBatch;
use super::db::{Store, StoreError};

/// What an idempotency key maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub message_id: String,
    pub seq: Option<u64>,
    pub at_ms: i64,
}

impl Stored for IdempotencyRecord {
    const WHAT: &'static str = "idempotency record";
}

impl Store {
    /// Looks up an idempotency key.
    pub fn idempotency(&self, from: &str, to: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        match self.streams.get(idempotency_key(from, to, key))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Deletes idempotency records older than `before_ms`, at most `limit`; returns how many.
    pub fn sweep_idempotency(&self, before_ms: i64, limit: usize) -> Result<usize, StoreError> {
        let mut batch = KvBatch::default();
        let mut n = 0;
        for item in self.streams.scan_prefix(IDEMPOTENCY) {
            let (k, v) = item?;
            let rec: IdempotencyRecord = decode(&v)?;
            if rec.at_ms < before_ms {
                batch.remove(k);
                n += 1;
                if n >= limit {
                    break;
                }
            }
        }
        if n > 0 {
            self.streams.apply_batch(batch)?;
        }
        Ok(n)
    }
}
