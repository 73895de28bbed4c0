//! The hot path of a shard: a message is planned, added to the pending batch, and written with
//! everything that waited for it (`WriteBatch`); broadcasts; idempotency.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use agent_bridge_protocol::frames::SentStatus;
use agent_bridge_protocol::{Message as Msg, Timestamp};
use tokio::sync::oneshot;
use tracing::{debug, error};

use crate::delivery::{new_message_id, Envelope, Note, Notify, Outgoing, Target};
use crate::messages::*;
use crate::metrics::metrics;
use crate::store::{IdempotencyRecord, StoreError, Stream};

use super::shard::*;

/// The longest a reply waits for the group commit before answering `unavailable`.
pub(crate) const DURABILITY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Router {
    /// Stores (unless `persist: false`) and hands a message to every session that keeps up, both
    /// at the next batch write. Returns (seq, delivered).
    ///
    /// A session keeps up while the message fits in its backlog (frames and bytes) and in the
    /// client's budget across all its sessions. One that does not is moved to the store-fed path
    /// (persisted messages reach it later) or, for `persist: false`, has the message counted as
    /// dropped and is told so with a `dropped` frame.
    pub(super) fn deliver_to(&mut self, client: &str, env: &Envelope, id: &str, timestamp: Timestamp, ctx: &mut Context<Self>) -> Result<(u64, bool), RouteError> {
        let last = self.last_seq(client)?;
        let seq = if env.persist { last + 1 } else { last };
        let message = env.to_message(id, seq, timestamp);
        let now = Timestamp::now();
        // Plan the hand-overs first: whether anyone takes it decides whether it is queued.
        let state = self.clients.entry(client.to_owned()).or_default();
        let live = !message.is_expired(now);
        // Encode once, and only when some session may take it; the cost decides who does.
        let encode = live && state.sessions.iter().any(|l| l.link.filter.accepts(&message.msg_type) && !l.link.backlog.is_lagging());
        let (out, unsent) = if encode { (Some(Outgoing::new(message)), None) } else { (None, Some(message)) };
        let message: &Msg = match (&out, &unsent) {
            (Some(o), _) => &o.message,
            (None, Some(m)) => m,
            (None, None) => unreachable!("one of the two is set"),
        };
        let wanted = |l: &Live| l.link.filter.accepts(&message.msg_type);
        let cost = out.as_ref().map_or(0, |o| o.cost());
        let client_bytes: usize = state.sessions.iter().map(|l| l.link.backlog.bytes()).sum();
        let client_full = client_bytes > 0 && client_bytes.saturating_add(cost) > self.config.client_queue_bytes;
        let mut plan = Vec::new();
        let mut drained = Vec::new();
        if live {
            for (i, l) in state.sessions.iter().enumerate() {
                let backlog = &l.link.backlog;
                if !wanted(l) {
                    continue;
                }
                let fits = out.is_some() && !backlog.is_lagging() && !client_full && backlog.has_room(cost);
                if fits {
                    plan.push(i);
                } else if !env.persist {
                    backlog.note_dropped(now);
                    if backlog.pending() == 0 {
                        // Drained meanwhile: no delivery is coming to carry the notice.
                        if let Some(frame) = backlog.take_dropped() {
                            l.link.notify.do_send(Notify(Note::new(frame)));
                        }
                    }
                } else if !backlog.is_lagging() && backlog.start_lag() {
                    drained.push(l.link.session_id.clone());
                }
            }
        }
        let delivered = !plan.is_empty();
        let pending = &mut self.pending;
        if env.persist {
            pending.batch.message(Stream::Inbox(client), message)?;
            if !delivered || message.requires_ack {
                pending.batch.enqueue(client, message)?;
            }
            if let Some(at) = self.config.retention.expiry_ms(message) {
                // One index entry per inbox and second of expiry per batch, not one per message.
                let bucket = at.div_euclid(1000).saturating_add(1).saturating_mul(1000);
                pending
                    .expiries
                    .entry((client.to_owned(), bucket))
                    .and_modify(|(_, last)| *last = seq)
                    .or_insert((seq, seq));
            }
            if let Some(key) = &env.idempotency_key {
                let rec = IdempotencyRecord { message_id: id.to_owned(), seq: Some(seq), at_ms: timestamp.millis() };
                pending.batch.idempotency(&env.from, client, key, &rec)?;
                pending.keys.insert((env.from.clone(), client.to_owned(), key.clone()), rec);
            }
            self.seqs.insert(client.to_owned(), seq);
            if message.requires_ack {
                pending.track.push(Track {
                    client_id: client.to_owned(),
                    seq,
                    priority: message.priority,
                    message_id: id.to_owned(),
                    from: env.from.clone(),
                    pool: env.pool.clone(),
                });
            }
        } else if state.sessions.is_empty() {
            metrics().dropped.with_label_values(&["no_recipient_online"]).inc();
        }
        let state = self.clients.get_mut(client).expect("entry created above");
        pending.wake.append(&mut state.waiters);
        if let (true, Some(out)) = (delivered, out) {
            for i in plan {
                let link = &state.sessions[i].link;
                link.backlog.add_sized(1, cost);
                pending.handovers.push((link.clone(), Arc::clone(&out)));
            }
            if out.message.requires_ack && env.persist {
                state.inflight.insert(seq);
                pending.delivered.push(Delivered { client_id: client.to_owned(), seq });
            }
        }
        self.schedule(ctx);
        for session_id in drained {
            self.feed(client, &session_id, ctx)?;
        }
        Ok((seq, delivered))
    }

    /// Makes sure a `WriteBatch` is on its way.
    pub(super) fn schedule(&mut self, ctx: &mut Context<Self>) {
        if !self.pending.scheduled {
            self.pending.scheduled = true;
            ctx.notify(WriteBatch);
        }
    }

    /// Applies the pending batch and performs what waited for it; replies that need durability go
    /// out after the group commit.
    pub(super) fn write_pending(&mut self, _ctx: &mut Context<Self>) {
        let mut pending = std::mem::take(&mut self.pending);
        for ((client, at), (first, last)) in pending.expiries.drain() {
            pending.batch.expire_range(at, Stream::Inbox(&client), first, last);
        }
        let applied = self.store.apply(pending.batch);
        if let Err(e) = &applied {
            // Not a bug of this shard (disk full, read-only …): the senders are answered
            // `unavailable` below, and the shard goes on; the store reopens itself. The cached
            // seqs stay ahead of the store: the failed batch leaves a gap, never a reused seq.
            error!(actor = Router::NAME, error = %e, "writing a batch failed");
        } else {
            // The tracker hears of a message before any session can see it, so an ack can never
            // overtake its `Track` in the tracker's mailbox.
            for t in pending.track {
                self.tracker.track.do_send(t);
            }
            for d in pending.delivered {
                self.tracker.delivered.do_send(d);
            }
        }
        for (link, out) in pending.handovers {
            link.hand_over(out);
        }
        for w in pending.wake {
            let _ = w.send(());
        }
        let mut durable = Vec::new();
        for (reply, result, needs_flush) in pending.replies {
            match (&applied, needs_flush) {
                // The store cannot write (disk full …): retryable, `unavailable`, never `sent`.
                (Err(_), _) => reply.send(Err(RouteError::NotDurable)),
                (Ok(()), true) => durable.push((reply, result)),
                (Ok(()), false) => reply.send(result),
            }
        }
        let signals = pending.signals;
        if durable.is_empty() && signals.is_empty() {
            return;
        }
        // The wait for the flush is a task of the arbiter, not of this actor's context: a restart
        // drops the context's futures, and with them these replies, although the batch is written.
        let commit = self.store.commit();
        actix::spawn(async move {
            // Bounded: a store that cannot write (disk full, a stuck flush) answers `unavailable`
            // rather than never.
            let ok = matches!(tokio::time::timeout(DURABILITY_TIMEOUT, commit).await, Ok(Ok(())));
            for (reply, result) in durable {
                reply.send(if ok { result } else { Err(RouteError::NotDurable) });
            }
            if ok {
                for s in signals {
                    let _ = s.send(());
                }
            }
        });
    }

    /// Before reading the store, write what is pending so reads see every routed message.
    pub(super) fn sync(&mut self, ctx: &mut Context<Self>) {
        if self.pending.scheduled {
            self.write_pending(ctx);
        }
    }

    pub(super) fn check_idempotency(&self, env: &Envelope, to: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let Some(key) = &env.idempotency_key else { return Ok(None) };
        if let Some(rec) = self.pending.keys.get(&(env.from.clone(), to.to_owned(), key.clone())) {
            return Ok(Some(rec.clone()));
        }
        let window = i64::try_from(self.config.idempotency_window.as_millis()).unwrap_or(i64::MAX);
        Ok(self.store.idempotency(&env.from, to, key)?.filter(|r| Timestamp::now().millis() - r.at_ms < window))
    }

    /// Whether a reply must wait for the flush.
    pub(super) fn needs_flush(&self, persist: bool) -> bool {
        persist && self.config.durability == Durability::Sync
    }

    /// Routes to one client; the reply is queued with the batch.
    pub(super) fn route(&mut self, env: Envelope, ctx: &mut Context<Self>) -> Result<(Routed, bool), RouteError> {
        let client = match &env.target {
            Target::Client(c) => c.clone(),
            Target::Pool(p) => return Err(RouteError::UnknownRecipient(format!("pool:{p}"))),
            Target::Room(r) => return Err(RouteError::UnknownRecipient(r.clone())),
            Target::Broadcast => unreachable!("broadcasts arrive as RouteBroadcast"),
        };
        if let Some(rec) = self.check_idempotency(&env, &client)? {
            let routed = Routed { message_id: rec.message_id, seq: rec.seq, status: SentStatus::Duplicate, recipients: 1 };
            return Ok((routed, false));
        }
        // A pool send keeps the id its balancer chose, also when it fails over.
        let id = env.pool.as_ref().map_or_else(new_message_id, |t| t.message_id.clone());
        let (seq, delivered) = self.deliver_to(&client, &env, &id, Timestamp::now(), ctx)?;
        metrics().routed(env.transport.label(), env.priority);
        debug!(actor = Router::NAME, msg_id = %id, client_id = %client, seq, "routed");
        // A fire-and-forget message no session took was not queued either: nobody has it.
        let status = match (delivered, env.persist) {
            (true, _) => SentStatus::Delivered,
            (false, true) => SentStatus::Queued,
            (false, false) => SentStatus::Dropped,
        };
        let recipients = u32::from(delivered || env.persist);
        Ok((Routed { message_id: id, seq: Some(seq), status, recipients }, self.needs_flush(env.persist)))
    }

    pub(super) fn broadcast(&mut self, msg: &RouteBroadcast, ctx: &mut Context<Self>) -> Result<BroadcastPart, RouteError> {
        // Every shard records the broadcast's key: another shard's record of this same broadcast
        // (already written when this shard gets to it) is not a duplicate.
        if let Some(rec) = self.check_idempotency(&msg.envelope, agent_bridge_protocol::ids::BROADCAST)? {
            if rec.message_id != msg.id {
                return Ok(BroadcastPart { recipients: 0, duplicate: true, durable: None });
            }
        }
        let now = Instant::now();
        let window = self.config.seen_window;
        let targets: Vec<String> = self
            .clients
            .iter()
            .filter(|(id, st)| {
                **id != msg.envelope.from
                    && (!st.sessions.is_empty() || st.last_seen.is_some_and(|t| now.duration_since(t) <= window))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut env = (*msg.envelope).clone();
        let key = env.idempotency_key.take();
        let mut recipients = 0u32;
        for client in &targets {
            let (_, delivered) = self.deliver_to(client, &env, &msg.id, msg.timestamp, ctx)?;
            // A `persist: false` copy no session took reached nobody.
            recipients = recipients.saturating_add(u32::from(delivered || env.persist));
        }
        if let Some(key) = key {
            let rec = IdempotencyRecord { message_id: msg.id.clone(), seq: None, at_ms: msg.timestamp.millis() };
            self.pending.batch.idempotency(&env.from, agent_bridge_protocol::ids::BROADCAST, &key, &rec)?;
            self.pending.keys.insert((env.from.clone(), agent_bridge_protocol::ids::BROADCAST.to_owned(), key), rec);
            self.schedule(ctx);
        }
        let durable = if self.needs_flush(env.persist) && !targets.is_empty() {
            let (tx, rx) = oneshot::channel();
            self.pending.signals.push(tx);
            self.schedule(ctx);
            Some(rx)
        } else {
            None
        };
        Ok(BroadcastPart { recipients, duplicate: false, durable })
    }
}
