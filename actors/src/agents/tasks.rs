//! Tasks (`task.*`): the A2A lifecycle, kept in the `tasks` tree. A task is handed to its assignee
//! as a `task` message (correlation id = task id); every change goes to the assigner as a
//! `task_updated` message and onto the event bus. A task past its deadline fails (`timeout`).

use actix::prelude::*;
use agent_bridge_protocol::ids::Recipient as To;
use agent_bridge_protocol::Timestamp;
use serde_json::{json, Value};

use super::records::TaskRecord;
use super::registry::{Agents, BROKER};
use crate::events::{BridgeEvent, EventKind};
use crate::messages::*;
use crate::supervisor::Supervisee;

/// Most tasks kept, and bytes of them; beyond either the oldest finished ones are forgotten, and
/// when that is not enough a new task (or an update that grows one) is refused with
/// `quota_exceeded`. Bounds what the registry holds. (Tasks come at the pace of agents, so the
/// total is summed when needed rather than kept.)
pub(super) const MAX_TASKS: usize = 10_000;
pub(super) const MAX_TASK_BYTES: usize = 64 << 20;

/// What a task costs in memory, roughly.
fn size(t: &TaskRecord) -> usize {
    let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
    t.id.len() + t.assigner.len() + t.assignee.len() + t.title.len() + t.payload.len() + opt(&t.description) + opt(&t.progress) + opt(&t.result) + 256
}

/// A JSON value kept as text.
fn text(v: &Value) -> String {
    v.to_string()
}

impl Agents {
    /// `task.assign`: to an agent, or to a pool (its balancer picks the member).
    pub(super) fn assign(&mut self, caller: String, to: String, title: (String, Option<String>), payload: Value, timeout_s: Option<u64>) -> ResponseActFuture<Self, Result<Value, RoomError>> {
        let target = match To::parse(&to) {
            Ok(To::Client(c)) => Ok(c.to_owned()),
            Ok(To::Pool(p)) => Err(p.to_owned()),
            Ok(To::Broadcast) => return Box::pin(fut::ready(Err(RoomError::InvalidParams("a task goes to one agent or a pool, not to all".into())))),
            Err(e) => return Box::pin(fut::ready(Err(RoomError::InvalidParams(e.to_string())))),
        };
        match target {
            Ok(client) => {
                let r = self.create_task(&caller, client, None, title, &payload, timeout_s);
                Box::pin(self.durable(r).into_actor(self))
            }
            Err(pool) => {
                let Some(lb) = self.pools.get(&pool) else { return Box::pin(fut::ready(Err(RoomError::PoolEmpty(pool)))) };
                let pick = lb.send(Pick { key: None });
                Box::pin(pick.into_actor(self).then(move |picked, act, ctx| {
                    let r = match picked {
                        Ok(Some(member)) => act.guard(ctx, |a, _| a.create_task(&caller, member, Some(pool), title, &payload, timeout_s)),
                        Ok(None) => Err(RoomError::PoolEmpty(pool)),
                        Err(e) => Err(e.into()),
                    };
                    act.durable(r).into_actor(act)
                }))
            }
        }
    }

    fn create_task(&mut self, caller: &str, assignee: String, pool: Option<String>, (title, description): (String, Option<String>), payload: &Value, timeout_s: Option<u64>) -> Result<Value, RoomError> {
        let full = |a: &Self| a.tasks.len() >= MAX_TASKS || a.task_bytes() >= MAX_TASK_BYTES;
        if full(self) {
            self.forget_finished();
            if full(self) {
                return Err(RoomError::Limit(format!("the broker keeps at most {MAX_TASKS} tasks or {MAX_TASK_BYTES} bytes of them, and none has finished")));
            }
        }
        let now = Timestamp::now().millis();
        let id = format!("task-{}", uuid::Uuid::now_v7().simple());
        let task = TaskRecord {
            id: id.clone(),
            assigner: caller.to_owned(),
            assignee,
            pool,
            title,
            description,
            payload: text(payload),
            state: TaskState::Submitted,
            progress: None,
            result: None,
            created_ms: now,
            updated_ms: now,
            deadline_ms: timeout_s.map(|t| now.saturating_add(i64::try_from(t.saturating_mul(1000)).unwrap_or(i64::MAX))),
        };
        self.store.put_task(&id, &task)?;
        let shown = task.to_json();
        self.send(caller, &task.assignee, "task", &shown, &id);
        self.tasks.insert(id, task);
        Ok(shown)
    }

    fn task_bytes(&self) -> usize {
        self.tasks.values().map(size).sum()
    }

    /// Drops the oldest half of the finished tasks (memory and store).
    fn forget_finished(&mut self) {
        let mut done: Vec<(i64, String)> = self.tasks.values().filter(|t| t.state.is_final()).map(|t| (t.updated_ms, t.id.clone())).collect();
        done.sort();
        for (_, id) in done.iter().take(done.len().div_ceil(2)) {
            self.tasks.remove(id);
            let _ = self.store.remove_task(id);
        }
    }

    /// Records a change and tells the assigner and the bus.
    fn changed(&mut self, id: &str, by: &str) -> Result<Value, RoomError> {
        let task = self.tasks.get_mut(id).ok_or_else(|| RoomError::NotFound(format!("no task {id:?}")))?;
        task.updated_ms = Timestamp::now().millis();
        self.store.put_task(id, &*task)?;
        let shown = task.to_json();
        let (assigner, assignee) = (task.assigner.clone(), task.assignee.clone());
        self.send(by, &assigner, "task_updated", &shown, id);
        let bus = self.child.events();
        if bus.watched() {
            bus.publish(BridgeEvent::now(EventKind::TaskUpdated, Some(assignee), None, shown.clone()));
        }
        Ok(shown)
    }

    fn party(&self, caller: &str, id: &str) -> Result<&TaskRecord, RoomError> {
        match self.tasks.get(id) {
            Some(t) if t.assigner == caller || t.assignee == caller => Ok(t),
            _ => Err(RoomError::NotFound(format!("no task {id:?} assigned by or to {caller:?}"))),
        }
    }

    /// `task.update`, by the assignee.
    pub(super) fn update(&mut self, caller: &str, id: &str, state: Option<TaskState>, progress: Option<Value>, result: Option<Value>) -> Result<Value, RoomError> {
        let task = self.party(caller, id)?;
        if task.assignee != caller {
            return Err(RoomError::Forbidden(format!("only the assignee {:?} updates task {id:?}", task.assignee)));
        }
        if task.state.is_final() {
            return Err(RoomError::InvalidParams(format!("task {id:?} is {:?}: nothing follows", task.state)));
        }
        if state == Some(TaskState::Submitted) {
            return Err(RoomError::InvalidParams("a task cannot go back to submitted".into()));
        }
        let mut task = task.clone();
        if let Some(s) = state {
            task.state = s;
        }
        if let Some(p) = &progress {
            task.progress = Some(text(p));
        }
        if let Some(r) = &result {
            task.result = Some(text(r));
        }
        let grows = size(&task).saturating_sub(self.tasks.get(id).map_or(0, size));
        if grows > 0 && self.task_bytes() + grows > MAX_TASK_BYTES {
            return Err(RoomError::Limit(format!("the broker keeps at most {MAX_TASK_BYTES} bytes of tasks")));
        }
        self.tasks.insert(id.to_owned(), task);
        self.progress(caller);
        self.changed(id, caller)
    }

    /// `task.cancel`, by the assigner; the assignee gets a `task_canceled` message.
    pub(super) fn cancel(&mut self, caller: &str, id: &str) -> Result<Value, RoomError> {
        let task = self.party(caller, id)?;
        if task.assigner != caller {
            return Err(RoomError::Forbidden(format!("only the assigner {:?} cancels task {id:?}", task.assigner)));
        }
        if task.state.is_final() {
            return Err(RoomError::InvalidParams(format!("task {id:?} is {:?}: nothing follows", task.state)));
        }
        let assignee = task.assignee.clone();
        self.tasks.get_mut(id).expect("checked above").state = TaskState::Canceled;
        let shown = self.changed(id, caller)?;
        self.send(caller, &assignee, "task_canceled", &shown, id);
        Ok(shown)
    }

    pub(super) fn get_task(&self, caller: &str, id: &str) -> Result<Value, RoomError> {
        Ok(self.party(caller, id)?.to_json())
    }

    /// `task.list`: the caller's tasks (assigned by or to it), newest first, filtered.
    pub(super) fn list_tasks(&self, caller: &str, assignee: Option<&str>, state: Option<TaskState>, assigner: Option<&str>) -> Value {
        let mut tasks: Vec<&TaskRecord> = self
            .tasks
            .values()
            .filter(|t| t.assigner == caller || t.assignee == caller)
            .filter(|t| assignee.is_none_or(|a| t.assignee == a))
            .filter(|t| assigner.is_none_or(|a| t.assigner == a))
            .filter(|t| state.is_none_or(|s| t.state == s))
            .collect();
        tasks.sort_by(|a, b| b.id.cmp(&a.id));
        let list: Vec<Value> = tasks.iter().take(1000).map(|t| t.to_json()).collect();
        json!({ "count": list.len(), "tasks": list })
    }

    /// Unfinished tasks past their deadline fail with `timeout`.
    pub(super) fn expire_tasks(&mut self) {
        let now = Timestamp::now().millis();
        let due: Vec<String> = self.tasks.values().filter(|t| !t.state.is_final() && t.deadline_ms.is_some_and(|d| d <= now)).map(|t| t.id.clone()).collect();
        for id in due {
            if let Some(t) = self.tasks.get_mut(&id) {
                t.state = TaskState::Failed;
                t.result = Some(text(&json!({ "error": "timeout" })));
            }
            if let Err(e) = self.changed(&id, BROKER) {
                tracing::error!(actor = Agents::NAME, error = %e, "task timeout");
            }
        }
    }
}
