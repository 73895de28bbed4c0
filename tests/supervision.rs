//! Supervision on the real binary: a panicking actor is restarted, logged and counted; a restart
//! storm escalates as configured; nothing else is disturbed.

mod common;

use std::time::Duration;

use common::{eventually, Server, Ws};
use serde_json::{json, Value};

fn child<'a>(tree: &'a Value, name: &str) -> &'a Value {
    tree["children"].as_array().expect("children").iter().find(|c| c["name"] == name).expect("child present")
}

async fn fault(server: &Server, actor: &str) -> Value {
    let (status, body) = server.post("/admin/fault", &json!({ "actor": actor })).await;
    assert_eq!(status, 202, "{body}");
    body
}

#[tokio::test]
async fn a_panicking_router_is_restarted_and_traffic_continues() {
    let server = Server::start(&["--enable-fault-injection", "--shards", "2"]);
    let mut a = Ws::connect(&server, "alice").await;
    let mut b = Ws::connect(&server, "bob").await;
    a.send_msg("bob", "before", json!(1)).await;
    assert_eq!(b.recv_msg().await["payload"], 1);

    for shard in ["router-0", "router-1"] {
        assert_eq!(fault(&server, shard).await["actor"], shard);
        let tree = eventually("the restart to show in /admin/supervisors", || async {
            let (_, tree) = server.get("/admin/supervisors").await;
            (child(&tree, shard)["restarts"] == 1 && child(&tree, shard)["state"] == "running").then_some(tree)
        })
        .await;
        let node = child(&tree, shard);
        assert!(node["last_reason"].as_str().is_some_and(|r| r.contains("fault injected")), "{node}");
        assert!(node["last_restart"].as_str().is_some(), "{node}");
    }
    let logs = server.wait_log("actor restarting").await;
    let line = logs.lines().find(|l| l.contains("actor restarting") && l.contains("router-0")).expect("restart line");
    assert!(line.contains("restarts=1") && line.contains("reason=") && line.contains("fault injected"), "{line}");
    assert!(logs.contains("actor panicked"), "the panic hook names the actor:\n{logs}");

    // Both shards serve again, in both directions, with inbox seqs continuing from the store.
    let sent = a.send_msg("bob", "after", json!(2)).await;
    assert_eq!(sent["seq"], 2, "the restarted shard reloaded bob's counter");
    assert_eq!(b.recv_msg().await["payload"], 2);
    b.send_msg("alice", "after", json!(3)).await;
    assert_eq!(a.recv_msg().await["payload"], 3);
    let metrics = reqwest::get(server.http("/metrics")).await.expect("GET").text().await.expect("text");
    assert!(metrics.contains("bridge_actor_restarts_total{actor=\"router\"} 2"), "both shards, counted by kind: {metrics}");
    let (code, _) = server.get("/health/ready").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn a_panicking_session_closes_only_itself() {
    let server = Server::start(&["--enable-fault-injection"]);
    let mut victim = Ws::connect(&server, "victim").await;
    let mut a = Ws::connect(&server, "a").await;
    let mut b = Ws::connect(&server, "b").await;
    let (_, tree) = server.get("/admin/supervisors").await;
    let name = child(&tree, "sessions")["children"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_owned())
        .find(|n| n.starts_with("session:victim:"))
        .expect("victim session in the tree");
    fault(&server, &name).await;
    let err = victim.recv_type("error").await;
    assert_eq!(err["code"], "internal");
    assert!(victim.try_recv(Duration::from_secs(5)).await.is_none(), "the victim's socket is closed");
    a.send_msg("b", "still", json!("fine")).await;
    assert_eq!(b.recv_msg().await["payload"], "fine");
    server.wait_log("temporary child is not restarted").await;
    // The client reconnects and gets what was sent meanwhile.
    a.send_msg("victim", "missed", json!(9)).await;
    let mut again = Ws::connect(&server, "victim").await;
    assert_eq!(again.recv_msg().await["payload"], 9);
}

#[tokio::test]
async fn a_restart_storm_escalates_and_stops_the_process() {
    let mut server =
        Server::start(&["--enable-fault-injection", "--shards", "1", "--max-restarts", "3", "--restart-window-s", "60"]);
    for n in 1..=3 {
        fault(&server, "router").await;
        eventually("restart", || async {
            let (_, tree) = server.get("/admin/supervisors").await;
            (child(&tree, "router-0")["restarts"] == n).then_some(())
        })
        .await;
    }
    assert!(server.alive());
    fault(&server, "router").await;
    let status = server.wait_exit(Duration::from_secs(10)).expect("the process stops after escalation");
    assert_eq!(status.code(), Some(70), "escalation exit code");
    let logs = server.logs();
    assert!(logs.contains("restart intensity exceeded; escalating"), "{logs}");
    assert!(logs.contains("critical child failed beyond its restart intensity"), "{logs}");
}

#[tokio::test]
async fn without_exit_an_escalated_child_is_failed_and_readiness_drops() {
    let mut server = Server::start(&[
        "--enable-fault-injection",
        "--shards",
        "1",
        "--max-restarts",
        "1",
        "--restart-window-s",
        "60",
        "--exit-on-escalation",
        "false",
    ]);
    let mut a = Ws::connect(&server, "a").await;
    fault(&server, "router-0").await;
    eventually("first restart", || async {
        let (_, tree) = server.get("/admin/supervisors").await;
        (child(&tree, "router-0")["restarts"] == 1).then_some(())
    })
    .await;
    fault(&server, "router-0").await;
    let tree = eventually("escalation", || async {
        let (_, tree) = server.get("/admin/supervisors").await;
        (child(&tree, "router-0")["state"] == "failed").then_some(tree)
    })
    .await;
    assert_eq!(child(&tree, "router-0")["restarts"], 1);
    let (code, ready) = server.get("/health/ready").await;
    assert_eq!(code, 503, "{ready}");
    assert_eq!(ready["checks"]["supervisors"]["failed"], json!(["router-0"]));
    let (code, _) = server.get("/health/live").await;
    assert_eq!(code, 200, "the process is alive");
    assert!(server.alive());
    a.send(json!({"type": "send", "to": "b", "msg_type": "t", "payload": 1, "ref": "x"})).await;
    let err = a.recv_type("error").await;
    assert_eq!((err["code"].clone(), err["ref"].clone()), (json!("unavailable"), json!("x")));
}
