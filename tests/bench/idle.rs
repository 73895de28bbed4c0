//! Idle WebSocket connections on the real `agent-bridge` binary (issue 9): what each one costs the
//! broker in memory and CPU, and whether every one still answers.
//!
//! A fresh broker (`serve --in-memory --bind 127.0.0.1:0 --log-level warn`, the release build) is
//! measured idle (RSS from /proc/PID/status once it stops moving), then `BENCH_CONNECTIONS`
//! (default 10,000) WebSocket connections are opened, each as its own client id, from several
//! loopback source addresses (127.0.0.1 … 127.0.0.`BENCH_SOURCE_ADDRS`, default 4) so that
//! ephemeral ports never run short. Then:
//! - RSS with every connection open, and per connection: (open − idle) / N;
//! - the broker's CPU over `BENCH_IDLE_SECS` (default 10) with nothing sent, from /proc/PID/stat
//!   (`utime + stime`) and from the threads' schedstat;
//! - every connection sends a ping and waits for its pong (counted, with the round-trip time);
//! - every connection closes; RSS a few seconds later.
//!
//! The bench raises its own open-file limit to the hard one, and the broker inherits it; the broker
//! holds two descriptors per connection, so with a hard limit below 2 N + 100 the bench opens fewer
//! connections and says so.
//!
//! Usage: `cargo bench --bench idle [-- --quick]` (`--quick`: 1,000 connections, 3 s idle).

mod broker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker::{confirm, loadavg, mib, process_cpu, Server, ServerOpts, Ws};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::MaybeTlsStream;

/// The ping payload every connection sends.
const PING: &[u8] = b"idle-bench";
/// Connections being opened at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Descriptors the broker uses besides its connections (store, event loops, pipes), with a margin.
const BROKER_OWN_FDS: u64 = 100;
/// Bound on each phase (connect all, ping all, close all).
const PHASE_LIMIT: Duration = Duration::from_secs(120);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
}

/// What the connection tasks are told to do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Ping,
    Close,
}

/// Counted by the connection tasks.
struct Counts {
    pongs: AtomicU64,
    /// Closed by the broker or failed before the bench closed it.
    lost: AtomicU64,
    /// Pings from the broker (its heartbeat) answered meanwhile.
    server_pings: AtomicU64,
    rtt: Mutex<Histogram<u64>>,
}

/// Opens one connection from `source` to the broker and waits for `connection_confirmed`.
async fn open(server: &Server, source: std::net::IpAddr, client: &str) -> Result<Ws, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket.bind((source, 0).into()).map_err(|e| format!("bind {source}: {e}"))?;
    let addr: std::net::SocketAddr = server.addr.parse().map_err(|e| format!("{}: {e}", server.addr))?;
    let stream = socket.connect(addr).await.map_err(|e| format!("connect from {source}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let (ws, _) = tokio_tungstenite::client_async(server.ws_url(client), MaybeTlsStream::Plain(stream))
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    Ok(confirm(ws).await)
}

/// One idle client: answers the broker's pings, pings once when told, closes when told.
async fn client(mut ws: Ws, mut phase: watch::Receiver<Phase>, counts: Arc<Counts>) {
    let mut pinged: Option<Instant> = None;
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *phase.borrow_and_update();
                match now {
                    Phase::Idle => {}
                    Phase::Ping => {
                        pinged = Some(Instant::now());
                        if ws.send(WsMessage::Ping(PING.to_vec())).await.is_err() {
                            counts.lost.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    Phase::Close => {
                        let _ = ws.close(None).await;
                        let _ = tokio::time::timeout(Duration::from_secs(5), async { while let Some(Ok(_)) = ws.next().await {} }).await;
                        return;
                    }
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(WsMessage::Pong(p))) if p == PING => {
                    if let Some(t) = pinged.take() {
                        counts.pongs.fetch_add(1, Ordering::Relaxed);
                        let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                        counts.rtt.lock().expect("rtt lock").saturating_record(us.max(1));
                    }
                }
                // tungstenite answers the heartbeat by itself on the next read or write.
                Some(Ok(WsMessage::Ping(_))) => {
                    counts.server_pings.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => {
                    counts.lost.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        }
    }
}

/// Waits until `done()` or `PHASE_LIMIT`; returns how long it took.
async fn until(mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() && start.elapsed() < PHASE_LIMIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let wanted = env_or("BENCH_CONNECTIONS", if quick { 1_000 } else { 10_000 }) as usize;
    let idle_secs = env_or("BENCH_IDLE_SECS", if quick { 3 } else { 10 });
    let sources = env_or("BENCH_SOURCE_ADDRS", 4).min(254) as u8;
    // The broker inherits the limit; it holds two descriptors per connection (its socket and the
    // edge's handle on it, src/http/edge.rs) and some for itself.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let fit = usize::try_from(limit.saturating_sub(BROKER_OWN_FDS) / 2).unwrap_or(usize::MAX);
    let n = wanted.min(fit);
    if n < wanted {
        println!(
            "open-file limit {limit} (hard): the broker needs 2 per connection + {BROKER_OWN_FDS}, so {n} connections \
             instead of {wanted}; raise the hard limit (ulimit -Hn, as root) to open them all"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run(n, Duration::from_secs(idle_secs), sources));
}

async fn run(n: usize, idle: Duration, sources: u8) {
    let opts = ServerOpts::from_env();
    assert!(opts.external.is_none(), "the idle bench measures the broker's process: BENCH_SERVER_ADDR is not supported");
    println!(
        "agent-bridge idle-connections bench: server {} | {n} connections from {sources} source address(es) | idle {} s | load {}",
        opts.bin,
        idle.as_secs(),
        loadavg()
    );
    let limit = format!("--max-connections={}", n + 64);
    let server = Server::start(&opts, None, &[limit]);
    let pid = server.pid().expect("own server");
    let rss_idle = server.settled_rss(Duration::from_secs(5)).await.expect("broker RSS");

    // Open every connection.
    let counts = Arc::new(Counts {
        pongs: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        server_pings: AtomicU64::new(0),
        rtt: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram")),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Idle);
    let tag = std::process::id();
    let connect_start = Instant::now();
    let results: Vec<Result<Ws, String>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let source = std::net::IpAddr::from([127, 0, 0, 1 + (i % usize::from(sources)) as u8]);
            let server = &server;
            async move { open(server, source, &format!("idle-{tag}-{i}")).await }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let connect_time = connect_start.elapsed();
    let mut tasks = Vec::with_capacity(n);
    let mut failures = 0usize;
    let mut first_failure = None;
    for r in results {
        match r {
            Ok(ws) => tasks.push(tokio::spawn(client(ws, phase_rx.clone(), Arc::clone(&counts)))),
            Err(e) => {
                failures += 1;
                first_failure.get_or_insert(e);
            }
        }
    }
    let open_count = tasks.len();
    let rss_open = server.settled_rss(Duration::from_secs(5)).await.expect("broker RSS");

    // Idle: nothing sent.
    let (stat0, sched0, wall0) = (server.stat_cpu(), process_cpu(&format!("/proc/{pid}")), Instant::now());
    tokio::time::sleep(idle).await;
    let (stat1, sched1, wall) = (server.stat_cpu(), process_cpu(&format!("/proc/{pid}")), wall0.elapsed());
    let pct = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2} %", 100.0 * b.saturating_sub(a).as_secs_f64() / wall.as_secs_f64()),
        _ => "?".to_owned(),
    };
    let (cpu_stat, cpu_sched) = (pct(stat0, stat1), pct(sched0, sched1));
    let rss_after_idle = server.rss().expect("broker RSS");

    // Every connection pings once.
    let _ = phase_tx.send(Phase::Ping);
    let expected = open_count as u64 - counts.lost.load(Ordering::Relaxed);
    let ping_time = until(|| counts.pongs.load(Ordering::Relaxed) + counts.lost.load(Ordering::Relaxed) >= open_count as u64).await;
    let pongs = counts.pongs.load(Ordering::Relaxed);
    let rss_pinged = server.rss().expect("broker RSS");

    // Every connection closes; what the broker holds a few seconds later.
    let _ = phase_tx.send(Phase::Close);
    let close_start = Instant::now();
    for t in tasks {
        let _ = tokio::time::timeout(PHASE_LIMIT.saturating_sub(close_start.elapsed()), t).await;
    }
    let close_time = close_start.elapsed();
    let rss_closed = server.settled_rss(Duration::from_secs(5)).await.expect("broker RSS");
    let peak = server.peak_rss().unwrap_or(0);

    let per_conn = rss_open.saturating_sub(rss_idle) as f64 / open_count.max(1) as f64 / 1024.0;
    let rtt = counts.rtt.lock().expect("rtt lock");
    let q = |q: f64| if rtt.is_empty() { "-".to_owned() } else { format!("{:.2}", rtt.value_at_quantile(q) as f64 / 1000.0) };
    println!();
    println!("  connections opened             {open_count} of {n} in {:.2} s ({failures} failed)", connect_time.as_secs_f64());
    if let Some(e) = first_failure {
        println!("  first failure                  {e}");
    }
    println!("  broker RSS idle                {}", mib(rss_idle));
    println!("  broker RSS, all open           {} ({per_conn:.1} KiB per connection)", mib(rss_open));
    println!("  broker CPU while idle          {cpu_stat} of one core (/proc/stat), {cpu_sched} (schedstat), over {:.1} s", wall.as_secs_f64());
    println!("  broker RSS after idle          {}", mib(rss_after_idle));
    println!(
        "  pongs                          {pongs} of {expected} in {:.2} s (rtt ms p50 {} p99 {} max {}); broker heartbeats seen {}",
        ping_time.as_secs_f64(),
        q(0.5),
        q(0.99),
        if rtt.is_empty() { "-".to_owned() } else { format!("{:.2}", rtt.max() as f64 / 1000.0) },
        counts.server_pings.load(Ordering::Relaxed)
    );
    println!("  broker RSS after the pings     {}", mib(rss_pinged));
    println!("  closed in                      {:.2} s; connections lost before close: {}", close_time.as_secs_f64(), counts.lost.load(Ordering::Relaxed));
    println!("  broker RSS, all closed         {} ({:.2}x idle); peak {}", mib(rss_closed), rss_closed as f64 / rss_idle as f64, mib(peak));
    println!();
    println!("| connections | RSS idle | RSS open | per connection | CPU idle (1 core) | pongs | ping rtt p99 | RSS closed |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {open_count} | {} | {} | {per_conn:.1} KiB | {cpu_stat} | {pongs} / {expected} | {} ms | {} |",
        mib(rss_idle),
        mib(rss_open),
        q(0.99),
        mib(rss_closed)
    );
    let log = server.log_tail(8);
    if !log.is_empty() {
        println!("server log (last lines at warn level):\n{log}");
    }
    println!("load average at the end: {}", loadavg());
}
