//! Admin routes (PROTOCOL.md section 5). Each handler takes [`Admin`]: the `admin` permission is
//! checked on the matched route, besides the middleware's check on the canonical path.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use agent_bridge_actors::supervisor::GetTree;
use serde::Deserialize;
use serde_json::json;

use super::auth::Admin;
use super::{parse_json, read_body, ApiError, AppState};

/// `GET /admin/supervisors`: the live supervision tree.
pub async fn supervisors(_admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let tree = state
        .broker
        .root
        .send(GetTree)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()))?;
    Ok(HttpResponse::Ok().json(tree))
}

/// `GET /admin/clients`.
pub async fn clients(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "clients": state.broker.router.clients().await }))
}

/// `DELETE /admin/clients/{id}`: closes every session of the client (a WebSocket gets an `error`
/// frame `kicked` and close code 4001, an event stream an `error` event) and ends its long-polls.
/// 404 `unknown_client` when it has none. The client may connect again: revoke its key to keep it out.
pub async fn kick(_admin: Admin, id: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    agent_bridge_protocol::ids::validate_client_id(&id)?;
    let ended = state
        .broker
        .router
        .kick(&id, "disconnected by an operator")
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()))?;
    if ended == 0 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_client", format!("{:?} has no live session or poll", id.as_str())));
    }
    tracing::warn!(client_id = %id, ended, "client disconnected by an operator");
    Ok(HttpResponse::Ok().json(json!({ "client_id": id.as_str(), "disconnected": ended })))
}

#[derive(Deserialize)]
struct FaultRequest {
    actor: String,
}

/// `POST /admin/fault {actor}`: only with `--enable-fault-injection`, else 404.
pub async fn fault(_admin: Admin, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.config.enable_fault_injection {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "fault injection is disabled"));
    }
    let body = read_body(payload, 64 * 1024).await?;
    let req: FaultRequest = parse_json(&body, "fault request")?;
    match state.broker.tree.inject_fault(&req.actor) {
        Some(name) => {
            tracing::warn!(actor = %name, "fault injected");
            Ok(HttpResponse::Accepted().json(json!({ "actor": name })))
        }
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_actor", format!("no actor named or of kind {:?}", req.actor))),
    }
}

/// `GET /admin/dead-letters?limit=`.
pub async fn dead_letters(_admin: Admin, query: web::Query<LimitQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let limit = query.limit(100, 10_000);
    let dead = state
        .broker
        .store
        .dead_letters(limit)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", e.to_string()))?;
    Ok(HttpResponse::Ok().json(json!({ "count": dead.len(), "dead_letters": dead })))
}

/// `?limit=`.
#[derive(Deserialize)]
pub struct LimitQuery {
    limit: Option<usize>,
}

impl LimitQuery {
    /// The limit asked for, `default` without one, within `1..=max`.
    pub fn limit(&self, default: usize, max: usize) -> usize {
        self.limit.unwrap_or(default).clamp(1, max)
    }
}

/// `GET /admin/queues`: per client, what waits for delivery or an ack.
pub async fn queues(_admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pending_acks = state
        .broker
        .tracker
        .send(agent_bridge_actors::ack_tracker::PendingCount)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()))?;
    let clients = state.broker.router.clients().await;
    let queues: Vec<_> = clients
        .iter()
        .map(|c| json!({ "client_id": c.client_id, "queued": c.queued, "last_seq": c.last_seq, "sessions": c.sessions.len() }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "pending_acks": pending_acks, "queues": queues })))
}
