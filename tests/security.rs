//! Security, end to end over real sockets: identities bound to API keys and JWTs, permissions,
//! `from` set by the server, admin routes, revocation and expiry closing open sessions, rate and
//! connection limits, the secure-default start-up check, guest mode, CORS, built-in TLS, and keys
//! stored only as hashes.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{create_key, create_keys, Server, Ws, WAIT};
use futures_util::StreamExt;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/security");
const HS_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_agent-bridge")
}


fn start_with_dir(dir: &Path, extra: &[&str]) -> Server {
    let d = dir.to_str().expect("utf-8 path");
    let mut args = vec!["--data-dir", d];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// One HTTP request with an optional bearer token: (status, headers, JSON body).
async fn http(server: &Server, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, reqwest::header::HeaderMap, Value) {
    let client = reqwest::Client::new();
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client.request(m, server.http(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = tokio::time::timeout(WAIT, req.send()).await.expect("request timed out").expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

/// A WebSocket upgrade with a bearer token; `Err(status)` when the server refuses the handshake.
async fn ws_auth(server: &Server, client: &str, token: Option<&str>) -> Result<Ws, u16> {
    ws_request(server.ws_url(client, ""), token, None).await
}

async fn ws_request(url: String, token: Option<&str>, origin: Option<&str>) -> Result<Ws, u16> {
    let mut req = url.into_client_request().expect("request");
    if let Some(t) = token {
        req.headers_mut().insert("authorization", format!("Bearer {t}").parse().expect("header"));
    }
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().expect("header"));
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await.expect("connect timed out") {
        Ok((stream, _)) => {
            let mut ws = Ws { stream, confirmed: Value::Null };
            let c = ws.recv().await;
            assert_eq!(c["type"], "connection_confirmed", "first frame: {c}");
            ws.confirmed = c;
            Ok(ws)
        }
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket connect failed without an HTTP answer: {e}"),
    }
}

/// Reads until the server closes the socket; returns the `error` frame seen and the close code.
async fn expect_closed(ws: &mut Ws, within: Duration) -> (Value, Option<CloseCode>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut error = Value::Null;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.stream.next()).await.expect("the session was not closed in time");
        match next {
            Some(Ok(WsMessage::Text(t))) => {
                let v: Value = serde_json::from_str(&t).expect("json");
                if v["type"] == "error" {
                    error = v;
                }
            }
            Some(Ok(WsMessage::Close(frame))) => return (error, frame.map(|f| f.code)),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return (error, None),
        }
    }
}

fn jwt(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    encode(&Header::new(alg), &claims, key).expect("encode jwt")
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).expect("fixture")
}

/// Identity binding, permissions, `from`, inbox reads and admin routes, with API keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_bind_identities_and_permissions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let grants = [("*", "read,write,admin"), ("browser-*", "read,write"), ("reader", "read"), ("code", "read,write")];
    let [admin, browser, reader, code] = create_keys(dir.path(), grants);
    let mut server = start_with_dir(dir.path(), &[]);

    // Without credentials nothing but the public routes answers.
    for path in ["/api/status", "/api/messages?to=code", "/stream/events?client_id=code", "/admin/keys"] {
        let (status, headers, body) = http(&server, "GET", path, None, None).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{path}: {body}");
        assert_eq!(headers.get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
    }
    for path in ["/health/live", "/health/ready", "/openapi.json", "/metrics"] {
        let r = reqwest::get(server.http(path)).await.expect("GET");
        assert_eq!(r.status().as_u16(), 200, "{path} is public");
    }
    assert_eq!(ws_auth(&server, "code", None).await.err(), Some(401));
    assert_eq!(ws_auth(&server, "code", Some("abk_000000000000_nope")).await.err(), Some(401));

    // A key limited to browser-* cannot connect as code, over the header or ?token=.
    assert_eq!(ws_auth(&server, "code", Some(&browser)).await.err(), Some(403));
    assert_eq!(ws_request(server.ws_url("code", &format!("token={browser}")), None, None).await.err(), Some(403));
    let mut b1 = ws_auth(&server, "browser-1", Some(&browser)).await.expect("browser-1 connects");
    let mut b2 = ws_request(server.ws_url("browser-2", &format!("token={browser}")), None, None).await.expect("?token= works");
    let mut code_ws = ws_auth(&server, "code", Some(&code)).await.expect("code connects");

    // A forged `from` in a WebSocket send is ignored: the server sets it from the session.
    b1.send(json!({"type": "send", "to": "code", "from": "code", "msg_type": "t", "payload": {"n": 1}, "ref": "f1"})).await;
    let sent = b1.recv_type("sent").await;
    assert_eq!(sent["ref"], "f1");
    let m = code_ws.recv_msg().await;
    assert_eq!(m["from"], "browser-1", "forged from overwritten: {m}");

    // Over HTTP `from` must be an allowed id; a key naming one id may leave it out.
    let send = |from: Option<&str>| {
        let mut b = json!({"to": "browser-2", "type": "t", "payload": {"n": 2}});
        if let Some(f) = from {
            b["from"] = json!(f);
        }
        b
    };
    let (status, _, body) = http(&server, "POST", "/api/send", Some(&browser), Some(send(Some("code")))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, _, body) = http(&server, "POST", "/api/send", Some(&browser), Some(send(Some("browser-9")))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(b2.recv_msg().await["from"], "browser-9");
    let (status, _, body) = http(&server, "POST", "/api/send", Some(&code), Some(send(None))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(b2.recv_msg().await["from"], "code", "from filled in from the key's one client id");
    let (status, _, _) = http(&server, "POST", "/api/send", Some(&browser), Some(send(None))).await;
    assert_eq!(status, 400, "a pattern key must say which id it sends as");

    // A read-only key can receive but cannot send, over WebSocket or HTTP.
    let mut r = ws_auth(&server, "reader", Some(&reader)).await.expect("reader connects");
    r.send(json!({"type": "send", "to": "code", "msg_type": "t", "payload": 1, "ref": "ro"})).await;
    let f = r.recv().await;
    assert_eq!((f["type"].as_str(), f["code"].as_str(), f["ref"].as_str()), (Some("error"), Some("forbidden"), Some("ro")), "{f}");
    let (status, _, body) = http(&server, "POST", "/api/send", Some(&reader), Some(json!({"from": "reader", "to": "code", "type": "t", "payload": 1}))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    assert!(code_ws.try_recv(Duration::from_millis(300)).await.is_none(), "nothing from the read-only key arrived");
    b1.send_msg("reader", "t", json!("for the reader")).await;
    assert_eq!(r.recv_msg().await["payload"], "for the reader");

    // Reading an inbox needs that id: long-poll, SSE, ack.
    let (status, _, _) = http(&server, "GET", "/api/messages?to=code", Some(&browser), None).await;
    assert_eq!(status, 403);
    let (status, _, body) = http(&server, "GET", "/api/messages?to=browser-2&since=0", Some(&browser), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = http(&server, "GET", "/stream/events?client_id=code", Some(&browser), None).await;
    assert_eq!(status, 403);
    let (status, _, _) = http(&server, "POST", "/api/ack", Some(&browser), Some(json!({"client_id": "code", "message_ids": []}))).await;
    assert_eq!(status, 403);

    // A non-admin key gets 403 on every /admin route, including those listed in /openapi.json.
    let (_, _, spec) = http(&server, "GET", "/openapi.json", None, None).await;
    let mut admin_routes: Vec<(String, String)> = vec![
        ("GET".into(), "/admin/supervisors".into()),
        ("GET".into(), "/admin/clients".into()),
        ("GET".into(), "/admin/queues".into()),
        ("GET".into(), "/admin/dead-letters".into()),
        ("GET".into(), "/admin/keys".into()),
        ("POST".into(), "/admin/keys".into()),
        ("DELETE".into(), "/admin/keys/000000000000".into()),
        ("POST".into(), "/admin/fault".into()),
        ("GET".into(), "/admin/no-such-route".into()),
    ];
    for (path, ops) in spec["paths"].as_object().expect("openapi paths") {
        if path.starts_with("/admin") {
            for method in ops.as_object().expect("operations").keys() {
                admin_routes.push((method.to_uppercase(), path.replace(['{', '}'], "")));
            }
        }
    }
    assert!(admin_routes.len() > 12, "the description lists the admin routes: {admin_routes:?}");
    for token in [&browser, &reader, &code] {
        for (method, path) in &admin_routes {
            let body = (method == "POST").then(|| json!({"client_id": "x", "permissions": ["admin"]}));
            let (status, _, resp) = http(&server, method, path, Some(token), body).await;
            assert_eq!((status, resp["code"].as_str()), (403, Some("forbidden")), "{method} {path}: {resp}");
        }
    }

    // The admin key lists keys with usage statistics; neither keys nor hashes are shown.
    let (status, _, list) = http(&server, "GET", "/admin/keys", Some(&admin), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["count"], 4);
    let text = list.to_string();
    for k in [&admin, &browser, &reader, &code] {
        let secret = k.rsplit('_').next().expect("secret");
        assert!(!text.contains(secret), "no secret in the listing");
    }
    assert!(!text.contains("hash"), "no hash in the listing: {text}");
    let browser_id = browser.split('_').nth(1).expect("id");
    let entry = list["keys"].as_array().expect("keys").iter().find(|k| k["id"] == browser_id).expect("browser key listed").clone();
    assert_eq!(entry["client_id"], "browser-*");
    assert!(entry["usage"]["requests"].as_u64().is_some_and(|n| n >= 5), "{entry}");
    assert!(entry["usage"]["messages"].as_u64().is_some_and(|n| n >= 2), "{entry}");
    assert!(entry["usage"]["last_used"].is_string(), "{entry}");

    // Stored keys are hashed: read the sled tree itself once the broker is gone.
    server.kill();
    let db = sled::open(dir.path().join("db")).expect("open the store after the broker stopped");
    let tree = db.open_tree("keys").expect("keys tree");
    assert_eq!(tree.len(), 4);
    let mut raw = Vec::new();
    for item in tree.iter() {
        let (k, v) = item.expect("entry");
        raw.extend_from_slice(&k);
        raw.extend_from_slice(&v);
    }
    for k in [&admin, &browser, &reader, &code] {
        let secret = k.rsplit('_').next().expect("secret");
        let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(k.as_bytes()) && !contains(secret.as_bytes()), "a plain key is stored in the keys tree");
        assert!(contains(k.split('_').nth(1).expect("id").as_bytes()), "the key id names the record");
    }
    drop(db);
    // And nowhere on disk.
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        for k in [&admin, &browser, &reader, &code] {
            let secret = k.rsplit('_').next().expect("secret").as_bytes();
            assert!(!bytes.windows(secret.len()).any(|w| w == secret), "{} holds a plain key", entry.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Revocation and expiry take effect at once, and close open sessions with 1008.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_keys_are_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = create_key(dir.path(), &["--client-id", "ops", "--permissions", "admin"]);
    let server = start_with_dir(dir.path(), &[]);

    // Revocation over the admin API closes a WebSocket session and an SSE stream of the key.
    let (status, _, created) = http(
        &server,
        "POST",
        "/admin/keys",
        Some(&admin),
        Some(json!({"client_id": "agent", "permissions": ["read", "write"], "label": "to revoke"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    for (field, value) in [("client_id", "agent"), ("label", "to revoke"), ("status", "active")] {
        assert_eq!(created[field], value, "{created}");
    }
    assert_eq!((created["permissions"].clone(), created["allowed_clients"].clone()), (json!(["read", "write"]), json!([])));
    let key = created["key"].as_str().expect("key shown once").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    // A field the request does not have is refused by name, not ignored.
    let typo = json!({"client_id": "agent", "permissions": ["read"], "expires": 3});
    let (status, _, refused) = http(&server, "POST", "/admin/keys", Some(&admin), Some(typo)).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("bad_frame")), "{refused}");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("unknown field `expires`")), "{refused}");
    let mut ws = ws_auth(&server, "agent", Some(&key)).await.expect("connects");
    let sse = reqwest::Client::new()
        .get(server.http("/stream/events?client_id=agent"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("sse");
    assert_eq!(sse.status().as_u16(), 200);
    let mut sse_body = sse;
    // The stream's session registers with its key when its actor starts, after the response head:
    // its first event says it has.
    let mut seen = String::new();
    let confirmed = tokio::time::timeout(WAIT, async {
        while !seen.contains("connection_confirmed") {
            let chunk = sse_body.chunk().await.expect("SSE read").expect("the stream stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    confirmed.await.expect("connection_confirmed on the stream");
    let (status, _, body) = http(&server, "DELETE", &format!("/admin/keys/{id}"), Some(&admin), None).await;
    assert_eq!((status, body["sessions_closed"].as_u64()), (200, Some(2)), "{body}");
    let (err, code) = expect_closed(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(CloseCode::Policy), "closed with 1008");
    assert_eq!(err["code"], "unauthorized", "{err}");
    assert!(err["error"].as_str().is_some_and(|e| e.contains("revoked")), "{err}");
    seen.clear();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(chunk)) = sse_body.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the SSE stream ended; got {seen}");
    assert!(seen.contains("event: error") && seen.contains("revoked"), "{seen}");
    assert_eq!(ws_auth(&server, "agent", Some(&key)).await.err(), Some(401));
    let (status, _, body) = http(&server, "GET", "/api/messages?to=agent", Some(&key), None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = http(&server, "DELETE", "/admin/keys/000000000000", Some(&admin), None).await;
    assert_eq!(status, 404);

    // Expiry: a key that expires in 2 s works, then its session is closed and it is refused.
    let (_, _, created) = http(
        &server,
        "POST",
        "/admin/keys",
        Some(&admin),
        Some(json!({"client_id": "temp", "permissions": ["read"], "expires_days": 2.0 / 86400.0})),
    )
    .await;
    let key = created["key"].as_str().expect("key").to_owned();
    let started = Instant::now();
    let mut ws = ws_auth(&server, "temp", Some(&key)).await.expect("connects before expiry");
    let (err, code) = expect_closed(&mut ws, Duration::from_secs(6)).await;
    assert_eq!(code, Some(CloseCode::Policy));
    assert!(err["error"].as_str().is_some_and(|e| e.contains("expired")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "closed at expiry, not much later");
    let (status, _, body) = http(&server, "GET", "/api/status", Some(&key), None).await;
    assert_eq!(status, 401);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("expired")), "{body}");
    let (_, _, list) = http(&server, "GET", "/admin/keys", Some(&admin), None).await;
    let statuses: Vec<&str> = list["keys"].as_array().expect("keys").iter().filter_map(|k| k["status"].as_str()).collect();
    assert_eq!(statuses, ["active", "revoked", "expired"], "{list}");
}

/// A key's request rate (burst, then refill) and a connection's message rate; both recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_under_a_burst_and_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 3600 per hour = one per second, bursts of 4.
    let key = create_key(dir.path(), &["--client-id", "bot", "--permissions", "read,write", "--rate-limit-per-hour", "3600", "--burst", "4"]);
    let server = start_with_dir(dir.path(), &[]);

    let mut limited = None;
    for i in 0..10 {
        let (status, headers, body) = http(&server, "GET", "/api/messages?to=bot", Some(&key), None).await;
        if status == 429 {
            assert_eq!(body["code"], "rate_limited", "{body}");
            let retry = body["retry_after"].as_u64().expect("retry_after in the body");
            assert!((1..=2).contains(&retry), "{body}");
            assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some(retry.to_string().as_str()));
            limited = Some((i, retry));
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    let (i, retry) = limited.expect("the burst is limited");
    assert!((4..=5).contains(&i), "a burst of 4 passes (one more may have refilled): limited at request {i}");
    // Honouring retry_after is the test: after that long the request passes.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (status, _, body) = http(&server, "GET", "/api/messages?to=bot", Some(&key), None).await;
    assert_eq!(status, 200, "recovered after retry_after: {body}");

    // Per connection (anonymous sessions are limited too): 3 at once, then 2 per second.
    let anon = Server::start(&["--message-rate-per-s", "2", "--message-burst", "3"]);
    let mut ws = Ws::connect(&anon, "fast").await;
    let _peer = Ws::connect(&anon, "peer").await;
    for n in 0..3 {
        ws.send_msg("peer", "t", json!(n)).await;
    }
    ws.send(json!({"type": "send", "to": "peer", "msg_type": "t", "payload": 3, "ref": "over"})).await;
    let f = ws.recv().await;
    assert_eq!((f["code"].as_str(), f["ref"].as_str()), (Some("rate_limited"), Some("over")), "{f}");
    let retry = f["retry_after"].as_u64().expect("retry_after in the frame");
    assert!(retry >= 1, "{f}");
    // Honouring retry_after is the test: after that long the connection may send again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let sent = ws.send_msg("peer", "t", json!(4)).await;
    assert_eq!(sent["status"], "delivered", "the connection recovered");

    // The key's hourly limit also counts WebSocket sends. First the key's bucket refills (one per
    // second): time, not an event, so a sleep.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut bot = ws_auth(&server, "bot", Some(&key)).await.expect("connects");
    let mut refused = false;
    for n in 0..8 {
        bot.send(json!({"type": "send", "to": "bot", "msg_type": "t", "payload": n, "ref": format!("k{n}")})).await;
        loop {
            let f = bot.recv().await;
            if f["type"] == "error" {
                assert_eq!(f["code"], "rate_limited", "{f}");
                refused = true;
                break;
            }
            if f["type"] == "sent" {
                break;
            }
        }
        if refused {
            break;
        }
    }
    assert!(refused, "WebSocket sends count against the key's limit");
}

/// Failed authentications per address are limited; connection limits per client id and in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_attempt_and_connection_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = create_key(dir.path(), &["--client-id", "a*", "--permissions", "read,write"]);
    let server = start_with_dir(
        dir.path(),
        &["--auth-failures-per-minute", "3", "--max-connections", "3", "--max-connections-per-client", "2"],
    );

    let a1 = ws_auth(&server, "a1", Some(&good)).await.expect("a1");
    let _a1b = ws_auth(&server, "a1", Some(&good)).await.expect("a1 again");
    let (status, _, body) = http(&server, "GET", "/stream/events?client_id=a1", Some(&good), None).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("too_many_connections")), "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("per client id")), "{body}");
    let _a2 = ws_auth(&server, "a2", Some(&good)).await.expect("a2");
    let (status, _, body) = http(&server, "GET", "/stream/events?client_id=a3", Some(&good), None).await;
    assert_eq!(status, 429, "total limit: {body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("limit of 3")), "{body}");
    drop(a1);
    let _a3 = common::eventually("a slot frees when a session closes", || async {
        ws_auth(&server, "a3", Some(&good)).await.ok()
    })
    .await;

    // Key guessing: three failures, then even a good key is refused from this address for a while.
    for n in 0..3 {
        let wrong = format!("abk_{:012x}_{}", n, "0".repeat(64));
        let (status, _, _) = http(&server, "GET", "/api/status", Some(&wrong), None).await;
        assert_eq!(status, 401);
    }
    let (status, headers, body) = http(&server, "GET", "/api/status", Some(&good), None).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")), "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(body["error"].as_str().is_some_and(|e| e.contains("failed authentication")), "{body}");
    let (status, _, _) = http(&server, "GET", "/health/ready", None, None).await;
    assert_eq!(status, 200, "public routes stay reachable");
}

/// JWT: HS256 and RS256, `sub` as the client id, permissions claim; bad tokens are refused and a
/// session ends when its token expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_are_verified() {
    let public = Path::new(FIXTURES).join("jwt-rs256-public.pem");
    let server = Server::start(&[
        "--jwt-secret",
        HS_SECRET,
        "--jwt-public-key-file",
        public.to_str().expect("path"),
        "--jwt-audience",
        "agent-bridge",
        "--jwt-issuer",
        "https://idp.example",
        "--jwt-leeway-s",
        "0",
    ]);
    let hs = EncodingKey::from_secret(HS_SECRET.as_bytes());
    let rs = EncodingKey::from_rsa_pem(&fixture("jwt-rs256-private.pem")).expect("rsa key");
    let other_rs = EncodingKey::from_rsa_pem(&fixture("jwt-rs256-other-private.pem")).expect("rsa key");
    let claims = |sub: &str, exp: i64| json!({"sub": sub, "exp": exp, "aud": "agent-bridge", "iss": "https://idp.example"});
    let later = now_s() + 600;

    // JWT configured means auth is required.
    assert_eq!(ws_auth(&server, "code", None).await.err(), Some(401));

    let good_hs = jwt(Algorithm::HS256, &hs, claims("code", later));
    let good_rs = jwt(Algorithm::RS256, &rs, claims("browser-1", later));
    let mut code = ws_auth(&server, "code", Some(&good_hs)).await.expect("HS256 token accepted");
    let mut browser = ws_auth(&server, "browser-1", Some(&good_rs)).await.expect("RS256 token accepted");
    assert_eq!(ws_auth(&server, "other", Some(&good_hs)).await.err(), Some(403), "sub is the only client id");
    code.send(json!({"type": "send", "to": "browser-1", "from": "admin", "msg_type": "t", "payload": 1})).await;
    assert_eq!(browser.recv_msg().await["from"], "code");

    let mut wrong_sig = good_hs.clone();
    let last = wrong_sig.pop().expect("char");
    wrong_sig.push(if last == 'A' { 'B' } else { 'A' });
    let mut wrong_aud = claims("code", later);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("code", later);
    wrong_iss["iss"] = json!("https://evil.example");
    let public_pem = String::from_utf8(fixture("jwt-rs256-public.pem")).expect("pem");
    let refused = [
        ("wrong signature", wrong_sig),
        ("wrong audience", jwt(Algorithm::HS256, &hs, wrong_aud)),
        ("wrong issuer", jwt(Algorithm::HS256, &hs, wrong_iss)),
        ("past expiry", jwt(Algorithm::HS256, &hs, claims("code", now_s() - 120))),
        ("untrusted RSA key", jwt(Algorithm::RS256, &other_rs, claims("code", later))),
        ("other HS secret", jwt(Algorithm::HS256, &EncodingKey::from_secret(&[7u8; 48]), claims("code", later))),
        ("algorithm confusion", jwt(Algorithm::HS256, &EncodingKey::from_secret(public_pem.as_bytes()), claims("code", later))),
        ("unsupported algorithm", jwt(Algorithm::HS384, &hs, claims("code", later))),
        ("no exp", jwt(Algorithm::HS256, &hs, json!({"sub": "code", "aud": "agent-bridge", "iss": "https://idp.example"}))),
        ("bad sub", jwt(Algorithm::HS256, &hs, claims("not valid", later))),
    ];
    for (what, token) in &refused {
        assert_eq!(ws_auth(&server, "code", Some(token)).await.err(), Some(401), "{what}");
        let (status, _, body) = http(&server, "GET", "/api/messages?to=code", Some(token), None).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{what}: {body}");
    }

    // Permissions come from the token: read-only cannot send, non-admin cannot reach /admin.
    let mut ro = claims("watcher", later);
    ro["permissions"] = json!(["read"]);
    let ro = jwt(Algorithm::HS256, &hs, ro);
    let (status, _, _) = http(&server, "POST", "/api/send", Some(&ro), Some(json!({"to": "code", "type": "t", "payload": 1}))).await;
    assert_eq!(status, 403);
    let (status, _, _) = http(&server, "GET", "/admin/supervisors", Some(&good_hs), None).await;
    assert_eq!(status, 403);
    let mut adm = claims("ops", later);
    adm["permissions"] = json!(["admin"]);
    let (status, _, _) = http(&server, "GET", "/admin/supervisors", Some(&jwt(Algorithm::RS256, &rs, adm)), None).await;
    assert_eq!(status, 200);

    // A session ends when its token expires.
    let short = jwt(Algorithm::HS256, &hs, claims("brief", now_s() + 2));
    let mut ws = ws_auth(&server, "brief", Some(&short)).await.expect("valid for 2 s");
    let (err, code) = expect_closed(&mut ws, Duration::from_secs(6)).await;
    assert_eq!(code, Some(CloseCode::Policy), "{err}");
}

/// Secure defaults: no public bind without auth (unless --insecure, which warns), --require-auth,
/// keys in the store count as auth, and the explicit guest mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_defaults_and_modes() {
    let out = Command::new(bin())
        .args(["serve", "--in-memory", "--bind", "0.0.0.0:0"])
        .env_remove("BRIDGE_BIND")
        .env_remove("BRIDGE_INSECURE")
        .output()
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refuses to start: {stderr}");
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0 without authentication"), "{stderr}");
    assert!(stderr.contains("--insecure") && stderr.contains("keys create"), "says what to do: {stderr}");

    let mut insecure = Server::start_args(&["serve", "--in-memory", "--bind", "0.0.0.0:0", "--insecure"]);
    let logs = insecure.wait_log("INSECURE").await;
    assert!(logs.contains("WARN"), "a warning: {logs}");
    let (status, _, _) = http(&insecure, "GET", "/api/status", None, None).await;
    assert_eq!(status, 200, "anonymous clients accepted with --insecure");
    insecure.kill();

    let required = Server::start_args(&["serve", "--in-memory", "--bind", "0.0.0.0:0", "--require-auth"]);
    let (status, _, _) = http(&required, "GET", "/api/status", None, None).await;
    assert_eq!(status, 401, "--require-auth refuses anonymous clients");
    drop(required);

    let dir = tempfile::tempdir().expect("tempdir");
    let key = create_key(dir.path(), &["--client-id", "code", "--permissions", "read"]);
    let d = dir.path().to_str().expect("path");
    let with_keys = Server::start_args(&["serve", "--data-dir", d, "--bind", "0.0.0.0:0"]);
    let (status, _, _) = http(&with_keys, "GET", "/api/status", None, None).await;
    assert_eq!(status, 401, "keys in the store turn auth on");
    let (status, _, _) = http(&with_keys, "GET", "/api/status", Some(&key), None).await;
    assert_eq!(status, 200);
    drop(with_keys);

    // Guest mode: no credentials act as guests, only as guest-* and only with the guest permissions.
    let guests = Server::start(&["--require-auth", "--guest-permissions", "read,write"]);
    let mut g1 = ws_auth(&guests, "guest-1", None).await.expect("guest connects");
    let mut g2 = ws_auth(&guests, "guest-2", None).await.expect("guest connects");
    assert_eq!(ws_auth(&guests, "code", None).await.err(), Some(403));
    g1.send_msg("guest-2", "t", json!("hi")).await;
    assert_eq!(g2.recv_msg().await["from"], "guest-1");
    let (status, _, _) = http(&guests, "GET", "/admin/supervisors", None, None).await;
    assert_eq!(status, 403, "guests are not admins");

    // The default loopback broker still accepts anonymous clients (what every other test relies on).
    let open = Server::start(&[]);
    let (status, _, body) = http(&open, "GET", "/admin/supervisors", None, None).await;
    assert_eq!(status, 200, "{body}");
}

/// CORS: the configured origin (https://claude.ai by default) may call with credentials; other
/// origins are refused, WebSocket upgrades from other web pages included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_configured_origins_only() {
    let server = Server::start(&[]);
    let client = reqwest::Client::new();
    let preflight = |origin: &str| {
        client
            .request(reqwest::Method::OPTIONS, server.http("/api/send"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let ok = preflight("https://claude.ai").await.expect("preflight");
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("https://claude.ai"));
    let allowed_headers = ok.headers().get("access-control-allow-headers").and_then(|v| v.to_str().ok()).unwrap_or("").to_lowercase();
    assert!(allowed_headers.contains("authorization"), "{allowed_headers}");
    let bad = preflight("https://evil.example").await.expect("preflight");
    assert!(bad.status().is_client_error(), "{}", bad.status());
    assert!(bad.headers().get("access-control-allow-origin").is_none());

    let r = client.get(server.http("/api/status")).header("origin", "https://claude.ai").send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("https://claude.ai"));
    let r = client.get(server.http("/api/status")).header("origin", "https://evil.example").send().await.expect("GET");
    assert!(r.status().is_client_error());

    assert!(ws_request(server.ws_url("page", ""), None, Some("https://evil.example")).await.is_err(), "cross-site WebSocket refused");
    ws_request(server.ws_url("page", ""), None, Some("https://claude.ai")).await.expect("claude.ai may connect");

    let any = Server::start(&["--cors-origins", "*"]);
    let r = client.get(any.http("/api/status")).header("origin", "https://anything.example").send().await.expect("GET");
    assert_eq!(r.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("*"));
}

/// Built-in TLS: https:// and wss:// with the configured certificate; plain HTTP is not served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_tls_serves_https_and_wss() {
    let cert = Path::new(FIXTURES).join("tls-cert.pem");
    let key = Path::new(FIXTURES).join("tls-key.pem");
    let server = Server::start(&["--tls-cert-file", cert.to_str().expect("path"), "--tls-key-file", key.to_str().expect("path")]);
    let pem = fixture("tls-cert.pem");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("cert"))
        .build()
        .expect("client");
    let r = client.get(format!("https://localhost:{}/health/live", server.port)).send().await.expect("https request");
    assert_eq!(r.status().as_u16(), 200);
    let r = client
        .post(format!("https://127.0.0.1:{}/api/send", server.port))
        .json(&json!({"from": "a", "to": "b", "type": "t", "payload": 1}))
        .send()
        .await
        .expect("https request");
    assert_eq!(r.status().as_u16(), 200);
    assert!(reqwest::get(server.http("/health/live")).await.is_err(), "plain http is not served on the TLS port");

    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(c.expect("cert")).expect("root");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (stream, _) = tokio_tungstenite::connect_async_tls_with_config(
        format!("wss://localhost:{}/ws/secure", server.port),
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(tls))),
    )
    .await
    .expect("wss connect");
    let mut ws = Ws { stream, confirmed: Value::Null };
    assert_eq!(ws.recv().await["type"], "connection_confirmed");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong");
    ws.stream.close(None).await.expect("close");
}

/// The bootstrap admin key (`bootstrap_admin_key_file`): installed once, an admin key from the
/// first start (it creates keys), not duplicated by a restart, and a revocation of it sticks; a
/// file that holds no key is a configuration error (exit 2) that does not show the file's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_admin_key_is_installed_once_and_its_revocation_sticks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let key = format!("abk_{}_{}", "0a1b2c3d4e5f", "9".repeat(64));
    let file = dir.path().join("admin-key");
    std::fs::write(&file, format!("{key}\n")).expect("write");
    let boot = |extra: &[&str]| {
        let mut args = vec!["--bootstrap-admin-key-file", file.to_str().expect("utf-8")];
        args.extend_from_slice(extra);
        start_with_dir(&data, &args)
    };
    let mut server = boot(&[]);
    let (status, _, _) = http(&server, "GET", "/api/status", None, None).await;
    assert_eq!(status, 401, "a key in the store turns authentication on");
    let (status, _, created) =
        http(&server, "POST", "/admin/keys", Some(&key), Some(json!({"client_id": "agent-1", "permissions": ["read"]}))).await;
    assert_eq!(status, 201, "{created}");
    assert!(!server.logs().contains(&"9".repeat(64)), "the key is never logged");
    server.kill();

    let mut server = boot(&[]);
    let (status, _, keys) = http(&server, "GET", "/admin/keys", Some(&key), None).await;
    assert_eq!(status, 200, "{keys}");
    let ids: Vec<&str> = keys["keys"].as_array().expect("keys").iter().filter_map(|k| k["id"].as_str()).collect();
    assert_eq!((ids.len(), ids.iter().filter(|id| **id == "0a1b2c3d4e5f").count()), (2, 1), "{keys}");
    let (status, _, body) = http(&server, "DELETE", "/admin/keys/0a1b2c3d4e5f", Some(&key), None).await;
    assert_eq!(status, 200, "{body}");
    server.kill();
    let server = boot(&[]);
    let (status, _, body) = http(&server, "GET", "/admin/keys", Some(&key), None).await;
    assert_eq!(status, 401, "revoked stays revoked after a restart: {body}");
    drop(server);

    for (text, needle) in [("not-a-key", "not an API key"), (&format!("abk_0a1b2c3d4e5f_{}", "8".repeat(64)), "already has the id")] {
        std::fs::write(&file, text).expect("write");
        let child = Command::new(bin())
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir", data.to_str().expect("utf-8"), "--bootstrap-admin-key-file"])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run");
        let out = common::wait_output(child, WAIT, "a bad bootstrap key file stops the start");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("bootstrap_admin_key_file") && stderr.contains(needle), "{stderr}");
        assert!(!stderr.contains(&"8".repeat(64)), "the file's text is not shown");
    }
}
