//! API key administration (PROTOCOL.md section 5): `POST /admin/keys` creates a key and shows it
//! once, `GET /admin/keys` lists keys with usage statistics (never the key or its hash),
//! `DELETE /admin/keys/{id}` revokes a key at once and closes its open sessions. The `admin`
//! permission is enforced by the auth middleware and again by each handler's [`Admin`] argument.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use agent_bridge_actors::auth::keys::{ApiKeyRecord, NewKey};
use agent_bridge_actors::auth::Permissions;
use agent_bridge_protocol::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Admin;
use super::{parse_json, read_body, ApiError, AppState};

/// What a key grants: who it acts as, what it may do, its limits and rooms. `POST /admin/keys`
/// takes it and `GET /admin/keys` shows it, with the same names.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyGrant {
    /// The client id this key acts as, or a pattern with a `*` suffix (`browser-*`), or `*`.
    pub client_id: String,
    /// More client id patterns this key may act as.
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    /// `read` (receive), `write` (send), `admin` (/admin routes).
    pub permissions: Vec<String>,
    /// Requests per hour (HTTP requests and WebSocket sends); 0: unlimited; absent: the server default.
    #[serde(default)]
    pub rate_limit_per_hour: Option<u64>,
    /// Largest burst; absent: the server default.
    #[serde(default)]
    pub burst: Option<u64>,
    /// Private rooms this key may enter.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Free text for operators.
    #[serde(default)]
    pub label: String,
}

/// `POST /admin/keys` body: the grant, and when the key expires. Other fields are refused.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateKeyRequest {
    #[serde(flatten)]
    pub grant: KeyGrant,
    /// Days until the key expires; absent: never.
    #[serde(default)]
    pub expires_days: Option<f64>,
    /// What else the body holds, to refuse it by name (`deny_unknown_fields` does not combine
    /// with `flatten`).
    #[serde(flatten)]
    #[schema(ignore)]
    unknown: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
}

/// A key as listed: no secret, no hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: String,
    #[serde(flatten)]
    pub grant: KeyGrant,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    pub usage: KeyUsage,
}

/// Usage statistics of a key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyUsage {
    pub requests: u64,
    pub messages: u64,
    pub last_used: Option<String>,
}

fn time(ms: i64) -> String {
    Timestamp(ms).to_rfc3339()
}

impl From<ApiKeyRecord> for KeyView {
    fn from(r: ApiKeyRecord) -> Self {
        let now = Timestamp::now().millis();
        let status = if r.revoked_at_ms.is_some() {
            "revoked"
        } else if r.expires_at_ms.is_some_and(|at| at <= now) {
            "expired"
        } else {
            "active"
        };
        let mut clients = r.clients.into_iter();
        let grant = KeyGrant {
            client_id: clients.next().unwrap_or_default(),
            allowed_clients: clients.collect(),
            permissions: r.permissions,
            rate_limit_per_hour: r.rate_limit_per_hour,
            burst: r.burst,
            rooms: r.rooms,
            label: r.label,
        };
        KeyView {
            id: r.id,
            grant,
            created_at: time(r.created_at_ms),
            expires_at: r.expires_at_ms.map(time),
            revoked_at: r.revoked_at_ms.map(time),
            status: status.into(),
            usage: KeyUsage { requests: r.requests, messages: r.messages, last_used: r.last_used_ms.map(time) },
        }
    }
}

/// `POST /admin/keys`: `201 {key, id, ...}`; the key is shown only in this answer.
pub async fn create(_admin: Admin, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, 64 * 1024).await?;
    let req: CreateKeyRequest = parse_json(&body, "key request")?;
    if let Some(field) = req.unknown.keys().next() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_frame", format!("invalid key request: unknown field `{field}`")));
    }
    let KeyGrant { client_id, allowed_clients, permissions, rate_limit_per_hour, burst, rooms, label } = req.grant;
    let permissions = Permissions::parse_list(permissions.iter().map(String::as_str))?;
    let new = NewKey { client_id, allowed_clients, permissions, rate_limit_per_hour, burst, expires_days: req.expires_days, rooms, label };
    // The record's flush runs on the store's flusher thread; this only awaits it.
    let created = state.auth.keys.create(new).await?;
    tracing::info!(key_id = %created.record.id, clients = ?created.record.clients, permissions = ?created.record.permissions, "API key created");
    let mut view = serde_json::to_value(KeyView::from(created.record)).unwrap_or_default();
    view["key"] = json!(created.key);
    view["note"] = json!("store this key now: it is shown only once");
    Ok(HttpResponse::Created().json(view))
}

/// `GET /admin/keys`: every key with its usage.
pub async fn list(_admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if let Err(e) = state.auth.keys.persist_usage().await {
        tracing::warn!(error = %e, "saving API key usage");
    }
    let keys: Vec<KeyView> = state.auth.keys.list().into_iter().map(KeyView::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "count": keys.len(), "keys": keys })))
}

/// `DELETE /admin/keys/{id}`: revokes at once; open sessions using the key are closed (1008).
pub async fn revoke(_admin: Admin, path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    match state.auth.keys.revoke(&id).await? {
        Some(closed) => {
            tracing::info!(key_id = %id, sessions_closed = closed, "API key revoked");
            Ok(HttpResponse::Ok().json(json!({ "id": id, "revoked": true, "sessions_closed": closed })))
        }
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no API key with id {id:?}"))),
    }
}
