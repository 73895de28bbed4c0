//! Durable delivery benchmark and soak test of the real `agent-bridge` binary (release build, a
//! sled store in a temporary directory on disk, `durability = "sync"`: every `sent` waits for the
//! group commit).
//!
//! Scenarios (names are filter words):
//! - `acked-1x1`: one sender → one receiver, `require_ack`; the receiver acks every message; the
//!   figure is acknowledged messages per second as the sender sees them (`acked` receipts, which
//!   the broker sends only once the ack is on disk), plus delivery latency (send → receive).
//! - `acked-100x100`: 100 senders → 100 receivers (pairs), the same cycle, aggregated.
//! - `acked-latency`: `acked-1x1` paced at a fixed rate (default half of the 1x1 figure, or
//!   `BENCH_RATE`) for 5 s: latency percentiles.
//! - `soak`: a steady load with TTLs (`SOAK_RATE` msg/s, default 2,000, ttl 5 s) for `SOAK_SECS`
//!   (default 180); prints the store's size every 10 s, which must level off.
//!
//! Usage: `cargo bench --bench durable [-- SCENARIO...]`; `BENCH_QUICK=1` shortens everything.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message as WsMessage;

struct Server {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        // `BENCH_SERVER_ADDR=127.0.0.1:PORT`: use a running server (under a profiler, say).
        if let Some(port) = std::env::var("BENCH_SERVER_ADDR").ok().and_then(|a| a.rsplit(':').next()?.parse().ok()) {
            return Server { child: None, port, _dir: tempfile::tempdir().expect("tempdir") };
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let data = format!("--data-dir={}", dir.path().display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_agent-bridge"))
            .args(["serve", "--bind", "127.0.0.1:0", "--log-level", "warn", &data])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn agent-bridge");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines.next().expect("server exited").expect("read");
            if let Some(addr) = line.strip_prefix("agent-bridge listening on http://") {
                break addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
            }
        };
        Server { child: Some(child), port, _dir: dir }
    }

    async fn status(&self) -> serde_json::Value {
        reqwest::get(format!("http://127.0.0.1:{}/api/status", self.port)).await.expect("status").json().await.expect("json")
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port)).await.expect("metrics").text().await.expect("text");
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(port: u16, id: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws/{id}")).await.expect("connect");
    let _confirmed = ws.next().await.expect("confirmed").expect("frame");
    ws
}

/// Only the fields the bench reads.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    frame_type: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    message: Option<Msg>,
}

#[derive(Deserialize)]
struct Msg {
    id: String,
    payload: Payload,
}

#[derive(Deserialize)]
struct Payload {
    t: u64,
}

fn payload(epoch: Instant) -> String {
    // ~200 bytes of payload, like the throughput bench.
    format!(r#"{{"t":{},"pad":"{}"}}"#, epoch.elapsed().as_nanos(), "x".repeat(160))
}

struct PairResult {
    acked: u64,
    latencies: Histogram<u64>,
}

/// One sender → one receiver with acks; `n` messages, at most `window` awaiting their `sent`, or
/// paced at `rate` msg/s when given.
async fn pair(port: u16, tag: String, n: u64, window: usize, rate: Option<u64>, epoch: Instant) -> PairResult {
    let rx_id = format!("rx-{tag}");
    let rx = connect(port, &rx_id).await;
    let tx = connect(port, &format!("tx-{tag}")).await;
    let (mut rx_sink, mut rx_stream) = rx.split();
    let acked = Arc::new(AtomicU64::new(0));
    let rx_acked = Arc::clone(&acked);
    let receiver = tokio::spawn(async move {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
        let mut got = 0;
        while got < n {
            let t = match rx_stream.next().await {
                Some(Ok(WsMessage::Text(t))) => t,
                Some(Ok(_)) => continue, // pings and pongs
                _ => break,
            };
            let f: Frame = serde_json::from_str(&t).expect("frame");
            if let (true, Some(m)) = (f.frame_type == "message", f.message) {
                let _ = hist.record((epoch.elapsed().as_nanos() as u64).saturating_sub(m.payload.t).max(1));
                got += 1;
                let ack = format!(r#"{{"type":"ack","message_id":"{}"}}"#, m.id);
                rx_sink.feed(WsMessage::Text(ack)).await.expect("ack");
                if got % 32 == 0 || got == n {
                    rx_sink.flush().await.expect("flush");
                }
            }
        }
        rx_sink.flush().await.expect("flush");
        // Stay connected until the sender has every `acked` receipt: the broker stops reading a
        // socket the peer has closed, so acks still unread then would be lost (and redelivered).
        let deadline = Instant::now() + Duration::from_secs(30);
        while rx_acked.load(Ordering::Relaxed) < n && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), rx_stream.next()).await;
        }
        hist
    });
    let (mut tx_sink, mut tx_stream) = tx.split();
    let credits = Arc::new(Semaphore::new(window));
    let reader = {
        let (credits, acked) = (Arc::clone(&credits), Arc::clone(&acked));
        tokio::spawn(async move {
            while acked.load(Ordering::Relaxed) < n {
                let t = match tokio::time::timeout(Duration::from_secs(30), tx_stream.next()).await {
                    Ok(Some(Ok(WsMessage::Text(t)))) => t,
                    Ok(Some(Ok(_))) => continue, // pings and pongs
                    _ => break,
                };
                let f: Frame = serde_json::from_str(&t).expect("frame");
                match (f.frame_type.as_str(), f.status.as_deref()) {
                    ("sent", _) => credits.add_permits(1),
                    ("receipt", Some("acked")) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    ("error", _) => panic!("error frame: {t}"),
                    _ => {}
                }
            }
        })
    };
    let start = Instant::now();
    for i in 0..n {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            if due > Instant::now() {
                tx_sink.flush().await.expect("flush");
                tokio::time::sleep_until(due.into()).await;
            }
        }
        credits.acquire().await.expect("semaphore").forget();
        let frame = format!(
            r#"{{"type":"send","to":"{rx_id}","msg_type":"bench","require_ack":true,"payload":{}}}"#,
            payload(epoch)
        );
        tx_sink.feed(WsMessage::Text(frame)).await.expect("send");
        if i % 32 == 31 {
            tx_sink.flush().await.expect("flush");
        }
    }
    tx_sink.flush().await.expect("flush");
    let latencies = receiver.await.expect("receiver");
    let _ = tokio::time::timeout(Duration::from_secs(30), reader).await;
    PairResult { acked: acked.load(Ordering::Relaxed), latencies }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

async fn acked(pairs: usize, per_pair: u64, window: usize, rate: Option<u64>) -> (f64, Histogram<u64>) {
    let server = Server::start(&[]);
    let epoch = Instant::now();
    let start = Instant::now();
    let tasks: Vec<_> =
        (0..pairs).map(|i| tokio::spawn(pair(server.port, i.to_string(), per_pair, window, rate, epoch))).collect();
    let mut total = 0;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    for t in tasks {
        let r = t.await.expect("pair");
        total += r.acked;
        hist.add(&r.latencies).expect("merge");
    }
    let secs = start.elapsed().as_secs_f64();
    let expected = pairs as u64 * per_pair;
    assert_eq!(total, expected, "every message acked ({total} of {expected})");
    (total as f64 / secs, hist)
}

fn report(name: &str, rate: f64, h: &Histogram<u64>) {
    println!(
        "{name:<16} {rate:>10.0} acked msg/s   latency p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>7.2} ms  (n={})",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    );
}

async fn soak(secs: u64, rate: u64) {
    let server = Server::start(&["--sweep-interval-ms", "500"]);
    let epoch = Instant::now();
    let port = server.port;
    let receiver = tokio::spawn(async move {
        let mut rx = connect(port, "soak-rx").await;
        while let Some(Ok(_)) = rx.next().await {}
    });
    let mut tx = connect(port, "soak-tx").await;
    let start = Instant::now();
    let mut next_report = Duration::ZERO;
    let mut sent = 0u64;
    println!("soak: {rate} msg/s with ttl 5 s for {secs} s");
    println!("{:>6} {:>12} {:>14} {:>12}", "t (s)", "sent", "store bytes", "expired");
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        if due > Instant::now() {
            tx.flush().await.expect("flush");
            tokio::time::sleep_until(due.into()).await;
        }
        let frame = format!(r#"{{"type":"send","to":"soak-rx","msg_type":"bench","ttl":5,"payload":{}}}"#, payload(epoch));
        tx.feed(WsMessage::Text(frame)).await.expect("send");
        sent += 1;
        // Drain `sent` replies now and then so the socket never backs up.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, tx.next()).await {}
        if start.elapsed() >= next_report {
            let bytes = server.status().await["store_bytes"].as_u64().unwrap_or(0);
            let expired = server.metric("bridge_messages_expired_total").await;
            println!("{:>6} {:>12} {:>14} {:>12}", next_report.as_secs(), sent, bytes, expired);
            samples.push(bytes);
            next_report += Duration::from_secs(10);
        }
    }
    receiver.abort();
    let half = samples.len() / 2;
    if half > 0 {
        let first = samples[..half].iter().copied().max().unwrap_or(0);
        let second = samples[half..].iter().copied().max().unwrap_or(0);
        println!(
            "soak: peak store size {} bytes in the first half, {} in the second ({:+.1}%)",
            first,
            second,
            (second as f64 / first.max(1) as f64 - 1.0) * 100.0
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wants = |name: &str| filters.is_empty() || filters.iter().any(|f| f == name);
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let scale = if quick { 10 } else { 1 };
    println!("durable delivery (sled on disk, durability=sync, require_ack, receiver acks every message)");
    let mut one = None;
    if wants("acked-1x1") {
        let (rate, h) = acked(1, 100_000 / scale, 2_000, None).await;
        report("acked-1x1", rate, &h);
        one = Some(rate);
    }
    if wants("acked-100x100") {
        let (rate, h) = acked(100, 2_000 / scale, 100, None).await;
        report("acked-100x100", rate, &h);
    }
    if wants("acked-latency") {
        let rate = std::env::var("BENCH_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            one.map_or(10_000, |r| (r / 2.0) as u64).max(100)
        });
        let n = rate * if quick { 1 } else { 5 };
        let (_, h) = acked(1, n, 10_000, Some(rate)).await;
        report(&format!("acked@{rate}/s"), rate as f64, &h);
    }
    if wants("soak") {
        soak(env("SOAK_SECS", if quick { 30 } else { 180 }), env("SOAK_RATE", 2_000)).await;
    }
}
