//! The params of the `agent.*`, `pool.*` and `task.*` calls of the table ([`super::calls`]), and
//! their checks: each builds the agent registry's [`AgentOp`]. A leaf of `rooms`.

use agent_bridge_protocol::ids::Recipient as To;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::messages::{AgentOp, AgentState, RoomError, Strategy, TaskState};

/// Longest name (capability, pool) and detail or title text; most entries in a list.
const MAX_NAME: usize = 64;
const MAX_TEXT: usize = 1024;
const MAX_LIST: usize = 32;
/// Largest task payload, progress or result, as JSON text.
const MAX_JSON: usize = 64 * 1024;
/// Longest task timeout.
const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;

/// Params that become one registry operation.
pub trait AgentParams {
    fn op(self) -> Result<AgentOp, RoomError>;
}

fn bad(msg: impl Into<String>) -> RoomError {
    RoomError::InvalidParams(msg.into())
}

fn short(field: &str, s: &str, max: usize) -> Result<(), RoomError> {
    if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(bad(format!("{field} must be 1 to {max} bytes without control characters")));
    }
    Ok(())
}

fn names(field: &str, list: &[String]) -> Result<(), RoomError> {
    if list.len() > MAX_LIST {
        return Err(bad(format!("at most {MAX_LIST} {field}")));
    }
    list.iter().try_for_each(|n| short(field, n, MAX_NAME))
}

fn pool_name(p: &str) -> Result<(), RoomError> {
    To::parse(&format!("pool:{p}")).map(|_| ()).map_err(|e| bad(e.to_string()))
}

fn json_size(field: &str, v: &Option<Value>) -> Result<(), RoomError> {
    match v {
        Some(v) if v.to_string().len() > MAX_JSON => Err(bad(format!("{field} is over {MAX_JSON} bytes of JSON"))),
        _ => Ok(()),
    }
}

/// `agent.register`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterParams {
    /// What the agent can do (`review`, `python` …), at most 32.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The pools it serves (messages to `pool:NAME`), at most 32.
    #[serde(default)]
    pub pools: Vec<String>,
    /// One pool (PROTOCOL.md's spelling), added to `pools`.
    pub pool: Option<String>,
    /// Its share for the weighted strategy (1 to 1000, default 1).
    #[schema(minimum = 1, maximum = 1000)]
    pub weight: Option<u32>,
    /// What it is.
    pub description: Option<String>,
}

impl AgentParams for RegisterParams {
    fn op(mut self) -> Result<AgentOp, RoomError> {
        names("capabilities", &self.capabilities)?;
        if let Some(p) = self.pool.take().filter(|p| !self.pools.contains(p)) {
            self.pools.push(p);
        }
        if self.pools.len() > MAX_LIST {
            return Err(bad(format!("at most {MAX_LIST} pools")));
        }
        self.pools.iter().try_for_each(|p| pool_name(p))?;
        let weight = self.weight.unwrap_or(1);
        if !(1..=1000).contains(&weight) {
            return Err(bad("weight must be between 1 and 1000"));
        }
        if let Some(d) = &self.description {
            short("description", d, MAX_TEXT)?;
        }
        Ok(AgentOp::Register { capabilities: self.capabilities, pools: self.pools, weight, description: self.description })
    }
}

/// `agent.status`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusParams {
    /// idle, working, stuck or completed (offline is the broker's).
    #[schema(inline)]
    pub status: AgentState,
    /// What it is doing.
    pub detail: Option<String>,
}

impl AgentParams for StatusParams {
    fn op(self) -> Result<AgentOp, RoomError> {
        if let Some(d) = &self.detail {
            short("detail", d, MAX_TEXT)?;
        }
        Ok(AgentOp::Status { status: self.status, detail: self.detail })
    }
}

/// `agent.list`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentListParams {
    /// Only members of this pool.
    pub pool: Option<String>,
    /// Only agents with this capability.
    pub capability: Option<String>,
    /// Only agents in this status.
    #[schema(inline)]
    pub status: Option<AgentState>,
}

impl AgentParams for AgentListParams {
    fn op(self) -> Result<AgentOp, RoomError> {
        Ok(AgentOp::List { pool: self.pool, capability: self.capability, status: self.status })
    }
}

/// `pool.configure`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolConfigureParams {
    /// The pool's name (without `pool:`).
    pub pool: String,
    #[schema(inline)]
    pub strategy: Strategy,
}

impl AgentParams for PoolConfigureParams {
    fn op(self) -> Result<AgentOp, RoomError> {
        pool_name(&self.pool)?;
        Ok(AgentOp::PoolConfigure { pool: self.pool, strategy: self.strategy })
    }
}

/// No params.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl AgentParams for NoParams {
    fn op(self) -> Result<AgentOp, RoomError> {
        Ok(AgentOp::PoolList)
    }
}

/// `task.assign`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignParams {
    /// An agent's client id or `pool:NAME` (give `to` or `pool`).
    pub to: Option<String>,
    /// A pool's name: the same as `to: "pool:NAME"`.
    pub pool: Option<String>,
    /// What the task is (1 to 1024 bytes).
    pub title: String,
    /// More about it (at most 1024 bytes).
    pub description: Option<String>,
    /// The task's input (any JSON, at most 64 KiB).
    #[serde(default)]
    pub payload: Option<Value>,
    /// Fail the task if it has not finished after this many seconds.
    #[schema(minimum = 1, maximum = 604800)]
    pub timeout_s: Option<u64>,
}

impl AgentParams for AssignParams {
    fn op(self) -> Result<AgentOp, RoomError> {
        short("title", &self.title, MAX_TEXT)?;
        if let Some(d) = &self.description {
            short("description", d, MAX_TEXT)?;
        }
        json_size("payload", &self.payload)?;
        let to = match (self.to, self.pool) {
            (Some(to), None) => to,
            (None, Some(pool)) => format!("pool:{pool}"),
            _ => return Err(bad("give to (a client id or pool:NAME) or pool")),
        };
        if self.timeout_s.is_some_and(|t| !(1..=MAX_TIMEOUT_S).contains(&t)) {
            return Err(bad(format!("timeout_s must be between 1 and {MAX_TIMEOUT_S}")));
        }
        Ok(AgentOp::TaskAssign { to, title: self.title, description: self.description, payload: self.payload.unwrap_or(Value::Null), timeout_s: self.timeout_s })
    }
}

/// `task.update`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateParams {
    /// The task's id (or `task_id`).
    #[serde(alias = "task_id")]
    pub id: String,
    /// The new state, not submitted (or `status`).
    #[serde(alias = "status")]
    #[schema(inline)]
    pub state: Option<TaskState>,
    /// Progress so far (any JSON, at most 64 KiB).
    pub progress: Option<Value>,
    /// The result (any JSON, at most 64 KiB).
    pub result: Option<Value>,
}

impl AgentParams for UpdateParams {
    fn op(self) -> Result<AgentOp, RoomError> {
        json_size("progress", &self.progress)?;
        json_size("result", &self.result)?;
        Ok(AgentOp::TaskUpdate { id: self.id, state: self.state, progress: self.progress, result: self.result })
    }
}

/// `task.get`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskParams {
    /// The task's id (or `task_id`).
    #[serde(alias = "task_id")]
    pub id: String,
}

impl AgentParams for TaskParams {
    fn op(self) -> Result<AgentOp, RoomError> {
        Ok(AgentOp::TaskGet { id: self.id })
    }
}

/// `task.cancel`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelParams {
    /// The task's id (or `task_id`).
    #[serde(alias = "task_id")]
    pub id: String,
}

impl AgentParams for CancelParams {
    fn op(self) -> Result<AgentOp, RoomError> {
        Ok(AgentOp::TaskCancel { id: self.id })
    }
}

/// `task.list`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskListParams {
    pub assignee: Option<String>,
    #[schema(inline)]
    pub state: Option<TaskState>,
    pub assigner: Option<String>,
}

impl AgentParams for TaskListParams {
    fn op(self) -> Result<AgentOp, RoomError> {
        Ok(AgentOp::TaskList { assignee: self.assignee, state: self.state, assigner: self.assigner })
    }
}
