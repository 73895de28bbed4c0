//! End-to-end throughput and latency benchmark of the real `agent-bridge` binary.
//!
//! Each scenario starts a fresh `agent-bridge serve --in-memory --bind 127.0.0.1:0 --log-level warn`
//! (the release binary `cargo bench` builds), connects a receiver `rx` and a sender `tx` over
//! WebSocket on loopback (tokio-tungstenite, Nagle disabled on the client side) and measures what
//! the receiver sees. Every payload is a 200-byte JSON object carrying the message index and its send
//! time in nanoseconds since an `Instant` shared by sender and receiver (same process), so the
//! latency is end to end: client serialisation → server → client parse.
//!
//! Scenarios (names are the filter words):
//! - `throughput`: persist=true, sent as fast as possible with at most `WINDOW` sends awaiting
//!   their `sent` reply; delivered msg/s at the receiver (first to last delivery) and latency.
//! - `latency`: persist=true at a fixed 10,000 msg/s for 5 s; latency percentiles (hdrhistogram).
//! - `nopersist`: like `throughput` with `persist: false` (the fire-and-forget fast path).
//! - `nopersist-latency`: like `latency` with `persist: false`, to separate the cost of the store
//!   from the cost of the transport and the actors.
//!
//! Flat-out scenarios send the way a naive client or a script in a loop does: no window, every
//! frame written as fast as the socket takes it, replies read concurrently (issue 9). They report
//! delivered/sent and errors beside the rate; the broker must slow the sender down (TCP) rather than
//! refuse or drop anything:
//! - `flat-memory`: persist=true, in memory, 1→1.
//! - `flat-disk`: persist=true, sled on disk with `durability = "sync"`, 1→1.
//! - `flat-ack`: on disk, `require_ack`, the receiver acks every message; counts `acked` receipts.
//! - `flat-nopersist`: persist=false, 1→1 (drops, if any, are answered `dropped` and counted).
//! - `flat-4pairs`: persist=true, in memory, 4 sender→receiver pairs at once.
//! - `flat-batch`: `flat-memory` sent as `send_batch` frames of 100 messages (issue 18: target
//!   ≥ 3× `flat-memory`'s rate); `BENCH_BATCH` sets the batch size.
//!
//! Usage: `cargo bench --bench throughput [-- [--quick] [SCENARIO...]]`; `BENCH_QUICK=1` = `--quick`,
//! `BENCH_THREADS` sets the client runtime's worker threads (default 2), `BENCH_SERVER_BIN` runs
//! another server binary, `BENCH_SERVER_ARGS` appends flags to `serve`, `BENCH_SERVER_ADDR=host:port`
//! uses a running server, `BENCH_WINDOW` sets the send window. See tests/bench/README.md.

mod broker;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use broker::{connect, frame_type, loadavg, mib, process_cpu, Server, ServerOpts, Ws};

/// Sends awaiting their `sent` reply at most in the windowed scenarios;
/// `BENCH_WINDOW` overrides it.
const WINDOW: usize = 5_000;
/// Payload JSON size in bytes.
const PAYLOAD_BYTES: usize = 200;
/// Flush the sender's socket at least every this many frames.
const FLUSH_EVERY: u64 = 64;
/// The receiver gives up this long after the last delivery once the sender is done.
const IDLE_AFTER_DONE: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

struct Opts {
    quick: bool,
    filters: Vec<String>,
    threads: usize,
    server: ServerOpts,
    window: usize,
    /// `BENCH_RATE`: msg/s of the fixed-rate scenarios (default 10,000).
    rate: u64,
    /// `BENCH_SETTLE_S`: how long after a burst the broker's RSS is read again (default 3 s).
    settle: Duration,
}

impl Opts {
    fn parse() -> Opts {
        let mut quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let mut filters = Vec::new();
        for a in std::env::args().skip(1) {
            match a.as_str() {
                "--quick" => quick = true,
                // cargo passes --bench to harness=false targets; libtest-style flags are ignored.
                "--bench" | "--nocapture" | "--test" => {}
                s if s.starts_with("--") => eprintln!("throughput bench: ignoring unknown flag {s}"),
                s => filters.push(s.to_owned()),
            }
        }
        let threads = std::env::var("BENCH_THREADS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(2);
        let window =
            std::env::var("BENCH_WINDOW").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(WINDOW);
        let rate = std::env::var("BENCH_RATE").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(10_000);
        let settle = std::env::var("BENCH_SETTLE_S").ok().and_then(|v| v.parse().ok()).unwrap_or(3.0);
        Opts { quick, filters, threads, server: ServerOpts::from_env(), window, rate, settle: Duration::from_secs_f64(settle) }
    }

    /// A scenario runs when no filter is given, or when a filter is its exact name or `all`.
    fn wants(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| f == name || f == "all")
    }
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// The shared clock: nanoseconds since the benchmark started (sender and receiver are one process).
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_ns(self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// The `payload` object: exactly `PAYLOAD_BYTES` of JSON (the pad absorbs the numbers' widths).
fn write_payload(out: &mut String, i: u64, t_ns: u64) {
    // {"bench_i":I,"bench_t":T,"pad":"..."}  = 32 bytes + digits + pad
    let pad = PAYLOAD_BYTES.saturating_sub(32 + digits(i) + digits(t_ns));
    let _ = write!(out, r#"{{"bench_i":{i},"bench_t":{t_ns},"pad":""#);
    for _ in 0..pad {
        out.push('x');
    }
    out.push_str(r#""}"#);
}

/// A whole `send` frame.
fn send_frame(prefix: &str, i: u64, t_ns: u64) -> String {
    let mut s = String::with_capacity(prefix.len() + PAYLOAD_BYTES + 2);
    s.push_str(prefix);
    write_payload(&mut s, i, t_ns);
    s.push('}');
    s
}

/// A `send_batch` frame of the `n` messages from `first` on; `prefix` is a `send` frame's start
/// (its `"type":"send",` becomes the batch's).
fn batch_frame(prefix: &str, first: u64, n: u64, t_ns: u64) -> String {
    let entry = prefix.replacen(r#""type":"send","#, "", 1);
    let mut s = String::with_capacity(32 + n as usize * (entry.len() + PAYLOAD_BYTES + 2));
    s.push_str(r#"{"type":"send_batch","messages":["#);
    for i in first..first + n {
        if i > first {
            s.push(',');
        }
        s.push_str(&entry);
        write_payload(&mut s, i, t_ns);
        s.push('}');
    }
    s.push_str("]}");
    s
}

/// The unsigned integer after `key` (e.g. `"bench_t":`), if any.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let p = text.find(key)? + key.len();
    let rest = text[p..].trim_start();
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Scenario plumbing
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Pace {
    /// As fast as the window allows.
    Flat { count: u64 },
    /// `rate` msg/s for `secs` seconds.
    Fixed { rate: u64, secs: f64 },
}

struct Scenario {
    name: &'static str,
    title: &'static str,
    persist: bool,
    pace: Pace,
    /// Hard bound on the whole scenario.
    limit: Duration,
    /// At most `WINDOW` sends awaiting their reply; `false`: flat out, no window at all.
    windowed: bool,
    /// sled on disk (durability sync) instead of `--in-memory`.
    disk: bool,
    /// `require_ack`; the receiver acks every message.
    ack: bool,
    /// Sender→receiver pairs running at once.
    pairs: usize,
    /// Messages per frame: 1 sends `send` frames, more sends `send_batch` frames of that many.
    batch: usize,
}

impl Scenario {
    /// A windowed, in-memory, 1→1 scenario.
    fn windowed(name: &'static str, title: &'static str, persist: bool, pace: Pace, limit: Duration) -> Scenario {
        Scenario { name, title, persist, pace, limit, windowed: true, disk: false, ack: false, pairs: 1, batch: 1 }
    }

    /// A flat-out scenario: no window.
    fn flat(name: &'static str, title: &'static str, count: u64, limit: Duration) -> Scenario {
        Scenario { name, title, persist: true, pace: Pace::Flat { count }, limit, windowed: false, disk: false, ack: false, pairs: 1, batch: 1 }
    }
}

/// Shared between the sender's two halves and the receiver.
struct Shared {
    clock: Clock,
    /// Frames written (final once `total` is set).
    written: AtomicU64,
    /// Set (to the total) when the writer has finished.
    total: AtomicU64,
    /// `sent` replies.
    acked: AtomicU64,
    /// `error` replies.
    errors: AtomicU64,
    /// `sent` replies with status `dropped` (persist=false nobody took).
    dropped: AtomicU64,
    /// `receipt` frames with status `acked` (require_ack scenarios).
    receipts: AtomicU64,
    /// Whether sends wait for a window slot.
    windowed: bool,
    /// Messages per frame (`send_batch` when above 1; flat-out scenarios only).
    batch: u64,
    /// Whether `acked` receipts are expected.
    ack: bool,
    /// ns of the first write and of the last `sent` reply.
    first_send_ns: AtomicU64,
    last_ack_ns: AtomicU64,
    window: Semaphore,
    deadline: Instant,
    first_error: Mutex<Option<String>>,
}

const NOT_DONE: u64 = u64::MAX;

#[derive(Default)]
struct WriterStats {
    /// Largest delay behind the schedule (fixed rate only).
    max_lag: Duration,
    /// Times the writer had to wait for the window.
    window_waits: u64,
}

async fn writer(
    mut sink: SplitSink<Ws, WsMessage>,
    sh: Arc<Shared>,
    prefix: String,
    pace: Pace,
) -> (WriterStats, SplitSink<Ws, WsMessage>) {
    let mut stats = WriterStats::default();
    let mut i: u64 = 0;
    let mut unflushed = 0u64;
    let send_one = |i: u64| WsMessage::Text(send_frame(&prefix, i, sh.clock.now_ns()));
    sh.first_send_ns.store(sh.clock.now_ns(), Ordering::Relaxed);
    match pace {
        Pace::Flat { count } => {
            while i < count && Instant::now() < sh.deadline {
                match if sh.windowed { sh.window.try_acquire().map(|p| p.forget()) } else { Ok(()) } {
                    Ok(()) => {}
                    Err(_) => {
                        stats.window_waits += 1;
                        if sink.flush().await.is_err() {
                            break;
                        }
                        unflushed = 0;
                        let Ok(Ok(p)) = tokio::time::timeout_at(sh.deadline.into(), sh.window.acquire()).await else {
                            break;
                        };
                        p.forget();
                    }
                }
                let n = sh.batch.min(count - i);
                let frame = if sh.batch > 1 { WsMessage::Text(batch_frame(&prefix, i, n, sh.clock.now_ns())) } else { send_one(i) };
                if sink.feed(frame).await.is_err() {
                    break;
                }
                i += n;
                sh.written.store(i, Ordering::Relaxed);
                unflushed += n;
                if unflushed >= FLUSH_EVERY {
                    if sink.flush().await.is_err() {
                        break;
                    }
                    unflushed = 0;
                }
            }
        }
        Pace::Fixed { rate, secs } => {
            let start = Instant::now();
            let count = (rate as f64 * secs) as u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            'outer: while i < count && Instant::now() < sh.deadline {
                tick.tick().await;
                let elapsed = start.elapsed();
                let due = ((elapsed.as_secs_f64() * rate as f64) as u64).min(count);
                if due > i + 1 {
                    // How late the oldest due message is relative to its schedule.
                    let sched = Duration::from_secs_f64(i as f64 / rate as f64);
                    stats.max_lag = stats.max_lag.max(elapsed.saturating_sub(sched));
                }
                while i < due {
                    match if sh.windowed { sh.window.try_acquire().map(|p| p.forget()) } else { Ok(()) } {
                        Ok(()) => {}
                        Err(_) => {
                            stats.window_waits += 1;
                            if sink.flush().await.is_err() {
                                break 'outer;
                            }
                            let Ok(Ok(p)) = tokio::time::timeout_at(sh.deadline.into(), sh.window.acquire()).await
                            else {
                                break 'outer;
                            };
                            p.forget();
                        }
                    }
                    if sink.feed(send_one(i)).await.is_err() {
                        break 'outer;
                    }
                    i += 1;
                    sh.written.store(i, Ordering::Relaxed);
                }
                if sink.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = sink.flush().await;
    sh.total.store(i, Ordering::Release);
    // Keep the write half (and so the socket) open until the reader has every reply.
    while Instant::now() < sh.deadline && sh.acked.load(Ordering::Acquire) + sh.errors.load(Ordering::Acquire) < i {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (stats, sink)
}

/// Reads the sender's replies: `sent` and `error` frames; frees window slots.
async fn reply_reader(mut stream: SplitStream<Ws>, sh: Arc<Shared>) -> SplitStream<Ws> {
    loop {
        let total = sh.total.load(Ordering::Acquire);
        let answered = sh.acked.load(Ordering::Relaxed) + sh.errors.load(Ordering::Relaxed);
        if total != NOT_DONE && answered >= total {
            break;
        }
        let next = match tokio::time::timeout(Duration::from_millis(100), stream.next()).await {
            Err(_) => {
                if Instant::now() >= sh.deadline {
                    break;
                }
                continue;
            }
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(m))) => m,
        };
        let WsMessage::Text(text) = next else { continue };
        match frame_type(&text) {
            "sent" => {
                if text.contains(r#""status":"dropped""#) {
                    sh.dropped.fetch_add(1, Ordering::AcqRel);
                }
                sh.acked.fetch_add(1, Ordering::AcqRel);
                sh.last_ack_ns.store(sh.clock.now_ns(), Ordering::Relaxed);
                sh.window.add_permits(1);
            }
            "sent_batch" => {
                // One result per entry: `status` when sent, `code` when refused.
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                for r in v["results"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    if r.get("code").is_some() {
                        sh.errors.fetch_add(1, Ordering::AcqRel);
                        let mut first = sh.first_error.lock().expect("lock");
                        if first.is_none() {
                            *first = Some(r.to_string().chars().take(300).collect());
                        }
                    } else {
                        if r["outcome"] == "dropped" {
                            sh.dropped.fetch_add(1, Ordering::AcqRel);
                        }
                        sh.acked.fetch_add(1, Ordering::AcqRel);
                    }
                }
                sh.last_ack_ns.store(sh.clock.now_ns(), Ordering::Relaxed);
            }
            "error" => {
                sh.errors.fetch_add(1, Ordering::AcqRel);
                sh.window.add_permits(1);
                let mut first = sh.first_error.lock().expect("lock");
                if first.is_none() {
                    *first = Some(text.chars().take(300).collect());
                }
            }
            "receipt" if text.contains(r#""status":"acked""#) => {
                sh.receipts.fetch_add(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }
    // With require_ack, stay until every message's `acked` receipt is in (or the deadline).
    while sh.ack && sh.receipts.load(Ordering::Acquire) < sh.acked.load(Ordering::Acquire) && Instant::now() < sh.deadline {
        match tokio::time::timeout(Duration::from_millis(100), stream.next()).await {
            Ok(Some(Ok(WsMessage::Text(text)))) if frame_type(&text) == "receipt" && text.contains(r#""status":"acked""#) => {
                sh.receipts.fetch_add(1, Ordering::AcqRel);
            }
            Ok(None) | Ok(Some(Err(_))) => break,
            _ => {}
        }
    }
    stream
}

struct Received {
    hist: Histogram<u64>,
    delivered: u64,
    unique: u64,
    out_of_order: u64,
    unparsable: u64,
    first_ns: u64,
    last_ns: u64,
    /// Closed by the caller after the measurement.
    ws: Option<Ws>,
}

async fn receiver(mut ws: Ws, sh: Arc<Shared>, capacity: u64) -> Received {
    let mut hist = Histogram::<u64>::new_with_bounds(1_000, 120_000_000_000, 3).expect("histogram bounds");
    let mut seen = vec![0u64; usize::try_from(capacity.div_ceil(64)).unwrap_or(0) + 1];
    let (mut delivered, mut unique, mut out_of_order, mut unparsable) = (0u64, 0u64, 0u64, 0u64);
    let (mut first_ns, mut last_ns) = (0u64, 0u64);
    let mut last_i: Option<u64> = None;
    let mut last_activity = Instant::now();
    let mut unflushed_acks = 0u64;
    loop {
        let total = sh.total.load(Ordering::Acquire);
        if total != NOT_DONE {
            // Done: everything written has arrived, or nothing arrived for a while.
            if unique >= total || last_activity.elapsed() >= IDLE_AFTER_DONE {
                break;
            }
        }
        if Instant::now() >= sh.deadline {
            break;
        }
        // With acks waiting in the client's buffer, wait briefly and flush them when idle.
        let wait = if unflushed_acks > 0 { Duration::from_millis(1) } else { Duration::from_millis(100) };
        let next = match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => {
                if unflushed_acks > 0 {
                    let _ = ws.flush().await;
                    unflushed_acks = 0;
                }
                continue;
            }
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(m))) => m,
        };
        let WsMessage::Text(text) = next else { continue };
        let now = sh.clock.now_ns();
        if frame_type(&text) != "message" {
            continue;
        }
        if sh.ack {
            if let Some(id) = text.split(r#""id":""#).nth(1).and_then(|r| r.split('"').next()) {
                let ack = format!(r#"{{"type":"ack","message_id":"{id}"}}"#);
                if ws.feed(WsMessage::Text(ack)).await.is_err() {
                    break;
                }
                unflushed_acks += 1;
                if unflushed_acks >= FLUSH_EVERY {
                    let _ = ws.flush().await;
                    unflushed_acks = 0;
                }
            }
        }
        last_activity = Instant::now();
        delivered += 1;
        if first_ns == 0 {
            first_ns = now;
        }
        last_ns = now;
        let (Some(i), Some(t)) = (number_after(&text, r#""bench_i":"#), number_after(&text, r#""bench_t":"#)) else {
            unparsable += 1;
            continue;
        };
        hist.saturating_record(now.saturating_sub(t).max(1));
        if let Some(word) = seen.get_mut(usize::try_from(i / 64).unwrap_or(usize::MAX)) {
            let bit = 1u64 << (i % 64);
            if *word & bit == 0 {
                *word |= bit;
                unique += 1;
            }
        }
        if last_i.is_some_and(|l| i <= l) {
            out_of_order += 1;
        }
        last_i = Some(i);
    }
    let _ = ws.flush().await;
    Received { hist, delivered, unique, out_of_order, unparsable, first_ns, last_ns, ws: Some(ws) }
}

struct Outcome {
    name: &'static str,
    title: &'static str,
    written: u64,
    acked: u64,
    errors: u64,
    /// `sent` replies saying `dropped`.
    dropped: u64,
    /// `acked` receipts (require_ack scenarios).
    receipts: u64,
    ack: bool,
    first_error: Option<String>,
    rx: Received,
    send_rate: f64,
    writer: WriterStats,
    wall: Duration,
    server_cpu: Option<Duration>,
    client_cpu: Option<Duration>,
    metrics: Vec<String>,
    persist: bool,
    server_log: String,
    /// Broker RSS on start (settled), its peak, and `Opts::settle` after the burst.
    rss_idle: Option<u64>,
    rss_peak: Option<u64>,
    rss_after: Option<u64>,
}

async fn run_scenario(opts: &Opts, sc: &Scenario) -> Outcome {
    let dir = sc.disk.then(|| tempfile::tempdir().expect("temp dir for the store"));
    let server = Server::start(&opts.server, dir.as_ref().map(tempfile::TempDir::path), &[]);
    let rss_idle = server.settled_rss(Duration::from_secs(3)).await;
    // Fresh ids per run, so that a shared (external) server never replays an earlier inbox.
    let tag = format!(
        "{}-{}-{}",
        sc.name,
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
    );
    let deadline = Instant::now() + sc.limit;
    let clock = Clock(Instant::now());
    let capacity = match sc.pace {
        Pace::Flat { count } => count,
        Pace::Fixed { rate, secs } => (rate as f64 * secs) as u64,
    };
    let mut pairs = Vec::new();
    for p in 0..sc.pairs.max(1) {
        let (rx_id, tx_id) = (format!("bench-rx{p}-{tag}"), format!("bench-tx{p}-{tag}"));
        let rx_ws = connect(&server.ws_url(&rx_id)).await;
        let tx_ws = connect(&server.ws_url(&tx_id)).await;
        let sh = Arc::new(Shared {
            clock,
            written: AtomicU64::new(0),
            total: AtomicU64::new(NOT_DONE),
            acked: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            receipts: AtomicU64::new(0),
            windowed: sc.windowed,
            batch: sc.batch.max(1) as u64,
            ack: sc.ack,
            first_send_ns: AtomicU64::new(0),
            last_ack_ns: AtomicU64::new(0),
            window: Semaphore::new(opts.window),
            deadline,
            first_error: Mutex::new(None),
        });
        let prefix = format!(
            r#"{{"type":"send","to":"{rx_id}","msg_type":"bench","persist":{},"require_ack":{},"payload":"#,
            sc.persist, sc.ack
        );
        // Sanity check of the frame size once.
        debug_assert_eq!(send_frame(&prefix, 1, 1).len(), prefix.len() + PAYLOAD_BYTES + 1);
        pairs.push((sh, rx_ws, tx_ws, prefix));
    }

    let server_cpu0 = server.cpu();
    let client_cpu0 = process_cpu("/proc/self");
    let wall0 = Instant::now();
    let mut tasks = Vec::new();
    for (sh, rx_ws, tx_ws, prefix) in pairs {
        let recv_task = tokio::spawn(receiver(rx_ws, Arc::clone(&sh), capacity));
        let (sink, stream) = tx_ws.split();
        let reader_task = tokio::spawn(reply_reader(stream, Arc::clone(&sh)));
        let writer_task = tokio::spawn(writer(sink, Arc::clone(&sh), prefix, sc.pace));
        tasks.push((sh, recv_task, reader_task, writer_task));
    }
    let mut joined = Vec::new();
    for (sh, recv_task, reader_task, writer_task) in tasks {
        let (writer, sink) = writer_task.await.expect("writer task");
        let stream = reader_task.await.expect("reply reader task");
        let rx = recv_task.await.expect("receiver task");
        joined.push((sh, writer, sink, stream, rx));
    }
    let wall = wall0.elapsed();
    let server_cpu = match (server_cpu0, server.cpu()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let client_cpu = match (client_cpu0, process_cpu("/proc/self")) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let (mut written, mut acked, mut errors, mut dropped, mut receipts) = (0, 0, 0, 0, 0);
    let (mut first_send, mut last_ack) = (u64::MAX, 0);
    let mut first_error = None;
    let mut writer_stats = WriterStats::default();
    let mut total_rx: Option<Received> = None;
    for (sh, writer, sink, stream, mut rx) in joined {
        // Clean closes: send Close, then read until the server's Close and EOF (dropping the socket
        // early shows up as a protocol error in the server's log and metrics).
        for ws in [rx.ws.take(), sink.reunite(stream).ok()].into_iter().flatten() {
            let mut ws = ws;
            let _ = ws.close(None).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), async { while let Some(Ok(_)) = ws.next().await {} })
                .await;
        }
        written += sh.written.load(Ordering::Acquire);
        acked += sh.acked.load(Ordering::Acquire);
        errors += sh.errors.load(Ordering::Acquire);
        dropped += sh.dropped.load(Ordering::Acquire);
        receipts += sh.receipts.load(Ordering::Acquire);
        first_send = first_send.min(sh.first_send_ns.load(Ordering::Relaxed));
        last_ack = last_ack.max(sh.last_ack_ns.load(Ordering::Relaxed));
        if first_error.is_none() {
            first_error = sh.first_error.lock().expect("lock").clone();
        }
        writer_stats.max_lag = writer_stats.max_lag.max(writer.max_lag);
        writer_stats.window_waits += writer.window_waits;
        total_rx = Some(match total_rx {
            None => rx,
            Some(mut t) => {
                let _ = t.hist.add(&rx.hist);
                t.delivered += rx.delivered;
                t.unique += rx.unique;
                t.out_of_order += rx.out_of_order;
                t.unparsable += rx.unparsable;
                t.first_ns = if t.first_ns == 0 { rx.first_ns } else { t.first_ns.min(rx.first_ns.max(1)) };
                t.last_ns = t.last_ns.max(rx.last_ns);
                t
            }
        });
    }
    // Burst RSS: the peak, and what the broker still holds `settle` after the burst (sockets closed).
    let rss_peak = server.peak_rss();
    tokio::time::sleep(opts.settle).await;
    let rss_after = server.rss();
    let metrics = server
        .metrics(&[
            "bridge_messages_dropped_total",
            "bridge_rejected_total",
            "bridge_sessions_lagging",
            "bridge_actor_restarts_total",
        ])
        .await;
    let send_rate = if last_ack > first_send { acked as f64 / ((last_ack - first_send) as f64 / 1e9) } else { 0.0 };
    let server_log = server.log_tail(8);
    drop(server);
    drop(dir);
    Outcome {
        name: sc.name,
        title: sc.title,
        written,
        acked,
        errors,
        dropped,
        receipts,
        ack: sc.ack,
        first_error,
        rx: total_rx.expect("at least one pair"),
        send_rate,
        writer: writer_stats,
        wall,
        server_cpu,
        client_cpu,
        metrics,
        persist: sc.persist,
        server_log,
        rss_idle,
        rss_peak,
        rss_after,
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------------

fn ms(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

fn report(o: &Outcome) {
    let rx = &o.rx;
    let span_s = (rx.last_ns.saturating_sub(rx.first_ns)) as f64 / 1e9;
    let rate = if span_s > 0.0 { rx.delivered as f64 / span_s } else { 0.0 };
    let h = &rx.hist;
    let pct = |q: f64| if h.is_empty() { "-".to_owned() } else { ms(h.value_at_quantile(q)) };
    let cpu = |d: Option<Duration>| {
        d.map_or("?".to_owned(), |d| {
            format!("{:.2} s ({:.0}%)", d.as_secs_f64(), 100.0 * d.as_secs_f64() / o.wall.as_secs_f64())
        })
    };
    println!();
    println!("== {} [{}] ==", o.title, o.name);
    println!("  {:<34} {} / {} / {}", "sent / `sent` acks / errors", o.written, o.acked, o.errors);
    if o.dropped > 0 {
        println!("  {:<34} {}", "`sent` with status dropped", o.dropped);
    }
    if o.ack {
        let span_s = (o.rx.last_ns.saturating_sub(o.rx.first_ns)) as f64 / 1e9;
        println!("  {:<34} {} ({:.0}/s over the delivery span)", "`acked` receipts", o.receipts, o.receipts as f64 / span_s.max(1e-9));
    }
    println!(
        "  {:<34} {} ({} unique, {} out of order, {} unparsable)",
        "delivered to receiver", rx.delivered, rx.unique, rx.out_of_order, rx.unparsable
    );
    if o.written > rx.unique {
        println!(
            "  {:<34} {} ({:.2}%){}",
            "NOT delivered",
            o.written - rx.unique,
            100.0 * (o.written - rx.unique) as f64 / o.written.max(1) as f64,
            if o.persist {
                "  <-- persist=true must not lose messages"
            } else {
                " (persist=false drops for a full session queue)"
            }
        );
    }
    println!("  {:<34} {:.0} msg/s over {:.3} s", "delivered rate (first→last delivery)", rate, span_s);
    println!("  {:<34} {:.0} msg/s", "accepted rate (`sent` acks)", o.send_rate);
    println!(
        "  {:<34} p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.3}",
        "end-to-end latency (ms)",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        if h.is_empty() { "-".to_owned() } else { ms(h.max()) },
        h.mean() / 1e6
    );
    if o.writer.max_lag > Duration::ZERO || o.name.ends_with("latency") {
        println!("  {:<34} {:.3} ms", "sender max lag behind schedule", o.writer.max_lag.as_secs_f64() * 1e3);
    }
    println!("  {:<34} {}", "sender waits on full window", o.writer.window_waits);
    println!(
        "  {:<34} server {}   bench client {}   wall {:.2} s",
        "CPU",
        cpu(o.server_cpu),
        cpu(o.client_cpu),
        o.wall.as_secs_f64()
    );
    if let (Some(idle), Some(peak), Some(after)) = (o.rss_idle, o.rss_peak, o.rss_after) {
        println!(
            "  {:<34} idle {}   peak {}   after {} ({:.2}x idle)",
            "server RSS",
            mib(idle),
            mib(peak),
            mib(after),
            after as f64 / idle.max(1) as f64
        );
    }
    if let Some(e) = &o.first_error {
        println!("  {:<34} {}", "first error frame", e);
    }
    for m in o.metrics.iter().filter(|m| !m.ends_with(" 0")) {
        println!("  server metric: {m}");
    }
    if !o.server_log.is_empty() {
        println!("  server log (last lines at warn level):");
        for l in o.server_log.lines() {
            println!("    {l}");
        }
    }
}

fn summary(outcomes: &[Outcome]) {
    println!();
    println!("Summary (200-byte payloads, loopback WebSocket; delivered/sent counts unique messages at the receivers)");
    println!(
        "| {:<17} | {:>7} | {:>17} | {:>6} | {:>7} | {:>9} | {:>8} | {:>8} | {:>9} | {:>9} | {:>9} | {:>25} |",
        "scenario", "persist", "delivered / sent", "errors", "dropped", "msg/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "srv CPU",
        "RSS MiB idle/peak/after"
    );
    println!(
        "|{:-<19}|{:-<9}|{:-<19}|{:-<8}|{:-<9}|{:-<11}|{:-<10}|{:-<10}|{:-<11}|{:-<11}|{:-<11}|{:-<27}|",
        "", "", "", "", "", "", "", "", "", "", "", ""
    );
    for o in outcomes {
        let rx = &o.rx;
        let span_s = (rx.last_ns.saturating_sub(rx.first_ns)) as f64 / 1e9;
        let rate = if span_s > 0.0 { rx.delivered as f64 / span_s } else { 0.0 };
        let h = &rx.hist;
        let q = |q: f64| if h.is_empty() { "-".to_owned() } else { ms(h.value_at_quantile(q)) };
        let cpu =
            o.server_cpu.map_or("?".to_owned(), |d| format!("{:.0}%", 100.0 * d.as_secs_f64() / o.wall.as_secs_f64()));
        let rss = match (o.rss_idle, o.rss_peak, o.rss_after) {
            (Some(i), Some(p), Some(a)) => {
                let m = |b: u64| b as f64 / (1u64 << 20) as f64;
                format!("{:.0}/{:.0}/{:.0} ({:.1}x)", m(i), m(p), m(a), a as f64 / i.max(1) as f64)
            }
            _ => "?".to_owned(),
        };
        println!(
            "| {:<17} | {:>7} | {:>17} | {:>6} | {:>7} | {:>9.0} | {:>8} | {:>8} | {:>9} | {:>9} | {:>9} | {:>25} |",
            o.name,
            o.persist,
            format!("{} / {}", rx.unique, o.written),
            o.errors,
            o.dropped,
            rate,
            q(0.5),
            q(0.99),
            q(0.999),
            if h.is_empty() { "-".to_owned() } else { ms(h.max()) },
            cpu,
            rss
        );
    }
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let opts = Opts::parse();
    for (i, t) in [(0, 0), (199_999, 123_456_789_012), (u64::from(u32::MAX), u64::MAX / 2)] {
        let mut p = String::new();
        write_payload(&mut p, i, t);
        assert_eq!(p.len(), PAYLOAD_BYTES, "payload {p}");
        let v: serde_json::Value = serde_json::from_str(&p).expect("payload is JSON");
        assert_eq!((v["bench_i"].as_u64(), v["bench_t"].as_u64()), (Some(i), Some(t)));
    }
    let (flat, rate_secs) = if opts.quick { (20_000, 1.0) } else { (200_000, 5.0) };
    let (flat_1, flat_many) = if opts.quick { (20_000, 20_000) } else { (100_000, 200_000) };
    let limit = |quick: u64, full: u64| Duration::from_secs(if opts.quick { quick } else { full });
    let scenarios = [
        Scenario::windowed(
            "throughput",
            "1. Throughput, persist=true, flat out (bounded window of unacknowledged sends)",
            true,
            Pace::Flat { count: flat },
            limit(20, 50),
        ),
        Scenario::windowed(
            "latency",
            "2. Latency at a fixed rate, persist=true",
            true,
            Pace::Fixed { rate: opts.rate, secs: rate_secs },
            limit(15, 30),
        ),
        Scenario::windowed(
            "nopersist",
            "3. Throughput, persist=false (fast path), flat out",
            false,
            Pace::Flat { count: flat },
            limit(20, 50),
        ),
        Scenario::windowed(
            "nopersist-latency",
            "4. Latency at a fixed rate, persist=false (diagnostic: without the store)",
            false,
            Pace::Fixed { rate: opts.rate, secs: rate_secs },
            limit(15, 30),
        ),
        Scenario::flat("flat-memory", "5. Flat out, no window, persist=true, in memory, 1→1", flat_1, limit(30, 90)),
        Scenario { disk: true, ..Scenario::flat("flat-disk", "6. Flat out, no window, persist=true, sled on disk (sync), 1→1", flat_1, limit(30, 90)) },
        Scenario {
            disk: true,
            ack: true,
            pace: Pace::Flat { count: flat_1 / 2 },
            ..Scenario::flat("flat-ack", "7. Flat out, no window, require_ack on disk (sync), receiver acks all, 1→1", 0, limit(30, 90))
        },
        Scenario {
            persist: false,
            pace: Pace::Flat { count: flat_many },
            ..Scenario::flat("flat-nopersist", "8. Flat out, no window, persist=false, 1→1", 0, limit(30, 90))
        },
        Scenario {
            pairs: 4,
            pace: Pace::Flat { count: flat_many / 4 },
            ..Scenario::flat("flat-4pairs", "9. Flat out, no window, persist=true, in memory, 4 pairs at once", 0, limit(30, 90))
        },
        Scenario {
            batch: std::env::var("BENCH_BATCH").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(100),
            ..Scenario::flat("flat-batch", "10. Flat out, no window, persist=true, in memory, 1→1, send_batch frames", flat_1, limit(30, 90))
        },
    ];
    let selected: Vec<&Scenario> = scenarios.iter().filter(|s| opts.wants(s.name)).collect();
    if selected.is_empty() {
        let names: Vec<&str> = scenarios.iter().map(|s| s.name).collect();
        eprintln!("no scenario matches {:?}; names: {}, all", opts.filters, names.join(", "));
        std::process::exit(2);
    }
    println!(
        "agent-bridge end-to-end bench: server {} | client runtime {} worker thread(s) | window {} | \
         fixed rate {} msg/s | {} CPUs | load {} | {}",
        opts.server.external.as_deref().unwrap_or(&opts.server.bin),
        opts.threads,
        opts.window,
        opts.rate,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        if opts.quick { "QUICK" } else { "full" }
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut outcomes = Vec::new();
    for sc in selected {
        let o = rt.block_on(run_scenario(&opts, sc));
        report(&o);
        outcomes.push(o);
    }
    summary(&outcomes);
    println!("load average at the end: {}", loadavg());
}
