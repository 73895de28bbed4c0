//! The AckTracker's messages, and [`TrackerLink`]: how router shards and sessions reach it.

use actix::prelude::*;
use agent_bridge_protocol::Priority;

/// A require-ack message was stored for `client_id`. Sent by the router.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Track {
    pub client_id: String,
    pub seq: u64,
    pub priority: Priority,
    pub message_id: String,
    pub from: String,
    /// A pool send: the balancer hears how it ends.
    pub pool: Option<crate::delivery::PoolTag>,
}

/// A require-ack message was handed to a session (or an HTTP poller). Sent by the router.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Delivered {
    pub client_id: String,
    pub seq: u64,
}

/// The client acknowledged a message. Sent by sessions and `POST /api/ack`; answers whether the
/// message was waiting for this client's ack.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Acknowledge {
    pub client_id: String,
    pub message_id: String,
}

/// The client asks for a redelivery later (`nack`). Sent by sessions.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct NegativeAck {
    pub client_id: String,
    pub message_id: String,
}

/// A require-ack message expired before it was acked. Sent by the router (found expired at
/// delivery) and the TtlSweeper (deleted).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Expired {
    pub client_id: String,
    pub seq: u64,
    /// The stored message is already gone.
    pub gone: bool,
}

/// How many messages wait for an ack (for status pages and tests).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct PendingCount;

/// Everything router shards, sessions and the sweeper send to the AckTracker. All recipients
/// lead to one mailbox, so the order of a shard's `Track` and a session's `Acknowledge` holds.
#[derive(Clone)]
pub struct TrackerLink {
    pub track: Recipient<Track>,
    pub delivered: Recipient<Delivered>,
    pub expired: Recipient<Expired>,
    pub acknowledge: Recipient<Acknowledge>,
    pub negative_ack: Recipient<NegativeAck>,
}

impl TrackerLink {
    /// The link to a tracker (or to a probe standing in for one).
    pub fn of<A>(addr: &Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>> + Handler<Track> + Handler<Delivered> + Handler<Expired> + Handler<Acknowledge> + Handler<NegativeAck>,
    {
        let a = addr.clone();
        TrackerLink { track: a.clone().recipient(), delivered: a.clone().recipient(), expired: a.clone().recipient(), acknowledge: a.clone().recipient(), negative_ack: a.recipient() }
    }
}
