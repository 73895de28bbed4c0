//! The GitHub integration's administration (PROTOCOL.md, "GitHub"): `PUT /admin/github/repos/{room}`
//! `{repo}` maps a room to a repository, `GET /admin/github/repos` lists the mappings,
//! `DELETE /admin/github/repos/{room}` removes one, `GET /admin/github/links?room=` lists the
//! issues made from cards and decisions, `GET /admin/github/failures` the comments GitHub refused.
//! Issues themselves are made by the `github.issue` call. Each handler takes [`Admin`].

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use agent_bridge_actors::github::{GitHubError, ListGitHubFailures, ListLinks, ListRepos, MapRepo, UnmapRepo};
use serde::Deserialize;
use serde_json::json;

use super::admin::LimitQuery;
use super::auth::Admin;
use super::webhooks::ask;
use super::{parse_json, read_body, ApiError, AppState};

/// The HTTP status of a GitHub error: GitHub's own refusals are a bad gateway (502), its rate
/// limit a 429 (with `Retry-After` when GitHub gave one).
pub fn status(e: &GitHubError) -> StatusCode {
    match e {
        GitHubError::NotConfigured | GitHubError::Unavailable | GitHubError::Mailbox(_) => StatusCode::SERVICE_UNAVAILABLE,
        GitHubError::NoRepository(_) => StatusCode::NOT_FOUND,
        GitHubError::Invalid(_) => StatusCode::BAD_REQUEST,
        GitHubError::AlreadyLinked(..) => StatusCode::CONFLICT,
        GitHubError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        GitHubError::Unauthorized(_)
        | GitHubError::Forbidden(_)
        | GitHubError::NotFound(_)
        | GitHubError::Unprocessable(_)
        | GitHubError::Api { .. }
        | GitHubError::Unreachable(_) => StatusCode::BAD_GATEWAY,
        GitHubError::Store(_) | GitHubError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<GitHubError> for ApiError {
    fn from(e: GitHubError) -> Self {
        ApiError::new(status(&e), e.code(), e.to_string())
    }
}

/// `PUT /admin/github/repos/{room}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepoBody {
    repo: String,
}

/// `PUT /admin/github/repos/{room} {repo}`: 200 with the mapping.
pub async fn map(_admin: Admin, room: web::Path<String>, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, 16 * 1024).await?;
    let req: RepoBody = parse_json(&body, "repository mapping")?;
    Ok(HttpResponse::Ok().json(ask(&state.broker.github, MapRepo { room: room.into_inner(), repo: req.repo }).await?))
}

/// `GET /admin/github/repos`.
pub async fn repos(_admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let repos = ask(&state.broker.github, ListRepos).await?;
    Ok(HttpResponse::Ok().json(json!({ "count": repos.len(), "repos": repos })))
}

/// `DELETE /admin/github/repos/{room}`.
pub async fn unmap(_admin: Admin, room: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    ask(&state.broker.github, UnmapRepo(room.clone())).await?;
    Ok(HttpResponse::Ok().json(json!({ "room": room.as_str(), "removed": true })))
}

/// `GET /admin/github/links` query.
#[derive(Deserialize)]
pub struct LinksQuery {
    room: Option<String>,
    limit: Option<usize>,
}

/// `GET /admin/github/links?room=&limit=`: issues made, by room and card or proposal id.
pub async fn links(_admin: Admin, query: web::Query<LinksQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let links = ask(&state.broker.github, ListLinks { room: q.room, limit: q.limit.unwrap_or(100).clamp(1, 10_000) }).await?;
    Ok(HttpResponse::Ok().json(json!({ "count": links.len(), "links": links })))
}

/// `GET /admin/github/failures?limit=`: comments GitHub refused, oldest first.
pub async fn failures(_admin: Admin, query: web::Query<LimitQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let failures = ask(&state.broker.github, ListGitHubFailures(query.limit(100, 10_000))).await?;
    Ok(HttpResponse::Ok().json(json!({ "count": failures.len(), "failures": failures })))
}
