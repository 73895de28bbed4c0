//! [`Outgoing`]: a message to send, built fluently and turned into a `send` frame.

use agent_bridge_protocol::frames::Send;
use agent_bridge_protocol::ids::{validate_msg_type, validate_room, Recipient};
use agent_bridge_protocol::{Message, Payload, Priority};
use serde_json::Value;

use super::ClientError;

/// A message to send: to a client, `all`, `pool:<name>`, or a room.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub to: Option<String>,
    pub room: Option<String>,
    pub msg_type: String,
    pub payload: Value,
    pub require_ack: bool,
    pub priority: Priority,
    /// Seconds to live.
    pub ttl: Option<u64>,
    pub correlation_id: Option<String>,
    /// Filled in by the client when absent, so that a send retried after a reconnect is routed once.
    pub idempotency_key: Option<String>,
    /// false: fire-and-forget to online recipients only, never stored (and never retried).
    pub persist: bool,
    /// The conversation (PROTOCOL.md section 7, threads); replies keep the request's.
    pub thread_id: Option<String>,
}

impl Outgoing {
    /// A message to a client id, `all` or `pool:<name>`.
    pub fn to(to: impl Into<String>, msg_type: impl Into<String>, payload: Value) -> Self {
        Outgoing { to: Some(to.into()), ..Outgoing::blank(msg_type.into(), payload) }
    }

    /// A message to every member of a room.
    pub fn room(room: impl Into<String>, msg_type: impl Into<String>, payload: Value) -> Self {
        Outgoing { room: Some(room.into()), ..Outgoing::blank(msg_type.into(), payload) }
    }

    /// A reply to `request`: addressed to its sender, carrying its correlation id (or its id),
    /// in its thread (or a thread named after the request's id).
    pub fn reply_to(request: &Message, msg_type: impl Into<String>, payload: Value) -> Self {
        let correlation = request.correlation_id.clone().unwrap_or_else(|| request.id.clone());
        let thread = request.thread_id.clone().unwrap_or_else(|| request.id.clone());
        Outgoing::to(request.from.clone(), msg_type, payload).correlation_id(correlation).thread_id(thread)
    }

    fn blank(msg_type: String, payload: Value) -> Self {
        Outgoing {
            to: None,
            room: None,
            msg_type,
            payload,
            require_ack: false,
            priority: Priority::Normal,
            ttl: None,
            correlation_id: None,
            idempotency_key: None,
            persist: true,
            thread_id: None,
        }
    }

    /// Asks the recipient to acknowledge it (redelivered until acked).
    pub fn require_ack(mut self, on: bool) -> Self {
        self.require_ack = on;
        self
    }

    pub fn priority(mut self, p: Priority) -> Self {
        self.priority = p;
        self
    }

    pub fn ttl(mut self, secs: Option<u64>) -> Self {
        self.ttl = secs;
        self
    }

    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Puts the message in a thread.
    pub fn thread_id(mut self, id: impl Into<String>) -> Self {
        self.thread_id = Some(id.into());
        self
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Not stored; only online recipients get it.
    pub fn fire_and_forget(mut self) -> Self {
        self.persist = false;
        self
    }

    /// Checks what the broker would reject, so that the error names the argument.
    pub fn validate(&self) -> Result<(), ClientError> {
        match (&self.to, &self.room) {
            (Some(to), None) => {
                Recipient::parse(to)?;
            }
            (None, Some(room)) => validate_room(room)?,
            (Some(_), Some(_)) => {
                return Err(ClientError::Protocol("a message goes to a recipient or to a room, not both".into()))
            }
            (None, None) => return Err(ClientError::Protocol("a message needs a recipient or a room".into())),
        }
        validate_msg_type(&self.msg_type)?;
        Ok(())
    }

    /// The `send` frame with this `ref`.
    pub(crate) fn into_frame(self, r#ref: String) -> Send {
        Send {
            to: self.to,
            room: self.room,
            msg_type: self.msg_type,
            payload: Payload::from(self.payload),
            require_ack: self.require_ack,
            priority: self.priority,
            ttl: self.ttl,
            correlation_id: self.correlation_id,
            r#ref: Some(r#ref),
            idempotency_key: self.idempotency_key,
            persist: self.persist,
            thread_id: self.thread_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_carry_the_request_correlation() {
        let mut req = crate::client::sample_message(1, "msg-1");
        req.from = "asker".into();
        let r = Outgoing::reply_to(&req, "answer", json!(1));
        assert_eq!((r.to.as_deref(), r.correlation_id.as_deref()), (Some("asker"), Some("msg-1")));
        req.correlation_id = Some("req-9".into());
        assert_eq!(Outgoing::reply_to(&req, "answer", json!(1)).correlation_id.as_deref(), Some("req-9"));
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(Outgoing::to("bob", "t", json!(null)).validate().is_ok());
        assert!(Outgoing::to("pool:coders", "t", json!(null)).validate().is_ok());
        assert!(Outgoing::room("lab/side", "t", json!(null)).validate().is_ok());
        assert!(Outgoing::to("a b", "t", json!(null)).validate().is_err());
        assert!(Outgoing::to("bob", "", json!(null)).validate().is_err());
        let mut both = Outgoing::to("bob", "t", json!(null));
        both.room = Some("lab".into());
        assert!(both.validate().is_err());
    }

    #[test]
    fn frame_keeps_every_option() {
        let f = Outgoing::to("bob", "t", json!({"a": 1}))
            .require_ack(true)
            .priority(Priority::High)
            .ttl(Some(5))
            .idempotency_key("k")
            .thread_id("t-9")
            .fire_and_forget()
            .into_frame("s-1".into());
        let json: Value = serde_json::from_str(&agent_bridge_protocol::ClientFrame::Send(f).to_json()).expect("json");
        assert_eq!(
            json,
            json!({"type": "send", "to": "bob", "room": null, "msg_type": "t", "payload": {"a": 1}, "require_ack": true,
                   "priority": "high", "ttl": 5, "correlation_id": null, "thread_id": "t-9", "ref": "s-1", "idempotency_key": "k", "persist": false})
        );
    }
}
