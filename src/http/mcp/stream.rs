//! A session's listening stream (`GET /mcp`): the messages that arrive for the agent after it
//! opened, as `notifications/message` events, read by long-polls of its inbox. The stream ends when
//! the session does (`DELETE /mcp`); a comment line every [`KEEPALIVE`] keeps proxies from closing
//! it while nothing arrives.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use agent_bridge_actors::router::PollFrom;
use agent_bridge_protocol::Message;
use futures_util::Stream;
#[allow(deprecated)]
use rmcp::model::{
    JsonRpcNotification, JsonRpcVersion2_0, LoggingLevel, LoggingMessageNotificationParam, Notification, ServerNotification,
};
use tokio::sync::watch;

use super::session::Session;
use crate::cli::mcp::tools::message_json;
use crate::http::{api, ApiError, AppState};

/// The longest silence on the stream.
const KEEPALIVE: Duration = Duration::from_secs(20);
/// Messages per poll.
const PAGE: usize = 100;

/// What the stream carries between events.
struct Listening {
    state: Arc<AppState>,
    client_id: String,
    /// The inbox seq after the last message pushed.
    after: u64,
    closed: watch::Receiver<bool>,
}

/// One message as a `notifications/message` SSE event.
// Log notifications are deprecated from 2026-07-28 on, which has no listening stream; the session
// revisions (2025-11-25 and older) that have one know no other server-to-client message for this.
#[allow(deprecated)]
fn event(m: &Message) -> String {
    let param = LoggingMessageNotificationParam::new(LoggingLevel::Info, message_json(m, Some(m.seq))).with_logger("agent-bridge");
    let note = JsonRpcNotification {
        jsonrpc: JsonRpcVersion2_0,
        notification: ServerNotification::LoggingMessageNotification(Notification::new(param)),
    };
    let data = serde_json::to_string(&note).unwrap_or_default();
    format!("event: message\nid: {}\ndata: {data}\n\n", m.seq)
}

/// The stream of a session, from what its inbox holds now on.
pub async fn listen(state: Arc<AppState>, session: Arc<Session>) -> Result<impl Stream<Item = Result<Bytes, actix_web::Error>>, ApiError> {
    let client_id = session.client_id.clone();
    let (_, after) = api::poll(&state, &client_id, PollFrom::Seq(u64::MAX), 1, 0.0).await?;
    let closed = session.closed.subscribe();
    let start = Listening { state, client_id, after, closed };
    Ok(futures_util::stream::unfold(start, |mut l| async move {
        if *l.closed.borrow() {
            return None;
        }
        let polled = tokio::select! {
            _ = l.closed.changed() => return None,
            p = api::poll(&l.state, &l.client_id, PollFrom::Seq(l.after), PAGE, KEEPALIVE.as_secs_f64()) => p,
        };
        let chunk = match polled {
            Ok((messages, _)) if messages.is_empty() => ": keepalive\n\n".to_owned(),
            Ok((messages, next)) => {
                l.after = next.max(l.after);
                messages.iter().map(event).collect()
            }
            Err(e) => {
                tracing::warn!(client_id = %l.client_id, error = %e, "mcp listening stream ended");
                return None;
            }
        };
        Some((Ok(Bytes::from(chunk)), l))
    }))
}
