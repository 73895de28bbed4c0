//! Group commit: the flusher thread. Writes land in sled's page cache at once; [`Store::commit`]
//! registers a waiter that fires after the next flush to disk. The thread takes every waiter
//! registered so far, flushes once, and releases them all: one `fsync` for many writes, and never
//! on the caller's thread (an actor's event loop, or an HTTP worker).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

/// The shortest time between two group-commit flushes.
const GROUP_COMMIT_INTERVAL: Duration = Duration::from_millis(2);

/// How long the idle thread sleeps before checking whether every [`Store`] handle is gone.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Waiters for the next flush, shared by every clone of a [`Store`] and its flusher thread.
pub(super) struct Flusher {
    pub(super) waiters: Mutex<Vec<oneshot::Sender<()>>>,
    pub(super) wake: Condvar,
}

impl Flusher {
    /// Starts the flusher thread of `db`. The thread holds the database (and its file lock) until
    /// the last [`Store`] handle is dropped.
    pub(super) fn start(db: sled::Db) -> Arc<Flusher> {
        let flusher = Arc::new(Flusher { waiters: Mutex::new(Vec::new()), wake: Condvar::new() });
        let shared = Arc::clone(&flusher);
        let spawned = std::thread::Builder::new().name("store-flush".into()).spawn(move || run(&shared, &db));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "starting the store flusher");
        }
        flusher
    }
}

fn run(flusher: &Arc<Flusher>, db: &sled::Db) {
    loop {
        // Flushes at most every GROUP_COMMIT_INTERVAL: back-to-back fsyncs starve sled's writers
        // (the router's batches stall behind them), a short pause groups more.
        let started = Instant::now();
        let batch = {
            let mut waiters = flusher.waiters.lock();
            while waiters.is_empty() {
                // Every Store handle is gone: stop, releasing the database (and its lock).
                if Arc::strong_count(flusher) == 1 {
                    return;
                }
                flusher.wake.wait_for(&mut waiters, IDLE_POLL);
            }
            std::mem::take(&mut *waiters)
        };
        let flushing = Instant::now();
        let flushed = db.flush();
        crate::metrics::metrics().store_flush.observe(flushing.elapsed().as_secs_f64());
        match flushed {
            Ok(_) => {
                for w in batch {
                    let _ = w.send(());
                }
            }
            // Dropping the senders tells every waiter that durability failed.
            Err(e) => tracing::error!(error = %e, waiters = batch.len(), "store flush failed"),
        }
        if let Some(rest) = GROUP_COMMIT_INTERVAL.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}
