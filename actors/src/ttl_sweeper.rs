//! `TtlSweeper`: deletes what has expired, in bounded passes, archiving first when configured.
//!
//! Owns: the archive writer. Reads the store's expiry index (`x:` keys, in time order), so a pass
//! costs only what is due. Each pass handles at most `max_per_pass` messages; when a pass is full
//! the next one follows at once, otherwise after `interval`. For each due message: archive it (an
//! `archive` tree or an NDJSON file), delete it and its queue entry, and tell the AckTracker when it
//! was still waiting for an ack (the sender gets an `expired` receipt). Old idempotency keys go too.
//!
//! Sent by: its own timer; `/admin/fault`. Supervised by the root (permanent, critical), on its own
//! arbiter: the state it needs is in the store, so a restart loses nothing.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use agent_bridge_protocol::Timestamp;
use tracing::{debug, error};

use crate::messages::{Expired, Retention};
use crate::metrics::metrics;
use crate::store::{Batch, Store, StoreError, StreamName};
use crate::supervisor::{supervisee, ChildHandle, Refused, Supervisee};

/// Where expired messages go before deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Archive {
    None,
    /// The store's `archive` tree.
    Store,
    /// One JSON message per line, appended.
    File(PathBuf),
}

/// Sweeper settings.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub interval: Duration,
    pub max_per_pass: usize,
    pub archive: Archive,
    /// Idempotency keys older than this are forgotten.
    pub idempotency_window: Duration,
    /// Retention per message type (the same as the router's).
    pub retention: Retention,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            interval: Duration::from_secs(1),
            max_per_pass: 10_000,
            archive: Archive::None,
            idempotency_window: Duration::from_secs(24 * 3600),
            retention: Retention::default(),
        }
    }
}

/// Run one pass now (tests and operators); answers how many messages it removed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct SweepNow;

/// The sweeper.
pub struct TtlSweeper {
    child: ChildHandle,
    store: Store,
    config: SweepConfig,
    /// Told about removed messages that were waiting for an ack.
    tracker: Recipient<Expired>,
    /// Open NDJSON archive, when archiving to a file.
    file: Option<BufWriter<File>>,
}

impl TtlSweeper {
    pub const NAME: &'static str = "ttl_sweeper";

    pub fn new(child: ChildHandle, store: Store, config: SweepConfig, tracker: Recipient<Expired>) -> Self {
        TtlSweeper { child, store, config, tracker, file: None }
    }

    fn archive_file(&mut self) -> std::io::Result<Option<&mut BufWriter<File>>> {
        let Archive::File(path) = &self.config.archive else { return Ok(None) };
        if self.file.is_none() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(BufWriter::new(OpenOptions::new().create(true).append(true).open(path)?));
        }
        Ok(self.file.as_mut())
    }

    /// Writes an expired message to the archive, if one is configured.
    fn archive(&mut self, msg: &agent_bridge_protocol::Message) -> Result<(), StoreError> {
        match &self.config.archive {
            Archive::None => {}
            Archive::Store => self.store.archive(msg)?,
            Archive::File(_) => match self.archive_file() {
                Ok(Some(f)) => {
                    let line = serde_json::to_string(msg).unwrap_or_default();
                    if let Err(err) = writeln!(f, "{line}") {
                        error!(actor = TtlSweeper::NAME, error = %err, "writing the archive");
                    }
                }
                Ok(None) => {}
                Err(err) => error!(actor = TtlSweeper::NAME, error = %err, "opening the archive"),
            },
        }
        Ok(())
    }

    /// One bounded pass; returns how many messages were removed and whether the pass was full.
    fn sweep(&mut self) -> Result<(usize, bool), StoreError> {
        let now = Timestamp::now().millis();
        let due = self.store.due_expiries(now, self.config.max_per_pass)?;
        let mut batch = Batch::default();
        let (mut removed, mut examined) = (0, 0usize);
        let mut stopped_early = false;
        for e in &due {
            if examined >= self.config.max_per_pass {
                stopped_early = true;
                break;
            }
            batch.remove_expiry(e);
            for seq in e.seq..=e.last_seq {
                examined += 1;
                let Some(msg) = self.store.get(e.stream.as_stream(), seq)? else { continue };
                // An index run may cover messages that expire later: they have entries of their own.
                if self.config.retention.expiry_ms(&msg).is_none_or(|at| at > now) {
                    continue;
                }
                self.archive(&msg)?;
                batch.remove_message(e.stream.as_stream(), &msg);
                if let StreamName::Inbox(client) = &e.stream {
                    batch.dequeue(client, msg.priority, msg.seq);
                    if msg.requires_ack {
                        self.tracker.do_send(Expired { client_id: client.clone(), seq: msg.seq, gone: true });
                    }
                }
                removed += 1;
            }
        }
        if let Some(f) = self.file.as_mut() {
            if let Err(err) = f.flush() {
                error!(actor = TtlSweeper::NAME, error = %err, "flushing the archive");
            }
        }
        self.store.apply(batch)?;
        let window = i64::try_from(self.config.idempotency_window.as_millis()).unwrap_or(i64::MAX);
        self.store.sweep_idempotency(now.saturating_sub(window), self.config.max_per_pass)?;
        if removed > 0 {
            metrics().expired.inc_by(removed as u64);
            debug!(actor = TtlSweeper::NAME, removed, "swept expired messages");
        }
        Ok((removed, stopped_early || due.len() >= self.config.max_per_pass))
    }

    fn pass(&mut self, ctx: &mut Context<Self>) -> usize {
        match self.guard(ctx, |s, _| Ok(s.sweep()?)) {
            Ok((n, full)) => {
                if full {
                    // A full pass: more is due; go again without waiting for the interval.
                    ctx.run_later(Duration::from_millis(1), |act, ctx| {
                        act.pass(ctx);
                    });
                }
                n
            }
            Err(Refused::Error(e)) => {
                error!(actor = TtlSweeper::NAME, error = %e, "sweep failed");
                0
            }
            Err(_) => 0,
        }
    }
}

supervisee!(TtlSweeper, Refused<StoreError>, child);

impl Actor for TtlSweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.config.interval, |act, ctx| {
            act.pass(ctx);
        });
    }
}

impl Supervised for TtlSweeper {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.file = None;
    }
}

impl Handler<SweepNow> for TtlSweeper {
    type Result = usize;
    fn handle(&mut self, _: SweepNow, ctx: &mut Self::Context) -> usize {
        self.pass(ctx)
    }
}

