//! `agent-bridge admin tree|clients|kick|queues|rooms|keys|webhooks|email|email-subscribe|github|
//! github-repo|github-links|replay|redeliver|dead-letters`: the
//! admin HTTP API (PROTOCOL.md section 5) as readable tables on a terminal, or its JSON with `--json`.
//!
//! Each command is one route and the list in its answer that becomes the table; columns are the
//! scalar fields of the rows, so fields a newer broker adds show up without a CLI change.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::common::{cell, print_line, print_table, print_value, run_async, ClientArgs, Failure};
use crate::client::{http_json, BrokerUrl};

/// Flags of `agent-bridge admin`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  agent-bridge admin tree --token \"$ADMIN_KEY\"\n  agent-bridge admin clients\n  agent-bridge admin kick worker-3\n  agent-bridge admin replay --of worker-3 --from 100 --ndjson > worker-3.ndjson\n  agent-bridge admin dead-letters --limit 20 --json")]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What to show.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// The supervision tree with each actor's state and restart count (`GET /admin/supervisors`).
    Tree,
    /// Connected and known clients (`GET /admin/clients`).
    Clients,
    /// Disconnect every session of a client (`DELETE /admin/clients/{id}`).
    Kick {
        /// The client id.
        client: String,
    },
    /// Per client, what waits for delivery, and the acks pending (`GET /admin/queues`).
    Queues,
    /// Rooms (`GET /admin/rooms`).
    Rooms,
    /// API keys with their usage (`GET /admin/keys`).
    Keys,
    /// Webhooks with their deliveries and breaker state (`GET /admin/webhooks`).
    Webhooks,
    /// E-mail subscriptions with their mails sent and failed (`GET /admin/email`).
    Email,
    /// Subscribe addresses to events by e-mail (`POST /admin/email`).
    EmailSubscribe(EmailArgs),
    /// Rooms mapped to GitHub repositories (`GET /admin/github/repos`).
    Github,
    /// Map a room to a GitHub repository (`PUT /admin/github/repos/{room}`).
    GithubRepo {
        /// The room.
        room: String,
        /// The repository, owner/name.
        repo: String,
    },
    /// Issues made from cards and decisions (`GET /admin/github/links`).
    GithubLinks,
    /// Stored messages of a client's inbox or a room, oldest first (`GET /admin/messages`).
    Replay(ReplayArgs),
    /// Send a dead letter to its recipient again (`POST /admin/messages/{id}/redeliver`).
    Redeliver {
        /// The dead letter's message id.
        message_id: String,
    },
    /// Dead letters (`GET /admin/dead-letters`).
    DeadLetters {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Flags of `agent-bridge admin email-subscribe`.
#[derive(Debug, Clone, Args)]
pub struct EmailArgs {
    /// A recipient (repeat for more).
    #[arg(long, required = true)]
    to: Vec<String>,
    /// Event names, comma-separated (message, member_joined, member_left, proposal_closed,
    /// actor_restarted, dead_letter, task_updated).
    #[arg(long, value_delimiter = ',', required = true)]
    events: Vec<String>,
    /// Only events in this room (and its channels).
    #[arg(long)]
    room: Option<String>,
    /// Only events about this client.
    #[arg(long, value_name = "CLIENT_ID")]
    client: Option<String>,
    /// One mail per this many seconds with every event of the window (a digest).
    #[arg(long)]
    digest_seconds: Option<u64>,
}

/// Flags of `agent-bridge admin replay`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("stream").required(true).args(["of", "room"])))]
pub struct ReplayArgs {
    /// The client whose inbox to read.
    #[arg(long, value_name = "CLIENT_ID")]
    of: Option<String>,
    /// The room (or `room/channel`) to read.
    #[arg(long)]
    room: Option<String>,
    /// First seq, or an RFC 3339 time.
    #[arg(long)]
    from: Option<String>,
    /// Last seq, or an RFC 3339 time.
    #[arg(long)]
    to: Option<String>,
    /// At most this many messages (a table shows one page).
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// The whole range, one JSON message per line (a timeline export).
    #[arg(long)]
    ndjson: bool,
}

impl ReplayArgs {
    /// `GET /admin/messages?...` from `from` on.
    fn path(&self, from: Option<&str>, limit: usize) -> String {
        let mut q: Vec<(&str, &str)> = Vec::new();
        let limit = limit.to_string();
        for (name, value) in [("client_id", self.of.as_deref()), ("room", self.room.as_deref()), ("from", from), ("to", self.to.as_deref())] {
            if let Some(v) = value {
                q.push((name, v));
            }
        }
        q.push(("limit", &limit));
        let query: Vec<String> =
            q.iter().map(|(k, v)| format!("{k}={}", percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC))).collect();
        format!("/admin/messages?{}", query.join("&"))
    }
}

impl AdminCommand {
    /// The method, route and the field of its answer that holds the rows.
    fn route(&self) -> (reqwest::Method, String, &'static str) {
        use reqwest::Method;
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        match self {
            AdminCommand::Tree => (Method::GET, "/admin/supervisors".into(), "children"),
            AdminCommand::Clients => (Method::GET, "/admin/clients".into(), "clients"),
            AdminCommand::Kick { client } => (Method::DELETE, format!("/admin/clients/{}", enc(client)), ""),
            AdminCommand::Queues => (Method::GET, "/admin/queues".into(), "queues"),
            AdminCommand::Rooms => (Method::GET, "/admin/rooms".into(), "rooms"),
            AdminCommand::Keys => (Method::GET, "/admin/keys".into(), "keys"),
            AdminCommand::Webhooks => (Method::GET, "/admin/webhooks".into(), "webhooks"),
            AdminCommand::Email => (Method::GET, "/admin/email".into(), "subscriptions"),
            AdminCommand::EmailSubscribe(_) => (Method::POST, "/admin/email".into(), ""),
            AdminCommand::Github => (Method::GET, "/admin/github/repos".into(), "repos"),
            AdminCommand::GithubRepo { room, .. } => (Method::PUT, format!("/admin/github/repos/{}", enc(room)), ""),
            AdminCommand::GithubLinks => (Method::GET, "/admin/github/links".into(), "links"),
            AdminCommand::Replay(r) => (Method::GET, r.path(r.from.as_deref(), r.limit.min(10_000)), "messages"),
            AdminCommand::Redeliver { message_id } => (Method::POST, format!("/admin/messages/{}/redeliver", enc(message_id)), ""),
            AdminCommand::DeadLetters { limit } => (Method::GET, format!("/admin/dead-letters?limit={limit}"), "dead_letters"),
        }
    }
}

impl AdminCommand {
    /// The request body of the commands that change something.
    fn body(&self) -> Option<Value> {
        match self {
            AdminCommand::EmailSubscribe(e) => Some(serde_json::json!({
                "to": e.to, "events": e.events, "room": e.room, "client_id": e.client, "digest_seconds": e.digest_seconds,
            })),
            AdminCommand::GithubRepo { repo, .. } => Some(serde_json::json!({ "repo": repo })),
            _ => None,
        }
    }
}

/// Runs `agent-bridge admin ...`.
pub fn admin(args: &AdminArgs) -> ExitCode {
    run_async(async move {
        let who = args.client.resolve("cli")?;
        let url = BrokerUrl::parse(&who.url).map_err(|e| Failure::usage(e.to_string()))?;
        if let AdminCommand::Replay(r) = &args.command {
            if r.ndjson {
                return export(r, &url, &who).await;
            }
        }
        let (method, path, rows) = args.command.route();
        let body = http_json(&url, method, &path, who.token.as_deref(), args.command.body().as_ref())
            .await
            .map_err(|e| Failure::client(&e, &who.url, &format!("calling {path}")))?;
        if who.json {
            return print_value(&body, true);
        }
        match &args.command {
            AdminCommand::Tree => print_tree(&body),
            AdminCommand::Queues => {
                print_line(&format!("acks pending: {}", cell(&body["pending_acks"])))?;
                print_rows(&body[rows])
            }
            AdminCommand::Kick { client } => print_line(&format!("disconnected {client}: {} session(s) and poll(s) ended", cell(&body["disconnected"]))),
            AdminCommand::Redeliver { message_id } => print_line(&format!(
                "redelivered {message_id} to {} as {} (seq {})",
                cell(&body["recipient"]),
                cell(&body["message_id"]),
                cell(&body["seq"])
            )),
            AdminCommand::Replay(_) => print_messages(&body[rows]),
            AdminCommand::EmailSubscribe(_) | AdminCommand::GithubRepo { .. } => print_rows(&Value::Array(vec![body])),
            _ => print_rows(&body[rows]),
        }
    })
}

/// `admin replay --ndjson`: every page of the range, one message per line.
async fn export(r: &ReplayArgs, url: &BrokerUrl, who: &super::common::Resolved) -> Result<(), Failure> {
    let mut from = r.from.clone();
    let mut left = r.limit;
    while left > 0 {
        let path = r.path(from.as_deref(), left.min(10_000));
        let page = http_json(url, reqwest::Method::GET, &path, who.token.as_deref(), None)
            .await
            .map_err(|e| Failure::client(&e, &who.url, &format!("reading {path}")))?;
        let messages = page["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
        for m in messages {
            print_line(&m.to_string())?;
        }
        left = left.saturating_sub(messages.len());
        match page["next_from"].as_u64() {
            Some(next) if !messages.is_empty() => from = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(())
}

/// Messages as a table: seq, time, sender, recipient, type and the start of the payload.
fn print_messages(messages: &Value) -> Result<(), Failure> {
    let rows: Vec<Vec<String>> = messages
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let to = m["room"].as_str().map_or_else(|| cell(&m["to"]), |r| format!("#{r}"));
            let payload: String = m["payload"].to_string().chars().take(60).collect();
            vec![cell(&m["seq"]), cell(&m["timestamp"]), cell(&m["from"]), to, cell(&m["type"]), payload]
        })
        .collect();
    if rows.is_empty() {
        return print_line("(none)");
    }
    print_table(&["seq", "time", "from", "to", "type", "payload"], &rows)
}

/// The tree as an indented table: one line per actor, children under their parent.
fn print_tree(root: &Value) -> Result<(), Failure> {
    fn walk(node: &Value, depth: usize, rows: &mut Vec<Vec<String>>) {
        rows.push(vec![
            format!("{}{}", "  ".repeat(depth), cell(&node["name"])),
            cell(&node["kind"]),
            cell(&node["state"]),
            cell(&node["restarts"]),
            cell(&node["last_reason"]),
        ]);
        for child in node["children"].as_array().into_iter().flatten() {
            walk(child, depth + 1, rows);
        }
    }
    let mut rows = Vec::new();
    walk(root, 0, &mut rows);
    print_table(&["actor", "kind", "state", "restarts", "last reason"], &rows)
}

/// A list of objects as a table whose columns are the rows' scalar fields, in first-seen order;
/// lists and objects inside a row show as their length.
fn print_rows(rows: &Value) -> Result<(), Failure> {
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        return print_line("(none)");
    }
    let mut header: Vec<String> = Vec::new();
    for row in rows {
        for key in row.as_object().into_iter().flat_map(|o| o.keys()) {
            if !header.contains(key) {
                header.push(key.clone());
            }
        }
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            header
                .iter()
                .map(|k| match &row[k] {
                    Value::Array(a) => a.len().to_string(),
                    Value::Object(o) => o.get("id").map_or_else(|| format!("{{{} fields}}", o.len()), cell),
                    v => cell(v),
                })
                .collect()
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    print_table(&header, &table)
}
