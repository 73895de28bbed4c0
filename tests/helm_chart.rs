//! The Helm chart lints clean, renders with several value sets into manifests that validate
//! against the Kubernetes schemas, and the configuration it gives the broker really starts the
//! broker: the probes it wires answer, and the bootstrap admin key from its Secret creates the
//! first API key. Uses helm-python-sdk (PyPI, the Helm v4 engine) and kubernetes-validate (the
//! Kubernetes JSON schemas, offline), installed into a virtualenv under the target directory when
//! the system Python lacks them. Ignored by a plain `cargo test` (it needs PyPI the first time);
//! the README's test command runs it with `--include-ignored`.

mod common;

use std::path::Path;
use std::process::Command;

use common::Server;
use serde_json::{json, Value};

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

/// `agent-bridge serve` on the chart's rendered configuration, with only the address, the data
/// directory and the mounted Secrets' paths moved for the test.
fn boot(rendered: &Path, data: &Path, extra: &[&str]) -> Server {
    let config = rendered.join("config.toml");
    let key_file = rendered.join("secret-bootstrap-admin-key");
    let mut args = vec!["serve", "--config", config.to_str().expect("utf-8"), "--bind", "127.0.0.1:0"];
    args.extend(["--data-dir", data.to_str().expect("utf-8"), "--bootstrap-admin-key-file", key_file.to_str().expect("utf-8")]);
    args.extend_from_slice(extra);
    Server::start_args(&args)
}

async fn call(server: &Server, method: reqwest::Method, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, server.http(path)).bearer_auth(key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
#[ignore = "needs helm-python-sdk and kubernetes-validate from PyPI (installed on first run): cargo test -- --include-ignored"]
async fn the_chart_renders_validates_and_its_config_and_bootstrap_key_start_the_broker() {
    let python = common::python::with(
        "helm-venv",
        &[("helm_python", "helm-python-sdk"), ("kubernetes_validate", "kubernetes-validate"), ("yaml", "pyyaml")],
    );
    let out_dir = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(&python)
        .args([&format!("{root}/tests/helm/render.py"), &format!("{root}/helm/agent-bridge")])
        .arg(out_dir.path())
        .output()
        .expect("python3");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "lint, render or validation failed:\n{said}");

    let defaults = out_dir.path().join("defaults");
    let manifest = read(&defaults, "statefulset.yaml");
    for probe in ["/health/startup", "/health/live", "/health/ready"] {
        assert!(manifest.contains(probe), "{probe} is wired in the StatefulSet:\n{manifest}");
    }
    for needle in ["volumeClaimTemplates", "serviceName: ab-agent-bridge-headless", "runAsUser: 10001", "readOnlyRootFilesystem: true"] {
        assert!(manifest.contains(needle), "{needle} in the StatefulSet:\n{manifest}");
    }
    assert!(read(&defaults, "service-headless.yaml").contains("clusterIP: None"), "the StatefulSet's service is headless");
    assert!(read(&defaults, "pdb.yaml").contains("kind: PodDisruptionBudget"));
    assert!(read(&defaults, "ingress.yaml").trim().is_empty() && read(&defaults, "servicemonitor.yaml").trim().is_empty(), "off by default");
    let text = read(&defaults, "config.toml");
    assert!(text.contains("require_auth = true") && text.contains("bind = \"0.0.0.0:5001\""), "{text}");

    // Lists and maps as TOML, an Ingress for WebSockets, a ServiceMonitor, JWT and the bootstrap key.
    let full = out_dir.path().join("full");
    let text = read(&full, "config.toml");
    for line in [
        "cors_origins = [\"https://claude.ai\", \"https://app.example\"]",
        "retention_types = { audit = \"permanent\", log = \"short\" }",
        "max_frame_bytes = 2097152",
        "ack_timeout_s = 12.5",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    let ingress = read(&full, "ingress.yaml");
    assert!(ingress.contains("nginx.ingress.kubernetes.io/proxy-read-timeout: \"3600\""), "{ingress}");
    assert!(read(&full, "servicemonitor.yaml").contains("path: /metrics"));
    assert!(read(&full, "statefulset.yaml").contains("BRIDGE_JWT_SECRET"));
    // A Secret the operator made: the chart makes none and mounts that one.
    let existing = out_dir.path().join("existing-secret");
    assert!(read(&existing, "secret.yaml").trim().is_empty());
    assert!(read(&existing, "statefulset.yaml").contains("secretName: my-admin-key"));

    let data = tempfile::tempdir().expect("data dir");
    let jwt_secret = read(&full, "secret-jwt-secret");
    let admin_key = read(&full, "secret-bootstrap-admin-key");
    let mut server = boot(&full, data.path(), &["--jwt-secret", &jwt_secret]);
    for probe in ["/health/startup", "/health/live", "/health/ready"] {
        let (code, body) = server.get(probe).await;
        assert_eq!(code, 200, "{probe}: {body}");
    }
    let (code, _) = server.get("/metrics").await;
    assert_eq!(code, 200, "the ServiceMonitor's /metrics is served without credentials");
    let (code, _) = server.get("/api/status").await;
    assert_eq!(code, 401, "the chart's broker requires authentication");
    let grant = json!({"client_id": "agent-*", "permissions": ["read", "write"], "label": "first"});
    let (code, created) = call(&server, reqwest::Method::POST, "/admin/keys", &admin_key, Some(grant)).await;
    assert_eq!(code, 201, "the bootstrap key creates the first API key: {created}");
    let first = created["key"].as_str().expect("the new key").to_owned();
    let (code, body) = call(&server, reqwest::Method::GET, "/api/status", &first, None).await;
    assert_eq!(code, 200, "the new key works: {body}");
    let (code, _) = call(&server, reqwest::Method::POST, "/admin/keys", &first, Some(json!({"client_id": "x", "permissions": ["read"]}))).await;
    assert_eq!(code, 403, "a read,write key is no admin");
    let logs = server.logs();
    assert!(logs.contains("bootstrap admin key installed"), "{logs}");
    let secret = admin_key.trim().rsplit('_').next().expect("secret part");
    assert!(!logs.contains(secret), "the bootstrap key is never logged");
    server.kill();

    // A restart on the same store neither duplicates the bootstrap key nor loses the keys made with it.
    let server = boot(&full, data.path(), &["--jwt-secret", &jwt_secret]);
    let (code, keys) = call(&server, reqwest::Method::GET, "/admin/keys", &admin_key, None).await;
    assert_eq!(code, 200, "{keys}");
    let listed = keys["keys"].as_array().expect("a list of keys");
    assert_eq!(listed.len(), 2, "the bootstrap key once, and the key made with it: {keys}");
    let (code, body) = call(&server, reqwest::Method::GET, "/api/status", &first, None).await;
    assert_eq!(code, 200, "{body}");
}
