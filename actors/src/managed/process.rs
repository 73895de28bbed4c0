//! [`run`]: one child process in a process group of its own (tokio::process, never a shell),
//! its stdout and stderr captured up to a byte limit (stdout also handed over line by line), and a
//! wall-clock timeout that escalates SIGTERM → grace → SIGKILL to the whole group. When the
//! process itself ends, whatever it left in its group is killed too, so no grandchild outlives
//! the run (or keeps its pipes open). A leaf of `managed`.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::watch;

/// Longest stdout line handed to `on_line` (the rest of the line is cut).
const MAX_LINE: usize = 4096;

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The program and its arguments (`argv[0]` is looked up in PATH).
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Start from an empty environment (the sandbox) instead of the broker's.
    pub clear_env: bool,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    pub grace: Duration,
    /// Most bytes kept of stdout, and of stderr.
    pub max_output: usize,
    /// Set to `true` to end the run early, as a timeout does (`agent.stop`).
    pub stop: Option<watch::Receiver<bool>>,
}

/// How it ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// More was written than `max_output` (and dropped).
    pub truncated: bool,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Outcome {
    /// Exited with 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// Reads `from` to its end, keeping at most `max` bytes; `on_line` gets each complete line.
async fn drain(mut from: impl AsyncRead + Unpin, max: usize, mut on_line: impl FnMut(&[u8])) -> (Vec<u8>, bool) {
    let (mut kept, mut truncated, mut line, mut buf) = (Vec::new(), false, Vec::new(), vec![0u8; 8192]);
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let room = max.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
        truncated |= n > room;
        for &b in &buf[..n] {
            if b == b'\n' {
                on_line(&line);
                line.clear();
            } else if line.len() < MAX_LINE {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        on_line(&line);
    }
    (kept, truncated)
}

/// Sends `signal` to the process group `pgid` (gone already: nothing to do).
fn signal_group(pgid: Option<Pid>, signal: Signal) {
    if let Some(pgid) = pgid {
        let _ = kill_process_group(pgid, signal);
    }
}

/// Runs `spec`; `on_line` gets each stdout line as it comes. An error only if the process could
/// not be started.
pub async fn run(spec: Spec, on_line: impl FnMut(&[u8])) -> std::io::Result<Outcome> {
    let started = Instant::now();
    let (program, args) = spec.argv.split_first().ok_or_else(|| std::io::Error::other("empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if spec.clear_env {
        cmd.env_clear();
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn()?;
    // The child leads its own group: its pid is the group's id.
    let pgid = child.id().and_then(|id| Pid::from_raw(id as i32));
    if let (Some(input), Some(mut pipe)) = (spec.stdin, child.stdin.take()) {
        // Written beside the run, so a child that does not read its stdin cannot block us.
        tokio::spawn(async move {
            let _ = pipe.write_all(&input).await;
        });
    }
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let stop = async {
        let stopped = match spec.stop {
            Some(mut rx) => rx.wait_for(|stopped| *stopped).await.is_ok(),
            None => false,
        };
        if !stopped {
            std::future::pending::<()>().await;
        }
    };
    let work = async {
        let out = async {
            match stdout {
                Some(s) => drain(s, spec.max_output, on_line).await,
                None => (Vec::new(), false),
            }
        };
        let err = async {
            match stderr {
                Some(s) => drain(s, spec.max_output, |_| {}).await,
                None => (Vec::new(), false),
            }
        };
        let wait = async {
            let status = child.wait().await;
            // Whatever the process left behind in its group goes with it.
            signal_group(pgid, Signal::KILL);
            status
        };
        tokio::join!(out, err, wait)
    };
    tokio::pin!(work);
    let mut timed_out = false;
    let first = tokio::select! {
        done = &mut work => Ok(done),
        () = tokio::time::sleep(spec.timeout) => Err(()),
        () = stop => Err(()),
    };
    let ((stdout, t1), (stderr, t2), status) = match first {
        Ok(done) => done,
        Err(()) => {
            timed_out = true;
            signal_group(pgid, Signal::TERM);
            match tokio::time::timeout(spec.grace, &mut work).await {
                Ok(done) => done,
                Err(_) => {
                    signal_group(pgid, Signal::KILL);
                    work.await
                }
            }
        }
    };
    let status: Option<ExitStatus> = status.ok();
    Ok(Outcome {
        stdout,
        stderr,
        truncated: t1 || t2,
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        timed_out,
        elapsed: started.elapsed(),
    })
}
