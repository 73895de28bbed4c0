//! The GitHub integration against a stand-in GitHub on 127.0.0.1 (issue 16): the sink checks each
//! request as GitHub's REST API documents it — method, path, `Authorization: Bearer`,
//! `Accept: application/vnd.github+json`, `X-GitHub-Api-Version: 2022-11-28`, a `User-Agent`, a
//! JSON body with `title`/`body`/`labels` or `body` — and answers as GitHub does (201 with
//! `number` and `html_url`; 401, 404, 403 rate limit, 422). Issues come from a board card and from
//! a decision, their links appear in the room, a card move becomes a comment, and GitHub's
//! refusals come back as clear codes.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::sink::{Answer, Hit, Sink};
use common::{Endpoint, InProcess};
use serde_json::{json, Value};

const TOKEN: &str = "ghp_test_token_0123456789";

/// What GitHub would say about the request's headers and body, if something is wrong.
fn refuse(hit: &Hit, want: &[&str]) -> Option<Answer> {
    let h = |k: &str| hit.headers.get(k).map(String::as_str);
    if hit.method != "POST" {
        return Some(Answer::json(404, &json!({"message": "Not Found"})));
    }
    if h("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return Some(Answer::json(401, &json!({"message": "Bad credentials"})));
    }
    let headers_ok = h("accept") == Some("application/vnd.github+json")
        && h("x-github-api-version") == Some("2022-11-28")
        && h("user-agent").is_some_and(|u| u.starts_with("agent-bridge/"))
        && h("content-type").is_some_and(|c| c.starts_with("application/json"));
    let body: Option<Value> = serde_json::from_str(&hit.body).ok();
    let fields_ok = body.as_ref().and_then(Value::as_object).is_some_and(|o| {
        want.iter().all(|k| o.get(*k).is_some_and(Value::is_string)) && o.keys().all(|k| ["title", "body", "labels"].contains(&k.as_str()))
    });
    (!headers_ok || !fields_ok).then(|| Answer::json(400, &json!({"message": "Problems parsing JSON or headers", "hit": format!("{hit:?}")})))
}

/// The stand-in GitHub: `octo/agents` works; `octo/private` is not found, `octo/limited` is rate
/// limited, `octo/revoked` refuses the token, an issue titled `invalid` fails validation.
async fn github() -> Sink {
    let issues = Arc::new(AtomicU64::new(0));
    Sink::start(move |hit| {
        let parts: Vec<&str> = hit.path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["repos", "octo", "private", ..] => Answer::json(404, &json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})),
            ["repos", "octo", "limited", ..] => Answer {
                status: 403,
                headers: vec![("x-ratelimit-remaining", "0".into()), ("retry-after", "30".into()), ("content-type", "application/json".into())],
                body: json!({"message": "API rate limit exceeded"}).to_string(),
            },
            ["repos", "octo", "revoked", ..] => Answer::json(401, &json!({"message": "Bad credentials"})),
            ["repos", "octo", "agents", "issues"] => {
                if let Some(no) = refuse(hit, &["title", "body"]) {
                    return no;
                }
                if hit.json()["title"] == "invalid" {
                    return Answer::json(422, &json!({"message": "Validation Failed", "errors": [{"resource": "Issue", "field": "title", "code": "invalid"}]}));
                }
                let n = issues.fetch_add(1, Ordering::SeqCst) + 1;
                Answer::json(201, &json!({"id": 1000 + n, "number": n, "state": "open", "title": hit.json()["title"],
                                          "html_url": format!("https://github.example/octo/agents/issues/{n}")}))
            }
            ["repos", "octo", "agents", "issues", n, "comments"] if n.parse::<u64>().is_ok() => match refuse(hit, &["body"]) {
                Some(no) => no,
                None => Answer::json(201, &json!({"id": 1, "body": hit.json()["body"], "html_url": format!("https://github.example/octo/agents/issues/{n}#issuecomment-1")})),
            },
            _ => Answer::json(404, &json!({"message": "Not Found"})),
        }
    })
    .await
}

async fn call(server: &Endpoint, from: &str, method: &str, params: Value) -> (u16, Value) {
    server.post("/api/call", &json!({"method": method, "from": from, "params": params})).await
}

async fn ok(server: &Endpoint, from: &str, method: &str, params: Value) -> Value {
    let (status, body) = call(server, from, method, params).await;
    assert_eq!(status, 200, "{method}: {body}");
    body["result"].clone()
}

async fn map(server: &Endpoint, room: &str, repo: &str) -> (u16, Value) {
    let r = reqwest::Client::new().put(server.http(&format!("/admin/github/repos/{room}"))).json(&json!({"repo": repo})).send().await.expect("PUT");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn issue_hits(gh: &Sink) -> Vec<Hit> {
    gh.hits().into_iter().filter(|h| h.path == "/repos/octo/agents/issues").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_from_a_card_and_a_decision_are_linked_and_card_moves_are_commented() {
    let gh = github().await;
    let server = InProcess::with_args(&["--github-api-url", &gh.url(""), "--github-token", TOKEN]);
    ok(&server, "alice", "room.create", json!({"name": "lab"})).await;
    ok(&server, "bob", "room.join", json!({"room": "lab"})).await;
    let card = ok(&server, "alice", "board.add", json!({"room": "lab", "title": "Ship e-mail digests", "description": "Batch <events> per window."})).await;
    assert_eq!(card["card_id"], "card-1");

    let (status, body) = call(&server, "alice", "github.issue", json!({"room": "lab", "card_id": "card-1"})).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("no_repository")), "{body}");
    let (status, body) = map(&server, "lab", "not a repo").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_params")), "{body}");
    let (status, body) = map(&server, "lab", "octo/agents").await;
    assert_eq!((status, body["repo"].as_str()), (200, Some("octo/agents")), "{body}");

    // From the card.
    let made = ok(&server, "alice", "github.issue", json!({"room": "lab", "card_id": "card-1", "labels": ["agent-bridge"]})).await;
    assert_eq!((made["number"].as_u64(), made["card_id"].as_str(), made["repo"].as_str()), (Some(1), Some("card-1"), Some("octo/agents")), "{made}");
    assert_eq!(made["html_url"], "https://github.example/octo/agents/issues/1");
    let hit = issue_hits(&gh).pop().expect("the issue request");
    let req = hit.json();
    assert_eq!((req["title"].as_str(), req["labels"].clone()), (Some("Ship e-mail digests"), json!(["agent-bridge"])), "{req}");
    let body = req["body"].as_str().expect("body");
    assert!(body.starts_with("Batch <events> per window.") && body.contains("card-1") && body.contains("lab"), "{body}");

    // The link is in the room, as a github.issue message from the caller.
    let history = ok(&server, "bob", "room.history", json!({"room": "lab"})).await;
    let link = history["messages"].as_array().and_then(|m| m.iter().find(|m| m["type"] == "github.issue")).cloned().expect("a github.issue message");
    assert_eq!((link["from"].as_str(), link["payload"]["html_url"].as_str()), (Some("alice"), made["html_url"].as_str()), "{link}");
    assert_eq!(link["seq"], made["message_seq"], "{link} {made}");

    // The card carries its issue.
    let board = ok(&server, "bob", "board.list", json!({"room": "lab"})).await;
    assert_eq!(board["cards"][0]["issue"], json!({"repo": "octo/agents", "number": 1, "html_url": made["html_url"]}), "{board}");

    let (status, again) = call(&server, "bob", "github.issue", json!({"room": "lab", "card_id": "card-1"})).await;
    assert_eq!((status, again["code"].as_str()), (409, Some("already_exists")), "{again}");
    assert_eq!(issue_hits(&gh).len(), 1, "no second issue for the card");

    // A move of the card is a comment on its issue.
    ok(&server, "bob", "board.move", json!({"room": "lab", "card_id": "card-1", "column": "in_progress"})).await;
    let comment = gh.wait("/repos/octo/agents/issues/1/comments", 1).await[0].json();
    let text = comment["body"].as_str().expect("a comment body");
    assert!(text.contains("moved from **todo** to **in_progress** by `bob`"), "{text}");

    // From a decision: not while the proposal is open.
    let proposal = ok(&server, "alice", "proposal.create", json!({"room": "lab", "text": "Adopt lettre for mail\nIt is async.", "rule": "majority"})).await;
    let pid = proposal["proposal_id"].as_str().expect("proposal id").to_owned();
    let (status, open) = call(&server, "alice", "github.issue", json!({"room": "lab", "proposal_id": pid})).await;
    assert_eq!((status, open["code"].as_str()), (400, Some("invalid_params")), "{open}");
    for who in ["alice", "bob"] {
        ok(&server, who, "proposal.vote", json!({"room": "lab", "proposal_id": pid, "vote": "yes"})).await;
    }
    let decided = ok(&server, "bob", "github.issue", json!({"room": "lab", "proposal_id": pid})).await;
    assert_eq!((decided["number"].as_u64(), decided["proposal_id"].as_str()), (Some(2), Some(pid.as_str())), "{decided}");
    let req = issue_hits(&gh).pop().expect("the decision's request").json();
    assert_eq!(req["title"], "Decision: Adopt lettre for mail", "{req}");
    assert!(req["body"].as_str().is_some_and(|b| b.contains("It is async.") && b.contains("passed")), "{req}");
    assert!(req.get("labels").is_none(), "no labels asked: none sent: {req}");

    let (status, links) = server.get("/admin/github/links?room=lab").await;
    assert_eq!((status, links["count"].as_u64()), (200, Some(2)), "{links}");
    let (_, repos) = server.get("/admin/github/repos").await;
    assert_eq!(repos["repos"][0]["room"], "lab", "{repos}");

    // Only members make issues.
    let (status, body) = call(&server, "mallory", "github.issue", json!({"room": "lab", "card_id": "card-1"})).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_member")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn githubs_refusals_are_clear_codes() {
    let gh = github().await;
    let server = InProcess::with_args(&["--github-api-url", &gh.url(""), "--github-token", TOKEN, "--enable-fault-injection"]);
    for (room, repo) in [("private", "octo/private"), ("limited", "octo/limited"), ("revoked", "octo/revoked"), ("lab", "octo/agents")] {
        ok(&server, "alice", "room.create", json!({"name": room})).await;
        assert_eq!(map(&server, room, repo).await.0, 200);
        ok(&server, "alice", "board.add", json!({"room": room, "title": "invalid"})).await;
    }
    for (room, status, code, says) in [
        ("private", 502, "github_not_found", "(404)"),
        ("limited", 429, "github_rate_limited", "retry after 30 s"),
        ("revoked", 502, "github_unauthorized", "Bad credentials"),
        ("lab", 502, "github_unprocessable", "Validation Failed"),
    ] {
        let (got, body) = call(&server, "alice", "github.issue", json!({"room": room, "card_id": "card-1"})).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{room}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(says)), "{room}: {body}");
    }
    // A restarted GitHub actor keeps its mappings (they are in the store).
    common::fault_and_restart(&server, "github").await;
    let (_, repos) = server.get("/admin/github/repos").await;
    assert_eq!(repos["count"], 4, "{repos}");

    let (status, body) = call(&server, "alice", "github.issue", json!({"room": "lab"})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_params")), "{body}");
    let (status, body) = call(&server, "alice", "github.issue", json!({"room": "lab", "card_id": "card-9"})).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");

    // Without a token there is no integration.
    let off = InProcess::with_args(&["--github-api-url", &gh.url("")]);
    ok(&off, "alice", "room.create", json!({"name": "lab"})).await;
    ok(&off, "alice", "board.add", json!({"room": "lab", "title": "x"})).await;
    assert_eq!(map(&off, "lab", "octo/agents").await.0, 200);
    let (status, body) = call(&off, "alice", "github.issue", json!({"room": "lab", "card_id": "card-1"})).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("not_configured")), "{body}");
}
