//! The embedded store: sled trees in a data directory, memory trees with `--in-memory`, versioned
//! bincode values, group commit. All sled access is in this module; each file keeps one
//! responsibility:
//!
//! | file | what |
//! |---|---|
//! | `db.rs` | [`Store`] (the database and its trees), [`StoreError`], opening, [`Store::commit`] |
//! | `kv.rs` | the backend seam: a `Tree` is a sled tree or a `MemTree` (`BTreeMap` behind a lock) |
//! | `names.rs` | stream names (inbox or room) and their key prefix |
//! | `keys.rs` | key encoding: how every record is named, and read back from a scan |
//! | `format.rs` | the value envelope: a format version before every bincode record, and upgrades |
//! | `legacy.rs` | old layouts of stored types, read by the upgrades |
//! | `threads.rs` | the thread index: a thread's messages across streams |
//! | `batch.rs` | [`Batch`]: writes to `streams` that land together, atomically |
//! | `changes.rs` | the change feed: the messages each applied batch stored or removed (for search) |
//! | `disk.rs` | a data directory's sled database, reopenable after a write failure; whether it takes writes |
//! | `flusher.rs` | group commit: [`Store::commit`] and the thread that flushes for many waiters, probes, reopens |
//! | `streams.rs` | stream counters and messages (inboxes and room streams) |
//! | `queue.rs` | inbox queue entries, by priority; the unacknowledged ones after a restart |
//! | `expiry.rs` | the expiry index the TtlSweeper reads |
//! | `idempotency.rs` | idempotency records: lookup and sweep |
//! | `undelivered.rs` | delivery attempts, dead letters, the archive |
//! | `rooms.rs` | room state and shared files |
//! | `api_keys.rs` | API key records |
//! | `records.rs` | the integrations' records: webhooks, e-mail subscriptions, GitHub links, their failures |
//! | `agents.rs` | agent registrations and tasks |
//!
//! Layout. One key space, the `streams` tree, holds everything a routed message touches, so that one
//! atomic batch writes a message with all its index entries:
//!
//! | key | value | what |
//! |---|---|---|
//! | `i:<client>\0` / `r:<room>\0` | `u64 BE` | last seq assigned in the stream (never reused) |
//! | `i:<client>\0<seq BE>` | `Message` | the stream itself: inbox or room, in seq order |
//! | `q:<client>\0<level u8><seq BE>` | `QueueEntry` | undelivered or unacknowledged messages of an inbox, by priority |
//! | `x:<expires ms BE><stream key><seq BE>` | `u64 BE` | expiry index (a run of seqs), swept in time order |
//! | `k:<from>\0<to>\0<key>` | `IdempotencyRecord` | idempotency keys |
//! | `t:<thread id>\0<stream key><seq BE>` | empty | thread index: the messages of a thread, in every stream |
//!
//! Other trees: `acks` (`<client>\0<seq BE>` → delivery attempts), `dead` (message id → dead letter),
//! `archive` (message id → expired message, when archiving to the store), `rooms` (room name → the
//! room's state), `files` (sha256 hex → file contents), `keys` (API key id → key record),
//! `webhooks` (webhook id → registration) and `webhook_failures` (failure id, time-ordered → failed
//! delivery, bounded), `email` (subscription id → e-mail subscription) and `email_failures`,
//! `github` (`repo:<room>` → repository, `link:<room>\0<id>` → issue) and `github_failures`
//! (see [`Records`]).
//!
//! Values. Every struct value (the named types in the tables above) is written in the envelope of
//! [`format`]: `0xFF`, its type's format version, then the bincode body; values from before the
//! envelope are read as version 0. Counters, attempts and file contents are raw bytes.
//!
//! Durability: writes land in sled's page cache at once (in memory, they never go further); [`Store::commit`] returns a receiver that
//! fires after the next flush to disk (see [`flusher`]). Only the router shard that owns a stream
//! writes its counter, messages and queue entries, so seq assignment needs no locking here.
//!
//! This module depends on the protocol crate only, never on the actors that use it: rooms and API
//! keys hand in their own [`Stored`] types.

mod api_keys;
mod batch;
pub mod changes;
mod db;
mod disk;
mod expiry;
pub mod format;
mod flusher;
mod idempotency;
mod agents;
mod keys;
mod kv;
pub mod legacy;
mod names;
mod queue;
mod records;
mod rooms;
mod streams;
mod threads;
mod undelivered;

pub use batch::Batch;
pub use changes::{Change, Feed};
pub use db::{Store, StoreError, CACHE_BYTES};
pub use disk::KEYS_TREE;
pub use expiry::Expiring;
pub use format::Stored;
pub use idempotency::IdempotencyRecord;
pub use keys::{Stream, StreamName};
pub use queue::{QueueEntry, Queued, Skip};
pub use records::Records;
pub use undelivered::DeadLetter;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agent_bridge_protocol::{Message, Payload, Priority, Timestamp};

    use super::*;

    /// A record of the trees whose types live outside the store (webhooks, agents).
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub(super) struct Rec(pub(super) String);

    impl Stored for Rec {
        const WHAT: &'static str = "test record";
    }

    pub(super) fn msg(seq: u64, priority: Priority) -> Message {
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
            thread_id: None,
        }
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
        b.remove_message(Stream::Inbox("b"), &msg(1, Priority::Normal));
        b.dequeue("b", Priority::Normal, 1);
        store.apply(b).expect("apply");
        assert_eq!(store.due_expiries(1003, 10).expect("due").len(), 2);
        assert_eq!(store.get(Stream::Inbox("b"), 1).expect("get"), None);
        assert_eq!(store.queue_len("b"), 4);
        assert_eq!(store.last_seq(Stream::Inbox("b")).expect("seq"), 5, "deleting never rewinds the counter");
    }

    /// A store of each backend: in memory, and a temporary sled store.
    pub(super) fn both_backends() -> [Store; 2] {
        [Store::open(None, None).expect("open"), Store::open_sled_temporary()]
    }

    #[test]
    fn untagged_values_from_an_old_store_read_and_are_tagged_when_written_again() {
        for store in both_backends() {
            untagged_values_on(&store);
        }
    }

    fn untagged_values_on(store: &Store) {
        let old = msg(1, Priority::Normal);
        let key = keys::with_seq(&Stream::Inbox("b").key(), 1);
        let untagged = agent_bridge_protocol::encode_bincode(&legacy::message_v1(&old)).expect("as fdb8c93 wrote it");
        store.streams.insert(&key, untagged).expect("insert");
        assert_eq!(store.get(Stream::Inbox("b"), 1).expect("untagged reads"), Some(old.clone()));
        let mut b = Batch::default();
        b.message(Stream::Inbox("b"), &old).expect("msg");
        store.apply(b).expect("apply");
        let raw = store.streams.get(&key).expect("get").expect("stored");
        assert_eq!(&raw[..2], &[format::MARKER, 2], "written again, it carries the envelope");
        assert_eq!(store.get(Stream::Inbox("b"), 1).expect("tagged reads"), Some(old));
        let mut future = raw.to_vec();
        future[1] = 3;
        store.streams.insert(&key, future).expect("insert");
        let err = store.get(Stream::Inbox("b"), 1).expect_err("a newer format is refused");
        assert!(matches!(err, StoreError::Format { what: "message", version: 3, supported: 2 }), "{err}");
    }
}
