//! `agent-bridge room create|join|leave|history|members|say`: the room calls of PROTOCOL.md section 4.
//!
//! A broker without rooms answers `unknown_method` (or `not_supported`), which is reported as such.
//! `room join` makes the client id a member (durable until `leave`) and returns, so that a script
//! can go on with `room say`; `--follow` stays in the room and prints its messages like `listen`
//! (a member is *present* only while connected). Without `--json`, results are tables and lines.

use std::process::ExitCode;

use agent_bridge_protocol::Message;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::common::{cell, human_message, print_line, print_table, print_value, read_payload, run_async, ClientArgs, Failure, Resolved};
use super::listen::{listen_loop, ListenOptions, RoomJoin};
use super::send::{connect, print_sent, send_http};
use crate::client::{Client, ClientError, Outgoing};

/// Flags of `agent-bridge room`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples (one identity throughout, so that it stays a member):\n  \
    agent-bridge room create lab --client-id me --topic \"release 1.2\"\n  \
    agent-bridge room join lab --client-id me --role coder\n  \
    agent-bridge room say lab --client-id me \"tests are green\"\n  \
    agent-bridge room history lab --client-id me\n  \
    agent-bridge room join lab --client-id me --follow      # stay and print the room's messages")]
pub struct RoomArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub action: RoomAction,
}

/// What to do with a room.
#[derive(Debug, Clone, Subcommand)]
pub enum RoomAction {
    /// Create a room; the caller becomes its first member.
    Create {
        /// The room's name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// What the room is about.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Become a member of a room (membership lasts until `leave`) and return; with --follow (or
    /// --count) stay and print its messages.
    Join {
        /// The room (`room` or `room/channel`).
        room: String,
        /// coordinator, researcher, coder, reviewer, tester, observer or any text.
        #[arg(long)]
        role: Option<String>,
        /// Replay the room's history after this seq (with --follow).
        #[arg(long)]
        since: Option<u64>,
        /// Stay in the room and print its messages until stopped.
        #[arg(long)]
        follow: bool,
        /// Stay for this many messages, then exit (implies --follow).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Stop being a member of a room.
    Leave {
        /// The room.
        room: String,
    },
    /// Print the room's history, oldest first.
    History {
        /// The room.
        room: String,
        /// Only messages after this seq.
        #[arg(long)]
        since: Option<u64>,
        /// At most this many messages (default 100, at most 1000).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Print who is in the room: role, presence, sessions.
    Members {
        /// The room.
        room: String,
    },
    /// Send a message to every member.
    Say {
        /// The room.
        room: String,
        /// The payload: JSON (or plain text, sent as a string), `@FILE`, or `-` for stdin.
        payload: Option<String>,
        /// Message type.
        #[arg(long = "type", default_value = "message")]
        msg_type: String,
    },
}

/// Runs `agent-bridge room ...`.
pub fn room(args: &RoomArgs) -> ExitCode {
    run_async(async move {
        let who = args.client.resolve_bound("cli").await?;
        if let RoomAction::Join { room, role, since, follow, count } = &args.action {
            if *follow || count.is_some() {
                let join = RoomJoin { room: room.clone(), role: role.clone(), since: *since };
                return listen_loop(&who, ListenOptions { rooms: vec![join], count: *count, ..ListenOptions::default() }).await;
            }
        }
        // Saying something needs only `write`: one HTTP request, as `send` does.
        if let RoomAction::Say { room, payload, msg_type } = &args.action {
            let outgoing = Outgoing::room(room.clone(), msg_type.clone(), read_payload(payload.as_deref())?);
            let sent = send_http(&who, &outgoing).await?;
            return print_sent(&sent, &format!("room {room}"), who.json);
        }
        let client = connect(&who).await?;
        let outcome = act(&client, &args.action, &who).await;
        client.close().await;
        outcome
    })
}

async fn act(client: &Client, action: &RoomAction, who: &Resolved) -> Result<(), Failure> {
    let what = match action {
        RoomAction::Create { .. } => "room.create",
        RoomAction::Join { .. } => "room.join",
        RoomAction::Leave { .. } => "room.leave",
        RoomAction::History { .. } => "room.history",
        RoomAction::Members { .. } => "room.members",
        RoomAction::Say { .. } => "sending to a room",
    };
    let fail = |e: ClientError| Failure::client(&e, &who.url, what);
    let result = match action {
        RoomAction::Create { name, topic } => client.create_room(name, topic.as_deref()).await.map_err(fail)?,
        RoomAction::Join { room, role, since, .. } => client.join_room(room, role.as_deref(), *since).await.map_err(fail)?,
        RoomAction::Leave { room } => client.leave_room(room).await.map_err(fail)?,
        RoomAction::History { room, since, limit } => client.room_history(room, *since, *limit).await.map_err(fail)?,
        RoomAction::Members { room } => client.room_members(room).await.map_err(fail)?,
        RoomAction::Say { .. } => return Ok(()),
    };
    if who.json {
        return print_value(&result, true);
    }
    human(action, &result)
}

/// The result of a room call for people.
fn human(action: &RoomAction, r: &Value) -> Result<(), Failure> {
    match action {
        RoomAction::Create { .. } => {
            let topic = r["topic"].as_str().map(|t| format!(" (topic: {t})")).unwrap_or_default();
            print_line(&format!("created room {}{topic}, {} member(s); you are its coordinator", cell(&r["name"]), cell(&r["members"])))
        }
        RoomAction::Join { .. } => {
            let new = if r["new_member"] == Value::Bool(false) { "already a member of" } else { "joined" };
            print_line(&format!("{new} room {} as {} (last seq {})", cell(&r["room"]), cell(&r["role"]), cell(&r["last_seq"])))
        }
        RoomAction::Leave { .. } => print_line(&format!("left room {}", cell(&r["room"]))),
        RoomAction::Members { .. } => {
            let rows: Vec<Vec<String>> = r["members"]
                .as_array()
                .map(|ms| {
                    ms.iter()
                        .map(|m| vec![cell(&m["client_id"]), cell(&m["role"]), cell(&m["online"]), cell(&m["sessions"]), cell(&m["joined_at"])])
                        .collect()
                })
                .unwrap_or_default();
            print_table(&["MEMBER", "ROLE", "ONLINE", "SESSIONS", "JOINED"], &rows)
        }
        RoomAction::History { .. } => {
            let messages: Vec<Message> = serde_json::from_value(r["messages"].clone()).unwrap_or_default();
            if messages.is_empty() {
                return print_line("no messages");
            }
            messages.iter().try_for_each(|m| print_line(&format!("{}  {}", m.timestamp.to_rfc3339(), human_message(m))))
        }
        RoomAction::Say { .. } => print_value(r, false),
    }
}
