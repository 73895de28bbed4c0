//! Group commit and recovery: the flusher thread. Writes land in sled's page cache at once;
//! [`Store::commit`] registers a waiter that fires after the next flush to disk. The thread takes
//! every waiter registered so far, flushes once, and releases them all: one `fsync` for many
//! writes, and never on the caller's thread (an actor's event loop, or an HTTP worker).
//!
//! When a flush fails (disk full, a read-only remount, an I/O error), the waiters are dropped
//! (their writes are answered `unavailable`), the disk is marked unwritable and closed, and this
//! thread opens it again with backoff until a probe write is flushed (see `disk.rs`). While the
//! broker is idle it probes every [`PROBE_INTERVAL`], so readiness notices a disk that stopped
//! taking writes even when nobody sends.
//!
//! [`Store::commit`]: super::Store::commit

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::disk::{Disk, Open};

/// The shortest time between two group-commit flushes.
const GROUP_COMMIT_INTERVAL: Duration = Duration::from_millis(2);

/// How long the idle thread sleeps before checking whether every [`Store`](super::Store) handle is gone.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How often an idle store is probed with a small write.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// The first and the longest pause between two attempts to reopen a failed store.
const REOPEN_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// Starts the flusher thread of `disk`. The thread holds the disk (and so the database's file
/// lock) until the last [`Store`](super::Store) handle is dropped.
pub(super) fn start(disk: &Arc<Disk>) {
    let shared = Arc::clone(disk);
    let spawned = std::thread::Builder::new().name("store-flush".into()).spawn(move || run(&shared));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "starting the store flusher");
    }
}

fn run(disk: &Arc<Disk>) {
    let mut last_flush = Instant::now();
    loop {
        // Flushes at most every GROUP_COMMIT_INTERVAL: back-to-back fsyncs starve sled's writers
        // (the router's batches stall behind them), a short pause groups more.
        let started = Instant::now();
        let batch = {
            let mut waiters = disk.waiters.lock();
            while waiters.is_empty() && !disk.failed_writes() {
                // Every Store handle is gone: stop, releasing the database (and its lock).
                if Arc::strong_count(disk) == 1 {
                    return;
                }
                if last_flush.elapsed() >= PROBE_INTERVAL {
                    break;
                }
                disk.wake.wait_for(&mut waiters, IDLE_POLL);
            }
            std::mem::take(&mut *waiters)
        };
        let flushing = Instant::now();
        let flushed = if disk.failed_writes() {
            Err(super::disk::unavailable())
        } else if batch.is_empty() {
            disk.timed(|| disk.with_open(Open::probe).unwrap_or_else(|| Err(super::disk::unavailable())))
        } else {
            disk.timed(|| disk.flush().map(drop))
        };
        crate::metrics::metrics().store_flush.observe(flushing.elapsed().as_secs_f64());
        last_flush = Instant::now();
        match flushed {
            Ok(()) => {
                for w in batch {
                    let _ = w.send(());
                }
            }
            Err(e) => {
                // Dropping the senders tells every waiter that durability failed.
                tracing::error!(error = %e, waiters = batch.len(), "store flush failed");
                drop(batch);
                disk.failed(&e);
                if !reopen(disk) {
                    return;
                }
            }
        }
        if let Some(rest) = GROUP_COMMIT_INTERVAL.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// Closes the database and opens it again, with backoff, until a probe write is flushed.
/// Waiters that arrive meanwhile are answered at once (dropped: not durable). False when every
/// store handle is gone.
fn reopen(disk: &Arc<Disk>) -> bool {
    disk.close();
    let mut pause = REOPEN_BACKOFF.0;
    let mut attempts = 0u32;
    loop {
        let deadline = Instant::now() + pause;
        while Instant::now() < deadline {
            drop(std::mem::take(&mut *disk.waiters.lock()));
            if Arc::strong_count(disk) == 1 {
                return false;
            }
            std::thread::sleep(IDLE_POLL.min(pause));
        }
        attempts += 1;
        // Every other handle on the old database has to be gone before sled can lock its files
        // again; an operation in progress holds one only for its own duration.
        match Open::new(&disk.config, disk.path.as_deref()).and_then(|open| open.probe().map(|()| open)) {
            Ok(open) => {
                disk.install(open);
                tracing::warn!(attempts, "the store takes writes again: reopened");
                return true;
            }
            Err(e) => {
                if attempts == 1 || attempts.is_power_of_two() {
                    tracing::warn!(attempts, error = %e, "the store still cannot write; retrying");
                }
                pause = (pause * 2).min(REOPEN_BACKOFF.1);
            }
        }
    }
}
