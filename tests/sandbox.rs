//! The code sandbox (`code.run`) against the real binary (its `sandbox-exec` helper is the
//! binary itself): output captured for python, javascript and bash, the wall-clock timeout kills
//! the run, a fork bomb and a memory hog are contained by their rlimits, output is truncated at
//! the byte limit, and the sandbox is off unless enabled.

mod common;

use std::time::{Duration, Instant};

use common::{Server, Ws};
use serde_json::{json, Value};

async fn run(ws: &mut Ws, params: Value) -> Result<Value, String> {
    ws.send(json!({"type": "call", "ref": "r", "method": "code.run", "params": params})).await;
    loop {
        let f = ws.try_recv(Duration::from_secs(30)).await.expect("code.run answers");
        if f["type"] == "result" {
            return if f["ok"] == true { Ok(f["result"].clone()) } else { Err(f["error"]["code"].as_str().unwrap_or("?").to_owned()) };
        }
    }
}

fn start(extra: &[&str]) -> Server {
    let mut args = vec!["--sandbox", "--sandbox-nproc", "32", "--sandbox-memory-mb", "256", "--sandbox-max-output-bytes", "1000"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[tokio::test]
async fn output_is_captured_for_python_and_bash() {
    let server = start(&[]);
    let mut ws = Ws::connect(&server, "me").await;
    let py = run(&mut ws, json!({"language": "python", "code": "import os, sys\nprint(6 * 7)\nprint(os.environ.get('HOME') == os.getcwd(), sorted(os.environ))\nsys.stderr.write('warn\\n')\nsys.exit(int(input()))", "stdin": "4\n"})).await.unwrap();
    assert_eq!(py["exit_code"], 4, "{py}");
    let out = py["stdout"].as_str().unwrap();
    assert!(out.starts_with("42\nTrue "), "{py}");
    assert!(!out.contains("CARGO") && !out.contains("RUST"), "a scrubbed environment: {out}");
    assert_eq!((py["stderr"].clone(), py["truncated"].clone(), py["timed_out"].clone()), (json!("warn\n"), json!(false), json!(false)));
    let sh = run(&mut ws, json!({"language": "bash", "code": "echo hi from $0; pwd; kill -9 $$"})).await.unwrap();
    assert!(sh["stdout"].as_str().unwrap().starts_with("hi from main.sh\n/tmp/agent-bridge-sandbox-"), "{sh}");
    assert_eq!((sh["exit_code"].clone(), sh["signal"].clone()), (Value::Null, json!(9)), "{sh}");
}

#[tokio::test]
async fn output_is_captured_for_javascript() {
    let server = start(&[]);
    let mut ws = Ws::connect(&server, "me").await;
    let js = run(&mut ws, json!({"language": "javascript", "code": "console.log([1, 2, 3].map(x => x * 2).join(','))"})).await.unwrap();
    assert_eq!((js["stdout"].clone(), js["exit_code"].clone()), (json!("2,4,6\n"), json!(0)), "{js}");
}

#[tokio::test]
async fn the_timeout_kills_the_run() {
    let server = start(&[]);
    let mut ws = Ws::connect(&server, "me").await;
    let started = Instant::now();
    let r = run(&mut ws, json!({"language": "bash", "code": "trap '' TERM; echo started; sleep 30 & wait", "timeout_s": 1})).await.unwrap();
    assert_eq!((r["timed_out"].clone(), r["signal"].clone()), (json!(true), json!(9)), "{r}");
    assert_eq!(r["stdout"], "started\n");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_fork_bomb_is_contained() {
    let server = start(&[]);
    let mut ws = Ws::connect(&server, "me").await;
    let started = Instant::now();
    let r = run(&mut ws, json!({"language": "bash", "code": "bomb() { bomb | bomb & }; bomb; sleep 2; echo survived", "timeout_s": 5})).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "{r}");
    assert!(r["stderr"].as_str().unwrap().contains("Resource temporarily unavailable"), "the process limit held: {r}");
    // The broker still answers, and runs the next program normally.
    let next = run(&mut ws, json!({"language": "python", "code": "print('ok')"})).await.unwrap();
    assert_eq!(next["stdout"], "ok\n", "{next}");
}

#[tokio::test]
async fn a_memory_hog_is_contained() {
    let server = start(&[]);
    let mut ws = Ws::connect(&server, "me").await;
    let r = run(&mut ws, json!({"language": "python", "code": "x = bytearray(1024 * 1024 * 1024)\nprint('allocated')"})).await.unwrap();
    assert_ne!(r["exit_code"], 0, "{r}");
    assert!(r["stderr"].as_str().unwrap().contains("MemoryError"), "{r}");
    assert!(!r["stdout"].as_str().unwrap().contains("allocated"));
}

#[tokio::test]
async fn output_is_truncated_at_the_limit() {
    let server = start(&[]);
    let mut ws = Ws::connect(&server, "me").await;
    let r = run(&mut ws, json!({"language": "python", "code": "print('x' * 100000)"})).await.unwrap();
    assert_eq!((r["truncated"].clone(), r["exit_code"].clone()), (json!(true), json!(0)), "{r}");
    assert_eq!(r["stdout"].as_str().unwrap().len(), 1000);
}

#[tokio::test]
async fn disabled_by_default() {
    let server = Server::start(&[]);
    let mut ws = Ws::connect(&server, "me").await;
    assert_eq!(run(&mut ws, json!({"language": "python", "code": "print(1)"})).await, Err("disabled".into()));
    let (status, body) = server.post("/api/call", &json!({"method": "code.run", "from": "me", "params": {"language": "bash", "code": "id"}})).await;
    assert_eq!((status, body["code"].clone()), (400, json!("disabled")), "{body}");
    assert_eq!(run(&mut ws, json!({"language": "cobol", "code": "x"})).await, Err("invalid_params".into()));
}

#[tokio::test]
async fn the_network_is_isolated_as_root() {
    let server = start(&[]);
    let mut ws = Ws::connect(&server, "me").await;
    let code = format!("import socket\ntry:\n    socket.create_connection(('127.0.0.1', {}), timeout=2)\n    print('connected')\nexcept OSError as e:\n    print('refused', e)", server.port);
    let r = run(&mut ws, json!({"language": "python", "code": code})).await.unwrap();
    if r["network_isolated"] != true {
        // Not root, or no util-linux unshare: the run says so, and reaches the broker.
        assert_eq!(r["stdout"], "connected\n", "{r}");
        return;
    }
    assert!(r["stdout"].as_str().unwrap().starts_with("refused"), "the broker on the host's loopback is out of reach: {r}");
}
