//! [`BrokerPort`]: the MCP tools ([`crate::cli::mcp::tools`]) acting inside the broker, for an
//! agent connected to `/mcp`. It goes through the same internals as the HTTP API: sends are routed
//! like `POST /api/send` ([`api::route_send`]), reads are long-polls of the agent's inbox at its
//! shard like `GET /api/messages` ([`api::poll`]), calls go to the rooms like `POST /api/call`, all
//! with the request's credentials.
//!
//! The read cursor is the inbox's seq: the broker keeps the inbox, so a read can start anywhere
//! and nothing is lost between requests, with or without an MCP session. What this agent last read
//! and the messages it recently saw (for `reply`) live in its [`Agent`] record.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_bridge_actors::ack_tracker::Acknowledge;
use agent_bridge_actors::router::PollFrom;
use agent_bridge_protocol::frames::Sent;
use agent_bridge_protocol::http::SendRequest;
use agent_bridge_protocol::{Message, Payload};
use serde_json::{json, Map, Value};

use crate::cli::mcp::inbox::Page;
use crate::cli::mcp::tools::AgentPort;
use crate::client::{ClientError, Outgoing};
use crate::http::auth::Caller;
use crate::http::{api, ApiError, AppState};

/// Messages an agent record remembers for `reply`.
const RECENT: usize = 500;

/// What the broker remembers of one client id's MCP use: the read position and recent messages.
#[derive(Debug, Default)]
pub struct Agent {
    /// The inbox seq after the last message a default read returned.
    read: AtomicU64,
    /// Messages returned lately (by reads and `ask`), newest last.
    recent: parking_lot::Mutex<VecDeque<Message>>,
}

impl Agent {
    fn remember(&self, messages: &[Message]) {
        let mut recent = self.recent.lock();
        for m in messages {
            recent.push_back(m.clone());
        }
        while recent.len() > RECENT {
            recent.pop_front();
        }
    }
}

/// One tool call's view of the broker: the agent, its credentials, the broker state.
pub struct BrokerPort<'a> {
    pub state: &'a AppState,
    pub caller: &'a Caller,
    pub client_id: String,
    pub agent: Arc<Agent>,
}

/// A broker error in the client library's words, so both transports answer alike.
fn client_error(e: ApiError) -> ClientError {
    ClientError::Server { code: e.code.to_owned(), message: e.message }
}

/// How far back in the inbox `wait_reply` looks for a reply that already came.
const REPLY_LOOKBACK: u64 = 1000;

impl BrokerPort<'_> {
    /// A page of this agent's inbox after `after`, waiting up to `wait` when it is empty.
    async fn poll(&self, after: u64, limit: usize, wait: Duration) -> Result<(Vec<Message>, u64), ClientError> {
        let (messages, next) = api::poll(self.state, &self.client_id, PollFrom::Seq(after), limit, wait.as_secs_f64()).await.map_err(client_error)?;
        self.agent.remember(&messages);
        Ok((messages, next))
    }

    /// The seq of the newest message in this agent's inbox.
    async fn newest(&self) -> Result<u64, ClientError> {
        let (_, next) = api::poll(self.state, &self.client_id, PollFrom::Seq(u64::MAX), 1, 0.0).await.map_err(client_error)?;
        Ok(next)
    }
}

impl AgentPort for BrokerPort<'_> {
    fn client_id(&self) -> &str {
        &self.client_id
    }

    async fn connected(&self) -> Result<(), String> {
        Ok(())
    }

    async fn send(&self, msg: Outgoing) -> Result<Sent, ClientError> {
        let req = SendRequest {
            from: Some(self.client_id.clone()),
            to: msg.to,
            room: msg.room,
            msg_type: msg.msg_type,
            payload: Payload::from(msg.payload),
            priority: msg.priority,
            ttl: msg.ttl,
            require_ack: msg.require_ack,
            correlation_id: msg.correlation_id,
            thread_id: msg.thread_id,
            idempotency_key: msg.idempotency_key,
            persist: msg.persist,
        };
        let routed = api::route_send(self.state, self.caller, req).await.map_err(client_error)?;
        Ok(Sent { r#ref: None, message_id: routed.message_id, seq: routed.seq, status: routed.status, recipients: routed.recipients })
    }

    async fn request(&self, mut msg: Outgoing, within: Duration) -> Result<Message, ClientError> {
        let deadline = Instant::now() + within;
        let correlation = msg.correlation_id.get_or_insert_with(|| format!("req-{}", uuid::Uuid::now_v7().simple())).clone();
        // Replies are looked for after what the inbox holds now.
        let mut after = self.newest().await?;
        let sent = self.send(msg).await?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (messages, next) = self.poll(after, 100, left).await?;
            let answers = |m: &&Message| m.correlation_id.as_deref().is_some_and(|c| c == correlation || c == sent.message_id);
            if let Some(reply) = messages.iter().find(answers) {
                return Ok(reply.clone());
            }
            after = next.max(after);
            if left.is_zero() {
                return Err(ClientError::Timeout { after: within, waiting_for: "a reply".into() });
            }
        }
    }

    async fn wait_reply(&self, correlation: &str, within: Duration) -> Result<Option<Message>, ClientError> {
        let deadline = Instant::now() + within;
        // The reply came after the request: look back over the recent inbox, then wait on.
        let mut after = self.newest().await?.saturating_sub(REPLY_LOOKBACK);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (messages, next) = self.poll(after, 100, left).await?;
            if let Some(reply) = messages.iter().find(|m| m.correlation_id.as_deref() == Some(correlation)) {
                return Ok(Some(reply.clone()));
            }
            if next <= after && left.is_zero() || left.is_zero() && messages.is_empty() {
                return Ok(None);
            }
            after = next.max(after);
        }
    }

    async fn call(&self, method: &str, params: &Map<String, Value>) -> Result<Value, ClientError> {
        let params = Payload::from(Value::Object(params.clone()));
        let identity = Some(Arc::clone(&self.caller.0));
        self.state.broker.rooms.call(&self.client_id, identity, method, &params, None).await.map_err(|e| client_error(e.into()))
    }

    async fn read(&self, after: Option<u64>, limit: usize, wait: Duration) -> Page {
        let from = after.unwrap_or_else(|| self.agent.read.load(Ordering::Relaxed));
        match self.poll(from, limit, wait).await {
            Ok((messages, next)) => {
                self.agent.read.fetch_max(next, Ordering::Relaxed);
                let more = messages.len() >= limit;
                Page { messages: messages.into_iter().map(|m| (m.seq, m)).collect(), cursor: next, more, missed: 0 }
            }
            Err(e) => {
                tracing::warn!(client_id = %self.client_id, error = %e, "mcp read failed");
                Page { messages: Vec::new(), cursor: from, more: false, missed: 0 }
            }
        }
    }

    fn find(&self, id: &str) -> Option<Message> {
        self.agent.recent.lock().iter().rev().find(|m| m.id == id).cloned()
    }

    fn ack(&self, id: &str) {
        self.state.broker.tracker.do_send(Acknowledge { client_id: self.client_id.clone(), message_id: id.to_owned() });
    }

    async fn status(&self) -> Value {
        json!({
            "client_id": self.client_id,
            "transport": "mcp over streamable HTTP, served by the broker",
            "connection": "connected",
            "permissions": self.caller.permissions.names(),
            "inbox_cursor": self.agent.read.load(Ordering::Relaxed),
            "broker": api::status_json(self.state).await,
        })
    }

    fn failure(&self, e: &ClientError, what: &str) -> String {
        match e {
            ClientError::Server { code, message } if code == "forbidden" => {
                format!("{what}: refused ({code}): {message}; the credentials of this MCP connection do not allow it")
            }
            e => format!("{what}: {e}"),
        }
    }
}
