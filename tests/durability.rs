//! Durable delivery on the real binary: crash safety, acknowledgements and redelivery, receipts,
//! idempotency, priority order with aging, and the AckTracker's recovery.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{eventually, Server, Ws};
use serde_json::{json, Value};

const LEVELS: [&str; 5] = ["critical", "high", "normal", "low", "bulk"];

fn level(p: &Value) -> usize {
    LEVELS.iter().position(|l| p == l).expect("known priority")
}

/// A small deterministic generator for the kill moment (the seed is printed for reproduction).
fn pseudo_random(seed: u64, lo: u64, hi: u64) -> u64 {
    let x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    lo + (x >> 33) % (hi - lo)
}

/// Sends `n` with `require_ack`, a priority cycling over the five levels and an idempotency key.
async fn send_numbered(ws: &mut Ws, n: u64) {
    let frame = json!({
        "type": "send", "to": "receiver", "msg_type": "work", "payload": {"n": n},
        "priority": LEVELS[(n % 5) as usize], "require_ack": true, "idempotency_key": format!("k-{n}"), "ref": n.to_string(),
    });
    ws.send(frame).await;
}

#[tokio::test]
async fn crash_at_a_random_moment_loses_nothing_that_was_sent() {
    const N: u64 = 10_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = format!("--data-dir={}", dir.path().display());
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as u64;
    let kill_after = pseudo_random(seed, 500, N - 500);
    eprintln!("crash test seed {seed}: SIGKILL after {kill_after} sends");

    // Phase 1: the sender streams to an offline receiver; the broker is killed mid-stream, while
    // `sent` replies are in flight.
    let mut server = Server::start(&[&data]);
    let sender = Ws::connect(&server, "sender").await;
    let mut sent: HashMap<u64, String> = HashMap::new(); // n -> message id
    let (mut sink, mut stream) = futures_util::StreamExt::split(sender.stream);
    let (kill_tx, mut kill_rx) = tokio::sync::oneshot::channel::<()>();
    // At most 200 sends await their reply, so the broker is busy storing when it dies.
    let credits = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let writer_credits = std::sync::Arc::clone(&credits);
    let writer = tokio::spawn(async move {
        use futures_util::SinkExt;
        let mut kill_tx = Some(kill_tx);
        for n in 1..=N {
            writer_credits.acquire().await.expect("semaphore").forget();
            let frame = json!({
                "type": "send", "to": "receiver", "msg_type": "work", "payload": {"n": n},
                "priority": LEVELS[(n % 5) as usize], "require_ack": true,
                "idempotency_key": format!("k-{n}"), "ref": n.to_string(),
            });
            if sink.send(tokio_tungstenite::tungstenite::Message::Text(frame.to_string())).await.is_err() {
                break;
            }
            if n == kill_after {
                if let Some(k) = kill_tx.take() {
                    let _ = k.send(());
                }
            }
        }
    });
    loop {
        use futures_util::StreamExt;
        tokio::select! {
            _ = &mut kill_rx, if server.alive() => server.kill(),
            next = tokio::time::timeout(Duration::from_secs(20), stream.next()) => {
                let Ok(Some(Ok(msg))) = next else { break };
                let tokio_tungstenite::tungstenite::Message::Text(t) = msg else { continue };
                let f: Value = serde_json::from_str(&t).expect("json");
                if f["type"] == "sent" {
                    let n: u64 = f["ref"].as_str().expect("ref").parse().expect("n");
                    sent.insert(n, f["message_id"].as_str().expect("id").to_owned());
                    credits.add_permits(1);
                }
            }
        }
    }
    writer.abort();
    assert!(!server.alive(), "the broker was killed");
    assert!((sent.len() as u64) < N, "the broker died before the sender finished");
    eprintln!("{} `sent` replies before the kill", sent.len());

    // Phase 2: restart on the same data; the sender resends what got no reply, with the same keys.
    let server = Server::start(&[&data]);
    let mut sender = Ws::connect(&server, "sender").await;
    let missing: Vec<u64> = (1..=N).filter(|n| !sent.contains_key(n)).collect();
    for &n in &missing {
        send_numbered(&mut sender, n).await;
    }
    let mut duplicates = 0;
    while sent.len() as u64 != N {
        let f = sender.recv_type("sent").await;
        let n: u64 = f["ref"].as_str().expect("ref").parse().expect("n");
        if f["status"] == "duplicate" {
            duplicates += 1;
        }
        sent.insert(n, f["message_id"].as_str().expect("id").to_owned());
    }
    eprintln!("resent {} messages, {duplicates} of them had reached the store before the kill", missing.len());

    // Phase 3: the receiver connects and gets everything: priority order across levels, seq order
    // within each, every message at least once; it acks each one.
    let mut receiver = Ws::connect(&server, "receiver").await;
    let mut got: HashMap<u64, u64> = HashMap::new(); // n -> seq
    let mut last_level = 0;
    let mut last_seq_per_level: BTreeMap<usize, u64> = BTreeMap::new();
    while got.len() as u64 != N {
        let m = receiver.recv_msg().await;
        let (n, seq) = (m["payload"]["n"].as_u64().expect("n"), m["seq"].as_u64().expect("seq"));
        let lv = level(&m["priority"]);
        assert!(lv >= last_level, "priority order broken: {} (seq {seq}) after level {last_level}, after {} messages; per level {last_seq_per_level:?}", m["priority"], got.len());
        last_level = lv;
        let prev = last_seq_per_level.insert(lv, seq).unwrap_or(0);
        assert!(seq > prev, "FIFO within {} broken: seq {seq} after {prev}", m["priority"]);
        assert_eq!(m["id"].as_str(), sent.get(&n).map(String::as_str), "the delivered id is the one `sent` named");
        assert!(got.insert(n, seq).is_none(), "message {n} delivered twice before its ack");
        receiver.send(json!({"type": "ack", "message_id": m["id"]})).await;
    }

    // Every ack is durable once the sender has its `acked` receipt.
    let ids: HashSet<String> = sent.values().cloned().collect();
    let mut acked = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() != ids.len() {
        assert!(Instant::now() < deadline, "only {} of {} acked receipts", acked.len(), ids.len());
        let f = sender.recv_type("receipt").await;
        if f["status"] == "acked" {
            acked.insert(f["message_id"].as_str().expect("id").to_owned());
        }
    }

    // Phase 4: kill again: nothing acked comes back.
    drop(server);
    let server = Server::start(&[&data]);
    let mut receiver = Ws::connect(&server, "receiver").await;
    let extra = receiver.try_recv(Duration::from_secs(2)).await;
    assert!(extra.is_none(), "an acked message was delivered again: {extra:?}");
    let (_, queues) = server.get("/admin/queues").await;
    assert_eq!(queues["pending_acks"], 0, "{queues}");
}

#[tokio::test]
async fn unacked_messages_are_redelivered_with_growing_delays_then_dead_lettered() {
    let server = Server::start(&["--ack-timeout-s", "0.3", "--ack-backoff-max-s", "10", "--ack-max-attempts", "3"]);
    let mut sender = Ws::connect(&server, "sender").await;
    let mut receiver = Ws::connect(&server, "receiver").await;
    sender.send(json!({"type": "send", "to": "receiver", "msg_type": "job", "payload": {"x": 1}, "require_ack": true, "ref": "a"})).await;
    // The `delivered` receipt may overtake `sent` (which waits for the flush): read both in order.
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let f = sender.recv().await;
        if f["type"] == "sent" || f["type"] == "receipt" {
            frames.push(f);
        }
    }
    let id = frames.iter().find(|f| f["type"] == "sent").expect("sent")["message_id"].clone();
    let delivered = frames.iter().find(|f| f["type"] == "receipt").expect("receipt").clone();
    assert_eq!((delivered["status"].clone(), delivered["by"].clone()), (json!("delivered"), json!("receiver")));
    assert_eq!(delivered["message_id"], id);

    let mut arrivals = Vec::new();
    for _ in 0..3 {
        let m = receiver.recv_msg().await;
        assert_eq!((m["id"].clone(), m["seq"].clone()), (id.clone(), json!(1)), "same id and seq every time");
        arrivals.push(Instant::now());
    }
    let (first, second) = (arrivals[1] - arrivals[0], arrivals[2] - arrivals[1]);
    assert!(first >= Duration::from_millis(250), "first redelivery after the timeout: {first:?}");
    assert!(second >= first + Duration::from_millis(150), "backoff grows: {first:?} then {second:?}");

    let dead = sender.recv_type("receipt").await;
    assert_eq!((dead["status"].clone(), dead["message_id"].clone()), (json!("dead"), id.clone()));
    assert!(receiver.try_recv(Duration::from_millis(800)).await.is_none(), "no delivery after dead-lettering");
    let (_, letters) = server.get("/admin/dead-letters").await;
    assert_eq!(letters["count"], 1);
    assert_eq!(letters["dead_letters"][0]["message"]["id"], id);
    assert_eq!(letters["dead_letters"][0]["attempts"], 3);
}

#[tokio::test]
async fn acks_stop_redelivery_and_send_receipts_nack_asks_again() {
    let server = Server::start(&["--ack-timeout-s", "0.3"]);
    let mut sender = Ws::connect(&server, "sender").await;
    let mut receiver = Ws::connect(&server, "receiver").await;
    sender.send(json!({"type": "send", "to": "receiver", "msg_type": "job", "payload": 1, "require_ack": true})).await;
    let m = receiver.recv_msg().await;
    assert_eq!(m["requires_ack"], true);
    receiver.send(json!({"type": "nack", "message_id": m["id"], "reason": "busy"})).await;
    let again = receiver.recv_msg().await;
    assert_eq!(again["id"], m["id"], "a nack brings the message back");
    receiver.send(json!({"type": "ack", "message_id": m["id"]})).await;
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        let r = sender.recv_type("receipt").await;
        assert_eq!(r["message_id"], m["id"]);
        statuses.push(r["status"].as_str().expect("status").to_owned());
    }
    assert_eq!(statuses, ["delivered", "acked"]);
    assert!(receiver.try_recv(Duration::from_millis(1200)).await.is_none(), "no redelivery after the ack");

    // Over HTTP: poll, then ack by POST /api/ack.
    sender.send(json!({"type": "send", "to": "poller", "msg_type": "job", "payload": 2, "require_ack": true})).await;
    sender.recv_type("sent").await;
    let (_, page) = server.get("/api/messages?to=poller&since=0").await;
    let id = page["messages"][0]["id"].clone();
    let (code, body) = server.post("/api/ack", &json!({"client_id": "poller", "message_ids": [id, "msg-unknown"]})).await;
    assert_eq!((code, body["acked"].clone()), (200, json!(1)));
    let mut seen = Vec::new();
    while !seen.contains(&"acked".to_owned()) {
        let r = sender.recv_type("receipt").await;
        if r["message_id"] == id {
            seen.push(r["status"].as_str().expect("status").to_owned());
        }
    }
}

#[tokio::test]
async fn an_idempotency_key_deduplicates_a_resend() {
    let server = Server::start(&[]);
    let mut a = Ws::connect(&server, "a").await;
    let frame = json!({"type": "send", "to": "b", "msg_type": "t", "payload": 1, "idempotency_key": "order-7", "ref": "1"});
    a.send(frame.clone()).await;
    let first = a.recv_type("sent").await;
    a.send(frame).await;
    let second = a.recv_type("sent").await;
    assert_eq!(second["status"], "duplicate");
    assert_eq!((second["message_id"].clone(), second["seq"].clone()), (first["message_id"].clone(), first["seq"].clone()));
    let (code, http) =
        server.post("/api/send", &json!({"from": "a", "to": "b", "type": "t", "payload": 1, "idempotency_key": "order-7"})).await;
    assert_eq!((code, http["message_id"].clone()), (200, first["message_id"].clone()));
    let (_, page) = server.get("/api/messages?to=b&since=0").await;
    assert_eq!(page["count"], 1, "one message for three sends: {page}");
}

#[tokio::test]
async fn a_backlog_is_delivered_by_priority_fifo_within_a_level() {
    let server = Server::start(&[]);
    let mut a = Ws::connect(&server, "a").await;
    let order = ["bulk", "low", "normal", "high", "critical", "bulk", "critical", "normal"];
    for (i, p) in order.iter().enumerate() {
        a.send(json!({"type": "send", "to": "offline", "msg_type": "t", "payload": i, "priority": p})).await;
        a.recv_type("sent").await;
    }
    // Numeric priorities are accepted too (1 = critical).
    a.send(json!({"type": "send", "to": "offline", "msg_type": "t", "payload": 8, "priority": 1})).await;
    a.recv_type("sent").await;
    let mut b = Ws::connect(&server, "offline").await;
    let mut got = Vec::new();
    for _ in 0..9 {
        got.push(b.recv_msg().await["payload"].as_u64().expect("n"));
    }
    assert_eq!(got, [4, 6, 8, 3, 2, 7, 1, 0, 5]);
}

#[tokio::test]
async fn aging_lets_old_bulk_overtake_new_critical() {
    let server = Server::start(&["--aging-s", "0.3"]);
    let mut a = Ws::connect(&server, "a").await;
    for i in 0..3 {
        a.send(json!({"type": "send", "to": "late", "msg_type": "t", "payload": format!("bulk-{i}"), "priority": "bulk"})).await;
        a.recv_type("sent").await;
    }
    // Four levels × 0.3 s: the bulk messages have aged to the top. Age is the condition, so this
    // is a sleep, not a wait on an event.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..3 {
        a.send(json!({"type": "send", "to": "late", "msg_type": "t", "payload": format!("crit-{i}"), "priority": "critical"})).await;
        a.recv_type("sent").await;
    }
    let mut b = Ws::connect(&server, "late").await;
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(b.recv_msg().await["payload"].as_str().expect("s").to_owned());
    }
    assert_eq!(got, ["bulk-0", "bulk-1", "bulk-2", "crit-0", "crit-1", "crit-2"]);
}

#[tokio::test]
async fn the_ack_tracker_restarts_without_forgetting_pending_acks() {
    let server = Server::start(&["--enable-fault-injection", "--ack-timeout-s", "0.5", "--ack-max-attempts", "10"]);
    let mut sender = Ws::connect(&server, "sender").await;
    let mut receiver = Ws::connect(&server, "receiver").await;
    sender.send(json!({"type": "send", "to": "receiver", "msg_type": "job", "payload": 1, "require_ack": true})).await;
    let m = receiver.recv_msg().await;
    let (code, _) = server.post("/admin/fault", &json!({"actor": "ack_tracker"})).await;
    assert_eq!(code, 202);
    eventually("tracker restart", || async {
        let (_, tree) = server.get("/admin/supervisors").await;
        let node = tree["children"].as_array()?.iter().find(|c| c["name"] == "ack_tracker")?.clone();
        (node["restarts"] == 1 && node["state"] == "running").then_some(())
    })
    .await;
    // Rebuilt from the store: the unacked message comes again, and an ack still settles it.
    let again = receiver.recv_msg().await;
    assert_eq!(again["id"], m["id"]);
    receiver.send(json!({"type": "ack", "message_id": m["id"]})).await;
    loop {
        let r = sender.recv_type("receipt").await;
        if r["status"] == "acked" {
            assert_eq!(r["message_id"], m["id"]);
            break;
        }
    }
    let (_, queues) = server.get("/admin/queues").await;
    assert_eq!(queues["pending_acks"], 0);
}
