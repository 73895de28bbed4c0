//! `history.search` (PROTOCOL.md section 4): full-text search over the messages a caller may read,
//! over WebSocket `call`, HTTP (`POST /api/call`, `GET /api/call`, `GET /api/search`), MCP (the
//! `search_messages` tool of `agent-bridge mcp`, stdio) and the CLI (`agent-bridge search`).
//! Ranking, the query syntax, filters, cursor paging, permission filtering (another client's
//! inbox and a private room are never found), expiry, and the index rebuilt from the store.

mod common;

use std::collections::HashSet;
use std::process::Stdio;

use common::{cli, eventually, Endpoint, InProcess, Server, Ws};
use serde_json::{json, Value};

async fn send(server: &Endpoint, body: Value) {
    let (status, answer) = server.post("/api/send", &body).await;
    assert_eq!(status, 200, "{body} -> {answer}");
}

async fn call(server: &Endpoint, from: &str, method: &str, params: Value) -> (u16, Value) {
    server.post("/api/call", &json!({"method": method, "from": from, "params": params})).await
}

/// `history.search` over HTTP as `from`: the result (panics on an error answer).
async fn search(server: &Endpoint, from: &str, params: Value) -> Value {
    let (status, answer) = call(server, from, "history.search", params.clone()).await;
    assert_eq!(status, 200, "{params} -> {answer}");
    answer["result"].clone()
}

/// The payload texts of a search's hits, best first.
fn texts(result: &Value) -> Vec<String> {
    let hits = result["results"].as_array().cloned().unwrap_or_default();
    hits.iter().map(|h| h["message"]["payload"]["text"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Waits until `from`'s search finds exactly `n` hits (the index commits every 200 ms).
async fn found(server: &Endpoint, from: &str, params: Value, n: usize) -> Value {
    eventually(&format!("{n} hits for {from}: {params}"), || {
        let params = params.clone();
        async move {
            let r = search(server, from, params).await;
            (r["count"].as_u64() == Some(n as u64)).then_some(r)
        }
    })
    .await
}

/// alice and bob talk directly and in the public room `lab`; carol has a private room `vault`
/// and a public room `open` alice never joined; dave writes to carol.
async fn conversation(server: &Endpoint) {
    for (who, room, private) in [("alice", "lab", false), ("carol", "vault", true), ("carol", "open", false)] {
        let (status, created) = call(server, who, "room.create", json!({"name": room, "private": private})).await;
        assert_eq!(status, 200, "{created}");
    }
    let (status, joined) = call(server, "bob", "room.join", json!({"room": "lab"})).await;
    assert_eq!(status, 200, "{joined}");
    let direct = [
        ("alice", "bob", "alert", "deploy failed on staging"),
        ("alice", "bob", "note", "deploy deploy deploy"),
        ("bob", "alice", "note", "the deploy of the service went through after a long wait and several retries today"),
        ("alice", "bob", "note", "lunch at noon"),
        ("dave", "carol", "note", "deploy the secret plan"),
    ];
    for (from, to, t, text) in direct {
        send(server, json!({"from": from, "to": to, "type": t, "payload": {"text": text}})).await;
    }
    for (from, room, text) in [("bob", "lab", "deploy notes in the lab"), ("carol", "vault", "deploy keys in the vault"), ("carol", "open", "deploy open room")] {
        send(server, json!({"from": from, "room": room, "type": "chat", "payload": {"text": text}})).await;
    }
}

#[tokio::test]
async fn search_ranks_filters_pages_and_shows_only_what_the_caller_may_read() {
    let server = InProcess::with_args(&[]);
    conversation(&server).await;

    // alice: her direct messages both ways and the lab; never carol's inbox, vault, or `open`
    // (she is not a member).
    let all = found(&server, "alice", json!({"query": "deploy"}), 4).await;
    let mut got = texts(&all);
    assert_eq!(got[0], "deploy deploy deploy", "BM25: the short message saying it three times ranks first: {all}");
    got.sort();
    assert_eq!(got, ["deploy deploy deploy", "deploy failed on staging", "deploy notes in the lab", "the deploy of the service went through after a long wait and several retries today"]);
    let scores: Vec<f64> = all["results"].as_array().expect("results").iter().map(|h| h["score"].as_f64().expect("score")).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first: {scores:?}");
    // carol: dave's message, her rooms; nothing of alice and bob.
    let carol = found(&server, "carol", json!({"query": "deploy"}), 3).await;
    let mut got = texts(&carol);
    got.sort();
    assert_eq!(got, ["deploy keys in the vault", "deploy open room", "deploy the secret plan"]);
    // dave sent one message: he finds it, and nothing else.
    assert_eq!(texts(&found(&server, "dave", json!({"query": "deploy"}), 1).await), ["deploy the secret plan"]);
    // A stranger finds nothing, not even with the room or conversation named.
    for params in [json!({"query": "deploy"}), json!({"query": "deploy", "room": "vault"}), json!({"query": "deploy", "with": "carol"}), json!({"query": "from:dave"})] {
        assert_eq!(search(&server, "mallory", params.clone()).await["count"], 0, "{params}");
    }
    assert_eq!(search(&server, "alice", json!({"query": "vault OR secret OR open"})).await["count"], 0);

    // The query syntax: phrases, AND / -term, field:term; and the filters.
    let one = |q: Value| {
        let server = &server;
        async move { texts(&search(server, "alice", q).await) }
    };
    assert_eq!(one(json!({"query": "\"deploy failed\""})).await, ["deploy failed on staging"]);
    assert_eq!(one(json!({"query": "\"failed deploy\""})).await, Vec::<String>::new(), "a phrase keeps its order");
    assert_eq!(one(json!({"query": "deploy AND staging"})).await, ["deploy failed on staging"]);
    assert_eq!(one(json!({"query": "type:alert"})).await, ["deploy failed on staging"]);
    assert_eq!(one(json!({"query": "lunch OR staging"})).await.len(), 2);
    assert_eq!(search(&server, "alice", json!({"query": "deploy -staging -lab"})).await["count"], 2);
    assert_eq!(one(json!({"query": "deploy", "room": "lab"})).await, ["deploy notes in the lab"]);
    assert_eq!(search(&server, "alice", json!({"query": "deploy", "with": "bob"})).await["count"], 3);
    assert_eq!(search(&server, "alice", json!({"query": "deploy", "from": "bob"})).await["count"], 2);
    assert_eq!(search(&server, "alice", json!({"query": "deploy", "type": "note"})).await["count"], 2);
    assert_eq!(search(&server, "alice", json!({"query": "deploy", "until": "2000-01-01T00:00:00Z"})).await["count"], 0);
    assert_eq!(search(&server, "alice", json!({"query": "deploy", "since": "2000-01-01T00:00:00Z"})).await["count"], 4);

    // Bad params: a clear invalid_params, never a 5xx.
    for bad in [
        json!({"query": ""}),
        json!({"query": "nosuchfield:x"}),
        json!({"query": "deploy", "room": "lab", "with": "bob"}),
        json!({"query": "deploy", "since": "yesterday"}),
        json!({"query": "deploy", "limit": 0}),
        json!({"query": "deploy", "cursor": "nope"}),
        json!({"query": "deploy", "cursor": "18446744073709551615"}),
        json!({"query": "deploy", "cursor": "9990", "limit": 20}),
        json!({"query": "x".repeat(2000)}),
        json!({"query": "deploy", "color": "red"}),
    ] {
        let (status, answer) = call(&server, "alice", "history.search", bad.clone()).await;
        assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_params")), "{bad} -> {answer}");
    }

    // Cursor paging: 5 hits in pages of 2, each once.
    for i in 0..5 {
        send(&server, json!({"from": "alice", "to": "bob", "type": "note", "payload": {"text": format!("paged item {i}")}})).await;
    }
    found(&server, "alice", json!({"query": "paged"}), 5).await;
    let (mut ids, mut cursor, mut pages) = (HashSet::new(), None::<String>, 0);
    loop {
        let mut params = json!({"query": "paged", "limit": 2});
        if let Some(c) = &cursor {
            params["cursor"] = json!(c);
        }
        let page = search(&server, "alice", params).await;
        pages += 1;
        for hit in page["results"].as_array().expect("results") {
            assert!(ids.insert(hit["message"]["id"].as_str().expect("id").to_owned()), "a hit shown twice: {page}");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    assert_eq!((ids.len(), pages), (5, 3));

    // Over WebSocket `call`, GET /api/call and GET /api/search: the same answers.
    let mut ws = Ws::connect(&server, "alice").await;
    ws.send(json!({"type": "call", "ref": "s-1", "method": "history.search", "params": {"query": "staging"}})).await;
    let result = ws.recv_type("result").await;
    assert_eq!((result["ref"].as_str(), result["ok"].as_bool()), (Some("s-1"), Some(true)), "{result}");
    assert_eq!(texts(&result["result"]), ["deploy failed on staging"]);
    ws.send(json!({"type": "call", "ref": "s-2", "method": "history.search", "params": {"query": "deploy", "room": "vault"}})).await;
    assert_eq!(ws.recv_type("result").await["result"]["count"], 0);
    let (status, got) = server.get("/api/call?method=history.search&from=alice&params=%7B%22query%22%3A%22staging%22%7D").await;
    assert_eq!((status, texts(&got["result"])), (200, vec!["deploy failed on staging".to_owned()]), "{got}");
    let (status, got) = server.get("/api/search?q=deploy&client_id=alice&with=bob&limit=1").await;
    assert_eq!((status, texts(&got)), (200, vec!["deploy deploy deploy".to_owned()]), "{got}");
    assert!(got["next_cursor"].is_string(), "{got}");
    let (status, got) = server.get("/api/search?q=deploy&client_id=mallory").await;
    assert_eq!((status, got["count"].as_u64()), (200, Some(0)), "{got}");
    let (status, got) = server.get("/api/search?q=&client_id=alice").await;
    assert_eq!((status, got["code"].as_str()), (400, Some("invalid_params")), "{got}");
    server.stop().expect("clean stop");
}

#[tokio::test]
async fn an_expired_message_is_no_longer_found() {
    let server = InProcess::with_args(&["--sweep-interval-ms", "100"]);
    send(&server, json!({"from": "alice", "to": "bob", "type": "note", "payload": {"text": "ephemeral secret"}, "ttl": 1})).await;
    send(&server, json!({"from": "alice", "to": "bob", "type": "note", "payload": {"text": "durable secret"}})).await;
    found(&server, "bob", json!({"query": "secret"}), 2).await;
    let left = found(&server, "bob", json!({"query": "secret"}), 1).await;
    assert_eq!(texts(&left), ["durable secret"], "the ttl removed it from the index");
    assert_eq!(search(&server, "bob", json!({"query": "ephemeral"})).await["count"], 0);
    server.stop().expect("clean stop");
}

#[tokio::test]
async fn search_from_the_command_line_and_the_mcp_tool() {
    let server = InProcess::with_args(&[]);
    conversation(&server).await;
    found(&server, "alice", json!({"query": "deploy"}), 4).await;
    let url = format!("ws://127.0.0.1:{}", server.port);

    let out = cli(&["search", "--url", &url, "--client-id", "alice", "deploy", "--with", "bob", "--json"]).stderr(Stdio::piped()).output().expect("search");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("--json prints the answer");
    assert_eq!(texts(&answer)[0], "deploy deploy deploy", "{answer}");
    assert_eq!(answer["count"], 3);
    let out = cli(&["search", "--url", &url, "--client-id", "alice", "\"deploy failed\""]).output().expect("search");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("deploy failed on staging") && text.lines().count() == 1, "{text}");
    let out = cli(&["search", "--url", &url, "--client-id", "mallory", "deploy"]).output().expect("search");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no messages found");
    let out = cli(&["search", "--url", &url, "--client-id", "alice", "nosuchfield:x"]).stderr(Stdio::piped()).output().expect("search");
    assert_eq!(out.status.code(), Some(1), "a refused call fails: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_params"), "{}", String::from_utf8_lossy(&out.stderr));

    let mut mcp = cli(&["mcp", "--url", &url, "--client-id", "carol"]);
    mcp.stderr(Stdio::null());
    let (answer, _) = common::mcp_tool_call(&mut mcp, "search_messages", json!({"query": "deploy"}));
    let result = &answer["result"]["structuredContent"];
    let mut got = texts(result);
    got.sort();
    assert_eq!(got, ["deploy keys in the vault", "deploy open room", "deploy the secret plan"], "{answer}");
    let mut mcp = cli(&["mcp", "--url", &url, "--client-id", "bob"]);
    mcp.stderr(Stdio::null());
    let (answer, _) = common::mcp_tool_call(&mut mcp, "search_messages", json!({"query": "vault OR secret"}));
    assert_eq!(answer["result"]["structuredContent"]["count"], 0, "{answer}");
    server.stop().expect("clean stop");
}

#[tokio::test]
async fn the_index_is_rebuilt_from_the_store_when_it_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = format!("--data-dir={}", dir.path().display());
    let mut server = Server::start(&[&data]);
    send(&server, json!({"from": "alice", "to": "bob", "type": "note", "payload": {"text": "remember the milk"}})).await;
    found(&server, "bob", json!({"query": "milk"}), 1).await;
    server.kill();
    std::fs::remove_dir_all(dir.path().join("search")).expect("the index directory exists");
    let server = Server::start(&[&data]);
    let hit = found(&server, "bob", json!({"query": "milk"}), 1).await;
    assert_eq!(texts(&hit), ["remember the milk"]);
    assert!(dir.path().join("search").is_dir(), "rebuilt in place");
}

#[tokio::test]
async fn without_the_index_search_is_not_supported() {
    let server = InProcess::with_args(&["--search-index", "false"]);
    send(&server, json!({"from": "alice", "to": "bob", "type": "note", "payload": {"text": "unindexed"}})).await;
    let (status, answer) = call(&server, "bob", "history.search", json!({"query": "unindexed"})).await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("not_supported")), "{answer}");
    server.stop().expect("clean stop");
}
