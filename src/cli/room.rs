//! `agent-bridge room create|join|history|members|say`: the room calls of PROTOCOL.md section 4.
//!
//! Rooms arrive with the rooms feature of the broker; a broker without it answers
//! `unknown_method` (or `not_supported`), which is reported as such. `room join` stays in the room
//! and prints its messages like `listen` (a member is present only while connected).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use super::common::{print_value, read_payload, run_async, ClientArgs, Failure, Resolved};
use super::listen::{listen_loop, ListenOptions, RoomJoin};
use super::send::{connect, print_sent};
use crate::client::{Client, ClientError};

/// Flags of `agent-bridge room`.
#[derive(Debug, Clone, Args)]
pub struct RoomArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub action: RoomAction,
}

/// What to do with a room.
#[derive(Debug, Clone, Subcommand)]
pub enum RoomAction {
    /// Create a room.
    Create {
        name: String,
        #[arg(long)]
        topic: Option<String>,
    },
    /// Join a room and print its messages until stopped.
    Join {
        room: String,
        #[arg(long)]
        role: Option<String>,
        /// Replay the room's history after this seq.
        #[arg(long)]
        since: Option<u64>,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Print the room's history.
    History {
        room: String,
        #[arg(long)]
        since: Option<u64>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Print who is in the room.
    Members { room: String },
    /// Send a message to every member.
    Say {
        room: String,
        /// The payload: JSON (or plain text, sent as a string), `@FILE`, or `-` for stdin.
        payload: Option<String>,
        #[arg(long = "type", default_value = "message")]
        msg_type: String,
    },
}

/// Runs `agent-bridge room ...`.
pub fn room(args: &RoomArgs) -> ExitCode {
    run_async(async move {
        let who = args.client.resolve("cli")?;
        if let RoomAction::Join { room, role, since, count } = &args.action {
            let join = RoomJoin { room: room.clone(), role: role.clone(), since: *since };
            return listen_loop(&who, ListenOptions { rooms: vec![join], count: *count, ..ListenOptions::default() }).await;
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
        RoomAction::History { .. } => "room.history",
        RoomAction::Members { .. } => "room.members",
        RoomAction::Say { .. } => "sending to a room",
    };
    let fail = |e: ClientError| Failure::client(&e, &who.url, what);
    let result = match action {
        RoomAction::Create { name, topic } => client.create_room(name, topic.as_deref()).await.map_err(fail)?,
        RoomAction::History { room, since, limit } => client.room_history(room, *since, *limit).await.map_err(fail)?,
        RoomAction::Members { room } => client.room_members(room).await.map_err(fail)?,
        RoomAction::Say { room, payload, msg_type } => {
            let payload = read_payload(payload.as_deref())?;
            let sent = client.say(room, msg_type, payload).await.map_err(fail)?;
            return print_sent(&sent, &format!("room {room}"), who.json);
        }
        RoomAction::Join { .. } => return Ok(()),
    };
    print_value(&result, who.json)
}
