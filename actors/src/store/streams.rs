//! Stream queries: a stream's counter and its stored messages (`i:<client>\0…` inboxes and
//! `r:<room>\0…` rooms in the `streams` tree), read by sessions, feeds, polls and the sweeper.

use agent_bridge_protocol::Message;

use super::format::{intact, Stored};
use super::legacy::{upgrade_from, MessageV1};
use super::keys::{be_u64, with_seq, Stream, StreamName};
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

    /// Every stored message of every stream (inboxes, then rooms) with its stream, for rebuilding
    /// what follows the store (the search index). Counters are skipped; a record that does not
    /// decode is an error item, and the scan goes on.
    pub fn all_messages(&self) -> impl Iterator<Item = Result<(StreamName, Message), StoreError>> + '_ {
        let scan = |tag: &'static [u8]| self.streams.scan_prefix(tag);
        scan(b"i:").chain(scan(b"r:")).filter_map(|item| {
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            // `<tag><name>\0<seq BE>`: a counter is `<tag><name>\0`, with no seq after it.
            let end = k.iter().position(|&b| b == 0)?;
            if k.len() != end + 9 {
                return None;
            }
            let stream = StreamName::from_key(&k[..=end])?;
            // An undecodable record is skipped (logged and counted by `intact`), as everywhere.
            intact::<Message>("streams", &k, &v).transpose().map(|m| m.map(|m| (stream, m)))
        })
    }

    /// Number of stored messages in a stream.
    pub fn len(&self, stream: Stream<'_>) -> usize {
        self.streams.scan_prefix(stream.key()).count().saturating_sub(1)
    }
}
