//! A small HTTP server on 127.0.0.1 for tests of what the broker sends out (webhook receivers, a
//! stand-in GitHub): it records every request (method, path, headers, body) and answers what the
//! test's `respond` says. One request per connection (`connection: close`), bounded reads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the sink got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// What the sink answers.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Answer {
    pub fn empty(status: u16) -> Answer {
        Answer { status, headers: Vec::new(), body: String::new() }
    }

    pub fn json(status: u16, body: &Value) -> Answer {
        Answer { status, headers: vec![("content-type", "application/json; charset=utf-8".into())], body: body.to_string() }
    }
}

type Respond = dyn Fn(&Hit) -> Answer + Send + Sync;

/// The running sink (its accept loop is a task of the test's runtime).
pub struct Sink {
    pub port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Sink {
    pub async fn start(respond: impl Fn(&Hit) -> Answer + Send + Sync + 'static) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (h, respond): (_, Arc<Respond>) = (Arc::clone(&hits), Arc::new(respond));
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (h, respond) = (Arc::clone(&h), Arc::clone(&respond));
                tokio::spawn(async move {
                    if let Some(hit) = read_request(&mut conn).await {
                        let answer = respond(&hit);
                        h.lock().push(hit);
                        let mut head = format!("HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n", answer.status, answer.body.len());
                        for (k, v) in &answer.headers {
                            head.push_str(&format!("{k}: {v}\r\n"));
                        }
                        head.push_str("\r\n");
                        let _ = conn.write_all(format!("{head}{}", answer.body).as_bytes()).await;
                    }
                });
            }
        });
        Sink { port, hits }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().clone()
    }

    /// Waits (bounded) until `n` requests arrived to `path`.
    pub async fn wait(&self, path: &str, n: usize) -> Vec<Hit> {
        let got = super::poll_until(Duration::from_secs(15), || async {
            let hits: Vec<Hit> = self.hits().into_iter().filter(|h| h.path == path).collect();
            (hits.len() >= n).then_some(hits)
        })
        .await;
        got.unwrap_or_else(|| panic!("{n} requests to {path}; got {:?}", self.hits()))
    }
}

async fn read_request(conn: &mut TcpStream) -> Option<Hit> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (request_line.next()?.to_owned(), request_line.next()?.to_owned());
    let headers: HashMap<String, String> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0).min(1 << 20);
    while buf.len() < head_end + 4 + len {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end + 4..head_end + 4 + len]).into_owned();
    Some(Hit { at: Instant::now(), method, path, headers, body })
}
