//! The live dashboard in a real browser: headless Chromium and chromedriver from Debian's packages
//! (`apt-get install chromium chromium-driver`), driven over WebDriver by selenium (PyPI, installed
//! into a virtualenv when missing) running tests/fixtures/browser/dashboard.py. With auth on, the
//! page asks for the admin key (a wrong one is refused), then shows an agent connecting and its
//! message arriving live; the screenshot is kept as an artifact under the target directory.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, Ws};
use serde_json::json;

#[tokio::test]
#[ignore = "needs Debian's chromium and chromium-driver (apt) and selenium (pip); the README's test command runs it"]
async fn the_dashboard_logs_in_and_shows_an_agent_and_its_message_live() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(Path::new(tool).exists(), "{tool} is missing: apt-get install chromium chromium-driver (.ci/run does)");
    }
    let python = common::python::with("selenium-venv", &[("selenium", "selenium>=4.10")]);
    let data = tempfile::tempdir().expect("tempdir");
    let [admin, agent_key] = common::create_keys(data.path(), [("ops", "admin"), ("agent-*", "read,write")]);
    let server = Server::start(&["--data-dir", data.path().to_str().expect("utf-8")]);
    let screenshot = format!("{}/dashboard.png", env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::remove_file(&screenshot);
    let nonce = format!("hello-dashboard-{}", std::process::id());

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/browser/dashboard.py");
    let mut browser = Command::new(&python)
        .args([script, &server.http(""), &admin, &screenshot, "agent-7", &nonce])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    let lines = common::lines_of(browser.stdout.take().expect("stdout"));
    let stderr = browser.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let next = |what: &str| lines.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("the browser did not reach {what}"));

    let mut seen = Vec::new();
    for step in ["LOGIN", "READY"] {
        let line = next(step);
        seen.push(line.clone());
        if line != step {
            let _ = browser.kill();
            panic!("expected {step}, got {seen:?}: {}", errors.join().unwrap_or_default());
        }
    }
    let mut agent = Ws::connect_query(&server, "agent-7", &format!("token={agent_key}")).await;
    let sent = agent.send_msg("agent-8", "note", json!({"text": nonce})).await;
    assert_eq!(sent["type"], "sent");
    let last = lines.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    let status = common::wait_output(browser, Duration::from_secs(30), "the browser check").status;
    assert!(last == "OK" && status.success(), "the dashboard did not show the agent and its message: {last:?} {}", errors.join().unwrap_or_default());
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot ({} bytes)", png.len());
    println!("screenshot: {screenshot}");
}
