//! Supervision: restart policy, restart intensity, escalation and panic containment — the one
//! mechanism every actor uses.
//!
//! actix restarts an actor whose context stops when its future is driven by a restart loop, calling
//! `Supervised::restarting` on the same struct. It does not catch panics, count restarts, bound them
//! or escalate. This module adds those parts, in the OTP manner:
//!
//! - [`Mailbox`] is an actor's mailbox created before the actor: its address can be handed to the
//!   actors it depends on first (no late-bound cells), then [`Mailbox::supervise_in`] starts the
//!   actor on it under the restart loop, which also does the restart bookkeeping.
//! - [`Supervisee`] (`guard.rs`) is what an actor implements to be supervised: its [`ChildHandle`]
//!   and what a refused request answers ([`Refusal`]). Its provided [`Supervisee::guard`] runs every
//!   handler body: containment, failure report, decision, the failed flag (kept by the
//!   `ChildHandle`). The macros below write the rest: `supervisee!` (the impl and the `/admin/fault`
//!   handler, `fault_handler!`) and `guarded!` (a handler whose body runs in `guard`).
//! - [`Tree`] (`tree.rs`) holds one [`Node`] per supervised actor: name, kind, parent, state, restart count, last
//!   restart time and reason. `/admin/supervisors` shows it.
//! - [`contain`] runs a handler body inside `catch_unwind`; a panic becomes a [`Failure`] that the
//!   actor reports with [`ChildHandle::failed`], which decides between restart and escalation.
//! - Restart intensity: at most `max_restarts` within `within`; one more and the child is marked
//!   `failed`, readiness turns false and the [`Root`] is told. For a critical child the root stops the
//!   process with exit code [`ESCALATION_EXIT_CODE`] (when configured), so an orchestrator restarts it.
//!
//! Every start, restart, stop and escalation is one `tracing` line with `actor`, `parent`, `reason`
//! and `restarts`, and restarts are counted in `bridge_actor_restarts_total{actor}` by actor kind.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::error;

mod guard;
mod mailbox;
mod tree;

pub use guard::{contain, install_panic_hook, Refusal, Refused, Supervisee};
pub use mailbox::Mailbox;
pub use tree::*;

/// `impl Handler<Fault>` for a [`Supervisee`]: the handler panics inside [`Supervisee::guard`],
/// the path a real bug takes.
macro_rules! fault_handler {
    ($actor:ty) => {
        impl actix::Handler<$crate::supervisor::Fault> for $actor {
            type Result = ();
            fn handle(&mut self, _: $crate::supervisor::Fault, ctx: &mut Self::Context) {
                let _ = $crate::supervisor::Supervisee::guard(self, ctx, |_, _| -> Result<(), <$actor as $crate::supervisor::Supervisee>::Error> {
                    panic!("fault injected by /admin/fault")
                });
            }
        }
    };
}
pub(crate) use fault_handler;

/// The [`Supervisee`] impl of an actor whose link is the field `$child` and whose requests are
/// refused with `$error`, and its [`Fault`] handler: `supervisee!(Router, RouteError, child);`.
/// Actors that do more after a failure (sessions, rooms) write the impl out.
macro_rules! supervisee {
    ($actor:ty, $error:ty, $($child:ident).+) => {
        impl $crate::supervisor::Supervisee for $actor {
            type Error = $error;
            fn child(&self) -> &$crate::supervisor::ChildHandle {
                &self.$($child).+
            }
        }
        $crate::supervisor::fault_handler!($actor);
    };
}
pub(crate) use supervisee;

/// `impl Handler<M>` whose body runs inside [`Supervisee::guard`]. `guarded!(Router, Poll, |r, msg,
/// ctx| r.poll(msg, ctx));` answers what the body returns (the message's result type); with
/// `Disconnect => ()` the body returns nothing and so does the handler.
macro_rules! guarded {
    ($actor:ty, $msg:ty => (), |$a:ident, $m:ident, $c:pat_param| $body:expr) => {
        impl actix::Handler<$msg> for $actor {
            type Result = ();
            fn handle(&mut self, $m: $msg, ctx: &mut Self::Context) {
                let _ = $crate::supervisor::Supervisee::guard(self, ctx, |$a, $c| {
                    $body;
                    Ok(())
                });
            }
        }
    };
    ($actor:ty, $msg:ty, |$a:ident, $m:ident, $c:pat_param| $body:expr) => {
        impl actix::Handler<$msg> for $actor {
            type Result = <$msg as actix::Message>::Result;
            fn handle(&mut self, $m: $msg, ctx: &mut Self::Context) -> Self::Result {
                $crate::supervisor::Supervisee::guard(self, ctx, |$a, $c| $body)
            }
        }
    };
}
pub(crate) use guarded;

/// Process exit code when a critical child exceeds its restart intensity.
pub const ESCALATION_EXIT_CODE: i32 = 70;

/// The root supervisor: owns the [`Tree`], answers [`GetTree`], and applies escalations.
pub struct Root {
    /// The shared bookkeeping.
    tree: Arc<Tree>,
    /// Stop the process when a critical child escalates.
    exit_on_escalation: bool,
}

impl Root {
    pub const NAME: &'static str = Tree::ROOT;

    /// The root of `tree`. Its [`Mailbox`] comes first: the tree is built with its address.
    pub fn new(tree: Arc<Tree>, exit_on_escalation: bool) -> Root {
        Root { tree, exit_on_escalation }
    }
}

impl Actor for Root {
    type Context = Context<Self>;
}

impl Supervised for Root {}

impl Handler<Escalated> for Root {
    type Result = ();

    fn handle(&mut self, msg: Escalated, ctx: &mut Self::Context) {
        if msg.critical && self.exit_on_escalation {
            error!(actor = Root::NAME, child = %msg.actor, reason = %msg.reason, exit_code = ESCALATION_EXIT_CODE,
                   "critical child failed beyond its restart intensity; stopping the process");
            // A moment for in-flight responses and log lines to go out, then stop.
            ctx.run_later(Duration::from_millis(200), |_, _| System::current().stop_with_code(ESCALATION_EXIT_CODE));
        } else {
            error!(actor = Root::NAME, child = %msg.actor, reason = %msg.reason, failed = ?self.tree.failed(),
                   "child failed beyond its restart intensity; marked failed, readiness is down");
        }
    }
}

impl Handler<GetTree> for Root {
    type Result = MessageResult<GetTree>;

    fn handle(&mut self, _: GetTree, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.tree.view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, max: u32) -> ChildSpec {
        ChildSpec {
            name: name.into(),
            kind: "test",
            parent: Tree::ROOT.into(),
            policy: RestartPolicy::Permanent,
            intensity: Intensity { max_restarts: max, within: Duration::from_secs(60) },
            critical: false,
        }
    }

    /// A tree whose escalations wait in a root mailbox that never runs.
    fn tree() -> Arc<Tree> {
        Tree::new(Mailbox::<Root>::new().address().recipient())
    }

    #[test]
    fn contain_catches_panics_with_their_message() {
        let tree = tree();
        let child = tree.register(spec("c", 3));
        let out = contain(&child, || -> u32 { panic!("boom {}", 7) });
        assert_eq!(out, Err(Failure { reason: "boom 7".into() }));
        assert_eq!(contain(&child, || 5), Ok(5));
    }

    #[test]
    fn intensity_bounds_restarts_then_escalates() {
        let tree = tree();
        let child = tree.register(spec("c", 2));
        let f = Failure { reason: "x".into() };
        assert_eq!(child.failed(&f), Decision::Restart);
        child.running();
        assert_eq!(child.failed(&f), Decision::Restart);
        assert_eq!(child.failed(&f), Decision::Escalate);
        assert!(child.is_failed());
        let node = tree.node("c").expect("node");
        assert_eq!(node.restarts, 2);
        assert_eq!(node.state, NodeState::Failed);
        assert!(!tree.healthy(), "a failed child, critical or not, takes readiness down");
    }

    #[test]
    fn view_nests_children() {
        let tree = tree();
        let _a = tree.register(spec("a", 1));
        let v = tree.view();
        assert_eq!(v.node.name, "root");
        assert_eq!(v.children.len(), 1);
        assert_eq!(v.children[0].node.name, "a");
    }

    /// Counts what it handles and how often it was restarted; actix keeps the struct across a
    /// restart, so both survive one.
    struct Counter {
        child: ChildHandle,
        handled: u32,
        restarts: u32,
    }

    impl Actor for Counter {
        type Context = Context<Self>;
    }

    impl Supervised for Counter {
        fn restarting(&mut self, _: &mut Context<Self>) {
            self.restarts += 1;
        }
    }

    supervisee!(Counter, Refused<()>, child);

    /// Answers (handled, restarts) so far.
    #[derive(Message)]
    #[rtype(result = "Result<(u32, u32), Refused<()>>")]
    struct Bump;

    guarded!(Counter, Bump, |c, _bump, _| {
        c.handled += 1;
        Ok((c.handled, c.restarts))
    });

    /// Stands in for the root: records the escalations it is told about where the test sees them.
    #[derive(Default)]
    struct RootProbe(Arc<parking_lot::Mutex<Vec<String>>>);

    impl Actor for RootProbe {
        type Context = Context<Self>;
    }

    impl Handler<Escalated> for RootProbe {
        type Result = ();
        fn handle(&mut self, msg: Escalated, _: &mut Context<Self>) {
            self.0.lock().push(msg.actor);
        }
    }

    fn counter(child: &ChildHandle) -> Counter {
        Counter { child: child.clone(), handled: 0, restarts: 0 }
    }

    #[actix::test]
    async fn a_mailbox_queues_before_its_actor_starts_and_the_loop_restarts_it_in_place() {
        let tree = Tree::new(RootProbe::default().start().recipient());
        let child = tree.register(spec("counter", 3));
        let mailbox = Mailbox::new();
        let early = mailbox.address().send(Bump);
        let addr = mailbox.supervise(&child, counter(&child));
        assert!(matches!(early.await, Ok(Ok((1, 0)))), "a message sent before the start is handled");
        assert_eq!(tree.inject_fault("test").as_deref(), Some("counter"), "the mailbox made it a fault target");
        // The Fault handler panicked inside guard: reported, stopped, restarted by the loop.
        assert!(matches!(addr.send(Bump).await, Ok(Ok((2, 1)))), "the same struct, restarted once");
        let node = tree.node("counter").expect("node");
        assert_eq!((node.restarts, node.state), (1, NodeState::Running), "the loop marked it running again");
        assert!(!child.is_failed());
    }

    #[actix::test]
    async fn beyond_its_intensity_a_child_answers_unavailable_and_the_root_is_told() {
        let told = Arc::default();
        let root = RootProbe(Arc::clone(&told)).start();
        let tree = Tree::new(root.clone().recipient());
        let child = tree.register(spec("counter", 1));
        let addr = Mailbox::new().supervise(&child, counter(&child));
        tree.inject_fault("counter");
        tree.inject_fault("counter");
        assert!(matches!(addr.send(Bump).await, Ok(Err(Refused::Unavailable))), "guard refuses once failed");
        assert!(child.is_failed());
        assert_eq!(tree.node("counter").expect("node").state, NodeState::Failed);
        // The root's mailbox holds the escalation before anything sent after it.
        root.send(Escalated { actor: "-".into(), critical: false, reason: "-".into() }).await.expect("probe");
        assert_eq!(*told.lock(), ["counter", "-"]);
    }
}
