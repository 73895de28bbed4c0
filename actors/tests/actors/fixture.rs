//! What the actor tests share: a temporary store, a supervision tree with a child handle, sends,
//! and the stand-in for a session (its link to the router or a room, with probes behind it).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use agent_bridge_actors::delivery::{Backlog, CloseSession, Deliver, Envelope, Notify, SessionLink, Target, Transport, TypeFilter};
use agent_bridge_actors::messages::{Acknowledge, Delivered, Expired, NegativeAck, Track, TrackerLink};
use agent_bridge_actors::room::{JoinLink, RoomDeliver};
use agent_bridge_actors::store::Store;
use agent_bridge_actors::store::{Batch, Stream};
use agent_bridge_actors::supervisor::{ChildHandle, ChildSpec, Escalated, Intensity, RestartPolicy, Tree};
use agent_bridge_protocol::{Message as Msg, Payload, ServerFrame, Timestamp};
use serde_json::{json, Value};

use super::probe::{probe, probe_with, Seen};

/// A temporary store: in memory, gone with the test; commits answer at once.
pub fn store() -> Store {
    Store::open(None, None).expect("a temporary store opens")
}

/// A supervision tree whose root is a probe: escalations arrive there.
pub fn tree() -> (Arc<Tree>, Seen<Escalated>) {
    let (root, escalations) = probe::<Escalated>();
    (Tree::new(root), escalations)
}

/// A permanent child of the root, restarted at most `max_restarts` times a minute.
pub fn child(tree: &Arc<Tree>, name: &str, kind: &'static str, max_restarts: u32) -> ChildHandle {
    tree.register(ChildSpec {
        name: name.into(),
        kind,
        parent: Tree::ROOT.into(),
        policy: RestartPolicy::Permanent,
        intensity: Intensity { max_restarts, within: Duration::from_secs(60) },
        critical: false,
    })
}

/// A persisted send of `n` from `from` to `target`, normal priority, no ack.
pub fn send(from: &str, target: Target, n: u64) -> Envelope {
    Envelope::plain(from, target, "note", Payload::from_serialize(&json!({ "n": n })), Transport::WebSocket)
}

/// A send to one client.
pub fn to(from: &str, client: &str, n: u64) -> Envelope {
    send(from, Target::Client(client.into()), n)
}

/// Writes message `seq` of `client`'s inbox as a router shard does: in the stream, and in the
/// queue (where it waits for delivery or, with `require_ack`, for its ack); `expires_at` given,
/// also in the expiry index.
pub fn stored(store: &Store, client: &str, seq: u64, require_ack: bool, expires_at: Option<Timestamp>) -> Msg {
    let mut env = to("alice", client, seq);
    env.require_ack = require_ack;
    let mut msg = env.to_message(&format!("msg-{client}-{seq}"), seq, Timestamp::now());
    msg.expires_at = expires_at;
    let mut batch = Batch::default();
    batch.message(Stream::Inbox(client), &msg).expect("message");
    batch.enqueue(client, &msg).expect("queue entry");
    if let Some(at) = expires_at {
        batch.expire_at(at.millis(), Stream::Inbox(client), seq);
    }
    store.apply(batch).expect("written");
    msg
}

/// `secs` seconds ago, as an expiry.
pub fn ago(secs: u64) -> Option<Timestamp> {
    Some(Timestamp(Timestamp::now().millis() - i64::try_from(secs * 1000).unwrap_or(0)))
}

/// `secs` seconds from now, as an expiry.
pub fn hence(secs: u64) -> Option<Timestamp> {
    Some(Timestamp::now().plus_secs(secs))
}

/// The `n` of a payload made by [`send`].
pub fn n_of(payload: &Payload) -> u64 {
    payload.to_value()["n"].as_u64().expect("a payload made by send()")
}

/// What router shards and sessions tell the AckTracker, recorded.
pub struct TrackerProbes {
    pub track: Seen<Track>,
    pub delivered: Seen<Delivered>,
    pub expired: Seen<Expired>,
    /// Answered `true` (it was waiting for this ack).
    pub acknowledge: Seen<Acknowledge>,
}

/// A [`TrackerLink`] to probes.
pub fn tracker_probes() -> (TrackerLink, TrackerProbes) {
    let (track, track_seen) = probe::<Track>();
    let (delivered, delivered_seen) = probe::<Delivered>();
    let (expired, expired_seen) = probe::<Expired>();
    let (acknowledge, acknowledge_seen) = probe_with::<Acknowledge>(|_| true);
    let (negative_ack, _) = probe_with::<NegativeAck>(|_| true);
    let link = TrackerLink { track, delivered, expired, acknowledge, negative_ack };
    (link, TrackerProbes { track: track_seen, delivered: delivered_seen, expired: expired_seen, acknowledge: acknowledge_seen })
}

/// A session as its router shard sees it: the link, and probes for what the shard hands it.
pub struct FakeSession {
    pub link: SessionLink,
    pub deliveries: Seen<Deliver>,
    pub notes: Seen<Notify>,
    pub closes: Seen<CloseSession>,
}

impl FakeSession {
    /// A session whose backlog holds `frames` frames and `bytes` bytes.
    pub fn new(session_id: &str, frames: usize, bytes: usize) -> Self {
        let (deliver, deliveries) = probe::<Deliver>();
        let (notify, notes) = probe::<Notify>();
        let (close, closes) = probe::<CloseSession>();
        let link = SessionLink {
            session_id: session_id.into(),
            deliver,
            notify,
            close,
            backlog: Backlog::sized(frames, bytes),
            filter: TypeFilter::new(None),
            transport: Transport::WebSocket,
        };
        FakeSession { link, deliveries, notes, closes }
    }

    /// The next delivery, written (its backlog slot freed, as the session does once it wrote the
    /// frame). Returns the message's `n` and seq.
    pub async fn take(&mut self) -> (u64, u64) {
        let (n, seq, _) = self.take_noting_drain().await;
        (n, seq)
    }

    /// [`FakeSession::take`], and whether the session must now ask its shard for a catch-up
    /// (its lag drained).
    pub async fn take_noting_drain(&mut self) -> (u64, u64, bool) {
        let Deliver(out) = self.deliveries.next().await;
        let drained = self.link.backlog.delivered_sized(out.cost());
        (n_of(&out.message.payload), out.message.seq, drained)
    }
}

/// A session as a room sees it: the join link, and probes behind it.
pub struct RoomMember {
    pub session_id: String,
    pub deliveries: Seen<RoomDeliver>,
    pub notes: Seen<Notify>,
    deliver: Recipient<RoomDeliver>,
    notify: Recipient<Notify>,
}

impl RoomMember {
    pub fn new(session_id: &str) -> Self {
        let (deliver, deliveries) = probe::<RoomDeliver>();
        let (notify, notes) = probe::<Notify>();
        RoomMember { session_id: session_id.into(), deliveries, notes, deliver, notify }
    }

    /// A link for `room.join` (a new one for each join, as a session makes).
    pub fn link(&self) -> JoinLink {
        JoinLink {
            session_id: self.session_id.clone(),
            deliver: self.deliver.clone(),
            notify: self.notify.clone(),
            filter: TypeFilter::new(None),
        }
    }

    /// The next room event, as (event name, data).
    pub async fn event(&mut self) -> (String, Value) {
        let Notify(note) = self.notes.next().await;
        match &note.frame {
            ServerFrame::Event(e) => (e.event.clone(), e.data.to_value()),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// The next event named `name`, skipping others.
    pub async fn event_named(&mut self, name: &str) -> Value {
        loop {
            let (event, data) = self.event().await;
            if event == name {
                return data;
            }
        }
    }

    /// The next room message, written; returns its `n` and room seq.
    pub async fn take(&mut self) -> (u64, u64) {
        let d = self.deliveries.next().await;
        d.written();
        (n_of(&d.out.message.payload), d.out.message.seq)
    }
}
