//! Hardening against a caller who writes requests by hand (issue 10): the admin permission cannot
//! be side-stepped with percent-escapes, dot segments, doubled slashes, trailing dots or case, sent
//! at once or slowly, and oversized heads are refused without harm.

mod common;

use std::time::Duration;

use common::{create_keys, raw_http, raw_request, Server};
use serde_json::{json, Value};


/// The ways a path can be written so that a router (or a proxy) may still take it for `path`.
fn variants(path: &str) -> Vec<String> {
    let rest = path.strip_prefix("/admin").expect("an admin path");
    let mut v = vec![
        format!("/%61dmin{rest}"),
        format!("/%61%64%6d%69%6e{rest}"),
        format!("/%2561dmin{rest}"),
        format!("//admin{rest}"),
        format!("/./admin{rest}"),
        format!("/x/../admin{rest}"),
        format!("/health/../admin{rest}"),
        format!("/health/%2e%2e/admin{rest}"),
        format!("/admin.{rest}"),
        format!("/ADMIN{rest}"),
        format!("/Admin{rest}"),
        format!("{path}/"),
        format!("{path}."),
        format!("{path}%20"),
        format!("{path}?x=/health"),
    ];
    if let Some(tail) = rest.strip_prefix('/') {
        v.push(format!("/admin%2F{tail}"));
        v.push(format!("/admin%2f{tail}"));
        v.push(format!("/admin//{tail}"));
        v.push(format!("/admin/./{tail}"));
        let mut chars = tail.chars();
        if let Some(c) = chars.next() {
            v.push(format!("/admin/%{:02X}{}", c as u32, chars.as_str()));
        }
    }
    v
}

/// Admin routes with a method and a body that would succeed for an admin.
fn admin_routes() -> Vec<(&'static str, &'static str, &'static str)> {
    let mint = r#"{"client_id":"*","permissions":["read","write","admin"]}"#;
    vec![
        ("POST", "/admin/keys", mint),
        ("GET", "/admin/keys", ""),
        ("DELETE", "/admin/keys/000000000000", ""),
        ("GET", "/admin/supervisors", ""),
        ("GET", "/admin/clients", ""),
        ("GET", "/admin/queues", ""),
        ("GET", "/admin/dead-letters", ""),
        ("GET", "/admin/rooms", ""),
        ("POST", "/admin/fault", r#"{"actor":"ttl_sweeper"}"#),
        ("POST", "/admin/webhooks", r#"{"url":"http://127.0.0.1:9/hook","events":["message"]}"#),
        ("GET", "/admin/webhooks", ""),
        ("DELETE", "/admin/webhooks/wh_0", ""),
        ("GET", "/admin/webhooks/failures", ""),
        ("POST", "/admin/webhooks/failures/0/resend", ""),
    ]
}

/// Every variant of every admin route, as `token` (or none): refused with a JSON `{error, code}`.
async fn assert_all_refused(server: &Server, token: Option<&str>, who: &str) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| vec![("Authorization", a)]).unwrap_or_default();
    for (method, path, body) in admin_routes() {
        for p in std::iter::once(path.to_owned()).chain(variants(path)) {
            let r = raw_http(server.port, &[&raw_request(method, &p, &headers, body)], Duration::ZERO).await;
            assert!(
                matches!(r.status, 401 | 403 | 404 | 405),
                "{who}: {method} {p} must be refused, got {}: {}",
                r.status,
                r.body
            );
            assert!(r.json()["code"].is_string(), "{who}: {method} {p}: a JSON refusal with a code, got {} {:?}", r.status, r.body);
        }
    }
}

async fn key_count(server: &Server, admin: &str) -> usize {
    let auth = format!("Bearer {admin}");
    let r = raw_http(server.port, &[&raw_request("GET", "/admin/keys", &[("Authorization", &auth)], "")], Duration::ZERO).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["count"].as_u64().expect("count") as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_refuse_encoded_paths_for_non_admins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [admin, reader, writer] = create_keys(dir.path(), [("ops", "admin"), ("reader", "read"), ("*", "read,write")]);
    let d = dir.path().to_str().expect("utf-8");
    let server = Server::start(&["--data-dir", d, "--enable-fault-injection"]);
    let before = key_count(&server, &admin).await;

    assert_all_refused(&server, Some(&reader), "read-only key").await;
    assert_all_refused(&server, Some(&writer), "read-write key for every client").await;
    assert_all_refused(&server, None, "no credentials").await;

    // Slowly, a byte group at a time: the same answer.
    let auth = format!("Bearer {reader}");
    let req = raw_request("POST", "/%61dmin/keys", &[("Authorization", &auth)], r#"{"client_id":"*","permissions":["admin"]}"#);
    let chunks: Vec<&[u8]> = req.chunks(7).collect();
    let r = raw_http(server.port, &chunks, Duration::from_millis(20)).await;
    assert_eq!(r.status, 403, "{}", r.body);

    assert_eq!(key_count(&server, &admin).await, before, "no key was minted");
    // The routing really decodes: the admin's own encoded request reaches the route.
    let auth = format!("Bearer {admin}");
    let r = raw_http(server.port, &[&raw_request("GET", "/%61dmin/keys", &[("Authorization", &auth)], "")], Duration::ZERO).await;
    assert_eq!(r.status, 200, "an admin reaches /%61dmin/keys: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_cannot_reach_admin_routes_by_any_spelling() {
    let server = Server::start(&["--require-auth", "--guest-permissions", "read,write", "--enable-fault-injection"]);
    assert_all_refused(&server, None, "guest").await;
    // The broker is unharmed: the sweeper was not faulted.
    let (status, body) = server.get("/health/ready").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused() {
    let server = Server::start(&["--require-auth"]);
    let long = format!("/admin/{}", "a".repeat(128 * 1024));
    let r = raw_http(server.port, &[&raw_request("GET", &long, &[], "")], Duration::ZERO).await;
    assert!(r.status == 0 || (400..500).contains(&r.status), "a 4xx or a closed connection: {} {}", r.status, r.head);
    let huge = "x".repeat(128 * 1024);
    let r = raw_http(server.port, &[&raw_request("GET", "/admin/keys", &[("Authorization", &format!("Bearer {huge}"))], "")], Duration::ZERO).await;
    assert!(r.status == 0 || (400..500).contains(&r.status), "a 4xx or a closed connection: {} {}", r.status, r.head);
    let (status, body): (u16, Value) = server.get("/health/live").await;
    assert_eq!(status, 200, "still serving: {body}");
    let _ = json!(null);
}

/// Writes `chunks` (pausing between them), then reads until the server closes: the response text
/// and whether the close came within `within`.
async fn until_closed(port: u16, chunks: &[&[u8]], pause: Duration, within: Duration) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut s = common::raw_write(port, chunks, pause).await;
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(within, s.read_to_end(&mut buf)).await.is_ok();
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

/// Writes only over POST: a GET (which a cross-site `<img>` can issue) runs read-only calls only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_runs_read_only_calls_only() {
    let server = Server::start(&[]);
    for (method, params) in [
        ("room.create", r#"{"name":"viaget"}"#),
        ("room.join", r#"{"room":"viaget"}"#),
        ("board.add", r#"{"room":"viaget","title":"x"}"#),
        ("file.upload", r#"{"room":"viaget","name":"a.txt","content":"x"}"#),
        ("no.such", "{}"),
    ] {
        let path = format!("/api/call?method={method}&client_id=web&params={}", urlencode(params));
        let r = raw_http(server.port, &[&raw_request("GET", &path, &[], "")], Duration::ZERO).await;
        assert_eq!(r.status, 405, "GET {method}: {}", r.body);
        assert_eq!(r.json()["code"], "method_not_allowed", "{}", r.body);
    }
    let r = raw_http(server.port, &[&raw_request("GET", "/api/call?method=room.list&client_id=web", &[], "")], Duration::ZERO).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"]["count"], 0, "nothing was created: {}", r.body);
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// DNS rebinding: a loopback broker answers only to loopback names and IP literals (and the
/// configured `allowed_hosts`), for plain requests and WebSocket upgrades alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_broker_refuses_foreign_host_names() {
    let server = Server::start(&["--allowed-hosts", "bridge.test"]);
    let port = server.port.to_string();
    let upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")];
    for host in ["evil.example", "evil.example:5001", "localhost.evil.example", "127.0.0.1.nip.io", "EVIL.example.", "user@localhost", "bad host"] {
        for (path, extra) in [("/api/status", &[][..]), ("/ws/web", &upgrade[..])] {
            let mut req = String::from_utf8(raw_request("GET", path, extra, "")).expect("ascii");
            req = req.replacen("Host: 127.0.0.1", &format!("Host: {host}"), 1);
            let r = raw_http(server.port, &[req.as_bytes()], Duration::ZERO).await;
            assert_eq!(r.status, 403, "Host {host} on {path}: {}", r.head);
            assert_eq!(r.json()["code"], "host_not_allowed", "{}", r.body);
        }
    }
    for host in ["127.0.0.1".to_owned(), format!("localhost:{port}"), format!("[::1]:{port}"), "app.localhost".to_owned(), "Bridge.Test:80".to_owned()] {
        let mut req = String::from_utf8(raw_request("GET", "/api/status", &[], "")).expect("ascii");
        req = req.replacen("Host: 127.0.0.1", &format!("Host: {host}"), 1);
        let r = raw_http(server.port, &[req.as_bytes()], Duration::ZERO).await;
        assert_eq!(r.status, 200, "Host {host}: {}", r.head);
    }
}

/// A body that never finishes is answered 408 and its connection closed, whether it stops, drips
/// or goes to a route that never reads it; the broker keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_bodies_are_timed_out_and_closed() {
    let server = Server::start(&["--body-timeout-s", "1"]);
    let head = "POST /api/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    let started = std::time::Instant::now();
    let (text, closed) = until_closed(server.port, &[head.as_bytes(), b"{\"to\":"], Duration::ZERO, Duration::from_secs(8)).await;
    assert!(closed, "the connection is closed: {text}");
    assert!(text.starts_with("HTTP/1.1 408"), "408: {text}");
    assert!(text.contains("\"code\":\"timeout\""), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "within the timeout and a little: {:?}", started.elapsed());

    // Dripping a byte at a time does not extend the deadline.
    let drip: Vec<&[u8]> = std::iter::once(head.as_bytes()).chain(std::iter::repeat(&b" "[..]).take(30)).collect();
    let (text, closed) = until_closed(server.port, &drip, Duration::from_millis(100), Duration::from_secs(8)).await;
    assert!(closed && text.starts_with("HTTP/1.1 408"), "{closed} {text}");

    // A route that never reads the body: answered, and the connection does not stay open.
    let head = "POST /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n";
    let (text, closed) = until_closed(server.port, &[head.as_bytes()], Duration::ZERO, Duration::from_secs(8)).await;
    assert!(closed, "closed: {text}");
    assert!(text.starts_with("HTTP/1.1 4"), "{text}");

    let (status, _) = server.get("/health/live").await;
    assert_eq!(status, 200);
}

/// A payload posted pretty-printed reaches SSE readers as one event whose data is that JSON, read
/// by a spec-conforming SSE parser (eventsource-stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_line_payloads_stay_one_sse_event() {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    let server = Server::start(&[]);
    let resp = reqwest::Client::new().get(server.http("/stream/events?client_id=reader")).send().await.expect("sse");
    assert_eq!(resp.status().as_u16(), 200);
    let mut events = resp.bytes_stream().eventsource();
    let first = tokio::time::timeout(common::WAIT, events.next()).await.expect("an event").expect("open").expect("parsed");
    assert_eq!(first.event, "connection_confirmed");
    let body = "{\"from\":\"writer\",\"to\":\"reader\",\"type\":\"note\",\r\n \"payload\": {\n  \"a\": 1,\r  \"b\": [\n    2, 3\n  ]\n}\n}";
    let (status, sent) = server.post_raw("/api/send", body.to_owned()).await;
    assert_eq!(status, 200, "{sent}");
    let ev = tokio::time::timeout(common::WAIT, events.next()).await.expect("an event").expect("open").expect("parsed");
    assert_eq!(ev.event, "message");
    let frame: Value = serde_json::from_str(&ev.data).unwrap_or_else(|e| panic!("one JSON event ({e}): {:?}", ev.data));
    assert_eq!(frame["message"]["payload"], json!({"a": 1, "b": [2, 3]}));
}
