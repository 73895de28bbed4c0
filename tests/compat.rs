//! Compatibility with the original Python bridge clients: `tests/compat/original_client.py` talks to
//! the real server over WebSocket and HTTP exactly as those clients do and must exit 0.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use common::Server;
use tokio::process::Command;

/// The script bounds itself at 20 s; this is the backstop if Python itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(40);

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/original_client.py");

/// Runs `python args..` to completion within the timeout; the child is killed if the timeout fires.
async fn python(python: &str, args: &[&str]) -> Output {
    let child = Command::new(python)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is needed for the compatibility test and could not be started: {e}"));
    tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("python3 {args:?} did not finish within {SCRIPT_TIMEOUT:?}"))
        .expect("waiting for python3")
}

/// A Python interpreter that can `import websockets`: the system one if it can, else a virtualenv
/// under the target directory with the package installed from PyPI, so `cargo test` alone works on
/// a fresh machine.
async fn python_with_websockets() -> String {
    if python("python3", &["-c", "import websockets"]).await.status.success() {
        return "python3".into();
    }
    let venv = concat!(env!("CARGO_TARGET_TMPDIR"), "/compat-venv");
    let venv_python = format!("{venv}/bin/python");
    let ready = std::path::Path::new(&venv_python).exists()
        && python(&venv_python, &["-c", "import websockets"]).await.status.success();
    if !ready {
        let made = python("python3", &["-m", "venv", venv]).await;
        assert!(made.status.success(), "python3 -m venv failed: {}", String::from_utf8_lossy(&made.stderr));
        let pip = python(&venv_python, &["-m", "pip", "install", "--quiet", "websockets"]).await;
        assert!(
            pip.status.success(),
            "the compatibility test needs the Python `websockets` package (pip install websockets): {}",
            String::from_utf8_lossy(&pip.stderr)
        );
    }
    venv_python
}

#[tokio::test]
async fn the_original_python_client_works_unchanged() {
    let py = python_with_websockets().await;
    let mut server = Server::start(&[]);
    let out = python(&py, &[SCRIPT, &server.port.to_string()]).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{SCRIPT} failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}--- server logs\n{}",
        out.status,
        server.logs()
    );
    assert!(stdout.contains("PASS"), "the script exited 0 without passing:\n{stdout}");
    assert!(server.alive(), "the server exited; logs:\n{}", server.logs());
}

// ---- The original clients' exact requests, from Rust (no Python package needed) ----

use common::{Ws, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type RawWs = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The handshake Python's `websocket-client` (1.x, `websocket.create_connection(url)`) writes, line
/// for line: it always adds `Origin: http://<host>:<port>`, the broker's own address.
fn websocket_client_handshake(port: u16, path: &str, origin: Option<&str>, key: &str) -> String {
    let hostport = format!("127.0.0.1:{port}");
    let origin = origin.map_or_else(|| format!("http://{hostport}"), str::to_owned);
    format!(
        "GET {path} HTTP/1.1\r\nUpgrade: websocket\r\nHost: {hostport}\r\nOrigin: {origin}\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nConnection: Upgrade\r\n\r\n"
    )
}

/// Reads an HTTP response head byte by byte (so no WebSocket frame after it is consumed), then the
/// body if it has a content-length.
async fn read_response(stream: &mut tokio::net::TcpStream) -> (u16, String, String) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(WAIT, stream.read(&mut b)).await.expect("response in time").expect("read");
        assert!(n == 1, "connection closed inside the response head: {}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if length > 0 {
        tokio::time::timeout(WAIT, stream.read_exact(&mut body)).await.expect("body in time").expect("body");
    }
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// Connects as websocket-client does; `Err((status, body))` when the broker refuses.
async fn websocket_client_connect(port: u16, client: &str, origin: Option<&str>) -> Result<RawWs, (u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("tcp connect");
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    stream.write_all(websocket_client_handshake(port, &format!("/ws/{client}"), origin, key).as_bytes()).await.expect("write");
    let (status, head, body) = read_response(&mut stream).await;
    if status != 101 {
        return Err((status, body));
    }
    // websocket-client checks the accept key; so does this.
    let accept = derive_accept_key(key.as_bytes());
    assert!(head.to_ascii_lowercase().contains(&format!("sec-websocket-accept: {}", accept.to_ascii_lowercase())), "{head}");
    Ok(WebSocketStream::from_raw_socket(MaybeTlsStream::Plain(stream), Role::Client, None).await)
}

/// The next JSON text frame of `frame_type`, skipping the others.
async fn next_of(ws: &mut RawWs, frame_type: &str) -> Value {
    loop {
        let next = tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time").expect("open").expect("frame");
        if let WsMessage::Text(t) = next {
            let v: Value = serde_json::from_str(&t).expect("JSON");
            if v["type"] == frame_type {
                return v;
            }
            assert_ne!(v["type"], "error", "waiting for {frame_type}: {v}");
        }
    }
}

async fn poll(server: &Server, query: &str) -> (u16, Value) {
    server.get(&format!("/api/messages?{query}")).await
}

/// Unix seconds as Python's `repr(time.time())` writes them (e.g. `1796156836.1125891`).
fn python_time(at: std::time::SystemTime) -> String {
    format!("{:.7}", at.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs_f64())
}

/// JavaScript's `Date.now()`.
fn js_now(at: std::time::SystemTime) -> String {
    at.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis().to_string()
}

/// The original desktop client (websocket-client handshake, Origin included), its poller (float
/// seconds) and its clipboard client (milliseconds) against a broker with default settings:
/// messages flow both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_clients_exact_requests_work_with_default_settings() {
    let mut server = Server::start(&[]);
    let start = std::time::SystemTime::now() - Duration::from_secs(1);
    let (since_s, since_ms) = (python_time(start), js_now(start));

    let mut code = websocket_client_connect(server.port, "code", None).await.expect("same-origin handshake accepted");
    let confirmed = next_of(&mut code, "connection_confirmed").await;
    assert_eq!(confirmed["client_id"], "code");

    // code → desktop (polls with float seconds) and → clipboard (polls with milliseconds).
    for to in ["desktop", "clipboard"] {
        let frame = json!({"type": "send", "to": to, "msg_type": "command", "payload": {"text": format!("hi {to}")}});
        code.send(WsMessage::Text(frame.to_string())).await.expect("ws send");
        let sent = next_of(&mut code, "sent").await;
        assert_eq!(sent["status"], "queued", "{sent}");
    }
    let (status, page) = poll(&server, &format!("to=desktop&since={since_s}")).await;
    assert_eq!(status, 200, "since={since_s}: {page}");
    assert_eq!(page["count"], 1, "{page}");
    assert_eq!(page["messages"][0]["payload"], json!({"text": "hi desktop"}));
    let (status, page) = poll(&server, &format!("to=clipboard&since={since_ms}")).await;
    assert_eq!(status, 200, "since={since_ms}: {page}");
    assert_eq!(page["messages"][0]["payload"], json!({"text": "hi clipboard"}), "{page}");

    // Polling from the last message's time (as seconds, then milliseconds) returns nothing again,
    // and a time after "now" too.
    let stamp = page["messages"][0]["timestamp"].as_str().expect("timestamp").to_owned();
    let t = chrono::DateTime::parse_from_rfc3339(&stamp).expect("RFC 3339").timestamp_millis();
    let (_, again) = poll(&server, &format!("to=clipboard&since={t}")).await;
    assert_eq!(again["count"], 0, "since={t}: {again}");
    let secs = format!("{}.{:03}", t / 1000, t % 1000);
    let (_, again) = poll(&server, &format!("to=clipboard&since={secs}")).await;
    assert_eq!(again["count"], 0, "since={secs}: {again}");
    let (_, later) = poll(&server, &format!("to=desktop&since={}", python_time(std::time::SystemTime::now()))).await;
    assert_eq!(later["count"], 0, "{later}");
    // Small integers are still seqs.
    let (_, by_seq) = poll(&server, "to=desktop&since=0").await;
    assert_eq!(by_seq["count"], 1, "{by_seq}");

    // Back the other way: both HTTP clients answer the WebSocket agent.
    for from in ["desktop", "clipboard"] {
        let (status, body) =
            server.post("/api/send", &json!({"from": from, "to": "code", "type": "response", "payload": {"from": from}})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "delivered", "the WebSocket vocabulary: code is online: {body}");
        let m = next_of(&mut code, "message").await;
        assert_eq!((m["message"]["from"].clone(), m["message"]["payload"]["from"].clone()), (json!(from), json!(from)));
    }

    // Not the broker's own origin: refused with JSON, 403.
    for origin in ["http://evil.example", &format!("http://127.0.0.1:{}", server.port + 1)] {
        let (status, body) = websocket_client_connect(server.port, "code", Some(origin)).await.expect_err(origin);
        assert_eq!(status, 403, "{origin}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{origin}: not JSON ({e}): {body}"));
        assert_eq!(body["code"], "forbidden", "{body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("cors_origins")), "{body}");
    }
    assert!(server.alive());
}

/// The original browser extension: its configured `chrome-extension://` origin, Chrome's private
/// network preflight, polling without `to`, `/api/subscribe`, and a `collab` frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_browser_extension_gets_answers() {
    let ext = "chrome-extension://abcdefghijklmnopabcdefghijklmnop";
    let server = Server::start(&["--cors-origins", &format!("https://claude.ai,{ext}")]);
    let http = reqwest::Client::new();
    let pre = http
        .request(reqwest::Method::OPTIONS, server.http("/api/messages"))
        .header("origin", ext)
        .header("access-control-request-method", "GET")
        .header("access-control-request-private-network", "true")
        .send()
        .await
        .expect("preflight");
    assert_eq!(pre.status().as_u16(), 200);
    let header = |r: &reqwest::Response, name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header(&pre, "access-control-allow-origin").as_deref(), Some(ext));
    assert_eq!(header(&pre, "access-control-allow-private-network").as_deref(), Some("true"));

    // The popup polls without `to`: a clear JSON error (anonymous callers are bound to no id).
    let r = http.get(server.http("/api/messages")).header("origin", ext).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(header(&r, "access-control-allow-origin").as_deref(), Some(ext), "the page may read the error");
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["code"], "bad_request");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("\"to\"")), "{body}");

    // `/api/subscribe` is the SSE stream.
    let r = http.get(server.http("/api/subscribe?client_id=ext")).header("origin", ext).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    assert!(header(&r, "content-type").is_some_and(|c| c.starts_with("text/event-stream")));
    let mut r = r;
    let first = tokio::time::timeout(WAIT, r.chunk()).await.expect("an event in time").expect("read").expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains("connection_confirmed"), "{first:?}");

    // Another extension is refused, preflight included, with JSON.
    let other = "chrome-extension://ponmlkjihgfedcbaponmlkjihgfedcba";
    let r = http
        .request(reqwest::Method::OPTIONS, server.http("/api/send"))
        .header("origin", other)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(r.status().as_u16(), 403);
    assert!(header(&r, "access-control-allow-origin").is_none());
    assert_eq!(r.json::<Value>().await.expect("JSON")["code"], "forbidden");

    // The collaboration client's frames: an error naming the frame to use.
    let mut ws = Ws::connect(&server, "collab-client").await;
    ws.send(json!({"type": "collab", "action": "create_room", "topic": "Build", "role": "coordinator"})).await;
    let err = ws.recv_type("error").await;
    assert_eq!(err["code"], "not_supported", "{err}");
    assert!(err["error"].as_str().is_some_and(|e| e.contains("room.create")), "{err}");
}
