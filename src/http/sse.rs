//! `GET /stream/events`: Server-Sent Events for clients that only read.


use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use agent_bridge_actors::sse::SseSession;
use agent_bridge_protocol::ids::validate_client_id;
use serde::Deserialize;

use super::auth::{session_auth, Caller};
use super::{parse_since, parse_types, ApiError, AppState};
use agent_bridge_actors::auth::Permission;

/// Query of `GET /stream/events`.
#[derive(Debug, Deserialize)]
pub struct SseQuery {
    client_id: Option<String>,
    types: Option<String>,
    /// For clients that cannot set headers: the same as `Last-Event-ID`.
    since: Option<String>,
}

/// `GET /stream/events` (and its alias `GET /api/subscribe`, the original extension's path).
pub async fn events(req: HttpRequest, query: web::Query<SseQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let caller = Caller::of(&req)?;
    // Credentials bound to exactly one client id may leave `client_id` out.
    let Some(client_id) = caller.client_id(q.client_id.as_deref())? else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "missing query parameter \"client_id\": the client id whose messages to stream",
        ));
    };
    validate_client_id(&client_id)?;
    caller.act_as(&client_id, Permission::Read)?;
    let header = req.headers().get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let since = parse_since(header.or(q.since).as_deref(), "Last-Event-ID")?;
    let types = parse_types(q.types.as_deref());
    let auth = session_auth(&state, &caller, &client_id)?;
    let body = SseSession::start(client_id, since, types, &state.broker.sessions, auth);
    Ok(event_stream(&state, body))
}

/// A `text/event-stream` response streaming `body`, unbuffered by proxies, ended when the broker
/// stops (also the `/mcp` listening stream's).
pub fn event_stream<S, E>(state: &AppState, body: S) -> HttpResponse
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + 'static,
    E: Into<Box<dyn std::error::Error>> + 'static,
{
    let resp = super::encoding::uncompressed(&mut HttpResponse::Ok())
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body);
    state.closing.wrap(resp, None)
}
