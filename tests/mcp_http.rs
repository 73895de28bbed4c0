//! `/mcp`, the broker's own MCP server over Streamable HTTP, driven by the official Python MCP SDK
//! (`mcp` from PyPI, installed into a virtualenv on first run) as an independent client: the
//! tools listed, two HTTP agents conversing, `ask` answered by a WebSocket agent, credentials and
//! origins enforced, and the 2025-11-25 session flow with a pushed message. The scenarios are in
//! tests/mcp_http/client.py; each prints one JSON line judged here.

mod common;

use std::path::Path;

use common::{create_keys, Server, Ws, WAIT};
use serde_json::{json, Value};

/// A broker with API keys (so auth is on) and the keys, in grant order.
fn broker<const N: usize>(grants: [(&str, &str); N]) -> (tempfile::TempDir, Server, [String; N]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = create_keys(dir.path(), grants);
    let server = Server::start(&["--data-dir", dir.path().to_str().expect("utf-8 path")]);
    (dir, server, keys)
}

fn python() -> String {
    common::python::with("mcp-sdk-venv", &[("mcp", "mcp>=2.3,<3")])
}

/// Runs one scenario of client.py against `server`'s `/mcp`; its JSON line.
async fn scenario(server: &Server, name: &str, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_http/client.py");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(script).arg(name).arg(server.http("/mcp")).args(args).kill_on_drop(true);
    let out = tokio::time::timeout(WAIT * 6, cmd.output()).await.expect("the scenario finished in time").expect("running python");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scenario {name} failed:\n{stdout}\n{stderr}\nbroker:\n{}", server.logs());
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("scenario {name} printed no JSON ({e}): {stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python mcp SDK (pip)"]
async fn the_sdk_lists_the_stdio_servers_tools() {
    let (_dir, server, [alice]) = broker([("alice", "read,write")]);
    let out = scenario(&server, "list", &[&alice]).await;
    assert_eq!(out["protocol"], "2026-07-28", "the SDK's auto mode settles on the stateless revision: {out}");
    let names: Vec<&str> = out["tools"].as_array().expect("names").iter().filter_map(Value::as_str).collect();
    for name in ["send_message", "ask", "broadcast", "read_messages", "reply", "status", "join_room", "room_history"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let listed = agent_bridge::cli::mcp::tools::definitions();
    assert_eq!(names.len(), listed.as_array().map_or(0, Vec::len), "the same table as over stdio");
    assert_eq!(out["status"]["data"]["client_id"], "alice", "the key binds the client id: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python mcp SDK (pip)"]
async fn two_http_agents_converse() {
    let (_dir, server, [alice, bob]) = broker([("alice", "read,write"), ("bob", "read,write")]);
    let out = scenario(&server, "converse", &[&alice, &bob]).await;
    assert_eq!(out["sent"]["is_error"], false, "{out}");
    let got = &out["got"]["data"]["messages"][0];
    assert_eq!((got["from"].as_str(), got["payload"]["text"].as_str()), (Some("alice"), Some("hello bob")), "{out}");
    assert_eq!(out["replied"]["is_error"], false, "{out}");
    let back = &out["back"]["data"]["messages"][0];
    assert_eq!((back["from"].as_str(), back["payload"]["text"].as_str()), (Some("bob"), Some("hello alice")), "{out}");
    assert_eq!(back["correlation_id"], got["id"], "a reply carries the request's id: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python mcp SDK (pip)"]
async fn ask_is_answered_by_a_websocket_agent() {
    let (_dir, server, [alice, helper]) = broker([("alice", "read,write"), ("helper", "read,write")]);
    let mut ws = Ws::connect_query(&server, "helper", &format!("token={helper}")).await;
    let answering = async {
        let question = tokio::time::timeout(WAIT * 3, ws.recv_msg()).await.expect("the question arrived");
        let correlation = question["correlation_id"].as_str().or(question["id"].as_str()).unwrap_or_default().to_owned();
        let frame = json!({"type": "send", "to": question["from"], "msg_type": "answer", "payload": {"text": "42"},
                           "correlation_id": correlation, "ref": "a-1"});
        ws.send(frame).await;
        question
    };
    let args = [alice.as_str(), "helper"];
    let (out, question) = tokio::join!(scenario(&server, "ask", &args), answering);
    assert_eq!(question["payload"]["text"], "what is 6*7?", "{question}");
    assert_eq!(out["asked"]["is_error"], false, "{out}");
    let reply = &out["asked"]["data"]["reply"];
    assert_eq!((reply["from"].as_str(), reply["payload"]["text"].as_str()), (Some("helper"), Some("42")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python mcp SDK (pip)"]
async fn credentials_and_origins_are_enforced() {
    let (_dir, server, [alice, reader]) = broker([("alice", "read,write"), ("reader", "read")]);
    let out = scenario(&server, "refusals", &[&alice]).await;
    assert_eq!(out["anonymous"]["status"], 401, "{out}");
    assert_eq!(out["anonymous"]["body"]["code"], "unauthorized", "{out}");
    assert_eq!(out["foreign"]["status"], 403, "{out}");
    assert_eq!(out["foreign"]["body"]["code"], "forbidden", "{out}");
    assert_eq!(out["sdk_anonymous"]["connected"], false, "{out}");
    assert_eq!(out["sdk_foreign"]["connected"], false, "{out}");

    let out = scenario(&server, "readonly", &[&reader]).await;
    assert!(out["tools"].as_u64().is_some_and(|n| n > 5), "a read-only key may list: {out}");
    assert_eq!(out["send"]["is_error"], true, "a read-only key cannot send: {out}");
    assert!(out["send"]["text"].as_str().is_some_and(|t| t.contains("forbidden")), "{out}");
    assert_eq!(out["read"]["is_error"], false, "but it can read: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python mcp SDK (pip)"]
async fn a_session_pushes_messages_and_ends_with_delete() {
    let (_dir, server, [carol, dave]) = broker([("carol", "read,write"), ("dave", "read,write")]);
    let out = scenario(&server, "session", &[&carol, &dave]).await;
    assert_eq!(out["protocol"], "2025-11-25", "{out}");
    assert!(out["session"].as_str().is_some_and(|s| s.len() >= 16), "initialize answers Mcp-Session-Id: {out}");
    assert!(out["tools"].as_u64().is_some_and(|n| n > 5), "{out}");
    let pushed = &out["pushed"];
    assert_eq!((pushed["from"].as_str(), pushed["payload"]["text"].as_str()), (Some("dave"), Some("pushed to you")), "{out}");
    assert_eq!(out["after_delete"], 404, "DELETE ended the session: {out}");
}
