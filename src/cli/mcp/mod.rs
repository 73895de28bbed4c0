//! `agent-bridge mcp`: a Model Context Protocol server on stdio, so that Claude Code, Claude
//! Desktop or any MCP host can join the broker as an agent.
//!
//! Transport: JSON-RPC 2.0, one message per line on stdin/stdout (stdout carries nothing else; logs
//! go to stderr). Methods: `initialize` (protocol version 2025-06-18, older versions the host asks
//! for are accepted; capabilities `{tools: {}, logging: {}}`, plus `experimental: {"claude/channel":
//! {}}` for a host that declares it), `notifications/initialized`, `ping`, `logging/setLevel`,
//! `tools/list`, `tools/call`. Unknown methods answer -32601, malformed requests -32600, unparsable lines -32700,
//! bad `tools/call` params (no tool name, unknown tool) -32602. Requests are handled concurrently,
//! so a long `ask` does not hold up a `ping`.
//!
//! The server is a broker client ([`crate::client`]) that connects in the background and keeps
//! reconnecting: a host can start it before the broker, and tools say "not connected" meanwhile.
//! Received messages wait in an [`inbox::Inbox`] for `read_messages`, and [`push`] sends each to the
//! host as a notification. One writer task owns stdout, so responses and notifications are whole lines.

pub mod inbox;
mod push;
pub mod tools;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::common::{run_async, ClientArgs, Failure};
use crate::client::Client;
use tools::Bridge;

/// The protocol version this server speaks first.
pub const PROTOCOL_VERSION: &str = "2025-06-18";
/// Versions accepted when a host asks for them (the tool features used here are in all of them).
const SUPPORTED_VERSIONS: &[&str] = &[PROTOCOL_VERSION, "2025-03-26", "2024-11-05"];

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// Flags of `agent-bridge mcp`.
#[derive(Debug, Clone, Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs the MCP server until stdin closes.
pub fn mcp(args: &McpArgs) -> ExitCode {
    run_async(async move {
        let who = args.client.resolve_bound("mcp").await?;
        let client = Client::start(who.config()?);
        let bridge = Arc::new(Bridge { client: client.clone(), inbox: Arc::default(), who, session: push::Session::default() });
        let (out, writer) = stdout_writer();
        let collector = {
            let (client, inbox) = (client.clone(), Arc::clone(&bridge.inbox));
            tokio::spawn(async move {
                while let Some(msg) = client.next_message().await {
                    inbox.push(msg);
                }
            })
        };
        let pusher = tokio::spawn(push::run(Arc::clone(&bridge), out.clone()));
        info!(client_id = %bridge.who.client_id, url = %bridge.who.url, "mcp server on stdio");
        let outcome = serve_stdio(&bridge, out).await;
        pusher.abort();
        let _ = pusher.await;
        // Every sender is gone now: the writer ends after the lines queued.
        let _ = writer.await;
        collector.abort();
        client.close().await;
        outcome
    })
}

/// The one task that writes stdout: each line sent to it, whole and flushed.
fn stdout_writer() -> (mpsc::UnboundedSender<String>, tokio::task::JoinHandle<()>) {
    let (out, mut lines) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = lines.recv().await {
            let written = async {
                stdout.write_all(line.as_bytes()).await?;
                stdout.write_all(b"\n").await?;
                stdout.flush().await
            };
            if let Err(e) = written.await {
                warn!(error = %e, "stdout closed");
                break;
            }
        }
    });
    (out, writer)
}

/// Reads requests from stdin and hands responses to the writer `out_tx`, one JSON object per line.
async fn serve_stdio(bridge: &Arc<Bridge>, out_tx: mpsc::UnboundedSender<String>) -> Result<(), Failure> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut handlers = tokio::task::JoinSet::new();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                warn!(error = %e, "reading stdin");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let (bridge, out) = (Arc::clone(bridge), out_tx.clone());
        handlers.spawn(async move {
            if let Some(response) = handle_line(&bridge, &line).await {
                let _ = out.send(response.to_string());
            }
        });
        while handlers.try_join_next().is_some() {}
    }
    // stdin closed: the host is gone or done. Answer what is in progress, briefly.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async { while handlers.join_next().await.is_some() {} }).await;
    Ok(())
}

/// Handles one line; `None` for notifications and responses (nothing to answer).
pub async fn handle_line(bridge: &Bridge, line: &str) -> Option<Value> {
    let msg: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return Some(error(Value::Null, PARSE_ERROR, &format!("parse error: {e}"))),
    };
    let Some(obj) = msg.as_object() else {
        return Some(error(Value::Null, INVALID_REQUEST, "expected one JSON-RPC 2.0 object per line (batches are not supported)"));
    };
    let id = obj.get("id").cloned();
    if obj.get("jsonrpc") != Some(&json!("2.0")) {
        return Some(error(id.unwrap_or(Value::Null), INVALID_REQUEST, "\"jsonrpc\" must be \"2.0\""));
    }
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        if obj.contains_key("result") || obj.contains_key("error") {
            debug!("ignoring a response from the host");
            return None;
        }
        return Some(error(id.unwrap_or(Value::Null), INVALID_REQUEST, "missing \"method\""));
    };
    let Some(id) = id else {
        debug!(method, "notification");
        if method == "notifications/initialized" {
            bridge.session.initialized();
        }
        return None;
    };
    if !(id.is_string() || id.is_i64() || id.is_u64()) {
        return Some(error(Value::Null, INVALID_REQUEST, "\"id\" must be a string or an integer"));
    }
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    Some(match dispatch(bridge, method, &params).await {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, text)) => error(id, code, &text),
    })
}

/// A JSON-RPC error response.
fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

async fn dispatch(bridge: &Bridge, method: &str, params: &Value) -> Result<Value, (i64, String)> {
    match method {
        "initialize" => Ok(initialize(bridge, params)),
        "ping" => Ok(json!({})),
        "logging/setLevel" => bridge.session.set_level(params).map(|()| json!({})).map_err(|e| (INVALID_PARAMS, e)),
        "tools/list" => Ok(json!({ "tools": tools::definitions() })),
        "tools/call" => {
            let Some(p) = params.as_object() else {
                return Err((INVALID_PARAMS, "tools/call needs params {name, arguments}".into()));
            };
            let Some(name) = p.get("name").and_then(Value::as_str) else {
                return Err((INVALID_PARAMS, "tools/call: \"name\" must be a tool name".into()));
            };
            if !tools::exists(name) {
                return Err((INVALID_PARAMS, format!("unknown tool {name:?}; tools/list names them")));
            }
            let empty = Map::new();
            let args = match p.get("arguments") {
                None | Some(Value::Null) => &empty,
                Some(Value::Object(m)) => m,
                Some(_) => return Err((INVALID_PARAMS, "tools/call: \"arguments\" must be an object".into())),
            };
            Ok(tool_result(tools::call(bridge, name, args).await))
        }
        other => Err((METHOD_NOT_FOUND, format!("method not found: {other}"))),
    }
}

fn initialize(bridge: &Bridge, params: &Value) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(PROTOCOL_VERSION);
    let version = SUPPORTED_VERSIONS.iter().find(|v| **v == asked).copied().unwrap_or(PROTOCOL_VERSION);
    let host = params.pointer("/clientInfo/name").and_then(Value::as_str).unwrap_or("unknown host");
    let channel = bridge.session.initialize(params);
    info!(host, protocol_version = version, channel, "initialize");
    let mut capabilities = json!({ "tools": {}, "logging": {} });
    if channel {
        capabilities["experimental"] = json!({ (push::CHANNEL_CAPABILITY): {} });
    }
    json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": { "name": "agent-bridge", "title": "agent-bridge", "version": env!("CARGO_PKG_VERSION") },
        "instructions": format!(
            "You are the agent \"{1}\" on the agent-bridge broker at {0}; other agents reach you at that id. \
             {2} Use reply to answer a message, send_message or \
             broadcast to talk, ask to send a request and wait for its answer (wait_reply continues a pending ask), and \
             the room tools to work in shared rooms. \
             The status tool says whether the connection is up; a tool that answers \"authentication failed\" means the \
             broker refused this server's token (BRIDGE_TOKEN or --token in its MCP configuration).",
            bridge.who.url,
            bridge.who.client_id,
            if channel {
                "Messages sent to you arrive by themselves as channel events; read_messages returns any that did not (wait_s to wait)."
            } else {
                "Use read_messages to see what arrived (wait_s to wait for it)."
            },
        ),
    })
}

/// A `CallToolResult`.
fn tool_result(result: tools::ToolResult) -> Value {
    match result {
        Ok(value) => {
            let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
            let mut out = json!({"content": [{"type": "text", "text": text}], "isError": false});
            if value.is_object() {
                out["structuredContent"] = value;
            }
            out
        }
        Err(text) => json!({"content": [{"type": "text", "text": text}], "isError": true}),
    }
}
