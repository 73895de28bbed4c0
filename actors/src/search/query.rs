//! `history.search`: its params, their checks, and one page of hits for a caller.
//!
//! The caller's query (tantivy's query parser over `text` and `type`: terms, `"phrases"`, `AND`,
//! `OR`, `-term`, `field:term`) is put under a filter of what the caller may read — its own inbox
//! (`scope` `i:<caller>`), what it sent (`from`), and the rooms it is a member of and admitted to
//! (`scope` `r:<room>`) — and the parameters' filters, then ranked by BM25. Every hit is read
//! back from the store and checked again (still there, not expired, readable), so a stale index
//! can miss a message but never show one the caller may not read.

use std::collections::HashSet;
use std::ops::Bound;

use agent_bridge_protocol::ids::MAX_ID_LEN;
use agent_bridge_protocol::{Message, Timestamp};
use serde::Deserialize;
use serde_json::{json, Value};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, RangeQuery, TermQuery, TermSetQuery};
use tantivy::schema::{IndexRecordOption, Value as _};
use tantivy::{IndexReader, TantivyDocument, Term};
use utoipa::ToSchema;

use super::schema::{parse_stream_label, Fields};
use crate::auth::{may_join_room, Identity, RoomAccess};
use crate::room::{RoomError, RoomState};
use crate::store::{Store, StreamName};

/// Hits per page when the caller does not say.
pub const DEFAULT_SEARCH_PAGE: usize = 20;
/// Largest page.
pub const MAX_SEARCH_PAGE: usize = 200;
/// How deep paging goes (offset + limit): ranking more costs more on every page.
pub const MAX_SEARCH_DEPTH: usize = 10_000;
/// Longest query, in bytes.
pub const MAX_QUERY_LEN: usize = 1024;

/// `history.search`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// The query: terms, "phrases", AND / OR / -term, field:term (fields text, type, from, thread); at most 1024 bytes.
    pub query: String,
    /// Only this room ("name": the room and its channels, or "name/channel").
    pub room: Option<String>,
    /// Only the direct conversation with this client id (both directions); not with room.
    pub with: Option<String>,
    /// Only messages sent by this client id.
    pub from: Option<String>,
    /// Only messages of exactly this type.
    #[serde(rename = "type")]
    pub msg_type: Option<String>,
    /// Only messages at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only messages before this time (RFC 3339).
    pub until: Option<String>,
    /// Hits per page (default 20, at most 200).
    #[schema(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// The previous page's next_cursor.
    pub cursor: Option<String>,
}

/// Checked [`SearchParams`].
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub query: String,
    pub room: Option<String>,
    pub with: Option<String>,
    pub from: Option<String>,
    pub msg_type: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: usize,
    pub offset: usize,
}

fn invalid(what: String) -> RoomError {
    RoomError::InvalidParams(what)
}

fn id(name: &str, value: Option<String>) -> Result<Option<String>, RoomError> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_ID_LEN || v.contains('\0') => Err(invalid(format!("{name} must be 1 to {MAX_ID_LEN} bytes without NUL"))),
        v => Ok(v),
    }
}

fn time(name: &str, value: Option<String>) -> Result<Option<i64>, RoomError> {
    value
        .map(|v| Timestamp::parse_rfc3339(&v).map(Timestamp::millis).ok_or_else(|| invalid(format!("{name} {v:?} is not an RFC 3339 time"))))
        .transpose()
}

impl SearchParams {
    /// Checks the params (`invalid_params` naming what is wrong).
    pub fn check(self) -> Result<SearchQuery, RoomError> {
        if self.query.trim().is_empty() || self.query.len() > MAX_QUERY_LEN {
            return Err(invalid(format!("query must be 1 to {MAX_QUERY_LEN} bytes of text")));
        }
        if self.room.is_some() && self.with.is_some() {
            return Err(invalid("room and with exclude each other: a room, or a direct conversation".into()));
        }
        let offset = match self.cursor.as_deref() {
            None => 0,
            Some(c) => c.parse::<usize>().map_err(|_| invalid(format!("cursor {c:?} is not a next_cursor of history.search")))?,
        };
        let limit = self.limit.unwrap_or(DEFAULT_SEARCH_PAGE);
        if !(1..=MAX_SEARCH_PAGE).contains(&limit) {
            return Err(invalid(format!("limit must be between 1 and {MAX_SEARCH_PAGE}")));
        }
        if offset.saturating_add(limit) > MAX_SEARCH_DEPTH {
            return Err(invalid(format!("search pages reach at most {MAX_SEARCH_DEPTH} hits deep; narrow the query")));
        }
        let (since_ms, until_ms) = (time("since", self.since)?, time("until", self.until)?);
        Ok(SearchQuery {
            query: self.query,
            room: id("room", self.room)?,
            with: id("with", self.with)?,
            from: id("from", self.from)?,
            msg_type: id("type", self.msg_type)?,
            since_ms,
            until_ms,
            limit,
            offset,
        })
    }
}

/// The rooms `caller` may search: those it is a member of and, with credentials, admitted to.
fn readable_rooms(store: &Store, caller: &str, identity: Option<&Identity>) -> Result<HashSet<String>, RoomError> {
    let mut rooms = HashSet::new();
    for item in store.rooms_after::<RoomState>(None) {
        let (name, state) = item?;
        if !state.members.contains_key(caller) {
            continue;
        }
        let access = if state.private { RoomAccess::Private { allow: &state.allow } } else { RoomAccess::Public };
        if identity.is_none_or(|i| may_join_room(i, caller, &name, access).is_ok()) {
            rooms.insert(name);
        }
    }
    Ok(rooms)
}

fn term(field: tantivy::schema::Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::Basic))
}

fn all(clauses: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(clauses.into_iter().map(|q| (Occur::Must, q)).collect()))
}

fn any(clauses: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(clauses.into_iter().map(|q| (Occur::Should, q)).collect()))
}

/// Whether `caller` may read `msg` of `stream` (the same rule as the index filter).
fn may_read(caller: &str, rooms: &HashSet<String>, stream: &StreamName, msg: &Message) -> bool {
    msg.from == caller
        || match stream {
            StreamName::Inbox(c) => c == caller,
            StreamName::Room(r) => rooms.contains(r.split('/').next().unwrap_or(r)),
        }
}

/// One page of hits for `caller`: `{query, count, results: [{score, message}], next_cursor}`.
pub(super) fn run(
    reader: &IndexReader,
    parser: &QueryParser,
    f: &Fields,
    store: &Store,
    caller: &str,
    identity: Option<&Identity>,
    q: &SearchQuery,
) -> Result<Value, RoomError> {
    let user = parser.parse_query(&q.query).map_err(|e| invalid(format!("query: {e}")))?;
    let rooms = readable_rooms(store, caller, identity)?;
    let mut scopes = vec![Term::from_field_text(f.scope, &format!("i:{caller}"))];
    scopes.extend(rooms.iter().map(|r| Term::from_field_text(f.scope, &format!("r:{r}"))));
    let access = any(vec![Box::new(TermSetQuery::new(scopes)), term(f.from, caller)]);
    let mut clauses = vec![access];
    if let Some(room) = &q.room {
        let (field, label) = if room.contains('/') { (f.stream, format!("r:{room}")) } else { (f.scope, format!("r:{room}")) };
        clauses.push(term(field, &label));
    }
    if let Some(with) = &q.with {
        clauses.push(any(vec![
            all(vec![term(f.scope, &format!("i:{caller}")), term(f.from, with)]),
            all(vec![term(f.scope, &format!("i:{with}")), term(f.from, caller)]),
        ]));
    }
    if let Some(from) = &q.from {
        clauses.push(term(f.from, from));
    }
    if let Some(t) = &q.msg_type {
        clauses.push(term(f.type_exact, t));
    }
    if q.since_ms.is_some() || q.until_ms.is_some() {
        let lower = q.since_ms.map_or(Bound::Unbounded, |t| Bound::Included(Term::from_field_i64(f.ts, t)));
        let upper = q.until_ms.map_or(Bound::Unbounded, |t| Bound::Excluded(Term::from_field_i64(f.ts, t)));
        clauses.push(Box::new(RangeQuery::new(lower, upper)));
    }
    let searcher = reader.searcher();
    let internal = |e: tantivy::TantivyError| RoomError::Internal(format!("search: {e}"));
    // The filters select; only the caller's query scores (BM25), else rare filter terms would rank.
    let query = all(vec![user, Box::new(ConstScoreQuery::new(all(clauses), 0.0))]);
    let top = searcher
        .search(&query, &TopDocs::with_limit(q.limit + 1).and_offset(q.offset).order_by_score())
        .map_err(internal)?;
    let more = top.len() > q.limit;
    let now = Timestamp::now();
    let mut seen = HashSet::new();
    let mut results = Vec::new();
    for (score, address) in top.into_iter().take(q.limit) {
        let doc: TantivyDocument = searcher.doc(address).map_err(internal)?;
        let stream = doc.get_first(f.stream).and_then(|v| v.as_str()).and_then(parse_stream_label);
        let seq = doc.get_first(f.seq).and_then(|v| v.as_u64());
        let (Some(stream), Some(seq)) = (stream, seq) else { continue };
        let Some(msg) = store.get(stream.as_stream(), seq)? else { continue };
        if msg.is_expired(now) || !may_read(caller, &rooms, &stream, &msg) || !seen.insert(msg.id.clone()) {
            continue;
        }
        results.push(json!({ "score": score, "message": msg }));
    }
    let next_cursor = more.then(|| (q.offset + q.limit).to_string());
    Ok(json!({ "query": q.query, "count": results.len(), "results": results, "next_cursor": next_cursor }))
}
