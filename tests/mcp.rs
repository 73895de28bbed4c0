//! `agent-bridge mcp` driven over stdio with raw JSON-RPC, as an MCP host (Claude Code, Claude
//! Desktop) drives it: initialize, tools/list, tools/call; two instances messaging each other, and
//! `ask` answered through `read_messages` + `reply`; messages pushed as notifications
//! (`notifications/claude/channel` or `notifications/message`) and an `ask` continued by `wait_reply`.

mod common;

use std::collections::VecDeque;
use std::process::Stdio;

use common::{Server, Ws, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// One `agent-bridge mcp` process and the host side of its stdio.
struct Mcp {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: i64,
    /// Notifications (lines without an id) read while waiting for a response, oldest first.
    notifications: VecDeque<Value>,
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
        Mcp { child, stdin, stdout, next_id: 0, notifications: VecDeque::new() }
    }

    async fn write(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.expect("writing to the server");
        self.stdin.flush().await.expect("flush");
    }

    /// The next response the server writes; notifications met on the way are kept for
    /// [`Mcp::notification`].
    async fn read(&mut self) -> Value {
        loop {
            let v = self.read_line().await;
            if v.get("id").is_some() {
                return v;
            }
            self.notifications.push_back(v);
        }
    }

    /// The next notification of `method` (others before it are dropped).
    async fn notification(&mut self, method: &str) -> Value {
        loop {
            let v = match self.notifications.pop_front() {
                Some(v) => v,
                None => self.read_line().await,
            };
            assert!(v.get("id").is_none(), "a response nobody waited for: {v}");
            if v["method"] == method {
                return v;
            }
        }
    }

    /// The next line the server writes, as JSON; every line on stdout must be JSON-RPC.
    async fn read_line(&mut self) -> Value {
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
        self.initialize_with(json!({})).await
    }

    /// `initialize` declaring `capabilities` + `notifications/initialized`.
    async fn initialize_with(&mut self, capabilities: Value) -> Value {
        let params = json!({"protocolVersion": "2025-06-18", "capabilities": capabilities, "clientInfo": {"name": "test-host", "version": "1"}});
        let r = self.request("initialize", params).await;
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
    assert_eq!(init["capabilities"], json!({"tools": {}, "logging": {}}), "no claude/channel for a host without it");
    assert_eq!(init["serverInfo"]["name"], "agent-bridge");
    assert!(init["instructions"].as_str().is_some_and(|s| s.contains("claude-one")), "{init}");

    let older = mcp.request("initialize", json!({"protocolVersion": "2025-03-26", "capabilities": {}})).await;
    assert_eq!(older["result"]["protocolVersion"], "2025-03-26", "a supported older version is accepted");
    let future = mcp.request("initialize", json!({"protocolVersion": "2099-01-01", "capabilities": {}})).await;
    assert_eq!(future["result"]["protocolVersion"], "2025-06-18", "an unknown version gets ours");

    assert_eq!(mcp.request("ping", json!({})).await["result"], json!({}));
    assert_eq!(mcp.request("logging/setLevel", json!({"level": "debug"})).await["result"], json!({}));
    assert_eq!(mcp.request("logging/setLevel", json!({"level": "loud"})).await["error"]["code"], -32602);

    let list = mcp.request("tools/list", json!({})).await;
    let tools = list["result"]["tools"].as_array().expect("tools").clone();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for name in ["send_message", "ask", "wait_reply", "broadcast", "read_messages", "join_room", "room_history", "room_members", "status"] {
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

    // An ask nobody answers ends with a pending handle, not an error.
    let unanswered = a.tool_ok("ask", json!({"to": "agent-c", "text": "anyone?", "timeout_s": 0.5})).await;
    assert_eq!(unanswered["status"], "pending", "{unanswered}");
    assert!(unanswered["hint"].as_str().is_some_and(|t| t.contains("no reply from agent-c") && t.contains("wait_reply")), "{unanswered}");

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

/// Starts a broker, an `agent-bridge mcp` as `client_id` whose host declares `capabilities`, and a
/// WebSocket agent `ws-agent`; waits until the MCP server is connected.
async fn mcp_and_agent(client_id: &str, capabilities: Value) -> (Server, Mcp, Value, Ws) {
    let server = Server::start(&[]);
    let mut mcp = Mcp::start(&server, client_id);
    let init = mcp.initialize_with(capabilities).await;
    assert_eq!(mcp.tool_ok("status", json!({})).await["connection"], "connected");
    let ws = Ws::connect(&server, "ws-agent").await;
    (server, mcp, init, ws)
}

#[tokio::test]
async fn a_channel_host_gets_messages_pushed_without_calling_a_tool() {
    let (_server, mut mcp, init, mut ws) = mcp_and_agent("claude-ch", json!({"experimental": {"claude/channel": {}}})).await;
    assert_eq!(init["capabilities"]["experimental"], json!({"claude/channel": {}}), "{init}");
    assert!(init["instructions"].as_str().is_some_and(|s| s.contains("channel events")), "{init}");

    let sent = ws.send_msg("claude-ch", "note", json!({"text": "pushed to you"})).await;
    let pushed = mcp.notification("notifications/claude/channel").await;
    let params = &pushed["params"];
    assert_eq!(params["content"], "pushed to you", "{pushed}");
    let meta = &params["meta"];
    assert_eq!((meta["from"].clone(), meta["type"].clone()), (json!("ws-agent"), json!("note")), "{pushed}");
    assert_eq!(meta["message_id"], sent["message_id"], "{pushed}");
    assert!(meta["seq"].as_str().is_some_and(|s| s.parse::<u64>().is_ok()), "{pushed}");
    assert!(meta.get("room").is_none() && meta.get("correlation_id").is_none(), "{pushed}");

    // A JSON payload arrives as its JSON text, with the correlation id; and it is acknowledged.
    let r = "r-ack";
    ws.send(json!({"type": "send", "to": "claude-ch", "msg_type": "task", "payload": {"n": 1}, "require_ack": true,
                   "correlation_id": "job-7", "ref": r}))
        .await;
    let pushed = mcp.notification("notifications/claude/channel").await;
    assert_eq!(pushed["params"]["content"], r#"{"n":1}"#, "{pushed}");
    assert_eq!(pushed["params"]["meta"]["correlation_id"], "job-7", "{pushed}");

    // Pushed once: they count as read.
    let page = mcp.tool_ok("read_messages", json!({})).await;
    assert_eq!(page["messages"], json!([]), "{page}");
    assert_eq!(mcp.tool_ok("status", json!({})).await["unread"], 0);
    let again = mcp.tool_ok("read_messages", json!({"cursor": 0})).await;
    assert_eq!(again["messages"].as_array().map(Vec::len), Some(2), "an explicit cursor still re-reads: {again}");
}

#[tokio::test]
async fn a_host_without_channels_gets_logging_notifications() {
    let (_server, mut mcp, init, mut ws) = mcp_and_agent("plain-host", json!({})).await;
    assert!(init["capabilities"].get("experimental").is_none(), "{init}");
    let sent = ws.send_msg("plain-host", "note", json!({"text": "logged"})).await;
    let logged = mcp.notification("notifications/message").await;
    let params = &logged["params"];
    assert_eq!((params["level"].clone(), params["logger"].clone()), (json!("info"), json!("agent-bridge")), "{logged}");
    assert_eq!(params["data"]["id"], sent["message_id"], "{logged}");
    assert_eq!((params["data"]["from"].clone(), params["data"]["payload"].clone()), (json!("ws-agent"), json!({"text": "logged"})));
    // Logs do not reach the model: the message is still there for read_messages.
    let got = mcp.read_messages(1).await;
    assert_eq!(got[0]["id"], sent["message_id"]);

    // Above info, nothing is logged.
    assert_eq!(mcp.request("logging/setLevel", json!({"level": "error"})).await["result"], json!({}));
    ws.send_msg("plain-host", "note", json!({"text": "quiet"})).await;
    let quiet = mcp.read_messages(1).await;
    assert_eq!(quiet[0]["payload"], json!({"text": "quiet"}));
    assert_eq!(mcp.request("ping", json!({})).await["result"], json!({}));
    assert!(mcp.notifications.iter().all(|n| n["params"]["data"]["payload"] != json!({"text": "quiet"})), "{:?}", mcp.notifications);
}

#[tokio::test]
async fn a_pending_ask_is_continued_by_wait_reply() {
    let (_server, mut mcp, _init, mut ws) = mcp_and_agent("asker", json!({})).await;
    let pending = mcp.tool_ok("ask", json!({"to": "ws-agent", "text": "still there?", "timeout_s": 0.5})).await;
    assert_eq!(pending["status"], "pending", "{pending}");
    let correlation = pending["correlation_id"].as_str().expect("a correlation id").to_owned();

    let question = ws.recv_msg().await;
    assert_eq!((question["correlation_id"].as_str(), question["payload"].clone()), (Some(correlation.as_str()), json!({"text": "still there?"})));
    let early = mcp.tool_ok("wait_reply", json!({"correlation_id": correlation, "timeout_s": 0.2})).await;
    assert_eq!(early["status"], "pending", "{early}");

    ws.send(json!({"type": "send", "to": "asker", "msg_type": "answer", "payload": {"text": "yes"}, "correlation_id": correlation}))
        .await;
    let done = mcp.tool_ok("wait_reply", json!({"correlation_id": correlation, "timeout_s": 10})).await;
    assert_eq!((done["reply"]["from"].clone(), done["reply"]["payload"].clone()), (json!("ws-agent"), json!({"text": "yes"})), "{done}");
    // Asked again later, the reply is still found.
    let again = mcp.tool_ok("wait_reply", json!({"correlation_id": correlation, "timeout_s": 0.2})).await;
    assert_eq!(again["reply"]["payload"], json!({"text": "yes"}));

    // Waits are capped below the host's own timeout.
    let tools = mcp.request("tools/list", json!({})).await;
    let schema = |name: &str| tools["result"]["tools"].as_array().and_then(|t| t.iter().find(|t| t["name"] == name).cloned()).expect(name);
    assert_eq!(schema("ask")["inputSchema"]["properties"]["timeout_s"]["maximum"], 50.0);
    assert_eq!(schema("wait_reply")["inputSchema"]["properties"]["timeout_s"]["maximum"], 50.0);
    assert_eq!(schema("read_messages")["inputSchema"]["properties"]["wait_s"]["maximum"], 50.0);
    assert_eq!(schema("wait_reply")["inputSchema"]["required"], json!(["correlation_id"]));
}

#[tokio::test]
async fn agent_pool_and_task_tools_are_the_calls_of_the_table() {
    let server = Server::start(&[]);
    let mut m = Mcp::start(&server, "agent-m");
    m.initialize().await;
    let agent = m.tool_ok("register_agent", json!({"pools": ["mcp-crew"], "capabilities": ["review"], "weight": 2})).await;
    assert_eq!((agent["client_id"].as_str(), agent["online"].as_bool()), (Some("agent-m"), Some(true)), "{agent}");
    m.tool_ok("agent_status", json!({"status": "working", "detail": "reading"})).await;
    let listed = m.tool_ok("list_agents", json!({"capability": "review"})).await;
    assert_eq!(listed["agents"][0]["status"], "working", "{listed}");
    assert_eq!(m.tool_ok("configure_pool", json!({"pool": "mcp-crew", "strategy": "weighted"})).await["strategy"], "weighted");
    let pools = m.tool_ok("list_pools", json!({})).await;
    assert_eq!(pools["pools"][0]["strategy"], "weighted", "{pools}");
    let task = m.tool_ok("assign_task", json!({"to": "pool:mcp-crew", "title": "self-review"})).await;
    let id = task["id"].as_str().expect("id");
    assert_eq!(m.tool_ok("update_task", json!({"id": id, "state": "completed", "result": {"ok": true}})).await["state"], "completed");
    assert_eq!(m.tool_ok("get_task", json!({"id": id})).await["result"]["ok"], true);
    assert_eq!(m.tool_ok("list_tasks", json!({"state": "completed"})).await["count"], 1);
    let other = m.tool_ok("assign_task", json!({"to": "agent-m", "title": "second"})).await;
    assert_eq!(m.tool_ok("cancel_task", json!({"id": other["id"]})).await["state"], "canceled");
}
