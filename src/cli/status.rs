//! `agent-bridge status`: the broker's `GET /api/status`, as aligned `key  value` lines (uptime as a
//! duration, the store size in bytes units) or, with `--json`, the JSON itself.

use std::process::ExitCode;

use clap::Args;

use serde_json::Value;

use super::common::{bytes_text, cell, duration_text, print_fields, print_value, run_async, ClientArgs, Failure};
use crate::client::{server_status, BrokerUrl};

/// Flags of `agent-bridge status`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  agent-bridge status\n  agent-bridge status --url ws://10.0.0.5:5001 --token \"$KEY\" --json | jq .uptime_s")]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs `agent-bridge status`.
pub fn status(args: &StatusArgs) -> ExitCode {
    run_async(async move {
        let who = args.client.resolve("cli")?;
        let url = BrokerUrl::parse(&who.url).map_err(|e| Failure::usage(e.to_string()))?;
        let body = server_status(&url, who.token.as_deref())
            .await
            .map_err(|e| Failure::client(&e, &who.url, "reading the status"))?;
        if who.json {
            return print_value(&body, true);
        }
        human_status(&url.display(), &body)
    })
}

/// The status as `key  value` lines: durations, sizes and counts for people.
fn human_status(url: &str, b: &Value) -> Result<(), Failure> {
    let n = |k: &str| b[k].as_u64().unwrap_or(0);
    let mut fields = vec![
        ("broker", url.to_owned()),
        ("status", cell(&b["status"])),
        ("server", format!("{} {} (wire protocol {})", cell(&b["server"]), cell(&b["version"]), cell(&b["protocol"]))),
        ("uptime", b["uptime_s"].as_f64().map_or_else(|| "-".into(), duration_text)),
        ("clients", format!("{} online, {} known, {} session(s)", n("clients_online"), n("clients_known"), n("sessions"))),
        ("store", bytes_text(n("store_bytes"))),
        ("router shards", n("router_shards").to_string()),
        ("healthy", cell(&b["healthy"])),
    ];
    // Fields a newer broker adds are shown too.
    let known = ["status", "server", "version", "protocol", "uptime_s", "clients_online", "clients_known", "sessions", "store_bytes", "router_shards", "healthy"];
    let extra: Vec<(String, String)> = b
        .as_object()
        .map(|o| o.iter().filter(|(k, _)| !known.contains(&k.as_str())).map(|(k, v)| (k.clone(), cell(v))).collect())
        .unwrap_or_default();
    fields.extend(extra.iter().map(|(k, v)| (k.as_str(), v.clone())));
    print_fields(&fields)
}
