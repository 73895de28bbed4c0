//! Threads over HTTP (in-process broker): a three-message thread between alice and bob plus a room
//! message in the same thread, `thread.get` filtered by who may read what, and `room.history`
//! filtered by thread.

mod common;

use common::{Endpoint, InProcess};
use serde_json::{json, Value};

async fn send(server: &Endpoint, body: Value) {
    let (status, answer) = server.post("/api/send", &body).await;
    assert_eq!(status, 200, "{body} -> {answer}");
}

async fn call(server: &Endpoint, from: &str, method: &str, params: Value) -> (u16, Value) {
    server.post("/api/call", &json!({"method": method, "from": from, "params": params})).await
}

/// The payload texts of a thread as `from` sees it.
async fn thread(server: &Endpoint, from: &str, id: &str) -> Vec<String> {
    let (status, answer) = call(server, from, "thread.get", json!({"thread_id": id})).await;
    assert_eq!(status, 200, "{answer}");
    let msgs = answer["result"]["messages"].as_array().cloned().unwrap_or_default();
    msgs.iter().map(|m| m["payload"]["text"].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test]
async fn a_thread_spans_inboxes_and_rooms_and_shows_only_what_the_caller_may_read() {
    let server = InProcess::with_args(&[]);
    let (status, created) = call(&server, "alice", "room.create", json!({"name": "lab"})).await;
    assert_eq!(status, 200, "{created}");
    let (status, created) = call(&server, "alice", "room.create", json!({"name": "secret", "private": true})).await;
    assert_eq!(status, 200, "{created}");
    send(&server, json!({"from": "alice", "to": "bob", "type": "q", "payload": {"text": "1"}, "thread_id": "t-1"})).await;
    send(&server, json!({"from": "bob", "to": "alice", "type": "a", "payload": {"text": "2"}, "thread_id": "t-1"})).await;
    send(&server, json!({"from": "alice", "to": "bob", "type": "q", "payload": {"text": "3"}, "thread_id": "t-1"})).await;
    send(&server, json!({"from": "alice", "to": "carol", "type": "q", "payload": {"text": "other"}, "thread_id": "t-2"})).await;
    send(&server, json!({"from": "alice", "room": "lab", "type": "n", "payload": {"text": "lab"}, "thread_id": "t-1"})).await;
    send(&server, json!({"from": "alice", "room": "secret", "type": "n", "payload": {"text": "hidden"}, "thread_id": "t-1"})).await;

    assert_eq!(thread(&server, "alice", "t-1").await, ["1", "2", "3", "lab", "hidden"], "the sender sees all, in order");
    assert_eq!(thread(&server, "bob", "t-1").await, ["1", "2", "3"], "bob is in no room");
    assert!(thread(&server, "carol", "t-1").await.is_empty(), "carol sees nothing of alice and bob");
    assert_eq!(thread(&server, "carol", "t-2").await, ["other"]);

    let (status, page) = call(&server, "alice", "thread.get", json!({"thread_id": "t-1", "limit": 2})).await;
    assert_eq!((status, page["result"]["count"].as_u64()), (200, Some(2)), "{page}");
    let cursor = page["result"]["next_cursor"].as_str().expect("a next page").to_owned();
    let (_, rest) = call(&server, "alice", "thread.get", json!({"thread_id": "t-1", "cursor": cursor})).await;
    assert_eq!(rest["result"]["count"].as_u64(), Some(3), "{rest}");

    send(&server, json!({"from": "alice", "room": "lab", "type": "n", "payload": {"text": "off"}})).await;
    let (status, history) = call(&server, "alice", "room.history", json!({"room": "lab", "thread_id": "t-1"})).await;
    assert_eq!((status, history["result"]["count"].as_u64()), (200, Some(1)), "{history}");
    let (status, bad) = call(&server, "alice", "thread.get", json!({"thread_id": ""})).await;
    assert_eq!(status, 400, "{bad}");
    server.stop().expect("clean stop");
}

#[tokio::test]
async fn an_expired_message_leaves_its_thread() {
    let server = InProcess::with_args(&["--sweep-interval-ms", "100"]);
    send(&server, json!({"from": "alice", "to": "bob", "type": "q", "payload": {"text": "brief"}, "thread_id": "t-x", "ttl": 1})).await;
    send(&server, json!({"from": "alice", "to": "bob", "type": "q", "payload": {"text": "stays"}, "thread_id": "t-x"})).await;
    assert_eq!(thread(&server, "bob", "t-x").await, ["brief", "stays"]);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(thread(&server, "bob", "t-x").await, ["stays"], "the ttl removed it from the thread");
    server.stop().expect("clean stop");
}
