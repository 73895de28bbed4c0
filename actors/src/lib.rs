//! The actors of agent-bridge and the supervision tree that keeps them running.
//!
//! ```text
//! Root (supervisor: restart intensity, escalation, /admin/supervisors)
//!  ├─ router-0 … router-N-1   Router shards, each on its own arbiter (permanent, critical):
//!  │                          registry of live sessions, inbox seqs, long-poll waiters, fan-out
//!  └─ sessions                group of Session actors, one per WebSocket (temporary children,
//!                             on the HTTP worker that accepted the socket)
//! ```
//!
//! A panic inside a handler is caught at the handler boundary ([`supervisor::contain`]), reported to
//! the tree, and the actor's context is stopped so that actix's `Supervisor` restarts it; the
//! actor's `restarting()` rebuilds what may be inconsistent from the store. Beyond the restart
//! intensity the child escalates to the root (see [`supervisor`]).

pub mod envelope;
pub mod metrics;
pub mod router;
pub mod session;
pub mod store;
pub mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;

use crate::router::{Router, RouterConfig, RouterHandle};
use crate::session::{SessionConfig, SessionDeps, SESSIONS_GROUP};
use crate::store::{Store, StoreError};
use crate::supervisor::{ChildSpec, Intensity, RestartPolicy, Root, Tree};

/// Settings of the actor system.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `None`: a temporary store, gone when the process ends.
    pub data_dir: Option<PathBuf>,
    /// Number of router shards (each on its own thread).
    pub shards: usize,
    pub router: RouterConfig,
    pub session: SessionConfig,
    /// Restart intensity of permanent children.
    pub intensity: Intensity,
    /// Stop the process (exit code 70) when a critical child escalates.
    pub exit_on_escalation: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: None,
            shards: 2,
            router: RouterConfig::default(),
            session: SessionConfig::default(),
            intensity: Intensity::default(),
            exit_on_escalation: true,
        }
    }
}

/// The running actor system: handles to everything the HTTP layer talks to.
pub struct Broker {
    pub tree: Arc<Tree>,
    pub root: Addr<Root>,
    pub router: RouterHandle,
    pub store: Store,
    pub sessions: SessionDeps,
    /// The router threads; kept so they live as long as the broker.
    _arbiters: Vec<Arbiter>,
}

impl Broker {
    /// Opens the store and starts the tree. Must run inside an actix `System`.
    pub fn start(config: BrokerConfig) -> Result<Broker, StoreError> {
        let store = Store::open(config.data_dir.as_deref())?;
        let tree = Tree::new();
        let root = Root::start(Arc::clone(&tree), config.exit_on_escalation);
        let mut shards = Vec::with_capacity(config.shards.max(1));
        let mut arbiters = Vec::new();
        for i in 0..config.shards.max(1) {
            let child = tree.register(ChildSpec {
                name: format!("{}-{i}", Router::NAME),
                kind: Router::NAME,
                parent: Tree::ROOT.into(),
                policy: RestartPolicy::Permanent,
                intensity: config.intensity,
                critical: true,
            });
            let arbiter = Arbiter::new();
            let (store, rc) = (store.clone(), config.router.clone());
            shards.push(Supervisor::start_in_arbiter(&arbiter.handle(), move |_| Router::new(child, store, rc)));
            arbiters.push(arbiter);
        }
        // The sessions group: a node the session children hang under.
        let _group = tree.register(ChildSpec {
            name: SESSIONS_GROUP.into(),
            kind: "supervisor",
            parent: Tree::ROOT.into(),
            policy: RestartPolicy::Permanent,
            intensity: config.intensity,
            critical: false,
        });
        let router = RouterHandle::new(shards);
        let sessions = SessionDeps { router: router.clone(), tree: Arc::clone(&tree), config: Arc::new(config.session) };
        Ok(Broker { tree, root, router, store, sessions, _arbiters: arbiters })
    }
}
