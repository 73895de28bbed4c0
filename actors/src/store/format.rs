//! The stored-value envelope: every record the store keeps (a message, a queue entry, an
//! idempotency record, a dead letter, a room's state, an API key) is written as
//!
//! ```text
//! 0xFF  <version u8>  <bincode body, standard configuration>
//! ```
//!
//! so that changing a stored type is a visible decision with an upgrade path, not a silent change
//! of the on-disk format. Each type says which layout it writes ([`Stored::VERSION`]) and how to read
//! older ones ([`Stored::upgrade`]); a value newer than this build knows is refused with
//! [`StoreError::Format`], which names the type and both versions.
//!
//! Values written before the envelope existed (releases up to fdb8c93) are untagged: the bare
//! bincode body. They are told apart by their first byte. bincode's standard configuration writes
//! integers and lengths as varints whose first byte is at most 253 (251..=253 announce a 2-, 4- or
//! 8-byte integer, 254 a 16-byte one, 255 nothing), and every stored type begins with a string or a
//! struct that does (`id`, `message_id`, `name`): an untagged value never starts with `0xFF`. Such
//! a value reads as version 0, which is version 1's layout. Records are upgraded lazily: an old
//! value is tagged the next time it is written, nothing rewrites the database at start-up.
//!
//! Raw values stay raw: stream counters and expiry runs (`u64` BE), delivery attempts (`u32` BE)
//! and file contents. Their layout is fixed by their length, not by a struct, so they cannot drift.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::db::StoreError;

/// The first byte of every tagged value; never the first byte of an untagged one.
pub const MARKER: u8 = 0xFF;

/// A type the store keeps, with the version of its bincode layout.
pub trait Stored: Serialize + DeserializeOwned {
    /// What the value is, for errors ("message", "room").
    const WHAT: &'static str;

    /// The layout this build writes. Bump it when the type's bincode layout changes (a field added,
    /// removed, reordered or retyped: bincode is positional), also through a type it contains (a
    /// dead letter holds a message), and read the old layout in [`Stored::upgrade`].
    const VERSION: u8 = 1;

    /// Reads a value written at an older `version`, never this build's own and never 0 while
    /// `VERSION` is 1 (those decode directly). An override decodes the old layout with
    /// [`decode_body`] into a struct kept for the purpose and converts it. The default knows no
    /// older layout.
    fn upgrade(version: u8, body: &[u8]) -> Result<Self, StoreError> {
        let _ = body;
        Err(StoreError::Corrupt(format!("a stored {} has format version {version}, which this build cannot upgrade", Self::WHAT)))
    }
}

/// bincode's standard configuration, the one `agent_bridge_protocol::encode_bincode` used for the
/// untagged values of earlier releases.
fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a value in the envelope, at its type's current version.
pub(super) fn encode<T: Stored>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[MARKER, T::VERSION]);
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(out)
}

/// Decodes a stored value, tagged or untagged (version 0).
pub(super) fn decode<T: Stored>(bytes: &[u8]) -> Result<T, StoreError> {
    let (version, body) = match bytes {
        [MARKER, version, body @ ..] => (*version, body),
        [MARKER] => return Err(StoreError::Corrupt(format!("a stored {} is cut short in its envelope", T::WHAT))),
        untagged => (0, untagged),
    };
    if version > T::VERSION {
        return Err(StoreError::Format { what: T::WHAT, version, supported: T::VERSION });
    }
    if version == T::VERSION || (version == 0 && T::VERSION == 1) {
        return decode_body(body);
    }
    T::upgrade(version, body)
}

/// Decodes a stored value read by a scan or a lookup, skipping one that cannot be decoded (a
/// corrupted record: a torn write, a flipped byte): it is logged with its tree and key, counted in
/// `bridge_store_corrupt_records_total` and read as absent, so the intact records around it are
/// still served. A value from a newer build is not corrupt: that stays an error
/// ([`StoreError::Format`]).
pub(super) fn intact<T: Stored>(tree: &'static str, key: &[u8], bytes: &[u8]) -> Result<Option<T>, StoreError> {
    match decode(bytes) {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::Corrupt(e)) => {
            tracing::warn!(tree, key = %String::from_utf8_lossy(key).escape_debug(), what = T::WHAT, error = %e, "skipping an undecodable stored record");
            crate::metrics::metrics().store_corrupt.inc();
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Decodes a bare bincode body: for [`Stored::upgrade`] implementations reading an old layout.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, StoreError> {
    bincode::serde::decode_from_slice(body, config()).map(|(v, _)| v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use agent_bridge_protocol::{encode_bincode, Message, Payload, Priority, Timestamp};
    use serde::Deserialize;

    use super::*;
    use crate::store::legacy::{message_v1, DeadLetterV1};
    use crate::store::{DeadLetter, IdempotencyRecord, QueueEntry};

    fn message(id: &str) -> Message {
        Message {
            id: id.into(),
            seq: 3,
            from: "a".into(),
            to: Some("b".into()),
            room: None,
            msg_type: "note".into(),
            payload: Payload::from_serialize(&serde_json::json!({"text": "hello"})),
            timestamp: Timestamp(1_700_000_000_000),
            priority: Priority::High,
            requires_ack: true,
            correlation_id: None,
            expires_at: None,
            thread_id: Some("th-1".into()),
        }
    }

    /// Today's layout of a test type, and the layout it had before (version 1).
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Card {
        title: String,
        pinned: bool,
    }

    impl Stored for Card {
        const WHAT: &'static str = "card";
        const VERSION: u8 = 2;

        fn upgrade(version: u8, body: &[u8]) -> Result<Self, StoreError> {
            #[derive(Deserialize)]
            struct CardV1 {
                title: String,
            }
            match version {
                0 | 1 => decode_body::<CardV1>(body).map(|old| Card { title: old.title, pinned: false }),
                _ => Err(StoreError::Corrupt(format!("card version {version}"))),
            }
        }
    }

    #[test]
    fn an_untagged_value_from_before_the_envelope_decodes() {
        let old = Message { thread_id: None, ..message("msg-1") };
        let untagged = encode_bincode(&message_v1(&old)).expect("encode as fdb8c93 did");
        assert_ne!(untagged[0], MARKER);
        assert_eq!(decode::<Message>(&untagged).expect("decode"), old);
        let mut v1 = vec![MARKER, 1];
        v1.extend_from_slice(&untagged);
        assert_eq!(decode::<Message>(&v1).expect("version 1 upgrades"), old);
        let dead = DeadLetterV1 { message: message_v1(&old), recipient: "b".into(), attempts: 2, reason: "r".into(), at_ms: 3 };
        let expected = DeadLetter { message: old.clone(), recipient: "b".into(), attempts: 2, reason: "r".into(), at_ms: 3 };
        assert_eq!(decode::<DeadLetter>(&encode_bincode(&dead).expect("v0")).expect("dead v0"), expected);
        let entry = QueueEntry { message_id: "m".into(), from: "a".into(), msg_type: "t".into(), requires_ack: false, timestamp_ms: 9 };
        assert_eq!(decode::<QueueEntry>(&encode_bincode(&entry).expect("encode")).expect("decode"), entry);
    }

    #[test]
    fn a_new_value_is_tagged_and_round_trips() {
        let m = message("msg-2");
        let bytes = encode(&m).expect("encode");
        assert_eq!(&bytes[..2], &[MARKER, 2]);
        assert_eq!(&bytes[2..], &encode_bincode(&m).expect("body")[..], "the body is today's bincode");
        assert_eq!(decode::<Message>(&bytes).expect("decode"), m);
        let rec = IdempotencyRecord { message_id: "m".into(), seq: Some(4), at_ms: 5 };
        assert_eq!(decode::<IdempotencyRecord>(&encode(&rec).expect("encode")).expect("decode"), rec);
    }

    #[test]
    fn a_value_from_a_newer_build_is_refused_by_name() {
        let mut bytes = encode(&message("msg-3")).expect("encode");
        bytes[1] = 7;
        let err = decode::<Message>(&bytes).expect_err("version 7 is from the future");
        assert!(matches!(err, StoreError::Format { what: "message", version: 7, supported: 2 }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("version 7") && text.contains("newer"), "{text}");
        assert!(matches!(decode::<Message>(&[MARKER]), Err(StoreError::Corrupt(_))), "a cut envelope is an error, not a panic");
        assert!(matches!(decode::<Message>(&[]), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode::<Message>(&[MARKER, 2, 0xFF]), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn older_layouts_go_through_upgrade() {
        #[derive(Serialize)]
        struct CardV1<'a> {
            title: &'a str,
        }
        let untagged = encode_bincode(&CardV1 { title: "old" }).expect("v0");
        assert_eq!(decode::<Card>(&untagged).expect("v0"), Card { title: "old".into(), pinned: false });
        let mut v1 = vec![MARKER, 1];
        v1.extend(encode_bincode(&CardV1 { title: "one" }).expect("v1"));
        assert_eq!(decode::<Card>(&v1).expect("v1"), Card { title: "one".into(), pinned: false });
        let now = Card { title: "new".into(), pinned: true };
        let bytes = encode(&now).expect("v2");
        assert_eq!(bytes[1], 2);
        assert_eq!(decode::<Card>(&bytes).expect("v2"), now);
    }

    #[test]
    fn no_untagged_record_starts_with_the_marker() {
        // Lengths from 251 up take the multi-byte varint forms (first byte 251, 252, 253).
        for len in [0, 1, 250, 251, 300, 70_000] {
            let id = "x".repeat(len);
            let m = message(&id);
            let entry = QueueEntry { message_id: id.clone(), from: "a".into(), msg_type: "t".into(), requires_ack: true, timestamp_ms: 1 };
            let rec = IdempotencyRecord { message_id: id.clone(), seq: None, at_ms: 1 };
            let dead = DeadLetter { message: m.clone(), recipient: "b".into(), attempts: 3, reason: "r".into(), at_ms: 1 };
            let firsts = [
                encode_bincode(&m).expect("m")[0],
                encode_bincode(&entry).expect("q")[0],
                encode_bincode(&rec).expect("k")[0],
                encode_bincode(&dead).expect("d")[0],
            ];
            assert!(firsts.iter().all(|b| *b != MARKER), "len {len}: {firsts:?}");
        }
    }
}
