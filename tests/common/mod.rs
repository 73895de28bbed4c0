//! Shared helpers for the black-box tests: the real `agent-bridge` binary on 127.0.0.1:0 (or the
//! broker in-process, [`InProcess`], where no process boundary is under test), real WebSocket and
//! HTTP clients, and bounded waits on conditions.
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

/// Where a broker listens, and the HTTP calls tests make to it. [`Server`] and [`InProcess`]
/// dereference to it, so `server.http(..)`, `server.get(..)` and `Ws::connect(&server, ..)` work
/// with either.
pub struct Endpoint {
    pub port: u16,
}

/// A running broker process; killed on drop.
pub struct Server {
    child: Option<Child>,
    endpoint: Endpoint,
    logs: Arc<Mutex<String>>,
    /// Kept so that stdout stays read for as long as the process runs.
    _stdout: std::sync::mpsc::Receiver<String>,
}

impl std::ops::Deref for Server {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-bridge"));
        cmd.args(args);
        Server::spawn(cmd)
    }

    /// Starts `cmd`, which runs the binary (through a wrapper such as `prlimit`, which execs it).
    pub fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd
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
        let lines = lines_of(child.stdout.take().expect("stdout"));
        let deadline = Instant::now() + WAIT;
        // Until the announcement, the end of stdout (it died) or the deadline.
        let announced = loop {
            let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) else { break None };
            let addr = line.strip_prefix("agent-bridge listening on http://");
            if let Some(addr) = addr.or_else(|| line.strip_prefix("agent-bridge listening on https://")) {
                break addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
            }
        };
        let port = match announced {
            Some(p) => p,
            _ => {
                let _ = child.kill();
                panic!("agent-bridge did not start; logs:\n{}", logs.lock().expect("log lock"));
            }
        };
        Server { child: Some(child), endpoint: Endpoint { port }, logs, _stdout: lines }
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("log lock").clone()
    }

    /// Waits until the logs contain `needle`.
    pub async fn wait_log(&self, needle: &str) -> String {
        let found = poll_until(WAIT, || async {
            let logs = self.logs();
            logs.contains(needle).then_some(logs)
        });
        found.await.unwrap_or_else(|| panic!("log line {needle:?} never appeared; logs:\n{}", self.logs()))
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        wait_until(within, || child.try_wait().ok().flatten())
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
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Endpoint {
    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self, client: &str, query: &str) -> String {
        let q = if query.is_empty() { String::new() } else { format!("?{query}") };
        format!("ws://127.0.0.1:{}/ws/{client}{q}", self.port)
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
        self.post_with(path, &[], body).await
    }

    /// A JSON `POST` with extra headers (`content-encoding`, ...).
    pub async fn post_with(&self, path: &str, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> (u16, Value) {
        let mut req = reqwest::Client::new().post(self.http(path)).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.body(body).send().await.expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// A broker inside the test process: `agent_bridge::run` on a thread of its own with its own actix
/// System, on 127.0.0.1:0. For tests where no process boundary is under test (not kill -9, exit
/// codes, signals, logs or the command line). Stopped on drop, within `WAIT`.
///
/// Metrics are process-wide: tests that read counters from `/metrics` keep the binary.
pub struct InProcess {
    endpoint: Endpoint,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<Result<(), String>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::ops::Deref for InProcess {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// The configuration `agent-bridge serve --bind 127.0.0.1:0 ARGS` would run with (`--in-memory`
/// added unless a data dir is given), from the same flags.
pub fn config(extra: &[&str]) -> agent_bridge::config::Config {
    use clap::Parser;
    let mut args = vec!["agent-bridge", "serve", "--bind", "127.0.0.1:0"];
    if !extra.iter().any(|a| a.starts_with("--data-dir")) {
        args.push("--in-memory");
    }
    args.extend_from_slice(extra);
    match agent_bridge::cli::Cli::try_parse_from(&args).expect("serve flags").command {
        agent_bridge::cli::Command::Serve(a) => agent_bridge::config::Config::load(&a).expect("a valid configuration"),
        _ => unreachable!("parsed as serve"),
    }
}

impl InProcess {
    /// `InProcess::start(config(extra))`.
    pub fn with_args(extra: &[&str]) -> InProcess {
        InProcess::start(config(extra))
    }

    /// Binds 127.0.0.1:0 and runs the broker on it. Connections made at once wait in the
    /// listener's backlog until the server accepts them.
    pub fn start(mut config: agent_bridge::config::Config) -> InProcess {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        config.bind = listener.local_addr().expect("bound address");
        let port = config.bind.port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("broker-{port}"))
            .spawn(move || {
                let system = actix::System::new();
                let result = system.block_on(agent_bridge::run(config, listener, async {
                    // Dropping the sender stops it too.
                    let _ = stopped.await;
                }));
                // Stops the actors' arbiters; `run` returns at once after that.
                actix::System::current().stop();
                let _ = system.run();
                let _ = done_tx.send(result.map_err(|e| format!("{e:#}")));
            })
            .expect("spawning the broker thread");
        InProcess { endpoint: Endpoint { port }, stop: Some(stop), done, thread: Some(thread) }
    }

    /// Stops the broker (as `shutdown` resolving does) and returns what `run` returned, or `Err`
    /// when it did not return within `WAIT`.
    pub fn stop(mut self) -> Result<(), String> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), String> {
        let Some(stop) = self.stop.take() else { return Ok(()) };
        let _ = stop.send(());
        let result = self.done.recv_timeout(WAIT).unwrap_or_else(|_| Err(format!("the broker did not stop within {WAIT:?}")));
        if result.is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        result
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let result = self.shut_down();
        if !std::thread::panicking() {
            result.expect("the in-process broker stops cleanly");
        }
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
    pub async fn connect(server: &Endpoint, client: &str) -> Ws {
        Ws::connect_query(server, client, "").await
    }

    pub async fn connect_query(server: &Endpoint, client: &str, query: &str) -> Ws {
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

    /// Reads until the server's close frame and returns it (code and reason); panics when the
    /// connection ends without one or none comes within `WAIT`.
    pub async fn recv_close(&mut self) -> tokio_tungstenite::tungstenite::protocol::CloseFrame<'static> {
        let close = tokio::time::timeout(WAIT, async {
            loop {
                match self.stream.next().await {
                    Some(Ok(WsMessage::Close(frame))) => return Ok(frame),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("stream ended without a close frame".to_owned()),
                }
            }
        })
        .await
        .expect("the server closes within the wait");
        close.expect("a close frame, not a dropped connection").expect("a close code")
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
pub async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll_until(WAIT, f).await.unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Polls `f` until it returns `Some`, or `None` once `within` has passed.
pub async fn poll_until<T, F, Fut>(within: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// How often the waits on a condition look again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// The blocking form of [`eventually`] (for threads and child processes): polls `f` until it
/// returns `Some`, or `None` once `within` has passed.
pub fn wait_until<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Waits until `GET /api/status` counts `n` long-polls parked at their shard (`long_polls_waiting`).
pub async fn wait_long_polls(server: &Endpoint, n: u64) {
    eventually(&format!("{n} long-polls parked"), || async {
        let (_, status) = server.get("/api/status").await;
        (status["long_polls_waiting"].as_u64() == Some(n)).then_some(())
    })
    .await
}

impl Ws {
    /// One session per id, connected in order.
    pub async fn connect_each<const N: usize>(server: &Endpoint, ids: [&str; N]) -> [Ws; N] {
        let mut sessions = Vec::with_capacity(N);
        for id in ids {
            sessions.push(Ws::connect(server, id).await);
        }
        sessions.try_into().unwrap_or_else(|_| unreachable!("one session per id"))
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
    use tokio::io::AsyncReadExt;
    let mut s = raw_write(port, chunks, pause).await;
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

/// Connects to 127.0.0.1:`port` and writes `chunks` with `pause` between them (a slow client: the
/// pause is the test's pacing, not a wait for anything), stopping at the first failed write.
pub async fn raw_write(port: u16, chunks: &[&[u8]], pause: Duration) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        if s.write_all(c).await.is_err() {
            break;
        }
    }
    s
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
pub mod sink;

/// The lines `reader` (a child's stdout) writes, as they come, read on a thread of their own.
pub fn lines_of(reader: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

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

/// One key per `(client id pattern, permissions)`, created as [`create_key`] does.
pub fn create_keys<const N: usize>(dir: &std::path::Path, grants: [(&str, &str); N]) -> [String; N] {
    grants.map(|(client, permissions)| create_key(dir, &["--client-id", client, "--permissions", permissions]))
}

/// `agent-bridge ARGS` with the test environment: no `BRIDGE_*` variables, no user config, warnings
/// only.
pub fn cli(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-bridge"));
    cmd.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("BRIDGE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("XDG_CONFIG_HOME", "/nonexistent/agent-bridge-tests").env("RUST_LOG", "warn");
    cmd
}

/// Waits for `child` at most `within` (killing it and panicking with `what` past that); its output.
pub fn wait_output(mut child: Child, within: Duration, what: &str) -> std::process::Output {
    if wait_until(within, || child.try_wait().expect("waiting")).is_none() {
        let _ = child.kill();
        panic!("did not finish in time: {what}");
    }
    child.wait_with_output().expect("output")
}

/// Makes the root's child `actor` fail (`POST /admin/fault`, the broker started with
/// `--enable-fault-injection`) and waits until it runs again after its first restart.
pub async fn fault_and_restart(server: &Endpoint, actor: &str) {
    let (status, body) = server.post("/admin/fault", &json!({ "actor": actor })).await;
    assert_eq!(status, 202, "{body}");
    eventually(&format!("{actor} restarted"), || async {
        let (_, tree) = server.get("/admin/supervisors").await;
        tree["children"].as_array()?.iter().any(|c| c["name"] == actor && c["restarts"] == 1 && c["state"] == "running").then_some(())
    })
    .await;
}

/// `agent-bridge ARGS --url ws://127.0.0.1:PORT` with no user config, within 20 s: its output.
pub fn cli_at(port: u16, args: &[&str]) -> std::process::Output {
    let child = Command::new(env!("CARGO_BIN_EXE_agent-bridge"))
        .args(args)
        .args(["--url", &format!("ws://127.0.0.1:{port}")])
        .env("XDG_CONFIG_HOME", "/nonexistent/agent-bridge-tests")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agent-bridge");
    wait_output(child, Duration::from_secs(20), &args.join(" "))
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
    let rx = lines_of(child.stdout.take().expect("stdout"));
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
