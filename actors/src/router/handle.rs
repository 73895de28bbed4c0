//! `RouterHandle`: how sessions, HTTP handlers and the tracker reach the router shards.

use std::sync::Arc;

use agent_bridge_protocol::frames::SentStatus;
use agent_bridge_protocol::Timestamp;
use tokio::sync::oneshot;

use crate::delivery::{new_message_id, Envelope, Target, Transport};
use super::monitor::Monitor;
use crate::messages::{shard_index, ClientInfo, Kick, ListClients, PoolDirectory, ReplyTo, RoomError, Route, RouteBroadcast, RouteError, Routed, ShardPort};
use crate::metrics::metrics;
use crate::rooms::RoomsHandle;

/// The router shards, addressed by client id. Cheap to clone.
#[derive(Clone)]
pub struct RouterHandle {
    shards: Arc<[ShardPort]>,
    /// Room messages go to their room.
    rooms: RoomsHandle,
    /// What the dashboard's live stream watches.
    monitor: Monitor,
    /// Pool sends go to their pool's balancer.
    pools: PoolDirectory,
}

impl RouterHandle {
    /// The shards (started on their mailboxes), and the rooms that room messages go to.
    pub fn new(shards: Vec<ShardPort>, rooms: RoomsHandle) -> Self {
        assert!(!shards.is_empty(), "at least one router shard");
        RouterHandle { shards: shards.into(), rooms, monitor: Monitor::default(), pools: PoolDirectory::default() }
    }

    /// Sends to `pool:<name>` go to the balancers published in `pools` (`Broker::start`).
    pub fn with_pools(mut self, pools: PoolDirectory) -> Self {
        self.pools = pools;
        self
    }

    /// The shard that owns `client_id` ([`shard_index`], as the tracker's [`crate::messages::Shards`]).
    pub fn shard(&self, client_id: &str) -> &ShardPort {
        &self.shards[shard_index(client_id, self.shards.len())]
    }

    /// Every shard, in order (for fault injection and listings).
    pub fn shards(&self) -> &[ShardPort] {
        &self.shards
    }

    /// Routes a message and sends the outcome to `reply` once it is durable. A message to a client
    /// goes straight into its shard's mailbox, the reply comes back as a plain message: no future
    /// per send. Other targets run [`RouterHandle::route`] on the current arbiter.
    pub fn route_to(&self, env: Envelope, reply: ReplyTo) {
        match &env.target {
            Target::Client(c) => {
                self.monitor.observe(&env);
                self.shard(c).route.do_send(Route { env, reply });
                return;
            }
            Target::Pool(p) => {
                self.monitor.observe(&env);
                let p = p.clone();
                self.pools.route(&p, env, reply);
                return;
            }
            _ => {}
        }
        let fut = self.route(env);
        actix::spawn(async move { reply.send(fut.await) });
    }

    /// Routes a message: to the recipient's shard, or to every shard for `all`; resolves once the
    /// message is durable (with sync durability).
    ///
    /// The message is in the shard mailboxes when this returns (only the reply is awaited), so a
    /// sender's messages keep their order however the returned futures are polled.
    pub fn route(&self, env: Envelope) -> impl std::future::Future<Output = Result<Routed, RouteError>> + 'static {
        enum Pending {
            One(oneshot::Receiver<Result<Routed, RouteError>>),
            All(Vec<actix::dev::RecipientRequest<RouteBroadcast>>, String, Transport, agent_bridge_protocol::Priority, bool),
            Room(crate::rooms::Pending<Routed>),
        }
        self.monitor.observe(&env);
        let pending = match env.target {
            Target::Broadcast => {
                let id = new_message_id();
                let timestamp = Timestamp::now();
                let transport = env.transport;
                let persist = env.persist;
                let env = Arc::new(env);
                let parts = self
                    .shards
                    .iter()
                    .map(|s| s.broadcast.send(RouteBroadcast { envelope: Arc::clone(&env), id: id.clone(), timestamp }))
                    .collect();
                Pending::All(parts, id, transport, env.priority, persist)
            }
            Target::Client(ref c) => {
                let (tx, rx) = oneshot::channel();
                self.shard(c).route.do_send(Route { env, reply: ReplyTo::Future(tx) });
                Pending::One(rx)
            }
            Target::Pool(ref p) => {
                let (tx, rx) = oneshot::channel();
                let p = p.clone();
                self.pools.route(&p, env, ReplyTo::Future(tx));
                Pending::One(rx)
            }
            Target::Room(_) => Pending::Room(self.rooms.route(env)),
        };
        async move {
            match pending {
                Pending::One(rx) => tokio::time::timeout(super::writes::DURABILITY_TIMEOUT * 2, rx)
                    .await
                    .map_err(|_| RouteError::Unavailable)?
                    .map_err(|_| RouteError::Unavailable)?,
                Pending::All(parts, message_id, transport, priority, persist) => {
                    let mut recipients = 0u32;
                    let mut duplicate = false;
                    for part in futures_util::future::join_all(parts).await {
                        let part = part??;
                        recipients = recipients.saturating_add(part.recipients);
                        duplicate |= part.duplicate;
                        if let Some(durable) = part.durable {
                            tokio::time::timeout(super::writes::DURABILITY_TIMEOUT, durable)
                                .await
                                .map_err(|_| RouteError::NotDurable)?
                                .map_err(|_| RouteError::NotDurable)?;
                        }
                    }
                    metrics().routed(transport.label(), priority);
                    let status = if duplicate {
                        SentStatus::Duplicate
                    } else if recipients > 0 {
                        SentStatus::Delivered
                    } else if persist {
                        SentStatus::Queued
                    } else {
                        SentStatus::Dropped
                    };
                    Ok(Routed { message_id, seq: None, status, recipients })
                }
                Pending::Room(req) => req.await.map_err(|e| match e {
                    // PROTOCOL.md: a send to a room that does not exist is `unknown_recipient`.
                    RoomError::UnknownRoom(r) => RouteError::UnknownRecipient(r),
                    e => RouteError::Room(e),
                }),
            }
        }
    }

    /// Closes every session of `client_id` and ends its long-polls; how many were ended.
    pub async fn kick(&self, client_id: &str, reason: &str) -> Result<usize, actix::MailboxError> {
        self.shard(client_id).kick.send(Kick { client_id: client_id.to_owned(), reason: reason.to_owned() }).await
    }

    /// The tap on everything routed (the dashboard's live stream).
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// Every live client of every shard.
    pub async fn clients(&self) -> Vec<ClientInfo> {
        let all = futures_util::future::join_all(self.shards.iter().map(|s| s.clients.send(ListClients))).await;
        let mut out: Vec<ClientInfo> = all.into_iter().filter_map(Result::ok).flatten().collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }
}
