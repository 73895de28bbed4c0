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
//! [`EventFilter`] is what a subscription (a webhook, an e-mail subscription) wants of the bus.
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
    /// A task changed state, progress or result (including a timeout; `data` is the task), or a
    /// card of a room's task board was added or moved (`data.action`: `added` or `moved`, `data.card`).
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

/// The wire names of every kind, for error messages (`message, member_joined, …`).
pub fn kind_names() -> String {
    EventKind::ALL.map(EventKind::as_str).join(", ")
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

    /// One line for people (Slack, Discord, a mail's subject), cut at `max_chars`.
    pub fn summary(&self, max_chars: usize) -> String {
        let d = &self.data;
        let s = |k: &str| match d.get(k) {
            Some(Value::String(v)) => v.clone(),
            Some(Value::Null) | None => "-".to_owned(),
            Some(other) => other.to_string(),
        };
        let room = self.room.clone().unwrap_or_else(|| "-".into());
        let card = |k: &str| d.get("card").and_then(|c| c.get(k)).and_then(Value::as_str).unwrap_or("-").to_owned();
        let text = match self.kind {
            EventKind::Message => {
                let to = d.get("to").and_then(Value::as_str).map_or(format!("room {room}"), str::to_owned);
                format!("{} → {to} [{}]: {}", s("from"), s("type"), s("preview"))
            }
            EventKind::MemberJoined => format!("{} joined {room}", s("client_id")),
            EventKind::MemberLeft => format!("{} left {room} ({})", s("client_id"), s("reason")),
            EventKind::ProposalClosed => format!("proposal {} in {room} closed: {}", s("proposal_id"), s("outcome")),
            EventKind::ActorRestarted => format!("actor {} restarted ({}), {} restarts", s("actor"), s("reason"), s("restarts")),
            EventKind::DeadLetter => format!("message {} from {} to {} dead-lettered: {}", s("message_id"), s("from"), s("to"), s("reason")),
            EventKind::AgentStatus => format!("agent {} is {} ({})", s("client_id"), s("status"), s("detail")),
            EventKind::TaskUpdated if d.get("card").is_some() => {
                format!("card {} in {room} {} ({}): {}", card("card_id"), s("action"), card("column"), card("title"))
            }
            EventKind::TaskUpdated => format!("task {} ({}) for {} is {}", s("id"), s("title"), s("assignee"), s("state")),
            EventKind::CommandProgress => format!("managed agent {}: {}", s("agent"), s("line")),
        };
        let text = format!("agent-bridge: {text}");
        match text.char_indices().nth(max_chars) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    }
}

/// What an integration subscribes to: event kinds, and optionally only the events about one client
/// or in one room (with its channels). Webhooks and e-mail subscriptions both hold one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    pub events: Vec<EventKind>,
    pub client_id: Option<String>,
    pub room: Option<String>,
}

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// An event name that is no [`EventKind`].
    UnknownEvent(String),
    /// No events, or a filter value out of bounds.
    Invalid(String),
}

impl EventFilter {
    /// Checks an operator's request: at least one known event name (duplicates dropped), and a
    /// `client_id` or `room` of 1 to 256 characters when given.
    pub fn new(events: &[String], client_id: Option<String>, room: Option<String>) -> Result<EventFilter, FilterError> {
        if events.is_empty() {
            return Err(FilterError::Invalid("events must name at least one event".into()));
        }
        let mut kinds = Vec::new();
        for name in events {
            let kind = EventKind::parse(name).ok_or_else(|| FilterError::UnknownEvent(name.clone()))?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        for (what, v) in [("client_id", &client_id), ("room", &room)] {
            if v.as_ref().is_some_and(|v| v.is_empty() || v.len() > 256) {
                return Err(FilterError::Invalid(format!("{what} must be 1 to 256 characters")));
            }
        }
        Ok(EventFilter { events: kinds, client_id, room })
    }

    /// Whether `event` passes: its kind, and the optional filters (a message matches a client
    /// filter by its recipient or its sender; a room filter matches the room and its channels).
    pub fn matches(&self, event: &BridgeEvent) -> bool {
        let client_ok = self.client_id.as_deref().is_none_or(|c| {
            event.client_id.as_deref() == Some(c)
                || (event.kind == EventKind::Message && event.data.get("from").and_then(|f| f.as_str()) == Some(c))
        });
        let room_ok = self.room.as_deref().is_none_or(|r| {
            event.room.as_deref().is_some_and(|e| e == r || e.strip_prefix(r).is_some_and(|rest| rest.starts_with('/')))
        });
        self.events.contains(&event.kind) && client_ok && room_ok
    }

    /// Whether the filter wants `message` events (the router's monitor is watched only then).
    pub fn wants_messages(&self) -> bool {
        self.events.contains(&EventKind::Message)
    }
}

/// A broadcast receiver as a stream, for an actor's `add_stream`; a receiver that fell behind
/// logs what it lost (under `actor`) and goes on.
pub fn stream_of<T: Clone + Send + 'static>(actor: &'static str, rx: broadcast::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(v) => return Some((v, rx)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(actor, lost = n, "fell behind the events; some were not delivered");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
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
    fn filters_match_clients_and_rooms_with_their_channels() {
        let names = |e: &[&str]| e.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut filter = EventFilter::new(&names(&["member_joined", "message", "message"]), None, Some("lab".into())).expect("valid");
        assert_eq!(filter.events, [EventKind::MemberJoined, EventKind::Message]);
        let joined = |room: &str| BridgeEvent::now(EventKind::MemberJoined, Some("a".into()), Some(room.into()), serde_json::json!({}));
        assert!(filter.matches(&joined("lab")) && filter.matches(&joined("lab/ops")));
        assert!(!filter.matches(&joined("labs")));
        filter.room = None;
        filter.client_id = Some("bob".into());
        let msg = BridgeEvent::now(EventKind::Message, Some("carol".into()), None, serde_json::json!({"from": "bob"}));
        assert!(filter.matches(&msg), "a message from the client matches");
        assert!(!filter.matches(&joined("lab")));
        assert_eq!(EventFilter::new(&names(&["nope"]), None, None), Err(FilterError::UnknownEvent("nope".into())));
        assert!(matches!(EventFilter::new(&[], None, None), Err(FilterError::Invalid(_))));
        assert!(matches!(EventFilter::new(&names(&["message"]), Some(String::new()), None), Err(FilterError::Invalid(_))));
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
