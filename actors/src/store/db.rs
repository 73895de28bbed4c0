//! The [`Store`] handle (its trees: sled's in a data directory, [`super::kv::MemTree`]s in memory), [`StoreError`], opening, and the
//! group-commit entry point [`Store::commit`]. Every other file of the store adds its queries to
//! `Store` in an `impl` of its own and names this file for the type: nothing here names them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::oneshot;

use super::disk::{Disk, Open, SledTree, KEYS_TREE};
use super::changes::Feed;
use super::kv::Tree;

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
    /// The data directory's database could not be opened: the problem in words, then sled's error.
    #[error("cannot open the store in {path}: {problem}")]
    Open { path: String, problem: String },
}

impl StoreError {
    /// The store cannot read or write right now (an I/O error: disk full, read-only, being
    /// reopened): retryable, answered `unavailable` (503), unlike a corrupt record.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Sled(sled::Error::Io(_)))
    }
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
    /// Agent registrations (`agents.rs`).
    pub(super) agents: Tree,
    /// Tasks (`agents.rs`).
    pub(super) tasks: Tree,
    /// The sled database (reopenable, see `disk.rs`) and its group-commit thread; `None` for
    /// `--in-memory`, whose trees are [`MemTree`](super::kv::MemTree)s: nothing survives the
    /// process, so nothing is flushed.
    pub(super) disk: Option<Arc<Disk>>,
    /// Where applied batches report their messages (the search index), if anything follows them.
    pub(super) feed: Option<Feed>,
}

impl Store {
    /// Opens (or creates) the store in `dir` (sled); `None` gives a temporary store held in
    /// memory only, gone when the last handle is dropped.
    /// `background_flush` is sled's own periodic flush (used when commits are not awaited).
    pub fn open(dir: Option<&Path>, background_flush: Option<Duration>) -> Result<Self, StoreError> {
        match dir {
            Some(d) => {
                let every_ms = background_flush.map(|d| d.as_millis().max(1) as u64);
                let path = d.join("db");
                let config = sled::Config::new().path(&path).flush_every_ms(every_ms);
                // sled recovers a torn tail by itself; a damaged file it cannot read may make it
                // panic rather than answer an error: either way the start-up is refused, once,
                // with the path and the problem (never a panic loop of restarts).
                let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::open_sled(config, Some(&path)))).unwrap_or_else(|panic| {
                    let what = panic.downcast_ref::<&str>().map(|s| (*s).to_owned()).or_else(|| panic.downcast_ref::<String>().cloned());
                    Err(StoreError::Corrupt(format!("sled failed reading its files: {}", what.unwrap_or_default())))
                });
                opened.map_err(|e| StoreError::Open { path: path.display().to_string(), problem: open_problem(&e) })
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
            agents: Tree::mem(),
            tasks: Tree::mem(),
            disk: None,
            feed: None,
        }
    }

    /// A sled store, with its flusher thread.
    fn open_sled(config: sled::Config, path: Option<&Path>) -> Result<Self, StoreError> {
        let config = config.mode(sled::Mode::HighThroughput).cache_capacity(CACHE_BYTES);
        let open = Open::new(&config, path)?;
        let disk = Disk::new(config, path.map(Path::to_path_buf), open);
        super::flusher::start(&disk);
        let tree = |name: &str| Tree::Sled(SledTree::new(&disk, name));
        Ok(Store {
            streams: tree("streams"),
            acks: tree("acks"),
            dead: tree("dead"),
            archive: tree("archive"),
            rooms: tree("rooms"),
            files: tree("files"),
            keys: tree(KEYS_TREE),
            records: {
                let mut trees = Vec::new();
                for name in RECORD_TREES {
                    trees.push(tree(name));
                }
                trees.try_into().map_err(|_| StoreError::Corrupt("integration trees".into()))?
            },
            agents: tree("agents"),
            tasks: tree("tasks"),
            disk: Some(disk),
            feed: None,
        })
    }

    /// A sled store in a temporary directory: the store's tests run on both backends.
    #[cfg(test)]
    pub(super) fn open_sled_temporary() -> Self {
        Self::open_sled(sled::Config::new().temporary(true), None).expect("temporary sled store")
    }

    /// Flushes everything written so far to disk, now, on the caller's thread: for the command
    /// line and shutdown; a running broker waits on [`Store::commit`] instead.
    pub fn flush(&self) -> Result<usize, StoreError> {
        match &self.disk {
            Some(disk) => Ok(disk.flush()?),
            None => Ok(0),
        }
    }

    /// This store, reporting every applied batch's messages to `feed` (set before the handle is
    /// cloned for the actors).
    pub fn with_feed(mut self, feed: Feed) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Bytes the database occupies on disk (0 in memory, or while it is being reopened).
    pub fn size_on_disk(&self) -> u64 {
        self.disk.as_ref().map_or(0, |disk| disk.size_on_disk().unwrap_or(0))
    }

    /// Whether the store takes writes: always in memory; on disk, unless a write or a flush failed
    /// and the database has not been reopened since (the flusher retries with backoff, and also
    /// probes an idle store with a small write every few seconds). Read without I/O: what
    /// `/health/ready` answers.
    pub fn writable(&self) -> bool {
        self.disk.as_ref().is_none_or(|disk| disk.writable())
    }

    /// Times the database was reopened after a write failure since it was opened.
    pub fn reopened(&self) -> u64 {
        self.disk.as_ref().map_or(0, |disk| disk.reopened.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// What an error opening the database means for the operator.
fn open_problem(e: &StoreError) -> String {
    use std::io::ErrorKind;
    let StoreError::Sled(sled::Error::Io(io)) = e else {
        let corrupt = matches!(e, StoreError::Corrupt(_) | StoreError::Sled(sled::Error::Corruption { .. }));
        return if corrupt {
            format!("its files are damaged beyond what sled recovers ({e}); restore a backup, or move the directory aside to start with an empty store")
        } else {
            e.to_string()
        };
    };
    let os = io.raw_os_error();
    if io.kind() == ErrorKind::PermissionDenied || os == Some(30) {
        format!("the data directory is read-only or not writable ({io}); the broker needs to write there")
    } else if os == Some(28) {
        format!("the disk is full ({io}); free space and start again")
    } else if io.to_string().contains("could not acquire lock") {
        format!("another process has it open ({io}); stop it first, or use another data_dir")
    } else {
        format!("{io}")
    }
}

impl Store {
    /// Resolves once everything written before this call is on disk (an error if the flush failed).
    /// A temporary store has no disk to wait for: it resolves at once.
    pub fn commit(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        match &self.disk {
            Some(disk) => {
                disk.waiters.lock().push(tx);
                disk.wake.notify_one();
            }
            None => {
                let _ = tx.send(());
            }
        }
        rx
    }
}
