//! Inbox queues: the entries (`q:<client>\0<level><seq BE>` in the `streams` tree) of messages not
//! yet delivered, or delivered and not yet acknowledged, scanned by priority level for delivery and
//! all at once by the AckTracker after a restart.

use agent_bridge_protocol::Priority;
use serde::{Deserialize, Serialize};

use super::format::{intact, Stored};
use super::keys::{be_u64, parse_queue_key, queue_level_prefix, queue_prefix, with_seq, QUEUE};
use super::db::{Store, StoreError};

/// A queued (undelivered, or delivered and not yet acknowledged) inbox message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub message_id: String,
    pub from: String,
    /// The message type, so a session's type filter can skip entries without loading them.
    pub msg_type: String,
    pub requires_ack: bool,
    /// When the message was accepted (for aging), ms since the epoch.
    pub timestamp_ms: i64,
}

impl Stored for QueueEntry {
    const WHAT: &'static str = "queue entry";
}

/// Why a queue scan passes over an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Deliver it.
    Take,
    /// Handed to a session and waiting for its ack.
    Inflight,
    /// Not for this reader (its type filter).
    Other,
}

/// A queue entry with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub client: String,
    pub priority: Priority,
    pub seq: u64,
    pub entry: QueueEntry,
}

impl Store {
    /// Up to `limit` queue entries of one priority level, oldest first, skipping `skip` seqs.
    pub fn queue_level(
        &self,
        client: &str,
        priority: Priority,
        from_seq: u64,
        limit: usize,
        skip: impl Fn(u64, &QueueEntry) -> Skip,
    ) -> Result<(Vec<Queued>, u64), StoreError> {
        let prefix = queue_level_prefix(client, priority);
        let start = with_seq(&prefix, from_seq);
        let end = with_seq(&prefix, u64::MAX);
        let mut out = Vec::new();
        // The end of the leading run of in-flight entries: the next scan may start after it.
        let mut inflight_run = from_seq.saturating_sub(1);
        let mut leading = true;
        for item in self.streams.range(start..=end) {
            let (k, v) = item?;
            let seq = be_u64(&k[prefix.len()..])?;
            let Some(entry) = intact::<QueueEntry>("streams", &k, &v)? else { continue };
            match skip(seq, &entry) {
                Skip::Inflight => {
                    if leading {
                        inflight_run = seq;
                    }
                    continue;
                }
                Skip::Other => {
                    leading = false;
                    continue;
                }
                Skip::Take => leading = false,
            }
            out.push(Queued { client: client.to_owned(), priority, seq, entry });
            if out.len() >= limit {
                break;
            }
        }
        Ok((out, inflight_run))
    }

    /// Every queue entry that waits for an acknowledgement (the AckTracker's state after a restart).
    pub fn unacked(&self) -> Result<Vec<Queued>, StoreError> {
        let mut out = Vec::new();
        for item in self.streams.scan_prefix(QUEUE) {
            let (k, v) = item?;
            let Some(entry) = intact::<QueueEntry>("streams", &k, &v)? else { continue };
            if !entry.requires_ack {
                continue;
            }
            let (client, priority, seq) = parse_queue_key(&k)?;
            out.push(Queued { client, priority, seq, entry });
        }
        Ok(out)
    }

    /// Number of queue entries of a client.
    pub fn queue_len(&self, client: &str) -> usize {
        self.streams.scan_prefix(queue_prefix(client)).count()
    }
}
