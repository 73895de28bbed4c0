//! `agent-bridge search QUERY [--room R | --with ID] [--from ID] [--type T] [--since T] [--until T]
//! [--limit N] [--cursor C]`: the `history.search` call (PROTOCOL.md section 4), one page of hits
//! best first; `--json` prints the call's answer as it is.

use std::process::ExitCode;

use agent_bridge_protocol::Message;
use clap::Args;
use serde_json::{json, Map, Value};

use super::common::{human_message, print_line, print_value, run_async, ClientArgs, Failure};
use super::send::connect;

/// Flags of `agent-bridge search`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Query syntax: terms, \"phrases\", AND, OR, -term, field:term (text, type, from, thread).\n\nExamples:\n  \
    agent-bridge search --client-id me 'deploy AND failed'\n  \
    agent-bridge search --client-id me '\"release notes\"' --room lab\n  \
    agent-bridge search --client-id me 'type:question -answered' --with reviewer --json")]
pub struct SearchArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to find (tantivy's query syntax).
    pub query: String,
    /// Only this room (and its channels), or one channel (room/channel).
    #[arg(long, conflicts_with = "with")]
    pub room: Option<String>,
    /// Only the direct conversation with this client id.
    #[arg(long)]
    pub with: Option<String>,
    /// Only messages sent by this client id.
    #[arg(long)]
    pub from: Option<String>,
    /// Only messages of exactly this type.
    #[arg(long = "type")]
    pub msg_type: Option<String>,
    /// Only messages at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only messages before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Hits per page (default 20, at most 200).
    #[arg(long)]
    pub limit: Option<u32>,
    /// The next_cursor a previous page printed.
    #[arg(long)]
    pub cursor: Option<String>,
}

impl SearchArgs {
    /// The call's params: the flags that were given.
    fn params(&self) -> Value {
        let mut p = Map::new();
        p.insert("query".into(), json!(self.query));
        let optional = [
            ("room", &self.room),
            ("with", &self.with),
            ("from", &self.from),
            ("type", &self.msg_type),
            ("since", &self.since),
            ("until", &self.until),
            ("cursor", &self.cursor),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                p.insert(name.into(), json!(v));
            }
        }
        if let Some(limit) = self.limit {
            p.insert("limit".into(), json!(limit));
        }
        Value::Object(p)
    }
}

/// Runs `agent-bridge search ...`.
pub fn search(args: &SearchArgs) -> ExitCode {
    run_async(async move {
        let who = args.client.resolve_bound("cli").await?;
        let client = connect(&who).await?;
        let outcome = client.call("history.search", args.params()).await;
        client.close().await;
        let result = outcome.map_err(|e| Failure::client(&e, &who.url, "history.search"))?;
        if who.json {
            return print_value(&result, true);
        }
        let hits = result["results"].as_array().cloned().unwrap_or_default();
        if hits.is_empty() {
            print_line("no messages found")?;
        }
        for hit in hits {
            let score = hit["score"].as_f64().unwrap_or(0.0);
            match serde_json::from_value::<Message>(hit["message"].clone()) {
                Ok(m) => print_line(&format!("{score:6.2}  {}", human_message(&m)))?,
                Err(_) => print_line(&format!("{score:6.2}  {}", hit["message"]))?,
            }
        }
        if let Some(next) = result["next_cursor"].as_str() {
            print_line(&format!("more: --cursor {next}"))?;
        }
        Ok(())
    })
}
