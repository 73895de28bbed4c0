//! Managed CLI agents (`agent.spawn`, `agent.execute`, `agent.stop`, `agent.managed`) against the
//! real binary with the stand-in agents of tests/managed/: a JSON answer, progress lines streamed
//! as `command_progress` events, a hang killed (with its grandchild) after the timeout, a crash
//! restarted with backoff (visible in `/admin/supervisors` and the log) until the circuit opens.

mod common;

use std::time::Duration;

use common::{Server, Ws};
use serde_json::{json, Value};

/// `agent_templates` naming each stand-in script.
fn templates() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/managed");
    json!({
        "echo": ["python3", format!("{dir}/echo_json.py"), "{prompt}"],
        "progress": ["bash", format!("{dir}/progress.sh"), "{prompt}"],
        "hang": ["bash", format!("{dir}/hang.sh"), "{prompt}"],
        "crash": ["bash", format!("{dir}/crash.sh"), "{prompt}"],
    })
    .to_string()
}

fn start() -> Server {
    Server::start(&["--agent-templates", &templates(), "--agent-backoff-ms", "50", "--agent-breaker-threshold", "3"])
}

/// Makes a call over `ws`; the events that come first are kept in `events`.
async fn call(ws: &mut Ws, method: &str, params: Value, events: &mut Vec<Value>) -> Result<Value, String> {
    let r = format!("c-{method}");
    ws.send(json!({"type": "call", "ref": r, "method": method, "params": params})).await;
    loop {
        let f = ws.try_recv(Duration::from_secs(20)).await.unwrap_or_else(|| panic!("{method}: no answer"));
        if f["type"] == "event" {
            events.push(f);
        } else if f["type"] == "result" && f["ref"] == r.as_str() {
            return if f["ok"] == true { Ok(f["result"].clone()) } else { Err(f["error"]["code"].as_str().unwrap_or("?").to_owned()) };
        }
    }
}

async fn spawn(ws: &mut Ws, name: &str, template: &str, extra: Value) {
    let mut params = json!({"name": name, "template": template});
    params.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let r = call(ws, "agent.spawn", params, &mut Vec::new()).await;
    assert_eq!(r.unwrap()["spawned"], true);
}

#[tokio::test]
async fn a_json_answer_is_returned_parsed() {
    let server = start();
    let mut ws = Ws::connect(&server, "me").await;
    spawn(&mut ws, "echo", "echo", json!({})).await;
    let prompt = "it's a \"quoted\" $(prompt); rm -rf /";
    let r = call(&mut ws, "agent.execute", json!({"name": "echo", "prompt": prompt}), &mut Vec::new()).await.unwrap();
    assert_eq!(r["format"], "json", "{r}");
    assert_eq!(r["result"]["result"], format!("echo: {prompt}"), "the prompt is one argv element, no shell");
    assert_eq!((r["exit_code"].clone(), r["attempts"].clone()), (json!(0), json!(1)));
    let listed = call(&mut ws, "agent.managed", json!({}), &mut Vec::new()).await.unwrap();
    assert_eq!(listed["agents"][0]["name"], "echo", "{listed}");
    assert_eq!(listed["agents"][0]["succeeded"], 1);
    // Over HTTP too, through the same table.
    let (status, body) = server.post("/api/call", &json!({"method": "agent.execute", "from": "me", "params": {"name": "echo", "prompt": "hi"}})).await;
    assert_eq!((status, body["result"]["result"]["result"].clone()), (200, json!("echo: hi")), "{body}");
    let stopped = call(&mut ws, "agent.stop", json!({"name": "echo"}), &mut Vec::new()).await.unwrap();
    assert_eq!(stopped["stopped"], true);
    let gone = call(&mut ws, "agent.execute", json!({"name": "echo", "prompt": "x"}), &mut Vec::new()).await;
    assert_eq!(gone, Err("not_found".into()));
    let unknown = call(&mut ws, "agent.spawn", json!({"name": "x", "template": "nope"}), &mut Vec::new()).await;
    assert_eq!(unknown, Err("not_found".into()));
}

#[tokio::test]
async fn progress_lines_are_streamed_as_events() {
    let server = start();
    let mut ws = Ws::connect(&server, "me").await;
    spawn(&mut ws, "worker", "progress", json!({})).await;
    let mut events = Vec::new();
    let r = call(&mut ws, "agent.execute", json!({"name": "worker", "prompt": "build"}), &mut events).await.unwrap();
    assert_eq!(r["format"], "text");
    assert!(r["result"].as_str().unwrap().ends_with("done\n"), "{r}");
    let lines: Vec<&str> = events.iter().filter(|e| e["event"] == "command_progress").map(|e| e["data"]["line"].as_str().unwrap()).collect();
    assert_eq!(lines, ["step 1 of 3: build", "step 2 of 3: build", "step 3 of 3: build", "done"], "{events:?}");
    assert!(events.iter().all(|e| e["data"]["agent"] == "worker"));
}

fn alive(pid: u32) -> bool {
    // A zombie is gone for our purpose (killed, not yet reaped by its parent).
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[tokio::test]
async fn a_hang_is_killed_with_its_group_after_the_timeout() {
    let server = start();
    let mut ws = Ws::connect(&server, "me").await;
    spawn(&mut ws, "stuck", "hang", json!({"timeout_s": 1})).await;
    let mut events = Vec::new();
    let started = std::time::Instant::now();
    let r = call(&mut ws, "agent.execute", json!({"name": "stuck", "prompt": "x"}), &mut events).await;
    assert_eq!(r, Err("timeout".into()));
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(8), "SIGTERM ignored: SIGKILL after the grace ({took:?})");
    let line = events.iter().find_map(|e| e["data"]["line"].as_str().filter(|l| l.starts_with("pids "))).expect("the pids line");
    let pids: Vec<u32> = line.split(' ').skip(1).map(|p| p.parse().unwrap()).collect();
    let gone = common::poll_until(Duration::from_secs(5), || async { pids.iter().all(|p| !alive(*p)).then_some(()) }).await;
    assert!(gone.is_some(), "the script and its grandchild are killed: {pids:?}");
}

#[tokio::test]
async fn a_crash_restarts_with_backoff_until_the_circuit_opens() {
    let server = start();
    let mut ws = Ws::connect(&server, "me").await;
    spawn(&mut ws, "crasher", "crash", json!({})).await;
    let started = std::time::Instant::now();
    let r = call(&mut ws, "agent.execute", json!({"name": "crasher", "prompt": "x"}), &mut Vec::new()).await;
    assert_eq!(r, Err("agent_failed".into()), "three attempts, all crashed");
    assert!(started.elapsed() >= Duration::from_millis(150), "backoff of 50 ms, then 100 ms: {:?}", started.elapsed());
    let (_, tree) = server.get("/admin/supervisors").await;
    let group = tree["children"].as_array().unwrap().iter().find(|c| c["name"] == "managed").expect("the managed group node");
    let node = group["children"].as_array().unwrap().iter().find(|c| c["name"] == "managed:crasher").expect("the agent under it").clone();
    assert!(node["restarts"].as_u64().unwrap() >= 3, "{node}");
    assert!(node["last_reason"].as_str().unwrap().contains("exited with 3"), "{node}");
    let log = server.wait_log("managed:crasher").await;
    assert!(log.contains("actor restarting"), "{log}");
    let refused = call(&mut ws, "agent.execute", json!({"name": "crasher", "prompt": "x"}), &mut Vec::new()).await;
    assert_eq!(refused, Err("circuit_open".into()));
    let listed = call(&mut ws, "agent.managed", json!({}), &mut Vec::new()).await.unwrap();
    assert_eq!(listed["agents"][0]["circuit"], "open", "{listed}");
}

#[tokio::test]
async fn spawn_and_stop_need_admin() {
    let dir = tempfile::tempdir().unwrap();
    let [writer, admin] = common::create_keys(dir.path(), [("me", "read,write"), ("ops", "read,write,admin")]);
    let data = format!("--data-dir={}", dir.path().display());
    let server = Server::start(&[&data, "--require-auth", "--agent-templates", &templates()]);
    let mut me = Ws::connect_query(&server, "me", &format!("token={writer}")).await;
    let refused = call(&mut me, "agent.spawn", json!({"name": "echo", "template": "echo"}), &mut Vec::new()).await;
    assert_eq!(refused, Err("forbidden".into()));
    let mut ops = Ws::connect_query(&server, "ops", &format!("token={admin}")).await;
    spawn(&mut ops, "echo", "echo", json!({})).await;
    let r = call(&mut me, "agent.execute", json!({"name": "echo", "prompt": "hi"}), &mut Vec::new()).await.unwrap();
    assert_eq!(r["result"]["result"], "echo: hi");
    assert_eq!(call(&mut me, "agent.stop", json!({"name": "echo"}), &mut Vec::new()).await, Err("forbidden".into()));
}

/// `agent-bridge agent …` and `agent-bridge code run` (with `--json`): the calls' results.
fn cli(server: &Server, args: &[&str]) -> Value {
    let url = format!("ws://127.0.0.1:{}", server.port);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_agent-bridge"));
    cmd.args(&args[..2]).args(["--url", &url, "--client-id", "cli", "--json"]).args(&args[2..]);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let out = common::wait_output(cmd.spawn().unwrap(), common::WAIT, &format!("{args:?}"));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[tokio::test]
async fn the_command_line_spawns_executes_and_stops() {
    let server = Server::start(&["--agent-templates", &templates(), "--sandbox"]);
    assert_eq!(cli(&server, &["agent", "spawn", "echo", "--template", "echo", "--env", "A=1"])["spawned"], true);
    assert_eq!(cli(&server, &["agent", "execute", "echo", "two words"])["result"]["result"], "echo: two words");
    assert_eq!(cli(&server, &["agent", "list"])["agents"][0]["executions"], 1);
    assert_eq!(cli(&server, &["agent", "stop", "echo"])["stopped"], true);
    assert_eq!(cli(&server, &["code", "run", "--language", "bash", "echo $((6 * 7))"])["stdout"], "42\n");
}

#[tokio::test]
async fn stop_ends_a_running_prompt_and_its_processes() {
    let server = start();
    let mut ws = Ws::connect(&server, "me").await;
    spawn(&mut ws, "long", "hang", json!({"timeout_s": 60})).await;
    ws.send(json!({"type": "call", "ref": "run", "method": "agent.execute", "params": {"name": "long", "prompt": "x"}})).await;
    let line = loop {
        let f = ws.recv().await;
        if let Some(l) = f["data"]["line"].as_str().filter(|l| l.starts_with("pids ")) {
            break l.to_owned();
        }
    };
    let pids: Vec<u32> = line.split(' ').skip(1).map(|p| p.parse().unwrap()).collect();
    let mut ops = Ws::connect(&server, "ops").await;
    assert_eq!(call(&mut ops, "agent.stop", json!({"name": "long"}), &mut Vec::new()).await.unwrap()["stopped"], true);
    let answer = loop {
        let f = ws.try_recv(Duration::from_secs(10)).await.expect("the running call is answered");
        if f["type"] == "result" {
            break f;
        }
    };
    assert_eq!(answer["error"]["code"], "stopped", "{answer}");
    let gone = common::poll_until(Duration::from_secs(5), || async { pids.iter().all(|p| !alive(*p)).then_some(()) }).await;
    assert!(gone.is_some(), "stopped with its grandchild: {pids:?}");
}

#[tokio::test]
async fn the_mcp_tools_spawn_execute_and_run_code() {
    let server = Server::start(&["--agent-templates", &templates(), "--sandbox"]);
    let url = format!("ws://127.0.0.1:{}", server.port);
    let tool = |name: &str, args: Value| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_agent-bridge"));
        cmd.args(["mcp", "--url", &url, "--client-id", "claude"]).env("RUST_LOG", "warn").stderr(std::process::Stdio::null());
        common::mcp_tool_call(&mut cmd, name, args).0.to_string()
    };
    assert!(tool("spawn_agent", json!({"name": "echo", "template": "echo"})).contains("spawned"));
    let answer = tool("execute_agent", json!({"name": "echo", "prompt": "from mcp"}));
    assert!(answer.contains("echo: from mcp"), "{answer}");
    let code = tool("run_code", json!({"language": "python", "code": "print(2 ** 10)"}));
    assert!(code.contains("1024"), "{code}");
}
