//! `agent_bridge::client`: an async Rust client of the broker (tokio + tokio-tungstenite).
//!
//! ```no_run
//! use agent_bridge::client::{Client, ClientConfig, Outgoing};
//! use serde_json::json;
//! # async fn demo() -> Result<(), agent_bridge::client::ClientError> {
//! let client = Client::connect(ClientConfig::new("ws://127.0.0.1:5001", "code")?).await?;
//! client.send(Outgoing::to("browser", "command", json!({"text": "hello"}))).await?;
//! let answer = client
//!     .request(Outgoing::to("reviewer", "question", json!("ok?")), std::time::Duration::from_secs(30))
//!     .await?;
//! println!("{}", answer.payload.json());
//! while let Some(msg) = client.next_message().await {
//!     if msg.requires_ack {
//!         client.ack(&msg.id)?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # How it works
//! One background task (the driver, `driver.rs`) owns the socket. Handles put frames in an outbox
//! and wait on a oneshot for the answer: `sent` (matched by `ref`) for [`Client::send`], `result`
//! (by `ref`) for [`Client::call`], a message whose `correlation_id` matches for [`Client::request`].
//! Incoming messages go to the request waiting for them, else to the streams registered for their
//! type ([`Client::stream`], [`Client::on`]), else to [`Client::next_message`].
//!
//! # Reconnects
//! When the connection drops, the driver reconnects with exponential backoff and jitter
//! ([`Backoff`]) — unless the broker refused the credentials (HTTP 401 or 403 on the upgrade):
//! waiting does not fix a token, so the state becomes [`Connection::Refused`] and operations fail
//! with that refusal. A reconnect resumes the inbox with `?since=` the low watermark of `seq`s
//! received (see [`Cursor`]: the highest seq below which everything has been received — not the highest seq
//! seen, since the broker delivers by priority). What it receives again is dropped by message id;
//! a message that was acked here and arrives again is acked again instead of being handed out, so
//! nothing is delivered twice after an ack. Sends waiting for `sent` are written again with the same
//! `idempotency_key` (the client fills one in), so the broker routes each once. Calls written before
//! the drop fail with [`ClientError::Disconnected`] (their effect is unknown); rooms joined with
//! [`Client::join_room`] are joined again from their own watermark.

mod config;
mod cursor;
mod driver;
mod error;
mod outgoing;
mod url;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use agent_bridge_protocol::frames::{Ack, Call, ErrorFrame, Event, Nack, Receipt, Sent};
use agent_bridge_protocol::ids::validate_room;
use agent_bridge_protocol::{ClientFrame, Message, Payload};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use config::{Backoff, ClientConfig, DEFAULT_URL};
pub use cursor::{Cursor, Seen, SeenIds, MAX_GAP_ENTRIES, SEEN_CAPACITY};
pub use error::ClientError;
pub use outgoing::Outgoing;
pub use url::BrokerUrl;

/// The state of the connection, as [`Client::connection`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// The first attempt is under way.
    Connecting,
    /// A session is open.
    Connected { session_id: String, resumed_from: Option<u64> },
    /// The connection dropped (or an attempt failed); the next attempt comes after a backoff.
    Reconnecting { attempt: u32, error: String },
    /// Closed for good.
    Closed,
    /// The broker refused the credentials (HTTP 401 or 403 on the upgrade). Not retried: waiting
    /// does not fix a bad token; operations fail with this error.
    Refused { status: u16, error: String },
}

/// Something that happened besides messages: connection changes and server notifications.
#[derive(Debug, Clone)]
pub enum Notice {
    Connected { session_id: String, resumed_from: Option<u64> },
    Disconnected { error: String, retry_in: Duration },
    /// What happened to a message this client sent.
    Receipt(Receipt),
    /// A room or agent state change.
    Event(Event),
    /// An `error` frame that answers nothing this client is waiting for.
    Error(ErrorFrame),
}

/// A stream of messages of one type (or of the unclaimed rest).
#[derive(Debug)]
pub struct MessageStream {
    rx: mpsc::UnboundedReceiver<Message>,
}

impl MessageStream {
    /// The next message; `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for MessageStream {
    type Item = Message;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.rx.poll_recv(cx)
    }
}

/// A frame waiting for a connection, in order.
#[derive(Debug)]
enum Outbound {
    /// A `send`, kept in `State::sends` until `sent` arrives (written again after a reconnect).
    Send(u64),
    /// A `call`, kept in `State::calls` until `result` arrives.
    Call(String),
    /// Anything else (ack, nack, pong, re-joins): written once.
    Frame(String),
}

struct PendingSend {
    frame: String,
    /// For a request: its correlation id, aliased to the message id when `sent` arrives.
    request: Option<String>,
    reply: oneshot::Sender<Result<Sent, ClientError>>,
}

struct PendingCall {
    frame: String,
    /// Written on the current connection: a drop leaves its outcome unknown.
    written: bool,
    reply: oneshot::Sender<Result<Value, ClientError>>,
}

/// A joined room, re-joined after a reconnect.
struct JoinedRoom {
    cursor: Cursor,
    role: Option<String>,
}

/// Everything the handles and the driver share, behind one lock (held briefly, never across an await).
struct State {
    next_ref: u64,
    outbox: VecDeque<Outbound>,
    sends: BTreeMap<u64, PendingSend>,
    calls: HashMap<String, PendingCall>,
    /// Correlation id → the request waiting for its reply.
    requests: HashMap<String, oneshot::Sender<Message>>,
    /// Message id of a sent request → its correlation id (replies may carry either).
    aliases: HashMap<String, String>,
    /// Messages with an unknown correlation id that came while a request still waited for its
    /// `sent`: a reply by message id can overtake it (hand-over precedes the sender's commit).
    early: Vec<Message>,
    /// `ClientConfig::auto_ack`, for deliveries made from the state.
    auto_ack: bool,
    /// Streams by message type.
    routes: HashMap<String, Vec<mpsc::UnboundedSender<Message>>>,
    /// Messages nobody else claimed.
    unclaimed: mpsc::UnboundedSender<Message>,
    inbox: Cursor,
    rooms: HashMap<String, JoinedRoom>,
    seen: SeenIds,
}

impl State {
    fn next_ref(&mut self) -> u64 {
        self.next_ref += 1;
        self.next_ref
    }

    fn queue_ack(&mut self, message_id: &str) {
        self.seen.acked(message_id);
        let frame = ClientFrame::Ack(Ack { message_id: message_id.to_owned() }).to_json();
        self.outbox.push_back(Outbound::Frame(frame));
    }
}

struct Shared {
    config: ClientConfig,
    state: Mutex<State>,
    /// Wakes the driver when the outbox has something.
    wake: tokio::sync::Notify,
    /// Set to true to close.
    closing: watch::Sender<bool>,
    connection: watch::Sender<Connection>,
    notices: broadcast::Sender<Notice>,
    unclaimed: tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>,
    driver: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn new(config: ClientConfig) -> Arc<Shared> {
        let (unclaimed_tx, unclaimed_rx) = mpsc::unbounded_channel();
        let state = State {
            next_ref: 0,
            outbox: VecDeque::new(),
            sends: BTreeMap::new(),
            calls: HashMap::new(),
            requests: HashMap::new(),
            aliases: HashMap::new(),
            early: Vec::new(),
            auto_ack: config.auto_ack,
            routes: HashMap::new(),
            unclaimed: unclaimed_tx,
            inbox: Cursor::new(config.since),
            rooms: HashMap::new(),
            seen: SeenIds::default(),
        };
        Arc::new(Shared {
            config,
            state: Mutex::new(state),
            wake: tokio::sync::Notify::new(),
            closing: watch::channel(false).0,
            connection: watch::channel(Connection::Connecting).0,
            notices: broadcast::channel(256).0,
            unclaimed: tokio::sync::Mutex::new(unclaimed_rx),
            driver: Mutex::new(None),
        })
    }

    fn push(&self, item: Outbound) {
        self.state.lock().outbox.push_back(item);
        self.wake.notify_one();
    }

    fn is_closed(&self) -> bool {
        *self.closing.borrow() || matches!(*self.connection.borrow(), Connection::Closed | Connection::Refused { .. })
    }

    /// Wakes the driver for what was just queued and waits for its answer, at most `reply_timeout`;
    /// on timeout `give_up` takes the pending entry out of the state.
    async fn answer<T>(
        &self,
        rx: oneshot::Receiver<Result<T, ClientError>>,
        what: &str,
        give_up: impl FnOnce(&mut State),
    ) -> Result<T, ClientError> {
        self.wake.notify_one();
        let limit = self.config.reply_timeout;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                give_up(&mut self.state.lock());
                Err(self.timeout(limit, what))
            }
        }
    }

    /// A timeout error that says why nothing came, if the connection is the reason.
    fn timeout(&self, after: Duration, what: &str) -> ClientError {
        match &*self.connection.borrow() {
            Connection::Reconnecting { error, .. } => {
                ClientError::timeout(after, format!("{what} (not connected to {}: {error})", self.config.url))
            }
            Connection::Connecting => ClientError::timeout(after, format!("{what} (still connecting to {})", self.config.url)),
            _ => ClientError::timeout(after, what),
        }
    }
}

/// The last handle closes the client when dropped.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.closing.send_replace(true);
    }
}

/// A connection to the broker that survives reconnects. Cheap to clone; the last clone closes it.
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.shared().config.client_id)
            .field("url", &self.shared().config.url.display())
            .field("connection", &self.connection())
            .finish()
    }
}

/// A fresh unique id with a prefix (UUIDv7: sortable, no coordination).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

impl Client {
    /// Connects, failing if the first attempt fails; later drops are reconnected in the background.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let (tx, rx) = oneshot::channel();
        let client = Client::spawn(config, Some(tx));
        match rx.await {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Closed),
        }
    }

    /// Starts connecting in the background and returns at once; attempts repeat with backoff until
    /// [`Client::close`]. Operations wait for the connection (within their timeouts).
    pub fn start(config: ClientConfig) -> Client {
        Client::spawn(config, None)
    }

    fn spawn(config: ClientConfig, first: Option<oneshot::Sender<Result<(), ClientError>>>) -> Client {
        let shared = Shared::new(config);
        let task = tokio::spawn(driver::run(Arc::clone(&shared), first));
        *shared.driver.lock() = Some(task);
        Client { handle: Arc::new(Handle { shared }) }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// This client's id.
    pub fn client_id(&self) -> &str {
        &self.shared().config.client_id
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &ClientConfig {
        &self.shared().config
    }

    /// The connection state now.
    pub fn connection(&self) -> Connection {
        self.shared().connection.borrow().clone()
    }

    /// Waits until a session is open (or the client is closed, or `within` passes).
    pub async fn wait_connected(&self, within: Duration) -> Result<(), ClientError> {
        let mut rx = self.shared().connection.subscribe();
        let wait = async {
            let c = rx.wait_for(|c| matches!(c, Connection::Connected { .. } | Connection::Closed | Connection::Refused { .. })).await;
            c.map(|c| c.clone()).unwrap_or(Connection::Closed)
        };
        match tokio::time::timeout(within, wait).await {
            Ok(Connection::Connected { .. }) => Ok(()),
            Ok(Connection::Refused { status, error }) => {
                Err(ClientError::Rejected { url: self.shared().config.url.display(), status, body: error })
            }
            Ok(_) => Err(ClientError::Closed),
            Err(_) => Err(self.shared().timeout(within, "a connection")),
        }
    }

    /// Connection changes, receipts, events and unsolicited errors. Slow readers miss the oldest.
    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.shared().notices.subscribe()
    }

    /// The inbox resume point: every seq up to it has been received (see [`Cursor`]).
    pub fn inbox_cursor(&self) -> Option<u64> {
        self.shared().state.lock().inbox.resume_point()
    }

    /// Sends a message and waits until the broker has taken responsibility for it (`sent`).
    pub async fn send(&self, msg: Outgoing) -> Result<Sent, ClientError> {
        self.send_tagged(msg, None).await
    }

    async fn send_tagged(&self, msg: Outgoing, request: Option<String>) -> Result<Sent, ClientError> {
        msg.validate()?;
        if self.shared().is_closed() {
            return Err(ClientError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        let key = {
            let mut st = self.shared().state.lock();
            let key = st.next_ref();
            let mut msg = msg;
            msg.idempotency_key.get_or_insert_with(|| new_id(&self.shared().config.client_id));
            let frame = ClientFrame::Send(msg.into_frame(format!("s-{key}"))).to_json();
            st.sends.insert(key, PendingSend { frame, request, reply: tx });
            st.outbox.push_back(Outbound::Send(key));
            key
        };
        // Given up on timeout: not written again after a reconnect.
        self.shared().answer(rx, "the broker to accept the message", |st| drop(st.sends.remove(&key))).await
    }

    /// Sends a request and waits for the message whose `correlation_id` matches: the request's
    /// `correlation_id` (a fresh one is set when absent) or its message id.
    pub async fn request(&self, mut msg: Outgoing, within: Duration) -> Result<Message, ClientError> {
        let deadline = Instant::now() + within;
        let correlation = msg.correlation_id.get_or_insert_with(|| new_id("req")).clone();
        let (tx, rx) = oneshot::channel();
        self.shared().state.lock().requests.insert(correlation.clone(), tx);
        let _waiting = RequestGuard { shared: Arc::clone(self.shared()), correlation: correlation.clone() };
        // The driver aliases the message id to the correlation id when `sent` arrives.
        match tokio::time::timeout_at(deadline, self.send_tagged(msg, Some(correlation.clone()))).await {
            Ok(sent) => drop(sent?),
            Err(_) => return Err(self.shared().timeout(within, "the broker to accept the request")),
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(self.shared().timeout(within, &format!("a reply with correlation_id {correlation}"))),
        }
    }

    /// Replies to a request: to its sender, with its correlation id.
    pub async fn reply(&self, request: &Message, msg_type: &str, payload: Value) -> Result<Sent, ClientError> {
        self.send(Outgoing::reply_to(request, msg_type, payload)).await
    }

    /// Acknowledges a delivered message. Not answered by the broker; if the ack is lost, the
    /// redelivery is acked again here without reaching the application.
    pub fn ack(&self, message_id: &str) -> Result<(), ClientError> {
        if self.shared().is_closed() {
            return Err(ClientError::Closed);
        }
        self.shared().state.lock().queue_ack(message_id);
        self.shared().wake.notify_one();
        Ok(())
    }

    /// Asks for a later redelivery.
    pub fn nack(&self, message_id: &str, reason: Option<String>) -> Result<(), ClientError> {
        if self.shared().is_closed() {
            return Err(ClientError::Closed);
        }
        let frame = ClientFrame::Nack(Nack { message_id: message_id.to_owned(), reason }).to_json();
        self.shared().push(Outbound::Frame(frame));
        Ok(())
    }

    /// A request/response operation (PROTOCOL.md section 4): waits for its `result`.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        if self.shared().is_closed() {
            return Err(ClientError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        let r#ref = {
            let mut st = self.shared().state.lock();
            let r#ref = format!("c-{}", st.next_ref());
            let frame = ClientFrame::Call(Call { r#ref: r#ref.clone(), method: method.to_owned(), params: Payload::from(params) })
                .to_json();
            st.calls.insert(r#ref.clone(), PendingCall { frame, written: false, reply: tx });
            st.outbox.push_back(Outbound::Call(r#ref.clone()));
            r#ref
        };
        self.shared().answer(rx, &format!("the result of {method}"), |st| drop(st.calls.remove(&r#ref))).await
    }

    /// The next message that no request, stream or handler claimed; `None` once closed.
    pub async fn next_message(&self) -> Option<Message> {
        self.shared().unclaimed.lock().await.recv().await
    }

    /// Messages of `msg_type` from now on (they no longer reach [`Client::next_message`]).
    pub fn stream(&self, msg_type: &str) -> MessageStream {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared().state.lock().routes.entry(msg_type.to_owned()).or_default().push(tx);
        MessageStream { rx }
    }

    /// Runs `handler` for each message of `msg_type`, one at a time, in arrival order.
    pub fn on<F, Fut>(&self, msg_type: &str, mut handler: F) -> JoinHandle<()>
    where
        F: FnMut(Message) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let mut stream = self.stream(msg_type);
        tokio::spawn(async move {
            while let Some(msg) = stream.recv().await {
                handler(msg).await;
            }
        })
    }

    /// `room.create {name, topic?}`.
    pub async fn create_room(&self, name: &str, topic: Option<&str>) -> Result<Value, ClientError> {
        validate_room(name)?;
        let mut params = json!({ "name": name });
        if let Some(t) = topic {
            params["topic"] = json!(t);
        }
        self.call("room.create", params).await
    }

    /// `room.join {room, role?, since?}`; the room is joined again after every reconnect, from the
    /// highest contiguous room seq received.
    pub async fn join_room(&self, room: &str, role: Option<&str>, since: Option<u64>) -> Result<Value, ClientError> {
        validate_room(room)?;
        let result = self.call("room.join", join_params(room, role, since)).await?;
        let joined = JoinedRoom { cursor: Cursor::new(since), role: role.map(str::to_owned) };
        self.shared().state.lock().rooms.entry(room.to_owned()).or_insert(joined);
        Ok(result)
    }

    /// `room.leave {room}`.
    pub async fn leave_room(&self, room: &str) -> Result<Value, ClientError> {
        validate_room(room)?;
        self.shared().state.lock().rooms.remove(room);
        self.call("room.leave", json!({ "room": room })).await
    }

    /// `room.history {room, since?, limit?}`.
    pub async fn room_history(&self, room: &str, since: Option<u64>, limit: Option<u32>) -> Result<Value, ClientError> {
        validate_room(room)?;
        let mut params = json!({ "room": room });
        if let Some(s) = since {
            params["since"] = json!(s);
        }
        if let Some(l) = limit {
            params["limit"] = json!(l);
        }
        self.call("room.history", params).await
    }

    /// `room.members {room}`.
    pub async fn room_members(&self, room: &str) -> Result<Value, ClientError> {
        validate_room(room)?;
        self.call("room.members", json!({ "room": room })).await
    }

    /// Says something in a room.
    pub async fn say(&self, room: &str, msg_type: &str, payload: Value) -> Result<Sent, ClientError> {
        self.send(Outgoing::room(room, msg_type, payload)).await
    }

    /// `GET /api/status` of the broker this client talks to.
    pub async fn status(&self) -> Result<Value, ClientError> {
        let c = &self.shared().config;
        server_status(&c.url, c.token.as_deref()).await
    }

    /// Writes what is queued (acks included), closes the connection and stops the driver.
    pub async fn close(&self) {
        self.shared().closing.send_replace(true);
        let task = self.shared().driver.lock().take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// The params of `room.join`, also used for re-joins.
fn join_params(room: &str, role: Option<&str>, since: Option<u64>) -> Value {
    let mut params = json!({ "room": room });
    if let Some(r) = role {
        params["role"] = json!(r);
    }
    if let Some(s) = since {
        params["since"] = json!(s);
    }
    params
}

/// Removes a request's waiter however `request` ends (reply, timeout, or the caller giving up).
struct RequestGuard {
    shared: Arc<Shared>,
    correlation: String,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.requests.remove(&self.correlation);
        st.aliases.retain(|_, c| *c != self.correlation);
        let acks = st.release_early();
        drop(st);
        if acks {
            self.shared.wake.notify_one();
        }
    }
}

/// `GET /api/status` with the token as a bearer header.
pub async fn server_status(url: &BrokerUrl, token: Option<&str>) -> Result<Value, ClientError> {
    http_json(url, reqwest::Method::GET, "/api/status", token, None).await
}

/// One HTTP request to the broker with the token as a bearer header; the JSON answer, or the
/// broker's `{error, code}` as [`ClientError::Server`]. A broker that cannot be reached is
/// [`ClientError::Connect`], as for WebSocket sessions.
pub async fn http_json(
    url: &BrokerUrl,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<Value, ClientError> {
    let target = url.http(path);
    let http_err = |reason: String| ClientError::Http { url: target.clone(), reason };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| http_err(e.to_string()))?;
    let mut req = client.request(method, &target);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.map_err(|e| {
        if e.is_connect() {
            // The innermost cause says it best ("Connection refused (os error 111)").
            let mut reason = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                reason = c.to_string();
                cause = c.source();
            }
            ClientError::Connect { url: url.display(), reason }
        } else {
            http_err(e.to_string())
        }
    })?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| http_err(format!("HTTP {status}, body is not JSON: {e}")))?;
    if !status.is_success() {
        let code = body["code"].as_str().unwrap_or("http_error").to_owned();
        let message = body["error"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned);
        return Err(ClientError::Server { code, message });
    }
    Ok(body)
}

/// A message for unit tests.
#[cfg(test)]
pub(crate) fn sample_message(seq: u64, id: &str) -> Message {
    Message {
        id: id.into(),
        seq,
        from: "a".into(),
        to: Some("b".into()),
        room: None,
        msg_type: "t".into(),
        payload: Payload::null(),
        timestamp: agent_bridge_protocol::Timestamp::now(),
        priority: agent_bridge_protocol::Priority::Normal,
        requires_ack: false,
        correlation_id: None,
        expires_at: None,
        thread_id: None,
    }
}
