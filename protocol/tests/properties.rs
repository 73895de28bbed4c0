//! Property tests: arbitrary frames round-trip, arbitrary input never panics, ids follow the documented rule.

mod common;

use agent_bridge_protocol::frames::{Delivery, Send};
use agent_bridge_protocol::ids::{validate_client_id, validate_msg_type, validate_room, Recipient};
use agent_bridge_protocol::{ClientFrame, Message, Payload, Priority, ProtocolError, ServerFrame, Timestamp};
use common::{client_samples, server_samples, Frame, LIMIT};
use proptest::prelude::*;
use serde_json::Value;

/// Any JSON value: every scalar kind, nested arrays and objects with arbitrary (unicode) keys.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_priority() -> impl Strategy<Value = Priority> {
    prop::sample::select(Priority::ALL.to_vec())
}

fn arb_send() -> impl Strategy<Value = Send> {
    let text = || proptest::option::of(any::<String>());
    (
        (text(), text(), any::<String>(), arb_json()),
        (any::<bool>(), arb_priority(), proptest::option::of(any::<u64>())),
        (text(), text(), text(), any::<bool>(), text()),
    )
        .prop_map(
            |(
                (to, room, msg_type, payload),
                (require_ack, priority, ttl),
                (correlation_id, r#ref, idempotency_key, persist, thread_id),
            )| Send {
                to,
                room,
                msg_type,
                payload: Payload::from(payload),
                require_ack,
                priority,
                ttl,
                correlation_id,
                r#ref,
                idempotency_key,
                persist,
                thread_id,
            },
        )
}

/// Milliseconds in years 1 to 9999, the range RFC 3339 can write.
fn arb_timestamp() -> impl Strategy<Value = Timestamp> {
    (-62_135_596_800_000_i64..=253_402_300_799_999).prop_map(Timestamp)
}

fn arb_message() -> impl Strategy<Value = Message> {
    let text = || proptest::option::of(any::<String>());
    (
        (any::<String>(), any::<u64>(), any::<String>(), text(), text(), any::<String>()),
        (arb_json(), arb_timestamp(), arb_priority(), any::<bool>(), text(), proptest::option::of(arb_timestamp())),
        text(),
    )
        .prop_map(
            |(
                (id, seq, from, to, room, msg_type),
                (payload, timestamp, priority, requires_ack, correlation_id, expires_at),
                thread_id,
            )| Message {
                id,
                seq,
                from,
                to,
                room,
                msg_type,
                payload: Payload::from(payload),
                timestamp,
                priority,
                requires_ack,
                correlation_id,
                expires_at,
                thread_id,
            },
        )
}

/// A JSON object tagged with a known frame type and filled with known field names holding any values:
/// near-valid frames, which reach the per-variant decoders rather than stopping at the tag.
fn arb_frame_object() -> impl Strategy<Value = (&'static str, String)> {
    #[rustfmt::skip]
    const FIELDS: &[&str] = &[
        "to", "room", "msg_type", "payload", "require_ack", "priority", "ttl", "ref", "message_id", "reason",
        "timestamp", "types", "role", "since", "method", "params", "message", "seq", "status", "ok", "error", "code",
    ];
    let types: Vec<&str> = ClientFrame::TYPES.iter().chain(ServerFrame::TYPES).copied().collect();
    (prop::sample::select(types), prop::collection::btree_map(prop::sample::select(FIELDS), arb_json(), 0..8)).prop_map(
        |(frame_type, fields)| {
            let mut object: serde_json::Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            object.insert("type".into(), Value::from(frame_type));
            (frame_type, Value::Object(object).to_string())
        },
    )
}

/// A decoded frame must survive its own re-encoding.
/// A decoded frame encodes and decodes back to itself, through JSON and through bincode.
fn assert_stable<F: Frame>(frame: &F) -> Result<(), TestCaseError> {
    prop_assert_eq!(&F::parse_json(&frame.json(), usize::MAX).expect("re-decode JSON"), frame);
    prop_assert_eq!(&F::parse_bincode(&frame.bincode(), usize::MAX).expect("re-decode bincode"), frame);
    Ok(())
}

/// `text`, a JSON object of `frame_type`, decodes as an `F` that is stable, or fails with
/// `bad_frame` (a type `F` has) or `unknown_type` (one it has not).
fn assert_decodes_or_bad_frame<F: Frame>(frame_type: &str, text: &str) -> Result<(), TestCaseError> {
    match F::parse_json(text, LIMIT) {
        Ok(frame) => {
            prop_assert_eq!(frame.kind(), frame_type);
            assert_stable(&frame)?;
        }
        Err(e) if F::TYPES.contains(&frame_type) => prop_assert_eq!(e.code(), "bad_frame", "{:?}", e),
        Err(e) => prop_assert_eq!(e, ProtocolError::UnknownType { frame_type: frame_type.into() }),
    }
    Ok(())
}

const ID_CHARS: &str = "-_.@:";

/// PROTOCOL.md section 6: 1–128 characters of letters, digits, `-`, `_`, `.`, `@`, `:`; `all` and the
/// `pool:` prefix are reserved. Letters are ASCII letters.
fn documented_client_id(s: &str) -> bool {
    documented_name(s) && s != "all" && !s.starts_with("pool:")
}

/// The characters and length of an id, without the reservations (pool names and room parts).
fn documented_name(s: &str) -> bool {
    (1..=128).contains(&s.chars().count()) && s.chars().all(|c| c.is_ascii_alphanumeric() || ID_CHARS.contains(c))
}

/// Strings near and across the id rule's edges: valid ids, reserved words, bad characters, long ids.
fn arb_id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._@:-]{0,130}",
        "(all|ALL|pool:|pool|Pool:|pool::)?[a-zA-Z0-9._@:/ üé\t-]{0,12}",
        "(pool:)?[a-z]{126,130}",
        Just("all".to_owned()),
        any::<String>(),
    ]
}

/// `send` as a frame through `codec` (encode, then decode) is the same frame, its payload text
/// kept verbatim.
fn send_round_trip(
    send: Send,
    codec: impl Fn(&ClientFrame) -> Result<ClientFrame, ProtocolError>,
) -> Result<(), TestCaseError> {
    let payload = send.payload.json().to_owned();
    let frame = ClientFrame::Send(send);
    let back = codec(&frame);
    prop_assert_eq!(&back, &Ok(frame));
    let Ok(ClientFrame::Send(back)) = back else { unreachable!("checked above") };
    prop_assert_eq!(back.payload.json(), payload.as_str());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn send_round_trips_through_json(send in arb_send()) {
        send_round_trip(send, |f| ClientFrame::from_json(&f.to_json(), usize::MAX))?;
    }

    #[test]
    fn send_round_trips_through_bincode(send in arb_send()) {
        send_round_trip(send, |f| ClientFrame::from_bincode(&f.to_bincode(), usize::MAX))?;
    }

    #[test]
    fn deliveries_round_trip(message in arb_message()) {
        let frame = ServerFrame::Message(Delivery { message: message.clone() });
        assert_stable(&frame)?;
        let stored = agent_bridge_protocol::encode_bincode(&message).expect("encode");
        let back: Message = agent_bridge_protocol::decode_bincode(&stored).expect("decode");
        prop_assert_eq!(back.payload.json(), message.payload.json());
        prop_assert_eq!(back, message);
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        if let Ok(frame) = ClientFrame::from_json(&text, LIMIT) {
            assert_stable(&frame)?;
        }
        if let Ok(frame) = ServerFrame::from_json(&text, LIMIT) {
            assert_stable(&frame)?;
        }
        let _ = agent_bridge_protocol::frames::extract_ref(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(frame) = ClientFrame::from_bincode(&bytes, LIMIT) {
            assert_stable(&frame)?;
        }
        if let Ok(frame) = ServerFrame::from_bincode(&bytes, LIMIT) {
            assert_stable(&frame)?;
        }
        let text = String::from_utf8_lossy(&bytes);
        let _ = ClientFrame::from_json(&text, LIMIT);
        let _ = ServerFrame::from_json(&text, LIMIT);
    }

    #[test]
    fn near_valid_json_frames_decode_or_fail_as_bad_frames((frame_type, text) in arb_frame_object()) {
        assert_decodes_or_bad_frame::<ClientFrame>(frame_type, &text)?;
        assert_decodes_or_bad_frame::<ServerFrame>(frame_type, &text)?;
    }

    #[test]
    fn corrupted_bincode_never_panics(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let clients = client_samples();
        let servers = server_samples();
        let pick = which.index(clients.len() + servers.len());
        if let Some((frame, _)) = clients.get(pick) {
            let mut bytes = frame.to_bincode();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if let Ok(frame) = ClientFrame::from_bincode(&bytes, LIMIT) {
                assert_stable(&frame)?;
            }
        } else {
            let mut bytes = servers[pick - clients.len()].0.to_bincode();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if let Ok(frame) = ServerFrame::from_bincode(&bytes, LIMIT) {
                assert_stable(&frame)?;
            }
        }
    }

    #[test]
    fn validate_client_id_follows_the_documented_rule(id in arb_id_like()) {
        let result = validate_client_id(&id);
        prop_assert_eq!(result.is_ok(), documented_client_id(&id), "{:?}: {:?}", id, result);
        if let Err(e) = result {
            prop_assert_eq!(e.code(), "invalid_client_id");
        }
    }

    #[test]
    fn recipient_parse_follows_the_documented_rule(to in arb_id_like()) {
        match Recipient::parse(&to) {
            Ok(Recipient::Broadcast) => prop_assert_eq!(to.as_str(), "all"),
            Ok(Recipient::Pool(name)) => {
                prop_assert_eq!(format!("pool:{name}"), to.clone());
                prop_assert!(documented_name(name), "bad pool name accepted: {:?}", to);
            }
            Ok(Recipient::Client(id)) => {
                prop_assert_eq!(id, to.as_str());
                prop_assert!(documented_client_id(id), "bad client id accepted: {:?}", to);
            }
            Err(e) => {
                prop_assert_eq!(e.code(), "invalid_recipient");
                prop_assert!(to != "all", "broadcast rejected");
                prop_assert!(!documented_client_id(&to), "valid client id rejected: {:?}", to);
                let pool = to.strip_prefix("pool:").is_some_and(documented_name);
                prop_assert!(!pool, "valid pool rejected: {:?}", to);
            }
        }
    }

    #[test]
    fn validate_room_follows_the_documented_rule(room in arb_id_like(), channel in proptest::option::of(arb_id_like())) {
        let full = match &channel {
            Some(c) => format!("{room}/{c}"),
            None => room.clone(),
        };
        let parts: Vec<&str> = full.split('/').collect();
        let documented = parts.len() <= 2 && parts.iter().all(|p| documented_name(p));
        prop_assert_eq!(validate_room(&full).is_ok(), documented, "{:?}", full);
    }

    #[test]
    fn validate_msg_type_follows_the_documented_rule(t in prop_oneof!["[a-z .:/-]{0,70}", any::<String>()]) {
        let documented = (1..=64).contains(&t.chars().count()) && !t.chars().any(char::is_control);
        prop_assert_eq!(validate_msg_type(&t).is_ok(), documented, "{:?}", t);
    }
}
