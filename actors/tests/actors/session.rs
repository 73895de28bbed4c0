//! `Session` (WebSocket) and `SseSession` without a socket: the WebSocket session runs over an
//! in-memory request body (client frames go in through a channel) and its response body is read
//! frame by frame; the SSE session's body is read as a stream. Behind them: one real router shard
//! (with probes for the AckTracker) and a rooms registry, on a temporary store.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::web::Bytes;
use actix_web::{test::TestRequest, web, FromRequest};
use agent_bridge_actors::auth::SessionAuth;
use agent_bridge_actors::messages::ShardPort;
use agent_bridge_actors::room::RoomsConfig;
use agent_bridge_actors::rooms::Rooms;
use agent_bridge_actors::router::{Router, RouterConfig, RouterHandle};
use agent_bridge_actors::session::{self, Encoding, SessionConfig, SessionDeps, SessionParams};
use agent_bridge_actors::sse::{SseBody, SseSession};
use agent_bridge_actors::supervisor::Mailbox;
use agent_bridge_protocol::frames::SentStatus;
use futures_util::Stream;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::fixture::{child, store, to, tracker_probes, tree, TrackerProbes};

/// The session's dependencies, and the tracker's probes behind them.
struct Deps {
    deps: SessionDeps,
    tracker: TrackerProbes,
}

fn deps(config: SessionConfig) -> Deps {
    let (tracker, probes) = tracker_probes();
    let (tree, _root) = tree();
    let store = store();
    let shard = child(&tree, "router-0", Router::NAME, 3);
    let router = Mailbox::new().supervise(&shard, Router::new(shard.clone(), store.clone(), RouterConfig::default(), tracker.clone()));
    let rooms_child = child(&tree, Rooms::NAME, Rooms::NAME, 3);
    let rooms = Rooms::start(rooms_child, Arc::clone(&tree), store, RoomsConfig::default(), &Arbiter::current());
    let _group = child(&tree, session::SESSIONS_GROUP, "supervisor", 3);
    let router = RouterHandle::new(vec![ShardPort::of(&router)], rooms.clone());
    let deps = SessionDeps { router, tracker, rooms, tree, config: Arc::new(config) };
    Deps { deps, tracker: probes }
}

/// A WebSocket client of an in-memory session: frames in through the request body, frames out
/// of the response body.
struct Client {
    tx: mpsc::UnboundedSender<Result<Bytes, actix_http::error::PayloadError>>,
    body: BoxBody,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(client_id: &str, deps: &SessionDeps) -> Client {
        let (req, _) = TestRequest::default()
            .insert_header(("upgrade", "websocket"))
            .insert_header(("connection", "upgrade"))
            .insert_header(("sec-websocket-version", "13"))
            .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="))
            .to_http_parts();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stream: Pin<Box<dyn Stream<Item = _>>> = Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let mut payload = actix_http::Payload::from(stream);
        let payload = web::Payload::from_request(&req, &mut payload).await.expect("a payload");
        let params = SessionParams {
            client_id: client_id.into(),
            since: None,
            types: None,
            encoding: Encoding::Json,
            auth: SessionAuth::anonymous(),
            on_stop: None,
        };
        let resp = session::start(&req, payload, params, deps).expect("upgraded");
        assert_eq!(resp.status().as_u16(), 101);
        Client { tx, body: resp.into_body(), buf: Vec::new() }
    }

    /// Sends raw bytes of the client's side of the connection.
    fn raw(&self, bytes: Vec<u8>) {
        self.tx.send(Ok(Bytes::from(bytes))).expect("the session reads");
    }

    /// Sends a text frame (masked with a zero key, so the payload goes as it is).
    fn text(&self, text: &str) {
        let mut frame = header(0x81, text.len() as u64);
        frame.extend_from_slice(text.as_bytes());
        self.raw(frame);
    }

    fn json(&self, v: Value) {
        self.text(&v.to_string());
    }

    /// The next server frame: (opcode, payload).
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return frame;
            }
            let chunk = tokio::time::timeout(super::probe::WAIT, poll_fn(|cx| Pin::new(&mut self.body).poll_next(cx)))
                .await
                .expect("a frame in time");
            match chunk {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                other => panic!("the session's body ended: {:?}", other.map(|r| r.map(|b| b.len()))),
            }
        }
    }

    /// The next text frame, as JSON.
    async fn next(&mut self) -> Value {
        let (op, payload) = self.frame().await;
        assert_eq!(op, 1, "a text frame, got opcode {op}: {payload:?}");
        serde_json::from_slice(&payload).expect("JSON")
    }
}

/// A masked client frame header (RFC 6455 §5.2) with the zero masking key: the length in 7
/// bits, or 126 and 16 bits, or 127 and 64 bits.
fn header(first: u8, len: u64) -> Vec<u8> {
    let ext = if len < 126 {
        Vec::new()
    } else if let Ok(short) = u16::try_from(len) {
        short.to_be_bytes().to_vec()
    } else {
        len.to_be_bytes().to_vec()
    };
    let marker = match ext.len() {
        0 => len as u8,
        2 => 126,
        _ => 127,
    };
    [vec![first, 0x80 | marker], ext, vec![0; 4]].concat()
}

/// One unmasked server frame from the front of `buf`, and the bytes it took.
fn parse(buf: &[u8]) -> Option<((u8, Vec<u8>), usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, at) = match b1 & 0x7F {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?;
    Some(((b0 & 0x0F, payload.to_vec()), at + len))
}

#[actix::test]
async fn a_websocket_session_confirms_then_answers_each_send_once_with_its_ref() {
    let d = deps(SessionConfig::default());
    let mut alice = Client::connect("alice", &d.deps).await;
    let confirmed = alice.next().await;
    assert_eq!((confirmed["type"].as_str(), confirmed["client_id"].as_str()), (Some("connection_confirmed"), Some("alice")));
    alice.json(json!({ "type": "send", "to": "bob", "msg_type": "note", "payload": { "n": 1 }, "ref": "r-1" }));
    let sent = alice.next().await;
    assert_eq!((sent["type"].as_str(), sent["ref"].as_str(), sent["status"].as_str()), (Some("sent"), Some("r-1"), Some("queued")), "{sent}");
    let mut bob = Client::connect("bob", &d.deps).await;
    assert_eq!(bob.next().await["type"], "connection_confirmed");
    let message = bob.next().await;
    assert_eq!((message["type"].as_str(), message["message"]["from"].as_str(), message["message"]["seq"].as_u64()), (Some("message"), Some("alice"), Some(1)));
}

#[actix::test]
async fn with_few_sends_allowed_in_flight_reading_resumes_as_replies_come_and_every_send_is_answered_once() {
    let d = deps(SessionConfig { max_in_flight: 2, ..SessionConfig::default() });
    let mut alice = Client::connect("alice", &d.deps).await;
    alice.next().await;
    // Twelve sends, one chunk each (as the socket would deliver them): once two wait for their
    // reply the session reads no further chunk until the replies reopen the gate.
    for n in 1..=12 {
        alice.json(json!({ "type": "send", "to": "bob", "msg_type": "note", "payload": { "n": n }, "ref": format!("r-{n}") }));
    }
    let mut refs = Vec::new();
    for _ in 1..=12 {
        let sent = alice.next().await;
        assert_eq!(sent["type"], "sent", "{sent}");
        refs.push(sent["ref"].as_str().unwrap_or_default().to_owned());
    }
    let want: Vec<String> = (1..=12).map(|n| format!("r-{n}")).collect();
    assert_eq!(refs, want, "each send answered once, in order");
}

#[actix::test]
async fn bad_input_gets_an_error_frame_with_a_code_and_the_session_stays_open() {
    let d = deps(SessionConfig::default());
    let mut alice = Client::connect("alice", &d.deps).await;
    alice.next().await;
    alice.text("{not json");
    let err = alice.next().await;
    assert_eq!((err["type"].as_str(), err["code"].as_str()), (Some("error"), Some("bad_frame")), "{err}");
    alice.json(json!({ "type": "send", "to": "bad id", "msg_type": "note", "payload": 1, "ref": "r-2" }));
    let err = alice.next().await;
    assert_eq!((err["code"].as_str(), err["ref"].as_str()), (Some("invalid_recipient"), Some("r-2")), "{err}");
    alice.json(json!({ "type": "ping" }));
    assert_eq!(alice.next().await["type"], "pong", "still open");
}

#[actix::test]
async fn an_ack_frame_goes_to_the_tracker_for_the_sessions_own_client_id() {
    let mut d = deps(SessionConfig::default());
    let mut bob = Client::connect("bob", &d.deps).await;
    bob.next().await;
    bob.json(json!({ "type": "ack", "message_id": "msg-1" }));
    // The session runs as its response body is read: a ping behind the ack drives it.
    bob.json(json!({ "type": "ping" }));
    assert_eq!(bob.next().await["type"], "pong");
    let ack = d.tracker.acknowledge.next().await;
    assert_eq!((ack.client_id.as_str(), ack.message_id.as_str()), ("bob", "msg-1"));
}

#[actix::test]
async fn room_frames_are_answered_by_the_rooms_join_first_then_a_call_result_by_ref() {
    let d = deps(SessionConfig::default());
    let mut alice = Client::connect("alice", &d.deps).await;
    alice.next().await;
    alice.json(json!({ "type": "call", "ref": "c-1", "method": "room.create", "params": { "name": "lab", "topic": "t" } }));
    let created = alice.next().await;
    assert_eq!((created["type"].as_str(), created["ref"].as_str(), created["ok"].as_bool()), (Some("result"), Some("c-1"), Some(true)), "{created}");
    alice.json(json!({ "type": "join", "room": "lab" }));
    let joined = alice.next().await;
    assert_eq!((joined["type"].as_str(), joined["event"].as_str(), joined["room"].as_str()), (Some("event"), Some("joined"), Some("lab")), "{joined}");
    alice.json(json!({ "type": "call", "ref": "c-2", "method": "room.topic", "params": { "room": "lab", "topic": "new" } }));
    // The member's own session hears the event and gets the result; their order is the room's.
    let mut frames = vec![alice.next().await, alice.next().await];
    frames.sort_by_key(|f| f["type"].as_str().unwrap_or_default().to_owned());
    assert_eq!(frames[0]["event"], "topic_changed", "{frames:?}");
    assert_eq!(frames[1]["result"], json!({ "room": "lab", "topic": "new", "changed": true }), "{frames:?}");
    alice.json(json!({ "type": "call", "ref": "c-3", "method": "room.nope", "params": {} }));
    let unknown = alice.next().await;
    assert_eq!((unknown["ok"].as_bool(), unknown["error"]["code"].as_str()), (Some(false), Some("unknown_method")), "{unknown}");
}

#[actix::test]
async fn a_frame_header_over_the_hard_limit_closes_the_session_with_1009_at_once() {
    let d = deps(SessionConfig { hard_frame_bytes: 1 << 16, ..SessionConfig::default() });
    let mut alice = Client::connect("alice", &d.deps).await;
    alice.next().await;
    // Only the header: the session must not wait for (or buffer) 2^40 bytes.
    alice.raw(header(0x82, 1 << 40));
    let (op, payload) = alice.frame().await;
    assert_eq!(op, 8, "a close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
}

/// The next chunk of an SSE body (one event), within the bounded wait.
async fn sse_next(body: &mut SseBody) -> String {
    let item = tokio::time::timeout(super::probe::WAIT, poll_fn(|cx| Pin::new(&mut *body).poll_next(cx))).await;
    let bytes = item.expect("an event in time").expect("the stream goes on").expect("bytes");
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

#[actix::test]
async fn an_sse_stream_confirms_then_carries_each_message_with_its_seq_as_the_event_id() {
    let d = deps(SessionConfig::default());
    let mut body = SseSession::start("bob".into(), None, None, &d.deps, SessionAuth::anonymous());
    let first = sse_next(&mut body).await;
    assert!(first.starts_with("event: connection_confirmed\n"), "{first}");
    let routed = d.deps.router.route(to("alice", "bob", 1)).await.expect("routed");
    assert_eq!(routed.status, SentStatus::Delivered);
    let event = sse_next(&mut body).await;
    assert!(event.starts_with("id: 1\nevent: message\ndata: {\"type\":\"message\""), "{event}");
    assert!(event.ends_with("\n\n"));
}
