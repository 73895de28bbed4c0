//! The command-line client against the real broker: `send`/`listen` round trips, `ask` answered by
//! a `listen`-based responder, resuming a restarted listener, JSON output, flags from the
//! environment and a config file, and clear failures.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::{Server, WAIT};
use serde_json::{json, Value};

/// The `agent-bridge` binary with a clean environment: no BRIDGE_* from the caller, no user config.
fn cli(args: &[&str]) -> Command {
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
}

/// Runs a command to completion (killed after 2 × WAIT), feeding `stdin`.
fn run(mut cmd: Command, stdin: Option<&str>) -> Done {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning agent-bridge");
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or_default().as_bytes()).expect("writing stdin");
    }
    let deadline = Instant::now() + WAIT * 2;
    while child.try_wait().expect("waiting").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("command did not finish in time: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
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
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
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
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the command did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
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
    assert_eq!(nobody.code, Some(3), "{nobody:?}");
    assert!(nobody.stderr.contains("no reply from nobody within 0.5 s"), "{nobody:?}");
    assert!(nobody.stdout.is_empty(), "{nobody:?}");
}

/// Polls `f` until it is true, at most WAIT.
fn poll_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the cursor file says every seq up to `seq` was printed.
fn wait_cursor(path: &Path, seq: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let floor = text.lines().find(|l| !l.starts_with('#')).and_then(|l| l.trim().parse::<u64>().ok());
        if floor.is_some_and(|f| f >= seq) {
            return;
        }
        assert!(Instant::now() < deadline, "cursor file never reached {seq}: {text:?}");
        std::thread::sleep(Duration::from_millis(20));
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
    assert!(text.stdout.contains(&format!("broker: {u}")) && text.stdout.contains("server: agent-bridge"), "{text:?}");

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
        assert_eq!(done.code, Some(1), "{done:?}");
        assert!(done.stderr.contains("refused the connection with HTTP 401"), "{done:?}");
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
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(bad.stderr.contains("invalid recipient"), "{bad:?}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let nowhere = format!("ws://127.0.0.1:{port}");
    let down = run(cli(&["send", "--url", &nowhere, "--to", "x", "y"]), None);
    assert_eq!(down.code, Some(1), "{down:?}");
    assert!(down.stderr.contains(&format!("cannot connect to {nowhere}")), "{down:?}");

    let scheme = run(cli(&["status", "--url", "127.0.0.1:5001"]), None);
    assert_eq!(scheme.code, Some(2), "{scheme:?}");
    assert!(scheme.stderr.contains("expected ws://HOST:PORT"), "{scheme:?}");
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
    } else {
        assert_eq!(create.code, Some(1), "{create:?}");
        assert!(create.stderr.contains(&format!("the broker at {u} does not support room.create yet")), "{create:?}");
        assert!(create.stderr.contains("unknown_method") || create.stderr.contains("not_supported"), "{create:?}");
        let members = run(cli(&["room", "members", "lab", "--url", &u]), None);
        assert!(members.stderr.contains("does not support room.members yet"), "{members:?}");
    }
}
