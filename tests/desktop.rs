//! The desktop controller end to end under Xvfb (issue 16): a real X server started here, a small
//! real window program that echoes what is typed into it (tests/fixtures/standin_window.py, Tk),
//! and the broker (its own process, since `DISPLAY` is per process) driving it through
//! `desktop.prompt` calls and through messages to the `desktop` agent, directly and in a room; the
//! answers come back through the clipboard. Also `no_window` and `no_display`.
//!
//! Needs `xvfb` and `xdotool` (Debian packages, installed by .ci/run) and python3 with tkinter.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{wait_until, Server, Ws, WAIT};
use serde_json::{json, Value};

const TITLE: &str = "Stand-in Claude";

/// A process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An Xvfb server on a display number it picks itself (`-displayfd`), and the stand-in window.
struct Desktop {
    display: String,
    _window: Killed,
    _xvfb: Killed,
}

impl Desktop {
    fn start() -> Desktop {
        let mut xvfb = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1024x768x24", "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting Xvfb (apt install xvfb)");
        let mut number = String::new();
        BufReader::new(xvfb.stdout.take().expect("Xvfb stdout")).read_line(&mut number).expect("Xvfb's display number");
        let xvfb = Killed(xvfb);
        let display = format!(":{}", number.trim());
        assert!(number.trim().parse::<u32>().is_ok(), "Xvfb printed no display number: {number:?}");
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/standin_window.py");
        let mut window = Command::new("python3")
            .args([fixture, TITLE])
            .env("DISPLAY", &display)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the stand-in window (python3 with tkinter)");
        let mut ready = String::new();
        BufReader::new(window.stdout.take().expect("window stdout")).read_line(&mut ready).expect("the window's ready line");
        let window = Killed(window);
        assert_eq!(ready.trim(), "ready", "the stand-in window did not start");
        let shown = wait_until(WAIT, || {
            let out = Command::new("xdotool").args(["search", "--onlyvisible", "--name", TITLE]).env("DISPLAY", &display).output().ok()?;
            (out.status.success() && !out.stdout.is_empty()).then_some(())
        });
        assert!(shown.is_some(), "the stand-in window is not shown on {display}");
        Desktop { display, _window: window, _xvfb: xvfb }
    }
}

impl Desktop {
    /// Owns the clipboard with `text` (xclip serves it in the background until another owner).
    fn clipboard_set(&self, text: &str) {
        use std::io::Write;
        let mut xclip = Command::new("xclip").args(["-selection", "clipboard"]).env("DISPLAY", &self.display).stdin(Stdio::piped()).spawn().expect("xclip");
        xclip.stdin.take().expect("xclip stdin").write_all(text.as_bytes()).expect("writing to xclip");
        assert!(xclip.wait().expect("xclip").success());
    }

    /// The clipboard's text.
    fn clipboard(&self) -> String {
        let out = Command::new("timeout").args(["5", "xclip", "-o", "-selection", "clipboard"]).env("DISPLAY", &self.display).output().expect("xclip -o");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The broker with the desktop controller and agent, on `display` (`None`: no DISPLAY at all).
fn broker(display: Option<&str>, extra: &[&str]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-bridge"));
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--in-memory", "--desktop-window", TITLE, "--desktop-agent", "desktop"]);
    cmd.args(["--desktop-stable-ms", "400", "--desktop-timeout-s", "8"]).args(extra);
    match display {
        Some(d) => cmd.env("DISPLAY", d),
        None => cmd.env_remove("DISPLAY"),
    };
    Server::spawn(cmd)
}

/// Calls `method` and answers its result, or `Err(code)`.
async fn call(ws: &mut Ws, method: &str, params: Value) -> Result<Value, String> {
    ws.send(json!({"type": "call", "ref": "c1", "method": method, "params": params})).await;
    let result = ws.recv_type("result").await;
    if result["ok"] == true {
        Ok(result["result"].clone())
    } else {
        Err(result["error"]["code"].as_str().unwrap_or("?").to_owned())
    }
}

/// The next message carrying `correlation_id`, skipping others, within `within`.
async fn reply(ws: &mut Ws, correlation_id: &str, within: Duration) -> Value {
    tokio::time::timeout(within, async {
        loop {
            let m = ws.recv_msg().await;
            if m["correlation_id"] == correlation_id {
                return m;
            }
        }
    })
    .await
    .expect("the desktop agent's reply")
}

#[tokio::test]
#[ignore = "needs Xvfb (apt xvfb)"]
async fn prompts_reach_the_window_and_answers_come_back_through_the_clipboard() {
    let desktop = Desktop::start();
    let server = broker(Some(&desktop.display), &["--desktop-rooms", "lab"]);

    // The call; what was on the clipboard before is there again after it.
    desktop.clipboard_set("saved before the prompt");
    let mut alice = Ws::connect(&server, "alice").await;
    let answer = call(&mut alice, "desktop.prompt", json!({"text": "hello there", "timeout_s": 8})).await;
    assert_eq!(answer, Ok(json!({"response": "echo: hello there"})), "logs:\n{}", server.logs());
    assert_eq!(desktop.clipboard(), "saved before the prompt");

    // A direct message to the desktop agent: the reply carries the request's id.
    let sent = alice.send_msg("desktop", "prompt", json!({"text": "what is 2+2?"})).await;
    let id = sent["message_id"].as_str().expect("message_id").to_owned();
    let m = reply(&mut alice, &id, Duration::from_secs(15)).await;
    assert_eq!((m["from"].as_str(), m["type"].as_str()), (Some("desktop"), Some("response")), "{m}");
    assert_eq!(m["payload"], json!({"text": "echo: what is 2+2?"}));

    // In a room the desktop agent is a member of, the reply goes into the room.
    // The agent creates lab when it connects: alice joins once it exists, then sees the agent in it.
    let joined = tokio::time::timeout(WAIT, async {
        loop {
            let _ = call(&mut alice, "room.join", json!({"room": "lab"})).await;
            if let Ok(v) = call(&mut alice, "room.members", json!({"room": "lab"})).await {
                if v.to_string().contains("\"desktop\"") {
                    return v;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the desktop agent joins lab; logs:\n{}", server.logs()));
    alice.send(json!({"type": "send", "room": "lab", "msg_type": "prompt", "payload": "in the room", "ref": "r-room"})).await;
    let sent = alice.recv_type("sent").await;
    let id = sent["message_id"].as_str().expect("message_id").to_owned();
    let m = reply(&mut alice, &id, Duration::from_secs(15)).await;
    assert_eq!((m["from"].as_str(), m["room"].as_str()), (Some("desktop"), Some("lab")), "{m} (members {joined})");
    assert_eq!(m["payload"], json!({"text": "echo: in the room"}));

    // No window of that title.
    let missing = call(&mut alice, "desktop.prompt", json!({"text": "x", "window": "No Such Window"})).await;
    assert_eq!(missing, Err("no_window".into()));
}

#[tokio::test]
#[ignore = "needs Xvfb (apt xvfb)"]
async fn without_a_display_prompts_fail_with_no_display() {
    let server = broker(None, &[]);
    let mut alice = Ws::connect(&server, "alice").await;
    assert_eq!(call(&mut alice, "desktop.prompt", json!({"text": "hello"})).await, Err("no_display".into()));
    let sent = alice.send_msg("desktop", "prompt", json!("hello")).await;
    let id = sent["message_id"].as_str().expect("message_id").to_owned();
    let m = reply(&mut alice, &id, WAIT).await;
    assert_eq!(m["payload"]["error"]["code"], "no_display", "{m}");
}

#[tokio::test]
#[ignore = "needs Xvfb (apt xvfb)"]
async fn typed_prompts_are_answered_too() {
    let desktop = Desktop::start();
    let server = broker(Some(&desktop.display), &["--desktop-input", "type"]);
    let mut alice = Ws::connect(&server, "alice").await;
    let answer = call(&mut alice, "desktop.prompt", json!({"text": "typed, key by key"})).await;
    assert_eq!(answer, Ok(json!({"response": "echo: typed, key by key"})), "logs:\n{}", server.logs());
}
