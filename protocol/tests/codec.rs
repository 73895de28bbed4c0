//! Round trips of every WebSocket frame through JSON and bincode, their JSON shape, and old-client frames.

mod common;

use std::collections::BTreeSet;

use agent_bridge_protocol::frames::{Beat, ReceiptStatus, SentStatus};
use agent_bridge_protocol::http::SendRequest;
use agent_bridge_protocol::{ClientFrame, Payload, Priority, ServerFrame};
use common::{client_samples, payload, server_samples, Frame, LIMIT, RICH_PAYLOAD};
use serde_json::Value;

/// The keys of a JSON object, sorted.
fn keys(json: &str) -> BTreeSet<String> {
    match serde_json::from_str::<Value>(json).expect("frames encode as JSON") {
        Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("frame is not a JSON object: {other}"),
    }
}

fn key_set(expected: &[&str]) -> BTreeSet<String> {
    expected.iter().map(|k| (*k).to_owned()).collect()
}

/// Every frame type in `TYPES` has at least one sample, so a new variant cannot go untested.
fn assert_covers(types: &[&str], sampled: impl Iterator<Item = &'static str>) {
    let sampled: BTreeSet<&str> = sampled.collect();
    let all: BTreeSet<&str> = types.iter().copied().collect();
    assert_eq!(sampled, all, "every frame type needs a sample in tests/common");
}

#[test]
fn samples_cover_every_frame_type() {
    assert_covers(ClientFrame::TYPES, client_samples().iter().map(|(f, _)| f.frame_type()));
    assert_covers(ServerFrame::TYPES, server_samples().iter().map(|(f, _)| f.frame_type()));
}

/// Each sample through JSON: its tag, exactly the expected keys, and back to the same frame.
fn json_round_trip<F: Frame>(samples: Vec<(F, &[&str])>) {
    for (frame, expected_keys) in samples {
        let json = frame.json();
        let tag = format!(r#""type":"{}""#, frame.kind());
        assert!(json.contains(&tag), "{json} lacks {tag}");
        assert_eq!(keys(&json), key_set(expected_keys), "keys of {json}");
        assert_eq!(F::parse_json(&json, LIMIT), Ok(frame.clone()), "{json}");
    }
}

/// Each sample through bincode and back to the same frame.
fn bincode_round_trip<F: Frame>(samples: Vec<(F, &[&str])>) {
    for (frame, _) in samples {
        let bytes = frame.bincode();
        assert_eq!(F::parse_bincode(&bytes, LIMIT), Ok(frame.clone()), "{frame:?}");
    }
}

#[test]
fn client_frames_round_trip_through_json() {
    json_round_trip(client_samples());
}

#[test]
fn server_frames_round_trip_through_json() {
    json_round_trip(server_samples());
}

#[test]
fn client_frames_round_trip_through_bincode() {
    bincode_round_trip(client_samples());
}

#[test]
fn server_frames_round_trip_through_bincode() {
    bincode_round_trip(server_samples());
}

#[test]
fn bincode_is_more_compact_than_json() {
    fn smaller<F: Frame>(samples: Vec<(F, &[&str])>) {
        for (frame, _) in samples {
            assert!(frame.bincode().len() < frame.json().len(), "{frame:?}");
        }
    }
    smaller(client_samples());
    smaller(server_samples());
}

#[test]
fn send_json_carries_the_documented_values() {
    let json = ClientFrame::Send(common::full_send()).to_json();
    let v: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["type"], "send");
    assert_eq!(v["to"], "browser");
    assert_eq!(v["room"], Value::Null);
    assert_eq!(v["msg_type"], "command");
    assert_eq!(v["require_ack"], true);
    assert_eq!(v["priority"], "high");
    assert_eq!(v["ttl"], 60);
    assert_eq!(v["correlation_id"], "msg-0");
    assert_eq!(v["ref"], "r-1");
    assert_eq!(v["idempotency_key"], "key-1");
    assert_eq!(v["persist"], false);
    assert!(json.contains(&format!(r#""payload":{RICH_PAYLOAD}"#)), "payload re-encoded in {json}");
}

#[test]
fn status_values_are_snake_case_strings() {
    let sent = |status| {
        ServerFrame::Sent(agent_bridge_protocol::frames::Sent {
            r#ref: None,
            message_id: "m".into(),
            seq: Some(1),
            status,
            recipients: 1,
        })
        .to_json()
    };
    for (status, text) in
        [(SentStatus::Queued, "queued"), (SentStatus::Delivered, "delivered"), (SentStatus::Duplicate, "duplicate"), (SentStatus::Dropped, "dropped")]
    {
        assert!(sent(status).contains(&format!(r#""status":"{text}""#)), "{}", sent(status));
    }
    let receipt = |status| {
        ServerFrame::Receipt(agent_bridge_protocol::frames::Receipt { message_id: "m".into(), status, by: None })
            .to_json()
    };
    for (status, text) in [
        (ReceiptStatus::Delivered, "delivered"),
        (ReceiptStatus::Acked, "acked"),
        (ReceiptStatus::Expired, "expired"),
        (ReceiptStatus::Dead, "dead"),
    ] {
        assert!(receipt(status).contains(&format!(r#""status":"{text}""#)), "{}", receipt(status));
    }
}

#[test]
fn optional_send_fields_take_their_documented_defaults() {
    let text = r#"{"type":"send","to":"browser","msg_type":"command","payload":{"text":"hi"}}"#;
    let ClientFrame::Send(send) = ClientFrame::from_json(text, LIMIT).expect("minimal send") else {
        panic!("not a send frame");
    };
    assert_eq!(send.room, None);
    assert!(!send.require_ack);
    assert_eq!(send.priority, Priority::Normal);
    assert_eq!(send.ttl, None);
    assert_eq!(send.correlation_id, None);
    assert_eq!(send.r#ref, None);
    assert_eq!(send.idempotency_key, None);
    assert!(send.persist, "persist defaults to true");
}

#[test]
fn unknown_fields_are_ignored() {
    let text = r#"{"type":"ack","message_id":"msg-1","client_version":"1.4","extra":{"deep":[1,2]}}"#;
    let frame = ClientFrame::from_json(text, LIMIT).expect("extra fields are ignored");
    assert_eq!(frame, ClientFrame::Ack(agent_bridge_protocol::frames::Ack { message_id: "msg-1".into() }));
}

#[test]
fn call_params_default_to_null() {
    let frame = ClientFrame::from_json(r#"{"type":"call","ref":"c-1","method":"room.list"}"#, LIMIT).expect("call");
    let ClientFrame::Call(call) = frame else { panic!("not a call frame") };
    assert_eq!(call.params.json(), "null");
    assert_eq!(call.method, "room.list");
}

#[test]
fn client_and_server_decoders_reject_each_others_types() {
    let sent = server_samples().into_iter().find(|(f, _)| f.frame_type() == "sent").expect("a sent sample").0;
    let err = ClientFrame::from_json(&sent.to_json(), LIMIT).expect_err("sent is a server frame");
    assert_eq!(err.code(), "unknown_type");
    let send = ClientFrame::Send(common::full_send());
    let err = ServerFrame::from_json(&send.to_json(), LIMIT).expect_err("send is a client frame");
    assert_eq!(err.code(), "unknown_type");
}

#[test]
fn server_helpers_build_the_expected_frames() {
    let ServerFrame::Pong(Beat { timestamp: Some(_) }) = ServerFrame::pong() else {
        panic!("pong() must carry a timestamp");
    };
    let err = ServerFrame::error("rate_limited", "slow down", Some("r-5".into()));
    let json = err.to_json();
    assert_eq!(
        serde_json::from_str::<Value>(&json).expect("JSON"),
        serde_json::json!({"type": "error", "code": "rate_limited", "error": "slow down", "ref": "r-5"})
    );
}

/// The frames of the original Python bridge client (v1.x) decode unchanged.
mod python_client {
    use super::*;
    use agent_bridge_protocol::frames::{Ack, Send};

    #[test]
    fn send() {
        let text = r#"{"type":"send","to":"browser","msg_type":"command","payload":{"text":"hi"},"require_ack":true}"#;
        let expected = ClientFrame::Send(Send {
            to: Some("browser".into()),
            room: None,
            msg_type: "command".into(),
            payload: payload(r#"{"text":"hi"}"#),
            require_ack: true,
            priority: Priority::Normal,
            ttl: None,
            correlation_id: None,
            r#ref: None,
            idempotency_key: None,
            persist: true,
            thread_id: None,
        });
        assert_eq!(ClientFrame::from_json(text, LIMIT), Ok(expected));
    }

    #[test]
    fn ack() {
        let text = r#"{"type":"ack","message_id":"msg-1"}"#;
        assert_eq!(ClientFrame::from_json(text, LIMIT), Ok(ClientFrame::Ack(Ack { message_id: "msg-1".into() })));
    }

    #[test]
    fn ping() {
        assert_eq!(
            ClientFrame::from_json(r#"{"type":"ping"}"#, LIMIT),
            Ok(ClientFrame::Ping(Beat { timestamp: None }))
        );
    }
}

/// `POST /api/send` bodies (PROTOCOL.md section 3).
mod http_send_request {
    use super::*;

    fn decode(text: &str) -> SendRequest {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn accepts_type() {
        let req = decode(r#"{"from":"code","to":"browser","type":"command","payload":{"text":"hi"}}"#);
        assert_eq!(req.msg_type, "command");
        assert_eq!(req.from.as_deref(), Some("code"));
        assert_eq!(req.to.as_deref(), Some("browser"));
        assert_eq!(req.payload.json(), r#"{"text":"hi"}"#);
    }

    #[test]
    fn accepts_msg_type() {
        let req = decode(r#"{"to":"browser","msg_type":"status","payload":1}"#);
        assert_eq!(req.msg_type, "status");
        assert_eq!(req.payload.json(), "1");
    }

    #[test]
    fn defaults() {
        let req = decode(r#"{"room":"lab","type":"note","payload":null}"#);
        assert!(req.persist, "persist defaults to true");
        assert!(!req.require_ack);
        assert_eq!(req.priority, Priority::Normal);
        assert_eq!(req.payload, Payload::null());
        assert_eq!(
            (req.from, req.to, req.ttl, req.correlation_id, req.idempotency_key),
            (None, None, None, None, None)
        );
        assert_eq!(req.room.as_deref(), Some("lab"));
    }

    #[test]
    fn explicit_values_override_defaults() {
        let req = decode(
            r#"{"to":"pool:coders","type":"task","payload":[],"persist":false,"require_ack":true,"priority":9,"ttl":30}"#,
        );
        assert!(!req.persist);
        assert!(req.require_ack);
        assert_eq!(req.priority, Priority::Bulk);
        assert_eq!(req.ttl, Some(30));
    }

    #[test]
    fn requires_a_payload_as_the_websocket_frame_does() {
        let err = serde_json::from_str::<SendRequest>(r#"{"to":"browser","type":"t"}"#).expect_err("no payload");
        assert!(err.to_string().contains("missing field `payload`"), "{err}");
    }

    #[test]
    fn requires_a_type() {
        let err = serde_json::from_str::<SendRequest>(r#"{"to":"browser","payload":{}}"#).expect_err("no type");
        assert!(err.to_string().contains("missing field `type`"), "{err}");
    }
}
