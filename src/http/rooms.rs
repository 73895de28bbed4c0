//! Rooms over HTTP: `POST`/`GET /api/call` (the calls of PROTOCOL.md section 4), and REST routes
//! for clients that do not speak WebSocket: `GET /api/rooms`, `GET /api/rooms/{room}/history`,
//! `PUT`/`GET /api/rooms/{room}/files/{name}`, and `GET /admin/rooms`.
//!
//! Whom a request acts as is decided in one place, [`caller`].

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use agent_bridge_actors::room::RoomError;
use agent_bridge_protocol::ids::validate_client_id;
use agent_bridge_protocol::Payload;
use serde::Deserialize;
use serde_json::json;

use super::auth::Admin;
use super::{parse_json, read_body, ApiError, AppState};

/// The HTTP status of a room error.
pub fn status(e: &RoomError) -> StatusCode {
    if let RoomError::GitHub(e) = e {
        return super::github::status(e);
    }
    match e.code() {
        "unknown_room" | "not_found" | "unknown_method" => StatusCode::NOT_FOUND,
        "not_member" | "forbidden" | "quota_exceeded" => StatusCode::FORBIDDEN,
        "already_exists" | "proposal_closed" | "stopped" => StatusCode::CONFLICT,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unavailable" | "no_display" | "pool_empty" | "circuit_open" | "agent_failed" | "spawn_failed" => StatusCode::SERVICE_UNAVAILABLE,
        "no_window" => StatusCode::NOT_FOUND,
        "busy" => StatusCode::TOO_MANY_REQUESTS,
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        "storage_error" | "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<RoomError> for ApiError {
    fn from(e: RoomError) -> Self {
        ApiError::new(status(&e), e.code(), e.to_string())
    }
}

/// Who a room request acts as: `from` (or `client_id`) in the body or the query string, which the
/// request's credentials must allow (403 `forbidden` otherwise), or, when absent, the one client id
/// the credentials name (crate::http::auth).
pub fn caller(req: &HttpRequest, named: Option<&str>) -> Result<String, ApiError> {
    if let Some(id) = named {
        validate_client_id(id)?;
    }
    let identity = super::auth::Caller::of(req)?;
    identity.client_id(named)?.ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "say who is calling: \"from\" (or \"client_id\") is required")
    })
}

/// The request's credentials, for the rooms' own checks (`read`/`write` per call, private rooms).
fn identity(req: &HttpRequest) -> Option<std::sync::Arc<agent_bridge_actors::auth::Identity>> {
    super::auth::Caller::of(req).ok().map(|c| c.0)
}

/// `from` or `client_id`, from a query string. (Not `#[serde(flatten)]`ed into the other
/// queries and bodies: flattening buffers values, which breaks numbers in query strings and raw
/// JSON params.)
#[derive(Debug, Default, Deserialize)]
pub struct Identity {
    from: Option<String>,
    client_id: Option<String>,
}

impl Identity {
    fn named(&self) -> Option<&str> {
        self.from.as_deref().or(self.client_id.as_deref())
    }
}

/// `POST /api/call` body.
#[derive(Deserialize)]
struct CallRequest {
    method: String,
    #[serde(default)]
    params: Payload,
    #[serde(default)]
    r#ref: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

async fn run_call(req: &HttpRequest, state: &AppState, call: CallRequest) -> Result<HttpResponse, ApiError> {
    let who = caller(req, call.from.as_deref().or(call.client_id.as_deref()))?;
    let result = state.broker.rooms.call(&who, identity(req), &call.method, &call.params, None).await?;
    Ok(HttpResponse::Ok().json(json!({ "ok": true, "ref": call.r#ref, "result": result })))
}

/// `POST /api/call {method, params, from}`: `200 {ok: true, result}`, or an error body with a code.
pub async fn call(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, state.config.max_frame_bytes).await?;
    let call: CallRequest = parse_json(&body, "call request")?;
    run_call(&req, &state, call).await
}

/// Query of `GET /api/call`.
#[derive(Deserialize)]
pub struct CallQuery {
    method: String,
    /// The params as JSON text.
    params: Option<String>,
    from: Option<String>,
    client_id: Option<String>,
}

/// `GET /api/call?method=&params=<json>&from=`: the same, for read-only calls from a browser bar.
pub async fn call_get(req: HttpRequest, query: web::Query<CallQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    // A cross-site `<img>` or a rebinding page can issue a GET: only calls that change nothing.
    if !agent_bridge_actors::rooms::changes_nothing(&q.method) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{:?} changes state (or is not a call): use POST /api/call", q.method),
        ));
    }
    let params = match q.params {
        Some(text) => Payload::from_json_text(text)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_params", format!("params is not JSON: {e}")))?,
        None => Payload::null(),
    };
    run_call(&req, &state, CallRequest { method: q.method, params, r#ref: None, from: q.from, client_id: q.client_id }).await
}

/// Query of `GET /api/rooms` and `GET /admin/rooms`.
#[derive(Deserialize)]
pub struct ListQuery {
    from: Option<String>,
    client_id: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/rooms[?from=&limit=&cursor=]`: a page of the rooms the caller may join, in name order
/// (with the caller's role in each; `from` may be left out when the credentials name one client
/// id). `next_cursor` continues the listing.
pub async fn list(req: HttpRequest, query: web::Query<ListQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let who = super::auth::Caller::of(&req)?.client_id(q.from.as_deref().or(q.client_id.as_deref()))?;
    Ok(HttpResponse::Ok().json(state.broker.rooms.list(who, identity(&req), q.limit, q.cursor).await?))
}

/// `GET /admin/rooms[?limit=&cursor=]`: every room, private ones too.
pub async fn admin_list(_admin: Admin, query: web::Query<ListQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    Ok(HttpResponse::Ok().json(state.broker.rooms.list(None, None, q.limit, q.cursor).await?))
}

/// A room from the path: a channel is written `room%2Fchannel`.
fn room_path(room: &str) -> String {
    room.replace("%2F", "/").replace("%2f", "/")
}

/// Query of `GET /api/rooms/{room}/history`.
#[derive(Deserialize)]
pub struct HistoryQuery {
    since: Option<u64>,
    limit: Option<usize>,
    from: Option<String>,
    client_id: Option<String>,
}

/// `GET /api/rooms/{room}/history?since=&limit=&from=`: `{room, messages, next_since, last_seq}`.
pub async fn history(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&req, query.from.as_deref().or(query.client_id.as_deref()))?;
    let page = state.broker.rooms.history(&who, identity(&req), &room_path(&path), query.since.unwrap_or(0), query.limit.unwrap_or(100)).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `PUT /api/rooms/{room}/files/{name}?from=`: the body is the file; answers its metadata.
pub async fn put_file(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<Identity>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&req, query.named())?;
    let (room, name) = path.into_inner();
    let body = read_body(payload, state.broker.rooms.max_file_bytes()).await?;
    let meta = state.broker.rooms.upload(&who, identity(&req), &room_path(&room), name, body.to_vec()).await?;
    Ok(HttpResponse::Ok().json(meta))
}

/// `GET /api/rooms/{room}/files/{name}?from=`: the file (by id, or the newest of that name).
pub async fn get_file(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<Identity>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = caller(&req, query.named())?;
    let (room, name) = path.into_inner();
    let (meta, bytes) = state.broker.rooms.download(&who, identity(&req), &room_path(&room), name).await?;
    let file_name = meta["name"].as_str().unwrap_or("file").replace('"', "");
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("x-content-sha256", meta["sha256"].as_str().unwrap_or_default()))
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file_name}\"")))
        .body(bytes))
}

/// Query of `GET /api/search`: `history.search`'s params, with `q` for the query; the caller is
/// `client_id` (`from` is the sender filter here, as in the call).
#[derive(Deserialize)]
pub struct SearchQuery {
    q: String,
    room: Option<String>,
    with: Option<String>,
    from: Option<String>,
    r#type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    client_id: Option<String>,
}

/// `GET /api/search?q=&client_id=[&room=&with=&from=&type=&since=&until=&limit=&cursor=]`: the
/// `history.search` call: `{query, count, results: [{score, message}], next_cursor}`.
pub async fn search(req: HttpRequest, query: web::Query<SearchQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let who = caller(&req, q.client_id.as_deref())?;
    let params = json!({
        "query": q.q, "room": q.room, "with": q.with, "from": q.from, "type": q.r#type,
        "since": q.since, "until": q.until, "limit": q.limit, "cursor": q.cursor,
    });
    let result = state.broker.rooms.call(&who, identity(&req), "history.search", &Payload::from_serialize(&params), None).await?;
    Ok(HttpResponse::Ok().json(result))
}
