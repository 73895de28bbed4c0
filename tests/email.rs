//! E-mail notifications against a real SMTP server on 127.0.0.1 (issue 16): aiosmtpd from PyPI,
//! in a venv the test makes (`common::python::with`), prints every message it receives; the
//! mails carry the right From, To, Subject, Date and Message-ID and both a text/plain and a
//! text/html part (escaped), a digest subscription batches the events of its window into one
//! mail, and a mail the server cannot take is kept as a failure.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::{Endpoint, InProcess};
use serde_json::{json, Value};

/// aiosmtpd, running; killed on drop.
struct Smtpd {
    child: Child,
    lines: Receiver<String>,
    port: u16,
}

impl Smtpd {
    fn start() -> Smtpd {
        let python = common::python::with("aiosmtpd-venv", &[("aiosmtpd", "aiosmtpd>=1.4,<2")]);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/email/smtpd.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting aiosmtpd");
        let lines = common::lines_of(child.stdout.take().expect("stdout"));
        let ready = lines.recv_timeout(Duration::from_secs(30)).expect("aiosmtpd says where it listens");
        let port = serde_json::from_str::<Value>(&ready).ok().and_then(|v| v["port"].as_u64()).expect("{\"port\"}") as u16;
        Smtpd { child, lines, port }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The next mail received, within `within`.
    fn mail(&self, within: Duration) -> Option<Value> {
        let line = self.lines.recv_timeout(within).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn broker(smtp_url: &str) -> InProcess {
    InProcess::with_args(&["--smtp-url", smtp_url, "--smtp-from", "Bridge <bridge@example.org>"])
}

async fn call(server: &Endpoint, from: &str, method: &str, params: Value) -> Value {
    let (status, body) = server.post("/api/call", &json!({"method": method, "from": from, "params": params})).await;
    assert_eq!(status, 200, "{method}: {body}");
    body
}

async fn subscribe(server: &Endpoint, body: Value) -> Value {
    let (status, created) = server.post("/admin/email", &body).await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn subscription(server: &Endpoint, id: &str) -> Value {
    let (status, list) = server.get("/admin/email").await;
    assert_eq!(status, 200, "{list}");
    list["subscriptions"].as_array().and_then(|s| s.iter().find(|s| s["id"] == id).cloned()).unwrap_or_else(|| panic!("{id} in {list}"))
}

fn part<'a>(mail: &'a Value, content_type: &str) -> &'a str {
    mail["parts"].as_array().and_then(|p| p.iter().find(|p| p["type"] == content_type)).and_then(|p| p["content"].as_str()).unwrap_or_else(|| panic!("a {content_type} part in {mail}"))
}

/// The headers every mail has: From, To, a Date in RFC 5322 form close to now, a Message-ID of
/// the sender's domain, and both parts as multipart/alternative.
fn check_headers(mail: &Value) {
    let h = &mail["headers"];
    assert_eq!(mail["mail_from"], "bridge@example.org", "{mail}");
    assert_eq!(mail["rcpt_tos"], json!(["ops@example.org"]), "{mail}");
    assert!(h["from"].as_str().is_some_and(|f| f.contains("Bridge") && f.contains("<bridge@example.org>")), "{h}");
    assert_eq!(h["to"], "ops@example.org", "{h}");
    let date = chrono::DateTime::parse_from_rfc2822(h["date"].as_str().expect("a Date header")).expect("an RFC 5322 date");
    assert!((chrono::Utc::now() - date.with_timezone(&chrono::Utc)).num_seconds().abs() < 60, "a fresh Date: {date}");
    let id = h["message-id"].as_str().expect("a Message-ID header");
    assert!(id.starts_with('<') && id.ends_with("@example.org>") && id.len() > 20, "{id}");
    assert_eq!(mail["content_type"], "multipart/alternative", "{mail}");
    let types: Vec<&str> = mail["parts"].as_array().expect("parts").iter().filter_map(|p| p["type"].as_str()).collect();
    assert_eq!(types, ["text/plain", "text/html"], "{mail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_a_mail_with_headers_and_both_parts() {
    let smtpd = Smtpd::start();
    let server = broker(&smtpd.url());
    let sub = subscribe(&server, json!({"to": ["ops@example.org"], "events": ["member_joined", "message"], "room": "lab"})).await;
    let id = sub["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("em_") && sub["digest_seconds"].is_null() && sub["room"] == "lab", "{sub}");

    for (body, code) in [
        (json!({"to": ["not an address"], "events": ["message"]}), "invalid_address"),
        (json!({"to": [], "events": ["message"]}), "bad_request"),
        (json!({"to": ["a@example.org"], "events": ["nope"]}), "unknown_event"),
        (json!({"to": ["a@example.org"], "events": ["message"], "digest_seconds": 0}), "bad_request"),
        (json!({"to": ["a@example.org"]}), "bad_frame"),
    ] {
        let (status, answer) = server.post("/admin/email", &body).await;
        assert_eq!((status, answer["code"].as_str()), (400, Some(code)), "{body} → {answer}");
    }

    call(&server, "alice", "room.create", json!({"name": "lab"})).await;
    call(&server, "bob", "room.join", json!({"room": "lab"})).await;
    let joined = smtpd.mail(Duration::from_secs(20)).expect("a mail for bob joining");
    check_headers(&joined);
    assert_eq!(joined["headers"]["subject"], "agent-bridge: bob joined lab", "{joined}");
    assert!(part(&joined, "text/plain").contains("bob joined lab"), "{joined}");
    assert!(part(&joined, "text/html").contains("<h2>agent-bridge: bob joined lab</h2>"), "{joined}");
    assert!(part(&joined, "text/plain").contains(&id), "the mail names its subscription");

    // A room message whose payload is markup: escaped in the HTML part, as is in the text part.
    let (status, sent) = server.post("/api/send", &json!({"from": "alice", "room": "lab", "type": "note", "payload": {"text": "<script>x</script>"}})).await;
    assert_eq!(status, 200, "{sent}");
    let message = smtpd.mail(Duration::from_secs(20)).expect("a mail for the room message");
    check_headers(&message);
    assert!(message["headers"]["subject"].as_str().is_some_and(|s| s.starts_with("agent-bridge: alice → room lab [note]")), "{message}");
    let html = part(&message, "text/html");
    assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"), "escaped: {html}");
    assert!(part(&message, "text/plain").contains("<script>x</script>"), "{message}");
    assert_ne!(joined["headers"]["message-id"], message["headers"]["message-id"], "each mail has its own Message-ID");

    // Another room's events are not this subscription's.
    call(&server, "alice", "room.create", json!({"name": "other"})).await;
    call(&server, "bob", "room.join", json!({"room": "other"})).await;
    assert!(smtpd.mail(Duration::from_millis(700)).is_none(), "filtered by room");
    common::eventually("both mails counted", || async { (subscription(&server, &id).await["sent"] == 2).then_some(()) }).await;

    // `agent-bridge admin email` lists it.
    let out = common::cli_at(server.port, &["admin", "email"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(&id) && text.contains("sent"), "{text}");

    let url = server.http(&format!("/admin/email/{id}"));
    let delete = || async { reqwest::Client::new().delete(&url).send().await.expect("delete").status().as_u16() };
    assert_eq!(delete().await, 200);
    assert_eq!(delete().await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_batches_the_events_of_its_window_into_one_mail() {
    let smtpd = Smtpd::start();
    let server = broker(&smtpd.url());
    call(&server, "alice", "room.create", json!({"name": "lab"})).await;
    // Subscribed with the CLI, as an operator would.
    let out = common::cli_at(server.port, &[
        "admin", "email-subscribe", "--to", "ops@example.org", "--events", "member_joined,task_updated", "--room", "lab", "--digest-seconds", "2", "--json",
    ]);
    let sub: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let id = sub["id"].as_str().expect("id").to_owned();
    assert_eq!(sub["digest_seconds"], 2, "{sub}");

    for who in ["bob", "carol", "dave"] {
        call(&server, who, "room.join", json!({"room": "lab"})).await;
    }
    call(&server, "bob", "board.add", json!({"room": "lab", "title": "write the digest test"})).await;
    common::eventually("gathered, not sent yet", || async { (subscription(&server, &id).await["pending"] == 4).then_some(()) }).await;
    let digest = smtpd.mail(Duration::from_secs(20)).expect("the digest");
    check_headers(&digest);
    assert_eq!(digest["headers"]["subject"], "agent-bridge digest: 4 events in 2 s (member_joined, task_updated)", "{digest}");
    let (text, html) = (part(&digest, "text/plain"), part(&digest, "text/html"));
    for line in ["bob joined lab", "carol joined lab", "dave joined lab", "card card-1 in lab added (todo): write the digest test"] {
        assert!(text.contains(line) && html.contains(line), "{line:?} in both parts: {text}");
    }
    assert!(smtpd.mail(Duration::from_millis(2500)).is_none(), "one mail for the window");
    let listed = subscription(&server, &id).await;
    assert_eq!((listed["sent"].as_u64(), listed["pending"].as_u64()), (Some(1), Some(0)), "{listed}");

    // The next window is a mail of its own.
    call(&server, "erin", "room.join", json!({"room": "lab"})).await;
    let next = smtpd.mail(Duration::from_secs(20)).expect("the second digest");
    assert_eq!(next["headers"]["subject"], "agent-bridge digest: 1 event in 2 s (member_joined)", "{next}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_the_server_cannot_take_is_kept_as_a_failure() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let server = InProcess::with_args(&["--smtp-url", &format!("smtp://127.0.0.1:{closed}"), "--smtp-timeout-s", "2", "--enable-fault-injection"]);
    let sub = subscribe(&server, json!({"to": ["ops@example.org"], "events": ["member_joined"]})).await;
    call(&server, "alice", "room.create", json!({"name": "lab"})).await;
    call(&server, "bob", "room.join", json!({"room": "lab"})).await;
    let failures = common::eventually("the failure is kept", || async {
        let (_, f) = server.get("/admin/email/failures").await;
        (f["count"] == 1).then_some(f)
    })
    .await;
    let f = &failures["failures"][0];
    assert_eq!((f["subscription_id"].as_str(), f["events"].as_u64()), (sub["id"].as_str(), Some(1)), "{f}");
    assert!(f["error"].as_str().is_some_and(|e| e.starts_with("smtp:")) && f["subject"] == "agent-bridge: bob joined lab", "{f}");
    let listed = subscription(&server, sub["id"].as_str().expect("id")).await;
    assert_eq!(listed["failed"], 1, "{listed}");
    assert!(listed["last_error"].as_str().is_some(), "{listed}");

    // A restarted e-mail actor reloads its subscriptions; the failure stays kept.
    common::fault_and_restart(&server, "email").await;
    let (_, list) = server.get("/admin/email").await;
    assert_eq!(list["count"], 1, "{list}");
    let (_, failures) = server.get("/admin/email/failures").await;
    assert_eq!(failures["count"], 1, "{failures}");
}

#[test]
fn smtp_settings_are_checked_at_start() {
    use clap::Parser;
    for (url, from) in [("http://x", "a@b.org"), ("smtp://u:p@x", "a@b.org"), ("smtp://x", "nobody")] {
        let cli = agent_bridge::cli::Cli::try_parse_from(["agent-bridge", "serve", "--in-memory", "--smtp-url", url, "--smtp-from", from]).expect("flags");
        let agent_bridge::cli::Command::Serve(args) = cli.command else { unreachable!("serve") };
        let err = agent_bridge::config::Config::load(&args).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("smtp_"), "{url} {from}: {err}");
    }
}
