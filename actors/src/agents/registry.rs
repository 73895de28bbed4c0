//! The `Agents` actor: registrations, status, presence and pools. Tasks are in `tasks.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use agent_bridge_protocol::ids::Recipient as To;
use agent_bridge_protocol::{Payload, Priority, Timestamp};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tracing::{error, info};

use super::records::{agent_json, AgentRecord, AgentsConfig, TaskRecord};
use crate::delivery::{Envelope, Target, Transport};
use crate::events::{BridgeEvent, EventKind};
use crate::messages::*;
use crate::pool::LoadBalancer;
use crate::store::{Store, StoreError};
use crate::supervisor::{supervisee, ChildHandle, ChildSpec, Mailbox, RestartPolicy, Supervisee, Tree};

/// Most registered agents: a registration is small (at most 32 × 2 names and a description), and
/// this bounds them all.
pub(super) const MAX_AGENTS: usize = 100_000;
/// Most pools (each is an actor): `agent.register` and `pool.configure` naming a new pool beyond
/// it are refused.
pub(super) const MAX_POOLS: usize = 1_000;
/// The sender of the messages the broker itself sends (task timeouts).
pub(super) const BROKER: &str = "broker";

/// An agent's live standing beside its registration.
pub(super) struct Agent {
    pub(super) record: AgentRecord,
    pub(super) status: AgentState,
    pub(super) detail: Option<String>,
    /// The last status change or progress report.
    pub(super) since: Instant,
}

/// The agent registry.
pub struct Agents {
    /// Supervision link (and the event bus).
    pub(super) child: ChildHandle,
    pub(super) tree: Arc<Tree>,
    pub(super) store: Store,
    pub(super) config: AgentsConfig,
    /// The router shards: task messages, and the balancers' routes.
    pub(super) shards: Arc<[ShardPort]>,
    pub(super) agents: HashMap<String, Agent>,
    /// Clients with at least one live session.
    pub(super) online: HashSet<String>,
    pub(super) pools: HashMap<String, Addr<LoadBalancer>>,
    /// What the router and the tracker read to reach a balancer.
    pub(super) directory: PoolDirectory,
    /// Task id → task.
    pub(super) tasks: HashMap<String, TaskRecord>,
}

impl Agents {
    pub const NAME: &'static str = "agents";

    /// The registry; `directory` is what the router handle and the tracker are given.
    pub fn new(child: ChildHandle, tree: Arc<Tree>, store: Store, config: AgentsConfig, shards: Vec<ShardPort>, directory: PoolDirectory) -> Self {
        Agents {
            child,
            tree,
            store,
            config,
            shards: shards.into(),
            agents: HashMap::new(),
            online: HashSet::new(),
            pools: HashMap::new(),
            directory,
            tasks: HashMap::new(),
        }
    }

    fn load(&mut self) -> Result<(), StoreError> {
        for record in self.store.agents::<AgentRecord>()? {
            let status = if self.online.contains(&record.client_id) { AgentState::Idle } else { AgentState::Offline };
            for pool in record.pools.clone() {
                self.pool(&pool);
            }
            let id = record.client_id.clone();
            self.agents.entry(id).or_insert(Agent { record, status, detail: None, since: Instant::now() });
        }
        self.tasks = self.store.tasks::<TaskRecord>()?.into_iter().map(|t| (t.id.clone(), t)).collect();
        Ok(())
    }

    /// The balancer of `name`, started (and published) on first use.
    pub(super) fn pool(&mut self, name: &str) -> Addr<LoadBalancer> {
        if let Some(addr) = self.pools.get(name) {
            return addr.clone();
        }
        let child = self.tree.register(ChildSpec {
            name: format!("pool:{name}"),
            kind: LoadBalancer::NAME,
            parent: Agents::NAME.into(),
            policy: RestartPolicy::Permanent,
            intensity: self.config.intensity,
            critical: false,
        });
        let addr = Mailbox::new().supervise(&child, LoadBalancer::new(child.clone(), name, Strategy::default(), Arc::clone(&self.shards)));
        self.directory.publish(name, PoolPort { route: addr.clone().recipient(), settled: addr.clone().recipient() });
        self.pools.insert(name.to_owned(), addr.clone());
        addr
    }

    /// Refuses pools beyond [`MAX_POOLS`].
    fn room_for(&self, names: &[String]) -> Result<(), RoomError> {
        let new = names.iter().filter(|n| !self.pools.contains_key(*n)).count();
        if new > 0 && self.pools.len() + new > MAX_POOLS {
            return Err(RoomError::Limit(format!("the broker runs at most {MAX_POOLS} pools")));
        }
        Ok(())
    }

    /// Publishes an `agent_status` event.
    pub(super) fn status_event(&self, id: &str) {
        let Some(a) = self.agents.get(id) else { return };
        let bus = self.child.events();
        if bus.watched() {
            let data = json!({ "client_id": id, "status": a.status, "detail": a.detail, "online": self.online.contains(id) });
            bus.publish(BridgeEvent::now(EventKind::AgentStatus, Some(id.to_owned()), None, data));
        }
    }

    fn set_status(&mut self, id: &str, status: AgentState, detail: Option<String>) {
        let Some(a) = self.agents.get_mut(id) else { return };
        let changed = a.status != status || a.detail != detail;
        a.status = status;
        a.detail = detail;
        a.since = Instant::now();
        if changed {
            info!(actor = Agents::NAME, client_id = %id, status = ?status, "agent status");
            self.status_event(id);
        }
    }

    fn presence(&mut self, msg: Presence) {
        if msg.online {
            self.online.insert(msg.client_id.clone());
        } else {
            self.online.remove(&msg.client_id);
        }
        let Some(agent) = self.agents.get(&msg.client_id) else { return };
        let (pools, weight) = (agent.record.pools.clone(), agent.record.weight);
        for pool in pools {
            let lb = self.pool(&pool);
            if msg.online {
                lb.do_send(MemberUp { id: msg.client_id.clone(), weight });
            } else {
                lb.do_send(MemberDown { id: msg.client_id.clone() });
            }
        }
        let status = if msg.online { AgentState::Idle } else { AgentState::Offline };
        self.set_status(&msg.client_id, status, None);
    }

    fn register(&mut self, caller: &str, capabilities: Vec<String>, pools: Vec<String>, weight: u32, description: Option<String>) -> Result<Value, RoomError> {
        for pool in &pools {
            To::parse(&format!("pool:{pool}")).map_err(|e| RoomError::InvalidParams(e.to_string()))?;
        }
        self.room_for(&pools)?;
        if !self.agents.contains_key(caller) && self.agents.len() >= MAX_AGENTS {
            return Err(RoomError::Limit(format!("the broker keeps at most {MAX_AGENTS} agent registrations")));
        }
        let record = AgentRecord { client_id: caller.to_owned(), capabilities, pools, weight, description, registered_at_ms: Timestamp::now().millis() };
        self.store.put_agent(caller, &record)?;
        let online = self.online.contains(caller);
        let old = self.agents.remove(caller);
        // Pools it left lose it; pools it is in (again) get it with its weight.
        if let Some(old) = &old {
            for pool in old.record.pools.iter().filter(|p| !record.pools.contains(p)) {
                self.pool(pool).do_send(MemberDown { id: caller.to_owned() });
            }
        }
        if online {
            for pool in &record.pools {
                self.pool(pool).do_send(MemberUp { id: caller.to_owned(), weight: record.weight });
            }
        } else {
            for pool in &record.pools {
                self.pool(pool);
            }
        }
        let status = match &old {
            Some(a) if online && a.status != AgentState::Offline => a.status,
            _ if online => AgentState::Idle,
            _ => AgentState::Offline,
        };
        let detail = old.and_then(|a| a.detail);
        let answer = agent_json(&record, status, detail.as_deref(), online);
        self.agents.insert(caller.to_owned(), Agent { record, status, detail, since: Instant::now() });
        self.status_event(caller);
        Ok(answer)
    }

    fn status(&mut self, caller: &str, status: AgentState, detail: Option<String>) -> Result<Value, RoomError> {
        if status == AgentState::Offline {
            return Err(RoomError::InvalidParams("offline is set by the broker when the agent's last session drops".into()));
        }
        let Some(a) = self.agents.get(caller) else {
            return Err(RoomError::NotFound(format!("{caller:?} is not a registered agent: call agent.register first")));
        };
        let (record, online) = (a.record.clone(), self.online.contains(caller));
        self.set_status(caller, status, detail.clone());
        Ok(agent_json(&record, status, detail.as_deref(), online))
    }

    fn list(&self, pool: Option<&str>, capability: Option<&str>, status: Option<AgentState>) -> Value {
        let mut agents: Vec<&Agent> = self
            .agents
            .values()
            .filter(|a| pool.is_none_or(|p| a.record.pools.iter().any(|x| x == p)))
            .filter(|a| capability.is_none_or(|c| a.record.capabilities.iter().any(|x| x == c)))
            .filter(|a| status.is_none_or(|s| a.status == s))
            .collect();
        agents.sort_by(|a, b| a.record.client_id.cmp(&b.record.client_id));
        let list: Vec<Value> = agents.iter().map(|a| agent_json(&a.record, a.status, a.detail.as_deref(), self.online.contains(&a.record.client_id))).collect();
        json!({ "count": list.len(), "agents": list })
    }

    /// Working agents without progress for `stuck_after` become `stuck`.
    fn detect_stuck(&mut self) {
        let after = self.config.stuck_after;
        let stuck: Vec<String> = self.agents.iter().filter(|(_, a)| a.status == AgentState::Working && a.since.elapsed() >= after).map(|(id, _)| id.clone()).collect();
        for id in stuck {
            let detail = format!("no progress for {} s", after.as_secs());
            self.set_status(&id, AgentState::Stuck, Some(detail));
        }
    }

    /// Progress from `id` (a status report or a task update): it is not stuck.
    pub(super) fn progress(&mut self, id: &str) {
        if let Some(a) = self.agents.get_mut(id) {
            a.since = Instant::now();
            if a.status == AgentState::Stuck {
                self.set_status(id, AgentState::Working, None);
            }
        }
    }

    /// Sends a message from `from` to `to` (task hand-overs, task updates).
    pub(super) fn send(&self, from: &str, to: &str, msg_type: &str, payload: &Value, correlation_id: &str) {
        let env = Envelope {
            from: from.to_owned(),
            target: Target::Client(to.to_owned()),
            msg_type: msg_type.to_owned(),
            payload: Payload::from_serialize(payload),
            priority: Priority::Normal,
            ttl: None,
            require_ack: false,
            correlation_id: Some(correlation_id.to_owned()),
            idempotency_key: None,
            persist: true,
            thread_id: None,
            transport: Transport::Http,
            pool: None,
        };
        let (tx, _) = oneshot::channel();
        self.shards[shard_index(to, self.shards.len())].route.do_send(Route { env, reply: ReplyTo::Future(tx) });
    }

    /// Answers `value` once the store's group commit has flushed what the call wrote.
    pub(super) fn durable(&self, value: Result<Value, RoomError>) -> ResponseFuture<Result<Value, RoomError>> {
        let commit = value.is_ok().then(|| self.store.commit());
        Box::pin(async move {
            if let Some(commit) = commit {
                match tokio::time::timeout(Duration::from_secs(5), commit).await {
                    Ok(Ok(())) => {}
                    _ => return Err(RoomError::NotDurable),
                }
            }
            value
        })
    }
}

supervisee!(Agents, RoomError, child);

impl Actor for Agents {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 20);
        if let Err(e) = self.load() {
            error!(actor = Agents::NAME, error = %e, "loading agents and tasks");
        }
        let every = (self.config.stuck_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        ctx.run_interval(every, |act, ctx| {
            let _ = act.guard(ctx, |a, _| {
                a.detect_stuck();
                a.expire_tasks();
                Ok(())
            });
        });
    }
}

impl Supervised for Agents {}

impl Handler<Presence> for Agents {
    type Result = ();
    fn handle(&mut self, msg: Presence, ctx: &mut Self::Context) {
        let _ = self.guard(ctx, |a, _| {
            a.presence(msg);
            Ok(())
        });
    }
}

impl Handler<AgentCall> for Agents {
    type Result = ResponseActFuture<Self, Result<Value, RoomError>>;
    fn handle(&mut self, msg: AgentCall, ctx: &mut Self::Context) -> Self::Result {
        let caller = msg.caller;
        let sync = match msg.op {
            AgentOp::Register { capabilities, pools, weight, description } => {
                let r = self.guard(ctx, |a, _| a.register(&caller, capabilities, pools, weight, description));
                return Box::pin(self.durable(r).into_actor(self));
            }
            AgentOp::Status { status, detail } => self.guard(ctx, |a, _| a.status(&caller, status, detail)),
            AgentOp::List { pool, capability, status } => Ok(self.list(pool.as_deref(), capability.as_deref(), status)),
            AgentOp::PoolConfigure { pool, strategy } => self.room_for(std::slice::from_ref(&pool)).map(|()| {
                self.pool(&pool).do_send(Configure(strategy));
                json!({ "pool": pool, "strategy": strategy })
            }),
            AgentOp::PoolList => {
                let all: Vec<_> = self.pools.values().map(|lb| lb.send(Describe)).collect();
                return Box::pin(
                    async move {
                        let mut pools: Vec<PoolInfo> = futures_util::future::join_all(all).await.into_iter().filter_map(Result::ok).collect();
                        pools.sort_by(|a, b| a.pool.cmp(&b.pool));
                        Ok(json!({ "count": pools.len(), "pools": pools }))
                    }
                    .into_actor(self),
                );
            }
            AgentOp::TaskAssign { to, title, description, payload, timeout_s } => return self.assign(caller, to, (title, description), payload, timeout_s),
            AgentOp::TaskUpdate { id, state, progress, result } => {
                let r = self.guard(ctx, |a, _| a.update(&caller, &id, state, progress, result));
                return Box::pin(self.durable(r).into_actor(self));
            }
            AgentOp::TaskGet { id } => self.get_task(&caller, &id),
            AgentOp::TaskList { assignee, state, assigner } => Ok(self.list_tasks(&caller, assignee.as_deref(), state, assigner.as_deref())),
            AgentOp::TaskCancel { id } => {
                let r = self.guard(ctx, |a, _| a.cancel(&caller, &id));
                return Box::pin(self.durable(r).into_actor(self));
            }
        };
        Box::pin(fut::ready(sync))
    }
}
