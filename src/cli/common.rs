//! What every client subcommand shares: the connection flags (`--url`, `--token`, `--client-id`,
//! `--config`, each also from `BRIDGE_*` and a config file), payload arguments, output and exit codes.
//!
//! Precedence: flag, then environment variable (clap reads both), then the config file, then the
//! default. The config file is TOML with `url`, `token` and `client_id`, at the top level or in a
//! `[client]` table; other keys are ignored. Without `--config` the file
//! `$XDG_CONFIG_HOME/agent-bridge/client.toml` (or `~/.config/agent-bridge/client.toml`) is read
//! when it exists.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agent_bridge_protocol::{Message, Priority};
use clap::Args;
use serde::Deserialize;
use serde_json::Value;
use tracing_subscriber::EnvFilter;

use crate::client::{new_id, ClientConfig, ClientError, DEFAULT_URL};

/// Exit status for a failure reported by the broker or the connection.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for bad flags, files or configuration (as clap uses for usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit status when no answer came in time (`ask`).
pub const EXIT_TIMEOUT: u8 = 3;

/// The connection flags of every client subcommand (global: also after `room create` and the like).
#[derive(Debug, Clone, Default, Args)]
pub struct ClientArgs {
    /// Broker address, ws://HOST:PORT (default ws://127.0.0.1:5001).
    #[arg(long, env = "BRIDGE_URL", global = true)]
    pub url: Option<String>,
    /// API key or JWT, sent as `Authorization: Bearer` and `?token=`.
    #[arg(long, env = "BRIDGE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// This client's id (default: a generated `cli-…` id).
    #[arg(long, env = "BRIDGE_CLIENT_ID", global = true)]
    pub client_id: Option<String>,
    /// Client config file: TOML with url, token, client_id.
    #[arg(long, env = "BRIDGE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The keys a client config file may hold.
#[derive(Debug, Default, Deserialize)]
struct FileSettings {
    url: Option<String>,
    token: Option<String>,
    client_id: Option<String>,
    client: Option<Box<FileSettings>>,
}

/// A failure of a subcommand: the text for stderr and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: EXIT_USAGE }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: EXIT_FAILURE }
    }

    /// A client error, with the broker's address and a hint when the broker lacks the feature.
    pub fn client(e: &ClientError, url: &str, what: &str) -> Self {
        let code = match e {
            ClientError::InvalidUrl { .. } | ClientError::Invalid(_) => EXIT_USAGE,
            ClientError::Timeout { .. } => EXIT_TIMEOUT,
            _ => EXIT_FAILURE,
        };
        let message = if e.is_unsupported() {
            format!("the broker at {url} does not support {what} yet ({e})")
        } else {
            format!("{what} failed: {e}")
        };
        Failure { message, code }
    }
}

/// Prints the failure and turns the outcome into the process status.
pub fn finish(outcome: Result<(), Failure>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("agent-bridge: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

/// The connection settings after flags, environment and config file.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub url: String,
    pub token: Option<String>,
    pub client_id: String,
    /// No id was given anywhere; one was generated.
    pub generated_id: bool,
    pub json: bool,
}

impl Resolved {
    /// The library configuration.
    pub fn config(&self) -> Result<ClientConfig, Failure> {
        ClientConfig::new(&self.url, &self.client_id)
            .map(|c| c.token(self.token.clone()))
            .map_err(|e| Failure::usage(e.to_string()))
    }
}

impl ClientArgs {
    /// Applies the config file and defaults; `id_prefix` names generated ids (`cli`, `mcp`).
    pub fn resolve(&self, id_prefix: &str) -> Result<Resolved, Failure> {
        let file = match &self.config {
            Some(path) => read_settings(path)?,
            None => match default_config_path().filter(|p| p.exists()) {
                Some(path) => read_settings(&path)?,
                None => FileSettings::default(),
            },
        };
        let file = match file.client {
            Some(table) => FileSettings { url: table.url.or(file.url), token: table.token.or(file.token), client_id: table.client_id.or(file.client_id), client: None },
            None => file,
        };
        let given_id = self.client_id.clone().or(file.client_id);
        let generated_id = given_id.is_none();
        let client_id = given_id.unwrap_or_else(|| generated_id_for(id_prefix));
        Ok(Resolved {
            url: self.url.clone().or(file.url).unwrap_or_else(|| DEFAULT_URL.to_owned()),
            token: self.token.clone().or(file.token).filter(|t| !t.is_empty()),
            client_id,
            generated_id,
            json: self.json,
        })
    }
}

/// `prefix-` and 12 random hex digits.
fn generated_id_for(prefix: &str) -> String {
    let id = new_id(prefix);
    let keep = id.len().saturating_sub(12);
    format!("{prefix}-{}", &id[keep..])
}

fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("agent-bridge").join("client.toml"))
}

fn read_settings(path: &Path) -> Result<FileSettings, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("reading the config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| Failure::usage(format!("the config file {} is not valid: {e}", path.display())))
}

/// Reads a payload argument: `-` is stdin, `@path` a file, anything else the text itself. The text
/// is JSON when it parses as JSON, else it is sent as a JSON string. No argument is `null`.
pub fn read_payload(arg: Option<&str>) -> Result<Value, Failure> {
    let text = match arg {
        None => return Ok(Value::Null),
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| Failure::usage(format!("reading the payload from stdin: {e}")))?;
            s
        }
        Some(a) => match a.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("reading the payload file {path}: {e}")))?,
            None => a.to_owned(),
        },
    };
    Ok(parse_payload_text(&text))
}

/// JSON if it parses, else the text (without a trailing newline) as a string.
pub fn parse_payload_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.trim_end_matches(['\n', '\r']).to_owned()))
}

/// Parses `--priority` (a name or 1..9).
pub fn parse_priority(s: &str) -> Result<Priority, String> {
    Priority::from_name(s)
        .or_else(|| s.parse::<i64>().ok().and_then(Priority::from_number))
        .ok_or_else(|| format!("{s:?} is not critical, high, normal, low, bulk or 1..9"))
}

/// Logs of client subcommands go to stderr (stdout is their output); `RUST_LOG` overrides `warn`.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Runs a client subcommand on a single-threaded tokio runtime, with logs on stderr.
pub fn run_async<F>(fut: F) -> ExitCode
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return finish(Err(Failure::failed(format!("starting the async runtime: {e}")))),
    };
    finish(runtime.block_on(fut))
}

/// Writes one line to stdout and flushes it (so a reader sees it at once). A closed stdout (the
/// reader went away) is a failure that ends the command.
pub fn print_line(line: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| match e.kind() {
        // `listen | head -3`: the reader has what it wanted; stop quietly.
        std::io::ErrorKind::BrokenPipe => Failure { message: String::new(), code: 0 },
        _ => Failure::failed(format!("writing to stdout: {e}")),
    })
}

/// Prints a JSON value: one line with `--json`, indented otherwise.
pub fn print_value(value: &Value, json: bool) -> Result<(), Failure> {
    let text = if json { value.to_string() } else { serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()) };
    print_line(&text)
}

/// A message as a person reads it: `#seq from → to [type] payload`.
pub fn human_message(m: &Message) -> String {
    let to = match (&m.room, &m.to) {
        (Some(room), _) => format!("room {room}"),
        (None, Some(to)) => to.clone(),
        (None, None) => "?".into(),
    };
    let mut line = format!("#{} {} → {} [{}] {}", m.seq, m.from, to, m.msg_type, payload_text(&m.payload.to_value()));
    if let Some(c) = &m.correlation_id {
        line.push_str(&format!("  (re: {c})"));
    }
    if m.requires_ack {
        line.push_str("  (ack requested)");
    }
    line
}

/// A payload for people: strings without quotes, other JSON compact.
pub fn payload_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_text_is_json_when_it_parses() {
        assert_eq!(parse_payload_text("{\"a\": 1}\n"), serde_json::json!({"a": 1}));
        assert_eq!(parse_payload_text("42"), serde_json::json!(42));
        assert_eq!(parse_payload_text("hello world\n"), serde_json::json!("hello world"));
        assert_eq!(read_payload(None).ok(), Some(Value::Null));
        assert!(read_payload(Some("@/definitely/not/here")).is_err());
    }

    #[test]
    fn priorities_by_name_or_number() {
        assert_eq!(parse_priority("high"), Ok(Priority::High));
        assert_eq!(parse_priority("1"), Ok(Priority::Critical));
        assert!(parse_priority("urgent").is_err());
    }

    #[test]
    fn config_file_fills_what_flags_leave_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("client.toml");
        std::fs::write(&path, "url = \"ws://h:1\"\nbind = \"ignored\"\n[client]\nclient_id = \"from-file\"\ntoken = \"t\"\n")
            .expect("write");
        let args = ClientArgs { config: Some(path.clone()), client_id: Some("from-flag".into()), ..ClientArgs::default() };
        let r = args.resolve("cli").expect("resolves");
        assert_eq!((r.url.as_str(), r.client_id.as_str(), r.token.as_deref()), ("ws://h:1", "from-flag", Some("t")));
        let r = ClientArgs { config: Some(path), ..ClientArgs::default() }.resolve("cli").expect("resolves");
        assert_eq!(r.client_id, "from-file");
        assert!(!r.generated_id);
        let missing = ClientArgs { config: Some(dir.path().join("nope.toml")), ..ClientArgs::default() };
        assert!(missing.resolve("cli").is_err());
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let (a, b) = (generated_id_for("cli"), generated_id_for("cli"));
        assert_ne!(a, b);
        assert!(a.starts_with("cli-") && a.len() == 16, "{a}");
        assert!(agent_bridge_protocol::ids::validate_client_id(&a).is_ok());
    }
}
