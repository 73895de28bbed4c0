//! `agent-bridge mcp` driven over stdio with raw JSON-RPC, as an MCP host (Claude Code, Claude
//! Desktop) drives it: initialize, tools/list, tools/call; two instances messaging each other, and
//! `ask` answered through `read_messages` + `reply`.

mod common;

use std::process::Stdio;

use common::{Server, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// One `agent-bridge mcp` process and the host side of its stdio.
struct Mcp {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: i64,
}

impl Mcp {
    fn start(server: &Server, client_id: &str) -> Mcp {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-bridge"));
        cmd.args(["mcp", "--url", &format!("ws://127.0.0.1:{}", server.port), "--client-id", client_id]);
        for (key, _) in std::env::vars() {
            if key.starts_with("BRIDGE_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("XDG_CONFIG_HOME", "/nonexistent/agent-bridge-tests").env("RUST_LOG", "info");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning agent-bridge mcp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Mcp { child, stdin, stdout, next_id: 0 }
    }

    async fn write(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.expect("writing to the server");
        self.stdin.flush().await.expect("flush");
    }

    /// The next line the server writes, as JSON; every line on stdout must be JSON-RPC.
    async fn read(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .expect("the server answered in time")
            .expect("reading stdout")
            .expect("stdout open");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        assert_eq!(v["jsonrpc"], "2.0", "{v}");
        v
    }

    /// Sends a request and returns its response (the whole JSON-RPC object).
    async fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.write(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()).await;
        let response = self.read().await;
        assert_eq!(response["id"], id, "responses come for the request asked: {response}");
        response
    }

    /// `initialize` + `notifications/initialized`, as a host opens a session.
    async fn initialize(&mut self) -> Value {
        let r = self
            .request(
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test-host", "version": "1"}}),
            )
            .await;
        self.write(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string()).await;
        r["result"].clone()
    }

    /// `tools/call`; returns the `CallToolResult`.
    async fn tool(&mut self, name: &str, arguments: Value) -> Value {
        let r = self.request("tools/call", json!({"name": name, "arguments": arguments})).await;
        assert!(r.get("error").is_none(), "tools/call {name} is answered with a result: {r}");
        r["result"].clone()
    }

    /// A tool that must succeed; returns its structured result.
    async fn tool_ok(&mut self, name: &str, arguments: Value) -> Value {
        let result = self.tool(name, arguments).await;
        assert_eq!(result["isError"], false, "{name} failed: {result}");
        let text = result["content"][0]["text"].as_str().expect("text content");
        let parsed: Value = serde_json::from_str(text).expect("the text is the JSON result");
        if parsed.is_object() {
            assert_eq!(parsed, result["structuredContent"]);
        }
        parsed
    }

    /// `read_messages` until `n` messages arrived (each read waits up to 5 s).
    async fn read_messages(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while out.len() < n {
            assert!(tokio::time::Instant::now() < deadline, "only {} of {n} messages arrived: {out:?}", out.len());
            let page = self.tool_ok("read_messages", json!({"wait_s": 5})).await;
            out.extend(page["messages"].as_array().cloned().unwrap_or_default());
        }
        out
    }
}

#[tokio::test]
async fn an_mcp_host_session_initialize_list_and_errors() {
    let server = Server::start(&[]);
    let mut mcp = Mcp::start(&server, "claude-one");
    let init = mcp.initialize().await;
    assert_eq!(init["protocolVersion"], "2025-06-18");
    assert_eq!(init["capabilities"], json!({"tools": {}}));
    assert_eq!(init["serverInfo"]["name"], "agent-bridge");
    assert!(init["instructions"].as_str().is_some_and(|s| s.contains("claude-one")), "{init}");

    let older = mcp.request("initialize", json!({"protocolVersion": "2025-03-26", "capabilities": {}})).await;
    assert_eq!(older["result"]["protocolVersion"], "2025-03-26", "a supported older version is accepted");
    let future = mcp.request("initialize", json!({"protocolVersion": "2099-01-01", "capabilities": {}})).await;
    assert_eq!(future["result"]["protocolVersion"], "2025-06-18", "an unknown version gets ours");

    assert_eq!(mcp.request("ping", json!({})).await["result"], json!({}));

    let list = mcp.request("tools/list", json!({})).await;
    let tools = list["result"]["tools"].as_array().expect("tools").clone();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for name in ["send_message", "ask", "broadcast", "read_messages", "join_room", "room_history", "room_members", "status"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    // The room tools come from the table of calls, their schemas from the params' types.
    let topic = tools.iter().find(|t| t["name"] == "room_topic").expect("room_topic is listed");
    assert_eq!(topic["inputSchema"]["required"], json!(["room"]), "{topic}");
    assert!(topic["inputSchema"]["properties"]["topic"]["description"].as_str().is_some_and(|d| d.contains("leave it out")), "{topic}");
    assert!(names.contains(&"create_room") && names.contains(&"add_card") && names.contains(&"vote"), "{names:?}");
    for t in &tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        assert!(t["description"].as_str().is_some_and(|d| !d.is_empty()), "{t}");
    }

    // JSON-RPC errors: unknown method, unknown tool, bad params, bad JSON, bad envelope.
    assert_eq!(mcp.request("resources/list", json!({})).await["error"]["code"], -32601);
    assert_eq!(mcp.request("tools/call", json!({"name": "format_disk"})).await["error"]["code"], -32602);
    assert_eq!(mcp.request("tools/call", json!({"arguments": {}})).await["error"]["code"], -32602);
    assert_eq!(mcp.request("tools/call", json!({"name": "status", "arguments": [1]})).await["error"]["code"], -32602);
    mcp.write("{this is not json").await;
    let parse = mcp.read().await;
    assert_eq!((parse["id"].clone(), parse["error"]["code"].clone()), (Value::Null, json!(-32700)));
    mcp.write(r#"{"jsonrpc": "1.0", "id": 99, "method": "ping"}"#).await;
    assert_eq!(mcp.read().await["error"]["code"], -32600);
    // Notifications get no answer: the next line answers the next request.
    mcp.write(r#"{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}"#).await;
    assert_eq!(mcp.request("ping", json!({})).await["result"], json!({}));

    // Tool failures are results with isError and a sentence, not protocol errors.
    let bad = mcp.tool("send_message", json!({"text": "to nobody"})).await;
    assert_eq!(bad["isError"], true);
    assert!(bad["content"][0]["text"].as_str().is_some_and(|t| t.contains("give `to`")), "{bad}");
    let bad_type = mcp.tool("ask", json!({"to": 7, "text": "x"})).await;
    assert!(bad_type["content"][0]["text"].as_str().is_some_and(|t| t.contains("`to` must be a string")), "{bad_type}");

    let status = mcp.tool_ok("status", json!({})).await;
    assert_eq!(status["client_id"], "claude-one");
    assert_eq!(status["connection"], "connected");
    assert_eq!(status["broker"]["server"], "agent-bridge");

    // A room that does not exist (or a broker without rooms): a tool error naming the call.
    let members = mcp.tool("room_members", json!({"room": "no-such-room"})).await;
    assert_eq!(members["isError"], true, "{members}");
    assert!(text(&members).contains("room.members"), "{members}");

    // Closing stdin ends the server cleanly.
    drop(mcp.stdin);
    let status = tokio::time::timeout(WAIT, mcp.child.wait()).await.expect("exits when stdin closes").expect("status");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn two_mcp_instances_message_each_other_and_ask_gets_its_reply() {
    let server = Server::start(&[]);
    let mut a = Mcp::start(&server, "agent-a");
    let mut b = Mcp::start(&server, "agent-b");
    a.initialize().await;
    b.initialize().await;

    let sent = a.tool_ok("send_message", json!({"to": "agent-b", "type": "note", "text": "hello from a"})).await;
    assert!(sent["message_id"].as_str().is_some_and(|id| id.starts_with("msg-")), "{sent}");
    let got = b.read_messages(1).await;
    assert_eq!((got[0]["from"].clone(), got[0]["type"].clone()), (json!("agent-a"), json!("note")));
    assert_eq!(got[0]["payload"], json!({"text": "hello from a"}));
    assert_eq!(got[0]["id"], sent["message_id"]);

    // The cursor: nothing new after the last read; an earlier cursor reads again.
    let empty = b.tool_ok("read_messages", json!({})).await;
    assert_eq!(empty["messages"], json!([]));
    let cursor = empty["cursor"].as_u64().expect("a cursor");
    let again = b.tool_ok("read_messages", json!({"cursor": cursor - 1})).await;
    assert_eq!(again["messages"][0]["id"], sent["message_id"]);

    b.tool_ok("send_message", json!({"to": "agent-a", "payload": {"n": 1}, "priority": "high"})).await;
    let back = a.read_messages(1).await;
    assert_eq!((back[0]["from"].clone(), back[0]["payload"].clone()), (json!("agent-b"), json!({"n": 1})));

    // `ask` blocks in A until B answers with `reply`; a ping to A is answered meanwhile.
    a.next_id += 1;
    let ask_id = a.next_id;
    let ask = json!({"jsonrpc": "2.0", "id": ask_id, "method": "tools/call",
                     "params": {"name": "ask", "arguments": {"to": "agent-b", "text": "what is 6 x 7?", "timeout_s": 20}}});
    a.write(&ask.to_string()).await;
    a.write(&json!({"jsonrpc": "2.0", "id": "p-1", "method": "ping"}).to_string()).await;
    assert_eq!(a.read().await["id"], "p-1", "the ping is not held up by the pending ask");

    let question = b.read_messages(1).await;
    assert_eq!((question[0]["from"].clone(), question[0]["type"].clone()), (json!("agent-a"), json!("question")));
    let replied = b.tool_ok("reply", json!({"message_id": question[0]["id"], "text": "42"})).await;
    assert_eq!(replied["status"], "delivered");

    let answer = a.read().await;
    assert_eq!(answer["id"], ask_id);
    let result = &answer["result"];
    assert_eq!(result["isError"], false, "{answer}");
    let reply = &result["structuredContent"]["reply"];
    assert_eq!((reply["from"].clone(), reply["payload"].clone()), (json!("agent-b"), json!({"text": "42"})));
    assert!(result["content"][0]["text"].as_str().is_some_and(|t| t.contains("42")));
    // The reply went to the ask, not to A's unread messages.
    let rest = a.tool_ok("read_messages", json!({})).await;
    assert_eq!(rest["messages"], json!([]));

    // An ask nobody answers ends with a tool error that says so.
    let unanswered = a.tool("ask", json!({"to": "agent-c", "text": "anyone?", "timeout_s": 0.5})).await;
    assert_eq!(unanswered["isError"], true);
    assert!(unanswered["content"][0]["text"].as_str().is_some_and(|t| t.contains("No reply from agent-c")), "{unanswered}");

    let broadcast = a.tool_ok("broadcast", json!({"text": "all hands"})).await;
    assert!(broadcast["recipients"].as_u64().is_some_and(|n| n >= 1), "{broadcast}");
    let heard = b.read_messages(1).await;
    assert_eq!((heard[0]["to"].clone(), heard[0]["payload"].clone()), (json!("all"), json!({"text": "all hands"})));

    // Rooms, when the broker has them: both join, and a room message reaches the other member.
    let created = a.tool("create_room", json!({"name": "lab", "topic": "tests"})).await;
    if created["isError"] == true {
        assert!(text(&created).contains("does not support room.create yet"), "{created}");
        let join = b.tool("join_room", json!({"room": "lab"})).await;
        assert!(text(&join).contains("does not support room.join yet"), "{join}");
        return;
    }
    a.tool_ok("join_room", json!({"room": "lab"})).await;
    b.tool_ok("join_room", json!({"room": "lab", "role": "reviewer"})).await;
    a.tool_ok("send_message", json!({"room": "lab", "text": "hello room"})).await;
    let said = b.read_messages(1).await;
    assert_eq!((said[0]["room"].clone(), said[0]["payload"].clone()), (json!("lab"), json!({"text": "hello room"})));
    let members = a.tool_ok("room_members", json!({"room": "lab"})).await;
    assert!(members.to_string().contains("agent-b"), "{members}");
    let history = a.tool_ok("room_history", json!({"room": "lab"})).await;
    assert!(history.to_string().contains("hello room"), "{history}");
    // A tool from the table of calls: room.topic is room_topic, with no MCP code of its own.
    let set = a.tool_ok("room_topic", json!({"room": "lab", "topic": "shipping"})).await;
    assert_eq!((set["topic"].as_str(), set["changed"].as_bool()), (Some("shipping"), Some(true)), "{set}");
    let read = b.tool_ok("room_topic", json!({"room": "lab"})).await;
    assert_eq!(read["topic"], "shipping");
    let bad = b.tool("room_topic", json!({"room": "lab", "topic": ""})).await;
    assert_eq!(bad["isError"], true, "{bad}");
    assert!(text(&bad).contains("room.topic") && text(&bad).contains("topic must be"), "{bad}");
}

/// The text of a tool result.
fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}
