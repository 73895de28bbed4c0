//! The sled database of a data directory, held so that it can be closed and opened again while
//! the broker runs: a [`Disk`] owns the open database (or nothing, while it is being reopened),
//! whether it can write, and the group commit's waiters; each [`SledTree`] of a [`Store`] names
//! one of its trees by index and takes the current one for every operation.
//!
//! Why reopen: sled keeps the first I/O error it meets (disk full, a read-only remount) as a
//! "global error" and fails every later operation with it, reads included, until the database is
//! opened again. So the flusher thread (`flusher.rs`), on a failed flush, marks the disk
//! unwritable, closes the database (its file lock goes with the last handle), and opens it again
//! with backoff until a probe write is flushed; meanwhile every operation answers an I/O error,
//! which clients see as `unavailable`. Nothing a client was told is durable is lost: only writes
//! whose flush failed (answered `unavailable`) may be missing after the reopen.
//!
//! [`Store`]: super::Store

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::oneshot;

/// The sled tree of API key records.
pub const KEYS_TREE: &str = "keys";

/// The trees of a data directory, in the order [`SledTree`] indexes them.
pub(super) const TREES: [&str; 15] = [
    "streams", "acks", "dead", "archive", "rooms", "files", KEYS_TREE, "webhooks", "webhook_failures", "email",
    "email_failures", "github", "github_failures", "agents", "tasks",
];

/// A flush running longer than this counts as a store that cannot write (readiness 503); the
/// durability waits give up at `DURABILITY_TIMEOUT` (5 s) anyway.
pub(super) const STUCK_FLUSH: Duration = Duration::from_secs(2);

/// The tree the flusher writes its probes to (not one of the [`Store`](super::Store)'s trees).
const PROBE_TREE: &str = "probe";

/// A data directory's database, reopenable.
pub(super) struct Disk {
    /// How to open it again (the path, cache size, sled's own flush interval).
    pub(super) config: sled::Config,
    /// The database's directory (`None`: a temporary database).
    pub(super) path: Option<PathBuf>,
    /// The open database; `None` while it is being reopened.
    open: RwLock<Option<Open>>,
    /// False from a failed write or flush until a probe write has been flushed again.
    writable: AtomicBool,
    /// When the flush in progress began (ms after `epoch`, 0: none): a flush that takes longer
    /// than [`STUCK_FLUSH`] makes the store count as unwritable until it returns.
    flushing_since: AtomicU64,
    epoch: Instant,
    /// Times the database was reopened after a failure.
    pub(super) reopened: AtomicU64,
    /// Waiters for the next flush (group commit), and the flusher thread's wake-up.
    pub(super) waiters: Mutex<Vec<oneshot::Sender<()>>>,
    pub(super) wake: Condvar,
}

/// An open database and its trees.
pub(super) struct Open {
    pub(super) db: sled::Db,
    trees: Vec<sled::Tree>,
    probe: sled::Tree,
    /// sled's log file, read-only, for the `fdatasync` after each flush (see [`Open::flush`]).
    log: Option<File>,
}

impl Open {
    /// Opens the database of `config` (in `path`) and every tree.
    pub(super) fn new(config: &sled::Config, path: Option<&Path>) -> sled::Result<Open> {
        let db = config.open()?;
        let trees = TREES.iter().map(|name| db.open_tree(name)).collect::<sled::Result<Vec<_>>>()?;
        let probe = db.open_tree(PROBE_TREE)?;
        let log = match path {
            Some(dir) => {
                // The directory entries of a new store must be on disk too, or a crash of the
                // filesystem forgets the files whose contents were flushed.
                for d in [Some(dir), dir.parent()].into_iter().flatten() {
                    File::open(d).and_then(|f| f.sync_all())?;
                }
                Some(File::open(dir.join("db"))?)
            }
            None => None,
        };
        Ok(Open { db, trees, probe, log })
    }

    /// Flushes sled, then `fdatasync`s its log. sled writes its log with `sync_file_range` on
    /// Linux, which makes the bytes durable but not the file's growth (its size and extents are
    /// filesystem metadata): measured on ext4, every message flushed before the filesystem went
    /// read-only was gone after the repair. `fdatasync` commits that metadata as well.
    pub(super) fn flush(&self) -> sled::Result<usize> {
        let flushed = self.db.flush()?;
        if let Some(log) = &self.log {
            log.sync_data()?;
        }
        Ok(flushed)
    }

    /// Writes a small record and flushes it: whether the disk takes writes.
    pub(super) fn probe(&self) -> sled::Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.probe.insert(b"last", &now.to_be_bytes())?;
        self.flush()?;
        Ok(())
    }
}

/// The error every operation answers while the database is closed or cannot write.
pub(super) fn unavailable() -> sled::Error {
    sled::Error::Io(std::io::Error::other("the store cannot write (it is being reopened after a write failure)"))
}

impl Disk {
    pub(super) fn new(config: sled::Config, path: Option<PathBuf>, open: Open) -> Arc<Disk> {
        Arc::new(Disk {
            config,
            path,
            open: RwLock::new(Some(open)),
            writable: AtomicBool::new(true),
            flushing_since: AtomicU64::new(0),
            epoch: Instant::now(),
            reopened: AtomicU64::new(0),
            waiters: Mutex::new(Vec::new()),
            wake: Condvar::new(),
        })
    }

    /// The database's size on disk; an error while it is closed.
    pub(super) fn size_on_disk(&self) -> sled::Result<u64> {
        self.open.read().as_ref().ok_or_else(unavailable)?.db.size_on_disk()
    }

    /// Flushes the open database ([`Open::flush`]); an error while it is closed.
    pub(super) fn flush(&self) -> sled::Result<usize> {
        self.with_open(Open::flush).unwrap_or_else(|| Err(unavailable()))
    }

    /// Tree `index` of the open database, for a read.
    fn tree(&self, index: usize) -> sled::Result<sled::Tree> {
        self.open.read().as_ref().map(|o| o.trees[index].clone()).ok_or_else(unavailable)
    }

    /// Whether writes are taken: the database is open, nothing failed since it was, and no
    /// flush has been hanging for longer than [`STUCK_FLUSH`] (a stuck disk, a hung mount).
    pub(super) fn writable(&self) -> bool {
        let since = self.flushing_since.load(Ordering::Acquire);
        let stuck = since != 0 && self.millis().saturating_sub(since) > STUCK_FLUSH.as_millis() as u64;
        self.writable.load(Ordering::Acquire) && !stuck
    }

    fn millis(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }

    /// Runs a flush (on the flusher thread), noting how long it has been running meanwhile.
    pub(super) fn timed<R>(&self, flush: impl FnOnce() -> R) -> R {
        self.flushing_since.store(self.millis(), Ordering::Release);
        let r = flush();
        self.flushing_since.store(0, Ordering::Release);
        r
    }

    /// Whether writes were refused since the last reopen (not counting a flush in progress).
    pub(super) fn failed_writes(&self) -> bool {
        !self.writable.load(Ordering::Acquire)
    }

    /// A write or a flush failed: refuse writes until the flusher has reopened the database.
    pub(super) fn failed(&self, error: &sled::Error) {
        if self.writable.swap(false, Ordering::AcqRel) {
            tracing::error!(error = %error, "the store cannot write: refusing writes until it is reopened");
            crate::metrics::metrics().store_failures.inc();
        }
        self.wake.notify_one();
    }

    /// Closes the database (drops this handle on it; sled lets go of its files with the last one).
    pub(super) fn close(&self) {
        drop(self.open.write().take());
    }

    /// Puts a freshly opened database in place and takes writes again.
    pub(super) fn install(&self, open: Open) {
        *self.open.write() = Some(open);
        self.reopened.fetch_add(1, Ordering::Relaxed);
        self.writable.store(true, Ordering::Release);
    }

    /// Runs `f` on the open database's probe, for the flusher's idle check.
    pub(super) fn with_open<R>(&self, f: impl FnOnce(&Open) -> R) -> Option<R> {
        self.open.read().as_ref().map(f)
    }
}

/// One tree of a data directory: the index of a tree of its [`Disk`], whichever database is open.
#[derive(Clone)]
pub(super) struct SledTree {
    disk: Arc<Disk>,
    index: usize,
}

impl SledTree {
    pub(super) fn new(disk: &Arc<Disk>, name: &str) -> SledTree {
        let index = TREES.iter().position(|t| *t == name).expect("a tree of TREES");
        SledTree { disk: Arc::clone(disk), index }
    }

    /// The `streams` tree of a temporary database, for the backends' tests.
    #[cfg(test)]
    pub(super) fn temporary() -> SledTree {
        let config = sled::Config::new().temporary(true);
        let open = Open::new(&config, None).expect("temporary sled");
        SledTree::new(&Disk::new(config, None, open), TREES[0])
    }

    /// The current tree, for a read.
    pub(super) fn read(&self) -> sled::Result<sled::Tree> {
        self.disk.tree(self.index)
    }

    /// The current tree, for a write: refused while the disk cannot write, so nothing is
    /// accepted into memory that could not reach the disk.
    pub(super) fn write(&self) -> sled::Result<sled::Tree> {
        if self.disk.failed_writes() {
            return Err(unavailable());
        }
        self.disk.tree(self.index)
    }

    /// A write failed: the disk is marked unwritable (sled fails everything after its first I/O
    /// error).
    pub(super) fn check<T>(&self, result: sled::Result<T>) -> sled::Result<T> {
        if let Err(e @ sled::Error::Io(_)) = &result {
            self.disk.failed(e);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::store::{Batch, Store, StoreError, Stream};

    fn message(seq: u64) -> agent_bridge_protocol::Message {
        crate::store::tests::msg(seq, agent_bridge_protocol::Priority::Normal)
    }

    fn write(store: &Store, seq: u64) -> Result<(), StoreError> {
        let mut b = Batch::default();
        b.message(Stream::Inbox("b"), &message(seq))?;
        store.apply(b)
    }

    /// After a write failure the store refuses writes at once, closes its database, opens it
    /// again (the file lock released by the last handle) and takes writes again, keeping what was
    /// flushed before.
    #[test]
    fn a_failed_store_refuses_writes_then_reopens_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(Some(dir.path()), None).expect("open");
        write(&store, 1).expect("write");
        store.commit().blocking_recv().expect("flushed");
        let disk = store.disk.clone().expect("on disk");
        disk.failed(&super::unavailable());
        assert!(!store.writable());
        let refused = write(&store, 2).expect_err("refused while failed");
        assert!(refused.is_unavailable(), "{refused}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !store.writable() {
            assert!(Instant::now() < deadline, "the store reopens within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(store.reopened(), 1);
        assert_eq!(store.get(Stream::Inbox("b"), 1).expect("read").map(|m| m.seq), Some(1), "what was flushed is there");
        write(&store, 2).expect("writes again");
        store.commit().blocking_recv().expect("flushed again");
    }
}
