//! `Session`: one actor per WebSocket connection, and all of the WebSocket glue (actix-web-actors).
//!
//! Owns: the socket, the client's type filter, its heartbeat clock and the seq it has seen. Receives
//! frames from the socket and [`Deliver`] from its router shard. Supervised as a temporary child of
//! the `sessions` group: a panic in a handler sends an `error` frame (`internal`) and closes the
//! socket with 1011; the client reconnects and resumes by `seq`, and nothing else is touched.
//!
//! actix-web-actors is deprecated upstream in favour of actix-ws; this module is the only one that
//! uses it, so moving is local.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::error::PayloadError;
use actix_http::ws::Item;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::task::AtomicWaker;
use actix_web_actors::ws::{self, CloseCode, CloseReason};
use agent_bridge_protocol::frames::{ConnectionConfirmed, ErrorFrame, Sent, ServerInfo};
use agent_bridge_protocol::{ClientFrame, ProtocolError, ServerFrame, Timestamp};
use tracing::{debug, info_span, warn, Span};

use crate::auth::limits::{until_ms, CredentialsRevoked};
use crate::auth::{AuthError, SessionAuth};
use crate::delivery::{Backlog, Deliver, Envelope, Notify, Outgoing, SessionLink, Transport, TypeFilter};
use crate::messages::{Acknowledge, CatchUp, Connect, Disconnect, NegativeAck, Replied, ReplyTo, RouteError, TrackerLink};
use crate::metrics::metrics;
use crate::room::{JoinLink, RoomDeliver};
use crate::rooms::RoomsHandle;
use crate::router::{Router, RouterHandle};
use crate::supervisor::{fault_handler, ChildHandle, ChildSpec, Failure, Intensity, RestartPolicy, Supervisee, Tree};

/// Session settings, shared by all sessions.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Frames above this get a `too_large` error frame; the session stays open.
    pub max_frame_bytes: usize,
    /// Frames above this close the socket with 1009 (the codec refuses to buffer them).
    pub hard_frame_bytes: usize,
    /// Server ping interval.
    pub heartbeat_interval: Duration,
    /// Silence allowed after a missed ping before the session is closed.
    pub heartbeat_timeout: Duration,
    /// Frames queued for one session before it is fed from the store instead (WebSocket and SSE
    /// sessions allow at least `queue_bytes / 256`, so the byte budget is what binds).
    pub queue_limit: usize,
    /// Bytes queued for one session (encoded frames plus [`crate::delivery::FRAME_OVERHEAD`] each)
    /// before it is fed from the store, or `persist: false` messages are dropped for it.
    pub queue_bytes: usize,
    /// Sends awaiting their `sent` reply before the session stops reading its socket; it reads
    /// again once half of them are answered (TCP pushes back on the client meanwhile).
    pub max_in_flight: usize,
    pub server_name: String,
    pub version: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_frame_bytes: agent_bridge_protocol::DEFAULT_MAX_FRAME_BYTES,
            hard_frame_bytes: 4 * agent_bridge_protocol::DEFAULT_MAX_FRAME_BYTES,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(10),
            queue_limit: 4096,
            queue_bytes: 64 << 20,
            max_in_flight: 10_000,
            server_name: "agent-bridge".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// How a session encodes its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Bincode,
}

/// Everything a new session needs, resolved by the HTTP layer.
pub struct SessionParams {
    pub client_id: String,
    pub since: Option<u64>,
    pub types: Option<HashSet<String>>,
    pub encoding: Encoding,
    /// The authenticated identity and its limits (crate::auth).
    pub auth: SessionAuth,
    /// Run when the session stops: the HTTP layer ends the TCP connection if it outlives the
    /// close (actix-http can keep it open after a close the server starts).
    pub on_stop: Option<Box<dyn FnOnce()>>,
}

/// Shared dependencies of all sessions.
#[derive(Clone)]
pub struct SessionDeps {
    pub router: RouterHandle,
    pub tracker: TrackerLink,
    pub rooms: RoomsHandle,
    pub tree: Arc<Tree>,
    pub config: Arc<SessionConfig>,
}

/// The name of the supervision group sessions belong to.
pub const SESSIONS_GROUP: &str = "sessions";

/// Upgrades the request and starts a session actor on the current worker, reading the socket
/// through a [`GatedPayload`].
pub fn start(req: &HttpRequest, stream: web::Payload, params: SessionParams, deps: &SessionDeps) -> Result<HttpResponse, actix_web::Error> {
    let gate = Arc::new(Gate::default());
    let session = Session::new(params, deps, Arc::clone(&gate));
    let payload = GatedPayload::new(stream, gate, deps.config.hard_frame_bytes);
    ws::WsResponseBuilder::new(session, req, payload).frame_size(deps.config.hard_frame_bytes).start()
}

/// What a session and the reader of its socket share.
///
/// actix-web-actors decodes frames from a stream of request-body chunks ([`GatedPayload`]) and
/// hands them to the session in the same task. Holding that stream back (`Poll::Pending`) stops
/// reading the socket: actix-http pauses its read once the payload buffer passes its high-water
/// mark, the kernel buffers fill and TCP pushes back on the client. The session's mailbox keeps
/// being handled meanwhile (the `sent` replies that reopen the gate arrive there), which
/// `ctx.wait` would not allow.
#[derive(Default)]
pub struct Gate {
    /// Set while the session has too many sends awaiting their reply.
    paused: AtomicBool,
    /// The reader's task, woken when the gate opens.
    waker: AtomicWaker,
    /// Frames the session has been handed (one per decoded frame or error).
    handled: AtomicU64,
    /// A frame header declared more than the hard frame limit.
    overflow: AtomicBool,
}

impl Gate {
    fn pause(&self) {
        self.paused.store(true, Ordering::Release);
    }

    fn resume(&self) {
        if self.paused.swap(false, Ordering::AcqRel) {
            self.waker.wake();
        }
    }
}

/// The request body of a WebSocket session, read only as fast as the session can take it.
///
/// Besides the pause above, it yields no new bytes while a complete frame it has already passed
/// on waits to be decoded, and it reads each frame header as it goes by: a header declaring more
/// than the hard limit ends the stream at once (the session closes with 1009). actix-web-actors
/// reads everything available into its buffer before decoding, and the codec checks a frame's
/// length only once the whole frame is buffered, so without this a header declaring 2^40 bytes
/// would make the broker buffer whatever follows it.
pub struct GatedPayload<S> {
    inner: S,
    gate: Arc<Gate>,
    scan: FrameScan,
    /// Complete frames passed on to the decoder.
    passed: u64,
    max_frame: u64,
}

impl<S> GatedPayload<S> {
    pub fn new(inner: S, gate: Arc<Gate>, max_frame: usize) -> Self {
        GatedPayload { inner, gate, scan: FrameScan::default(), passed: 0, max_frame: max_frame as u64 }
    }
}

impl<S> futures_util::Stream for GatedPayload<S>
where
    S: futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.gate.overflow.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        // A decoded frame is handled before the decoder asks for more, so this only holds while
        // the decoder's buffer still has a whole frame for it: it takes that without us.
        if this.passed > this.gate.handled.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        if this.gate.paused.load(Ordering::Acquire) {
            this.gate.waker.register(cx.waker());
            // Re-check: a reply may have opened the gate between the load and the register.
            if this.gate.paused.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => match this.scan.feed(&chunk, this.max_frame) {
                Ok(frames) => {
                    this.passed += frames;
                    Poll::Ready(Some(Ok(chunk)))
                }
                Err(declared) => {
                    debug!(declared, limit = this.max_frame, "frame header over the hard limit");
                    this.gate.overflow.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(PayloadError::Overflow)))
                }
            },
            other => other,
        }
    }
}

/// Follows WebSocket frame boundaries in the client's byte stream (RFC 6455 §5.2) without
/// buffering payloads: collects each header, then skips the payload it declares.
#[derive(Default)]
struct FrameScan {
    head: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to come.
    skip: u64,
}

impl FrameScan {
    /// Feeds bytes; returns how many frames they completed, or the declared length of a frame
    /// above `max`.
    fn feed(&mut self, mut data: &[u8], max: u64) -> Result<u64, u64> {
        let mut frames = 0;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(data.len());
                self.skip -= n as u64;
                data = &data[n..];
                if self.skip == 0 {
                    frames += 1;
                }
                continue;
            }
            let need = if self.have < 2 { 2 } else { header_len(&self.head) };
            let n = (need - self.have).min(data.len());
            self.head[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have < 2 || self.have < header_len(&self.head) {
                continue;
            }
            let len = match self.head[1] & 0x7F {
                126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                127 => u64::from_be_bytes(self.head[2..10].try_into().unwrap_or([0xFF; 8])),
                n => u64::from(n),
            };
            if len > max {
                return Err(len);
            }
            self.have = 0;
            self.skip = len;
            if len == 0 {
                frames += 1;
            }
        }
        Ok(frames)
    }
}

/// The length of a frame header given its first two bytes.
fn header_len(head: &[u8; 14]) -> usize {
    let ext = match head[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if head[1] & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// The backlog of a WebSocket or SSE session: bounded by `queue_bytes`, with room for at least as
/// many frames as fit in it at 256 bytes each.
pub(crate) fn session_backlog(config: &SessionConfig) -> Arc<Backlog> {
    Backlog::sized(config.queue_limit.max(config.queue_bytes / 256), config.queue_bytes)
}

/// A fragmented message being reassembled.
struct Fragments {
    text: bool,
    buf: Vec<u8>,
}

/// One WebSocket connection.
pub struct Session {
    /// The bound client id.
    client_id: String,
    /// Unique per connection.
    session_id: String,
    /// All router shards (sends go to the recipient's shard).
    router: RouterHandle,
    /// This client's shard (registration, catch-up, acks).
    shard: Addr<Router>,
    /// Supervision link (temporary child).
    child: ChildHandle,
    /// The bounded outbound queue shared with the shard.
    backlog: Arc<Backlog>,
    /// Settings.
    config: Arc<SessionConfig>,
    /// Message types this session wants (shared with the router).
    filter: Arc<TypeFilter>,
    /// Acks and nacks go here.
    tracker: TrackerLink,
    /// `join`, `leave` and `call` frames go here.
    rooms: RoomsHandle,
    /// Last time anything arrived from the client.
    last_heard: Instant,
    /// `since` from the query string.
    since: Option<u64>,
    encoding: Encoding,
    /// Fragmented frame in progress.
    fragments: Option<Fragments>,
    /// Sends routed but not yet answered.
    in_flight: usize,
    /// Shared with the reader of the socket: paused while `in_flight` is over the limit.
    gate: Arc<Gate>,
    /// The connection's tracing span.
    span: Span,
    /// Who this session is (its identity, permissions, rate limits and connection slot). Room
    /// code checks private rooms with `crate::auth::may_join_room(&self.auth.identity, ...)`.
    auth: SessionAuth,
    /// See [`SessionParams::on_stop`].
    on_stop: Option<Box<dyn FnOnce()>>,
}

impl Session {
    pub const NAME: &'static str = "session";

    fn new(params: SessionParams, deps: &SessionDeps, gate: Arc<Gate>) -> Self {
        let session_id = uuid::Uuid::now_v7().simple().to_string();
        let child = deps.tree.register(ChildSpec {
            name: format!("session:{}:{}", params.client_id, session_id),
            kind: Session::NAME,
            parent: SESSIONS_GROUP.into(),
            policy: RestartPolicy::Temporary,
            intensity: Intensity::default(),
            critical: false,
        });
        let span = info_span!("ws_session", client_id = %params.client_id, session_id = %session_id);
        Session {
            shard: deps.router.shard(&params.client_id).clone(),
            client_id: params.client_id,
            session_id,
            router: deps.router.clone(),
            child,
            backlog: session_backlog(&deps.config),
            config: Arc::clone(&deps.config),
            filter: TypeFilter::new(params.types),
            tracker: deps.tracker.clone(),
            rooms: deps.rooms.clone(),
            last_heard: Instant::now(),
            since: params.since,
            encoding: params.encoding,
            fragments: None,
            in_flight: 0,
            gate,
            span,
            auth: params.auth,
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
                if let Err(e) = self.auth.check_send() {
                    return self.auth_error(&e, r#ref, ctx);
                }
                match Envelope::from_frame(send, &self.client_id) {
                    Ok(env) => self.route(env, r#ref, ctx),
                    Err(e) => self.reject(&e, r#ref, ctx),
                }
            }
            ClientFrame::Ack(ack) => {
                self.tracker.acknowledge.do_send(Acknowledge { client_id: self.client_id.clone(), message_id: ack.message_id })
            }
            ClientFrame::Nack(nack) => {
                let _enter = self.span.enter();
                debug!(msg_id = %nack.message_id, reason = ?nack.reason, "nack");
                self.tracker.negative_ack.do_send(NegativeAck { client_id: self.client_id.clone(), message_id: nack.message_id });
            }
            ClientFrame::Ping(_) => self.write(&ServerFrame::pong(), ctx),
            ClientFrame::Pong(_) => {}
            ClientFrame::Subscribe(sub) => self.filter.set(sub.types),
            frame @ (ClientFrame::Join(_) | ClientFrame::Leave(_) | ClientFrame::Call(_)) => self.room_frame(frame, ctx),
        }
    }

    /// `join`, `leave` and `call`: handled by the rooms (crate::rooms), answered when they are done.
    fn room_frame(&mut self, frame: ClientFrame, ctx: &mut ws::WebsocketContext<Self>) {
        let link = JoinLink {
            session_id: self.session_id.clone(),
            deliver: ctx.address().recipient(),
            notify: ctx.address().recipient(),
            filter: Arc::clone(&self.filter),
        };
        let reply = self.rooms.frame(&self.client_id, Some(Arc::clone(&self.auth.identity)), frame, link);
        ctx.spawn(reply.into_actor(self).map(|frame, act, ctx| {
            if let Some(frame) = frame {
                act.write(&frame, ctx);
            }
        }));
    }

    fn route(&mut self, env: Envelope, r#ref: Option<String>, ctx: &mut ws::WebsocketContext<Self>) {
        self.in_flight += 1;
        if self.in_flight >= self.config.max_in_flight {
            // Backpressure, not refusal: stop reading the socket until replies drain.
            self.gate.pause();
        }
        // The shard answers with a `Replied` message once the message is durable.
        self.router.route_to(env, ReplyTo::Session { to: ctx.address().recipient(), r#ref });
    }

    /// Writes a `message` frame (encoded once by the router or a room) in the session's encoding.
    fn write_message(&self, out: &Outgoing, ctx: &mut ws::WebsocketContext<Self>) {
        match self.encoding {
            Encoding::Json => ctx.text(out.json.clone()),
            Encoding::Bincode => ctx.binary(
                ServerFrame::Message(agent_bridge_protocol::frames::Delivery { message: out.message.clone() }).to_bincode(),
            ),
        }
    }

    fn on_deliver(&mut self, msg: Deliver, ctx: &mut ws::WebsocketContext<Self>) {
        let out = msg.0;
        let wake = self.backlog.delivered_sized(out.cost());
        self.write_message(&out, ctx);
        if let Some(frame) = self.backlog.take_dropped() {
            self.write(&frame, ctx);
        }
        if wake {
            self.shard.do_send(CatchUp { client_id: self.client_id.clone(), session_id: self.session_id.clone() });
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

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.child.set_fault_target(ctx.address().recipient());
        self.watch_credentials(ctx);
        let link = SessionLink::of(ctx.address(), &self.session_id, &self.backlog, &self.filter, Transport::WebSocket);
        let connect = Connect { client_id: self.client_id.clone(), link, since: self.since };
        // Wait for registration (and the replay it queues) before handling anything else, so that
        // `connection_confirmed` is the first frame and replayed messages precede live ones.
        ctx.wait(self.shard.send(connect).into_actor(self).map(|res, act, ctx| match res {
            Ok(Ok(connected)) => {
                let confirmed = ServerFrame::ConnectionConfirmed(ConnectionConfirmed {
                    client_id: act.client_id.clone(),
                    session_id: act.session_id.clone(),
                    server: ServerInfo { name: act.config.server_name.clone(), version: act.config.version.clone() },
                    timestamp: Timestamp::now(),
                    heartbeat_s: act.config.heartbeat_interval.as_secs(),
                    resumed_from: connected.resumed_from,
                });
                act.write(&confirmed, ctx);
                let _enter = act.span.enter();
                debug!(last_seq = connected.last_seq, resumed_from = ?connected.resumed_from, "session connected");
            }
            Ok(Err(e)) => {
                act.write(&route_error_frame(&e, None), ctx);
                ctx.close(Some(CloseReason { code: CloseCode::Again, description: Some("registration failed".into()) }));
                ctx.stop();
            }
            Err(e) => {
                act.write(&ServerFrame::error("unavailable", format!("router unavailable: {e}"), None), ctx);
                ctx.close(Some(CloseReason { code: CloseCode::Again, description: Some("router unavailable".into()) }));
                ctx.stop();
            }
        }));
        let interval = self.config.heartbeat_interval;
        ctx.run_interval(interval, |act, ctx| act.heartbeat(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.release_credentials();
        self.shard.do_send(Disconnect { client_id: self.client_id.clone(), session_id: self.session_id.clone() });
        self.rooms.session_closed(&self.session_id);
        self.child.stopped();
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
        &self.child
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
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight <= self.config.max_in_flight / 2 {
            self.gate.resume();
        }
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

/// Credentials: revocation and expiry close the session with 1008 (policy violation).
impl Session {
    /// Registers for revocation of the session's API key and arms a timer for its expiry.
    fn watch_credentials(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if !self.auth.register(&self.session_id, ctx.address().recipient()) {
            return self.close_policy("this API key has been revoked", ctx);
        }
        if let Some(at) = self.auth.identity.expires_at_ms {
            ctx.run_later(until_ms(at), |act, ctx| act.close_policy("the credentials of this session have expired", ctx));
        }
    }

    fn release_credentials(&mut self) {
        self.auth.deregister(&self.session_id);
    }

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

impl Handler<CredentialsRevoked> for Session {
    type Result = ();
    fn handle(&mut self, msg: CredentialsRevoked, ctx: &mut Self::Context) {
        self.close_policy(&msg.reason, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::FrameScan;

    /// A masked client frame header for a payload of `len` bytes (RFC 6455 §5.2).
    fn header(len: u64) -> Vec<u8> {
        let mut h = vec![0x82];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=0xFFFF => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn counts_frames_split_anywhere() {
        let mut bytes = Vec::new();
        for len in [0u64, 5, 125, 126, 70_000] {
            bytes.extend(header(len));
            bytes.extend(std::iter::repeat(7u8).take(len as usize));
        }
        for step in [1, 3, 13, 4096, bytes.len()] {
            let mut scan = FrameScan::default();
            let frames: u64 = bytes.chunks(step).map(|c| scan.feed(c, 1 << 20).expect("within the limit")).sum();
            assert_eq!(frames, 5, "chunks of {step}");
        }
    }

    #[test]
    fn refuses_by_the_declared_length_at_the_header() {
        let mut scan = FrameScan::default();
        assert_eq!(scan.feed(&header(1 << 40), 4 << 20), Err(1 << 40));
        let mut scan = FrameScan::default();
        let h = header((4 << 20) + 1);
        assert_eq!(scan.feed(&h[..5], 4 << 20), Ok(0), "header incomplete: nothing decided yet");
        assert_eq!(scan.feed(&h[5..], 4 << 20), Err((4 << 20) + 1));
    }
}
