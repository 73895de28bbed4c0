//! `Session`: one actor per WebSocket connection, and all of the WebSocket glue (actix-web-actors).
//!
//! Owns: the socket, the client's type filter, its heartbeat clock and the seq it has seen. Receives
//! frames from the socket and [`Deliver`] from its router shard. Supervised as a temporary child of
//! the `sessions` group: a panic in a handler sends an `error` frame (`internal`) and closes the
//! socket with 1011; the client reconnects and resumes by `seq`, and nothing else is touched.
//!
//! actix-web-actors is deprecated upstream in favour of actix-ws; this module is the only one that
//! uses it, so moving is local.

mod batch;
mod common;
mod gate;

pub(crate) use common::{Connection, Registration};
pub use common::{Encoding, SessionConfig, SessionDeps, SessionParams, SESSIONS_GROUP};
pub use gate::{Gate, GatedPayload};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_http::ws::Item;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, CloseCode, CloseReason};
use agent_bridge_protocol::frames::{ConnectionConfirmed, ErrorFrame, Send, Sent, ServerInfo};
use agent_bridge_protocol::{ClientFrame, ProtocolError, ServerFrame, Timestamp};
use tracing::{debug, info_span, warn, Span};

use crate::auth::limits::CredentialsRevoked;
use crate::auth::AuthError;
use crate::delivery::{CloseSession, Deliver, Envelope, Notify, Outgoing, Transport};
use crate::messages::{Acknowledge, Connected, NegativeAck, Replied, ReplyTo, RouteError, TrackerLink};
use crate::metrics::metrics;
use crate::room::{JoinLink, RoomDeliver};
use crate::rooms::RoomsHandle;
use crate::router::RouterHandle;
use crate::supervisor::{fault_handler, ChildHandle, Failure, Supervisee};

/// Upgrades the request and starts a session actor on the current worker, reading the socket
/// through a [`GatedPayload`].
pub fn start(req: &HttpRequest, stream: web::Payload, params: SessionParams, deps: &SessionDeps) -> Result<HttpResponse, actix_web::Error> {
    let gate = Arc::new(Gate::default());
    let session = Session::new(params, deps, Arc::clone(&gate));
    let payload = GatedPayload::new(stream, gate, deps.config.hard_frame_bytes);
    ws::WsResponseBuilder::new(session, req, payload).frame_size(deps.config.hard_frame_bytes).start()
}

/// Why a `send` was refused before it reached the router.
enum Refused {
    /// `forbidden`, `rate_limited` …
    Auth(AuthError),
    /// The frame does not validate.
    Invalid(ProtocolError),
}

/// A fragmented message being reassembled.
struct Fragments {
    text: bool,
    buf: Vec<u8>,
}

/// One WebSocket connection.
pub struct Session {
    /// Identity, shard, tree node, backlog and filter (shared with SSE sessions).
    reg: Registration,
    /// All router shards (sends go to the recipient's shard).
    router: RouterHandle,
    /// Settings.
    config: Arc<SessionConfig>,
    /// Acks and nacks go here.
    tracker: TrackerLink,
    /// `join`, `leave` and `call` frames go here.
    rooms: RoomsHandle,
    /// Last time anything arrived from the client.
    last_heard: Instant,
    encoding: Encoding,
    /// Fragmented frame in progress.
    fragments: Option<Fragments>,
    /// Sends routed but not yet answered.
    in_flight: usize,
    /// Shared with the reader of the socket: paused while `in_flight` is over the limit.
    gate: Arc<Gate>,
    /// The connection's tracing span.
    span: Span,
    /// See [`SessionParams::on_stop`].
    on_stop: Option<Box<dyn FnOnce()>>,
}

impl Session {
    pub const NAME: &'static str = "session";

    fn new(params: SessionParams, deps: &SessionDeps, gate: Arc<Gate>) -> Self {
        let reg = Registration::new(deps, Session::NAME, "session", params.client_id, params.since, params.types, params.auth);
        let span = info_span!("ws_session", client_id = %reg.client_id, session_id = %reg.session_id);
        Session {
            reg,
            router: deps.router.clone(),
            config: Arc::clone(&deps.config),
            tracker: deps.tracker.clone(),
            rooms: deps.rooms.clone(),
            last_heard: Instant::now(),
            encoding: params.encoding,
            fragments: None,
            in_flight: 0,
            gate,
            span,
            on_stop: params.on_stop,
        }
    }

    fn write(&self, frame: &ServerFrame, ctx: &mut ws::WebsocketContext<Self>) {
        match self.encoding {
            Encoding::Json => ctx.text(frame.to_json()),
            Encoding::Bincode => ctx.binary(frame.to_bincode()),
        }
    }

    fn reject(&self, e: &ProtocolError, r#ref: Option<String>, ctx: &mut ws::WebsocketContext<Self>) {
        metrics().rejected.with_label_values(&[e.code()]).inc();
        let _enter = self.span.enter();
        debug!(code = e.code(), error = %e, "frame rejected");
        self.write(&ServerFrame::Error(ErrorFrame::from_protocol(e, r#ref)), ctx);
    }

    fn fail(&mut self, failure: &Failure, ctx: &mut ws::WebsocketContext<Self>) {
        self.write(&ServerFrame::error("internal", format!("session failed: {}; reconnect and resume", failure.reason), None), ctx);
        ctx.close(Some(CloseReason { code: CloseCode::Error, description: Some("internal error".into()) }));
        ctx.stop();
    }

    /// Decodes and dispatches one complete data frame.
    fn on_data(&mut self, text: bool, bytes: &[u8], ctx: &mut ws::WebsocketContext<Self>) {
        let limit = self.config.max_frame_bytes;
        if bytes.len() > limit {
            let r#ref = if text { std::str::from_utf8(bytes).ok().and_then(agent_bridge_protocol::frames::extract_ref) } else { None };
            return self.reject(&ProtocolError::TooLarge { size: bytes.len(), limit }, r#ref, ctx);
        }
        let decoded = if text {
            match std::str::from_utf8(bytes) {
                Ok(s) => ClientFrame::from_json(s, limit).map_err(|e| (e, agent_bridge_protocol::frames::extract_ref(s))),
                // Only a reassembled fragmented text can get here (actix checks whole frames):
                // the same close as for a single frame, 1007 (RFC 6455 §8.1).
                Err(_) => return self.close_invalid_utf8(ctx),
            }
        } else if self.encoding == Encoding::Bincode {
            ClientFrame::from_bincode(bytes, limit).map_err(|e| (e, None))
        } else {
            Err((ProtocolError::Malformed { detail: "binary frames need ?encoding=bincode".into() }, None))
        };
        match decoded {
            Ok(frame) => self.on_frame(frame, ctx),
            Err((e, r#ref)) => self.reject(&e, r#ref, ctx),
        }
    }

    fn on_frame(&mut self, frame: ClientFrame, ctx: &mut ws::WebsocketContext<Self>) {
        match frame {
            ClientFrame::Send(send) => {
                let r#ref = send.r#ref.clone();
                match self.envelope(send) {
                    Ok(env) => self.route(env, r#ref, ctx),
                    Err(Refused::Auth(e)) => self.auth_error(&e, r#ref, ctx),
                    Err(Refused::Invalid(e)) => self.reject(&e, r#ref, ctx),
                }
            }
            ClientFrame::Ack(ack) => {
                self.tracker.acknowledge.do_send(Acknowledge { client_id: self.reg.client_id.clone(), message_id: ack.message_id })
            }
            ClientFrame::Nack(nack) => {
                let _enter = self.span.enter();
                debug!(msg_id = %nack.message_id, reason = ?nack.reason, "nack");
                self.tracker.negative_ack.do_send(NegativeAck { client_id: self.reg.client_id.clone(), message_id: nack.message_id });
            }
            ClientFrame::Ping(_) => self.write(&ServerFrame::pong(), ctx),
            ClientFrame::Pong(_) => {}
            ClientFrame::Subscribe(sub) => self.reg.filter.set(sub.types),
            frame @ (ClientFrame::Join(_) | ClientFrame::Leave(_) | ClientFrame::Call(_)) => self.room_frame(frame, ctx),
            ClientFrame::SendBatch(batch) => self.send_batch(batch, ctx),
        }
    }

    /// `join`, `leave` and `call`: handled by the rooms (crate::rooms), answered when they are done.
    fn room_frame(&mut self, frame: ClientFrame, ctx: &mut ws::WebsocketContext<Self>) {
        let link = JoinLink {
            session_id: self.reg.session_id.clone(),
            deliver: ctx.address().recipient(),
            notify: ctx.address().recipient(),
            filter: Arc::clone(&self.reg.filter),
        };
        let reply = self.rooms.frame(&self.reg.client_id, Some(Arc::clone(&self.reg.auth.identity)), frame, link);
        ctx.spawn(reply.into_actor(self).map(|frame, act, ctx| {
            if let Some(frame) = frame {
                act.write(&frame, ctx);
            }
        }));
    }

    /// The checks of every `send`, alone or in a batch: the session's permission and rate limits
    /// (counted in its key's usage), then the frame's validation.
    fn envelope(&mut self, send: Send) -> Result<Envelope, Refused> {
        self.reg.auth.check_send().map_err(Refused::Auth)?;
        Envelope::from_frame(send, &self.reg.client_id).map_err(Refused::Invalid)
    }

    fn route(&mut self, env: Envelope, r#ref: Option<String>, ctx: &mut ws::WebsocketContext<Self>) {
        self.admitted(1);
        // The shard answers with a `Replied` message once the message is durable.
        self.router.route_to(env, ReplyTo::Session { to: ctx.address().recipient(), r#ref });
    }

    /// Counts `n` sends routed and not yet answered.
    fn admitted(&mut self, n: usize) {
        self.in_flight += n;
        if self.in_flight >= self.config.max_in_flight {
            // Backpressure, not refusal: stop reading the socket until replies drain.
            self.gate.pause();
        }
    }

    /// Counts `n` sends answered.
    fn settled(&mut self, n: usize) {
        self.in_flight = self.in_flight.saturating_sub(n);
        if self.in_flight <= self.config.max_in_flight / 2 {
            self.gate.resume();
        }
    }

    /// Writes a `message` frame (encoded once by the router or a room) in the session's encoding.
    fn write_message(&self, out: &Outgoing, ctx: &mut ws::WebsocketContext<Self>) {
        metrics().written(Transport::WebSocket.label(), out.message.priority, out.accepted);
        match self.encoding {
            Encoding::Json => ctx.text(out.json.clone()),
            Encoding::Bincode => ctx.binary(
                ServerFrame::Message(agent_bridge_protocol::frames::Delivery { message: out.message.clone() }).to_bincode(),
            ),
        }
    }

    fn on_deliver(&mut self, msg: Deliver, ctx: &mut ws::WebsocketContext<Self>) {
        let out = msg.0;
        let wake = self.reg.backlog.delivered_sized(out.cost());
        self.write_message(&out, ctx);
        if let Some(frame) = self.reg.backlog.take_dropped() {
            self.write(&frame, ctx);
        }
        if wake {
            self.reg.shard.catch_up.do_send(self.reg.catch_up());
        }
    }

    fn close_invalid_utf8(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        metrics().rejected.with_label_values(&["malformed"]).inc();
        ctx.close(Some(CloseReason { code: CloseCode::Invalid, description: Some("text frame is not valid UTF-8".into()) }));
        ctx.stop();
    }

    fn heartbeat(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let silent = self.last_heard.elapsed();
        if silent > self.config.heartbeat_interval + self.config.heartbeat_timeout {
            let _enter = self.span.enter();
            warn!(silent_s = silent.as_secs_f64(), "heartbeat missed; closing session");
            ctx.close(Some(CloseReason { code: CloseCode::Away, description: Some("heartbeat timeout".into()) }));
            ctx.stop();
            return;
        }
        ctx.ping(b"");
    }
}

fn route_error_frame(e: &RouteError, r#ref: Option<String>) -> ServerFrame {
    metrics().rejected.with_label_values(&[e.code()]).inc();
    ServerFrame::error(e.code(), e.to_string(), r#ref)
}

impl Connection for Session {
    fn close_credentials(&mut self, why: &str, ctx: &mut Self::Context) {
        self.close_policy(why, ctx);
    }

    fn connected(&mut self, result: Result<Connected, RouteError>, ctx: &mut Self::Context) {
        match result {
            Ok(connected) => {
                let confirmed = ServerFrame::ConnectionConfirmed(ConnectionConfirmed {
                    client_id: self.reg.client_id.clone(),
                    session_id: self.reg.session_id.clone(),
                    server: ServerInfo { name: self.config.server_name.clone(), version: self.config.version.clone() },
                    timestamp: Timestamp::now(),
                    heartbeat_s: self.config.heartbeat_interval.as_secs(),
                    resumed_from: connected.resumed_from,
                });
                self.write(&confirmed, ctx);
                let _enter = self.span.enter();
                debug!(last_seq = connected.last_seq, resumed_from = ?connected.resumed_from, "session connected");
            }
            Err(RouteError::Mailbox(e)) => {
                self.write(&ServerFrame::error("unavailable", format!("router unavailable: {e}"), None), ctx);
                ctx.close(Some(CloseReason { code: CloseCode::Again, description: Some("router unavailable".into()) }));
                ctx.stop();
            }
            Err(e) => {
                self.write(&route_error_frame(&e, None), ctx);
                ctx.close(Some(CloseReason { code: CloseCode::Again, description: Some("registration failed".into()) }));
                ctx.stop();
            }
        }
    }
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // `connection_confirmed` is the first frame: the registration holds everything else back.
        if let Err(why) = self.reg.start::<Self>(ctx, Transport::WebSocket) {
            return self.close_policy(why, ctx);
        }
        let interval = self.config.heartbeat_interval;
        ctx.run_interval(interval, |act, ctx| act.heartbeat(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.reg.stop();
        self.rooms.session_closed(&self.reg.session_id);
        if let Some(on_stop) = self.on_stop.take() {
            on_stop();
        }
        let _enter = self.span.enter();
        debug!("session closed");
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        self.gate.handled.fetch_add(1, Ordering::AcqRel);
        let _ = self.guard(ctx, |this, ctx| {
            this.on_item(item, ctx);
            Ok(())
        });
    }
}

impl Supervisee for Session {
    type Error = ();

    fn child(&self) -> &ChildHandle {
        &self.reg.child
    }

    /// A temporary child: tell the client, close with 1011; it reconnects and resumes by `seq`.
    fn on_failure(&mut self, failure: &Failure, ctx: &mut Self::Context) {
        self.fail(failure, ctx);
    }
}

impl Session {
    fn on_item(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut ws::WebsocketContext<Self>) {
        match item {
            Ok(ws::Message::Text(text)) => self.on_data(true, text.as_bytes(), ctx),
            Ok(ws::Message::Binary(bin)) => self.on_data(false, &bin, ctx),
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Pong(_)) => {}
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Continuation(item)) => self.on_fragment(item, ctx),
            Ok(ws::Message::Nop) => {}
            Err(e) => {
                let (code, text, label) = match e {
                    _ if self.gate.overflow.load(Ordering::Acquire) => (CloseCode::Size, "frame exceeds the hard size limit", "too_large"),
                    ws::ProtocolError::Overflow => (CloseCode::Size, "frame exceeds the hard size limit", "too_large"),
                    // actix-web-actors reports a text frame that is not UTF-8 as an I/O error
                    // carrying the Utf8Error's text; RFC 6455 §7.4.1 asks for 1007.
                    ws::ProtocolError::Io(ref io) if io.to_string().contains("utf-8") => {
                        (CloseCode::Invalid, "text frame is not valid UTF-8", "malformed")
                    }
                    _ => (CloseCode::Protocol, "websocket protocol error", "protocol_error"),
                };
                metrics().rejected.with_label_values(&[label]).inc();
                let _enter = self.span.enter();
                warn!(error = %e, "closing session on protocol error");
                ctx.close(Some(CloseReason { code, description: Some(text.into()) }));
                ctx.stop();
            }
        }
    }
}

impl Session {
    fn on_fragment(&mut self, item: Item, ctx: &mut ws::WebsocketContext<Self>) {
        let too_big = |len: usize| len > self.config.hard_frame_bytes;
        match item {
            Item::FirstText(_) | Item::FirstBinary(_) if self.fragments.is_some() => {
                self.fragments = None;
                self.reject(&ProtocolError::Malformed { detail: "new fragmented frame before the last ended".into() }, None, ctx);
            }
            Item::FirstText(b) => self.fragments = Some(Fragments { text: true, buf: b.to_vec() }),
            Item::FirstBinary(b) => self.fragments = Some(Fragments { text: false, buf: b.to_vec() }),
            Item::Continue(_) | Item::Last(_) => {
                let (last, b) = match item {
                    Item::Last(b) => (true, b),
                    Item::Continue(b) | Item::FirstText(b) | Item::FirstBinary(b) => (false, b),
                };
                let Some(frag) = self.fragments.as_mut() else {
                    return self.reject(&ProtocolError::Malformed { detail: "continuation without a first fragment".into() }, None, ctx);
                };
                frag.buf.extend_from_slice(&b);
                if too_big(frag.buf.len()) {
                    ctx.close(Some(CloseReason { code: CloseCode::Size, description: Some("fragmented frame too large".into()) }));
                    ctx.stop();
                    return;
                }
                if last {
                    if let Some(frag) = self.fragments.take() {
                        self.on_data(frag.text, &frag.buf, ctx);
                    }
                }
            }
        }
    }
}

impl Handler<Deliver> for Session {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let _ = self.guard(ctx, |this, ctx| {
            this.on_deliver(msg, ctx);
            Ok(())
        });
    }
}

impl Handler<RoomDeliver> for Session {
    type Result = ();
    fn handle(&mut self, msg: RoomDeliver, ctx: &mut Self::Context) {
        self.write_message(&msg.out, ctx);
        if let Some(frame) = msg.take_dropped() {
            self.write(&frame, ctx);
        }
        msg.written();
    }
}

impl Handler<Replied> for Session {
    type Result = ();
    fn handle(&mut self, msg: Replied, ctx: &mut Self::Context) {
        self.settled(1);
        let frame = match msg.result {
            Ok(r) => ServerFrame::Sent(Sent {
                r#ref: msg.r#ref,
                message_id: r.message_id,
                seq: r.seq,
                status: r.status,
                recipients: r.recipients,
            }),
            Err(e) => route_error_frame(&e, msg.r#ref),
        };
        self.write(&frame, ctx);
    }
}

impl Handler<Notify> for Session {
    type Result = ();
    fn handle(&mut self, msg: Notify, ctx: &mut Self::Context) {
        match self.encoding {
            Encoding::Json => ctx.text(msg.0.json.clone()),
            Encoding::Bincode => ctx.binary(msg.0.frame.to_bincode()),
        }
    }
}

fault_handler!(Session);

/// Credentials: revocation and expiry close the session with 1008 (policy violation); `Registration`
/// registers for them.
impl Session {
    /// Writes an `unauthorized` error frame and closes with 1008.
    fn close_policy(&mut self, why: &str, ctx: &mut ws::WebsocketContext<Self>) {
        {
            let _enter = self.span.enter();
            warn!(reason = why, "closing session: credentials no longer valid");
        }
        metrics().rejected.with_label_values(&["unauthorized"]).inc();
        self.write(&ServerFrame::error("unauthorized", why, None), ctx);
        ctx.close(Some(CloseReason { code: CloseCode::Policy, description: Some(why.into()) }));
        ctx.stop();
    }

    /// Answers a refused frame (`forbidden`, `rate_limited` with `retry_after`).
    fn auth_error(&self, e: &AuthError, r#ref: Option<String>, ctx: &mut ws::WebsocketContext<Self>) {
        metrics().rejected.with_label_values(&[e.code()]).inc();
        let frame = match e.retry_after() {
            Some(secs) => ServerFrame::rate_limited(e.to_string(), r#ref, secs),
            None => ServerFrame::error(e.code(), e.to_string(), r#ref),
        };
        self.write(&frame, ctx);
    }
}

/// `DELETE /admin/clients/{id}`: an `error` frame with the code, then close 4001.
impl Handler<CloseSession> for Session {
    type Result = ();
    fn handle(&mut self, msg: CloseSession, ctx: &mut Self::Context) {
        {
            let _enter = self.span.enter();
            warn!(code = msg.code, reason = %msg.reason, "closing session on an operator's request");
        }
        self.write(&ServerFrame::error(msg.code, msg.reason.clone(), None), ctx);
        ctx.close(Some(CloseReason { code: CloseCode::Other(4001), description: Some(msg.code.into()) }));
        ctx.stop();
    }
}

impl Handler<CredentialsRevoked> for Session {
    type Result = ();
    fn handle(&mut self, msg: CredentialsRevoked, ctx: &mut Self::Context) {
        self.close_policy(&msg.reason, ctx);
    }
}

