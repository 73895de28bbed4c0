//! Tasks (issue 14): `task.assign` to an agent or a pool, the A2A lifecycle driven by the
//! assignee's `task.update`, `task_updated` messages to the assigner, a deadline that fails the
//! task, `task.cancel`, `task.get` and `task.list` over WebSocket and HTTP.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use common::{InProcess, Ws};
use serde_json::{json, Value};

/// A call over the socket: `Ok(result)` or `Err(code)`; other frames are skipped.
async fn call(ws: &mut Ws, method: &str, params: Value) -> Result<Value, String> {
    let r = format!("c-{method}");
    ws.send(json!({"type": "call", "ref": r, "method": method, "params": params})).await;
    loop {
        let f = ws.recv().await;
        if f["type"] == "result" && f["ref"] == r.as_str() {
            return if f["ok"] == true { Ok(f["result"].clone()) } else { Err(f["error"]["code"].as_str().unwrap_or("?").to_owned()) };
        }
        // A message that overtakes the call's result (task_updated, task_canceled) is kept for
        // `message`: the broker does not order a call's result against the messages it causes.
        if f["type"] == "message" {
            stash(ws, f["message"].clone());
        }
    }
}

/// Messages a socket received while waiting for a call's result, by the socket's address (tests
/// run side by side with the same client ids).
static STASH: Mutex<BTreeMap<usize, VecDeque<Value>>> = Mutex::new(BTreeMap::new());

fn stash(ws: &Ws, message: Value) {
    STASH.lock().expect("stash").entry(ws as *const Ws as usize).or_default().push_back(message);
}

fn stashed(ws: &Ws, msg_type: &str) -> Option<Value> {
    let mut all = STASH.lock().expect("stash");
    let kept = all.get_mut(&(ws as *const Ws as usize))?;
    let i = kept.iter().position(|m| m["type"] == msg_type)?;
    kept.remove(i)
}

async fn ok(ws: &mut Ws, method: &str, params: Value) -> Value {
    call(ws, method, params.clone()).await.unwrap_or_else(|code| panic!("{method} {params}: {code}"))
}

/// The next message of type `msg_type` (others skipped).
async fn message(ws: &mut Ws, msg_type: &str) -> Value {
    if let Some(m) = stashed(ws, msg_type) {
        return m;
    }
    loop {
        let m = ws.recv_msg().await;
        if m["type"] == msg_type {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_goes_through_its_lifecycle_and_the_assigner_hears_each_step() {
    let server = InProcess::with_args(&[]);
    let mut boss = Ws::connect(&server, "boss").await;
    let mut worker = Ws::connect(&server, "worker").await;
    ok(&mut worker, "agent.register", json!({"pools": ["crew"]})).await;

    let task = ok(&mut boss, "task.assign", json!({"to": "worker", "title": "review the diff", "payload": {"diff": "+1"}, "timeout_s": 60})).await;
    let id = task["id"].as_str().expect("an id").to_owned();
    assert_eq!((task["state"].as_str(), task["assignee"].as_str()), (Some("submitted"), Some("worker")), "{task}");
    let handed = message(&mut worker, "task").await;
    assert_eq!((handed["from"].as_str(), handed["correlation_id"].as_str()), (Some("boss"), Some(id.as_str())));
    assert_eq!(handed["payload"]["payload"], json!({"diff": "+1"}));

    for (state, extra) in [("working", json!({"progress": {"pct": 50}})), ("input-required", json!({})), ("completed", json!({"result": {"ok": true}}))] {
        let mut params = json!({"id": id, "state": state});
        for (k, v) in extra.as_object().expect("object") {
            params[k] = v.clone();
        }
        ok(&mut worker, "task.update", params).await;
        let told = message(&mut boss, "task_updated").await;
        assert_eq!((told["from"].as_str(), told["payload"]["state"].as_str()), (Some("worker"), Some(state)), "{told}");
    }
    let done = ok(&mut boss, "task.get", json!({"id": id})).await;
    assert_eq!((done["progress"]["pct"].as_u64(), done["result"]["ok"].as_bool()), (Some(50), Some(true)), "{done}");
    assert_eq!(call(&mut worker, "task.update", json!({"id": id, "state": "working"})).await, Err("invalid_params".into()), "nothing follows completed");
    assert_eq!(call(&mut boss, "task.update", json!({"id": id, "state": "failed"})).await, Err("forbidden".into()), "only the assignee updates");
    assert_eq!(call(&mut boss, "task.assign", json!({"to": "all", "title": "x"})).await, Err("invalid_params".into()));
    assert_eq!(call(&mut boss, "task.update", json!({"id": id, "state": "done"})).await, Err("invalid_params".into()), "not a state");

    // Over HTTP: read with GET, a stranger sees nothing.
    let (s, v) = server.get(&format!("/api/call?method=task.list&from=boss&params={}", urlencode(&json!({"state": "completed"})))).await;
    assert_eq!((s, v["result"]["count"].as_u64()), (200, Some(1)), "{v}");
    let (s, v) = server.post("/api/call", &json!({"method": "task.get", "from": "stranger", "params": {"id": id}})).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");

    // Through a pool, then canceled by the assigner.
    let task = ok(&mut boss, "task.assign", json!({"to": "pool:crew", "title": "second"})).await;
    let id2 = task["id"].as_str().expect("id").to_owned();
    assert_eq!((task["assignee"].as_str(), task["pool"].as_str()), (Some("worker"), Some("crew")), "{task}");
    message(&mut worker, "task").await;
    let canceled = ok(&mut boss, "task.cancel", json!({"id": id2})).await;
    assert_eq!(canceled["state"], "canceled");
    assert_eq!(message(&mut worker, "task_canceled").await["payload"]["id"], id2.as_str());
    assert_eq!(message(&mut boss, "task_updated").await["payload"]["state"], "canceled");
    let mine = ok(&mut worker, "task.list", json!({"assignee": "worker"})).await;
    assert_eq!(mine["count"], 2, "{mine}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_its_timeout_fails_and_the_assigner_is_told() {
    let server = InProcess::with_args(&[]);
    let mut boss = Ws::connect(&server, "boss").await;
    let mut worker = Ws::connect(&server, "worker").await;
    let task = ok(&mut boss, "task.assign", json!({"to": "worker", "title": "slow", "timeout_s": 1})).await;
    let id = task["id"].as_str().expect("id").to_owned();
    ok(&mut worker, "task.update", json!({"id": id, "state": "working"})).await;
    assert_eq!(message(&mut boss, "task_updated").await["payload"]["state"], "working");
    let failed = tokio::time::timeout(Duration::from_secs(5), message(&mut boss, "task_updated")).await.expect("the timeout within 5 s");
    assert_eq!((failed["from"].as_str(), failed["payload"]["state"].as_str()), (Some("broker"), Some("failed")), "{failed}");
    assert_eq!(failed["payload"]["result"]["error"], "timeout");
    assert_eq!(call(&mut worker, "task.update", json!({"id": id, "state": "completed"})).await, Err("invalid_params".into()));
}

fn urlencode(v: &Value) -> String {
    v.to_string().bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_agent_pool_and_task_call_works_over_http() {
    let server = InProcess::with_args(&[]);
    let mut worker = Ws::connect(&server, "worker").await;
    let post = |from: &'static str, method: &'static str, params: Value| {
        let server = &server;
        async move {
            let (status, v) = server.post("/api/call", &json!({"method": method, "from": from, "params": params})).await;
            assert_eq!((status, v["ok"].as_bool()), (200, Some(true)), "{method}: {v}");
            v["result"].clone()
        }
    };
    assert_eq!(post("worker", "agent.register", json!({"pool": "http-crew", "weight": 3})).await["pools"], json!(["http-crew"]));
    assert_eq!(post("worker", "agent.status", json!({"status": "idle", "detail": "ready"})).await["detail"], "ready");
    assert_eq!(post("boss", "agent.list", json!({"pool": "http-crew"})).await["count"], 1);
    assert_eq!(post("boss", "pool.configure", json!({"pool": "http-crew", "strategy": "least_loaded"})).await["strategy"], "least_loaded");
    let pools = post("boss", "pool.list", json!({})).await;
    assert_eq!((pools["pools"][0]["strategy"].as_str(), pools["pools"][0]["members"][0]["weight"].as_u64()), (Some("least_loaded"), Some(3)), "{pools}");
    let task = post("boss", "task.assign", json!({"pool": "http-crew", "title": "over http", "description": "spec spelling"})).await;
    let id = task["id"].as_str().expect("id").to_owned();
    assert_eq!(message(&mut worker, "task").await["payload"]["description"], "spec spelling");
    assert_eq!(post("worker", "task.update", json!({"task_id": id, "status": "working"})).await["state"], "working");
    assert_eq!(post("boss", "task.get", json!({"id": id})).await["state"], "working");
    assert_eq!(post("boss", "task.list", json!({"assigner": "boss"})).await["count"], 1);
    assert_eq!(post("boss", "task.cancel", json!({"id": id})).await["state"], "canceled");

    // Refusals are coded: a bad strategy, an empty pool, a stranger's cancel, a state that is not one.
    for (from, method, params, status, code) in [
        ("boss", "pool.configure", json!({"pool": "http-crew", "strategy": "fair"}), 400, "invalid_params"),
        ("boss", "task.assign", json!({"to": "pool:nobody", "title": "x"}), 503, "pool_empty"),
        ("boss", "task.assign", json!({"title": "x"}), 400, "invalid_params"),
        ("stranger", "task.cancel", json!({"id": id}), 404, "not_found"),
        ("worker", "agent.status", json!({"status": "asleep"}), 400, "invalid_params"),
        ("nobody", "agent.status", json!({"status": "idle"}), 404, "not_found"),
        ("boss", "agent.register", json!({"weight": 0}), 400, "invalid_params"),
    ] {
        let (s, v) = server.post("/api/call", &json!({"method": method, "from": from, "params": params})).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{method} {params}: {v}");
    }
    let (s, v) = server.get("/api/call?method=task.assign&from=boss&params=%7B%7D").await;
    assert_eq!((s, v["code"].as_str()), (405, Some("method_not_allowed")), "{v}");
}
