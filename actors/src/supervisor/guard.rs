//! [`Supervisee`]: containment, failure report and decision for every handler, the
//! panic hook.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use actix::prelude::*;
use tracing::error;



use super::tree::{ChildHandle, Failure};


/// An actor under supervision. Every handler body runs through [`Supervisee::guard`]; the
/// `fault_handler!` macro gives it the [`Fault`] handler.
pub trait Supervisee: Actor {
    /// What a refused request answers.
    type Error: Refusal;

    /// The actor's link to its node.
    fn child(&self) -> &ChildHandle;

    /// After a failure was reported: stop the context, which the restart loop restarts (a
    /// permanent child) or ends (a temporary one). Sessions also tell their client first.
    fn on_failure(&mut self, _failure: &Failure, ctx: &mut Self::Context) {
        ctx.stop();
    }

    /// A handler answered an error (no panic): a room reloads its state after a store error.
    fn on_error(&mut self, _error: &Self::Error) {}

    /// Runs a handler body: refused with [`Supervisee::unavailable`] once the child has
    /// escalated; a panic is contained, reported ([`ChildHandle::failed`] decides), handled by
    /// [`Supervisee::on_failure`] and answered with [`Refusal::internal`].
    fn guard<R>(
        &mut self,
        ctx: &mut Self::Context,
        f: impl FnOnce(&mut Self, &mut Self::Context) -> Result<R, Self::Error>,
    ) -> Result<R, Self::Error> {
        let child = self.child().clone();
        if child.is_failed() {
            return Err(Self::Error::unavailable());
        }
        match contain(&child, || f(self, ctx)) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.on_error(&e);
                Err(e)
            }
            Err(failure) => {
                child.failed(&failure);
                self.on_failure(&failure, ctx);
                Err(Self::Error::internal(&failure))
            }
        }
    }
}

/// How an actor's error type answers a refused request.
pub trait Refusal {
    /// The answer of the request whose handler panicked (code `internal`).
    fn internal(failure: &Failure) -> Self;
    /// The answer of every request once the child has escalated (code `unavailable`).
    fn unavailable() -> Self;
}

/// Sessions answer nothing: their failure closes the connection.
impl Refusal for () {
    fn internal(_: &Failure) {}
    fn unavailable() {}
}

impl<E> Refusal for Refused<E> {
    fn internal(failure: &Failure) -> Self {
        Refused::Internal(failure.reason.clone())
    }
    fn unavailable() -> Self {
        Refused::Unavailable
    }
}

/// The error of a contained handler of an actor that answers no client (the AckTracker, the
/// TtlSweeper): its own work's error, or what supervision decided.
#[derive(Debug)]
pub enum Refused<E> {
    /// The work failed (logged by the actor).
    Error(E),
    /// The handler panicked; the actor is restarted.
    Internal(String),
    /// The child escalated.
    Unavailable,
}

impl<E> From<E> for Refused<E> {
    fn from(e: E) -> Self {
        Refused::Error(e)
    }
}


thread_local! {
    static CURRENT_ACTOR: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Runs a handler body, turning a panic into a [`Failure`] with the panic's message.
///
/// The actor name is kept in a thread-local while `f` runs so the panic hook can log it.
pub fn contain<R>(child: &ChildHandle, f: impl FnOnce() -> R) -> Result<R, Failure> {
    let previous = CURRENT_ACTOR.with(|c| c.replace(Some(Arc::clone(&child.name))));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    CURRENT_ACTOR.with(|c| *c.borrow_mut() = previous);
    outcome.map_err(|payload| Failure { reason: panic_message(payload.as_ref()) })
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Replaces the default panic hook (which prints to stderr) with a `tracing` error line naming the
/// actor that panicked, if any. Panics stay unwinding panics: never build with `panic = "abort"`.
pub fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let actor = CURRENT_ACTOR.with(|c| c.borrow().clone());
        let reason = panic_message(info.payload());
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        match actor {
            Some(actor) => error!(actor = %actor, reason = %reason, location = %location, "actor panicked"),
            None => error!(reason = %reason, location = %location, thread = ?std::thread::current().name(), "panic"),
        }
    }));
}
