//! README.md as written: every shell block (```sh), every `$ command` of a plain block and every
//! MCP host configuration (`"mcpServers"` JSON) is listed here with how it is exercised, and runs
//! against a real broker on loopback. A block that changes, appears or disappears in the README
//! fails this test until it is listed here, so the README cannot drift from what works.
//!
//! Commands run in bash with `agent-bridge` on `PATH` (the binary under test) and `BRIDGE_URL` set,
//! in a temporary directory; the only edits are the broker's address (`localhost:5001` and
//! `127.0.0.1:5001` become the test broker's port) and, for the security block, paths and ids
//! (see [`security_block`]). `claude` itself is not installed here: its lines are checked for
//! the argument order Claude Code needs and their MCP command is run as Claude Code would run it.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use common::{Server, WAIT};
use serde_json::{json, Value};

const README: &str = include_str!("../README.md");

/// How a block is exercised.
enum How {
    /// Run the block; it must exit 0 and print each of these.
    Run(&'static [&'static str]),
    /// Start the block and keep it running while the others run; at the end it must have printed
    /// each of these.
    Background(&'static [&'static str]),
    /// Not run here, for the reason given (and where it is exercised instead).
    Elsewhere(&'static str),
    /// The API key walk-through of the security section: see [`security_block`].
    Security,
    /// `claude mcp add …` lines: see [`claude_lines`].
    Claude,
}

/// Every shell block of the README, verbatim, in README order.
const BLOCKS: &[(&str, How)] = &[
    (
        "cargo run --release -- serve          # the broker on 127.0.0.1:5001, data in ~/.local/share/agent-bridge\n\
         cargo test --workspace -- --include-ignored --skip known_limitation   # every test\n",
        How::Elsewhere(
            "`serve` is what every black-box test starts (tests/common), here in a debug build: tests never build \
             --release; the test command is the suite this file belongs to (and what .ci/run runs)",
        ),
    ),
    ("cargo install --path .\n", How::Elsewhere("installs the binary this test runs; installing into ~/.cargo/bin from a test would change the machine")),
    ("agent-bridge listen --client-id code\n", How::Background(&["#1 browser → code [command] {\"text\":\"run the tests\"}"])),
    (
        "curl -s localhost:5001/api/send -H 'content-type: application/json' \\\n  \
         -d '{\"from\":\"browser\",\"to\":\"code\",\"type\":\"command\",\"payload\":{\"text\":\"run the tests\"}}'\n",
        How::Run(&["\"status\":\"delivered\"", "\"recipients\":1"]),
    ),
    ("agent-bridge send --client-id code --to browser --type result '{\"ok\":true}'\n", How::Run(&["sent msg-", "to browser"])),
    ("curl -s 'localhost:5001/api/messages?to=browser&since=0&wait=30'\n", How::Run(&["\"payload\":{\"ok\":true}", "\"next_since\":1"])),
    (
        "agent-bridge admin email-subscribe --to ops@example.org --events member_joined,proposal_closed,task_updated --room lab --digest-seconds 300\n\
         agent-bridge admin email          # subscriptions: mails sent, failed, events pending for the digest\n",
        How::Run(&["em_", "300"]),
    ),
    (
        "agent-bridge admin github-repo lab octo-org/agents    # PUT /admin/github/repos/lab {\"repo\": \"octo-org/agents\"}\n\
         agent-bridge admin github-links                       # issues made: room, card or proposal, number, URL\n",
        How::Run(&["octo-org/agents", "(none)"]),
    ),
    (
        "# the first admin key, before the first start (the key is the last line)\n\
         ADMIN=$(agent-bridge keys create --data-dir /var/lib/agent-bridge --client-id ops --permissions admin | tail -n1)\n\
         agent-bridge serve --data-dir /var/lib/agent-bridge --bind 0.0.0.0:5001 &\n\
         # keys for agents, over HTTP while the broker runs\n\
         curl -s localhost:5001/admin/keys -H \"Authorization: Bearer $ADMIN\" -H 'content-type: application/json' \\\n  \
         -d '{\"client_id\":\"browser-*\",\"permissions\":[\"read\",\"write\"],\"rate_limit_per_hour\":3600,\"expires_days\":30}'\n\
         curl -s localhost:5001/admin/keys -H \"Authorization: Bearer $ADMIN\"          # usage: requests, messages, last used\n\
         curl -s -X DELETE localhost:5001/admin/keys/<id> -H \"Authorization: Bearer $ADMIN\"\n\
         agent-bridge keys list --data-dir DIR; agent-bridge keys revoke --data-dir DIR <id>   # offline\n",
        How::Security,
    ),
    (
        "cargo bench --bench throughput     # issue 2 and 9: sender → receiver over WebSocket, windowed and flat out (tests/bench/README.md)\n\
         cargo bench --bench durable        # issue 3: require_ack on disk, 1→1 and 100→100, latency, soak\n\
         cargo bench --bench rooms          # rooms: one room, 100 members, fan-out\n\
         cargo bench --bench pools          # issue 14: one sender → a pool of 10 agents, require_ack, round robin\n",
        How::Elsewhere("benchmarks need a release build and a quiet machine; they are run by hand, not by tests"),
    ),
    (
        "cargo bench --bench throughput -- flat-memory flat-disk flat-ack flat-nopersist flat-4pairs\n",
        How::Elsewhere("benchmarks need a release build and a quiet machine; they are run by hand, not by tests"),
    ),
    (
        "cargo bench --bench throughput -- flat-memory flat-batch   # single frames vs send_batch of 100, in memory\n",
        How::Elsewhere("benchmarks need a release build and a quiet machine; they are run by hand, not by tests"),
    ),
    (
        "cargo bench --bench idle                      # 10,000 connections (as many as the open-file limit allows), 10 s idle\n\
         MIMALLOC_PURGE_DELAY=0 cargo bench --bench idle   # mimalloc returning freed pages at once (see \"RSS after a burst\")\n",
        How::Elsewhere("benchmarks need a release build and a quiet machine; they are run by hand, not by tests"),
    ),
    (
        "helm install ab helm/agent-bridge --namespace agents --create-namespace \\\n\
           --set-json 'config.cors_origins=[\"https://claude.ai\"]' \\\n\
           --set ingress.enabled=true --set ingress.className=nginx --set 'ingress.hosts[0]=bridge.example.com'\n\
         kubectl -n agents rollout status statefulset/ab-agent-bridge\n\
         export AB_ADMIN_KEY=$(kubectl -n agents get secret ab-agent-bridge-auth -o jsonpath='{.data.bootstrap-admin-key}' | base64 -d)\n\
         kubectl -n agents port-forward svc/ab-agent-bridge 5001:5001 &\n\
         curl -s -X POST http://127.0.0.1:5001/admin/keys -H \"Authorization: Bearer $AB_ADMIN_KEY\" \\\n\
           -H 'Content-Type: application/json' -d '{\"client_id\": \"agent-*\", \"permissions\": [\"read\", \"write\"]}'\n",
        How::Elsewhere(
            "needs a Kubernetes cluster and the helm binary; tests/helm_chart.rs renders the chart with these values' kinds \
             (lists, ingress, the generated bootstrap Secret), boots the broker from its TOML and makes the first key with \
             the bootstrap key over HTTP",
        ),
    ),
    (
        "agent-bridge send --client-id code --to browser --type command '{\"text\": \"hello\"}'   # also: all, pool:NAME, --room R\n\
         agent-bridge send --client-id code --to browser @payload.json     # or - (or a pipe) for stdin; text that is not JSON is sent as a string\n\
         agent-bridge listen --client-id browser --json --auto-ack --cursor-file browser.cursor --count 1   # JSON lines, resumable\n\
         agent-bridge ask --client-id code --to reviewer --timeout 60 'Is this diff ok?'          # prints the reply\n\
         agent-bridge room create lab --client-id me --topic \"release 1.2\"; agent-bridge room join lab --client-id me; agent-bridge room say lab --client-id me hi\n\
         agent-bridge room history lab --client-id me --json; agent-bridge room members lab --client-id me; agent-bridge status\n\
         agent-bridge call room.topic --client-id me '{\"room\": \"lab\", \"topic\": \"release 1.3\"}'   # any call; agent-bridge call --list lists them\n",
        How::Run(&["to browser (queued", "\"type\":\"command\"", "looks good", "created room lab", "room lab as", "to room lab", "MEMBER", "uptime",
                   "\"topic\": \"release 1.3\""]),
    ),
    (
        "agent-bridge listen --client-id reviewer --json --types question | while read -r m; do\n  \
         agent-bridge send --client-id reviewer --to \"$(jq -r .from <<<\"$m\")\" --type answer \\\n    \
         --correlation-id \"$(jq -r '.correlation_id // .id' <<<\"$m\")\" '\"looks good\"'\n\
         done\n",
        How::Background(&["sent msg-", "to code"]),
    ),
    (
        "agent-bridge config generate > agent-bridge.toml; agent-bridge config check agent-bridge.toml\n\
         agent-bridge config print --config agent-bridge.toml --bind 0.0.0.0:5001 --require-auth\n\
         BRIDGE_JWT_SECRET=0123456789abcdef0123456789abcdef agent-bridge token --client-id code --permissions read,write --ttl 3600\n\
         agent-bridge version --json\n",
        How::Run(&["agent-bridge.toml: ok", "bind = \"0.0.0.0:5001\"", "require_auth = true", "eyJ", "\"name\":\"agent-bridge\""]),
    ),
    (
        "claude mcp add agent-bridge -- agent-bridge mcp --url ws://127.0.0.1:5001 --client-id claude-code\n\
         claude mcp add agent-bridge -e BRIDGE_TOKEN=your-api-key -- agent-bridge mcp --client-id claude-code   # with auth\n",
        How::Claude,
    ),
    ("agent-bridge search --client-id code '\"run the tests\"'\n", How::Run(&["browser → code [command]", "run the tests"])),
];

/// The `$ command` lines of plain blocks, with the start of what they print (up to the `…`).
const PROMPTS: &[(&str, &str)] = &[(
    "agent-bridge serve --bind 0.0.0.0:5001",
    "agent-bridge: configuration error: invalid setting: refusing to listen on 0.0.0.0:5001 without authentication: ",
)];

/// The contents of every fenced block whose info string is `lang`.
fn blocks(lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in README.lines() {
        match &mut current {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    current = Some((info.trim().to_owned(), String::new()));
                }
            }
            Some((info, text)) => {
                if line.starts_with("```") {
                    if info == lang {
                        out.push(std::mem::take(text));
                    }
                    current = None;
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    out
}

/// The temporary directory the commands run in, with `agent-bridge` on `PATH`.
struct Shell {
    dir: tempfile::TempDir,
    path: String,
    url: String,
    port: u16,
}

impl Shell {
    fn new(server: &Server) -> Shell {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin dir");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_agent-bridge"), bin.join("agent-bridge")).expect("symlink");
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        std::fs::write(dir.path().join("payload.json"), r#"{"text": "from a file"}"#).expect("payload.json");
        Shell { dir, path, url: format!("ws://127.0.0.1:{}", server.port), port: server.port }
    }

    /// The block as bash will run it: the broker's address is the test broker's.
    fn script(&self, block: &str) -> String {
        let here = format!("127.0.0.1:{}", self.port);
        block.replace("localhost:5001", &here).replace("127.0.0.1:5001", &here)
    }

    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(format!("set -euo pipefail\n{script}")).current_dir(self.dir.path());
        for (key, _) in std::env::vars() {
            if key.starts_with("BRIDGE_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PATH", &self.path)
            .env("BRIDGE_URL", &self.url)
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1");
        cmd
    }

    /// Runs to completion within 3 × WAIT; (exit code, stdout + stderr).
    fn run(&self, script: &str) -> (Option<i32>, String) {
        let child = self.command(script).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("bash");
        let out = common::wait_output(child, WAIT * 3, script);
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// A background block: its output lines, and the process (killed with its group on drop).
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: String,
}

impl Running {
    fn start(shell: &Shell, script: &str) -> Running {
        use std::os::unix::process::CommandExt;
        let mut cmd = shell.command(script);
        cmd.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("bash");
        let lines = common::lines_of(child.stdout.take().expect("stdout"));
        Running { child, lines, seen: String::new() }
    }

    /// Waits until everything expected has been printed.
    fn expect(&mut self, expected: &[&str], what: &str) {
        let deadline = Instant::now() + WAIT;
        while !expected.iter().all(|e| self.seen.contains(e)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                Err(_) => panic!("{what}: expected {expected:?} in its output:\n{}", self.seen),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // The whole pipeline (bash, listen, the loop's sends) is one process group.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{pid}")]).status();
        let _ = self.child.wait();
    }
}

#[test]
fn every_shell_block_of_the_readme_is_listed_here() {
    let found = blocks("sh");
    let listed: Vec<&str> = BLOCKS.iter().map(|(b, _)| *b).collect();
    for b in &found {
        assert!(listed.contains(&b.as_str()), "a shell block of README.md is not exercised by tests/readme.rs; add it to BLOCKS:\n{b}");
    }
    for b in &listed {
        assert!(found.iter().any(|f| f == b), "tests/readme.rs lists a block README.md no longer has; update BLOCKS:\n{b}");
    }
    let prompts: Vec<String> = blocks("").iter().flat_map(|b| b.lines().filter_map(|l| l.strip_prefix("$ ").map(str::to_owned)).collect::<Vec<_>>()).collect();
    assert_eq!(prompts, PROMPTS.iter().map(|(c, _)| c.to_string()).collect::<Vec<_>>(), "the `$ command` lines of README.md");
}

#[test]
fn the_readme_commands_work_against_a_real_broker() {
    let server = Server::start(&[]);
    let shell = Shell::new(&server);
    // Background blocks first: the tour's listener, and the responder that answers `ask`.
    let mut running: Vec<(Running, &[&str], &str)> = BLOCKS
        .iter()
        .filter_map(|(b, how)| match how {
            How::Background(expected) => Some((Running::start(&shell, &shell.script(b)), *expected, *b)),
            _ => None,
        })
        .collect();
    // They are up once their sessions are: the broker lists them.
    wait_sessions(&server, &["code", "reviewer"]);
    for (block, how) in BLOCKS {
        match how {
            How::Run(expected) => {
                let script = shell.script(block);
                let (code, out) = shell.run(&script);
                assert_eq!(code, Some(0), "README block failed:\n{block}\n--- output\n{out}");
                for e in *expected {
                    assert!(out.contains(e), "README block: expected {e:?} in the output:\n{block}\n--- output\n{out}");
                }
            }
            How::Security => security_block(&shell, block),
            How::Claude => claude_lines(&shell, block),
            How::Elsewhere(why) => assert!(!why.is_empty(), "say why a block is not run here"),
            How::Background(_) => {}
        }
    }
    for (r, expected, block) in &mut running {
        r.expect(expected, block);
    }
    // The MCP host configurations, as Claude Code (`.mcp.json`) and Claude Desktop run them.
    let configs: Vec<Value> = blocks("json").iter().filter_map(|b| serde_json::from_str::<Value>(b).ok()).filter(|v| v.get("mcpServers").is_some()).collect();
    assert_eq!(configs.len(), 2, "the .mcp.json and claude_desktop_config.json examples");
    for c in configs {
        let server_conf = &c["mcpServers"]["agent-bridge"];
        let command = server_conf["command"].as_str().expect("command");
        assert!(command == "agent-bridge" || command.ends_with("/agent-bridge"), "{c}");
        let args: Vec<String> = server_conf["args"].as_array().expect("args").iter().map(|a| shell.script(a.as_str().expect("string"))).collect();
        let env: Vec<(String, String)> =
            server_conf["env"].as_object().map(|e| e.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect()).unwrap_or_default();
        mcp_session(&shell, &args, &env);
    }
    for (command, output) in PROMPTS {
        let (code, out) = shell.run(command);
        assert_eq!(code, Some(2), "{command}: {out}");
        assert!(out.lines().any(|l| l.starts_with(output)), "{command}: the README shows {output:?}…, it printed:\n{out}");
    }
}

/// Waits until each client id has a session.
fn wait_sessions(server: &Server, ids: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(common::eventually("the background listeners", || async {
        let (_, body) = server.get("/admin/clients").await;
        let text = body.to_string();
        ids.iter().all(|id| text.contains(&format!("\"{id}\""))).then_some(())
    }));
}

/// The security section's API key walk-through, in order, on a data directory and a port of its
/// own: `/var/lib/agent-bridge` and `DIR` are a temporary directory, `0.0.0.0:5001` is loopback
/// (tests use loopback only), `<id>` is the id of the key the walk-through created; the broker
/// started with `&` is awaited before the HTTP calls and stopped before the offline commands.
fn security_block(shell: &Shell, block: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let data = shell.dir.path().join("keys-data");
    let mut script = String::new();
    for line in block.replace("\\\n", "").lines() {
        let line = line
            .replace("/var/lib/agent-bridge", &data.display().to_string())
            .replace(" DIR", &format!(" {}", data.display()))
            .replace("0.0.0.0:5001", &format!("127.0.0.1:{port}"))
            .replace("localhost:5001", &format!("127.0.0.1:{port}"))
            .replace("<id>", "$ID");
        if line.contains("keys list") {
            script.push_str("kill $SERVE; wait $SERVE || true\n");
        }
        if line.contains("-X DELETE") {
            script.push_str(&format!(
                "ID=$(curl -s 127.0.0.1:{port}/admin/keys -H \"Authorization: Bearer $ADMIN\" | jq -r '.keys[] | select(.client_id == \"browser-*\") | .id')\n"
            ));
        }
        script.push_str(&line);
        script.push('\n');
        if line.trim_end().ends_with('&') {
            script.push_str(&format!(
                "SERVE=$!\nfor _ in $(seq 200); do curl -sf 127.0.0.1:{port}/health/live >/dev/null && break; sleep 0.05; done\n"
            ));
        }
    }
    let (code, out) = shell.run(&script);
    assert_eq!(code, Some(0), "the security block failed:\n{script}\n--- output\n{out}");
    for e in ["\"key\":\"abk_", "\"client_id\":\"browser-*\"", "\"requests\"", "revoked"] {
        assert!(out.contains(e), "expected {e:?}:\n{script}\n--- output\n{out}");
    }
}

/// `claude mcp add NAME [-e KEY=VALUE]... -- COMMAND ARGS...`: Claude Code's `-e` takes every
/// value up to the next option, so the name must come before it ("Invalid environment variable
/// format" otherwise). Checks that order, then runs the command as Claude Code would.
fn claude_lines(shell: &Shell, block: &str) {
    for line in block.lines() {
        let line = line.split("   #").next().unwrap_or(line).trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&words[..3], ["claude", "mcp", "add"], "{line}");
        assert_eq!(words[3], "agent-bridge", "the server's name comes right after `add`: {line}");
        let dashes = words.iter().position(|w| *w == "--").expect("`--` before the command");
        let mut env = Vec::new();
        let mut i = 4;
        while i < dashes {
            assert_eq!(words[i], "-e", "only -e KEY=VALUE between the name and `--`: {line}");
            let (k, v) = words[i + 1].split_once('=').expect("KEY=VALUE");
            assert!(!k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{line}");
            env.push((k.to_owned(), v.to_owned()));
            i += 2;
        }
        assert_eq!(words[dashes + 1], "agent-bridge", "{line}");
        let args: Vec<String> = words[dashes + 2..].iter().map(|w| shell.script(w)).collect();
        mcp_session(shell, &args, &env);
    }
}

/// Runs `agent-bridge ARGS` as an MCP host does (stdio, env) and calls the `status` tool: without
/// a token it is connected; with the README's placeholder token the broker refuses it and the
/// tool says authentication failed.
fn mcp_session(shell: &Shell, args: &[String], env: &[(String, String)]) {
    assert_eq!(args.first().map(String::as_str), Some("mcp"), "{args:?}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-bridge"));
    cmd.args(args).current_dir(shell.dir.path());
    for (key, _) in std::env::vars() {
        if key.starts_with("BRIDGE_") {
            cmd.env_remove(key);
        }
    }
    // Without --url in the arguments the default would be port 5001: point it at the test broker.
    cmd.env("BRIDGE_URL", &shell.url).env("XDG_CONFIG_HOME", shell.dir.path().join("config")).env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (answer, _) = common::mcp_tool_call(cmd.stderr(Stdio::null()), "status", json!({}));
    let answer = answer.to_string();
    if env.iter().any(|(k, _)| k == "BRIDGE_TOKEN") {
        assert!(answer.contains("authentication failed"), "the placeholder token is sent, and refused: {answer}");
    } else {
        assert!(answer.contains("connected"), "{answer}");
        assert!(!answer.contains("authentication failed"), "{answer}");
    }
}
