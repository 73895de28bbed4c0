//! Pool benchmark on the real `agent-bridge` binary (issue 14, acceptance 6): one sender → a pool
//! of `BENCH_AGENTS` (default 10) WebSocket agents, every message with `require_ack`, round robin,
//! flat out through a window of `BENCH_WINDOW` (default 1,000) sends awaiting their `sent` reply.
//! Each agent acks every message it gets. Reports: messages sent, acked (the sender's `acked`
//! receipts), acked messages/s (first send to last receipt), each agent's count and the spread
//! (largest minus smallest, as a share of the mean), send errors and the server's CPU time.
//! Usage: `cargo bench --bench pools [-- --quick]` (`BENCH_MESSAGES`, default 100,000; quick 10,000).

#[path = "../common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
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

/// The `id` of a `message` frame.
fn message_id(frame: &str) -> Option<String> {
    let v: Value = serde_json::from_str(frame).ok()?;
    v["message"]["id"].as_str().map(str::to_owned)
}

async fn run(quick: bool) {
    let agents = env_or("BENCH_AGENTS", 10) as usize;
    let messages = env_or("BENCH_MESSAGES", if quick { 10_000 } else { 100_000 });
    let window = env_or("BENCH_WINDOW", 1_000) as usize;
    let server = Server::start(&["--log-level", "warn"]);
    let pid = server.pid();

    // The agents: each registers with the pool, then acks whatever it gets.
    let mut counts = Vec::new();
    let mut readers = Vec::new();
    for i in 0..agents {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(server.ws_url(&format!("agent-{i:02}"), ""), None, true).await.expect("agent connects");
        let (mut sink, mut stream) = ws.split();
        sink.send(WsMessage::Text(json!({"type": "call", "ref": "r", "method": "agent.register", "params": {"pools": ["bench"]}}).to_string()))
            .await
            .expect("register");
        loop {
            let Some(Ok(WsMessage::Text(t))) = stream.next().await else { panic!("agent {i} closed before registering") };
            if t.contains(r#""type":"result""#) {
                assert!(t.contains(r#""ok":true"#), "agent {i}: {t}");
                break;
            }
        }
        let count = Arc::new(AtomicU64::new(0));
        counts.push(Arc::clone(&count));
        readers.push(tokio::spawn(async move {
            let mut pending = 0;
            loop {
                let next = if pending > 0 {
                    match tokio::time::timeout(Duration::from_millis(1), stream.next()).await {
                        Ok(n) => n,
                        Err(_) => {
                            let _ = sink.flush().await;
                            pending = 0;
                            continue;
                        }
                    }
                } else {
                    match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
                        Ok(n) => n,
                        Err(_) => break,
                    }
                };
                let Some(Ok(WsMessage::Text(t))) = next else { break };
                if !t.starts_with(r#"{"type":"message""#) {
                    continue;
                }
                let Some(id) = message_id(&t) else { continue };
                count.fetch_add(1, Ordering::Relaxed);
                if sink.feed(WsMessage::Text(format!(r#"{{"type":"ack","message_id":"{id}"}}"#))).await.is_err() {
                    break;
                }
                pending += 1;
                if pending >= 64 {
                    let _ = sink.flush().await;
                    pending = 0;
                }
            }
        }));
    }

    // The sender: a window of sends, counting `sent` replies and `acked` receipts.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(server.ws_url("sender", ""), None, true).await.expect("sender connects");
    let (mut sink, mut stream) = ws.split();
    let credits = Arc::new(Semaphore::new(window));
    let errors = Arc::new(AtomicU64::new(0));
    let clock = Instant::now();
    let last_ack = Arc::new(AtomicU64::new(0));
    let receiver = {
        let (credits, errors, last_ack) = (Arc::clone(&credits), Arc::clone(&errors), Arc::clone(&last_ack));
        tokio::spawn(async move {
            let (mut replies, mut acked) = (0u64, 0u64);
            while acked + errors.load(Ordering::Relaxed) < messages {
                let Ok(Some(Ok(WsMessage::Text(t)))) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await else { break };
                if t.starts_with(r#"{"type":"sent""#) || t.starts_with(r#"{"type":"error""#) {
                    if t.starts_with(r#"{"type":"error""#) && errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("first send error: {t}");
                    }
                    replies += 1;
                    credits.add_permits(1);
                } else if t.starts_with(r#"{"type":"receipt""#) && t.contains(r#""status":"acked""#) {
                    acked += 1;
                    last_ack.store(u64::try_from(clock.elapsed().as_nanos()).unwrap_or(0), Ordering::Relaxed);
                }
            }
            (replies, acked)
        })
    };
    let cpu_before = process_cpu(pid);
    for i in 0..messages {
        credits.acquire().await.expect("semaphore").forget();
        let frame = format!(r#"{{"type":"send","to":"pool:bench","msg_type":"job","payload":{{"n":{i}}},"require_ack":true}}"#);
        if sink.feed(WsMessage::Text(frame)).await.is_err() {
            break;
        }
        if i % 32 == 31 && sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink.flush().await;
    let (replies, acked) = receiver.await.expect("receiver");
    let cpu = match (cpu_before, process_cpu(pid)) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    let secs = (last_ack.load(Ordering::Relaxed) as f64 / 1e9).max(1e-9);
    let per: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let mean = per.iter().sum::<u64>() as f64 / per.len().max(1) as f64;
    let spread = (per.iter().max().copied().unwrap_or(0) - per.iter().min().copied().unwrap_or(0)) as f64 / mean.max(1e-9);
    println!("pool of {agents} WebSocket agents, round robin, {messages} messages with require_ack, flat out, window {window}");
    println!("  sent replies       {replies}, send errors {}", errors.load(Ordering::Relaxed));
    println!("  acked              {acked} of {messages}");
    println!("  acked messages/s   {:.0} (first send to last acked receipt: {secs:.2} s)", acked as f64 / secs);
    println!("  per agent          {per:?}; spread {:.2} % of the mean", spread * 100.0);
    println!("  server CPU         {:.2} s ({:.2} cores)", cpu.as_secs_f64(), cpu.as_secs_f64() / secs);
    for r in readers {
        r.abort();
    }
}
