//! `agent-bridge ask`: send a request and print the reply (the message whose `correlation_id`
//! matches). Exit status 0 with a reply, 3 when none came within `--timeout`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::common::{finish, payload_text, print_line, run_async, ClientArgs, Failure, EXIT_TIMEOUT};
use super::send::connect;
use crate::client::{ClientError, Outgoing};

/// Flags of `agent-bridge ask`.
#[derive(Debug, Clone, Args)]
pub struct AskArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Who to ask: a client id or `pool:NAME`.
    #[arg(long)]
    pub to: String,
    /// Message type of the request.
    #[arg(long = "type", default_value = "question")]
    pub msg_type: String,
    /// The payload: JSON (or plain text, sent as a string), `@FILE`, or `-` for stdin.
    pub payload: Option<String>,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
}

/// Runs `agent-bridge ask`.
pub fn ask(args: &AskArgs) -> ExitCode {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return finish(Err(Failure::usage("--timeout must be a positive number of seconds")));
    }
    let payload = match super::common::read_payload(args.payload.as_deref()) {
        Ok(p) => p,
        Err(f) => return finish(Err(f)),
    };
    let request = Outgoing::to(args.to.clone(), args.msg_type.clone(), payload);
    if let Err(e) = request.validate() {
        return finish(Err(Failure::usage(e.to_string())));
    }
    run_async(async move {
        let who = args.client.resolve_bound("cli").await?;
        let client = connect(&who).await?;
        let within = Duration::from_secs_f64(args.timeout);
        let reply = client.request(request, within).await;
        client.close().await;
        match reply {
            Ok(reply) => {
                if who.json {
                    print_line(&serde_json::to_string(&reply).unwrap_or_default())
                } else {
                    print_line(&payload_text(&reply.payload.to_value()))
                }
            }
            Err(ClientError::Timeout { .. }) => Err(Failure {
                message: format!("no reply from {} within {} s", args.to, args.timeout),
                code: EXIT_TIMEOUT,
            }),
            Err(e) => Err(Failure::client(&e, &who.url, "asking")),
        }
    })
}
