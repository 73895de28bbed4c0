//! Push: every message that arrives for this agent (direct, room, broadcast, room events) is
//! written to the host as a notification once, so the model hears of it without calling
//! `read_messages`.
//!
//! - A host that declares `capabilities.experimental["claude/channel"]` in `initialize` (Claude
//!   Code's channels) gets `notifications/claude/channel` with `{content, meta}`: the text for the
//!   model and the message's identity as string attributes. That puts the message into the model's
//!   context, so it counts as read ([`super::inbox::Inbox::take`]) and, if it asks for one, is acknowledged.
//! - Any other host gets the standard logging notification `notifications/message`
//!   (`level: info`, `logger: agent-bridge`, `data`: the message as `read_messages` shows it). MCP
//!   hosts show logs to the user, not to the model, so such a message stays unread for
//!   `read_messages` (which acknowledges it), and `logging/setLevel` above `info` silences it.
//!
//! Nothing is pushed before the host's `notifications/initialized`; what arrived before it is pushed
//! then. The notifications go through the server's one stdout writer, between whole responses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use agent_bridge_protocol::Message;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};

use super::tools::{message_json, Bridge};

/// The capability key of Claude Code's channels, in `capabilities.experimental`.
pub const CHANNEL_CAPABILITY: &str = "claude/channel";
/// The notification a channel host turns into a `<channel>` block of the model's context.
const CHANNEL_METHOD: &str = "notifications/claude/channel";
/// The standard MCP logging notification.
const LOG_METHOD: &str = "notifications/message";
/// MCP logging levels, least severe first; messages are pushed at `info`.
const LEVELS: &[&str] = &["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// What the host said about itself, as the pusher needs it.
#[derive(Debug)]
pub struct Session {
    /// The host declared `claude/channel` in its last `initialize`.
    channel: AtomicBool,
    /// The host's `logging/setLevel` lets `info` through (the default).
    info_logs: AtomicBool,
    /// Set by `notifications/initialized`; the pusher waits for it.
    initialized: watch::Sender<bool>,
}

impl Default for Session {
    fn default() -> Self {
        Session { channel: AtomicBool::new(false), info_logs: AtomicBool::new(true), initialized: watch::channel(false).0 }
    }
}

impl Session {
    /// Records the capabilities of an `initialize`; true when the host speaks `claude/channel`.
    pub fn initialize(&self, params: &Value) -> bool {
        let channel = params.pointer("/capabilities/experimental").and_then(Value::as_object).is_some_and(|e| e.contains_key(CHANNEL_CAPABILITY));
        self.channel.store(channel, Ordering::Relaxed);
        channel
    }

    /// The host sent `notifications/initialized`: pushing may start.
    pub fn initialized(&self) {
        self.initialized.send_replace(true);
    }

    /// `logging/setLevel`: an error sentence for a level MCP does not name.
    pub fn set_level(&self, params: &Value) -> Result<(), String> {
        let level = params.get("level").and_then(Value::as_str).unwrap_or_default();
        let rank = LEVELS.iter().position(|l| *l == level).ok_or_else(|| format!("logging/setLevel: \"level\" must be one of {LEVELS:?}"))?;
        self.info_logs.store(rank <= 1, Ordering::Relaxed);
        Ok(())
    }

    fn channel(&self) -> bool {
        self.channel.load(Ordering::Relaxed)
    }
}

/// Pushes the inbox to the host until the server stops (the task is aborted) or stdout closes.
pub async fn run(bridge: Arc<Bridge>, out: mpsc::UnboundedSender<String>) {
    let mut initialized = bridge.session.initialized.subscribe();
    if initialized.wait_for(|i| *i).await.is_err() {
        return;
    }
    let mut arrivals = bridge.inbox.subscribe();
    let mut pushed = 0;
    loop {
        pushed = push_new(&bridge, pushed, &out);
        if out.is_closed() || arrivals.changed().await.is_err() {
            return;
        }
    }
}

/// Pushes what arrived after `pushed`; returns the cursor to continue from.
fn push_new(bridge: &Bridge, pushed: u64, out: &mpsc::UnboundedSender<String>) -> u64 {
    let channel = bridge.session.channel();
    let (messages, cursor) = bridge.inbox.take(pushed, channel);
    for (c, m) in &messages {
        let note = if channel {
            channel_notification(m)
        } else if bridge.session.info_logs.load(Ordering::Relaxed) {
            log_notification(m, *c)
        } else {
            continue;
        };
        let _ = out.send(note.to_string());
        if channel && m.requires_ack {
            // In the model's context now: what the sender asked to hear about.
            let _ = bridge.client.ack(&m.id);
        }
    }
    cursor
}

/// `notifications/claude/channel`: the text for the model and the message's identity.
pub fn channel_notification(m: &Message) -> Value {
    let mut meta = Map::new();
    meta.insert("from".into(), json!(m.from));
    meta.insert("type".into(), json!(m.msg_type));
    meta.insert("message_id".into(), json!(m.id));
    if let Some(room) = &m.room {
        meta.insert("room".into(), json!(room));
    }
    if let Some(c) = &m.correlation_id {
        meta.insert("correlation_id".into(), json!(c));
    }
    // Channel attributes are strings.
    meta.insert("seq".into(), json!(m.seq.to_string()));
    json!({"jsonrpc": "2.0", "method": CHANNEL_METHOD, "params": {"content": content(m), "meta": meta}})
}

/// `notifications/message` at `info` with the message as `read_messages` shows it.
pub fn log_notification(m: &Message, cursor: u64) -> Value {
    json!({"jsonrpc": "2.0", "method": LOG_METHOD, "params": {"level": "info", "logger": "agent-bridge", "data": message_json(m, Some(cursor))}})
}

/// The payload as text for the model: a string, the `text` of `{"text": ...}`, or the JSON.
fn content(m: &Message) -> String {
    match m.payload.to_value() {
        Value::String(s) => s,
        Value::Object(o) if o.len() == 1 && o.get("text").is_some_and(Value::is_string) => o["text"].as_str().unwrap_or_default().to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_notification_carries_text_and_string_meta() {
        let mut m = crate::client::sample_message(7, "msg-1");
        m.payload = agent_bridge_protocol::Payload::from_serialize(&json!({"text": "hi"}));
        m.correlation_id = Some("req-1".into());
        let n = channel_notification(&m);
        assert_eq!(n["method"], CHANNEL_METHOD);
        assert_eq!(n["params"]["content"], "hi");
        assert_eq!(n["params"]["meta"]["seq"], "7");
        assert_eq!(n["params"]["meta"]["correlation_id"], "req-1");
        assert!(n["params"]["meta"].get("room").is_none());
        m.payload = agent_bridge_protocol::Payload::from_serialize(&json!({"n": 1}));
        assert_eq!(channel_notification(&m)["params"]["content"], r#"{"n":1}"#);
    }

    #[test]
    fn the_session_reads_capabilities_and_levels() {
        let s = Session::default();
        assert!(s.initialize(&json!({"capabilities": {"experimental": {"claude/channel": {}}}})));
        assert!(!s.initialize(&json!({"capabilities": {}})));
        assert!(s.set_level(&json!({"level": "warning"})).is_ok());
        assert!(!s.info_logs.load(Ordering::Relaxed));
        assert!(s.set_level(&json!({"level": "loud"})).is_err());
    }
}
