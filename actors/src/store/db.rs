//! The [`Store`] handle (the sled database and its trees), [`StoreError`], opening, and the
//! group-commit entry point [`Store::commit`]. Every other file of the store adds its queries to
//! `Store` in an `impl` of its own and names this file for the type: nothing here names them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::oneshot;

use super::flusher::Flusher;

/// The sled tree of API key records.
pub const KEYS_TREE: &str = "keys";

/// sled's page cache, in bytes (sled's default is 1 GiB). What does not fit is read back from the
/// store's file; with a larger cache an in-memory broker held every message of a burst in RSS
/// until retention removed it (issue 9: RSS after a burst).
pub const CACHE_BYTES: u64 = 16 << 20;

/// Storage failures.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// A value written by a newer build, in a layout this one does not know.
    #[error(
        "a stored {what} has format version {version}, newer than this build reads (up to {supported}): \
         it was written by a newer agent-bridge; run that version, or restore a backup made for this one"
    )]
    Format { what: &'static str, version: u8, supported: u8 },
}

/// Handle to the database; cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct Store {
    pub(super) db: sled::Db,
    pub(super) streams: sled::Tree,
    pub(super) acks: sled::Tree,
    pub(super) dead: sled::Tree,
    pub(super) archive: sled::Tree,
    pub(super) rooms: sled::Tree,
    pub(super) files: sled::Tree,
    pub(super) keys: sled::Tree,
    pub(super) flusher: Arc<Flusher>,
    /// `--in-memory`: nothing survives the process, so nothing is flushed.
    pub(super) temporary: bool,
}

impl Store {
    /// Opens (or creates) the store in `dir`; `None` gives a temporary store removed on drop.
    /// `background_flush` is sled's own periodic flush (used when commits are not awaited).
    pub fn open(dir: Option<&Path>, background_flush: Option<Duration>) -> Result<Self, StoreError> {
        let config = match dir {
            Some(d) => sled::Config::new().path(d.join("db")),
            None => sled::Config::new().temporary(true),
        }
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(CACHE_BYTES);
        let temporary = dir.is_none();
        let background_flush = if temporary { None } else { background_flush };
        let config = config.flush_every_ms(background_flush.map(|d| d.as_millis().max(1) as u64));
        let db = config.open()?;
        Ok(Store {
            streams: db.open_tree("streams")?,
            acks: db.open_tree("acks")?,
            dead: db.open_tree("dead")?,
            archive: db.open_tree("archive")?,
            rooms: db.open_tree("rooms")?,
            files: db.open_tree("files")?,
            keys: db.open_tree(KEYS_TREE)?,
            flusher: Flusher::start(db.clone()),
            db,
            temporary,
        })
    }

    /// Flushes everything written so far to disk, now, on the caller's thread: for the command
    /// line and shutdown; a running broker waits on [`Store::commit`] instead.
    pub fn flush(&self) -> Result<usize, StoreError> {
        Ok(self.db.flush()?)
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl Store {
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
}
