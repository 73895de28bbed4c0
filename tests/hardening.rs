//! Hardening against a caller who writes requests by hand (issue 10): the admin permission cannot
//! be side-stepped with percent-escapes, dot segments, doubled slashes, trailing dots or case, sent
//! at once or slowly, and oversized heads are refused without harm.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{raw_http, raw_request, Server};
use serde_json::{json, Value};

fn create_key(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_agent-bridge"))
        .args(["keys", "create", "--data-dir"])
        .arg(dir)
        .args(args)
        .env_remove("BRIDGE_DATA_DIR")
        .output()
        .expect("running keys create");
    assert!(out.status.success(), "keys create: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().expect("key line").trim().to_owned()
}

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
    let admin = create_key(dir.path(), &["--client-id", "ops", "--permissions", "admin"]);
    let reader = create_key(dir.path(), &["--client-id", "reader", "--permissions", "read"]);
    let writer = create_key(dir.path(), &["--client-id", "*", "--permissions", "read,write"]);
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
