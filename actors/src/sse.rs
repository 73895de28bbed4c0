//! `SseSession`: one actor per Server-Sent Events stream (`GET /stream/events`).
//!
//! Registers with the client's router shard like a WebSocket session and writes each delivery as
//! an event whose `id:` is the message's seq, so a browser's `EventSource` resumes with
//! `Last-Event-ID` by itself. The response body is a channel read by [`SseBody`]: a delivery
//! leaves the session's backlog only when the HTTP layer takes its bytes for the socket, so a
//! client that reads slowly fills the backlog's byte budget and the router moves it to the
//! store-fed catch-up path — the same bound as WebSocket sessions, and nothing counts as handed
//! over beyond that budget while the client reads nothing. A comment line every `heartbeat` keeps
//! proxies from closing the stream and detects a gone client. Supervised as a temporary child of
//! the `sessions` group.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::web::Bytes;
use agent_bridge_protocol::ServerFrame;
use tokio::sync::mpsc;
use tracing::debug;

use crate::auth::limits::CredentialsRevoked;
use crate::auth::SessionAuth;
use crate::delivery::{Backlog, CloseSession, Deliver, Notify, Transport};
use crate::messages::{CatchUp, Connected, RouteError};
use crate::metrics::metrics;
use crate::session::{Connection, Registration, SessionDeps};
use crate::supervisor::{supervisee, Supervisee};

/// Heartbeat comment interval.
pub const SSE_HEARTBEAT: Duration = Duration::from_secs(15);

/// One SSE stream.
pub struct SseSession {
    /// Identity, shard, tree node, backlog and filter (shared with WebSocket sessions).
    reg: Registration,
    /// The response body: each event, with its backlog cost if it is a delivery.
    tx: mpsc::Sender<(Bytes, Option<usize>)>,
}

impl SseSession {
    pub const NAME: &'static str = "sse_session";

    /// Starts a stream for `client_id`; returns the body to serve.
    pub fn start(
        client_id: String,
        since: Option<u64>,
        types: Option<HashSet<String>>,
        deps: &SessionDeps,
        auth: SessionAuth,
    ) -> SseBody {
        let (tx, rx) = mpsc::channel(deps.config.queue_limit.clamp(16, 1024));
        let reg = Registration::new(deps, SseSession::NAME, "sse", client_id, since, types, auth);
        let body = SseBody { rx, backlog: Arc::clone(&reg.backlog), shard: reg.shard.catch_up.clone(), catch_up: reg.catch_up() };
        SseSession { reg, tx }.start();
        body
    }

    /// Queues an event for the body (`cost`: a delivery counted in the backlog); while the
    /// channel is full the actor waits.
    fn push(&mut self, bytes: Bytes, cost: Option<usize>, ctx: &mut Context<Self>) {
        match self.tx.try_send((bytes, cost)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(item)) => {
                let tx = self.tx.clone();
                ctx.wait(async move { tx.send(item).await.is_ok() }.into_actor(self).map(|ok, _, ctx| {
                    if !ok {
                        ctx.stop();
                    }
                }));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => ctx.stop(),
        }
    }
}

/// The body of an SSE response. A delivery leaves the session's backlog when the HTTP layer takes
/// it from here to write it (actix-http asks for more only while its write buffer is under its
/// high-water mark); a lagging session that drains asks its shard for the next batch.
pub struct SseBody {
    rx: mpsc::Receiver<(Bytes, Option<usize>)>,
    backlog: Arc<Backlog>,
    shard: Recipient<CatchUp>,
    /// Sent to the shard when a lagging backlog drained.
    catch_up: CatchUp,
}

impl futures_util::Stream for SseBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.rx.poll_recv(cx).map(|item| {
            item.map(|(bytes, cost)| {
                if let Some(cost) = cost {
                    if this.backlog.delivered_sized(cost) {
                        this.shard.do_send(CatchUp { client_id: this.catch_up.client_id.clone(), session_id: this.catch_up.session_id.clone() });
                    }
                    if let Some(frame) = this.backlog.take_dropped() {
                        // Rare: a `dropped` notice rides along with the delivery that follows it.
                        let mut both = bytes.to_vec();
                        both.extend_from_slice(&event(None, frame.frame_type(), &frame.to_json()));
                        return Ok(Bytes::from(both));
                    }
                }
                Ok(bytes)
            })
        })
    }
}

/// One SSE event. `data` may span lines (a payload posted pretty-printed is relayed as written):
/// each line becomes its own `data:` field, which a reader joins back with `\n` (the SSE spec), so
/// the JSON it reassembles is the JSON that was sent.
fn event(id: Option<u64>, name: &str, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 48);
    if let Some(id) = id {
        s.push_str("id: ");
        s.push_str(&id.to_string());
        s.push('\n');
    }
    s.push_str("event: ");
    s.push_str(name);
    s.push('\n');
    // The spec's line ends: CRLF, CR or LF.
    for line in data.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
        s.push_str("data: ");
        s.push_str(line);
        s.push('\n');
    }
    s.push('\n');
    Bytes::from(s)
}

impl Connection for SseSession {
    fn close_credentials(&mut self, why: &str, ctx: &mut Self::Context) {
        self.close_with("unauthorized", why, ctx);
    }

    fn connected(&mut self, result: Result<Connected, RouteError>, ctx: &mut Self::Context) {
        if let Ok(c) = result {
            let data = serde_json::json!({
                "client_id": self.reg.client_id, "session_id": self.reg.session_id, "resumed_from": c.resumed_from,
                "heartbeat_s": SSE_HEARTBEAT.as_secs(),
            });
            self.push(event(None, "connection_confirmed", &data.to_string()), None, ctx);
        } else {
            let frame = ServerFrame::error("unavailable", "the router could not register this stream", None);
            self.push(event(None, "error", &frame.to_json()), None, ctx);
            ctx.stop();
        }
    }
}

impl Actor for SseSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Err(why) = self.reg.start::<Self>(ctx, Transport::Sse) {
            return self.close_with("unauthorized", why, ctx);
        }
        ctx.run_interval(SSE_HEARTBEAT, |act, ctx| {
            // A full channel only skips this ping; a closed one means the client is gone.
            if act.tx.is_closed() || (act.tx.try_send((Bytes::from_static(b": ping\n\n"), None)).is_err() && act.tx.is_closed()) {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.reg.stop();
        debug!(client_id = %self.reg.client_id, session_id = %self.reg.session_id, "sse stream closed");
    }
}

impl Handler<Deliver> for SseSession {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let bytes = event(Some(msg.0.message.seq), "message", &msg.0.json);
        metrics().written(Transport::Sse.label(), msg.0.message.priority, msg.0.accepted);
        let cost = msg.0.cost();
        let _ = self.guard(ctx, |this, ctx| {
            this.push(bytes, Some(cost), ctx);
            Ok(())
        });
    }
}

impl Handler<Notify> for SseSession {
    type Result = ();
    fn handle(&mut self, msg: Notify, ctx: &mut Self::Context) {
        let bytes = event(None, msg.0.frame.frame_type(), &msg.0.json);
        self.push(bytes, None, ctx);
    }
}

// A temporary child: a failure ends the stream; the client reconnects with `Last-Event-ID`.
supervisee!(SseSession, (), reg.child);

impl SseSession {
    /// Ends the stream with an `error` event (`unauthorized`, `kicked`).
    fn close_with(&mut self, code: &str, why: &str, ctx: &mut Context<Self>) {
        let frame = ServerFrame::error(code, why, None);
        let _ = self.tx.try_send((event(None, "error", &frame.to_json()), None));
        ctx.stop();
    }
}

impl Handler<CredentialsRevoked> for SseSession {
    type Result = ();
    fn handle(&mut self, msg: CredentialsRevoked, ctx: &mut Self::Context) {
        self.close_with("unauthorized", &msg.reason, ctx);
    }
}

impl Handler<CloseSession> for SseSession {
    type Result = ();
    fn handle(&mut self, msg: CloseSession, ctx: &mut Self::Context) {
        self.close_with(msg.code, &msg.reason, ctx);
    }
}
