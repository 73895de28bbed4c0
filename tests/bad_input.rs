//! Bad input over real sockets: every class gets a coded `error` frame or HTTP `{error, code}`, the
//! WebSocket session stays usable afterwards, and the server never goes down.

mod common;

use common::{Server, Ws, WAIT};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as M};

/// The soft frame limit every test server runs with; frames above 4× this close the socket.
const LIMIT: usize = 4096;

fn start() -> Server {
    Server::start(&["--max-frame-bytes", &LIMIT.to_string()])
}

/// A sender and a peer, both connected.
async fn pair(server: &Server) -> (Ws, Ws) {
    (Ws::connect(server, "sender").await, Ws::connect(server, "peer").await)
}

/// Sends raw text and returns the very next frame, which must be an `error` with `code`.
async fn expect_error(ws: &mut Ws, text: &str, code: &str) -> Value {
    ws.send_text(text.to_owned()).await;
    let f = ws.recv().await;
    assert_eq!((f["type"].as_str(), f["code"].as_str()), (Some("error"), Some(code)), "reply to {text:.200}: {f}");
    assert!(f["error"].as_str().is_some_and(|e| !e.is_empty()), "an error frame explains itself: {f}");
    f
}

/// The session still answers `ping` and still routes a normal send to `peer`.
async fn assert_usable(ws: &mut Ws, peer: &mut Ws) {
    ws.send(json!({"type": "ping"})).await;
    let pong = ws.recv().await;
    assert_eq!(pong["type"], "pong", "the session answers a ping after bad input: {pong}");
    let sent = ws.send_msg("peer", "after-bad-input", json!({"still": "works"})).await;
    assert_eq!(sent["status"], "delivered");
    let m = peer.recv_msg().await;
    assert_eq!((m["type"].clone(), m["payload"].clone()), (json!("after-bad-input"), json!({"still": "works"})));
}

/// `/health/ready` answers 200 and the process is still running.
async fn assert_healthy(server: &mut Server) {
    let (status, body) = server.get("/health/ready").await;
    assert_eq!(status, 200, "ready: {body}");
    assert!(server.alive(), "the server process exited; logs:\n{}", server.logs());
}

/// Frames that do not decode: bad JSON, not an object, unknown type, missing or mistyped fields.
async fn undecodable_frames(server: &Server) {
    let (mut ws, mut peer) = pair(server).await;
    for text in ["{not json", r#"{"type":"send","to":"peer""#, "", "\u{1}"] {
        let f = expect_error(&mut ws, text, "bad_frame").await;
        assert!(f["error"].as_str().is_some_and(|e| e.contains("malformed")), "{f}");
        assert!(f["ref"].is_null(), "nothing to echo from unparsable text: {f}");
    }
    for text in ["[1,2]", r#"["ack","m"]"#, "42", r#""send""#, "null", "{}", r#"{"type":5}"#, r#"{"kind":"send"}"#] {
        expect_error(&mut ws, text, "bad_frame").await;
    }
    let f = expect_error(&mut ws, r#"{"type":"launch_missiles","ref":"u1"}"#, "unknown_type").await;
    assert!(f["error"].as_str().is_some_and(|e| e.contains("launch_missiles")), "{f}");
    assert_eq!(f["ref"], "u1");

    let f = expect_error(&mut ws, r#"{"type":"send","to":"peer","payload":1,"ref":"m1"}"#, "bad_frame").await;
    assert!(f["error"].as_str().is_some_and(|e| e.contains("msg_type")), "the message names the field: {f}");
    assert_eq!(f["ref"], "m1", "the error echoes the frame's ref");
    let f = expect_error(&mut ws, r#"{"type":"send","to":"peer","msg_type":"t","ref":"m2"}"#, "bad_frame").await;
    assert!(f["error"].as_str().is_some_and(|e| e.contains("payload")), "{f}");

    let bad_ack =
        json!({"type": "send", "to": "peer", "msg_type": "t", "payload": 1, "require_ack": "yes", "ref": "w1"});
    let f = expect_error(&mut ws, &bad_ack.to_string(), "bad_frame").await;
    assert_eq!(f["ref"], "w1");
    assert!(f["error"].as_str().is_some_and(|e| e.contains("boolean")), "{f}");
    let f = expect_error(&mut ws, r#"{"type":"ack","message_id":7,"ref":"w2"}"#, "bad_frame").await;
    assert_eq!(f["ref"], "w2");
    expect_error(&mut ws, r#"{"type":"subscribe","types":"all"}"#, "bad_frame").await;
    assert_usable(&mut ws, &mut peer).await;
}

/// A frame above the soft limit gets `too_large` (echoing its ref) and the session stays open.
async fn oversized_frame(server: &Server) {
    let (mut ws, mut peer) = pair(server).await;
    let big = json!({"type": "send", "ref": "big", "to": "peer", "msg_type": "t", "payload": "x".repeat(10 * 1024)});
    let f = expect_error(&mut ws, &big.to_string(), "too_large").await;
    assert_eq!(f["ref"], "big");
    assert!(f["error"].as_str().is_some_and(|e| e.contains(&LIMIT.to_string())), "names the limit: {f}");
    assert_usable(&mut ws, &mut peer).await;
    // Just under the limit is fine.
    let fits =
        json!({"type": "send", "ref": "fits", "to": "peer", "msg_type": "t", "payload": "x".repeat(LIMIT - 200)});
    ws.send_text(fits.to_string()).await;
    let sent = ws.recv().await;
    assert_eq!((sent["type"].as_str(), sent["ref"].as_str()), (Some("sent"), Some("fits")), "{sent}");
    assert_eq!(peer.recv_msg().await["payload"].as_str().map(str::len), Some(LIMIT - 200));
}

/// Reads until the server's close frame and returns its code.
async fn close_code(ws: &mut Ws) -> CloseCode {
    ws.recv_close().await.code
}

/// A frame above 4× the limit closes the socket with 1009; other sessions are unaffected.
async fn frame_above_the_hard_limit(server: &Server) {
    let (mut ws, mut peer) = pair(server).await;
    let mut other = Ws::connect(server, "other").await;
    ws.send_text("x".repeat(4 * LIMIT + 1024)).await;
    assert_eq!(u16::from(close_code(&mut ws).await), 1009);
    assert_usable(&mut other, &mut peer).await;
}

/// Recipient and value checks of `send`: invalid, both or neither of `to`/`room`, unknown pool, empty type.
async fn invalid_recipients_and_values(server: &Server) {
    let (mut ws, mut peer) = pair(server).await;
    let send = |extra: Value| {
        let mut f = json!({"type": "send", "msg_type": "t", "payload": 1});
        f.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        f.to_string()
    };
    for (extra, code) in [
        (json!({"to": "bad id!", "ref": "v1"}), "invalid_recipient"),
        (json!({"to": "x".repeat(200), "ref": "v2"}), "invalid_recipient"),
        (json!({"to": "pool:", "ref": "v3"}), "invalid_recipient"),
        (json!({"to": "peer", "room": "lab", "ref": "v4"}), "bad_frame"),
        (json!({"ref": "v5"}), "bad_frame"),
        (json!({"to": "peer", "msg_type": "", "ref": "v6"}), "bad_frame"),
        (json!({"to": "peer", "msg_type": "t".repeat(65), "ref": "v7"}), "bad_frame"),
        (json!({"room": "a/b/c", "ref": "v8"}), "bad_frame"),
        (json!({"to": "pool:none", "ref": "v9"}), "unknown_recipient"),
    ] {
        let r = extra["ref"].clone();
        let f = expect_error(&mut ws, &send(extra), code).await;
        assert_eq!(f["ref"], r, "{f}");
    }
    assert_usable(&mut ws, &mut peer).await;
}

/// A binary frame on a JSON session is `bad_frame`.
async fn binary_on_a_json_session(server: &Server) {
    let (mut ws, mut peer) = pair(server).await;
    let frame = json!({"type": "ping"}).to_string().into_bytes();
    ws.stream.send(M::Binary(frame)).await.expect("ws send");
    let f = ws.recv().await;
    assert_eq!((f["type"].as_str(), f["code"].as_str()), (Some("error"), Some("bad_frame")), "{f}");
    assert!(f["error"].as_str().is_some_and(|e| e.contains("encoding=bincode")), "says how to use binary: {f}");
    assert_usable(&mut ws, &mut peer).await;
}

/// The upgrade of `path_and_query` is refused: the HTTP status and JSON body of the refusal.
async fn refused_upgrade(server: &Server, path_and_query: &str) -> (u16, Value) {
    let url = format!("ws://127.0.0.1:{}{path_and_query}", server.port);
    let res = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await.expect("answer within the wait");
    match res {
        Err(WsError::Http(resp)) => {
            let body = resp.body().as_deref().map(|b| serde_json::from_slice(b).expect("a JSON error body"));
            (resp.status().as_u16(), body.unwrap_or(Value::Null))
        }
        Err(e) => panic!("{path_and_query}: expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("{path_and_query}: the upgrade was accepted"),
    }
}

/// An invalid client id or query string is refused with 400 before the upgrade.
async fn bad_upgrade_requests(server: &Server) {
    let long = format!("/ws/{}", "a".repeat(200));
    for path in ["/ws/bad%20id", "/ws/all", "/ws/pool:x", "/ws/caf%C3%A9", long.as_str()] {
        let (status, body) = refused_upgrade(server, path).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_client_id")), "{path}: {body}");
        assert!(body["error"].as_str().is_some(), "{path}: {body}");
    }
    for query in ["since=abc", "since=-1", "encoding=xml"] {
        let (status, body) = refused_upgrade(server, &format!("/ws/ok?{query}")).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")), "{query}: {body}");
    }
    // The same client id with good options still connects.
    let (mut ws, mut peer) = pair(server).await;
    assert_usable(&mut ws, &mut peer).await;
}

/// Bad HTTP requests: each gets its status and a `{error, code}` body.
async fn bad_http_requests(server: &Server) {
    let (mut ws, mut peer) = pair(server).await;
    let raw = |body: &str| server.post_raw("/api/send", body.to_owned());
    let send = |body: Value| server.post_raw("/api/send", body.to_string());
    let big = "x".repeat(10 * 1024);
    let checks: Vec<(&str, (u16, Value), u16, &str)> = vec![
        ("bad JSON", raw("{nope").await, 400, "bad_frame"),
        ("an array", raw("[1]").await, 400, "bad_frame"),
        ("empty body", raw("").await, 400, "bad_frame"),
        ("missing from", send(json!({"to": "peer", "type": "t", "payload": 1})).await, 400, "bad_frame"),
        ("missing type", send(json!({"from": "h", "to": "peer", "payload": 1})).await, 400, "bad_frame"),
        ("missing payload", send(json!({"from": "h", "to": "peer", "type": "t"})).await, 400, "bad_frame"),
        ("invalid from", send(json!({"from": "h h", "to": "peer", "type": "t", "payload": 1})).await, 400, "invalid_client_id"),
        ("invalid to", send(json!({"from": "h", "to": "bad id!", "type": "t", "payload": 1})).await, 400, "invalid_recipient"),
        ("unknown pool", send(json!({"from": "h", "to": "pool:none", "type": "t", "payload": 1})).await, 404, "unknown_recipient"),
        ("too large", send(json!({"from": "h", "to": "peer", "type": "t", "payload": big})).await, 413, "too_large"),
        ("poll without to", server.get("/api/messages").await, 400, "bad_request"),
        ("poll invalid to", server.get("/api/messages?to=a%20b").await, 400, "invalid_client_id"),
        ("limit=5000", server.get("/api/messages?to=h&limit=5000").await, 400, "bad_request"),
        ("limit=0", server.get("/api/messages?to=h&limit=0").await, 400, "bad_request"),
        ("wait=100", server.get("/api/messages?to=h&wait=100").await, 400, "bad_request"),
        ("wait=-1", server.get("/api/messages?to=h&wait=-1").await, 400, "bad_request"),
        ("since=notatime", server.get("/api/messages?to=h&since=notatime").await, 400, "bad_request"),
        ("unknown route", server.get("/api/nothing-here").await, 404, "not_found"),
        ("fault injection off", server.post("/admin/fault", &json!({"actor": "router"})).await, 404, "not_found"),
    ];
    for (what, (status, body), want_status, want_code) in checks {
        assert_eq!((status, body["code"].as_str()), (want_status, Some(want_code)), "{what}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {body}");
    }
    let (_, body) = send(json!({"to": "peer", "type": "t", "payload": 1})).await;
    assert!(body["error"].as_str().is_some_and(|e| e.contains("from")), "names the missing field: {body}");
    // One rule for both transports: a send without `payload` is refused with the code the
    // WebSocket `send` frame gets, naming the field; an explicit `null` is a payload.
    let (_, body) = send(json!({"from": "h", "to": "peer", "type": "t"})).await;
    assert!(body["error"].as_str().is_some_and(|e| e.contains("payload")), "names the missing field: {body}");
    let (status, body) = send(json!({"from": "h", "to": "nobody-yet", "type": "t", "payload": null})).await;
    assert_eq!(status, 200, "{body}");
    // Nothing above reached the peer; a good request still does.
    let (status, body) =
        server.post("/api/send", &json!({"from": "h", "to": "peer", "type": "good", "payload": 2})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(peer.recv_msg().await["type"], "good", "no bad request was routed");
    assert_usable(&mut ws, &mut peer).await;
}

/// Sends one raw data frame; `fin` marks the last fragment of its message.
async fn send_fragment(ws: &mut Ws, bytes: &[u8], kind: Data, fin: bool) {
    ws.stream.send(M::Frame(Frame::message(bytes.to_vec(), OpCode::Data(kind), fin))).await.expect("ws send frame");
}

/// A text message sent in three fragments (first, continuation, final continuation) is reassembled;
/// oversized or stray fragments close only their own socket.
async fn fragmented_text(server: &Server) {
    let (mut ws, mut peer) = pair(server).await;
    let frame =
        json!({"type": "send", "to": "peer", "msg_type": "frag", "payload": {"text": "reassembled"}, "ref": "f1"});
    let text = frame.to_string();
    let (a, rest) = text.split_at(text.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    for (part, kind, fin) in [(a, Data::Text, false), (b, Data::Continue, false), (c, Data::Continue, true)] {
        send_fragment(&mut ws, part.as_bytes(), kind, fin).await;
    }
    let sent = ws.recv().await;
    assert_eq!(
        (sent["type"].as_str(), sent["ref"].as_str(), sent["status"].as_str()),
        (Some("sent"), Some("f1"), Some("delivered")),
        "{sent}"
    );
    let m = peer.recv_msg().await;
    assert_eq!((m["type"].clone(), m["payload"].clone()), (json!("frag"), json!({"text": "reassembled"})));
    // Fragments that each fit but add up to more than 4× the limit close the socket with 1009.
    let mut big = Ws::connect(server, "big-fragments").await;
    let chunk = vec![b' '; LIMIT];
    send_fragment(&mut big, b"{", Data::Text, false).await;
    for _ in 0..5 {
        send_fragment(&mut big, &chunk, Data::Continue, false).await;
    }
    assert_eq!(u16::from(close_code(&mut big).await), 1009);
    // A continuation that continues nothing is a WebSocket protocol error (RFC 6455 5.4): 1002.
    let mut stray = Ws::connect(server, "stray").await;
    send_fragment(&mut stray, b"{}", Data::Continue, true).await;
    assert_eq!(u16::from(close_code(&mut stray).await), 1002);
    assert_usable(&mut ws, &mut peer).await;
}

/// One test per class, each on a server of its own: the class's checks, then the server is
/// still ready and running.
macro_rules! class_tests {
    ($($test:ident => $class:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $test() {
            let mut server = start();
            $class(&server).await;
            assert_healthy(&mut server).await;
        }
    )*};
}

class_tests! {
    undecodable_frames_get_bad_frame_or_unknown_type => undecodable_frames,
    oversized_frame_gets_too_large_and_the_session_stays_open => oversized_frame,
    frame_above_four_times_the_limit_closes_with_1009 => frame_above_the_hard_limit,
    invalid_recipients_and_values_are_rejected => invalid_recipients_and_values,
    binary_frame_on_a_json_session_is_bad_frame => binary_on_a_json_session,
    invalid_client_id_or_query_is_refused_before_the_upgrade => bad_upgrade_requests,
    bad_http_requests_get_coded_errors => bad_http_requests,
    fragmented_text_frame_is_reassembled => fragmented_text,
}

#[tokio::test]
async fn one_server_survives_every_class_in_a_row() {
    let mut server = start();
    undecodable_frames(&server).await;
    oversized_frame(&server).await;
    frame_above_the_hard_limit(&server).await;
    invalid_recipients_and_values(&server).await;
    binary_on_a_json_session(&server).await;
    bad_upgrade_requests(&server).await;
    bad_http_requests(&server).await;
    fragmented_text(&server).await;
    assert_healthy(&mut server).await;
    let (status, body) = server.get("/api/status").await;
    assert_eq!((status, body["healthy"].clone()), (200, json!(true)), "{body}");
}
