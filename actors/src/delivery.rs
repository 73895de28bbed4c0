//! What travels between the router, the sessions and the tracker: validated envelopes, encoded
//! outgoing frames, and the bounded backlog each session shares with its router shard.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use agent_bridge_protocol::ids::{BROADCAST, POOL_PREFIX};
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
    pub transport: Transport,
}

impl Envelope {
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
        }
    }
}

/// A message ready for sessions: the message and its `message` frame, encoded once.
#[derive(Debug)]
pub struct Outgoing {
    pub message: Msg,
    pub json: ByteString,
}

impl Outgoing {
    pub fn new(message: Msg) -> Arc<Self> {
        // The `message` frame, written around the message without cloning it.
        let body = serde_json::to_string(&message).expect("messages always serialize");
        let mut json = String::with_capacity(body.len() + 32);
        json.push_str(r#"{"type":"message","message":"#);
        json.push_str(&body);
        json.push('}');
        Arc::new(Outgoing { message, json: ByteString::from(json) })
    }
}

/// A message for a session, counted in its [`Backlog`]. Sent by the router.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver(pub Arc<Outgoing>);

/// Any other frame for a session (receipts, events), not counted in the backlog.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Notify(pub Arc<Note>);

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
#[derive(Debug)]
pub struct Backlog {
    state: AtomicUsize,
    pub(crate) limit: usize,
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

    pub(crate) fn add(&self, n: usize) {
        self.state.fetch_add(n, Ordering::AcqRel);
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
    pub backlog: Arc<Backlog>,
    pub filter: Arc<TypeFilter>,
    pub transport: Transport,
}

impl SessionLink {
    /// The link of a session actor (WebSocket or SSE) to register with its router shard.
    pub fn of<A>(addr: Addr<A>, session_id: &str, backlog: &Arc<Backlog>, filter: &Arc<TypeFilter>, transport: Transport) -> Self
    where
        A: Actor + Handler<Deliver> + Handler<Notify>,
        A::Context: actix::dev::ToEnvelope<A, Deliver> + actix::dev::ToEnvelope<A, Notify>,
    {
        SessionLink {
            session_id: session_id.to_owned(),
            deliver: addr.clone().recipient(),
            notify: addr.recipient(),
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
