//! Malformed input, one test per class: each yields its exact `ProtocolError` variant and stable code.

mod common;

use agent_bridge_protocol::frames::{extract_ref, ErrorFrame};
use agent_bridge_protocol::{ClientFrame, ProtocolError, ServerFrame};
use common::{client_samples, server_samples, Frame, LIMIT};

fn client_err(text: &str) -> ProtocolError {
    ClientFrame::from_json(text, LIMIT).expect_err(text)
}

#[test]
fn bad_json_is_malformed() {
    for text in ["", "not json", r#"{"type":"send","#, r#"{"type":"ping"} trailing"#, "{'type':'ping'}", "\u{feff}{}"] {
        let err = client_err(text);
        assert!(matches!(err, ProtocolError::Malformed { .. }), "{text:?}: {err:?}");
        assert_eq!(err.code(), "bad_frame");
    }
}

#[test]
fn json_that_is_not_an_object_is_not_a_frame() {
    // Arrays matter most: serde reads structs from arrays positionally, so `["ack","msg-1"]` must not
    // become an `ack`.
    for text in ["null", "42", "true", r#""send""#, "[]", r#"["ack"]"#, r#" ["ack","msg-1"]"#, r#"["leave","lab"]"#] {
        let err = client_err(text);
        assert_eq!(err, ProtocolError::NotAFrame, "{text}");
        assert_eq!(err.code(), "bad_frame");
        assert_eq!(ServerFrame::from_json(text, LIMIT), Err(ProtocolError::NotAFrame), "{text}");
    }
}

#[test]
fn object_without_type_is_not_a_frame() {
    for text in ["{}", r#"{"message_id":"msg-1"}"#, r#"{"type":null}"#, r#"{"Type":"ping"}"#] {
        let err = client_err(text);
        assert_eq!(err, ProtocolError::NotAFrame, "{text}");
        assert_eq!(err.code(), "bad_frame");
    }
}

#[test]
fn non_string_type_is_not_a_frame() {
    for text in [r#"{"type":5}"#, r#"{"type":true}"#, r#"{"type":["send"]}"#, r#"{"type":{"name":"send"}}"#] {
        let err = client_err(text);
        assert_eq!(err, ProtocolError::NotAFrame, "{text}");
        assert_eq!(err.code(), "bad_frame");
    }
}

#[test]
fn unknown_type() {
    let err = client_err(r#"{"type":"teleport","to":"mars"}"#);
    assert_eq!(err, ProtocolError::UnknownType { frame_type: "teleport".into() });
    assert_eq!(err.code(), "unknown_type");
    // Types are case-sensitive.
    assert_eq!(client_err(r#"{"type":"SEND"}"#).code(), "unknown_type");
}

/// The original bridge's `collab` frames get `not_supported` naming the frame or call to send instead.
#[test]
fn collab_frames_name_what_to_send_instead() {
    let cases = [
        (r#"{"type":"collab","action":"create_room","topic":"Build","role":"coordinator"}"#, r#""method":"room.create""#),
        (r#"{"type":"collab","action":"join_room","room_id":"r1","role":"coder"}"#, r#"{"type":"join","room""#),
        (r#"{"type":"collab","action":"send_message","room_id":"r1","text":"hi"}"#, r#"{"type":"send","room""#),
        (r#"{"type":"collab","action":"vote","decision_id":"d1"}"#, "proposal.vote"),
        (r#"{"type":"collab","action":"propose_decision"}"#, "proposal.create"),
        (r#"{"type":"collab"}"#, "room.create"),
        (r#"{"type":"collab","action":42}"#, "room.create"),
    ];
    for (text, hint) in cases {
        let err = client_err(text);
        assert!(matches!(err, ProtocolError::Superseded { .. }), "{text}: {err:?}");
        assert_eq!(err.code(), "not_supported", "{text}");
        assert!(err.to_string().contains(hint), "{text}: {err}");
    }
}

#[test]
fn unknown_type_is_truncated_in_the_error() {
    let long = "x".repeat(10_000);
    let err = client_err(&format!(r#"{{"type":"{long}"}}"#));
    assert_eq!(err, ProtocolError::UnknownType { frame_type: "x".repeat(64) });
}

#[test]
fn missing_field() {
    let cases = [
        (r#"{"type":"send","to":"browser","payload":{"text":"hi"}}"#, "send", "msg_type"),
        (r#"{"type":"send","to":"browser","msg_type":"command"}"#, "send", "payload"),
        (r#"{"type":"ack"}"#, "ack", "message_id"),
        (r#"{"type":"nack","reason":"busy"}"#, "nack", "message_id"),
        (r#"{"type":"subscribe"}"#, "subscribe", "types"),
        (r#"{"type":"join","role":"x"}"#, "join", "room"),
        (r#"{"type":"leave"}"#, "leave", "room"),
        (r#"{"type":"call","ref":"c-1"}"#, "call", "method"),
        (r#"{"type":"call","method":"room.list"}"#, "call", "ref"),
    ];
    for (text, frame_type, field) in cases {
        let err = client_err(text);
        assert_eq!(err, ProtocolError::MissingField { frame_type: frame_type.into(), field: field.into() }, "{text}");
        assert_eq!(err.code(), "bad_frame");
    }
}

#[test]
fn missing_field_in_a_server_frame() {
    let err = ServerFrame::from_json(r#"{"type":"sent","ref":null,"seq":1,"status":"queued","recipients":1}"#, LIMIT)
        .expect_err("sent without message_id");
    assert_eq!(err, ProtocolError::MissingField { frame_type: "sent".into(), field: "message_id".into() });
}

#[test]
fn wrong_field_type() {
    let base = r#""type":"send","to":"browser","msg_type":"command","payload":{}"#;
    for extra in [
        r#""require_ack":"yes""#,
        r#""persist":1"#,
        r#""priority":"urgent""#,
        r#""priority":11"#,
        r#""ttl":-1"#,
        r#""ttl":"60""#,
        r#""to":42"#,
        r#""ref":{"id":1}"#,
    ] {
        let text = format!("{{{base},{extra}}}");
        let err = client_err(&text);
        assert!(
            matches!(&err, ProtocolError::InvalidField { frame_type, .. } if frame_type == "send"),
            "{text}: {err:?}"
        );
        let field = extra.split('"').nth(1).expect("field name");
        if !base.contains(&format!("\"{field}\"")) {
            assert!(err.to_string().contains(&format!("\"{field}\"")), "the error names {field}: {err}");
        }
        assert_eq!(err.code(), "bad_frame");
    }
    for text in [r#"{"type":"subscribe","types":"command"}"#, r#"{"type":"ping","timestamp":"yesterday"}"#] {
        assert!(matches!(client_err(text), ProtocolError::InvalidField { .. }), "{text}");
    }
}

#[test]
fn oversized_json_frame() {
    let text = r#"{"type":"ack","message_id":"msg-1"}"#;
    assert!(ClientFrame::from_json(text, text.len()).is_ok(), "a frame exactly at the limit is accepted");
    let err = ClientFrame::from_json(text, text.len() - 1).expect_err("one byte over the limit");
    assert_eq!(err, ProtocolError::TooLarge { size: text.len(), limit: text.len() - 1 });
    assert_eq!(err.code(), "too_large");

    let big = format!(r#"{{"type":"send","to":"b","msg_type":"t","payload":"{}"}}"#, "x".repeat(LIMIT));
    assert_eq!(ClientFrame::from_json(&big, LIMIT).map_err(|e| e.code()), Err("too_large"));
}

#[test]
fn oversized_bincode_frame() {
    let bytes = ClientFrame::Send(common::full_send()).to_bincode();
    assert!(ClientFrame::from_bincode(&bytes, bytes.len()).is_ok());
    let err = ClientFrame::from_bincode(&bytes, bytes.len() - 1).expect_err("over the limit");
    assert_eq!(err, ProtocolError::TooLarge { size: bytes.len(), limit: bytes.len() - 1 });
    assert_eq!(err.code(), "too_large");
}

#[test]
fn truncated_bincode_is_an_error_at_every_point() {
    fn truncated<F: Frame>(samples: Vec<(F, &[&str])>) {
        for (frame, _) in samples {
            let bytes = frame.bincode();
            for len in 0..bytes.len() {
                let err = F::parse_bincode(&bytes[..len], LIMIT)
                    .expect_err(&format!("{} truncated to {len} of {} bytes", frame.kind(), bytes.len()));
                assert!(matches!(err, ProtocolError::Malformed { .. }), "{err:?}");
            }
        }
    }
    truncated(client_samples());
    truncated(server_samples());
}

#[test]
fn trailing_bytes_after_bincode() {
    for (frame, _) in client_samples() {
        let mut bytes = frame.to_bincode();
        bytes.push(0);
        let err = ClientFrame::from_bincode(&bytes, LIMIT).expect_err("trailing byte");
        assert_eq!(err, ProtocolError::Malformed { detail: "1 trailing bytes after the frame".into() });
        assert_eq!(err.code(), "bad_frame");
    }
    let mut two = ServerFrame::pong().to_bincode();
    two.extend(ServerFrame::pong().to_bincode());
    assert!(matches!(ServerFrame::from_bincode(&two, LIMIT), Err(ProtocolError::Malformed { .. })));
}

#[test]
fn corrupted_bincode_is_an_error() {
    // An out-of-range variant index and a payload that is not JSON text.
    assert!(matches!(ClientFrame::from_bincode(&[200], LIMIT), Err(ProtocolError::Malformed { .. })));
    let ack = ClientFrame::Ack(agent_bridge_protocol::frames::Ack { message_id: "m".into() }).to_bincode();
    let mut bad_utf8 = ack.clone();
    *bad_utf8.last_mut().expect("non-empty") = 0xff;
    assert!(matches!(ClientFrame::from_bincode(&bad_utf8, LIMIT), Err(ProtocolError::Malformed { .. })));

    let call = ClientFrame::from_json(r#"{"type":"call","ref":"r","method":"m","params":7}"#, LIMIT).expect("call");
    let mut not_json = call.to_bincode();
    *not_json.last_mut().expect("non-empty") = b'x'; // params "7" becomes "x"
    assert!(matches!(ClientFrame::from_bincode(&not_json, LIMIT), Err(ProtocolError::Malformed { .. })));
}

#[test]
fn extract_ref_finds_the_ref_of_a_bad_frame() {
    let text = r#"{"type":"send","ref":"r-9","to":"browser","payload":{}}"#;
    assert!(matches!(client_err(text), ProtocolError::MissingField { .. }));
    assert_eq!(extract_ref(text).as_deref(), Some("r-9"));
    assert_eq!(extract_ref(r#"{"type":"send","ref":17,"require_ack":"yes"}"#).as_deref(), Some("17"));
    assert_eq!(extract_ref(r#"{"type":"teleport","ref":"r-10"}"#).as_deref(), Some("r-10"));
}

#[test]
fn extract_ref_gives_up_without_a_usable_ref() {
    for text in [
        r#"{"type":"send"}"#,
        r#"{"type":"send","ref":null}"#,
        r#"{"type":"send","ref":{"id":1}}"#,
        r#"{"type":"send","ref":"r-1""#,
        "not json",
        r#"["r-1"]"#,
    ] {
        assert_eq!(extract_ref(text), None, "{text}");
    }
}

#[test]
fn error_frames_carry_the_code() {
    let text = r#"{"type":"send","ref":"r-9","to":"browser","payload":{}}"#;
    let err = client_err(text);
    let frame = ErrorFrame::from_protocol(&err, extract_ref(text));
    assert_eq!(frame.code, "bad_frame");
    assert_eq!(frame.r#ref.as_deref(), Some("r-9"));
    assert!(frame.error.contains("msg_type"), "{}", frame.error);
}

#[test]
fn every_error_variant_has_its_stable_code() {
    let cases = [
        (ProtocolError::Malformed { detail: String::new() }, "bad_frame"),
        (ProtocolError::NotAFrame, "bad_frame"),
        (ProtocolError::UnknownType { frame_type: String::new() }, "unknown_type"),
        (ProtocolError::MissingField { frame_type: String::new(), field: String::new() }, "bad_frame"),
        (ProtocolError::InvalidField { frame_type: String::new(), detail: String::new() }, "bad_frame"),
        (ProtocolError::TooLarge { size: 2, limit: 1 }, "too_large"),
        (ProtocolError::InvalidClientId { id: String::new(), reason: "" }, "invalid_client_id"),
        (ProtocolError::InvalidRecipient { to: String::new(), reason: "" }, "invalid_recipient"),
        (ProtocolError::InvalidValue { field: "room", reason: String::new() }, "bad_frame"),
    ];
    for (err, code) in cases {
        assert_eq!(err.code(), code, "{err:?}");
    }
}
