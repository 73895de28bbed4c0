//! E-mail subscriptions (PROTOCOL.md, "E-mail notifications"): `POST /admin/email` subscribes
//! addresses to events (optionally as a digest), `GET /admin/email` lists the subscriptions with
//! their figures, `DELETE /admin/email/{id}` removes one, `GET /admin/email/failures` lists the
//! mails that could not be sent. Each handler takes [`Admin`]; the work is the `Mailer` actor's.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use agent_bridge_actors::email::{EmailError, ListMailFailures, ListSubscriptions, NewSubscription, Subscribe, Unsubscribe};
use serde_json::json;

use super::admin::LimitQuery;
use super::auth::Admin;
use super::webhooks::ask;
use super::{parse_json, read_body, ApiError, AppState};

impl From<EmailError> for ApiError {
    fn from(e: EmailError) -> Self {
        let status = match e {
            EmailError::InvalidAddress(_) | EmailError::UnknownEvent(_) | EmailError::Invalid(_) => StatusCode::BAD_REQUEST,
            EmailError::UnknownSubscription(_) => StatusCode::NOT_FOUND,
            EmailError::Store(_) | EmailError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            EmailError::Unavailable | EmailError::Mailbox(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// `POST /admin/email {to, events, client_id?, room?, digest_seconds?}`: 201 with the subscription.
pub async fn create(_admin: Admin, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, 64 * 1024).await?;
    let req: NewSubscription = parse_json(&body, "e-mail subscription")?;
    Ok(HttpResponse::Created().json(ask(&state.broker.email, Subscribe(req)).await?))
}

/// `GET /admin/email`: every subscription with `sent`, `failed` and `pending`.
pub async fn list(_admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let subs = ask(&state.broker.email, ListSubscriptions).await?;
    Ok(HttpResponse::Ok().json(json!({ "count": subs.len(), "subscriptions": subs })))
}

/// `DELETE /admin/email/{id}`.
pub async fn remove(_admin: Admin, id: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    ask(&state.broker.email, Unsubscribe(id.clone())).await?;
    Ok(HttpResponse::Ok().json(json!({ "id": id.as_str(), "removed": true })))
}

/// `GET /admin/email/failures?limit=`: mails not sent, oldest first.
pub async fn failures(_admin: Admin, query: web::Query<LimitQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let failures = ask(&state.broker.email, ListMailFailures(query.limit(100, 10_000))).await?;
    Ok(HttpResponse::Ok().json(json!({ "count": failures.len(), "failures": failures })))
}
