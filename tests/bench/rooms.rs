//! Room fan-out benchmark on the real `agent-bridge` binary (the release build `cargo bench` makes).
//!
//! One room, `BENCH_MEMBERS` (default 100) members, each on its own WebSocket and joined to the
//! room, plus one sender (the room's creator). The sender sends `BENCH_MESSAGES` (default 20,000;
//! `--quick`: 2,000) persisted room messages as fast as a window of `BENCH_WINDOW` (default 1,000)
//! sends awaiting their `sent` reply allows; every member receives every message once, so the broker
//! delivers messages × members frames. Each payload carries its send time (nanoseconds on a clock
//! shared by the sender and the members, one process), so latency is end to end: client
//! serialisation → server (room seq, store, group commit not awaited for delivery) → member parse.
//!
//! Two scenarios, each in a fresh room with fresh members: `flood` (as fast as the window allows:
//! the throughput figure; latency there is mostly queueing behind the window) and `paced`
//! (`BENCH_RATE` messages/s, default 1,000, i.e. 100,000 deliveries/s, for 5 s: the latency figure
//! below saturation). Reports: deliveries, deliveries/s (first send to last delivery), room
//! messages/s, latency percentiles over every delivery, the server's CPU time. Usage:
//! `cargo bench --bench rooms [-- --quick]`; `BENCH_THREADS` sets the client runtime's threads
//! (default 2). The broker and the clients share the machine, as they do in the target figure.

#[path = "../common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const PAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
}

/// The unsigned integer after `key`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let p = text.find(key)? + key.len();
    let rest = &text[p..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// CPU time of a process (all threads), from /proc.
fn process_cpu(pid: u32) -> Option<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        ns += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Some(Duration::from_nanos(ns))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let threads = env_or("BENCH_THREADS", 2) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("runtime");
    rt.block_on(run(quick));
}

async fn run(quick: bool) {
    let members = env_or("BENCH_MEMBERS", 100) as usize;
    let messages = env_or("BENCH_MESSAGES", if quick { 2_000 } else { 20_000 });
    let window = env_or("BENCH_WINDOW", 1_000) as usize;
    let rate = env_or("BENCH_RATE", 1_000);
    let server = Server::start(&["--log-level", "warn"]);
    scenario(&server, "flood", members, messages, window, None).await;
    let secs = if quick { 2 } else { 5 };
    scenario(&server, "paced", members, rate * secs, window, Some(rate)).await;
}

/// One room, `members` joined members, `messages` sent by one more member: flat out, or at `rate`.
async fn scenario(server: &Server, room: &str, members: usize, messages: u64, window: usize, rate: Option<u64>) {
    let pid = server.pid();
    let sender = format!("sender-{room}");
    let (status, body) =
        server.post("/api/call", &json!({"method": "room.create", "from": sender, "params": {"name": room, "topic": "fan-out"}})).await;
    assert_eq!(status, 200, "room.create: {body}");

    // The members join over WebSocket and wait for the go.
    let clock = Instant::now();
    let mut readers = Vec::new();
    let delivered = Arc::new(AtomicU64::new(0));
    let last_ns = Arc::new(AtomicU64::new(0));
    for i in 0..members {
        let url = server.ws_url(&format!("{room}-m{i:03}"), "");
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await.expect("member connects");
        ws.send(WsMessage::Text(json!({"type": "join", "room": room, "role": "tester"}).to_string())).await.expect("join");
        loop {
            let Some(Ok(WsMessage::Text(t))) = ws.next().await else { panic!("member {i} closed before joining") };
            if t.contains(r#""event":"joined""#) {
                break;
            }
            assert!(!t.starts_with(r#"{"type":"error""#), "member {i}: {t}");
        }
        let (delivered, last_ns) = (Arc::clone(&delivered), Arc::clone(&last_ns));
        readers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).expect("histogram");
            let mut got = 0u64;
            while got < messages {
                let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await else { break };
                let WsMessage::Text(t) = frame else { continue };
                if !t.starts_with(r#"{"type":"message""#) {
                    continue;
                }
                let now = u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX);
                if let Some(sent) = number_after(&t, r#""bench_t":"#) {
                    let _ = hist.record(now.saturating_sub(sent).max(1_000));
                }
                got += 1;
                delivered.fetch_add(1, Ordering::Relaxed);
                last_ns.fetch_max(now, Ordering::Relaxed);
            }
            (got, hist)
        }));
    }

    // The sender.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(server.ws_url(&sender, ""), None, true).await.expect("sender connects");
    let (mut sink, mut stream) = ws.split();
    let credits = Arc::new(Semaphore::new(window));
    let errors = Arc::new(AtomicU64::new(0));
    let acks = {
        let (credits, errors) = (Arc::clone(&credits), Arc::clone(&errors));
        tokio::spawn(async move {
            let mut replies = 0u64;
            while replies < messages {
                let Ok(Some(Ok(WsMessage::Text(t)))) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await else { break };
                if t.starts_with(r#"{"type":"sent""#) || t.starts_with(r#"{"type":"error""#) {
                    if t.starts_with(r#"{"type":"error""#) && errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("first send error: {t}");
                    }
                    replies += 1;
                    credits.add_permits(1);
                }
            }
        })
    };
    let cpu_before = process_cpu(pid);
    let first_ns = u64::try_from(clock.elapsed().as_nanos()).unwrap_or(0);
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    for i in 0..messages {
        if let Some(rate) = rate {
            // Fixed rate: send what is due, flush, wait for the next millisecond.
            while (start.elapsed().as_secs_f64() * rate as f64) < i as f64 {
                let _ = sink.flush().await;
                tick.tick().await;
            }
        }
        credits.acquire().await.expect("semaphore").forget();
        let t = u64::try_from(clock.elapsed().as_nanos()).unwrap_or(0);
        let frame = format!(
            r#"{{"type":"send","room":"{room}","msg_type":"chat","payload":{{"bench_i":{i},"bench_t":{t},"pad":"{PAD}"}}}}"#
        );
        if sink.feed(WsMessage::Text(frame)).await.is_err() {
            break;
        }
        if i % 32 == 31 && sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink.flush().await;
    let _ = acks.await;
    let send_done_ns = u64::try_from(clock.elapsed().as_nanos()).unwrap_or(0);

    let mut all = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).expect("histogram");
    let mut short = 0;
    for r in readers {
        let (got, hist) = r.await.expect("reader");
        if got < messages {
            short += 1;
        }
        all.add(&hist).expect("merge");
    }
    let cpu = match (cpu_before, process_cpu(pid)) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    let total = delivered.load(Ordering::Relaxed);
    let expected = messages * members as u64;
    let span = Duration::from_nanos(last_ns.load(Ordering::Relaxed).saturating_sub(first_ns));
    let secs = span.as_secs_f64().max(1e-9);
    let ms = |v: u64| v as f64 / 1e6;
    let pace = rate.map_or_else(|| format!("flat out, window {window}"), |r| format!("{r} messages/s"));
    println!("room fan-out, {room}: 1 room, {members} members, {messages} messages of ~200 B (persisted), {pace}");
    println!("  deliveries         {total} of {expected} expected ({short} members short), {} send errors", errors.load(Ordering::Relaxed));
    println!("  deliveries/s       {:.0}", total as f64 / secs);
    println!("  room messages/s    {:.0} (sender done after {:.2} s)", messages as f64 / secs, (send_done_ns - first_ns) as f64 / 1e9);
    println!(
        "  latency ms         p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        ms(all.value_at_quantile(0.50)),
        ms(all.value_at_quantile(0.90)),
        ms(all.value_at_quantile(0.99)),
        ms(all.value_at_quantile(0.999)),
        ms(all.max())
    );
    println!("  server CPU         {:.2} s over {:.2} s ({:.0}% of one core)", cpu.as_secs_f64(), secs, 100.0 * cpu.as_secs_f64() / secs);
    assert_eq!(total, expected, "every member receives every message exactly once");
}
