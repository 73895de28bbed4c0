//! Router shards: the registry of live sessions and the hot path of every message.
//!
//! Each shard owns the client ids that hash to it: their live sessions (the registry), their inbox
//! seq counters, long-poll waiters and "last seen" times. A message to a client goes to that client's
//! shard, which assigns the next inbox `seq`, stores it (unless `persist: false`), encodes the
//! `message` frame once and hands the same bytes to every session of the recipient. Because one shard
//! is the only writer of its inboxes, order per recipient is the order of arrival at the shard.
//!
//! Sent by: sessions and HTTP handlers, through [`RouterHandle`]. Supervised by the root
//! (permanent, critical): after a panic `restarting()` drops cached counters (reloaded from the store)
//! and prunes sessions whose mailbox has closed; the registry of live sessions survives.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use agent_bridge_protocol::frames::{Delivery, SentStatus};
use agent_bridge_protocol::{Message as Msg, Payload, Priority, ServerFrame, Timestamp};
use bytestring::ByteString;
use thiserror::Error;
use tokio::sync::oneshot;
use tracing::{debug, error};

use crate::metrics::metrics;
use crate::store::{Store, StoreError, Stream};
use crate::supervisor::{contain, ChildHandle, Decision, Failure, Fault};

/// Errors a route or poll can answer; each has a stable client-facing code.
#[derive(Debug, Error)]
pub enum RouteError {
    #[error("unknown recipient {0:?}: no such pool or room")]
    UnknownRecipient(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the router failed while handling this message ({0}); it has been restarted, send again")]
    Internal(String),
    #[error("the router is down after repeated failures")]
    Unavailable,
    #[error("router mailbox: {0}")]
    Mailbox(#[from] MailboxError),
}

impl RouteError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RouteError::UnknownRecipient(_) => "unknown_recipient",
            RouteError::Store(_) => "storage_error",
            RouteError::Internal(_) => "internal",
            RouteError::Unavailable | RouteError::Mailbox(_) => "unavailable",
        }
    }
}

/// Which transport a message or session uses (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Http,
    Sse,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Http => "http",
            Transport::Sse => "sse",
        }
    }
}

/// Where a validated message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Client(String),
    Broadcast,
    Pool(String),
    Room(String),
}

/// A validated send, built from a `send` frame or `POST /api/send` (`from` already bound).
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: String,
    pub target: Target,
    pub msg_type: String,
    pub payload: Payload,
    pub priority: Priority,
    pub ttl: Option<u64>,
    pub require_ack: bool,
    pub correlation_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub persist: bool,
    pub transport: Transport,
}

impl Envelope {
    fn to_message(&self, id: &str, seq: u64, timestamp: Timestamp) -> Msg {
        let (to, room) = match &self.target {
            Target::Client(c) => (Some(c.clone()), None),
            Target::Broadcast => (Some(agent_bridge_protocol::ids::BROADCAST.to_owned()), None),
            Target::Pool(p) => (Some(format!("{}{p}", agent_bridge_protocol::ids::POOL_PREFIX)), None),
            Target::Room(r) => (None, Some(r.clone())),
        };
        Msg {
            id: id.to_owned(),
            seq,
            from: self.from.clone(),
            to,
            room,
            msg_type: self.msg_type.clone(),
            payload: self.payload.clone(),
            timestamp,
            priority: self.priority,
            requires_ack: self.require_ack,
            correlation_id: self.correlation_id.clone(),
            expires_at: self.ttl.map(|t| timestamp.plus_secs(t)),
        }
    }
}

/// What the router answers for an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub message_id: String,
    pub seq: Option<u64>,
    pub status: SentStatus,
    pub recipients: u32,
}

/// A message ready for sessions: the message and its `message` frame, encoded once.
#[derive(Debug)]
pub struct Outgoing {
    pub message: Msg,
    pub json: ByteString,
    /// Whether the message is in the store (a lagging session can catch up on it).
    pub persisted: bool,
}

impl Outgoing {
    fn new(message: Msg, persisted: bool) -> Arc<Self> {
        let json = ByteString::from(ServerFrame::Message(Delivery { message: message.clone() }).to_json());
        Arc::new(Outgoing { message, json, persisted })
    }
}

/// A message for a session. Sent by the router; the session writes it to its socket.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver(pub Arc<Outgoing>);

/// The bounded outbound queue of a session, shared between the router (producer) and the session.
///
/// One atomic word holds the count of frames handed over but not yet written and, in its top bit,
/// the "lagging" flag. Exactly one side sees the moment a lagging session has drained: the session
/// when its decrement reaches `LAG | 0`, or the router when it sets the flag on an already empty
/// queue. That side triggers the catch-up from the store, so it happens once and never stalls.
#[derive(Debug)]
pub struct Backlog {
    state: AtomicUsize,
    limit: usize,
}

const LAG: usize = 1 << (usize::BITS - 1);

impl Backlog {
    /// A backlog that holds at most `limit` undelivered frames.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Backlog { state: AtomicUsize::new(0), limit: limit.max(1) })
    }

    /// Called by the session after writing a delivered frame. True when the session has drained
    /// while lagging and must ask the router to catch it up from the store.
    pub fn delivered(&self) -> bool {
        self.state.fetch_sub(1, Ordering::AcqRel) == LAG | 1
    }

    /// Frames queued for the session and not yet written.
    pub fn pending(&self) -> usize {
        self.state.load(Ordering::Acquire) & !LAG
    }

    /// Whether the session is behind and being fed from the store.
    pub fn is_lagging(&self) -> bool {
        self.state.load(Ordering::Acquire) & LAG != 0
    }

    fn add(&self, n: usize) {
        self.state.fetch_add(n, Ordering::AcqRel);
    }

    /// Sets the lagging flag; true if the queue was already empty (the router must catch up now).
    fn start_lag(&self) -> bool {
        metrics().lagging_sessions.inc();
        self.state.fetch_or(LAG, Ordering::AcqRel) & !LAG == 0
    }

    fn stop_lag(&self) {
        if self.state.fetch_and(!LAG, Ordering::AcqRel) & LAG != 0 {
            metrics().lagging_sessions.dec();
        }
    }
}

/// One live session of a client, as the registry knows it.
#[derive(Clone)]
pub struct SessionLink {
    pub session_id: String,
    pub deliver: Recipient<Deliver>,
    pub backlog: Arc<Backlog>,
    pub transport: Transport,
}

/// A session opened: register it and replay what it missed. Sent by sessions (WebSocket, SSE).
#[derive(Message)]
#[rtype(result = "Result<Connected, RouteError>")]
pub struct Connect {
    pub client_id: String,
    pub link: SessionLink,
    /// Resume after this seq; `None` resumes after the store-and-forward cursor.
    pub since: Option<u64>,
}

/// Answer to [`Connect`].
#[derive(Debug, Clone, Copy)]
pub struct Connected {
    /// The seq the replay started after.
    pub resumed_from: u64,
    /// How many stored messages were replayed.
    pub replayed: usize,
}

/// A session closed. Sent by sessions when they stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub client_id: String,
    pub session_id: String,
}

/// A lagging session drained its queue: feed it the next batch from the store. Sent by sessions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CatchUp {
    pub client_id: String,
    pub session_id: String,
}

/// Route a message to one client. Sent through [`RouterHandle::route`].
#[derive(Message)]
#[rtype(result = "Result<Routed, RouteError>")]
pub struct Route(pub Envelope);

/// This shard's part of an `all` broadcast. Sent through [`RouterHandle::route`].
#[derive(Message)]
#[rtype(result = "Result<u32, RouteError>")]
pub struct RouteBroadcast {
    pub envelope: Arc<Envelope>,
    pub id: String,
    pub timestamp: Timestamp,
}

/// Where an HTTP poll starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollFrom {
    /// After this seq.
    Seq(u64),
    /// Messages newer than this time (for the original bridge's clients).
    Time(Timestamp),
    /// After the store-and-forward cursor.
    Cursor,
}

/// `GET /api/messages`: read an inbox page; with `wait`, get a wake-up when it is empty.
#[derive(Message)]
#[rtype(result = "Result<Polled, RouteError>")]
pub struct Poll {
    pub client_id: String,
    pub from: PollFrom,
    pub limit: usize,
    pub wait: bool,
}

/// Answer to [`Poll`].
pub enum Polled {
    Page { messages: Vec<Msg>, next_since: u64 },
    /// Nothing new: the receiver fires when a message arrives (then poll again).
    Wait { wake: oneshot::Receiver<()>, next_since: u64 },
}

/// A client was active over HTTP (counts as "seen" for `all`). Sent by HTTP handlers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Seen(pub String);

/// `POST /api/ack` and `ack` frames: the client processed these messages.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Acked {
    pub client_id: String,
    pub message_ids: Vec<String>,
}

/// Live-client facts for `/api/status` and `/admin/clients`.
#[derive(Message)]
#[rtype(result = "Vec<ClientInfo>")]
pub struct ListClients;

/// One client in [`ListClients`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientInfo {
    pub client_id: String,
    pub sessions: Vec<SessionInfo>,
    pub last_seq: u64,
    pub last_seen_s_ago: f64,
}

/// One session in [`ClientInfo`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub session_id: String,
    pub transport: &'static str,
    pub pending: usize,
    pub lagging: bool,
}

/// Shard settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// How long a disconnected client still counts for `all`.
    pub seen_window: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig { seen_window: Duration::from_secs(60) }
    }
}

/// A registered session and how far the router has fed it.
struct Live {
    link: SessionLink,
    /// Highest stored seq handed to this session (where a catch-up continues).
    offered: u64,
}

#[derive(Default)]
struct ClientState {
    sessions: Vec<Live>,
    waiters: Vec<oneshot::Sender<()>>,
    last_seen: Option<Instant>,
    /// Highest seq handed to a consumer (store-and-forward position), not yet persisted.
    cursor: u64,
    cursor_dirty: bool,
}

/// A router shard. Owns the registry and inboxes of its client ids.
pub struct Router {
    /// Supervision link.
    child: ChildHandle,
    /// Shared database.
    store: Store,
    /// Settings.
    config: RouterConfig,
    /// Clients of this shard: sessions, waiters, presence.
    clients: HashMap<String, ClientState>,
    /// Last assigned inbox seq per client (cache of the store's counters; cleared on restart).
    seqs: HashMap<String, u64>,
    /// Set when the child escalated: every request is answered `unavailable`.
    failed: bool,
}

impl Router {
    pub const NAME: &'static str = "router";

    /// A shard over `store`.
    pub fn new(child: ChildHandle, store: Store, config: RouterConfig) -> Self {
        Router { child, store, config, clients: HashMap::new(), seqs: HashMap::new(), failed: false }
    }

    fn next_seq(&mut self, client: &str) -> Result<u64, StoreError> {
        let last = match self.seqs.get(client) {
            Some(s) => *s,
            None => self.store.last_seq(Stream::Inbox(client))?,
        };
        self.seqs.insert(client.to_owned(), last + 1);
        Ok(last + 1)
    }

    fn last_seq(&mut self, client: &str) -> Result<u64, StoreError> {
        match self.seqs.get(client) {
            Some(s) => Ok(*s),
            None => {
                let s = self.store.last_seq(Stream::Inbox(client))?;
                self.seqs.insert(client.to_owned(), s);
                Ok(s)
            }
        }
    }

    fn client(&mut self, client: &str) -> &mut ClientState {
        if !self.clients.contains_key(client) {
            let cursor = self.store.cursor(Stream::Inbox(client)).unwrap_or(0);
            self.clients.insert(client.to_owned(), ClientState { cursor, ..ClientState::default() });
        }
        self.clients.get_mut(client).expect("inserted above")
    }

    /// Appends (or not, for `persist: false`) and hands the message to every live session.
    fn deliver_to(&mut self, client: &str, env: &Envelope, id: &str, timestamp: Timestamp) -> Result<(u64, bool), RouteError> {
        let (seq, persisted) = if env.persist {
            let seq = self.next_seq(client)?;
            (seq, true)
        } else {
            (self.last_seq(client)?, false)
        };
        let message = env.to_message(id, seq, timestamp);
        if persisted {
            if let Err(e) = self.store.append(Stream::Inbox(client), &message) {
                self.seqs.remove(client);
                return Err(e.into());
            }
        }
        let out = Outgoing::new(message, persisted);
        let state = self.client(client);
        for w in state.waiters.drain(..) {
            let _ = w.send(());
        }
        let mut delivered = false;
        let mut drained = Vec::new();
        for live in &mut state.sessions {
            match offer(live, &out) {
                Offer::Queued => delivered = true,
                Offer::Lagging => {}
                Offer::DrainedWhileLagging => drained.push(live.link.session_id.clone()),
            }
        }
        if delivered && persisted {
            state.cursor = state.cursor.max(seq);
            state.cursor_dirty = true;
        }
        for session_id in drained {
            self.catch_up(client, &session_id)?;
        }
        Ok((seq, delivered))
    }

    fn route(&mut self, env: Envelope) -> Result<Routed, RouteError> {
        let client = match &env.target {
            Target::Client(c) => c.clone(),
            Target::Pool(p) => return Err(RouteError::UnknownRecipient(format!("pool:{p}"))),
            Target::Room(r) => return Err(RouteError::UnknownRecipient(r.clone())),
            Target::Broadcast => unreachable!("broadcasts arrive as RouteBroadcast"),
        };
        let id = new_message_id();
        let (seq, delivered) = self.deliver_to(&client, &env, &id, Timestamp::now())?;
        metrics().messages_routed.with_label_values(&[env.transport.label()]).inc();
        debug!(actor = Router::NAME, msg_id = %id, client_id = %client, seq, "routed");
        let status = if delivered { SentStatus::Delivered } else { SentStatus::Queued };
        Ok(Routed { message_id: id, seq: Some(seq), status, recipients: 1 })
    }

    fn broadcast(&mut self, msg: &RouteBroadcast) -> Result<u32, RouteError> {
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
        for client in &targets {
            self.deliver_to(client, &msg.envelope, &msg.id, msg.timestamp)?;
        }
        Ok(u32::try_from(targets.len()).unwrap_or(u32::MAX))
    }

    fn connect(&mut self, msg: Connect) -> Result<Connected, RouteError> {
        let last = self.last_seq(&msg.client_id)?;
        let state = self.client(&msg.client_id);
        let after = msg.since.unwrap_or(state.cursor).min(last);
        state.last_seen = Some(Instant::now());
        metrics().connections.with_label_values(&[msg.link.transport.label()]).inc();
        let session_id = msg.link.session_id.clone();
        state.sessions.push(Live { link: msg.link, offered: after });
        // Replay through the catch-up path: at most one backlog's worth now, the rest as the
        // session drains, so a reconnect after a long absence never floods memory.
        let replayed = self.catch_up(&msg.client_id, &session_id)?;
        Ok(Connected { resumed_from: after, replayed })
    }

    fn disconnect(&mut self, msg: &Disconnect) {
        let Some(state) = self.clients.get_mut(&msg.client_id) else { return };
        if let Some(pos) = state.sessions.iter().position(|s| s.link.session_id == msg.session_id) {
            let live = state.sessions.swap_remove(pos);
            metrics().connections.with_label_values(&[live.link.transport.label()]).dec();
            live.link.backlog.stop_lag();
        }
        state.last_seen = Some(Instant::now());
        self.persist_cursor(&msg.client_id.clone());
    }

    fn persist_cursor(&mut self, client: &str) {
        if let Some(state) = self.clients.get_mut(client) {
            if state.cursor_dirty {
                state.cursor_dirty = false;
                if let Err(e) = self.store.set_cursor(Stream::Inbox(client), state.cursor) {
                    error!(actor = Router::NAME, client_id = %client, error = %e, "persisting cursor");
                }
            }
        }
    }

    /// Feeds a session the next batch of stored messages after what it was offered; ends its lag
    /// when the batch reaches the end of the inbox. Returns how many messages were handed over.
    fn catch_up(&mut self, client: &str, session_id: &str) -> Result<usize, RouteError> {
        let mut total = 0;
        loop {
            let Some(state) = self.clients.get(client) else { return Ok(total) };
            let Some(live) = state.sessions.iter().find(|s| s.link.session_id == session_id) else { return Ok(total) };
            let (link, after) = (live.link.clone(), live.offered);
            let limit = link.backlog.limit;
            let batch = self.store.range(Stream::Inbox(client), after, limit)?;
            let n = batch.len();
            total += n;
            let last = batch.last().map(|m| m.seq);
            link.backlog.add(n);
            for m in batch {
                hand_over(&link, Outgoing::new(m, true));
            }
            let state = self.clients.get_mut(client).expect("checked above");
            if let Some(last) = last {
                if let Some(live) = state.sessions.iter_mut().find(|s| s.link.session_id == session_id) {
                    live.offered = last;
                }
                state.cursor = state.cursor.max(last);
                state.cursor_dirty = true;
            }
            if n < limit {
                link.backlog.stop_lag();
                debug!(actor = Router::NAME, client_id = %client, session_id = %session_id, "caught up");
                return Ok(total);
            }
            // More is stored: stay lagging; the session asks again once it has drained, unless it
            // drained already, in which case the next batch goes now.
            if link.backlog.is_lagging() || !link.backlog.start_lag() {
                return Ok(total);
            }
        }
    }

    fn poll(&mut self, msg: Poll) -> Result<Polled, RouteError> {
        let limit = msg.limit.clamp(1, 1000);
        let state = self.client(&msg.client_id);
        state.last_seen = Some(Instant::now());
        let cursor = state.cursor;
        let (messages, base) = match msg.from {
            PollFrom::Seq(s) => (self.store.range(Stream::Inbox(&msg.client_id), s, limit)?, s),
            PollFrom::Cursor => (self.store.range(Stream::Inbox(&msg.client_id), cursor, limit)?, cursor),
            PollFrom::Time(t) => {
                let mut after = 0;
                let mut out = Vec::new();
                // Old clients page by time: scan forward and keep the newer ones.
                loop {
                    let chunk = self.store.range(Stream::Inbox(&msg.client_id), after, 1000)?;
                    let Some(last) = chunk.last() else { break };
                    after = last.seq;
                    out.extend(chunk.into_iter().filter(|m| m.timestamp > t));
                    if out.len() >= limit {
                        out.truncate(limit);
                        break;
                    }
                }
                (out, 0)
            }
        };
        let state = self.client(&msg.client_id);
        if let Some(last) = messages.last() {
            let next_since = last.seq;
            if state.cursor < next_since {
                state.cursor = next_since;
                state.cursor_dirty = true;
            }
            self.persist_cursor(&msg.client_id);
            return Ok(Polled::Page { messages, next_since });
        }
        if msg.wait {
            let (tx, rx) = oneshot::channel();
            state.waiters.retain(|w| !w.is_closed());
            state.waiters.push(tx);
            return Ok(Polled::Wait { wake: rx, next_since: base });
        }
        Ok(Polled::Page { messages, next_since: base })
    }

    /// A handler failed: report, stop (actix's Supervisor restarts us) and build the client error.
    fn fail(&mut self, failure: &Failure, ctx: &mut Context<Self>) -> RouteError {
        if self.child.failed(failure) == Decision::Escalate {
            self.failed = true;
        }
        ctx.stop();
        RouteError::Internal(failure.reason.clone())
    }

    fn guard<R>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut Self) -> Result<R, RouteError>,
    ) -> Result<R, RouteError> {
        if self.failed {
            return Err(RouteError::Unavailable);
        }
        let child = self.child.clone();
        match contain(&child, || f(self)) {
            Ok(r) => r,
            Err(failure) => Err(self.fail(&failure, ctx)),
        }
    }
}

/// What happened to a live message offered to a session.
enum Offer {
    Queued,
    /// Not handed over; the session will get it from the store when it drains.
    Lagging,
    /// Not handed over, and the session had already drained: the router must catch it up now.
    DrainedWhileLagging,
}

/// Hands a live message to a session unless its queue is full; a full queue marks it lagging so
/// it is fed from the store once it drains (messages that were never stored are dropped for it).
fn offer(live: &mut Live, out: &Arc<Outgoing>) -> Offer {
    let backlog = &live.link.backlog;
    if backlog.is_lagging() {
        if !out.persisted {
            metrics().dropped.with_label_values(&["slow_consumer"]).inc();
        }
        return Offer::Lagging;
    }
    if backlog.pending() >= backlog.limit {
        if !out.persisted {
            metrics().dropped.with_label_values(&["slow_consumer"]).inc();
        }
        return if backlog.start_lag() { Offer::DrainedWhileLagging } else { Offer::Lagging };
    }
    backlog.add(1);
    if out.persisted {
        live.offered = live.offered.max(out.message.seq);
    }
    hand_over(&live.link, Arc::clone(out));
    Offer::Queued
}

/// Sends one frame to a session whose backlog has already been counted.
fn hand_over(link: &SessionLink, out: Arc<Outgoing>) {
    link.deliver.do_send(Deliver(out));
    metrics().deliveries.with_label_values(&[link.transport.label()]).inc();
}

/// `msg-` + a UUIDv7 (time-ordered, unique).
pub fn new_message_id() -> String {
    let mut s = String::with_capacity(40);
    s.push_str("msg-");
    s.push_str(uuid::Uuid::now_v7().simple().encode_lower(&mut uuid::Uuid::encode_buffer()));
    s
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.child.set_fault_target(ctx.address().recipient());
        // Routing must never park a sender; memory is bounded by the sessions' own limits.
        ctx.set_mailbox_capacity(1 << 20);
        ctx.run_interval(Duration::from_secs(1), |act, _| {
            let dirty: Vec<String> =
                act.clients.iter().filter(|(_, s)| s.cursor_dirty).map(|(c, _)| c.clone()).collect();
            for c in dirty {
                act.persist_cursor(&c);
            }
            let window = act.config.seen_window;
            act.clients.retain(|_, s| {
                !s.sessions.is_empty() || !s.waiters.is_empty() || s.cursor_dirty || s.last_seen.is_some_and(|t| t.elapsed() <= window)
            });
        });
    }
}

impl Supervised for Router {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.seqs.clear();
        for state in self.clients.values_mut() {
            state.sessions.retain(|s| s.link.deliver.connected());
            state.waiters.retain(|w| !w.is_closed());
        }
        self.failed = self.child.is_failed();
        self.child.running();
    }
}

impl Handler<Connect> for Router {
    type Result = Result<Connected, RouteError>;
    fn handle(&mut self, msg: Connect, ctx: &mut Self::Context) -> Self::Result {
        self.guard(ctx, |r| r.connect(msg))
    }
}

impl Handler<Disconnect> for Router {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        let _ = self.guard(ctx, |r| {
            r.disconnect(&msg);
            Ok(())
        });
    }
}

impl Handler<CatchUp> for Router {
    type Result = ();
    fn handle(&mut self, msg: CatchUp, ctx: &mut Self::Context) {
        if let Err(e) = self.guard(ctx, |r| r.catch_up(&msg.client_id, &msg.session_id).map(|_| ())) {
            error!(actor = Router::NAME, client_id = %msg.client_id, error = %e, "catch-up failed");
        }
    }
}

impl Handler<Route> for Router {
    type Result = Result<Routed, RouteError>;
    fn handle(&mut self, msg: Route, ctx: &mut Self::Context) -> Self::Result {
        self.guard(ctx, |r| r.route(msg.0))
    }
}

impl Handler<RouteBroadcast> for Router {
    type Result = Result<u32, RouteError>;
    fn handle(&mut self, msg: RouteBroadcast, ctx: &mut Self::Context) -> Self::Result {
        self.guard(ctx, |r| r.broadcast(&msg))
    }
}

impl Handler<Poll> for Router {
    type Result = Result<Polled, RouteError>;
    fn handle(&mut self, msg: Poll, ctx: &mut Self::Context) -> Self::Result {
        self.guard(ctx, |r| r.poll(msg))
    }
}

impl Handler<Seen> for Router {
    type Result = ();
    fn handle(&mut self, msg: Seen, ctx: &mut Self::Context) {
        let _ = self.guard(ctx, |r| {
            r.client(&msg.0).last_seen = Some(Instant::now());
            Ok(())
        });
    }
}

impl Handler<Acked> for Router {
    type Result = usize;
    fn handle(&mut self, msg: Acked, _ctx: &mut Self::Context) -> usize {
        // Until the AckTracker lands, an ack confirms receipt and counts as seen.
        if let Some(state) = self.clients.get_mut(&msg.client_id) {
            state.last_seen = Some(Instant::now());
        }
        msg.message_ids.len()
    }
}

impl Handler<ListClients> for Router {
    type Result = Vec<ClientInfo>;
    fn handle(&mut self, _: ListClients, _ctx: &mut Self::Context) -> Vec<ClientInfo> {
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
                    last_seen_s_ago: st.last_seen.map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::INFINITY),
                }
            })
            .collect()
    }
}

impl Handler<Fault> for Router {
    type Result = ();
    fn handle(&mut self, _: Fault, ctx: &mut Self::Context) {
        let _ = self.guard(ctx, |_| -> Result<(), RouteError> { panic!("fault injected by /admin/fault") });
    }
}

/// The router shards, addressed by client id. Cheap to clone.
#[derive(Clone)]
pub struct RouterHandle {
    shards: Arc<[Addr<Router>]>,
}

impl RouterHandle {
    pub fn new(shards: Vec<Addr<Router>>) -> Self {
        assert!(!shards.is_empty(), "at least one router shard");
        RouterHandle { shards: shards.into() }
    }

    /// The shard that owns `client_id`.
    pub fn shard(&self, client_id: &str) -> &Addr<Router> {
        let mut h = DefaultHasher::new();
        client_id.hash(&mut h);
        let n = self.shards.len() as u64;
        &self.shards[usize::try_from(h.finish() % n).unwrap_or(0)]
    }

    /// Every shard, in order (for fault injection and listings).
    pub fn shards(&self) -> &[Addr<Router>] {
        &self.shards
    }

    /// Routes a message: to the recipient's shard, or to every shard for `all`.
    ///
    /// The message is in the shard mailboxes when this returns (only the reply is awaited), so a
    /// sender's messages keep their order however the returned futures are polled.
    pub fn route(&self, env: Envelope) -> impl std::future::Future<Output = Result<Routed, RouteError>> + 'static {
        enum Pending {
            One(actix::dev::Request<Router, Route>),
            All(Vec<actix::dev::Request<Router, RouteBroadcast>>, String, Transport),
            Failed(RouteError),
        }
        let pending = match env.target {
            Target::Broadcast => {
                let id = new_message_id();
                let timestamp = Timestamp::now();
                let transport = env.transport;
                let env = Arc::new(env);
                let parts = self
                    .shards
                    .iter()
                    .map(|s| s.send(RouteBroadcast { envelope: Arc::clone(&env), id: id.clone(), timestamp }))
                    .collect();
                Pending::All(parts, id, transport)
            }
            Target::Client(ref c) => Pending::One(self.shard(c).send(Route(env))),
            Target::Pool(p) => Pending::Failed(RouteError::UnknownRecipient(format!("pool:{p}"))),
            Target::Room(r) => Pending::Failed(RouteError::UnknownRecipient(r)),
        };
        async move {
            match pending {
                Pending::One(req) => req.await?,
                Pending::All(parts, message_id, transport) => {
                    let mut recipients = 0u32;
                    for part in futures_util::future::join_all(parts).await {
                        recipients = recipients.saturating_add(part??);
                    }
                    metrics().messages_routed.with_label_values(&[transport.label()]).inc();
                    let status = if recipients > 0 { SentStatus::Delivered } else { SentStatus::Queued };
                    Ok(Routed { message_id, seq: None, status, recipients })
                }
                Pending::Failed(e) => Err(e),
            }
        }
    }

    /// Every live client of every shard.
    pub async fn clients(&self) -> Vec<ClientInfo> {
        let all = futures_util::future::join_all(self.shards.iter().map(|s| s.send(ListClients))).await;
        let mut out: Vec<ClientInfo> = all.into_iter().filter_map(Result::ok).flatten().collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }
}
