//! A data dir written by the release at fdb8c93 (tests/fixtures/data-fdb8c93.md) opens with this
//! build and serves its queued messages, its require-ack message, its room (state and history) and
//! its API keys. It guards the on-disk format: a change that cannot read it fails here.

mod common;

use std::path::Path;

use common::{Server, Ws};
use serde_json::{json, Value};

const ADMIN: &str = "abk_8a5518257988_8edf40a6659ea5b7f6011da040ed00b1006a13ee5707a9ab8da9d75eb05802be";
const READER: &str = "abk_7c3b8e3281bc_ab402e2c5490f2a50f2881f3b3730ab9057edfe7345e95a2b1e2044f16d4d677";

/// Copies the fixture into a fresh directory (the broker writes to its data dir).
fn copy_fixture(to: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read fixture") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).expect("copy");
            }
        }
    }
    copy(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-fdb8c93"), to);
}

async fn call(server: &Server, token: &str, method: &str, params: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(server.http("/api/call"))
        .bearer_auth(token)
        .json(&json!({"method": method, "client_id": "fixture-admin", "params": params}))
        .send()
        .await
        .expect("call");
    (r.status().as_u16(), r.json().await.expect("json"))
}

#[tokio::test]
async fn a_data_dir_from_fdb8c93_opens_and_serves_its_messages_rooms_and_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_fixture(dir.path());
    let server = Server::start(&["--data-dir", dir.path().to_str().expect("utf-8")]);

    // Keys: the admin key still lists both keys; the reader key is read-only.
    let r = reqwest::Client::new().get(server.http("/admin/keys")).bearer_auth(ADMIN).send().await.expect("keys");
    assert_eq!(r.status().as_u16(), 200);
    let keys: Value = r.json().await.expect("json");
    let labels: Vec<&str> = keys["keys"].as_array().expect("keys").iter().filter_map(|k| k["label"].as_str()).collect();
    assert!(labels.contains(&"fixture") && labels.contains(&"reader"), "both keys survive: {keys}");
    let r = reqwest::Client::new().get(server.http("/admin/keys")).bearer_auth(READER).send().await.expect("keys");
    assert_eq!(r.status().as_u16(), 403, "the reader key is still not an admin");

    // The three queued notes reach their reader, in order, with their payloads.
    let mut reader = Ws::connect_query(&server, "fixture-reader", &format!("token={READER}")).await;
    for n in 1..=3 {
        let m = reader.recv_msg().await;
        assert_eq!(m["type"], "note");
        assert_eq!(m["seq"], n);
        assert_eq!(m["payload"], json!({"n": n, "text": format!("queued message {n}")}));
        assert_eq!(m["from"], "fixture-admin");
    }

    // The require-ack task is still owed to its reader, and still needs an ack.
    let r = reqwest::Client::new()
        .post(server.http("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"client_id": "fixture-acker", "permissions": ["read", "write"]}))
        .send()
        .await
        .expect("create key");
    assert_eq!(r.status().as_u16(), 201);
    let acker_key = r.json::<Value>().await.expect("json")["key"].as_str().expect("key").to_owned();
    let mut acker = Ws::connect_query(&server, "fixture-acker", &format!("token={acker_key}")).await;
    let task = acker.recv_msg().await;
    assert_eq!(task["payload"]["text"], "needs ack");
    assert_eq!(task["requires_ack"], true, "{task}");

    // The room: its topic, card, proposal and history.
    let (status, list) = call(&server, ADMIN, "room.list", json!({})).await;
    assert_eq!(status, 200, "{list}");
    let room = list["result"]["rooms"].as_array().expect("rooms").iter().find(|r| r["name"] == "fixture-room").cloned();
    let room = room.unwrap_or_else(|| panic!("fixture-room is listed: {list}"));
    assert_eq!(room["topic"], "written by fdb8c93");
    let (_, board) = call(&server, ADMIN, "board.list", json!({"room": "fixture-room"})).await;
    assert!(board.to_string().contains("fixture card"), "{board}");
    let (_, proposal) = call(&server, ADMIN, "proposal.get", json!({"room": "fixture-room", "proposal_id": "p-1"})).await;
    assert_eq!(proposal["result"]["text"], "keep the format", "{proposal}");
    let (_, history) = call(&server, ADMIN, "room.history", json!({"room": "fixture-room"})).await;
    assert!(history.to_string().contains("hello room"), "{history}");
}

/// This build's writes into the fixture (a card, a message, a key: records in the versioned
/// envelope) sit next to the untagged ones from fdb8c93. Each was answered only once on disk, so
/// after a kill -9 the dir reopens and serves old and new records side by side.
#[tokio::test]
async fn old_and_new_records_side_by_side_survive_a_kill_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_fixture(dir.path());
    let data = dir.path().to_str().expect("utf-8").to_owned();
    let mut server = Server::start(&["--data-dir", &data]);
    let http = reqwest::Client::new();
    let (status, card) = call(&server, ADMIN, "board.add", json!({"room": "fixture-room", "title": "late card"})).await;
    assert_eq!(status, 200, "{card}");
    let r = http
        .post(server.http("/api/send"))
        .bearer_auth(ADMIN)
        .json(&json!({"from": "fixture-admin", "to": "fixture-reader", "type": "note", "payload": {"n": 4}}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    // The key last: nothing written after it flushes it along.
    let r = http
        .post(server.http("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"client_id": "fixture-late", "permissions": ["read"], "label": "late"}))
        .send()
        .await
        .expect("create key");
    assert_eq!(r.status().as_u16(), 201);
    let late_key = r.json::<Value>().await.expect("json")["key"].as_str().expect("key").to_owned();
    server.kill();

    let server = Server::start(&["--data-dir", &data]);
    let r = http.get(server.http("/admin/keys")).bearer_auth(ADMIN).send().await.expect("keys");
    let keys: Value = r.json().await.expect("json");
    let labels: Vec<&str> = keys["keys"].as_array().expect("keys").iter().filter_map(|k| k["label"].as_str()).collect();
    for label in ["fixture", "reader", "late"] {
        assert!(labels.contains(&label), "{label} survives: {keys}");
    }
    let r = http.get(server.http("/admin/keys")).bearer_auth(&late_key).send().await.expect("keys");
    assert_eq!(r.status().as_u16(), 403, "the new key still authenticates, and is still read-only");

    let mut reader = Ws::connect_query(&server, "fixture-reader", &format!("token={READER}")).await;
    for n in 1..=4 {
        let m = reader.recv_msg().await;
        assert_eq!((m["seq"].as_u64(), m["payload"]["n"].as_u64()), (Some(n), Some(n)), "{m}");
    }
    let (_, board) = call(&server, ADMIN, "board.list", json!({"room": "fixture-room"})).await;
    let text = board.to_string();
    assert!(text.contains("fixture card") && text.contains("late card"), "{board}");

    // A revocation of an old key, answered only once on disk, holds after another kill -9.
    let mut server = server;
    let r = http.delete(server.http("/admin/keys/7c3b8e3281bc")).bearer_auth(ADMIN).send().await.expect("revoke");
    assert_eq!(r.status().as_u16(), 200);
    server.kill();
    let server = Server::start(&["--data-dir", &data]);
    let r = http.get(server.http("/api/messages?to=fixture-reader")).bearer_auth(READER).send().await.expect("poll");
    assert_eq!(r.status().as_u16(), 401, "the revoked reader key stays revoked");
}
