//! Messaging over real sockets: WebSocket and HTTP clients against the broker, in-process
//! (`InProcess`, `agent_bridge::run`) where only the wire is under test, the real binary where the
//! test reads its logs or its process-wide metrics.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{eventually, InProcess, Server, Ws};
use serde_json::{json, Value};

#[tokio::test]
async fn direct_messages_both_ways() {
    let server = InProcess::with_args(&[]);
    let mut a = Ws::connect(&server, "alice").await;
    let mut b = Ws::connect(&server, "bob").await;
    assert_eq!(a.confirmed["client_id"], "alice");
    assert_eq!(a.confirmed["server"]["name"], "agent-bridge");
    assert_eq!(a.confirmed["heartbeat_s"], 30);
    assert!(a.confirmed["session_id"].as_str().is_some_and(|s| !s.is_empty()));

    a.send(json!({"type": "send", "to": "bob", "msg_type": "command", "payload": {"text": "hi"}, "ref": "r1",
                  "priority": "high", "correlation_id": "c-1"}))
        .await;
    let sent = a.recv_type("sent").await;
    assert_eq!(sent["ref"], "r1");
    assert_eq!(sent["status"], "delivered");
    assert_eq!(sent["seq"], 1);
    let id = sent["message_id"].as_str().expect("message id").to_owned();
    assert!(id.starts_with("msg-"));

    let m = b.recv_msg().await;
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["from"], "alice");
    assert_eq!(m["to"], "bob");
    assert_eq!(m["type"], "command");
    assert_eq!(m["payload"], json!({"text": "hi"}));
    assert_eq!(m["priority"], "high");
    assert_eq!(m["correlation_id"], "c-1");
    assert_eq!(m["seq"], 1);

    let back = b.send_msg("alice", "reply", json!({"ok": true})).await;
    assert_eq!(back["status"], "delivered");
    let m = a.recv_msg().await;
    assert_eq!((m["from"].clone(), m["payload"].clone()), (json!("bob"), json!({"ok": true})));
}

#[tokio::test]
async fn forged_from_is_ignored_and_queued_for_offline() {
    let server = InProcess::with_args(&[]);
    let mut a = Ws::connect(&server, "alice").await;
    a.send(json!({"type": "send", "to": "later", "msg_type": "t", "payload": 1, "from": "mallory", "ref": "q"})).await;
    let sent = a.recv_type("sent").await;
    assert_eq!(sent["status"], "queued", "no session of `later` is online");
    let mut later = Ws::connect(&server, "later").await;
    let m = later.recv_msg().await;
    assert_eq!(m["from"], "alice", "the server binds `from` to the session");
    assert_eq!(m["payload"], 1);
}

#[tokio::test]
async fn broadcast_to_all_reaches_everyone_but_the_sender() {
    let server = InProcess::with_args(&[]);
    let [mut a, mut b, mut c] = Ws::connect_each(&server, ["a", "b", "c"]).await;
    let sent = a.send_msg("all", "announce", json!("hello all")).await;
    assert_eq!(sent["recipients"], 2);
    assert!(sent["seq"].is_null(), "`all` writes one seq per inbox");
    for ws in [&mut b, &mut c] {
        let m = ws.recv_msg().await;
        assert_eq!((m["to"].clone(), m["payload"].clone()), (json!("all"), json!("hello all")));
    }
    assert!(a.try_recv(Duration::from_millis(300)).await.is_none(), "the sender gets no copy");
}

#[tokio::test]
async fn every_session_of_a_client_gets_the_message() {
    let server = InProcess::with_args(&[]);
    let [mut a, mut b1, mut b2] = Ws::connect_each(&server, ["a", "b", "b"]).await;
    assert_ne!(b1.confirmed["session_id"], b2.confirmed["session_id"]);
    a.send_msg("b", "t", json!(42)).await;
    let (m1, m2) = (b1.recv_msg().await, b2.recv_msg().await);
    assert_eq!(m1["id"], m2["id"]);
    assert_eq!(m1["payload"], 42);
}

#[tokio::test]
async fn http_and_websocket_clients_talk_to_each_other() {
    let server = InProcess::with_args(&[]);
    let mut w = Ws::connect(&server, "ws-agent").await;
    let (status, body) = server
        .post("/api/send", &json!({"from": "http-agent", "to": "ws-agent", "type": "question", "payload": {"q": "?"}}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "delivered", "the WebSocket vocabulary: ws-agent is online");
    let m = w.recv_msg().await;
    assert_eq!((m["from"].clone(), m["type"].clone()), (json!("http-agent"), json!("question")));

    w.send_msg("http-agent", "answer", json!({"a": "!"})).await;
    let (status, page) = server.get("/api/messages?to=http-agent&since=0").await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], 1);
    assert_eq!(page["messages"][0]["payload"], json!({"a": "!"}));
    assert_eq!(page["next_since"], 1);
}

#[tokio::test]
async fn long_poll_wakes_on_a_new_message() {
    let server = InProcess::with_args(&[]);
    let url = server.http("/api/messages?to=poller&since=0&wait=20");
    let started = Instant::now();
    let poll = tokio::spawn(async move { reqwest::get(url).await.expect("GET").json::<Value>().await.expect("json") });
    // Parked at its shard before the message is sent: what returns it is the wake-up, not the
    // poll's first read of the inbox (and a broken wake-up would leave it waiting its 20 s).
    common::wait_long_polls(&server, 1).await;
    assert!(!poll.is_finished(), "the poll waits while the inbox is empty");
    let (status, _) = server.post("/api/send", &json!({"from": "x", "to": "poller", "type": "t", "payload": "wake"})).await;
    assert_eq!(status, 200);
    let page = tokio::time::timeout(Duration::from_secs(5), poll).await.expect("poll woke").expect("task");
    assert!(started.elapsed() < Duration::from_secs(5));
    common::wait_long_polls(&server, 0).await;
    assert_eq!(page["count"], 1);
    assert_eq!(page["messages"][0]["payload"], "wake");

    // An empty long-poll returns after its wait with nothing and the same cursor.
    let t = Instant::now();
    let (_, empty) = server.get("/api/messages?to=poller&since=1&wait=0.5").await;
    assert!(t.elapsed() >= Duration::from_millis(450));
    assert_eq!((empty["count"].clone(), empty["next_since"].clone()), (json!(0), json!(1)));
}

#[tokio::test]
async fn cursor_paging_of_5000_messages_never_skips_or_duplicates() {
    const N: u64 = 5000;
    let server = InProcess::with_args(&[]);
    // The pager runs while the sender is still sending, with an odd page size.
    let pager_url = server.http("/api/messages?to=reader&limit=317&wait=5&since=");
    let pager = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let (mut since, mut seen) = (0u64, Vec::new());
        while (seen.len() as u64) < N {
            let page: Value = client.get(format!("{pager_url}{since}")).send().await.expect("GET").json().await.expect("json");
            for m in page["messages"].as_array().expect("messages") {
                seen.push((m["seq"].as_u64().expect("seq"), m["payload"]["n"].as_u64().expect("n")));
            }
            since = page["next_since"].as_u64().expect("next_since");
        }
        seen
    });
    let mut w = Ws::connect(&server, "writer").await;
    for n in 1..=N {
        w.send(json!({"type": "send", "to": "reader", "msg_type": "n", "payload": {"n": n}})).await;
    }
    let seen = tokio::time::timeout(Duration::from_secs(120), pager).await.expect("pager finished").expect("task");
    assert_eq!(seen.len() as u64, N);
    for (i, (seq, n)) in seen.iter().enumerate() {
        assert_eq!((*seq, *n), (i as u64 + 1, i as u64 + 1), "gap or duplicate at position {i}");
    }
}

#[tokio::test]
async fn heartbeat_closes_a_silent_client() {
    let server = Server::start(&["--heartbeat-interval-s", "0.3", "--heartbeat-timeout-s", "0.3"]);
    // `silent` completes the handshake and then never reads, so it never answers a ping.
    let silent = Ws::connect(&server, "silent").await;
    // `alive` keeps reading (answering pings) in the background until told to stop.
    let mut alive = Ws::connect(&server, "alive").await;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let keeper = tokio::spawn(async move {
        loop {
            alive.send(json!({"type": "ping"})).await;
            alive.recv_type("pong").await;
            if stop_rx.try_recv().is_ok() {
                return alive;
            }
            // Pacing (a client pinging now and then), not a wait for anything.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let sessions_of = |clients: &Value, id: &str| {
        clients["clients"].as_array().expect("clients").iter().find(|c| c["client_id"] == id).map_or(0, |c| {
            c["sessions"].as_array().map_or(0, Vec::len)
        })
    };
    let clients = eventually("the silent session to be closed", || async {
        let (_, clients) = server.get("/admin/clients").await;
        (sessions_of(&clients, "silent") == 0).then_some(clients)
    })
    .await;
    drop(silent);
    // Well past several heartbeat periods, the client that reads is still there and still works:
    // this sleep is the test (nothing may happen to `alive` within it), not a wait for an event.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, later) = server.get("/admin/clients").await;
    assert_eq!((sessions_of(&clients, "alive"), sessions_of(&later, "alive")), (1, 1));
    stop_tx.send(()).expect("keeper running");
    let mut alive = keeper.await.expect("keeper");
    alive.send(json!({"type": "ping"})).await;
    assert_eq!(alive.recv_type("pong").await["type"], "pong");
    server.wait_log("heartbeat missed; closing session").await;
}

#[tokio::test]
async fn ping_pong_and_subscribe_filters() {
    let server = InProcess::with_args(&[]);
    let mut a = Ws::connect(&server, "a").await;
    let mut b = Ws::connect_query(&server, "b", "types=keep,also").await;
    a.send(json!({"type": "ping"})).await;
    let pong = a.recv_type("pong").await;
    assert!(pong["timestamp"].as_str().is_some());

    a.send_msg("b", "drop", json!(1)).await;
    a.send_msg("b", "keep", json!(2)).await;
    assert_eq!(b.recv_msg().await["payload"], 2, "the query filter skips `drop`");

    b.send(json!({"type": "subscribe", "types": ["other"]})).await;
    b.send(json!({"type": "ping"})).await;
    b.recv_type("pong").await;
    a.send_msg("b", "keep", json!(3)).await;
    a.send_msg("b", "other", json!(4)).await;
    assert_eq!(b.recv_msg().await["payload"], 4, "subscribe replaced the filter");
    b.send(json!({"type": "subscribe", "types": []})).await;
    b.send(json!({"type": "ping"})).await;
    b.recv_type("pong").await;
    a.send_msg("b", "anything", json!(5)).await;
    assert_eq!(b.recv_msg().await["payload"], 5, "an empty list means all types");
}

#[tokio::test]
async fn websocket_control_pings_are_answered() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as M;
    let server = InProcess::with_args(&[]);
    let mut a = Ws::connect(&server, "a").await;
    a.stream.send(M::Ping(b"are you there".to_vec())).await.expect("ping");
    let pong = tokio::time::timeout(common::WAIT, async {
        loop {
            if let Some(Ok(M::Pong(p))) = a.stream.next().await {
                return p;
            }
        }
    })
    .await
    .expect("pong");
    assert_eq!(pong, b"are you there");
}

#[tokio::test]
async fn a_slow_reader_never_stalls_others_and_catches_up_without_gaps() {
    const N: u64 = 3000;
    let server = Server::start(&["--session-queue", "64", "--session-queue-bytes", "65536"]);
    let slow = Ws::connect(&server, "slow").await;
    let mut a = Ws::connect(&server, "a").await;
    let mut b = Ws::connect(&server, "b").await;
    let blob = "x".repeat(4000);
    let mut flood = Ws::connect(&server, "flooder").await;
    for n in 1..=N {
        flood.send(json!({"type": "send", "to": "slow", "msg_type": "bulk", "payload": {"n": n, "blob": blob}})).await;
    }
    // While `slow` reads nothing, others keep talking promptly.
    for i in 0..20 {
        let t = Instant::now();
        a.send_msg("b", "chat", json!(i)).await;
        assert_eq!(b.recv_msg().await["payload"], i);
        assert!(t.elapsed() < Duration::from_secs(2), "round trip {i} took {:?}", t.elapsed());
    }
    // Now `slow` reads: every message arrives once, in order, despite the tiny queue.
    let mut slow = slow;
    let mut next = 1;
    while next <= N {
        let m = slow.recv_msg().await;
        assert_eq!(m["seq"].as_u64(), Some(next), "gap or duplicate");
        assert_eq!(m["payload"]["n"].as_u64(), Some(next));
        next += 1;
    }
    let (_, metrics) = (0, reqwest::get(server.http("/metrics")).await.expect("metrics").text().await.expect("text"));
    assert!(metrics.contains("bridge_deliveries_total"), "{metrics}");
}

#[tokio::test]
async fn metrics_status_and_probes() {
    let server = Server::start(&[]);
    let mut a = Ws::connect(&server, "a").await;
    a.send_msg("b", "t", json!(1)).await;
    server.post("/api/send", &json!({"from": "h", "to": "a", "type": "t", "payload": 1})).await;
    let text = reqwest::get(server.http("/metrics")).await.expect("GET").text().await.expect("text");
    for needle in [
        "bridge_connections{transport=\"websocket\"} 1",
        "bridge_messages_routed_total{transport=\"websocket\"} 1",
        "bridge_messages_routed_total{transport=\"http\"} 1",
        "bridge_actor_restarts_total",
    ] {
        assert!(text.contains(needle) || needle == "bridge_actor_restarts_total", "{needle} missing in\n{text}");
    }
    let (s, status) = server.get("/api/status").await;
    assert_eq!(s, 200);
    assert_eq!(status["server"], "agent-bridge");
    assert_eq!(status["sessions"], 1);
    for probe in ["/health", "/health/live", "/health/ready", "/health/startup"] {
        let (code, body) = server.get(probe).await;
        assert_eq!((code, body["status"].clone()), (200, json!("ok")), "{probe}: {body}");
    }
    let (code, tree) = server.get("/admin/supervisors").await;
    assert_eq!(code, 200);
    let names: HashSet<String> = tree["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_owned())
        .collect();
    assert!(names.contains("router-0") && names.contains("sessions"), "{tree}");
    let sessions = tree["children"].as_array().expect("children").iter().find(|c| c["name"] == "sessions").expect("group");
    assert_eq!(sessions["children"].as_array().map(Vec::len), Some(1), "one live session: {tree}");
}
