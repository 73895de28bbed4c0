//! The command line: `agent-bridge serve` runs the broker; `send`, `listen`, `ask`, `room`, `call`,
//! `agents`, `search`, `status`, `admin` and `mcp` are clients of it, built on [`crate::client`].
//!
//! Client subcommands share `--url`, `--token`, `--client-id`, `--config` and `--json` (see
//! [`common`]); they print results on stdout and diagnostics on stderr, and exit 0 on success,
//! 1 on a failure, 2 on bad usage and 3 when an answer did not come in time.

pub mod admin;
pub mod agents;
pub mod ask;
pub mod call;
pub mod common;
pub mod config;
pub mod keys;
pub mod listen;
pub mod managed;
pub mod mcp;
pub mod room;
pub mod search;
pub mod sandbox;
pub mod send;
pub mod serve;
pub mod status;

use clap::{Parser, Subcommand};

/// agent-bridge: a real-time broker for AI agents.
#[derive(Debug, Parser)]
#[command(
    name = "agent-bridge",
    version,
    about,
    propagate_version = true,
    after_help = "Quick start:\n  agent-bridge serve &\n  agent-bridge listen --client-id browser &\n  agent-bridge send --client-id code --to browser 'hello'\n\nEach command has examples in its --help (agent-bridge send --help)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    #[command(after_help = "Examples:\n  agent-bridge serve                                  # 127.0.0.1:5001, data in ~/.local/share/agent-bridge\n  agent-bridge serve --in-memory --bind 127.0.0.1:0   # throwaway broker on a free port\n  agent-bridge serve --config /etc/agent-bridge.toml\n  agent-bridge serve --bind 0.0.0.0:5001 --require-auth --jwt-secret \"$SECRET\"")]
    Serve(crate::config::ServeArgs),
    /// Create, list and revoke API keys in a data directory (the broker must not be running on it).
    #[command(after_help = "Examples:\n  agent-bridge keys create --data-dir DIR --client-id ops --permissions admin | tail -n1\n  agent-bridge keys create --data-dir DIR --client-id 'browser-*' --permissions read,write --expires-days 30\n  agent-bridge keys list --data-dir DIR\n  agent-bridge keys revoke --data-dir DIR 0123456789ab")]
    Keys(keys::KeysArgs),
    /// Send one message to a client, `all`, a pool or a room.
    #[command(after_help = "Examples:\n  agent-bridge send --client-id code --to browser --type command '{\"text\": \"hello\"}'\n  agent-bridge send --client-id code --to all 'hello everyone'\n  agent-bridge send --client-id code --room lab --type chat 'tests are green'\n  echo '{\"n\": 1}' | agent-bridge send --client-id code --to browser\n  agent-bridge send --token \"$KEY\" --to browser @payload.json     # a key bound to one id sends as that id")]
    Send(send::SendArgs),
    /// Print incoming messages, one per line (JSON lines with --json).
    #[command(after_help = "Examples:\n  agent-bridge listen --client-id browser\n  agent-bridge listen --client-id browser --json --auto-ack --cursor-file browser.cursor\n  agent-bridge listen --client-id reviewer --types question --count 1")]
    Listen(listen::ListenArgs),
    /// Send a request and print the reply; exit status 3 if none comes in time.
    #[command(after_help = "Examples:\n  agent-bridge ask --client-id code --to reviewer 'Is this diff ok?'\n  agent-bridge ask --client-id code --to pool:reviewers --timeout 60 --json '{\"diff\": \"...\"}'")]
    Ask(ask::AskArgs),
    /// Create, join, read and talk in rooms.
    Room(room::RoomArgs),
    /// Make any room, proposal, board or file call (`--list` lists them) and print its result.
    Call(call::CallArgs),
    /// List the registered agents and their status, or the pools (`--pools`).
    Agents(agents::AgentsArgs),
    /// Search the messages you may read (full text, best first).
    Search(search::SearchArgs),
    /// Managed CLI agents: spawn, execute a prompt, stop, list (`agent.spawn` … calls).
    Agent(managed::AgentArgs),
    /// Run code in the broker's sandbox (`code.run`; the broker needs --sandbox).
    Code(managed::CodeArgs),
    /// Internal: the sandbox helper `code.run` runs code through (sets limits, then execs).
    #[command(hide = true)]
    SandboxExec(sandbox::SandboxExecArgs),
    /// Show the broker's status.
    #[command(after_help = "Examples:\n  agent-bridge status\n  agent-bridge status --url ws://10.0.0.5:5001 --token \"$KEY\" --json")]
    Status(status::StatusArgs),
    /// Query the broker's admin API: supervision tree, clients, queues, rooms, keys, dead letters.
    Admin(admin::AdminArgs),
    /// Serve the Model Context Protocol on stdio (for Claude Code, Claude Desktop, ...).
    #[command(after_help = "Examples:\n  claude mcp add agent-bridge -- agent-bridge mcp --client-id claude-code\n  claude mcp add agent-bridge -e BRIDGE_TOKEN=\"$KEY\" -- agent-bridge mcp --client-id claude-code")]
    Mcp(mcp::McpArgs),
    /// Check, print or generate the broker's configuration.
    Config(config::ConfigArgs),
    /// Mint a JWT for a client id and permissions from the configured jwt_secret.
    #[command(after_help = "Examples:\n  agent-bridge token --config /etc/agent-bridge.toml --client-id code --permissions read,write\n  BRIDGE_JWT_SECRET=\"$SECRET\" agent-bridge token --client-id ops --permissions admin --ttl 3600 --json")]
    Token(config::TokenArgs),
    /// Print the version of the binary and of the wire protocol.
    #[command(after_help = "Examples:\n  agent-bridge version\n  agent-bridge version --json")]
    Version(config::VersionArgs),
}
