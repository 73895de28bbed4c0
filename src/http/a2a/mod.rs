//! A2A (Agent2Agent protocol 1.0): every agent connected to the broker is published as an A2A
//! agent, reached through the broker's gateway.
//!
//! - `GET /.well-known/agent-card.json`: the broker's card, a directory of the connected agents;
//! - `GET /a2a/{client_id}/.well-known/agent-card.json`: the card of one agent;
//! - `POST /a2a/{client_id}` (and `POST /a2a`, naming the agent in `message.metadata.agent`): the
//!   JSON-RPC binding, methods `SendMessage`, `SendStreamingMessage` (SSE), `GetTask`,
//!   `CancelTask` and `SubscribeToTask` (SSE).
//!
//! A message becomes a broker message of type `a2a.message` from `a2a:gateway` to the agent, its
//! `correlation_id` the task id; the agent's reply (a message to `a2a:gateway` with that
//! correlation id) completes the task (see [`gateway`] and PROTOCOL.md section 7).

pub mod gateway;
mod stream;
pub mod tasks;
pub mod wire;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use agent_bridge_actors::auth::Permission;
use serde_json::{json, Value};

use self::tasks::{State, Task};
use self::wire::{rpc_result, A2aError};
use super::auth::Caller;
use super::{read_body, ApiError, AppState};

/// How long `SendMessage` waits for the agent before it answers with the task still working.
const SEND_WAIT: std::time::Duration = std::time::Duration::from_secs(25);

/// The URL the request came to, without its path (`http://host:port`).
fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

/// `GET /.well-known/agent-card.json`: public, like the health probes.
pub async fn gateway_card(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let agents = gateway::agents(&state).await;
    HttpResponse::Ok().json(wire::gateway_card(&base_url(&req), &agents))
}

/// `GET /a2a/{client_id}/.well-known/agent-card.json`: 404 `unknown_agent` unless it is connected.
pub async fn agent_card(req: HttpRequest, caller: Caller, path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Read)?;
    let agent = path.into_inner();
    agent_bridge_protocol::ids::validate_client_id(&agent)?;
    if !gateway::online(&state, &agent).await {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_agent", format!("no agent {agent:?} is connected")));
    }
    Ok(HttpResponse::Ok().json(wire::agent_card(&base_url(&req), &agent)))
}

/// `POST /a2a`: the gateway's JSON-RPC endpoint.
pub async fn rpc_gateway(caller: Caller, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    rpc(caller, None, payload, state).await
}

/// `POST /a2a/{client_id}`: one agent's JSON-RPC endpoint.
pub async fn rpc_agent(caller: Caller, path: web::Path<String>, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    rpc(caller, Some(path.into_inner()), payload, state).await
}

/// One JSON-RPC request: an answer, or an SSE stream for the streaming methods.
async fn rpc(caller: Caller, agent: Option<String>, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, state.config.max_frame_bytes).await?;
    let (id, method, params) = match parse_request(&body) {
        Ok(r) => r,
        Err((id, e)) => return Ok(HttpResponse::Ok().json(rpc_result(&id, Err(e)))),
    };
    caller.require(if method == "GetTask" { Permission::Read } else { Permission::Write })?;
    let agent = agent.as_deref();
    let result = match method.as_str() {
        "SendMessage" => send_message(&state, agent, &params).await,
        "SendStreamingMessage" => return Ok(stream_answer(&state, &id, start(&state, agent, &params).await)),
        "SubscribeToTask" => return Ok(stream_answer(&state, &id, subscribe(&state, agent, &params))),
        "GetTask" => get_task(&state, agent, &params),
        "CancelTask" => cancel_task(&state, agent, &params).await,
        other => Err(A2aError::MethodNotFound(other.to_owned())),
    };
    Ok(HttpResponse::Ok().json(rpc_result(&id, result)))
}

/// A JSON-RPC 2.0 request's id, method and params; a bad one fails with the id if it had one.
fn parse_request(body: &[u8]) -> Result<(Value, String, Value), (Value, A2aError)> {
    let v: Value = serde_json::from_slice(body).map_err(|e| (Value::Null, A2aError::Parse(e.to_string())))?;
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    let method = v.get("method").and_then(Value::as_str);
    match (v.get("jsonrpc").and_then(Value::as_str), method) {
        (Some("2.0"), Some(m)) => Ok((id, m.to_owned(), v.get("params").cloned().unwrap_or_else(|| json!({})))),
        _ => Err((id, A2aError::InvalidRequest("not a JSON-RPC 2.0 request (jsonrpc \"2.0\" and a method)".into()))),
    }
}

/// The task id of `GetTask`/`CancelTask`/`SubscribeToTask` params, checked to belong to `agent`
/// when the request came to an agent's endpoint.
fn task_id<'a>(state: &AppState, agent: Option<&str>, params: &'a Value) -> Result<&'a str, A2aError> {
    let id = params.get("id").and_then(Value::as_str).ok_or_else(|| A2aError::InvalidParams("params.id (a task id) is required".into()))?;
    match agent {
        Some(a) if state.a2a.agent(id)? != a => Err(A2aError::TaskNotFound(id.to_owned())),
        _ => Ok(id),
    }
}

/// Opens (or resumes) the task of a `SendMessage`/`SendStreamingMessage` and sends its message
/// to the agent; answers the task as it was opened and a receiver of its events.
async fn start(state: &AppState, agent: Option<&str>, params: &Value) -> Result<(Task, tokio::sync::broadcast::Receiver<Value>), A2aError> {
    let message = params.get("message").filter(|m| m.is_object()).cloned();
    let message = message.ok_or_else(|| A2aError::InvalidParams("params.message is required".into()))?;
    let follow_up = message.get("taskId").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_owned);
    let (task, agent, rx) = match follow_up {
        Some(id) => {
            let (task, owner, rx) = state.a2a.resume(&id, message.clone())?;
            if agent.is_some_and(|a| a != owner) {
                return Err(A2aError::TaskNotFound(id));
            }
            (task, owner, rx)
        }
        None => {
            let named = message.pointer("/metadata/agent").and_then(Value::as_str);
            let agent = agent.or(named).ok_or_else(|| A2aError::InvalidParams("name the agent: POST /a2a/{client_id}, or message.metadata.agent".into()))?;
            if agent_bridge_protocol::ids::validate_client_id(agent).is_err() || !gateway::online(state, agent).await {
                return Err(A2aError::AgentNotFound(agent.to_owned()));
            }
            let context = message.get("contextId").and_then(Value::as_str).filter(|c| !c.is_empty());
            let context = context.map_or_else(|| format!("ctx-{}", uuid::Uuid::now_v7()), str::to_owned);
            let (task, rx) = state.a2a.open(agent, context, message.clone())?;
            (task, agent.to_owned(), rx)
        }
    };
    let payload = gateway::message_payload(&task.id, &task.context_id, &message);
    if let Err(e) = gateway::send(state, &agent, gateway::MESSAGE_TYPE, &task.id, payload).await {
        let _ = state.a2a.set_state(&task.id, State::Failed, None);
        return Err(e);
    }
    state.a2a.working(&task.id);
    Ok((task, rx))
}

/// `SendMessage`: waits (at most [`SEND_WAIT`], not at all with `returnImmediately`) until the
/// agent answers, then returns `{"task": ...}`.
async fn send_message(state: &AppState, agent: Option<&str>, params: &Value) -> Result<Value, A2aError> {
    let (task, mut rx) = start(state, agent, params).await?;
    let immediately = params.pointer("/configuration/returnImmediately").and_then(Value::as_bool).unwrap_or(false);
    if !immediately {
        let _ = tokio::time::timeout(SEND_WAIT, async {
            while let Ok(ev) = rx.recv().await {
                if stream::ends_stream(&ev) {
                    break;
                }
            }
        })
        .await;
    }
    Ok(json!({ "task": state.a2a.get(&task.id, None)? }))
}

/// `SubscribeToTask`: the task now and its events from here on.
fn subscribe(state: &AppState, agent: Option<&str>, params: &Value) -> Result<(Task, tokio::sync::broadcast::Receiver<Value>), A2aError> {
    let id = task_id(state, agent, params)?;
    state.a2a.follow(id)
}

/// `GetTask`.
fn get_task(state: &AppState, agent: Option<&str>, params: &Value) -> Result<Value, A2aError> {
    let id = task_id(state, agent, params)?;
    let history = params.get("historyLength").and_then(Value::as_u64).map(|n| n as usize);
    Ok(serde_json::to_value(state.a2a.get(id, history)?).unwrap_or_default())
}

/// `CancelTask`: the task is canceled and its agent gets an `a2a.cancel` broker message.
async fn cancel_task(state: &AppState, agent: Option<&str>, params: &Value) -> Result<Value, A2aError> {
    let id = task_id(state, agent, params)?;
    let owner = state.a2a.agent(id)?;
    let task = state.a2a.set_state(id, State::Canceled, None)?;
    if let Err(e) = gateway::send(state, &owner, gateway::CANCEL_TYPE, id, json!({ "task_id": id })).await {
        tracing::debug!(task = id, error = %e, "a2a: telling the agent of a cancel failed");
    }
    Ok(serde_json::to_value(task).unwrap_or_default())
}

/// The answer of a streaming method: an SSE stream of JSON-RPC answers, or one JSON-RPC error.
fn stream_answer(state: &AppState, id: &Value, started: Result<(Task, tokio::sync::broadcast::Receiver<Value>), A2aError>) -> HttpResponse {
    match started {
        Ok((task, rx)) => {
            let resp = crate::http::encoding::uncompressed(&mut HttpResponse::Ok())
                .content_type("text/event-stream")
                .insert_header(("cache-control", "no-cache"))
                .insert_header(("x-accel-buffering", "no"))
                .streaming(stream::events(id.clone(), task, rx));
            state.closing.wrap(resp, None)
        }
        Err(e) => HttpResponse::Ok().json(rpc_result(id, Err(e))),
    }
}
