//! The MCP tools: their JSON Schemas (`tools/list`) and what each does (`tools/call`).
//!
//! Every tool answers a `CallToolResult`: the result as JSON text (and as `structuredContent`), or
//! `isError: true` with a sentence saying what went wrong — bad arguments included, so that the model
//! can correct itself; only an unknown tool name is a JSON-RPC error.

use std::sync::Arc;
use std::time::Duration;

use agent_bridge_actors::rooms::calls::{self, Spec, CALLS};
use agent_bridge_protocol::{Message, Priority};
use serde_json::{json, Map, Value};

use super::inbox::Inbox;
use crate::cli::common::{Failure, Resolved};
use crate::client::{Client, ClientError, Connection, Outgoing};

/// How long a tool waits for the broker connection before saying it is not connected.
const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// How long `status` waits for a connection in progress.
const STATUS_WAIT: Duration = Duration::from_secs(2);
/// The longest `ask` and `read_messages` wait.
const MAX_WAIT_S: f64 = 600.0;

/// What the tools work with.
pub struct Bridge {
    pub client: Client,
    pub inbox: Arc<Inbox>,
    pub who: Resolved,
}

/// A tool's answer: JSON for the model, or an error sentence.
pub type ToolResult = Result<Value, String>;

/// The tool list of `tools/list`.
pub fn definitions() -> Value {
    let priority = json!({"type": "string", "enum": ["critical", "high", "normal", "low", "bulk"], "description": "Delivery priority (default normal)."});
    let room = json!({"type": "string", "description": "Room name: \"name\" or \"name/channel\"."});
    let tools = [
        message_tool(
            ("send_message", "Send a message"),
            "Send a message to another agent (by client id), to a pool (\"pool:NAME\", one member picked by load balancing), to \"all\" connected agents, or to a room. Returns the message id and whether it was delivered now or queued for an offline recipient. To answer a message you received, prefer the reply tool.",
            "Message type, free text such as command, question, note (default \"message\").",
            json!({
                "to": {"type": "string", "description": "Recipient: a client id, \"all\", or \"pool:NAME\". Give to or room."},
                "room": room,
                "correlation_id": {"type": "string", "description": "Marks this as a reply to the request with this correlation id (or message id)."},
                "thread_id": {"type": "string", "description": "The conversation this message belongs to (read it back with get_thread)."},
                "require_ack": {"type": "boolean", "description": "Redeliver until the recipient acknowledges it."},
                "priority": priority,
                "ttl_s": {"type": "integer", "minimum": 1, "description": "Expire the message after this many seconds."}
            }),
            &[],
        ),
        message_tool(
            ("ask", "Ask and wait for the reply"),
            "Send a request to another agent and wait for its reply (the message it sends back with this request's correlation id). Returns the reply message, or an error if none came within timeout_s.",
            "Message type of the request (default \"question\").",
            json!({
                "to": {"type": "string", "description": "Who to ask: a client id or \"pool:NAME\"."},
                "timeout_s": {"type": "number", "minimum": 0.1, "maximum": MAX_WAIT_S, "description": "Seconds to wait for the reply (default 60)."}
            }),
            &["to"],
        ),
        message_tool(
            ("broadcast", "Broadcast to all agents"),
            "Send a message to every agent seen in the last minute (except yourself). Returns how many received it.",
            "Message type (default \"announcement\").",
            json!({}),
            &[],
        ),
        tool(
            "read_messages",
            "Read new messages",
            "Return the messages received since the last read (oldest first) and a cursor. Pass an earlier cursor to read again from there. Messages that ask for an acknowledgement are acknowledged when returned. To answer one, use reply with its id.",
            json!({
                "cursor": {"type": "integer", "minimum": 0, "description": "Return messages after this cursor (from an earlier result). Default: after the last read."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 500, "description": "At most this many messages (default 50)."},
                "wait_s": {"type": "number", "minimum": 0, "maximum": 60, "description": "If there is nothing new, wait up to this many seconds for a message (default 0)."}
            }),
            &[],
        ),
        message_tool(
            ("reply", "Reply to a message"),
            "Answer a message returned by read_messages: sent to its sender with its correlation id, which is what an agent waiting in ask receives.",
            "Message type (default \"reply\").",
            json!({"message_id": {"type": "string", "description": "The id of the message to answer."}}),
            &["message_id"],
        ),
        tool(
            "status",
            "Bridge status",
            "Your client id (what other agents send to), the broker's address and status, whether you are connected, and how many messages are unread.",
            json!({}),
            &[],
        ),
    ];
    // The room tools: one per call of the table, their schemas derived from the params' types.
    let room_tools = CALLS.iter().map(|c| json!({"name": c.tool, "title": c.title, "description": c.doc, "inputSchema": c.params_schema()}));
    Value::Array(tools.into_iter().chain(room_tools).collect())
}

/// A tool that sends a message: `properties` and the body's (`type`, documented by `type_doc`,
/// and `payload` or `text`).
fn message_tool((name, title): (&str, &str), description: &str, type_doc: &str, mut properties: Value, required: &[&str]) -> Value {
    properties["type"] = json!({"type": "string", "description": type_doc});
    properties["payload"] = json!({"description": "The message body: any JSON value (object, string, number...)."});
    properties["text"] = json!({"type": "string", "description": "Shorthand for a plain-text body: sent as {\"text\": TEXT}. Give text or payload."});
    tool(name, title, description, properties, required)
}

/// One tool of `tools/list` whose input is an object with `properties`, `required` among them.
fn tool(name: &str, title: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    let mut schema = json!({"type": "object", "properties": properties});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    json!({"name": name, "title": title, "description": description, "inputSchema": schema})
}

/// True for the names [`definitions`] lists.
pub fn exists(name: &str) -> bool {
    definitions().as_array().is_some_and(|tools| tools.iter().any(|t| t["name"] == name))
}

/// Runs a tool.
pub async fn call(bridge: &Bridge, name: &str, args: &Map<String, Value>) -> ToolResult {
    let a = Args { tool: name, map: args };
    match name {
        "send_message" => send_message(bridge, &a).await,
        "ask" => ask(bridge, &a).await,
        "broadcast" => {
            let msg = Outgoing::to("all", a.string("type")?.unwrap_or_else(|| "announcement".into()), a.payload()?);
            sent(bridge, msg, "broadcasting").await
        }
        "read_messages" => read_messages(bridge, &a).await,
        "reply" => reply(bridge, &a).await,
        "status" => Ok(status(bridge).await),
        other => match calls::by_tool(other) {
            Some(spec) => room_call(bridge, spec, &a).await,
            None => Err(format!("unknown tool {other:?}")),
        },
    }
}

/// A tool of the table of calls: the arguments are the call's params, checked by the broker.
async fn room_call(bridge: &Bridge, spec: &Spec, a: &Args<'_>) -> ToolResult {
    connected(bridge).await?;
    let fail = |e: ClientError| failure(bridge, &e, spec.name);
    match spec.name {
        // Through the client's own join and leave, which keep the room joined across reconnects.
        "room.join" => {
            let (room, role, since) = (a.required_string("room")?, a.string("role")?, a.u64("since")?);
            bridge.client.join_room(&room, role.as_deref(), since).await.map_err(fail)
        }
        "room.leave" => bridge.client.leave_room(&a.required_string("room")?).await.map_err(fail),
        method => bridge.client.call(method, Value::Object(a.map.clone())).await.map_err(fail),
    }
}

async fn send_message(bridge: &Bridge, a: &Args<'_>) -> ToolResult {
    let msg_type = a.string("type")?.unwrap_or_else(|| "message".into());
    let mut msg = match (a.string("to")?, a.string("room")?) {
        (Some(to), None) => Outgoing::to(to, msg_type, a.payload()?),
        (None, Some(room)) => Outgoing::room(room, msg_type, a.payload()?),
        (Some(_), Some(_)) => return Err("send_message: give either `to` or `room`, not both".into()),
        (None, None) => return Err("send_message: give `to` (a client id, \"all\" or \"pool:NAME\") or `room`".into()),
    };
    if let Some(c) = a.string("correlation_id")? {
        msg = msg.correlation_id(c);
    }
    if let Some(t) = a.string("thread_id")? {
        msg = msg.thread_id(t);
    }
    if let Some(p) = a.string("priority")? {
        let p = crate::cli::common::parse_priority(&p).map_err(|e| format!("send_message: `priority`: {e}"))?;
        msg = msg.priority(p);
    }
    msg = msg.require_ack(a.bool("require_ack")?.unwrap_or(false)).ttl(a.u64("ttl_s")?);
    sent(bridge, msg, "sending").await
}

/// Sends and reports the `sent` reply.
async fn sent(bridge: &Bridge, msg: Outgoing, what: &str) -> ToolResult {
    msg.validate().map_err(|e| format!("{what}: {e}"))?;
    connected(bridge).await?;
    let s = bridge.client.send(msg).await.map_err(|e| failure(bridge, &e, what))?;
    Ok(json!({"message_id": s.message_id, "seq": s.seq, "status": s.status, "recipients": s.recipients}))
}

async fn ask(bridge: &Bridge, a: &Args<'_>) -> ToolResult {
    let to = a.required_string("to")?;
    let msg = Outgoing::to(to.clone(), a.string("type")?.unwrap_or_else(|| "question".into()), a.payload()?);
    msg.validate().map_err(|e| format!("ask: {e}"))?;
    let timeout = a.f64("timeout_s")?.unwrap_or(60.0);
    if !(timeout > 0.0 && timeout <= MAX_WAIT_S) {
        return Err(format!("ask: `timeout_s` must be between 0.1 and {MAX_WAIT_S}"));
    }
    connected(bridge).await?;
    match bridge.client.request(msg, Duration::from_secs_f64(timeout)).await {
        Ok(reply) => Ok(json!({"reply": message_json(&reply, None)})),
        Err(ClientError::Timeout { .. }) => {
            Err(format!("No reply from {to} within {timeout} s. It may be offline or busy; the request stays queued for it."))
        }
        Err(e) => Err(failure(bridge, &e, "asking")),
    }
}

async fn read_messages(bridge: &Bridge, a: &Args<'_>) -> ToolResult {
    let cursor = a.u64("cursor")?;
    let limit = a.u64("limit")?.unwrap_or(50).clamp(1, 500);
    let wait = a.f64("wait_s")?.unwrap_or(0.0);
    if !(0.0..=60.0).contains(&wait) {
        return Err("read_messages: `wait_s` must be between 0 and 60".into());
    }
    let page = bridge.inbox.read(cursor, usize::try_from(limit).unwrap_or(500), Duration::from_secs_f64(wait)).await;
    for (_, m) in &page.messages {
        if m.requires_ack {
            // Read by the model: that is what the sender asked to hear about.
            let _ = bridge.client.ack(&m.id);
        }
    }
    let messages: Vec<Value> = page.messages.iter().map(|(c, m)| message_json(m, Some(*c))).collect();
    let mut out = json!({"messages": messages, "cursor": page.cursor, "more": page.more});
    if page.missed > 0 {
        out["missed"] = json!(page.missed);
    }
    Ok(out)
}

async fn reply(bridge: &Bridge, a: &Args<'_>) -> ToolResult {
    let id = a.required_string("message_id")?;
    let Some(request) = bridge.inbox.find(&id) else {
        return Err(format!("reply: no message {id:?} among the recent messages; use send_message with to and correlation_id"));
    };
    let msg = Outgoing::reply_to(&request, a.string("type")?.unwrap_or_else(|| "reply".into()), a.payload()?);
    sent(bridge, msg, "replying").await
}

async fn status(bridge: &Bridge) -> Value {
    // Right after start-up the first connection may still be on its way.
    let _ = bridge.client.wait_connected(STATUS_WAIT).await;
    let connection = match bridge.client.connection() {
        Connection::Connected { .. } => json!("connected"),
        Connection::Connecting => json!("connecting"),
        Connection::Reconnecting { attempt, error } => json!(format!("reconnecting (attempt {attempt}): {error}")),
        Connection::Closed => json!("closed"),
        Connection::Refused { status, error } => json!(format!("authentication failed (HTTP {status}): {error}")),
    };
    let broker = match bridge.client.status().await {
        Ok(s) => s,
        Err(e) => json!({"error": e.to_string()}),
    };
    json!({
        "client_id": bridge.who.client_id,
        "url": bridge.who.url,
        "connection": connection,
        "unread": bridge.inbox.unread(),
        "inbox_cursor": bridge.client.inbox_cursor(),
        "broker": broker,
    })
}

/// Waits briefly for the broker connection.
async fn connected(bridge: &Bridge) -> Result<(), String> {
    bridge.client.wait_connected(CONNECT_WAIT).await.map_err(|e| match e {
        ClientError::Rejected { status: 401 | 403, .. } => {
            format!("authentication failed: {e}; fix the token (--token or BRIDGE_TOKEN in the MCP server's configuration)")
        }
        e => format!("not connected to the broker: {e}"),
    })
}

/// A client error as a sentence (with the "not supported yet" hint).
fn failure(bridge: &Bridge, e: &ClientError, what: &str) -> String {
    Failure::client(e, &bridge.who.url, what).message
}

/// A message as the model sees it.
fn message_json(m: &Message, cursor: Option<u64>) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
    if let (Some(c), Some(obj)) = (cursor, v.as_object_mut()) {
        obj.insert("cursor".into(), json!(c));
    }
    if m.priority == Priority::Normal {
        if let Some(obj) = v.as_object_mut() {
            obj.remove("priority");
        }
    }
    v
}

/// Typed access to tool arguments, with errors that name the tool and the argument.
struct Args<'a> {
    tool: &'a str,
    map: &'a Map<String, Value>,
}

impl Args<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn wrong(&self, key: &str, expected: &str) -> String {
        format!("{}: `{key}` must be {expected}", self.tool)
    }

    fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong(key, "a string")),
        }
    }

    fn required_string(&self, key: &str) -> Result<String, String> {
        self.string(key)?.filter(|s| !s.is_empty()).ok_or_else(|| format!("{}: `{key}` is required", self.tool))
    }

    fn u64(&self, key: &str) -> Result<Option<u64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| self.wrong(key, "a non-negative integer")),
        }
    }

    fn f64(&self, key: &str) -> Result<Option<f64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.wrong(key, "a number")),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.wrong(key, "true or false")),
        }
    }

    /// `payload` (any JSON) or `text` (as `{"text": ...}`), exactly one.
    fn payload(&self) -> Result<Value, String> {
        match (self.get("payload"), self.string("text")?) {
            (Some(_), Some(_)) => Err(format!("{}: give `payload` or `text`, not both", self.tool)),
            (Some(p), None) => Ok(p.clone()),
            (None, Some(t)) => Ok(json!({ "text": t })),
            (None, None) => Err(format!("{}: give the message as `text` or `payload`", self.tool)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_schema_and_the_issue_names_are_there() {
        let tools = definitions();
        let tools = tools.as_array().expect("a list");
        for t in tools {
            assert!(t["description"].as_str().is_some_and(|d| d.len() > 20), "{t}");
            assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        }
        for name in ["send_message", "ask", "broadcast", "read_messages", "join_room", "room_history", "room_members", "status"] {
            assert!(exists(name), "{name}");
        }
        assert!(!exists("rm_rf"));
    }

    #[test]
    fn arguments_are_checked_with_clear_text() {
        let map = json!({"to": 5, "text": "hi", "payload": {"a": 1}, "limit": -1}).as_object().cloned().unwrap_or_default();
        let a = Args { tool: "send_message", map: &map };
        assert_eq!(a.string("to"), Err("send_message: `to` must be a string".into()));
        assert_eq!(a.u64("limit"), Err("send_message: `limit` must be a non-negative integer".into()));
        assert!(a.payload().is_err_and(|e| e.contains("not both")));
        let map = json!({"text": "hi"}).as_object().cloned().unwrap_or_default();
        let a = Args { tool: "ask", map: &map };
        assert_eq!(a.payload(), Ok(json!({"text": "hi"})));
        assert_eq!(a.required_string("to"), Err("ask: `to` is required".into()));
    }
}
