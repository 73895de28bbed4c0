//! `LoadBalancer`: one per pool. Owns the pool's [`Balancer`] (healthy members, their statistics,
//! the strategy's state), each member's circuit, and the require-ack messages it gave to members
//! and that are not settled yet (the envelopes, so they can fail over).
//!
//! A send to `pool:<name>` reaches it through the [`PoolDirectory`] (`RouterHandle::route`): it
//! picks a member, tags the envelope ([`PoolTag`]: pool, ticket, message id), points it at the
//! member and puts it into the member's shard mailbox, with the sender's reply — one mailbox hop
//! and no store write more than a send to the member itself. The AckTracker tells it how each
//! tagged message ends ([`PoolSettled`]): an ack feeds the latency average and the in-flight
//! count; a missed ack (timeout or nack) counts against the member's circuit and the message goes
//! to another member. When a member goes offline ([`MemberDown`] from the registry) it asks the
//! member's shard to withdraw the member's unacked messages ([`PoolWithdraw`], passed on to the
//! tracker after the shard's pending writes) and gives what comes back ([`Withdrawn`]) to others.
//!
//! Sent by: the router handle, the AckTracker, router shards' tracker (withdrawals), the agent
//! registry. Supervised under `agents` (permanent, not critical), on the registry's arbiter; a
//! restart keeps its state (the same struct) and only the failed message is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::json;
use tracing::{debug, warn};

use super::strategy::Balancer;
use crate::delivery::{new_message_id, Envelope, PoolTag, Target};
use crate::messages::*;
use crate::supervisor::{guarded, supervisee, ChildHandle};

/// Consecutive missed acks that open a member's circuit.
pub const MISSES_TO_OPEN: u32 = 3;
/// How long an open circuit keeps a member out of the pool.
pub const OPEN_FOR: Duration = Duration::from_secs(30);
/// Most unsettled require-ack messages, and bytes of them, kept for failover; beyond either a
/// message still goes to a member but cannot fail over (a warning says so). Bounds what the
/// balancer holds.
pub const MAX_IN_FLIGHT: usize = 200_000;
pub const MAX_IN_FLIGHT_BYTES: usize = 256 << 20;

/// What keeping an envelope costs, counted against [`MAX_IN_FLIGHT_BYTES`].
fn cost(env: &Envelope) -> usize {
    env.payload.len() + env.msg_type.len() + env.from.len() + 256
}

/// A member's standing.
struct MemberState {
    weight: u32,
    connected: bool,
    misses: u32,
    /// The circuit is open: the member is skipped until the timer closes it.
    open: bool,
}

/// A require-ack message given to a member.
struct Flight {
    member: String,
    env: Envelope,
}

/// One pool's balancer.
pub struct LoadBalancer {
    /// Supervision link.
    child: ChildHandle,
    pool: Arc<str>,
    balancer: Balancer,
    members: HashMap<String, MemberState>,
    flights: HashMap<u64, Flight>,
    /// What the flights' envelopes cost ([`cost`]).
    flight_bytes: usize,
    next_ticket: u64,
    /// The router shards, for the chosen member's `Route` and for withdrawals.
    shards: Arc<[ShardPort]>,
}

impl LoadBalancer {
    pub const NAME: &'static str = "load_balancer";

    pub fn new(child: ChildHandle, pool: &str, strategy: Strategy, shards: Arc<[ShardPort]>) -> Self {
        LoadBalancer {
            child,
            pool: pool.into(),
            balancer: Balancer::new(strategy),
            members: HashMap::new(),
            flights: HashMap::new(),
            flight_bytes: 0,
            next_ticket: 0,
            shards,
        }
    }

    fn shard(&self, client: &str) -> &ShardPort {
        &self.shards[shard_index(client, self.shards.len())]
    }

    /// Picks a member and hands the message to its shard.
    fn route(&mut self, mut env: Envelope, reply: ReplyTo) {
        let key = env.correlation_id.clone().or_else(|| env.thread_id.clone());
        let Some(member) = self.balancer.pick(key.as_deref()) else {
            reply.send(Err(RouteError::PoolEmpty(self.pool.to_string())));
            return;
        };
        let fits = self.flights.len() < MAX_IN_FLIGHT && self.flight_bytes.saturating_add(cost(&env)) <= MAX_IN_FLIGHT_BYTES;
        if env.require_ack && env.persist && fits {
            let ticket = self.next_ticket;
            self.next_ticket += 1;
            env.pool = Some(PoolTag { pool: Arc::clone(&self.pool), ticket, message_id: new_message_id() });
            self.flight_bytes += cost(&env);
            self.flights.insert(ticket, Flight { member: member.clone(), env: env.clone() });
        } else {
            if env.require_ack && env.persist {
                warn!(actor = LoadBalancer::NAME, pool = %self.pool, "too many unacked pool messages: this one cannot fail over");
            }
            self.balancer.release(&member);
        }
        env.target = Target::Client(member.clone());
        self.shard(&member).route.do_send(Route { env, reply });
    }

    /// Gives a message taken back from a member to another one (or back to it, queued until it
    /// returns, when nobody else is there).
    fn fail_over(&mut self, ticket: u64) {
        let Some(flight) = self.flights.get(&ticket) else { return };
        let (mut env, from) = (flight.env.clone(), flight.member.clone());
        let key = env.correlation_id.clone().or_else(|| env.thread_id.clone());
        let member = self.balancer.pick(key.as_deref()).unwrap_or(from);
        debug!(actor = LoadBalancer::NAME, pool = %self.pool, client_id = %member, "pool message failed over");
        if let Some(f) = self.flights.get_mut(&ticket) {
            f.member = member.clone();
        }
        env.target = Target::Client(member.clone());
        // The sender was answered by the first route; this copy's answer goes nowhere.
        let (tx, _) = tokio::sync::oneshot::channel();
        self.shard(&member).route.do_send(Route { env, reply: ReplyTo::Future(tx) });
    }

    fn settled(&mut self, msg: PoolSettled, ctx: &mut Context<Self>) {
        let ours = self.flights.get(&msg.ticket).is_some_and(|f| f.member == msg.member);
        match msg.outcome {
            PoolOutcome::Acked { latency_ms } => {
                self.balancer.acked(&msg.member, latency_ms);
                if let Some(m) = self.members.get_mut(&msg.member) {
                    m.misses = 0;
                }
                if ours {
                    self.land(msg.ticket);
                }
            }
            PoolOutcome::Gone => {
                self.balancer.release(&msg.member);
                if ours {
                    self.land(msg.ticket);
                }
            }
            PoolOutcome::Missed => {
                self.balancer.release(&msg.member);
                self.missed(&msg.member, ctx);
                if ours {
                    self.fail_over(msg.ticket);
                }
            }
        }
    }

    /// Forgets a settled flight.
    fn land(&mut self, ticket: u64) {
        if let Some(f) = self.flights.remove(&ticket) {
            self.flight_bytes = self.flight_bytes.saturating_sub(cost(&f.env));
        }
    }

    /// Counts a missed ack; at [`MISSES_TO_OPEN`] in a row the member's circuit opens.
    fn missed(&mut self, member: &str, ctx: &mut Context<Self>) {
        let Some(m) = self.members.get_mut(member) else { return };
        m.misses += 1;
        if m.misses < MISSES_TO_OPEN || m.open {
            return;
        }
        m.open = true;
        warn!(actor = LoadBalancer::NAME, pool = %self.pool, client_id = %member, "member circuit open");
        self.balancer.leave(member);
        let member = member.to_owned();
        ctx.run_later(OPEN_FOR, move |act, _| {
            if let Some(m) = act.members.get_mut(&member) {
                m.open = false;
                m.misses = 0;
                if m.connected {
                    act.balancer.join(&member, m.weight);
                }
            }
        });
    }

    fn up(&mut self, msg: MemberUp) {
        let m = self.members.entry(msg.id.clone()).or_insert(MemberState { weight: msg.weight, connected: true, misses: 0, open: false });
        m.weight = msg.weight;
        m.connected = true;
        if !m.open {
            self.balancer.join(&msg.id, msg.weight);
        }
    }

    fn down(&mut self, msg: MemberDown, ctx: &mut Context<Self>) {
        if let Some(m) = self.members.get_mut(&msg.id) {
            m.connected = false;
        }
        self.balancer.leave(&msg.id);
        if self.flights.values().any(|f| f.member == msg.id) {
            let reply = ctx.address().recipient();
            self.shard(&msg.id).withdraw.do_send(PoolWithdraw { client_id: msg.id, pool: Arc::clone(&self.pool), reply });
        }
    }

    fn withdrawn(&mut self, msg: Withdrawn) {
        for ticket in msg.tickets {
            if self.flights.get(&ticket).is_some_and(|f| f.member == msg.client_id) {
                self.fail_over(ticket);
            }
        }
    }

    fn describe(&self) -> PoolInfo {
        let members = self
            .balancer
            .members()
            .iter()
            .map(|m| json!({ "client_id": m.id, "weight": m.weight, "in_flight": m.in_flight, "latency_ms": m.latency_ms }))
            .collect();
        let mut open: Vec<String> = self.members.iter().filter(|(_, m)| m.open).map(|(id, _)| id.clone()).collect();
        open.sort();
        PoolInfo { pool: self.pool.to_string(), strategy: self.balancer.strategy, members, open, in_flight: self.flights.len() }
    }
}

supervisee!(LoadBalancer, (), child);

impl Actor for LoadBalancer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Pool sends must never park a sender, as with the router shards.
        ctx.set_mailbox_capacity(1 << 20);
    }
}

impl Supervised for LoadBalancer {}

guarded!(LoadBalancer, PoolRoute => (), |b, msg, _| b.route(msg.env, msg.reply));
guarded!(LoadBalancer, PoolSettled => (), |b, msg, ctx| b.settled(msg, ctx));
guarded!(LoadBalancer, MemberUp => (), |b, msg, _| b.up(msg));
guarded!(LoadBalancer, MemberDown => (), |b, msg, ctx| b.down(msg, ctx));
guarded!(LoadBalancer, Withdrawn => (), |b, msg, _| b.withdrawn(msg));
guarded!(LoadBalancer, Configure => (), |b, msg, _| b.balancer.strategy = msg.0);

impl Handler<Describe> for LoadBalancer {
    type Result = MessageResult<Describe>;
    fn handle(&mut self, _: Describe, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.describe())
    }
}

impl Handler<Pick> for LoadBalancer {
    type Result = Option<String>;
    fn handle(&mut self, msg: Pick, _: &mut Self::Context) -> Option<String> {
        let member = self.balancer.pick(msg.key.as_deref())?;
        self.balancer.release(&member);
        Some(member)
    }
}
