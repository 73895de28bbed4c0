//! Kubernetes probes (Prometheus metrics are in [`super::metrics`]).

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

fn probe(checks: serde_json::Value) -> HttpResponse {
    let ok = checks.as_object().is_some_and(|m| m.values().all(|v| v["ok"] == true));
    let body = json!({ "status": if ok { "ok" } else { "unavailable" }, "checks": checks });
    if ok { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// `GET /health`: a summary for humans and old clients.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    ready(state).await
}

/// `GET /health/live`: the process answers HTTP.
pub async fn live() -> HttpResponse {
    probe(json!({ "http": { "ok": true } }))
}

/// `GET /health/ready`: no supervised actor has failed (escalated) and the store takes writes.
/// It does no I/O: the store's flusher thread keeps `writable` current (a failed write or flush
/// turns it off, a probe write flushed after the reopen turns it on, and an idle store is probed
/// every few seconds), so the probe answers at once however the disk behaves.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let failed = state.broker.tree.failed();
    let store = &state.broker.store;
    probe(json!({
        "supervisors": { "ok": state.broker.tree.healthy(), "failed": failed },
        "store": { "ok": store.writable(), "reopened": store.reopened() },
        "startup": { "ok": state.startup_done.load(Ordering::Acquire) },
    }))
}

/// `GET /health/startup`: start-up has finished.
pub async fn startup(state: web::Data<AppState>) -> HttpResponse {
    probe(json!({ "startup": { "ok": state.startup_done.load(Ordering::Acquire) } }))
}

