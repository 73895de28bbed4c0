//! Router shards: the registry of live sessions and the hot path of every message.
//!
//! Each shard owns the client ids that hash to it: their live sessions (the registry), their inbox
//! seq counters, long-poll waiters and "last seen" times. A message to a client goes to that client's
//! shard, which assigns the next inbox `seq`, writes the message with its index entries in one atomic
//! batch (unless `persist: false`), encodes the `message` frame once and hands the same bytes to
//! every session of the recipient that keeps up. The `sent` reply waits for the group commit.
//!
//! The inbox queue (see [`crate::store`]) holds what no session has received yet, and everything that
//! waits for an acknowledgement. A session is fed from it — in priority order with aging — when it
//! connects and whenever it has fallen behind; with `since` it first replays the stream in seq order.
//!
//! Sent by: sessions and HTTP handlers (through [`RouterHandle`]), the AckTracker (redeliveries,
//! settlements, receipts). Supervised by the root (permanent, critical): after a panic `restarting()`
//! drops cached counters (reloaded from the store) and in-flight marks, and prunes sessions whose
//! mailbox has closed; the registry of live sessions survives.

mod feed;
mod handle;
mod monitor;
mod shard;
mod writes;

pub use crate::messages::router::*;
pub use handle::RouterHandle;
pub use monitor::{Monitor, Traffic};
pub use shard::Router;
