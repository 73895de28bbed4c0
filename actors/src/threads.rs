//! `thread.get` (PROTOCOL.md section 7, threads): a conversation across streams, in timestamp
//! order, filtered to what the caller may read.
//!
//! A message carries a client-given `thread_id`; the store indexes it in the same batch as the
//! message (`t:<thread id>\0<stream key><seq BE>`, see [`crate::store`]) and drops the entry when
//! the message expires. This module reads the index and keeps only what the caller may read: a
//! message in its own inbox, a message it sent, or a message of a room (or a room's channel) it
//! is a member of. Anything else is left out silently, so a thread id reveals nothing about
//! conversations the caller is not part of. Called from the table of calls by [`crate::rooms`].

use std::collections::{HashMap, HashSet};

use agent_bridge_protocol::{Message, Timestamp};
use serde_json::{json, Value};

use crate::room::{RoomError, RoomState};
use crate::store::{Store, StreamName};

/// Messages per `thread.get` page when the caller does not say.
pub const DEFAULT_THREAD_PAGE: usize = 100;
/// Largest `thread.get` page.
pub const MAX_THREAD_PAGE: usize = 1000;
/// Index entries one `thread.get` reads at most (every copy of a broadcast counts).
const MAX_SCAN: usize = 20_000;

/// A page of a thread: after `cursor` (a previous page's `next_cursor`), at most `limit`.
pub struct ThreadQuery {
    pub thread_id: String,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// Who may read what: the caller, and the rooms it is a member of (looked up once per room).
struct Reader<'a> {
    store: &'a Store,
    caller: &'a str,
    rooms: HashMap<String, bool>,
}

impl Reader<'_> {
    fn may_read(&mut self, stream: &StreamName, msg: &Message) -> Result<bool, RoomError> {
        if msg.from == self.caller {
            return Ok(true);
        }
        match stream {
            StreamName::Inbox(client) => Ok(client == self.caller),
            StreamName::Room(room) => self.member_of(room.split('/').next().unwrap_or(room)),
        }
    }

    fn member_of(&mut self, room: &str) -> Result<bool, RoomError> {
        if let Some(known) = self.rooms.get(room) {
            return Ok(*known);
        }
        let member = self.store.get_room::<RoomState>(room)?.is_some_and(|s| s.members.contains_key(self.caller));
        self.rooms.insert(room.to_owned(), member);
        Ok(member)
    }
}

/// The sort key of a message in a thread (ids are UUIDv7: time-ordered within a millisecond);
/// the cursor names the last one a page returned.
fn order(msg: &Message) -> (i64, &str, u64) {
    (msg.timestamp.millis(), msg.id.as_str(), msg.seq)
}

fn cursor_of(msg: &Message) -> String {
    format!("{}:{}:{}", msg.timestamp.millis(), msg.seq, msg.id)
}

fn parse_cursor(cursor: &str) -> Result<(i64, u64, String), RoomError> {
    let bad = || RoomError::InvalidParams(format!("cursor {cursor:?} is not a next_cursor of thread.get"));
    let mut parts = cursor.splitn(3, ':');
    let ms = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let seq = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let id = parts.next().ok_or_else(bad)?.to_owned();
    Ok((ms, seq, id))
}

/// `thread.get` for `caller`: `{thread_id, count, messages, next_cursor}`.
pub fn get(store: &Store, caller: &str, q: &ThreadQuery) -> Result<Value, RoomError> {
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let mut reader = Reader { store, caller, rooms: HashMap::new() };
    let now = Timestamp::now();
    let mut seen = HashSet::new();
    let mut msgs = Vec::new();
    for (stream, msg) in store.thread(&q.thread_id, MAX_SCAN)? {
        if msg.is_expired(now) || !reader.may_read(&stream, &msg)? || !seen.insert(msg.id.clone()) {
            continue;
        }
        msgs.push(msg);
    }
    msgs.sort_by(|a, b| order(a).cmp(&order(b)));
    if let Some((ms, seq, id)) = &after {
        msgs.retain(|m| order(m) > (*ms, id.as_str(), *seq));
    }
    let limit = q.limit.clamp(1, MAX_THREAD_PAGE);
    let next_cursor = (msgs.len() > limit).then(|| cursor_of(&msgs[limit - 1]));
    msgs.truncate(limit);
    Ok(json!({ "thread_id": q.thread_id, "count": msgs.len(), "messages": msgs, "next_cursor": next_cursor }))
}
