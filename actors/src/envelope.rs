//! Wire → actor conversion: the one place where `send` frames and `POST /api/send` bodies are
//! validated and turned into an [`Envelope`] for the router.

use agent_bridge_protocol::frames::Send;
use agent_bridge_protocol::http::SendRequest;
use agent_bridge_protocol::ids::{validate_msg_type, validate_room, Recipient};
use agent_bridge_protocol::ProtocolError;

use crate::delivery::{Envelope, Target, Transport};

/// The longest correlation id or idempotency key accepted.
const MAX_KEY_LEN: usize = 256;

fn target(to: Option<&str>, room: Option<&str>) -> Result<Target, ProtocolError> {
    match (to, room) {
        (Some(_), Some(_)) => Err(ProtocolError::InvalidValue {
            field: "to",
            reason: "give either \"to\" or \"room\", not both".into(),
        }),
        (None, None) => Err(ProtocolError::InvalidValue { field: "to", reason: "\"to\" or \"room\" is required".into() }),
        (None, Some(room)) => {
            validate_room(room)?;
            Ok(Target::Room(room.to_owned()))
        }
        (Some(to), None) => Ok(match Recipient::parse(to)? {
            Recipient::Client(c) => Target::Client(c.to_owned()),
            Recipient::Broadcast => Target::Broadcast,
            Recipient::Pool(p) => Target::Pool(p.to_owned()),
        }),
    }
}

fn check_key(field: &'static str, value: Option<&String>) -> Result<(), ProtocolError> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_KEY_LEN => {
            Err(ProtocolError::InvalidValue { field, reason: format!("must be 1 to {MAX_KEY_LEN} bytes") })
        }
        _ => Ok(()),
    }
}

/// A thread id is a key (1 to 256 bytes) that names a store index entry, so it cannot hold the
/// `\0` that ends names in the store's keys.
fn check_thread(value: Option<&String>) -> Result<(), ProtocolError> {
    check_key("thread_id", value)?;
    match value {
        Some(v) if v.contains('\0') => Err(ProtocolError::InvalidValue { field: "thread_id", reason: "must not contain NUL".into() }),
        _ => Ok(()),
    }
}

/// A `send` frame and a `POST /api/send` body carry the same fields: one validation for both.
macro_rules! validated {
    ($src:ident, $from:expr, $transport:expr) => {{
        let target = target($src.to.as_deref(), $src.room.as_deref())?;
        validate_msg_type(&$src.msg_type)?;
        check_key("correlation_id", $src.correlation_id.as_ref())?;
        check_key("idempotency_key", $src.idempotency_key.as_ref())?;
        check_thread($src.thread_id.as_ref())?;
        Ok(Envelope {
            from: $from.to_owned(),
            target,
            msg_type: $src.msg_type,
            payload: $src.payload,
            priority: $src.priority,
            ttl: $src.ttl,
            require_ack: $src.require_ack,
            correlation_id: $src.correlation_id,
            idempotency_key: $src.idempotency_key,
            persist: $src.persist,
            thread_id: $src.thread_id,
            transport: $transport,
            pool: None,
        })
    }};
}

impl Envelope {
    /// Validates a `send` frame from `from` (the session's bound identity).
    pub fn from_frame(frame: Send, from: &str) -> Result<Self, ProtocolError> {
        validated!(frame, from, Transport::WebSocket)
    }

    /// Validates a `POST /api/send` body from `from` (the request's bound identity).
    pub fn from_http(req: SendRequest, from: &str) -> Result<Self, ProtocolError> {
        validated!(req, from, Transport::Http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_bridge_protocol::ClientFrame;

    fn send(json: &str) -> Send {
        match ClientFrame::from_json(json, 1 << 20) {
            Ok(ClientFrame::Send(s)) => s,
            other => panic!("not a send frame: {other:?}"),
        }
    }

    #[test]
    fn targets() {
        let e = Envelope::from_frame(send(r#"{"type":"send","to":"b","msg_type":"t","payload":1}"#), "a").expect("ok");
        assert_eq!(e.target, Target::Client("b".into()));
        let e = Envelope::from_frame(send(r#"{"type":"send","to":"all","msg_type":"t","payload":1}"#), "a").expect("ok");
        assert_eq!(e.target, Target::Broadcast);
        let e = Envelope::from_frame(send(r#"{"type":"send","room":"lab/x","msg_type":"t","payload":1}"#), "a").expect("ok");
        assert_eq!(e.target, Target::Room("lab/x".into()));
    }

    #[test]
    fn rejects() {
        for (json, code) in [
            (r#"{"type":"send","msg_type":"t","payload":1}"#, "bad_frame"),
            (r#"{"type":"send","to":"a","room":"r","msg_type":"t","payload":1}"#, "bad_frame"),
            (r#"{"type":"send","to":"bad id","msg_type":"t","payload":1}"#, "invalid_recipient"),
            (r#"{"type":"send","to":"b","msg_type":"","payload":1}"#, "bad_frame"),
        ] {
            assert_eq!(Envelope::from_frame(send(json), "a").map(|_| ()).map_err(|e| e.code()), Err(code), "{json}");
        }
    }
}
