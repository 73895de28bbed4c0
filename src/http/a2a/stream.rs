//! The SSE body of `SendStreamingMessage` and `SubscribeToTask`: the task first, then each of
//! its `statusUpdate` / `artifactUpdate` events as a JSON-RPC answer, until a status that ends
//! the stream (final, or input-required). A comment line every [`HEARTBEAT`] keeps proxies from
//! closing a quiet stream; the stream also ends when its task is forgotten (the table's TTL).

use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::Stream;
use serde_json::{json, Value};
use tokio::sync::broadcast::{error::RecvError, Receiver};

use super::tasks::Task;
use super::wire::rpc_result;

/// Comment interval on a quiet stream.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Whether an event is a status that ends a stream.
pub fn ends_stream(event: &Value) -> bool {
    let state = event.pointer("/statusUpdate/status/state").and_then(Value::as_str);
    matches!(
        state,
        Some("TASK_STATE_COMPLETED" | "TASK_STATE_FAILED" | "TASK_STATE_CANCELED" | "TASK_STATE_REJECTED" | "TASK_STATE_INPUT_REQUIRED")
    )
}

/// One SSE event carrying a JSON-RPC answer.
fn frame(id: &Value, result: Value) -> Bytes {
    Bytes::from(format!("data: {}\n\n", rpc_result(id, Ok(result))))
}

/// The stream of the request `id` following `task`.
pub fn events(id: Value, task: Task, rx: Receiver<Value>) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let done = task.status.state.ends_stream();
    let first = frame(&id, json!({ "task": task }));
    futures_util::stream::unfold((Some(first), rx, done, id), |(first, mut rx, done, id)| async move {
        if let Some(first) = first {
            return Some((Ok(first), (None, rx, done, id)));
        }
        if done {
            return None;
        }
        loop {
            match tokio::time::timeout(HEARTBEAT, rx.recv()).await {
                Err(_) => return Some((Ok(Bytes::from_static(b": ping\n\n")), (None, rx, false, id))),
                Ok(Ok(ev)) => {
                    let done = ends_stream(&ev);
                    return Some((Ok(frame(&id, ev)), (None, rx, done, id)));
                }
                Ok(Err(RecvError::Lagged(_))) => continue,
                Ok(Err(RecvError::Closed)) => return None,
            }
        }
    })
}
