//! Layered configuration: embedded defaults (`deploy/agent-bridge.toml`), then the `--config` TOML
//! file, then `BRIDGE_*` environment variables, then command-line flags.
//!
//! [`Config`] is the one declaration of every setting: its serde derive reads the TOML layers, its
//! clap derive the environment and the flags (each field is the flag `--field-name` and the
//! variable `BRIDGE_FIELD_NAME`). Adding a setting is one field here plus its default in
//! `deploy/agent-bridge.toml`. Typed values ([`values`]) are parsed once, wherever they come from.

mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_bridge_actors::ack_tracker::AckConfig;
use agent_bridge_actors::auth::jwt::JwtConfig;
use agent_bridge_actors::auth::keys::KeyDefaults;
use agent_bridge_actors::auth::{AuthConfig, ClientPattern, Permissions};
use agent_bridge_actors::room::RoomsConfig;
use agent_bridge_actors::router::{Retention, RouterConfig};
use agent_bridge_actors::ttl_sweeper::SweepConfig;
use agent_bridge_actors::session::SessionConfig;
use agent_bridge_actors::supervisor::Intensity;
use agent_bridge_actors::agents::AgentsConfig;
use agent_bridge_actors::email::{MailerConfig, SmtpConfig};
use agent_bridge_actors::github::GitHubConfig;
use agent_bridge_actors::webhooks::{BreakerConfig, RetryConfig, WebhooksConfig};
use agent_bridge_actors::messages::{DesktopConfig, InputMode, ManagedConfig, SandboxConfig};
use agent_bridge_actors::BrokerConfig;
use clap::{ArgAction, ArgMatches, Args, FromArgMatches};
use serde::{Deserialize, Serialize};

pub use values::{ArchiveTarget, Durability, LogFormat, RetentionPeriod, RetentionTypes};

/// The defaults, embedded so that the binary needs no file.
pub const DEFAULT_CONFIG: &str = include_str!("../deploy/agent-bridge.toml");

/// Every setting of `agent-bridge serve`: a key of the TOML file, a flag and a `BRIDGE_*` variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (default 127.0.0.1:5001; port 0 picks a free port).
    #[arg(long, env = "BRIDGE_BIND")]
    pub bind: SocketAddr,
    /// Directory of the sled store.
    #[arg(long, env = "BRIDGE_DATA_DIR")]
    pub data_dir: String,
    /// Keep everything in memory; nothing survives a restart.
    #[arg(long, env = "BRIDGE_IN_MEMORY", num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub in_memory: bool,
    /// Allow binding beyond loopback without authentication.
    #[arg(long, env = "BRIDGE_INSECURE", num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub insecure: bool,
    /// Require authentication on every request.
    #[arg(long, env = "BRIDGE_REQUIRE_AUTH", num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub require_auth: bool,
    /// Guest mode: permissions of callers without credentials while auth is required (e.g. "read,write"; empty: off).
    #[arg(long, env = "BRIDGE_GUEST_PERMISSIONS")]
    #[serde(deserialize_with = "values::comma_list")]
    pub guest_permissions: String,
    /// Client id patterns guests may act as (comma-separated, `*` suffix wildcard).
    #[arg(long, env = "BRIDGE_GUEST_CLIENTS")]
    #[serde(deserialize_with = "values::comma_list")]
    pub guest_clients: String,
    /// HS256 secret for JWT authentication (at least 32 bytes; empty: off).
    #[arg(long, env = "BRIDGE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// A file holding an admin API key (abk_<id>_<secret>) installed at start unless the store
    /// has it: the first credential of a fresh deployment (empty: off).
    #[arg(long, env = "BRIDGE_BOOTSTRAP_ADMIN_KEY_FILE")]
    pub bootstrap_admin_key_file: String,
    /// RS256 public key (PEM file) for JWT authentication (empty: off).
    #[arg(long, env = "BRIDGE_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: String,
    /// Required JWT `iss` (empty: not checked).
    #[arg(long, env = "BRIDGE_JWT_ISSUER")]
    pub jwt_issuer: String,
    /// Required JWT `aud` (empty: not checked).
    #[arg(long, env = "BRIDGE_JWT_AUDIENCE")]
    pub jwt_audience: String,
    /// Clock skew allowed on JWT `exp`/`nbf`, in seconds.
    #[arg(long, env = "BRIDGE_JWT_LEEWAY_S")]
    pub jwt_leeway_s: u64,
    /// Permissions of a JWT without a `permissions` claim.
    #[arg(long, env = "BRIDGE_JWT_DEFAULT_PERMISSIONS")]
    #[serde(deserialize_with = "values::comma_list")]
    pub jwt_default_permissions: String,
    /// Requests per hour of API keys that set no limit of their own (0: unlimited).
    #[arg(long, env = "BRIDGE_KEY_RATE_LIMIT_PER_HOUR")]
    pub key_rate_limit_per_hour: u64,
    /// Burst of API keys that set none of their own.
    #[arg(long, env = "BRIDGE_KEY_BURST")]
    pub key_burst: u64,
    /// Messages per second one connection may send (0: unlimited).
    #[arg(long, env = "BRIDGE_MESSAGE_RATE_PER_S")]
    pub message_rate_per_s: f64,
    /// Burst of the per-connection message limit (0: one second's worth).
    #[arg(long, env = "BRIDGE_MESSAGE_BURST")]
    pub message_burst: u64,
    /// Failed authentications per minute per remote address before it is refused (0: unlimited).
    #[arg(long, env = "BRIDGE_AUTH_FAILURES_PER_MINUTE")]
    pub auth_failures_per_minute: u32,
    /// Open WebSocket and SSE connections in all (0: unlimited).
    #[arg(long, env = "BRIDGE_MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// Open WebSocket and SSE connections per client id (0: unlimited).
    #[arg(long, env = "BRIDGE_MAX_CONNECTIONS_PER_CLIENT")]
    pub max_connections_per_client: usize,
    /// Origins allowed for browser requests (comma-separated, `*` for any, empty: none).
    #[arg(long, env = "BRIDGE_CORS_ORIGINS")]
    #[serde(deserialize_with = "values::comma_list")]
    pub cors_origins: String,
    /// Host names the broker answers to besides loopback names and addresses (comma-separated,
    /// `*` for any): the DNS-rebinding defence. Beyond loopback, empty means no check.
    #[arg(long, env = "BRIDGE_ALLOWED_HOSTS")]
    #[serde(deserialize_with = "values::comma_list")]
    pub allowed_hosts: String,
    /// Longest time a request body may take to arrive, in seconds (then 408 and the connection closes).
    #[arg(long, env = "BRIDGE_BODY_TIMEOUT_S")]
    pub body_timeout_s: f64,
    /// Serve HTTPS/WSS with this PEM certificate chain (with tls_key_file).
    #[arg(long, env = "BRIDGE_TLS_CERT_FILE")]
    pub tls_cert_file: String,
    /// The PEM private key of tls_cert_file.
    #[arg(long, env = "BRIDGE_TLS_KEY_FILE")]
    pub tls_key_file: String,
    /// Longest `wait` of GET /api/messages, in seconds.
    #[arg(long, env = "BRIDGE_LONG_POLL_MAX_S")]
    pub long_poll_max_s: f64,
    /// Expose POST /admin/fault for recovery tests.
    #[arg(long, env = "BRIDGE_ENABLE_FAULT_INJECTION", num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub enable_fault_injection: bool,
    /// Keep the full-text index of stored messages (`history.search`); off: the call answers
    /// `not_supported` and nothing is indexed.
    #[arg(long, env = "BRIDGE_SEARCH_INDEX", num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub search_index: bool,
    /// NATS URL for clustering.
    #[arg(long, env = "BRIDGE_CLUSTER_NATS")]
    pub cluster_nats: String,
    /// Largest accepted frame or HTTP body in bytes.
    #[arg(long, env = "BRIDGE_MAX_FRAME_BYTES")]
    pub max_frame_bytes: usize,
    /// Largest file shared in a room, in bytes.
    #[arg(long, env = "BRIDGE_MAX_FILE_BYTES")]
    pub max_file_bytes: usize,
    /// Rooms one client id may create (0: no limit).
    #[arg(long, env = "BRIDGE_MAX_ROOMS_PER_CLIENT")]
    pub max_rooms_per_client: usize,
    /// Frames queued per session before it is fed from the store.
    #[arg(long, env = "BRIDGE_SESSION_QUEUE")]
    pub session_queue: usize,
    /// Bytes queued per session before it is fed from the store (persist:false: dropped).
    #[arg(long, env = "BRIDGE_SESSION_QUEUE_BYTES")]
    pub session_queue_bytes: usize,
    /// Bytes queued per client across its sessions before they are fed from the store.
    #[arg(long, env = "BRIDGE_CLIENT_QUEUE_BYTES")]
    pub client_queue_bytes: usize,
    /// Sends awaiting their `sent` per WebSocket session before the broker stops reading it.
    #[arg(long, env = "BRIDGE_MAX_IN_FLIGHT")]
    pub max_in_flight: usize,
    /// Server ping interval in seconds.
    #[arg(long, env = "BRIDGE_HEARTBEAT_INTERVAL_S")]
    pub heartbeat_interval_s: f64,
    /// Silence allowed after a ping before closing, in seconds.
    #[arg(long, env = "BRIDGE_HEARTBEAT_TIMEOUT_S")]
    pub heartbeat_timeout_s: f64,
    /// How long a disconnected client still receives `all`, in seconds.
    #[arg(long, env = "BRIDGE_SEEN_WINDOW_S")]
    pub seen_window_s: u64,
    /// Router shards (0: one per CPU).
    #[arg(long, env = "BRIDGE_SHARDS")]
    pub shards: usize,
    /// HTTP workers (0: one per CPU).
    #[arg(long, env = "BRIDGE_WORKERS")]
    pub workers: usize,
    /// Restarts allowed within the window before escalating.
    #[arg(long, env = "BRIDGE_MAX_RESTARTS")]
    pub max_restarts: u32,
    /// The restart-intensity window in seconds.
    #[arg(long, env = "BRIDGE_RESTART_WINDOW_S")]
    pub restart_window_s: u64,
    /// Exit (code 70) when a critical actor escalates.
    #[arg(long, env = "BRIDGE_EXIT_ON_ESCALATION", num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub exit_on_escalation: bool,
    /// When `sent` is answered: sync after the flush to disk (group commit), async at once.
    #[arg(long, env = "BRIDGE_DURABILITY")]
    pub durability: Durability,
    /// Background flush interval with async durability.
    #[arg(long, env = "BRIDGE_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: u64,
    /// First redelivery of an unacked message after this many seconds.
    #[arg(long, env = "BRIDGE_ACK_TIMEOUT_S")]
    pub ack_timeout_s: f64,
    /// Longest wait between redeliveries.
    #[arg(long, env = "BRIDGE_ACK_BACKOFF_MAX_S")]
    pub ack_backoff_max_s: f64,
    /// Deliveries before dead-lettering.
    #[arg(long, env = "BRIDGE_ACK_MAX_ATTEMPTS")]
    pub ack_max_attempts: u32,
    /// A registered agent `working` without progress for this many seconds is marked `stuck`.
    #[arg(long, env = "BRIDGE_AGENT_STUCK_AFTER_S")]
    pub agent_stuck_after_s: f64,
    /// First webhook retry after about this many milliseconds (doubling, with jitter).
    #[arg(long, env = "BRIDGE_WEBHOOK_RETRY_BASE_MS")]
    pub webhook_retry_base_ms: u64,
    /// Longest wait between webhook retries.
    #[arg(long, env = "BRIDGE_WEBHOOK_RETRY_MAX_S")]
    pub webhook_retry_max_s: u64,
    /// Attempts of one webhook delivery, the first included.
    #[arg(long, env = "BRIDGE_WEBHOOK_MAX_ATTEMPTS")]
    pub webhook_max_attempts: u32,
    /// Time one webhook attempt may take.
    #[arg(long, env = "BRIDGE_WEBHOOK_TIMEOUT_S")]
    pub webhook_timeout_s: u64,
    /// Failed attempts in a row that open an endpoint's circuit breaker.
    #[arg(long, env = "BRIDGE_WEBHOOK_BREAKER_THRESHOLD")]
    pub webhook_breaker_threshold: u32,
    /// Seconds an open breaker waits before one trial.
    #[arg(long, env = "BRIDGE_WEBHOOK_BREAKER_COOLDOWN_S")]
    pub webhook_breaker_cooldown_s: f64,
    /// Failed webhook deliveries kept (the oldest beyond are dropped).
    #[arg(long, env = "BRIDGE_WEBHOOK_MAX_FAILURES")]
    pub webhook_max_failures: usize,
    /// The SMTP server of e-mail notifications: smtp://host:port (plain, a local relay),
    /// smtp+starttls://host:port (STARTTLS required) or smtps://host:port (implicit TLS); empty: none.
    #[arg(long, env = "BRIDGE_SMTP_URL")]
    pub smtp_url: String,
    /// The sender of e-mail notifications (`name@host` or `Name <name@host>`).
    #[arg(long, env = "BRIDGE_SMTP_FROM")]
    pub smtp_from: String,
    /// SMTP AUTH username (empty: no AUTH).
    #[arg(long, env = "BRIDGE_SMTP_USERNAME")]
    pub smtp_username: String,
    /// SMTP AUTH password (better given as BRIDGE_SMTP_PASSWORD than as a flag).
    #[arg(long, env = "BRIDGE_SMTP_PASSWORD")]
    pub smtp_password: String,
    /// Time to connect to the SMTP server, and for each SMTP command.
    #[arg(long, env = "BRIDGE_SMTP_TIMEOUT_S")]
    pub smtp_timeout_s: u64,
    /// Events one e-mail digest holds (more are counted, not listed).
    #[arg(long, env = "BRIDGE_EMAIL_DIGEST_MAX_EVENTS")]
    pub email_digest_max_events: usize,
    /// Failed mails kept (the oldest beyond are dropped).
    #[arg(long, env = "BRIDGE_EMAIL_MAX_FAILURES")]
    pub email_max_failures: usize,
    /// GitHub's REST API: https://api.github.com, or a GitHub Enterprise server's https://HOST/api/v3.
    #[arg(long, env = "BRIDGE_GITHUB_API_URL")]
    pub github_api_url: String,
    /// A GitHub token that may write issues (better given as BRIDGE_GITHUB_TOKEN); empty: no GitHub.
    #[arg(long, env = "BRIDGE_GITHUB_TOKEN")]
    pub github_token: String,
    /// Time one GitHub request may take.
    #[arg(long, env = "BRIDGE_GITHUB_TIMEOUT_S")]
    pub github_timeout_s: u64,
    /// A queued message moves up one priority level per this many seconds.
    #[arg(long, env = "BRIDGE_AGING_S")]
    pub aging_s: f64,
    /// Default retention: immediate, short, medium, long, permanent or a duration.
    #[arg(long, env = "BRIDGE_RETENTION_DEFAULT")]
    pub retention_default: RetentionPeriod,
    /// Per-type retention: "type=preset,type2=90s".
    #[arg(long, env = "BRIDGE_RETENTION_TYPES")]
    pub retention_types: RetentionTypes,
    /// How long idempotency keys are remembered.
    #[arg(long, env = "BRIDGE_IDEMPOTENCY_WINDOW_S")]
    pub idempotency_window_s: u64,
    /// TTL sweeper pass interval.
    #[arg(long, env = "BRIDGE_SWEEP_INTERVAL_MS")]
    pub sweep_interval_ms: u64,
    /// Most messages one sweep pass removes.
    #[arg(long, env = "BRIDGE_SWEEP_MAX_PER_PASS")]
    pub sweep_max_per_pass: usize,
    /// Archive expired messages: "", "store" or "file:PATH".
    #[arg(long, env = "BRIDGE_ARCHIVE")]
    pub archive: ArchiveTarget,
    /// Log format: text for people, json for machines.
    #[arg(long, env = "BRIDGE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (RUST_LOG syntax; RUST_LOG itself wins when set).
    #[arg(long, env = "BRIDGE_LOG_LEVEL")]
    pub log_level: String,
    /// Desktop controller: the app window's title (substring; empty: no controller).
    #[arg(long, env = "BRIDGE_DESKTOP_WINDOW")]
    pub desktop_window: String,
    /// The client id whose messages the desktop app answers (empty: none).
    #[arg(long, env = "BRIDGE_DESKTOP_AGENT")]
    pub desktop_agent: String,
    /// Rooms (comma-separated) the desktop agent joins, created when missing.
    #[arg(long, env = "BRIDGE_DESKTOP_ROOMS")]
    #[serde(deserialize_with = "values::comma_list")]
    pub desktop_rooms: String,
    /// Credentials of the desktop agent when authentication is on (an API key or a JWT).
    #[arg(long, env = "BRIDGE_DESKTOP_TOKEN", hide_env_values = true)]
    pub desktop_token: String,
    /// How the prompt gets in: "paste" (clipboard + Ctrl+V) or "type" (key by key).
    #[arg(long, env = "BRIDGE_DESKTOP_INPUT")]
    pub desktop_input: String,
    /// A prompt's default timeout in seconds.
    #[arg(long, env = "BRIDGE_DESKTOP_TIMEOUT_S")]
    pub desktop_timeout_s: u64,
    /// The answer is read once the copied text is unchanged for this many milliseconds.
    #[arg(long, env = "BRIDGE_DESKTOP_STABLE_MS")]
    pub desktop_stable_ms: u64,
    /// Managed agents' command templates: a JSON object of name → argv with a "{prompt}" element ("": the built-in claude one).
    #[arg(long, env = "BRIDGE_AGENT_TEMPLATES")]
    pub agent_templates: String,
    /// The template agent.spawn uses without one.
    #[arg(long, env = "BRIDGE_AGENT_DEFAULT_TEMPLATE")]
    pub agent_default_template: String,
    /// A managed agent's prompt timeout in seconds (SIGTERM, then SIGKILL).
    #[arg(long, env = "BRIDGE_AGENT_TIMEOUT_S")]
    pub agent_timeout_s: f64,
    /// Retries after a managed agent's crash.
    #[arg(long, env = "BRIDGE_AGENT_RETRIES")]
    pub agent_retries: u32,
    /// First retry delay in milliseconds (doubling).
    #[arg(long, env = "BRIDGE_AGENT_BACKOFF_MS")]
    pub agent_backoff_ms: u64,
    /// Failed runs in a row that open a managed agent's circuit.
    #[arg(long, env = "BRIDGE_AGENT_BREAKER_THRESHOLD")]
    pub agent_breaker_threshold: u32,
    /// How long an open circuit refuses runs, in seconds.
    #[arg(long, env = "BRIDGE_AGENT_BREAKER_COOLDOWN_S")]
    pub agent_breaker_cooldown_s: f64,
    /// Enable the code sandbox (code.run).
    #[arg(long, env = "BRIDGE_SANDBOX", num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub sandbox: bool,
    /// A sandbox run's default wall-clock limit in seconds.
    #[arg(long, env = "BRIDGE_SANDBOX_TIMEOUT_S")]
    pub sandbox_timeout_s: f64,
    /// The longest wall-clock limit a code.run may ask for.
    #[arg(long, env = "BRIDGE_SANDBOX_MAX_TIMEOUT_S")]
    pub sandbox_max_timeout_s: f64,
    /// CPU seconds per sandbox run (RLIMIT_CPU).
    #[arg(long, env = "BRIDGE_SANDBOX_CPU_S")]
    pub sandbox_cpu_s: u64,
    /// Memory per sandbox run in MiB (RLIMIT_DATA).
    #[arg(long, env = "BRIDGE_SANDBOX_MEMORY_MB")]
    pub sandbox_memory_mb: u64,
    /// Processes of the sandbox user (RLIMIT_NPROC).
    #[arg(long, env = "BRIDGE_SANDBOX_NPROC")]
    pub sandbox_nproc: u64,
    /// Most stdout (and stderr) bytes kept per sandbox run.
    #[arg(long, env = "BRIDGE_SANDBOX_MAX_OUTPUT_BYTES")]
    pub sandbox_max_output_bytes: usize,
}

/// The arguments of `agent-bridge serve` (and `config print`): `--config FILE` and every field of
/// [`Config`] as an optional flag, kept as clap parsed them to be laid over the file in
/// [`Config::load`].
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    /// The TOML file between the defaults and the environment.
    pub config: Option<PathBuf>,
    /// The environment variables and flags given; `None`: none.
    given: Option<ArgMatches>,
}

impl ServeArgs {
    /// Defaults and `file` only: no environment, no flags.
    pub fn file(file: Option<PathBuf>) -> ServeArgs {
        ServeArgs { config: file, given: None }
    }
}

impl Args for ServeArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = cmd.arg(
            clap::Arg::new("config")
                .long("config")
                .env("BRIDGE_CONFIG")
                .value_name("CONFIG")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML configuration file"),
        );
        let before: Vec<clap::Id> = cmd.get_arguments().map(|a| a.get_id().clone()).collect();
        // Every setting has a default, in the embedded file: none is required on the command line.
        Config::augment_args(cmd).mut_args(|a| if before.contains(a.get_id()) { a } else { a.required(false) })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(ServeArgs { config: matches.get_one::<PathBuf>("config").cloned(), given: Some(matches.clone()) })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
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

impl Config {
    /// Defaults, then the file, then environment and flags (clap has already merged those two,
    /// a flag winning over its variable); validated.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let mut config = Self::from_files(args.config.as_deref())?;
        if let Some(given) = &args.given {
            config.update_from_arg_matches(given).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        config.validate()?;
        Ok(config)
    }

    /// The embedded defaults with `file` over them, not yet validated. A key the defaults do not
    /// have is refused, and so is a value of the wrong type, naming the key (and the file).
    pub fn from_files(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(DEFAULT_CONFIG).expect("embedded defaults are valid TOML");
        let mut from_file = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            from_file = toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), source: Box::new(e) })?;
            if let Some(key) = from_file.keys().find(|k| !table.contains_key(*k)) {
                return Err(ConfigError::Invalid(format!("{}: unknown key {key:?}", path.display())));
            }
            table.extend(from_file.clone());
        }
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            let origin = file.filter(|_| from_file.contains_key(&key)).map(|p| format!("{}: ", p.display()));
            ConfigError::Invalid(format!("{}{key}: {}", origin.unwrap_or_default(), e.inner()))
        })
    }

    /// Checks values and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
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
        self.templates().map_err(ConfigError::Invalid)?;
        if !(self.agent_timeout_s > 0.0 && self.sandbox_timeout_s > 0.0 && self.sandbox_max_timeout_s > 0.0) {
            return bad("agent_timeout_s, sandbox_timeout_s and sandbox_max_timeout_s must be above 0".into());
        }
        if InputMode::parse(&self.desktop_input).is_none() {
            return bad(format!("desktop_input = {:?} must be \"paste\" or \"type\"", self.desktop_input));
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
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if !positive(self.heartbeat_interval_s) || !positive(self.heartbeat_timeout_s) {
            return bad("heartbeat_interval_s and heartbeat_timeout_s must be positive".into());
        }
        if self.max_restarts == 0 || self.restart_window_s == 0 {
            return bad("max_restarts and restart_window_s must be at least 1".into());
        }
        for (name, v) in [("ack_timeout_s", self.ack_timeout_s), ("ack_backoff_max_s", self.ack_backoff_max_s), ("aging_s", self.aging_s), ("agent_stuck_after_s", self.agent_stuck_after_s)] {
            if !(v > 0.0 && v.is_finite()) {
                return bad(format!("{name} = {v} must be a positive number of seconds"));
            }
        }
        if self.webhook_max_attempts == 0 || self.webhook_breaker_threshold == 0 || self.webhook_max_failures == 0
            || self.webhook_timeout_s == 0 || !(self.webhook_breaker_cooldown_s >= 0.0 && self.webhook_breaker_cooldown_s.is_finite())
        {
            return bad("webhook_max_attempts, webhook_breaker_threshold, webhook_max_failures and webhook_timeout_s must be at least 1, webhook_breaker_cooldown_s not negative".into());
        }
        if let Err(e) = self.smtp() {
            return bad(e);
        }
        if self.smtp_timeout_s == 0 || self.github_timeout_s == 0 || self.email_digest_max_events == 0 || self.email_max_failures == 0 {
            return bad("smtp_timeout_s, github_timeout_s, email_digest_max_events and email_max_failures must be at least 1".into());
        }
        match reqwest::Url::parse(&self.github_api_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => return bad(format!("github_api_url = {:?} must be an http:// or https:// URL", self.github_api_url)),
        }
        if self.ack_max_attempts == 0 || self.sweep_max_per_pass == 0 || self.sweep_interval_ms == 0 || self.flush_interval_ms == 0 {
            return bad("ack_max_attempts, sweep_max_per_pass, sweep_interval_ms and flush_interval_ms must be at least 1".into());
        }
        Ok(())
    }

    /// Refuses to expose an unauthenticated broker beyond loopback unless `insecure` is set.
    /// `auth_required` says whether auth is on (require_auth, JWT, or keys in the store).
    pub fn check_exposure(&self, auth_required: bool) -> Result<(), ConfigError> {
        let addr = self.bind;
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
        for secret in [&mut c.jwt_secret, &mut c.smtp_password, &mut c.github_token] {
            if !secret.is_empty() {
                *secret = "<redacted>".into();
            }
        }
        c
    }

    /// The retention policy.
    pub fn retention(&self) -> Retention {
        values::retention(self.retention_default, &self.retention_types)
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
                retention: self.retention(),
                idempotency_window: Duration::from_secs(self.idempotency_window_s),
                durability: self.durability.into(),
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
                archive: self.archive.0.clone(),
                idempotency_window: Duration::from_secs(self.idempotency_window_s),
                retention: self.retention(),
            },
            flush_interval: Duration::from_millis(self.flush_interval_ms),
            agents: AgentsConfig { stuck_after: Duration::from_secs_f64(self.agent_stuck_after_s), ..AgentsConfig::default() },
            webhooks: WebhooksConfig {
                retry: RetryConfig {
                    base: Duration::from_millis(self.webhook_retry_base_ms),
                    max_delay: Duration::from_secs(self.webhook_retry_max_s),
                    max_attempts: self.webhook_max_attempts,
                    timeout: Duration::from_secs(self.webhook_timeout_s),
                },
                breaker: BreakerConfig { threshold: self.webhook_breaker_threshold, cooldown: Duration::from_secs_f64(self.webhook_breaker_cooldown_s) },
                max_failures: self.webhook_max_failures,
            },
            email: MailerConfig {
                smtp: self.smtp().ok().flatten(),
                max_failures: self.email_max_failures,
                digest_max_events: self.email_digest_max_events,
            },
            github: GitHubConfig {
                api_url: self.github_api_url.clone(),
                token: self.github_token.clone(),
                timeout: Duration::from_secs(self.github_timeout_s),
                ..GitHubConfig::default()
            },
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
            search: self.search_index,
            desktop: self.desktop(),
            managed: self.managed(),
            sandbox: self.sandbox(),
        }
    }

    /// The managed agents' templates ([`Config::validate`] checked them).
    fn templates(&self) -> Result<BTreeMap<String, Vec<String>>, String> {
        if self.agent_templates.trim().is_empty() {
            return Ok(ManagedConfig::default().templates);
        }
        let t: BTreeMap<String, Vec<String>> = serde_json::from_str(&self.agent_templates).map_err(|e| format!("agent_templates: {e}"))?;
        match t.iter().find(|(_, argv)| argv.is_empty()) {
            Some((name, _)) => Err(format!("agent_templates: template {name:?} has no command")),
            None => Ok(t),
        }
    }

    /// The managed agents' settings.
    fn managed(&self) -> ManagedConfig {
        ManagedConfig {
            templates: self.templates().unwrap_or_default(),
            default_template: self.agent_default_template.clone(),
            timeout: Duration::from_secs_f64(self.agent_timeout_s.max(0.001)),
            retries: self.agent_retries,
            backoff: Duration::from_millis(self.agent_backoff_ms),
            breaker: BreakerConfig { threshold: self.agent_breaker_threshold.max(1), cooldown: Duration::from_secs_f64(self.agent_breaker_cooldown_s.max(0.0)) },
            ..ManagedConfig::default()
        }
    }

    /// The code sandbox's settings; its helper is this very binary (`agent-bridge sandbox-exec`).
    fn sandbox(&self) -> SandboxConfig {
        SandboxConfig {
            enabled: self.sandbox,
            helper: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("agent-bridge")),
            timeout: Duration::from_secs_f64(self.sandbox_timeout_s.max(0.001)),
            max_timeout: Duration::from_secs_f64(self.sandbox_max_timeout_s.max(0.001)),
            cpu_s: self.sandbox_cpu_s.max(1),
            memory_bytes: self.sandbox_memory_mb.max(1) << 20,
            nproc: self.sandbox_nproc.max(1),
            max_output_bytes: self.sandbox_max_output_bytes,
            ..SandboxConfig::default()
        }
    }

    /// The SMTP server, when `smtp_url` is set.
    fn smtp(&self) -> Result<Option<SmtpConfig>, String> {
        if self.smtp_url.is_empty() {
            return Ok(None);
        }
        SmtpConfig::parse(&self.smtp_url, &self.smtp_from, &self.smtp_username, &self.smtp_password, Duration::from_secs(self.smtp_timeout_s.max(1))).map(Some)
    }

    /// The desktop controller's settings, when a window is configured.
    fn desktop(&self) -> Option<DesktopConfig> {
        (!self.desktop_window.is_empty()).then(|| DesktopConfig {
            window: self.desktop_window.clone(),
            input: InputMode::parse(&self.desktop_input).unwrap_or_default(),
            timeout: Duration::from_secs(self.desktop_timeout_s.max(1)),
            stable_for: Duration::from_millis(self.desktop_stable_ms),
            ..DesktopConfig::default()
        })
    }
}

/// `scheme://host[:port]` without a path: `https://claude.ai`, `chrome-extension://<id>`.
fn is_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else { return false };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    scheme_ok && !rest.trim_end_matches('/').is_empty() && !rest.trim_end_matches('/').contains(['/', ' ', '?', '#'])
}

#[cfg(test)]
mod tests;
