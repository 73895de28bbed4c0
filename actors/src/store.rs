//! The embedded store: sled trees, bincode values, group commit.
//!
//! Layout. One key space, the `streams` tree, holds everything a routed message touches, so that one
//! atomic `sled::Batch` writes a message with all its index entries:
//!
//! | key | value | what |
//! |---|---|---|
//! | `i:<client>\0` / `r:<room>\0` | `u64 BE` | last seq assigned in the stream (never reused) |
//! | `i:<client>\0<seq BE>` | `Message` | the stream itself: inbox or room, in seq order |
//! | `q:<client>\0<level u8><seq BE>` | `QueueEntry` | undelivered or unacknowledged messages of an inbox, by priority |
//! | `x:<expires ms BE><stream key><seq BE>` | `()` | expiry index, swept in time order |
//! | `k:<from>\0<to>\0<key>` | `IdempotencyRecord` | idempotency keys |
//!
//! Other trees: `acks` (`<client>\0<seq BE>` → delivery attempts), `dead` (message id → dead letter),
//! `archive` (message id → expired message, when archiving to the store), `rooms` (room name → the
//! room's state: members, questions, proposals, board, file metadata; written by its `Room` actor on
//! every change) and `files` (sha256 hex → file contents, content-addressed, so a file shared twice
//! is stored once). Room streams live in `streams` under `r:<room>\0`, like inboxes.
//!
//! Durability: writes land in sled's page cache at once; [`Store::commit`] returns a receiver that
//! fires after the next flush to disk. A flusher thread takes every waiter registered so far, flushes
//! once, and releases them all: group commit, one `fsync` for many messages.
//!
//! Only the router shard that owns a stream writes its counter, messages and queue entries, so seq
//! assignment needs no locking here. All sled access stays in this module.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_bridge_protocol::{decode_bincode, encode_bincode, Message, Priority};
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::oneshot;

/// Storage failures.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

/// A message stream: a client's inbox or a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream<'a> {
    Inbox(&'a str),
    Room(&'a str),
}

impl Stream<'_> {
    fn key(self) -> Vec<u8> {
        let (tag, name) = match self {
            Stream::Inbox(c) => (b"i:", c),
            Stream::Room(r) => (b"r:", r),
        };
        let mut k = Vec::with_capacity(name.len() + 11);
        k.extend_from_slice(tag);
        k.extend_from_slice(name.as_bytes());
        k.push(0);
        k
    }
}

fn with_seq(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn be_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt("counter is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(arr))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    encode_bincode(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(v: &[u8]) -> Result<T, StoreError> {
    decode_bincode(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn queue_prefix(client: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(client.len() + 3);
    k.extend_from_slice(b"q:");
    k.extend_from_slice(client.as_bytes());
    k.push(0);
    k
}

fn queue_key(client: &str, priority: Priority, seq: u64) -> Vec<u8> {
    let mut k = queue_prefix(client);
    k.push(priority.index() as u8);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn expiry_key(at_ms: i64, stream: Stream<'_>, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(b"x:");
    k.extend_from_slice(&(at_ms.max(0) as u64).to_be_bytes());
    k.extend_from_slice(&stream.key());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn idempotency_key(from: &str, to: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(from.len() + to.len() + key.len() + 4);
    k.extend_from_slice(b"k:");
    k.extend_from_slice(from.as_bytes());
    k.push(0);
    k.extend_from_slice(to.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn ack_key(client: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(client.len() + 9);
    k.extend_from_slice(client.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

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

/// What an idempotency key maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub message_id: String,
    pub seq: Option<u64>,
    pub at_ms: i64,
}

/// A message that exhausted its delivery attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub message: Message,
    pub recipient: String,
    pub attempts: u32,
    pub reason: String,
    pub at_ms: i64,
}

/// An expiry index entry due for sweeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    key: Vec<u8>,
    pub at_ms: i64,
    pub stream: StreamName,
    /// The first seq the entry covers.
    pub seq: u64,
    /// The last seq it covers (entries cover runs of messages that expire in the same second).
    pub last_seq: u64,
}

/// An owned stream name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamName {
    Inbox(String),
    Room(String),
}

impl StreamName {
    pub fn as_stream(&self) -> Stream<'_> {
        match self {
            StreamName::Inbox(c) => Stream::Inbox(c),
            StreamName::Room(r) => Stream::Room(r),
        }
    }
}

/// Writes that must land together (one atomic batch on the `streams` tree).
#[derive(Default)]
pub struct Batch {
    inner: sled::Batch,
    writes: usize,
}

impl Batch {
    /// Stores a message in its stream and moves the stream's counter to its seq.
    pub fn message(&mut self, stream: Stream<'_>, msg: &Message) -> Result<(), StoreError> {
        let prefix = stream.key();
        self.inner.insert(with_seq(&prefix, msg.seq), encode(msg)?);
        self.inner.insert(prefix, &msg.seq.to_be_bytes());
        self.writes += 2;
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

    /// Deletes a stored message.
    pub fn remove_message(&mut self, stream: Stream<'_>, seq: u64) {
        self.inner.remove(with_seq(&stream.key(), seq));
        self.writes += 1;
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

/// The tree of API key records.
pub const KEYS_TREE: &str = "keys";

/// The shortest time between two group-commit flushes.
const GROUP_COMMIT_INTERVAL: Duration = Duration::from_millis(2);

/// Group commit: many waiters, one flush.
struct Flusher {
    waiters: Mutex<Vec<oneshot::Sender<()>>>,
    wake: Condvar,
}

/// Handle to the database; cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    streams: sled::Tree,
    acks: sled::Tree,
    dead: sled::Tree,
    archive: sled::Tree,
    rooms: sled::Tree,
    files: sled::Tree,
    flusher: Arc<Flusher>,
    /// `--in-memory`: nothing survives the process, so nothing is flushed.
    temporary: bool,
}

impl Store {
    /// Opens (or creates) the store in `dir`; `None` gives a temporary store removed on drop.
    /// `background_flush` is sled's own periodic flush (used when commits are not awaited).
    pub fn open(dir: Option<&Path>, background_flush: Option<Duration>) -> Result<Self, StoreError> {
        let config = match dir {
            Some(d) => sled::Config::new().path(d.join("db")),
            None => sled::Config::new().temporary(true),
        }
        .mode(sled::Mode::HighThroughput);
        let temporary = dir.is_none();
        let background_flush = if temporary { None } else { background_flush };
        let config = config.flush_every_ms(background_flush.map(|d| d.as_millis().max(1) as u64));
        let db = config.open()?;
        let store = Store {
            streams: db.open_tree("streams")?,
            acks: db.open_tree("acks")?,
            dead: db.open_tree("dead")?,
            archive: db.open_tree("archive")?,
            rooms: db.open_tree("rooms")?,
            files: db.open_tree("files")?,
            db,
            flusher: Arc::new(Flusher { waiters: Mutex::new(Vec::new()), wake: Condvar::new() }),
            temporary,
        };
        store.start_flusher();
        Ok(store)
    }

    fn start_flusher(&self) {
        let flusher = Arc::clone(&self.flusher);
        let db = self.db.clone();
        let spawned = std::thread::Builder::new().name("store-flush".into()).spawn(move || loop {
            // Flushes at most every GROUP_COMMIT_INTERVAL: back-to-back fsyncs starve sled's
            // writers (the router's batches stall behind them), a short pause groups more.
            let started = std::time::Instant::now();
            let batch = {
                let mut waiters = flusher.waiters.lock();
                while waiters.is_empty() {
                    // Every Store handle is gone: stop, releasing the database (and its lock).
                    if Arc::strong_count(&flusher) == 1 {
                        return;
                    }
                    flusher.wake.wait_for(&mut waiters, Duration::from_millis(100));
                }
                std::mem::take(&mut *waiters)
            };
            match db.flush() {
                Ok(_) => {
                    for w in batch {
                        let _ = w.send(());
                    }
                }
                // Dropping the senders tells every waiter that durability failed.
                Err(e) => tracing::error!(error = %e, waiters = batch.len(), "store flush failed"),
            }
            if let Some(rest) = GROUP_COMMIT_INTERVAL.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "starting the store flusher");
        }
    }

    /// Resolves once everything written before this call is on disk (an error if the flush failed).
    /// A temporary store has no disk to wait for: it resolves at once.
    pub fn commit(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if self.temporary {
            let _ = tx.send(());
            return rx;
        }
        self.flusher.waiters.lock().push(tx);
        self.flusher.wake.notify_one();
        rx
    }

    /// Applies a batch atomically.
    pub fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        if !batch.is_empty() {
            self.streams.apply_batch(batch.inner)?;
        }
        Ok(())
    }

    /// The last seq assigned in a stream (0 if none).
    pub fn last_seq(&self, stream: Stream<'_>) -> Result<u64, StoreError> {
        match self.streams.get(stream.key())? {
            Some(v) => be_u64(&v),
            None => Ok(0),
        }
    }

    /// One stored message.
    pub fn get(&self, stream: Stream<'_>, seq: u64) -> Result<Option<Message>, StoreError> {
        match self.streams.get(with_seq(&stream.key(), seq))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` messages with seq > `after`, oldest first.
    pub fn range(&self, stream: Stream<'_>, after: u64, limit: usize) -> Result<Vec<Message>, StoreError> {
        let prefix = stream.key();
        let start = with_seq(&prefix, after.saturating_add(1));
        let end = with_seq(&prefix, u64::MAX);
        let mut out = Vec::new();
        for item in self.streams.range(start..=end).take(limit) {
            let (_, v) = item?;
            out.push(decode::<Message>(&v)?);
        }
        Ok(out)
    }

    /// Up to `limit` queue entries of one priority level, oldest first, skipping `skip` seqs.
    pub fn queue_level(
        &self,
        client: &str,
        priority: Priority,
        from_seq: u64,
        limit: usize,
        skip: impl Fn(u64, &QueueEntry) -> Skip,
    ) -> Result<(Vec<Queued>, u64), StoreError> {
        let mut prefix = queue_prefix(client);
        prefix.push(priority.index() as u8);
        let start = with_seq(&prefix, from_seq);
        let end = with_seq(&prefix, u64::MAX);
        let mut out = Vec::new();
        // The end of the leading run of in-flight entries: the next scan may start after it.
        let mut inflight_run = from_seq.saturating_sub(1);
        let mut leading = true;
        for item in self.streams.range(start..=end) {
            let (k, v) = item?;
            let seq = be_u64(&k[prefix.len()..])?;
            let entry: QueueEntry = decode(&v)?;
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
        for item in self.streams.scan_prefix(b"q:") {
            let (k, v) = item?;
            let entry: QueueEntry = decode(&v)?;
            if !entry.requires_ack {
                continue;
            }
            let body = &k[2..];
            let nul = body.iter().position(|b| *b == 0).ok_or_else(|| StoreError::Corrupt("queue key".into()))?;
            let client = String::from_utf8_lossy(&body[..nul]).into_owned();
            let rest = &body[nul + 1..];
            if rest.len() != 9 {
                return Err(StoreError::Corrupt("queue key length".into()));
            }
            let priority = Priority::ALL.get(usize::from(rest[0])).copied().unwrap_or_default();
            out.push(Queued { client, priority, seq: be_u64(&rest[1..])?, entry });
        }
        Ok(out)
    }

    /// Number of queue entries of a client.
    pub fn queue_len(&self, client: &str) -> usize {
        self.streams.scan_prefix(queue_prefix(client)).count()
    }

    /// Looks up an idempotency key.
    pub fn idempotency(&self, from: &str, to: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        match self.streams.get(idempotency_key(from, to, key))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` expiry entries due at or before `now_ms`, oldest first.
    pub fn due_expiries(&self, now_ms: i64, limit: usize) -> Result<Vec<Expiring>, StoreError> {
        let mut end = b"x:".to_vec();
        end.extend_from_slice(&(now_ms.max(0) as u64 + 1).to_be_bytes());
        let mut out = Vec::new();
        for item in self.streams.range(b"x:".to_vec()..end).take(limit) {
            let (k, v) = item?;
            let corrupt = || StoreError::Corrupt("expiry key".into());
            let body = k.get(2..).ok_or_else(corrupt)?;
            if body.len() < 8 + 3 + 8 {
                return Err(corrupt());
            }
            let at_ms = be_u64(&body[..8])? as i64;
            let stream_key = &body[8..body.len() - 8];
            let seq = be_u64(&body[body.len() - 8..])?;
            let name = String::from_utf8_lossy(&stream_key[2..stream_key.len() - 1]).into_owned();
            let stream = match &stream_key[..2] {
                b"i:" => StreamName::Inbox(name),
                b"r:" => StreamName::Room(name),
                _ => return Err(corrupt()),
            };
            let last_seq = if v.len() == 8 { be_u64(&v)?.max(seq) } else { seq };
            out.push(Expiring { key: k.to_vec(), at_ms, stream, seq, last_seq });
        }
        Ok(out)
    }

    /// Deletes idempotency records older than `before_ms`, at most `limit`; returns how many.
    pub fn sweep_idempotency(&self, before_ms: i64, limit: usize) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.streams.scan_prefix(b"k:") {
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

    /// Archives an expired message in the store.
    pub fn archive(&self, msg: &Message) -> Result<(), StoreError> {
        self.archive.insert(msg.id.as_bytes(), encode(msg)?)?;
        Ok(())
    }

    // API keys live in their own tree, `keys` (API key id → [`ApiKeyRecord`]: the key's hash,
    // never the key itself). Keys change rarely, so the tree is opened per call.

    /// Stores an API key record (written through at once: a new or revoked key must survive a crash).
    pub fn put_api_key(&self, id: &str, record: &crate::auth::keys::ApiKeyRecord) -> Result<(), StoreError> {
        let keys = self.db.open_tree(KEYS_TREE)?;
        keys.insert(id.as_bytes(), encode(record)?)?;
        keys.flush()?;
        Ok(())
    }

    /// Every API key record.
    pub fn api_keys(&self) -> Result<Vec<crate::auth::keys::ApiKeyRecord>, StoreError> {
        self.db.open_tree(KEYS_TREE)?.iter().map(|item| decode(&item?.1)).collect()
    }

    /// Number of archived messages.
    pub fn archived(&self) -> usize {
        self.archive.len()
    }

    /// Number of stored messages in a stream.
    pub fn len(&self, stream: Stream<'_>) -> usize {
        self.streams.scan_prefix(stream.key()).count().saturating_sub(1)
    }

    /// Writes a room's state (durable after the next [`Store::commit`]). Only the room's own actor
    /// (or the registry, when it creates the room) calls this, so writes to one room never race.
    pub fn put_room<T: Serialize>(&self, name: &str, state: &T) -> Result<(), StoreError> {
        self.rooms.insert(name.as_bytes(), encode(state)?)?;
        Ok(())
    }

    /// One room's state, if the room exists.
    pub fn get_room<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.rooms.get(name.as_bytes())? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Every room's state, in name order.
    pub fn rooms<T: serde::de::DeserializeOwned>(&self) -> Result<Vec<(String, T)>, StoreError> {
        self.rooms_after(None).collect()
    }

    /// Rooms' states in name order, from the first name after `after` (from the first room when
    /// `None`), read as the iterator is consumed: a page of a listing reads only what it shows.
    pub fn rooms_after<T: serde::de::DeserializeOwned>(&self, after: Option<&str>) -> impl Iterator<Item = Result<(String, T), StoreError>> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.as_bytes().to_vec()));
        self.rooms.range::<Vec<u8>, _>((start, Bound::Unbounded)).map(|item| {
            let (k, v) = item?;
            Ok((String::from_utf8_lossy(&k).into_owned(), decode(&v)?))
        })
    }

    /// Stores file contents under their sha256 (hex); a no-op when already there.
    pub fn put_file(&self, sha256_hex: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if !self.files.contains_key(sha256_hex.as_bytes())? {
            self.files.insert(sha256_hex.as_bytes(), bytes)?;
        }
        Ok(())
    }

    /// File contents by sha256 (hex).
    pub fn get_file(&self, sha256_hex: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.files.get(sha256_hex.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Flushes everything written so far to disk, now.
    pub fn flush(&self) -> Result<usize, StoreError> {
        Ok(self.db.flush()?)
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_bridge_protocol::{Payload, Timestamp};

    fn msg(seq: u64, priority: Priority) -> Message {
        Message {
            id: format!("msg-{seq}"),
            seq,
            from: "a".into(),
            to: Some("b".into()),
            room: None,
            msg_type: "t".into(),
            payload: Payload::from_serialize(&serde_json::json!({"n": seq})),
            timestamp: Timestamp::now(),
            priority,
            requires_ack: seq % 2 == 0,
            correlation_id: None,
            expires_at: None,
        }
    }

    #[test]
    fn rooms_and_files() {
        let store = Store::open(None, None).expect("open");
        store.put_room("b", &("second".to_owned(), 2u32)).expect("put");
        store.put_room("a", &("first".to_owned(), 1u32)).expect("put");
        assert_eq!(store.get_room::<(String, u32)>("a").expect("get"), Some(("first".into(), 1)));
        assert_eq!(store.get_room::<(String, u32)>("c").expect("get"), None);
        let names: Vec<String> = store.rooms::<(String, u32)>().expect("rooms").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b"]);
        let after_a: Vec<String> = store.rooms_after::<(String, u32)>(Some("a")).map(|r| r.expect("room").0).collect();
        assert_eq!(after_a, ["b"]);
        store.put_file("00ff", b"one").expect("file");
        store.put_file("00ff", b"ignored: same hash, same contents").expect("file");
        assert_eq!(store.get_file("00ff").expect("get").as_deref(), Some(&b"one"[..]));
        assert_eq!(store.get_file("abcd").expect("get"), None);
    }

    #[test]
    fn messages_queue_and_expiry_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(Some(dir.path()), None).expect("open");
            for seq in 1..=5 {
                let m = msg(seq, if seq == 4 { Priority::Critical } else { Priority::Normal });
                let mut b = Batch::default();
                b.message(Stream::Inbox("b"), &m).expect("msg");
                b.enqueue("b", &m).expect("queue");
                b.expire_at(1000 + seq as i64, Stream::Inbox("b"), seq);
                store.apply(b).expect("apply");
            }
            let mut b = Batch::default();
            b.message(Stream::Inbox("bb"), &msg(1, Priority::Low)).expect("msg");
            store.apply(b).expect("apply");
            store.commit().blocking_recv().expect("committed");
        }
        // The flusher thread lets go of the database within its idle poll.
        let reopen = || Store::open(Some(dir.path()), None);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let store = loop {
            match reopen() {
                Ok(s) => break s,
                Err(e) if std::time::Instant::now() > deadline => panic!("reopen: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        assert_eq!(store.last_seq(Stream::Inbox("b")).expect("seq"), 5);
        assert_eq!(store.last_seq(Stream::Inbox("bb")).expect("seq"), 1);
        let seqs: Vec<u64> = store.range(Stream::Inbox("b"), 2, 10).expect("range").iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        let take = |_: u64, _: &QueueEntry| Skip::Take;
        let (crit, _) = store.queue_level("b", Priority::Critical, 0, 10, take).expect("level");
        assert_eq!(crit.iter().map(|q| q.seq).collect::<Vec<_>>(), [4]);
        let skip3 = |s: u64, _: &QueueEntry| if s <= 3 { Skip::Inflight } else { Skip::Take };
        let (normal, run) = store.queue_level("b", Priority::Normal, 0, 10, skip3).expect("level");
        assert_eq!(run, 3, "entries 1..=3 are a leading in-flight run");
        assert_eq!(normal.iter().map(|q| q.seq).collect::<Vec<_>>(), [5]);
        let unacked: Vec<u64> = store.unacked().expect("unacked").iter().map(|q| q.seq).collect();
        assert_eq!(unacked, [4, 2], "critical level sorts first");
        let due = store.due_expiries(1003, 10).expect("due");
        assert_eq!(due.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(due[0].stream, StreamName::Inbox("b".into()));
        let mut b = Batch::default();
        b.remove_expiry(&due[0]);
        b.remove_message(Stream::Inbox("b"), 1);
        b.dequeue("b", Priority::Normal, 1);
        store.apply(b).expect("apply");
        assert_eq!(store.due_expiries(1003, 10).expect("due").len(), 2);
        assert_eq!(store.get(Stream::Inbox("b"), 1).expect("get"), None);
        assert_eq!(store.queue_len("b"), 4);
        assert_eq!(store.last_seq(Stream::Inbox("b")).expect("seq"), 5, "deleting never rewinds the counter");
    }
}
