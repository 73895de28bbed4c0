//! Router shards: the registry of live sessions and the hot path of every message.
//!
//! Each shard owns the client ids that hash to it: their live sessions (the registry), their inbox
//! seq counters, long-poll waiters and "last seen" times. A message to a client goes to that client's
//! shard, which assigns the next inbox `seq`, writes the message with its index entries in one atomic
//! batch (unless `persist: false`), encodes the `message` frame once and hands the same bytes to
//! every session of the recipient that keeps up. The `sent` reply waits for the group commit.
//!
//! The inbox queue (see [`crate::store`]) holds what no session has received yet, and everything that
//! waits for an acknowledgement. A session is fed from it — in priority order with aging — when it
//! connects and whenever it has fallen behind; with `since` it first replays the stream in seq order.
//!
//! Sent by: sessions and HTTP handlers (through [`RouterHandle`]), the AckTracker (redeliveries,
//! settlements, receipts). Supervised by the root (permanent, critical): after a panic `restarting()`
//! drops cached counters (reloaded from the store) and in-flight marks, and prunes sessions whose
//! mailbox has closed; the registry of live sessions survives.

mod handle;

pub use crate::messages::router::*;
pub use handle::RouterHandle;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use agent_bridge_protocol::frames::SentStatus;
use agent_bridge_protocol::{Message as Msg, Priority, Timestamp};
use tokio::sync::oneshot;
use tracing::{debug, error};

use crate::delivery::{new_message_id, Envelope, Note, Notify, Outgoing, SessionLink, Target};
use crate::messages::{Delivered, Expired, Owed, Track, TrackerLink};
use crate::metrics::metrics;
use crate::store::{Batch, IdempotencyRecord, Queued, Skip, Store, StoreError, Stream};
use crate::supervisor::{fault_handler, ChildHandle, Supervisee};

/// Most messages one feed reads from the store for a session.
const FEED_BATCH: usize = 4096;

/// How a session is fed when it is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// Replaying the stream in seq order after this seq (`since` resume).
    Stream { after: u64 },
    /// From the inbox queue, in priority order.
    Queue,
}

/// A registered session and how it is fed.
struct Live {
    link: SessionLink,
    feed: Feed,
}

#[derive(Default)]
struct ClientState {
    sessions: Vec<Live>,
    waiters: Vec<oneshot::Sender<()>>,
    last_seen: Option<Instant>,
    /// Require-ack messages handed to a session of this client and not settled yet; a feed skips
    /// them (the tracker redelivers them on its timers). Cleared when the last session leaves.
    inflight: HashSet<u64>,
    /// Per priority level, the last seq of the leading run of in-flight queue entries: queue
    /// scans start after it. Moved back whenever an entry at or below it stops being in flight.
    scan_from: [u64; 5],
}

/// What waits for the next write: one sled batch for every message routed since the last one,
/// and what may only happen once those messages are in the store (hand-overs, tracker notes,
/// long-poll wake-ups, replies). A `WriteBatch` notification, queued behind the messages already
/// in the mailbox, applies it: under load one batch carries many messages.
#[derive(Default)]
struct PendingWrites {
    batch: Batch,
    handovers: Vec<(SessionLink, Arc<Outgoing>)>,
    track: Vec<Track>,
    delivered: Vec<Delivered>,
    wake: Vec<oneshot::Sender<()>>,
    /// Replies; `true` when they must wait for the flush.
    replies: Vec<(Owed, Result<Routed, RouteError>, bool)>,
    signals: Vec<oneshot::Sender<()>>,
    /// Expiry index runs: (inbox, due second) → (first seq, last seq).
    expiries: HashMap<(String, i64), (u64, u64)>,
    /// Idempotency keys written in this batch (not yet visible in the store).
    keys: HashMap<(String, String, String), IdempotencyRecord>,
    scheduled: bool,
}

/// Apply the pending writes. Sent by a shard to itself.
#[derive(Message)]
#[rtype(result = "()")]
struct WriteBatch;

/// A router shard. Owns the registry and inboxes of its client ids.
pub struct Router {
    /// Supervision link.
    child: ChildHandle,
    /// Shared database.
    store: Store,
    /// Settings.
    config: RouterConfig,
    /// Told about every require-ack message and each of its deliveries.
    tracker: TrackerLink,
    /// Clients of this shard: sessions, waiters, presence.
    clients: HashMap<String, ClientState>,
    /// Last assigned inbox seq per client (cache of the store's counters; cleared on restart).
    seqs: HashMap<String, u64>,
    /// Writes and effects waiting for the next batch.
    pending: PendingWrites,
}

impl Router {
    pub const NAME: &'static str = "router";

    /// A shard over `store`.
    pub fn new(child: ChildHandle, store: Store, config: RouterConfig, tracker: TrackerLink) -> Self {
        Router {
            child,
            store,
            config,
            tracker,
            clients: HashMap::new(),
            seqs: HashMap::new(),
            pending: PendingWrites::default(),
        }
    }

    fn last_seq(&mut self, client: &str) -> Result<u64, StoreError> {
        if let Some(s) = self.seqs.get(client) {
            return Ok(*s);
        }
        let s = self.store.last_seq(Stream::Inbox(client))?;
        self.seqs.insert(client.to_owned(), s);
        Ok(s)
    }

    fn client(&mut self, client: &str) -> &mut ClientState {
        self.clients.entry(client.to_owned()).or_default()
    }

    /// Stores (unless `persist: false`) and hands a message to every session that keeps up, both
    /// at the next batch write. Returns (seq, delivered).
    ///
    /// A session keeps up while the message fits in its backlog (frames and bytes) and in the
    /// client's budget across all its sessions. One that does not is moved to the store-fed path
    /// (persisted messages reach it later) or, for `persist: false`, has the message counted as
    /// dropped and is told so with a `dropped` frame.
    fn deliver_to(&mut self, client: &str, env: &Envelope, id: &str, timestamp: Timestamp, ctx: &mut Context<Self>) -> Result<(u64, bool), RouteError> {
        let last = self.last_seq(client)?;
        let seq = if env.persist { last + 1 } else { last };
        let message = env.to_message(id, seq, timestamp);
        let now = Timestamp::now();
        // Plan the hand-overs first: whether anyone takes it decides whether it is queued.
        let state = self.clients.entry(client.to_owned()).or_default();
        let live = !message.is_expired(now);
        // Encode once, and only when some session may take it; the cost decides who does.
        let encode = live && state.sessions.iter().any(|l| l.link.filter.accepts(&message.msg_type) && !l.link.backlog.is_lagging());
        let (out, unsent) = if encode { (Some(Outgoing::new(message)), None) } else { (None, Some(message)) };
        let message: &Msg = match (&out, &unsent) {
            (Some(o), _) => &o.message,
            (None, Some(m)) => m,
            (None, None) => unreachable!("one of the two is set"),
        };
        let wanted = |l: &Live| l.link.filter.accepts(&message.msg_type);
        let cost = out.as_ref().map_or(0, |o| o.cost());
        let client_bytes: usize = state.sessions.iter().map(|l| l.link.backlog.bytes()).sum();
        let client_full = client_bytes > 0 && client_bytes.saturating_add(cost) > self.config.client_queue_bytes;
        let mut plan = Vec::new();
        let mut drained = Vec::new();
        if live {
            for (i, l) in state.sessions.iter().enumerate() {
                let backlog = &l.link.backlog;
                if !wanted(l) {
                    continue;
                }
                let fits = out.is_some() && !backlog.is_lagging() && !client_full && backlog.has_room(cost);
                if fits {
                    plan.push(i);
                } else if !env.persist {
                    backlog.note_dropped(now);
                    if backlog.pending() == 0 {
                        // Drained meanwhile: no delivery is coming to carry the notice.
                        if let Some(frame) = backlog.take_dropped() {
                            l.link.notify.do_send(Notify(Note::new(frame)));
                        }
                    }
                } else if !backlog.is_lagging() && backlog.start_lag() {
                    drained.push(l.link.session_id.clone());
                }
            }
        }
        let delivered = !plan.is_empty();
        let pending = &mut self.pending;
        if env.persist {
            pending.batch.message(Stream::Inbox(client), message)?;
            if !delivered || message.requires_ack {
                pending.batch.enqueue(client, message)?;
            }
            if let Some(at) = self.config.retention.expiry_ms(message) {
                // One index entry per inbox and second of expiry per batch, not one per message.
                let bucket = at.div_euclid(1000).saturating_add(1).saturating_mul(1000);
                pending
                    .expiries
                    .entry((client.to_owned(), bucket))
                    .and_modify(|(_, last)| *last = seq)
                    .or_insert((seq, seq));
            }
            if let Some(key) = &env.idempotency_key {
                let rec = IdempotencyRecord { message_id: id.to_owned(), seq: Some(seq), at_ms: timestamp.millis() };
                pending.batch.idempotency(&env.from, client, key, &rec)?;
                pending.keys.insert((env.from.clone(), client.to_owned(), key.clone()), rec);
            }
            self.seqs.insert(client.to_owned(), seq);
            if message.requires_ack {
                pending.track.push(Track {
                    client_id: client.to_owned(),
                    seq,
                    priority: message.priority,
                    message_id: id.to_owned(),
                    from: env.from.clone(),
                });
            }
        } else if state.sessions.is_empty() {
            metrics().dropped.with_label_values(&["no_recipient_online"]).inc();
        }
        let state = self.clients.get_mut(client).expect("entry created above");
        pending.wake.append(&mut state.waiters);
        if let (true, Some(out)) = (delivered, out) {
            for i in plan {
                let link = &state.sessions[i].link;
                link.backlog.add_sized(1, cost);
                pending.handovers.push((link.clone(), Arc::clone(&out)));
            }
            if out.message.requires_ack && env.persist {
                state.inflight.insert(seq);
                pending.delivered.push(Delivered { client_id: client.to_owned(), seq });
            }
        }
        self.schedule(ctx);
        for session_id in drained {
            self.feed(client, &session_id, ctx)?;
        }
        Ok((seq, delivered))
    }

    /// Makes sure a `WriteBatch` is on its way.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if !self.pending.scheduled {
            self.pending.scheduled = true;
            ctx.notify(WriteBatch);
        }
    }

    /// Applies the pending batch and performs what waited for it; replies that need durability go
    /// out after the group commit.
    fn write_pending(&mut self, _ctx: &mut Context<Self>) {
        let mut pending = std::mem::take(&mut self.pending);
        for ((client, at), (first, last)) in pending.expiries.drain() {
            pending.batch.expire_range(at, Stream::Inbox(&client), first, last);
        }
        let applied = self.store.apply(pending.batch);
        if let Err(e) = &applied {
            error!(actor = Router::NAME, error = %e, "writing a batch failed");
            self.seqs.clear();
        }
        // The tracker hears of a message before any session can see it, so an ack can never
        // overtake its `Track` in the tracker's mailbox.
        for t in pending.track {
            self.tracker.track.do_send(t);
        }
        for d in pending.delivered {
            self.tracker.delivered.do_send(d);
        }
        for (link, out) in pending.handovers {
            link.hand_over(out);
        }
        for w in pending.wake {
            let _ = w.send(());
        }
        let mut durable = Vec::new();
        for (reply, result, needs_flush) in pending.replies {
            match (&applied, needs_flush) {
                (Err(e), _) => reply.send(Err(RouteError::Store(StoreError::Corrupt(format!("write failed: {e}"))))),
                (Ok(()), true) => durable.push((reply, result)),
                (Ok(()), false) => reply.send(result),
            }
        }
        let signals = pending.signals;
        if durable.is_empty() && signals.is_empty() {
            return;
        }
        // The wait for the flush is a task of the arbiter, not of this actor's context: a restart
        // drops the context's futures, and with them these replies, although the batch is written.
        let commit = self.store.commit();
        actix::spawn(async move {
            let ok = commit.await.is_ok();
            for (reply, result) in durable {
                reply.send(if ok { result } else { Err(RouteError::NotDurable) });
            }
            if ok {
                for s in signals {
                    let _ = s.send(());
                }
            }
        });
    }

    /// Before reading the store, write what is pending so reads see every routed message.
    fn sync(&mut self, ctx: &mut Context<Self>) {
        if self.pending.scheduled {
            self.write_pending(ctx);
        }
    }

    fn check_idempotency(&self, env: &Envelope, to: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let Some(key) = &env.idempotency_key else { return Ok(None) };
        if let Some(rec) = self.pending.keys.get(&(env.from.clone(), to.to_owned(), key.clone())) {
            return Ok(Some(rec.clone()));
        }
        let window = i64::try_from(self.config.idempotency_window.as_millis()).unwrap_or(i64::MAX);
        Ok(self.store.idempotency(&env.from, to, key)?.filter(|r| Timestamp::now().millis() - r.at_ms < window))
    }

    /// Whether a reply must wait for the flush.
    fn needs_flush(&self, persist: bool) -> bool {
        persist && self.config.durability == Durability::Sync
    }

    /// Routes to one client; the reply is queued with the batch.
    fn route(&mut self, env: Envelope, ctx: &mut Context<Self>) -> Result<(Routed, bool), RouteError> {
        let client = match &env.target {
            Target::Client(c) => c.clone(),
            Target::Pool(p) => return Err(RouteError::UnknownRecipient(format!("pool:{p}"))),
            Target::Room(r) => return Err(RouteError::UnknownRecipient(r.clone())),
            Target::Broadcast => unreachable!("broadcasts arrive as RouteBroadcast"),
        };
        if let Some(rec) = self.check_idempotency(&env, &client)? {
            let routed = Routed { message_id: rec.message_id, seq: rec.seq, status: SentStatus::Duplicate, recipients: 1 };
            return Ok((routed, false));
        }
        let id = new_message_id();
        let (seq, delivered) = self.deliver_to(&client, &env, &id, Timestamp::now(), ctx)?;
        metrics().messages_routed.with_label_values(&[env.transport.label()]).inc();
        debug!(actor = Router::NAME, msg_id = %id, client_id = %client, seq, "routed");
        // A fire-and-forget message no session took was not queued either: nobody has it.
        let status = match (delivered, env.persist) {
            (true, _) => SentStatus::Delivered,
            (false, true) => SentStatus::Queued,
            (false, false) => SentStatus::Dropped,
        };
        let recipients = u32::from(delivered || env.persist);
        Ok((Routed { message_id: id, seq: Some(seq), status, recipients }, self.needs_flush(env.persist)))
    }

    fn broadcast(&mut self, msg: &RouteBroadcast, ctx: &mut Context<Self>) -> Result<BroadcastPart, RouteError> {
        // Every shard records the broadcast's key: another shard's record of this same broadcast
        // (already written when this shard gets to it) is not a duplicate.
        if let Some(rec) = self.check_idempotency(&msg.envelope, agent_bridge_protocol::ids::BROADCAST)? {
            if rec.message_id != msg.id {
                return Ok(BroadcastPart { recipients: 0, duplicate: true, durable: None });
            }
        }
        let now = Instant::now();
        let window = self.config.seen_window;
        let targets: Vec<String> = self
            .clients
            .iter()
            .filter(|(id, st)| {
                **id != msg.envelope.from
                    && (!st.sessions.is_empty() || st.last_seen.is_some_and(|t| now.duration_since(t) <= window))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut env = (*msg.envelope).clone();
        let key = env.idempotency_key.take();
        let mut recipients = 0u32;
        for client in &targets {
            let (_, delivered) = self.deliver_to(client, &env, &msg.id, msg.timestamp, ctx)?;
            // A `persist: false` copy no session took reached nobody.
            recipients = recipients.saturating_add(u32::from(delivered || env.persist));
        }
        if let Some(key) = key {
            let rec = IdempotencyRecord { message_id: msg.id.clone(), seq: None, at_ms: msg.timestamp.millis() };
            self.pending.batch.idempotency(&env.from, agent_bridge_protocol::ids::BROADCAST, &key, &rec)?;
            self.pending.keys.insert((env.from.clone(), agent_bridge_protocol::ids::BROADCAST.to_owned(), key), rec);
            self.schedule(ctx);
        }
        let durable = if self.needs_flush(env.persist) && !targets.is_empty() {
            let (tx, rx) = oneshot::channel();
            self.pending.signals.push(tx);
            self.schedule(ctx);
            Some(rx)
        } else {
            None
        };
        Ok(BroadcastPart { recipients, duplicate: false, durable })
    }

    fn connect(&mut self, msg: Connect, ctx: &mut Context<Self>) -> Result<Connected, RouteError> {
        self.sync(ctx);
        let last = self.last_seq(&msg.client_id)?;
        let since = msg.since.map(|s| s.min(last));
        let state = self.client(&msg.client_id);
        state.last_seen = Some(Instant::now());
        metrics().connections.with_label_values(&[msg.link.transport.label()]).inc();
        let session_id = msg.link.session_id.clone();
        let feed = match since {
            Some(after) => Feed::Stream { after },
            None => Feed::Queue,
        };
        // Start behind: nothing live reaches the session until its feed has caught up, so the
        // replay and the queue come first and in order.
        let must_feed = msg.link.backlog.start_lag();
        state.sessions.push(Live { link: msg.link, feed });
        if must_feed {
            self.feed(&msg.client_id, &session_id, ctx)?;
        }
        Ok(Connected { resumed_from: since, last_seq: last })
    }

    fn disconnect(&mut self, msg: &Disconnect) {
        let Some(state) = self.clients.get_mut(&msg.client_id) else { return };
        if let Some(pos) = state.sessions.iter().position(|s| s.link.session_id == msg.session_id) {
            let live = state.sessions.swap_remove(pos);
            metrics().connections.with_label_values(&[live.link.transport.label()]).dec();
            live.link.backlog.stop_lag();
        }
        if state.sessions.is_empty() {
            // Whatever was in flight is redelivered from the queue at the next connect.
            state.inflight.clear();
            state.scan_from = [0; 5];
        }
        state.last_seen = Some(Instant::now());
    }

    /// The next `limit` queue entries in delivery order: priority, moved up one level per
    /// `aging` waited, FIFO within a level. Skips in-flight and filtered entries. Also says whether
    /// the queue holds nothing beyond them.
    fn queue_batch(&mut self, client: &str, limit: usize, accepts: impl Fn(&str) -> bool) -> Result<(Vec<Queued>, bool), StoreError> {
        let state = self.clients.entry(client.to_owned()).or_default();
        let (inflight, scan_from) = (&state.inflight, &mut state.scan_from);
        let skip = |seq: u64, e: &crate::store::QueueEntry| {
            if inflight.contains(&seq) {
                Skip::Inflight
            } else if accepts(&e.msg_type) {
                Skip::Take
            } else {
                Skip::Other
            }
        };
        let mut all = Vec::new();
        for p in Priority::ALL {
            // One more than a batch per level, to know whether anything is left after it. The scan
            // starts after the level's leading run of in-flight entries, so thousands of unacked
            // messages are not rescanned by every feed.
            let (entries, run) = self.store.queue_level(client, p, scan_from[p.index()] + 1, limit + 1, skip)?;
            scan_from[p.index()] = run;
            all.extend(entries);
        }
        let exhausted = all.len() <= limit;
        let now = Timestamp::now().millis();
        let aging = i64::try_from(self.config.aging.as_millis().max(1)).unwrap_or(i64::MAX);
        all.sort_by_key(|q| {
            let age = now - q.entry.timestamp_ms;
            let effective = (q.priority.index() as i64 - age / aging).max(0);
            (effective, q.entry.timestamp_ms, q.seq)
        });
        all.truncate(limit);
        Ok((all, exhausted))
    }

    /// Feeds a lagging session its next batch (stream replay, then queue); ends the lag when the
    /// feed has nothing more. Returns how many messages were handed over.
    fn feed(&mut self, client: &str, session_id: &str, ctx: &mut Context<Self>) -> Result<usize, RouteError> {
        self.sync(ctx);
        let mut total = 0;
        loop {
            let Some(live) = self.clients.get(client).and_then(|s| s.sessions.iter().find(|l| l.link.session_id == session_id))
            else {
                return Ok(total);
            };
            let (link, feed) = (live.link.clone(), live.feed);
            let limit = link.backlog.limit.min(FEED_BATCH);
            let now = Timestamp::now();
            let mut batch = Batch::default();
            let mut out = Vec::new();
            let (stream_end, exhausted) = match feed {
                Feed::Stream { after } => {
                    let msgs = self.store.range(Stream::Inbox(client), after, limit)?;
                    let end = (msgs.len() < limit, msgs.last().map_or(after, |m| m.seq));
                    out.extend(msgs.into_iter().filter(|m| link.filter.accepts(&m.msg_type) && !m.is_expired(now)));
                    (Some(end), false)
                }
                Feed::Queue => {
                    let (queued, exhausted) = self.queue_batch(client, limit, |t| link.filter.accepts(t))?;
                    for q in queued {
                        match self.store.get(Stream::Inbox(client), q.seq)? {
                            Some(m) if !m.is_expired(now) => out.push(m),
                            found => {
                                batch.dequeue(client, q.priority, q.seq);
                                if q.entry.requires_ack {
                                    self.tracker.expired.do_send(Expired { client_id: client.to_owned(), seq: q.seq, gone: found.is_none() });
                                }
                            }
                        }
                    }
                    (None, exhausted)
                }
            };
            // Hand over what fits in the session's and the client's byte budgets (at least one
            // message, so that none is too big to ever arrive); the rest waits for the next feed.
            let client_bytes = self.clients.get(client).map_or(0, |s| s.sessions.iter().map(|l| l.link.backlog.bytes()).sum::<usize>());
            let mut room = link.backlog.limit_bytes.saturating_sub(link.backlog.bytes()).min(self.config.client_queue_bytes.saturating_sub(client_bytes));
            let mut taken = Vec::with_capacity(out.len());
            let mut cut = false;
            for m in out {
                let o = Outgoing::new(m);
                let cost = o.cost();
                if !taken.is_empty() && cost > room {
                    cut = true;
                    break;
                }
                room = room.saturating_sub(cost);
                taken.push(o);
            }
            let (next_feed, exhausted) = match (feed, stream_end) {
                (Feed::Stream { .. }, Some((end, last_loaded))) => match (end, cut) {
                    (true, false) => (Feed::Queue, false),
                    (_, true) => (Feed::Stream { after: taken.last().map_or(last_loaded, |o| o.message.seq) }, false),
                    (false, false) => (Feed::Stream { after: last_loaded }, false),
                },
                _ => (Feed::Queue, exhausted && !cut),
            };
            let n = taken.len();
            total += n;
            link.backlog.add_sized(n, taken.iter().map(|o| o.cost()).sum());
            let state = self.clients.get_mut(client).expect("checked above");
            for o in taken {
                let m = &o.message;
                if m.requires_ack {
                    state.inflight.insert(m.seq);
                    self.tracker.delivered.do_send(Delivered { client_id: client.to_owned(), seq: m.seq });
                } else {
                    batch.dequeue(client, m.priority, m.seq);
                }
                link.hand_over(o);
            }
            self.store.apply(batch)?;
            if let Some(live) = state.sessions.iter_mut().find(|l| l.link.session_id == session_id) {
                live.feed = next_feed;
            }
            if next_feed != feed {
                continue; // the stream replay is done: go on with the queue
            }
            if exhausted {
                link.backlog.stop_lag();
                debug!(actor = Router::NAME, client_id = %client, session_id = %session_id, "caught up");
                return Ok(total);
            }
            if n > 0 {
                // More waits: the session stays lagging and asks for the next batch (CatchUp)
                // once it has written this one.
                return Ok(total);
            }
            // Nothing handed over (all expired or filtered) but more waits: go on now, since no
            // drained session will ask.
        }
    }

    fn redeliver(&mut self, msg: &Redeliver, ctx: &mut Context<Self>) -> Result<bool, RouteError> {
        self.sync(ctx);
        let Some(message) = self.store.get(Stream::Inbox(&msg.client_id), msg.seq)? else { return Ok(false) };
        let Some(state) = self.clients.get_mut(&msg.client_id) else { return Ok(false) };
        let out = Outgoing::new(message);
        let mut delivered = false;
        for live in &state.sessions {
            let link = &live.link;
            if link.backlog.is_lagging() || !link.filter.accepts(&out.message.msg_type) {
                continue;
            }
            link.backlog.add_sized(1, out.cost());
            link.hand_over(Arc::clone(&out));
            delivered = true;
        }
        if delivered {
            state.inflight.insert(msg.seq);
            self.tracker.delivered.do_send(Delivered { client_id: msg.client_id.clone(), seq: msg.seq });
        } else if state.inflight.remove(&msg.seq) {
            // Back in the queue for the next feed: scans must not start past it.
            let level = &mut state.scan_from[out.message.priority.index()];
            *level = (*level).min(msg.seq.saturating_sub(1));
        }
        Ok(delivered)
    }

    fn poll(&mut self, msg: Poll, ctx: &mut Context<Self>) -> Result<Polled, RouteError> {
        self.sync(ctx);
        let limit = msg.limit.clamp(1, 1000);
        let last = self.last_seq(&msg.client_id)?;
        self.client(&msg.client_id).last_seen = Some(Instant::now());
        let now = Timestamp::now();
        let inbox = Stream::Inbox(&msg.client_id);
        let (messages, base) = match msg.from {
            PollFrom::Seq(s) => {
                // Step over pages that hold only expired messages the sweeper has not removed yet,
                // so the cursor always moves on to what is deliverable.
                let mut after = s.min(last);
                loop {
                    let chunk = self.store.range(inbox, after, limit)?;
                    let Some(tail) = chunk.last().map(|m| m.seq) else { break (Vec::new(), after) };
                    if chunk.iter().any(|m| !m.is_expired(now)) {
                        break (chunk, after);
                    }
                    after = tail;
                }
            }
            PollFrom::Queue => {
                let (queued, _) = self.queue_batch(&msg.client_id, limit, |_| true)?;
                let mut out = Vec::new();
                for q in queued {
                    if let Some(m) = self.store.get(inbox, q.seq)? {
                        out.push(m);
                    }
                }
                (out, last)
            }
            PollFrom::Time(t) => {
                let mut after = 0;
                let mut out = Vec::new();
                // Old clients page by time: scan forward and keep the newer ones.
                loop {
                    let chunk = self.store.range(inbox, after, 1000)?;
                    let Some(tail) = chunk.last() else { break };
                    after = tail.seq;
                    out.extend(chunk.into_iter().filter(|m| m.timestamp > t));
                    if out.len() >= limit {
                        out.truncate(limit);
                        break;
                    }
                }
                (out, last)
            }
        };
        let messages: Vec<Msg> = messages.into_iter().filter(|m| !m.is_expired(now)).collect();
        if !messages.is_empty() {
            // What an HTTP client has been given counts as delivered; acks come by POST /api/ack.
            let mut batch = Batch::default();
            for m in &messages {
                if m.requires_ack {
                    self.tracker.delivered.do_send(Delivered { client_id: msg.client_id.clone(), seq: m.seq });
                } else {
                    batch.dequeue(&msg.client_id, m.priority, m.seq);
                }
            }
            self.store.apply(batch)?;
            let next_since = match msg.from {
                PollFrom::Seq(_) => messages.last().map_or(base, |m| m.seq),
                _ => messages.iter().map(|m| m.seq).max().unwrap_or(base),
            };
            return Ok(Polled::Page { messages, next_since });
        }
        if msg.wait {
            let (tx, rx) = oneshot::channel();
            let state = self.client(&msg.client_id);
            state.waiters.retain(|w| !w.is_closed());
            state.waiters.push(tx);
            return Ok(Polled::Wait { wake: rx, next_since: base });
        }
        Ok(Polled::Page { messages, next_since: base })
    }
}

impl Supervisee for Router {
    type Error = RouteError;

    fn child(&self) -> &ChildHandle {
        &self.child
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Routing must never park a sender; memory is bounded by the sessions' own limits.
        ctx.set_mailbox_capacity(1 << 20);
        ctx.run_interval(Duration::from_secs(5), |act, _| {
            let window = act.config.seen_window;
            act.clients.retain(|_, s| {
                !s.sessions.is_empty() || !s.waiters.is_empty() || s.last_seen.is_some_and(|t| t.elapsed() <= window)
            });
        });
    }
}

impl Supervised for Router {
    fn restarting(&mut self, ctx: &mut Self::Context) {
        // What was routed before the failure is written first: its seqs are taken.
        if self.pending.scheduled {
            self.write_pending(ctx);
        }
        self.seqs.clear();
        for state in self.clients.values_mut() {
            state.sessions.retain(|s| s.link.deliver.connected());
            state.waiters.retain(|w| !w.is_closed());
            state.inflight.clear();
            state.scan_from = [0; 5];
        }
    }
}

impl Handler<Connect> for Router {
    type Result = Result<Connected, RouteError>;
    fn handle(&mut self, msg: Connect, ctx: &mut Self::Context) -> Self::Result {
        self.guard(ctx, |r, ctx| r.connect(msg, ctx))
    }
}

impl Handler<Disconnect> for Router {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        let _ = self.guard(ctx, |r, _| {
            r.disconnect(&msg);
            Ok(())
        });
    }
}

impl Handler<CatchUp> for Router {
    type Result = ();
    fn handle(&mut self, msg: CatchUp, ctx: &mut Self::Context) {
        if let Err(e) = self.guard(ctx, |r, ctx| r.feed(&msg.client_id, &msg.session_id, ctx).map(|_| ())) {
            error!(actor = Router::NAME, client_id = %msg.client_id, error = %e, "catch-up failed");
        }
    }
}

impl Handler<Route> for Router {
    type Result = ();
    fn handle(&mut self, msg: Route, ctx: &mut Self::Context) {
        let Route { env, reply } = msg;
        match self.guard(ctx, |r, ctx| r.route(env, ctx)) {
            Ok((routed, needs_flush)) => {
                self.pending.replies.push((Owed::new(reply), Ok(routed), needs_flush));
                self.schedule(ctx);
            }
            Err(e) => reply.send(Err(e)),
        }
    }
}

impl Handler<WriteBatch> for Router {
    type Result = ();
    fn handle(&mut self, _: WriteBatch, ctx: &mut Self::Context) {
        if self.pending.scheduled {
            // Contained like every handler: a panic while writing answers the batch's sends
            // `internal` (their `Owed` replies are dropped) and restarts the shard.
            let _ = self.guard(ctx, |r, ctx| {
                r.write_pending(ctx);
                Ok(())
            });
        }
    }
}

impl Handler<RouteBroadcast> for Router {
    type Result = Result<BroadcastPart, RouteError>;
    fn handle(&mut self, msg: RouteBroadcast, ctx: &mut Self::Context) -> Self::Result {
        self.guard(ctx, |r, ctx| r.broadcast(&msg, ctx))
    }
}

impl Handler<Poll> for Router {
    type Result = Result<Polled, RouteError>;
    fn handle(&mut self, msg: Poll, ctx: &mut Self::Context) -> Self::Result {
        self.guard(ctx, |r, ctx| r.poll(msg, ctx))
    }
}

impl Handler<Seen> for Router {
    type Result = ();
    fn handle(&mut self, msg: Seen, ctx: &mut Self::Context) {
        let _ = self.guard(ctx, |r, _| {
            r.client(&msg.0).last_seen = Some(Instant::now());
            Ok(())
        });
    }
}

impl Handler<Redeliver> for Router {
    type Result = bool;
    fn handle(&mut self, msg: Redeliver, ctx: &mut Self::Context) -> bool {
        self.guard(ctx, |r, ctx| r.redeliver(&msg, ctx)).unwrap_or(false)
    }
}

impl Handler<Settled> for Router {
    type Result = ();
    fn handle(&mut self, msg: Settled, _ctx: &mut Self::Context) {
        if let Some(state) = self.clients.get_mut(&msg.client_id) {
            state.inflight.remove(&msg.seq);
        }
    }
}

impl Handler<NotifyClient> for Router {
    type Result = ();
    fn handle(&mut self, msg: NotifyClient, _ctx: &mut Self::Context) {
        if let Some(state) = self.clients.get(&msg.client_id) {
            for live in &state.sessions {
                live.link.notify.do_send(Notify(Arc::clone(&msg.note)));
            }
        }
    }
}

impl Handler<ListClients> for Router {
    type Result = Vec<ClientInfo>;
    fn handle(&mut self, _: ListClients, ctx: &mut Self::Context) -> Vec<ClientInfo> {
        self.sync(ctx);
        let ids: Vec<String> = self.clients.keys().cloned().collect();
        ids.into_iter()
            .map(|id| {
                let last_seq = self.last_seq(&id).unwrap_or(0);
                let st = &self.clients[&id];
                ClientInfo {
                    client_id: id.clone(),
                    sessions: st
                        .sessions
                        .iter()
                        .map(|s| SessionInfo {
                            session_id: s.link.session_id.clone(),
                            transport: s.link.transport.label(),
                            pending: s.link.backlog.pending(),
                            lagging: s.link.backlog.is_lagging(),
                        })
                        .collect(),
                    last_seq,
                    queued: self.store.queue_len(&id),
                    last_seen_s_ago: st.last_seen.map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::INFINITY),
                }
            })
            .collect()
    }
}

fault_handler!(Router);
