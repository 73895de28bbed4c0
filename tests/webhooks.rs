//! Webhooks against a real HTTP receiver on 127.0.0.1 (issue 16): deliveries are signed (the test
//! recomputes the HMAC), come in the generic, Slack and Discord shapes, are retried with growing
//! delays, are kept when given up and can be re-sent; a dead endpoint trips its breaker without
//! delaying deliveries to a healthy one.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sink::{Answer, Hit, Sink};
use common::{Server, Ws};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// A webhook receiver: the shared sink, answering `status` (settable).
struct Receiver {
    sink: Sink,
    status: Arc<AtomicU16>,
}

impl std::ops::Deref for Receiver {
    type Target = Sink;
    fn deref(&self) -> &Sink {
        &self.sink
    }
}

impl Receiver {
    async fn start(status: u16) -> Receiver {
        let status = Arc::new(AtomicU16::new(status));
        let s = Arc::clone(&status);
        let sink = Sink::start(move |_| Answer::empty(s.load(Ordering::SeqCst))).await;
        Receiver { sink, status }
    }
}

/// What a receiver does: recompute `v1` over `"<t>.<body>"`, compare in constant time (the
/// `hmac` crate's `verify_slice`), and refuse a `t` more than 300 s away.
fn verify(secret: &str, hit: &Hit) {
    let header = hit.headers.get("x-bridge-signature").unwrap_or_else(|| panic!("no signature: {hit:?}"));
    let parts: HashMap<&str, &str> = header.split(',').filter_map(|p| p.split_once('=')).collect();
    let t: i64 = parts["t"].parse().expect("t is unix seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    assert!((now - t).abs() <= 300, "fresh timestamp {t} (now {now})");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{}", hit.body).as_bytes());
    mac.verify_slice(&hex::decode(parts["v1"]).expect("hex")).expect("the signature verifies");
}

async fn register(server: &Server, body: Value) -> Value {
    let (status, created) = server.post("/admin/webhooks", &body).await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn send(server: &Server, to: &str, n: u64) {
    let (status, body) = server.post("/api/send", &json!({"from": "alice", "to": to, "type": "note", "payload": {"n": n}})).await;
    assert_eq!(status, 200, "{body}");
}

async fn webhook(server: &Server, id: &str) -> Value {
    let (status, list) = server.get("/admin/webhooks").await;
    assert_eq!(status, 200, "{list}");
    list["webhooks"].as_array().and_then(|w| w.iter().find(|h| h["id"] == id).cloned()).unwrap_or_else(|| panic!("{id} in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_in_each_format_for_each_event() {
    let server = Server::start(&["--enable-fault-injection", "--ack-timeout-s", "0.2", "--ack-max-attempts", "1"]);
    let rx = Receiver::start(200).await;
    let secret = "a-secret-of-sixteen-or-more";
    let generic = register(&server, json!({"url": rx.url("/generic"), "events": ["message", "dead_letter"], "secret": secret, "client_id": "bob"})).await;
    assert_eq!(generic["secret"], secret);
    let slack = register(&server, json!({"url": rx.url("/slack"), "events": ["member_joined"], "format": "slack", "room": "lab"})).await;
    let slack_secret = slack["secret"].as_str().expect("a generated secret").to_owned();
    assert!(slack_secret.starts_with("whsec_"), "{slack}");
    register(&server, json!({"url": rx.url("/discord"), "events": ["actor_restarted"], "format": "discord"})).await;

    for (body, code) in [
        (json!({"url": "ftp://x", "events": ["message"]}), "invalid_url"),
        (json!({"url": format!("http://x/{}", "a".repeat(3000)), "events": ["message"]}), "invalid_url"),
        (json!({"url": "http://x", "events": ["nope"]}), "unknown_event"),
        (json!({"url": "http://x", "events": ["message"], "format": "xml"}), "bad_request"),
        (json!({"url": "http://x"}), "bad_frame"),
    ] {
        let (status, answer) = server.post("/admin/webhooks", &body).await;
        assert_eq!((status, answer["code"].as_str()), (400, Some(code)), "{body} → {answer}");
    }

    // message (to bob, and the dead letter after bob never acks).
    let [_alice, mut bob] = Ws::connect_each(&server, ["alice", "bob"]).await;
    send(&server, "carol", 0).await; // filtered out: neither to nor from bob
    let (status, body) = server
        .post("/api/send", &json!({"from": "alice", "to": "bob", "type": "note", "payload": {"n": 1}, "require_ack": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    bob.recv_msg().await;
    let hits = rx.wait("/generic", 2).await;
    for hit in &hits {
        verify(secret, hit);
    }
    let message = hits.iter().find(|h| h.headers["x-bridge-event"] == "message").expect("the message").json();
    assert_eq!((message["event"].as_str(), message["data"]["from"].as_str(), message["data"]["to"].as_str()), (Some("message"), Some("alice"), Some("bob")));
    assert!(message["at"].as_str().is_some_and(|a| a.ends_with('Z')), "{message}");
    let dead = hits.iter().find(|h| h.headers["x-bridge-event"] == "dead_letter").expect("the dead letter").json();
    assert_eq!((dead["data"]["to"].as_str(), dead["data"]["attempts"].as_u64()), (Some("bob"), Some(1)), "{dead}");
    assert_eq!(rx.wait("/generic", 2).await.len(), 2, "the message to carol was filtered out");

    // member_joined, Slack-shaped.
    let (status, body) = server.post("/api/call", &json!({"method": "room.create", "from": "alice", "params": {"name": "lab"}})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post("/api/call", &json!({"method": "room.join", "from": "bob", "params": {"room": "lab"}})).await;
    assert_eq!(status, 200, "{body}");
    let joined = rx.wait("/slack", 1).await;
    verify(&slack_secret, &joined[0]);
    assert_eq!(joined[0].json(), json!({"text": "agent-bridge: bob joined lab"}));

    // actor_restarted, Discord-shaped.
    let (status, body) = server.post("/admin/fault", &json!({"actor": "ack_tracker"})).await;
    assert_eq!(status, 202, "{body}");
    let restarted = rx.wait("/discord", 1).await[0].json();
    let content = restarted["content"].as_str().expect("discord content");
    assert!(content.starts_with("agent-bridge: actor ack_tracker restarted"), "{restarted}");

    let listed = webhook(&server, generic["id"].as_str().expect("id")).await;
    assert_eq!((listed["delivered"].as_u64(), listed["breaker"].as_str()), (Some(2), Some("closed")), "{listed}");
    assert!(listed.get("secret").is_none(), "the secret is never listed: {listed}");

    // A restarted webhooks actor reloads its registrations from the store.
    common::fault_and_restart(&server, "webhooks").await;
    let (_, list) = server.get("/admin/webhooks").await;
    assert_eq!(list["count"], 3, "{list}");

    // `agent-bridge admin webhooks` lists them.
    let out = common::cli_at(server.port, &["admin", "webhooks"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("breaker") && text.contains(generic["id"].as_str().expect("id")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_then_the_failure_is_kept_and_resent() {
    let server = Server::start(&["--webhook-retry-base-ms", "200", "--webhook-max-attempts", "3", "--webhook-breaker-threshold", "10"]);
    let rx = Receiver::start(500).await;
    let hook = register(&server, json!({"url": rx.url("/flaky"), "events": ["message"]})).await;
    let id = hook["id"].as_str().expect("id").to_owned();
    let _bob = Ws::connect(&server, "bob").await;
    send(&server, "bob", 1).await;

    let hits = rx.wait("/flaky", 3).await;
    let (gap1, gap2) = (hits[1].at - hits[0].at, hits[2].at - hits[1].at);
    assert!(gap1 >= Duration::from_millis(90), "the first retry waits about base/2..base: {gap1:?}");
    assert!(gap2 >= gap1 && gap2 >= Duration::from_millis(190), "the delay grows: {gap1:?} then {gap2:?}");
    let delivery = hits[0].headers["x-bridge-delivery"].clone();
    assert!(hits.iter().all(|h| h.headers["x-bridge-delivery"] == delivery), "one delivery, three attempts");
    assert_eq!(hits.iter().map(|h| h.headers["x-bridge-attempt"].as_str()).collect::<Vec<_>>(), ["1", "2", "3"]);
    for hit in &hits {
        verify(hook["secret"].as_str().expect("secret"), hit);
    }

    let failures = common::eventually("the failure is kept", || async {
        let (_, f) = server.get("/admin/webhooks/failures").await;
        (f["count"] == 1).then_some(f)
    })
    .await;
    let failure = &failures["failures"][0];
    assert_eq!((failure["webhook_id"].as_str(), failure["attempts"].as_u64(), failure["error"].as_str()), (Some(id.as_str()), Some(3), Some("HTTP 500")), "{failure}");
    assert_eq!(failure["id"], delivery.as_str());
    assert_eq!(webhook(&server, &id).await["failed"], 1);

    rx.status.store(200, Ordering::SeqCst);
    let (status, body) = server.post(&format!("/admin/webhooks/failures/{delivery}/resend"), &json!({})).await;
    assert_eq!(status, 202, "{body}");
    let again = rx.wait("/flaky", 4).await;
    assert_eq!(again[3].headers["x-bridge-delivery"], delivery, "the same delivery id");
    assert_eq!(again[3].body, hits[0].body, "the same body");
    let (_, after) = server.get("/admin/webhooks/failures").await;
    assert_eq!(after["count"], 0, "{after}");
    common::eventually("counted as delivered", || async { (webhook(&server, &id).await["delivered"] == 1).then_some(()) }).await;
    let (status, body) = server.post(&format!("/admin/webhooks/failures/{delivery}/resend"), &json!({})).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_failure")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_trips_its_breaker_without_delaying_a_healthy_one() {
    let server = Server::start(&[
        "--webhook-retry-base-ms", "300", "--webhook-max-attempts", "4",
        "--webhook-breaker-threshold", "3", "--webhook-breaker-cooldown-s", "60",
    ]);
    let (dead_rx, healthy_rx) = (Receiver::start(503).await, Receiver::start(200).await);
    let dead = register(&server, json!({"url": dead_rx.url("/dead"), "events": ["message"]})).await;
    register(&server, json!({"url": healthy_rx.url("/ok"), "events": ["message"]})).await;
    let _bob = Ws::connect(&server, "bob").await;

    // One message at a time: the healthy endpoint gets each at once while the dead one retries.
    for n in 1..=5 {
        let sent = Instant::now();
        send(&server, "bob", n).await;
        let hits = healthy_rx.wait("/ok", n as usize).await;
        assert!(hits[n as usize - 1].at - sent < Duration::from_secs(1), "message {n} reached the healthy endpoint at once");
    }
    let dead_id = dead["id"].as_str().expect("id");
    common::eventually("the breaker opens", || async { (webhook(&server, dead_id).await["breaker"] == "open").then_some(()) }).await;
    let failures = common::eventually("every delivery to the dead endpoint is given up", || async {
        let (_, f) = server.get("/admin/webhooks/failures").await;
        (f["count"] == 5).then_some(f)
    })
    .await;
    assert!(failures["failures"].as_array().expect("failures").iter().any(|f| f["error"].as_str().is_some_and(|e| e.starts_with("circuit_open"))), "{failures}");
    let tried = dead_rx.hits().len();
    assert!(tried < 5 * 4, "the open breaker spared the dead endpoint most attempts: {tried}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(dead_rx.hits().len(), tried, "no attempts while the breaker is open");
    let listed = webhook(&server, dead_id).await;
    assert_eq!((listed["failed"].as_u64(), listed["delivered"].as_u64()), (Some(5), Some(0)), "{listed}");

    let remove = |id: String| {
        let url = server.http(&format!("/admin/webhooks/{id}"));
        async move { reqwest::Client::new().delete(url).send().await.expect("delete").status().as_u16() }
    };
    assert_eq!(remove(dead_id.to_owned()).await, 200);
    assert_eq!(remove(dead_id.to_owned()).await, 404);
}
