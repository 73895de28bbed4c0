//! The index's schema (one tantivy document per stored message) and how a message becomes a
//! document. A leaf of `search`: the writer and the query both read it.
//!
//! | field | options | what |
//! |---|---|---|
//! | `text` | TEXT | the payload's text: a JSON string, or every string inside an object/array |
//! | `type` | TEXT | the message type, tokenized (`type:result` finds `task.result`) |
//! | `from` | STRING | the sender's client id, exact (`from:alice`) |
//! | `thread` | STRING | the thread id, exact |
//! | `type_exact` | STRING | the message type, exact (the `type` parameter) |
//! | `scope` | STRING | whose it is: `i:<client>` for an inbox, `r:<room>` for a room and its channels |
//! | `stream` | STRING, STORED | the stream: `i:<client>` or `r:<room>[/<channel>]` |
//! | `key` | STRING | `<stream>#<seq>`: what a removal deletes |
//! | `seq` | u64, STORED | the message's seq in its stream |
//! | `ts` | i64, INDEXED, FAST, STORED | the message's timestamp in ms (`since`, `until`) |
//!
//! Only `stream` and `seq` are stored: a hit is read back from the store, which is also where
//! its expiry and the caller's right to read it are checked again.

use agent_bridge_protocol::Message;
use serde_json::Value;
use tantivy::schema::{Field, Schema, FAST, INDEXED, STORED, STRING, TEXT};
use tantivy::{TantivyDocument, Term};

use crate::store::StreamName;

/// The name the search module logs under (`actor` field).
pub const NAME: &str = "search";

/// The index layout's version: an index on disk with another version (or none) is rebuilt from
/// the store. Bump it when the schema or what is indexed changes.
pub const INDEX_VERSION: u32 = 1;

/// Payload text indexed per message, in bytes (the rest is not searchable).
pub const MAX_INDEXED_TEXT: usize = 64 * 1024;

/// The fields of [`schema`].
#[derive(Clone, Copy)]
pub struct Fields {
    pub text: Field,
    pub msg_type: Field,
    pub from: Field,
    pub thread: Field,
    pub type_exact: Field,
    pub scope: Field,
    pub stream: Field,
    pub key: Field,
    pub seq: Field,
    pub ts: Field,
}

/// The schema and its fields.
pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        text: b.add_text_field("text", TEXT),
        msg_type: b.add_text_field("type", TEXT),
        from: b.add_text_field("from", STRING),
        thread: b.add_text_field("thread", STRING),
        type_exact: b.add_text_field("type_exact", STRING),
        scope: b.add_text_field("scope", STRING),
        stream: b.add_text_field("stream", STRING | STORED),
        key: b.add_text_field("key", STRING),
        seq: b.add_u64_field("seq", STORED),
        ts: b.add_i64_field("ts", INDEXED | FAST | STORED),
    };
    (b.build(), fields)
}

/// `i:<client>` or `r:<room>[/<channel>]`.
pub fn stream_label(stream: &StreamName) -> String {
    match stream {
        StreamName::Inbox(c) => format!("i:{c}"),
        StreamName::Room(r) => format!("r:{r}"),
    }
}

/// Reads back [`stream_label`].
pub fn parse_stream_label(label: &str) -> Option<StreamName> {
    match label.split_at_checked(2)? {
        ("i:", c) => Some(StreamName::Inbox(c.to_owned())),
        ("r:", r) => Some(StreamName::Room(r.to_owned())),
        _ => None,
    }
}

/// Whose a stream is: the inbox itself, or the room a channel belongs to.
pub fn scope_label(stream: &StreamName) -> String {
    match stream {
        StreamName::Inbox(c) => format!("i:{c}"),
        StreamName::Room(r) => format!("r:{}", r.split('/').next().unwrap_or(r)),
    }
}

/// The term that names one message (for deleting it).
pub fn key_term(f: &Fields, stream: &StreamName, seq: u64) -> Term {
    Term::from_field_text(f.key, &format!("{}#{seq}", stream_label(stream)))
}

/// The document of a message stored in `stream`.
pub fn document(f: &Fields, stream: &StreamName, msg: &Message) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_text(f.text, payload_text(msg.payload.json()));
    doc.add_text(f.msg_type, &msg.msg_type);
    doc.add_text(f.type_exact, &msg.msg_type);
    doc.add_text(f.from, &msg.from);
    if let Some(thread) = &msg.thread_id {
        doc.add_text(f.thread, thread);
    }
    doc.add_text(f.scope, scope_label(stream));
    doc.add_text(f.stream, stream_label(stream));
    doc.add_text(f.key, format!("{}#{}", stream_label(stream), msg.seq));
    doc.add_u64(f.seq, msg.seq);
    doc.add_i64(f.ts, msg.timestamp.millis());
    doc
}

/// The searchable text of a payload: a JSON string as it is; in objects and arrays every string
/// value, one per line (keys, numbers and booleans are not text); at most [`MAX_INDEXED_TEXT`]
/// bytes.
pub fn payload_text(json: &str) -> String {
    fn collect(v: &Value, out: &mut String) {
        if out.len() >= MAX_INDEXED_TEXT {
            return;
        }
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
            Value::Object(map) => map.values().for_each(|i| collect(i, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    if let Ok(v) = serde_json::from_str::<Value>(json) {
        collect(&v, &mut out);
    }
    if out.len() > MAX_INDEXED_TEXT {
        let mut end = MAX_INDEXED_TEXT;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_text_takes_the_strings_only_and_is_bounded() {
        assert_eq!(payload_text(r#""hello world""#), "hello world\n");
        assert_eq!(payload_text(r#"{"a": "one", "n": 3, "b": ["two", {"c": "three"}], "t": true}"#), "one\ntwo\nthree\n");
        assert_eq!(payload_text("42"), "");
        let long = serde_json::to_string(&"é".repeat(MAX_INDEXED_TEXT)).expect("json");
        let text = payload_text(&long);
        assert!(text.len() <= MAX_INDEXED_TEXT && text.len() > MAX_INDEXED_TEXT - 2);
    }

    #[test]
    fn stream_labels_read_back() {
        for s in [StreamName::Inbox("bob".into()), StreamName::Room("lab/design".into())] {
            assert_eq!(parse_stream_label(&stream_label(&s)), Some(s));
        }
        assert_eq!(scope_label(&StreamName::Room("lab/design".into())), "r:lab");
        assert_eq!(parse_stream_label("x:y"), None);
    }
}
