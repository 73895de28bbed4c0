//! The supervision bookkeeping: [`Tree`] (one [`Node`] per supervised actor, served by
//! `/admin/supervisors`), [`ChildHandle`] (how an actor reports, and where the restart intensity
//! decides), and the messages of supervision. A leaf of `supervisor`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use agent_bridge_protocol::Timestamp;
use parking_lot::Mutex;
use serde::Serialize;
use tracing::{error, info, warn};

use crate::events::{BridgeEvent, EventKind, Events};
use crate::metrics::metrics;

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
    /// The event bus every supervised actor publishes to (see [`crate::events`]).
    events: Events,
}

impl Tree {
    /// The name of the root node.
    pub const ROOT: &'static str = "root";

    /// A tree with only the root node; escalations go to `root` (see [`Root::new`]).
    pub fn new(root: Recipient<Escalated>) -> Arc<Self> {
        let tree = Arc::new(Tree { nodes: Mutex::new(BTreeMap::new()), faults: Mutex::new(HashMap::new()), root, events: Events::default() });
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

    /// The event bus of this tree's actors.
    pub fn events(&self) -> &Events {
        &self.events
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
    pub(super) name: Arc<str>,
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
                info!(actor = %node.name, kind = node.kind, parent = %node.parent, reason = node.last_reason.as_deref().unwrap_or(""),
                      restarts = node.restarts, "actor restarted");
                self.tree.events.publish(restarted(node));
            }
        }
    }

    /// The event bus (see [`crate::events`]): rooms and the AckTracker publish through it.
    pub fn events(&self) -> &Events {
        &self.tree.events
    }

    /// True once the child has escalated; a failed actor answers `unavailable`.
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// A temporary child ended: remove it from the tree.
    pub fn stopped(&self) {
        if let Some(node) = self.tree.nodes.lock().remove(&*self.name) {
            // Sessions come and go by the thousand: only the tree's fixed actors log their stop.
            if node.policy == RestartPolicy::Permanent {
                info!(actor = %node.name, kind = node.kind, parent = %node.parent, restarts = node.restarts, "actor stopped");
            } else {
                tracing::debug!(actor = %node.name, kind = node.kind, parent = %node.parent, "actor stopped");
            }
        }
        self.tree.faults.lock().remove(&*self.name);
    }

    /// Lets `/admin/fault` reach this actor.
    pub fn set_fault_target(&self, target: Recipient<Fault>) {
        self.tree.faults.lock().insert(self.name.to_string(), target);
    }
}

/// The `actor_restarted` event of a node that runs again; a room's carries its room name.
fn restarted(node: &Node) -> BridgeEvent {
    let room = node.name.strip_prefix("room:").filter(|_| node.kind == "room").map(str::to_owned);
    let data = serde_json::json!({ "actor": node.name, "kind": node.kind, "parent": node.parent,
                                   "reason": node.last_reason, "restarts": node.restarts });
    BridgeEvent::now(EventKind::ActorRestarted, None, room, data)
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
