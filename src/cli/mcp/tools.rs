//! The MCP tools: their JSON Schemas (`tools/list`) and what each does (`tools/call`).
//!
//! Every tool answers a `CallToolResult`: the result as JSON text (and as `structuredContent`), or
//! `isError: true` with a sentence saying what went wrong — bad arguments included, so that the model
//! can correct itself; only an unknown tool name is a JSON-RPC error.
//!
//! One table serves both MCP transports: the tools act through an [`AgentPort`], which the stdio
//! server implements with a WebSocket client ([`Bridge`]) and the broker's own `/mcp` endpoint with
//! the router directly (`crate::http::mcp::port`).

use std::sync::Arc;
use std::time::Duration;

use agent_bridge_actors::rooms::calls::{self, Spec, CALLS};
use agent_bridge_protocol::{Message, Priority};
use serde_json::{json, Map, Value};

use super::inbox::{Inbox, Page};
use super::push::Session;
use agent_bridge_protocol::frames::Sent;
use crate::cli::common::{Failure, Resolved};
use crate::client::{new_id, Client, ClientError, Connection, Outgoing};

/// How long a tool waits for the broker connection before saying it is not connected.
const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// How long `status` waits for a connection in progress.
const STATUS_WAIT: Duration = Duration::from_secs(2);
/// The longest wait of `ask`, `wait_reply` and `read_messages`: a tool call must end before the
/// host gives up on it (Claude Desktop cancels at about 60 s). Longer waits are cut to this; an
/// `ask` that runs out answers a handle for `wait_reply`.
const MAX_WAIT_S: f64 = 50.0;

/// What the tools work with.
pub struct Bridge {
    pub client: Client,
    pub inbox: Arc<Inbox>,
    pub who: Resolved,
    /// What the host declared, for the pusher.
    pub session: Session,
}

/// What the tools act through: the broker as one agent sees it. Errors are the client library's,
/// so that both transports word them alike.
// Implemented and awaited inside this crate only, on concrete types: no `Send` bound is spelled
// out (the stdio server's futures are `Send` because `Bridge`'s are; actix handlers need none).
#[allow(async_fn_in_trait)]
pub trait AgentPort {
    /// The client id other agents send to.
    fn client_id(&self) -> &str;
    /// Ready to act, or a sentence saying why not (not connected, refused credentials).
    async fn connected(&self) -> Result<(), String>;
    /// Sends one message; the broker's receipt.
    async fn send(&self, msg: Outgoing) -> Result<Sent, ClientError>;
    /// Sends a request and waits up to `within` for the message that answers it.
    async fn request(&self, msg: Outgoing, within: Duration) -> Result<Message, ClientError>;
    /// The reply to an earlier request (its `correlation_id`), received already or within `within`.
    async fn wait_reply(&self, correlation: &str, within: Duration) -> Result<Option<Message>, ClientError>;
    /// One call of the table of calls (`room.join`, `room.history`...), `params` as given.
    async fn call(&self, method: &str, params: &Map<String, Value>) -> Result<Value, ClientError>;
    /// Received messages after `after` (default: after the last read), waiting up to `wait`.
    async fn read(&self, after: Option<u64>, limit: usize, wait: Duration) -> Page;
    /// A recently received message, by id (for replies).
    fn find(&self, id: &str) -> Option<Message>;
    /// Acknowledges a message the model has read.
    fn ack(&self, id: &str);
    /// What the `status` tool answers.
    async fn status(&self) -> Value;
    /// A client error as a sentence for the model.
    fn failure(&self, e: &ClientError, what: &str) -> String;
}

impl AgentPort for Bridge {
    fn client_id(&self) -> &str {
        &self.who.client_id
    }

    async fn connected(&self) -> Result<(), String> {
        connected(self).await
    }

    async fn send(&self, msg: Outgoing) -> Result<Sent, ClientError> {
        self.client.send(msg).await
    }

    async fn request(&self, msg: Outgoing, within: Duration) -> Result<Message, ClientError> {
        self.client.request(msg, within).await
    }

    async fn wait_reply(&self, correlation: &str, within: Duration) -> Result<Option<Message>, ClientError> {
        Ok(self.inbox.reply(correlation, within).await)
    }

    async fn call(&self, method: &str, params: &Map<String, Value>) -> Result<Value, ClientError> {
        let a = Args { tool: method, map: params };
        match method {
            // Through the client's own join and leave, which keep the room joined across reconnects.
            "room.join" => {
                let (room, role, since) = (a.required_string("room"), a.string("role"), a.u64("since"));
                let (room, role, since) = (room.map_err(ClientError::Protocol)?, role.map_err(ClientError::Protocol)?, since.map_err(ClientError::Protocol)?);
                self.client.join_room(&room, role.as_deref(), since).await
            }
            "room.leave" => self.client.leave_room(&a.required_string("room").map_err(ClientError::Protocol)?).await,
            method => self.client.call(method, Value::Object(params.clone())).await,
        }
    }

    async fn read(&self, after: Option<u64>, limit: usize, wait: Duration) -> Page {
        self.inbox.read(after, limit, wait).await
    }

    fn find(&self, id: &str) -> Option<Message> {
        self.inbox.find(id)
    }

    fn ack(&self, id: &str) {
        let _ = self.client.ack(id);
    }

    async fn status(&self) -> Value {
        status(self).await
    }

    fn failure(&self, e: &ClientError, what: &str) -> String {
        failure(self, e, what)
    }
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
            "Send a request to another agent and wait for its reply (the message it sends back with this request's correlation id). Returns {reply}, or, if none came within timeout_s, {status: \"pending\", correlation_id}: continue waiting with wait_reply (the reply is also pushed to you when it comes).",
            "Message type of the request (default \"question\").",
            json!({
                "to": {"type": "string", "description": "Who to ask: a client id or \"pool:NAME\"."},
                "timeout_s": wait_schema("Seconds to wait for the reply")
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
            "wait_reply",
            "Wait for the reply to an ask",
            "Continue waiting for the reply to an ask that answered status \"pending\": returns {reply} (also when it came meanwhile), or {status: \"pending\", correlation_id} again.",
            json!({
                "correlation_id": {"type": "string", "description": "The correlation_id of the pending ask."},
                "timeout_s": wait_schema("Seconds to wait")
            }),
            &["correlation_id"],
        ),
        tool(
            "read_messages",
            "Read new messages",
            "Return the messages received since the last read (oldest first) and a cursor; messages already pushed to you as channel events count as read. Pass an earlier cursor to read again from there. Messages that ask for an acknowledgement are acknowledged when returned. To answer one, use reply with its id.",
            json!({
                "cursor": {"type": "integer", "minimum": 0, "description": "Return messages after this cursor (from an earlier result). Default: after the last read."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 500, "description": "At most this many messages (default 50)."},
                "wait_s": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S, "description": "If there is nothing new, wait up to this many seconds for a message (default 0)."}
            }),
            &[],
        ),
        message_tool(
            ("reply", "Reply to a message"),
            "Answer a message returned by read_messages or pushed to you (its message_id): sent to its sender with its correlation id, which is what an agent waiting in ask receives.",
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

/// A wait in seconds, default and maximum [`MAX_WAIT_S`].
fn wait_schema(what: &str) -> Value {
    json!({"type": "number", "minimum": 0.1, "maximum": MAX_WAIT_S, "description": format!("{what} (default and at most {MAX_WAIT_S}).")})
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
pub async fn call(bridge: &impl AgentPort, name: &str, args: &Map<String, Value>) -> ToolResult {
    let a = Args { tool: name, map: args };
    match name {
        "send_message" => send_message(bridge, &a).await,
        "ask" => ask(bridge, &a).await,
        "broadcast" => {
            let msg = Outgoing::to("all", a.string("type")?.unwrap_or_else(|| "announcement".into()), a.payload()?);
            sent(bridge, msg, "broadcasting").await
        }
        "wait_reply" => wait_reply(bridge, &a).await,
        "read_messages" => read_messages(bridge, &a).await,
        "reply" => reply(bridge, &a).await,
        "status" => Ok(bridge.status().await),
        other => match calls::by_tool(other) {
            Some(spec) => room_call(bridge, spec, &a).await,
            None => Err(format!("unknown tool {other:?}")),
        },
    }
}

/// A tool of the table of calls: the arguments are the call's params, checked by the broker.
async fn room_call(bridge: &impl AgentPort, spec: &Spec, a: &Args<'_>) -> ToolResult {
    bridge.connected().await?;
    bridge.call(spec.name, a.map).await.map_err(|e| match e {
        ClientError::Protocol(text) => text,
        e => bridge.failure(&e, spec.name),
    })
}

async fn send_message(bridge: &impl AgentPort, a: &Args<'_>) -> ToolResult {
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
async fn sent(bridge: &impl AgentPort, msg: Outgoing, what: &str) -> ToolResult {
    msg.validate().map_err(|e| format!("{what}: {e}"))?;
    bridge.connected().await?;
    let s = bridge.send(msg).await.map_err(|e| bridge.failure(&e, what))?;
    Ok(json!({"message_id": s.message_id, "seq": s.seq, "status": s.status, "recipients": s.recipients}))
}

async fn ask(bridge: &impl AgentPort, a: &Args<'_>) -> ToolResult {
    let to = a.required_string("to")?;
    let correlation = new_id("req");
    let msg = Outgoing::to(to.clone(), a.string("type")?.unwrap_or_else(|| "question".into()), a.payload()?).correlation_id(correlation.clone());
    msg.validate().map_err(|e| format!("ask: {e}"))?;
    let timeout = a.wait("timeout_s")?;
    bridge.connected().await?;
    match bridge.request(msg, timeout).await {
        Ok(reply) => Ok(json!({"reply": message_json(&reply, None)})),
        Err(ClientError::Timeout { .. }) => Ok(pending(&correlation, &format!("no reply from {to} within {} s yet", timeout.as_secs_f64()))),
        Err(e) => Err(bridge.failure(&e, "asking")),
    }
}

/// The reply to an `ask` that ran out of time: it lands in the inbox like any message.
async fn wait_reply(bridge: &impl AgentPort, a: &Args<'_>) -> ToolResult {
    let correlation = a.required_string("correlation_id")?;
    let timeout = a.wait("timeout_s")?;
    match bridge.wait_reply(&correlation, timeout).await.map_err(|e| bridge.failure(&e, "waiting for the reply"))? {
        Some(reply) => Ok(json!({"reply": message_json(&reply, None)})),
        None => Ok(pending(&correlation, &format!("no reply within {} s yet", timeout.as_secs_f64()))),
    }
}

/// The handle an unanswered `ask` returns: not an error, the request stays queued for its recipient.
fn pending(correlation: &str, why: &str) -> Value {
    json!({
        "status": "pending",
        "correlation_id": correlation,
        "hint": format!("{why}; the request stays queued for the recipient. Call wait_reply with this correlation_id to keep waiting (the reply is also pushed to you when it comes)."),
    })
}

async fn read_messages(bridge: &impl AgentPort, a: &Args<'_>) -> ToolResult {
    let cursor = a.u64("cursor")?;
    let limit = a.u64("limit")?.unwrap_or(50).clamp(1, 500);
    let wait = a.f64("wait_s")?.unwrap_or(0.0);
    if wait < 0.0 {
        return Err(a.wrong("wait_s", "a number of seconds, 0 or more"));
    }
    let wait = wait.min(MAX_WAIT_S);
    let page = bridge.read(cursor, usize::try_from(limit).unwrap_or(500), Duration::from_secs_f64(wait)).await;
    for (_, m) in &page.messages {
        if m.requires_ack {
            // Read by the model: that is what the sender asked to hear about.
            bridge.ack(&m.id);
        }
    }
    let messages: Vec<Value> = page.messages.iter().map(|(c, m)| message_json(m, Some(*c))).collect();
    let mut out = json!({"messages": messages, "cursor": page.cursor, "more": page.more});
    if page.missed > 0 {
        out["missed"] = json!(page.missed);
    }
    Ok(out)
}

async fn reply(bridge: &impl AgentPort, a: &Args<'_>) -> ToolResult {
    let id = a.required_string("message_id")?;
    let Some(request) = bridge.find(&id) else {
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
pub fn message_json(m: &Message, cursor: Option<u64>) -> Value {
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

    /// A wait in seconds: more than 0, [`MAX_WAIT_S`] when absent, cut to it when longer.
    fn wait(&self, key: &str) -> Result<Duration, String> {
        let seconds = self.f64(key)?.unwrap_or(MAX_WAIT_S);
        if seconds <= 0.0 {
            return Err(self.wrong(key, "a number of seconds above 0"));
        }
        Ok(Duration::from_secs_f64(seconds.min(MAX_WAIT_S)))
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
        for name in ["send_message", "ask", "wait_reply", "broadcast", "read_messages", "join_room", "room_history", "room_members", "status"] {
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
