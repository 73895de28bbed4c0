//! Full-text search over stored messages (`history.search`, PROTOCOL.md section 4), with tantivy.
//!
//! ```text
//! Router shard / Room ──Batch──▶ Store::apply ──Change (stream, seq)──▶ search-writer thread
//!                                 (change feed: bounded, never waits)     (reads the message back,
//!                                                                          indexes or deletes it,
//!                                                                          commits every 200 ms)
//! history.search ──▶ RoomsHandle::call ──▶ SearchIndex::search (caller's thread: the reader)
//! ```
//!
//! The index is derived data: it lives in `<data dir>/search/` (in RAM with `--in-memory`) and is
//! rebuilt from the store at start when it is missing, unreadable, or of another
//! [`INDEX_VERSION`](schema::INDEX_VERSION). Messages leave it when the store removes them (the
//! TtlSweeper's expiry goes through the same batches). Room streams are never deleted (there is
//! no `room.delete`); if one is added, its batch removing the messages feeds the index the same way.
//!
//! | file | what |
//! |---|---|
//! | `schema.rs` | the fields, and how a message becomes a document |
//! | `writer.rs` | the writer thread: follows the change feed, rebuilds, commits in batches |
//! | `query.rs` | `history.search` params, the permission filter, a page of hits |

mod query;
mod schema;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use serde_json::Value;
use tantivy::query::QueryParser;
use tantivy::{Index, IndexReader, ReloadPolicy};
use thiserror::Error;

use crate::auth::Identity;
use crate::room::RoomError;
use crate::store::{Feed, Store};

pub use query::{SearchParams, SearchQuery, DEFAULT_SEARCH_PAGE, MAX_SEARCH_PAGE};
pub use schema::{INDEX_VERSION, NAME};
pub use writer::COMMIT_EVERY;

/// Memory the index writer buffers before it writes a segment (tantivy's minimum is 15 MB).
const WRITER_BUDGET: usize = 20_000_000;
/// The file in the index directory that names its [`INDEX_VERSION`].
const VERSION_FILE: &str = "agent-bridge-index-version";

/// Opening the index failed.
#[derive(Debug, Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index directory: {0}")]
    Io(#[from] std::io::Error),
}

/// The search side of the index, for `history.search`; cheap to clone.
#[derive(Clone)]
pub struct SearchIndex {
    inner: Arc<Inner>,
}

struct Inner {
    reader: IndexReader,
    parser: QueryParser,
    fields: schema::Fields,
    /// Tells the writer to stop; it answers on `closed`.
    closing: Arc<AtomicBool>,
    closed: Mutex<Option<Receiver<()>>>,
}

impl SearchIndex {
    /// Opens (or creates, or rebuilds) the index for `store` — under `data_dir/search`, or in RAM
    /// without a data dir — and starts its writer thread. Returns the index and the store to hand
    /// to the actors: the same store, feeding its changes to the writer.
    pub fn open(data_dir: Option<&Path>, store: Store) -> Result<(SearchIndex, Store), SearchError> {
        let (schema, fields) = schema::schema();
        let (index, marker, rebuild) = match data_dir {
            None => (Index::create_in_ram(schema), None, true),
            Some(dir) => {
                let dir = dir.join("search");
                let marker = dir.join(VERSION_FILE);
                let current = std::fs::read_to_string(&marker).ok().is_some_and(|v| v.trim() == INDEX_VERSION.to_string());
                let opened = if current { Index::open_in_dir(&dir).ok().filter(|i| i.schema() == schema) } else { None };
                match opened {
                    Some(index) => {
                        // Trusted until a clean close writes the marker again (see `writer.rs`).
                        std::fs::remove_file(&marker)?;
                        (index, Some(marker), false)
                    }
                    None => {
                        if dir.exists() {
                            std::fs::remove_dir_all(&dir)?;
                        }
                        std::fs::create_dir_all(&dir)?;
                        (Index::create_in_dir(&dir, schema)?, Some(marker), true)
                    }
                }
            }
        };
        let reader: IndexReader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        // A writer of this directory closing in this process (a broker restarted in-process)
        // lets go of its lock within moments.
        let started = std::time::Instant::now();
        let writer = loop {
            match index.writer_with_num_threads(1, WRITER_BUDGET) {
                Err(tantivy::TantivyError::LockFailure(..)) if started.elapsed() < Duration::from_secs(3) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        let closing = Arc::new(AtomicBool::new(false));
        let (closed_tx, closed) = std::sync::mpsc::channel();
        let parser = QueryParser::for_index(&index, vec![fields.text, fields.msg_type]);
        let (feed, changes) = Feed::new();
        let w = writer::Writer {
            writer,
            reader: reader.clone(),
            fields,
            store: store.clone(),
            changes,
            dropped: feed.dropped_counter(),
            marker,
            rebuild,
            closing: Arc::clone(&closing),
            closed: closed_tx,
        };
        std::thread::Builder::new().name("search-writer".into()).spawn(move || w.run())?;
        let search = SearchIndex { inner: Arc::new(Inner { reader, parser, fields, closing, closed: Mutex::new(Some(closed)) }) };
        Ok((search, store.with_feed(feed)))
    }

    /// Stops the writer: what the feed still holds is indexed and committed, and an index on disk
    /// that missed nothing is marked complete, so the next start uses it as it is. Blocks for at
    /// most `within` (shutdown calls it off the event loop); later changes are not indexed.
    pub fn close(&self, within: Duration) {
        self.inner.closing.store(true, Ordering::Release);
        if let Some(closed) = self.inner.closed.lock().take() {
            if closed.recv_timeout(within).is_err() {
                tracing::warn!(actor = NAME, "search: the index writer did not finish in time; the index is rebuilt at the next start");
            }
        }
    }

    /// `history.search` for `caller` (with its credentials when authentication is on): one page
    /// of the hits it may read, best first.
    pub fn search(&self, store: &Store, caller: &str, identity: Option<&Identity>, q: &SearchQuery) -> Result<Value, RoomError> {
        let i = &self.inner;
        query::run(&i.reader, &i.parser, &i.fields, store, caller, identity, q)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use agent_bridge_protocol::{Message, Payload, Priority, Timestamp};

    use super::*;
    use crate::store::{Batch, Stream};

    fn msg(seq: u64, text: &str) -> Message {
        Message {
            id: format!("msg-{seq}"),
            seq,
            from: "alice".into(),
            to: Some("bob".into()),
            room: None,
            msg_type: "note".into(),
            payload: Payload::from_serialize(&serde_json::json!({ "text": text })),
            timestamp: Timestamp::now(),
            priority: Priority::Normal,
            requires_ack: false,
            correlation_id: None,
            expires_at: None,
            thread_id: None,
        }
    }

    fn query(q: &str) -> SearchQuery {
        SearchParams { query: q.into(), room: None, with: None, from: None, msg_type: None, since: None, until: None, limit: None, cursor: None }
            .check()
            .expect("valid")
    }

    /// Waits (bounded) until bob's search for `q` has `n` hits.
    fn hits(index: &SearchIndex, store: &Store, q: &str, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = index.search(store, "bob", None, &query(q)).expect("search")["count"].as_u64();
            if got == Some(n) {
                return;
            }
            assert!(Instant::now() < deadline, "{q}: {got:?} hits, not {n}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn docs(index: &SearchIndex) -> u64 {
        index.inner.reader.searcher().num_docs()
    }

    #[test]
    fn stored_messages_are_indexed_removed_ones_leave_and_a_clean_close_keeps_the_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(None, None).expect("store");
        let (index, fed) = SearchIndex::open(Some(dir.path()), store.clone()).expect("open");
        let mut b = Batch::default();
        b.message(Stream::Inbox("bob"), &msg(1, "the quick brown fox")).expect("msg");
        b.message(Stream::Inbox("bob"), &msg(2, "a lazy dog")).expect("msg");
        fed.apply(b).expect("apply");
        hits(&index, &fed, "fox OR dog", 2);
        let mut b = Batch::default();
        b.remove_message(Stream::Inbox("bob"), &msg(1, "the quick brown fox"));
        fed.apply(b).expect("apply");
        let deadline = Instant::now() + Duration::from_secs(10);
        while docs(&index) != 1 {
            assert!(Instant::now() < deadline, "the removed message left the index itself");
            std::thread::sleep(Duration::from_millis(20));
        }
        index.close(Duration::from_secs(10));
        assert!(dir.path().join("search").join(VERSION_FILE).exists(), "a clean close marks the index complete");

        // Reopened: used as it is (no rebuild: the store it is given here is empty).
        let (again, _) = SearchIndex::open(Some(dir.path()), Store::open(None, None).expect("store")).expect("reopen");
        assert_eq!(docs(&again), 1);
        assert!(!dir.path().join("search").join(VERSION_FILE).exists(), "open takes the marker away until the next clean close");
        again.close(Duration::from_secs(10));

        // Another version: rebuilt from the store (message 2, and 7 written since).
        std::fs::write(dir.path().join("search").join(VERSION_FILE), "0").expect("write");
        let mut b = Batch::default();
        b.message(Stream::Inbox("bob"), &msg(7, "rebuilt from the store")).expect("msg");
        store.apply(b).expect("apply");
        let (rebuilt, fed) = SearchIndex::open(Some(dir.path()), store).expect("rebuild");
        hits(&rebuilt, &fed, "rebuilt", 1);
        hits(&rebuilt, &fed, "fox OR dog", 1);
        rebuilt.close(Duration::from_secs(10));
    }
}
