//! The command-line client against the real broker: `send`/`listen` round trips, `ask` answered by
//! a `listen`-based responder, resuming a restarted listener, JSON output, flags from the
//! environment and a config file, and clear failures.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::{cli, Server, WAIT};
use serde_json::{json, Value};

fn url(server: &Server) -> String {
    format!("ws://127.0.0.1:{}", server.port)
}

/// What a finished command left.
#[derive(Debug)]
struct Done {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Done {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "command failed: {self:?}");
        self
    }

    /// Asserts the exit status `code` and that stderr says each of `needles`.
    fn fails(&self, code: i32, needles: &[&str]) {
        assert_eq!(self.code, Some(code), "{self:?}");
        for needle in needles {
            assert!(self.stderr.contains(needle), "{needle:?} not on stderr: {self:?}");
        }
    }
}

/// Runs a command to completion (killed after 2 × WAIT), feeding `stdin`.
fn run(mut cmd: Command, stdin: Option<&str>) -> Done {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning agent-bridge");
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or_default().as_bytes()).expect("writing stdin");
    }
    let out = common::wait_output(child, WAIT * 2, &format!("{cmd:?}"));
    Done {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `agent-bridge send` as `from`; returns the parsed `--json` answer.
fn send(server: &Server, from: &str, extra: &[&str]) -> Value {
    let u = url(server);
    let mut args = vec!["send", "--url", &u, "--client-id", from, "--json"];
    args.extend_from_slice(extra);
    run(cli(&args), None).ok().json()
}

/// A running `listen` (or other streaming command) whose stdout lines the test reads.
struct Streaming {
    child: Child,
    lines: Receiver<String>,
}

impl Streaming {
    fn start(cmd: Command) -> Streaming {
        let mut cmd = cmd;
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawning");
        let lines = common::lines_of(child.stdout.take().expect("stdout"));
        Streaming { child, lines }
    }

    /// The next line as JSON, within WAIT.
    fn next_json(&self) -> Value {
        let line = self.lines.recv_timeout(WAIT).expect("a line from the listener in time");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
    }

    /// Asserts that no line comes within `within`.
    fn assert_quiet(&self, within: Duration) {
        if let Ok(line) = self.lines.recv_timeout(within) {
            panic!("unexpected line: {line}");
        }
    }

    /// Waits for the process to exit by itself; returns its code.
    fn wait_exit(&mut self) -> Option<i32> {
        let status = common::wait_until(WAIT, || self.child.try_wait().expect("waiting"));
        status.expect("the command did not exit").code()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.kill();
    }
}

fn listen(server: &Server, id: &str, extra: &[&str]) -> Streaming {
    let u = url(server);
    let mut args = vec!["listen", "--url", &u, "--client-id", id, "--json"];
    args.extend_from_slice(extra);
    Streaming::start(cli(&args))
}

#[test]
fn send_and_listen_round_trip_with_every_payload_source() {
    let server = Server::start(&[]);
    let mut bob = listen(&server, "bob", &["--count", "3"]);

    let sent = send(&server, "alice", &["--to", "bob", "--type", "note", r#"{"text": "hi"}"#]);
    assert!(sent["message_id"].as_str().is_some_and(|id| id.starts_with("msg-")), "{sent}");
    let m = bob.next_json();
    assert_eq!((m["from"].clone(), m["to"].clone(), m["type"].clone()), (json!("alice"), json!("bob"), json!("note")));
    assert_eq!(m["payload"], json!({"text": "hi"}));
    assert_eq!(m["id"], sent["message_id"]);

    let u = url(&server);
    run(cli(&["send", "--url", &u, "--client-id", "alice", "--to", "bob", "-"]), Some("plain words\n")).ok();
    assert_eq!(bob.next_json()["payload"], json!("plain words"), "non-JSON text is sent as a string");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("payload.json");
    std::fs::write(&file, r#"{"from_file": [1, 2]}"#).expect("write");
    let at = format!("@{}", file.display());
    let human = run(cli(&["send", "--url", &u, "--client-id", "alice", "--to", "bob", "--priority", "high", &at]), None).ok();
    assert!(human.stdout.starts_with("sent msg-") && human.stdout.contains("to bob"), "{human:?}");
    let m = bob.next_json();
    assert_eq!((m["payload"].clone(), m["priority"].clone()), (json!({"from_file": [1, 2]}), json!("high")));
    assert_eq!(bob.wait_exit(), Some(0), "--count 3 ends the listener");
}

#[test]
fn ask_is_answered_by_a_listen_based_responder() {
    let server = Server::start(&[]);
    let responder = listen(&server, "responder", &["--types", "question"]);
    let u = url(&server);
    let asker = {
        let u = u.clone();
        std::thread::spawn(move || {
            run(cli(&["ask", "--url", &u, "--client-id", "asker", "--to", "responder", "--timeout", "20", "--json", r#"{"q": 21}"#]), None)
        })
    };
    // The responder: read the request, answer with its correlation id (its id when it has none).
    let request = responder.next_json();
    assert_eq!((request["from"].clone(), request["type"].clone()), (json!("asker"), json!("question")));
    let correlation = request["correlation_id"].as_str().or(request["id"].as_str()).expect("an id").to_owned();
    let to = request["from"].as_str().expect("from").to_owned();
    let answer = json!({"a": request["payload"]["q"].as_i64().unwrap_or(0) * 2}).to_string();
    send(&server, "responder", &["--to", &to, "--type", "answer", "--correlation-id", &correlation, &answer]);

    let done = asker.join().expect("ask thread").ok();
    let reply = done.json();
    assert_eq!(reply["payload"], json!({"a": 42}));
    assert_eq!((reply["from"].clone(), reply["correlation_id"].clone()), (json!("responder"), json!(correlation)));

    // Without --json the reply's payload is printed; with no responder the exit status is 3.
    let nobody = run(cli(&["ask", "--url", &u, "--client-id", "asker", "--to", "nobody", "--timeout", "0.5", "hello?"]), None);
    nobody.fails(3, &["no reply from nobody within 0.5 s"]);
    assert!(nobody.stdout.is_empty(), "{nobody:?}");
}

/// `GET /api/messages?QUERY` from a test without a runtime of its own.
fn tokio_poll(server: &Server, query: &str) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(server.get(&format!("/api/messages?{query}")))
}

/// Polls `f` until it is true, at most WAIT.
fn poll_until(what: &str, mut f: impl FnMut() -> bool) {
    common::wait_until(WAIT, || f().then_some(())).unwrap_or_else(|| panic!("timed out waiting for {what}"));
}

/// Waits until the cursor file says every seq up to `seq` was printed.
fn wait_cursor(path: &Path, seq: u64) {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    let reached = common::wait_until(WAIT, || {
        let text = read();
        let floor = text.lines().find(|l| !l.starts_with('#')).and_then(|l| l.trim().parse::<u64>().ok());
        floor.is_some_and(|f| f >= seq).then_some(())
    });
    reached.unwrap_or_else(|| panic!("cursor file never reached {seq}: {:?}", read()));
}

/// `serve` stops on SIGTERM and SIGINT with exit code 0; on SIGTERM a connected WebSocket gets a
/// close frame (1001) first.
#[tokio::test]
async fn serve_stops_on_sigterm_and_sigint_with_exit_code_0() {
    for signal in ["-TERM", "-INT"] {
        let mut server = Server::start(&[]);
        let mut ws = common::Ws::connect(&server, "watcher").await;
        let killed = Command::new("kill").args([signal, &server.pid().to_string()]).status().expect("kill");
        assert!(killed.success());
        if signal == "-TERM" {
            let close = ws.recv_close().await;
            assert_eq!(u16::from(close.code), 1001);
        }
        let status = tokio::task::spawn_blocking(move || (server.wait_exit(WAIT), server.logs())).await.expect("task");
        assert_eq!(status.0.and_then(|s| s.code()), Some(0), "{signal}; logs:\n{}", status.1);
        assert!(status.1.contains("agent-bridge stopped"), "{}", status.1);
    }
}

#[test]
fn a_restarted_listener_resumes_without_loss_or_repeats() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let cursor = dir.path().join("carol.cursor");
    let cursor_arg = cursor.display().to_string();
    let opts = ["--cursor-file", cursor_arg.as_str(), "--auto-ack"];

    let mut first = listen(&server, "carol", &opts);
    for n in 1..=2 {
        send(&server, "dave", &["--to", "carol", "--require-ack", &json!({"n": n}).to_string()]);
        assert_eq!(first.next_json()["payload"]["n"], n);
    }
    wait_cursor(&cursor, 2);
    first.kill(); // SIGKILL: no chance to say goodbye, perhaps not even to ack

    for n in 3..=4 {
        let sent = send(&server, "dave", &["--to", "carol", "--require-ack", &json!({"n": n}).to_string()]);
        assert_eq!(sent["status"], "queued", "nobody listens as carol now");
    }
    let second = listen(&server, "carol", &opts);
    let got: Vec<Value> = (0..2).map(|_| second.next_json()["payload"]["n"].clone()).collect();
    assert_eq!(got, vec![json!(3), json!(4)], "the restarted listener gets what it missed, in order");
    second.assert_quiet(Duration::from_millis(700));
    drop(second);

    // An explicit --since replays the stored inbox after that seq.
    let replay = listen(&server, "carol", &["--since", "1", "--count", "3"]);
    let again: Vec<Value> = (0..3).map(|_| replay.next_json()["payload"]["n"].clone()).collect();
    assert_eq!(again, vec![json!(2), json!(3), json!(4)]);
}

#[test]
fn json_output_parses_and_text_output_reads_well() {
    let server = Server::start(&[]);
    let u = url(&server);
    let status = run(cli(&["status", "--url", &u, "--json"]), None).ok().json();
    assert_eq!(status["server"], "agent-bridge");
    let text = run(cli(&["status", "--url", &u]), None).ok();
    let field = |name: &str| {
        text.stdout.lines().find_map(|l| l.strip_prefix(name).map(str::trim).map(str::to_owned)).unwrap_or_default()
    };
    assert_eq!(field("broker"), u, "{text:?}");
    assert!(field("server").starts_with("agent-bridge "), "{text:?}");
    // A duration for people ("1.2s", "2m 25s"), not the raw float of the JSON.
    let uptime = field("uptime");
    assert!(uptime.ends_with('s') && !text.stdout.contains("uptime_s"), "{text:?}");
    assert!(!text.stdout.contains('\x1b'), "no colour when stdout is not a terminal: {text:?}");

    let sent = send(&server, "erin", &["--to", "all", "--type", "announce", "\"hello\""]);
    for key in ["message_id", "status", "recipients"] {
        assert!(sent.get(key).is_some(), "{key} missing in {sent}");
    }
    let frank = listen(&server, "frank", &["--count", "1"]);
    send(&server, "erin", &["--to", "frank", "--correlation-id", "c-1", "--ttl", "60", "[1, 2, 3]"]);
    let m = frank.next_json();
    for key in ["id", "seq", "from", "to", "type", "payload", "timestamp", "priority", "requires_ack", "correlation_id", "expires_at"] {
        assert!(m.get(key).is_some(), "{key} missing in {m}");
    }
    assert_eq!((m["correlation_id"].clone(), m["payload"].clone()), (json!("c-1"), json!([1, 2, 3])));
    assert!(m["expires_at"].is_string());
}

#[test]
fn flags_come_from_the_environment_and_a_config_file() {
    let server = Server::start(&[]);
    let grace = listen(&server, "grace", &[]);
    let mut by_env = cli(&["send", "--to", "grace", "from the environment"]);
    by_env.env("BRIDGE_URL", url(&server)).env("BRIDGE_CLIENT_ID", "env-agent");
    run(by_env, None).ok();
    assert_eq!(grace.next_json()["from"], "env-agent");

    // BRIDGE_TOKEN reaches the broker: one that checks tokens refuses a made-up key with a clear
    // message; one without auth ignores it.
    let mut with_token = cli(&["send", "--to", "grace", "with a token"]);
    with_token.env("BRIDGE_URL", url(&server)).env("BRIDGE_CLIENT_ID", "env-agent").env("BRIDGE_TOKEN", "made-up-key");
    let done = run(with_token, None);
    if done.code == Some(0) {
        assert_eq!(grace.next_json()["payload"], "with a token");
    } else {
        done.fails(1, &["authentication failed", "--token"]);
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("client.toml");
    std::fs::write(&file, format!("url = \"{}\"\nclient_id = \"file-agent\"\n", url(&server))).expect("write");
    let path = file.display().to_string();
    run(cli(&["send", "--config", &path, "--to", "grace", "from the file"]), None).ok();
    assert_eq!(grace.next_json()["from"], "file-agent");
    // A flag beats the file.
    run(cli(&["send", "--config", &path, "--client-id", "flag-agent", "--to", "grace", "x"]), None).ok();
    assert_eq!(grace.next_json()["from"], "flag-agent");
}

#[test]
fn failures_are_clear_and_have_distinct_exit_codes() {
    let server = Server::start(&[]);
    let u = url(&server);
    let bad = run(cli(&["send", "--url", &u, "--to", "has space", "x"]), None);
    bad.fails(2, &["invalid recipient"]);

    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let nowhere = format!("ws://127.0.0.1:{port}");
    // An unreachable broker: which address, and how to start one; for every kind of command.
    for args in [&["send", "--to", "x", "y"][..], &["status"], &["listen", "--client-id", "l"], &["room", "members", "lab"]] {
        let mut full = args.to_vec();
        full.extend(["--url", &nowhere]);
        let down = run(cli(&full), None);
        assert_eq!(down.code, Some(1), "{args:?}: {down:?}");
        assert!(down.stderr.contains(&format!("broker not reachable at {nowhere}")), "{args:?}: {down:?}");
        assert!(down.stderr.contains("start it with `agent-bridge serve`"), "{args:?}: {down:?}");
    }

    // `send` without a payload: refused when stdin is empty, read from it otherwise.
    let empty = run(cli(&["send", "--url", &u, "--to", "x"]), Some(""));
    empty.fails(2, &["no payload"]);
    let piped = run(cli(&["send", "--url", &u, "--client-id", "p", "--to", "x", "--json"]), Some("{\"piped\": true}\n")).ok();
    assert_eq!(piped.json()["status"], "queued");
    let (_, page) = tokio_poll(&server, "to=x&since=0");
    assert_eq!(page["messages"][0]["payload"], json!({"piped": true}), "{page}");

    let scheme = run(cli(&["status", "--url", "127.0.0.1:5001"]), None);
    scheme.fails(2, &["expected ws://HOST:PORT"]);
}

#[test]
fn room_commands_call_the_broker_and_explain_a_missing_feature() {
    let server = Server::start(&[]);
    let u = url(&server);
    let create = run(cli(&["room", "create", "lab", "--topic", "tests", "--url", &u, "--client-id", "rita", "--json"]), None);
    if create.code == Some(0) {
        // The broker has rooms: the result is JSON, and members/history answer too.
        create.json();
        run(cli(&["room", "members", "lab", "--url", &u, "--client-id", "rita", "--json"]), None).ok().json();
        // `room join` stays and prints the room's messages; `room say` reaches it.
        let member = Streaming::start(cli(&["room", "join", "lab", "--url", &u, "--client-id", "sam", "--json", "--count", "1"]));
        poll_until("sam to be in the room", || {
            run(cli(&["room", "members", "lab", "--url", &u, "--client-id", "rita", "--json"]), None).ok().stdout.contains("sam")
        });
        run(cli(&["room", "say", "lab", "--url", &u, "--client-id", "rita", "hello lab"]), None).ok();
        let m = member.next_json();
        assert_eq!((m["room"].clone(), m["from"].clone(), m["payload"].clone()), (json!("lab"), json!("rita"), json!("hello lab")));
        let history = run(cli(&["room", "history", "lab", "--url", &u, "--client-id", "rita", "--json"]), None).ok();
        assert!(history.stdout.contains("hello lab"), "{history:?}");

        // The one-liner of the README: a fixed id, `room join` returns, the member can talk.
        let joined = run(cli(&["room", "join", "lab", "--url", &u, "--client-id", "tom", "--role", "coder"]), None).ok();
        assert!(joined.stdout.contains("joined room lab as coder"), "{joined:?}");
        run(cli(&["room", "say", "lab", "--url", &u, "--client-id", "tom", "hi from tom"]), None).ok();
        // Human output: a table of members, history lines, no JSON.
        let members = run(cli(&["room", "members", "lab", "--url", &u, "--client-id", "rita"]), None).ok();
        let lines: Vec<&str> = members.stdout.lines().collect();
        assert!(lines[0].starts_with("MEMBER") && lines[0].contains("ROLE") && lines[0].contains("ONLINE"), "{members:?}");
        assert!(lines.iter().any(|l| l.starts_with("tom ") && l.contains("coder")), "{members:?}");
        let history = run(cli(&["room", "history", "lab", "--url", &u, "--client-id", "rita"]), None).ok();
        assert!(history.stdout.lines().any(|l| l.contains("tom → room lab") && l.ends_with("hi from tom")), "{history:?}");
        assert!(!history.stdout.contains('{'), "{history:?}");
        let left = run(cli(&["room", "leave", "lab", "--url", &u, "--client-id", "tom"]), None).ok();
        assert!(left.stdout.contains("left room lab"), "{left:?}");
    } else {
        create.fails(1, &[format!("the broker at {u} does not support room.create yet").as_str()]);
        assert!(create.stderr.contains("unknown_method") || create.stderr.contains("not_supported"), "{create:?}");
        let members = run(cli(&["room", "members", "lab", "--url", &u]), None);
        assert!(members.stderr.contains("does not support room.members yet"), "{members:?}");
    }
}

/// `keys create` on a data directory, before the broker starts; the key is the last line.
fn create_key(dir: &Path, client_id: &str, permissions: &str) -> String {
    let dir = dir.display().to_string();
    let done = run(cli(&["keys", "create", "--data-dir", &dir, "--client-id", client_id, "--permissions", permissions]), None).ok();
    done.stdout.lines().last().expect("the key").to_owned()
}

/// A key with only `write` sends (over HTTP: a WebSocket session needs `read`), and a key bound to
/// one client id acts as it without `--client-id`.
#[test]
fn a_write_only_key_sends_and_a_bound_key_implies_the_client_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = create_key(dir.path(), "writer", "write");
    let reader = create_key(dir.path(), "reader", "read,write");
    let data_dir = format!("--data-dir={}", dir.path().display());
    let server = Server::start(&[&data_dir]);
    let u = url(&server);
    let inbox = Streaming::start(cli(&["listen", "--url", &u, "--token", &reader, "--json", "--count", "1"]));
    let sent = run(cli(&["send", "--url", &u, "--token", &writer, "--to", "reader", "--json", "from a write-only key"]), None).ok();
    assert!(matches!(sent.json()["status"].as_str(), Some("queued" | "delivered")), "{sent:?}");
    let m = inbox.next_json();
    assert_eq!((m["from"].clone(), m["to"].clone(), m["payload"].clone()), (json!("writer"), json!("reader"), json!("from a write-only key")));
    // Naming another id than the key's is refused by the broker, clearly.
    let other = run(cli(&["send", "--url", &u, "--token", &writer, "--client-id", "someone-else", "--to", "reader", "x"]), None);
    other.fails(1, &["forbidden"]);
}

/// A bad token: `send` says authentication failed; the MCP server fails tool calls with that and
/// does not retry the refusal.
#[test]
fn a_bad_token_is_an_authentication_error_and_mcp_stops_retrying() {
    let server = Server::start(&[]);
    let u = url(&server);
    let send = run(cli(&["send", "--url", &u, "--token", "abk_000000000000_bad", "--client-id", "a", "--to", "b", "x"]), None);
    send.fails(1, &["authentication failed"]);

    let mut mcp = cli(&["mcp", "--url", &u, "--token", "abk_000000000000_bad", "--client-id", "claude"]);
    mcp.env("RUST_LOG", "warn").stderr(Stdio::piped());
    let (answer, stderr) = common::mcp_tool_call(&mut mcp, "send_message", json!({"to": "b", "type": "note", "payload": "x"}));
    let text = answer.to_string();
    assert!(text.contains("authentication failed") && text.contains("401"), "{answer}");
    assert!(stderr.contains("not retrying"), "{stderr}");
    assert!(!stderr.contains("reconnecting"), "a refused token is not retried: {stderr}");
}

#[test]
fn config_token_and_version_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    // generate → check: the commented default file is valid.
    let generated = run(cli(&["config", "generate"]), None).ok();
    assert!(generated.stdout.contains("# ") && generated.stdout.contains("bind = \"127.0.0.1:5001\""), "{generated:?}");
    let file = dir.path().join("gen.toml");
    std::fs::write(&file, &generated.stdout).expect("write");
    let path = file.display().to_string();
    let checked = run(cli(&["config", "check", &path]), None).ok();
    assert!(checked.stdout.contains(&format!("{path}: ok")), "{checked:?}");

    // print: the effective configuration as TOML, flags and environment applied, secrets masked;
    // what it prints checks again.
    let secret = "s".repeat(40);
    let mut print = cli(&["config", "print", "--bind", "0.0.0.0:7001", "--jwt-secret", &secret]);
    print.env("BRIDGE_SESSION_QUEUE", "77");
    let printed = run(print, None).ok();
    let table: toml::Table = toml::from_str(&printed.stdout).expect("TOML");
    assert_eq!(table["bind"].as_str(), Some("0.0.0.0:7001"));
    assert_eq!(table["session_queue"].as_integer(), Some(77));
    assert_eq!(table["jwt_secret"].as_str(), Some("<redacted>"));
    assert!(!printed.stdout.contains(&secret));
    let shown = run(cli(&["config", "print", "--jwt-secret", &secret, "--show-secrets"]), None).ok();
    assert!(shown.stdout.contains(&secret));
    let printed_file = dir.path().join("printed.toml");
    std::fs::write(&printed_file, run(cli(&["config", "print", "--jwt-secret", &secret, "--show-secrets"]), None).ok().stdout)
        .expect("write");
    run(cli(&["config", "check", &printed_file.display().to_string()]), None).ok();

    // check: unknown keys, bad values and an unauthenticated public bind, each named; exit 2.
    for (text, needle) in [
        ("bnid = \"x\"\n", "unknown key \"bnid\""),
        ("max_frame_bytes = 3\n", "max_frame_bytes"),
        ("bind = \"0.0.0.0:5001\"\n", "without authentication"),
        ("cors_origins = \"claude.ai\"\n", "cors_origins"),
    ] {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text).expect("write");
        let done = run(cli(&["config", "check", &bad.display().to_string()]), None);
        assert_eq!(done.code, Some(2), "{text}: {done:?}");
        assert!(done.stderr.contains(needle), "{text}: {done:?}");
    }
    let ext = dir.path().join("ext.toml");
    std::fs::write(&ext, "cors_origins = \"https://claude.ai,chrome-extension://abcdefghijklmnopabcdefghijklmnop\"\n").expect("write");
    run(cli(&["config", "check", &ext.display().to_string()]), None).ok();

    // token: minted from the configured secret, accepted by a broker with that secret.
    let conf = dir.path().join("jwt.toml");
    std::fs::write(&conf, format!("jwt_secret = \"{secret}\"\n")).expect("write");
    let conf_path = conf.display().to_string();
    let token = run(cli(&["token", "--config", &conf_path, "--client-id", "minted", "--permissions", "read,write"]), None).ok();
    let token = token.stdout.trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let server = Server::start(&["--config", &conf_path]);
    let u = url(&server);
    let inbox = Streaming::start(cli(&["listen", "--url", &u, "--token", &token, "--json", "--count", "1"]));
    run(cli(&["send", "--url", &u, "--token", &token, "--to", "minted", "--json", "to myself"]), None).ok();
    let m = inbox.next_json();
    assert_eq!((m["from"].clone(), m["payload"].clone()), (json!("minted"), json!("to myself")), "the token's sub is the id");
    let info = run(cli(&["token", "--config", &conf_path, "--client-id", "ops", "--permissions", "admin", "--ttl", "60", "--json"]), None).ok();
    let info = info.json();
    assert_eq!((info["client_id"].clone(), info["permissions"].clone()), (json!("ops"), json!(["admin"])));
    let no_secret = run(cli(&["token", "--client-id", "x"]), None);
    no_secret.fails(2, &["no jwt_secret"]);
    let bad_perm = run(cli(&["token", "--config", &conf_path, "--client-id", "x", "--permissions", "fly"]), None);
    assert_eq!(bad_perm.code, Some(2), "{bad_perm:?}");

    // version, both ways.
    let v = run(cli(&["version"]), None).ok();
    assert_eq!(v.stdout.trim(), format!("agent-bridge {} (wire protocol 1)", env!("CARGO_PKG_VERSION")));
    let v = run(cli(&["version", "--json"]), None).ok().json();
    assert_eq!((v["name"].clone(), v["version"].clone(), v["protocol"].clone()), (json!("agent-bridge"), json!(env!("CARGO_PKG_VERSION")), json!(1)));
}

/// `config print` with `args` and `env`: the effective configuration as a TOML table.
fn printed(args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let mut cmd = cli(&[&["config", "print"], args].concat());
    cmd.envs(env.iter().copied());
    toml::from_str(&run(cmd, None).ok().stdout).expect("TOML")
}

/// Each layer wins over the one before: defaults < --config file < BRIDGE_* variable < flag, for a
/// number, an enum, a retention duration and a switch alike.
#[test]
fn each_configuration_layer_wins_over_the_one_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("layer.toml");
    std::fs::write(&file, "session_queue = 11\ndurability = \"async\"\nretention_default = \"2h\"\nin_memory = true\n")
        .expect("write");
    let file = file.display().to_string();
    let keys = ["session_queue", "durability", "retention_default", "in_memory"];
    let values = |t: &toml::Table| keys.map(|k| t[k].to_string());
    let defaults = printed(&[], &[]);
    assert_eq!(values(&defaults), ["4096", "\"sync\"", "\"medium\"", "false"].map(String::from), "the built-in defaults");
    let from_file = printed(&["--config", &file], &[]);
    assert_eq!(values(&from_file), ["11", "\"async\"", "\"2h\"", "true"].map(String::from), "the file over the defaults");
    assert_eq!(from_file["max_in_flight"], defaults["max_in_flight"], "keys the file leaves out keep their default");
    let env = [("BRIDGE_CONFIG", file.as_str()), ("BRIDGE_SESSION_QUEUE", "22"), ("BRIDGE_DURABILITY", "sync"), ("BRIDGE_RETENTION_DEFAULT", "90m"), ("BRIDGE_IN_MEMORY", "false")];
    let from_env = printed(&[], &env);
    assert_eq!(values(&from_env), ["22", "\"sync\"", "\"1h 30m\"", "false"].map(String::from), "the environment over the file");
    let from_flags = printed(&["--session-queue", "33", "--durability", "async", "--retention-default", "permanent", "--in-memory"], &env);
    assert_eq!(values(&from_flags), ["33", "\"async\"", "\"permanent\"", "true"].map(String::from), "flags over the environment");
}

/// A bad enum value is refused with exit 2 wherever it comes from, naming the key and the choices.
#[test]
fn a_bad_enum_value_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "durability = \"fast\"\n").expect("write");
    let file = file.display().to_string();
    let expect_refusal = |cmd: Command, needles: &[&str]| {
        let done = run(cmd, None);
        assert_eq!(done.code, Some(2), "{done:?}");
        for needle in needles {
            assert!(done.stderr.contains(needle), "{needle}: {done:?}");
        }
    };
    let from_file = [file.as_str(), "durability: unknown variant `fast`, expected `sync` or `async`"];
    expect_refusal(cli(&["config", "check", &file]), &from_file);
    expect_refusal(cli(&["serve", "--in-memory", "--bind", "127.0.0.1:0", "--config", &file]), &from_file);
    let mut env = cli(&["config", "print"]);
    env.env("BRIDGE_LOG_FORMAT", "xml");
    expect_refusal(env, &["'xml'", "--log-format", "text, json"]);
    expect_refusal(cli(&["serve", "--in-memory", "--archive", "disk"]), &["'disk'", "--archive", "file:PATH"]);
    expect_refusal(cli(&["config", "print", "--retention-types", "log=soon"]), &["--retention-types", "\"log=soon\""]);
}

/// Every subcommand's --help has examples, and every argument has help text.
/// `agent-bridge call`: every call of the table from the command line, `room.topic` included
/// (declared once in the table, with no CLI code of its own), and `--list` prints the table.
#[test]
fn the_call_command_makes_the_calls_of_the_table() {
    let server = Server::start(&[]);
    let u = url(&server);
    let listed = run(cli(&["call", "--list", "--json"]), None).ok().json();
    let topic = listed.as_array().and_then(|l| l.iter().find(|c| c["method"] == "room.topic")).cloned().expect("room.topic listed");
    assert_eq!((topic["permission"].as_str(), topic["tool"].as_str()), (Some("write"), Some("room_topic")), "{topic}");
    assert_eq!(topic["params"]["required"], json!(["room"]));
    let table = run(cli(&["call", "--list"]), None).ok().stdout;
    assert!(table.contains("room.topic") && table.contains("board.move"), "{table}");

    let call = |args: &[&str]| {
        let mut all = vec!["call", "--url", &u, "--client-id", "me"];
        all.extend_from_slice(args);
        run(cli(&all), None)
    };
    call(&["room.create", r#"{"name": "lab", "topic": "release 1.2"}"#]).ok();
    let set = call(&["room.topic", r#"{"room": "lab", "topic": "release 1.3"}"#, "--json"]).ok().json();
    assert_eq!(set, json!({"room": "lab", "topic": "release 1.3", "changed": true}));
    let read = call(&["room.topic", r#"{"room": "lab"}"#, "--json"]).ok().json();
    assert_eq!(read["topic"], "release 1.3");
    let listing = call(&["room.list", "--json"]).ok().json();
    assert_eq!(listing["rooms"][0]["topic"], "release 1.3");

    // A broker refusal names the call (exit 1); a call not in the table or params that are not an
    // object are usage errors (exit 2) that never reach the broker.
    let refused = run(cli(&["call", "--url", &u, "--client-id", "stranger", "room.topic", r#"{"room": "lab", "topic": "x"}"#]), None);
    refused.fails(1, &["room.topic failed", "not a member"]);
    let unknown = call(&["room.rename", "{}"]);
    unknown.fails(2, &["call --list"]);
    let not_object = call(&["room.topic", "[1]"]);
    assert_eq!(not_object.code, Some(2), "{not_object:?}");
}

#[test]
fn help_has_examples_and_every_argument_is_explained() {
    let commands: &[&[&str]] = &[
        &[], &["serve"], &["send"], &["listen"], &["ask"], &["room"], &["call"], &["status"], &["mcp"], &["keys"], &["token"],
        &["version"], &["config", "check"], &["config", "print"], &["config", "generate"],
    ];
    // Nested commands: every argument explained (the examples are on their parent's help).
    let nested: &[&[&str]] = &[
        &["room", "create"], &["room", "join"], &["room", "leave"], &["room", "history"], &["room", "members"],
        &["room", "say"], &["keys", "create"], &["keys", "list"], &["keys", "revoke"], &["config"],
    ];
    for c in nested {
        let mut args = c.to_vec();
        args.push("--help");
        let help = run(cli(&args), None).ok().stdout;
        assert_every_argument_explained(c, &help);
    }
    for c in commands {
        let mut args = c.to_vec();
        args.push("--help");
        let help = run(cli(&args), None).ok().stdout;
        assert!(help.contains("Example") || help.contains("Quick start"), "{c:?} --help has no examples:\n{help}");
        assert_every_argument_explained(c, &help);
    }
}

/// clap prints an argument without help text as a bare line ("  --flag <FLAG>" with nothing
/// after it or below it): every argument line must have text beside it or on the next line.
fn assert_every_argument_explained(command: &[&str], help: &str) {
    let lines: Vec<&str> = help.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if t.starts_with('-') || (t.starts_with('<') && l.starts_with("  ")) {
            let explained = t.split("  ").filter(|p| !p.trim().is_empty()).count() > 1
                || lines.get(i + 1).is_some_and(|n| n.starts_with("          ") && !n.trim().is_empty());
            assert!(explained, "{command:?}: {l:?} has no help text:\n{help}");
        }
    }
}

/// A non-loopback bind without authentication is refused before binding: the refusal, not the
/// bind error, even where the address cannot be bound (192.0.2.1 is a documentation address).
#[test]
fn an_unauthenticated_public_bind_is_refused_before_binding() {
    let empty = tempfile::tempdir().expect("tempdir");
    let data_dir = empty.path().display().to_string();
    for extra in [&["--in-memory"][..], &["--data-dir", &data_dir]] {
        let mut args = vec!["serve", "--bind", "192.0.2.1:5001"];
        args.extend_from_slice(extra);
        let done = run(cli(&args), None);
        assert_eq!(done.code, Some(2), "{extra:?}: {done:?}");
        assert!(done.stderr.contains("refusing to listen on 192.0.2.1:5001 without authentication"), "{extra:?}: {done:?}");
        assert!(!done.stderr.contains("binding"), "{extra:?}: {done:?}");
    }
}

#[test]
fn agent_pool_and_task_calls_and_the_agents_command() {
    let server = Server::start(&[]);
    let u = url(&server);
    let call = |who: &str, args: &[&str]| {
        let mut all = vec!["call", "--url", &u, "--client-id", who];
        all.extend_from_slice(args);
        run(cli(&all), None)
    };
    let agent = call("rev", &["agent.register", r#"{"pools": ["reviewers"], "capabilities": ["review"]}"#, "--json"]).ok().json();
    assert_eq!(agent["pools"], json!(["reviewers"]), "{agent}");
    call("rev", &["agent.status", r#"{"status": "completed", "detail": "done"}"#]).ok();
    let set = call("boss", &["pool.configure", r#"{"pool": "reviewers", "strategy": "fastest"}"#, "--json"]).ok().json();
    assert_eq!(set["strategy"], "fastest");
    let pools = call("boss", &["pool.list", "--json"]).ok().json();
    assert_eq!(pools["pools"][0]["strategy"], "fastest", "{pools}");
    // The CLI's session has closed: the agent is offline, so the pool is empty.
    call("boss", &["task.assign", r#"{"to": "pool:reviewers", "title": "x"}"#]).fails(1, &["task.assign failed", "no healthy member"]);
    let task = call("boss", &["task.assign", r#"{"to": "rev", "title": "review #1"}"#, "--json"]).ok().json();
    let id = task["id"].as_str().expect("id").to_owned();
    let update = format!(r#"{{"id": "{id}", "state": "rejected"}}"#);
    assert_eq!(call("rev", &["task.update", &update, "--json"]).ok().json()["state"], "rejected");
    let get = format!(r#"{{"id": "{id}"}}"#);
    assert_eq!(call("boss", &["task.get", &get, "--json"]).ok().json()["state"], "rejected");
    assert_eq!(call("boss", &["task.list", r#"{"state": "rejected"}"#, "--json"]).ok().json()["count"], 1);
    let second = call("boss", &["task.assign", r#"{"to": "rev", "title": "review #2"}"#, "--json"]).ok().json();
    let cancel = format!(r#"{{"id": "{}"}}"#, second["id"].as_str().expect("id"));
    assert_eq!(call("boss", &["task.cancel", &cancel, "--json"]).ok().json()["state"], "canceled");

    let listed = run(cli(&["agents", "--url", &u, "--client-id", "ops", "--json"]), None).ok().json();
    assert_eq!((listed["agents"][0]["client_id"].as_str(), listed["agents"][0]["status"].as_str()), (Some("rev"), Some("offline")), "{listed}");
    let table = run(cli(&["agents", "--url", &u, "--client-id", "ops", "--pool", "reviewers"]), None).ok().stdout;
    assert!(table.contains("AGENT") && table.contains("rev") && table.contains("offline"), "{table}");
    let pools = run(cli(&["agents", "--url", &u, "--client-id", "ops", "--pools"]), None).ok().stdout;
    assert!(pools.contains("reviewers") && pools.contains("fastest"), "{pools}");
}
