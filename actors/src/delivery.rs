//! What travels between the router, the sessions and the tracker: validated envelopes, encoded
//! outgoing frames, and the bounded backlog each session shares with its router shard.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use agent_bridge_protocol::ids::{BROADCAST, POOL_PREFIX};
use agent_bridge_protocol::frames::Dropped;
use agent_bridge_protocol::{Message as Msg, Payload, Priority, ServerFrame, Timestamp};
use bytestring::ByteString;
use parking_lot::RwLock;

use crate::metrics::metrics;

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

impl Target {
    /// The `to` field of the message (`None` for rooms).
    pub fn to_field(&self) -> Option<String> {
        match self {
            Target::Client(c) => Some(c.clone()),
            Target::Broadcast => Some(BROADCAST.to_owned()),
            Target::Pool(p) => Some(format!("{POOL_PREFIX}{p}")),
            Target::Room(_) => None,
        }
    }
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
    /// The conversation (section 7, threads); the router may fill it from `correlation_id`.
    pub thread_id: Option<String>,
    pub transport: Transport,
    /// Set by a pool's balancer on the copy it hands to the chosen member.
    pub pool: Option<PoolTag>,
}

/// Which pool send a message is: the pool, the balancer's ticket for it, and the message id the
/// balancer chose, kept when the message fails over to another member (so the sender's receipts
/// name the id its `sent` answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolTag {
    pub pool: Arc<str>,
    pub ticket: u64,
    pub message_id: String,
}

impl Envelope {
    /// A plain send: normal priority, persisted, no ack, no ttl, keys or thread.
    pub fn plain(from: &str, target: Target, msg_type: &str, payload: Payload, transport: Transport) -> Envelope {
        Envelope {
            from: from.to_owned(),
            target,
            msg_type: msg_type.to_owned(),
            payload,
            priority: Priority::Normal,
            ttl: None,
            require_ack: false,
            correlation_id: None,
            idempotency_key: None,
            persist: true,
            thread_id: None,
            transport,
            pool: None,
        }
    }

    /// The message object for one recipient stream.
    pub fn to_message(&self, id: &str, seq: u64, timestamp: Timestamp) -> Msg {
        let room = match &self.target {
            Target::Room(r) => Some(r.clone()),
            _ => None,
        };
        Msg {
            id: id.to_owned(),
            seq,
            from: self.from.clone(),
            to: self.target.to_field(),
            room,
            msg_type: self.msg_type.clone(),
            payload: self.payload.clone(),
            timestamp,
            priority: self.priority,
            requires_ack: self.require_ack,
            correlation_id: self.correlation_id.clone(),
            expires_at: self.ttl.map(|t| timestamp.plus_secs(t)),
            thread_id: self.thread_id.clone(),
        }
    }
}

/// A message ready for sessions: the message and its `message` frame, encoded once.
#[derive(Debug)]
pub struct Outgoing {
    pub message: Msg,
    pub json: ByteString,
    /// When the frame was built (the send accepted, or the message read back from the store):
    /// where `bridge_delivery_latency_seconds` starts.
    pub accepted: std::time::Instant,
}

impl Outgoing {
    pub fn new(message: Msg) -> Arc<Self> {
        // The `message` frame, written around the message without cloning it.
        let body = serde_json::to_string(&message).expect("messages always serialize");
        let mut json = String::with_capacity(body.len() + 32);
        json.push_str(r#"{"type":"message","message":"#);
        json.push_str(&body);
        json.push('}');
        Arc::new(Outgoing { message, json: ByteString::from(json), accepted: std::time::Instant::now() })
    }

    /// What holding this frame for a session costs, as counted in its [`Backlog`]: the encoded
    /// frame plus the mailbox envelope and bookkeeping around it.
    pub fn cost(&self) -> usize {
        self.json.len() + FRAME_OVERHEAD
    }
}

/// Bytes counted per queued frame beyond its encoding (mailbox envelope, Arc, allocator slack).
pub const FRAME_OVERHEAD: usize = 128;

/// A message for a session, counted in its [`Backlog`]. Sent by the router.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver(pub Arc<Outgoing>);

/// Any other frame for a session (receipts, events), not counted in the backlog.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Notify(pub Arc<Note>);

/// Close the session now (`DELETE /admin/clients/{id}`): a WebSocket gets an `error` frame with
/// `code` and closes with 4001; an event stream ends after an `error` event. Sent by the router.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct CloseSession {
    pub code: &'static str,
    pub reason: String,
}

/// A server frame with its JSON encoding.
#[derive(Debug)]
pub struct Note {
    pub frame: ServerFrame,
    pub json: ByteString,
}

impl Note {
    pub fn new(frame: ServerFrame) -> Arc<Self> {
        let json = ByteString::from(frame.to_json());
        Arc::new(Note { frame, json })
    }
}

/// The bounded outbound queue of a session, shared between the router (producer) and the session.
///
/// One atomic word holds the count of frames handed over but not yet written and, in its top bit,
/// the "lagging" flag. Exactly one side sees the moment a lagging session has drained: the session
/// when its decrement reaches `LAG | 0`, or the router when it sets the flag on an already empty
/// queue. That side triggers the catch-up from the store, so it happens once and never stalls.
///
/// WebSocket and SSE sessions also count the bytes they hold ([`Backlog::sized`], [`Outgoing::cost`]):
/// the router hands a message over only while it fits in `limit_bytes`, so what a slow reader makes
/// the broker hold is bounded in bytes, not only in frames. What does not fit is fed from the store
/// later (persisted) or dropped and counted ([`Backlog::note_dropped`]), and the session is told
/// with a `dropped` frame.
#[derive(Debug)]
pub struct Backlog {
    state: AtomicUsize,
    pub(crate) limit: usize,
    /// Bytes handed over and not yet written (only for sized backlogs).
    bytes: AtomicUsize,
    /// `usize::MAX` for a backlog bounded in frames only.
    pub(crate) limit_bytes: usize,
    /// `persist: false` messages dropped for this session since it was last told.
    dropped: AtomicU64,
    /// When the first of them was dropped (ms since the epoch).
    dropped_since_ms: AtomicI64,
}

const LAG: usize = 1 << (usize::BITS - 1);

impl Backlog {
    /// A backlog that holds at most `limit` undelivered frames.
    pub fn new(limit: usize) -> Arc<Self> {
        Backlog::sized(limit, usize::MAX)
    }

    /// A backlog that holds at most `limit` undelivered frames and `limit_bytes` of them.
    pub fn sized(limit: usize, limit_bytes: usize) -> Arc<Self> {
        Arc::new(Backlog {
            state: AtomicUsize::new(0),
            limit: limit.max(1),
            bytes: AtomicUsize::new(0),
            limit_bytes: limit_bytes.max(1),
            dropped: AtomicU64::new(0),
            dropped_since_ms: AtomicI64::new(0),
        })
    }

    /// Called by the session after writing a delivered frame. True when the session has drained
    /// while lagging and must ask the router to catch it up from the store.
    pub fn delivered(&self) -> bool {
        self.state.fetch_sub(1, Ordering::AcqRel) == LAG | 1
    }

    /// [`Backlog::delivered`] for a frame counted with its cost.
    pub fn delivered_sized(&self, cost: usize) -> bool {
        self.bytes.fetch_sub(cost, Ordering::AcqRel);
        self.delivered()
    }

    /// Frames queued for the session and not yet written.
    pub fn pending(&self) -> usize {
        self.state.load(Ordering::Acquire) & !LAG
    }

    /// Bytes queued for the session and not yet written.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Whether one more frame of `cost` bytes fits (a frame larger than the whole budget still
    /// goes to an empty queue, so that no message is too big to ever be delivered).
    pub(crate) fn has_room(&self, cost: usize) -> bool {
        let (pending, bytes) = (self.pending(), self.bytes());
        pending < self.limit && (bytes == 0 || bytes.saturating_add(cost) <= self.limit_bytes)
    }

    /// Whether the session is behind and being fed from the store.
    pub fn is_lagging(&self) -> bool {
        self.state.load(Ordering::Acquire) & LAG != 0
    }

    pub(crate) fn add(&self, n: usize) {
        self.state.fetch_add(n, Ordering::AcqRel);
    }

    /// Counts `n` frames of `cost` bytes in all.
    pub(crate) fn add_sized(&self, n: usize, cost: usize) {
        self.bytes.fetch_add(cost, Ordering::AcqRel);
        self.add(n);
    }

    /// Sets the lagging flag; true if the queue was already empty (the router must feed it now).
    pub(crate) fn start_lag(&self) -> bool {
        let prev = self.state.fetch_or(LAG, Ordering::AcqRel);
        if prev & LAG == 0 {
            metrics().lagging_sessions.inc();
        }
        prev & !LAG == 0
    }

    pub(crate) fn stop_lag(&self) {
        if self.state.fetch_and(!LAG, Ordering::AcqRel) & LAG != 0 {
            metrics().lagging_sessions.dec();
        }
    }

    /// A `persist: false` message did not fit and was dropped for this session.
    pub(crate) fn note_dropped(&self, at: Timestamp) {
        if self.dropped.fetch_add(1, Ordering::AcqRel) == 0 {
            self.dropped_since_ms.store(at.millis(), Ordering::Release);
        }
        metrics().dropped.with_label_values(&["slow_consumer"]).inc();
    }

    /// The drops not reported yet, as a `dropped` frame (taken once: whoever takes it writes it).
    pub fn take_dropped(&self) -> Option<ServerFrame> {
        // A plain load first: this runs for every delivery, drops are rare.
        if self.dropped.load(Ordering::Acquire) == 0 {
            return None;
        }
        let since_ms = self.dropped_since_ms.load(Ordering::Acquire);
        let count = self.dropped.swap(0, Ordering::AcqRel);
        (count > 0).then(|| {
            ServerFrame::Dropped(Dropped {
                count,
                since: Timestamp(since_ms),
                reason: "slow_consumer".into(),
                room: None,
            })
        })
    }
}

/// The message types a session wants (`None` = all), shared with the router so that it only hands
/// over (and counts as delivered) what the session will show.
#[derive(Debug, Default)]
pub struct TypeFilter(RwLock<Option<HashSet<String>>>);

impl TypeFilter {
    pub fn new(types: Option<HashSet<String>>) -> Arc<Self> {
        Arc::new(TypeFilter(RwLock::new(types)))
    }

    pub fn accepts(&self, msg_type: &str) -> bool {
        self.0.read().as_ref().is_none_or(|t| t.contains(msg_type))
    }

    /// Replaces the filter (`subscribe`); an empty list means all types.
    pub fn set(&self, types: Vec<String>) {
        *self.0.write() = if types.is_empty() { None } else { Some(types.into_iter().collect()) };
    }
}

/// One live session of a client, as the registry knows it.
#[derive(Clone)]
pub struct SessionLink {
    pub session_id: String,
    pub deliver: Recipient<Deliver>,
    pub notify: Recipient<Notify>,
    pub close: Recipient<CloseSession>,
    pub backlog: Arc<Backlog>,
    pub filter: Arc<TypeFilter>,
    pub transport: Transport,
}

impl SessionLink {
    /// The link of a session actor (WebSocket or SSE) to register with its router shard.
    pub fn of<A>(addr: Addr<A>, session_id: &str, backlog: &Arc<Backlog>, filter: &Arc<TypeFilter>, transport: Transport) -> Self
    where
        A: Actor + Handler<Deliver> + Handler<Notify> + Handler<CloseSession>,
        A::Context: actix::dev::ToEnvelope<A, Deliver> + actix::dev::ToEnvelope<A, Notify> + actix::dev::ToEnvelope<A, CloseSession>,
    {
        SessionLink {
            session_id: session_id.to_owned(),
            deliver: addr.clone().recipient(),
            notify: addr.clone().recipient(),
            close: addr.recipient(),
            backlog: Arc::clone(backlog),
            filter: Arc::clone(filter),
            transport,
        }
    }

    /// Hands over a message whose backlog slot the caller has already counted.
    pub(crate) fn hand_over(&self, out: Arc<Outgoing>) {
        self.deliver.do_send(Deliver(out));
        metrics().deliveries.with_label_values(&[self.transport.label()]).inc();
    }
}

/// `msg-` + a UUIDv7 (time-ordered, unique).
pub fn new_message_id() -> String {
    let mut s = String::with_capacity(40);
    s.push_str("msg-");
    s.push_str(uuid::Uuid::now_v7().simple().encode_lower(&mut uuid::Uuid::encode_buffer()));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transport_has_resolved_metric_series() {
        let labels = [Transport::WebSocket, Transport::Http, Transport::Sse].map(Transport::label);
        assert_eq!(labels, crate::metrics::TRANSPORTS);
    }

    #[test]
    fn sized_backlog_bounds_bytes_but_always_takes_one() {
        let b = Backlog::sized(1000, 1000);
        assert!(b.has_room(5000), "an empty queue takes even an oversized frame");
        b.add_sized(1, 5000);
        assert!(!b.has_room(1));
        assert!(!b.delivered_sized(5000));
        b.add_sized(1, 600);
        assert!(b.has_room(400) && !b.has_room(401));
    }

    #[test]
    fn drops_are_reported_once() {
        let b = Backlog::sized(10, 10);
        assert!(b.take_dropped().is_none());
        b.note_dropped(Timestamp(1_000));
        b.note_dropped(Timestamp(2_000));
        match b.take_dropped() {
            Some(ServerFrame::Dropped(d)) => assert_eq!((d.count, d.since), (2, Timestamp(1_000))),
            other => panic!("expected a dropped frame, got {other:?}"),
        }
        assert!(b.take_dropped().is_none());
    }
}
