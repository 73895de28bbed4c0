//! Rooms over real WebSockets and HTTP: five agents collaborating (messages, questions, the five
//! voting rules, the board, files), everything surviving `kill -9`, error codes, a room actor's
//! restart, HTTP-only members and slow members. In-process (`InProcess`) where only the wire is
//! under test; the real binary for kill -9, restarts, logs and metrics.

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use base64::Engine as _;
use common::{eventually, Endpoint, InProcess, Server, Ws, WAIT};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A room member over WebSocket that keeps the frames it is not waiting for.
struct Agent {
    name: String,
    ws: Ws,
    buf: VecDeque<Value>,
    refs: u64,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl Agent {
    async fn connect(server: &Endpoint, name: &str) -> Agent {
        Agent::connect_query(server, name, "").await
    }

    async fn connect_query(server: &Endpoint, name: &str, query: &str) -> Agent {
        Agent { name: name.into(), ws: Ws::connect_query(server, name, query).await, buf: VecDeque::new(), refs: 0 }
    }

    /// Calls a method; `Err(code)` for an error result. Other frames are kept.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.refs += 1;
        let r = format!("{}-{}", self.name, self.refs);
        self.ws.send(json!({"type": "call", "ref": r, "method": method, "params": params})).await;
        loop {
            let f = self.ws.recv().await;
            if f["type"] == "result" && f["ref"] == r.as_str() {
                return if f["ok"] == true { Ok(f["result"].clone()) } else { Err(f["error"]["code"].as_str().unwrap_or("?").to_owned()) };
            }
            self.buf.push_back(f);
        }
    }

    async fn ok(&mut self, method: &str, params: Value) -> Value {
        match self.call(method, params.clone()).await {
            Ok(v) => v,
            Err(code) => panic!("{} {method} {params} failed: {code}", self.name),
        }
    }

    async fn err(&mut self, method: &str, params: Value) -> String {
        match self.call(method, params.clone()).await {
            Ok(v) => panic!("{} {method} {params} succeeded: {v}", self.name),
            Err(code) => code,
        }
    }

    /// The first kept-or-arriving frame matching `pred`; others stay kept.
    async fn take(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.buf.iter().position(&pred) {
            return self.buf.remove(i).expect("index");
        }
        loop {
            let f = self.ws.try_recv(WAIT).await.unwrap_or_else(|| panic!("{} never saw {what}; kept: {:?}", self.name, self.buf));
            if pred(&f) {
                return f;
            }
            self.buf.push_back(f);
        }
    }

    /// The data of the next `event` frame named `name` (with `pred` on its data).
    async fn event_where(&mut self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.take(&format!("event {name}"), |f| f["type"] == "event" && f["event"] == name && pred(&f["data"])).await["data"].clone()
    }

    async fn event(&mut self, name: &str) -> Value {
        self.event_where(name, |_| true).await
    }

    async fn message(&mut self) -> Value {
        self.take("a message", |f| f["type"] == "message").await["message"].clone()
    }

    /// Sends a room message; returns the `sent` reply.
    async fn say(&mut self, room: &str, payload: Value) -> Value {
        self.refs += 1;
        let r = format!("{}-s{}", self.name, self.refs);
        self.ws.send(json!({"type": "send", "room": room, "msg_type": "chat", "payload": payload, "ref": r})).await;
        let f = self.take("sent", |f| (f["type"] == "sent" || f["type"] == "error") && f["ref"] == r.as_str()).await;
        assert_eq!(f["type"], "sent", "{} could not send to {room}: {f}", self.name);
        f
    }

    async fn join(&mut self, room: &str, role: Option<&str>, since: Option<u64>) -> Value {
        let mut frame = json!({"type": "join", "room": room});
        if let Some(r) = role {
            frame["role"] = json!(r);
        }
        if let Some(s) = since {
            frame["since"] = json!(s);
        }
        self.ws.send(frame).await;
        let f = self.take("joined", |f| (f["type"] == "event" && f["event"] == "joined") || f["type"] == "error").await;
        assert_eq!(f["type"], "event", "{} could not join {room}: {f}", self.name);
        f["data"].clone()
    }

    /// Everything that arrives within `d`, plus what was kept.
    async fn drain(&mut self, d: Duration) -> Vec<Value> {
        let mut out: Vec<Value> = self.buf.drain(..).collect();
        while let Some(f) = self.ws.try_recv(d).await {
            out.push(f);
        }
        out
    }
}

const ROLES: [&str; 5] = ["coordinator", "researcher", "coder", "reviewer", "tester"];

async fn team(server: &Endpoint) -> Vec<Agent> {
    let mut agents = Vec::new();
    for name in ROLES {
        agents.push(Agent::connect(server, name).await);
    }
    agents
}

/// Votes in order and returns the `proposal_closed` data every agent saw (all the same).
async fn run_vote(agents: &mut [Agent], params: Value, votes: &[(usize, &str)]) -> Value {
    let p = agents[0].ok("proposal.create", params).await;
    let id = p["proposal_id"].as_str().expect("id").to_owned();
    for a in agents.iter_mut() {
        let created = a.event_where("proposal_created", |d| d["proposal_id"] == id.as_str()).await;
        assert_eq!(created["status"], "open");
    }
    let mut closed_after = None;
    for (n, (i, vote)) in votes.iter().enumerate() {
        let v = agents[*i].ok("proposal.vote", json!({"room": "lab", "proposal_id": id, "vote": vote})).await;
        for a in agents.iter_mut() {
            let cast = a.event_where("vote_cast", |d| d["proposal_id"] == id.as_str() && d["client_id"] == ROLES[*i]).await;
            assert_eq!(cast["vote"], *vote);
        }
        if v["status"] == "closed" {
            closed_after = Some(n + 1);
            break;
        }
    }
    assert_eq!(closed_after, Some(votes.len()), "the proposal closes exactly at the last vote of {votes:?}");
    let mut seen = Vec::new();
    for a in agents.iter_mut() {
        seen.push(a.event_where("proposal_closed", |d| d["proposal_id"] == id.as_str()).await);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "every member sees the same proposal_closed");
    // Voting on a closed proposal is refused.
    assert_eq!(agents[4].err("proposal.vote", json!({"room": "lab", "proposal_id": id, "vote": "yes"})).await, "proposal_closed");
    seen.remove(0)
}

#[tokio::test]
async fn five_agents_collaborate_in_a_room() {
    let server = InProcess::with_args(&[]);
    let mut agents = team(&server).await;

    // The coordinator creates the room, then everyone joins with a role.
    let created = agents[0].ok("room.create", json!({"name": "lab", "topic": "ship the release"})).await;
    assert_eq!(created["name"], "lab");
    for i in 0..5 {
        let joined = agents[i].join("lab", Some(ROLES[i]), None).await;
        assert_eq!(joined["role"], ROLES[i]);
        assert_eq!(joined["room"], "lab");
        // Everyone already present sees the newcomer arrive, exactly once.
        for (j, a) in agents.iter_mut().enumerate().take(i) {
            let d = a.event_where("member_joined", |d| d["client_id"] == ROLES[i]).await;
            assert_eq!(d["role"], ROLES[i], "{} saw {} join", ROLES[j], ROLES[i]);
        }
    }
    let members = agents[2].ok("room.members", json!({"room": "lab"})).await;
    let roles: BTreeMap<String, (String, bool)> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["client_id"].as_str().unwrap_or_default().to_owned(), (m["role"].as_str().unwrap_or_default().to_owned(), m["online"] == true)))
        .collect();
    assert_eq!(roles.len(), 5);
    for r in ROLES {
        assert_eq!(roles[r], (r.to_owned(), true), "{r} is present with its role");
    }

    // A side channel for the coder and the reviewer.
    agents[2].ok("channel.create", json!({"room": "lab", "name": "review"})).await;
    for a in agents.iter_mut() {
        assert_eq!(a.event("channel_created").await["room"], "lab/review");
    }
    agents[2].join("lab/review", None, None).await;
    agents[3].join("lab/review", None, None).await;

    // Messages: each agent says one thing; each of the others receives it once, the sender never.
    let mut seqs = Vec::new();
    for i in 0..5 {
        let name = ROLES[i];
        let sent = agents[i].say("lab", json!({"text": format!("hello from {name}"), "by": name})).await;
        seqs.push(sent["seq"].as_u64().expect("seq"));
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5], "per-room seq");
    let ch = agents[2].say("lab/review", json!({"text": "diff attached", "by": "coder"})).await;
    assert_eq!(ch["seq"], 1, "a channel has its own stream");
    for (i, a) in agents.iter_mut().enumerate() {
        let frames = a.drain(Duration::from_millis(400)).await;
        let msgs: Vec<&Value> = frames.iter().filter(|f| f["type"] == "message").map(|f| &f["message"]).collect();
        let mut got: HashMap<(String, String), usize> = HashMap::new();
        for m in &msgs {
            *got.entry((m["room"].as_str().unwrap_or_default().into(), m["from"].as_str().unwrap_or_default().into())).or_default() += 1;
        }
        let mut want: HashMap<(String, String), usize> =
            ROLES.iter().filter(|r| **r != ROLES[i]).map(|r| (("lab".into(), (*r).into()), 1)).collect();
        if i == 3 {
            want.insert(("lab/review".into(), "coder".into()), 1);
        }
        assert_eq!(got, want, "{} received each message exactly once", ROLES[i]);
        for m in &msgs {
            assert!(m["to"].is_null(), "room messages have no `to`");
        }
        a.buf.extend(frames.into_iter().filter(|f| f["type"] != "message"));
    }

    // A question and its answer: everybody sees both.
    let q = agents[1].ok("question.ask", json!({"room": "lab", "text": "Which branch is the release on?"})).await;
    let qid = q["question_id"].as_str().expect("qid").to_owned();
    for a in agents.iter_mut() {
        assert_eq!(a.event("question_asked").await["question_id"], qid.as_str());
    }
    agents[2].ok("question.answer", json!({"room": "lab", "question_id": qid, "text": "release/1.0"})).await;
    for a in agents.iter_mut() {
        let d = a.event("question_answered").await;
        assert_eq!((d["question_id"].as_str(), d["answer"]["by"].as_str()), (Some(qid.as_str()), Some("coder")));
    }
    let open = agents[0].ok("question.list", json!({"room": "lab", "open": true})).await;
    assert_eq!(open["questions"].as_array().map(Vec::len), Some(0));
    let all = agents[0].ok("question.list", json!({"room": "lab"})).await;
    assert_eq!(all["questions"][0]["answers"][0]["text"], "release/1.0");

    // The five voting rules.
    let closed = run_vote(
        &mut agents,
        json!({"room": "lab", "text": "merge on Friday", "rule": "majority"}),
        &[(1, "no"), (1, "yes"), (2, "yes"), (3, "yes")],
    )
    .await;
    assert_eq!((closed["outcome"].as_str(), closed["reason"].as_str()), (Some("passed"), Some("decided")), "{closed}");
    assert_eq!(closed["tally"]["yes"], 3, "the changed vote replaced the first: {closed}");
    assert_eq!(closed["tally"]["no"], 0);

    let closed = run_vote(&mut agents, json!({"room": "lab", "text": "drop python 3.8", "rule": "consensus"}), &[(0, "yes"), (1, "yes"), (2, "no")])
        .await;
    assert_eq!(closed["outcome"], "rejected", "consensus fails at the first no: {closed}");

    let closed = run_vote(
        &mut agents,
        json!({"room": "lab", "text": "adopt the new linter", "rule": "veto"}),
        &[(0, "yes"), (1, "no"), (2, "no"), (3, "abstain"), (4, "yes")],
    )
    .await;
    assert_eq!((closed["outcome"].as_str(), closed["reason"].as_str()), (Some("passed"), Some("all_voted")), "no veto: {closed}");

    let closed = run_vote(
        &mut agents,
        json!({"room": "lab", "text": "coordinator decides the freeze", "rule": "weighted", "weights": {"coordinator": 5}}),
        &[(1, "no"), (0, "yes")],
    )
    .await;
    assert_eq!(closed["outcome"], "passed", "5 of 9 is more than half: {closed}");
    assert_eq!(closed["tally"]["weights"]["yes"], 5.0);
    assert_eq!(closed["tally"]["weights"]["total"], 9.0);

    let closed = run_vote(
        &mut agents,
        json!({"room": "lab", "text": "ship tonight", "rule": "quorum", "quorum": 3}),
        &[(0, "yes"), (4, "yes"), (3, "abstain"), (2, "yes")],
    )
    .await;
    assert_eq!(closed["outcome"], "passed", "quorum of 3 met, then a majority of the votes cast: {closed}");

    // A deadline closes a proposal by itself.
    let p = agents[0].ok("proposal.create", json!({"room": "lab", "text": "tag 1.0", "rule": "veto", "deadline_s": 1})).await;
    agents[1].ok("proposal.vote", json!({"room": "lab", "proposal_id": p["proposal_id"], "vote": "no"})).await;
    for a in agents.iter_mut() {
        let d = a.event_where("proposal_closed", |d| d["proposal_id"] == p["proposal_id"]).await;
        assert_eq!((d["outcome"].as_str(), d["reason"].as_str()), (Some("passed"), Some("deadline")));
    }

    // The board: a card goes across every column; everyone sees every change.
    let card = agents[0].ok("board.add", json!({"room": "lab", "title": "write release notes", "assignee": "coder"})).await;
    let card_id = card["card_id"].as_str().expect("card").to_owned();
    assert_eq!(card["column"], "todo");
    for a in agents.iter_mut() {
        assert_eq!(a.event("board_changed").await["action"], "added");
    }
    for column in ["in_progress", "review", "done"] {
        let c = agents[2].ok("board.move", json!({"room": "lab", "card_id": card_id, "column": column})).await;
        assert_eq!(c["column"], column);
        for a in agents.iter_mut() {
            let d = a.event("board_changed").await;
            assert_eq!((d["action"].as_str(), d["to"].as_str()), (Some("moved"), Some(column)));
        }
    }
    let board = agents[4].ok("board.list", json!({"room": "lab"})).await;
    let history: Vec<&str> = board["cards"][0]["history"].as_array().expect("history").iter().map(|m| m["to"].as_str().unwrap_or("?")).collect();
    assert_eq!(history, ["todo", "in_progress", "review", "done"]);

    // Files: the tester shares a log; the reviewer downloads it over WebSocket and HTTP.
    let bytes: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let meta = agents[4].ok("file.upload", json!({"room": "lab", "name": "test-run.log", "content_base64": b64(&bytes)})).await;
    assert_eq!(meta["sha256"], sha256(&bytes));
    assert_eq!(meta["size"], bytes.len());
    for a in agents.iter_mut() {
        assert_eq!(a.event("file_shared").await["file_id"], meta["file_id"]);
    }
    let got = agents[3].ok("file.download", json!({"room": "lab", "file_id": meta["file_id"]})).await;
    let content = base64::engine::general_purpose::STANDARD.decode(got["content_base64"].as_str().expect("content")).expect("base64");
    assert_eq!(sha256(&content), sha256(&bytes));
    let r = reqwest::get(server.http("/api/rooms/lab/files/test-run.log?from=reviewer")).await.expect("GET file");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-content-sha256"].to_str().ok(), Some(sha256(&bytes).as_str()));
    assert_eq!(sha256(&r.bytes().await.expect("body")), sha256(&bytes));
    let files = agents[0].ok("file.list", json!({"room": "lab"})).await;
    assert_eq!(files["files"].as_array().map(Vec::len), Some(1));

    // Presence: the tester disconnects and the others see it leave; it stays a member.
    let tester = agents.pop().expect("tester");
    drop(tester);
    for a in agents.iter_mut() {
        let d = a.event_where("member_left", |d| d["client_id"] == "tester").await;
        assert_eq!(d["reason"], "disconnected");
    }
    let members = agents[0].ok("room.members", json!({"room": "lab"})).await;
    let tester = members["members"].as_array().expect("members").iter().find(|m| m["client_id"] == "tester").cloned().expect("tester");
    assert_eq!((tester["role"].as_str(), tester["online"].as_bool()), (Some("tester"), Some(false)));
    let listed = server.get("/api/rooms?from=coder").await.1;
    assert_eq!(listed["rooms"][0]["name"], "lab");
    assert_eq!((listed["rooms"][0]["members"].as_u64(), listed["rooms"][0]["online"].as_u64()), (Some(5), Some(4)));
    assert_eq!(listed["rooms"][0]["role"], "coder");
}

/// Starts a server on `dir`.
fn start_on(dir: &tempfile::TempDir, extra: &[&str]) -> Server {
    let mut args = vec![format!("--data-dir={}", dir.path().display())];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[tokio::test]
async fn rooms_survive_kill_9_and_members_resume_with_since() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start_on(&dir, &[]);
    let mut agents = team(&server).await;
    agents[0].ok("room.create", json!({"name": "lab", "topic": "durability"})).await;
    for i in 0..5 {
        agents[i].join("lab", Some(ROLES[i]), None).await;
    }
    agents[0].ok("channel.create", json!({"room": "lab", "name": "ops"})).await;
    agents[1].say("lab/ops", json!({"n": "ops-1"})).await;
    for n in 1..=3 {
        agents[n % 4].say("lab", json!({"n": n})).await;
    }
    // The tester has seen seq 1..3 and goes away.
    let mut tester = agents.pop().expect("tester");
    let mut last_seen = 0;
    while last_seen < 3 {
        last_seen = tester.message().await["seq"].as_u64().expect("seq");
    }
    drop(tester);
    for n in 4..=9 {
        agents[n % 4].say("lab", json!({"n": n})).await;
    }
    let passed = agents[0].ok("proposal.create", json!({"room": "lab", "text": "a", "rule": "weighted", "weights": {"coordinator": 9}})).await;
    agents[0].ok("proposal.vote", json!({"room": "lab", "proposal_id": passed["proposal_id"], "vote": "yes"})).await;
    let open = agents[0].ok("proposal.create", json!({"room": "lab", "text": "b", "rule": "majority"})).await;
    agents[1].ok("proposal.vote", json!({"room": "lab", "proposal_id": open["proposal_id"], "vote": "yes"})).await;
    let timed = agents[0].ok("proposal.create", json!({"room": "lab", "text": "c", "rule": "veto", "deadline_s": 3})).await;
    let card = agents[2].ok("board.add", json!({"room": "lab", "title": "t", "description": "d"})).await;
    agents[2].ok("board.move", json!({"room": "lab", "card_id": card["card_id"], "column": "review"})).await;
    let bytes = b"release checklist\n".repeat(100);
    let file = agents[3].ok("file.upload", json!({"room": "lab", "name": "checklist.txt", "content_base64": b64(&bytes)})).await;
    let before = agents[0].ok("room.history", json!({"room": "lab"})).await;
    let board_before = agents[0].ok("board.list", json!({"room": "lab"})).await;
    let proposals_before = agents[0].ok("proposal.get", json!({"room": "lab"})).await;

    server.kill();
    drop(agents);
    let server = start_on(&dir, &[]);

    let mut coord = Agent::connect(&server, "coordinator").await;
    let listed = coord.ok("room.list", json!({})).await;
    assert_eq!(listed["rooms"][0]["name"], "lab");
    assert_eq!(listed["rooms"][0]["channels"], json!(["lab/ops"]));
    let members = coord.ok("room.members", json!({"room": "lab"})).await;
    let roles: BTreeMap<String, String> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["client_id"].as_str().unwrap_or_default().into(), m["role"].as_str().unwrap_or_default().into()))
        .collect();
    assert_eq!(roles, ROLES.iter().map(|r| ((*r).to_owned(), (*r).to_owned())).collect(), "roles survive");
    let after = coord.ok("room.history", json!({"room": "lab"})).await;
    assert_eq!(after["messages"], before["messages"], "history survives");
    assert_eq!(after["last_seq"], 9);
    let ops = coord.ok("room.history", json!({"room": "lab/ops"})).await;
    assert_eq!(ops["messages"][0]["payload"]["n"], "ops-1", "channel history survives");
    assert_eq!(coord.ok("board.list", json!({"room": "lab"})).await, board_before, "the board survives");
    let proposals_after = coord.ok("proposal.get", json!({"room": "lab"})).await;
    for (a, b) in proposals_after["proposals"].as_array().expect("p").iter().zip(proposals_before["proposals"].as_array().expect("p")) {
        assert_eq!((&a["proposal_id"], &a["votes"], &a["closed"]), (&b["proposal_id"], &b["votes"], &b["closed"]), "proposals survive");
    }
    let got = coord.ok("file.download", json!({"room": "lab", "file_id": file["file_id"]})).await;
    assert_eq!(got["sha256"], sha256(&bytes));
    let content = base64::engine::general_purpose::STANDARD.decode(got["content_base64"].as_str().expect("content")).expect("b64");
    assert_eq!(content, bytes, "the file survives");

    // The tester resumes after what it saw: exactly seq 4..9, in order, then live traffic.
    let mut tester = Agent::connect(&server, "tester").await;
    let joined = tester.join("lab", None, Some(last_seen)).await;
    assert_eq!((joined["role"].as_str(), joined["last_seq"].as_u64(), joined["resumed_from"].as_u64()), (Some("tester"), Some(9), Some(3)));
    let mut replayed = Vec::new();
    for _ in 4..=9 {
        replayed.push(tester.message().await);
    }
    let seqs: Vec<u64> = replayed.iter().map(|m| m["seq"].as_u64().unwrap_or(0)).collect();
    assert_eq!(seqs, [4, 5, 6, 7, 8, 9]);
    assert_eq!(replayed.iter().map(|m| m["payload"]["n"].clone()).collect::<Vec<_>>(), (4..=9).map(|n| json!(n)).collect::<Vec<_>>());
    coord.join("lab", None, None).await;
    coord.say("lab", json!({"n": 10})).await;
    assert_eq!(tester.message().await["seq"], 10);
    let rest = tester.drain(Duration::from_millis(300)).await;
    assert!(rest.iter().all(|f| f["type"] != "message"), "nothing twice: {rest:?}");

    // The open proposal still takes votes; the timed one closes at its deadline after the restart.
    let v = coord.ok("proposal.vote", json!({"room": "lab", "proposal_id": open["proposal_id"], "vote": "yes"})).await;
    assert_eq!(v["tally"]["yes"], 2);
    let closed = eventually("the timed proposal to close after the restart", || {
        let url = server.http("/api/call");
        let id = timed["proposal_id"].clone();
        async move {
            let body = json!({"method": "proposal.get", "from": "coder", "params": {"room": "lab", "proposal_id": id}});
            let v: Value = reqwest::Client::new().post(url).json(&body).send().await.ok()?.json().await.ok()?;
            (v["result"]["status"] == "closed").then_some(v["result"].clone())
        }
    })
    .await;
    assert_eq!((closed["outcome"].as_str(), closed["closed"]["reason"].as_str()), (Some("passed"), Some("deadline")));
}

#[tokio::test]
async fn room_errors_have_codes() {
    let server = InProcess::with_args(&["--max-file-bytes", "1024"]);
    let mut owner = Agent::connect(&server, "owner").await;
    let mut outsider = Agent::connect(&server, "outsider").await;
    owner.ok("room.create", json!({"name": "lab"})).await;
    owner.join("lab", None, None).await;

    // Unknown room.
    assert_eq!(outsider.err("room.join", json!({"room": "nowhere"})).await, "unknown_room");
    assert_eq!(owner.err("question.ask", json!({"room": "nowhere", "text": "?"})).await, "unknown_room");
    assert_eq!(owner.err("room.history", json!({"room": "lab/nochannel"})).await, "unknown_room");
    outsider.ws.send(json!({"type": "join", "room": "nowhere"})).await;
    assert_eq!(outsider.take("error", |f| f["type"] == "error").await["code"], "unknown_room");
    outsider.ws.send(json!({"type": "send", "room": "nowhere", "msg_type": "chat", "payload": 1, "ref": "x"})).await;
    assert_eq!(outsider.take("error", |f| f["type"] == "error").await["code"], "unknown_recipient", "PROTOCOL.md: sends to missing rooms");

    // Not a member.
    for (method, params) in [
        ("question.ask", json!({"room": "lab", "text": "?"})),
        ("room.history", json!({"room": "lab"})),
        ("board.add", json!({"room": "lab", "title": "t"})),
        ("proposal.create", json!({"room": "lab", "text": "t", "rule": "majority"})),
        ("file.list", json!({"room": "lab"})),
        ("channel.create", json!({"room": "lab", "name": "x"})),
    ] {
        assert_eq!(outsider.err(method, params).await, "not_member", "{method}");
    }
    outsider.ws.send(json!({"type": "send", "room": "lab", "msg_type": "chat", "payload": 1, "ref": "y"})).await;
    let e = outsider.take("error", |f| f["type"] == "error" && f["ref"] == "y").await;
    assert_eq!(e["code"], "not_member");
    outsider.ws.send(json!({"type": "join", "room": "lab/side"})).await;
    assert_eq!(outsider.take("error", |f| f["type"] == "error").await["code"], "unknown_room");

    // A member who joined after a proposal opened is not on its roll.
    let p = owner.ok("proposal.create", json!({"room": "lab", "text": "t", "rule": "consensus"})).await;
    outsider.ok("room.join", json!({"room": "lab"})).await;
    assert_eq!(outsider.err("proposal.vote", json!({"room": "lab", "proposal_id": p["proposal_id"], "vote": "yes"})).await, "not_member");

    // Voting on a closed proposal (twice).
    owner.ok("proposal.vote", json!({"room": "lab", "proposal_id": p["proposal_id"], "vote": "yes"})).await;
    for vote in ["no", "yes"] {
        let code = owner.err("proposal.vote", json!({"room": "lab", "proposal_id": p["proposal_id"], "vote": vote})).await;
        assert_eq!(code, "proposal_closed");
    }

    // File too large, over WebSocket and HTTP.
    let big = vec![7u8; 2000];
    assert_eq!(owner.err("file.upload", json!({"room": "lab", "name": "big.bin", "content_base64": b64(&big)})).await, "too_large");
    let r = reqwest::Client::new().put(server.http("/api/rooms/lab/files/big.bin?from=owner")).body(big).send().await.expect("PUT");
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.expect("json")["code"], "too_large");
    let r = reqwest::Client::new().put(server.http("/api/rooms/lab/files/ok.bin?from=owner")).body(vec![1u8; 1000]).send().await.expect("PUT");
    assert_eq!(r.status(), 200, "a file within the limit is accepted");

    // Bad column.
    let card = owner.ok("board.add", json!({"room": "lab", "title": "t"})).await;
    assert_eq!(owner.err("board.move", json!({"room": "lab", "card_id": card["card_id"], "column": "doing"})).await, "bad_column");
    assert_eq!(owner.err("board.add", json!({"room": "lab", "title": "t", "column": "later"})).await, "bad_column");

    // The rest of the codes.
    assert_eq!(owner.err("room.create", json!({"name": "lab"})).await, "already_exists");
    owner.ok("channel.create", json!({"room": "lab", "name": "side"})).await;
    assert_eq!(owner.err("channel.create", json!({"room": "lab", "name": "side"})).await, "already_exists");
    assert_eq!(owner.err("room.explode", json!({"room": "lab"})).await, "unknown_method");
    assert_eq!(owner.err("proposal.create", json!({"room": "lab", "text": "t", "rule": "dictator"})).await, "invalid_params");
    assert_eq!(owner.err("proposal.create", json!({"room": "lab", "text": "t", "rule": "quorum"})).await, "invalid_params");
    assert_eq!(owner.err("question.ask", json!({"room": "lab"})).await, "invalid_params");
    assert_eq!(owner.err("board.move", json!({"room": "lab", "card_id": "card-99", "column": "done"})).await, "not_found");
    assert_eq!(owner.err("question.ask", json!({"room": "lab/side", "text": "?"})).await, "invalid_params", "channels carry messages");

    // Over HTTP the same codes come with their statuses.
    for (body, status, code) in [
        (json!({"method": "question.ask", "from": "stranger", "params": {"room": "lab", "text": "?"}}), 403, "not_member"),
        (json!({"method": "room.history", "from": "owner", "params": {"room": "nowhere"}}), 404, "unknown_room"),
        (json!({"method": "proposal.vote", "from": "owner", "params": {"room": "lab", "proposal_id": p["proposal_id"], "vote": "no"}}), 409, "proposal_closed"),
        (json!({"method": "board.move", "from": "owner", "params": {"room": "lab", "card_id": card["card_id"], "column": "x"}}), 400, "bad_column"),
        (json!({"method": "nope", "from": "owner"}), 404, "unknown_method"),
        (json!({"method": "room.list"}), 400, "bad_request"),
    ] {
        let (s, v) = server.post("/api/call", &body).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{body}");
    }
    let (s, v) = server.get("/api/rooms/lab/history?from=stranger").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("not_member")));
}

#[tokio::test]
async fn a_failing_room_restarts_with_its_state_and_members() {
    let server = Server::start(&["--enable-fault-injection"]);
    let mut a = Agent::connect(&server, "alice").await;
    let mut b = Agent::connect(&server, "bob").await;
    a.ok("room.create", json!({"name": "lab"})).await;
    a.join("lab", None, None).await;
    b.join("lab", Some("reviewer"), None).await;
    a.ok("board.add", json!({"room": "lab", "title": "survive"})).await;
    a.say("lab", json!({"n": 1})).await;
    assert_eq!(b.message().await["seq"], 1);

    let (status, body) = server.post("/admin/fault", &json!({"actor": "room:lab"})).await;
    assert_eq!((status, body["actor"].as_str()), (202, Some("room:lab")));
    server.wait_log("actor restarting").await;
    let tree = eventually("room:lab to run again after one restart", || async {
        let (_, t) = server.get("/admin/supervisors").await;
        let rooms = t["children"].as_array()?.iter().find(|c| c["name"] == "rooms")?.clone();
        let room = rooms["children"].as_array()?.iter().find(|c| c["name"] == "room:lab")?.clone();
        (room["state"] == "running" && room["restarts"] == 1).then_some(room)
    })
    .await;
    assert_eq!((tree["kind"].as_str(), tree["parent"].as_str()), (Some("room"), Some("rooms")));
    // Metrics count the restart by actor kind: no room name becomes a label.
    let metrics = reqwest::get(server.http("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("bridge_actor_restarts_total{actor=\"room\"} 1"), "{metrics}");
    assert!(!metrics.contains("lab"), "a room name in /metrics:\n{metrics}");

    // Nothing was lost and the members are still joined.
    let board = b.ok("board.list", json!({"room": "lab"})).await;
    assert_eq!(board["cards"][0]["title"], "survive");
    let members = a.ok("room.members", json!({"room": "lab"})).await;
    assert!(members["members"].as_array().expect("m").iter().all(|m| m["online"] == true), "{members}");
    let sent = a.say("lab", json!({"n": 2})).await;
    assert_eq!(sent["seq"], 2, "the seq continues from the store");
    assert_eq!(b.message().await["payload"]["n"], 2);
}

#[tokio::test]
async fn http_clients_take_part() {
    let server = InProcess::with_args(&[]);
    let mut ws = Agent::connect(&server, "lead").await;
    ws.ok("room.create", json!({"name": "ops"})).await;
    ws.join("ops", None, None).await;

    let (s, v) = server.post("/api/call", &json!({"method": "room.join", "from": "cron", "params": {"room": "ops", "role": "observer"}})).await;
    assert_eq!((s, v["ok"].as_bool(), v["result"]["role"].as_str()), (200, Some(true), Some("observer")));
    let d = ws.event("member_joined").await;
    assert_eq!((d["client_id"].as_str(), d["new_member"].as_bool()), (Some("cron"), Some(true)));
    let (s, v) = server.post("/api/send", &json!({"from": "cron", "room": "ops", "type": "report", "payload": {"ok": true}})).await;
    assert_eq!((s, v["seq"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(ws.message().await["from"], "cron");
    ws.say("ops", json!({"reply": "thanks"})).await;

    let (s, page) = server.get("/api/rooms/ops/history?from=cron&since=0").await;
    assert_eq!(s, 200);
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["next_since"], 2);
    let (_, page) = server.get("/api/rooms/ops/history?from=cron&since=2").await;
    assert_eq!(page["count"], 0);
    // A sub-channel over HTTP: its path segment is `room%2Fchannel`.
    let (s, _) = server.post("/api/call", &json!({"method": "channel.create", "from": "cron", "params": {"room": "ops", "name": "night"}})).await;
    assert_eq!(s, 200);
    let (s, v) = server.post("/api/send", &json!({"from": "cron", "room": "ops/night", "type": "report", "payload": 1})).await;
    assert_eq!((s, v["seq"].as_u64()), (200, Some(1)), "{v}");
    let (s, page) = server.get("/api/rooms/ops%2Fnight/history?from=lead").await;
    assert_eq!((s, page["room"].as_str(), page["count"].as_u64()), (200, Some("ops/night"), Some(1)), "{page}");
    let (s, v) = server.get("/api/call?method=board.list&from=cron&params=%7B%22room%22%3A%22ops%22%7D").await;
    assert_eq!((s, v["result"]["columns"][0].as_str()), (200, Some("todo")));

    let r = reqwest::Client::new().put(server.http("/api/rooms/ops/files/notes.md?from=cron")).body("# notes\n").send().await.expect("PUT");
    let meta: Value = r.json().await.expect("json");
    assert_eq!(meta["sha256"], sha256(b"# notes\n"));
    assert_eq!(ws.event("file_shared").await["name"], "notes.md");
    let (s, rooms) = server.get("/admin/rooms").await;
    assert_eq!((s, rooms["rooms"][0]["members"].as_u64()), (200, Some(2)));

    let (s, v) = server.post("/api/call", &json!({"method": "room.leave", "from": "cron", "params": {"room": "ops"}})).await;
    assert_eq!((s, v["result"]["member"].as_bool()), (200, Some(false)));
    assert_eq!(ws.event("member_left").await["reason"], "left");
}

#[tokio::test]
async fn a_slow_member_gets_every_room_message_once_in_order() {
    // A tiny session queue forces the store-fed path for room traffic.
    let server = InProcess::with_args(&["--session-queue", "4"]);
    let mut talker = Agent::connect(&server, "talker").await;
    talker.ok("room.create", json!({"name": "firehose"})).await;
    let mut slow = Agent::connect(&server, "slow").await;
    slow.join("firehose", None, None).await;
    const N: u64 = 500;
    for n in 1..=N {
        talker.ws.send(json!({"type": "send", "room": "firehose", "msg_type": "tick", "payload": {"n": n}})).await;
    }
    let mut next = 1;
    while next <= N {
        let m = slow.message().await;
        assert_eq!(m["seq"].as_u64(), Some(next), "in order, no gaps, no repeats");
        next += 1;
    }
    let rest = slow.drain(Duration::from_millis(300)).await;
    assert!(rest.iter().all(|f| f["type"] != "message"), "nothing twice");
    // A second session of the same member joining with `since` replays only what comes after.
    let mut again = Agent::connect(&server, "slow").await;
    again.join("firehose", None, Some(N - 2)).await;
    assert_eq!(again.message().await["seq"], N - 1);
    assert_eq!(again.message().await["seq"], N);
}

/// `agent-bridge keys create --data-dir DIR --client-id ID ARGS...`: the key (its last line).
fn key(dir: &tempfile::TempDir, client: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agent-bridge"))
        .args(["keys", "create", "--data-dir"])
        .arg(dir.path())
        .args(["--client-id", client])
        .args(args)
        .env_remove("BRIDGE_DATA_DIR")
        .output()
        .expect("keys create");
    assert!(out.status.success(), "keys create: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().expect("the key").trim().to_owned()
}

/// Keys for the owner of a private room `secret`, a `friend` it allows, a `stranger`, a key
/// naming the room (`named`), and one more client with its own arguments.
fn team_keys(dir: &tempfile::TempDir, (extra, args): (&'static str, &[&str])) -> HashMap<&'static str, String> {
    [
        ("owner", key(dir, "owner", &[])),
        ("friend", key(dir, "friend", &[])),
        ("stranger", key(dir, "stranger", &[])),
        ("named", key(dir, "named", &["--rooms", "secret"])),
        (extra, key(dir, extra, args)),
    ]
    .into_iter()
    .collect()
}

#[tokio::test]
async fn private_rooms_and_permissions_follow_the_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = team_keys(&dir, ("reader", &["--permissions", "read"]));
    let server = start_on(&dir, &[]);
    let mut agents = HashMap::new();
    for (name, k) in &keys {
        agents.insert(*name, Agent::connect_query(&server, name, &format!("token={k}")).await);
    }
    let owner = pick(&mut agents, "owner");
    let created = owner.ok("room.create", json!({"name": "secret", "private": true, "allow": ["friend"]})).await;
    assert_eq!(created["private"], true);
    owner.ok("room.create", json!({"name": "open"})).await;
    owner.join("secret", None, None).await;

    pick(&mut agents, "friend").join("secret", Some("coder"), None).await;
    pick(&mut agents, "named").join("secret", None, None).await;
    let stranger = pick(&mut agents, "stranger");
    assert_eq!(stranger.err("room.join", json!({"room": "secret"})).await, "forbidden");
    stranger.ws.send(json!({"type": "join", "room": "secret"})).await;
    assert_eq!(stranger.take("error", |f| f["type"] == "error").await["code"], "forbidden");
    stranger.join("open", None, None).await;

    // Read-only credentials may join and read, not change anything.
    let reader = pick(&mut agents, "reader");
    reader.join("open", None, None).await;
    reader.ok("room.history", json!({"room": "open"})).await;
    assert_eq!(reader.err("question.ask", json!({"room": "open", "text": "?"})).await, "forbidden");
    assert_eq!(reader.err("room.create", json!({"name": "mine"})).await, "forbidden");
    assert_eq!(reader.err("room.topic", json!({"room": "open"})).await, "forbidden", "room.topic needs write");

    // Over HTTP the credentials decide the same way.
    let post = |token: String, body: Value| {
        let url = server.http("/api/call");
        async move {
            let r = reqwest::Client::new().post(url).bearer_auth(token).json(&body).send().await.expect("POST");
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, v) = post(keys["stranger"].clone(), json!({"method": "room.join", "from": "stranger", "params": {"room": "secret"}})).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")));
    let (s, v) = post(keys["friend"].clone(), json!({"method": "room.history", "from": "friend", "params": {"room": "secret"}})).await;
    assert_eq!((s, v["ok"].as_bool()), (200, Some(true)));
    let (s, _) = post(keys["stranger"].clone(), json!({"method": "room.members", "from": "friend", "params": {"room": "secret"}})).await;
    assert_eq!(s, 403, "a key acts only as its own client id");
}

/// One agent of the map (the test drives them one at a time).
fn pick<'a>(agents: &'a mut HashMap<&str, Agent>, name: &str) -> &'a mut Agent {
    agents.get_mut(name).expect("agent")
}

#[tokio::test]
async fn subscribe_filters_room_messages_too() {
    let server = InProcess::with_args(&[]);
    let mut talker = Agent::connect(&server, "talker").await;
    talker.ok("room.create", json!({"name": "lab"})).await;
    let mut picky = Agent::connect(&server, "picky").await;
    picky.ws.send(json!({"type": "subscribe", "types": ["alert"]})).await;
    picky.join("lab", None, None).await;
    for (n, t) in ["chat", "alert", "chat", "alert"].iter().enumerate() {
        talker.ws.send(json!({"type": "send", "room": "lab", "msg_type": t, "payload": {"n": n}})).await;
    }
    assert_eq!(picky.message().await["payload"]["n"], 1);
    assert_eq!(picky.message().await["payload"]["n"], 3);
    // The replay honours the filter too.
    let mut again = Agent::connect(&server, "picky").await;
    again.ws.send(json!({"type": "subscribe", "types": ["chat"]})).await;
    again.join("lab", None, Some(0)).await;
    assert_eq!(again.message().await["payload"]["n"], 0);
    assert_eq!(again.message().await["payload"]["n"], 2);
    let rest = picky.drain(Duration::from_millis(200)).await;
    assert!(rest.iter().all(|f| f["type"] != "message"), "{rest:?}");
}

/// `GET path` with a bearer token: status and JSON body.
async fn get_as(server: &Server, token: &str, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new().get(server.http(path)).bearer_auth(token).send().await.expect("GET");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn names(listed: &Value) -> Vec<String> {
    listed["rooms"].as_array().unwrap_or_else(|| panic!("no rooms in {listed}")).iter().map(|r| r["name"].as_str().expect("name").to_owned()).collect()
}

#[tokio::test]
async fn room_listings_show_private_rooms_only_to_whom_may_join_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = team_keys(&dir, ("ops", &["--permissions", "read,write,admin"]));
    let writer = key(&dir, "writer", &["--permissions", "write"]);
    let server = start_on(&dir, &[]);
    let mut owner = Agent::connect_query(&server, "owner", &format!("token={}", keys["owner"])).await;
    owner.ok("room.create", json!({"name": "secret", "topic": "launch codes", "private": true, "allow": ["friend"]})).await;
    owner.ok("channel.create", json!({"room": "secret", "name": "vault"})).await;
    owner.ok("room.create", json!({"name": "open", "topic": "lunch"})).await;

    // Over WebSocket and over HTTP, with and without `from`: the stranger sees only the open room,
    // and nothing of the private one (name, topic, creator, channels).
    let mut stranger = Agent::connect_query(&server, "stranger", &format!("token={}", keys["stranger"])).await;
    let listed = stranger.ok("room.list", json!({})).await;
    assert_eq!(names(&listed), ["open"], "{listed}");
    for path in ["/api/rooms", "/api/rooms?from=stranger"] {
        let (status, listed) = get_as(&server, &keys["stranger"], path).await;
        assert_eq!((status, names(&listed)), (200, vec!["open".to_owned()]), "{path}: {listed}");
        let text = listed.to_string();
        assert!(!text.contains("secret") && !text.contains("launch codes") && !text.contains("vault"), "{path} leaks: {text}");
        assert_eq!(listed["count"], 1);
    }
    let (status, _) = get_as(&server, &keys["stranger"], "/api/rooms?from=friend").await;
    assert_eq!(status, 403, "a key lists only as its own client id");
    let (status, body) = get_as(&server, &writer, "/api/rooms").await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "listing needs `read`, as room.list does: {body}");

    // Whoever may join it sees it: the allow-listed friend, the creator, credentials naming the
    // room, admins (and /admin/rooms lists everything).
    for who in ["owner", "friend", "named", "ops"] {
        let (status, listed) = get_as(&server, &keys[who], "/api/rooms").await;
        assert_eq!((status, names(&listed)), (200, vec!["open".to_owned(), "secret".to_owned()]), "{who}: {listed}");
    }
    let mut friend = Agent::connect_query(&server, "friend", &format!("token={}", keys["friend"])).await;
    let listed = friend.ok("room.list", json!({})).await;
    assert_eq!(listed["rooms"][1]["channels"], json!(["secret/vault"]), "{listed}");
    let (status, listed) = get_as(&server, &keys["ops"], "/admin/rooms").await;
    assert_eq!((status, names(&listed)), (200, vec!["open".to_owned(), "secret".to_owned()]));
}

#[tokio::test]
async fn room_creation_is_limited_per_client_id_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_on(&dir, &["--max-rooms-per-client", "3"]);
    let mut alice = Agent::connect(&server, "alice").await;
    for n in 1..=3 {
        alice.ok("room.create", json!({"name": format!("a{n}")})).await;
    }
    assert_eq!(alice.err("room.create", json!({"name": "a4"})).await, "quota_exceeded");
    let (status, body) = server.post("/api/call", &json!({"method": "room.create", "from": "alice", "params": {"name": "a5"}})).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("quota_exceeded")), "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains('3')), "the message names the limit: {body}");
    // Others are not affected, and a refused name stays free.
    let mut bob = Agent::connect(&server, "bob").await;
    bob.ok("room.create", json!({"name": "a4"})).await;
    drop((alice, bob, server));

    // The count is the store's: a restart does not reset it.
    let server = start_on(&dir, &["--max-rooms-per-client", "3"]);
    let mut alice = Agent::connect(&server, "alice").await;
    assert_eq!(alice.err("room.create", json!({"name": "a6"})).await, "quota_exceeded");
    let mut bob = Agent::connect(&server, "bob").await;
    bob.ok("room.create", json!({"name": "b2"})).await;
}

#[tokio::test]
async fn room_listings_are_paged() {
    let server = InProcess::with_args(&["--max-rooms-per-client", "0"]);
    let all: Vec<String> = (0..130).map(|n| format!("r{n:03}")).collect();
    for name in &all {
        let (status, body) = server.post("/api/call", &json!({"method": "room.create", "from": "maker", "params": {"name": name}})).await;
        assert_eq!(status, 200, "{body}");
    }
    // The default page is 100 rooms; `next_cursor` continues in name order; the last page has none.
    let (_, first) = server.get("/api/rooms").await;
    assert_eq!((first["count"].as_u64(), first["next_cursor"].as_str()), (Some(100), Some("r099")));
    let (_, rest) = server.get("/api/rooms?cursor=r099").await;
    assert_eq!((rest["count"].as_u64(), rest["next_cursor"].clone()), (Some(30), Value::Null));
    assert_eq!([names(&first), names(&rest)].concat(), all);
    // Small pages over WebSocket.
    let mut maker = Agent::connect(&server, "maker").await;
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let page = maker.ok("room.list", json!({"limit": 40, "cursor": cursor})).await;
        assert!(page["count"].as_u64().is_some_and(|c| c <= 40), "{page}");
        seen.extend(names(&page));
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(seen, all);
    assert_eq!(maker.ok("room.list", json!({"limit": 40})).await["rooms"][0]["role"], "coordinator");
    // Limits are clamped to 1..=1000.
    let (status, big) = server.get("/api/rooms?limit=5000").await;
    assert_eq!((status, big["count"].as_u64()), (200, Some(130)));
    let (_, one) = server.get("/api/rooms?limit=0").await;
    assert_eq!((one["count"].as_u64(), one["next_cursor"].as_str()), (Some(1), Some("r000")));
    let (_, admin) = server.get("/admin/rooms?limit=10&cursor=r125").await;
    assert_eq!(names(&admin), ["r126", "r127", "r128", "r129"]);
}

/// `room.topic`, the call added to show the table of calls: declared once, it is reachable over
/// WebSocket and `POST /api/call`, needs `write` (so `GET /api/call` refuses it), belongs to the
/// room (not its channels), tells the members, and lasts.
#[tokio::test]
async fn room_topic_is_one_call_over_websocket_and_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_on(&dir, &[]);
    let mut lead = Agent::connect(&server, "lead").await;
    let mut dev = Agent::connect(&server, "dev").await;
    lead.ok("room.create", json!({"name": "lab", "topic": "release 1.2"})).await;
    lead.ok("channel.create", json!({"room": "lab", "name": "night"})).await;
    lead.join("lab", None, None).await;
    assert_eq!(dev.err("room.topic", json!({"room": "lab"})).await, "not_member");
    dev.join("lab", None, None).await;

    let read = dev.ok("room.topic", json!({"room": "lab"})).await;
    assert_eq!(read, json!({"room": "lab", "topic": "release 1.2", "changed": false}));
    let set = dev.ok("room.topic", json!({"room": "lab", "topic": "release 1.3"})).await;
    assert_eq!((set["topic"].as_str(), set["changed"].as_bool()), (Some("release 1.3"), Some(true)));
    let told = lead.event("topic_changed").await;
    assert_eq!(told, json!({"room": "lab", "topic": "release 1.3", "by": "dev"}));
    assert_eq!(dev.ok("room.topic", json!({"room": "lab", "topic": "release 1.3"})).await["changed"], false);
    assert_eq!(dev.err("room.topic", json!({"room": "lab", "topic": ""})).await, "invalid_params");
    assert_eq!(dev.err("room.topic", json!({"room": "lab", "topic": 7})).await, "invalid_params");
    assert_eq!(dev.err("room.topic", json!({"topic": "x"})).await, "invalid_params");
    assert_eq!(dev.err("room.topic", json!({"room": "lab/night", "topic": "x"})).await, "invalid_params");
    assert_eq!(dev.err("room.topic", json!({"room": "nowhere", "topic": "x"})).await, "unknown_room");

    // Over HTTP: POST sets and reads; GET is refused, as for every call that changes state.
    let (s, v) = server.post("/api/call", &json!({"method": "room.topic", "from": "lead", "params": {"room": "lab", "topic": "frozen"}})).await;
    assert_eq!((s, v["ok"].as_bool(), v["result"]["topic"].as_str()), (200, Some(true), Some("frozen")), "{v}");
    assert_eq!(dev.event_where("topic_changed", |d| d["by"] == "lead").await["topic"], "frozen");
    let (s, v) = server.post("/api/call", &json!({"method": "room.topic", "from": "stranger", "params": {"room": "lab", "topic": "mine"}})).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("not_member")), "{v}");
    let (s, v) = server.get("/api/call?method=room.topic&from=lead&params=%7B%22room%22%3A%22lab%22%7D").await;
    assert_eq!((s, v["code"].as_str()), (405, Some("method_not_allowed")), "{v}");

    // The topic is the room's: listed, and kept across a restart.
    let (_, rooms) = server.get("/admin/rooms").await;
    assert_eq!(rooms["rooms"][0]["topic"], "frozen");
    drop((lead, dev));
    drop(server);
    let server = start_on(&dir, &[]);
    let (s, v) = server.post("/api/call", &json!({"method": "room.topic", "from": "dev", "params": {"room": "lab"}})).await;
    assert_eq!((s, v["result"]["topic"].as_str()), (200, Some("frozen")), "{v}");
}
