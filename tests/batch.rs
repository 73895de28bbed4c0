//! Batch sends over real sockets (issue 18): `POST /api/send_batch` and the WebSocket `send_batch`
//! frame route every entry as a single send would, keep the entries' order, and answer once with a
//! result per entry — per-index errors, `duplicate` for a repeated idempotency key, and the whole
//! batch refused only for its count, its size, or being empty.

mod common;

use std::time::Duration;

use common::{InProcess, Ws};
use serde_json::{json, Value};

/// `n` HTTP send bodies from `from` to `to`, numbered in their payload.
fn http_entries(from: &str, to: &str, n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"from": from, "to": to, "type": "n", "payload": {"i": i}})).collect()
}

/// `n` WebSocket send bodies to `to`, numbered in their payload and `ref`.
fn ws_entries(to: &str, n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"to": to, "msg_type": "n", "payload": {"i": i}, "ref": format!("e-{i}")})).collect()
}

/// The results of a `sent_batch` answer, checked to be one per entry with indices in order.
fn results(answer: &Value, n: usize) -> Vec<Value> {
    let results = answer["results"].as_array().unwrap_or_else(|| panic!("no results in {answer}")).clone();
    assert_eq!(results.len(), n, "one result per entry");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i, "results in the entries' order: {r}");
    }
    results
}

/// The payload numbers of the next `n` messages `ws` receives.
async fn received(ws: &mut Ws, n: usize) -> Vec<u64> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(ws.recv_msg().await["payload"]["i"].as_u64().expect("a numbered payload"));
    }
    got
}

/// Only `sent_batch` frames from now on: nothing else arrives within a short wait.
async fn nothing_more(ws: &mut Ws) {
    if let Some(f) = ws.try_recv(Duration::from_millis(300)).await {
        panic!("a batch is answered once, but then came {f}");
    }
}

#[tokio::test]
async fn http_batch_of_500_arrives_in_order() {
    let server = InProcess::with_args(&[]);
    let mut bob = Ws::connect(&server, "bob").await;
    let (status, answer) = server.post("/api/send_batch", &json!({"messages": http_entries("alice", "bob", 500)})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "sent_batch");
    let results = results(&answer, 500);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["status"], "sent", "{r}");
        assert_eq!(r["outcome"], "delivered", "bob is online: {r}");
        assert_eq!(r["seq"], i + 1, "seqs follow the entries: {r}");
        assert!(r["message_id"].as_str().is_some_and(|id| id.starts_with("msg-")), "{r}");
        assert!(r.get("code").is_none(), "{r}");
    }
    assert_eq!(received(&mut bob, 500).await, (0..500).collect::<Vec<u64>>());
    nothing_more(&mut bob).await;
}

#[tokio::test]
async fn http_entries_fail_alone_with_their_index() {
    let server = InProcess::with_args(&[]);
    let mut bob = Ws::connect(&server, "bob").await;
    let messages = json!([
        {"from": "alice", "to": "bob", "type": "n", "payload": {"i": 0}},
        {"from": "alice", "to": "bob", "type": "n"},
        {"from": "alice", "to": "bad id", "type": "n", "payload": 2},
        {"from": "alice", "to": "bob", "room": "lab", "type": "n", "payload": 3},
        {"from": "alice", "to": "pool:nobody", "type": "n", "payload": 4},
        "not an object",
        {"to": "bob", "type": "n", "payload": 6},
        {"from": "alice", "to": "bob", "type": "n", "payload": {"i": 7}, "ref": "last"},
    ]);
    let (status, answer) = server.post("/api/send_batch", &json!({"messages": messages})).await;
    assert_eq!(status, 200, "a batch with bad entries is still taken: {answer}");
    let results = results(&answer, 8);
    let codes: Vec<&str> = results.iter().map(|r| r["code"].as_str().unwrap_or("-")).collect();
    assert_eq!(
        codes,
        ["-", "bad_frame", "invalid_recipient", "bad_frame", "unknown_recipient", "bad_frame", "bad_frame", "-"],
        "{answer}"
    );
    for r in results.iter().filter(|r| r.get("code").is_some()) {
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "a refusal says why: {r}");
        assert!(r.get("status").is_none() && r.get("message_id").is_none(), "{r}");
    }
    assert!(results[1]["error"].as_str().is_some_and(|e| e.contains("payload")), "{}", results[1]);
    assert_eq!((results[0]["status"].clone(), results[0]["seq"].clone()), (json!("sent"), json!(1)));
    assert_eq!((results[7]["status"].clone(), results[7]["seq"].clone()), (json!("sent"), json!(2)));
    assert_eq!((results[7]["ref"].clone(), results[0].get("ref")), (json!("last"), None), "an entry's ref is echoed");
    assert_eq!(received(&mut bob, 2).await, [0, 7], "the good entries, and only they");
    nothing_more(&mut bob).await;
}

#[tokio::test]
async fn http_batches_refused_whole() {
    let server = InProcess::with_args(&[]);
    let (status, answer) = server.post("/api/send_batch", &json!({"messages": http_entries("alice", "bob", 1001)})).await;
    assert_eq!((status, answer["code"].clone()), (413, json!("batch_too_large")), "{answer}");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("1000")), "{answer}");
    // Few entries, but a body over 1 MiB.
    let big = "x".repeat(300 * 1024);
    let entries: Vec<Value> = (0..4).map(|_| json!({"from": "alice", "to": "bob", "type": "n", "payload": big})).collect();
    let (status, answer) = server.post("/api/send_batch", &json!({"messages": entries})).await;
    assert_eq!((status, answer["code"].clone()), (413, json!("batch_too_large")), "{answer}");
    let (status, answer) = server.post("/api/send_batch", &json!({"messages": []})).await;
    assert_eq!((status, answer["code"].clone()), (400, json!("bad_frame")), "{answer}");
    let (status, answer) = server.post("/api/send_batch", &json!({"message": []})).await;
    assert_eq!((status, answer["code"].clone()), (400, json!("bad_frame")), "{answer}");
    // Nothing of a refused batch was sent.
    let mut bob = Ws::connect(&server, "bob").await;
    nothing_more(&mut bob).await;
    // Exactly 1000 is allowed.
    let (status, answer) = server.post("/api/send_batch", &json!({"messages": http_entries("alice", "bob", 1000)})).await;
    assert_eq!(status, 200, "{answer}");
    assert!(results(&answer, 1000).iter().all(|r| r["status"] == "sent"));
}

#[tokio::test]
async fn ws_batch_is_answered_once_and_delivered_in_order() {
    let server = InProcess::with_args(&[]);
    let [mut alice, mut bob] = Ws::connect_each(&server, ["alice", "bob"]).await;
    // A single send before and after: the batch keeps its place among them.
    let first = alice.send_msg("bob", "n", json!({"i": 1000})).await;
    assert_eq!(first["status"], "delivered");
    let mut entries = ws_entries("bob", 200);
    entries[50] = json!({"to": "bob", "payload": 50, "ref": "e-50"});
    alice.send(json!({"type": "send_batch", "ref": "b-1", "messages": entries})).await;
    alice.send(json!({"type": "send", "to": "bob", "msg_type": "n", "payload": {"i": 1001}, "ref": "last"})).await;
    let mut batch = None;
    let mut last = None;
    while batch.is_none() || last.is_none() {
        let f = alice.recv().await;
        match f["type"].as_str() {
            Some("sent_batch") if batch.is_none() => batch = Some(f),
            Some("sent") if f["ref"] == "last" => last = Some(f),
            _ => panic!("only one sent_batch and the last sent are owed, but came {f}"),
        }
    }
    let batch = batch.expect("the sent_batch");
    assert_eq!(batch["ref"], "b-1");
    let results = results(&batch, 200);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["ref"], format!("e-{i}"), "each entry's ref is echoed: {r}");
        if i == 50 {
            assert_eq!(r["code"], "bad_frame", "{r}");
            assert!(r["error"].as_str().is_some_and(|e| e.contains("msg_type")), "{r}");
        } else {
            assert_eq!((r["status"].clone(), r["outcome"].clone()), (json!("sent"), json!("delivered")), "{r}");
        }
    }
    nothing_more(&mut alice).await;
    let mut expected: Vec<u64> = vec![1000];
    expected.extend((0..200).filter(|i| *i != 50));
    expected.push(1001);
    assert_eq!(received(&mut bob, 201).await, expected);
    nothing_more(&mut bob).await;
}

#[tokio::test]
async fn ws_batches_refused_whole() {
    let server = InProcess::with_args(&[]);
    let mut alice = Ws::connect(&server, "alice").await;
    alice.send(json!({"type": "send_batch", "ref": "big", "messages": ws_entries("bob", 1001)})).await;
    let e = alice.recv().await;
    assert_eq!((e["type"].clone(), e["code"].clone(), e["ref"].clone()), (json!("error"), json!("batch_too_large"), json!("big")), "{e}");
    alice.send(json!({"type": "send_batch", "id": "empty", "messages": []})).await;
    let e = alice.recv().await;
    assert_eq!((e["type"].clone(), e["code"].clone(), e["ref"].clone()), (json!("error"), json!("bad_frame"), json!("empty")), "{e}");
    alice.send(json!({"type": "send_batch", "ref": "none"})).await;
    let e = alice.recv().await;
    assert_eq!((e["code"].clone(), e["ref"].clone()), (json!("bad_frame"), json!("none")), "{e}");
    nothing_more(&mut alice).await;
    let mut bob = Ws::connect(&server, "bob").await;
    nothing_more(&mut bob).await;
}

#[tokio::test]
async fn repeated_idempotency_keys_are_duplicates() {
    let server = InProcess::with_args(&[]);
    let mut bob = Ws::connect(&server, "bob").await;
    let entry = |key: &str, i: u64| json!({"from": "alice", "to": "bob", "type": "n", "payload": {"i": i}, "idempotency_key": key});
    // Within one batch, and across batches and transports.
    let (status, answer) = server.post("/api/send_batch", &json!({"messages": [entry("k1", 0), entry("k2", 1), entry("k1", 2)]})).await;
    assert_eq!(status, 200, "{answer}");
    let r = results(&answer, 3);
    assert_eq!([&r[0]["status"], &r[1]["status"], &r[2]["status"]], ["sent", "sent", "duplicate"], "{answer}");
    assert_eq!(r[2]["message_id"], r[0]["message_id"], "a duplicate names the message it repeats");
    assert_eq!(r[2]["seq"], r[0]["seq"]);
    assert_eq!(r[2]["outcome"], "duplicate");
    let (_, again) = server.post("/api/send_batch", &json!({"messages": [entry("k2", 3), entry("k3", 4)]})).await;
    let again = results(&again, 2);
    assert_eq!((again[0]["status"].clone(), again[0]["message_id"].clone()), (json!("duplicate"), r[1]["message_id"].clone()));
    assert_eq!(again[1]["status"], "sent");

    let mut alice = Ws::connect(&server, "alice").await;
    let frame = |key: &str, i: u64| json!({"to": "bob", "msg_type": "n", "payload": {"i": i}, "idempotency_key": key});
    alice.send(json!({"type": "send_batch", "ref": "w", "messages": [frame("k3", 5), frame("k4", 6), frame("k4", 7)]})).await;
    let answer = alice.recv_type("sent_batch").await;
    let w = results(&answer, 3);
    assert_eq!([&w[0]["status"], &w[1]["status"], &w[2]["status"]], ["duplicate", "sent", "duplicate"], "{answer}");
    assert_eq!(w[0]["message_id"], again[1]["message_id"], "the key k3 was first used over HTTP by the same sender");
    assert_eq!(received(&mut bob, 4).await, [0, 1, 4, 6], "each key's first message, once");
    nothing_more(&mut bob).await;
}

#[tokio::test]
async fn ws_entries_pay_the_connection_rate_limit() {
    let server = InProcess::with_args(&["--message-rate-per-s", "1", "--message-burst", "3"]);
    let mut alice = Ws::connect(&server, "alice").await;
    alice.send(json!({"type": "send_batch", "messages": ws_entries("bob", 5)})).await;
    let answer = alice.recv_type("sent_batch").await;
    let r = results(&answer, 5);
    let statuses: Vec<&str> = r.iter().map(|r| r["status"].as_str().or(r["code"].as_str()).unwrap_or("-")).collect();
    assert_eq!(statuses, ["sent", "sent", "sent", "rate_limited", "rate_limited"], "{answer}");
    assert!(r[3]["retry_after"].as_u64().is_some_and(|s| s >= 1), "{}", r[3]);
}

#[tokio::test]
async fn http_entries_are_bound_to_the_key_and_pay_its_rate_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Bursts of 4, refilled once in 100 s: no token comes back while the test runs.
    let key = common::create_key(dir.path(), &["--client-id", "bot", "--permissions", "read,write", "--rate-limit-per-hour", "36", "--burst", "4"]);
    let server = InProcess::with_args(&["--data-dir", dir.path().to_str().expect("utf-8 path")]);
    let entry = |from: Option<&str>, i: u64| {
        let mut e = json!({"to": "peer", "type": "n", "payload": {"i": i}});
        if let Some(from) = from {
            e["from"] = json!(from);
        }
        e
    };
    let messages = json!([entry(Some("bot"), 0), entry(Some("mallory"), 1), entry(Some("bot"), 2), entry(None, 3), entry(Some("bot"), 4), entry(None, 5)]);
    let r = reqwest::Client::new()
        .post(server.http("/api/send_batch"))
        .bearer_auth(&key)
        .json(&json!({"messages": messages}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 200);
    let answer: Value = r.json().await.expect("JSON");
    let r = results(&answer, 6);
    let outcome: Vec<&str> = r.iter().map(|r| r["status"].as_str().or(r["code"].as_str()).unwrap_or("-")).collect();
    // The request paid the first token, entries 2, 3 and 4 the other three; `mallory` is not
    // this key's client id, and entry 5 finds the bucket empty.
    assert_eq!(outcome, ["sent", "forbidden", "sent", "sent", "sent", "rate_limited"], "{answer}");
    assert!(r[5]["retry_after"].as_u64().is_some_and(|s| s >= 1), "{}", r[5]);
    let (status, anonymous) = server.post("/api/send_batch", &json!({"messages": [entry(Some("bot"), 6)]})).await;
    assert_eq!((status, anonymous["code"].clone()), (401, json!("unauthorized")), "{anonymous}");
}
