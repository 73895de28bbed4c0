//! The `desktop` agent: a client id (`desktop_agent`) whose messages the desktop app answers.
//!
//! It is an ordinary client of this broker over loopback, made with [`crate::client`], so it gets
//! everything other clients get (inbox replay, acks, reconnects, room rejoins) without a second
//! delivery path: each message sent to it — directly, or in one of `desktop_rooms` (joined, and
//! created when missing) — becomes a `desktop.prompt` call, answered by the `DesktopController`
//! actor, and the answer goes back as a `response` message `{text}` (or `{error: {code, message}}`)
//! with `correlation_id` = the request's id: to the sender, or into the room.

use std::net::SocketAddr;
use std::time::Duration;

use agent_bridge_protocol::Message;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::client::{Client, ClientConfig, ClientError, Outgoing};
use crate::config::Config;

/// The reply's message type.
pub const RESPONSE_TYPE: &str = "response";

/// Starts the agent when `desktop_agent` and `desktop_window` are set; runs until the process ends.
pub fn start(config: &Config, addr: SocketAddr) {
    if config.desktop_agent.is_empty() || config.desktop_window.is_empty() {
        return;
    }
    if !config.tls_cert_file.is_empty() {
        warn!(client_id = %config.desktop_agent, "the desktop agent connects over plain ws and is not started with TLS on");
        return;
    }
    let url = format!("ws://127.0.0.1:{}", addr.port());
    let client_config = match ClientConfig::new(&url, &config.desktop_agent) {
        Ok(c) => c.token((!config.desktop_token.is_empty()).then(|| config.desktop_token.clone())),
        Err(e) => return warn!(error = %e, "desktop agent not started"),
    };
    let rooms: Vec<String> = config.desktop_rooms.split(',').map(str::trim).filter(|r| !r.is_empty()).map(String::from).collect();
    let timeout = Duration::from_secs(config.desktop_timeout_s.max(1));
    actix_web::rt::spawn(async move {
        let client = Client::start(client_config);
        if let Err(e) = client.wait_connected(Duration::from_secs(10)).await {
            warn!(error = %e, "the desktop agent could not connect");
        }
        for room in &rooms {
            join(&client, room).await;
        }
        info!(client_id = %client.client_id(), rooms = ?rooms, "desktop agent ready");
        while let Some(msg) = client.next_message().await {
            if msg.requires_ack {
                let _ = client.ack(&msg.id);
            }
            if msg.from != client.client_id() && msg.correlation_id.is_none() {
                answer(&client, &msg, timeout).await;
            }
        }
    });
}

/// Joins `room`, creating it first when it does not exist.
async fn join(client: &Client, room: &str) {
    let joined = match client.join_room(room, Some("desktop"), None).await {
        Err(e) if e.code() == Some("unknown_room") => match client.create_room(room, Some("answered by the desktop app")).await {
            Ok(_) => client.join_room(room, Some("desktop"), None).await,
            Err(e) => Err(e),
        },
        other => other,
    };
    if let Err(e) = joined {
        warn!(room, error = %e, "the desktop agent could not join");
    }
}

/// The prompt in a message: a string payload, or its `text` (else the payload as JSON).
fn prompt_of(payload: &Value) -> String {
    match payload {
        Value::String(s) => s.clone(),
        Value::Object(m) => m.get("text").and_then(Value::as_str).map_or_else(|| payload.to_string(), String::from),
        other => other.to_string(),
    }
}

/// Asks the desktop app and replies to the sender, or into the room.
async fn answer(client: &Client, msg: &Message, timeout: Duration) {
    let params = json!({ "text": prompt_of(&msg.payload.to_value()), "timeout_s": timeout.as_secs() });
    let payload = match client.call("desktop.prompt", params).await {
        Ok(result) => json!({ "text": result["response"] }),
        Err(e) => json!({ "error": { "code": e.code().unwrap_or("desktop_error"), "message": e.to_string() } }),
    };
    let reply = match &msg.room {
        Some(room) => Outgoing::room(room.clone(), RESPONSE_TYPE, payload).correlation_id(msg.id.clone()),
        None => Outgoing::reply_to(msg, RESPONSE_TYPE, payload),
    };
    if let Err(e) = client.send(reply).await {
        log_send_error(&e);
    }
}

fn log_send_error(e: &ClientError) {
    warn!(error = %e, "the desktop agent could not send its answer");
}
