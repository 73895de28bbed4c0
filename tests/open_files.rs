//! A broker under a low open-file limit: it says at start that max_connections does not fit and
//! what it uses instead, refuses WebSocket and SSE connections past that with a clean 429
//! `too_many_connections` (not a timeout, not "Too many open files" in its log), keeps answering
//! plain HTTP, and the connections it has keep working.

mod common;

use std::process::Command;

use common::{Server, Ws};
use serde_json::json;

/// Both soft and hard: the broker cannot raise it.
const OPEN_FILES: u32 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_open_file_limit_new_connections_are_refused_and_old_ones_keep_working() {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={OPEN_FILES}:{OPEN_FILES}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_agent-bridge"))
        .args(["serve", "--in-memory", "--bind", "127.0.0.1:0", "--workers", "1", "--shards", "1"]);
    let server = Server::spawn(cmd);
    let logs = server.wait_log("does not fit the open-file limit").await;
    let effective: usize = logs
        .split("effective_max_connections=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the warning gives the effective limit:\n{logs}"));
    assert!((8..OPEN_FILES as usize / 2).contains(&effective), "{effective} connections under {OPEN_FILES} files");

    let mut open = Vec::new();
    for i in 0..effective {
        open.push(Ws::connect(&server, &format!("agent-{i}")).await);
    }
    // One more: a WebSocket upgrade and an SSE stream are refused at once, saying why.
    match tokio_tungstenite::connect_async(server.ws_url("one-too-many", "")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 429),
        other => panic!("a WebSocket past the limit is refused with 429: {:?}", other.map(|_| ())),
    }
    let r = reqwest::get(server.http("/stream/events?client_id=sse-too-many")).await.expect("GET /stream/events");
    assert_eq!(r.status().as_u16(), 429);
    let body: serde_json::Value = r.json().await.expect("JSON error");
    assert_eq!(body["code"], "too_many_connections", "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains(&format!("limit of {effective} connections"))), "{body}");
    // Plain HTTP (the probes) still answers at the limit.
    let (code, body) = server.get("/health/ready").await;
    assert_eq!(code, 200, "{body}");

    // The connections opened before still work: a ping and a send between two of them.
    let (first, rest) = open.split_first_mut().expect("connections");
    first.send(json!({"type": "ping"})).await;
    assert_eq!(first.recv_type("pong").await["type"], "pong");
    let sent = first.send_msg("agent-1", "note", json!({"hello": 1})).await;
    assert_eq!(sent["type"], "sent");
    assert_eq!(rest[0].recv_msg().await["payload"]["hello"], 1);

    // Closing one frees its place.
    drop(open.pop());
    common::eventually("a freed place is usable again", || async {
        tokio_tungstenite::connect_async(server.ws_url("late", "")).await.ok().map(|_| ())
    })
    .await;
    assert!(!server.logs().contains("Too many open files"), "{}", server.logs());
}
