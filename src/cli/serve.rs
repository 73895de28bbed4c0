//! `agent-bridge serve`: load the configuration, set up logging, bind, run until stopped.

use std::net::TcpListener;
use std::process::ExitCode;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, ServeArgs};

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs the broker; the exit code is 0 after a clean stop, 2 for bad configuration, 70 when a
/// critical actor escalated, 1 for other start-up failures.
pub fn serve(args: &ServeArgs) -> ExitCode {
    let config = match Config::load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agent-bridge: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    agent_bridge_actors::supervisor::install_panic_hook();
    tracing::info!(config = ?config.redacted(), "effective configuration");
    match serve_inner(config) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "start-up failed");
            // A refused configuration (such as an unauthenticated public bind) exits 2, like a bad file.
            if e.downcast_ref::<crate::config::ConfigError>().is_some() {
                eprintln!("agent-bridge: configuration error: {e:#}");
                return ExitCode::from(2);
            }
            eprintln!("agent-bridge: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn serve_inner(config: Config) -> anyhow::Result<i32> {
    let addr = config.bind_addr();
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let scheme = if config.tls_cert_file.is_empty() { "http" } else { "https" };
    let system = actix::System::new();
    let state = system.block_on(async { crate::run(config, listener) })?;
    // The one line a script (or a test) reads to find the port when binding port 0.
    println!("agent-bridge listening on {scheme}://{local}");
    let code = system.run_with_code().context("running the actor system")?;
    // The actor system is gone: wait for the last usage write on a runtime of its own.
    let usage = tokio::runtime::Builder::new_current_thread().build().map(|rt| rt.block_on(state.auth.keys.persist_usage()));
    match usage {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "saving API key usage at shutdown"),
        Err(e) => tracing::error!(error = %e, "saving API key usage at shutdown: no runtime"),
    }
    if let Err(e) = state.broker.store.flush() {
        tracing::error!(error = %e, "flushing the store at shutdown");
    }
    tracing::info!(exit_code = code, "agent-bridge stopped");
    Ok(code)
}
