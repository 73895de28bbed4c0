//! [`ManagedAgent`]: one managed CLI agent (`agent.spawn`), a permanent child `managed:<name>` of
//! the `managed` registry. It owns the agent's command template (argv with `{prompt}`, working
//! directory, environment), its circuit breaker and its figures. Each `agent.execute` is one
//! process ([`super::process`]) run by the call's response future — on the arbiter, not in the
//! actor's context, so a restart does not cut it off: its stdout lines go to the caller as
//! `command_progress` events (and on the event bus), a crash (non-zero exit) is reported to the
//! actor, which fails like any supervised actor (`actor restarting` in the log, a restart in
//! `/admin/supervisors`) and is restarted by its mailbox's loop, while the call retries with
//! exponential backoff. Failures in a row open the breaker: calls answer `circuit_open` until its
//! cool-down has passed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix::WeakAddr;
use agent_bridge_protocol::frames::Event;
use agent_bridge_protocol::{Payload, ServerFrame};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::{info, warn};

use super::process::{self, Outcome, Spec};
use crate::breaker::Endpoint;
use crate::delivery::{Note, Notify};
use crate::events::{BridgeEvent, EventKind, Events};
use crate::messages::{ManagedConfig, ManagedError, RoomError, PROMPT};
use crate::supervisor::{guarded, supervisee, ChildHandle, Failure};

/// Run a prompt. Sent by the registry; answers the result.
#[derive(Message)]
#[rtype(result = "Result<Value, RoomError>")]
pub struct Execute {
    pub caller: String,
    pub prompt: String,
    pub progress: Option<Recipient<Notify>>,
}

/// A run crashed: the actor fails (and is restarted). Sent by an execution.
#[derive(Message)]
#[rtype(result = "()")]
struct Crashed {
    reason: String,
}

/// What the agent is and how it is doing, for `agent.managed`. Sent by the registry.
#[derive(Message)]
#[rtype(result = "Result<Value, RoomError>")]
pub struct Describe;

/// Stop for good: running processes are ended (SIGTERM, then SIGKILL). Sent by the registry.
#[derive(Message)]
#[rtype(result = "Result<(), RoomError>")]
pub struct Stop;

/// How the agent runs a prompt.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub argv: Vec<String>,
    pub cwd: Option<std::path::PathBuf>,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// Counters kept across restarts.
#[derive(Debug, Default)]
struct Figures {
    executions: u64,
    succeeded: u64,
    failed: u64,
    running: u64,
}

/// One managed agent.
pub struct ManagedAgent {
    /// Its node, `managed:<name>`.
    child: ChildHandle,
    /// The agent's name.
    name: String,
    template: Template,
    config: Arc<ManagedConfig>,
    /// Shared with the executions, which ask it before each attempt and report to it.
    breaker: Arc<Mutex<Endpoint>>,
    figures: Arc<Mutex<Figures>>,
    /// Set on `agent.stop`: running processes end.
    stop: watch::Sender<bool>,
}

impl ManagedAgent {
    pub const NAME: &'static str = "managed_agent";

    pub fn new(child: ChildHandle, name: String, template: Template, config: Arc<ManagedConfig>) -> Self {
        let breaker = Arc::new(Mutex::new(Endpoint::new(config.breaker)));
        ManagedAgent { child, name, template, config, breaker, figures: Arc::default(), stop: watch::channel(false).0 }
    }

    fn describe(&self) -> Value {
        let (b, f) = (self.breaker.lock(), self.figures.lock());
        json!({
            "name": self.name, "template": self.template.name, "command": self.template.argv,
            "cwd": self.template.cwd, "timeout_s": self.template.timeout.as_secs_f64(),
            "circuit": b.state_name(Instant::now()), "consecutive_failures": b.consecutive_failures(),
            "last_error": b.last_error, "executions": f.executions, "succeeded": f.succeeded,
            "failed": f.failed, "running": f.running,
        })
    }
}

impl Actor for ManagedAgent {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.child.running();
    }
}

impl Supervised for ManagedAgent {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // Nothing to rebuild: the template, breaker and figures stay; runs go on in their futures.
    }
}

supervisee!(ManagedAgent, RoomError, child);

impl Handler<Execute> for ManagedAgent {
    type Result = ResponseFuture<Result<Value, RoomError>>;

    fn handle(&mut self, msg: Execute, ctx: &mut Context<Self>) -> Self::Result {
        if self.child.is_failed() {
            return Box::pin(async { Err(RoomError::Unavailable) });
        }
        let t = &self.template;
        let argv = t.argv.iter().map(|a| if a == PROMPT { msg.prompt.clone() } else { a.clone() }).collect();
        let spec = Spec {
            argv,
            cwd: t.cwd.clone(),
            clear_env: false,
            env: t.env.clone(),
            stdin: None,
            timeout: t.timeout,
            grace: self.config.grace,
            max_output: self.config.max_output_bytes,
            stop: Some(self.stop.subscribe()),
        };
        let run = Run {
            name: self.name.clone(),
            caller: msg.caller,
            progress: msg.progress,
            events: self.child.events().clone(),
            agent: ctx.address().downgrade(),
            breaker: Arc::clone(&self.breaker),
            figures: Arc::clone(&self.figures),
            config: Arc::clone(&self.config),
            sent: std::cell::Cell::new(0),
            stopped: self.stop.subscribe(),
        };
        Box::pin(async move { run.execute(spec).await.map_err(RoomError::from) })
    }
}

impl Handler<Crashed> for ManagedAgent {
    type Result = ();

    fn handle(&mut self, msg: Crashed, ctx: &mut Context<Self>) {
        // `failed` logs `actor restarting` (actor, parent, reason, restarts) and counts it; the
        // stopped context is restarted by the mailbox's loop, or, past the intensity, the agent
        // answers `unavailable`.
        self.child.failed(&Failure { reason: msg.reason });
        ctx.stop();
    }
}

guarded!(ManagedAgent, Describe, |a, _msg, _| Ok(a.describe()));
guarded!(ManagedAgent, Stop, |a, _msg, ctx| {
    let _ = a.stop.send(true);
    info!(actor = %a.child.name(), "managed agent stopped");
    ctx.stop();
    Ok(())
});

/// One `agent.execute`, run by its response future.
struct Run {
    name: String,
    caller: String,
    progress: Option<Recipient<Notify>>,
    events: Events,
    agent: WeakAddr<ManagedAgent>,
    breaker: Arc<Mutex<Endpoint>>,
    figures: Arc<Mutex<Figures>>,
    config: Arc<ManagedConfig>,
    /// Bytes of progress sent so far: at most `max_output_bytes` per call, so a chatty process
    /// cannot queue unbounded frames for a session that reads slowly.
    sent: std::cell::Cell<usize>,
    /// Whether `agent.stop` ended the run (rather than its timeout).
    stopped: watch::Receiver<bool>,
}

impl Run {
    /// A stdout line: a `command_progress` event to the caller's session and on the bus.
    fn line(&self, line: &[u8]) {
        let sent = self.sent.get().saturating_add(line.len() + 1);
        self.sent.set(sent);
        if sent > self.config.max_output_bytes {
            return;
        }
        let data = json!({ "agent": self.name, "line": String::from_utf8_lossy(line) });
        if let Some(session) = &self.progress {
            let frame = ServerFrame::Event(Event { event: "command_progress".into(), room: None, data: Payload::from_serialize(&data) });
            session.do_send(Notify(Note::new(frame)));
        }
        if self.events.watched() {
            self.events.publish(BridgeEvent::now(EventKind::CommandProgress, Some(self.caller.clone()), None, data));
        }
    }

    /// Attempts until one succeeds, the retries are spent, the breaker refuses or a timeout.
    async fn execute(self, spec: Spec) -> Result<Value, ManagedError> {
        self.figures.lock().executions += 1;
        let mut last = ManagedError::Failed("not run".into());
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                tokio::time::sleep(self.config.backoff.saturating_mul(1 << (attempt - 1).min(16))).await;
            }
            if !self.breaker.lock().allow(Instant::now()) {
                last = ManagedError::CircuitOpen(self.name.clone());
                break;
            }
            self.figures.lock().running += 1;
            let outcome = process::run(spec.clone(), |l| self.line(l)).await;
            self.figures.lock().running -= 1;
            match outcome {
                Ok(out) if out.success() => {
                    self.breaker.lock().succeeded();
                    self.figures.lock().succeeded += 1;
                    return Ok(answer(&self.name, &out, attempt + 1));
                }
                Ok(out) if out.timed_out && *self.stopped.borrow() => {
                    last = ManagedError::Stopped(self.name.clone());
                    break;
                }
                Ok(out) if out.timed_out => {
                    self.fail(&format!("timed out after {:.1} s", spec.timeout.as_secs_f64()), false);
                    last = ManagedError::Timeout(spec.timeout.as_secs_f64());
                    break;
                }
                Ok(out) => {
                    let why = match (out.exit_code, out.signal) {
                        (Some(code), _) => format!("exited with {code}: {}", tail(&out.stderr)),
                        (None, Some(sig)) => format!("killed by signal {sig}"),
                        (None, None) => "ended without a status".to_owned(),
                    };
                    self.fail(&why, true);
                    last = ManagedError::Failed(why);
                }
                Err(e) => {
                    self.fail(&e.to_string(), false);
                    last = ManagedError::Spawn(e.to_string());
                    break;
                }
            }
        }
        self.figures.lock().failed += 1;
        Err(last)
    }

    /// Counts a failed attempt in the breaker; a crash also fails the actor.
    fn fail(&self, why: &str, crashed: bool) {
        self.breaker.lock().attempt_failed(Instant::now(), why);
        warn!(actor = %format!("managed:{}", self.name), reason = %why, "managed agent run failed");
        if let (true, Some(agent)) = (crashed, self.agent.upgrade()) {
            agent.do_send(Crashed { reason: why.to_owned() });
        }
    }
}

/// The last line of stderr (at most 200 bytes), for a reason.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let last = text.trim_end().lines().last().unwrap_or("");
    last.chars().take(200).collect()
}

/// The answer: the output parsed as JSON when it is JSON, else as text.
fn answer(name: &str, out: &Outcome, attempts: u32) -> Value {
    let (format, result) = match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(v) => ("json", v),
        Err(_) => ("text", Value::String(String::from_utf8_lossy(&out.stdout).into_owned())),
    };
    json!({
        "agent": name, "format": format, "result": result, "exit_code": out.exit_code,
        "stderr": String::from_utf8_lossy(&out.stderr), "truncated": out.truncated,
        "attempts": attempts, "duration_ms": out.elapsed.as_millis() as u64,
    })
}
