//! `code.run`: the code is written into a fresh temporary directory and run by the broker's own
//! binary as `agent-bridge sandbox-exec --cpu-s … -- python3 main.py`, a tiny helper that sets its
//! own rlimits (CPU seconds, data segment, processes, file size, open files), drops root to
//! a user id of its own and, as root with util-linux `unshare`, enters a network namespace of its own, then
//! execs the interpreter. The crate forbids `unsafe`, so no `pre_exec` here: the limits are set by
//! the helper on itself, before its `exec`. The run is a process group of its own, killed whole at
//! the wall-clock timeout ([`super::process`]). Not a VM: see README "The code sandbox".

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use super::process::{self, Spec};
use crate::messages::{CodeRun, ManagedError, SandboxConfig};

/// As root, each run gets a user (and group) id of its own from this range, so that
/// RLIMIT_NPROC counts only its own processes and runs cannot signal each other.
pub const FIRST_UID: u32 = 61000;
pub const UIDS: u32 = 1000;

/// The next run's user id: round the range, from a point that depends on the process id, so
/// that two brokers on one host seldom share one (they would share its process count).
fn next_uid() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    FIRST_UID + std::process::id().wrapping_mul(97).wrapping_add(n) % UIDS
}

/// Whether the broker runs as root (then the sandbox drops to a uid of its own).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// util-linux `unshare` in `path`, when the broker is root (so a network namespace can be made):
/// the sandbox then runs without a network but loopback.
pub fn unshare_binary(path: &str) -> Option<std::path::PathBuf> {
    if !is_root() {
        return None;
    }
    path.split(':').map(|d| std::path::Path::new(d).join("unshare")).find(|p| p.is_file())
}

/// Runs `code` under `config`'s limits; the answer is `{exit_code, signal, stdout, stderr,
/// truncated, timed_out, duration_ms, network_isolated}`.
pub async fn run(config: &SandboxConfig, code: CodeRun) -> Result<Value, ManagedError> {
    if !config.enabled {
        return Err(ManagedError::Disabled);
    }
    let dir = tempfile::Builder::new().prefix("agent-bridge-sandbox-").tempdir().map_err(|e| ManagedError::Spawn(e.to_string()))?;
    let (interpreter, file) = code.language.interpreter();
    let path = dir.path().join(file);
    std::fs::write(&path, code.code.as_bytes()).map_err(|e| ManagedError::Spawn(e.to_string()))?;
    let uid = next_uid();
    if is_root() {
        // The code runs as `uid`: its directory is its own.
        for p in [dir.path(), path.as_path()] {
            std::os::unix::fs::chown(p, Some(uid), Some(uid)).map_err(|e| ManagedError::Spawn(e.to_string()))?;
        }
    }
    let home = dir.path().to_string_lossy().into_owned();
    let mut argv: Vec<String> = vec![config.helper.to_string_lossy().into_owned(), "sandbox-exec".into()];
    for (flag, value) in [
        ("--cpu-s", config.cpu_s),
        ("--memory-bytes", config.memory_bytes),
        ("--nproc", config.nproc),
        ("--file-bytes", config.file_bytes),
        ("--nofile", config.nofile),
    ] {
        argv.extend([flag.to_owned(), value.to_string()]);
    }
    argv.extend(["--uid".into(), uid.to_string(), "--dir".into(), home.clone(), "--".into(), interpreter.into(), file.into()]);
    let timeout = code.timeout.unwrap_or(config.timeout).min(config.max_timeout);
    let spec = Spec {
        argv,
        cwd: Some(dir.path().to_path_buf()),
        clear_env: true,
        env: vec![("PATH".into(), config.path.clone()), ("HOME".into(), home.clone()), ("TMPDIR".into(), home)],
        stdin: code.stdin.map(String::into_bytes),
        timeout,
        grace: Duration::from_millis(200),
        max_output: config.max_output_bytes,
        stop: None,
    };
    let out = process::run(spec, |_| {}).await.map_err(|e| ManagedError::Spawn(e.to_string()))?;
    let isolated = unshare_binary(&config.path).is_some();
    drop(dir);
    Ok(json!({
        "exit_code": out.exit_code,
        "signal": out.signal,
        "stdout": String::from_utf8_lossy(&out.stdout),
        "stderr": String::from_utf8_lossy(&out.stderr),
        "truncated": out.truncated,
        "timed_out": out.timed_out,
        "duration_ms": out.elapsed.as_millis() as u64,
        "network_isolated": isolated,
    }))
}
