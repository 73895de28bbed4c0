//! The live dashboard: `GET /dashboard` serves one self-contained page (`dashboard.html`, compiled
//! in: no build step, no CDN), `GET /` sends browsers there, and `GET /admin/stream` is its live
//! feed: Server-Sent Events with every routed message (`event: message`, from the router's
//! [`Monitor`](agent_bridge_actors::router::Monitor)) and every two seconds the figures the charts
//! draw (`event: stats`: messages in and out, per-second rates, delivery latency percentiles over
//! the interval, connections, restarts).
//!
//! The page holds no data: it asks for an admin key when auth is on, keeps it in the tab's
//! `sessionStorage`, and reads `/admin/*` with `Authorization: Bearer` (the stream through `fetch`,
//! so the key never goes into a URL).

use std::time::{Duration, Instant};

use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use agent_bridge_actors::metrics::metrics;
use agent_bridge_actors::router::Traffic;
use prometheus::core::Collector;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::auth::Admin;
use super::AppState;

/// The page.
const PAGE: &str = include_str!("dashboard.html");
/// How often `stats` is sent.
const STATS_EVERY: Duration = Duration::from_secs(2);

/// `GET /dashboard`.
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("content-security-policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'"))
        .insert_header(("x-frame-options", "DENY"))
        .body(PAGE)
}

/// `GET /`: browsers go to the dashboard.
pub async fn home() -> HttpResponse {
    HttpResponse::Found().insert_header(("location", "/dashboard")).finish()
}

/// Cumulative figures, to take differences of.
#[derive(Default, Clone)]
struct Totals {
    messages_in: u64,
    messages_out: u64,
    /// Delivery latency buckets (upper bound in seconds, cumulative count), summed over transports.
    latency: Vec<(f64, u64)>,
}

impl Totals {
    fn now() -> Totals {
        let m = metrics();
        let sum = |c: &prometheus::IntCounterVec| -> u64 {
            c.collect().iter().flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value() as u64)).sum()
        };
        let mut latency: Vec<(f64, u64)> = Vec::new();
        for family in m.delivery_latency.collect() {
            for metric in family.get_metric() {
                for (i, b) in metric.get_histogram().get_bucket().iter().enumerate() {
                    match latency.get_mut(i) {
                        Some(slot) => slot.1 += b.cumulative_count(),
                        None => latency.push((b.upper_bound(), b.cumulative_count())),
                    }
                }
            }
        }
        Totals { messages_in: sum(&m.messages_in), messages_out: sum(&m.messages_out), latency }
    }

    /// The `q` quantile (ms) of the deliveries between `before` and `self`: the upper bound of the
    /// bucket it falls in; `None` without deliveries.
    fn quantile_ms(&self, before: &Totals, q: f64) -> Option<f64> {
        let delta: Vec<(f64, u64)> = self
            .latency
            .iter()
            .enumerate()
            .map(|(i, (le, n))| (*le, n.saturating_sub(before.latency.get(i).map_or(0, |b| b.1))))
            .collect();
        let total = delta.last()?.1;
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil() as u64;
        delta.iter().find(|(_, n)| *n >= rank).map(|(le, _)| le * 1000.0)
    }
}

/// One `stats` event.
fn stats(now: &Totals, before: &Totals, secs: f64) -> String {
    let m = metrics();
    let connections: i64 = m.connections.collect().iter().flat_map(|f| f.get_metric().iter().map(|g| g.get_gauge().get_value() as i64)).sum();
    let restarts: u64 =
        m.actor_restarts.collect().iter().flat_map(|f| f.get_metric().iter().map(|c| c.get_counter().get_value() as u64)).sum();
    let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs.max(0.001);
    let body = json!({
        "at": agent_bridge_protocol::Timestamp::now(),
        "messages_in": now.messages_in,
        "messages_out": now.messages_out,
        "in_per_s": rate(now.messages_in, before.messages_in),
        "out_per_s": rate(now.messages_out, before.messages_out),
        "latency_p50_ms": now.quantile_ms(before, 0.5),
        "latency_p99_ms": now.quantile_ms(before, 0.99),
        "connections": connections,
        "restarts": restarts,
    });
    format!("event: stats\ndata: {body}\n\n")
}

fn message_event(t: &Traffic) -> String {
    format!("event: message\ndata: {}\n\n", serde_json::to_string(t).unwrap_or_default())
}

/// `GET /admin/stream`: the dashboard's live feed (see the module notes). A watcher that falls
/// more than the tap's capacity behind gets `event: lagged` with how many it missed.
pub async fn stream(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    let rx = state.broker.router.monitor().subscribe();
    let mut ticks = tokio::time::interval(STATS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = (rx, ticks, Totals::now(), Instant::now());
    let events = futures_util::stream::unfold(start, |(mut rx, mut ticks, before, since)| async move {
        let (text, before, since) = tokio::select! {
            got = rx.recv() => match got {
                Ok(t) => (message_event(&t), before, since),
                Err(RecvError::Lagged(n)) => (format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n"), before, since),
                Err(RecvError::Closed) => return None,
            },
            _ = ticks.tick() => {
                let now = Totals::now();
                (stats(&now, &before, since.elapsed().as_secs_f64()), now, Instant::now())
            }
        };
        Some((Ok::<_, actix_web::Error>(Bytes::from(text)), (rx, ticks, before, since)))
    });
    let resp = super::encoding::uncompressed(&mut HttpResponse::Ok())
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(events);
    state.closing.wrap(resp, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_interval_only() {
        let before = Totals { latency: vec![(0.001, 10), (0.01, 10), (0.1, 10)], ..Totals::default() };
        let now = Totals { latency: vec![(0.001, 10), (0.01, 19), (0.1, 20)], ..Totals::default() };
        assert_eq!(now.quantile_ms(&before, 0.5), Some(10.0));
        assert_eq!(now.quantile_ms(&before, 0.99), Some(100.0));
        assert_eq!(before.quantile_ms(&before, 0.5), None);
    }
}
