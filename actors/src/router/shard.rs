//! The shard actor: its state (the registry of live sessions, inbox seqs, the pending batch), its
//! life cycle and one handler per message. The hot path is in `writes.rs`, feeds and polls in
//! `feed.rs`; both add methods to [`Router`] and name this file for its types.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::error;

use crate::delivery::{CloseSession, Notify, Outgoing, SessionLink};
use crate::messages::*;
use crate::store::{Batch, IdempotencyRecord, Store, StoreError, Stream};
use crate::supervisor::{guarded, supervisee, ChildHandle, Supervisee};

/// Most messages one feed reads from the store for a session.
pub(super) const FEED_BATCH: usize = 4096;

/// How a session is fed when it is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Feed {
    /// Replaying the stream in seq order after this seq (`since` resume).
    Stream { after: u64 },
    /// From the inbox queue, in priority order.
    Queue,
}

/// A registered session and how it is fed.
pub(super) struct Live {
    pub(super) link: SessionLink,
    pub(super) feed: Feed,
}

#[derive(Default)]
pub(super) struct ClientState {
    pub(super) sessions: Vec<Live>,
    pub(super) waiters: Vec<oneshot::Sender<()>>,
    pub(super) last_seen: Option<Instant>,
    /// Require-ack messages handed to a session of this client and not settled yet; a feed skips
    /// them (the tracker redelivers them on its timers). Cleared when the last session leaves.
    pub(super) inflight: HashSet<u64>,
    /// Per priority level, the last seq of the leading run of in-flight queue entries: queue
    /// scans start after it. Moved back whenever an entry at or below it stops being in flight.
    pub(super) scan_from: [u64; 5],
}

/// What waits for the next write: one sled batch for every message routed since the last one,
/// and what may only happen once those messages are in the store (hand-overs, tracker notes,
/// long-poll wake-ups, replies). A `WriteBatch` notification, queued behind the messages already
/// in the mailbox, applies it: under load one batch carries many messages.
#[derive(Default)]
pub(super) struct PendingWrites {
    pub(super) batch: Batch,
    pub(super) handovers: Vec<(SessionLink, Arc<Outgoing>)>,
    pub(super) track: Vec<Track>,
    pub(super) delivered: Vec<Delivered>,
    pub(super) wake: Vec<oneshot::Sender<()>>,
    /// Replies; `true` when they must wait for the flush.
    pub(super) replies: Vec<(Owed, Result<Routed, RouteError>, bool)>,
    pub(super) signals: Vec<oneshot::Sender<()>>,
    /// Expiry index runs: (inbox, due second) → (first seq, last seq).
    pub(super) expiries: HashMap<(String, i64), (u64, u64)>,
    /// Idempotency keys written in this batch (not yet visible in the store).
    pub(super) keys: HashMap<(String, String, String), IdempotencyRecord>,
    pub(super) scheduled: bool,
}

/// Apply the pending writes. Sent by a shard to itself.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct WriteBatch;

/// A router shard. Owns the registry and inboxes of its client ids.
pub struct Router {
    /// Supervision link.
    pub(super) child: ChildHandle,
    /// Shared database.
    pub(super) store: Store,
    /// Settings.
    pub(super) config: RouterConfig,
    /// Told about every require-ack message and each of its deliveries.
    pub(super) tracker: TrackerLink,
    /// Clients of this shard: sessions, waiters, presence.
    pub(super) clients: HashMap<String, ClientState>,
    /// Last assigned inbox seq per client (cache of the store's counters; cleared on restart).
    pub(super) seqs: HashMap<String, u64>,
    /// Writes and effects waiting for the next batch.
    pub(super) pending: PendingWrites,
    /// Presence for the agent registry, withdrawals for the tracker; `None` without pools.
    pub(super) pools: Option<PoolHooks>,
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
            pools: None,
        }
    }

    /// Tells the agent registry about presence and passes withdrawals on (`Broker::start`).
    pub fn with_pools(mut self, hooks: PoolHooks) -> Self {
        self.pools = Some(hooks);
        self
    }

    /// A client's first session opened or its last one closed.
    pub(super) fn presence(&self, client_id: &str, online: bool) {
        if let Some(h) = &self.pools {
            h.presence.do_send(Presence { client_id: client_id.to_owned(), online });
        }
    }

    pub(super) fn last_seq(&mut self, client: &str) -> Result<u64, StoreError> {
        if let Some(s) = self.seqs.get(client) {
            return Ok(*s);
        }
        let s = self.store.last_seq(Stream::Inbox(client))?;
        self.seqs.insert(client.to_owned(), s);
        Ok(s)
    }

    pub(super) fn client(&mut self, client: &str) -> &mut ClientState {
        self.clients.entry(client.to_owned()).or_default()
    }
}

supervisee!(Router, RouteError, child);

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
        let mut gone = Vec::new();
        for (id, state) in self.clients.iter_mut() {
            let had = !state.sessions.is_empty();
            state.sessions.retain(|s| s.link.deliver.connected());
            if had && state.sessions.is_empty() {
                gone.push(id.clone());
            }
            state.waiters.retain(|w| !w.is_closed());
            state.inflight.clear();
            state.scan_from = [0; 5];
        }
        // Sessions that closed without their `Disconnect` (lost with the failed context).
        for id in gone {
            self.presence(&id, false);
        }
    }
}

guarded!(Router, Connect, |r, msg, ctx| r.connect(msg, ctx));
guarded!(Router, Disconnect => (), |r, msg, _| r.disconnect(&msg));

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

guarded!(Router, RouteBroadcast, |r, msg, ctx| r.broadcast(&msg, ctx));
guarded!(Router, Poll, |r, msg, ctx| r.poll(msg, ctx));
guarded!(Router, Seen => (), |r, msg, _| r.client(&msg.0).last_seen = Some(Instant::now()));

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

impl Handler<Kick> for Router {
    type Result = usize;
    fn handle(&mut self, msg: Kick, _ctx: &mut Self::Context) -> usize {
        let Some(state) = self.clients.get_mut(&msg.client_id) else { return 0 };
        for live in &state.sessions {
            live.link.close.do_send(CloseSession { code: "kicked", reason: msg.reason.clone() });
        }
        // A dropped wake-up ends a long-poll with what it has (nothing).
        let polls = std::mem::take(&mut state.waiters).len();
        // The sessions leave the registry with their own `Disconnect` as they stop.
        state.sessions.len() + polls
    }
}

impl Handler<PoolWithdraw> for Router {
    type Result = ();
    fn handle(&mut self, msg: PoolWithdraw, ctx: &mut Self::Context) {
        // The `Track`s of what this shard routed to the member go to the tracker first.
        self.sync(ctx);
        match &self.pools {
            Some(h) => h.withdraw.do_send(msg),
            None => msg.reply.do_send(Withdrawn { client_id: msg.client_id, tickets: Vec::new() }),
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

