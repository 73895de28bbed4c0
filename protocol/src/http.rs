//! Bodies of the HTTP API (PROTOCOL.md section 3).

use serde::{Deserialize, Serialize};

use crate::message::{Message, Payload, Priority};

fn yes() -> bool {
    true
}

/// `POST /api/send`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRequest {
    /// The sender; with auth on, the server overwrites it with the caller's identity.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub room: Option<String>,
    /// The message type (`msg_type` accepted too, as the WebSocket frame names it).
    #[serde(rename = "type", alias = "msg_type")]
    pub msg_type: String,
    /// Required, as in the WebSocket `send` frame (`null` is a payload; a missing one is not).
    pub payload: Payload,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default)]
    pub ttl: Option<u64>,
    #[serde(default)]
    pub require_ack: bool,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default = "yes")]
    pub persist: bool,
    /// The conversation this message belongs to (PROTOCOL.md section 7, threads).
    #[serde(default)]
    pub thread_id: Option<String>,
}

/// Answer to `POST /api/send`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendResponse {
    /// As in the WebSocket `sent` frame: `"queued"`, `"delivered"` or `"duplicate"`.
    pub status: String,
    pub message_id: String,
    pub seq: Option<u64>,
    pub recipients: u32,
}

/// `POST /api/send_batch` (extension): `POST /api/send` bodies, sent in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendBatchRequest {
    /// Each a `POST /api/send` body, decoded on its own: a bad one fails alone.
    pub messages: Vec<Payload>,
}

/// Answer to `POST /api/send_batch`: one result per message, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendBatchResponse {
    /// Always `"sent_batch"`: the batch was taken; each result says how its message fared.
    pub status: String,
    pub results: Vec<crate::batch::BatchResult>,
}

/// Answer to `GET /api/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesPage {
    pub count: usize,
    pub messages: Vec<Message>,
    /// Pass as `since` to get the next page; equal to the request's `since` when nothing was new.
    pub next_since: u64,
}

/// `POST /api/ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckRequest {
    pub client_id: String,
    pub message_ids: Vec<String>,
}

/// Every HTTP error body: `{error, code}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpError {
    pub error: String,
    pub code: String,
}
