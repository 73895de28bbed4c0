//! Layered configuration: embedded defaults (`deploy/agent-bridge.toml`), then the `--config` TOML
//! file, then `BRIDGE_*` environment variables, then command-line flags.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_bridge_actors::ack_tracker::AckConfig;
use agent_bridge_actors::auth::jwt::JwtConfig;
use agent_bridge_actors::auth::keys::KeyDefaults;
use agent_bridge_actors::auth::{AuthConfig, ClientPattern, Permissions};
use agent_bridge_actors::room::RoomsConfig;
use agent_bridge_actors::router::{Durability, Retention, RouterConfig};
use agent_bridge_actors::ttl_sweeper::{Archive, SweepConfig};
use agent_bridge_actors::session::SessionConfig;
use agent_bridge_actors::supervisor::Intensity;
use agent_bridge_actors::BrokerConfig;
use clap::Args;
use serde::{Deserialize, Serialize};

/// The defaults, embedded so that the binary needs no file.
pub const DEFAULT_CONFIG: &str = include_str!("../deploy/agent-bridge.toml");

/// Every setting of `agent-bridge serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub bind: String,
    pub data_dir: String,
    pub in_memory: bool,
    pub insecure: bool,
    pub require_auth: bool,
    pub guest_permissions: String,
    pub guest_clients: String,
    pub jwt_secret: String,
    pub jwt_public_key_file: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub jwt_leeway_s: u64,
    pub jwt_default_permissions: String,
    pub key_rate_limit_per_hour: u64,
    pub key_burst: u64,
    pub message_rate_per_s: f64,
    pub message_burst: u64,
    pub auth_failures_per_minute: u32,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub cors_origins: String,
    pub allowed_hosts: String,
    pub body_timeout_s: f64,
    pub tls_cert_file: String,
    pub tls_key_file: String,
    pub long_poll_max_s: f64,
    pub enable_fault_injection: bool,
    pub cluster_nats: String,
    pub max_frame_bytes: usize,
    pub max_file_bytes: usize,
    pub max_rooms_per_client: usize,
    pub session_queue: usize,
    pub session_queue_bytes: usize,
    pub client_queue_bytes: usize,
    pub max_in_flight: usize,
    pub heartbeat_interval_s: f64,
    pub heartbeat_timeout_s: f64,
    pub seen_window_s: u64,
    pub shards: usize,
    pub workers: usize,
    pub max_restarts: u32,
    pub restart_window_s: u64,
    pub exit_on_escalation: bool,
    pub durability: String,
    pub flush_interval_ms: u64,
    pub ack_timeout_s: f64,
    pub ack_backoff_max_s: f64,
    pub ack_max_attempts: u32,
    pub aging_s: f64,
    pub retention_default: String,
    pub retention_types: String,
    pub idempotency_window_s: u64,
    pub sweep_interval_ms: u64,
    pub sweep_max_per_pass: usize,
    pub archive: String,
    pub log_format: String,
    pub log_level: String,
}

/// The same settings as optional flags (each also read from `BRIDGE_<NAME>`).
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "BRIDGE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:5001; port 0 picks a free port).
    #[arg(long, env = "BRIDGE_BIND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// Directory of the sled store.
    #[arg(long, env = "BRIDGE_DATA_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    /// Keep everything in memory; nothing survives a restart.
    #[arg(long, env = "BRIDGE_IN_MEMORY", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_memory: Option<bool>,
    /// Allow binding beyond loopback without authentication.
    #[arg(long, env = "BRIDGE_INSECURE", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Require authentication on every request.
    #[arg(long, env = "BRIDGE_REQUIRE_AUTH", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_auth: Option<bool>,
    /// Guest mode: permissions of callers without credentials while auth is required (e.g. "read,write"; empty: off).
    #[arg(long, env = "BRIDGE_GUEST_PERMISSIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_permissions: Option<String>,
    /// Client id patterns guests may act as (comma-separated, `*` suffix wildcard).
    #[arg(long, env = "BRIDGE_GUEST_CLIENTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_clients: Option<String>,
    /// HS256 secret for JWT authentication (at least 32 bytes; empty: off).
    #[arg(long, env = "BRIDGE_JWT_SECRET")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    /// RS256 public key (PEM file) for JWT authentication (empty: off).
    #[arg(long, env = "BRIDGE_JWT_PUBLIC_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key_file: Option<String>,
    /// Required JWT `iss` (empty: not checked).
    #[arg(long, env = "BRIDGE_JWT_ISSUER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_issuer: Option<String>,
    /// Required JWT `aud` (empty: not checked).
    #[arg(long, env = "BRIDGE_JWT_AUDIENCE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on JWT `exp`/`nbf`, in seconds.
    #[arg(long, env = "BRIDGE_JWT_LEEWAY_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_leeway_s: Option<u64>,
    /// Permissions of a JWT without a `permissions` claim.
    #[arg(long, env = "BRIDGE_JWT_DEFAULT_PERMISSIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_default_permissions: Option<String>,
    /// Requests per hour of API keys that set no limit of their own (0: unlimited).
    #[arg(long, env = "BRIDGE_KEY_RATE_LIMIT_PER_HOUR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_rate_limit_per_hour: Option<u64>,
    /// Burst of API keys that set none of their own.
    #[arg(long, env = "BRIDGE_KEY_BURST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_burst: Option<u64>,
    /// Messages per second one connection may send (0: unlimited).
    #[arg(long, env = "BRIDGE_MESSAGE_RATE_PER_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_rate_per_s: Option<f64>,
    /// Burst of the per-connection message limit (0: one second's worth).
    #[arg(long, env = "BRIDGE_MESSAGE_BURST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_burst: Option<u64>,
    /// Failed authentications per minute per remote address before it is refused (0: unlimited).
    #[arg(long, env = "BRIDGE_AUTH_FAILURES_PER_MINUTE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_failures_per_minute: Option<u32>,
    /// Open WebSocket and SSE connections in all (0: unlimited).
    #[arg(long, env = "BRIDGE_MAX_CONNECTIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Open WebSocket and SSE connections per client id (0: unlimited).
    #[arg(long, env = "BRIDGE_MAX_CONNECTIONS_PER_CLIENT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_client: Option<usize>,
    /// Origins allowed for browser requests (comma-separated, `*` for any, empty: none).
    #[arg(long, env = "BRIDGE_CORS_ORIGINS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors_origins: Option<String>,
    /// Host names the broker answers to besides loopback names and addresses (comma-separated,
    /// `*` for any): the DNS-rebinding defence. Beyond loopback, empty means no check.
    #[arg(long, env = "BRIDGE_ALLOWED_HOSTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_hosts: Option<String>,
    /// Longest time a request body may take to arrive, in seconds (then 408 and the connection closes).
    #[arg(long, env = "BRIDGE_BODY_TIMEOUT_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_timeout_s: Option<f64>,
    /// Serve HTTPS/WSS with this PEM certificate chain (with tls_key_file).
    #[arg(long, env = "BRIDGE_TLS_CERT_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<String>,
    /// The PEM private key of tls_cert_file.
    #[arg(long, env = "BRIDGE_TLS_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<String>,
    /// Longest `wait` of GET /api/messages, in seconds.
    #[arg(long, env = "BRIDGE_LONG_POLL_MAX_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_poll_max_s: Option<f64>,
    /// Expose POST /admin/fault for recovery tests.
    #[arg(long, env = "BRIDGE_ENABLE_FAULT_INJECTION", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_fault_injection: Option<bool>,
    /// NATS URL for clustering.
    #[arg(long, env = "BRIDGE_CLUSTER_NATS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_nats: Option<String>,
    /// Largest accepted frame or HTTP body in bytes.
    #[arg(long, env = "BRIDGE_MAX_FRAME_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_frame_bytes: Option<usize>,
    /// Largest file shared in a room, in bytes.
    #[arg(long, env = "BRIDGE_MAX_FILE_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_file_bytes: Option<usize>,
    /// Rooms one client id may create (0: no limit).
    #[arg(long, env = "BRIDGE_MAX_ROOMS_PER_CLIENT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rooms_per_client: Option<usize>,
    /// Frames queued per session before it is fed from the store.
    #[arg(long, env = "BRIDGE_SESSION_QUEUE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_queue: Option<usize>,
    /// Bytes queued per session before it is fed from the store (persist:false: dropped).
    #[arg(long, env = "BRIDGE_SESSION_QUEUE_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_queue_bytes: Option<usize>,
    /// Bytes queued per client across its sessions before they are fed from the store.
    #[arg(long, env = "BRIDGE_CLIENT_QUEUE_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_queue_bytes: Option<usize>,
    /// Sends awaiting their reply per session.
    #[arg(long, env = "BRIDGE_MAX_IN_FLIGHT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// Server ping interval in seconds.
    #[arg(long, env = "BRIDGE_HEARTBEAT_INTERVAL_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_s: Option<f64>,
    /// Silence allowed after a ping before closing, in seconds.
    #[arg(long, env = "BRIDGE_HEARTBEAT_TIMEOUT_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_s: Option<f64>,
    /// How long a disconnected client still receives `all`, in seconds.
    #[arg(long, env = "BRIDGE_SEEN_WINDOW_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_window_s: Option<u64>,
    /// Router shards (0: one per CPU).
    #[arg(long, env = "BRIDGE_SHARDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// HTTP workers (0: one per CPU).
    #[arg(long, env = "BRIDGE_WORKERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Restarts allowed within the window before escalating.
    #[arg(long, env = "BRIDGE_MAX_RESTARTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// The restart-intensity window in seconds.
    #[arg(long, env = "BRIDGE_RESTART_WINDOW_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_window_s: Option<u64>,
    /// Exit (code 70) when a critical actor escalates.
    #[arg(long, env = "BRIDGE_EXIT_ON_ESCALATION", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_on_escalation: Option<bool>,
    /// "sync" (flush before `sent`) or "async".
    #[arg(long, env = "BRIDGE_DURABILITY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durability: Option<String>,
    /// Background flush interval with async durability.
    #[arg(long, env = "BRIDGE_FLUSH_INTERVAL_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_interval_ms: Option<u64>,
    /// First redelivery of an unacked message after this many seconds.
    #[arg(long, env = "BRIDGE_ACK_TIMEOUT_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_timeout_s: Option<f64>,
    /// Longest wait between redeliveries.
    #[arg(long, env = "BRIDGE_ACK_BACKOFF_MAX_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_backoff_max_s: Option<f64>,
    /// Deliveries before dead-lettering.
    #[arg(long, env = "BRIDGE_ACK_MAX_ATTEMPTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_max_attempts: Option<u32>,
    /// A queued message moves up one priority level per this many seconds.
    #[arg(long, env = "BRIDGE_AGING_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aging_s: Option<f64>,
    /// Default retention: immediate, short, medium, long, permanent or a duration.
    #[arg(long, env = "BRIDGE_RETENTION_DEFAULT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_default: Option<String>,
    /// Per-type retention: "type=preset,type2=90s".
    #[arg(long, env = "BRIDGE_RETENTION_TYPES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_types: Option<String>,
    /// How long idempotency keys are remembered.
    #[arg(long, env = "BRIDGE_IDEMPOTENCY_WINDOW_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_window_s: Option<u64>,
    /// TTL sweeper pass interval.
    #[arg(long, env = "BRIDGE_SWEEP_INTERVAL_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep_interval_ms: Option<u64>,
    /// Most messages one sweep pass removes.
    #[arg(long, env = "BRIDGE_SWEEP_MAX_PER_PASS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep_max_per_pass: Option<usize>,
    /// Archive expired messages: "", "store" or "file:PATH".
    #[arg(long, env = "BRIDGE_ARCHIVE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// Log format: text or json.
    #[arg(long, env = "BRIDGE_LOG_FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// Log filter (RUST_LOG syntax; RUST_LOG itself wins when set).
    #[arg(long, env = "BRIDGE_LOG_LEVEL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
}

/// A configuration problem, said plainly.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        base.insert(k, v);
    }
}

impl Config {
    /// Defaults, then the file, then environment and flags (clap has already merged those two).
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(DEFAULT_CONFIG).expect("embedded defaults are valid TOML");
        if let Some(path) = &args.config {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
            let file: toml::Table =
                toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.clone(), source: Box::new(e) })?;
            for key in file.keys() {
                if !table.contains_key(key) {
                    return Err(ConfigError::Invalid(format!("{}: unknown key {key:?}", path.display())));
                }
            }
            merge(&mut table, file);
        }
        let flags = toml::Table::try_from(args).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        merge(&mut table, flags);
        let config: Config = table.try_into().map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.bind.parse::<SocketAddr>().is_err() {
            return bad(format!("bind = {:?} is not an address like 127.0.0.1:5001", self.bind));
        }
        // Whether a non-loopback bind is allowed depends on the keys in the store too: see
        // `check_exposure`, called once the store is open.
        self.auth_config()?;
        if !(self.message_rate_per_s >= 0.0 && self.message_rate_per_s.is_finite()) {
            return bad(format!("message_rate_per_s = {} must be 0 (unlimited) or a positive rate", self.message_rate_per_s));
        }
        if !(self.long_poll_max_s >= 0.0 && self.long_poll_max_s <= 3600.0) {
            return bad(format!("long_poll_max_s = {} must be between 0 and 3600", self.long_poll_max_s));
        }
        if self.tls_cert_file.is_empty() != self.tls_key_file.is_empty() {
            return bad("tls_cert_file and tls_key_file must be given together".into());
        }
        if !(self.body_timeout_s > 0.0 && self.body_timeout_s.is_finite()) {
            return bad(format!("body_timeout_s = {} must be a positive number of seconds", self.body_timeout_s));
        }
        for o in self.cors_origin_list() {
            if o != "*" && !is_origin(&o) {
                return bad(format!(
                    "cors_origins: {o:?} is not an origin like https://claude.ai or chrome-extension://ID (or \"*\")"
                ));
            }
        }
        if !self.cluster_nats.is_empty() {
            return bad("cluster_nats: clustering over NATS is not available in this build yet".into());
        }
        if self.max_frame_bytes < 1024 || self.max_frame_bytes > 64 * 1024 * 1024 {
            return bad(format!("max_frame_bytes = {} must be between 1024 and 67108864", self.max_frame_bytes));
        }
        if self.max_file_bytes == 0 || self.max_file_bytes > 1 << 30 {
            return bad(format!("max_file_bytes = {} must be between 1 and 1073741824", self.max_file_bytes));
        }
        if self.session_queue == 0 || self.max_in_flight == 0 {
            return bad("session_queue and max_in_flight must be at least 1".into());
        }
        if self.session_queue_bytes < 65536 || self.client_queue_bytes < self.session_queue_bytes {
            return bad("session_queue_bytes must be at least 65536 and client_queue_bytes at least session_queue_bytes".into());
        }
        if !(self.heartbeat_interval_s > 0.0 && self.heartbeat_interval_s.is_finite())
            || !(self.heartbeat_timeout_s > 0.0 && self.heartbeat_timeout_s.is_finite())
        {
            return bad("heartbeat_interval_s and heartbeat_timeout_s must be positive".into());
        }
        if self.max_restarts == 0 || self.restart_window_s == 0 {
            return bad("max_restarts and restart_window_s must be at least 1".into());
        }
        if !matches!(self.durability.as_str(), "sync" | "async") {
            return bad(format!("durability = {:?}: use \"sync\" or \"async\"", self.durability));
        }
        for (name, v) in [("ack_timeout_s", self.ack_timeout_s), ("ack_backoff_max_s", self.ack_backoff_max_s), ("aging_s", self.aging_s)] {
            if !(v > 0.0 && v.is_finite()) {
                return bad(format!("{name} = {v} must be a positive number of seconds"));
            }
        }
        if self.ack_max_attempts == 0 || self.sweep_max_per_pass == 0 || self.sweep_interval_ms == 0 || self.flush_interval_ms == 0 {
            return bad("ack_max_attempts, sweep_max_per_pass, sweep_interval_ms and flush_interval_ms must be at least 1".into());
        }
        self.retention()?;
        self.archive_target()?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return bad(format!("log_format = {:?}: use \"text\" or \"json\"", self.log_format));
        }
        Ok(())
    }

    /// Refuses to expose an unauthenticated broker beyond loopback unless `insecure` is set.
    /// `auth_required` says whether auth is on (require_auth, JWT, or keys in the store).
    pub fn check_exposure(&self, auth_required: bool) -> Result<(), ConfigError> {
        let addr = self.bind_addr();
        if addr.ip().is_loopback() || auth_required || self.insecure {
            return Ok(());
        }
        Err(ConfigError::Invalid(format!(
            "refusing to listen on {addr} without authentication: anyone who can reach this address could act as \
             any client, read any inbox and use the admin routes. Create an API key (agent-bridge keys create \
             --data-dir DIR --client-id PATTERN --permissions read,write), configure JWT (jwt_secret or \
             jwt_public_key_file), or pass --require-auth; or pass --insecure to accept anonymous clients from \
             the network (development only)"
        )))
    }

    /// The authentication settings (validated; reads the JWT public key file).
    pub fn auth_config(&self) -> Result<AuthConfig, ConfigError> {
        let bad = |m: String| ConfigError::Invalid(m);
        let perms = |name: &str, v: &str| Permissions::parse(v).map_err(|e| bad(format!("{name} = {v:?}: {e}")));
        let guest_clients = self
            .guest_clients
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| ClientPattern::parse(p).map_err(|e| bad(format!("guest_clients: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let public_key_pem = if self.jwt_public_key_file.is_empty() {
            String::new()
        } else {
            std::fs::read_to_string(&self.jwt_public_key_file)
                .map_err(|e| bad(format!("jwt_public_key_file = {:?}: {e}", self.jwt_public_key_file)))?
        };
        let jwt = JwtConfig {
            secret: self.jwt_secret.clone(),
            public_key_pem,
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway_s: self.jwt_leeway_s,
            default_permissions: perms("jwt_default_permissions", &self.jwt_default_permissions)?,
        };
        if jwt.enabled() {
            agent_bridge_actors::auth::jwt::JwtVerifier::new(jwt.clone()).map_err(bad)?;
        }
        Ok(AuthConfig {
            require_auth: self.require_auth,
            guest_permissions: perms("guest_permissions", &self.guest_permissions)?,
            guest_clients,
            jwt,
            key_defaults: KeyDefaults { rate_limit_per_hour: self.key_rate_limit_per_hour, burst: self.key_burst.max(1) },
            auth_failures_per_minute: self.auth_failures_per_minute,
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            message_rate_per_s: self.message_rate_per_s,
            message_burst: self.message_burst,
        })
    }

    /// `allowed_hosts` as a lower-cased list.
    pub fn allowed_host_list(&self) -> Vec<String> {
        self.allowed_hosts.split(',').map(str::trim).filter(|h| !h.is_empty()).map(str::to_ascii_lowercase).collect()
    }

    /// `cors_origins` as a list.
    pub fn cors_origin_list(&self) -> Vec<String> {
        self.cors_origins.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect()
    }

    /// The configuration with secrets masked, for the start-up log.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if !c.jwt_secret.is_empty() {
            c.jwt_secret = "<redacted>".into();
        }
        c
    }

    /// The retention policy (validated).
    pub fn retention(&self) -> Result<Retention, ConfigError> {
        let default = parse_retention(&self.retention_default)
            .map_err(|e| ConfigError::Invalid(format!("retention_default = {:?}: {e}", self.retention_default)))?;
        let mut by_type = HashMap::new();
        for pair in self.retention_types.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (t, v) = pair
                .split_once('=')
                .ok_or_else(|| ConfigError::Invalid(format!("retention_types: {pair:?} is not type=preset")))?;
            let d = parse_retention(v.trim()).map_err(|e| ConfigError::Invalid(format!("retention_types: {pair:?}: {e}")))?;
            by_type.insert(t.trim().to_owned(), d);
        }
        Ok(Retention { default, by_type })
    }

    /// Where expired messages are archived (validated).
    pub fn archive_target(&self) -> Result<Archive, ConfigError> {
        match self.archive.as_str() {
            "" | "none" => Ok(Archive::None),
            "store" => Ok(Archive::Store),
            other => match other.strip_prefix("file:") {
                Some(path) if !path.is_empty() => Ok(Archive::File(PathBuf::from(path))),
                _ => Err(ConfigError::Invalid(format!("archive = {other:?}: use \"\", \"store\" or \"file:PATH\""))),
            },
        }
    }

    /// The listen address (validated).
    pub fn bind_addr(&self) -> SocketAddr {
        self.bind.parse().expect("validated")
    }

    /// The store directory, or `None` for an in-memory store.
    pub fn store_dir(&self) -> Option<PathBuf> {
        if self.in_memory {
            return None;
        }
        if !self.data_dir.is_empty() {
            return Some(PathBuf::from(&self.data_dir));
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        Some(base.join("agent-bridge"))
    }

    fn cpus() -> usize {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
    }

    /// HTTP worker count.
    pub fn worker_count(&self) -> usize {
        if self.workers == 0 { Self::cpus() } else { self.workers }
    }

    /// The actor system's settings.
    pub fn broker(&self) -> BrokerConfig {
        BrokerConfig {
            data_dir: self.store_dir(),
            shards: if self.shards == 0 { Self::cpus() } else { self.shards },
            router: RouterConfig {
                seen_window: Duration::from_secs(self.seen_window_s),
                aging: Duration::from_secs_f64(self.aging_s),
                retention: self.retention().expect("validated"),
                idempotency_window: Duration::from_secs(self.idempotency_window_s),
                durability: if self.durability == "async" { Durability::Async } else { Durability::Sync },
                client_queue_bytes: self.client_queue_bytes,
            },
            ack: AckConfig {
                timeout: Duration::from_secs_f64(self.ack_timeout_s),
                backoff_max: Duration::from_secs_f64(self.ack_backoff_max_s),
                max_attempts: self.ack_max_attempts,
            },
            sweep: SweepConfig {
                interval: Duration::from_millis(self.sweep_interval_ms),
                max_per_pass: self.sweep_max_per_pass,
                archive: self.archive_target().expect("validated"),
                idempotency_window: Duration::from_secs(self.idempotency_window_s),
                retention: self.retention().expect("validated"),
            },
            flush_interval: Duration::from_millis(self.flush_interval_ms),
            rooms: RoomsConfig {
                max_file_bytes: self.max_file_bytes,
                max_rooms_per_client: self.max_rooms_per_client,
                ..RoomsConfig::default()
            },
            session: SessionConfig {
                max_frame_bytes: self.max_frame_bytes,
                hard_frame_bytes: self.max_frame_bytes.saturating_mul(4),
                heartbeat_interval: Duration::from_secs_f64(self.heartbeat_interval_s),
                heartbeat_timeout: Duration::from_secs_f64(self.heartbeat_timeout_s),
                queue_limit: self.session_queue,
                queue_bytes: self.session_queue_bytes,
                max_in_flight: self.max_in_flight,
                ..SessionConfig::default()
            },
            intensity: Intensity {
                max_restarts: self.max_restarts,
                within: Duration::from_secs(self.restart_window_s),
            },
            exit_on_escalation: self.exit_on_escalation,
        }
    }
}

/// `scheme://host[:port]` without a path: `https://claude.ai`, `chrome-extension://<id>`.
fn is_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else { return false };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    scheme_ok && !rest.trim_end_matches('/').is_empty() && !rest.trim_end_matches('/').contains(['/', ' ', '?', '#'])
}

/// A retention preset or duration: `None` is permanent.
fn parse_retention(v: &str) -> Result<Option<Duration>, String> {
    let preset = match v {
        "immediate" => Some(60),
        "short" => Some(3600),
        "medium" => Some(24 * 3600),
        "long" => Some(7 * 24 * 3600),
        "permanent" => return Ok(None),
        _ => None,
    };
    if let Some(s) = preset {
        return Ok(Some(Duration::from_secs(s)));
    }
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = num.parse().map_err(|_| "use immediate, short, medium, long, permanent or a duration like 90s".to_owned())?;
    let mult = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    Ok(Some(Duration::from_secs(n.saturating_mul(mult).max(1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_presets_and_durations() {
        assert_eq!(parse_retention("short"), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(parse_retention("permanent"), Ok(None));
        assert_eq!(parse_retention("90s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(parse_retention("2h"), Ok(Some(Duration::from_secs(7200))));
        assert!(parse_retention("soon").is_err());
        let args = ServeArgs { retention_types: Some("log=short, audit=permanent".into()), ..ServeArgs::default() };
        let r = Config::load(&args).expect("load").retention().expect("retention");
        assert_eq!(r.for_type("log"), Some(Duration::from_secs(3600)));
        assert_eq!(r.for_type("audit"), None);
        assert_eq!(r.for_type("other"), Some(Duration::from_secs(86400)));
        let bad = ServeArgs { retention_types: Some("log".into()), ..ServeArgs::default() };
        assert!(Config::load(&bad).is_err());
    }

    #[test]
    fn defaults_load_and_validate() {
        let c = Config::load(&ServeArgs::default()).expect("defaults");
        assert_eq!(c.bind, "127.0.0.1:5001");
        assert_eq!(c.max_frame_bytes, 1024 * 1024);
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "bind = \"127.0.0.1:7000\"\nsession_queue = 7\n").expect("write");
        let args = ServeArgs { config: Some(path), session_queue: Some(9), ..ServeArgs::default() };
        let c = Config::load(&args).expect("load");
        assert_eq!((c.bind.as_str(), c.session_queue), ("127.0.0.1:7000", 9));
    }

    #[test]
    fn clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "bnid = \"x\"\n").expect("write");
        let err = Config::load(&ServeArgs { config: Some(path), ..ServeArgs::default() }).unwrap_err().to_string();
        assert!(err.contains("unknown key \"bnid\""), "{err}");
        let open = Config::load(&ServeArgs { bind: Some("0.0.0.0:5001".into()), ..ServeArgs::default() }).expect("load");
        let err = open.check_exposure(false).unwrap_err().to_string();
        assert!(err.contains("--insecure") && err.contains("without authentication"), "{err}");
        assert!(open.check_exposure(true).is_ok(), "with auth on, any bind is fine");
        let ok = ServeArgs { bind: Some("0.0.0.0:5001".into()), insecure: Some(true), ..ServeArgs::default() };
        assert!(Config::load(&ok).expect("load").check_exposure(false).is_ok());
        let loopback = Config::load(&ServeArgs::default()).expect("load");
        assert!(loopback.check_exposure(false).is_ok());
        let err = Config::load(&ServeArgs { jwt_secret: Some("short".into()), ..ServeArgs::default() }).unwrap_err().to_string();
        assert!(err.contains("32 bytes"), "{err}");
        let err = Config::load(&ServeArgs { guest_permissions: Some("read,fly".into()), ..ServeArgs::default() }).unwrap_err().to_string();
        assert!(err.contains("guest_permissions"), "{err}");
        let err = Config::load(&ServeArgs { cors_origins: Some("claude.ai".into()), ..ServeArgs::default() }).unwrap_err().to_string();
        assert!(err.contains("cors_origins"), "{err}");
        let secret = ServeArgs { jwt_secret: Some("s".repeat(40)), ..ServeArgs::default() };
        assert!(!format!("{:?}", Config::load(&secret).expect("load").redacted()).contains(&"s".repeat(40)));
        let err = Config::load(&ServeArgs { max_frame_bytes: Some(3), ..ServeArgs::default() }).unwrap_err().to_string();
        assert!(err.contains("max_frame_bytes"), "{err}");
    }
}
