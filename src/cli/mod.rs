//! The command line: `agent-bridge serve` runs the broker; `send`, `listen`, `ask`, `room`,
//! `status` and `mcp` are clients of it, built on [`crate::client`].
//!
//! Client subcommands share `--url`, `--token`, `--client-id`, `--config` and `--json` (see
//! [`common`]); they print results on stdout and diagnostics on stderr, and exit 0 on success,
//! 1 on a failure, 2 on bad usage and 3 when an answer did not come in time.

pub mod ask;
pub mod common;
pub mod keys;
pub mod listen;
pub mod mcp;
pub mod room;
pub mod send;
pub mod serve;
pub mod status;

use clap::{Parser, Subcommand};

/// agent-bridge: a real-time broker for AI agents.
#[derive(Debug, Parser)]
#[command(name = "agent-bridge", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve(crate::config::ServeArgs),
    /// Create, list and revoke API keys in a data directory (the broker must not be running on it).
    Keys(keys::KeysArgs),
    /// Send one message to a client, `all`, a pool or a room.
    Send(send::SendArgs),
    /// Print incoming messages, one per line (JSON lines with --json).
    Listen(listen::ListenArgs),
    /// Send a request and print the reply; exit status 3 if none comes in time.
    Ask(ask::AskArgs),
    /// Create, join, read and talk in rooms.
    Room(room::RoomArgs),
    /// Show the broker's status.
    Status(status::StatusArgs),
    /// Serve the Model Context Protocol on stdio (for Claude Code, Claude Desktop, ...).
    Mcp(mcp::McpArgs),
}
