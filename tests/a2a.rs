//! The A2A gateway (PROTOCOL.md section 7), driven by the official Python A2A SDK (`a2a-sdk`
//! 1.x) as an independent client: cards, a streamed task answered by a WebSocket agent, a task
//! without streaming, cancel, and an agent that is not connected.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, Ws};
use serde_json::{json, Value};

/// Answers every `a2a.message` except `wait` with `echo: <text>`; reports what it saw.
async fn agent(mut ws: Ws, seen: tokio::sync::mpsc::UnboundedSender<Value>) {
    while let Some(frame) = ws.try_recv(Duration::from_secs(60)).await {
        if frame["type"] != "message" {
            continue;
        }
        let m = frame["message"].clone();
        let _ = seen.send(m.clone());
        if m["type"] == "a2a.message" && m["payload"]["text"] != "wait" {
            let text = format!("echo: {}", m["payload"]["text"].as_str().unwrap_or_default());
            ws.send(json!({"type": "send", "to": m["from"], "msg_type": "a2a.reply", "payload": {"text": text},
                "correlation_id": m["correlation_id"]}))
                .await;
        }
    }
}

/// The JSON lines the client printed, by step.
fn steps(stdout: &[u8]) -> std::collections::HashMap<String, Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| (v["step"].as_str().unwrap_or_default().to_owned(), v))
        .collect()
}

#[tokio::test]
#[ignore = "needs the Python a2a-sdk (pip)"]
async fn the_official_a2a_client_talks_to_a_websocket_agent() {
    let python = common::python::with("a2a-venv", &[("a2a.client", "a2a-sdk[http-server]>=1,<2")]);
    let server = Server::start(&[]);
    let ws = Ws::connect(&server, "helper").await;
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(agent(ws, tx));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/a2a/client.py");
    let child = Command::new(&python)
        .args([script, &server.http(""), "-", "helper"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    let out = tokio::task::spawn_blocking(move || common::wait_output(child, Duration::from_secs(60), "the A2A client"))
        .await
        .expect("waiting for the client");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let s = steps(&out.stdout);
    assert!(out.status.success(), "the A2A client failed: {s:?}\n{stderr}");

    assert_eq!(s["gateway_card"]["name"], "agent-bridge");
    assert_eq!(s["gateway_card"]["skills"], json!(["helper"]), "the directory lists the connected agent");
    assert_eq!(s["gateway_card"]["bearer"], "Bearer");
    assert_eq!(s["agent_card"]["url"], server.http("/a2a/helper"));
    assert_eq!(s["agent_card"]["binding"], "JSONRPC");

    let stream = &s["stream"];
    assert_eq!(stream["answer"], json!(["echo: hello over a2a"]), "{stream}");
    let states = stream["states"].as_array().expect("states");
    assert_eq!(states.first(), Some(&json!("TASK_STATE_SUBMITTED")), "{stream}");
    assert_eq!(states.last(), Some(&json!("TASK_STATE_COMPLETED")), "{stream}");
    assert!(states.contains(&json!("TASK_STATE_WORKING")), "{stream}");
    assert_eq!(s["get"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(s["get"]["artifacts"], json!([["echo: hello over a2a"]]));
    assert_eq!(s["send"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(s["send"]["answer"], json!([["echo: hello again"]]));

    assert_eq!(s["cancel"]["before"], "TASK_STATE_WORKING");
    assert_eq!(s["cancel"]["after"], "TASK_STATE_CANCELED");
    assert_eq!(s["unknown_card"]["error"], "AgentCardResolutionError");
    assert_eq!(s["unknown_card"]["status"], 404);
    assert_eq!(s["unknown_send"]["error"], "TaskNotFoundError", "{:?}", s["unknown_send"]);
    assert_eq!(s["unknown_send"]["data"]["code"], "AGENT_NOT_FOUND");

    // What the agent got: broker messages from the gateway, correlated with the task ids.
    let mut got = Vec::new();
    while let Ok(m) = seen.try_recv() {
        got.push(m);
    }
    let first = got.iter().find(|m| m["payload"]["text"] == "hello over a2a").expect("the streamed message");
    assert_eq!(first["from"], "a2a:gateway");
    assert_eq!(first["correlation_id"], stream["task"]);
    assert_eq!(first["payload"]["parts"], json!([{"text": "hello over a2a"}]));
    let cancel = got.iter().find(|m| m["type"] == "a2a.cancel").expect("the agent is told of the cancel");
    assert_eq!(cancel["correlation_id"], s["cancel"]["task"]);
}

#[tokio::test]
async fn json_rpc_errors_and_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [key] = common::create_keys(dir.path(), [("caller", "read,write")]);
    let server = Server::start(&["--data-dir", dir.path().to_str().expect("utf-8")]);
    let http = reqwest::Client::new();
    let card = http.get(server.http("/.well-known/agent-card.json")).send().await.expect("card");
    assert_eq!(card.status(), 200, "the broker's card is public");
    let no_key = http.post(server.http("/a2a/x")).json(&json!({})).send().await.expect("post");
    assert_eq!(no_key.status(), 401, "the JSON-RPC endpoint needs the API's credentials");
    let call = |body: Value| {
        let req = http.post(server.http("/a2a/nobody")).bearer_auth(&key).json(&body);
        async move { req.send().await.expect("post").json::<Value>().await.expect("JSON") }
    };
    let r = call(json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "task-none"}})).await;
    assert_eq!(r["error"]["code"], -32001, "{r}");
    let r = call(json!({"jsonrpc": "2.0", "id": 2, "method": "Nope", "params": {}})).await;
    assert_eq!(r["error"]["code"], -32601, "{r}");
    let r = call(json!({"jsonrpc": "2.0", "id": 3, "method": "SendMessage",
        "params": {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}}))
    .await;
    assert_eq!((r["id"].clone(), r["error"]["code"].clone()), (json!(3), json!(-32001)), "{r}");
    let r = call(json!({"id": 4})).await;
    assert_eq!(r["error"]["code"], -32600, "{r}");
}
