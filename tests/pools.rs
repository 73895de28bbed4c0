//! Pools (issue 14): WebSocket agents register with a pool, and messages to `pool:<name>` reach
//! one healthy member, per the pool's strategy, switched at run time; a member that drops (or
//! misses its acks) has its unacked `require_ack` messages delivered by another member; an empty
//! pool answers `pool_empty`, a pool nobody ever joined `unknown_recipient`.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{Endpoint, InProcess, Ws};
use serde_json::{json, Value};

/// Makes a call over the socket and returns its result (panics on an error result).
async fn call(ws: &mut Ws, method: &str, params: Value) -> Value {
    let r = format!("c-{method}");
    ws.send(json!({"type": "call", "ref": r, "method": method, "params": params})).await;
    loop {
        let f = ws.recv().await;
        if f["type"] == "result" && f["ref"] == r.as_str() {
            assert_eq!(f["ok"], true, "{method}: {f}");
            return f["result"].clone();
        }
    }
}

/// Connects `id` and registers it with `pool`.
async fn member(server: &Endpoint, id: &str, pool: &str, weight: u32) -> Ws {
    let mut ws = Ws::connect(server, id).await;
    let agent = call(&mut ws, "agent.register", json!({"pools": [pool], "capabilities": ["work"], "weight": weight})).await;
    assert_eq!((agent["client_id"].as_str(), agent["online"].as_bool()), (Some(id), Some(true)), "{agent}");
    ws
}

/// Every message frame a socket gets until it is quiet for `quiet`; acks each when `ack`.
async fn drain(ws: &mut Ws, quiet: Duration, ack: bool) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(f) = ws.try_recv(quiet).await {
        if f["type"] == "message" {
            if ack && f["message"]["requires_ack"] == true {
                ws.send(json!({"type": "ack", "message_id": f["message"]["id"]})).await;
            }
            got.push(f["message"].clone());
        }
    }
    got
}

/// Sends `n` messages to `to` through the socket, a window of `sent` replies at a time; returns
/// their message ids.
async fn send_n(ws: &mut Ws, to: &str, n: usize, extra: Value) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut frame = json!({"type": "send", "to": to, "msg_type": "job", "payload": {"n": i}, "ref": format!("s{i}")});
        for (k, v) in extra.as_object().expect("an object") {
            frame[k] = v.clone();
        }
        ws.send(frame).await;
    }
    while ids.len() < n {
        let f = ws.recv().await;
        assert_ne!(f["type"], "error", "{f}");
        if f["type"] == "sent" {
            ids.push(f["message_id"].as_str().expect("an id").to_owned());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly_and_the_strategy_switches_at_run_time() {
    let server = InProcess::with_args(&[]);
    let mut members = Vec::new();
    for i in 0..4 {
        members.push(member(&server, &format!("w{i}"), "workers", 1).await);
    }
    let mut sender = Ws::connect(&server, "boss").await;
    send_n(&mut sender, "pool:workers", 1000, json!({})).await;
    let mut counts = Vec::new();
    for m in &mut members {
        let got = drain(m, Duration::from_millis(500), false).await;
        assert!(got.iter().all(|msg| msg["from"] == "boss"), "{got:?}");
        counts.push(got.len());
    }
    assert_eq!(counts, [250, 250, 250, 250], "round robin gives each member a quarter of 1,000");

    // Sticky, switched at run time (over HTTP): one key stays on one member.
    let (status, v) = server.post("/api/call", &json!({"method": "pool.configure", "from": "boss", "params": {"pool": "workers", "strategy": "sticky"}})).await;
    assert_eq!((status, v["result"]["strategy"].as_str()), (200, Some("sticky")), "{v}");
    send_n(&mut sender, "pool:workers", 1000, json!({"correlation_id": "conversation-7"})).await;
    let mut holders = Vec::new();
    for m in &mut members {
        let got = drain(m, Duration::from_millis(300), false).await;
        if !got.is_empty() {
            holders.push(got.len());
        }
    }
    assert_eq!(holders, [1000], "sticky keeps the key on one member");

    let pools = call(&mut sender, "pool.list", json!({})).await;
    let pool = &pools["pools"][0];
    assert_eq!((pool["pool"].as_str(), pool["strategy"].as_str()), (Some("workers"), Some("sticky")), "{pools}");
    assert_eq!(pool["members"].as_array().map(Vec::len), Some(4), "{pools}");
    let listed = call(&mut sender, "agent.list", json!({"pool": "workers", "capability": "work"})).await;
    assert_eq!(listed["count"], 4, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_mid_stream_has_its_unacked_messages_delivered_by_another() {
    // Acks time out late: what moves the messages here is the disconnect.
    let server = InProcess::with_args(&["--ack-timeout-s", "60"]);
    let mut a = member(&server, "a", "crew", 1).await;
    let mut b = member(&server, "b", "crew", 1).await;
    let mut c = member(&server, "c", "crew", 1).await;
    let mut sender = Ws::connect(&server, "boss").await;
    let mut ids = send_n(&mut sender, "pool:crew", 60, json!({"require_ack": true})).await;
    // a reads its share and acks nothing, then dies.
    let took = drain(&mut a, Duration::from_millis(500), false).await;
    assert_eq!(took.len(), 20, "a got its third");
    drop(a);
    ids.extend(send_n(&mut sender, "pool:crew", 60, json!({"require_ack": true})).await);

    let mut acked: HashMap<String, &str> = HashMap::new();
    for _ in 0..20 {
        for (name, ws) in [("b", &mut b), ("c", &mut c)] {
            for msg in drain(ws, Duration::from_millis(200), true).await {
                acked.insert(msg["id"].as_str().expect("id").to_owned(), name);
            }
        }
        if acked.len() == ids.len() {
            break;
        }
    }
    let missing: Vec<&String> = ids.iter().filter(|id| !acked.contains_key(*id)).collect();
    assert!(missing.is_empty(), "every message was delivered by b or c (same ids); missing {missing:?}");
    let taken_over: HashSet<&str> = took.iter().map(|m| m["id"].as_str().expect("id")).collect();
    assert!(taken_over.iter().all(|id| acked.contains_key(*id)), "a's unacked messages failed over");

    // The sender hears `acked` for every one of them.
    let mut receipts = HashSet::new();
    while receipts.len() < ids.len() {
        let f = sender.recv_type("receipt").await;
        if f["status"] == "acked" {
            receipts.insert(f["message_id"].as_str().expect("id").to_owned());
        }
    }
    let offline = call(&mut sender, "agent.list", json!({"status": "offline"})).await;
    assert_eq!(offline["agents"][0]["client_id"], "a", "{offline}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_acks_fail_over_and_open_the_members_circuit() {
    let server = InProcess::with_args(&["--ack-timeout-s", "0.3"]);
    let mut lazy = member(&server, "lazy", "crew", 1).await;
    let mut good = member(&server, "good", "crew", 1).await;
    let mut sender = Ws::connect(&server, "boss").await;
    let ids = send_n(&mut sender, "pool:crew", 10, json!({"require_ack": true})).await;
    let mut acked = HashSet::new();
    for _ in 0..30 {
        drain(&mut lazy, Duration::from_millis(50), false).await;
        for msg in drain(&mut good, Duration::from_millis(100), true).await {
            acked.insert(msg["id"].as_str().expect("id").to_owned());
        }
        if acked.len() == ids.len() {
            break;
        }
    }
    assert_eq!(acked.len(), ids.len(), "good acked every message, lazy's after they timed out");
    let pools = call(&mut sender, "pool.list", json!({})).await;
    assert_eq!(pools["pools"][0]["open"], json!(["lazy"]), "three misses open the circuit: {pools}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_pool_answers_pool_empty_and_an_unknown_one_unknown_recipient() {
    let server = InProcess::with_args(&[]);
    let mut sender = Ws::connect(&server, "boss").await;
    sender.send(json!({"type": "send", "to": "pool:nobody", "msg_type": "job", "payload": 1, "ref": "x"})).await;
    let f = sender.recv_type("error").await;
    assert_eq!((f["code"].as_str(), f["ref"].as_str()), (Some("unknown_recipient"), Some("x")), "{f}");

    let solo = member(&server, "solo", "lonely", 1).await;
    drop(solo);
    common::eventually("solo offline", || async {
        let (_, v) = server.get("/api/call?method=agent.list&from=boss&params=%7B%22status%22%3A%22offline%22%7D").await;
        (v["result"]["count"] == 1).then_some(())
    })
    .await;
    sender.send(json!({"type": "send", "to": "pool:lonely", "msg_type": "job", "payload": 1, "ref": "y"})).await;
    let f = sender.recv_type("error").await;
    assert_eq!((f["code"].as_str(), f["ref"].as_str()), (Some("pool_empty"), Some("y")), "{f}");
    let (status, v) = server.post("/api/send", &json!({"from": "boss", "to": "pool:lonely", "type": "job", "payload": 1})).await;
    assert_eq!((status, v["code"].as_str()), (503, Some("pool_empty")), "{v}");
}

/// A webhook receiver on 127.0.0.1: the JSON body of every request, answered 200.
async fn receiver() -> (u16, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = conn.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some(end) = text.find("\r\n\r\n") else { continue };
                    let length = text[..end]
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        let body = &buf[end + 4..end + 4 + length];
                        if let Ok(v) = serde_json::from_slice::<Value>(body) {
                            let _ = tx.send(v);
                        }
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_goes_offline_when_its_sessions_drop_and_stuck_when_working_without_progress() {
    let server = InProcess::with_args(&["--agent-stuck-after-s", "0.5"]);
    let (port, mut events) = receiver().await;
    let (status, v) = server.post("/admin/webhooks", &json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["agent_status"]})).await;
    assert_eq!(status, 201, "{v}");
    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> (String, Value) {
        let e = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("an agent_status event within 10 s").expect("receiver");
        assert_eq!(e["event"], "agent_status", "{e}");
        (e["data"]["status"].as_str().unwrap_or("?").to_owned(), e["data"]["detail"].clone())
    }

    let mut one = member(&server, "solver", "crew", 1).await;
    let mut two = Ws::connect(&server, "solver").await;
    assert_eq!(next(&mut events).await.0, "idle", "registered");
    call(&mut one, "agent.status", json!({"status": "working", "detail": "step 1"})).await;
    assert_eq!(next(&mut events).await.0, "working");
    let (stuck, detail) = next(&mut events).await;
    assert_eq!(stuck, "stuck", "no progress for 0.5 s");
    assert!(detail.as_str().is_some_and(|d| d.contains("no progress")), "{detail}");
    let listed = call(&mut one, "agent.list", json!({"status": "stuck"})).await;
    assert_eq!(listed["agents"][0]["client_id"], "solver", "{listed}");

    // One of two sessions closing changes nothing; the last one makes it offline.
    drop(one);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v) = server.get("/api/call?method=agent.list&from=x").await;
    assert_eq!(v["result"]["agents"][0]["online"], true, "{v}");
    drop(two.stream.close(None).await);
    assert_eq!(next(&mut events).await.0, "offline");
    let (_, v) = server.get("/api/call?method=agent.list&from=x").await;
    assert_eq!((v["result"]["agents"][0]["status"].as_str(), v["result"]["agents"][0]["online"].as_bool()), (Some("offline"), Some(false)), "{v}");
    let (_, v) = server.post("/api/call", &json!({"method": "agent.status", "from": "solver", "params": {"status": "offline"}})).await;
    assert_eq!(v["code"], "invalid_params", "offline is the broker's: {v}");
}

/// Acks every message a socket got until it was quiet for `quiet`, each `delay` after it came.
async fn ack_after(ws: &mut Ws, quiet: Duration, delay: Duration) -> usize {
    let mut n = 0;
    while let Some(f) = ws.try_recv(quiet).await {
        if f["type"] == "message" {
            tokio::time::sleep(delay).await;
            ws.send(json!({"type": "ack", "message_id": f["message"]["id"]})).await;
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_random_least_loaded_and_fastest_distribute_as_their_names_promise() {
    let server = InProcess::with_args(&[]);
    let mut sender = Ws::connect(&server, "boss").await;

    // weighted: 1 : 1 : 2, over 1,000 messages, each share within 5 points.
    let mut ws = Vec::new();
    for (i, w) in [1, 1, 2].into_iter().enumerate() {
        ws.push(member(&server, &format!("wt{i}"), "weighted", w).await);
    }
    call(&mut sender, "pool.configure", json!({"pool": "weighted", "strategy": "weighted"})).await;
    send_n(&mut sender, "pool:weighted", 1000, json!({})).await;
    let mut shares = Vec::new();
    for m in &mut ws {
        shares.push(drain(m, Duration::from_millis(300), false).await.len() as f64 / 1000.0);
    }
    for (share, want) in shares.iter().zip([0.25, 0.25, 0.5]) {
        assert!((share - want).abs() < 0.05, "weighted shares {shares:?}");
    }

    // random: every member gets a fair part.
    call(&mut sender, "pool.configure", json!({"pool": "weighted", "strategy": "random"})).await;
    send_n(&mut sender, "pool:weighted", 1000, json!({})).await;
    for m in &mut ws {
        let n = drain(m, Duration::from_millis(300), false).await.len();
        assert!((200..=470).contains(&n), "random gave one member {n} of 1000");
    }

    // least_loaded: a member that acks nothing gets little once its unacked messages pile up.
    let mut busy = member(&server, "busy", "loaded", 1).await;
    let mut idle = member(&server, "idle", "loaded", 1).await;
    call(&mut sender, "pool.configure", json!({"pool": "loaded", "strategy": "least_loaded"})).await;
    let (mut to_busy, mut to_idle) = (0, 0);
    for _ in 0..50 {
        send_n(&mut sender, "pool:loaded", 20, json!({"require_ack": true})).await;
        to_idle += ack_after(&mut idle, Duration::from_millis(30), Duration::ZERO).await;
        to_busy += drain(&mut busy, Duration::from_millis(5), false).await.len();
    }
    to_busy += drain(&mut busy, Duration::from_millis(100), false).await.len();
    assert_eq!(to_busy + to_idle, 1000);
    assert!(to_idle > 3 * to_busy, "least_loaded: idle {to_idle}, busy {to_busy}");

    // fastest: a member that acks at once beats one that takes 20 ms.
    let mut slow = member(&server, "slow", "quick", 1).await;
    let mut fast = member(&server, "fast", "quick", 1).await;
    call(&mut sender, "pool.configure", json!({"pool": "quick", "strategy": "fastest"})).await;
    let (mut to_slow, mut to_fast) = (0, 0);
    for _ in 0..50 {
        send_n(&mut sender, "pool:quick", 20, json!({"require_ack": true})).await;
        to_slow += ack_after(&mut slow, Duration::from_millis(30), Duration::from_millis(20)).await;
        to_fast += ack_after(&mut fast, Duration::from_millis(30), Duration::ZERO).await;
    }
    assert_eq!(to_slow + to_fast, 1000);
    assert!(to_fast > 4 * to_slow, "fastest: fast {to_fast}, slow {to_slow}");
    let pools = call(&mut sender, "pool.list", json!({})).await;
    let quick = pools["pools"].as_array().and_then(|p| p.iter().find(|p| p["pool"] == "quick")).cloned().expect("quick listed");
    assert!(quick["members"].as_array().is_some_and(|m| m.iter().all(|m| m["latency_ms"].is_number())), "{quick}");
}

/// The node `name` anywhere in the supervision tree.
fn node<'a>(tree: &'a Value, name: &str) -> Option<&'a Value> {
    if tree["name"] == name {
        return Some(tree);
    }
    tree["children"].as_array()?.iter().find_map(|c| node(c, name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_balancer_is_restarted_under_the_registry_and_keeps_its_pool() {
    let server = InProcess::with_args(&["--enable-fault-injection"]);
    let mut one = member(&server, "one", "crew", 1).await;
    let mut two = member(&server, "two", "crew", 1).await;
    let (status, body) = server.post("/admin/fault", &json!({"actor": "pool:crew"})).await;
    assert_eq!(status, 202, "{body}");
    let tree = common::eventually("the balancer's restart", || async {
        let (_, tree) = server.get("/admin/supervisors").await;
        node(&tree, "pool:crew").is_some_and(|n| n["restarts"] == 1 && n["state"] == "running").then_some(tree)
    })
    .await;
    assert!(node(&tree, "agents").and_then(|a| node(a, "pool:crew")).is_some(), "the balancer hangs under agents: {tree}");
    let mut sender = Ws::connect(&server, "boss").await;
    send_n(&mut sender, "pool:crew", 10, json!({})).await;
    let counts = [drain(&mut one, Duration::from_millis(300), false).await.len(), drain(&mut two, Duration::from_millis(300), false).await.len()];
    assert_eq!(counts, [5, 5], "the restarted balancer kept its members and its turn");
}
