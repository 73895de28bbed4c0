//! Replies across restarts, on the real binary over real WebSocket clients: a router shard or the
//! AckTracker panics (fault injection) while thousands of sends and acks are in flight, and still
//! every send gets exactly one answer (`sent`, or `internal`/`unavailable`) and every ack its
//! `acked` receipt.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::{Server, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Sends per test.
const N: u64 = 4_000;
/// Sends awaiting their answer at once: enough to keep batches and flushes in flight.
const WINDOW: usize = 400;
/// Faults are injected after this many answers, so that each one lands under load.
const FAULT_AT: [u64; 3] = [800, 1_800, 2_800];
/// A test fails (rather than hangs) when nothing new arrives for this long.
const STALL: Duration = Duration::from_secs(15);

/// A broker on disk (`durability = sync`: replies wait for the flush) with fault injection and
/// room for a few restarts of each actor.
fn server(dir: &tempfile::TempDir) -> Server {
    let data = format!("--data-dir={}", dir.path().display());
    Server::start(&[&data, "--enable-fault-injection", "--shards", "1", "--max-restarts", "20", "--restart-window-s", "60"])
}

async fn fault(server: &Server, actor: &str) {
    let (status, body) = server.post("/admin/fault", &json!({ "actor": actor })).await;
    assert_eq!(status, 202, "{body}");
}

/// What the sender saw.
#[derive(Default)]
struct Answers {
    /// ref → answers (`sent` or `error` frames carrying that ref).
    by_ref: HashMap<u64, Vec<Value>>,
    /// `acked` receipts per message id.
    acked: HashMap<String, u32>,
}

/// Streams `N` sends from `sender` to `target` (`("to", client)` or `("room", room)`) with at most `WINDOW` unanswered, injects a fault into
/// `actor` after each count in `FAULT_AT` answers, and returns once every ref is answered and
/// `done` says the rest has arrived too — or once nothing new has arrived for `STALL`.
async fn run_under_faults(
    server: &Server,
    sender: Ws,
    (field, target): (&str, &str),
    require_ack: bool,
    actor: &str,
    mut done: impl FnMut(&Answers) -> bool,
) -> Answers {
    let (mut sink, mut stream) = sender.stream.split();
    let credits = Arc::new(Semaphore::new(WINDOW));
    let writer_credits = Arc::clone(&credits);
    let (field, target) = (field.to_owned(), json!(target));
    let writer = tokio::spawn(async move {
        for n in 1..=N {
            writer_credits.acquire().await.expect("semaphore").forget();
            let mut frame = json!({
                "type": "send", "msg_type": "work", "payload": {"n": n}, "require_ack": require_ack, "ref": n.to_string(),
            });
            frame[&field] = target.clone();
            if sink.send(WsMessage::Text(frame.to_string())).await.is_err() {
                break;
            }
        }
        sink
    });
    let mut answers = Answers::default();
    let mut faults = FAULT_AT.iter().peekable();
    let mut answered = 0u64;
    loop {
        if answered == N && done(&answers) {
            break;
        }
        let Ok(Some(Ok(WsMessage::Text(text)))) = tokio::time::timeout(STALL, stream.next()).await else { break };
        let f: Value = serde_json::from_str(&text).expect("server sent JSON");
        match f["type"].as_str() {
            Some("sent" | "error") => {
                let n: u64 = f["ref"].as_str().and_then(|r| r.parse().ok()).unwrap_or_else(|| panic!("answer without our ref: {f}"));
                let seen = answers.by_ref.entry(n).or_default();
                seen.push(f);
                if seen.len() == 1 {
                    answered += 1;
                    credits.add_permits(1);
                }
                if faults.next_if(|&&at| answered == at).is_some() {
                    fault(server, actor).await;
                }
            }
            Some("receipt") if f["status"] == "acked" => {
                *answers.acked.entry(f["message_id"].as_str().expect("id").to_owned()).or_default() += 1;
            }
            _ => {}
        }
    }
    if answered < N {
        // Replies were lost: the writer waits for credits that never come.
        writer.abort();
        return answers;
    }
    let sink = writer.await.expect("writer");
    // Any late duplicate would arrive before the answer to one more send.
    let mut ws_stream = sink.reunite(stream).expect("same socket");
    let probe = json!({"type": "send", "to": "nobody-probe", "msg_type": "probe", "payload": 0, "ref": "probe"});
    ws_stream.send(WsMessage::Text(probe.to_string())).await.expect("send probe");
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(STALL, ws_stream.next()).await {
        let WsMessage::Text(text) = msg else { continue };
        let f: Value = serde_json::from_str(&text).expect("JSON");
        if f["ref"] == "probe" {
            break;
        }
        if let Some(n) = f["ref"].as_str().and_then(|r| r.parse::<u64>().ok()) {
            answers.by_ref.entry(n).or_default().push(f);
        }
    }
    answers
}

/// Every ref has exactly one answer; errors are `internal` or `unavailable`. Returns the refs
/// answered `sent` with their message ids.
fn assert_answered_once(answers: &Answers) -> HashMap<u64, String> {
    let missing: Vec<u64> = (1..=N).filter(|n| !answers.by_ref.contains_key(n)).collect();
    assert!(missing.is_empty(), "{} of {N} sends got no answer at all, e.g. refs {:?}", missing.len(), &missing[..missing.len().min(10)]);
    let twice: Vec<(&u64, &Vec<Value>)> = answers.by_ref.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "{} sends got more than one answer, e.g. {:?}", twice.len(), twice.first());
    let mut sent = HashMap::new();
    let mut errors = 0;
    for (n, v) in &answers.by_ref {
        let f = &v[0];
        if f["type"] == "sent" {
            sent.insert(*n, f["message_id"].as_str().expect("message_id").to_owned());
        } else {
            assert!(f["code"] == "internal" || f["code"] == "unavailable", "unexpected error for ref {n}: {f}");
            errors += 1;
        }
    }
    eprintln!("{} sent, {errors} answered with an error", sent.len());
    sent
}

/// Reads `receiver` in the background and passes on the `n` of every message payload.
fn payloads(mut receiver: Ws) -> (tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<u64>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(f) = receiver.try_recv(STALL).await {
            if f["type"] == "message" && tx.send(f["message"]["payload"]["n"].as_u64().expect("n")).is_err() {
                break;
            }
        }
    });
    (reader, rx)
}

/// Every message answered `sent` arrives at the receiver.
async fn assert_delivered(sent: &HashMap<u64, String>, rx: &mut mpsc::UnboundedReceiver<u64>) {
    let mut delivered = HashSet::new();
    while sent.keys().any(|n| !delivered.contains(n)) {
        let Ok(Some(n)) = tokio::time::timeout(STALL, rx.recv()).await else { break };
        delivered.insert(n);
    }
    let lost: Vec<&u64> = sent.keys().filter(|n| !delivered.contains(n)).collect();
    assert!(lost.is_empty(), "{} messages answered `sent` never arrived, e.g. {:?}", lost.len(), lost.first());
}

#[tokio::test]
async fn every_send_is_answered_exactly_once_across_router_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(&dir);
    let (reader, mut rx) = payloads(Ws::connect(&server, "receiver").await);
    let sender = Ws::connect(&server, "sender").await;
    let answers = run_under_faults(&server, sender, ("to", "receiver"), false, "router-0", |_| true).await;
    let restarts = server.logs().matches("actor restarting").count();
    assert_eq!(restarts, FAULT_AT.len(), "each fault restarted the shard once");
    let sent = assert_answered_once(&answers);
    // The fault hit between messages: every one was stored, so every one gets its real outcome.
    assert_eq!(sent.len() as u64, N, "stored messages are answered `sent`, not `internal`");
    assert_delivered(&sent, &mut rx).await;
    reader.abort();
}

/// Sends a `join` frame and waits for the `joined` event.
async fn join(ws: &mut Ws, room: &str) {
    ws.send(json!({"type": "join", "room": room})).await;
    loop {
        let f = ws.recv().await;
        assert_ne!(f["type"], "error", "join {room}: {f}");
        if f["type"] == "event" && f["event"] == "joined" {
            return;
        }
    }
}

#[tokio::test]
async fn every_room_send_is_answered_exactly_once_across_room_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(&dir);
    let mut sender = Ws::connect(&server, "sender").await;
    sender.send(json!({"type": "call", "ref": "c", "method": "room.create", "params": {"name": "lab"}})).await;
    assert_eq!(sender.recv_type("result").await["ok"], true);
    join(&mut sender, "lab").await;
    let mut receiver = Ws::connect(&server, "receiver").await;
    join(&mut receiver, "lab").await;
    let (reader, mut rx) = payloads(receiver);
    let answers = run_under_faults(&server, sender, ("room", "lab"), false, "room:lab", |_| true).await;
    assert_eq!(server.logs().matches("actor restarting").count(), FAULT_AT.len(), "each fault restarted the room once");
    let sent = assert_answered_once(&answers);
    assert_eq!(sent.len() as u64, N, "stored messages are answered `sent`, not `internal`");
    assert_delivered(&sent, &mut rx).await;
    reader.abort();
}

#[tokio::test]
async fn every_ack_gets_its_receipt_across_ack_tracker_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(&dir);
    let mut receiver = Ws::connect(&server, "receiver").await;
    let sender = Ws::connect(&server, "sender").await;
    // The receiver acks everything at once and reports what it acked.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let acker = tokio::spawn(async move {
        while let Some(f) = receiver.try_recv(STALL).await {
            if f["type"] != "message" {
                continue;
            }
            let id = f["message"]["id"].clone();
            receiver.send(json!({"type": "ack", "message_id": id})).await;
            if tx.send(id.as_str().expect("id").to_owned()).is_err() {
                break;
            }
        }
    });
    let mut acked_by_receiver = HashSet::new();
    let answers = run_under_faults(&server, sender, ("to", "receiver"), true, "ack_tracker", |a| {
        while let Ok(id) = rx.try_recv() {
            acked_by_receiver.insert(id);
        }
        acked_by_receiver.len() as u64 >= N && acked_by_receiver.iter().all(|id| a.acked.contains_key(id))
    })
    .await;
    while let Ok(id) = rx.try_recv() {
        acked_by_receiver.insert(id);
    }
    acker.abort();
    assert_eq!(server.logs().matches("actor restarting").count(), FAULT_AT.len(), "each fault restarted the tracker once");
    let sent = assert_answered_once(&answers);
    assert_eq!(sent.len() as u64, N, "a tracker fault does not fail sends");
    let ids: HashSet<&String> = sent.values().collect();
    assert!(ids.iter().all(|id| acked_by_receiver.contains(*id)), "the receiver got and acked every message");
    let unreceipted: Vec<&&String> = ids.iter().filter(|id| !answers.acked.contains_key(**id)).collect();
    assert!(unreceipted.is_empty(), "{} acked messages never got their `acked` receipt, e.g. {:?}", unreceipted.len(), unreceipted.first());
    let doubled: Vec<(&String, &u32)> = answers.acked.iter().filter(|(_, c)| **c > 1).collect();
    assert!(doubled.is_empty(), "{} `acked` receipts came twice, e.g. {:?}", doubled.len(), doubled.first());
}

/// The state of `room:<name>` in `/admin/supervisors`, if it is there.
async fn room_node(server: &Server, name: &str) -> Option<Value> {
    let (_, tree) = server.get("/admin/supervisors").await;
    let rooms = tree["children"].as_array()?.iter().find(|c| c["name"] == "rooms")?.clone();
    rooms["children"].as_array()?.iter().find(|c| c["name"] == format!("room:{name}").as_str()).cloned()
}

#[tokio::test]
async fn a_room_beyond_its_restart_intensity_takes_readiness_down() {
    let server = Server::start(&["--enable-fault-injection", "--max-restarts", "1", "--restart-window-s", "60"]);
    let (status, body) = server.post("/api/call", &json!({"method": "room.create", "from": "alice", "params": {"name": "lab"}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.get("/health/ready").await.0, 200);

    fault(&server, "room:lab").await;
    common::eventually("the first restart", || async {
        room_node(&server, "lab").await.filter(|n| n["restarts"] == 1 && n["state"] == "running")
    })
    .await;
    assert_eq!(server.get("/health/ready").await.0, 200, "a restarted room is ready again");
    fault(&server, "room:lab").await;
    common::eventually("the escalation", || async { room_node(&server, "lab").await.filter(|n| n["state"] == "failed") }).await;

    let (status, body) = server.post("/api/call", &json!({"method": "board.list", "from": "alice", "params": {"room": "lab"}})).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")), "{body}");
    let (status, ready) = server.get("/health/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["checks"]["supervisors"]["failed"], json!(["room:lab"]), "{ready}");
    assert_eq!(server.get("/health").await.0, 503, "the summary agrees");
    assert_eq!(server.get("/health/live").await.0, 200, "the process is alive and serves the rest");
    // Issue 11: restarts and escalations are counted by kind; no room name becomes a series.
    let metrics = reqwest::get(server.http("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("bridge_actor_restarts_total{actor=\"room\"} 1"), "{metrics}");
    assert!(metrics.contains("bridge_actor_escalations_total{actor=\"room\"} 1"), "{metrics}");
    // (`unavailable`, a code, contains the letters: look for the name as a label value.)
    assert!(!metrics.contains("\"lab\"") && !metrics.contains("room:lab"), "a room name in /metrics after an escalation:\n{metrics}");
    let mut bob = Ws::connect(&server, "bob").await;
    let (status, body) = server.post("/api/send", &json!({"from": "alice", "to": "bob", "type": "t", "payload": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(bob.recv_msg().await["payload"], 1);
}
