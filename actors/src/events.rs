//! The broker's event bus: what happened (a member joined or left a room, a proposal closed, an
//! actor was restarted, a message was dead-lettered) as one [`BridgeEvent`], on a bounded broadcast
//! channel that integrations (the [`crate::webhooks`] actor) subscribe to.
//!
//! The bus lives in the supervision [`crate::supervisor::Tree`], so every supervised actor reaches
//! it through its `ChildHandle` (`child.events()`), with no new dependency between actors. Routed
//! messages are not published here: they have their own tap, [`crate::router::Monitor`], which
//! builds nothing while nobody watches. Publishing never blocks: with nobody subscribed an event is
//! dropped at once, and a subscriber that falls behind loses the oldest events (it is told how many).
//!
//! A leaf: it imports nothing from this crate.

use std::fmt;
use std::sync::Arc;

use agent_bridge_protocol::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

/// Events kept for a slow subscriber before it starts losing them.
const CAPACITY: usize = 1024;

/// The kinds of event an integration may subscribe to, with their wire names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A message was routed to a client or a room (from the router's [`crate::router::Monitor`]).
    Message,
    /// A member joined a room or one of its channels (its first session there).
    MemberJoined,
    /// A member left a room or channel, or its last session there disconnected.
    MemberLeft,
    /// A room proposal was decided or passed its deadline.
    ProposalClosed,
    /// A supervised actor was restarted after a failure.
    ActorRestarted,
    /// A require-ack message exhausted its deliveries.
    DeadLetter,
    /// A registered agent's status changed (registered, online, offline, its report, stuck).
    AgentStatus,
    /// A task changed state, progress or result (including a timeout).
    TaskUpdated,
    /// A managed agent's run wrote a line on its stdout (`agent.execute`).
    CommandProgress,
}

impl EventKind {
    /// Every kind, in documentation order.
    pub const ALL: [EventKind; 9] = [
        EventKind::Message,
        EventKind::MemberJoined,
        EventKind::MemberLeft,
        EventKind::ProposalClosed,
        EventKind::ActorRestarted,
        EventKind::DeadLetter,
        EventKind::AgentStatus,
        EventKind::TaskUpdated,
        EventKind::CommandProgress,
    ];

    /// The wire name (`member_joined`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::MemberJoined => "member_joined",
            EventKind::MemberLeft => "member_left",
            EventKind::ProposalClosed => "proposal_closed",
            EventKind::ActorRestarted => "actor_restarted",
            EventKind::DeadLetter => "dead_letter",
            EventKind::AgentStatus => "agent_status",
            EventKind::TaskUpdated => "task_updated",
            EventKind::CommandProgress => "command_progress",
        }
    }

    /// The kind of a wire name, if it is one.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event. `client_id` and `room` are what subscriptions filter on.
#[derive(Debug, Clone, Serialize)]
pub struct BridgeEvent {
    pub kind: EventKind,
    pub at: Timestamp,
    /// The client the event is about (a member, a dead letter's recipient, a message's recipient).
    pub client_id: Option<String>,
    /// The room (or `room/channel`) the event happened in.
    pub room: Option<String>,
    /// The event's details, as the receiver sees them under `data`.
    pub data: Value,
}

impl BridgeEvent {
    /// An event that happened now.
    pub fn now(kind: EventKind, client_id: Option<String>, room: Option<String>, data: Value) -> BridgeEvent {
        BridgeEvent { kind, at: Timestamp::now(), client_id, room, data }
    }
}

/// The bus: cheap to clone, every clone publishes to the same subscribers.
#[derive(Clone)]
pub struct Events(broadcast::Sender<Arc<BridgeEvent>>);

impl Default for Events {
    fn default() -> Self {
        Events(broadcast::Sender::new(CAPACITY))
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events").field("subscribers", &self.0.receiver_count()).finish()
    }
}

impl Events {
    /// Whether anybody listens: callers skip building an event nobody would see.
    pub fn watched(&self) -> bool {
        self.0.receiver_count() > 0
    }

    /// Publishes an event (dropped when nobody listens).
    pub fn publish(&self, event: BridgeEvent) {
        if self.watched() {
            let _ = self.0.send(Arc::new(event));
        }
    }

    /// A new subscriber, seeing what is published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BridgeEvent>> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_their_wire_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).expect("json"), Value::from(k.as_str()));
        }
        assert_eq!(EventKind::parse("nope"), None);
    }

    #[test]
    fn events_reach_subscribers_and_are_dropped_without_them() {
        let bus = Events::default();
        bus.publish(BridgeEvent::now(EventKind::DeadLetter, None, None, Value::Null));
        let mut rx = bus.subscribe();
        bus.publish(BridgeEvent::now(EventKind::MemberJoined, Some("a".into()), Some("lab".into()), Value::Null));
        let got = rx.try_recv().expect("one event");
        assert_eq!((got.kind, got.room.as_deref()), (EventKind::MemberJoined, Some("lab")));
        assert!(rx.try_recv().is_err(), "the event before the subscription was dropped");
    }
}
