//! The router shards' messages, their errors and settings, and [`Shards`]: how the tracker reaches
//! the shards. Sent by sessions, HTTP handlers and the AckTracker; handled by `crate::router`.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use agent_bridge_protocol::frames::SentStatus;
use agent_bridge_protocol::{Message as Msg, Timestamp};
use thiserror::Error;
use tokio::sync::oneshot;

use super::room::RoomError;
use crate::delivery::{Envelope, Note, SessionLink};
use crate::store::StoreError;
use crate::supervisor::{Failure, Refusal};

/// Errors a route or poll can answer; each has a stable client-facing code.
#[derive(Debug, Error)]
pub enum RouteError {
    #[error("unknown recipient {0:?}: no such pool or room")]
    UnknownRecipient(String),
    /// A pool whose members are all offline (or circuit-open).
    #[error("pool {0:?} has no healthy member")]
    PoolEmpty(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store cannot write right now (disk full, read-only or failing): the message was not accepted; send again later")]
    NotDurable,
    #[error("the router failed while handling this message ({0}); it has been restarted, send again")]
    Internal(String),
    #[error("the router is down after repeated failures")]
    Unavailable,
    #[error("router mailbox: {0}")]
    Mailbox(#[from] MailboxError),
    /// A room refused the message (`not_member`, `not_supported` …).
    #[error(transparent)]
    Room(RoomError),
}

impl RouteError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RouteError::UnknownRecipient(_) => "unknown_recipient",
            RouteError::PoolEmpty(_) => "pool_empty",
            RouteError::Store(e) if e.is_unavailable() => "unavailable",
            RouteError::Store(_) => "storage_error",
            RouteError::NotDurable => "unavailable",
            RouteError::Internal(_) => "internal",
            RouteError::Unavailable | RouteError::Mailbox(_) => "unavailable",
            RouteError::Room(e) => e.code(),
        }
    }
}

impl Refusal for RouteError {
    fn internal(failure: &Failure) -> Self {
        RouteError::Internal(failure.reason.clone())
    }
    fn unavailable() -> Self {
        RouteError::Unavailable
    }
}

/// When `sent` is answered relative to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After the group commit has flushed the message (the default).
    Sync,
    /// At once; sled flushes in the background every `flush_interval`.
    Async,
}

/// How long stored messages are kept, by message type (`None` = forever).
#[derive(Debug, Clone, Default)]
pub struct Retention {
    pub default: Option<Duration>,
    pub by_type: HashMap<String, Option<Duration>>,
}

impl Retention {
    pub fn for_type(&self, msg_type: &str) -> Option<Duration> {
        self.by_type.get(msg_type).copied().unwrap_or(self.default)
    }

    /// When a stored message leaves the store (ms): its ttl or its type's retention, whichever
    /// is first. Inboxes, room streams and the sweeper use this one rule.
    pub fn expiry_ms(&self, msg: &Msg) -> Option<i64> {
        let retention = self.for_type(&msg.msg_type).map(|d| msg.timestamp.plus_secs(d.as_secs().max(1)));
        match (msg.expires_at, retention) {
            (Some(a), Some(b)) => Some(a.min(b).millis()),
            (a, b) => a.or(b).map(Timestamp::millis),
        }
    }
}

/// Shard settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// How long a disconnected client still counts for `all`.
    pub seen_window: Duration,
    /// A queued message moves up one priority level per `aging` waited.
    pub aging: Duration,
    pub retention: Retention,
    /// How long an idempotency key is remembered.
    pub idempotency_window: Duration,
    pub durability: Durability,
    /// Bytes queued for one client across all its sessions before they are fed from the store
    /// (or, for `persist: false`, before messages are dropped for them).
    pub client_queue_bytes: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            seen_window: Duration::from_secs(60),
            aging: Duration::from_secs(30),
            retention: Retention { default: Some(Duration::from_secs(24 * 3600)), by_type: HashMap::new() },
            idempotency_window: Duration::from_secs(24 * 3600),
            durability: Durability::Sync,
            client_queue_bytes: 256 << 20,
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

/// A routed message and, with sync durability, the commit to await before answering `sent`. The
/// answer of a room to `RoomSend` (rooms answer through futures).
pub struct Accepted {
    pub routed: Routed,
    pub durable: Option<oneshot::Receiver<()>>,
}

/// Where the outcome of a route goes: a future (HTTP, broadcasts) or a session's mailbox.
pub enum ReplyTo {
    Future(oneshot::Sender<Result<Routed, RouteError>>),
    Session { to: Recipient<Replied>, r#ref: Option<String> },
}

impl ReplyTo {
    pub fn send(self, result: Result<Routed, RouteError>) {
        match self {
            ReplyTo::Future(tx) => {
                let _ = tx.send(result);
            }
            ReplyTo::Session { to, r#ref } => to.do_send(Replied { r#ref, result }),
        }
    }
}

/// A reply the router owes: answered once with [`Owed::send`], or, when it is dropped unanswered
/// (a panic half-way through writing a batch, a task that never ran), with `internal` — so every
/// send gets exactly one answer whatever happens inside the shard.
pub(crate) struct Owed(Option<ReplyTo>);

impl Owed {
    pub(crate) fn new(reply: ReplyTo) -> Self {
        Owed(Some(reply))
    }

    pub(crate) fn send(mut self, result: Result<Routed, RouteError>) {
        if let Some(reply) = self.0.take() {
            reply.send(result);
        }
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        if let Some(reply) = self.0.take() {
            reply.send(Err(RouteError::Internal("its reply was lost inside the router".into())));
        }
    }
}

/// The outcome of a session's `send`, once it is durable. Sent by router shards to sessions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replied {
    pub r#ref: Option<String>,
    pub result: Result<Routed, RouteError>,
}

/// A session opened: register it and feed it what it missed. Sent by sessions (WebSocket, SSE).
#[derive(Message)]
#[rtype(result = "Result<Connected, RouteError>")]
pub struct Connect {
    pub client_id: String,
    pub link: SessionLink,
    /// Replay the stream after this seq first; `None` delivers the queue only.
    pub since: Option<u64>,
}

/// Answer to [`Connect`].
#[derive(Debug, Clone, Copy)]
pub struct Connected {
    /// The seq a `since` replay started after.
    pub resumed_from: Option<u64>,
    /// The inbox's last seq when the session registered.
    pub last_seq: u64,
}

/// A session closed. Sent by sessions when they stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub client_id: String,
    pub session_id: String,
}

/// A lagging session drained its queue: feed it the next batch. Sent by sessions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CatchUp {
    pub client_id: String,
    pub session_id: String,
}

/// Route a message to one client; the outcome goes to `reply` once it is durable. Sent through
/// [`RouterHandle::route_to`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Route {
    pub env: Envelope,
    pub reply: ReplyTo,
}

/// This shard's part of an `all` broadcast. Sent through [`RouterHandle::route`].
#[derive(Message)]
#[rtype(result = "Result<BroadcastPart, RouteError>")]
pub struct RouteBroadcast {
    pub envelope: Arc<Envelope>,
    pub id: String,
    pub timestamp: Timestamp,
}

/// A shard's answer to [`RouteBroadcast`].
pub struct BroadcastPart {
    pub recipients: u32,
    pub duplicate: bool,
    pub durable: Option<oneshot::Receiver<()>>,
}

/// Where an HTTP poll starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollFrom {
    /// After this seq, in seq order.
    Seq(u64),
    /// Messages newer than this time (for the original bridge's clients).
    Time(Timestamp),
    /// The undelivered queue, in priority order.
    Queue,
}

/// `GET /api/messages`: read an inbox page; with `wait`, get a wake-up when it is empty.
#[derive(Message)]
#[rtype(result = "Result<Polled, RouteError>")]
pub struct Poll {
    pub client_id: String,
    pub from: PollFrom,
    pub limit: usize,
    pub wait: bool,
    /// Whether the poll counts its client as seen (a recipient of `all` for `seen_window`): true
    /// for clients; the broker's own readers (the A2A gateway) are not agents and say false.
    pub seen: bool,
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

/// Hand a require-ack message to the client's sessions again. Sent by the AckTracker; answers
/// whether any session received it.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Redeliver {
    pub client_id: String,
    pub seq: u64,
}

/// A require-ack message is settled (acked, dead or expired): stop treating it as in flight. Sent
/// by the AckTracker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Settled {
    pub client_id: String,
    pub seq: u64,
}

/// A frame for every session of a client (receipts). Sent by the AckTracker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NotifyClient {
    pub client_id: String,
    pub note: Arc<Note>,
}

/// Take back the unacknowledged messages of `pool` given to `client_id` (it went offline). Sent by
/// a balancer to the member's router shard, which writes what it has pending and passes it on to
/// the tracker (so every `Track` the shard sent comes first); the tracker dequeues them and answers
/// [`Withdrawn`] to `reply`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PoolWithdraw {
    pub client_id: String,
    pub pool: Arc<str>,
    pub reply: Recipient<Withdrawn>,
}

/// The tickets the tracker took back from a member. Sent by the AckTracker to a balancer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Withdrawn {
    pub client_id: String,
    pub tickets: Vec<u64>,
}

/// Close every session of a client and end its long-polls (`DELETE /admin/clients/{id}`); answers
/// how many sessions and polls were ended. Sent through [`RouterHandle::kick`].
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Kick {
    pub client_id: String,
    pub reason: String,
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
    pub queued: usize,
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

/// The shard (of `shards`) that owns `client_id`: the one hash every caller uses.
pub fn shard_index(client_id: &str, shards: usize) -> usize {
    let mut h = DefaultHasher::new();
    client_id.hash(&mut h);
    usize::try_from(h.finish() % shards.max(1) as u64).unwrap_or(0)
}

/// What the AckTracker sends to one router shard.
#[derive(Clone)]
pub struct ShardLink {
    pub redeliver: Recipient<Redeliver>,
    pub settled: Recipient<Settled>,
    pub notify: Recipient<NotifyClient>,
}

impl ShardLink {
    /// The link to a shard (or to a probe standing in for one).
    pub fn of<A: Actor<Context = Context<A>> + Handler<Redeliver> + Handler<Settled> + Handler<NotifyClient>>(addr: &Addr<A>) -> Self {
        ShardLink { redeliver: addr.clone().recipient(), settled: addr.clone().recipient(), notify: addr.clone().recipient() }
    }
}

/// What sessions and HTTP handlers send to one router shard, as recipients: a session's
/// registration, its sends and catch-up, HTTP long-polls and listings. [`ShardLink`] is the
/// tracker's side of the same shard.
#[derive(Clone)]
pub struct ShardPort {
    pub route: Recipient<Route>,
    pub broadcast: Recipient<RouteBroadcast>,
    pub connect: Recipient<Connect>,
    pub disconnect: Recipient<Disconnect>,
    pub catch_up: Recipient<CatchUp>,
    pub poll: Recipient<Poll>,
    pub seen: Recipient<Seen>,
    pub clients: Recipient<ListClients>,
    pub kick: Recipient<Kick>,
    pub withdraw: Recipient<PoolWithdraw>,
}

impl ShardPort {
    /// The port of a shard (or of a probe standing in for one).
    pub fn of<A>(addr: &Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>>
            + Handler<Route>
            + Handler<RouteBroadcast>
            + Handler<Connect>
            + Handler<Disconnect>
            + Handler<CatchUp>
            + Handler<Poll>
            + Handler<Seen>
            + Handler<ListClients>
            + Handler<Kick>
            + Handler<PoolWithdraw>,
    {
        ShardPort {
            route: addr.clone().recipient(),
            broadcast: addr.clone().recipient(),
            connect: addr.clone().recipient(),
            disconnect: addr.clone().recipient(),
            catch_up: addr.clone().recipient(),
            poll: addr.clone().recipient(),
            seen: addr.clone().recipient(),
            clients: addr.clone().recipient(),
            kick: addr.clone().recipient(),
            withdraw: addr.clone().recipient(),
        }
    }
}

/// Every router shard's [`ShardLink`], in shard order, picked by client id with
/// [`shard_index`]. Cheap to clone.
#[derive(Clone)]
pub struct Shards(Arc<[ShardLink]>);

impl Shards {
    pub fn new(links: Vec<ShardLink>) -> Self {
        assert!(!links.is_empty(), "at least one router shard");
        Shards(links.into())
    }

    /// The shard that owns `client_id`.
    pub fn of(&self, client_id: &str) -> &ShardLink {
        &self.0[shard_index(client_id, self.0.len())]
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    /// Collects `(ref, code or "ok")` of the replies it gets.
    struct Probe(Vec<(Option<String>, &'static str)>);

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl Handler<Replied> for Probe {
        type Result = ();
        fn handle(&mut self, msg: Replied, _: &mut Context<Self>) {
            self.0.push((msg.r#ref, msg.result.map_or_else(|e| e.code(), |_| "ok")));
        }
    }

    #[derive(Message)]
    #[rtype(result = "Vec<(Option<String>, &'static str)>")]
    struct Take;

    impl Handler<Take> for Probe {
        type Result = MessageResult<Take>;
        fn handle(&mut self, _: Take, _: &mut Context<Self>) -> Self::Result {
            MessageResult(std::mem::take(&mut self.0))
        }
    }

    #[actix::test]
    async fn an_owed_reply_is_answered_once_and_internal_when_dropped() {
        let probe = Probe(Vec::new()).start();
        let owed = |r: &str| Owed::new(ReplyTo::Session { to: probe.clone().recipient(), r#ref: Some(r.into()) });
        let routed = Routed { message_id: "m".into(), seq: Some(1), status: SentStatus::Delivered, recipients: 1 };
        owed("answered").send(Ok(routed));
        drop(owed("dropped"));
        let (tx, rx) = oneshot::channel();
        drop(Owed::new(ReplyTo::Future(tx)));
        assert_eq!(rx.await.expect("answered").map_err(|e| e.code()).err(), Some("internal"));
        let got = probe.send(Take).await.expect("probe");
        assert_eq!(got, [(Some("answered".into()), "ok"), (Some("dropped".into()), "internal")]);
    }
}
