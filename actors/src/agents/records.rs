//! What the registry stores (versioned bincode through [`Stored`]), its settings, and the JSON
//! the calls answer.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::messages::{AgentState, TaskState};
use crate::store::Stored;
use crate::supervisor::Intensity;

/// The registry's settings.
#[derive(Debug, Clone)]
pub struct AgentsConfig {
    /// An agent `working` without progress (an `agent.status` or `task.update` from it) for this
    /// long is marked `stuck`.
    pub stuck_after: Duration,
    /// Restart intensity of the registry and the balancers.
    pub intensity: Intensity,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig { stuck_after: Duration::from_secs(300), intensity: Intensity::default() }
    }
}

/// An agent's registration (`agent.register`), kept in the `agents` tree under its client id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentRecord {
    pub client_id: String,
    pub capabilities: Vec<String>,
    pub pools: Vec<String>,
    pub weight: u32,
    pub description: Option<String>,
    pub registered_at_ms: i64,
}

impl Stored for AgentRecord {
    const WHAT: &'static str = "agent registration";
}

/// A task (`task.assign`), kept in the `tasks` tree under its id. JSON values are kept as text:
/// bincode cannot read `serde_json::Value` back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub assigner: String,
    pub assignee: String,
    /// The pool it was assigned through, if any.
    pub pool: Option<String>,
    pub title: String,
    pub description: Option<String>,
    pub payload: String,
    pub state: TaskState,
    pub progress: Option<String>,
    pub result: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub deadline_ms: Option<i64>,
}

impl Stored for TaskRecord {
    const WHAT: &'static str = "task";
}

fn parsed(text: &Option<String>) -> Value {
    text.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null)
}

impl TaskRecord {
    /// The task as calls and `task_updated` messages show it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "assigner": self.assigner, "assignee": self.assignee, "pool": self.pool,
            "title": self.title, "description": self.description, "payload": serde_json::from_str::<Value>(&self.payload).unwrap_or(Value::Null),
            "state": self.state, "progress": parsed(&self.progress), "result": parsed(&self.result),
            "created_ms": self.created_ms, "updated_ms": self.updated_ms, "deadline_ms": self.deadline_ms,
        })
    }
}

/// An agent as `agent.list` shows it.
pub fn agent_json(record: &AgentRecord, status: AgentState, detail: Option<&str>, online: bool) -> Value {
    json!({
        "client_id": record.client_id, "capabilities": record.capabilities, "pools": record.pools,
        "weight": record.weight, "description": record.description, "status": status, "detail": detail,
        "online": online, "registered_at_ms": record.registered_at_ms,
    })
}
