//! `agent-bridge serve`: load the configuration, set up logging, bind, run until stopped.

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use agent_bridge_actors::auth::keys::{KeyDefaults, KeyRegistry};
use agent_bridge_actors::store::Store;
use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat, ServeArgs};
use crate::Stop;

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if config.log_format == LogFormat::Json {
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

/// Whether the bind is beyond loopback with no authentication configured: then only API keys in
/// the store can make it acceptable (`Config::check_exposure`).
fn exposed(config: &Config) -> bool {
    let auth_configured = config.require_auth
        || !config.jwt_secret.is_empty()
        || !config.jwt_public_key_file.is_empty()
        || !config.bootstrap_admin_key_file.is_empty();
    !(config.bind.ip().is_loopback() || config.insecure || auth_configured)
}

/// True when the store holds API keys. Opens the store, and sled keeps it locked for the rest of
/// the process: call it only when the broker will not start anyway.
fn store_has_keys(config: &Config) -> anyhow::Result<bool> {
    let Some(dir) = config.store_dir().filter(|d| d.exists()) else { return Ok(false) };
    let store = Store::open(Some(&dir), None).with_context(|| format!("opening the store in {}", dir.display()))?;
    let defaults = KeyDefaults { rate_limit_per_hour: config.key_rate_limit_per_hour, burst: config.key_burst.max(1) };
    Ok(KeyRegistry::open(store, defaults).map_err(|e| anyhow::anyhow!("{e}"))?.any())
}

fn serve_inner(config: Config) -> anyhow::Result<i32> {
    raise_fd_limit();
    // An unauthenticated public bind is refused before binding: at once when no store can hold
    // keys; otherwise `run` decides once the store is open, and a failed bind looks at the store
    // first, so that the refusal, not the bind error, is what the operator sees.
    let exposed = exposed(&config);
    if exposed && config.store_dir().is_none_or(|d| !d.exists()) {
        config.check_exposure(false)?;
    }
    let addr = config.bind;
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            if exposed {
                config.check_exposure(store_has_keys(&config)?)?;
            }
            return Err(e).with_context(|| format!("binding {addr}"));
        }
    };
    let local = listener.local_addr().context("reading the bound address")?;
    let scheme = if config.tls_cert_file.is_empty() { "http" } else { "https" };
    let system = actix::System::new();
    let serving = system.block_on(async {
        // Listening to the signals before the port is announced: a stop sent right after it counts.
        let signals = signals().context("listening to signals")?;
        crate::Serving::start(config, listener).map(|s| (s, signals))
    });
    let (serving, signals) = serving?;
    let state = serving.state();
    // The one line a script (or a test) reads to find the port when binding port 0.
    println!("agent-bridge listening on {scheme}://{local}");
    let closed = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&closed);
    let signals = async {
        let how = signals.await;
        arm_shutdown_deadline();
        how
    };
    system.block_on(async move {
        actix::spawn(async move {
            if let Err(e) = serving.until(signals).await {
                tracing::error!(error = format!("{e:#}"), "stopping");
            }
            done.store(true, Ordering::Release);
            actix::System::current().stop();
        });
    });
    // Exit code 70 when a critical actor escalated (it stops the System); 0 after a signal.
    let code = system.run_with_code().context("running the actor system")?;
    if !closed.load(Ordering::Acquire) {
        arm_shutdown_deadline();
        // The System stopped under a stop in progress: save and flush on a runtime of our own.
        match tokio::runtime::Builder::new_current_thread().build() {
            Ok(rt) => rt.block_on(crate::close(&state)),
            Err(e) => tracing::error!(error = %e, "saving API key usage at shutdown: no runtime"),
        }
    }
    tracing::info!(exit_code = code, "agent-bridge stopped");
    Ok(code)
}

/// The longest a stop may take once it has begun: the HTTP server's graceful stop (5 s), saving
/// key usage and the last flush. A store that hangs (a stuck disk, a hung network mount) must not
/// keep the process alive past it: then it exits with code 1, saying so.
pub const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts the watchdog of [`SHUTDOWN_DEADLINE`]: a plain thread, so it fires even when every
/// event loop is blocked.
fn arm_shutdown_deadline() {
    let spawned = std::thread::Builder::new().name("shutdown-deadline".into()).spawn(|| {
        std::thread::sleep(SHUTDOWN_DEADLINE);
        tracing::error!(deadline_s = SHUTDOWN_DEADLINE.as_secs(), "stopping took longer than the shutdown deadline: exiting now");
        eprintln!("agent-bridge: the stop did not finish within {} s (is the store stuck?): exiting", SHUTDOWN_DEADLINE.as_secs());
        std::process::exit(1);
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "starting the shutdown watchdog");
    }
}

/// SIGTERM stops gracefully, SIGINT and SIGQUIT at once (as actix-server's own handling did);
/// registered now, awaited by [`crate::Serving::until`].
#[cfg(unix)]
fn signals() -> std::io::Result<impl std::future::Future<Output = Stop>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    Ok(async move {
        let (name, how) = tokio::select! {
            _ = term.recv() => ("SIGTERM", Stop::Graceful),
            _ = int.recv() => ("SIGINT", Stop::Forced),
            _ = quit.recv() => ("SIGQUIT", Stop::Forced),
        };
        tracing::info!(signal = name, "signal received");
        how
    })
}

/// Ctrl-C stops at once.
#[cfg(not(unix))]
fn signals() -> std::io::Result<impl std::future::Future<Output = Stop>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        Stop::Forced
    })
}

/// Raises the soft open-file limit to the hard one (as Go's runtime does): each connection takes
/// two descriptors (its socket and the edge's handle on it, crate::http::edge::Connection), and the
/// store some more. `Serving::start` then fits `max_connections` to the limit (and warns).
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(open_files = limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}
