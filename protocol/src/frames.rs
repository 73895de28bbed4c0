//! WebSocket frames (PROTOCOL.md section 2) and their two codecs.
//!
//! On the wire a JSON frame is one object discriminated by `"type"`. Decoding reads the tag first and
//! then decodes the variant's struct straight from the text: no intermediate buffering, so payloads
//! stay raw JSON text end to end, and every failure is classified (bad JSON, not a frame, unknown
//! type, missing field, invalid field) for the `error` frame. The bincode form is the externally
//! tagged enum, for `?encoding=bincode` sessions.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub use crate::batch::{BatchResult, BatchStatus, SendBatch, SentBatch};
use crate::message::{Message, Payload, Priority, Timestamp};
use crate::ProtocolError;

fn yes() -> bool {
    true
}

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// `send`: route a message to a client, `all`, a pool, or a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Send {
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub room: Option<String>,
    pub msg_type: String,
    pub payload: Payload,
    #[serde(default)]
    pub require_ack: bool,
    #[serde(default)]
    pub priority: Priority,
    /// Time to live in seconds.
    #[serde(default)]
    pub ttl: Option<u64>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// Echoed in the `sent` or `error` reply.
    #[serde(default)]
    pub r#ref: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// false: fire-and-forget to online recipients only, never stored.
    #[serde(default = "yes")]
    pub persist: bool,
    /// The conversation this message belongs to (section 7, threads).
    #[serde(default)]
    pub thread_id: Option<String>,
}

/// `ack`: the client has processed a delivered message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub message_id: String,
}

/// `nack`: redeliver later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nack {
    pub message_id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `ping` / `pong` in either direction; the timestamp is optional from clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Beat {
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
}

/// `subscribe`: only these message types reach this session (empty = all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    pub types: Vec<String>,
}

/// `join`: enter a room, replaying its history after `since`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Join {
    pub room: String,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub since: Option<u64>,
}

/// `leave`: leave a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leave {
    pub room: String,
}

/// `call`: a request/response operation (PROTOCOL.md section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub r#ref: String,
    pub method: String,
    #[serde(default)]
    pub params: Payload,
}

/// Server name and version in `connection_confirmed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
}

/// `connection_confirmed`: the first frame of every session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionConfirmed {
    pub client_id: String,
    pub session_id: String,
    pub server: ServerInfo,
    pub timestamp: Timestamp,
    pub heartbeat_s: u64,
    /// The `seq` this session resumed after (`since`), if any.
    pub resumed_from: Option<u64>,
}

/// `message`: a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub message: Message,
}

/// Outcome reported in `sent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SentStatus {
    /// Stored; no session of the recipient was online.
    Queued,
    /// Handed to at least one live session.
    Delivered,
    /// An `idempotency_key` matched an earlier send; nothing new was routed.
    Duplicate,
    /// Extension: `persist: false` and no session of the recipient could take it (none online, or
    /// every one over its outbound budget); nothing was stored. `recipients` is 0.
    Dropped,
}

/// `sent`: the broker has taken responsibility for the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    pub r#ref: Option<String>,
    pub message_id: String,
    /// The message's seq in the recipient stream; `null` for `all`, which writes one per inbox.
    pub seq: Option<u64>,
    pub status: SentStatus,
    /// How many recipient streams received it (extension: useful for `all`).
    pub recipients: u32,
}

/// Status in a `receipt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    Delivered,
    Acked,
    Expired,
    Dead,
}

/// `dropped` (extension): `persist: false` messages this session did not get because it read too
/// slowly (its outbound budget in bytes was full). Persisted messages are never dropped: a slow
/// session is fed them from the store once it catches up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    /// How many messages were dropped since the last `dropped` frame.
    pub count: u64,
    /// When the first of them was dropped.
    pub since: Timestamp,
    /// Why: `slow_consumer`.
    pub reason: String,
    /// The room (or `room/channel`) the messages were sent to; `null` for the inbox.
    #[serde(default)]
    pub room: Option<String>,
}

/// `receipt`: what happened to a message this client sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub message_id: String,
    pub status: ReceiptStatus,
    pub by: Option<String>,
}

/// The error object inside `result` frames and HTTP error bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub error: String,
}

/// `result`: the answer to a `call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallResult {
    pub r#ref: String,
    pub ok: bool,
    pub result: Option<Payload>,
    pub error: Option<ErrorBody>,
}

/// `event`: a room or agent state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event: String,
    pub room: Option<String>,
    pub data: Payload,
}

/// `error`: something the client sent could not be processed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ErrorFrame {
    pub code: String,
    pub error: String,
    pub r#ref: Option<String>,
    /// With `rate_limited`: seconds to wait before trying again.
    #[serde(default)]
    pub retry_after: Option<u64>,
}

/// JSON leaves `retry_after` out when it is absent (most errors); bincode, which is positional,
/// always writes it.
impl Serialize for ErrorFrame {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let skip = s.is_human_readable() && self.retry_after.is_none();
        let mut st = s.serialize_struct("ErrorFrame", if skip { 3 } else { 4 })?;
        st.serialize_field("code", &self.code)?;
        st.serialize_field("error", &self.error)?;
        st.serialize_field("ref", &self.r#ref)?;
        if skip {
            st.skip_field("retry_after")?;
        } else {
            st.serialize_field("retry_after", &self.retry_after)?;
        }
        st.end()
    }
}

impl ErrorFrame {
    /// An error frame for a protocol error.
    pub fn from_protocol(e: &ProtocolError, r#ref: Option<String>) -> Self {
        ErrorFrame { code: e.code().to_owned(), error: e.to_string(), r#ref, retry_after: None }
    }
}

#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow, default)]
    frame_type: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RefOnly {
    #[serde(rename = "ref", default)]
    r#ref: Option<serde_json::Value>,
}

/// The `ref` of a frame that failed to decode, so the error reply can echo it.
pub fn extract_ref(text: &str) -> Option<String> {
    if !is_object(text) {
        return None;
    }
    let r = serde_json::from_str::<RefOnly>(text).ok()?.r#ref?;
    match r {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Classifies a decoding failure of a `T` frame; only on this (slow) path the text is decoded a
/// second time to name the offending field.
pub(crate) fn classify<T: serde::de::DeserializeOwned>(frame_type: &str, text: &str, e: serde_json::Error) -> ProtocolError {
    let msg = e.to_string();
    if e.is_data() && !msg.starts_with("missing field") {
        let mut de = serde_json::Deserializer::from_str(text);
        if let Err(pe) = serde_path_to_error::deserialize::<_, T>(&mut de) {
            let path = pe.path().to_string();
            if path != "." && !path.is_empty() {
                return ProtocolError::InvalidField { frame_type: frame_type.to_owned(), detail: format!("field {path:?}: {msg}") };
            }
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default().to_owned();
        return ProtocolError::MissingField { frame_type: frame_type.to_owned(), field };
    }
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            ProtocolError::Malformed { detail: msg }
        }
        serde_json::error::Category::Data => ProtocolError::InvalidField { frame_type: frame_type.to_owned(), detail: msg },
    }
}

/// True when the first JSON token is `{`. serde also reads structs from JSON arrays, positionally
/// (`["ack"]` would decode as an `ack` of message "ack"), so frames are checked to be objects first.
pub(crate) fn is_object(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r']).starts_with('{')
}

fn read_tag(text: &str) -> Result<Cow<'_, str>, ProtocolError> {
    if !is_object(text) {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => ProtocolError::NotAFrame,
            Err(e) => ProtocolError::Malformed { detail: e.to_string() },
        });
    }
    match serde_json::from_str::<Tag<'_>>(text) {
        Ok(Tag { frame_type: Some(t) }) => Ok(t),
        Ok(Tag { frame_type: None }) => Err(ProtocolError::NotAFrame),
        Err(e) if e.is_data() => Err(ProtocolError::NotAFrame),
        Err(e) => Err(ProtocolError::Malformed { detail: e.to_string() }),
    }
}

#[derive(Deserialize)]
struct CollabAction<'a> {
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
}

/// The original bridge's `{"type":"collab","action":…}` frames: an error naming the frame or call
/// that does the same here (their fields differ, so they are not translated silently).
fn superseded(frame_type: &str, text: &str) -> Option<ProtocolError> {
    if frame_type != "collab" {
        return None;
    }
    let action = serde_json::from_str::<CollabAction<'_>>(text).ok().and_then(|a| a.action).unwrap_or_default();
    let a = action.to_ascii_lowercase();
    let use_this = if a.contains("create_room") {
        r#"{"type":"call","ref":"1","method":"room.create","params":{"name":"ROOM","topic":"..."}}"#
    } else if a.contains("join") {
        r#"{"type":"join","room":"ROOM","role":"coder"}"#
    } else if a.contains("leave") {
        r#"{"type":"leave","room":"ROOM"}"#
    } else if a.contains("send") || a.contains("message") {
        r#"{"type":"send","room":"ROOM","msg_type":"chat","payload":{"text":"..."}}"#
    } else if a.contains("vote") {
        r#"{"type":"call","ref":"1","method":"proposal.vote","params":{"room":"ROOM","proposal_id":"p-1","vote":"yes"}}"#
    } else if a.contains("propos") || a.contains("decision") {
        r#"{"type":"call","ref":"1","method":"proposal.create","params":{"room":"ROOM","text":"...","rule":"majority"}}"#
    } else if a.contains("channel") {
        r#"{"type":"call","ref":"1","method":"channel.create","params":{"room":"ROOM","name":"..."}}"#
    } else if a.contains("file") {
        r#"{"type":"call","ref":"1","method":"file.upload","params":{"room":"ROOM","name":"...","content_base64":"..."}}"#
    } else if a.contains("task") || a.contains("card") || a.contains("board") {
        r#"{"type":"call","ref":"1","method":"board.add","params":{"room":"ROOM","title":"..."}}"#
    } else {
        return Some(ProtocolError::Superseded {
            frame_type: frame_type.to_owned(),
            instead: "rooms use the \"join\", \"leave\" and \"send\" (with \"room\") frames and \"call\" frames \
                      (room.create, proposal.create, proposal.vote, board.add, file.upload ...)"
                .to_owned(),
        });
    };
    Some(ProtocolError::Superseded {
        frame_type: frame_type.to_owned(),
        instead: format!("for action {:?} send {use_this}", action.chars().take(64).collect::<String>()),
    })
}

macro_rules! frame_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident via $json:ident {
            $( $(#[$vmeta:meta])* $tag:literal => $variant:ident($ty:ty), )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($ty), )*
        }

        #[derive(Serialize)]
        #[serde(tag = "type")]
        enum $json<'a> {
            $( #[serde(rename = $tag)] $variant(&'a $ty), )*
        }

        impl $name {
            /// Every frame type this enum knows, as written in `"type"`.
            pub const TYPES: &'static [&'static str] = &[$($tag),*];

            /// The frame's `"type"`.
            pub fn frame_type(&self) -> &'static str {
                match self { $( $name::$variant(_) => $tag, )* }
            }

            /// Encodes as one JSON object.
            pub fn to_json(&self) -> String {
                let tagged = match self { $( $name::$variant(v) => $json::$variant(v), )* };
                serde_json::to_string(&tagged).expect("frames always serialize")
            }

            /// Decodes one JSON text frame of at most `limit` bytes.
            pub fn from_json(text: &str, limit: usize) -> Result<Self, ProtocolError> {
                if text.len() > limit {
                    return Err(ProtocolError::TooLarge { size: text.len(), limit });
                }
                let tag = read_tag(text)?;
                match tag.as_ref() {
                    $( $tag => serde_json::from_str::<$ty>(text).map($name::$variant).map_err(|e| classify::<$ty>($tag, text, e)), )*
                    other => Err(superseded(other, text)
                        .unwrap_or_else(|| ProtocolError::UnknownType { frame_type: other.chars().take(64).collect() })),
                }
            }

            /// Encodes with bincode (standard configuration).
            pub fn to_bincode(&self) -> Vec<u8> {
                bincode::serde::encode_to_vec(self, bincode_config()).expect("frames always encode")
            }

            /// Decodes one bincode frame of at most `limit` bytes; trailing bytes are an error.
            pub fn from_bincode(bytes: &[u8], limit: usize) -> Result<Self, ProtocolError> {
                if bytes.len() > limit {
                    return Err(ProtocolError::TooLarge { size: bytes.len(), limit });
                }
                let cfg = bincode_config().with_limit::<{ 64 * 1024 * 1024 }>();
                match bincode::serde::decode_from_slice::<Self, _>(bytes, cfg) {
                    Ok((frame, used)) if used == bytes.len() => Ok(frame),
                    Ok((_, used)) => Err(ProtocolError::Malformed {
                        detail: format!("{} trailing bytes after the frame", bytes.len() - used),
                    }),
                    Err(e) => Err(ProtocolError::Malformed { detail: e.to_string() }),
                }
            }
        }
    };
}

frame_enum! {
    /// Frames a client sends.
    pub enum ClientFrame via ClientJson {
        "send" => Send(Send),
        "ack" => Ack(Ack),
        "nack" => Nack(Nack),
        "ping" => Ping(Beat),
        "pong" => Pong(Beat),
        "subscribe" => Subscribe(Subscribe),
        "join" => Join(Join),
        "leave" => Leave(Leave),
        "call" => Call(Call),
        "send_batch" => SendBatch(SendBatch),
    }
}

frame_enum! {
    /// Frames the server sends.
    pub enum ServerFrame via ServerJson {
        "connection_confirmed" => ConnectionConfirmed(ConnectionConfirmed),
        "message" => Message(Delivery),
        "sent" => Sent(Sent),
        "receipt" => Receipt(Receipt),
        "result" => Result(CallResult),
        "event" => Event(Event),
        "ping" => Ping(Beat),
        "pong" => Pong(Beat),
        "error" => Error(ErrorFrame),
        "dropped" => Dropped(Dropped),
        "sent_batch" => SentBatch(SentBatch),
    }
}

impl ServerFrame {
    /// A `pong` stamped now.
    pub fn pong() -> Self {
        ServerFrame::Pong(Beat { timestamp: Some(Timestamp::now()) })
    }

    /// An `error` frame.
    pub fn error(code: &str, error: impl Into<String>, r#ref: Option<String>) -> Self {
        ServerFrame::Error(ErrorFrame { code: code.to_owned(), error: error.into(), r#ref, retry_after: None })
    }

    /// A `rate_limited` error frame telling the client how long to wait.
    pub fn rate_limited(error: impl Into<String>, r#ref: Option<String>, retry_after: u64) -> Self {
        ServerFrame::Error(ErrorFrame { code: "rate_limited".into(), error: error.into(), r#ref, retry_after: Some(retry_after) })
    }
}
