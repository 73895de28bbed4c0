//! The A2A task table: every task the gateway opened, its state, artifacts and the live streams
//! that follow it.
//!
//! Kept in the HTTP layer behind one mutex rather than in an actor: a task changes a handful of
//! times in its life and every change is a few map operations, so no handler ever waits on it for
//! long. Memory is bounded: at most [`MAX_TASKS`] tasks, each forgotten [`TASK_TTL`] after its
//! last change; when the table is full the oldest finished task makes room, and with no finished
//! task to drop a new task is refused (`-32603`, "too many open tasks").

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::wire::{now_rfc3339, A2aError};

/// The most tasks held at once.
pub const MAX_TASKS: usize = 10_000;
/// How long a task is kept after its last change.
pub const TASK_TTL: Duration = Duration::from_secs(3600);
/// Events buffered per task for a slow stream reader (it then skips to the newest).
const EVENTS: usize = 32;

/// A task's state, as the 1.0 JSON binding spells it (`TASK_STATE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum State {
    #[serde(rename = "TASK_STATE_SUBMITTED")]
    Submitted,
    #[serde(rename = "TASK_STATE_WORKING")]
    Working,
    #[serde(rename = "TASK_STATE_INPUT_REQUIRED")]
    InputRequired,
    #[serde(rename = "TASK_STATE_COMPLETED")]
    Completed,
    #[serde(rename = "TASK_STATE_FAILED")]
    Failed,
    #[serde(rename = "TASK_STATE_CANCELED")]
    Canceled,
    #[serde(rename = "TASK_STATE_REJECTED")]
    Rejected,
}

impl State {
    /// The state an agent's reply names in its payload's `state` (default `completed`).
    pub fn from_reply(s: Option<&str>) -> State {
        match s {
            Some("input-required" | "input_required") => State::InputRequired,
            Some("failed") => State::Failed,
            Some("rejected") => State::Rejected,
            Some("working") => State::Working,
            _ => State::Completed,
        }
    }

    /// No further change can happen.
    pub fn is_final(self) -> bool {
        matches!(self, State::Completed | State::Failed | State::Canceled | State::Rejected)
    }

    /// A stream following the task ends here (final, or waiting on the client).
    pub fn ends_stream(self) -> bool {
        self.is_final() || self == State::InputRequired
    }
}

/// `TaskStatus`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Value>,
    pub timestamp: String,
}

/// `Task`, as returned by `SendMessage`, `GetTask` and `CancelTask`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    pub context_id: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Value>,
    pub history: Vec<Value>,
    pub metadata: Value,
}

/// One row of the table.
struct Entry {
    task: Task,
    /// The broker client the task was sent to; only it may answer.
    agent: String,
    /// `StreamResponse` events for the streams that follow the task.
    events: broadcast::Sender<Value>,
    touched: Instant,
}

/// The task table (see the module docs).
#[derive(Default)]
pub struct Tasks {
    rows: Mutex<HashMap<String, Entry>>,
}

/// What a change gives the caller: the task as it now is.
pub type Changed = Result<Task, A2aError>;

impl Tasks {
    /// Opens a task for `agent` with the client's first `message`; answers the task (submitted)
    /// and a receiver of its events.
    pub fn open(&self, agent: &str, context_id: String, message: Value) -> Result<(Task, broadcast::Receiver<Value>), A2aError> {
        let mut rows = self.rows.lock();
        make_room(&mut rows)?;
        let id = format!("task-{}", uuid::Uuid::now_v7());
        let message = tag(message, &id, &context_id);
        let task = Task {
            id: id.clone(),
            context_id,
            status: Status { state: State::Submitted, message: None, timestamp: now_rfc3339() },
            artifacts: Vec::new(),
            history: vec![message],
            metadata: json!({ "agent": agent }),
        };
        let (events, rx) = broadcast::channel(EVENTS);
        rows.insert(id, Entry { task: task.clone(), agent: agent.to_owned(), events, touched: Instant::now() });
        Ok((task, rx))
    }

    /// A client's follow-up `message` on a task waiting for input: it is working again.
    pub fn resume(&self, id: &str, message: Value) -> Result<(Task, String, broadcast::Receiver<Value>), A2aError> {
        let mut rows = self.rows.lock();
        let e = rows.get_mut(id).ok_or_else(|| A2aError::TaskNotFound(id.to_owned()))?;
        if e.task.status.state != State::InputRequired {
            return Err(A2aError::InvalidParams(format!("task {id} is not waiting for input")));
        }
        let message = tag(message, id, &e.task.context_id);
        e.task.history.push(message);
        e.task.status = Status { state: State::Submitted, message: None, timestamp: now_rfc3339() };
        e.touched = Instant::now();
        Ok((e.task.clone(), e.agent.clone(), e.events.subscribe()))
    }

    /// The task now (with at most `history_length` history messages when given).
    pub fn get(&self, id: &str, history_length: Option<usize>) -> Changed {
        let rows = self.rows.lock();
        let mut task = rows.get(id).map(|e| e.task.clone()).ok_or_else(|| A2aError::TaskNotFound(id.to_owned()))?;
        if let Some(n) = history_length {
            let skip = task.history.len().saturating_sub(n);
            task.history.drain(..skip);
        }
        Ok(task)
    }

    /// A receiver of the task's events, and the task now.
    pub fn follow(&self, id: &str) -> Result<(Task, broadcast::Receiver<Value>), A2aError> {
        let rows = self.rows.lock();
        let e = rows.get(id).ok_or_else(|| A2aError::TaskNotFound(id.to_owned()))?;
        Ok((e.task.clone(), e.events.subscribe()))
    }

    /// Moves a task to `state` (unless it is already final) and tells its streams.
    pub fn set_state(&self, id: &str, state: State, message: Option<Value>) -> Changed {
        let mut rows = self.rows.lock();
        let e = rows.get_mut(id).ok_or_else(|| A2aError::TaskNotFound(id.to_owned()))?;
        if e.task.status.state.is_final() {
            return Err(A2aError::NotCancelable(id.to_owned()));
        }
        e.task.status = Status { state, message, timestamp: now_rfc3339() };
        e.touched = Instant::now();
        let _ = e.events.send(json!({ "statusUpdate": status_event(&e.task) }));
        Ok(e.task.clone())
    }

    /// The agent `from` answered task `id` with a broker message payload: an artifact (when it
    /// completed) and a status. A reply from another client, or to a finished task, is ignored.
    pub fn reply(&self, id: &str, from: &str, payload: &Value) -> Option<Task> {
        let state = State::from_reply(payload.get("state").and_then(Value::as_str));
        let parts = reply_parts(payload);
        let mut rows = self.rows.lock();
        let e = rows.get_mut(id).filter(|e| e.agent == from && !e.task.status.state.is_final())?;
        if e.task.status.state == State::Submitted {
            // The answer overtook the gateway's `working` (the agent clearly has the message):
            // streams still see submitted, working, then the answer.
            e.task.status = Status { state: State::Working, message: None, timestamp: now_rfc3339() };
            let _ = e.events.send(json!({ "statusUpdate": status_event(&e.task) }));
        }
        let message = json!({
            "messageId": format!("msg-{}", uuid::Uuid::now_v7()), "role": "ROLE_AGENT",
            "taskId": id, "contextId": e.task.context_id, "parts": parts,
        });
        if state == State::Completed && !parts.is_empty() {
            let artifact = json!({ "artifactId": format!("artifact-{}", e.task.artifacts.len() + 1), "name": "answer", "parts": parts });
            e.task.artifacts.push(artifact.clone());
            let event = json!({ "taskId": id, "contextId": e.task.context_id, "artifact": artifact, "append": false, "lastChunk": true });
            let _ = e.events.send(json!({ "artifactUpdate": event }));
        }
        e.task.history.push(message.clone());
        e.task.status = Status { state, message: Some(message), timestamp: now_rfc3339() };
        e.touched = Instant::now();
        let _ = e.events.send(json!({ "statusUpdate": status_event(&e.task) }));
        Some(e.task.clone())
    }

    /// Moves a task that is still `submitted` to `working` (the agent has it); a reply that came
    /// first wins.
    pub fn working(&self, id: &str) {
        let submitted = self.rows.lock().get(id).is_some_and(|e| e.task.status.state == State::Submitted);
        if submitted {
            let _ = self.set_state(id, State::Working, None);
        }
    }

    /// The agent a task was sent to.
    pub fn agent(&self, id: &str) -> Result<String, A2aError> {
        self.rows.lock().get(id).map(|e| e.agent.clone()).ok_or_else(|| A2aError::TaskNotFound(id.to_owned()))
    }

    /// How many tasks are held.
    pub fn len(&self) -> usize {
        self.rows.lock().len()
    }
}

/// Drops expired tasks; with the table still full, the oldest finished one; else refuses.
fn make_room(rows: &mut HashMap<String, Entry>) -> Result<(), A2aError> {
    rows.retain(|_, e| e.touched.elapsed() < TASK_TTL);
    if rows.len() < MAX_TASKS {
        return Ok(());
    }
    let oldest = rows.iter().filter(|(_, e)| e.task.status.state.is_final()).min_by_key(|(_, e)| e.touched).map(|(k, _)| k.clone());
    match oldest {
        Some(k) => {
            rows.remove(&k);
            Ok(())
        }
        None => Err(A2aError::Internal(format!("too many open tasks (at most {MAX_TASKS})"))),
    }
}

/// A client message with the task's ids filled in.
fn tag(mut message: Value, id: &str, context_id: &str) -> Value {
    if let Some(m) = message.as_object_mut() {
        m.insert("taskId".into(), id.into());
        m.insert("contextId".into(), context_id.into());
    }
    message
}

/// `TaskStatusUpdateEvent` for the task's current status.
pub fn status_event(task: &Task) -> Value {
    json!({ "taskId": task.id, "contextId": task.context_id, "status": task.status })
}

/// The A2A parts of a reply payload: its `parts`, else its `text`, else the payload itself (a
/// string as text, anything else as data).
fn reply_parts(payload: &Value) -> Vec<Value> {
    if let Some(parts) = payload.get("parts").and_then(Value::as_array) {
        return parts.clone();
    }
    match payload.get("text").or(payload.as_str().map(|_| payload)) {
        Some(Value::String(t)) => vec![json!({ "text": t })],
        _ if payload.is_null() => Vec::new(),
        _ => vec![json!({ "data": payload })],
    }
}
