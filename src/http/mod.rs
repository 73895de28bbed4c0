//! HTTP routes: WebSocket upgrade, the messaging API, health, metrics and admin.
//!
//! Every error body is `{"error": "...", "code": "..."}` with a stable machine code.

pub mod a2a;
pub mod admin;
pub mod api;
pub mod auth;
pub mod dashboard;
pub mod health;
pub mod edge;
pub mod encoding;
pub mod keys;
pub mod mcp;
pub mod metrics;
pub mod email;
pub mod github;
pub mod openapi;
pub mod origin;
pub mod replay;
pub mod rooms;
pub mod shutdown;
pub mod sse;
pub mod webhooks;
pub mod ws;

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use agent_bridge_actors::router::RouteError;
use agent_bridge_actors::Broker;
use agent_bridge_protocol::http::HttpError;
use agent_bridge_protocol::ProtocolError;

use crate::config::Config;

/// Shared state of every handler.
pub struct AppState {
    pub broker: Broker,
    pub config: Config,
    pub started: Instant,
    /// Identities, keys and limits (agent_bridge_actors::auth).
    pub auth: std::sync::Arc<agent_bridge_actors::auth::Authenticator>,
    /// Set once the listener is bound and the tree is up.
    pub startup_done: AtomicBool,
    /// `GET /api/messages` long-polls parked at their shard now (`/api/status`).
    pub long_polls_waiting: std::sync::atomic::AtomicUsize,
    /// Raised when the broker stops: WebSockets and SSE streams end (see [`shutdown`]).
    pub closing: shutdown::Closing,
    /// MCP sessions and agent records of `/mcp` ([`mcp::session`]).
    pub mcp: mcp::session::Sessions,
    /// The A2A gateway's tasks ([`a2a`]).
    pub a2a: a2a::tasks::Tasks,
}

/// An HTTP error with a machine-readable code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// With 429: seconds to wait, sent as `Retry-After` and `retry_after` in the body.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        agent_bridge_actors::metrics::metrics().rejected.with_label_values(&[self.code]).inc();
        let mut resp = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.insert_header(("www-authenticate", "Bearer"));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still come: this connection cannot carry another request.
            resp.force_close();
        }
        match self.retry_after {
            Some(secs) => resp
                .insert_header(("retry-after", secs.to_string()))
                .json(serde_json::json!({ "error": self.message, "code": self.code, "retry_after": secs })),
            None => resp.json(HttpError { error: self.message.clone(), code: self.code.to_owned() }),
        }
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        let status = match e {
            ProtocolError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        let status = match e {
            RouteError::UnknownRecipient(_) => StatusCode::NOT_FOUND,
            RouteError::Store(ref s) if s.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            RouteError::Store(_) | RouteError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            RouteError::Unavailable | RouteError::NotDurable | RouteError::Mailbox(_) | RouteError::PoolEmpty(_) => StatusCode::SERVICE_UNAVAILABLE,
            RouteError::Room(ref r) => rooms::status(r),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws/{client_id}", web::get().to(ws::connect))
        .route("/api/send", web::post().to(api::send))
        .route("/api/send_batch", web::post().to(api::send_batch))
        .route("/api/messages", web::get().to(api::messages))
        .route("/api/ack", web::post().to(api::ack))
        .route("/api/status", web::get().to(api::status))
        .route("/mcp", web::post().to(mcp::post))
        .route("/mcp", web::get().to(mcp::get))
        .route("/mcp", web::delete().to(mcp::delete))
        .route("/api/whoami", web::get().to(api::whoami))
        .route("/api/call", web::post().to(rooms::call))
        .route("/api/call", web::get().to(rooms::call_get))
        .route("/api/search", web::get().to(rooms::search))
        .route("/api/rooms", web::get().to(rooms::list))
        .route("/api/rooms/{room}/history", web::get().to(rooms::history))
        .route("/api/rooms/{room}/files/{name}", web::put().to(rooms::put_file))
        .route("/api/rooms/{room}/files/{name}", web::get().to(rooms::get_file))
        .route("/admin/rooms", web::get().to(rooms::admin_list))
        .route("/stream/events", web::get().to(sse::events))
        // The original bridge's browser extension streams from here.
        .route("/api/subscribe", web::get().to(sse::events))
        .route("/health", web::get().to(health::health))
        .route("/health/live", web::get().to(health::live))
        .route("/health/ready", web::get().to(health::ready))
        .route("/health/startup", web::get().to(health::startup))
        .route("/metrics", web::get().to(metrics::serve))
        .route("/openapi.json", web::get().to(openapi::serve))
        .route("/admin/supervisors", web::get().to(admin::supervisors))
        .route("/admin/keys", web::post().to(keys::create))
        .route("/admin/keys", web::get().to(keys::list))
        .route("/admin/keys/{id}", web::delete().to(keys::revoke))
        .route("/admin/clients", web::get().to(admin::clients))
        .route("/admin/clients/{id}", web::delete().to(admin::kick))
        .route("/admin/messages", web::get().to(replay::messages))
        .route("/admin/messages/{id}/redeliver", web::post().to(replay::redeliver))
        .route("/admin/stream", web::get().to(dashboard::stream))
        .route("/dashboard", web::get().to(dashboard::page))
        .route("/", web::get().to(dashboard::home))
        .route("/admin/fault", web::post().to(admin::fault))
        .route("/admin/dead-letters", web::get().to(admin::dead_letters))
        .route("/admin/queues", web::get().to(admin::queues))
        .route("/admin/webhooks", web::post().to(webhooks::create))
        .route("/admin/webhooks", web::get().to(webhooks::list))
        .route("/admin/webhooks/failures", web::get().to(webhooks::failures))
        .route("/admin/webhooks/failures/{id}/resend", web::post().to(webhooks::resend))
        .route("/admin/webhooks/{id}", web::delete().to(webhooks::remove))
        .route("/admin/email", web::post().to(email::create))
        .route("/admin/email", web::get().to(email::list))
        .route("/admin/email/failures", web::get().to(email::failures))
        .route("/admin/email/{id}", web::delete().to(email::remove))
        .route("/admin/github/repos", web::get().to(github::repos))
        .route("/admin/github/repos/{room}", web::put().to(github::map))
        .route("/admin/github/repos/{room}", web::delete().to(github::unmap))
        .route("/admin/github/links", web::get().to(github::links))
        .route("/admin/github/failures", web::get().to(github::failures))
        .route("/.well-known/agent-card.json", web::get().to(a2a::gateway_card))
        .route("/a2a/{client_id}/.well-known/agent-card.json", web::get().to(a2a::agent_card))
        .route("/a2a", web::post().to(a2a::rpc_gateway))
        .route("/a2a/{client_id}", web::post().to(a2a::rpc_agent))
        .default_service(web::to(not_found));
}

async fn not_found() -> HttpResponse {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").error_response()
}

/// Reads a request body of at most `limit` bytes; larger bodies get 413 `too_large`.
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match &e {
            actix_web::error::PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", format!("reading body: {io}"))
            }
            // A compressed body that inflates past every route's limit (`encoding::decode`).
            actix_web::error::PayloadError::Overflow => ProtocolError::TooLarge { size: buf.len() + 1, limit }.into(),
            _ => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("reading body: {e}")),
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ProtocolError::TooLarge { size: buf.len() + chunk.len(), limit }.into());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A `since` position (WebSocket `?since=`, SSE `Last-Event-ID`): empty means none.
pub fn parse_since(value: Option<&str>, what: &str) -> Result<Option<u64>, ApiError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<u64>().map(Some).map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("{what} {s:?} is not a sequence number"))
        }),
    }
}

/// A `types=a,b` filter: `None` (or an empty list) means every type.
pub fn parse_types(value: Option<&str>) -> Option<std::collections::HashSet<String>> {
    value
        .map(|t| t.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect::<std::collections::HashSet<_>>())
        .filter(|t| !t.is_empty())
}

/// Parses a JSON body, mapping every failure to a coded error.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let code = "bad_frame";
        let msg = e.to_string();
        let message = if let Some(rest) = msg.strip_prefix("missing field `") {
            format!("missing field {:?} in {what}", rest.split('`').next().unwrap_or_default())
        } else {
            format!("invalid {what}: {msg}")
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    })
}

/// CORS for browser clients: the configured origins, and the broker's own origin (what Python's
/// websocket-client sends), may call every route with `Authorization`; other origins are refused
/// with 403 `forbidden` (WebSocket upgrades from other web pages included). Requests without an
/// `Origin` header (non-browser clients) are not affected. See [`origin`].
pub fn cors(config: &Config) -> origin::Cors {
    origin::Cors::new(origin::OriginPolicy::new(config))
}
