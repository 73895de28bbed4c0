//! `agent-bridge config check|print|generate`, `agent-bridge token` and `agent-bridge version`:
//! the operator's tools around the configuration (what Centrifugo's `checkconfig`/`genconfig` and
//! NATS's `nsc` give their users first).

use std::path::PathBuf;
use std::process::ExitCode;

use agent_bridge_actors::auth::{ClientPattern, Permissions};
use clap::{Args, Subcommand};
use serde_json::json;

use super::common::{finish, Failure};
use crate::config::{Config, ServeArgs, DEFAULT_CONFIG};

/// `agent-bridge config ...`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

// Parsed once per process: the size of the `print` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file: every key known, every value valid, the combination allowed.
    #[command(after_help = "Examples:\n  agent-bridge config check /etc/agent-bridge.toml\n  agent-bridge config generate > my.toml && agent-bridge config check my.toml")]
    Check {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Print the effective configuration (defaults, then --config, then BRIDGE_* variables, then
    /// flags) as TOML, as `serve` with the same arguments would use it; secrets are masked.
    #[command(after_help = "Examples:\n  agent-bridge config print\n  agent-bridge config print --config my.toml --bind 0.0.0.0:5001 --require-auth")]
    Print {
        #[command(flatten)]
        serve: ServeArgs,
        /// Print jwt_secret as it is instead of masking it.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Print the default configuration file, every key with a comment.
    #[command(after_help = "Example:\n  agent-bridge config generate > /etc/agent-bridge.toml")]
    Generate,
}

/// Runs `agent-bridge config ...`: exit 0 when valid, 2 for a bad configuration.
pub fn config(args: &ConfigArgs) -> ExitCode {
    finish(match &args.command {
        ConfigCommand::Check { file } => check(file),
        ConfigCommand::Print { serve, show_secrets } => Config::load(serve)
            .map_err(|e| Failure::usage(format!("configuration error: {e}")))
            .and_then(|c| {
                let c = if *show_secrets { c } else { c.redacted() };
                let text = toml::to_string(&c).map_err(|e| Failure::failed(format!("writing TOML: {e}")))?;
                print!("{text}");
                Ok(())
            }),
        ConfigCommand::Generate => {
            print!("{DEFAULT_CONFIG}");
            Ok(())
        }
    })
}

fn check(file: &std::path::Path) -> Result<(), Failure> {
    let c = Config::load(&ServeArgs::file(Some(file.to_owned()))).map_err(|e| {
        let text = e.to_string();
        let path = file.display().to_string();
        Failure::usage(if text.contains(&path) { text } else { format!("{path}: {text}") })
    })?;
    // API keys live in the store, which may not be there yet: judge the exposure on the file alone.
    let configured_auth = c.require_auth || !c.jwt_secret.is_empty() || !c.jwt_public_key_file.is_empty();
    c.check_exposure(configured_auth).map_err(|e| {
        Failure::usage(format!("{}: {e} (API keys in the data directory also count as authentication)", file.display()))
    })?;
    let auth = if configured_auth { "required" } else { "off unless API keys exist" };
    println!("{}: ok (bind {}, authentication {auth}, cors_origins {:?})", file.display(), c.bind, c.cors_origins);
    Ok(())
}

/// `agent-bridge token`: mint an HS256 JWT with the configured `jwt_secret`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The client id the token acts as (its `sub`).
    #[arg(long)]
    pub client_id: String,
    /// Comma-separated: read (receive), write (send), admin (/admin routes).
    #[arg(long, default_value = "read,write")]
    pub permissions: String,
    /// Seconds until the token expires.
    #[arg(long, default_value_t = 86_400)]
    pub ttl: u64,
    /// Private rooms the token may enter (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub rooms: Vec<String>,
    /// More client id patterns the token may act as (comma-separated, `*` suffix wildcard).
    #[arg(long, value_delimiter = ',')]
    pub clients: Vec<String>,
    /// The broker's TOML configuration (for jwt_secret, jwt_issuer and jwt_audience).
    #[arg(long, env = "BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The HS256 secret (default: the configuration's jwt_secret).
    #[arg(long, env = "BRIDGE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Print `{"token", "client_id", "permissions", "expires_at"}` instead of the bare token.
    #[arg(long)]
    pub json: bool,
}

/// Runs `agent-bridge token`: the token on stdout, exit 2 for bad arguments or no secret.
pub fn token(args: &TokenArgs) -> ExitCode {
    finish(mint(args).map(|out| println!("{out}")))
}

fn mint(a: &TokenArgs) -> Result<String, Failure> {
    agent_bridge_protocol::ids::validate_client_id(&a.client_id).map_err(|e| Failure::usage(e.to_string()))?;
    let permissions = Permissions::parse(&a.permissions).map_err(|e| Failure::usage(e.to_string()))?;
    for p in &a.clients {
        ClientPattern::parse(p).map_err(|e| Failure::usage(e.to_string()))?;
    }
    let usage = |e: crate::config::ConfigError| Failure::usage(format!("configuration error: {e}"));
    let mut c = Config::from_files(a.config.as_deref()).map_err(usage)?;
    if let Some(secret) = &a.jwt_secret {
        c.jwt_secret.clone_from(secret);
    }
    c.validate().map_err(usage)?;
    if c.jwt_secret.is_empty() {
        return Err(Failure::usage(
            "no jwt_secret: set it in the broker's configuration (--config FILE) or pass --jwt-secret / BRIDGE_JWT_SECRET \
             (with only an RS256 public key, tokens come from your identity provider)",
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let exp = now.saturating_add(i64::try_from(a.ttl).unwrap_or(i64::MAX / 2));
    let mut claims = json!({
        "sub": a.client_id, "iat": now, "exp": exp, "permissions": permissions.names(),
    });
    if !a.rooms.is_empty() {
        claims["rooms"] = json!(a.rooms);
    }
    if !a.clients.is_empty() {
        claims["clients"] = json!(a.clients);
    }
    if !c.jwt_issuer.is_empty() {
        claims["iss"] = json!(c.jwt_issuer);
    }
    if !c.jwt_audience.is_empty() {
        claims["aud"] = json!(c.jwt_audience);
    }
    let key = jsonwebtoken::EncodingKey::from_secret(c.jwt_secret.as_bytes());
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key)
        .map_err(|e| Failure::failed(format!("signing the token: {e}")))?;
    if !a.json {
        return Ok(token);
    }
    let expires_at = agent_bridge_protocol::Timestamp(exp.saturating_mul(1000)).to_rfc3339();
    Ok(json!({"token": token, "client_id": a.client_id, "permissions": permissions.names(), "expires_at": expires_at}).to_string())
}

/// `agent-bridge version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print `{"name", "version", "protocol"}`.
    #[arg(long)]
    pub json: bool,
}

/// Runs `agent-bridge version`.
pub fn version(args: &VersionArgs) -> ExitCode {
    let (name, version, protocol) = ("agent-bridge", env!("CARGO_PKG_VERSION"), agent_bridge_protocol::PROTOCOL_VERSION);
    if args.json {
        println!("{}", json!({"name": name, "version": version, "protocol": protocol}));
    } else {
        println!("{name} {version} (wire protocol {protocol})");
    }
    ExitCode::SUCCESS
}
