//! `agent-bridge`: the broker and its command line.

use std::process::ExitCode;

use agent_bridge::cli::{admin, agents, ask, call, config, keys, listen, managed, mcp, room, sandbox, search, send, serve::serve, status, Cli, Command};
use clap::Parser;

/// glibc's allocator spent a third of the hot path in malloc/free under load (perf); mimalloc's
/// thread-local free lists do not. The `system-alloc` feature keeps the system allocator, for heap
/// profilers that hook malloc (heaptrack, valgrind).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve(args) => serve(args),
        Command::Keys(args) => keys::keys(args),
        Command::Send(args) => send::send(args),
        Command::Listen(args) => listen::listen(args),
        Command::Ask(args) => ask::ask(args),
        Command::Room(args) => room::room(args),
        Command::Call(args) => call::call(args),
        Command::Agents(args) => agents::agents(args),
        Command::Search(args) => search::search(args),
        Command::Agent(args) => managed::agent(args),
        Command::Code(args) => managed::code(args),
        Command::SandboxExec(args) => sandbox::sandbox_exec(args),
        Command::Status(args) => status::status(args),
        Command::Admin(args) => admin::admin(args),
        Command::Mcp(args) => mcp::mcp(args),
        Command::Config(args) => config::config(args),
        Command::Token(args) => config::token(args),
        Command::Version(args) => config::version(args),
    }
}
