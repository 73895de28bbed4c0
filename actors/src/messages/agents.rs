//! The messages of the agent registry, the pools' `LoadBalancer`s and tasks (issue 14), and
//! [`PoolDirectory`]: how the router and the tracker find a pool's balancer. Sent by router shards
//! (presence, withdrawals), the router handle (pool sends), the AckTracker (settlements), the
//! rooms handle (calls); handled by `crate::agents` and `crate::pool`.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::room::RoomError;
use super::router::{PoolWithdraw, ReplyTo, RouteError};
use crate::delivery::Envelope;

/// The strategy of a pool, set with `pool.configure {pool, strategy}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Members in turn.
    #[default]
    RoundRobin,
    /// The member with the fewest unacknowledged (in-flight) messages.
    LeastLoaded,
    /// The member with the lowest moving average of ack latency.
    Fastest,
    /// A uniformly random member.
    Random,
    /// Random, in proportion to each member's weight.
    Weighted,
    /// The same member for the same key (`correlation_id`, else `thread_id`), while it stays.
    Sticky,
}

/// What an agent says it is doing (`agent.status`); `offline` is set by the broker when its last
/// session drops, `stuck` by the broker (or the agent) when it works without progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Idle,
    Working,
    Stuck,
    Completed,
    Offline,
}

/// The A2A task lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    Submitted,
    Working,
    InputRequired,
    Completed,
    Failed,
    Canceled,
    Rejected,
}

impl TaskState {
    /// Whether nothing follows this state.
    pub fn is_final(self) -> bool {
        matches!(self, TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected)
    }
}

/// A client's first session opened (`online`) or its last one closed. Sent by router shards to
/// the agent registry, before the session's `Connect` is answered.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Presence {
    pub client_id: String,
    pub online: bool,
}

/// One agent, pool or task call of the table of calls, checked by `rooms::agent_calls`.
#[derive(Debug)]
pub enum AgentOp {
    Register { capabilities: Vec<String>, pools: Vec<String>, weight: u32, description: Option<String> },
    Status { status: AgentState, detail: Option<String> },
    List { pool: Option<String>, capability: Option<String>, status: Option<AgentState> },
    PoolConfigure { pool: String, strategy: Strategy },
    PoolList,
    TaskAssign { to: String, title: String, description: Option<String>, payload: Value, timeout_s: Option<u64> },
    TaskUpdate { id: String, state: Option<TaskState>, progress: Option<Value>, result: Option<Value> },
    TaskGet { id: String },
    TaskList { assignee: Option<String>, state: Option<TaskState>, assigner: Option<String> },
    TaskCancel { id: String },
}

/// A call by `caller`. Sent by the rooms handle to the agent registry; answers the call's JSON.
#[derive(Message)]
#[rtype(result = "Result<Value, RoomError>")]
pub struct AgentCall {
    pub caller: String,
    pub op: AgentOp,
}

/// A message to a pool: the balancer picks the member and hands it to that member's shard. Sent
/// through `RouterHandle::route`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PoolRoute {
    pub env: Envelope,
    pub reply: ReplyTo,
}

/// How a pool message ended for the member it was given to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PoolOutcome {
    /// Acknowledged after `latency_ms` (from its first delivery).
    Acked { latency_ms: f64 },
    /// Not acknowledged in time, or nacked: the tracker withdrew it, the balancer gives it to
    /// another member.
    Missed,
    /// Dead-lettered or expired: nothing more to do.
    Gone,
}

/// A require-ack pool message was settled. Sent by the AckTracker to the pool's balancer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PoolSettled {
    pub ticket: u64,
    pub member: String,
    pub outcome: PoolOutcome,
}

/// A member is connected (`weight` from its registration). Sent by the registry to a balancer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MemberUp {
    pub id: String,
    pub weight: u32,
}

/// A member went offline or left the pool. Sent by the registry to a balancer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MemberDown {
    pub id: String,
}

/// Set the pool's strategy. Sent by the registry (`pool.configure`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Configure(pub Strategy);

/// The pool as `pool.list` shows it. Sent by the registry.
#[derive(Message)]
#[rtype(result = "PoolInfo")]
pub struct Describe;

/// Answer to [`Describe`].
#[derive(Debug, Clone, Serialize)]
pub struct PoolInfo {
    pub pool: String,
    pub strategy: Strategy,
    /// Healthy members (connected, circuit closed) with their statistics.
    pub members: Vec<Value>,
    /// Members whose circuit is open (skipped until it closes).
    pub open: Vec<String>,
    /// Require-ack messages given to members and not settled.
    pub in_flight: usize,
}

/// Choose a member for one task (`task.assign` to a pool). Sent by the registry.
#[derive(Message)]
#[rtype(result = "Option<String>")]
pub struct Pick {
    pub key: Option<String>,
}

/// What reaches one pool's balancer.
#[derive(Clone)]
pub struct PoolPort {
    pub route: Recipient<PoolRoute>,
    pub settled: Recipient<PoolSettled>,
}

/// Pool name → its balancer, published by the registry as pools come into being; read by the
/// router handle for every pool send and by the tracker for settlements. Cheap to clone.
#[derive(Clone, Default)]
pub struct PoolDirectory(Arc<RwLock<HashMap<String, PoolPort>>>);

impl PoolDirectory {
    pub fn get(&self, pool: &str) -> Option<PoolPort> {
        self.0.read().get(pool).cloned()
    }

    pub fn publish(&self, pool: &str, port: PoolPort) {
        self.0.write().insert(pool.to_owned(), port);
    }

    /// Routes a pool send: `unknown_recipient` for a pool nobody ever joined.
    pub fn route(&self, pool: &str, env: Envelope, reply: ReplyTo) {
        match self.get(pool) {
            Some(port) => port.route.do_send(PoolRoute { env, reply }),
            None => reply.send(Err(RouteError::UnknownRecipient(format!("pool:{pool}")))),
        }
    }
}

/// What a router shard tells the agent registry and the tracker about pools: presence changes, and
/// withdrawals passed on after the shard's pending writes (`Router::with_pools`).
#[derive(Clone)]
pub struct PoolHooks {
    pub presence: Recipient<Presence>,
    pub withdraw: Recipient<PoolWithdraw>,
}
