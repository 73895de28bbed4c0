//! Compatibility with the original Python bridge clients: `tests/compat/original_client.py` talks to
//! the real server over WebSocket and HTTP exactly as those clients do and must exit 0.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use common::Server;
use tokio::process::Command;

/// The script bounds itself at 20 s; this is the backstop if Python itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(40);

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/original_client.py");

/// Runs `python args..` to completion within the timeout; the child is killed if the timeout fires.
async fn python(python: &str, args: &[&str]) -> Output {
    let child = Command::new(python)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is needed for the compatibility test and could not be started: {e}"));
    tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("python3 {args:?} did not finish within {SCRIPT_TIMEOUT:?}"))
        .expect("waiting for python3")
}

/// A Python interpreter that can `import websockets`: the system one if it can, else a virtualenv
/// under the target directory with the package installed from PyPI, so `cargo test` alone works on
/// a fresh machine.
async fn python_with_websockets() -> String {
    if python("python3", &["-c", "import websockets"]).await.status.success() {
        return "python3".into();
    }
    let venv = concat!(env!("CARGO_TARGET_TMPDIR"), "/compat-venv");
    let venv_python = format!("{venv}/bin/python");
    let ready = std::path::Path::new(&venv_python).exists()
        && python(&venv_python, &["-c", "import websockets"]).await.status.success();
    if !ready {
        let made = python("python3", &["-m", "venv", venv]).await;
        assert!(made.status.success(), "python3 -m venv failed: {}", String::from_utf8_lossy(&made.stderr));
        let pip = python(&venv_python, &["-m", "pip", "install", "--quiet", "websockets"]).await;
        assert!(
            pip.status.success(),
            "the compatibility test needs the Python `websockets` package (pip install websockets): {}",
            String::from_utf8_lossy(&pip.stderr)
        );
    }
    venv_python
}

#[tokio::test]
async fn the_original_python_client_works_unchanged() {
    let py = python_with_websockets().await;
    let mut server = Server::start(&[]);
    let out = python(&py, &[SCRIPT, &server.port.to_string()]).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{SCRIPT} failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}--- server logs\n{}",
        out.status,
        server.logs()
    );
    assert!(stdout.contains("PASS"), "the script exited 0 without passing:\n{stdout}");
    assert!(server.alive(), "the server exited; logs:\n{}", server.logs());
}
