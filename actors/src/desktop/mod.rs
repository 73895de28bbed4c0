//! `DesktopController`: drives a desktop application that has no socket API (Claude Desktop) as a
//! member of the broker — it focuses the app's window, puts the prompt in (typed with enigo or
//! pasted through the clipboard with arboard), submits it, copies the answer until it is stable,
//! restores the clipboard and answers the text.
//!
//! Owns: the count of prompts waiting, and the address of its worker: one thread
//! (`SyncArbiter` of one) that does the blocking X work, one prompt at a time, so prompts never
//! interleave keystrokes and this actor's own mailbox stays responsive. Beyond `queue` prompts
//! waiting, a prompt is refused at once with `busy`; each prompt has a deadline (its `timeout_s`,
//! else the configured one) that bounds its wait in the queue and every step, and the caller is
//! answered `timeout` at the deadline even if the X server hangs.
//!
//! Sent by: `desktop.prompt` calls (`crate::rooms::RoomsHandle::call`), which the `desktop` agent of
//! the main crate makes for messages sent to it. Supervised by the root (permanent, not critical:
//! a missing display must not stop the broker), on its own arbiter. Only built with the `desktop`
//! feature.

mod steps;
mod window;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{debug, info};

use crate::messages::{DesktopConfig, DesktopError, Prompt};
use crate::supervisor::{supervisee, ChildHandle, Supervisee};
use steps::Desk;

/// What the caller waits beyond the deadline for the worker to report its own timeout.
const GRACE: Duration = Duration::from_secs(2);

/// One prompt for the worker, with its deadline.
struct Job {
    prompt: Prompt,
    timeout: Duration,
    deadline: Instant,
}

impl Message for Job {
    type Result = Result<String, DesktopError>;
}

/// The worker thread: runs one [`Job`] after the other.
struct Worker {
    config: DesktopConfig,
    /// The devices, kept between prompts: the clipboard content restored after a prompt lives as
    /// long as its owner does (an X selection is served by its owner), so the owner stays.
    /// Dropped after a failed prompt, to start again from a fresh connection.
    desk: Option<Desk>,
}

impl Actor for Worker {
    type Context = SyncContext<Self>;
}

impl Handler<Job> for Worker {
    type Result = Result<String, DesktopError>;
    fn handle(&mut self, job: Job, _: &mut SyncContext<Self>) -> Self::Result {
        if Instant::now() >= job.deadline {
            return Err(DesktopError::Timeout(job.timeout));
        }
        let title = job.prompt.window.as_deref().unwrap_or(&self.config.window);
        let desk = match self.desk.take() {
            Some(desk) => desk,
            None => Desk::open()?,
        };
        let desk = self.desk.insert(desk);
        let answer = desk.prompt(&self.config, &job.prompt.text, title, job.deadline);
        if matches!(answer, Err(DesktopError::Input(_) | DesktopError::NoDisplay(_))) {
            self.desk = None;
        }
        answer.map_err(|e| match e {
            DesktopError::Timeout(_) => DesktopError::Timeout(job.timeout),
            other => other,
        })
    }
}

/// The controller.
pub struct DesktopController {
    /// Supervision link (`desktop`).
    child: ChildHandle,
    config: DesktopConfig,
    /// Prompts accepted and not yet answered by the worker (the one it runs included); shared
    /// with the tasks that wait for the worker, so a restart of this actor keeps the count.
    waiting: Arc<AtomicUsize>,
    /// The worker thread.
    worker: Addr<Worker>,
}

impl DesktopController {
    pub const NAME: &'static str = "desktop";

    /// The controller and its worker thread.
    pub fn new(child: ChildHandle, config: DesktopConfig) -> Self {
        let worker_config = config.clone();
        let worker = SyncArbiter::start(1, move || Worker { config: worker_config.clone(), desk: None });
        DesktopController { child, config, waiting: Arc::new(AtomicUsize::new(0)), worker }
    }

    /// Queues `prompt` for the worker, or refuses it with `busy`.
    fn enqueue(&mut self, prompt: Prompt) -> Result<ResponseFuture<Result<String, DesktopError>>, DesktopError> {
        let waiting = Arc::clone(&self.waiting);
        let before = waiting.fetch_add(1, Ordering::SeqCst);
        if before > self.config.queue {
            waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(DesktopError::Busy(before));
        }
        let timeout = prompt.timeout.unwrap_or(self.config.timeout);
        debug!(actor = Self::NAME, waiting = before, "prompt queued");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = self.worker.send(Job { prompt, timeout, deadline: Instant::now() + timeout });
        actix::spawn(async move {
            let answer = req.await.map_err(DesktopError::from).and_then(|r| r);
            waiting.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(answer);
        });
        Ok(Box::pin(async move {
            match tokio::time::timeout(timeout + GRACE, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(DesktopError::Unavailable),
                Err(_) => Err(DesktopError::Timeout(timeout)),
            }
        }))
    }
}

supervisee!(DesktopController, DesktopError, child);

impl Actor for DesktopController {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        info!(actor = Self::NAME, window = %self.config.window, input = ?self.config.input, "desktop controller started");
    }
}

impl Supervised for DesktopController {}

impl Handler<Prompt> for DesktopController {
    type Result = ResponseFuture<Result<String, DesktopError>>;
    fn handle(&mut self, msg: Prompt, ctx: &mut Self::Context) -> Self::Result {
        match self.guard(ctx, |s, _| s.enqueue(msg)) {
            Ok(pending) => pending,
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}
