//! `AckTracker`: every message sent with `require_ack`, from delivery to acknowledgement.
//!
//! Owns: the pending set (in memory, rebuilt from the store's queue on start and restart), the
//! redelivery timers and the attempt counts. Life of a message: `Track` (stored) → `Delivered`
//! (handed to a session: a `delivered` receipt to the sender on the first one, a timer armed with
//! exponential backoff) → either `Acknowledge` (dequeued, flushed, then an `acked` receipt) or the
//! timer fires: `Redeliver` through the router (same id, same seq) until `max_attempts`, then the
//! message is dead-lettered and the sender gets a `dead` receipt. `Expired` comes from the router or
//! the sweeper and ends with an `expired` receipt.
//!
//! Sent by: router shards, sessions (acks, nacks), the HTTP API, the TtlSweeper. Supervised by the
//! root (permanent, critical), on its own arbiter.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use actix::prelude::*;
use agent_bridge_protocol::frames::{Receipt, ReceiptStatus};
use agent_bridge_protocol::{Priority, ServerFrame, Timestamp};
// tokio's clock (the same as std's unless a test pauses time): the timers are testable with
// `tokio::time::pause()`, like the `run_interval` that fires them.
use tokio::time::Instant;
use tracing::{debug, error, warn};

pub use crate::messages::tracker::*;
use crate::delivery::Note;
use crate::events::{BridgeEvent, EventKind};
use crate::delivery::PoolTag;
use crate::messages::{NotifyClient, PoolDirectory, PoolOutcome, PoolSettled, PoolWithdraw, Redeliver, Settled, Shards, Withdrawn};
use crate::metrics::metrics;
use crate::store::{Batch, DeadLetter, Store, StoreError, Stream};
use crate::supervisor::{supervisee, ChildHandle, Refused, Supervisee};

/// Redelivery settings.
#[derive(Debug, Clone)]
pub struct AckConfig {
    /// Wait for an ack this long after the first delivery; doubled after each further one.
    pub timeout: Duration,
    /// The longest wait between deliveries.
    pub backoff_max: Duration,
    /// Deliveries before a message is dead-lettered.
    pub max_attempts: u32,
}

impl Default for AckConfig {
    fn default() -> Self {
        AckConfig { timeout: Duration::from_secs(30), backoff_max: Duration::from_secs(300), max_attempts: 5 }
    }
}

impl AckConfig {
    /// The wait after the `attempts`-th delivery.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.timeout.saturating_mul(factor).min(self.backoff_max)
    }
}

type Key = (String, u64);

struct Entry {
    priority: Priority,
    message_id: String,
    from: String,
    attempts: u32,
    due: Option<Instant>,
    /// A pool send (its balancer is told how it ends) and its first delivery (for the latency).
    pool: Option<PoolTag>,
    first_delivery: Option<Instant>,
}

/// Tracks acknowledgements and drives redelivery.
pub struct AckTracker {
    /// Supervision link.
    child: ChildHandle,
    /// Queue entries, attempt counts, dead letters.
    store: Store,
    config: AckConfig,
    /// The router shards (redeliveries, settlements, receipts).
    router: Shards,
    /// Messages waiting for an ack.
    entries: HashMap<Key, Entry>,
    /// Message id → key, for acks.
    by_id: HashMap<String, Key>,
    /// Armed redelivery timers.
    timers: BTreeSet<(Instant, String, u64)>,
    /// Settlements waiting for the next batch write.
    pending: Settling,
    /// The pools' balancers, told how their require-ack messages end.
    pools: PoolDirectory,
}

/// Settled entries not written yet, and the receipts that follow their flush.
#[derive(Default)]
struct Settling {
    batch: Batch,
    clear_attempts: Vec<Key>,
    settled: Vec<Key>,
    receipts: Vec<(String, String, ReceiptStatus, String)>,
    scheduled: bool,
}

/// Write the pending settlements. Sent by the tracker to itself.
#[derive(Message)]
#[rtype(result = "()")]
struct WriteSettled;

impl AckTracker {
    pub const NAME: &'static str = "ack_tracker";

    pub fn new(child: ChildHandle, store: Store, config: AckConfig, router: Shards) -> Self {
        AckTracker {
            child,
            store,
            config,
            router,
            entries: HashMap::new(),
            by_id: HashMap::new(),
            timers: BTreeSet::new(),
            pending: Settling::default(),
            pools: PoolDirectory::default(),
        }
    }

    /// Tells the pools' balancers how their messages end (`Broker::start`).
    pub fn with_pools(mut self, pools: PoolDirectory) -> Self {
        self.pools = pools;
        self
    }

    /// Tells a pool message's balancer how it ended for `member`.
    fn pool_settled(&self, entry: &Entry, member: &str, outcome: PoolOutcome) {
        if let Some(tag) = &entry.pool {
            if let Some(port) = self.pools.get(&tag.pool) {
                port.settled.do_send(PoolSettled { ticket: tag.ticket, member: member.to_owned(), outcome });
            }
        }
    }

    /// Rebuilds the pending set from the store; every entry gets a timer so that connected
    /// recipients are redelivered to soon.
    fn rebuild(&mut self) -> Result<(), StoreError> {
        self.entries.clear();
        self.by_id.clear();
        self.timers.clear();
        let due = Instant::now() + self.config.timeout;
        for q in self.store.unacked()? {
            let attempts = self.store.attempts(&q.client, q.seq)?;
            self.by_id.insert(q.entry.message_id.clone(), (q.client.clone(), q.seq));
            self.timers.insert((due, q.client.clone(), q.seq));
            let entry = Entry { priority: q.priority, message_id: q.entry.message_id, from: q.entry.from, attempts, due: Some(due), pool: None, first_delivery: None };
            self.entries.insert((q.client, q.seq), entry);
        }
        debug!(actor = AckTracker::NAME, pending = self.entries.len(), "pending acks rebuilt from the store");
        Ok(())
    }

    fn receipt(&self, to: &str, message_id: &str, status: ReceiptStatus, by: &str) {
        send_receipt(&self.router, to, message_id, status, by);
    }

    fn arm(&mut self, key: &Key, due: Option<Instant>) {
        let Some(entry) = self.entries.get_mut(key) else { return };
        if let Some(old) = entry.due.take() {
            self.timers.remove(&(old, key.0.clone(), key.1));
        }
        if let Some(due) = due {
            self.timers.insert((due, key.0.clone(), key.1));
        }
        entry.due = due;
    }

    fn delivered(&mut self, key: Key) -> Result<(), StoreError> {
        let Some(entry) = self.entries.get_mut(&key) else { return Ok(()) };
        entry.attempts += 1;
        let attempts = entry.attempts;
        if attempts == 1 {
            entry.first_delivery = Some(Instant::now());
            let (from, id) = (entry.from.clone(), entry.message_id.clone());
            self.receipt(&from, &id, ReceiptStatus::Delivered, &key.0);
        } else {
            self.store.set_attempts(&key.0, key.1, attempts)?;
            metrics().redeliveries.inc();
        }
        let due = Instant::now() + self.config.backoff(attempts);
        self.arm(&key, Some(due));
        Ok(())
    }

    /// Removes a settled entry: its dequeue joins the pending batch, the router is told now.
    fn settle(&mut self, key: &Key, ctx: &mut Context<Self>) -> Result<Option<Entry>, StoreError> {
        let Some(mut entry) = self.entries.remove(key) else { return Ok(None) };
        if let Some(old) = entry.due.take() {
            self.timers.remove(&(old, key.0.clone(), key.1));
        }
        self.by_id.remove(&entry.message_id);
        self.pending.batch.dequeue(&key.0, entry.priority, key.1);
        if entry.attempts > 1 {
            self.pending.clear_attempts.push(key.clone());
        }
        if !self.pending.scheduled {
            self.pending.scheduled = true;
            ctx.notify(WriteSettled);
        }
        // The router stops skipping it only once the dequeue is written (see write_settled), or a
        // feed in between would deliver it again.
        self.pending.settled.push(key.clone());
        Ok(Some(entry))
    }

    /// Writes the settled entries in one batch, then, after the flush, sends their receipts: an
    /// `acked` receipt promises that the ack survives a crash.
    fn write_settled(&mut self, _ctx: &mut Context<Self>) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        self.store.apply(pending.batch)?;
        for (client, seq) in &pending.clear_attempts {
            self.store.clear_attempts(client, *seq)?;
        }
        for (client_id, seq) in pending.settled {
            self.router.of(&client_id).settled.do_send(Settled { client_id, seq });
        }
        if pending.receipts.is_empty() {
            return Ok(());
        }
        // The wait for the flush is a task of the arbiter, not of this actor's context: a restart
        // drops the context's futures, and with them these receipts, although the acks are written.
        let commit = self.store.commit();
        let router = self.router.clone();
        actix::spawn(async move {
            if commit.await.is_ok() {
                for (to, id, status, by) in pending.receipts {
                    send_receipt(&router, &to, &id, status, &by);
                }
            }
        });
        Ok(())
    }

    fn acknowledge(&mut self, msg: &Acknowledge, ctx: &mut Context<Self>) -> Result<bool, StoreError> {
        let Some(key) = self.by_id.get(&msg.message_id).cloned() else { return Ok(false) };
        if key.0 != msg.client_id {
            warn!(actor = AckTracker::NAME, client_id = %msg.client_id, msg_id = %msg.message_id, "ack for another client's message ignored");
            return Ok(false);
        }
        let Some(entry) = self.settle(&key, ctx)? else { return Ok(false) };
        metrics().acks.inc();
        let latency_ms = entry.first_delivery.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0);
        self.pool_settled(&entry, &key.0, PoolOutcome::Acked { latency_ms });
        self.pending.receipts.push((entry.from, entry.message_id, ReceiptStatus::Acked, key.0));
        Ok(true)
    }

    fn dead_letter(&mut self, key: &Key, ctx: &mut Context<Self>) -> Result<(), StoreError> {
        let message = self.store.get(Stream::Inbox(&key.0), key.1)?;
        let Some(entry) = self.settle(key, ctx)? else { return Ok(()) };
        self.pool_settled(&entry, &key.0, PoolOutcome::Gone);
        let reason = format!("not acknowledged after {} deliveries", entry.attempts);
        if let Some(message) = message {
            self.publish_dead(&message, &key.0, entry.attempts, &reason);
            self.store.put_dead(&DeadLetter {
                message,
                recipient: key.0.clone(),
                attempts: entry.attempts,
                reason,
                at_ms: Timestamp::now().millis(),
            })?;
        }
        metrics().dead_letters.inc();
        warn!(actor = AckTracker::NAME, client_id = %key.0, msg_id = %entry.message_id, attempts = entry.attempts, "dead-lettered");
        self.pending.receipts.push((entry.from, entry.message_id, ReceiptStatus::Dead, key.0.clone()));
        Ok(())
    }

    /// The `dead_letter` event for integrations (see [`crate::events`]).
    fn publish_dead(&self, message: &agent_bridge_protocol::Message, recipient: &str, attempts: u32, reason: &str) {
        let bus = self.child.events();
        if bus.watched() {
            let data = serde_json::json!({ "message_id": message.id, "from": message.from, "to": recipient, "type": message.msg_type,
                                           "seq": message.seq, "attempts": attempts, "reason": reason });
            bus.publish(BridgeEvent::now(EventKind::DeadLetter, Some(recipient.to_owned()), None, data));
        }
    }

    /// Fires due timers: redeliver, or dead-letter at the attempt limit.
    fn tick(&mut self, ctx: &mut Context<Self>) -> Result<(), StoreError> {
        let now = Instant::now();
        while let Some(first) = self.timers.first().cloned() {
            if first.0 > now {
                break;
            }
            self.timers.remove(&first);
            let key = (first.1, first.2);
            let Some(entry) = self.entries.get_mut(&key) else { continue };
            entry.due = None;
            if entry.pool.is_some() {
                // A member that misses its ack loses the message: its pool gives it to another.
                if let Some(entry) = self.settle(&key, ctx)? {
                    self.pool_settled(&entry, &key.0, PoolOutcome::Missed);
                }
                continue;
            }
            if entry.attempts >= self.config.max_attempts {
                self.dead_letter(&key, ctx)?;
                continue;
            }
            let req = self.router.of(&key.0).redeliver.send(Redeliver { client_id: key.0.clone(), seq: key.1 });
            ctx.spawn(req.into_actor(self).map(move |res, act, _| {
                if !matches!(res, Ok(true)) {
                    // Nobody online: the queue feeds it at the next connect, which re-arms it.
                    act.arm(&key, None);
                }
            }));
        }
        Ok(())
    }

    /// Runs a handler body under [`Supervisee::guard`]; a store error is logged.
    fn run<R>(&mut self, ctx: &mut Context<Self>, f: impl FnOnce(&mut Self, &mut Context<Self>) -> Result<R, StoreError>) -> Option<R> {
        match self.guard(ctx, |a, ctx| Ok(f(a, ctx)?)) {
            Ok(r) => Some(r),
            Err(Refused::Error(e)) => {
                error!(actor = AckTracker::NAME, error = %e, "store error");
                None
            }
            Err(_) => None,
        }
    }
}

supervisee!(AckTracker, Refused<StoreError>, child);

/// Sends a receipt to every session of `to` (through its router shard).
fn send_receipt(router: &Shards, to: &str, message_id: &str, status: ReceiptStatus, by: &str) {
    let note = Note::new(ServerFrame::Receipt(Receipt { message_id: message_id.to_owned(), status, by: Some(by.to_owned()) }));
    router.of(to).notify.do_send(NotifyClient { client_id: to.to_owned(), note });
}

impl Actor for AckTracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 20);
        if let Err(e) = self.rebuild() {
            error!(actor = AckTracker::NAME, error = %e, "rebuilding pending acks");
        }
        let tick = (self.config.timeout / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
        ctx.run_interval(tick, |act, ctx| {
            act.run(ctx, |a, ctx| a.tick(ctx));
        });
    }
}

impl Supervised for AckTracker {
    fn restarting(&mut self, ctx: &mut Self::Context) {
        // The restart dropped the scheduled write: write what was settled before the failure.
        if self.pending.scheduled {
            if let Err(e) = self.write_settled(ctx) {
                error!(actor = AckTracker::NAME, error = %e, "writing settled acks");
            }
        }
        // `started` runs again after this and rebuilds the pending set from the store.
    }
}

impl Handler<Track> for AckTracker {
    type Result = ();
    fn handle(&mut self, msg: Track, ctx: &mut Self::Context) {
        self.run(ctx, |a, _| {
            let key = (msg.client_id, msg.seq);
            a.by_id.insert(msg.message_id.clone(), key.clone());
            // After a restart the rebuild may already have it (with its timer): keep that entry.
            a.entries.entry(key).or_insert(Entry { priority: msg.priority, message_id: msg.message_id, from: msg.from, attempts: 0, due: None, pool: msg.pool, first_delivery: None });
            Ok(())
        });
    }
}

impl Handler<Delivered> for AckTracker {
    type Result = ();
    fn handle(&mut self, msg: Delivered, ctx: &mut Self::Context) {
        self.run(ctx, |a, _| a.delivered((msg.client_id, msg.seq)));
    }
}

impl Handler<Acknowledge> for AckTracker {
    type Result = bool;
    fn handle(&mut self, msg: Acknowledge, ctx: &mut Self::Context) -> bool {
        self.run(ctx, |a, ctx| a.acknowledge(&msg, ctx)).unwrap_or(false)
    }
}

impl Handler<NegativeAck> for AckTracker {
    type Result = bool;
    fn handle(&mut self, msg: NegativeAck, ctx: &mut Self::Context) -> bool {
        self.run(ctx, |a, _| {
            let Some(key) = a.by_id.get(&msg.message_id).cloned().filter(|k| k.0 == msg.client_id) else { return Ok(false) };
            let due = Instant::now() + a.config.timeout.min(Duration::from_secs(1));
            a.arm(&key, Some(due));
            Ok(true)
        })
        .unwrap_or(false)
    }
}

impl Handler<Expired> for AckTracker {
    type Result = ();
    fn handle(&mut self, msg: Expired, ctx: &mut Self::Context) {
        self.run(ctx, |a, ctx| {
            let key = (msg.client_id, msg.seq);
            // The sweeper counts removals in bridge_messages_expired_total; here only the receipt.
            if let Some(entry) = a.settle(&key, ctx)? {
                a.pool_settled(&entry, &key.0, PoolOutcome::Gone);
                a.pending.receipts.push((entry.from, entry.message_id, ReceiptStatus::Expired, key.0));
            }
            Ok(())
        });
    }
}

impl Handler<PoolWithdraw> for AckTracker {
    type Result = ();
    fn handle(&mut self, msg: PoolWithdraw, ctx: &mut Self::Context) {
        let tickets = self
            .run(ctx, |a, ctx| {
                let keys: Vec<Key> = a
                    .entries
                    .iter()
                    .filter(|(k, e)| k.0 == msg.client_id && e.pool.as_ref().is_some_and(|t| t.pool == msg.pool))
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut tickets = Vec::with_capacity(keys.len());
                for key in keys {
                    if let Some(tag) = a.settle(&key, ctx)?.and_then(|e| e.pool) {
                        tickets.push(tag.ticket);
                    }
                }
                Ok(tickets)
            })
            .unwrap_or_default();
        msg.reply.do_send(Withdrawn { client_id: msg.client_id, tickets });
    }
}

impl Handler<WriteSettled> for AckTracker {
    type Result = ();
    fn handle(&mut self, _: WriteSettled, ctx: &mut Self::Context) {
        self.run(ctx, |a, ctx| a.write_settled(ctx));
    }
}

impl Handler<PendingCount> for AckTracker {
    type Result = usize;
    fn handle(&mut self, _: PendingCount, _ctx: &mut Self::Context) -> usize {
        self.entries.len()
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = AckConfig { timeout: Duration::from_millis(100), backoff_max: Duration::from_millis(500), max_attempts: 5 };
        let waits: Vec<u128> = (1..=5).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
    }
}
