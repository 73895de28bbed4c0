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
//! - [`Supervisee`] is what an actor implements to be supervised: its [`ChildHandle`] and what a
//!   refused request answers. Its provided [`Supervisee::guard`] runs every handler body:
//!   containment, failure report, decision, the failed flag (kept by the `ChildHandle`), and
//!   `fault_handler!` gives it the `/admin/fault` handler.
//! - [`Tree`] holds one [`Node`] per supervised actor: name, kind, parent, state, restart count, last
//!   restart time and reason. `/admin/supervisors` shows it.
//! - [`contain`] runs a handler body inside `catch_unwind`; a panic becomes a [`Failure`] that the
//!   actor reports with [`ChildHandle::failed`], which decides between restart and escalation.
//! - Restart intensity: at most `max_restarts` within `within`; one more and the child is marked
//!   `failed`, readiness turns false and the [`Root`] is told. For a critical child the root stops the
//!   process with exit code [`ESCALATION_EXIT_CODE`] (when configured), so an orchestrator restarts it.
//!
//! Every start, restart, stop and escalation is one `tracing` line with `actor`, `parent`, `reason`
//! and `restarts`, and restarts are counted in `bridge_actor_restarts_total{actor}` by actor kind.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{self as std_task, Poll};
use std::time::{Duration, Instant};

use actix::dev::channel::{self, AddressReceiver};
use actix::dev::ContextFut;
use actix::prelude::*;
use agent_bridge_protocol::Timestamp;
use parking_lot::Mutex;
use serde::Serialize;
use tracing::{error, info, warn};

use crate::metrics::metrics;

/// Process exit code when a critical child exceeds its restart intensity.
pub const ESCALATION_EXIT_CODE: i32 = 70;

/// When a child is restarted (OTP's restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Always restarted after a failure.
    Permanent,
    /// Never restarted: a failed session closes its socket and the client reconnects and resumes.
    Temporary,
}

/// At most `max_restarts` restarts within `within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    pub max_restarts: u32,
    pub within: Duration,
}

impl Default for Intensity {
    fn default() -> Self {
        Intensity { max_restarts: 5, within: Duration::from_secs(10) }
    }
}

/// How a child is supervised.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub name: String,
    pub kind: &'static str,
    pub parent: String,
    pub policy: RestartPolicy,
    pub intensity: Intensity,
    /// A critical child's escalation stops the process (when the root is configured to).
    pub critical: bool,
}

/// Life-cycle state shown in `/admin/supervisors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Running,
    Restarting,
    Failed,
    Stopped,
}

/// What the supervisor decided after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Stop the context; actix's Supervisor restarts it and `restarting()` rebuilds state.
    Restart,
    /// Temporary child: stop for good.
    Stop,
    /// Intensity exceeded: the child is failed and the root has been told.
    Escalate,
}

/// A panic caught at a handler boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
}

/// One supervised actor.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub name: String,
    pub kind: &'static str,
    pub parent: String,
    pub policy: RestartPolicy,
    pub critical: bool,
    pub state: NodeState,
    pub restarts: u64,
    pub last_restart: Option<Timestamp>,
    pub last_reason: Option<String>,
    pub started_at: Timestamp,
    #[serde(skip)]
    recent: VecDeque<Instant>,
    #[serde(skip)]
    intensity: Intensity,
}

/// A node with its children, as served by `/admin/supervisors`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub node: Node,
    pub children: Vec<NodeView>,
}

/// The supervision bookkeeping, shared by every supervised actor and the root.
pub struct Tree {
    nodes: Mutex<BTreeMap<String, Node>>,
    /// Where `/admin/fault` sends [`Fault`] for each actor that accepts it.
    faults: Mutex<HashMap<String, Recipient<Fault>>>,
    /// Told about every escalation (the [`Root`], or a probe in a test).
    root: Recipient<Escalated>,
}

impl Tree {
    /// The name of the root node.
    pub const ROOT: &'static str = "root";

    /// A tree with only the root node; escalations go to `root` (see [`Root::new`]).
    pub fn new(root: Recipient<Escalated>) -> Arc<Self> {
        let tree = Arc::new(Tree { nodes: Mutex::new(BTreeMap::new()), faults: Mutex::new(HashMap::new()), root });
        tree.insert(&ChildSpec {
            name: Tree::ROOT.into(),
            kind: "supervisor",
            parent: String::new(),
            policy: RestartPolicy::Permanent,
            intensity: Intensity::default(),
            critical: true,
        });
        tree
    }

    fn insert(&self, spec: &ChildSpec) {
        let node = Node {
            name: spec.name.clone(),
            kind: spec.kind,
            parent: spec.parent.clone(),
            policy: spec.policy,
            critical: spec.critical,
            state: NodeState::Running,
            restarts: 0,
            last_restart: None,
            last_reason: None,
            started_at: Timestamp::now(),
            recent: VecDeque::new(),
            intensity: spec.intensity,
        };
        self.nodes.lock().insert(spec.name.clone(), node);
    }

    /// Adds a child and returns the handle the actor reports through.
    pub fn register(self: &Arc<Self>, spec: ChildSpec) -> ChildHandle {
        self.insert(&spec);
        if spec.policy == RestartPolicy::Permanent {
            info!(actor = %spec.name, kind = spec.kind, parent = %spec.parent, "actor started");
        }
        ChildHandle { tree: Arc::clone(self), name: Arc::from(spec.name.as_str()), kind: spec.kind, failed: Arc::default() }
    }

    /// Whether no node is failed (drives `/health/ready`). A failed non-critical child (a room
    /// beyond its restart intensity) keeps the process running but answers `unavailable` until
    /// the process restarts, so the broker is not ready either.
    pub fn healthy(&self) -> bool {
        self.nodes.lock().values().all(|n| n.state != NodeState::Failed)
    }

    /// The names of failed nodes.
    pub fn failed(&self) -> Vec<String> {
        self.nodes.lock().values().filter(|n| n.state == NodeState::Failed).map(|n| n.name.clone()).collect()
    }

    /// A copy of one node.
    pub fn node(&self, name: &str) -> Option<Node> {
        self.nodes.lock().get(name).cloned()
    }

    /// The names of nodes of a kind, in name order.
    pub fn names_of_kind(&self, kind: &str) -> Vec<String> {
        self.nodes.lock().values().filter(|n| n.kind == kind).map(|n| n.name.clone()).collect()
    }

    /// The whole tree, children under their parents.
    pub fn view(&self) -> NodeView {
        let nodes = self.nodes.lock();
        let mut children: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
        for n in nodes.values() {
            children.entry(n.parent.as_str()).or_default().push(n);
        }
        fn build(n: &Node, children: &BTreeMap<&str, Vec<&Node>>) -> NodeView {
            let kids = children.get(n.name.as_str()).map(|v| v.iter().map(|c| build(c, children)).collect());
            NodeView { node: n.clone(), children: kids.unwrap_or_default() }
        }
        match nodes.get(Tree::ROOT) {
            Some(root) => build(root, &children),
            None => unreachable!("the root node is never removed"),
        }
    }

    /// Fault injection: makes the actor named `target` (or the first of that kind, in name order)
    /// panic inside a handler. Returns the name of the actor told, if any.
    pub fn inject_fault(&self, target: &str) -> Option<String> {
        let name = if self.nodes.lock().contains_key(target) {
            target.to_owned()
        } else {
            self.names_of_kind(target).into_iter().find(|n| self.faults.lock().contains_key(n))?
        };
        let recipient = self.faults.lock().get(&name).cloned()?;
        recipient.do_send(Fault);
        Some(name)
    }
}

/// An actor's link to its node in the [`Tree`].
#[derive(Clone)]
pub struct ChildHandle {
    tree: Arc<Tree>,
    name: Arc<str>,
    kind: &'static str,
    /// Set once the child escalated: it answers `unavailable` from then on (read on every
    /// request, so kept here rather than behind the tree's lock).
    failed: Arc<AtomicBool>,
}

impl ChildHandle {
    /// The actor's name (unique in the tree).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The actor's kind.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The label used in metrics: always the kind (`router`, `room`, `session`), never the
    /// instance name, so room names and client ids never become series (the log line and
    /// `/admin/supervisors` name the instance).
    fn metric_label(&self, _policy: RestartPolicy) -> &str {
        self.kind
    }

    /// Records a failure and decides what happens next; logs the decision.
    pub fn failed(&self, failure: &Failure) -> Decision {
        let now = Instant::now();
        let mut nodes = self.tree.nodes.lock();
        let Some(node) = nodes.get_mut(&*self.name) else { return Decision::Stop };
        node.last_reason = Some(failure.reason.clone());
        node.last_restart = Some(Timestamp::now());
        if node.policy == RestartPolicy::Temporary {
            node.state = NodeState::Stopped;
            node.restarts += 1;
            metrics().actor_restarts.with_label_values(&[self.metric_label(node.policy)]).inc();
            warn!(actor = %node.name, kind = node.kind, parent = %node.parent, reason = %failure.reason,
                  restarts = node.restarts, "actor failed; temporary child is not restarted");
            return Decision::Stop;
        }
        let window = node.intensity.within;
        while node.recent.front().is_some_and(|t| now.duration_since(*t) > window) {
            node.recent.pop_front();
        }
        if node.recent.len() >= node.intensity.max_restarts as usize {
            node.state = NodeState::Failed;
            metrics().escalations.with_label_values(&[self.metric_label(node.policy)]).inc();
            error!(actor = %node.name, kind = node.kind, parent = %node.parent, reason = %failure.reason,
                   restarts = node.restarts, max_restarts = node.intensity.max_restarts,
                   within_s = node.intensity.within.as_secs_f64(), "restart intensity exceeded; escalating");
            let msg = Escalated { actor: node.name.clone(), critical: node.critical, reason: failure.reason.clone() };
            drop(nodes);
            self.failed.store(true, Ordering::Release);
            self.tree.root.do_send(msg);
            return Decision::Escalate;
        }
        node.recent.push_back(now);
        node.restarts += 1;
        node.state = NodeState::Restarting;
        metrics().actor_restarts.with_label_values(&[self.metric_label(node.policy)]).inc();
        warn!(actor = %node.name, kind = node.kind, parent = %node.parent, reason = %failure.reason,
              restarts = node.restarts, "actor restarting");
        Decision::Restart
    }

    /// Called from `Supervised::restarting` / `started`: the actor runs again.
    pub fn running(&self) {
        if let Some(node) = self.tree.nodes.lock().get_mut(&*self.name) {
            if node.state == NodeState::Restarting {
                node.state = NodeState::Running;
                info!(actor = %node.name, restarts = node.restarts, "actor restarted");
            }
        }
    }

    /// True once the child has escalated; a failed actor answers `unavailable`.
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// A temporary child ended: remove it from the tree.
    pub fn stopped(&self) {
        self.tree.nodes.lock().remove(&*self.name);
        self.tree.faults.lock().remove(&*self.name);
    }

    /// Lets `/admin/fault` reach this actor.
    pub fn set_fault_target(&self, target: Recipient<Fault>) {
        self.tree.faults.lock().insert(self.name.to_string(), target);
    }
}

// ---------------------------------------------------------------------------------------------
// Starting actors: the mailbox first, the actor later, under the restart loop
// ---------------------------------------------------------------------------------------------

/// An actor's mailbox, created before the actor. Its [`Mailbox::address`] can be handed to the
/// actors this one depends on (which may need its address in turn) before it starts; messages
/// sent meanwhile wait in it. This is what `actix::Supervisor::start_in_arbiter` does inside:
/// a channel, `Context::with_receiver`, `Addr::new`.
pub struct Mailbox<A: Actor<Context = Context<A>>> {
    rx: AddressReceiver<A>,
    addr: Addr<A>,
}

impl<A> Default for Mailbox<A>
where
    A: Supervised + Actor<Context = Context<A>>,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<A> Mailbox<A>
where
    A: Supervised + Actor<Context = Context<A>>,
{
    /// An empty mailbox (no actor system needed yet).
    pub fn new() -> Self {
        let (tx, rx) = channel::channel(16);
        Mailbox { rx, addr: Addr::new(tx) }
    }

    /// The address of the actor that will run on this mailbox.
    pub fn address(&self) -> Addr<A> {
        self.addr.clone()
    }

    /// Starts `actor` on the current arbiter, restarted whenever its context stops (the root).
    pub fn start(self, actor: A) -> Addr<A> {
        actix::spawn(Restarts { fut: Context::with_receiver(self.rx).into_future(actor), child: None });
        self.addr
    }

    /// Starts the supervised child `child` on the current arbiter (see [`Mailbox::supervise_in`]).
    pub fn supervise(self, child: &ChildHandle, actor: A) -> Addr<A>
    where
        A: Handler<Fault>,
    {
        child.set_fault_target(self.addr.clone().recipient());
        actix::spawn(Restarts { fut: Context::with_receiver(self.rx).into_future(actor), child: Some(child.clone()) });
        self.addr
    }

    /// Starts the actor `make` builds on `arbiter`, as the child `child`: reachable by fault
    /// injection at once, and restarted whenever its context stops (a contained failure stops
    /// it); after each restart the child's node is marked running again.
    pub fn supervise_in(self, child: &ChildHandle, arbiter: &ArbiterHandle, make: impl FnOnce() -> A + Send + 'static) -> Addr<A>
    where
        A: Handler<Fault>,
    {
        child.set_fault_target(self.addr.clone().recipient());
        let (rx, child) = (self.rx, child.clone());
        arbiter.spawn_fn(move || {
            actix::spawn(Restarts { fut: Context::with_receiver(rx).into_future(make()), child: Some(child) });
        });
        self.addr
    }
}

/// The restart loop (actix's `Supervisor` future): polls the actor's context; when it stops and
/// its mailbox still has senders, `restart()` runs `Supervised::restarting` and the actor goes on.
struct Restarts<A: Supervised + Actor<Context = Context<A>>> {
    fut: ContextFut<A, Context<A>>,
    child: Option<ChildHandle>,
}

impl<A> Future for Restarts<A>
where
    A: Supervised + Actor<Context = Context<A>>,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std_task::Context<'_>) -> Poll<()> {
        loop {
            match Pin::new(&mut self.fut).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    if !self.fut.restart() {
                        return Poll::Ready(());
                    }
                    if let Some(child) = &self.child {
                        child.running();
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers: containment, report, decision
// ---------------------------------------------------------------------------------------------

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

/// A supervised child exceeded its restart intensity. Sent by [`ChildHandle::failed`] to the root.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Escalated {
    pub actor: String,
    pub critical: bool,
    pub reason: String,
}

/// Fault injection: the receiving actor panics inside a contained handler. Sent by
/// [`Tree::inject_fault`] (the `/admin/fault` route, only with `--enable-fault-injection`).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Fault;

/// Asks the root for the live supervision tree.
#[derive(Message)]
#[rtype(result = "NodeView")]
pub struct GetTree;

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
}
