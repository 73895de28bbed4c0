//! The actors of agent-bridge and the supervision tree that keeps them running.
//!
//! ```text
//! Root (supervisor: restart intensity, escalation, /admin/supervisors)
//!  ├─ ack_tracker             AckTracker (permanent, critical, own arbiter): require-ack messages,
//!  │                          redelivery timers, dead letters, receipts
//!  ├─ router-0 … router-N-1   Router shards, each on its own arbiter (permanent, critical):
//!  │                          registry of live sessions, inbox seqs and queues, fan-out, feeds
//!  ├─ ttl_sweeper             TtlSweeper (permanent, critical, own arbiter): bounded expiry passes
//!  ├─ webhooks                Webhooks (permanent, not critical, own arbiter): registrations,
//!  │                          signed deliveries with retries, breakers, failed deliveries
//!  ├─ email                   Mailer (permanent, not critical, own arbiter): e-mail subscriptions,
//!  │                          mails and digests over SMTP, failed mails
//!  ├─ github                  GitHub (permanent, not critical, own arbiter): room → repository,
//!  │                          issues from cards and decisions, comments on card moves
//!  ├─ desktop                 DesktopController (permanent, not critical, own arbiter; with the
//!  │                          `desktop` feature and a configured window): `desktop.prompt`, its
//!  │                          X work on a worker thread of its own
//!  ├─ agents                  Agents registry (permanent, not critical, own arbiter): agent
//!  │   │                      registrations, status, presence, tasks (`crate::agents`)
//!  │   └─ pool:<name> …       one LoadBalancer per pool, on the registry's arbiter (permanent,
//!  │                          not critical): picks a member per message, fails over (`crate::pool`)
//!  ├─ managed                 Managed registry (permanent, not critical, own arbiter): managed
//!  │   │                      CLI agents and the code sandbox (`crate::managed`)
//!  │   └─ managed:<name> …    one ManagedAgent per agent.spawn (permanent, not critical): runs
//!  │                          prompts as processes, retries, breaker
//!  ├─ rooms                   Rooms registry (permanent, critical, own arbiter): creates, restores
//!  │   │                      and finds rooms
//!  │   └─ room:<name> …       one Room per room, started lazily on the rooms arbiter (permanent,
//!  │                          not critical): members, presence, streams, votes, board, files
//!  └─ sessions                group of Session actors, one per WebSocket (temporary children,
//!                             on the HTTP worker that accepted the socket)
//! ```
//!
//! A panic inside a handler is caught at the handler boundary ([`supervisor::Supervisee::guard`]),
//! reported to the tree, and the actor's context is stopped so that the restart loop of its
//! [`supervisor::Mailbox`] restarts it; the actor's `restarting()` rebuilds what may be inconsistent
//! from the store. Beyond the restart intensity the child escalates to the root (see [`supervisor`]).
//!
//! Actors reach each other through the leaf module [`messages`] (the messages, their errors, and
//! handles of recipients such as [`messages::TrackerLink`] and [`messages::Shards`]), handed in by
//! [`Broker::start`]: every mailbox is created first, so an actor's dependencies are complete when
//! it starts, cycles (tracker ↔ shards) included.

pub mod ack_tracker;
pub mod agents;
pub mod auth;
pub mod batch;
pub mod breaker;
pub mod delivery;
#[cfg(feature = "desktop")]
pub mod desktop;
pub mod email;
pub mod envelope;
pub mod events;
pub mod github;
pub mod managed;
pub mod messages;
pub mod metrics;
pub mod pool;
pub mod room;
pub mod rooms;
pub mod router;
pub mod search;
pub mod session;
pub mod sse;
pub mod store;
pub mod supervisor;
pub mod threads;
pub mod ttl_sweeper;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::ack_tracker::{AckConfig, AckTracker};
use crate::agents::{Agents, AgentsConfig};
use crate::messages::{Durability, PoolDirectory, PoolHooks, ShardLink, ShardPort, Shards, TrackerLink};
use crate::room::RoomsConfig;
use crate::managed::Managed;
use crate::rooms::{Rooms, RoomsHandle};
use crate::router::{Router, RouterConfig, RouterHandle};
use crate::search::SearchIndex;
use crate::session::{SessionConfig, SessionDeps, SESSIONS_GROUP};
use crate::store::{Store, StoreError};
use crate::supervisor::{ChildSpec, Intensity, Mailbox, RestartPolicy, Root, Tree};
use crate::ttl_sweeper::{SweepConfig, TtlSweeper};
use crate::email::{Mailer, MailerConfig};
use crate::github::{GitHub, GitHubConfig};
use crate::webhooks::{Webhooks, WebhooksConfig};

/// Settings of the actor system.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `None`: a temporary store, gone when the process ends.
    pub data_dir: Option<PathBuf>,
    /// Number of router shards (each on its own thread).
    pub shards: usize,
    pub router: RouterConfig,
    pub session: SessionConfig,
    pub ack: AckConfig,
    pub sweep: SweepConfig,
    /// Rooms (its durability, retention, queue and intensity settings follow the others').
    pub rooms: RoomsConfig,
    /// Webhook retries, breakers and kept failures.
    pub webhooks: WebhooksConfig,
    /// The agent registry: when a working agent counts as stuck.
    pub agents: AgentsConfig,
    /// The SMTP server and the e-mail actor's bounds.
    pub email: MailerConfig,
    /// The GitHub API (base URL, token) and the kept failures.
    pub github: GitHubConfig,
    /// With async durability: how often sled flushes in the background.
    pub flush_interval: Duration,
    /// Restart intensity of permanent children.
    pub intensity: Intensity,
    /// Stop the process (exit code 70) when a critical child escalates.
    pub exit_on_escalation: bool,
    /// Keep the search index (`history.search`).
    pub search: bool,
    /// The desktop controller's settings; `None`: no controller (`desktop.prompt` answers
    /// `not_supported`, as it does in a build without the `desktop` feature).
    pub desktop: Option<messages::DesktopConfig>,
    /// Managed CLI agents: templates, timeouts, retries, breaker.
    pub managed: messages::ManagedConfig,
    /// The code sandbox (`code.run`), off unless enabled.
    pub sandbox: messages::SandboxConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: None,
            shards: 2,
            router: RouterConfig::default(),
            session: SessionConfig::default(),
            ack: AckConfig::default(),
            sweep: SweepConfig::default(),
            rooms: RoomsConfig::default(),
            webhooks: WebhooksConfig::default(),
            agents: AgentsConfig::default(),
            email: MailerConfig::default(),
            github: GitHubConfig::default(),
            flush_interval: Duration::from_millis(500),
            intensity: Intensity::default(),
            exit_on_escalation: true,
            search: true,
            desktop: None,
            managed: messages::ManagedConfig::default(),
            sandbox: messages::SandboxConfig::default(),
        }
    }
}

/// The running actor system: handles to everything the HTTP layer talks to.
pub struct Broker {
    pub tree: Arc<Tree>,
    pub root: Addr<Root>,
    pub router: RouterHandle,
    pub tracker: Addr<AckTracker>,
    pub sweeper: Addr<TtlSweeper>,
    pub rooms: RoomsHandle,
    pub webhooks: Addr<Webhooks>,
    pub agents: Addr<Agents>,
    pub email: Addr<Mailer>,
    pub github: Addr<GitHub>,
    pub store: Store,
    /// The search index (`history.search`); `None` when it could not be opened (logged).
    pub search: Option<SearchIndex>,
    pub sessions: SessionDeps,
    /// The router threads; kept so they live as long as the broker.
    _arbiters: Vec<Arbiter>,
}

impl Broker {
    /// Opens the store and starts the tree. Must run inside an actix `System`.
    pub fn start(config: BrokerConfig) -> Result<Broker, StoreError> {
        let background = match config.router.durability {
            Durability::Sync => None,
            Durability::Async => Some(config.flush_interval),
        };
        let store = Store::open(config.data_dir.as_deref(), background)?;
        // Before the store is handed round: every handle then feeds the index's writer.
        let opened = if config.search { Some(SearchIndex::open(config.data_dir.as_deref(), store.clone())) } else { None };
        let (search, store) = match opened {
            None => (None, store),
            Some(Ok((search, fed))) => (Some(search), fed),
            Some(Err(e)) => {
                tracing::error!(actor = search::NAME, error = %e, "search index unavailable: history.search answers not_supported");
                (None, store)
            }
        };
        let root_mailbox = Mailbox::new();
        let tree = Tree::new(root_mailbox.address().recipient());
        let root = root_mailbox.start(Root::new(Arc::clone(&tree), config.exit_on_escalation));
        let spec = |name: String, kind: &'static str| ChildSpec {
            name,
            kind,
            parent: Tree::ROOT.into(),
            policy: RestartPolicy::Permanent,
            intensity: config.intensity,
            critical: true,
        };
        let mut arbiters = Vec::new();
        let mut arbiter = || {
            let a = Arbiter::new();
            let handle = a.handle();
            arbiters.push(a);
            handle
        };

        // The tracker and the shards need each other's addresses: both mailboxes come first.
        let shard_mailboxes: Vec<Mailbox<Router>> = (0..config.shards.max(1)).map(|_| Mailbox::new()).collect();
        let tracker_mailbox = Mailbox::<AckTracker>::new();
        let tracker_link = TrackerLink::of(&tracker_mailbox.address());
        // The shards tell the agent registry about presence: its mailbox comes first too.
        let agents_mailbox = Mailbox::<Agents>::new();
        let pools = PoolDirectory::default();
        let hooks = PoolHooks { presence: agents_mailbox.address().recipient(), withdraw: tracker_mailbox.address().recipient() };

        let tracker = {
            let child = tree.register(spec(AckTracker::NAME.into(), AckTracker::NAME));
            let shards = Shards::new(shard_mailboxes.iter().map(|m| ShardLink::of(&m.address())).collect());
            let (store, ack, c, p) = (store.clone(), config.ack.clone(), child.clone(), pools.clone());
            tracker_mailbox.supervise_in(&child, &arbiter(), move || AckTracker::new(c, store, ack, shards).with_pools(p))
        };

        let shards: Vec<ShardPort> = shard_mailboxes
            .into_iter()
            .enumerate()
            .map(|(i, mailbox)| {
                let child = tree.register(spec(format!("{}-{i}", Router::NAME), Router::NAME));
                let (store, rc, tracker, c, h) = (store.clone(), config.router.clone(), tracker_link.clone(), child.clone(), hooks.clone());
                ShardPort::of(&mailbox.supervise_in(&child, &arbiter(), move || Router::new(c, store, rc, tracker).with_pools(h)))
            })
            .collect();

        let sweeper = {
            let child = tree.register(spec(TtlSweeper::NAME.into(), TtlSweeper::NAME));
            let (store, sc, expired, c) = (store.clone(), config.sweep.clone(), tracker_link.expired.clone(), child.clone());
            Mailbox::new().supervise_in(&child, &arbiter(), move || TtlSweeper::new(c, store, sc, expired))
        };

        let rooms = {
            let child = tree.register(spec(Rooms::NAME.into(), Rooms::NAME));
            let rc = RoomsConfig {
                durability: config.router.durability,
                retention: config.router.retention.clone(),
                idempotency_window: config.router.idempotency_window,
                queue_limit: config.session.queue_limit,
                queue_bytes: config.session.queue_bytes,
                intensity: config.intensity,
                ..config.rooms.clone()
            };
            Rooms::start(child, Arc::clone(&tree), store.clone(), rc, &arbiter())
        };
        let rooms = match start_desktop(&tree, &config, &mut arbiter) {
            Some(desktop) => rooms.with_desktop(desktop),
            None => rooms,
        };
        // GitHub posts its links into rooms, and rooms hand it `github.issue`: its mailbox first.
        let github_mailbox = Mailbox::<GitHub>::new();
        let rooms = rooms.with_github(github_mailbox.address().recipient());
        let agents = {
            let child = tree.register(ChildSpec { critical: false, ..spec(Agents::NAME.into(), Agents::NAME) });
            let ac = AgentsConfig { intensity: config.intensity, ..config.agents.clone() };
            let (c, t, st, sh, p) = (child.clone(), Arc::clone(&tree), store.clone(), shards.clone(), pools.clone());
            agents_mailbox.supervise_in(&child, &arbiter(), move || Agents::new(c, t, st, ac, sh, p))
        };
        let managed = {
            let child = tree.register(ChildSpec { critical: false, ..spec(Managed::NAME.into(), Managed::NAME) });
            let (c, t, mc, sc) = (child.clone(), Arc::clone(&tree), config.managed.clone(), config.sandbox.clone());
            Mailbox::new().supervise_in(&child, &arbiter(), move || Managed::new(c, t, mc, sc))
        };
        let rooms = rooms.with_agents(agents.clone().recipient()).with_managed(managed.recipient());
        let rooms = match &search {
            Some(search) => rooms.with_search(search.clone()),
            None => rooms,
        };
        let router = RouterHandle::new(shards, rooms.clone()).with_pools(pools);
        let integration = |name: &'static str| tree.register(ChildSpec { critical: false, ..spec(name.into(), name) });

        let webhooks = {
            let child = integration(Webhooks::NAME);
            let (store, wc, monitor, c) = (store.clone(), config.webhooks.clone(), router.monitor().clone(), child.clone());
            Mailbox::new().supervise_in(&child, &arbiter(), move || Webhooks::new(c, store, wc, monitor))
        };
        let email = {
            let child = integration(Mailer::NAME);
            let (store, ec, monitor, c) = (store.clone(), config.email.clone(), router.monitor().clone(), child.clone());
            Mailbox::new().supervise_in(&child, &arbiter(), move || Mailer::new(c, store, ec, monitor))
        };
        let github = {
            let child = integration(GitHub::NAME);
            let (store, gc, r, c) = (store.clone(), config.github.clone(), rooms.clone(), child.clone());
            github_mailbox.supervise_in(&child, &arbiter(), move || GitHub::new(c, store, gc, r))
        };

        // The sessions group: a node the session children hang under.
        let _group = tree.register(ChildSpec {
            name: SESSIONS_GROUP.into(),
            kind: "supervisor",
            parent: Tree::ROOT.into(),
            policy: RestartPolicy::Permanent,
            intensity: config.intensity,
            critical: false,
        });
        let sessions = SessionDeps {
            router: router.clone(),
            tracker: tracker_link,
            rooms: rooms.clone(),
            tree: Arc::clone(&tree),
            config: Arc::new(config.session),
        };
        Ok(Broker { tree, root, router, tracker, sweeper, rooms, webhooks, email, github, agents, store, search, sessions, _arbiters: arbiters })
    }
}

/// The desktop controller, when configured and built in: a permanent child that is not critical.
#[cfg(feature = "desktop")]
fn start_desktop(tree: &Arc<Tree>, config: &BrokerConfig, arbiter: &mut impl FnMut() -> ArbiterHandle) -> Option<Recipient<messages::Prompt>> {
    use crate::desktop::DesktopController;
    let desktop = config.desktop.clone()?;
    let child = tree.register(ChildSpec {
        name: DesktopController::NAME.into(),
        kind: DesktopController::NAME,
        parent: Tree::ROOT.into(),
        policy: RestartPolicy::Permanent,
        intensity: config.intensity,
        critical: false,
    });
    let c = child.clone();
    Some(Mailbox::new().supervise_in(&child, &arbiter(), move || DesktopController::new(c, desktop)).recipient())
}

/// Built without the `desktop` feature: never a controller.
#[cfg(not(feature = "desktop"))]
fn start_desktop(_: &Arc<Tree>, config: &BrokerConfig, _: &mut impl FnMut() -> ArbiterHandle) -> Option<Recipient<messages::Prompt>> {
    if config.desktop.is_some() {
        tracing::warn!(actor = "desktop", "desktop settings ignored: built without the desktop feature");
    }
    None
}
