//! Thread queries: the messages indexed under a thread (`t:<thread id>\0<stream key><seq BE>` in
//! the `streams` tree), in every stream that holds one. Permission filtering is the caller's job
//! (`crate::threads`): the store returns every stream.

use agent_bridge_protocol::Message;

use super::keys::{parse_thread_key, thread_prefix, StreamName};
use super::db::{Store, StoreError};

impl Store {
    /// Up to `limit` messages of a thread with the stream each is stored in, in key order (stream,
    /// then seq). An index entry whose message is gone (swept in the same batch, or damaged) is
    /// skipped.
    pub fn thread(&self, thread_id: &str, limit: usize) -> Result<Vec<(StreamName, Message)>, StoreError> {
        let prefix = thread_prefix(thread_id);
        let mut out = Vec::new();
        for item in self.streams.scan_prefix(&prefix).take(limit) {
            let (k, _) = item?;
            let (stream, seq) = parse_thread_key(&prefix, &k)?;
            if let Some(msg) = self.get(stream.as_stream(), seq)? {
                out.push((stream, msg));
            }
        }
        Ok(out)
    }

    /// Number of index entries of a thread (for tests and metrics).
    pub fn thread_len(&self, thread_id: &str) -> usize {
        self.streams.scan_prefix(thread_prefix(thread_id)).count()
    }
}

#[cfg(test)]
mod tests {
    use agent_bridge_protocol::{Message, Priority};

    use crate::store::{Batch, Stream, StreamName};

    fn msg(seq: u64, thread: Option<&str>) -> Message {
        Message { thread_id: thread.map(Into::into), ..crate::store::tests::msg(seq, Priority::Normal) }
    }

    #[test]
    fn a_thread_spans_streams_and_loses_removed_messages() {
        for store in crate::store::tests::both_backends() {
            let mut b = Batch::default();
            b.message(Stream::Inbox("b"), &msg(1, Some("th"))).expect("1");
            b.message(Stream::Inbox("b"), &msg(2, None)).expect("2");
            b.message(Stream::Room("lab"), &msg(3, Some("th"))).expect("3");
            b.message(Stream::Inbox("a"), &msg(4, Some("th-2"))).expect("4");
            store.apply(b).expect("apply");
            let got: Vec<(StreamName, u64)> = store.thread("th", 10).expect("thread").into_iter().map(|(s, m)| (s, m.seq)).collect();
            assert_eq!(got, [(StreamName::Inbox("b".into()), 1), (StreamName::Room("lab".into()), 3)]);
            let mut b = Batch::default();
            b.remove_message(Stream::Inbox("b"), &msg(1, Some("th")));
            store.apply(b).expect("apply");
            assert_eq!(store.thread_len("th"), 1, "removing a message removes its index entry");
            assert_eq!(store.thread_len("th-2"), 1);
        }
    }
}
