//! The admin HTTP routes and `agent-bridge admin ...` against a real broker: each route answers
//! what the broker holds (a restarted actor in the tree, connected and queued clients, a room, a
//! key), and each CLI command prints it as a table and, with `--json`, as the route's JSON.

mod common;

use std::process::Command;

use common::{Server, Ws};
use serde_json::{json, Value};

fn admin(server: &Server, args: &[&str]) -> (String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-bridge"));
    cmd.arg("admin").args(args).args(["--url", &format!("ws://127.0.0.1:{}", server.port)]);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("BRIDGE_")) {
        cmd.env_remove(key);
    }
    cmd.env("XDG_CONFIG_HOME", "/nonexistent/agent-bridge-tests").env("RUST_LOG", "warn");
    let out = common::wait_output(cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("spawn"), std::time::Duration::from_secs(20), "admin");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "admin {args:?} failed: {stdout}{stderr}");
    (stdout, stderr)
}

fn admin_json(server: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (stdout, _) = admin(server, &all);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("admin {args:?} --json is not JSON ({e}): {stdout}"))
}

#[tokio::test]
async fn every_admin_route_and_command_shows_what_the_broker_holds() {
    let server = Server::start(&["--enable-fault-injection"]);
    let [mut alice, _bob] = Ws::connect_each(&server, ["alice", "bob"]).await;
    alice.send_msg("carol", "note", json!({"n": 1})).await;
    let (status, body) = server.post("/api/call", &json!({"method": "room.create", "from": "alice", "params": {"name": "lab"}})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post("/admin/fault", &json!({"actor": "ack_tracker"})).await;
    assert_eq!(status, 202, "{body}");

    // tree: the restarted tracker, with its count, in the table and the JSON.
    let tree = common::eventually("the tracker restarted", || async {
        let (_, tree) = server.get("/admin/supervisors").await;
        tree["children"].as_array()?.iter().any(|c| c["name"] == "ack_tracker" && c["restarts"] == 1 && c["state"] == "running").then_some(tree)
    })
    .await;
    assert_eq!(admin_json(&server, &["tree"])["name"], tree["name"]);
    let (text, _) = admin(&server, &["tree"]);
    assert!(text.lines().next().is_some_and(|h| h.starts_with("actor") && h.contains("restarts")), "{text}");
    let line = text.lines().find(|l| l.trim_start().starts_with("ack_tracker")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("running") && line.split_whitespace().any(|w| w == "1"), "{line}");
    assert!(line.starts_with("  "), "children are indented under the root: {line}");

    // clients and queues.
    let (status, clients) = server.get("/admin/clients").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = clients["clients"].as_array().expect("clients").iter().filter_map(|c| c["client_id"].as_str()).collect();
    assert!(ids.contains(&"alice") && ids.contains(&"bob"), "{clients}");
    assert_eq!(admin_json(&server, &["clients"])["clients"].as_array().map(Vec::len), clients["clients"].as_array().map(Vec::len));
    let (text, _) = admin(&server, &["clients"]);
    assert!(text.lines().next().is_some_and(|h| h.contains("client_id")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("alice")) && text.lines().any(|l| l.starts_with("bob")), "{text}");

    let (status, queues) = server.get("/admin/queues").await;
    assert_eq!(status, 200);
    let carol = queues["queues"].as_array().expect("queues").iter().find(|q| q["client_id"] == "carol").cloned();
    assert_eq!(carol.as_ref().map(|c| c["queued"].clone()), Some(json!(1)), "{queues}");
    assert_eq!(admin_json(&server, &["queues"])["pending_acks"], queues["pending_acks"]);
    let (text, _) = admin(&server, &["queues"]);
    assert!(text.starts_with("acks pending: 0"), "{text}");
    let carol = text.lines().find(|l| l.starts_with("carol")).unwrap_or_else(|| panic!("{text}"));
    assert!(carol.split_whitespace().any(|w| w == "1"), "{carol}");

    // rooms.
    let (status, rooms) = server.get("/admin/rooms").await;
    assert_eq!(status, 200, "{rooms}");
    assert!(rooms["rooms"].as_array().expect("rooms").iter().any(|r| r["name"] == "lab"), "{rooms}");
    assert_eq!(admin_json(&server, &["rooms"])["rooms"], rooms["rooms"]);
    let (text, _) = admin(&server, &["rooms"]);
    assert!(text.lines().any(|l| l.split_whitespace().any(|w| w == "lab")), "{text}");

    // dead letters: none yet, the limit is passed on.
    let (status, dead) = server.get("/admin/dead-letters?limit=5").await;
    assert_eq!((status, dead["count"].clone()), (200, json!(0)), "{dead}");
    assert_eq!(admin_json(&server, &["dead-letters", "--limit", "5"])["count"], 0);
    assert_eq!(admin(&server, &["dead-letters"]).0.trim(), "(none)");

    // keys: none, then one (from then on the broker requires credentials).
    assert_eq!(admin(&server, &["keys"]).0.trim(), "(none)");
    let (status, created) = server.post("/admin/keys", &json!({"client_id": "ops", "permissions": ["admin"]})).await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().expect("key").to_owned();
    let (status, _) = server.get("/admin/keys").await;
    assert_eq!(status, 401, "a key exists: anonymous admin calls are refused");
    let listed = admin_json(&server, &["keys", "--token", &key]);
    assert_eq!(listed["count"], 1, "{listed}");
    let (text, _) = admin(&server, &["keys", "--token", &key]);
    assert!(text.lines().any(|l| l.contains("ops")), "{text}");
    // Without the key the CLI fails with the broker's reason, not a crash.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-bridge"));
    cmd.args(["admin", "keys", "--url", &format!("ws://127.0.0.1:{}", server.port)]).env_remove("BRIDGE_TOKEN");
    let out = cmd.output().expect("admin keys");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("authentication required"), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn delete(server: &Server, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new().delete(server.http(path)).send().await.expect("DELETE");
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn kick_closes_every_session_and_long_poll_of_the_client_and_only_those() {
    let server = Server::start(&["--long-poll-max-s", "30"]);
    let [mut bob, mut alice] = Ws::connect_each(&server, ["bob", "alice"]).await;
    let sse = reqwest::get(server.http("/stream/events?client_id=bob")).await.expect("SSE");
    assert_eq!(sse.status(), 200);
    let sse_body = tokio::spawn(async move { sse.text().await.unwrap_or_default() });
    let poll_url = server.http("/api/messages?to=bob&since=0&wait=25");
    let poll = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let resp = reqwest::get(poll_url).await.expect("long-poll");
        (resp.status().as_u16(), started.elapsed())
    });
    common::wait_long_polls(&server, 1).await;
    common::eventually("bob's SSE session registered", || async {
        let (_, c) = server.get("/admin/clients").await;
        let bob = c["clients"].as_array()?.iter().find(|c| c["client_id"] == "bob")?.clone();
        (bob["sessions"].as_array()?.len() == 2).then_some(())
    })
    .await;

    // Percent-encoded as a client would write it: the router decodes the id.
    let (status, body) = delete(&server, "/admin/clients/%62ob").await;
    assert_eq!((status, body["client_id"].clone(), body["disconnected"].clone()), (200, json!("bob"), json!(3)), "{body}");
    let error = bob.recv_type("error").await;
    assert_eq!(error["code"], "kicked", "{error}");
    let close = bob.recv_close().await;
    assert_eq!((u16::from(close.code), close.reason.as_ref()), (4001, "kicked"));
    let text = tokio::time::timeout(common::WAIT, sse_body).await.expect("the event stream ends").expect("task");
    assert!(text.contains("event: error") && text.contains("\"kicked\""), "{text}");
    let (status, waited) = tokio::time::timeout(common::WAIT, poll).await.expect("the long-poll ends").expect("task");
    assert!(status == 200 && waited < std::time::Duration::from_secs(10), "{status} after {waited:?}");

    // Alice is untouched; a client without sessions is 404; a bad id is 400.
    assert_eq!(alice.send_msg("carol", "note", json!(1)).await["type"], "sent");
    let gone = common::eventually("bob's sessions left", || async {
        let (status, body) = delete(&server, "/admin/clients/bob").await;
        (status == 404).then_some(body)
    })
    .await;
    assert_eq!(gone["code"], "unknown_client", "{gone}");
    let (status, body) = delete(&server, "/admin/clients/bad%20id").await;
    assert_eq!((status, body["code"].clone()), (400, json!("invalid_client_id")), "{body}");
    let (status, _) = delete(&server, &format!("/admin/clients/{}", "x".repeat(4000))).await;
    assert_eq!(status, 400, "an oversized id is refused, not looked up");

    // The CLI.
    let mut again = Ws::connect(&server, "bob").await;
    let (text, _) = admin(&server, &["kick", "bob"]);
    assert!(text.starts_with("disconnected bob: 1"), "{text}");
    assert_eq!(u16::from(again.recv_close().await.code), 4001);
}

#[tokio::test]
async fn replay_exports_an_inbox_or_a_room_by_seq_or_time_as_json_or_ndjson() {
    let server = Server::start(&[]);
    let mut alice = Ws::connect(&server, "alice").await;
    for n in 1..=5 {
        alice.send_msg("carol", "note", json!({"n": n})).await;
        // Apart in time, so that a time bound falls between two messages.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let (status, page) = server.get("/admin/messages?client_id=carol").await;
    assert_eq!(status, 200, "{page}");
    let ns: Vec<Value> = page["messages"].as_array().expect("messages").iter().map(|m| m["payload"]["n"].clone()).collect();
    assert_eq!((page["count"].clone(), ns, page["next_from"].clone()), (json!(5), (1..=5).map(|n| json!(n)).collect(), Value::Null));
    let (_, part) = server.get("/admin/messages?client_id=carol&from=2&to=4").await;
    let seqs: Vec<u64> = part["messages"].as_array().expect("messages").iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(seqs, [2, 3, 4]);
    let (_, first) = server.get("/admin/messages?client_id=carol&limit=2").await;
    assert_eq!((first["count"].clone(), first["next_from"].clone()), (json!(2), json!(3)));
    // By time: from the third message's timestamp on.
    let at = page["messages"][2]["timestamp"].as_str().expect("timestamp").to_owned();
    let (_, later) = server.get(&format!("/admin/messages?client_id=carol&from={}", at.replace('+', "%2B"))).await;
    assert_eq!(later["messages"][0]["payload"]["n"], 3, "{later}");

    let ndjson = reqwest::get(server.http("/admin/messages?client_id=carol&format=ndjson")).await.expect("ndjson");
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let text = ndjson.text().await.expect("body");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[4]["payload"]["n"], 5);

    // A room's stream.
    let (status, body) = server.post("/api/call", &json!({"method": "room.create", "from": "alice", "params": {"name": "lab"}})).await;
    assert_eq!(status, 200, "{body}");
    alice.send(json!({"type": "send", "room": "lab", "msg_type": "chat", "payload": "hello lab", "ref": "room-1"})).await;
    assert_eq!(alice.recv_type("sent").await["ref"], "room-1");
    let (_, room) = server.get("/admin/messages?room=lab").await;
    assert!(room["messages"].as_array().expect("messages").iter().any(|m| m["payload"] == "hello lab"), "{room}");

    for (query, code) in [
        ("client_id=carol&room=lab", "bad_request"),
        ("", "bad_request"),
        ("client_id=carol&format=xml", "bad_request"),
        ("client_id=carol&limit=0", "bad_request"),
        ("client_id=carol&from=yesterday", "bad_request"),
        ("client_id=bad%20id", "invalid_client_id"),
    ] {
        let (status, body) = server.get(&format!("/admin/messages?{query}")).await;
        assert_eq!((status, body["code"].clone()), (400, json!(code)), "{query}: {body}");
    }

    // The CLI: a table, a range as JSON, the timeline as NDJSON.
    let (table, _) = admin(&server, &["replay", "--of", "carol"]);
    assert!(table.lines().next().is_some_and(|h| h.starts_with("seq") && h.contains("payload")), "{table}");
    assert_eq!(table.lines().count(), 6, "{table}");
    assert_eq!(admin_json(&server, &["replay", "--of", "carol", "--from", "2", "--to", "3"])["count"], 2);
    let (export, _) = admin(&server, &["replay", "--of", "carol", "--ndjson", "--limit", "4"]);
    assert_eq!(export.lines().count(), 4, "{export}");
    let (room_table, _) = admin(&server, &["replay", "--room", "lab"]);
    assert!(room_table.contains("#lab"), "{room_table}");
}

#[tokio::test]
async fn a_dead_letter_is_redelivered_as_a_new_message_and_forgotten() {
    let server = Server::start(&["--ack-timeout-s", "0.2", "--ack-max-attempts", "1"]);
    let [mut sender, mut receiver] = Ws::connect_each(&server, ["sender", "receiver"]).await;
    sender.send(json!({"type": "send", "to": "receiver", "msg_type": "job", "payload": {"x": 1}, "require_ack": true, "ref": "a"})).await;
    let first = receiver.recv_msg().await;
    let letters = common::eventually("dead-lettered", || async {
        let (_, l) = server.get("/admin/dead-letters").await;
        (l["count"] == 1).then_some(l)
    })
    .await;
    let id = letters["dead_letters"][0]["message"]["id"].as_str().expect("id").to_owned();
    assert_eq!(first["id"], id.as_str());

    let (text, _) = admin(&server, &["redeliver", &id]);
    assert!(text.starts_with(&format!("redelivered {id} to receiver")), "{text}");
    let again = receiver.recv_msg().await;
    assert_eq!((again["payload"].clone(), again["from"].clone()), (json!({"x": 1}), json!("sender")));
    assert_ne!(again["id"], id.as_str(), "a new message");
    receiver.send(json!({"type": "ack", "message_id": again["id"]})).await;
    let (_, after) = server.get("/admin/dead-letters").await;
    assert_eq!(after["count"], 0, "{after}");
    let (status, body) = server.post(&format!("/admin/messages/{id}/redeliver"), &json!({})).await;
    assert_eq!((status, body["code"].clone()), (404, json!("unknown_message")), "{body}");
}

#[tokio::test]
async fn the_dashboard_page_is_served_and_its_stream_shows_messages_and_figures_live() {
    let server = Server::start(&[]);
    let page = reqwest::get(server.http("/dashboard")).await.expect("GET /dashboard");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().is_ok_and(|t| t.starts_with("text/html")));
    assert!(page.text().await.expect("html").contains("/admin/stream"));
    let home = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let resp = home.get(server.http("/")).send().await.expect("GET /");
    assert_eq!((resp.status().as_u16(), resp.headers()["location"].to_str().ok()), (302, Some("/dashboard")));

    let stream = reqwest::get(server.http("/admin/stream")).await.expect("GET /admin/stream");
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut body = stream.bytes_stream();
    let mut alice = Ws::connect(&server, "alice").await;
    alice.send_msg("bob", "note", json!({"hello": "dashboard"})).await;
    let mut seen = String::new();
    let got = tokio::time::timeout(common::WAIT, async {
        use futures_util::StreamExt;
        while let Some(Ok(chunk)) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: message") && seen.contains("event: stats") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true), "{seen}");
    let line = seen.lines().skip_while(|l| *l != "event: message").nth(1).expect("data line");
    let m: Value = serde_json::from_str(line.trim_start_matches("data: ")).expect("JSON");
    assert_eq!((m["from"].clone(), m["to"].clone(), m["type"].clone()), (json!("alice"), json!("bob"), json!("note")), "{m}");
    assert!(m["preview"].as_str().is_some_and(|p| p.contains("dashboard")), "{m}");
}
