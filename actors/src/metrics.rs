//! Prometheus metrics, one registry for the process.
//!
//! Names follow `bridge_<subsystem>_<name>`; labels carry only bounded values (actor kind or
//! singleton name, transport, priority, reason) — never a client id or room name.

use std::sync::OnceLock;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Every metric the broker exports.
pub struct Metrics {
    pub registry: Registry,
    /// Open client connections by transport (`websocket`, `sse`).
    pub connections: IntGaugeVec,
    /// Messages accepted for routing, by the sender's transport (`websocket`, `http`).
    pub messages_routed: IntCounterVec,
    /// Frames handed to live sessions, by transport.
    pub deliveries: IntCounterVec,
    /// Messages not handed to a session, by reason (`slow_consumer`, `filtered`).
    pub dropped: IntCounterVec,
    /// Frames or requests rejected, by error code.
    pub rejected: IntCounterVec,
    /// Supervised actor restarts, by actor (singleton name or kind).
    pub actor_restarts: IntCounterVec,
    /// Escalations: a child exceeded its restart intensity.
    pub escalations: IntCounterVec,
    /// Sessions currently behind (catching up from the store).
    pub lagging_sessions: IntGauge,
    /// Acknowledgements accepted.
    pub acks: IntCounter,
    /// Deliveries after the first of a require-ack message.
    pub redeliveries: IntCounter,
    /// Messages dead-lettered after their last attempt.
    pub dead_letters: IntCounter,
    /// Messages removed by expiry (ttl or retention).
    pub expired: IntCounter,
}

/// Creates a metric and registers it.
fn registered<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: Result<M, prometheus::Error>) -> Result<M, prometheus::Error> {
    let metric = metric?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let r = &registry;
    let vec = |name: &str, help: &str, label: &str| registered(r, IntCounterVec::new(Opts::new(name, help), &[label]));
    let counter = |name: &str, help: &str| registered(r, IntCounter::new(name, help));
    Ok(Metrics {
        connections: registered(r, IntGaugeVec::new(Opts::new("bridge_connections", "Open client connections"), &["transport"]))?,
        messages_routed: vec("bridge_messages_routed_total", "Messages accepted for routing", "transport")?,
        deliveries: vec("bridge_deliveries_total", "Message frames handed to live sessions", "transport")?,
        dropped: vec("bridge_messages_dropped_total", "Messages not handed to a live session", "reason")?,
        rejected: vec("bridge_rejected_total", "Frames or requests rejected, by error code", "code")?,
        actor_restarts: vec("bridge_actor_restarts_total", "Supervised actor restarts", "actor")?,
        escalations: vec("bridge_actor_escalations_total", "Children that exceeded their restart intensity", "actor")?,
        lagging_sessions: registered(r, IntGauge::new("bridge_sessions_lagging", "Sessions catching up from the store"))?,
        acks: counter("bridge_acks_total", "Acknowledgements accepted")?,
        redeliveries: counter("bridge_redeliveries_total", "Redeliveries of require-ack messages")?,
        dead_letters: counter("bridge_dead_letters_total", "Messages dead-lettered")?,
        expired: counter("bridge_messages_expired_total", "Messages removed by ttl or retention")?,
        registry,
    })
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| build().expect("metric definitions are valid and unique"))
}

/// Renders the Prometheus text exposition format.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&metrics().registry.gather(), &mut buf) {
        tracing::error!(error = %e, "encoding metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}
