//! `agent-bridge agents`: the registered agents (`agent.list`), or with `--pools` the pools
//! (`pool.list`), as a table (or the call's JSON with `--json`). Other agent, pool and task calls
//! are `agent-bridge call agent.register ...` and the like.

use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

use super::common::{print_table, print_value, run_async, ClientArgs, Failure};
use super::send::connect;

/// Flags of `agent-bridge agents`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    agent-bridge agents\n  \
    agent-bridge agents --pool reviewers --status idle --json\n  \
    agent-bridge agents --pools")]
pub struct AgentsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only members of this pool.
    #[arg(long)]
    pub pool: Option<String>,
    /// Only agents with this capability.
    #[arg(long)]
    pub capability: Option<String>,
    /// Only agents in this status (idle, working, stuck, completed, offline).
    #[arg(long)]
    pub status: Option<String>,
    /// List the pools (strategy, healthy members, open circuits) instead.
    #[arg(long, conflicts_with_all = ["pool", "capability", "status"])]
    pub pools: bool,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Runs `agent-bridge agents ...`.
pub fn agents(args: &AgentsArgs) -> ExitCode {
    run_async(async move {
        let (method, params) = if args.pools {
            ("pool.list", json!({}))
        } else {
            ("agent.list", json!({"pool": args.pool, "capability": args.capability, "status": args.status}))
        };
        let who = args.client.resolve_bound("cli").await?;
        let client = connect(&who).await?;
        let outcome = client.call(method, params).await;
        client.close().await;
        let result = outcome.map_err(|e| Failure::client(&e, &who.url, method))?;
        if who.json {
            return print_value(&result, true);
        }
        let empty = Vec::new();
        if args.pools {
            let rows: Vec<Vec<String>> = result["pools"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|p| {
                    let members: Vec<Value> = p["members"].as_array().unwrap_or(&empty).iter().map(|m| m["client_id"].clone()).collect();
                    vec![text(&p["pool"]), text(&p["strategy"]), text(&Value::Array(members)), text(&p["open"]), text(&p["in_flight"])]
                })
                .collect();
            return print_table(&["POOL", "STRATEGY", "MEMBERS", "OPEN", "IN FLIGHT"], &rows);
        }
        let rows: Vec<Vec<String>> = result["agents"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|a| vec![text(&a["client_id"]), text(&a["status"]), text(&a["online"]), text(&a["pools"]), text(&a["capabilities"]), text(&a["detail"])])
            .collect();
        print_table(&["AGENT", "STATUS", "ONLINE", "POOLS", "CAPABILITIES", "DETAIL"], &rows)
    })
}
