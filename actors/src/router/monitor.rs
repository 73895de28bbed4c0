//! The traffic tap behind the dashboard's live message stream (`GET /admin/stream`): every message
//! accepted for routing, summarised, on a bounded broadcast channel. Nothing is built while nobody
//! watches; a watcher that falls behind loses the oldest summaries (it is told how many), never
//! slows the senders.

use std::sync::Arc;

use agent_bridge_protocol::Timestamp;
use serde::Serialize;
use tokio::sync::broadcast;

use actix::{Actor, AsyncContext, Context, SpawnHandle, StreamHandler};

use crate::delivery::{Envelope, Target};
use crate::events::{stream_of, BridgeEvent, EventKind};

/// Summaries kept for a slow watcher before it starts losing them.
const CAPACITY: usize = 1024;
/// Characters of the payload a summary shows.
const PREVIEW_CHARS: usize = 160;

/// One message as the dashboard shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Traffic {
    pub at: Timestamp,
    pub from: String,
    /// A client id, `all` or `pool:NAME`; absent for room messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(rename = "type")]
    pub msg_type: String,
    pub priority: agent_bridge_protocol::Priority,
    pub transport: &'static str,
    pub bytes: usize,
    pub preview: String,
}

/// The tap: cheap to clone, shared by every [`super::RouterHandle`] clone.
#[derive(Clone)]
pub struct Monitor(broadcast::Sender<Arc<Traffic>>);

impl Default for Monitor {
    fn default() -> Self {
        Monitor(broadcast::Sender::new(CAPACITY))
    }
}

impl Monitor {
    /// Publishes `env` if anybody watches.
    pub(super) fn observe(&self, env: &Envelope) {
        if self.0.receiver_count() == 0 {
            return;
        }
        let text = env.payload.json();
        let room = match &env.target {
            Target::Room(r) => Some(r.clone()),
            _ => None,
        };
        let _ = self.0.send(Arc::new(Traffic {
            at: Timestamp::now(),
            from: env.from.clone(),
            to: env.target.to_field(),
            room,
            msg_type: env.msg_type.clone(),
            priority: env.priority,
            transport: env.transport.label(),
            bytes: text.len(),
            preview: text.chars().take(PREVIEW_CHARS).collect(),
        }));
    }

    /// A new watcher, seeing what is routed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Traffic>> {
        self.0.subscribe()
    }

    /// For an integration actor (webhooks, e-mail): keeps its subscription `current` while it
    /// `wants` routed messages, and only then (the tap builds summaries only while somebody
    /// watches); answers the subscription to keep.
    pub fn watch<A>(&self, actor: &'static str, wants: bool, current: Option<SpawnHandle>, ctx: &mut Context<A>) -> Option<SpawnHandle>
    where
        A: Actor<Context = Context<A>> + StreamHandler<Arc<Traffic>>,
    {
        match (wants, current) {
            (true, None) => Some(ctx.add_stream(stream_of(actor, self.subscribe()))),
            (true, Some(handle)) => Some(handle),
            (false, Some(handle)) => {
                ctx.cancel_future(handle);
                None
            }
            (false, None) => None,
        }
    }
}

impl Traffic {
    /// The `message` event of this summary, as integrations see it.
    pub fn event(&self) -> BridgeEvent {
        let data = serde_json::to_value(self).unwrap_or_default();
        BridgeEvent { kind: EventKind::Message, at: self.at, client_id: self.to.clone(), room: self.room.clone(), data }
    }
}
