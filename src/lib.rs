//! The agent-bridge server: configuration, HTTP routes and the command line around the actors.
//!
//! [`run`] starts the actor tree and the HTTP server on a bound listener; `main.rs` only parses the
//! command line and calls into [`cli`].

pub mod cli;
pub mod client;
pub mod config;
pub mod http;
pub mod tls;

use std::net::TcpListener;
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

/// Starts the broker on `listener` inside the current actix `System` and returns once it is
/// serving. The server stops on SIGINT/SIGTERM, then stops the System; the returned state lets the
/// caller flush the store afterwards.
pub fn run(config: Config, listener: TcpListener) -> anyhow::Result<Arc<web::Data<AppState>>> {
    let broker = Broker::start(config.broker()).context("opening the store")?;
    let auth = start_auth(&config, &broker)?;
    let workers = config.worker_count();
    let addr = listener.local_addr().context("reading the bound address")?;
    let state = web::Data::new(AppState {
        broker,
        config: config.clone(),
        started: Instant::now(),
        startup_done: AtomicBool::new(false),
        auth,
    });
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
            .wrap(actix_web::middleware::from_fn(crate::http::auth::authenticate))
            .wrap(actix_web::middleware::from_fn(crate::http::edge::body_deadline))
            .wrap(crate::http::cors(&app_state.config))
            .wrap(actix_web::middleware::from_fn(crate::http::edge::check))
    })
    .workers(workers)
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
    actix_web::rt::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "http server failed");
        }
        info!("http server stopped; stopping the actor system");
        actix::System::current().stop();
    });
    state.startup_done.store(true, Ordering::Release);
    info!(%addr, workers, shards = state.broker.router.shards().len(), data_dir = ?config.store_dir(), "agent-bridge serving");
    Ok(Arc::new(state))
}

/// Opens the authenticator, refuses an unauthenticated non-loopback bind (unless `insecure`), and
/// writes key usage back to the store every few seconds.
fn start_auth(config: &Config, broker: &Broker) -> anyhow::Result<Arc<Authenticator>> {
    let auth_config = config.auth_config()?;
    let auth = Arc::new(Authenticator::new(broker.store.clone(), auth_config).map_err(|e| anyhow::anyhow!("{e}"))?);
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

/// How often API key usage counters are written back to the store.
const USAGE_PERSIST_INTERVAL: Duration = Duration::from_secs(5);
