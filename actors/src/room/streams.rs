//! A room's message streams: a room message is stored and fanned out to the joined sessions; a
//! lagging session is fed from the stream; sessions leave. Adds methods to [`Room`].

use std::sync::Arc;

use agent_bridge_protocol::frames::SentStatus;
use agent_bridge_protocol::Message as Msg;
use tracing::debug;

use super::*;
use crate::delivery::{new_message_id, Envelope, Note, Notify, Outgoing, Target};
use crate::messages::{Accepted, Routed};
use crate::metrics::metrics;
use crate::store::{Batch, IdempotencyRecord, Stream};

impl Room {

    pub(super) fn send(&mut self, env: Envelope) -> Result<Accepted, RoomError> {
        let Target::Room(stream) = &env.target else { return Err(RoomError::InvalidParams("not a room message".into())) };
        let stream = stream.clone();
        self.channel_of(&stream)?;
        self.require_member(&env.from)?;
        if env.require_ack {
            return Err(RoomError::NotSupported("require_ack is not supported for room messages".into()));
        }
        let scope = format!("#{stream}"); // '#' is not a client id character: no clash with inboxes
        if let Some(key) = &env.idempotency_key {
            let window = i64::try_from(self.config.idempotency_window.as_millis()).unwrap_or(i64::MAX);
            if let Some(rec) = self.store.idempotency(&env.from, &scope, key)?.filter(|r| now().millis() - r.at_ms < window) {
                let routed = Routed { message_id: rec.message_id, seq: rec.seq, status: SentStatus::Duplicate, recipients: 0 };
                return Ok(Accepted { routed, durable: None });
            }
        }
        let id = new_message_id();
        let timestamp = now();
        let last = self.last_seq(&stream)?;
        let seq = if env.persist { last + 1 } else { last };
        let message = env.to_message(&id, seq, timestamp);
        if env.persist {
            let mut batch = Batch::default();
            batch.message(Stream::Room(&stream), &message)?;
            if let Some(at) = self.config.retention.expiry_ms(&message) {
                batch.expire_at(at, Stream::Room(&stream), seq);
            }
            if let Some(key) = &env.idempotency_key {
                let rec = IdempotencyRecord { message_id: id.clone(), seq: Some(seq), at_ms: timestamp.millis() };
                batch.idempotency(&env.from, &scope, key, &rec)?;
            }
            self.store.apply(batch)?;
            self.streams.entry(stream.clone()).or_default().seq = Some(seq);
        }
        let delivered = self.fan_out(&stream, message, env.persist)?;
        metrics().routed(env.transport.label(), env.priority);
        debug!(actor = Room::NAME, room = %stream, msg_id = %id, seq, delivered, "room message");
        let others = self.state.members.len().saturating_sub(1);
        // A `persist: false` message reached exactly the sessions that took it; none took it: dropped.
        let (status, recipients) = match (delivered, env.persist) {
            (0, false) => (SentStatus::Dropped, 0),
            (n, false) => (SentStatus::Delivered, n),
            (0, true) => (SentStatus::Queued, others),
            (_, true) => (SentStatus::Delivered, others),
        };
        let routed = Routed { message_id: id, seq: Some(seq), status, recipients: u32::try_from(recipients).unwrap_or(u32::MAX) };
        Ok(Accepted { routed, durable: if env.persist { self.commit() } else { None } })
    }

    /// Hands a stored (or `persist: false`) message to every joined session that keeps up, except
    /// the sender's. Returns how many sessions got it.
    pub(super) fn fan_out(&mut self, stream: &str, message: Msg, persist: bool) -> Result<usize, RoomError> {
        if message.is_expired(now()) {
            return Ok(0);
        }
        let Some(live) = self.streams.get_mut(stream) else { return Ok(0) };
        if live.links.is_empty() {
            return Ok(0);
        }
        let seq = message.seq;
        let out = Outgoing::new(message);
        let mut drained = Vec::new();
        let mut n = 0usize;
        for link in &mut live.links {
            if link.client_id == out.message.from {
                continue;
            }
            let backlog = &link.shared.backlog;
            if !backlog.is_lagging() && !link.filter.accepts(&out.message.msg_type) {
                link.after = seq; // not wanted: passed over, as its feed would
                continue;
            }
            let fits = !backlog.is_lagging() && backlog.has_room(out.cost());
            if !fits && !persist {
                // Not in the stream, so no feed brings it: counted, and the session is told.
                backlog.note_dropped(out.message.timestamp);
                if backlog.pending() == 0 {
                    if let Some(frame) = link.shared.take_dropped() {
                        link.notify.do_send(Notify(Note::new(frame)));
                    }
                }
                continue;
            }
            if backlog.is_lagging() {
                continue; // its feed reads this message from the stream
            }
            if !fits {
                if backlog.start_lag() {
                    drained.push(link.session_id.clone());
                }
                continue;
            }
            backlog.add_sized(1, out.cost());
            link.deliver.do_send(RoomDeliver { out: Arc::clone(&out), link: Arc::clone(&link.shared) });
            link.after = seq;
            n += 1;
        }
        metrics().deliveries.with_label_values(&["websocket"]).inc_by(n as u64);
        for session_id in drained {
            self.feed(stream, &session_id)?;
        }
        Ok(n)
    }

    /// Feeds a lagging session the next batch of the stream (never its own messages); ends the lag
    /// when the stream has nothing more.
    pub(super) fn feed(&mut self, stream: &str, session_id: &str) -> Result<(), RoomError> {
        loop {
            let Some(link) = self.streams.get(stream).and_then(|l| l.links.iter().find(|k| k.session_id == session_id)) else {
                return Ok(());
            };
            let (after, shared, deliver, client, filter) =
                (link.after, Arc::clone(&link.shared), link.deliver.clone(), link.client_id.clone(), Arc::clone(&link.filter));
            let limit = shared.backlog.limit;
            let msgs = self.store.range(Stream::Room(stream), after, limit)?;
            let mut exhausted = msgs.len() < limit;
            let mut next = after;
            let t = now();
            let mut n = 0;
            for m in msgs {
                if m.from != client && !m.is_expired(t) && filter.accepts(&m.msg_type) {
                    let out = Outgoing::new(m);
                    // Within the byte budget too: the rest comes with the next batch.
                    if !shared.backlog.has_room(out.cost()) {
                        exhausted = false;
                        break;
                    }
                    shared.backlog.add_sized(1, out.cost());
                    next = out.message.seq;
                    deliver.do_send(RoomDeliver { out, link: Arc::clone(&shared) });
                    n += 1;
                } else {
                    next = m.seq;
                }
            }
            metrics().deliveries.with_label_values(&["websocket"]).inc_by(n as u64);
            if let Some(link) = self.streams.get_mut(stream).and_then(|l| l.links.iter_mut().find(|k| k.session_id == session_id)) {
                link.after = next;
            }
            if exhausted {
                shared.backlog.stop_lag();
                return Ok(());
            }
            if n > 0 || shared.backlog.pending() > 0 {
                return Ok(()); // the session asks for the next batch (RoomCatchUp) once it wrote this one
            }
        }
    }

    /// Removes the links matching `which` from `stream`; returns the clients that lost their last
    /// session there.
    pub(super) fn unlink(&mut self, stream: &str, which: impl Fn(&Link) -> bool) -> Vec<String> {
        let Some(live) = self.streams.get_mut(stream) else { return Vec::new() };
        let mut gone = Vec::new();
        live.links.retain(|l| {
            if which(l) {
                l.shared.backlog.stop_lag();
                gone.push(l.client_id.clone());
                false
            } else {
                true
            }
        });
        gone.sort();
        gone.dedup();
        gone.retain(|c| !live.links.iter().any(|l| &l.client_id == c));
        gone
    }

    pub(super) fn member_left(&self, stream: &str, client: &str, reason: &str) {
        let role = self.state.members.get(client).map(|m| m.role.clone());
        self.event(stream, "member_left", &json!({ "client_id": client, "role": role, "reason": reason }), None);
    }

    /// A session is gone: it leaves every stream; members without another session leave presence.
    pub(super) fn session_closed(&mut self, session_id: &str) {
        let streams: Vec<String> = self.streams.keys().cloned().collect();
        for stream in streams {
            for client in self.unlink(&stream, |l| l.session_id == session_id) {
                self.member_left(&stream, &client, "disconnected");
            }
        }
    }
}
