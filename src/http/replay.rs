//! Message replay, timeline export and redelivery (PROTOCOL.md section 5):
//! `GET /admin/messages?client_id|room&from&to&limit&format=json|ndjson` reads a stream (a client's
//! inbox or a room) from the store, oldest first, without touching delivery state;
//! `POST /admin/messages/{id}/redeliver` routes a dead letter to its recipient again.
//!
//! `from` and `to` are seqs (inclusive) or RFC 3339 times. JSON answers one page of at most
//! [`MAX_PAGE`] with `next_from` to continue; NDJSON streams the whole range, one message per line,
//! reading the store a page at a time as the client reads (memory stays one page).

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use agent_bridge_actors::delivery::{Envelope, Target, Transport};
use agent_bridge_actors::store::{Store, StreamName};
use agent_bridge_protocol::ids::{validate_client_id, validate_room};
use agent_bridge_protocol::{Message, Timestamp};
use serde::Deserialize;
use serde_json::json;

use super::auth::Admin;
use super::{ApiError, AppState};

/// Largest JSON page.
const MAX_PAGE: usize = 10_000;
/// Messages read from the store at a time.
const CHUNK: usize = 1000;

/// Query of `GET /admin/messages`.
#[derive(Debug, Deserialize)]
pub struct ReplayQuery {
    client_id: Option<String>,
    room: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    format: Option<String>,
}

/// One end of the range: a seq or an instant.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Seq(u64),
    Time(Timestamp),
}

impl Bound {
    fn parse(value: Option<&str>, name: &str) -> Result<Option<Bound>, ApiError> {
        match value.map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => match s.parse::<u64>() {
                Ok(seq) => Ok(Some(Bound::Seq(seq))),
                Err(_) => Timestamp::parse_rfc3339(s).map(|t| Some(Bound::Time(t))).ok_or_else(|| {
                    bad(format!("{name}={s:?} is neither a sequence number nor an RFC 3339 time"))
                }),
            },
        }
    }
}

fn bad(msg: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", msg)
}

fn storage(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", e.to_string())
}

/// A validated replay: which stream, the range, how many.
struct Range {
    stream: StreamName,
    from: Option<Bound>,
    to: Option<Bound>,
    limit: usize,
}

impl Range {
    fn of(q: &ReplayQuery, max: usize, default: usize) -> Result<Range, ApiError> {
        let stream = match (q.client_id.as_deref(), q.room.as_deref()) {
            (Some(c), None) => {
                validate_client_id(c)?;
                StreamName::Inbox(c.to_owned())
            }
            (None, Some(r)) => {
                validate_room(r)?;
                StreamName::Room(r.to_owned())
            }
            _ => return Err(bad("give exactly one of the query parameters \"client_id\" and \"room\"".into())),
        };
        let limit = match q.limit.as_deref() {
            None | Some("") => default,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => return Err(bad(format!("limit={s:?} must be a number from 1 to {max}"))),
            },
        };
        Ok(Range { stream, from: Bound::parse(q.from.as_deref(), "from")?, to: Bound::parse(q.to.as_deref(), "to")?, limit })
    }

    /// The seq to read after first.
    fn start(&self) -> u64 {
        match self.from {
            Some(Bound::Seq(s)) => s.saturating_sub(1),
            _ => 0,
        }
    }

    /// Reads the next chunk after `after`: the messages in range, the seq to continue after, and
    /// whether the range is finished.
    fn chunk(&self, store: &Store, after: u64, want: usize) -> Result<(Vec<Message>, u64, bool), ApiError> {
        let page = store.range(self.stream.as_stream(), after, want.min(CHUNK)).map_err(storage)?;
        let Some(last) = page.last().map(|m| m.seq) else { return Ok((Vec::new(), after, true)) };
        let mut done = page.len() < want.min(CHUNK);
        let mut out = Vec::with_capacity(page.len());
        for m in page {
            let past = match self.to {
                Some(Bound::Seq(s)) => m.seq > s,
                Some(Bound::Time(t)) => m.timestamp > t,
                None => false,
            };
            if past {
                done = true;
                break;
            }
            if !matches!(self.from, Some(Bound::Time(t)) if m.timestamp < t) {
                out.push(m);
            }
        }
        Ok((out, last, done))
    }
}

/// `GET /admin/messages`: a page as JSON, or the whole range as NDJSON.
pub async fn messages(_admin: Admin, query: web::Query<ReplayQuery>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    match q.format.as_deref() {
        None | Some("") | Some("json") => json_page(&q, &state),
        Some("ndjson") => ndjson(&q, &state),
        Some(other) => Err(bad(format!("format={other:?}: use json or ndjson"))),
    }
}

fn json_page(q: &ReplayQuery, state: &AppState) -> Result<HttpResponse, ApiError> {
    let range = Range::of(q, MAX_PAGE, 1000)?;
    let mut after = range.start();
    let mut messages = Vec::new();
    let mut done = false;
    while !done && messages.len() < range.limit {
        let (chunk, last, finished) = range.chunk(&state.broker.store, after, range.limit - messages.len())?;
        messages.extend(chunk);
        after = last;
        done = finished;
    }
    messages.truncate(range.limit);
    let next_from = if done { None } else { messages.last().map(|m| m.seq + 1) };
    Ok(HttpResponse::Ok().json(json!({ "count": messages.len(), "messages": messages, "next_from": next_from })))
}

fn ndjson(q: &ReplayQuery, state: &AppState) -> Result<HttpResponse, ApiError> {
    let range = Range::of(q, usize::MAX, usize::MAX)?;
    let store = state.broker.store.clone();
    let start = (range.start(), range.limit, false);
    let lines = futures_util::stream::unfold((range, store, start), |(range, store, (after, left, done))| async move {
        if done || left == 0 {
            return None;
        }
        let (chunk, last, finished) = match range.chunk(&store, after, left) {
            Ok(c) => c,
            Err(e) => {
                // Headers are gone: the export ends with a line that says why.
                let line = format!("{}\n", json!({ "error": e.message, "code": e.code }));
                return Some((Ok::<_, actix_web::Error>(Bytes::from(line)), (range, store, (after, 0, true))));
            }
        };
        let take = chunk.len().min(left);
        let mut buf = Vec::with_capacity(take * 256);
        for m in chunk.iter().take(take) {
            // A stored message always encodes.
            let _ = serde_json::to_writer(&mut buf, m);
            buf.push(b'\n');
        }
        Some((Ok(Bytes::from(buf)), (range, store, (last, left - take, finished))))
    });
    Ok(HttpResponse::Ok().content_type("application/x-ndjson").streaming(lines))
}

/// `POST /admin/messages/{id}/redeliver`: the dead letter `id` goes to its recipient again, as a
/// new require-ack message from the same sender; the dead letter is forgotten once that is
/// accepted.
pub async fn redeliver(_admin: Admin, id: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let store = &state.broker.store;
    let Some(dead) = store.dead_letter(&id).map_err(storage)? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_message", format!("no dead letter with id {:?}", id.as_str())));
    };
    let m = dead.message;
    let env = Envelope {
        from: m.from,
        target: Target::Client(dead.recipient.clone()),
        msg_type: m.msg_type,
        payload: m.payload,
        priority: m.priority,
        ttl: None,
        require_ack: true,
        correlation_id: m.correlation_id,
        idempotency_key: None,
        persist: true,
        thread_id: m.thread_id,
        transport: Transport::Http,
        pool: None,
    };
    let routed = state.broker.router.route(env).await?;
    store.remove_dead(&id).map_err(storage)?;
    tracing::info!(dead_letter = %id, message_id = %routed.message_id, recipient = %dead.recipient, "dead letter redelivered");
    Ok(HttpResponse::Ok().json(json!({
        "status": "redelivered",
        "dead_letter": id.as_str(),
        "message_id": routed.message_id,
        "seq": routed.seq,
        "recipient": dead.recipient,
    })))
}
