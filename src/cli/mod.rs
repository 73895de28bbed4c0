//! The command line: `agent-bridge serve` (more subcommands arrive with the client library).

pub mod serve;

use clap::{Parser, Subcommand};

/// agent-bridge: a real-time broker for AI agents.
#[derive(Debug, Parser)]
#[command(name = "agent-bridge", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve(crate::config::ServeArgs),
}
