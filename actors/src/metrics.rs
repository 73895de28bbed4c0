//! Prometheus metrics, one registry for the process.
//!
//! Names follow `bridge_<subsystem>_<name>`; labels carry only bounded values (actor kind or
//! singleton name, transport, priority, reason) — never a client id or room name.

use std::sync::OnceLock;

use std::time::Instant;

use agent_bridge_protocol::Priority;
use prometheus::{Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

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
    /// Messages accepted from senders, by the sender's transport and the message's priority.
    pub messages_in: IntCounterVec,
    /// Message frames written to a recipient's connection, by transport and priority.
    pub messages_out: IntCounterVec,
    /// Send accepted (the message built) → its frame written to a recipient, by transport.
    pub delivery_latency: HistogramVec,
    /// Sled flushes to disk (group commits and the durability waits they serve).
    pub store_flush: Histogram,
    /// Times the store stopped taking writes (a failed write or flush; it is reopened after).
    pub store_failures: IntCounter,
    /// Stored records that could not be decoded and were skipped (at start-up or while reading).
    pub store_corrupt: IntCounter,
    /// HTTP requests by route pattern (`/api/rooms/{room}/history`, never the raw path) and status.
    pub http_requests: IntCounterVec,
    /// Set at each scrape (see [`Snapshot`]).
    pub queue_depth: IntGauge,
    pub acks_pending: IntGauge,
    pub dead_letters_stored: IntGauge,
    pub archived: IntGauge,
    pub store_size: IntGauge,
    pub process_resident_memory: IntGauge,
    pub process_virtual_memory: IntGauge,
    pub process_cpu: Gauge,
    pub process_open_fds: IntGauge,
    pub process_max_fds: IntGauge,
    pub process_start_time: Gauge,
    /// The per-message children of the series above, resolved once (see [`Hot`]).
    hot: OnceLock<Vec<(&'static str, Hot)>>,
}

/// One transport's per-message series, resolved once: `with_label_values` hashes its labels and
/// takes a lock, which a message should not pay three times on its way through.
struct Hot {
    routed: IntCounter,
    latency: Histogram,
    /// By position in [`Priority::ALL`].
    r#in: Vec<IntCounter>,
    out: Vec<IntCounter>,
}

/// The transports' labels (`delivery::Transport::label`).
pub(crate) const TRANSPORTS: [&str; 3] = ["websocket", "http", "sse"];

/// What `/metrics` reads from the broker just before rendering (the gauges that are cheaper to read
/// on demand than to keep current on every change).
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    /// Messages queued for clients (sum of every inbox queue).
    pub queue_depth: u64,
    /// Require-ack deliveries waiting for their ack.
    pub acks_pending: u64,
    /// Dead letters kept in the store.
    pub dead_letters: u64,
    /// Expired messages kept in the store's archive.
    pub archived: u64,
    /// The store's size on disk.
    pub store_bytes: u64,
}

/// Buckets of the delivery latency: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

impl Metrics {
    /// A message accepted for routing (counted once per send, whatever its fan-out).
    pub fn routed(&self, transport: &str, priority: Priority) {
        match self.hot(transport) {
            Some(h) => {
                h.routed.inc();
                h.r#in[priority_index(priority)].inc();
            }
            None => {
                self.messages_routed.with_label_values(&[transport]).inc();
                self.messages_in.with_label_values(&[transport, priority.as_str()]).inc();
            }
        }
    }

    /// A message frame written to a recipient's connection; `accepted` is when the message was built.
    pub fn written(&self, transport: &str, priority: Priority, accepted: Instant) {
        let latency = accepted.elapsed().as_secs_f64();
        match self.hot(transport) {
            Some(h) => {
                h.out[priority_index(priority)].inc();
                h.latency.observe(latency);
            }
            None => {
                self.messages_out.with_label_values(&[transport, priority.as_str()]).inc();
                self.delivery_latency.with_label_values(&[transport]).observe(latency);
            }
        }
    }

    /// The resolved series of a known transport.
    fn hot(&self, transport: &str) -> Option<&Hot> {
        let all = self.hot.get_or_init(|| {
            let by = |v: &IntCounterVec, t: &str| Priority::ALL.iter().map(|p| v.with_label_values(&[t, p.as_str()])).collect();
            TRANSPORTS
                .iter()
                .map(|&t| {
                    let hot = Hot {
                        routed: self.messages_routed.with_label_values(&[t]),
                        latency: self.delivery_latency.with_label_values(&[t]),
                        r#in: by(&self.messages_in, t),
                        out: by(&self.messages_out, t),
                    };
                    (t, hot)
                })
                .collect()
        });
        all.iter().find(|(t, _)| *t == transport).map(|(_, h)| h)
    }

    /// Sets the on-demand gauges, the process's included.
    pub fn set(&self, s: Snapshot) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.queue_depth.set(clamp(s.queue_depth));
        self.acks_pending.set(clamp(s.acks_pending));
        self.dead_letters_stored.set(clamp(s.dead_letters));
        self.archived.set(clamp(s.archived));
        self.store_size.set(clamp(s.store_bytes));
        if let Some(p) = process::read() {
            self.process_resident_memory.set(clamp(p.resident_bytes));
            self.process_virtual_memory.set(clamp(p.virtual_bytes));
            self.process_cpu.set(p.cpu_seconds);
            self.process_open_fds.set(clamp(p.open_fds));
            self.process_max_fds.set(clamp(p.max_fds));
            self.process_start_time.set(p.start_time_seconds);
        }
    }
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
    let gauge = |name: &str, help: &str| registered(r, IntGauge::new(name, help));
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
        messages_in: registered(r, IntCounterVec::new(Opts::new("bridge_messages_in_total", "Messages accepted from senders"), &["transport", "priority"]))?,
        messages_out: registered(r, IntCounterVec::new(Opts::new("bridge_messages_out_total", "Message frames written to recipients"), &["transport", "priority"]))?,
        delivery_latency: registered(
            r,
            HistogramVec::new(
                HistogramOpts::new("bridge_delivery_latency_seconds", "Send accepted to the frame written to a recipient").buckets(LATENCY_BUCKETS.to_vec()),
                &["transport"],
            ),
        )?,
        store_flush: registered(
            r,
            Histogram::with_opts(HistogramOpts::new("bridge_store_flush_seconds", "Store flushes to disk").buckets(LATENCY_BUCKETS.to_vec())),
        )?,
        store_failures: counter("bridge_store_write_failures_total", "Times the store stopped taking writes (then reopened)")?,
        store_corrupt: counter("bridge_store_corrupt_records_total", "Stored records that could not be decoded and were skipped")?,
        http_requests: registered(r, IntCounterVec::new(Opts::new("bridge_http_requests_total", "HTTP requests by route pattern and status"), &["route", "status"]))?,
        queue_depth: gauge("bridge_queue_depth_messages", "Messages queued for clients")?,
        acks_pending: gauge("bridge_acks_pending", "Require-ack deliveries waiting for their ack")?,
        dead_letters_stored: gauge("bridge_dead_letters_stored", "Dead letters kept in the store")?,
        archived: gauge("bridge_messages_archived", "Expired messages kept in the store's archive")?,
        store_size: gauge("bridge_store_size_bytes", "The store's size on disk")?,
        process_resident_memory: gauge("process_resident_memory_bytes", "Resident memory size in bytes")?,
        process_virtual_memory: gauge("process_virtual_memory_bytes", "Virtual memory size in bytes")?,
        process_cpu: registered(r, Gauge::new("process_cpu_seconds_total", "Total user and system CPU time spent in seconds"))?,
        process_open_fds: gauge("process_open_fds", "Number of open file descriptors")?,
        process_max_fds: gauge("process_max_fds", "Maximum number of open file descriptors")?,
        process_start_time: registered(r, Gauge::new("process_start_time_seconds", "Start time of the process since unix epoch in seconds"))?,
        hot: OnceLock::new(),
        registry,
    })
}

/// The process-wide metrics.
/// A priority's position in [`Priority::ALL`].
fn priority_index(priority: Priority) -> usize {
    Priority::ALL.iter().position(|p| *p == priority).unwrap_or(0)
}

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

/// The process metrics Prometheus clients export (`process_*`), read from `/proc/self` (Linux; on
/// other systems they stay 0). The prometheus crate's `process` feature does the same through the
/// `procfs` crate; reading four files here keeps that dependency out.
mod process {
    pub struct Process {
        pub resident_bytes: u64,
        pub virtual_bytes: u64,
        pub cpu_seconds: f64,
        pub open_fds: u64,
        pub max_fds: u64,
        pub start_time_seconds: f64,
    }

    /// USER_HZ: the unit of utime/stime in /proc/self/stat, 100 on every Linux port.
    const TICKS_PER_SECOND: f64 = 100.0;
    const PAGE_SIZE: u64 = 4096;

    pub fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let (utime, stime, start_ticks, vsize, rss) = (field(14)?, field(15)?, field(22)?, field(23)?, field(24)?);
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<u64>().ok()))?;
        let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()?
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        Some(Process {
            resident_bytes: rss * PAGE_SIZE,
            virtual_bytes: vsize,
            cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
            open_fds,
            max_fds,
            start_time_seconds: boot as f64 + start_ticks as f64 / TICKS_PER_SECOND,
        })
    }
}
