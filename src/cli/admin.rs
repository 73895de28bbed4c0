//! `agent-bridge admin tree|clients|queues|rooms|keys|dead-letters`: the admin HTTP API
//! (PROTOCOL.md section 5) as readable tables on a terminal, or its JSON with `--json`.
//!
//! Each command is one `GET` route and the list in its answer that becomes the table; columns are
//! the scalar fields of the rows, so fields a newer broker adds show up without a CLI change.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::common::{cell, print_line, print_table, print_value, run_async, ClientArgs, Failure};
use crate::client::{http_json, BrokerUrl};

/// Flags of `agent-bridge admin`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  agent-bridge admin tree --token \"$ADMIN_KEY\"\n  agent-bridge admin clients\n  agent-bridge admin dead-letters --limit 20 --json")]
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
    /// Per client, what waits for delivery, and the acks pending (`GET /admin/queues`).
    Queues,
    /// Rooms (`GET /admin/rooms`).
    Rooms,
    /// API keys with their usage (`GET /admin/keys`).
    Keys,
    /// Dead letters (`GET /admin/dead-letters`).
    DeadLetters {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

impl AdminCommand {
    /// The route and the field of its answer that holds the rows.
    fn route(&self) -> (String, &'static str) {
        match self {
            AdminCommand::Tree => ("/admin/supervisors".into(), "children"),
            AdminCommand::Clients => ("/admin/clients".into(), "clients"),
            AdminCommand::Queues => ("/admin/queues".into(), "queues"),
            AdminCommand::Rooms => ("/admin/rooms".into(), "rooms"),
            AdminCommand::Keys => ("/admin/keys".into(), "keys"),
            AdminCommand::DeadLetters { limit } => (format!("/admin/dead-letters?limit={limit}"), "dead_letters"),
        }
    }
}

/// Runs `agent-bridge admin ...`.
pub fn admin(args: &AdminArgs) -> ExitCode {
    run_async(async move {
        let who = args.client.resolve("cli")?;
        let url = BrokerUrl::parse(&who.url).map_err(|e| Failure::usage(e.to_string()))?;
        let (path, rows) = args.command.route();
        let body = http_json(&url, reqwest::Method::GET, &path, who.token.as_deref(), None)
            .await
            .map_err(|e| Failure::client(&e, &who.url, &format!("reading {path}")))?;
        if who.json {
            return print_value(&body, true);
        }
        match args.command {
            AdminCommand::Tree => print_tree(&body),
            AdminCommand::Queues => {
                print_line(&format!("acks pending: {}", cell(&body["pending_acks"])))?;
                print_rows(&body[rows])
            }
            _ => print_rows(&body[rows]),
        }
    })
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
