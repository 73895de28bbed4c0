//! The [`Store`] handle (its trees: sled's in a data directory, [`super::kv::MemTree`]s in memory), [`StoreError`], opening, and the
//! group-commit entry point [`Store::commit`]. Every other file of the store adds its queries to
//! `Store` in an `impl` of its own and names this file for the type: nothing here names them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::oneshot;

use super::flusher::Flusher;
use super::kv::Tree;

/// The sled tree of API key records.
pub const KEYS_TREE: &str = "keys";

/// sled's page cache, in bytes (sled's default is 1 GiB). What does not fit is read back from the
/// store's file; with a larger cache a broker held every message of a burst in RSS until
/// retention removed it (issue 9: RSS after a burst). An in-memory store does not use sled.
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

/// The trees of the integrations' record collections, in the order of `store::Records`.
pub(super) const RECORD_TREES: [&str; 6] = ["webhooks", "webhook_failures", "email", "email_failures", "github", "github_failures"];

/// Handle to the database; cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct Store {
    pub(super) streams: Tree,
    pub(super) acks: Tree,
    pub(super) dead: Tree,
    pub(super) archive: Tree,
    pub(super) rooms: Tree,
    pub(super) files: Tree,
    pub(super) keys: Tree,
    /// The integrations' collections ([`RECORD_TREES`]), indexed by `store::Records`.
    pub(super) records: [Tree; 6],
    /// The sled database and its group-commit thread; `None` for `--in-memory`, whose trees are
    /// [`MemTree`](super::kv::MemTree)s: nothing survives the process, so nothing is flushed.
    pub(super) disk: Option<Disk>,
}

/// What a store in a data directory has besides its trees.
#[derive(Clone)]
pub(super) struct Disk {
    pub(super) db: sled::Db,
    pub(super) flusher: Arc<Flusher>,
}

impl Store {
    /// Opens (or creates) the store in `dir` (sled); `None` gives a temporary store held in
    /// memory only, gone when the last handle is dropped.
    /// `background_flush` is sled's own periodic flush (used when commits are not awaited).
    pub fn open(dir: Option<&Path>, background_flush: Option<Duration>) -> Result<Self, StoreError> {
        match dir {
            Some(d) => {
                let every_ms = background_flush.map(|d| d.as_millis().max(1) as u64);
                Self::open_sled(sled::Config::new().path(d.join("db")).flush_every_ms(every_ms))
            }
            None => Ok(Self::in_memory()),
        }
    }

    /// A store of [`MemTree`](super::kv::MemTree)s.
    fn in_memory() -> Self {
        Store {
            streams: Tree::mem(),
            acks: Tree::mem(),
            dead: Tree::mem(),
            archive: Tree::mem(),
            rooms: Tree::mem(),
            files: Tree::mem(),
            keys: Tree::mem(),
            records: std::array::from_fn(|_| Tree::mem()),
            disk: None,
        }
    }

    /// A sled store, with its flusher thread.
    fn open_sled(config: sled::Config) -> Result<Self, StoreError> {
        let db = config.mode(sled::Mode::HighThroughput).cache_capacity(CACHE_BYTES).open()?;
        let tree = |name: &str| db.open_tree(name).map(Tree::Sled);
        Ok(Store {
            streams: tree("streams")?,
            acks: tree("acks")?,
            dead: tree("dead")?,
            archive: tree("archive")?,
            rooms: tree("rooms")?,
            files: tree("files")?,
            keys: tree(KEYS_TREE)?,
            records: {
                let mut trees = Vec::new();
                for name in RECORD_TREES {
                    trees.push(tree(name)?);
                }
                trees.try_into().map_err(|_| StoreError::Corrupt("integration trees".into()))?
            },
            disk: Some(Disk { flusher: Flusher::start(db.clone()), db }),
        })
    }

    /// A sled store in a temporary directory: the store's tests run on both backends.
    #[cfg(test)]
    pub(super) fn open_sled_temporary() -> Self {
        Self::open_sled(sled::Config::new().temporary(true)).expect("temporary sled store")
    }

    /// Flushes everything written so far to disk, now, on the caller's thread: for the command
    /// line and shutdown; a running broker waits on [`Store::commit`] instead.
    pub fn flush(&self) -> Result<usize, StoreError> {
        match &self.disk {
            Some(disk) => Ok(disk.db.flush()?),
            None => Ok(0),
        }
    }

    /// Bytes the database occupies on disk (0 in memory).
    pub fn size_on_disk(&self) -> u64 {
        self.disk.as_ref().map_or(0, |disk| disk.db.size_on_disk().unwrap_or(0))
    }
}

impl Store {
    /// Resolves once everything written before this call is on disk (an error if the flush failed).
    /// A temporary store has no disk to wait for: it resolves at once.
    pub fn commit(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        match &self.disk {
            Some(disk) => {
                disk.flusher.waiters.lock().push(tx);
                disk.flusher.wake.notify_one();
            }
            None => {
                let _ = tx.send(());
            }
        }
        rx
    }
}
