//! The index writer: one thread of its own (`search-writer`), the only one that writes the index.
//!
//! It follows the store's change feed ([`crate::store::changes`]): for a stored message it reads
//! the message back from the store and indexes it (replacing any document with the same key, so
//! a change seen twice indexes once); for a removed one (expired, swept) it deletes the document.
//! Nothing on a router shard or a room waits for it: the feed is a bounded channel that drops
//! when the writer is that far behind. It commits in batches — [`COMMIT_EVERY`] after the first
//! uncommitted change, or at once past [`COMMIT_AFTER`] changes — and reloads the reader, so a
//! message is searchable within about a quarter of a second of being stored.
//!
//! Before following the feed it rebuilds the index from the store when asked. The index on disk
//! is trusted at start only if it carries the version marker, which the writer writes when it is
//! closed cleanly ([`super::SearchIndex::close`], at shutdown) having missed nothing, and which
//! opening removes: after a crash (changes of the last moments not committed), a start with
//! another [`INDEX_VERSION`](super::schema::INDEX_VERSION), or a run whose feed had to drop
//! changes, the next start rebuilds the index. (A search reads every hit back from the store, so
//! a missed removal never shows an expired message: it only costs a hit.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tantivy::{IndexReader, IndexWriter, TantivyDocument};
use tracing::{info, warn};

use super::schema::{document, key_term, Fields, INDEX_VERSION, NAME};
use crate::store::{Change, Store};

/// How long a change waits at most for its commit.
pub const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// Changes that make a commit at once.
pub const COMMIT_AFTER: usize = 20_000;

/// What the writer thread owns.
pub(super) struct Writer {
    pub writer: IndexWriter<TantivyDocument>,
    pub reader: IndexReader,
    pub fields: Fields,
    /// A store handle without the feed (so the writer does not keep its own channel open).
    pub store: Store,
    pub changes: Receiver<Change>,
    pub dropped: Arc<AtomicU64>,
    /// The version marker of an index on disk (`None` in memory).
    pub marker: Option<PathBuf>,
    /// Whether to rebuild from the store first.
    pub rebuild: bool,
    /// Set by [`super::SearchIndex::close`]: commit, write the marker, say so on `closed`, stop.
    pub closing: Arc<AtomicBool>,
    pub closed: Sender<()>,
}

/// How often an idle writer looks at `closing`.
const IDLE_POLL: Duration = Duration::from_millis(100);

impl Writer {
    /// Runs until closed, or until every sender of the feed is gone (the store's last handle
    /// dropped).
    pub fn run(mut self) {
        if self.rebuild {
            self.rebuild_from_store();
        }
        let mut pending = 0usize;
        let mut first_pending = Instant::now();
        let mut dropped_seen = 0;
        while !self.closing.load(Ordering::Acquire) {
            let wait = if pending == 0 { IDLE_POLL } else { COMMIT_EVERY.saturating_sub(first_pending.elapsed()).min(IDLE_POLL) };
            match self.changes.recv_timeout(wait) {
                Ok(change) => {
                    if pending == 0 {
                        first_pending = Instant::now();
                    }
                    self.apply(change);
                    pending += 1;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if pending >= COMMIT_AFTER || (pending > 0 && first_pending.elapsed() >= COMMIT_EVERY) {
                self.commit();
                pending = 0;
            }
            let dropped = self.dropped.load(Ordering::Relaxed);
            if dropped > dropped_seen {
                dropped_seen = dropped;
                warn!(actor = NAME, dropped, "search: the index fell behind and missed messages; it is rebuilt at the next start");
            }
        }
        // What is still queued was stored before the close: index it too.
        while let Ok(change) = self.changes.try_recv() {
            self.apply(change);
        }
        let committed = self.commit();
        if committed && self.dropped.load(Ordering::Relaxed) == 0 {
            if let Some(marker) = &self.marker {
                if let Err(e) = std::fs::write(marker, INDEX_VERSION.to_string()) {
                    warn!(actor = NAME, error = %e, "search: writing the index version failed");
                }
            }
        }
        // The index writer (and its lock on the directory) goes before the close is confirmed.
        let closed = self.closed.clone();
        drop(self);
        let _ = closed.send(());
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Stored(stream, seq) => match self.store.get(stream.as_stream(), seq) {
                Ok(Some(msg)) => {
                    self.writer.delete_term(key_term(&self.fields, &stream, seq));
                    if let Err(e) = self.writer.add_document(document(&self.fields, &stream, &msg)) {
                        warn!(actor = NAME, error = %e, "search: indexing a message failed");
                    }
                }
                // Removed again before the writer got to it (its removal follows in the feed).
                Ok(None) => {}
                Err(e) => warn!(actor = NAME, error = %e, "search: reading a stored message failed"),
            },
            Change::Removed(stream, seq) => {
                self.writer.delete_term(key_term(&self.fields, &stream, seq));
            }
        }
    }

    /// Commits and reloads the reader; whether the commit succeeded.
    fn commit(&mut self) -> bool {
        if let Err(e) = self.writer.commit() {
            warn!(actor = NAME, error = %e, "search: index commit failed");
            return false;
        }
        if let Err(e) = self.reader.reload() {
            warn!(actor = NAME, error = %e, "search: index reload failed");
        }
        true
    }

    /// Indexes every stored message again.
    fn rebuild_from_store(&mut self) {
        let started = Instant::now();
        if let Err(e) = self.writer.delete_all_documents() {
            warn!(actor = NAME, error = %e, "search: clearing the index failed");
        }
        let mut indexed = 0u64;
        for item in self.store.all_messages() {
            match item {
                Ok((stream, msg)) => {
                    if let Err(e) = self.writer.add_document(document(&self.fields, &stream, &msg)) {
                        warn!(actor = NAME, error = %e, "search: indexing a message failed");
                    }
                    indexed += 1;
                }
                Err(e) => warn!(actor = NAME, error = %e, "search: a stored message is unreadable, not indexed"),
            }
        }
        self.commit();
        info!(actor = NAME, messages = indexed, ms = started.elapsed().as_millis() as u64, "search index rebuilt");
    }
}
