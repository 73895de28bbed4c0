//! Batch sends (extension, PROTOCOL.md section 7): many `send`s in one `send_batch` frame or one
//! `POST /api/send_batch` body, answered by one `sent_batch` frame or body with one
//! [`BatchResult`] per message, in order.
//!
//! The entries travel as raw JSON text ([`Payload`]), not as decoded `send` frames: a malformed
//! entry fails alone, with a per-index `bad_frame`, and the rest of the batch is still sent. In
//! bincode each entry is its JSON text, as payloads are.

use serde::{Deserialize, Serialize};

use crate::frames::{classify, is_object, Send, SentStatus};
use crate::{Payload, ProtocolError};

/// The most messages one batch may carry; more is refused whole with `batch_too_large`.
pub const MAX_BATCH_MESSAGES: usize = 1000;

/// The largest `POST /api/send_batch` body; larger is refused with 413 `batch_too_large`. Over
/// WebSocket the frame size limit bounds a `send_batch` frame instead.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// The code of a batch refused whole for its count or size.
pub const BATCH_TOO_LARGE: &str = "batch_too_large";

/// `send_batch`: route every entry as a `send` frame, in order; answered by one `sent_batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendBatch {
    /// Echoed in the `sent_batch` (or `error`) reply; `id` is accepted for it too.
    #[serde(default, alias = "id")]
    pub r#ref: Option<String>,
    /// The bodies of `send` frames (a `"type"` in them is ignored).
    pub messages: Vec<Payload>,
}

impl SendBatch {
    /// Refuses an empty batch (`bad_frame`); the count limit is checked by the caller, which
    /// answers [`BATCH_TOO_LARGE`].
    pub fn check(&self) -> Result<(), ProtocolError> {
        if self.messages.is_empty() {
            return Err(ProtocolError::InvalidValue { field: "messages", reason: "a batch needs at least one message".into() });
        }
        Ok(())
    }

    /// Whether the batch has more than `limit` messages.
    pub fn too_many(&self, limit: usize) -> bool {
        self.messages.len() > limit
    }
}

/// Decodes one batch entry as a `send` frame body of at most `limit` bytes.
pub fn decode_send(entry: &Payload, limit: usize) -> Result<Send, ProtocolError> {
    let text = entry.json();
    if text.len() > limit {
        return Err(ProtocolError::TooLarge { size: text.len(), limit });
    }
    if !is_object(text) {
        return Err(ProtocolError::NotAFrame);
    }
    serde_json::from_str::<Send>(text).map_err(|e| classify::<Send>("send", text, e))
}

/// `sent_batch`: the outcome of every entry of a `send_batch`, in the entries' order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentBatch {
    /// The batch's `ref`.
    pub r#ref: Option<String>,
    pub results: Vec<BatchResult>,
}

/// `status` of an accepted entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// The broker took responsibility for it (`outcome` says queued, delivered or dropped).
    Sent,
    /// Its `idempotency_key` matched an earlier send (or an earlier entry); nothing new was routed.
    Duplicate,
}

/// The outcome of one entry: accepted (`status`, `message_id`, `seq`, `outcome`, `recipients`) or
/// refused (`code`, `error`, and `retry_after` with `rate_limited`). JSON leaves out the fields
/// of the other case; bincode, which is positional, writes them all.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct BatchResult {
    /// The entry's position in `messages`, from 0.
    pub index: u32,
    /// The entry's own `ref`, if it had one.
    pub r#ref: Option<String>,
    pub status: Option<BatchStatus>,
    pub message_id: Option<String>,
    /// As in `sent`: `null` for `all`.
    pub seq: Option<u64>,
    /// The `sent` frame's status: `queued`, `delivered`, `dropped` or `duplicate`.
    pub outcome: Option<SentStatus>,
    pub recipients: Option<u32>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub retry_after: Option<u64>,
}

impl BatchResult {
    /// An accepted entry, from what `sent` would have said.
    pub fn sent(index: usize, r#ref: Option<String>, message_id: String, seq: Option<u64>, outcome: SentStatus, recipients: u32) -> Self {
        let status = if outcome == SentStatus::Duplicate { BatchStatus::Duplicate } else { BatchStatus::Sent };
        BatchResult {
            status: Some(status),
            message_id: Some(message_id),
            seq,
            outcome: Some(outcome),
            recipients: Some(recipients),
            ..BatchResult::empty(index, r#ref)
        }
    }

    /// A refused entry, with the code and text an `error` frame would have carried.
    pub fn failed(index: usize, r#ref: Option<String>, code: &str, error: impl Into<String>, retry_after: Option<u64>) -> Self {
        BatchResult { code: Some(code.to_owned()), error: Some(error.into()), retry_after, ..BatchResult::empty(index, r#ref) }
    }

    /// An entry that could not be decoded or validated.
    pub fn invalid(index: usize, r#ref: Option<String>, e: &ProtocolError) -> Self {
        BatchResult::failed(index, r#ref, e.code(), e.to_string(), None)
    }

    fn empty(index: usize, r#ref: Option<String>) -> Self {
        BatchResult { index: u32::try_from(index).unwrap_or(u32::MAX), r#ref, ..BatchResult::default() }
    }
}

impl Serialize for BatchResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let all = !s.is_human_readable();
        let accepted = self.status.is_some();
        let mut st = s.serialize_struct("BatchResult", 10)?;
        st.serialize_field("index", &self.index)?;
        // Each field is written when bincode needs it, when it is set, or (`seq`) when it is part
        // of an accepted entry's shape even as `null`.
        macro_rules! field {
            ($name:literal, $value:expr, $keep:expr) => {
                if all || $keep {
                    st.serialize_field($name, $value)?;
                } else {
                    st.skip_field($name)?;
                }
            };
        }
        field!("ref", &self.r#ref, self.r#ref.is_some());
        field!("status", &self.status, accepted);
        field!("message_id", &self.message_id, self.message_id.is_some());
        field!("seq", &self.seq, accepted || self.seq.is_some());
        field!("outcome", &self.outcome, self.outcome.is_some());
        field!("recipients", &self.recipients, self.recipients.is_some());
        field!("code", &self.code, self.code.is_some());
        field!("error", &self.error, self.error.is_some());
        field!("retry_after", &self.retry_after, self.retry_after.is_some());
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> Payload {
        Payload::from_json_text(json.to_owned()).expect("test entries are JSON")
    }

    #[test]
    fn entries_decode_one_by_one() {
        let ok = decode_send(&entry(r#"{"to":"b","msg_type":"t","payload":1,"ref":"r"}"#), 1024).expect("a send body");
        assert_eq!((ok.to.as_deref(), ok.r#ref.as_deref()), (Some("b"), Some("r")));
        let typed = decode_send(&entry(r#"{"type":"send","to":"b","msg_type":"t","payload":1}"#), 1024);
        assert!(typed.is_ok(), "a full send frame is an entry too");
        for (json, code) in [
            (r#"{"to":"b","payload":1}"#, "bad_frame"),
            (r#"[1,2]"#, "bad_frame"),
            (r#"{"to":"b","msg_type":7,"payload":1}"#, "bad_frame"),
            (r#"{"to":"b","msg_type":"t","payload":"0123456789"}"#, "too_large"),
        ] {
            assert_eq!(decode_send(&entry(json), 40).map(|_| ()).map_err(|e| e.code()), Err(code), "{json}");
        }
    }

    #[test]
    fn json_results_carry_only_their_case() {
        let sent = BatchResult::sent(0, None, "msg-1".into(), None, SentStatus::Queued, 1);
        assert_eq!(
            serde_json::to_value(&sent).expect("json"),
            serde_json::json!({"index":0,"status":"sent","message_id":"msg-1","seq":null,"outcome":"queued","recipients":1})
        );
        let dup = BatchResult::sent(1, Some("r".into()), "msg-1".into(), Some(3), SentStatus::Duplicate, 1);
        assert_eq!(serde_json::to_value(&dup).expect("json")["status"], "duplicate");
        let failed = BatchResult::failed(2, None, "rate_limited", "slow down", Some(2));
        assert_eq!(
            serde_json::to_value(&failed).expect("json"),
            serde_json::json!({"index":2,"code":"rate_limited","error":"slow down","retry_after":2})
        );
        for r in [sent, dup, failed] {
            let back: BatchResult = serde_json::from_str(&serde_json::to_string(&r).expect("json")).expect("decode");
            assert_eq!(back, r);
        }
    }

    #[test]
    fn empty_batches_are_bad_frames() {
        let batch = SendBatch { r#ref: None, messages: vec![] };
        assert_eq!(batch.check().map_err(|e| e.code()), Err("bad_frame"));
        let one = SendBatch { r#ref: None, messages: vec![entry("{}")] };
        assert!(one.check().is_ok() && !one.too_many(1) && one.too_many(0));
    }
}
