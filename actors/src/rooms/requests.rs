//! The registry's messages: sent by [`super::RoomsHandle`] and by the table of calls' handlers
//! (`room.create`), handled by [`super::Rooms`]. A leaf of `rooms`.

use std::sync::Arc;

use actix::prelude::*;
use serde_json::Value;

use crate::auth::Identity;
use crate::room::{CallReply, RoomError};

/// Creates a room. Sent by the handle for `room.create`.
#[derive(Message)]
#[rtype(result = "Result<CallReply, RoomError>")]
pub struct CreateRoom {
    pub caller: String,
    pub name: String,
    pub topic: Option<String>,
    pub role: String,
    pub private: bool,
    /// Client ids or patterns (`team-*`) a private room admits.
    pub allow: Vec<String>,
}

/// One page of the rooms the caller may join (durable facts, and how many members are present),
/// in name order. Sent by the handle for `room.list`, `GET /api/rooms` and `GET /admin/rooms`.
#[derive(Message)]
#[rtype(result = "Result<Value, RoomError>")]
pub struct ListRooms {
    /// Shows the caller's role in each room it belongs to, and decides which private rooms are
    /// listed (with `identity`).
    pub caller: Option<String>,
    /// The caller's credentials; `None` lists every room (`GET /admin/rooms`).
    pub identity: Option<Arc<Identity>>,
    /// Rooms per page.
    pub limit: usize,
    /// List from the first room after this name (the previous page's `next_cursor`).
    pub cursor: Option<String>,
}

/// A request for a room that is not started yet: the registry starts it (if it exists) and
/// forwards. Sent by the handle.
pub struct Forward<M> {
    pub room: String,
    pub msg: M,
}

impl<M, T> Message for Forward<M>
where
    M: Message<Result = Result<T, RoomError>>,
    T: 'static,
{
    type Result = Result<T, RoomError>;
}
