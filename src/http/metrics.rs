//! `GET /metrics` (Prometheus text) and the middleware that counts HTTP requests.
//!
//! The gauges that are cheaper to read on demand than to keep current (queue depth, pending acks,
//! dead letters and archive kept, store size, the process's memory, CPU and fds) are set just
//! before each scrape renders; counters and histograms are kept where things happen
//! (agent_bridge_actors::metrics).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use agent_bridge_actors::ack_tracker::PendingCount;
use agent_bridge_actors::metrics::{metrics, render, Snapshot};

use super::AppState;

/// `GET /metrics`.
pub async fn serve(state: web::Data<AppState>) -> HttpResponse {
    let broker = &state.broker;
    let clients = broker.router.clients().await;
    let snapshot = Snapshot {
        queue_depth: clients.iter().map(|c| c.queued as u64).sum(),
        // An unavailable tracker (restarting) leaves the gauge at its last value.
        acks_pending: match broker.tracker.send(PendingCount).await {
            Ok(n) => n as u64,
            Err(_) => metrics().acks_pending.get().max(0) as u64,
        },
        dead_letters: broker.store.dead_letter_count() as u64,
        archived: broker.store.archived() as u64,
        store_bytes: broker.store.size_on_disk(),
    };
    metrics().set(snapshot);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(render())
}

/// Counts each request in `bridge_http_requests_total{route, status}`. `route` is the matched
/// pattern (`/api/rooms/{room}/history`), so a client cannot grow the label set by inventing paths;
/// requests that match no route count as `unmatched`.
pub async fn count(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let res = next.call(req).await;
    let status = match &res {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    metrics().http_requests.with_label_values(&[&route, status.as_str()]).inc();
    res
}
