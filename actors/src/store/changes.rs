//! The change feed: which stored messages a batch added or removed, for a follower that must not
//! slow the writers down (the search index, `crate::search`).
//!
//! A [`Batch`](super::Batch) notes each message it stores or deletes as a [`Change`] (the stream and
//! the seq, never the message: the follower reads it back, so a queued change costs a few dozen
//! bytes); [`Store::apply`](super::Store::apply) hands them to the [`Feed`] after the batch landed.
//! The feed is a bounded channel: when the follower falls that far behind, changes are dropped
//! (counted in [`Feed::dropped`]) rather than making a router shard wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use super::names::StreamName;

/// Changes a follower may be behind before new ones are dropped.
pub const FEED_CAPACITY: usize = 65_536;

/// One message stored or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Stored(StreamName, u64),
    Removed(StreamName, u64),
}

/// The sending side, held by the [`Store`](super::Store).
#[derive(Clone)]
pub struct Feed {
    tx: SyncSender<Change>,
    dropped: Arc<AtomicU64>,
}

impl Feed {
    /// A feed and the receiver its follower reads.
    pub fn new() -> (Feed, Receiver<Change>) {
        Self::with_capacity(FEED_CAPACITY)
    }

    /// A feed holding at most `capacity` unread changes.
    pub fn with_capacity(capacity: usize) -> (Feed, Receiver<Change>) {
        let (tx, rx) = sync_channel(capacity);
        (Feed { tx, dropped: Arc::default() }, rx)
    }

    /// Hands a change over without waiting: when the follower is gone or full, it is dropped.
    pub(super) fn push(&self, change: Change) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(change) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Changes dropped so far because the follower was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The counter [`Feed::dropped`] reads, for the follower.
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use agent_bridge_protocol::Priority;

    use super::*;
    use crate::store::{Batch, Stream};

    #[test]
    fn applied_batches_feed_their_messages_and_a_full_feed_drops() {
        let (feed, rx) = Feed::with_capacity(2);
        let store = crate::store::Store::open(None, None).expect("open").with_feed(feed.clone());
        let m = crate::store::tests::msg(1, Priority::Normal);
        let mut b = Batch::default();
        b.message(Stream::Inbox("b"), &m).expect("msg");
        b.remove_message(Stream::Room("lab"), &m);
        b.message(Stream::Inbox("c"), &m).expect("msg");
        store.apply(b).expect("apply");
        assert_eq!(rx.try_recv().ok(), Some(Change::Stored(StreamName::Inbox("b".into()), 1)));
        assert_eq!(rx.try_recv().ok(), Some(Change::Removed(StreamName::Room("lab".into()), 1)));
        assert!(rx.try_recv().is_err(), "the third change did not fit");
        assert_eq!(feed.dropped(), 1);
    }
}
