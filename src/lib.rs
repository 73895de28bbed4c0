//! The agent-bridge server: configuration, HTTP routes and the command line around the actors.
//!
//! [`run`] serves a broker on a bound listener until a future resolves: what a program embedding
//! the broker (or a test running it in-process) calls. `agent-bridge serve` (`cli::serve`) uses the
//! same two steps, [`Serving::start`] and [`Serving::until`], with the process's signals as the
//! stop and the actor System's exit code as its own; `main.rs` only parses the command line.

pub mod cli;
pub mod client;
pub mod config;
pub mod desktop_agent;
pub mod http;
pub mod tls;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpServer};
use agent_bridge_actors::Broker;
use anyhow::Context;
use tracing::info;

use agent_bridge_actors::auth::Authenticator;

use crate::config::Config;
use crate::http::AppState;

/// Serves a broker on `listener` until `shutdown` resolves, then stops it gracefully: no new
/// connections, every WebSocket gets a close frame (1001) and every SSE stream ends, requests in
/// flight finish (within 5 s), key usage is saved and the store flushed. The listener is closed
/// when this returns.
///
/// Call it inside an actix `System` (`actix::System::new().block_on(..)`, `#[actix_web::main]`):
/// the actors run on it, and stay until that System stops. It does not listen to the process's
/// signals; pass `tokio::signal::ctrl_c()` (or a channel) as `shutdown`. A critical actor that
/// escalates stops the System with exit code 70, not this future.
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    Serving::start(config, listener)?
        .until(async {
            shutdown.await;
            Stop::Graceful
        })
        .await
}

/// How [`Serving::until`] stops the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop accepting, let requests in flight finish within the shutdown timeout (5 s).
    Graceful,
    /// Drop every connection at once (what SIGINT and SIGQUIT ask for).
    Forced,
}

/// A broker serving on a listener: the actor tree and the HTTP server, started.
pub struct Serving {
    state: web::Data<AppState>,
    server: actix_web::dev::ServerHandle,
    stopped: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    addr: SocketAddr,
}

impl Serving {
    /// Starts the broker on `listener` inside the current actix `System` and returns once it is
    /// serving.
    pub fn start(mut config: Config, listener: TcpListener) -> anyhow::Result<Serving> {
        let broker = Broker::start(config.broker()).context("opening the store")?;
        let workers = config.worker_count();
        let fit = fit_open_files(&mut config);
        let auth = start_auth(&config, &broker)?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let state = web::Data::new(AppState {
            broker,
            config: config.clone(),
            started: Instant::now(),
            startup_done: AtomicBool::new(false),
            auth,
            long_polls_waiting: Default::default(),
            closing: crate::http::shutdown::Closing::default(),
            mcp: Default::default(),
            a2a: Default::default(),
        });
        // The A2A gateway's reader of agents' replies (src/http/a2a/gateway.rs).
        actix_web::rt::spawn(crate::http::a2a::gateway::read_replies(state.clone()));
        let app_state = state.clone();
        let hosts = web::Data::new(crate::http::edge::HostPolicy::new(&config));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(hosts.clone())
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    crate::http::ApiError::new(actix_web::http::StatusCode::BAD_REQUEST, "bad_request", e.to_string()).into()
                }))
                .configure(crate::http::routes)
                // Innermost: handlers read decoded bodies and their answers are compressed.
                .wrap(actix_web::middleware::from_fn(crate::http::encoding::decode))
                .wrap(actix_web::middleware::Compress::default())
                .wrap(actix_web::middleware::from_fn(crate::http::auth::authenticate))
                .wrap(actix_web::middleware::from_fn(crate::http::edge::body_deadline))
                .wrap(crate::http::cors(&app_state.config))
                .wrap(actix_web::middleware::from_fn(crate::http::edge::check))
                // Outermost: counts every answer, the edge's and authentication's refusals included.
                .wrap(actix_web::middleware::from_fn(crate::http::metrics::count))
        })
        .workers(workers)
        // Never more connections than open files allow (nor than actix's default of 25,000 per
        // worker): past this actix pauses accepting instead of failing accept(2) with "Too many
        // open files" in a loop.
        .max_connections(fit.map_or(ACTIX_MAX_CONNECTIONS, |n| n.div_ceil(workers).clamp(1, ACTIX_MAX_CONNECTIONS)))
        // The caller says when to stop (`until`); `serve` turns the process's signals into that.
        .disable_signals()
        .on_connect(crate::http::edge::Connection::on_connect)
        // Small frames must not wait for delayed ACKs (40 ms on Linux).
        .tcp_nodelay(true)
        .shutdown_timeout(5)
        .client_request_timeout(Duration::from_secs(30))
        // After the server closes a connection (a WebSocket close, for instance) wait this long for
        // the peer's side, not actix's default second.
        .client_disconnect_timeout(Duration::from_millis(200));
        let server = if config.tls_cert_file.is_empty() {
            server.listen(listener)
        } else {
            server.listen_rustls_0_23(listener, crate::tls::server_config(&config.tls_cert_file, &config.tls_key_file)?)
        }
        .context("listening")?
        .run();
        let handle = server.handle();
        // actix-server starts its workers and the accept thread when this is first polled.
        let stopped = actix_web::rt::spawn(server);
        crate::desktop_agent::start(&config, addr);
        state.startup_done.store(true, Ordering::Release);
        info!(%addr, workers, shards = state.broker.router.shards().len(), data_dir = ?config.store_dir(), "agent-bridge serving");
        Ok(Serving { state, server: handle, stopped, addr })
    }

    /// The address it serves on (the port, when the listener was bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The handlers' shared state: the broker, the configuration, the authenticator.
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until `stop` resolves, then stops the HTTP server as it says (WebSockets and SSE
    /// streams are closed first either way), saves key usage and flushes the store.
    pub async fn until(self, stop: impl Future<Output = Stop>) -> anyhow::Result<()> {
        let mut stopped = self.stopped;
        let how = tokio::select! {
            how = stop => Some(how),
            // Only a failure ends the server before it is told to stop.
            ended = &mut stopped => {
                close(&self.state).await;
                ended.context("the http server task")?.context("the http server")?;
                None
            }
        };
        if let Some(how) = how {
            info!(graceful = how == Stop::Graceful, "agent-bridge stopping");
            self.state.closing.start();
            self.server.stop(how == Stop::Graceful).await;
            stopped.await.context("the http server task")?.context("the http server")?;
            info!("http server stopped");
            close(&self.state).await;
        }
        Ok(())
    }
}

/// Saves API key usage and flushes the store: the last step of a stop.
pub async fn close(state: &AppState) {
    if let Err(e) = state.auth.keys.persist_usage().await {
        tracing::error!(error = %e, "saving API key usage at shutdown");
    }
    if let Err(e) = state.broker.store.flush() {
        tracing::error!(error = %e, "flushing the store at shutdown");
    }
    // The search index's last changes are committed off the event loop (bounded).
    if let Some(search) = state.broker.search.clone() {
        let closed = tokio::task::spawn_blocking(move || search.close(std::time::Duration::from_secs(5)));
        if let Err(e) = closed.await {
            tracing::error!(error = %e, "closing the search index at shutdown");
        }
    }
}

/// Opens the authenticator, refuses an unauthenticated non-loopback bind (unless `insecure`), and
/// writes key usage back to the store every few seconds.
fn start_auth(config: &Config, broker: &Broker) -> anyhow::Result<Arc<Authenticator>> {
    let auth_config = config.auth_config()?;
    let auth = Arc::new(Authenticator::new(broker.store.clone(), auth_config).map_err(|e| anyhow::anyhow!("{e}"))?);
    install_bootstrap_key(config, &auth)?;
    config.check_exposure(auth.required())?;
    let addr = config.bind;
    if !auth.required() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "INSECURE: listening beyond loopback without authentication (--insecure): anyone who can reach this \
             address can act as any client, read any inbox and use the admin routes"
        );
    }
    info!(auth = auth.mode(), cors_origins = %config.cors_origins, tls = !config.tls_cert_file.is_empty(), "security settings");
    let usage = Arc::clone(&auth);
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(USAGE_PERSIST_INTERVAL);
        loop {
            tick.tick().await;
            // The flush runs on the store's flusher thread; the event loop only awaits it.
            if let Err(e) = usage.keys.persist_usage().await {
                tracing::warn!(error = %e, "saving API key usage");
            }
        }
    });
    Ok(auth)
}

/// actix-server's own limit of connections per worker.
const ACTIX_MAX_CONNECTIONS: usize = 25_000;

/// Open files one connection takes: its socket and the edge's handle on it
/// (`http::edge::Connection`).
const FILES_PER_CONNECTION: u64 = 2;
/// Open files kept free beyond those in use at start: the store's, log files, and the sockets of
/// requests answered while the WebSocket/SSE limit is reached.
const FILES_RESERVED: u64 = 64;

/// Fits the connection limits to the process's open-file limit: returns how many TCP connections
/// fit (`None`: no limit), and lowers `max_connections` (WebSocket and SSE connections) to three
/// quarters of that when it is above, saying so, so that past it new streams get a clean 429
/// `too_many_connections` while the rest stays free for plain HTTP (health probes, refusals)
/// instead of accept(2) failing with "Too many open files".
fn fit_open_files(config: &mut Config) -> Option<usize> {
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    if soft == rlimit::INFINITY {
        return None;
    }
    let in_use = std::fs::read_dir("/proc/self/fd").map_or(FILES_RESERVED, |d| d.count() as u64);
    let fit = soft.saturating_sub(in_use + FILES_RESERVED) / FILES_PER_CONNECTION;
    let streams = usize::try_from((fit * 3 / 4).max(1)).unwrap_or(usize::MAX);
    if config.max_connections == 0 || config.max_connections > streams {
        tracing::warn!(
            open_files = soft,
            in_use,
            max_connections = config.max_connections,
            effective_max_connections = streams,
            "max_connections does not fit the open-file limit (each connection takes {FILES_PER_CONNECTION} files): \
             WebSocket and SSE connections beyond {streams} are refused with too_many_connections; raise the limit \
             (ulimit -n, LimitNOFILE) to allow more"
        );
        config.max_connections = streams;
    }
    Some(usize::try_from(fit.max(1)).unwrap_or(usize::MAX))
}

/// Installs the bootstrap admin key of `bootstrap_admin_key_file`, unless the store has it. The
/// key itself is never logged, only its id.
fn install_bootstrap_key(config: &Config, auth: &Authenticator) -> anyhow::Result<()> {
    use agent_bridge_actors::auth::keys::NewKey;
    use agent_bridge_actors::auth::Permissions;
    let path = &config.bootstrap_admin_key_file;
    if path.is_empty() {
        return Ok(());
    }
    let bad = |m: String| crate::config::ConfigError::Invalid(format!("bootstrap_admin_key_file = {path:?}: {m}"));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let key = text.trim();
    let permissions = Permissions::parse("read,write,admin").map_err(|e| anyhow::anyhow!("{e}"))?;
    let new = NewKey { client_id: "*".into(), permissions, label: "bootstrap admin key".into(), ..NewKey::default() };
    let id = agent_bridge_actors::auth::keys::split_key(key).map(|(id, _)| id.to_owned()).unwrap_or_default();
    match auth.keys.install(key, new) {
        Ok(true) => info!(key_id = %id, "bootstrap admin key installed"),
        Ok(false) => tracing::debug!(key_id = %id, "bootstrap admin key already in the store"),
        Err(agent_bridge_actors::auth::AuthError::BadRequest(m)) => return Err(bad(m).into()),
        Err(e) => return Err(anyhow::anyhow!("installing the bootstrap admin key: {e}")),
    }
    Ok(())
}

/// How often API key usage counters are written back to the store.
const USAGE_PERSIST_INTERVAL: Duration = Duration::from_secs(5);
