//! `agent-bridge status`: the broker's `GET /api/status`, as `key: value` lines or JSON.

use std::process::ExitCode;

use clap::Args;

use super::common::{payload_text, print_line, print_value, run_async, ClientArgs, Failure};
use crate::client::{server_status, BrokerUrl};

/// Flags of `agent-bridge status`.
#[derive(Debug, Clone, Args)]
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
        print_line(&format!("broker: {url}"))?;
        match body.as_object() {
            Some(fields) => fields.iter().try_for_each(|(k, v)| print_line(&format!("{k}: {}", payload_text(v)))),
            None => print_value(&body, false),
        }
    })
}
