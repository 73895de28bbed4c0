//! `agent-bridge send`: one message to a client, `all`, a pool or a room; prints the `sent` reply.
//!
//! With `--correlation-id` it is a reply to a request, which is how a shell script answers
//! `agent-bridge ask`: read the request from `listen --json`, send the answer with the request's
//! `correlation_id` (or its `id` when it has none).

use std::process::ExitCode;

use agent_bridge_protocol::frames::Sent;
use agent_bridge_protocol::Priority;
use clap::Args;
use serde_json::json;

use super::common::{finish, parse_priority, print_line, print_value, read_payload, run_async, ClientArgs, Failure, Resolved};
use crate::client::{http_json, BrokerUrl, Client, ClientError, Outgoing};

/// Flags of `agent-bridge send`.
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Recipient: a client id, `all`, or `pool:NAME`.
    #[arg(long, required_unless_present = "room", conflicts_with = "room")]
    pub to: Option<String>,
    /// Send to every member of this room instead.
    #[arg(long)]
    pub room: Option<String>,
    /// Message type.
    #[arg(long = "type", default_value = "message")]
    pub msg_type: String,
    /// The payload: JSON (or plain text, sent as a string), `@FILE`, or `-` for stdin.
    pub payload: Option<String>,
    /// Mark it as a reply to the request with this correlation id.
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// critical, high, normal, low, bulk (or 1..9).
    #[arg(long, value_parser = parse_priority, default_value = "normal")]
    pub priority: Priority,
    /// Seconds until the message expires.
    #[arg(long)]
    pub ttl: Option<u64>,
    /// Ask the recipient to acknowledge it (redelivered until acked).
    #[arg(long)]
    pub require_ack: bool,
    /// Sends with the same key within the broker's window are routed once.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Do not store it: only recipients online now get it.
    #[arg(long)]
    pub no_persist: bool,
}

impl SendArgs {
    /// The message these flags describe.
    pub fn outgoing(&self) -> Result<Outgoing, Failure> {
        let payload = read_payload(self.payload.as_deref())?;
        let mut msg = match (&self.to, &self.room) {
            (Some(to), None) => Outgoing::to(to.clone(), self.msg_type.clone(), payload),
            (None, Some(room)) => Outgoing::room(room.clone(), self.msg_type.clone(), payload),
            _ => return Err(Failure::usage("give exactly one of --to and --room")),
        };
        msg = msg.require_ack(self.require_ack).priority(self.priority).ttl(self.ttl);
        if let Some(c) = &self.correlation_id {
            msg = msg.correlation_id(c.clone());
        }
        if let Some(k) = &self.idempotency_key {
            msg = msg.idempotency_key(k.clone());
        }
        if self.no_persist {
            msg = msg.fire_and_forget();
        }
        msg.validate().map_err(|e| Failure::usage(e.to_string()))?;
        Ok(msg)
    }
}

/// Runs `agent-bridge send`: one `POST /api/send`, so that a key with only `write` can send (a
/// WebSocket session needs `read`). Without `--client-id`, a token bound to one client id sends as
/// that id (the broker fills in `from`); otherwise the generated id is the sender.
pub fn send(args: &SendArgs) -> ExitCode {
    let outgoing = match args.outgoing() {
        Ok(m) => m,
        Err(f) => return finish(Err(f)),
    };
    run_async(async move {
        let who = args.client.resolve("cli")?;
        let target = outgoing.room.as_ref().map_or_else(|| outgoing.to.clone().unwrap_or_default(), |r| format!("room {r}"));
        let sent = send_http(&who, &outgoing).await?;
        print_sent(&sent, &target, who.json)
    })
}

/// Sends one message with `POST /api/send` and returns the broker's answer as a `sent` frame.
pub async fn send_http(who: &Resolved, outgoing: &Outgoing) -> Result<Sent, Failure> {
    let url = BrokerUrl::parse(&who.url).map_err(|e| Failure::usage(e.to_string()))?;
    let mut body = json!({
        "to": outgoing.to, "room": outgoing.room, "type": outgoing.msg_type, "payload": outgoing.payload,
        "priority": outgoing.priority, "ttl": outgoing.ttl, "require_ack": outgoing.require_ack,
        "correlation_id": outgoing.correlation_id, "idempotency_key": outgoing.idempotency_key,
        "persist": outgoing.persist,
    });
    if !(who.generated_id && who.token.is_some()) {
        body["from"] = json!(who.client_id);
    }
    let answer = match http_json(&url, reqwest::Method::POST, "/api/send", who.token.as_deref(), Some(&body)).await {
        Err(ClientError::Server { code, message }) if code == "bad_frame" && message.contains("\"from\"") => {
            return Err(Failure::usage(format!(
                "the token is not bound to one client id, so the sender must be named: pass --client-id ({message})"
            )))
        }
        other => other.map_err(|e| Failure::client(&e, &who.url, "sending"))?,
    };
    serde_json::from_value(json!({
        "ref": null, "message_id": answer["message_id"], "seq": answer["seq"],
        "status": answer["status"], "recipients": answer["recipients"],
    }))
    .map_err(|e| Failure::failed(format!("unexpected answer from the broker ({e}): {answer}")))
}

/// Connects with the resolved settings, turning failures into a clear message.
pub async fn connect(who: &Resolved) -> Result<Client, Failure> {
    Client::connect(who.config()?).await.map_err(|e| Failure::client(&e, &who.url, "connecting"))
}

/// Prints a `sent` reply.
pub fn print_sent(sent: &Sent, target: &str, json: bool) -> Result<(), Failure> {
    if json {
        let value = json!({
            "message_id": sent.message_id, "seq": sent.seq, "status": sent.status, "recipients": sent.recipients,
        });
        return print_value(&value, true);
    }
    let seq = sent.seq.map(|s| format!(", seq {s}")).unwrap_or_default();
    let status = serde_json::to_value(sent.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    print_line(&format!("sent {} to {target} ({status}{seq}, {} recipient(s))", sent.message_id, sent.recipients))
}
