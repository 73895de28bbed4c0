//! Stream queries: a stream's counter and its stored messages (`i:<client>\0…` inboxes and
//! `r:<room>\0…` rooms in the `streams` tree), read by sessions, feeds, polls and the sweeper.

use agent_bridge_protocol::Message;

use super::format::{intact, Stored};
use super::legacy::{upgrade_from, MessageV1};
use super::keys::{be_u64, with_seq, Stream};
use super::db::{Store, StoreError};

impl Stored for Message {
    const WHAT: &'static str = "message";
    /// 2: `thread_id` added at the end.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, StoreError> {
        upgrade_from::<MessageV1, _>(Self::WHAT, version, &[0, 1], body)
    }
}

impl Store {
    /// The last seq assigned in a stream (0 if none).
    pub fn last_seq(&self, stream: Stream<'_>) -> Result<u64, StoreError> {
        match self.streams.get(stream.key())? {
            Some(v) => be_u64(&v),
            None => Ok(0),
        }
    }

    /// One stored message.
    pub fn get(&self, stream: Stream<'_>, seq: u64) -> Result<Option<Message>, StoreError> {
        let key = with_seq(&stream.key(), seq);
        match self.streams.get(&key)? {
            Some(v) => intact("streams", &key, &v),
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
            let (k, v) = item?;
            out.extend(intact::<Message>("streams", &k, &v)?);
        }
        Ok(out)
    }

    /// Number of stored messages in a stream.
    pub fn len(&self, stream: Stream<'_>) -> usize {
        self.streams.scan_prefix(stream.key()).count().saturating_sub(1)
    }
}
