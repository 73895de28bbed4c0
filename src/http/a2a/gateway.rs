//! The gateway's side of the broker: it sends A2A messages to agents as broker client
//! [`GATEWAY`], and reads their replies from that client's inbox.
//!
//! The replies are read the way an HTTP long-poll client reads them (`Poll` on the gateway's
//! router shard, from the undelivered queue, parking on the shard's wake-up when it is empty):
//! no session or socket of its own, and what it reads is dequeued like any HTTP delivery, so the
//! inbox never grows. One reader task runs per broker, started with the HTTP server.

use std::time::Duration;

use actix_web::web;
use agent_bridge_actors::ack_tracker::Acknowledge;
use agent_bridge_actors::delivery::Envelope;
use agent_bridge_actors::router::{Poll, PollFrom, Polled};
use agent_bridge_protocol::http::SendRequest;
use serde_json::{json, Value};
use tracing::{debug, warn};

use super::wire::A2aError;
use crate::http::AppState;

/// The broker client id the gateway sends as; agents reply to it.
pub const GATEWAY: &str = "a2a:gateway";
/// The broker message type of an A2A message to an agent.
pub const MESSAGE_TYPE: &str = "a2a.message";
/// The broker message type telling an agent a task was canceled.
pub const CANCEL_TYPE: &str = "a2a.cancel";

/// Whether broker client `agent` is connected now (a WebSocket, SSE or MCP session).
pub async fn online(state: &AppState, agent: &str) -> bool {
    state.broker.router.clients().await.iter().any(|c| c.client_id == agent && !c.sessions.is_empty())
}

/// The connected clients (the gateway's card lists them).
pub async fn agents(state: &AppState) -> Vec<String> {
    let clients = state.broker.router.clients().await;
    clients.into_iter().filter(|c| !c.sessions.is_empty() && c.client_id != GATEWAY).map(|c| c.client_id).collect()
}

/// Sends a broker message from the gateway to `agent`, correlated with `task_id`.
pub async fn send(state: &AppState, agent: &str, msg_type: &str, task_id: &str, payload: Value) -> Result<(), A2aError> {
    let req = json!({ "from": GATEWAY, "to": agent, "type": msg_type, "payload": payload, "correlation_id": task_id });
    let req: SendRequest = serde_json::from_value(req).map_err(|e| A2aError::Internal(e.to_string()))?;
    let env = Envelope::from_http(req, GATEWAY).map_err(|e| A2aError::InvalidParams(e.to_string()))?;
    state.broker.router.route(env).await.map_err(|e| A2aError::Internal(format!("routing to {agent}: {e}")))?;
    Ok(())
}

/// The payload of an `a2a.message`: the A2A message, its parts, and their text joined.
pub fn message_payload(task_id: &str, context_id: &str, message: &Value) -> Value {
    let parts = message.get("parts").cloned().unwrap_or_else(|| json!([]));
    let text: Vec<&str> = parts.as_array().into_iter().flatten().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
    json!({ "task_id": task_id, "context_id": context_id, "text": text.join("\n"), "parts": parts, "message": message })
}

/// Reads the gateway's inbox for as long as the broker runs and hands each reply (a message
/// whose `correlation_id` is a task id) to the task table.
pub async fn read_replies(state: web::Data<AppState>) {
    let shard = state.broker.router.shard(GATEWAY).poll.clone();
    loop {
        let polled = shard.send(Poll { client_id: GATEWAY.into(), from: PollFrom::Queue, limit: 100, wait: true, seen: false }).await;
        match polled {
            Ok(Ok(Polled::Page { messages, .. })) => {
                for m in messages {
                    if m.requires_ack {
                        state.broker.tracker.do_send(Acknowledge { client_id: GATEWAY.into(), message_id: m.id.clone() });
                    }
                    let Some(task) = m.correlation_id.as_deref() else { continue };
                    let payload = m.payload.to_value();
                    match state.a2a.reply(task, &m.from, &payload) {
                        Some(t) => debug!(task = %t.id, from = %m.from, "a2a task answered"),
                        None => debug!(task, from = %m.from, "a2a reply for no open task of that agent: ignored"),
                    }
                }
            }
            Ok(Ok(Polled::Wait { wake, .. })) => {
                let _ = tokio::time::timeout(Duration::from_secs(30), wake).await;
            }
            Ok(Err(e)) => {
                warn!(error = %e, "a2a gateway: reading replies failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}
