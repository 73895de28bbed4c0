//! `agent-bridge call METHOD [PARAMS]`: any call of the table of calls
//! (`agent_bridge_actors::rooms::calls`, PROTOCOL.md section 4), and `--list` to print that table.
//!
//! The calls known here are the table's: a new call is reachable from the command line as soon as
//! it is declared there.

use std::process::ExitCode;

use agent_bridge_actors::rooms::calls::{self, CALLS};
use clap::Args;
use serde_json::{json, Value};

use super::common::{print_table, print_value, read_payload, run_async, ClientArgs, Failure};
use super::send::connect;

/// Flags of `agent-bridge call`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    agent-bridge call --list\n  \
    agent-bridge call room.topic --client-id me '{\"room\": \"lab\", \"topic\": \"release 1.3\"}'\n  \
    agent-bridge call board.list --client-id me '{\"room\": \"lab\"}' --json\n  \
    agent-bridge call proposal.create --client-id me @proposal.json")]
pub struct CallArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The call, `noun.verb` (see --list).
    #[arg(required_unless_present = "list")]
    pub method: Option<String>,
    /// The params: a JSON object, `@FILE`, or `-` for stdin (default `{}`).
    pub params: Option<String>,
    /// Print the calls: name, permission and what each does (with --json: their params' schemas).
    #[arg(long)]
    pub list: bool,
}

/// Runs `agent-bridge call ...`.
pub fn call(args: &CallArgs) -> ExitCode {
    run_async(async move {
        if args.list {
            return list(args.client.json);
        }
        let method = args.method.as_deref().unwrap_or_default();
        let Some(spec) = calls::find(method) else {
            return Err(Failure::usage(format!("unknown call {method:?}; `agent-bridge call --list` lists the calls")));
        };
        let params = match args.params.as_deref() {
            None => json!({}),
            Some(arg) => read_payload(Some(arg))?,
        };
        if !params.is_object() {
            return Err(Failure::usage(format!("the params of {} are a JSON object, such as '{{\"room\": \"lab\"}}'", spec.name)));
        }
        let who = args.client.resolve_bound("cli").await?;
        let client = connect(&who).await?;
        let outcome = client.call(spec.name, params).await;
        client.close().await;
        let result = outcome.map_err(|e| Failure::client(&e, &who.url, spec.name))?;
        print_value(&result, who.json)
    })
}

/// `--list`: a table for people, the whole declaration (with the params' schemas) as JSON.
fn list(json: bool) -> Result<(), Failure> {
    if json {
        let all: Vec<Value> = CALLS
            .iter()
            .map(|c| json!({"method": c.name, "permission": c.access.label(), "tool": c.tool, "description": c.doc, "params": c.params_schema()}))
            .collect();
        return print_value(&Value::Array(all), true);
    }
    let rows: Vec<Vec<String>> = CALLS.iter().map(|c| vec![c.name.to_owned(), c.access.label().to_owned(), c.doc.to_owned()]).collect();
    print_table(&["CALL", "PERMISSION", "WHAT IT DOES"], &rows)
}
