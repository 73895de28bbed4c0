//! Feeding sessions from the store (connect, catch-up, the queue in priority order with aging),
//! redeliveries and HTTP polls.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use agent_bridge_protocol::{Message as Msg, Priority, Timestamp};
use tokio::sync::oneshot;
use tracing::debug;

use crate::delivery::Outgoing;
use crate::messages::*;
use crate::metrics::metrics;
use crate::store::{Batch, Queued, Skip, StoreError, Stream};

use super::shard::*;

impl Router {
    pub(super) fn connect(&mut self, msg: Connect, ctx: &mut Context<Self>) -> Result<Connected, RouteError> {
        self.sync(ctx);
        let last = self.last_seq(&msg.client_id)?;
        let since = msg.since.map(|s| s.min(last));
        let state = self.client(&msg.client_id);
        state.last_seen = Some(Instant::now());
        metrics().connections.with_label_values(&[msg.link.transport.label()]).inc();
        let session_id = msg.link.session_id.clone();
        let feed = match since {
            Some(after) => Feed::Stream { after },
            None => Feed::Queue,
        };
        // Start behind: nothing live reaches the session until its feed has caught up, so the
        // replay and the queue come first and in order.
        let must_feed = msg.link.backlog.start_lag();
        let first = state.sessions.is_empty();
        state.sessions.push(Live { link: msg.link, feed });
        if first {
            self.presence(&msg.client_id, true);
        }
        if must_feed {
            self.feed(&msg.client_id, &session_id, ctx)?;
        }
        Ok(Connected { resumed_from: since, last_seq: last })
    }

    pub(super) fn disconnect(&mut self, msg: &Disconnect) {
        let Some(state) = self.clients.get_mut(&msg.client_id) else { return };
        let mut removed = false;
        if let Some(pos) = state.sessions.iter().position(|s| s.link.session_id == msg.session_id) {
            let live = state.sessions.swap_remove(pos);
            metrics().connections.with_label_values(&[live.link.transport.label()]).dec();
            live.link.backlog.stop_lag();
            removed = true;
        }
        let gone = removed && state.sessions.is_empty();
        if state.sessions.is_empty() {
            // Whatever was in flight is redelivered from the queue at the next connect.
            state.inflight.clear();
            state.scan_from = [0; 5];
        }
        state.last_seen = Some(Instant::now());
        if gone {
            self.presence(&msg.client_id, false);
        }
    }

    /// The next `limit` queue entries in delivery order: priority, moved up one level per
    /// `aging` waited, FIFO within a level. Skips in-flight and filtered entries. Also says whether
    /// the queue holds nothing beyond them.
    pub(super) fn queue_batch(&mut self, client: &str, limit: usize, accepts: impl Fn(&str) -> bool) -> Result<(Vec<Queued>, bool), StoreError> {
        let state = self.clients.entry(client.to_owned()).or_default();
        let (inflight, scan_from) = (&state.inflight, &mut state.scan_from);
        let skip = |seq: u64, e: &crate::store::QueueEntry| {
            if inflight.contains(&seq) {
                Skip::Inflight
            } else if accepts(&e.msg_type) {
                Skip::Take
            } else {
                Skip::Other
            }
        };
        let mut all = Vec::new();
        for p in Priority::ALL {
            // One more than a batch per level, to know whether anything is left after it. The scan
            // starts after the level's leading run of in-flight entries, so thousands of unacked
            // messages are not rescanned by every feed.
            let (entries, run) = self.store.queue_level(client, p, scan_from[p.index()] + 1, limit + 1, skip)?;
            scan_from[p.index()] = run;
            all.extend(entries);
        }
        let exhausted = all.len() <= limit;
        let now = Timestamp::now().millis();
        let aging = i64::try_from(self.config.aging.as_millis().max(1)).unwrap_or(i64::MAX);
        all.sort_by_key(|q| {
            let age = now - q.entry.timestamp_ms;
            let effective = (q.priority.index() as i64 - age / aging).max(0);
            (effective, q.entry.timestamp_ms, q.seq)
        });
        all.truncate(limit);
        Ok((all, exhausted))
    }

    /// Feeds a lagging session its next batch (stream replay, then queue); ends the lag when the
    /// feed has nothing more. Returns how many messages were handed over.
    pub(super) fn feed(&mut self, client: &str, session_id: &str, ctx: &mut Context<Self>) -> Result<usize, RouteError> {
        self.sync(ctx);
        let mut total = 0;
        loop {
            let Some(live) = self.clients.get(client).and_then(|s| s.sessions.iter().find(|l| l.link.session_id == session_id))
            else {
                return Ok(total);
            };
            let (link, feed) = (live.link.clone(), live.feed);
            let limit = link.backlog.limit.min(FEED_BATCH);
            let now = Timestamp::now();
            let mut batch = Batch::default();
            let mut out = Vec::new();
            let (stream_end, exhausted) = match feed {
                Feed::Stream { after } => {
                    let msgs = self.store.range(Stream::Inbox(client), after, limit)?;
                    let end = (msgs.len() < limit, msgs.last().map_or(after, |m| m.seq));
                    out.extend(msgs.into_iter().filter(|m| link.filter.accepts(&m.msg_type) && !m.is_expired(now)));
                    (Some(end), false)
                }
                Feed::Queue => {
                    let (queued, exhausted) = self.queue_batch(client, limit, |t| link.filter.accepts(t))?;
                    for q in queued {
                        match self.store.get(Stream::Inbox(client), q.seq)? {
                            Some(m) if !m.is_expired(now) => out.push(m),
                            found => {
                                batch.dequeue(client, q.priority, q.seq);
                                if q.entry.requires_ack {
                                    self.tracker.expired.do_send(Expired { client_id: client.to_owned(), seq: q.seq, gone: found.is_none() });
                                }
                            }
                        }
                    }
                    (None, exhausted)
                }
            };
            // Hand over what fits in the session's and the client's byte budgets (at least one
            // message, so that none is too big to ever arrive); the rest waits for the next feed.
            let client_bytes = self.clients.get(client).map_or(0, |s| s.sessions.iter().map(|l| l.link.backlog.bytes()).sum::<usize>());
            let mut room = link.backlog.limit_bytes.saturating_sub(link.backlog.bytes()).min(self.config.client_queue_bytes.saturating_sub(client_bytes));
            let mut taken = Vec::with_capacity(out.len());
            let mut cut = false;
            for m in out {
                let o = Outgoing::new(m);
                let cost = o.cost();
                if !taken.is_empty() && cost > room {
                    cut = true;
                    break;
                }
                room = room.saturating_sub(cost);
                taken.push(o);
            }
            let (next_feed, exhausted) = match (feed, stream_end) {
                (Feed::Stream { .. }, Some((end, last_loaded))) => match (end, cut) {
                    (true, false) => (Feed::Queue, false),
                    (_, true) => (Feed::Stream { after: taken.last().map_or(last_loaded, |o| o.message.seq) }, false),
                    (false, false) => (Feed::Stream { after: last_loaded }, false),
                },
                _ => (Feed::Queue, exhausted && !cut),
            };
            let n = taken.len();
            total += n;
            link.backlog.add_sized(n, taken.iter().map(|o| o.cost()).sum());
            let state = self.clients.get_mut(client).expect("checked above");
            for o in taken {
                let m = &o.message;
                if m.requires_ack {
                    state.inflight.insert(m.seq);
                    self.tracker.delivered.do_send(Delivered { client_id: client.to_owned(), seq: m.seq });
                } else {
                    batch.dequeue(client, m.priority, m.seq);
                }
                link.hand_over(o);
            }
            self.store.apply(batch)?;
            if let Some(live) = state.sessions.iter_mut().find(|l| l.link.session_id == session_id) {
                live.feed = next_feed;
            }
            if next_feed != feed {
                continue; // the stream replay is done: go on with the queue
            }
            if exhausted {
                link.backlog.stop_lag();
                debug!(actor = Router::NAME, client_id = %client, session_id = %session_id, "caught up");
                return Ok(total);
            }
            if n > 0 {
                // More waits: the session stays lagging and asks for the next batch (CatchUp)
                // once it has written this one.
                return Ok(total);
            }
            // Nothing handed over (all expired or filtered) but more waits: go on now, since no
            // drained session will ask.
        }
    }

    pub(super) fn redeliver(&mut self, msg: &Redeliver, ctx: &mut Context<Self>) -> Result<bool, RouteError> {
        self.sync(ctx);
        let Some(message) = self.store.get(Stream::Inbox(&msg.client_id), msg.seq)? else { return Ok(false) };
        let Some(state) = self.clients.get_mut(&msg.client_id) else { return Ok(false) };
        let out = Outgoing::new(message);
        let mut delivered = false;
        for live in &state.sessions {
            let link = &live.link;
            if link.backlog.is_lagging() || !link.filter.accepts(&out.message.msg_type) {
                continue;
            }
            link.backlog.add_sized(1, out.cost());
            link.hand_over(Arc::clone(&out));
            delivered = true;
        }
        if delivered {
            state.inflight.insert(msg.seq);
            self.tracker.delivered.do_send(Delivered { client_id: msg.client_id.clone(), seq: msg.seq });
        } else if state.inflight.remove(&msg.seq) {
            // Back in the queue for the next feed: scans must not start past it.
            let level = &mut state.scan_from[out.message.priority.index()];
            *level = (*level).min(msg.seq.saturating_sub(1));
        }
        Ok(delivered)
    }

    pub(super) fn poll(&mut self, msg: Poll, ctx: &mut Context<Self>) -> Result<Polled, RouteError> {
        self.sync(ctx);
        let limit = msg.limit.clamp(1, 1000);
        let last = self.last_seq(&msg.client_id)?;
        if msg.seen {
            self.client(&msg.client_id).last_seen = Some(Instant::now());
        }
        let now = Timestamp::now();
        let inbox = Stream::Inbox(&msg.client_id);
        let (messages, base) = match msg.from {
            PollFrom::Seq(s) => {
                // Step over pages that hold only expired messages the sweeper has not removed yet,
                // so the cursor always moves on to what is deliverable.
                let mut after = s.min(last);
                loop {
                    let chunk = self.store.range(inbox, after, limit)?;
                    let Some(tail) = chunk.last().map(|m| m.seq) else { break (Vec::new(), after) };
                    if chunk.iter().any(|m| !m.is_expired(now)) {
                        break (chunk, after);
                    }
                    after = tail;
                }
            }
            PollFrom::Queue => {
                let (queued, _) = self.queue_batch(&msg.client_id, limit, |_| true)?;
                let mut out = Vec::new();
                for q in queued {
                    if let Some(m) = self.store.get(inbox, q.seq)? {
                        out.push(m);
                    }
                }
                (out, last)
            }
            PollFrom::Time(t) => {
                let mut after = 0;
                let mut out = Vec::new();
                // Old clients page by time: scan forward and keep the newer ones.
                loop {
                    let chunk = self.store.range(inbox, after, 1000)?;
                    let Some(tail) = chunk.last() else { break };
                    after = tail.seq;
                    out.extend(chunk.into_iter().filter(|m| m.timestamp > t));
                    if out.len() >= limit {
                        out.truncate(limit);
                        break;
                    }
                }
                (out, last)
            }
        };
        let messages: Vec<Msg> = messages.into_iter().filter(|m| !m.is_expired(now)).collect();
        if !messages.is_empty() {
            // What an HTTP client has been given counts as delivered; acks come by POST /api/ack.
            let mut batch = Batch::default();
            for m in &messages {
                if m.requires_ack {
                    self.tracker.delivered.do_send(Delivered { client_id: msg.client_id.clone(), seq: m.seq });
                } else {
                    batch.dequeue(&msg.client_id, m.priority, m.seq);
                }
            }
            self.store.apply(batch)?;
            let next_since = match msg.from {
                PollFrom::Seq(_) => messages.last().map_or(base, |m| m.seq),
                _ => messages.iter().map(|m| m.seq).max().unwrap_or(base),
            };
            return Ok(Polled::Page { messages, next_since });
        }
        if msg.wait {
            let (tx, rx) = oneshot::channel();
            let state = self.client(&msg.client_id);
            state.waiters.retain(|w| !w.is_closed());
            state.waiters.push(tx);
            return Ok(Polled::Wait { wake: rx, next_since: base });
        }
        Ok(Polled::Page { messages, next_since: base })
    }
}
