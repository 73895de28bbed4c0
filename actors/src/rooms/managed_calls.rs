//! The params of the managed-agent calls (`agent.spawn`, `agent.execute`, `agent.stop`,
//! `agent.managed`) and of `code.run`, and their checks: each builds the `managed` registry's
//! [`ManagedOp`]. A leaf of `rooms`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use utoipa::ToSchema;

use crate::messages::{CodeRun, Language, ManagedOp, RoomError};
use crate::room::JoinLink;

/// Longest agent name, prompt and program text.
const MAX_NAME: usize = 64;
const MAX_PROMPT: usize = 256 * 1024;
const MAX_CODE: usize = 256 * 1024;
const MAX_STDIN: usize = 1024 * 1024;
const MAX_ENV: usize = 64;
/// Longest timeout a call may ask for.
const MAX_TIMEOUT_S: u64 = 24 * 3600;

fn bad(msg: impl Into<String>) -> RoomError {
    RoomError::InvalidParams(msg.into())
}

fn agent_name(name: &str) -> Result<(), RoomError> {
    let ok = !name.is_empty() && name.len() <= MAX_NAME && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok { Ok(()) } else { Err(bad(format!("name must be 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"))) }
}

fn timeout(t: Option<f64>, max: u64) -> Result<Option<Duration>, RoomError> {
    match t {
        None => Ok(None),
        Some(t) if t > 0.0 && t <= max as f64 => Ok(Some(Duration::from_secs_f64(t))),
        Some(_) => Err(bad(format!("timeout_s must be above 0 and at most {max}"))),
    }
}

/// `agent.spawn`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnParams {
    /// The managed agent's name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// A command template of the broker's configuration (default: the configured default,
    /// `claude -p {prompt} --output-format json`).
    pub template: Option<String>,
    /// The working directory of its processes.
    pub cwd: Option<String>,
    /// Environment variables added to the broker's for its processes (at most 64).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A prompt's timeout in seconds (default: the configured one).
    #[schema(minimum = 0, maximum = 86400)]
    pub timeout_s: Option<f64>,
}

pub(super) fn spawn(p: SpawnParams) -> Result<ManagedOp, RoomError> {
    agent_name(&p.name)?;
    if p.env.len() > MAX_ENV || p.env.iter().any(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0')) {
        return Err(bad(format!("env: at most {MAX_ENV} variables, names without '=' or NUL, values without NUL")));
    }
    if p.cwd.as_deref().is_some_and(|c| c.is_empty() || c.contains('\0')) {
        return Err(bad("cwd must be a directory path"));
    }
    Ok(ManagedOp::Spawn { name: p.name, template: p.template, cwd: p.cwd.map(PathBuf::from), env: p.env, timeout: timeout(p.timeout_s, MAX_TIMEOUT_S)? })
}

/// `agent.execute`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteParams {
    /// The managed agent.
    pub name: String,
    /// The prompt (one argument of the command, at most 256 KiB).
    pub prompt: String,
}

pub(super) fn execute(p: ExecuteParams, link: Option<JoinLink>) -> Result<ManagedOp, RoomError> {
    agent_name(&p.name)?;
    if p.prompt.len() > MAX_PROMPT || p.prompt.contains('\0') {
        return Err(bad(format!("prompt must be at most {MAX_PROMPT} bytes without NUL")));
    }
    Ok(ManagedOp::Execute { name: p.name, prompt: p.prompt, progress: link.map(|l| l.notify) })
}

/// `agent.stop`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManagedNameParams {
    /// The managed agent.
    pub name: String,
}

pub(super) fn stop(p: ManagedNameParams) -> Result<ManagedOp, RoomError> {
    agent_name(&p.name)?;
    Ok(ManagedOp::Stop { name: p.name })
}

/// `code.run`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeParams {
    /// python, javascript or bash.
    #[schema(inline)]
    pub language: Language,
    /// The program (at most 256 KiB).
    pub code: String,
    /// Wall-clock limit in seconds (default and maximum: the configured ones).
    #[schema(minimum = 0, maximum = 3600)]
    pub timeout_s: Option<f64>,
    /// Given on the program's stdin (at most 1 MiB).
    pub stdin: Option<String>,
}

pub(super) fn code(p: CodeParams) -> Result<ManagedOp, RoomError> {
    if p.code.len() > MAX_CODE || p.code.contains('\0') {
        return Err(bad(format!("code must be at most {MAX_CODE} bytes without NUL")));
    }
    if p.stdin.as_ref().is_some_and(|s| s.len() > MAX_STDIN) {
        return Err(bad(format!("stdin must be at most {MAX_STDIN} bytes")));
    }
    Ok(ManagedOp::Code(CodeRun { language: p.language, code: p.code, stdin: p.stdin, timeout: timeout(p.timeout_s, 3600)? }))
}
