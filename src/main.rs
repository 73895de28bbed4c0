//! `agent-bridge`: the broker and its command line.

use std::process::ExitCode;

use agent_bridge::cli::{serve::serve, Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve(args) => serve(args),
    }
}
