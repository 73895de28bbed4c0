//! `agent-bridge sandbox-exec`: the helper `code.run` runs its code through (see
//! `agent_bridge_actors::managed::sandbox`). It sets its own rlimits, then replaces itself with the
//! interpreter (`exec`), which inherits them: as root it first drops to the run's own user id (so
//! that RLIMIT_NPROC, which root ignores, holds) and, when util-linux `unshare` is in PATH, enters a
//! network namespace of its own (loopback only). The crates forbid `unsafe`, so this is the safe
//! stand-in for a `pre_exec` hook: every step is a safe API (`rlimit`, std's `CommandExt`).

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use agent_bridge_actors::managed::sandbox::{is_root, unshare_binary};
use clap::Args;
use rlimit::Resource;

/// Flags of `agent-bridge sandbox-exec` (internal: started by the broker for `code.run`).
#[derive(Debug, Clone, Args)]
pub struct SandboxExecArgs {
    /// RLIMIT_CPU in seconds (SIGXCPU, then SIGKILL a second later).
    #[arg(long)]
    pub cpu_s: u64,
    /// RLIMIT_DATA in bytes.
    #[arg(long)]
    pub memory_bytes: u64,
    /// RLIMIT_NPROC.
    #[arg(long)]
    pub nproc: u64,
    /// RLIMIT_FSIZE in bytes.
    #[arg(long)]
    pub file_bytes: u64,
    /// RLIMIT_NOFILE.
    #[arg(long)]
    pub nofile: u64,
    /// The user and group id to run as when started as root.
    #[arg(long)]
    pub uid: u32,
    /// The run's directory (its working directory).
    #[arg(long)]
    pub dir: String,
    /// The interpreter and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Limits itself and execs the command; returns only if that failed (exit code 126 or 127).
pub fn sandbox_exec(args: &SandboxExecArgs) -> ExitCode {
    let limits = [
        (Resource::CPU, args.cpu_s, args.cpu_s.saturating_add(1)),
        (Resource::DATA, args.memory_bytes, args.memory_bytes),
        (Resource::NPROC, args.nproc, args.nproc),
        (Resource::FSIZE, args.file_bytes, args.file_bytes),
        (Resource::NOFILE, args.nofile, args.nofile),
        (Resource::CORE, 0, 0),
    ];
    for (resource, soft, hard) in limits {
        if let Err(e) = resource.set(soft, hard) {
            eprintln!("sandbox-exec: setting {resource:?}: {e}");
            return ExitCode::from(126);
        }
    }
    let Some((program, rest)) = args.command.split_first() else { return ExitCode::from(127) };
    let path = std::env::var("PATH").unwrap_or_default();
    let uid = args.uid.to_string();
    let mut cmd = match unshare_binary(&path) {
        Some(unshare) => {
            let mut c = Command::new(unshare);
            c.args(["--net", "--setuid", &uid, "--setgid", &uid, "--", program]).args(rest);
            c
        }
        None => {
            let mut c = Command::new(program);
            c.args(rest);
            if is_root() {
                c.uid(args.uid).gid(args.uid);
            }
            c
        }
    };
    cmd.current_dir(&args.dir);
    let e = cmd.exec();
    eprintln!("sandbox-exec: running {program}: {e}");
    ExitCode::from(127)
}
