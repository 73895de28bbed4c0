//! The routed unit (PROTOCOL.md section 1) and its building blocks.
//!
//! Each type serializes in two shapes: the JSON of the protocol when the serializer is human-readable,
//! and a compact form for bincode (the store and `?encoding=bincode` sessions). bincode cannot decode
//! self-describing values, so arbitrary JSON travels through bincode as its JSON text.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// An arbitrary JSON value, kept as its JSON text so that routing never re-encodes it.
#[derive(Clone)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// `null`.
    pub fn null() -> Self {
        Payload::from_json_text("null".into()).expect("null is JSON")
    }

    /// Parses JSON text; fails unless it is exactly one JSON value.
    pub fn from_json_text(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Payload)
    }

    /// Encodes a serializable value.
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Self {
        Payload(serde_json::value::to_raw_value(value).expect("serializing to JSON text cannot fail"))
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// Decodes into a `serde_json::Value` (for inspection; routing never needs it).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or(serde_json::Value::Null)
    }

    /// Decodes into `T`.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// Length of the JSON text in bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// True only for an empty text, which a valid payload never has.
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }
}

impl Default for Payload {
    fn default() -> Self {
        Payload::null()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get() || self.to_value() == other.to_value()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl From<serde_json::Value> for Payload {
    fn from(v: serde_json::Value) -> Self {
        Payload::from_serialize(&v)
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            self.0.serialize(s)
        } else {
            s.serialize_str(self.0.get())
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            Box::<RawValue>::deserialize(d).map(Payload)
        } else {
            let text = String::deserialize(d)?;
            Payload::from_json_text(text).map_err(de::Error::custom)
        }
    }
}

/// A UTC instant with millisecond precision: RFC 3339 in JSON, milliseconds since the epoch in bincode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// `0000-01-01T00:00:00.000Z`, the first instant RFC 3339 can write.
    pub const MIN: Timestamp = Timestamp(-62_167_219_200_000);
    /// `9999-12-31T23:59:59.999Z`, the last instant RFC 3339 can write.
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);

    /// Now.
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis())
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// This instant plus `secs` seconds, saturating at [`Timestamp::MAX`] so that a huge client `ttl`
    /// still gives an `expires_at` that JSON can carry.
    pub fn plus_secs(self, secs: u64) -> Self {
        let millis = self.0.saturating_add(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX));
        Timestamp(millis.min(Self::MAX.0))
    }

    /// Parses RFC 3339 (any offset).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s).ok().map(|t| Timestamp(t.timestamp_millis()))
    }

    /// `2026-11-22T09:10:12.345Z`.
    pub fn to_rfc3339(self) -> String {
        match Utc.timestamp_millis_opt(self.0).single() {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => String::from("1970-01-01T00:00:00.000Z"),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_rfc3339())
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            Timestamp::parse_rfc3339(&s).ok_or_else(|| de::Error::custom(format!("{s:?} is not an RFC 3339 time")))
        } else {
            // Only instants that the JSON form can write, so that every decoded frame re-encodes.
            let millis = i64::deserialize(d)?;
            if (Self::MIN.0..=Self::MAX.0).contains(&millis) {
                Ok(Timestamp(millis))
            } else {
                Err(de::Error::custom(format!("timestamp {millis} ms is outside years 0000 to 9999")))
            }
        }
    }
}

/// The five delivery priorities; lower numbers are delivered first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    Critical = 1,
    High = 3,
    #[default]
    Normal = 5,
    Low = 7,
    Bulk = 9,
}

impl Priority {
    /// All levels, most urgent first.
    pub const ALL: [Priority; 5] = [Priority::Critical, Priority::High, Priority::Normal, Priority::Low, Priority::Bulk];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
            Priority::Bulk => "bulk",
        }
    }

    /// 0 (critical) to 4 (bulk), for indexing per-priority queues.
    pub fn index(self) -> usize {
        (self as usize) / 2
    }

    /// From a name (`critical` ... `bulk`).
    pub fn from_name(s: &str) -> Option<Self> {
        Priority::ALL.into_iter().find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

    /// From a number. 1/3/5/7/9 are the documented values; 0..=10 are accepted, each mapped to the
    /// nearest level at or below its urgency (2 → high, 4 → normal, ...), as the original bridge's
    /// 1–10 scale did.
    pub fn from_number(n: i64) -> Option<Self> {
        match n {
            0..=1 => Some(Priority::Critical),
            2..=3 => Some(Priority::High),
            4..=5 => Some(Priority::Normal),
            6..=7 => Some(Priority::Low),
            8..=10 => Some(Priority::Bulk),
            _ => None,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Priority {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(self.as_str())
        } else {
            s.serialize_u8(*self as u8)
        }
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Priority;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("critical, high, normal, low, bulk or a number 1..9")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Priority, E> {
                Priority::from_name(v).ok_or_else(|| E::custom(format!("unknown priority {v:?}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Priority, E> {
                Priority::from_number(v).ok_or_else(|| E::custom(format!("priority {v} out of range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Priority, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        if d.is_human_readable() {
            d.deserialize_any(V)
        } else {
            d.deserialize_u8(PriorityByte)
        }
    }
}

struct PriorityByte;
impl Visitor<'_> for PriorityByte {
    type Value = Priority;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a priority byte")
    }
    fn visit_u8<E: de::Error>(self, v: u8) -> Result<Priority, E> {
        Priority::from_number(i64::from(v)).ok_or_else(|| E::custom("priority byte out of range"))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Priority, E> {
        self.visit_u8(u8::try_from(v).map_err(|_| E::custom("priority byte out of range"))?)
    }
}

/// The message object: routed, stored, acknowledged and replayed (PROTOCOL.md section 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Server-assigned, unique, sortable: `msg-` + UUIDv7.
    pub id: String,
    /// Position in the recipient stream (client inbox or room).
    pub seq: u64,
    /// The sender's client id, set by the server.
    pub from: String,
    /// A client id, `all` or `pool:<name>`; `None` for room messages.
    pub to: Option<String>,
    /// Room name (`room` or `room/channel`) for room messages.
    pub room: Option<String>,
    /// The application message type.
    #[serde(rename = "type")]
    pub msg_type: String,
    /// Any JSON value.
    pub payload: Payload,
    /// When the server accepted the message.
    pub timestamp: Timestamp,
    /// Delivery priority.
    pub priority: Priority,
    /// Whether the recipient must acknowledge it.
    pub requires_ack: bool,
    /// On replies: the id (or correlation id) of the request.
    pub correlation_id: Option<String>,
    /// When the message expires, if the sender gave a ttl.
    pub expires_at: Option<Timestamp>,
    /// The conversation the message belongs to (PROTOCOL.md section 7, threads): given by the
    /// sender, or inherited from the message named by `correlation_id`.
    #[serde(default)]
    pub thread_id: Option<String>,
}

impl Message {
    /// True once `expires_at` has passed.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}
