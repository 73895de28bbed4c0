//! The embedded store: sled trees, bincode values.
//!
//! Layout (one sled database in the data directory, or a temporary one for tests):
//! - `streams`: one key space for every message stream. A stream key is `i:<client>` (an inbox) or
//!   `r:<room>` (a room). Messages live at `<stream>\0<seq: u64 BE>`; the stream's last assigned
//!   seq at `<stream>\0` alone, which sorts before its messages. Both are written in one atomic batch,
//!   so a seq is never handed out twice, even if old messages were deleted.
//! - `cursors`: `<stream>` → the highest seq handed to a live consumer (store-and-forward position).
//!
//! Only the router shard that owns a stream writes it, so seq assignment needs no locking here. All
//! sled access stays in this module so that a later move to another engine stays local.

use std::path::Path;

use agent_bridge_protocol::{decode_bincode, encode_bincode, Message};
use thiserror::Error;

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

fn message_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn be_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt("counter is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(arr))
}

/// Handle to the database; cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    streams: sled::Tree,
    cursors: sled::Tree,
}

impl Store {
    /// Opens (or creates) the store in `dir`; `None` gives a temporary store removed on drop.
    pub fn open(dir: Option<&Path>) -> Result<Self, StoreError> {
        let config = match dir {
            Some(d) => sled::Config::new().path(d.join("db")),
            None => sled::Config::new().temporary(true),
        };
        let db = config.open()?;
        let streams = db.open_tree("streams")?;
        let cursors = db.open_tree("cursors")?;
        Ok(Store { db, streams, cursors })
    }

    /// The last seq assigned in a stream (0 if none).
    pub fn last_seq(&self, stream: Stream<'_>) -> Result<u64, StoreError> {
        match self.streams.get(stream.key())? {
            Some(v) => be_u64(&v),
            None => Ok(0),
        }
    }

    /// Appends a message whose `seq` the caller assigned (last seq + 1), atomically with the counter.
    pub fn append(&self, stream: Stream<'_>, msg: &Message) -> Result<(), StoreError> {
        let prefix = stream.key();
        let value = encode_bincode(msg).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut batch = sled::Batch::default();
        batch.insert(message_key(&prefix, msg.seq), value);
        batch.insert(prefix, &msg.seq.to_be_bytes());
        self.streams.apply_batch(batch)?;
        Ok(())
    }

    /// Up to `limit` messages with seq > `after`, oldest first.
    pub fn range(&self, stream: Stream<'_>, after: u64, limit: usize) -> Result<Vec<Message>, StoreError> {
        let prefix = stream.key();
        let start = message_key(&prefix, after.saturating_add(1));
        let end = message_key(&prefix, u64::MAX);
        let mut out = Vec::new();
        for item in self.streams.range(start..=end).take(limit) {
            let (_, v) = item?;
            out.push(decode_bincode::<Message>(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    /// The store-and-forward position of a stream.
    pub fn cursor(&self, stream: Stream<'_>) -> Result<u64, StoreError> {
        match self.cursors.get(stream.key())? {
            Some(v) => be_u64(&v),
            None => Ok(0),
        }
    }

    /// Moves the store-and-forward position (never backwards).
    pub fn set_cursor(&self, stream: Stream<'_>, seq: u64) -> Result<(), StoreError> {
        self.cursors.fetch_and_update(stream.key(), |old| {
            let old = old.and_then(|o| be_u64(o).ok()).unwrap_or(0);
            Some(old.max(seq).to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// Number of stored messages in a stream.
    pub fn len(&self, stream: Stream<'_>) -> usize {
        let prefix = stream.key();
        self.streams.scan_prefix(&prefix).count().saturating_sub(1)
    }

    /// Flushes everything written so far to disk.
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
    use agent_bridge_protocol::{Payload, Priority, Timestamp};

    fn msg(seq: u64) -> Message {
        Message {
            id: format!("msg-{seq}"),
            seq,
            from: "a".into(),
            to: Some("b".into()),
            room: None,
            msg_type: "t".into(),
            payload: Payload::from_serialize(&serde_json::json!({"n": seq})),
            timestamp: Timestamp::now(),
            priority: Priority::Normal,
            requires_ack: false,
            correlation_id: None,
            expires_at: None,
        }
    }

    #[test]
    fn append_range_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(Some(dir.path())).expect("open");
            for seq in 1..=5 {
                store.append(Stream::Inbox("b"), &msg(seq)).expect("append");
            }
            store.append(Stream::Inbox("bb"), &msg(1)).expect("append");
            assert_eq!(store.range(Stream::Inbox("b"), 2, 10).expect("range").iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 4, 5]);
            assert_eq!(store.range(Stream::Inbox("b"), 0, 2).expect("range").len(), 2);
            assert_eq!(store.len(Stream::Inbox("b")), 5);
            store.set_cursor(Stream::Inbox("b"), 4).expect("cursor");
            store.set_cursor(Stream::Inbox("b"), 2).expect("cursor");
            store.flush().expect("flush");
        }
        let store = Store::open(Some(dir.path())).expect("reopen");
        assert_eq!(store.last_seq(Stream::Inbox("b")).expect("seq"), 5);
        assert_eq!(store.last_seq(Stream::Inbox("bb")).expect("seq"), 1);
        assert_eq!(store.cursor(Stream::Inbox("b")).expect("cursor"), 4, "cursor never moves back");
        let first = &store.range(Stream::Inbox("b"), 0, 100).expect("range")[0];
        let want = msg(1);
        assert_eq!((&first.id, &first.payload, first.seq), (&want.id, &want.payload, 1));
    }
}
