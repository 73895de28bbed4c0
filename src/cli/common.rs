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
    /// This client's id (default: the one id a token is bound to, else a new generated `cli-…` id).
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

    /// A client error, with the broker's address and a hint: how to start a broker that is not
    /// reachable, which credentials were refused, or that the broker lacks the feature.
    pub fn client(e: &ClientError, url: &str, what: &str) -> Self {
        let code = match e {
            ClientError::InvalidUrl { .. } | ClientError::Invalid(_) => EXIT_USAGE,
            ClientError::Timeout { .. } => EXIT_TIMEOUT,
            _ => EXIT_FAILURE,
        };
        let message = match e {
            _ if e.is_unsupported() => format!("the broker at {url} does not support {what} yet ({e})"),
            ClientError::Connect { reason, .. } => format!(
                "broker not reachable at {url} ({reason}); start it with `agent-bridge serve` (or pass --url)"
            ),
            ClientError::Rejected { status: 401, .. } => {
                format!("{what} failed: authentication failed: {e}; check --token (or BRIDGE_TOKEN)")
            }
            ClientError::Server { code, message } if code == "unauthorized" => format!(
                "{what} failed: authentication failed: the broker at {url} refused the credentials ({message}); \
                 check --token (or BRIDGE_TOKEN)"
            ),
            _ => format!("{what} failed: {e}"),
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

impl ClientArgs {
    /// [`ClientArgs::resolve`], and when no client id was given but a token was: the one client id
    /// the broker says the token is bound to (`GET /api/whoami`), if it names exactly one. Errors of
    /// that look-up are left to the command itself, which reports them in context.
    pub async fn resolve_bound(&self, id_prefix: &str) -> Result<Resolved, Failure> {
        let mut who = self.resolve(id_prefix)?;
        if !who.generated_id || who.token.is_none() {
            return Ok(who);
        }
        let Ok(url) = crate::client::BrokerUrl::parse(&who.url) else { return Ok(who) };
        let me = crate::client::http_json(&url, reqwest::Method::GET, "/api/whoami", who.token.as_deref(), None).await;
        if let Some(id) = me.ok().and_then(|v| v["client_id"].as_str().map(str::to_owned)) {
            tracing::debug!(client_id = %id, "client id from the token");
            who.client_id = id;
            who.generated_id = false;
        }
        Ok(who)
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
/// is JSON when it parses as JSON, else it is sent as a JSON string. No argument reads stdin when
/// it is a pipe or a file, and is refused on a terminal (nothing would be sent by mistake).
pub fn read_payload(arg: Option<&str>) -> Result<Value, Failure> {
    let text = match arg {
        None if std::io::stdin().is_terminal() => {
            return Err(Failure::usage(
                "no payload: give it as an argument (JSON or text), @FILE, or - (or pipe it) to read stdin",
            ))
        }
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| Failure::usage(format!("reading the payload from stdin: {e}")))?;
            if arg.is_none() && s.trim().is_empty() {
                return Err(Failure::usage("no payload: stdin was empty (give the payload as an argument, @FILE, or -)"));
            }
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

/// Colour (bold headers) only when stdout is a terminal and `NO_COLOR` is not set.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Prints rows under a header, columns padded to their widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) -> Result<(), Failure> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let head = line(header.iter().map(|h| h.to_string()).collect());
    print_line(&if colour() { format!("\x1b[1m{head}\x1b[0m") } else { head })?;
    rows.iter().try_for_each(|r| print_line(&line(r.clone())))
}

/// Prints `key  value` lines, keys padded (a two-column table without a header).
pub fn print_fields(fields: &[(&str, String)]) -> Result<(), Failure> {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    fields.iter().try_for_each(|(k, v)| {
        let key = format!("{k:<width$}");
        print_line(&format!("{}  {v}", if colour() { format!("\x1b[1m{key}\x1b[0m") } else { key }))
    })
}

/// `145.37` seconds as `2m 25s`; `3.2` as `3.2s`; days and hours for long ones.
pub fn duration_text(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let s = secs as u64;
    let (d, h, m, rest) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h) {
        (0, 0) => format!("{m}m {rest:02}s"),
        (0, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// `1536` bytes as `1.5 KiB`.
pub fn bytes_text(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", units[unit]) }
}

/// A JSON value for a table cell: strings bare, booleans yes/no, null as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => payload_text(other),
    }
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
        assert!(read_payload(Some("@/definitely/not/here")).is_err());
    }

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(duration_text(145.37405277), "2m 25s");
        assert_eq!(duration_text(3.25), "3.2s");
        assert_eq!(duration_text(7322.0), "2h 02m");
        assert_eq!(duration_text(90_000.0), "1d 1h");
        assert_eq!(bytes_text(818), "818 B");
        assert_eq!(bytes_text(1536), "1.5 KiB");
        assert_eq!(cell(&Value::Bool(true)), "yes");
        assert_eq!(cell(&Value::Null), "-");
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
