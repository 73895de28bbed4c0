//! The messaging API for HTTP clients: send, long-poll, ack, status.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use agent_bridge_actors::ack_tracker::Acknowledge;
use agent_bridge_actors::delivery::Envelope;
use agent_bridge_actors::router::{Poll, PollFrom, Polled, Seen};
use agent_bridge_protocol::http::{AckRequest, MessagesPage, SendRequest, SendResponse};
use agent_bridge_protocol::ids::validate_client_id;
use agent_bridge_protocol::Timestamp;
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::{parse_json, read_body, ApiError, AppState};
use agent_bridge_actors::auth::Permission;

/// Largest page.
const MAX_LIMIT: usize = 1000;

/// `POST /api/send`.
pub async fn send(caller: Caller, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Write)?;
    let body = read_body(payload, state.config.max_frame_bytes).await?;
    let req: SendRequest = parse_json(&body, "send request")?;
    // `from` must be a client id the credentials allow (403 otherwise); keys naming exactly one
    // client id may leave it out.
    let Some(from) = caller.client_id(req.from.as_deref())? else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_frame", "missing field \"from\" in send request"));
    };
    if let Some(key) = &caller.key {
        key.used_message();
    }
    let env = Envelope::from_http(req, &from)?;
    let router = &state.broker.router;
    router.shard(&from).do_send(Seen(from.clone()));
    let routed = router.route(env).await?;
    Ok(HttpResponse::Ok().json(SendResponse {
        status: "sent".into(),
        message_id: routed.message_id,
        seq: routed.seq,
        recipients: routed.recipients,
    }))
}

/// Query of `GET /api/messages`.
#[derive(Debug, Deserialize)]
pub struct MessagesQuery {
    to: Option<String>,
    since: Option<String>,
    limit: Option<String>,
    wait: Option<String>,
}

fn bad(msg: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", msg)
}

/// `GET /api/messages`: a page of the inbox, oldest first; with `wait`, a long-poll.
pub async fn messages(caller: Caller, query: web::Query<MessagesQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let Some(to) = q.to else { return Err(bad("missing query parameter \"to\"".into())) };
    validate_client_id(&to)?;
    caller.act_as(&to, Permission::Read)?;
    let max_wait_s = state.config.long_poll_max_s;
    let from = match q.since.as_deref() {
        None | Some("") => PollFrom::Queue,
        Some(s) => match s.parse::<u64>() {
            Ok(seq) => PollFrom::Seq(seq),
            Err(_) => PollFrom::Time(Timestamp::parse_rfc3339(s).ok_or_else(|| {
                bad(format!("since={s:?} is neither a sequence number nor an RFC 3339 time"))
            })?),
        },
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => 100,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(bad(format!("limit={s:?} must be a number from 1 to {MAX_LIMIT}"))),
        },
    };
    let wait = match q.wait.as_deref() {
        None | Some("") => 0.0,
        Some(s) => match s.parse::<f64>() {
            Ok(w) if (0.0..=max_wait_s).contains(&w) => w,
            _ => return Err(bad(format!("wait={s:?} must be a number of seconds from 0 to {max_wait_s}"))),
        },
    };
    let deadline = Instant::now() + Duration::from_secs_f64(wait);
    let shard = state.broker.router.shard(&to).clone();
    loop {
        let waiting = Instant::now() < deadline;
        let polled = shard.send(Poll { client_id: to.clone(), from, limit, wait: waiting }).await.map_err(|e| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("router unavailable: {e}"))
        })??;
        match polled {
            Polled::Page { messages, next_since } => {
                return Ok(HttpResponse::Ok().json(MessagesPage { count: messages.len(), messages, next_since }));
            }
            Polled::Wait { wake, .. } => {
                let left = deadline.saturating_duration_since(Instant::now());
                // Woken or timed out, poll once more from the same position (never skips).
                let _ = tokio::time::timeout(left, wake).await;
            }
        }
    }
}

/// `POST /api/ack`.
pub async fn ack(caller: Caller, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, state.config.max_frame_bytes).await?;
    let req: AckRequest = parse_json(&body, "ack request")?;
    validate_client_id(&req.client_id)?;
    caller.act_as(&req.client_id, Permission::Read)?;
    if req.message_ids.len() > MAX_LIMIT {
        return Err(bad(format!("at most {MAX_LIMIT} message ids per ack")));
    }
    let tracker = &state.broker.tracker;
    let acks = req
        .message_ids
        .into_iter()
        .map(|message_id| tracker.send(Acknowledge { client_id: req.client_id.clone(), message_id }));
    let mut acked = 0;
    for r in futures_util::future::join_all(acks).await {
        if r.map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()))? {
            acked += 1;
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "acked": acked })))
}

/// `GET /api/status`.
pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let clients = state.broker.router.clients().await;
    let sessions: usize = clients.iter().map(|c| c.sessions.len()).sum();
    let online = clients.iter().filter(|c| !c.sessions.is_empty()).count();
    HttpResponse::Ok().json(json!({
        "status": "running",
        "server": "agent-bridge",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": agent_bridge_protocol::PROTOCOL_VERSION,
        "uptime_s": state.started.elapsed().as_secs_f64(),
        "clients_online": online,
        "clients_known": clients.len(),
        "sessions": sessions,
        "router_shards": state.broker.router.shards().len(),
        "store_bytes": state.broker.store.size_on_disk(),
        "healthy": state.broker.tree.healthy(),
    }))
}
