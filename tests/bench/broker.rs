//! The broker process and WebSocket plumbing shared by the end-to-end benches (`throughput`,
//! `idle`): start the release binary on 127.0.0.1:0 (or use a running one), read its CPU time and
//! memory from /proc, connect and wait for `connection_confirmed`.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long to wait for the server to start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Which broker to bench: `BENCH_SERVER_BIN`, `BENCH_SERVER_ARGS`, `BENCH_SERVER_ADDR`.
pub struct ServerOpts {
    pub bin: String,
    /// Extra `serve` flags.
    pub args: Vec<String>,
    /// `BENCH_SERVER_ADDR`: use a server that is already running (e.g. under a profiler).
    pub external: Option<String>,
}

impl ServerOpts {
    pub fn from_env() -> ServerOpts {
        let bin = std::env::var("BENCH_SERVER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_agent-bridge").to_owned());
        let args = std::env::var("BENCH_SERVER_ARGS")
            .map(|v| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let external = std::env::var("BENCH_SERVER_ADDR").ok().filter(|v| !v.is_empty());
        ServerOpts { bin, args, external }
    }
}

/// A running broker; killed on drop (unless it is an external one).
pub struct Server {
    child: Option<Child>,
    pub addr: String,
    logs: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    pub fn start(opts: &ServerOpts, disk: Option<&std::path::Path>, extra: &[String]) -> Server {
        if let Some(addr) = &opts.external {
            return Server { child: None, addr: addr.clone(), logs: Arc::default() };
        }
        let mut cmd = Command::new(&opts.bin);
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--log-level", "warn"]);
        match disk {
            Some(dir) => cmd.arg(format!("--data-dir={}", dir.display())).arg("--durability=sync"),
            None => cmd.arg("--in-memory"),
        };
        cmd.args(extra)
            .args(&opts.args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BRIDGE_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {}: {e}", opts.bin));
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        // Drain stderr (keeping the last lines) so the server never blocks on a full pipe.
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().expect("log lock");
                if l.len() >= 200 {
                    l.pop_front();
                }
                l.push_back(line);
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if let Some(addr) = line.trim().strip_prefix("agent-bridge listening on http://") {
                    let _ = tx.send(addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()));
                }
                line.clear();
            }
            // Keep draining whatever else is printed.
            let _ = std::io::copy(&mut reader.get_mut().take(u64::MAX), &mut std::io::sink());
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(port)) => Server { child: Some(child), addr: format!("127.0.0.1:{port}"), logs },
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let logs = logs.lock().expect("log lock").iter().cloned().collect::<Vec<_>>().join("\n");
                panic!("agent-bridge did not start within {START_TIMEOUT:?}; stderr:\n{logs}");
            }
        }
    }

    pub fn ws_url(&self, client: &str) -> String {
        format!("ws://{}/ws/{client}", self.addr)
    }

    /// CPU time the server has used so far.
    pub fn cpu(&self) -> Option<Duration> {
        process_cpu(&format!("/proc/{}", self.child.as_ref()?.id()))
    }

    pub fn log_tail(&self, n: usize) -> String {
        let l = self.logs.lock().expect("log lock");
        l.iter().skip(l.len().saturating_sub(n)).cloned().collect::<Vec<_>>().join("\n")
    }

    /// Prometheus samples whose line starts with one of `prefixes`.
    pub async fn metrics(&self, prefixes: &[&str]) -> Vec<String> {
        let url = format!("http://{}/metrics", self.addr);
        let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(5), reqwest::get(url)).await else { return vec![] };
        let Ok(text) = resp.text().await else { return vec![] };
        text.lines().filter(|l| prefixes.iter().any(|p| l.starts_with(p))).map(str::to_owned).collect()
    }
}

impl Server {
    /// The broker's process id (`None` for an external server).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory now (`VmRSS`).
    pub fn rss(&self) -> Option<u64> {
        proc_status_bytes(self.pid()?, "VmRSS")
    }

    /// The most resident memory so far (`VmHWM`).
    pub fn peak_rss(&self) -> Option<u64> {
        proc_status_bytes(self.pid()?, "VmHWM")
    }

    /// Resident memory once it has stopped moving: sampled every 250 ms until two samples in a row
    /// differ by less than 1 % (at most `within`).
    pub async fn settled_rss(&self, within: Duration) -> Option<u64> {
        let deadline = std::time::Instant::now() + within;
        let mut last = self.rss()?;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.rss()?;
            if now.abs_diff(last) * 100 < last || std::time::Instant::now() >= deadline {
                return Some(now);
            }
            last = now;
        }
    }

    /// CPU time from /proc/PID/stat (`utime + stime`).
    pub fn stat_cpu(&self) -> Option<Duration> {
        stat_cpu(self.pid()?)
    }
}

/// A `kB` field of /proc/PID/status (`VmRSS`, `VmHWM`, `RssAnon`), in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kb: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// `utime + stime` of a process from /proc/PID/stat, in clock ticks of 10 ms (USER_HZ is 100 on
/// Linux).
pub fn stat_cpu(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let fields: Vec<&str> = s[s.rfind(')')? + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sum of on-CPU time of every thread of a process (Linux `/proc/<pid>/task/*/schedstat`).
pub fn process_cpu(proc_dir: &str) -> Option<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("{proc_dir}/task")).ok()? {
        let Ok(task) = task else { continue };
        let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        ns += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Some(Duration::from_nanos(ns))
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The value of `"type"` in a server frame, without parsing the whole frame.
pub fn frame_type(text: &str) -> &str {
    const KEY: &str = r#""type":""#;
    // Relies on the server writing the tag first (serde's internally tagged enums do), so that the
    // first `"type":"` is the frame's and not the nested message's application type.
    match text.find(KEY) {
        Some(p) => {
            let rest = &text[p + KEY.len()..];
            rest.find('"').map_or("", |e| &rest[..e])
        }
        None => "",
    }
}

pub async fn connect(url: &str) -> Ws {
    let (ws, _) =
        tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async_with_config(url, None, true))
            .await
            .expect("connect timed out")
            .unwrap_or_else(|e| panic!("connecting {url}: {e}"));
    confirm(ws).await
}

/// Waits for the first frame of a new connection, which must be `connection_confirmed`.
pub async fn confirm(mut ws: Ws) -> Ws {
    loop {
        let f = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no connection_confirmed within 10 s")
            .expect("socket closed before connection_confirmed")
            .expect("websocket error before connection_confirmed");
        match f {
            WsMessage::Text(t) => {
                assert_eq!(frame_type(&t), "connection_confirmed", "first frame: {t}");
                return ws;
            }
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("unexpected first frame {other:?}"),
        }
    }
}
