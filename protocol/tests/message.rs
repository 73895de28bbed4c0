//! The message object of PROTOCOL.md section 1: its exact JSON shape, priorities, timestamps and payloads.

mod common;

use agent_bridge_protocol::frames::Delivery;
use agent_bridge_protocol::{decode_bincode, encode_bincode, ClientFrame, Message, Priority, ServerFrame, Timestamp};
use common::{example_message, payload, room_message, time, EXAMPLE_TIME, LIMIT, RICH_PAYLOAD};
use serde_json::{json, Value};

fn to_value(message: &Message) -> Value {
    serde_json::from_str(&serde_json::to_string(message).expect("messages serialize")).expect("valid JSON")
}

#[test]
fn json_shape_matches_the_protocol_example() {
    let expected = json!({
        "id": "msg-01JD7Z3K9Q8X",
        "seq": 4711,
        "from": "code",
        "to": "browser",
        "room": null,
        "type": "command",
        "payload": {"text": "hello"},
        "timestamp": "2026-11-22T09:10:12.345Z",
        "priority": "normal",
        "requires_ack": false,
        "correlation_id": null,
        "expires_at": null,
        "thread_id": null
    });
    assert_eq!(to_value(&example_message()), expected);
}

#[test]
fn json_text_uses_the_protocol_spellings() {
    let text = serde_json::to_string(&room_message()).expect("serialize");
    for fragment in [
        r#""type":"proposal""#,
        r#""to":null"#,
        r#""room":"lab/side""#,
        r#""timestamp":"2026-11-22T09:10:12.001Z""#,
        r#""expires_at":"2026-11-22T09:11:12.001Z""#,
        r#""priority":"critical""#,
        r#""requires_ack":true"#,
        r#""thread_id":"th-1""#,
    ] {
        assert!(text.contains(fragment), "{text} lacks {fragment}");
    }
    assert!(!text.contains("msg_type"), "the message object calls it \"type\": {text}");
}

#[test]
fn protocol_example_text_decodes() {
    let text = r#"{
        "id": "msg-01JD7Z3K9Q8X", "seq": 4711, "from": "code", "to": "browser", "room": null,
        "type": "command", "payload": {"text": "hello"}, "timestamp": "2026-11-22T09:10:12.345Z",
        "priority": "normal", "requires_ack": false, "correlation_id": null, "expires_at": null
    }"#;
    let message: Message = serde_json::from_str(text).expect("the documented example decodes");
    assert_eq!(message, example_message());
}

#[test]
fn priorities_serialize_as_lowercase_names() {
    for (priority, name) in [
        (Priority::Critical, "critical"),
        (Priority::High, "high"),
        (Priority::Normal, "normal"),
        (Priority::Low, "low"),
        (Priority::Bulk, "bulk"),
    ] {
        let message = Message { priority, ..example_message() };
        assert_eq!(to_value(&message)["priority"], name);
        assert_eq!(priority.to_string(), name);
    }
}

#[test]
fn numeric_priorities_are_accepted() {
    for (number, priority) in
        [(1, Priority::Critical), (3, Priority::High), (5, Priority::Normal), (7, Priority::Low), (9, Priority::Bulk)]
    {
        let mut value = to_value(&example_message());
        value["priority"] = json!(number);
        let message: Message = serde_json::from_str(&value.to_string()).expect("numeric priority");
        assert_eq!(message.priority, priority, "priority {number}");

        let send = format!(r#"{{"type":"send","to":"b","msg_type":"t","payload":null,"priority":{number}}}"#);
        let Ok(ClientFrame::Send(send)) = ClientFrame::from_json(&send, LIMIT) else {
            panic!("send with priority {number} did not decode");
        };
        assert_eq!(send.priority, priority, "send priority {number}");
    }
}

#[test]
fn priority_names_are_case_insensitive_and_unknown_ones_rejected() {
    let decode = |p: &str| serde_json::from_str::<Priority>(p);
    assert_eq!(decode(r#""HIGH""#).ok(), Some(Priority::High));
    for bad in [r#""urgent""#, "11", "-1", "5.0", "true", "null"] {
        assert!(decode(bad).is_err(), "priority {bad} must be rejected");
    }
}

#[test]
fn timestamps_are_utc_with_milliseconds() {
    assert_eq!(time(EXAMPLE_TIME).to_rfc3339(), EXAMPLE_TIME);
    assert_eq!(time("2026-11-22T11:10:12.345+02:00").to_rfc3339(), EXAMPLE_TIME, "offsets normalize to Z");
    assert_eq!(time("2026-11-22T09:10:12Z").to_rfc3339(), "2026-11-22T09:10:12.000Z", "always three digits");
    assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
    assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    let bad = to_value(&example_message()).to_string().replace(EXAMPLE_TIME, "22/11/2026");
    assert!(serde_json::from_str::<Message>(&bad).is_err(), "a non-RFC 3339 timestamp is an error");
}

#[test]
fn payload_text_survives_json_byte_for_byte() {
    let text = serde_json::to_string(&room_message()).expect("serialize");
    assert!(text.contains(&format!(r#""payload":{RICH_PAYLOAD}"#)), "payload re-encoded: {text}");
    let back: Message = serde_json::from_str(&text).expect("decode");
    assert_eq!(back.payload.json(), RICH_PAYLOAD);
    assert_eq!(back, room_message());
}

#[test]
fn payload_text_survives_bincode_byte_for_byte() {
    let bytes = encode_bincode(&room_message()).expect("encode");
    let back: Message = decode_bincode(&bytes).expect("decode");
    assert_eq!(back.payload.json(), RICH_PAYLOAD);
    assert_eq!(back, room_message());
}

#[test]
fn payload_text_survives_a_send_relayed_as_a_delivery() {
    // The path a payload takes through the broker: client JSON, bincode in the store, JSON to the recipient.
    let inbound = format!(r#"{{"type":"send","to":"browser","msg_type":"command","payload":{RICH_PAYLOAD}}}"#);
    let Ok(ClientFrame::Send(send)) = ClientFrame::from_json(&inbound, LIMIT) else { panic!("send did not decode") };
    let stored = encode_bincode(&Message { payload: send.payload, ..example_message() }).expect("encode");
    let message: Message = decode_bincode(&stored).expect("decode");
    let outbound = ServerFrame::Message(Delivery { message }).to_json();
    assert!(outbound.contains(&format!(r#""payload":{RICH_PAYLOAD}"#)), "payload re-encoded: {outbound}");
}

#[test]
fn scalar_payloads_round_trip() {
    for text in ["null", "true", "0", "-12.5e-3", r#""just a string""#, "[]", "{}", r#""\ud83d\ude00""#] {
        let message = Message { payload: payload(text), ..example_message() };
        let json: Message = serde_json::from_str(&serde_json::to_string(&message).expect("ser")).expect("de");
        let bin: Message = decode_bincode(&encode_bincode(&message).expect("encode")).expect("decode");
        assert_eq!(json.payload.json(), text);
        assert_eq!(bin.payload.json(), text);
    }
}

#[test]
fn bincode_round_trips_messages() {
    for message in [example_message(), room_message()] {
        let bytes = encode_bincode(&message).expect("encode");
        assert_eq!(decode_bincode::<Message>(&bytes), Ok(message));
    }
    let batch = vec![example_message(), room_message()];
    assert_eq!(decode_bincode::<Vec<Message>>(&encode_bincode(&batch).expect("encode")), Ok(batch));
}

#[test]
fn decode_bincode_rejects_garbage() {
    let bytes = encode_bincode(&example_message()).expect("encode");
    for len in 0..bytes.len() {
        let err = decode_bincode::<Message>(&bytes[..len]).expect_err("a truncated message must not decode");
        assert_eq!(err.code(), "bad_frame");
    }
}

#[test]
fn expiry() {
    let message = room_message();
    let expires = message.expires_at.expect("room_message expires");
    assert!(!message.is_expired(Timestamp(expires.millis() - 1)));
    assert!(message.is_expired(expires));
    assert!(!example_message().is_expired(Timestamp(i64::MAX)), "no expires_at: never expires");
    assert_eq!(message.timestamp.plus_secs(60), expires);
}

#[test]
fn timestamp_bounds_are_the_rfc3339_range() {
    assert_eq!(Timestamp::MIN.to_rfc3339(), "0000-01-01T00:00:00.000Z");
    assert_eq!(Timestamp::MAX.to_rfc3339(), "9999-12-31T23:59:59.999Z");
    for t in [Timestamp::MIN, Timestamp::MAX] {
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
    }
}

#[test]
fn huge_ttl_gives_an_expiry_that_json_can_carry() {
    // A client-controlled ttl of 10^12 s (or u64::MAX) used to give a five-digit year (unparseable) or, once
    // saturated at i64::MAX, "1970-01-01T00:00:00.000Z" (already expired).
    let sent_at = time(EXAMPLE_TIME);
    for ttl in [1_000_000_000_000, u64::MAX] {
        let expires_at = sent_at.plus_secs(ttl);
        assert_eq!(expires_at, Timestamp::MAX, "ttl {ttl}");
        let message = Message { expires_at: Some(expires_at), ..example_message() };
        let text = serde_json::to_string(&message).expect("serialize");
        assert_eq!(serde_json::from_str::<Message>(&text).expect("decode"), message, "{text}");
        assert!(!message.is_expired(sent_at));
    }
    assert_eq!(sent_at.plus_secs(60).millis(), sent_at.millis() + 60_000);
}

#[test]
fn bincode_rejects_timestamps_json_cannot_write() {
    for millis in [Timestamp::MAX.millis() + 1, Timestamp::MIN.millis() - 1, i64::MAX, i64::MIN] {
        let bytes = encode_bincode(&Timestamp(millis)).expect("encode");
        assert_eq!(decode_bincode::<Timestamp>(&bytes).map_err(|e| e.code()), Err("bad_frame"), "{millis}");
        let pong = ServerFrame::Pong(agent_bridge_protocol::frames::Beat { timestamp: Some(Timestamp(millis)) });
        assert!(ServerFrame::from_bincode(&pong.to_bincode(), LIMIT).is_err(), "{millis}");
    }
    for t in [Timestamp::MIN, Timestamp::MAX, Timestamp(0)] {
        assert_eq!(decode_bincode::<Timestamp>(&encode_bincode(&t).expect("encode")), Ok(t));
    }
}
