//! Shared helpers for the black-box tests: the real `agent-bridge` binary on 127.0.0.1:0 and real
//! WebSocket and HTTP clients.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Default bound for waiting on anything.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running broker process; killed on drop.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    logs: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `agent-bridge serve --in-memory --bind 127.0.0.1:0` plus `extra` flags.
    pub fn start(extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0"];
        if !extra.iter().any(|a| a.starts_with("--data-dir")) {
            args.push("--in-memory");
        }
        args.extend_from_slice(extra);
        Server::start_args(&args)
    }

    /// Starts the binary with exactly these arguments.
    pub fn start_args(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agent-bridge"))
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("BRIDGE_BIND")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning agent-bridge");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("log lock").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let addr = line.strip_prefix("agent-bridge listening on http://");
                if let Some(addr) = addr.or_else(|| line.strip_prefix("agent-bridge listening on https://")) {
                    let _ = tx.send(addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()));
                }
            }
        });
        let port = match rx.recv_timeout(WAIT) {
            Ok(Some(p)) => p,
            _ => {
                let _ = child.kill();
                panic!("agent-bridge did not start; logs:\n{}", logs.lock().expect("log lock"));
            }
        };
        Server { child: Some(child), port, logs }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self, client: &str, query: &str) -> String {
        let q = if query.is_empty() { String::new() } else { format!("?{query}") };
        format!("ws://127.0.0.1:{}/ws/{client}{q}", self.port)
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").clone()
    }

    /// Waits until the logs contain `needle`.
    pub async fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            assert!(Instant::now() < deadline, "log line {needle:?} never appeared; logs:\n{logs}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id (0 once killed).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(self.http(path)).await.expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string()).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(self.http(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking JSON frames.
pub struct Ws {
    pub stream: Stream,
    pub confirmed: Value,
}

impl Ws {
    /// Connects and waits for `connection_confirmed`.
    pub async fn connect(server: &Server, client: &str) -> Ws {
        Ws::connect_query(server, client, "").await
    }

    pub async fn connect_query(server: &Server, client: &str, query: &str) -> Ws {
        let (stream, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(server.ws_url(client, query)))
            .await
            .expect("connect timed out")
            .expect("websocket connect");
        let mut ws = Ws { stream, confirmed: Value::Null };
        let c = ws.recv().await;
        assert_eq!(c["type"], "connection_confirmed", "first frame: {c}");
        ws.confirmed = c;
        ws
    }

    pub async fn send(&mut self, frame: Value) {
        self.stream.send(WsMessage::Text(frame.to_string())).await.expect("ws send");
    }

    pub async fn send_text(&mut self, text: String) {
        self.stream.send(WsMessage::Text(text)).await.expect("ws send");
    }

    /// The next JSON frame (control frames are skipped; tungstenite answers pings itself).
    pub async fn recv(&mut self) -> Value {
        self.try_recv(WAIT).await.expect("no frame within the wait")
    }

    /// The next JSON frame within `within`, or `None`.
    pub async fn try_recv(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await.ok()??;
            match next {
                Ok(WsMessage::Text(t)) => return Some(serde_json::from_str(&t).expect("server sent JSON")),
                Ok(WsMessage::Binary(_)) => panic!("unexpected binary frame"),
                Ok(WsMessage::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next frame of a given type, skipping others (e.g. `sent` while waiting for `message`).
    pub async fn recv_type(&mut self, frame_type: &str) -> Value {
        loop {
            let f = self.recv().await;
            if f["type"] == frame_type {
                return f;
            }
        }
    }

    /// Sends a message and returns the `sent` reply.
    pub async fn send_msg(&mut self, to: &str, msg_type: &str, payload: Value) -> Value {
        let r = format!("r-{}", rand_suffix());
        self.send(json!({"type": "send", "to": to, "msg_type": msg_type, "payload": payload, "ref": r})).await;
        loop {
            let f = self.recv().await;
            if f["type"] == "sent" && f["ref"] == r.as_str() {
                return f;
            }
            assert_ne!(f["type"], "error", "send failed: {f}");
        }
    }

    /// The next `message` frame's message object.
    pub async fn recv_msg(&mut self) -> Value {
        self.recv_type("message").await["message"].clone()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Polls `f` until it returns `Some`, at most `WAIT`.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A raw HTTP/1.1 exchange over loopback, for requests a URL library would rewrite (percent-escapes
/// and dot segments kept as written, oversized or malformed heads). `chunks` are written with
/// `pause` between them (a slow client); the answer is read until the server closes or `WAIT`.
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResponse {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

pub async fn raw_http(port: u16, chunks: &[&[u8]], pause: Duration) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        if s.write_all(c).await.is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
        }
        // One response is enough: stop once its body (by Content-Length) is in.
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)));
            if len.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").map(|(h, b)| (h.to_owned(), b.to_owned())).unwrap_or((text.clone(), String::new()));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    RawResponse { status, head, body }
}

/// A request as written: `METHOD PATH HTTP/1.1` with `headers` and `body` (Content-Length added).
pub fn raw_request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        r.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}
pub mod python;

/// `agent-bridge keys create --data-dir DIR ARGS...` on a stopped broker's data dir: the key (the
/// last line of its output).
pub fn create_key(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_agent-bridge"))
        .args(["keys", "create", "--data-dir"])
        .arg(dir)
        .args(args)
        .env_remove("BRIDGE_DATA_DIR")
        .output()
        .expect("running keys create");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "keys create failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
    let key = stdout.lines().last().expect("a last line").trim().to_owned();
    assert!(key.starts_with("abk_"), "the last line is the key: {stdout}");
    key
}

/// Waits for `child` at most `within` (killing it and panicking with `what` past that); its output.
pub fn wait_output(mut child: Child, within: Duration, what: &str) -> std::process::Output {
    let deadline = Instant::now() + within;
    while child.try_wait().expect("waiting").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not finish in time: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Runs `agent-bridge mcp` as an MCP host does: writes `initialize`, then `tools/call` of `tool`
/// with `arguments`, and returns the tool call's JSON-RPC answer and, once stdin is closed and the
/// server has exited, its stderr (when `cmd` pipes it).
pub fn mcp_tool_call(cmd: &mut Command, tool: &str, arguments: Value) -> (Value, String) {
    use std::io::Write;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawning agent-bridge mcp");
    let mut stdin = child.stdin.take().expect("stdin");
    for r in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}),
    ] {
        writeln!(stdin, "{r}").expect("writing to the MCP server");
    }
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let answer = loop {
        let line = rx.recv_timeout(WAIT).expect("an answer to the tool call in time");
        let v: Value = serde_json::from_str(&line).expect("JSON-RPC on stdout");
        if v["id"] == 2 {
            break v;
        }
    };
    drop(stdin);
    let out = child.wait_with_output().expect("the MCP server exits when stdin closes");
    (answer, String::from_utf8_lossy(&out.stderr).into_owned())
}
