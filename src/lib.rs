//! The agent-bridge server: configuration, HTTP routes and the command line around the actors.
//!
//! [`run`] starts the actor tree and the HTTP server on a bound listener; `main.rs` only parses the
//! command line and calls into [`cli`].

pub mod cli;
pub mod client;
pub mod config;
pub mod http;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpServer};
use agent_bridge_actors::Broker;
use anyhow::Context;
use tracing::info;

use crate::config::Config;
use crate::http::AppState;

/// Starts the broker on `listener` inside the current actix `System` and returns once it is
/// serving. The server stops on SIGINT/SIGTERM, then stops the System; the returned state lets the
/// caller flush the store afterwards.
pub fn run(config: Config, listener: TcpListener) -> anyhow::Result<Arc<web::Data<AppState>>> {
    let broker = Broker::start(config.broker()).context("opening the store")?;
    let workers = config.worker_count();
    let addr = listener.local_addr().context("reading the bound address")?;
    let state = web::Data::new(AppState {
        broker,
        config: config.clone(),
        started: Instant::now(),
        startup_done: AtomicBool::new(false),
    });
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                crate::http::ApiError::new(actix_web::http::StatusCode::BAD_REQUEST, "bad_request", e.to_string()).into()
            }))
            .configure(crate::http::routes)
    })
    .workers(workers)
    .shutdown_timeout(5)
    .client_request_timeout(Duration::from_secs(30))
    // After the server closes a connection (a WebSocket close, for instance) wait this long for
    // the peer's side, not actix's default second.
    .client_disconnect_timeout(Duration::from_millis(200))
    .listen(listener)
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
