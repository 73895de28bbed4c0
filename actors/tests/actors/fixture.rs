//! What the actor tests share: a temporary store, a supervision tree with a child handle, sends,
//! and the stand-in for a session (its link to the router or a room, with probes behind it).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use agent_bridge_actors::delivery::{Backlog, Deliver, Envelope, Notify, SessionLink, Target, Transport, TypeFilter};
use agent_bridge_actors::room::{JoinLink, RoomDeliver};
use agent_bridge_actors::store::Store;
use agent_bridge_actors::supervisor::{ChildHandle, ChildSpec, Intensity, RestartPolicy, Tree};
use agent_bridge_protocol::{Payload, Priority, ServerFrame};
use serde_json::{json, Value};

use super::probe::{probe, Seen};

/// A temporary store: in memory, gone with the test; commits answer at once.
pub fn store() -> Store {
    Store::open(None, None).expect("a temporary store opens")
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
    Envelope {
        from: from.into(),
        target,
        msg_type: "note".into(),
        payload: Payload::from_serialize(&json!({ "n": n })),
        priority: Priority::Normal,
        ttl: None,
        require_ack: false,
        correlation_id: None,
        idempotency_key: None,
        persist: true,
        transport: Transport::WebSocket,
    }
}

/// A send to one client.
pub fn to(from: &str, client: &str, n: u64) -> Envelope {
    send(from, Target::Client(client.into()), n)
}

/// The `n` of a payload made by [`send`].
pub fn n_of(payload: &Payload) -> u64 {
    payload.to_value()["n"].as_u64().expect("a payload made by send()")
}

/// A session as its router shard sees it: the link, and probes for what the shard hands it.
pub struct FakeSession {
    pub link: SessionLink,
    pub deliveries: Seen<Deliver>,
    pub notes: Seen<Notify>,
}

impl FakeSession {
    /// A session whose backlog holds `frames` frames and `bytes` bytes.
    pub fn new(session_id: &str, frames: usize, bytes: usize) -> Self {
        let (deliver, deliveries) = probe::<Deliver>();
        let (notify, notes) = probe::<Notify>();
        let link = SessionLink {
            session_id: session_id.into(),
            deliver,
            notify,
            backlog: Backlog::sized(frames, bytes),
            filter: TypeFilter::new(None),
            transport: Transport::WebSocket,
        };
        FakeSession { link, deliveries, notes }
    }

    /// The next delivery, written (its backlog slot freed, as the session does once it wrote the
    /// frame). Returns the message's `n` and seq.
    pub async fn take(&mut self) -> (u64, u64) {
        let Deliver(out) = self.deliveries.next().await;
        self.link.backlog.delivered_sized(out.cost());
        (n_of(&out.message.payload), out.message.seq)
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
