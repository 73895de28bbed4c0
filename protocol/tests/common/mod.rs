//! Sample values shared by the protocol test files: one of every frame, and a message like PROTOCOL.md's.

#![allow(dead_code)] // each test file uses a different subset

use agent_bridge_protocol::frames::{
    Ack, Beat, Call, CallResult, ConnectionConfirmed, Delivery, Dropped, ErrorBody, ErrorFrame, Event, Join, Leave, Nack,
    Receipt, ReceiptStatus, Send, Sent, SentStatus, ServerInfo, Subscribe,
};
use agent_bridge_protocol::{ClientFrame, Message, Payload, Priority, ServerFrame, Timestamp};

/// The frame size limit used by the tests (the protocol default).
pub const LIMIT: usize = agent_bridge_protocol::DEFAULT_MAX_FRAME_BYTES;

/// The timestamp of PROTOCOL.md's example message.
pub const EXAMPLE_TIME: &str = "2026-11-22T09:10:12.345Z";

/// A payload from JSON text, kept verbatim.
pub fn payload(json: &str) -> Payload {
    Payload::from_json_text(json.to_owned()).expect("test payloads are valid JSON")
}

/// A parsed RFC 3339 time.
pub fn time(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).expect("test times are RFC 3339")
}

/// A payload exercising nesting, unicode, escapes and every kind of JSON number.
pub const RICH_PAYLOAD: &str = r#"{"text": "héllo 日本 😀 \"quoted\" \u00e9", "n": [0, -7, 2.50, 1e3, 18446744073709551615], "nested": {"z": {"a": [true, false, null]}, "a": {}}}"#;

/// The example message of PROTOCOL.md section 1.
pub fn example_message() -> Message {
    Message {
        id: "msg-01JD7Z3K9Q8X".into(),
        seq: 4711,
        from: "code".into(),
        to: Some("browser".into()),
        room: None,
        msg_type: "command".into(),
        payload: payload(r#"{"text":"hello"}"#),
        timestamp: time(EXAMPLE_TIME),
        priority: Priority::Normal,
        requires_ack: false,
        correlation_id: None,
        expires_at: None,
    }
}

/// A room message with every optional field set.
pub fn room_message() -> Message {
    Message {
        id: "msg-01JD7Z3K9Q8Y".into(),
        seq: 12,
        from: "planner@lab".into(),
        to: None,
        room: Some("lab/side".into()),
        msg_type: "proposal".into(),
        payload: payload(RICH_PAYLOAD),
        timestamp: time("2026-11-22T09:10:12.001Z"),
        priority: Priority::Critical,
        requires_ack: true,
        correlation_id: Some("msg-01JD7Z3K9Q8X".into()),
        expires_at: Some(time("2026-11-22T09:11:12.001Z")),
    }
}

/// One `send` with every optional field set.
pub fn full_send() -> Send {
    Send {
        to: Some("browser".into()),
        room: None,
        msg_type: "command".into(),
        payload: payload(RICH_PAYLOAD),
        require_ack: true,
        priority: Priority::High,
        ttl: Some(60),
        correlation_id: Some("msg-0".into()),
        r#ref: Some("r-1".into()),
        idempotency_key: Some("key-1".into()),
        persist: false,
    }
}

/// One sample of every client frame, paired with the snake_case keys its JSON object must have.
pub fn client_samples() -> Vec<(ClientFrame, &'static [&'static str])> {
    #[rustfmt::skip]
    const SEND: &[&str] = &[
        "type", "to", "room", "msg_type", "payload", "require_ack", "priority", "ttl", "correlation_id", "ref",
        "idempotency_key", "persist",
    ];
    const BEAT: &[&str] = &["type", "timestamp"];
    let room_send = Send {
        to: None,
        room: Some("lab".into()),
        r#ref: None,
        ttl: None,
        persist: true,
        payload: Payload::null(),
        ..full_send()
    };
    vec![
        (ClientFrame::Send(full_send()), SEND),
        (ClientFrame::Send(room_send), SEND),
        (ClientFrame::Ack(Ack { message_id: "msg-1".into() }), &["type", "message_id"]),
        (
            ClientFrame::Nack(Nack { message_id: "msg-1".into(), reason: Some("busy".into()) }),
            &["type", "message_id", "reason"],
        ),
        (ClientFrame::Ping(Beat::default()), BEAT),
        (ClientFrame::Pong(Beat { timestamp: Some(time(EXAMPLE_TIME)) }), BEAT),
        (ClientFrame::Subscribe(Subscribe { types: vec!["command".into(), "status".into()] }), &["type", "types"]),
        (ClientFrame::Subscribe(Subscribe { types: vec![] }), &["type", "types"]),
        (
            ClientFrame::Join(Join { room: "lab".into(), role: Some("reviewer".into()), since: Some(41) }),
            &["type", "room", "role", "since"],
        ),
        (ClientFrame::Leave(Leave { room: "lab/side".into() }), &["type", "room"]),
        (
            ClientFrame::Call(Call {
                r#ref: "c-7".into(),
                method: "room.create".into(),
                params: payload(r#"{"name":"lab","topic":"ünï"}"#),
            }),
            &["type", "ref", "method", "params"],
        ),
    ]
}

/// One sample of every server frame, paired with the snake_case keys its JSON object must have.
pub fn server_samples() -> Vec<(ServerFrame, &'static [&'static str])> {
    // `recipients` is this server's documented extension of `sent`.
    const SENT: &[&str] = &["type", "ref", "message_id", "seq", "status", "recipients"];
    const RESULT: &[&str] = &["type", "ref", "ok", "result", "error"];
    const BEAT: &[&str] = &["type", "timestamp"];
    let sent = |status, seq, r#ref: Option<&str>| {
        ServerFrame::Sent(Sent { r#ref: r#ref.map(Into::into), message_id: "msg-2".into(), seq, status, recipients: 1 })
    };
    let mut samples: Vec<(ServerFrame, &'static [&'static str])> = vec![
        (
            ServerFrame::ConnectionConfirmed(ConnectionConfirmed {
                client_id: "code".into(),
                session_id: "sess-1".into(),
                server: ServerInfo { name: "agent-bridge".into(), version: "1.0.0".into() },
                timestamp: time(EXAMPLE_TIME),
                heartbeat_s: 30,
                resumed_from: Some(4700),
            }),
            &["type", "client_id", "session_id", "server", "timestamp", "heartbeat_s", "resumed_from"],
        ),
        (ServerFrame::Message(Delivery { message: example_message() }), &["type", "message"]),
        (ServerFrame::Message(Delivery { message: room_message() }), &["type", "message"]),
        (sent(SentStatus::Queued, Some(4711), Some("r-1")), SENT),
        (sent(SentStatus::Delivered, None, None), SENT),
        (sent(SentStatus::Duplicate, Some(1), Some("r-2")), SENT),
        (sent(SentStatus::Dropped, Some(4), Some("r-5")), SENT),
        (
            ServerFrame::Result(CallResult {
                r#ref: "c-7".into(),
                ok: true,
                result: Some(payload(r#"{"room":"lab","members":[]}"#)),
                error: None,
            }),
            RESULT,
        ),
        (
            ServerFrame::Result(CallResult {
                r#ref: "c-8".into(),
                ok: false,
                result: None,
                error: Some(ErrorBody { code: "not_member".into(), error: "not a member of lab".into() }),
            }),
            RESULT,
        ),
        (
            ServerFrame::Event(Event {
                event: "member_joined".into(),
                room: Some("lab".into()),
                data: payload(r#"{"client_id":"code","role":"reviewer"}"#),
            }),
            &["type", "event", "room", "data"],
        ),
        (ServerFrame::Ping(Beat { timestamp: Some(time(EXAMPLE_TIME)) }), BEAT),
        (ServerFrame::Pong(Beat::default()), BEAT),
        (
            ServerFrame::Error(ErrorFrame {
                code: "bad_frame".into(),
                error: "missing field".into(),
                r#ref: Some("r-3".into()),
                retry_after: None,
            }),
            &["type", "code", "error", "ref"],
        ),
        (
            ServerFrame::rate_limited("slow down", Some("r-4".into()), 3),
            &["type", "code", "error", "ref", "retry_after"],
        ),
        (
            ServerFrame::Dropped(Dropped { count: 42, since: time(EXAMPLE_TIME), reason: "slow_consumer".into(), room: None }),
            &["type", "count", "since", "reason", "room"],
        ),
        (
            ServerFrame::Dropped(Dropped { count: 1, since: time(EXAMPLE_TIME), reason: "slow_consumer".into(), room: Some("lab".into()) }),
            &["type", "count", "since", "reason", "room"],
        ),
    ];
    for status in [ReceiptStatus::Delivered, ReceiptStatus::Acked, ReceiptStatus::Expired, ReceiptStatus::Dead] {
        let by = (status != ReceiptStatus::Dead).then(|| "browser".to_owned());
        samples.push((
            ServerFrame::Receipt(Receipt { message_id: "msg-2".into(), status, by }),
            &["type", "message_id", "status", "by"],
        ));
    }
    samples
}
