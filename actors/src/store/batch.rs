//! The batch builder: writes to the `streams` tree that must land together (a message with its
//! counter, queue entry, expiry run and idempotency record; or a sweep's deletions), applied as
//! one atomic batch by [`Store::apply`].

use agent_bridge_protocol::{Message, Priority};

use super::changes::Change;
use super::expiry::Expiring;
use super::format::encode;
use super::idempotency::IdempotencyRecord;
use super::kv::KvBatch;
use super::keys::{expiry_key, idempotency_key, queue_key, thread_key, with_seq, Stream, StreamName};
use super::queue::QueueEntry;
use super::db::{Store, StoreError};

/// Writes that must land together (one atomic batch on the `streams` tree).
#[derive(Default)]
pub struct Batch {
    inner: KvBatch,
    writes: usize,
    /// The messages stored and removed, for the change feed (`changes.rs`).
    changes: Vec<Change>,
}

impl Batch {
    /// Stores a message in its stream, moves the stream's counter to its seq, and indexes it
    /// under its thread, if it has one.
    pub fn message(&mut self, stream: Stream<'_>, msg: &Message) -> Result<(), StoreError> {
        let prefix = stream.key();
        self.inner.insert(with_seq(&prefix, msg.seq), encode(msg)?);
        self.inner.insert(prefix, &msg.seq.to_be_bytes());
        self.writes += 2;
        self.changes.push(Change::Stored(StreamName::of(stream), msg.seq));
        if let Some(thread) = &msg.thread_id {
            self.inner.insert(thread_key(thread, stream, msg.seq), &[][..]);
            self.writes += 1;
        }
        Ok(())
    }

    /// Queues an inbox message for later delivery (or until acknowledged).
    pub fn enqueue(&mut self, client: &str, msg: &Message) -> Result<(), StoreError> {
        let entry = QueueEntry {
            message_id: msg.id.clone(),
            from: msg.from.clone(),
            msg_type: msg.msg_type.clone(),
            requires_ack: msg.requires_ack,
            timestamp_ms: msg.timestamp.millis(),
        };
        self.inner.insert(queue_key(client, msg.priority, msg.seq), encode(&entry)?);
        self.writes += 1;
        Ok(())
    }

    /// Removes a queue entry (delivered, acknowledged, dead or expired).
    pub fn dequeue(&mut self, client: &str, priority: Priority, seq: u64) {
        self.inner.remove(queue_key(client, priority, seq));
        self.writes += 1;
    }

    /// Indexes a message for the sweeper.
    pub fn expire_at(&mut self, at_ms: i64, stream: Stream<'_>, seq: u64) {
        self.expire_range(at_ms, stream, seq, seq);
    }

    /// Indexes the messages `first..=last` of a stream for the sweeper, under one entry due at
    /// `at_ms`. The sweeper checks each message's own expiry, so a run may include messages that
    /// expire later (they have entries of their own).
    pub fn expire_range(&mut self, at_ms: i64, stream: Stream<'_>, first: u64, last: u64) {
        self.inner.insert(expiry_key(at_ms, stream, first), &last.to_be_bytes());
        self.writes += 1;
    }

    /// Remembers an idempotency key.
    pub fn idempotency(&mut self, from: &str, to: &str, key: &str, record: &IdempotencyRecord) -> Result<(), StoreError> {
        self.inner.insert(idempotency_key(from, to, key), encode(record)?);
        self.writes += 1;
        Ok(())
    }

    /// Deletes a stored message, with its thread index entry.
    pub fn remove_message(&mut self, stream: Stream<'_>, msg: &Message) {
        self.inner.remove(with_seq(&stream.key(), msg.seq));
        self.writes += 1;
        self.changes.push(Change::Removed(StreamName::of(stream), msg.seq));
        if let Some(thread) = &msg.thread_id {
            self.inner.remove(thread_key(thread, stream, msg.seq));
            self.writes += 1;
        }
    }

    /// Deletes a swept expiry entry.
    pub fn remove_expiry(&mut self, e: &Expiring) {
        self.inner.remove(e.key.clone());
        self.writes += 1;
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.writes == 0
    }
}

impl Store {
    /// Applies a batch atomically, then hands its messages to the change feed, if there is one.
    pub fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        if !batch.is_empty() {
            self.streams.apply_batch(batch.inner)?;
        }
        if let Some(feed) = &self.feed {
            batch.changes.into_iter().for_each(|c| feed.push(c));
        }
        Ok(())
    }
}
