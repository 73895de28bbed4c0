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
