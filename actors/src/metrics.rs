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

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let connections = IntGaugeVec::new(Opts::new("bridge_connections", "Open client connections"), &["transport"])?;
    let messages_routed =
        IntCounterVec::new(Opts::new("bridge_messages_routed_total", "Messages accepted for routing"), &["transport"])?;
    let deliveries =
        IntCounterVec::new(Opts::new("bridge_deliveries_total", "Message frames handed to live sessions"), &["transport"])?;
    let dropped = IntCounterVec::new(
        Opts::new("bridge_messages_dropped_total", "Messages not handed to a live session"),
        &["reason"],
    )?;
    let rejected =
        IntCounterVec::new(Opts::new("bridge_rejected_total", "Frames or requests rejected, by error code"), &["code"])?;
    let actor_restarts =
        IntCounterVec::new(Opts::new("bridge_actor_restarts_total", "Supervised actor restarts"), &["actor"])?;
    let escalations = IntCounterVec::new(
        Opts::new("bridge_actor_escalations_total", "Children that exceeded their restart intensity"),
        &["actor"],
    )?;
    let lagging_sessions = IntGauge::new("bridge_sessions_lagging", "Sessions catching up from the store")?;
    registry.register(Box::new(connections.clone()))?;
    registry.register(Box::new(messages_routed.clone()))?;
    registry.register(Box::new(deliveries.clone()))?;
    registry.register(Box::new(dropped.clone()))?;
    registry.register(Box::new(rejected.clone()))?;
    registry.register(Box::new(actor_restarts.clone()))?;
    registry.register(Box::new(escalations.clone()))?;
    registry.register(Box::new(lagging_sessions.clone()))?;
    let acks = IntCounter::new("bridge_acks_total", "Acknowledgements accepted")?;
    let redeliveries = IntCounter::new("bridge_redeliveries_total", "Redeliveries of require-ack messages")?;
    let dead_letters = IntCounter::new("bridge_dead_letters_total", "Messages dead-lettered")?;
    let expired = IntCounter::new("bridge_messages_expired_total", "Messages removed by ttl or retention")?;
    for c in [&acks, &redeliveries, &dead_letters, &expired] {
        registry.register(Box::new(c.clone()))?;
    }
    Ok(Metrics {
        acks,
        redeliveries,
        dead_letters,
        expired,
        registry,
        connections,
        messages_routed,
        deliveries,
        dropped,
        rejected,
        actor_restarts,
        escalations,
        lagging_sessions,
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
