//! `/mcp`: the broker as a Model Context Protocol server over Streamable HTTP, with the tools of
//! the stdio server (one table, [`crate::cli::mcp::tools`]) acting through [`port::BrokerPort`].
//!
//! The messages are rmcp's model types; the framing is here, on actix-web:
//! - `POST /mcp`: one JSON-RPC message. A request is answered with `application/json`; a
//!   notification or response with 202. Batches are refused (-32600).
//! - Revisions, chosen by what the client sends: a request whose `params._meta` carries
//!   `io.modelcontextprotocol/protocolVersion` is of the stateless 2026-07-28 revision (no
//!   session; `server/discover` describes the server; the `MCP-Protocol-Version` header must
//!   match the envelope, else -32020; an unknown version is -32022 with the supported ones).
//!   Otherwise `initialize` opens a 2025-11-25 session (or an older revision the client asks
//!   for): the answer carries `Mcp-Session-Id`, later requests must send it (400 without, 404
//!   when unknown or ended).
//! - `GET /mcp` with a session: the listening stream (`text/event-stream`); every message that
//!   arrives for the agent is pushed as `notifications/message` (level `info`, logger
//!   `agent-bridge`, the message as `data`). Without a session: 405.
//! - `DELETE /mcp` ends the session (its listening stream closes).
//!
//! Identity: the request's credentials (`Authorization: Bearer`, checked by the authentication
//! middleware: none when auth is on → 401), and the client id of [`session::client_id`], sent
//! back as `X-Client-Id`. A read-only key can list and read but its sends fail as tool errors. An
//! `Origin` header is checked by the origin middleware for every route (a foreign one → 403).

pub mod port;
pub mod session;
mod stream;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResult, ClientJsonRpcMessage, ClientRequest, ContentBlock, DiscoverResult,
    EmptyResult, ErrorCode, ErrorData, Implementation, InitializeResult, JsonRpcError, JsonRpcMessage, JsonRpcResponse,
    JsonRpcVersion2_0, ListToolsResult, ProtocolVersion, RequestId, ServerCapabilities, ServerResult, Tool,
};
use serde_json::Value;

use super::auth::Caller;
use super::{read_body, ApiError, AppState};
use crate::cli::mcp::tools;
use port::BrokerPort;
use session::{CLIENT_ID_HEADER, SESSION_HEADER};

/// The stateless revision (per-request `_meta` envelope).
const MODERN: &[&str] = &["2026-07-28"];
/// Revisions with the `initialize` handshake, newest first (the first is offered by default).
const HANDSHAKE: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
/// The `_meta` key of the 2026-07-28 envelope that names the revision.
const VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
/// How long a client may cache `tools/list` and `server/discover` (2026-07-28), in milliseconds.
const LIST_TTL_MS: u64 = 60_000;

/// Which revision a request is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Era {
    /// 2026-07-28: no session, results carry `resultType`, lists carry cache hints.
    Modern,
    /// 2025-11-25 and older, inside a session.
    Session,
}

/// A JSON-RPC error for a request, with the HTTP status it goes out with.
struct Refusal {
    status: StatusCode,
    error: ErrorData,
}

impl Refusal {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal { status, error: ErrorData::new(code, message.into(), None) }
    }
}

/// The JSON-RPC answer to request `id`.
fn answer(status: StatusCode, id: Option<RequestId>, outcome: Result<ServerResult, ErrorData>) -> HttpResponse {
    let mut resp = HttpResponse::build(status);
    match outcome {
        Ok(result) => resp.json(JsonRpcResponse { jsonrpc: JsonRpcVersion2_0, id: id.unwrap_or(RequestId::Number(0)), result }),
        Err(error) => resp.json(JsonRpcError::new(id, error)),
    }
}

fn refuse(id: Option<RequestId>, r: Refusal) -> HttpResponse {
    answer(r.status, id, Err(r.error))
}

/// `POST /mcp`.
pub async fn post(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = Caller::of(&req)?;
    let body = read_body(payload, state.config.max_frame_bytes).await?;
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Ok(refuse(None, Refusal::new(StatusCode::BAD_REQUEST, ErrorCode::PARSE_ERROR, format!("parse error: {e}")))),
    };
    if value.is_array() {
        let r = Refusal::new(StatusCode::BAD_REQUEST, ErrorCode::INVALID_REQUEST, "batches are not supported: one JSON-RPC message per POST");
        return Ok(refuse(None, r));
    }
    let id: Option<RequestId> = value.get("id").and_then(|i| serde_json::from_value(i.clone()).ok());
    let message: ClientJsonRpcMessage = match serde_json::from_value(value.clone()) {
        Ok(m) => m,
        Err(e) => {
            let r = Refusal::new(StatusCode::BAD_REQUEST, ErrorCode::INVALID_REQUEST, format!("not a valid JSON-RPC 2.0 MCP message: {e}"));
            return Ok(refuse(id, r));
        }
    };
    let JsonRpcMessage::Request(request) = message else {
        // Notifications (initialized, cancelled) and responses: nothing to answer. A session's
        // must still name a live one.
        state.mcp.of(&req, &caller)?;
        return Ok(HttpResponse::Accepted().finish());
    };
    let (id, request) = (request.id, request.request);
    let params = value.get("params").cloned().unwrap_or(Value::Null);
    let envelope = params.pointer("/_meta").and_then(|m| m.get(VERSION_META)).map(|v| v.as_str().unwrap_or_default().to_owned());
    if let Some(version) = envelope {
        let name = params.get("name").and_then(Value::as_str);
        return Ok(match modern_checks(&req, &version, request.method(), name) {
            Err(r) => refuse(Some(id), r),
            Ok(()) => {
                let client_id = session::client_id(&req, &caller)?;
                let port = BrokerPort { state: &state, caller: &caller, agent: state.mcp.agent(&client_id), client_id };
                respond(id, dispatch(&port, Era::Modern, request).await, &port.client_id, None)
            }
        });
    }
    if let ClientRequest::InitializeRequest(init) = &request {
        let asked = init.params.protocol_version.as_str().to_owned();
        let version = HANDSHAKE.iter().find(|v| **v == asked).copied().unwrap_or(HANDSHAKE[0]);
        let client_id = session::client_id(&req, &caller)?;
        let session_id = state.mcp.open(&client_id, version, &caller)?;
        let host = init.params.client_info.name.clone();
        tracing::info!(client_id = %client_id, host = %host, protocol_version = version, "mcp session opened");
        let result = ServerResult::InitializeResult(initialize(version, &client_id));
        return Ok(respond(id, Ok((StatusCode::OK, result)), &client_id, Some(&session_id)));
    }
    let Some((_, session)) = state.mcp.of(&req, &caller)? else {
        let r = Refusal::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::INVALID_REQUEST,
            format!("missing {SESSION_HEADER}: send initialize first, or use protocol revision 2026-07-28 with its _meta envelope"),
        );
        return Ok(refuse(Some(id), r));
    };
    if let Some(v) = header(&req, "mcp-protocol-version") {
        if !HANDSHAKE.contains(&v.as_str()) && v != "2024-11-05" {
            let r = Refusal::new(StatusCode::BAD_REQUEST, ErrorCode::INVALID_REQUEST, format!("unsupported MCP-Protocol-Version {v:?}"));
            return Ok(refuse(Some(id), r));
        }
    }
    let port = BrokerPort { state: &state, caller: &caller, agent: state.mcp.agent(&session.client_id), client_id: session.client_id.clone() };
    Ok(respond(id, dispatch(&port, Era::Session, request).await, &port.client_id, None))
}

/// A request's answer, with the client id (and a new session's id) in headers.
fn respond(id: RequestId, outcome: Result<(StatusCode, ServerResult), Refusal>, client_id: &str, session: Option<&str>) -> HttpResponse {
    let mut resp = match outcome {
        Ok((status, result)) => answer(status, Some(id), Ok(result)),
        Err(r) => refuse(Some(id), r),
    };
    let headers = resp.headers_mut();
    if let Ok(v) = client_id.parse() {
        headers.insert(actix_web::http::header::HeaderName::from_static(CLIENT_ID_HEADER), v);
    }
    if let Some(v) = session.and_then(|s| s.parse().ok()) {
        headers.insert(actix_web::http::header::HeaderName::from_static(SESSION_HEADER), v);
    }
    resp
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers().get(name).map(|v| v.to_str().unwrap_or_default().to_owned())
}

/// The 2026-07-28 checks: the headers agree with the envelope (`Mcp-Name` with a tool call's
/// name, when sent as plain text), and the version is served.
fn modern_checks(req: &HttpRequest, version: &str, method: &str, name: Option<&str>) -> Result<(), Refusal> {
    let mismatch = |what: &str| Refusal::new(StatusCode::BAD_REQUEST, ErrorCode::HEADER_MISMATCH, format!("{what} header does not match the request"));
    if header(req, "mcp-protocol-version").as_deref() != Some(version) {
        return Err(mismatch("MCP-Protocol-Version"));
    }
    if header(req, "mcp-method").is_some_and(|m| m != method) {
        return Err(mismatch("Mcp-Method"));
    }
    let plain_name = header(req, "mcp-name").filter(|n| !n.starts_with("=?base64?"));
    if method == "tools/call" && plain_name.is_some_and(|n| Some(n.as_str()) != name) {
        return Err(mismatch("Mcp-Name"));
    }
    if !MODERN.contains(&version) {
        let supported: Vec<ProtocolVersion> = MODERN.iter().chain(HANDSHAKE).filter_map(|v| serde_json::from_value(Value::from(*v)).ok()).collect();
        let requested = serde_json::from_value(Value::from(version)).unwrap_or_default();
        let mut error = ErrorData::unsupported_protocol_version(requested, &supported);
        error.message = format!("unsupported protocol version {version:?}").into();
        return Err(Refusal { status: StatusCode::BAD_REQUEST, error });
    }
    Ok(())
}

/// Answers one request.
async fn dispatch(port: &BrokerPort<'_>, era: Era, request: ClientRequest) -> Result<(StatusCode, ServerResult), Refusal> {
    let mut result = match request {
        ClientRequest::PingRequest(_) => ServerResult::EmptyResult(EmptyResult {}),
        ClientRequest::DiscoverRequest(_) => ServerResult::DiscoverResult(discover(&port.client_id)),
        ClientRequest::ListToolsRequest(_) => {
            let tools: Vec<Tool> = serde_json::from_value(tools::definitions()).unwrap_or_default();
            let mut list = ListToolsResult::with_all_items(tools);
            if era == Era::Modern {
                list = list.with_ttl_ms(LIST_TTL_MS).with_cache_scope(CacheScope::Public);
            }
            ServerResult::ListToolsResult(list)
        }
        ClientRequest::CallToolRequest(call) => ServerResult::CallToolResult(call_tool(port, call.params).await?),
        ClientRequest::InitializeRequest(_) => {
            return Err(Refusal::new(StatusCode::BAD_REQUEST, ErrorCode::INVALID_REQUEST, "initialize opens a session: send it without the 2026-07-28 envelope"));
        }
        other => {
            let status = if era == Era::Modern { StatusCode::NOT_FOUND } else { StatusCode::OK };
            return Err(Refusal::new(status, ErrorCode::METHOD_NOT_FOUND, format!("method not found: {}", other.method())));
        }
    };
    if era == Era::Session {
        result.strip_result_type_for_legacy_peer();
    }
    Ok((StatusCode::OK, result))
}

/// `tools/call`: an unknown tool is a JSON-RPC error; everything else a tool result.
async fn call_tool(port: &BrokerPort<'_>, params: CallToolRequestParams) -> Result<CallToolResult, Refusal> {
    if !tools::exists(&params.name) {
        let status = StatusCode::OK;
        return Err(Refusal::new(status, ErrorCode::INVALID_PARAMS, format!("unknown tool {:?}; tools/list names them", params.name)));
    }
    let args = params.arguments.unwrap_or_default();
    Ok(match tools::call(port, &params.name, &args).await {
        Ok(value) => {
            let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
            let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
            if value.is_object() {
                result.structured_content = Some(value);
            }
            result
        }
        Err(text) => CallToolResult::error(vec![ContentBlock::text(text)]),
    })
}

/// Tools, and (for the listening stream of sessions) log notifications.
fn capabilities() -> ServerCapabilities {
    serde_json::from_value(serde_json::json!({"tools": {"listChanged": false}, "logging": {}})).unwrap_or_default()
}

fn server_info() -> Implementation {
    Implementation::new("agent-bridge", env!("CARGO_PKG_VERSION")).with_title("agent-bridge")
}

/// What the model is told about this server.
fn instructions(client_id: &str) -> String {
    format!(
        "This MCP server is the agent-bridge broker itself; here you are the agent {client_id:?}, the id other agents \
         send to. read_messages returns what arrived (wait_s waits for it); reply answers a message; send_message and \
         broadcast talk to others; ask sends a request and waits for the answer; the room tools work in shared rooms; \
         status shows your id and the broker's state."
    )
}

fn initialize(version: &str, client_id: &str) -> InitializeResult {
    let version: ProtocolVersion = serde_json::from_value(Value::from(version)).unwrap_or_default();
    InitializeResult::new(capabilities())
        .with_protocol_version(version)
        .with_server_info(server_info())
        .with_instructions(instructions(client_id))
}

fn discover(client_id: &str) -> DiscoverResult {
    let versions = MODERN.iter().chain(HANDSHAKE).filter_map(|v| serde_json::from_value(Value::from(*v)).ok()).collect();
    let mut result = DiscoverResult::new(versions, capabilities()).with_server_info(server_info()).with_ttl_ms(0);
    result.instructions = Some(instructions(client_id));
    result
}

/// `GET /mcp`: the session's listening stream (see the module docs).
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = Caller::of(&req)?;
    let Some((_, session)) = state.mcp.of(&req, &caller)? else {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("GET /mcp is a session's listening stream: initialize first and send {SESSION_HEADER}"),
        ));
    };
    let accepts = header(&req, "accept").is_some_and(|a| a.contains("text/event-stream") || a.contains("*/*"));
    if !accepts {
        return Err(ApiError::new(StatusCode::NOT_ACCEPTABLE, "not_acceptable", "GET /mcp answers text/event-stream only"));
    }
    let body = stream::listen(state.clone().into_inner(), Arc::clone(&session)).await?;
    Ok(super::sse::event_stream(&state, body))
}

/// `DELETE /mcp`: ends the session.
pub async fn delete(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = Caller::of(&req)?;
    match state.mcp.of(&req, &caller)? {
        Some((id, session)) => {
            state.mcp.close(&id);
            tracing::info!(client_id = %session.client_id, "mcp session ended");
            Ok(HttpResponse::NoContent().finish())
        }
        None => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("DELETE /mcp ends a session: send {SESSION_HEADER}"))),
    }
}
