//! `agent-bridge keys create|list|revoke`: API key administration on a data directory.
//!
//! Works on the store directly, so the broker must not be running on that directory (sled locks
//! it); against a running broker use the admin routes (`POST /admin/keys`, `GET /admin/keys`,
//! `DELETE /admin/keys/{id}`) with an admin key. `create` prints the new key as its last line:
//! `KEY=$(agent-bridge keys create ... | tail -n1)`.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_bridge_actors::auth::keys::{KeyDefaults, KeyRegistry, NewKey};
use agent_bridge_actors::auth::Permissions;
use agent_bridge_actors::store::Store;
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::http::keys::KeyView;

/// `agent-bridge keys ...`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// Where the store is: `--data-dir`, else `data_dir` of `--config`, else the default directory.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory of the sled store (the broker's --data-dir).
    #[arg(long, env = "BRIDGE_DATA_DIR")]
    pub data_dir: Option<String>,
    /// TOML configuration file (for its data_dir).
    #[arg(long, env = "BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints it once, as the last line.
    Create(CreateArgs),
    /// List keys with their usage (never the keys themselves).
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id; it is refused from then on.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The key id (the 12 hex digits after `abk_`).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Client id the key acts as, or a pattern: `browser-*` (suffix wildcard), `*` (any).
    #[arg(long)]
    pub client_id: String,
    /// Comma-separated: read (receive), write (send), admin (/admin routes).
    #[arg(long, default_value = "read,write")]
    pub permissions: String,
    /// Requests per hour (HTTP requests and WebSocket sends); 0: unlimited. Default: the server's.
    #[arg(long)]
    pub rate_limit_per_hour: Option<u64>,
    /// Largest burst. Default: the server's.
    #[arg(long)]
    pub burst: Option<u64>,
    /// Days until the key expires (fractions allowed). Default: never.
    #[arg(long)]
    pub expires_days: Option<f64>,
    /// More client id patterns the key may act as (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub allowed_clients: Vec<String>,
    /// Private rooms the key may enter (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub rooms: Vec<String>,
    /// Free text for operators.
    #[arg(long, default_value = "")]
    pub label: String,
}

fn open(args: &StoreArgs) -> Result<(Store, KeyRegistry), String> {
    let mut config = Config::from_files(args.config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(dir) = &args.data_dir {
        config.data_dir.clone_from(dir);
    }
    config.validate().map_err(|e| e.to_string())?;
    let dir = config.store_dir().ok_or("keys need a data directory, not an in-memory store")?;
    let store = Store::open(Some(&dir), None).map_err(|e| {
        let text = e.to_string();
        if text.contains("lock") || text.contains("WouldBlock") {
            format!(
                "the store in {} is in use (is the broker running on it?): stop the broker, or manage keys \
                 over HTTP with an admin key (POST/GET /admin/keys, DELETE /admin/keys/ID)",
                dir.display()
            )
        } else {
            format!("opening the store in {}: {text}", dir.display())
        }
    })?;
    let defaults = KeyDefaults { rate_limit_per_hour: config.key_rate_limit_per_hour, burst: config.key_burst.max(1) };
    let registry = KeyRegistry::open(store.clone(), defaults).map_err(|e| e.to_string())?;
    Ok((store, registry))
}

async fn run(cmd: &KeysCommand) -> Result<(), (u8, String)> {
    let fail = |e: String| (1u8, e);
    match cmd {
        KeysCommand::Create(a) => {
            let permissions = Permissions::parse(&a.permissions).map_err(|e| (2, e.to_string()))?;
            let (_store, reg) = open(&a.store).map_err(fail)?;
            let created = reg
                .create(NewKey {
                    client_id: a.client_id.clone(),
                    allowed_clients: a.allowed_clients.clone(),
                    permissions,
                    rate_limit_per_hour: a.rate_limit_per_hour,
                    burst: a.burst,
                    expires_days: a.expires_days,
                    rooms: a.rooms.clone(),
                    label: a.label.clone(),
                })
                .await
                .map_err(|e| (if e.code() == "bad_request" { 2 } else { 1 }, e.to_string()))?;
            let r = &created.record;
            println!("id: {}", r.id);
            println!("client ids: {}", r.clients.join(", "));
            println!("permissions: {}", r.permissions.join(","));
            if let Some(at) = r.expires_at_ms {
                println!("expires: {}", agent_bridge_protocol::Timestamp(at).to_rfc3339());
            }
            println!("# the key (shown only now; only its hash is stored):");
            println!("{}", created.key);
            Ok(())
        }
        KeysCommand::List { store, json } => {
            let (_store, reg) = open(store).map_err(fail)?;
            for r in reg.list() {
                let v = KeyView::from(r);
                if *json {
                    println!("{}", serde_json::to_string(&v).map_err(|e| fail(e.to_string()))?);
                } else {
                    let clients = std::iter::once(v.grant.client_id.clone()).chain(v.grant.allowed_clients.iter().cloned()).collect::<Vec<_>>();
                    println!(
                        "{}  {:<8} {:<24} {:<16} requests={} messages={} last_used={}",
                        v.id,
                        v.status,
                        clients.join(","),
                        v.grant.permissions.join(","),
                        v.usage.requests,
                        v.usage.messages,
                        v.usage.last_used.as_deref().unwrap_or("never"),
                    );
                }
            }
            Ok(())
        }
        KeysCommand::Revoke { store, id } => {
            let (_store, reg) = open(store).map_err(fail)?;
            match reg.revoke(id).await.map_err(|e| fail(e.to_string()))? {
                Some(_) => {
                    println!("revoked {id}");
                    Ok(())
                }
                None => Err(fail(format!("no API key with id {id:?}"))),
            }
        }
    }
}

/// Runs `agent-bridge keys ...`: exit 0 on success, 1 on failure, 2 on bad arguments.
pub fn keys(args: &KeysArgs) -> ExitCode {
    // Key writes wait for the store's flusher thread; a small runtime drives that wait.
    let ran = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt.block_on(run(&args.command)),
        Err(e) => Err((1, format!("starting the async runtime: {e}"))),
    };
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("agent-bridge keys: {e}");
            ExitCode::from(code)
        }
    }
}
