//! The messaging API for HTTP clients: send (one or a batch), long-poll, ack, status.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use agent_bridge_actors::ack_tracker::Acknowledge;
use agent_bridge_actors::delivery::Envelope;
use agent_bridge_actors::router::{Poll, PollFrom, Polled, Seen};
use agent_bridge_actors::batch::Batch;
use agent_bridge_actors::messages::{RouteError, Routed};
use agent_bridge_protocol::batch::{BATCH_TOO_LARGE, MAX_BATCH_BYTES, MAX_BATCH_MESSAGES};
use agent_bridge_protocol::frames::extract_ref;
use agent_bridge_protocol::http::{AckRequest, MessagesPage, SendBatchRequest, SendBatchResponse, SendRequest, SendResponse};
use agent_bridge_protocol::ids::validate_client_id;
use agent_bridge_protocol::{Message, Payload, ProtocolError, Timestamp};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::{parse_json, read_body, ApiError, AppState};
use agent_bridge_actors::auth::Permission;

/// Largest page.
const MAX_LIMIT: usize = 1000;

/// `POST /api/send`.
pub async fn send(caller: Caller, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Before the body is read: a read-only key is refused at once.
    caller.require(Permission::Write)?;
    let body = read_body(payload, state.config.max_frame_bytes).await?;
    let req: SendRequest = parse_json(&body, "send request")?;
    let routed = route_send(&state, &caller, req).await?;
    // The same vocabulary as the WebSocket `sent` frame.
    let status = serde_json::to_value(routed.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    Ok(HttpResponse::Ok().json(SendResponse {
        status,
        message_id: routed.message_id,
        seq: routed.seq,
        recipients: routed.recipients,
    }))
}

/// Routes a message sent over HTTP (`POST /api/send`, the `/mcp` tools) as its caller, through
/// the same checks as every `POST /api/send` ([`send_one`]).
pub async fn route_send(state: &AppState, caller: &Caller, req: SendRequest) -> Result<Routed, ApiError> {
    caller.require(Permission::Write)?;
    Ok(send_one(caller, req, state, false)?.await?)
}

/// `POST /api/send_batch`: every entry goes through [`send_one`], all are routed in order before
/// any is awaited, and one answer lists each entry's result (PROTOCOL.md section 7). A body over
/// [`MAX_BATCH_BYTES`] or more than [`MAX_BATCH_MESSAGES`] entries is refused whole with 413
/// `batch_too_large`; an empty list with 400 `bad_frame`.
pub async fn send_batch(caller: Caller, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Write)?;
    let body = read_body(payload, MAX_BATCH_BYTES).await.map_err(|e| match e.code {
        "too_large" => batch_too_large(e.message),
        _ => e,
    })?;
    let req: SendBatchRequest = parse_json(&body, "batch")?;
    let count = req.messages.len();
    if count == 0 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_frame", "a batch needs at least one message"));
    }
    if count > MAX_BATCH_MESSAGES {
        return Err(batch_too_large(format!("a batch of {count} messages exceeds the limit of {MAX_BATCH_MESSAGES}")));
    }
    let mut batch = Batch::with_capacity(count);
    for (index, entry) in req.messages.iter().enumerate() {
        // An entry's `ref` is echoed in its result, as over WebSocket.
        let r#ref = extract_ref(entry.json());
        // The request paid one token of the key's rate limit; every further entry pays its own.
        match send_entry(&caller, entry, &state, index > 0) {
            Ok(reply) => batch.routed(index, r#ref, reply),
            Err(e) => batch.refuse(index, r#ref, e.code, e.message, e.retry_after),
        }
    }
    let results = batch.results().await;
    Ok(HttpResponse::Ok().json(SendBatchResponse { status: "sent_batch".into(), results }))
}

fn batch_too_large(message: String) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, BATCH_TOO_LARGE, message)
}

/// One entry of a batch: at most `max_frame_bytes`, a `POST /api/send` body, then [`send_one`].
fn send_entry(caller: &Caller, entry: &Payload, state: &AppState, charge: bool) -> Result<RouteReply, ApiError> {
    let limit = state.config.max_frame_bytes;
    if entry.len() > limit {
        return Err(ProtocolError::TooLarge { size: entry.len(), limit }.into());
    }
    let req: SendRequest = parse_json(entry.json().as_bytes(), "batch entry")?;
    send_one(caller, req, state, charge)
}

/// The router's answer to one send, resolving once the message is durable.
type RouteReply = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Routed, RouteError>>>>;

/// What `POST /api/send` and every entry of `POST /api/send_batch` go through: `from` must be a
/// client id the credentials allow (403 otherwise; keys naming exactly one client id may leave
/// it out); with `charge`, one token of the key's rate limit (429 `rate_limited`); counted in the
/// key's usage; validated ([`Envelope::from_http`]); then routed. The message is in its shard's
/// mailbox when this returns.
fn send_one(caller: &Caller, req: SendRequest, state: &AppState, charge: bool) -> Result<RouteReply, ApiError> {
    let Some(from) = caller.client_id(req.from.as_deref())? else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_frame", "missing field \"from\" in send request"));
    };
    if let Some(key) = &caller.key {
        if charge {
            key.take()?;
        }
        key.used_message();
    }
    let env = Envelope::from_http(req, &from)?;
    let router = &state.broker.router;
    router.shard(&from).seen.do_send(Seen(from.clone()));
    Ok(Box::pin(router.route(env)))
}

/// Query of `GET /api/messages`.
#[derive(Debug, Deserialize)]
pub struct MessagesQuery {
    to: Option<String>,
    since: Option<String>,
    limit: Option<String>,
    wait: Option<String>,
}

fn bad(msg: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", msg)
}

/// `GET /api/messages`: a page of the inbox, oldest first; with `wait`, a long-poll.
pub async fn messages(caller: Caller, query: web::Query<MessagesQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    // A key bound to exactly one client id may leave `to` out (the original extension's popup does).
    let Some(to) = caller.client_id(q.to.as_deref())? else {
        return Err(bad(
            "missing query parameter \"to\": the client id whose inbox to read (it may be left out only with \
             credentials bound to exactly one client id)"
                .into(),
        ));
    };
    caller.act_as(&to, Permission::Read)?;
    let max_wait_s = state.config.long_poll_max_s;
    let from = match q.since.as_deref().map(str::trim) {
        None | Some("") => PollFrom::Queue,
        Some(s) => poll_from(s)?,
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => 100,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(bad(format!("limit={s:?} must be a number from 1 to {MAX_LIMIT}"))),
        },
    };
    let wait = match q.wait.as_deref() {
        None | Some("") => 0.0,
        Some(s) => match s.parse::<f64>() {
            Ok(w) if (0.0..=max_wait_s).contains(&w) => w,
            _ => return Err(bad(format!("wait={s:?} must be a number of seconds from 0 to {max_wait_s}"))),
        },
    };
    let (messages, next_since) = poll(&state, &to, from, limit, wait).await?;
    Ok(HttpResponse::Ok().json(MessagesPage { count: messages.len(), messages, next_since }))
}

/// A page of `to`'s inbox from `from`; when it is empty, waits up to `wait` seconds for a message
/// (a long-poll). Answers the messages and where the next page starts.
pub async fn poll(state: &AppState, to: &str, from: PollFrom, limit: usize, wait: f64) -> Result<(Vec<Message>, u64), ApiError> {
    let mut deadline = Instant::now() + Duration::from_secs_f64(wait);
    let shard = state.broker.router.shard(to).poll.clone();
    loop {
        let waiting = Instant::now() < deadline;
        let polled = shard.send(Poll { client_id: to.to_owned(), from, limit, wait: waiting, seen: true }).await.map_err(|e| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("router unavailable: {e}"))
        })??;
        match polled {
            Polled::Page { messages, next_since } => return Ok((messages, next_since)),
            Polled::Wait { wake, .. } => {
                let left = deadline.saturating_duration_since(Instant::now());
                let _parked = Parked::new(&state.long_polls_waiting);
                // Woken or timed out, poll once more from the same position (never skips). A
                // wake-up dropped unsent (`DELETE /admin/clients/{id}`) ends the wait at once.
                if let Ok(Err(_)) = tokio::time::timeout(left, wake).await {
                    deadline = Instant::now();
                }
            }
        }
    }
}

/// Counts a long-poll in [`AppState::long_polls_waiting`] while it is parked at its shard, also
/// when the client goes away and the handler is dropped.
struct Parked<'a>(&'a AtomicUsize);

impl<'a> Parked<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Parked(count)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Integers below this are seqs; numbers at or above it are unix milliseconds (10^11 ms is
/// 1973-03-03, 10^11 s is the year 5138).
pub const SEQ_LIMIT: u64 = 100_000_000_000;

/// Reads `since` of `GET /api/messages`, unambiguously:
/// - an integer below 10^11 is a seq (`since=42`);
/// - a number with a decimal point below 10^11 is unix seconds (`since=1796156836.1125891`, the
///   original desktop clients' `time.time()`);
/// - a number at or above 10^11 is unix milliseconds (`since=1796156836112`, the clipboard
///   client's `Date.now()`);
/// - anything else must be an RFC 3339 time (`since=2026-11-22T09:10:12.345Z`).
///
/// Times return the messages stamped later than the time (stamps have millisecond resolution).
pub fn poll_from(s: &str) -> Result<PollFrom, ApiError> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !(digits(int) && frac.into_iter().all(digits)) {
        return Timestamp::parse_rfc3339(s).map(PollFrom::Time).ok_or_else(|| {
            bad(format!(
                "since={s:?} is neither a seq (an integer below 10^11), unix seconds (a decimal number like \
                 1796156836.25), unix milliseconds (a number from 10^11 on) nor an RFC 3339 time"
            ))
        });
    }
    // Numbers this long are past Timestamp::MAX in any unit: saturate.
    let whole: u64 = int.parse().unwrap_or(u64::MAX);
    let millis = match frac {
        None if whole < SEQ_LIMIT => return Ok(PollFrom::Seq(whole)),
        None => whole,
        Some(_) if whole >= SEQ_LIMIT => whole,
        Some(f) => {
            // Seconds: the first three decimals are milliseconds; the rest only rounds down.
            let ms: u64 = format!("{:0<3}", &f[..f.len().min(3)]).parse().unwrap_or(0);
            whole * 1000 + ms
        }
    };
    let millis = i64::try_from(millis).unwrap_or(i64::MAX).min(Timestamp::MAX.millis());
    Ok(PollFrom::Time(Timestamp(millis)))
}

/// `POST /api/ack`.
pub async fn ack(caller: Caller, payload: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload, state.config.max_frame_bytes).await?;
    let req: AckRequest = parse_json(&body, "ack request")?;
    validate_client_id(&req.client_id)?;
    caller.act_as(&req.client_id, Permission::Read)?;
    if req.message_ids.len() > MAX_LIMIT {
        return Err(bad(format!("at most {MAX_LIMIT} message ids per ack")));
    }
    let tracker = &state.broker.tracker;
    let acks = req
        .message_ids
        .into_iter()
        .map(|message_id| tracker.send(Acknowledge { client_id: req.client_id.clone(), message_id }));
    let mut acked = 0;
    for r in futures_util::future::join_all(acks).await {
        if r.map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()))? {
            acked += 1;
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "acked": acked })))
}

/// `GET /api/whoami`: what the caller's credentials allow — the one client id they are bound to
/// (`null` when they name a pattern or several ids, or none), the patterns, the permissions. The CLI
/// uses it so that a key bound to one client id implies `--client-id`.
pub async fn whoami(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "subject": caller.subject,
        "client_id": caller.sole_client(),
        "clients": caller.clients.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "permissions": caller.permissions.names(),
    }))
}

/// `GET /api/status`.
pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(status_json(&state).await)
}

/// The broker's status, as `GET /api/status` (and the `/mcp` status tool) answer it.
pub async fn status_json(state: &AppState) -> serde_json::Value {
    let clients = state.broker.router.clients().await;
    let sessions: usize = clients.iter().map(|c| c.sessions.len()).sum();
    let online = clients.iter().filter(|c| !c.sessions.is_empty()).count();
    json!({
        "status": "running",
        "server": "agent-bridge",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": agent_bridge_protocol::PROTOCOL_VERSION,
        "uptime_s": state.started.elapsed().as_secs_f64(),
        "clients_online": online,
        "clients_known": clients.len(),
        "sessions": sessions,
        "long_polls_waiting": state.long_polls_waiting.load(Ordering::Relaxed),
        "router_shards": state.broker.router.shards().len(),
        "store_bytes": state.broker.store.size_on_disk(),
        "healthy": state.broker.tree.healthy(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_seq_seconds_milliseconds_or_rfc3339() {
        assert_eq!(poll_from("0").ok(), Some(PollFrom::Seq(0)));
        assert_eq!(poll_from("99999999999").ok(), Some(PollFrom::Seq(99_999_999_999)));
        assert_eq!(poll_from("100000000000").ok(), Some(PollFrom::Time(Timestamp(100_000_000_000))));
        assert_eq!(poll_from("1796156836112").ok(), Some(PollFrom::Time(Timestamp(1_796_156_836_112))));
        assert_eq!(poll_from("1796156836.1125891").ok(), Some(PollFrom::Time(Timestamp(1_796_156_836_112))));
        assert_eq!(poll_from("1796156836.5").ok(), Some(PollFrom::Time(Timestamp(1_796_156_836_500))));
        assert_eq!(poll_from("1796156836.0").ok(), Some(PollFrom::Time(Timestamp(1_796_156_836_000))));
        assert_eq!(poll_from("1796156836112.7").ok(), Some(PollFrom::Time(Timestamp(1_796_156_836_112))));
        assert_eq!(poll_from("99999999999999999999999").ok(), Some(PollFrom::Time(Timestamp::MAX)));
        assert_eq!(
            poll_from("2026-11-22T09:10:12.345Z").ok(),
            Timestamp::parse_rfc3339("2026-11-22T09:10:12.345Z").map(PollFrom::Time)
        );
        for bad in ["-1", "1.", ".5", "1e9", "1.2.3", "soon", "0x10"] {
            let e = poll_from(bad).expect_err(bad);
            assert_eq!(e.code, "bad_request", "{bad}");
            assert!(e.message.contains("10^11"), "{bad}: {}", e.message);
        }
    }
}
