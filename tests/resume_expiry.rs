//! Resume and expiry: `since` resume over WebSocket, HTTP and SSE (also across a broker restart),
//! TTL and retention expiry with archiving, bounded sweeper passes, the sweeper's recovery after an
//! injected panic, and `persist: false`. In-process (`InProcess`) where only the wire is under
//! test; the real binary for restarts, fault injection and the expiry counters of `/metrics`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{eventually, Endpoint, InProcess, Server, Ws, WAIT};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// How long "nothing more arrives" is watched.
const QUIET: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Sends `{"n": n}` for each n in `ns` from `ws` to `to` (type `num`), pipelined; returns the
/// `sent` replies in order.
async fn send_numbered(ws: &mut Ws, to: &str, ns: impl IntoIterator<Item = u64>) -> Vec<Value> {
    let ns: Vec<u64> = ns.into_iter().collect();
    for n in &ns {
        ws.send(json!({"type": "send", "to": to, "msg_type": "num", "payload": {"n": n}, "ref": format!("n-{n}")})).await;
    }
    let mut replies = Vec::new();
    while replies.len() < ns.len() {
        let f = ws.recv().await;
        assert_ne!(f["type"], "error", "send failed: {f}");
        if f["type"] == "sent" {
            replies.push(f);
        }
    }
    replies
}

/// Reads `count` `message` frames; returns (seq, payload.n) of each.
async fn recv_numbered(ws: &mut Ws, count: usize) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    while out.len() < count {
        let m = ws.recv_msg().await;
        out.push((m["seq"].as_u64().expect("seq"), m["payload"]["n"].as_u64().expect("payload.n")));
    }
    out
}

/// (k, k) for k in the range: what a gap-free, duplicate-free stream of numbered messages looks like.
fn expected(range: std::ops::RangeInclusive<u64>) -> Vec<(u64, u64)> {
    range.map(|k| (k, k)).collect()
}

/// Asserts that no `message` frame arrives within [`QUIET`].
async fn assert_no_more_messages(ws: &mut Ws, what: &str) {
    let deadline = tokio::time::Instant::now() + QUIET;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.try_recv(left).await {
            None => return,
            Some(f) => assert_ne!(f["type"], "message", "{what}: unexpected extra message {f}"),
        }
    }
}

/// How many live sessions `client` has, per `/admin/clients`.
async fn sessions_of(server: &Endpoint, client: &str) -> usize {
    let (_, clients) = server.get("/admin/clients").await;
    clients["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["client_id"] == client)
        .map_or(0, |c| c["sessions"].as_array().map_or(0, Vec::len))
}

/// Closes a WebSocket cleanly and waits until the broker has unregistered it (so that what is
/// sent next is queued, not handed to the closing session).
async fn close_ws(server: &Endpoint, mut ws: Ws, client: &str, remaining: usize) {
    let _ = ws.stream.close(None).await;
    drop(ws);
    eventually(&format!("{client} to have {remaining} sessions"), || async {
        (sessions_of(server, client).await == remaining).then_some(())
    })
    .await;
}

/// The value of an unlabelled metric in `/metrics`.
async fn metric(server: &Endpoint, name: &str) -> f64 {
    let text = reqwest::get(server.http("/metrics")).await.expect("GET /metrics").text().await.expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse::<f64>().expect("metric value"))
        .unwrap_or_else(|| panic!("metric {name} missing in\n{text}"))
}

/// GET /api/messages with these query parameters.
async fn poll(server: &Endpoint, query: &str) -> Value {
    let (status, page) = server.get(&format!("/api/messages?{query}")).await;
    assert_eq!(status, 200, "GET /api/messages?{query}: {page}");
    page
}

/// The ids of the messages of a page.
fn ids(page: &Value) -> Vec<String> {
    page["messages"].as_array().expect("messages").iter().map(|m| m["id"].as_str().expect("id").to_owned()).collect()
}

/// POST /api/send; returns the body (asserting 200).
async fn http_send(server: &Endpoint, body: Value) -> Value {
    let (status, reply) = server.post("/api/send", &body).await;
    assert_eq!(status, 200, "POST /api/send {body}: {reply}");
    reply
}

/// The archive file's lines, parsed (empty while it does not exist).
fn archive_lines(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("archive line is not JSON ({e}): {l}")))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits until the archive holds a line with this message id; returns that line.
async fn archived(path: &Path, id: &str) -> Value {
    eventually(&format!("message {id} in the archive {}", path.display()), || async {
        archive_lines(path).into_iter().find(|m| m["id"] == id)
    })
    .await
}

/// Sends a frame that carries a `ref` and returns the `sent` reply with every other frame that
/// came before it (a `delivered` receipt can overtake the `sent` reply, which waits for the flush).
async fn send_collect(ws: &mut Ws, frame: Value) -> (Value, Vec<Value>) {
    let r = frame["ref"].clone();
    assert!(!r.is_null(), "send_collect needs a ref: {frame}");
    ws.send(frame).await;
    let mut early = Vec::new();
    loop {
        let f = ws.recv().await;
        assert_ne!(f["type"], "error", "send failed: {f}");
        if f["type"] == "sent" && f["ref"] == r {
            return (f, early);
        }
        early.push(f);
    }
}

/// Waits for a receipt with this status for this message: first among `early` frames (taken out),
/// then on the socket. Another receipt status for the same message fails the test.
async fn await_receipt(ws: &mut Ws, early: &mut Vec<Value>, message_id: &str, status: &str) -> Value {
    let is_it = |f: &Value| f["type"] == "receipt" && f["message_id"] == message_id && f["status"] == status;
    if let Some(pos) = early.iter().position(is_it) {
        return early.remove(pos);
    }
    recv_receipt(ws, message_id, status).await
}

/// The next receipt with this status for this message (skipping other frames), or panics after
/// [`WAIT`].
async fn recv_receipt(ws: &mut Ws, message_id: &str, status: &str) -> Value {
    loop {
        let f = ws.recv().await;
        if f["type"] == "receipt" && f["message_id"] == message_id && f["status"] == status {
            return f;
        }
        assert!(
            !(f["type"] == "receipt" && f["message_id"] == message_id),
            "unexpected receipt for {message_id} while waiting for {status:?}: {f}"
        );
    }
}

fn supervisor_node<'a>(tree: &'a Value, name: &str) -> Option<&'a Value> {
    tree["children"].as_array()?.iter().find(|c| c["name"] == name)
}

// ---------------------------------------------------------------------------------------------
// A small Server-Sent Events client.
// ---------------------------------------------------------------------------------------------

/// One parsed event.
#[derive(Debug, Clone)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: String,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {:?}", self.data))
    }
}

/// A live `GET /stream/events`; the connection is closed on drop.
struct Sse {
    events: mpsc::UnboundedReceiver<SseEvent>,
    reader: tokio::task::JoinHandle<()>,
    confirmed: Value,
}

/// Parses one event block (the lines before a blank line). `None` for comment-only blocks.
fn parse_block(block: &str) -> Option<SseEvent> {
    let (mut id, mut event, mut data, mut any) = (None, String::from("message"), Vec::new(), false);
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        any = true;
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => event = value.to_owned(),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    any.then(|| SseEvent { id, event, data: data.join("\n") })
}

impl Sse {
    /// Opens the stream (query after `?`, optional `Last-Event-ID`) and waits for
    /// `connection_confirmed`.
    async fn open(server: &Endpoint, query: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = reqwest::Client::new().get(server.http(&format!("/stream/events?{query}")));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let mut resp = tokio::time::timeout(WAIT, req.send()).await.expect("SSE connect timed out").expect("SSE GET");
        assert_eq!(resp.status().as_u16(), 200, "SSE status");
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct:?}");
        let (tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.extend_from_slice(&chunk);
                // Normalise CRLF so that both line endings parse.
                while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = buf.drain(..pos + 2).collect();
                    let text = String::from_utf8(block).expect("SSE is UTF-8").replace("\r\n", "\n");
                    if let Some(ev) = parse_block(&text) {
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut sse = Sse { events, reader, confirmed: Value::Null };
        let first = sse.next(WAIT).await.expect("no connection_confirmed event");
        assert_eq!(first.event, "connection_confirmed", "first event: {first:?}");
        assert!(first.id.is_none(), "connection_confirmed carries no id: {first:?}");
        sse.confirmed = first.json();
        sse
    }

    async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        tokio::time::timeout(within, self.events.recv()).await.ok().flatten()
    }

    /// The next `message` event: (its `id:` as a number, the message object). Other events are
    /// skipped.
    async fn next_message(&mut self) -> (u64, Value) {
        loop {
            let ev = self.next(WAIT).await.expect("no SSE message event within the wait");
            if ev.event != "message" {
                continue;
            }
            let data = ev.json();
            assert_eq!(data["type"], "message", "{data}");
            let id: u64 = ev.id.as_deref().expect("message events carry an id").parse().expect("numeric id");
            assert_eq!(Some(id), data["message"]["seq"].as_u64(), "id: is the seq");
            return (id, data["message"].clone());
        }
    }

    /// The next event with this name.
    async fn next_event(&mut self, name: &str) -> SseEvent {
        loop {
            let ev = self.next(WAIT).await.unwrap_or_else(|| panic!("no SSE {name} event within the wait"));
            if ev.event == name {
                return ev;
            }
        }
    }

    async fn assert_no_more_messages(&mut self, what: &str) {
        let deadline = tokio::time::Instant::now() + QUIET;
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            assert_ne!(ev.event, "message", "{what}: unexpected extra SSE message {ev:?}");
        }
    }
}

impl Drop for Sse {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// 1. WebSocket resume
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn websocket_since_resume_is_gap_free_and_duplicate_free() {
    let server = InProcess::with_args(&[]);
    let mut sender = Ws::connect(&server, "sender").await;
    let receiver = Ws::connect(&server, "receiver").await;
    assert!(receiver.confirmed["resumed_from"].is_null(), "no since: {}", receiver.confirmed);
    let mut receiver = receiver;

    let sent = send_numbered(&mut sender, "receiver", 1..=3).await;
    assert_eq!(sent.iter().map(|s| s["seq"].as_u64().expect("seq")).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(sent.iter().all(|s| s["status"] == "delivered"), "{sent:?}");
    assert_eq!(recv_numbered(&mut receiver, 3).await, expected(1..=3));
    close_ws(&server, receiver, "receiver", 0).await;

    let sent = send_numbered(&mut sender, "receiver", 4..=6).await;
    assert!(sent.iter().all(|s| s["status"] == "queued"), "receiver offline: {sent:?}");

    let mut resumed = Ws::connect_query(&server, "receiver", "since=3").await;
    assert_eq!(resumed.confirmed["resumed_from"], 3, "{}", resumed.confirmed);
    assert_eq!(recv_numbered(&mut resumed, 3).await, expected(4..=6));
    assert_no_more_messages(&mut resumed, "since=3").await;

    // A second session replays from an earlier point; the first one gets nothing again.
    let mut replay = Ws::connect_query(&server, "receiver", "since=1").await;
    assert_eq!(replay.confirmed["resumed_from"], 1);
    assert_eq!(recv_numbered(&mut replay, 5).await, expected(2..=6));
    assert_no_more_messages(&mut replay, "since=1").await;
    assert_no_more_messages(&mut resumed, "another session's replay").await;

    // After the replay both sessions are live: the next message reaches each once, with seq 7.
    send_numbered(&mut sender, "receiver", [7]).await;
    assert_eq!(recv_numbered(&mut resumed, 1).await, expected(7..=7));
    assert_eq!(recv_numbered(&mut replay, 1).await, expected(7..=7));
    assert_no_more_messages(&mut resumed, "live after resume").await;

    // since=0 is a full replay.
    let mut full = Ws::connect_query(&server, "receiver", "since=0").await;
    assert_eq!(full.confirmed["resumed_from"], 0);
    assert_eq!(recv_numbered(&mut full, 7).await, expected(1..=7));
    assert_no_more_messages(&mut full, "since=0").await;
}

#[tokio::test]
async fn websocket_since_resume_survives_a_broker_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = format!("--data-dir={}", dir.path().display());
    let mut server = Server::start(&[&data]);
    let mut sender = Ws::connect(&server, "sender").await;
    let mut receiver = Ws::connect(&server, "receiver").await;
    send_numbered(&mut sender, "receiver", 1..=3).await;
    assert_eq!(recv_numbered(&mut receiver, 3).await, expected(1..=3));
    close_ws(&server, receiver, "receiver", 0).await;
    let sent = send_numbered(&mut sender, "receiver", 4..=6).await;
    assert_eq!(sent.iter().map(|s| s["seq"].as_u64().expect("seq")).collect::<Vec<_>>(), [4, 5, 6]);
    drop(sender);
    server.kill();

    let server = Server::start(&[&data]);
    let mut resumed = Ws::connect_query(&server, "receiver", "since=3").await;
    assert_eq!(resumed.confirmed["resumed_from"], 3);
    assert_eq!(recv_numbered(&mut resumed, 3).await, expected(4..=6));
    assert_no_more_messages(&mut resumed, "since=3 after restart").await;

    // The inbox counter was reloaded: the next message is seq 7, live.
    let mut sender = Ws::connect(&server, "sender").await;
    let sent = send_numbered(&mut sender, "receiver", [7]).await;
    assert_eq!((sent[0]["seq"].clone(), sent[0]["status"].clone()), (json!(7), json!("delivered")));
    assert_eq!(recv_numbered(&mut resumed, 1).await, expected(7..=7));

    let mut replay = Ws::connect_query(&server, "receiver", "since=1").await;
    assert_eq!(recv_numbered(&mut replay, 6).await, expected(2..=7));
    assert_no_more_messages(&mut replay, "since=1 after restart").await;
}

// ---------------------------------------------------------------------------------------------
// 2. HTTP resume
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn http_paging_continues_from_next_since_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = format!("--data-dir={}", dir.path().display());
    let mut server = Server::start(&[&data]);
    for n in 1..=5u64 {
        let r = http_send(&server, json!({"from": "w", "to": "h", "type": "num", "payload": {"n": n}})).await;
        assert_eq!(r["seq"], n);
    }
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let mut since = 0u64;
    let take = |page: &Value, seen: &mut Vec<(u64, u64)>| {
        for m in page["messages"].as_array().expect("messages") {
            seen.push((m["seq"].as_u64().expect("seq"), m["payload"]["n"].as_u64().expect("n")));
        }
        page["next_since"].as_u64().expect("next_since")
    };
    for _ in 0..2 {
        let page = poll(&server, &format!("to=h&since={since}&limit=2")).await;
        assert_eq!(page["count"], 2, "{page}");
        since = take(&page, &mut seen);
    }
    assert_eq!(since, 4);
    server.kill();

    let server = Server::start(&[&data]);
    for n in 6..=8u64 {
        let r = http_send(&server, json!({"from": "w", "to": "h", "type": "num", "payload": {"n": n}})).await;
        assert_eq!(r["seq"], n, "the seq counter continues after the restart");
    }
    loop {
        let page = poll(&server, &format!("to=h&since={since}&limit=2")).await;
        let next = take(&page, &mut seen);
        if page["count"] == 0 {
            assert_eq!(next, since, "an empty page keeps the cursor");
            break;
        }
        assert!(next > since, "the cursor moves forward: {page}");
        since = next;
        assert!(seen.len() <= 8, "more than was sent: {seen:?}");
    }
    assert_eq!(seen, expected(1..=8), "gap or duplicate across the restart");
    // The long-poll from the end wakes for the next message (seq 9).
    let url = server.http(&format!("/api/messages?to=h&since={since}&wait=10"));
    let waiting = tokio::spawn(async move { reqwest::get(url).await.expect("GET").json::<Value>().await.expect("json") });
    // Parked before the send: the wake-up returns seq 9, not the poll's first read.
    common::wait_long_polls(&server, 1).await;
    http_send(&server, json!({"from": "w", "to": "h", "type": "num", "payload": {"n": 9}})).await;
    let page = tokio::time::timeout(WAIT, waiting).await.expect("long-poll woke").expect("task");
    assert_eq!((page["count"].clone(), page["next_since"].clone()), (json!(1), json!(9)), "{page}");
}

// ---------------------------------------------------------------------------------------------
// 3. Server-Sent Events
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sse_resumes_with_last_event_id() {
    let server = InProcess::with_args(&[]);
    let mut sender = Ws::connect(&server, "sender").await;
    let mut sse = Sse::open(&server, "client_id=reader", None).await;
    assert_eq!(sse.confirmed["client_id"], "reader");
    assert!(sse.confirmed["resumed_from"].is_null(), "{}", sse.confirmed);
    assert!(sse.confirmed["session_id"].as_str().is_some_and(|s| !s.is_empty()));

    send_numbered(&mut sender, "reader", 1..=3).await;
    for k in 1..=3u64 {
        let (id, m) = sse.next_message().await;
        assert_eq!((id, m["payload"]["n"].as_u64()), (k, Some(k)));
    }
    drop(sse);

    send_numbered(&mut sender, "reader", 4..=6).await;
    let mut resumed = Sse::open(&server, "client_id=reader", Some("3")).await;
    assert_eq!(resumed.confirmed["resumed_from"], 3, "{}", resumed.confirmed);
    for k in 4..=6u64 {
        let (id, m) = resumed.next_message().await;
        assert_eq!((id, m["payload"]["n"].as_u64()), (k, Some(k)), "gap or duplicate");
    }
    resumed.assert_no_more_messages("Last-Event-ID: 3").await;

    // `since=` in the query does the same for clients that cannot set headers.
    let mut by_query = Sse::open(&server, "client_id=reader&since=4", None).await;
    assert_eq!(by_query.confirmed["resumed_from"], 4);
    for k in 5..=6u64 {
        assert_eq!(by_query.next_message().await.0, k);
    }
    by_query.assert_no_more_messages("since=4").await;

    // Both streams are live afterwards.
    send_numbered(&mut sender, "reader", [7]).await;
    assert_eq!(resumed.next_message().await.0, 7);
    assert_eq!(by_query.next_message().await.0, 7);

    // A malformed Last-Event-ID is a client error, not a silent full replay.
    let r = reqwest::Client::new()
        .get(server.http("/stream/events?client_id=reader"))
        .header("Last-Event-ID", "three")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn sse_type_filter_and_interop_with_http_and_websocket() {
    let server = InProcess::with_args(&[]);
    let mut ws = Ws::connect(&server, "ws-agent").await;
    let mut filtered = Sse::open(&server, "client_id=sse-agent&types=keep,also", None).await;

    // HTTP → SSE, with the type filter applied.
    http_send(&server, json!({"from": "http-agent", "to": "sse-agent", "type": "drop", "payload": 1})).await;
    http_send(&server, json!({"from": "http-agent", "to": "sse-agent", "type": "keep", "payload": 2})).await;
    // WebSocket → SSE.
    ws.send_msg("sse-agent", "also", json!(3)).await;
    ws.send_msg("sse-agent", "drop", json!(4)).await;
    let (_, a) = filtered.next_message().await;
    assert_eq!((a["from"].clone(), a["type"].clone(), a["payload"].clone()), (json!("http-agent"), json!("keep"), json!(2)));
    let (_, b) = filtered.next_message().await;
    assert_eq!((b["from"].clone(), b["type"].clone(), b["payload"].clone()), (json!("ws-agent"), json!("also"), json!(3)));
    filtered.assert_no_more_messages("types=keep,also").await;

    // An unfiltered stream of the same client, resumed from 0, sees all four in seq order.
    let mut all = Sse::open(&server, "client_id=sse-agent", Some("0")).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let (id, m) = all.next_message().await;
        got.push((id, m["payload"].clone()));
    }
    assert_eq!(got, [(1, json!(1)), (2, json!(2)), (3, json!(3)), (4, json!(4))]);

    // require_ack over WebSocket to an SSE reader, acked over HTTP: the sender gets both receipts.
    let (sent, mut early) = send_collect(
        &mut ws,
        json!({"type": "send", "to": "sse-agent", "msg_type": "keep", "payload": "ack me", "require_ack": true, "ref": "a"}),
    )
    .await;
    let id = sent["message_id"].as_str().expect("id").to_owned();
    let (_, m) = filtered.next_message().await;
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["requires_ack"], true);
    let receipt = await_receipt(&mut ws, &mut early, &id, "delivered").await;
    assert_eq!(receipt["by"], "sse-agent");
    let (status, acked) = server.post("/api/ack", &json!({"client_id": "sse-agent", "message_ids": [id]})).await;
    assert_eq!((status, acked["acked"].clone()), (200, json!(1)), "{acked}");
    await_receipt(&mut ws, &mut early, &id, "acked").await;

    // The SSE client sends over HTTP; its own receipts come to it as `event: receipt`.
    let r = http_send(&server, json!({"from": "sse-agent", "to": "ws-agent", "type": "q", "payload": "?", "require_ack": true})).await;
    let rid = r["message_id"].as_str().expect("id").to_owned();
    let m = ws.recv_msg().await;
    assert_eq!((m["from"].clone(), m["id"].clone()), (json!("sse-agent"), json!(rid)));
    ws.send(json!({"type": "ack", "message_id": rid})).await;
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        let ev = all.next_event("receipt").await;
        let receipt = ev.json();
        assert_eq!(receipt["message_id"], rid.as_str(), "{receipt}");
        assert!(ev.id.is_none(), "receipts carry no id: (they are not part of the stream) {ev:?}");
        statuses.push(receipt["status"].as_str().expect("status").to_owned());
    }
    assert_eq!(statuses, ["delivered", "acked"]);
}

// ---------------------------------------------------------------------------------------------
// 4. Expiry
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_expired_message_is_never_delivered_even_before_the_sweeper_runs() {
    // The sweeper is effectively off: only the delivery paths' own checks keep expired messages out.
    let server = InProcess::with_args(&["--sweep-interval-ms", "600000"]);
    let mut sender = Ws::connect(&server, "sender").await;
    let (sent, _) = send_collect(
        &mut sender,
        json!({"type": "send", "to": "off", "msg_type": "ephemeral", "payload": "gone", "ttl": 1, "require_ack": true, "ref": "t1"}),
    )
    .await;
    assert_eq!(sent["status"], "queued");
    let expired_id = sent["message_id"].as_str().expect("id").to_owned();
    let sent = sender.send_msg("off", "ephemeral", json!("stays")).await; // no ttl
    assert_eq!(sent["seq"], 2);
    let (third, _) = send_collect(
        &mut sender,
        json!({"type": "send", "to": "off", "msg_type": "ephemeral", "payload": "gone 3", "ttl": 1, "ref": "t3"}),
    )
    .await;
    let third_id = third["message_id"].as_str().expect("id").to_owned();
    let sent_at = Instant::now();

    // Before it expires the third one is there (this read also takes it off the queue, so the
    // WebSocket queue feed below is tested with the require_ack one, the replay with both).
    let page = poll(&server, "to=off&since=2&limit=1").await;
    assert_eq!(ids(&page), std::slice::from_ref(&third_id), "{page}");
    // Until it has expired: the same read no longer returns it (it is off the queue already).
    eventually("the third message to expire", || async {
        poll(&server, "to=off&since=2&limit=1").await["count"].eq(&0).then_some(())
    })
    .await;
    assert!(sent_at.elapsed() >= Duration::from_millis(900), "expired after {:?}, before its ttl of 1 s", sent_at.elapsed());

    // WebSocket, queue feed: the expired message never arrives, a later normal one does, and
    // the sender hears that its require_ack message expired.
    sender.send_msg("off", "normal", json!("later")).await;
    let mut off = Ws::connect(&server, "off").await;
    let got = [off.recv_msg().await["payload"].clone(), off.recv_msg().await["payload"].clone()];
    assert_eq!(got, [json!("stays"), json!("later")]);
    assert_no_more_messages(&mut off, "expired over WebSocket").await;
    let receipt = recv_receipt(&mut sender, &expired_id, "expired").await;
    assert_eq!(receipt["by"], "off", "{receipt}");

    // WebSocket replay.
    let mut replay = Ws::connect_query(&server, "off", "since=0").await;
    let got = [replay.recv_msg().await["seq"].clone(), replay.recv_msg().await["seq"].clone()];
    assert_eq!(got, [json!(2), json!(4)]);
    assert_no_more_messages(&mut replay, "expired over a since=0 replay").await;

    // HTTP paging.
    let page = poll(&server, "to=off&since=0").await;
    assert_eq!(page["messages"].as_array().map(|m| m.iter().map(|m| m["seq"].clone()).collect::<Vec<_>>()), Some(vec![json!(2), json!(4)]), "{page}");
    assert!(!ids(&page).contains(&expired_id) && !ids(&page).contains(&third_id));
    assert_eq!(page["next_since"], 4);

    // SSE replay.
    let mut sse = Sse::open(&server, "client_id=off", Some("0")).await;
    assert_eq!(sse.next_message().await.0, 2);
    assert_eq!(sse.next_message().await.0, 4);
    sse.assert_no_more_messages("expired over SSE").await;
}

#[tokio::test]
async fn expired_messages_are_archived_to_a_file_and_the_sender_gets_an_expired_receipt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive.ndjson");
    let arg = format!("file:{}", archive.display());
    let server = Server::start(&["--archive", &arg, "--sweep-interval-ms", "100"]);
    let mut sender = Ws::connect(&server, "sender").await;
    sender
        .send(json!({"type": "send", "to": "off", "msg_type": "ephemeral", "payload": {"secret": 1}, "ttl": 1,
                     "require_ack": true, "ref": "t"}))
        .await;
    let sent = sender.recv_type("sent").await;
    let id = sent["message_id"].as_str().expect("id").to_owned();
    let started = Instant::now();

    let receipt = recv_receipt(&mut sender, &id, "expired").await;
    assert!(started.elapsed() >= Duration::from_millis(900), "expired too early: {:?}", started.elapsed());
    assert_eq!(receipt["by"], "off");
    let line = archived(&archive, &id).await;
    assert_eq!((line["to"].clone(), line["type"].clone(), line["payload"].clone()), (json!("off"), json!("ephemeral"), json!({"secret": 1})));
    assert!(line["expires_at"].as_str().is_some(), "{line}");
    assert_eq!(archive_lines(&archive).len(), 1, "archived once");

    // Nothing of it reaches the receiver, over any transport; a later message does.
    assert_eq!(poll(&server, "to=off&since=0").await["count"], 0);
    sender.send_msg("off", "normal", json!("later")).await;
    let mut off = Ws::connect(&server, "off").await;
    assert_eq!(off.recv_msg().await["payload"], "later");
    assert_no_more_messages(&mut off, "after expiry").await;
    assert!(metric(&server, "bridge_messages_expired_total").await >= 1.0);
}

#[tokio::test]
async fn archive_to_store_expires_without_trouble() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = format!("--data-dir={}", dir.path().display());
    let mut server = Server::start(&[&data, "--archive", "store", "--sweep-interval-ms", "100"]);
    for n in 0..20u64 {
        http_send(&server, json!({"from": "w", "to": "off", "type": "ephemeral", "payload": n, "ttl": 1})).await;
    }
    http_send(&server, json!({"from": "w", "to": "off", "type": "keep", "payload": "stay"})).await;
    // Register `off` as seen so /admin/queues lists it.
    assert_eq!(poll(&server, "to=off&since=0&limit=1").await["count"], 1);
    eventually("20 expiries", || async { (metric(&server, "bridge_messages_expired_total").await >= 20.0).then_some(()) }).await;
    assert!(server.alive(), "the broker survived archiving into the store");
    let (code, ready) = server.get("/health/ready").await;
    assert_eq!(code, 200, "{ready}");
    let (_, tree) = server.get("/admin/supervisors").await;
    assert_eq!(supervisor_node(&tree, "ttl_sweeper").map(|n| n["restarts"].clone()), Some(json!(0)), "{tree}");
    // The sweeper also took the expired ones off the queue.
    let (_, queues) = server.get("/admin/queues").await;
    let q = queues["queues"].as_array().expect("queues").iter().find(|q| q["client_id"] == "off").cloned().expect("off listed");
    assert_eq!(q["queued"], 1, "only the kept message waits: {queues}");
    let page = poll(&server, "to=off&since=0").await;
    assert_eq!(page["count"], 1);
    assert_eq!(page["messages"][0]["payload"], "stay");
    // And it still works after a restart on the same store.
    server.kill();
    let server = Server::start(&[&data, "--archive", "store", "--sweep-interval-ms", "100"]);
    let page = poll(&server, "to=off&since=0").await;
    assert_eq!(page["count"], 1, "{page}");
}

#[tokio::test]
async fn per_type_retention_removes_only_that_type() {
    let server = Server::start(&["--retention-types", "chatter=2s,keep=permanent", "--sweep-interval-ms", "100"]);
    let started = Instant::now();
    for (t, p) in [("chatter", 1), ("keep", 2), ("chatter", 3), ("other", 4)] {
        http_send(&server, json!({"from": "w", "to": "h", "type": t, "payload": p})).await;
    }
    let payloads = |page: &Value| -> Vec<i64> {
        page["messages"].as_array().expect("messages").iter().map(|m| m["payload"].as_i64().expect("payload")).collect()
    };
    assert_eq!(payloads(&poll(&server, "to=h&since=0").await), [1, 2, 3, 4]);
    // This sleep is the test (nothing is removed within the first second), not a wait for an event.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(payloads(&poll(&server, "to=h&since=0").await), [1, 2, 3, 4], "too early to remove anything");
    let page = eventually("the chatter to be removed", || async {
        let page = poll(&server, "to=h&since=0").await;
        (page["count"] == 2).then_some(page)
    })
    .await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_millis(4500), "removed after {took:?}");
    assert_eq!(payloads(&page), [2, 4], "{page}");
    assert!(metric(&server, "bridge_messages_expired_total").await >= 2.0);
    // Retention is not ttl: the message carries no expires_at.
    assert!(page["messages"][0]["expires_at"].is_null());
}

// ---------------------------------------------------------------------------------------------
// 5. Bounded sweeps
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_thousand_expiries_are_swept_in_bounded_passes() {
    const N: u64 = 1000;
    let server = Server::start(&["--sweep-max-per-pass", "100", "--sweep-interval-ms", "200"]);
    let mut sender = Ws::connect(&server, "sender").await;
    let targets = ["sink-a", "sink-b", "sink-c", "sink-d"];
    for n in 0..N {
        let to = targets[(n % 4) as usize];
        sender.send(json!({"type": "send", "to": to, "msg_type": "burst", "payload": {"n": n}, "ttl": 1})).await;
    }
    let mut replies = 0;
    while replies < N {
        let f = sender.recv().await;
        assert_ne!(f["type"], "error", "{f}");
        if f["type"] == "sent" {
            replies += 1;
        }
    }
    let sent_at = Instant::now();
    // Mark the sinks as seen (HTTP polls) so that /admin/queues lists them.
    for t in targets {
        assert_eq!(poll(&server, &format!("to={t}&since=0&limit=1")).await["count"], 1);
    }
    let (_, queues) = server.get("/admin/queues").await;
    let total = |queues: &Value| -> u64 {
        queues["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .filter(|q| q["client_id"].as_str().is_some_and(|c| c.starts_with("sink-")))
            .map(|q| q["queued"].as_u64().expect("queued"))
            .sum()
    };
    assert!(total(&queues) >= N - 4, "queued before expiry: {queues}");

    eventually("1000 expiries", || async { (metric(&server, "bridge_messages_expired_total").await >= N as f64).then_some(()) })
        .await;
    assert!(sent_at.elapsed() < Duration::from_secs(8), "sweeping 1000 took {:?}", sent_at.elapsed());
    assert_eq!(metric(&server, "bridge_messages_expired_total").await, N as f64, "each message counted once");
    let (_, queues) = server.get("/admin/queues").await;
    assert_eq!(total(&queues), 0, "nothing left queued: {queues}");
    for t in targets {
        assert_eq!(poll(&server, &format!("to={t}&since=0&limit=1000")).await["count"], 0);
    }
    let (_, tree) = server.get("/admin/supervisors").await;
    assert_eq!(supervisor_node(&tree, "ttl_sweeper").map(|n| n["restarts"].clone()), Some(json!(0)), "{tree}");
}

// ---------------------------------------------------------------------------------------------
// 6. The sweeper after an injected panic
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_sweeper_keeps_expiring_and_archiving_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive.ndjson");
    let arg = format!("file:{}", archive.display());
    let server = Server::start(&["--enable-fault-injection", "--archive", &arg, "--sweep-interval-ms", "100"]);
    let mut sender = Ws::connect(&server, "sender").await;

    sender.send(json!({"type": "send", "to": "off", "msg_type": "e", "payload": "before", "ttl": 1, "ref": "b"})).await;
    let before_id = sender.recv_type("sent").await["message_id"].as_str().expect("id").to_owned();
    archived(&archive, &before_id).await;

    let (status, body) = server.post("/admin/fault", &json!({"actor": "ttl_sweeper"})).await;
    assert_eq!(status, 202, "{body}");
    let node = eventually("the sweeper to be restarted", || async {
        let (_, tree) = server.get("/admin/supervisors").await;
        let node = supervisor_node(&tree, "ttl_sweeper")?.clone();
        (node["restarts"] == 1 && node["state"] == "running").then_some(node)
    })
    .await;
    assert!(node["last_reason"].as_str().is_some_and(|r| r.contains("fault injected")), "{node}");

    sender
        .send(json!({"type": "send", "to": "off", "msg_type": "e", "payload": "after", "ttl": 1, "require_ack": true, "ref": "a"}))
        .await;
    let after_id = sender.recv_type("sent").await["message_id"].as_str().expect("id").to_owned();
    let line = archived(&archive, &after_id).await;
    assert_eq!(line["payload"], "after");
    recv_receipt(&mut sender, &after_id, "expired").await;
    let lines = archive_lines(&archive);
    assert_eq!(lines.iter().filter(|l| l["id"] == before_id.as_str()).count(), 1, "archived once: {lines:?}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(poll(&server, "to=off&since=0").await["count"], 0);
    let (code, _) = server.get("/health/ready").await;
    assert_eq!(code, 200);
}

// ---------------------------------------------------------------------------------------------
// 7. persist: false
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn persist_false_reaches_only_online_sessions() {
    let server = InProcess::with_args(&[]);
    let mut sender = Ws::connect(&server, "sender").await;
    let mut online = Ws::connect(&server, "online").await;
    let mut online_sse = Sse::open(&server, "client_id=online", None).await;

    sender.send(json!({"type": "send", "to": "online", "msg_type": "blip", "payload": "now", "persist": false, "ref": "p1"})).await;
    let sent = sender.recv_type("sent").await;
    assert_eq!((sent["status"].clone(), sent["recipients"].clone()), (json!("delivered"), json!(1)), "{sent}");
    let m = online.recv_msg().await;
    assert_eq!(m["payload"], "now");
    let (_, m) = online_sse.next_message().await;
    assert_eq!(m["payload"], "now");

    sender.send(json!({"type": "send", "to": "offline", "msg_type": "blip", "payload": "lost", "persist": false, "ref": "p2"})).await;
    let sent = sender.recv_type("sent").await;
    assert_eq!((sent["status"].clone(), sent["recipients"].clone()), (json!("dropped"), json!(0)), "nobody got it: {sent}");
    let text = reqwest::get(server.http("/metrics")).await.expect("GET").text().await.expect("text");
    assert!(
        text.contains("bridge_messages_dropped_total{reason=\"no_recipient_online\"} 1"),
        "the drop is counted:\n{text}"
    );
    let (_, r) = server
        .post("/api/send", &json!({"from": "h", "to": "offline", "type": "blip", "payload": "lost too", "persist": false}))
        .await;
    assert_eq!((r["status"].clone(), r["recipients"].clone()), (json!("dropped"), json!(0)), "as over WebSocket: {r}");

    // Nothing was stored: not in the stream, not in the queue, not for a later session.
    assert_eq!(poll(&server, "to=offline&since=0").await["count"], 0);
    let mut later = Ws::connect(&server, "offline").await;
    assert_no_more_messages(&mut later, "persist:false to an offline client").await;
    assert_eq!(poll(&server, "to=offline").await["count"], 0);
    let mut replay = Ws::connect_query(&server, "online", "since=0").await;
    assert_no_more_messages(&mut replay, "persist:false is not replayed").await;
    // A stored message afterwards still starts the stream at seq 1.
    let stored = sender.send_msg("offline", "blip", json!("kept")).await;
    assert_eq!(stored["seq"], 1, "{stored}");
    assert_eq!(later.recv_msg().await["payload"], "kept");
}

// ---------------------------------------------------------------------------------------------
// Known defects (see the report): each test states the contract and fails on the current build.
// Run with `cargo test --test resume_expiry -- --ignored`.
// ---------------------------------------------------------------------------------------------

/// PROTOCOL.md section 3: "a client that keeps passing `next_since` sees every message exactly
/// once". When a whole page consists of expired-but-not-yet-swept messages, the page is empty and
/// `next_since` does not move, so the client never gets past them (until the sweeper runs).
#[tokio::test]
async fn http_paging_moves_past_expired_messages_before_they_are_swept() {
    let server = InProcess::with_args(&["--sweep-interval-ms", "600000"]);
    for n in 1..=5 {
        http_send(&server, json!({"from": "w", "to": "h", "type": "t", "payload": n, "ttl": 1})).await;
    }
    http_send(&server, json!({"from": "w", "to": "h", "type": "t", "payload": "live"})).await;
    // Time itself is the condition: the ttl of 1 s must pass. No read may come first, since the
    // paging over them is what is tested (and the sweeper, which would show it, is off).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut since = 0;
    let mut got = Vec::new();
    for _ in 0..10 {
        let page = poll(&server, &format!("to=h&since={since}&limit=5")).await;
        got.extend(page["messages"].as_array().expect("messages").iter().map(|m| m["payload"].clone()));
        since = page["next_since"].as_u64().expect("next_since");
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got, [json!("live")], "the pager is stuck at next_since={since} behind expired messages");
}

/// `bridge_messages_expired_total` is "Messages removed by ttl or retention": a require_ack
/// message removed by the sweeper is counted twice (by the sweeper and by the AckTracker).
#[tokio::test]
async fn the_expired_counter_counts_each_message_once() {
    let server = Server::start(&["--sweep-interval-ms", "100"]);
    let mut sender = Ws::connect(&server, "sender").await;
    let (sent, _) = send_collect(
        &mut sender,
        json!({"type": "send", "to": "off", "msg_type": "e", "payload": 1, "ttl": 1, "require_ack": true, "ref": "a"}),
    )
    .await;
    let id = sent["message_id"].as_str().expect("id").to_owned();
    recv_receipt(&mut sender, &id, "expired").await;
    // Three sweeps (every 100 ms) in which a second count would come: this sleep is the test.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expired = metric(&server, "bridge_messages_expired_total").await;
    assert_eq!(expired, 1.0, "one message expired, counted {expired} times");
}

/// "Without `since`, a connecting session gets its undelivered queue (messages no session has
/// received yet)". After an SSE client has gone, the broker keeps its session registered until a
/// write fails (actix-web does not notice the closed connection of a pending streaming body,
/// actix/actix-web#1313), so the next messages are "delivered" into the dead stream and taken off
/// the queue: the client's next session without `since`/`Last-Event-ID` never gets them.
#[tokio::test]
#[ignore = "known limitation: actix-web notices a closed SSE client only when a write fails (actix-web#1313), so \
            a few messages can go to a dead stream; SSE readers resume with Last-Event-ID (README)"]
async fn known_limitation_messages_sent_after_an_sse_client_left_reach_its_next_session() {
    let server = Server::start(&[]);
    let sse = Sse::open(&server, "client_id=reader", None).await;
    drop(sse);
    // Time for the broker to notice the closed stream; that it does not is the known limitation,
    // so there is nothing to wait on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 1..=3 {
        let r = http_send(&server, json!({"from": "w", "to": "reader", "type": "t", "payload": n})).await;
        assert_eq!(r["seq"], n);
        // Spacing the sends, as a real sender would (part of the known-limitation scenario).
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut ws = Ws::connect(&server, "reader").await;
    let mut got = Vec::new();
    while let Some(f) = ws.try_recv(Duration::from_secs(2)).await {
        if f["type"] == "message" {
            got.push(f["message"]["payload"].clone());
        }
    }
    assert_eq!(got, [json!(1), json!(2), json!(3)], "lost to the departed SSE stream");
}
