//! The Helm chart lints clean, renders, and the configuration it gives the broker really starts
//! the broker, with the probes the chart wires answering. Uses helm-python-sdk (PyPI, the Helm v4
//! engine), installed into a virtualenv under the target directory when the system Python lacks
//! it. Ignored by a plain `cargo test` (it needs PyPI the first time); the README's test command
//! runs it with `--include-ignored`.

mod common;

use std::process::Command;

use common::Server;

#[tokio::test]
#[ignore = "needs helm-python-sdk from PyPI (installed on first run): cargo test -- --include-ignored"]
async fn the_chart_renders_and_its_config_starts_the_broker() {
    let python = common::python::with("helm-venv", &[("helm_python", "helm-python-sdk")]);
    let out_dir = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(&python)
        .args([&format!("{root}/tests/helm/render.py"), &format!("{root}/helm/agent-bridge")])
        .arg(out_dir.path())
        .output()
        .expect("python3");
    assert!(out.status.success(), "lint or render failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let manifest = std::fs::read_to_string(out_dir.path().join("statefulset.yaml")).expect("statefulset rendered");
    for probe in ["/health/startup", "/health/live", "/health/ready"] {
        assert!(manifest.contains(probe), "{probe} is wired in the StatefulSet:\n{manifest}");
    }
    assert!(manifest.contains("volumeClaimTemplates"), "the sled store is on a volume");
    let config = out_dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).expect("config.toml extracted");
    assert!(text.contains("require_auth = true") && text.contains("bind = \"0.0.0.0:5001\""), "{text}");

    // The chart's configuration, with only the address and data directory moved for the test.
    let data = tempfile::tempdir().expect("data dir");
    let server = Server::start_args(&[
        "serve",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        data.path().to_str().expect("utf-8 path"),
    ]);
    for probe in ["/health/startup", "/health/live", "/health/ready"] {
        let (code, body) = server.get(probe).await;
        assert_eq!(code, 200, "{probe}: {body}");
    }
    let (code, _) = server.get("/api/status").await;
    assert_eq!(code, 401, "the chart's broker requires authentication");
}
