//! Webhook administration (PROTOCOL.md section 7.x): `POST /admin/webhooks` registers one and shows
//! its signing secret once, `GET /admin/webhooks` lists them with each endpoint's figures and
//! breaker state, `DELETE /admin/webhooks/{id}` removes one, `GET /admin/webhooks/failures` lists
//! the deliveries given up and `POST /admin/webhooks/failures/{id}/resend` sends one again. Each
//! handler takes [`Admin`]; the work is the `Webhooks` actor's.

use actix::dev::ToEnvelope;
use actix::{Handler, Message};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use agent_bridge_actors::webhooks::{
    ListFailures, ListWebhooks, NewWebhook, Register, RemoveWebhook, Resend, WebhookError,
};
use serde_json::json;

use super::admin::LimitQuery;
use super::auth::Admin;
use super::{parse_json, read_body, ApiError, AppState};

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        let status = match e {
            WebhookError::InvalidUrl(_) | WebhookError::UnknownEvent(_) | WebhookError::Invalid(_) => StatusCode::BAD_REQUEST,
            WebhookError::UnknownWebhook(_) | WebhookError::UnknownFailure(_) => StatusCode::NOT_FOUND,
            WebhookError::Store(ref s) if s.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            WebhookError::Store(_) | WebhookError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WebhookError::Unavailable | WebhookError::Mailbox(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

/// Sends `msg` to an integration actor (webhooks, e-mail, GitHub) and answers its result.
pub(super) async fn ask<A, M, T, E>(actor: &actix::Addr<A>, msg: M) -> Result<T, ApiError>
where
    A: Handler<M>,
    M: Message<Result = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: From<actix::MailboxError> + Into<ApiError> + Send + 'static,
    A::Context: ToEnvelope<A, M>,
{
    match actor.send(msg).await {
        Ok(answer) => answer.map_err(Into::into),
        Err(e) => Err(E::from(e).into()),
    }
}

/// `POST /admin/webhooks {url, events, format?, secret?, client_id?, room?}`: 201 with the id and
/// the secret (shown only here).
pub async fn create(_admin: Admin, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, 64 * 1024).await?;
    let req: NewWebhook = parse_json(&body, "webhook request")?;
    let created = ask(&state.broker.webhooks, Register(req)).await?;
    let mut view = serde_json::to_value(created).unwrap_or_default();
    view["note"] = json!("store this secret now: it is shown only once");
    Ok(HttpResponse::Created().json(view))
}

/// `GET /admin/webhooks`: every webhook with `delivered`, `failed` and `breaker`.
pub async fn list(_admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let hooks = ask(&state.broker.webhooks, ListWebhooks).await?;
    Ok(HttpResponse::Ok().json(json!({ "count": hooks.len(), "webhooks": hooks })))
}

/// `DELETE /admin/webhooks/{id}`.
pub async fn remove(_admin: Admin, id: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    ask(&state.broker.webhooks, RemoveWebhook(id.clone())).await?;
    Ok(HttpResponse::Ok().json(json!({ "id": id.as_str(), "removed": true })))
}

/// `GET /admin/webhooks/failures?limit=`: deliveries given up, oldest first.
pub async fn failures(_admin: Admin, query: web::Query<LimitQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let failures = ask(&state.broker.webhooks, ListFailures(query.limit(100, 10_000))).await?;
    Ok(HttpResponse::Ok().json(json!({ "count": failures.len(), "failures": failures })))
}

/// `POST /admin/webhooks/failures/{id}/resend`: 202; the delivery starts again with its retries.
pub async fn resend(_admin: Admin, id: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    ask(&state.broker.webhooks, Resend(id.clone())).await?;
    Ok(HttpResponse::Accepted().json(json!({ "id": id.as_str(), "status": "resending" })))
}
