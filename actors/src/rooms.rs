//! `Rooms`: the registry of rooms, and [`RoomsHandle`], the one door sessions and HTTP handlers use
//! for everything about rooms (room sends, `join`/`leave` frames, calls, file transfers).
//!
//! The registry owns the map from room name to [`Room`] address. It creates rooms (`room.create`:
//! the state is written and flushed before the room exists for anyone), starts a persisted room
//! lazily the first time it is addressed after a start of the process, and lists rooms. Every room
//! runs on its [`Mailbox`] under the restart loop on the registry's arbiter, registered in the supervision tree as
//! `room:<name>` under this node (`rooms`: permanent, critical child of the root).
//!
//! The handle keeps a read-mostly copy of the started rooms, so a room message goes from the
//! session straight into the room's mailbox (one hop, like the router); only the first request for
//! a room after a start goes through the registry, which forwards it before publishing the address,
//! so a sender's requests keep their order either way. Parameter checks, base64 decoding and
//! hashing of files happen here, on the caller's thread, never on a room's.
//!
//! Sent by: sessions and HTTP handlers (through the handle). Supervised by the root.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::prelude::*;
use agent_bridge_protocol::frames::{CallResult, ErrorBody, Event};
use agent_bridge_protocol::{ClientFrame, Payload, ServerFrame};
use base64::Engine as _;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use tracing::info;

use crate::auth::{may_join_room, Identity, Permission, RoomAccess};
use crate::delivery::{Envelope, Target};
use crate::room::{
    CallReply, JoinLink, Presence, Room, RoomCall, RoomError, RoomOp, RoomSend, RoomState, RoomsConfig,
    SessionClosed,
};
use crate::messages::github::{CreateIssue, GitHubError, IssueSource};
use crate::messages::{AgentCall, DesktopError, ManagedCall, Prompt, Routed};
use crate::store::Store;
use crate::supervisor::{guarded, supervisee, ChildHandle, ChildSpec, Mailbox, RestartPolicy, Supervisee, Tree};

mod access;
mod agent_calls;
mod call_params;
mod managed_calls;
pub mod calls;
mod checks;
mod requests;

use calls::{Cx, Parsed};
pub use requests::{CreateRoom, Forward, ListRooms};
use checks::{stream_name, text, upload_op, MAX_HISTORY};

/// Rooms per `room.list` page when the caller does not say.
pub const DEFAULT_ROOM_PAGE: usize = 100;
/// Largest `room.list` page.
pub const MAX_ROOM_PAGE: usize = 1000;

/// A future answered by a room or the registry.
pub type Pending<T> = Pin<Box<dyn Future<Output = Result<T, RoomError>>>>;

/// The room registry.
pub struct Rooms {
    /// Supervision link (`rooms`).
    child: ChildHandle,
    /// The tree the rooms register in.
    tree: Arc<Tree>,
    store: Store,
    config: Arc<RoomsConfig>,
    /// Every started room (the registry's own map; the handle's copy is published from it).
    rooms: HashMap<String, Addr<Room>>,
    /// The handle's copy.
    published: Arc<RwLock<HashMap<String, Addr<Room>>>>,
    /// Rooms created per client id, for `max_rooms_per_client`: counted from the store at the
    /// first `room.create` (and again after a restart), then kept up to date.
    created: Option<HashMap<String, usize>>,
}

impl Rooms {
    pub const NAME: &'static str = "rooms";

    /// Starts the registry on its own arbiter (the rooms run there too) and returns the handle.
    pub fn start(child: ChildHandle, tree: Arc<Tree>, store: Store, config: RoomsConfig, arbiter: &ArbiterHandle) -> RoomsHandle {
        let config = Arc::new(config);
        let published: Arc<RwLock<HashMap<String, Addr<Room>>>> = Arc::default();
        let (s, c, p) = (store.clone(), Arc::clone(&config), Arc::clone(&published));
        let registry = Mailbox::new().supervise_in(&child.clone(), arbiter, move || Rooms {
            child,
            tree,
            store: s,
            config: c,
            rooms: HashMap::new(),
            published: p,
            created: None,
        });
        RoomsHandle { registry, started: published, joined: Arc::default(), store, config, desktop: None, agents: None, search: None, github: None, managed: None }
    }

    /// The started room, or the persisted one started now (`true`), or `unknown_room`.
    fn resolve(&mut self, name: &str) -> Result<(Addr<Room>, bool), RoomError> {
        if let Some(addr) = self.rooms.get(name) {
            return Ok((addr.clone(), false));
        }
        let state: RoomState = self.store.get_room(name)?.ok_or_else(|| RoomError::UnknownRoom(name.to_owned()))?;
        Ok((self.start_room(state), true))
    }

    fn start_room(&mut self, state: RoomState) -> Addr<Room> {
        let name = state.name.clone();
        let child = self.tree.register(ChildSpec {
            name: format!("{}:{name}", Room::NAME),
            kind: Room::NAME,
            parent: Rooms::NAME.into(),
            policy: RestartPolicy::Permanent,
            intensity: self.config.intensity,
            critical: false,
        });
        // Reachable by fault injection from the moment the room exists (the mailbox registers it).
        let addr = Mailbox::new().supervise(&child, Room::new(child.clone(), self.store.clone(), Arc::clone(&self.config), state));
        self.rooms.insert(name, addr.clone());
        addr
    }

    /// Makes a started room reachable without the registry (after its first request was queued).
    fn publish(&self, name: &str, addr: &Addr<Room>) {
        self.published.write().insert(name.to_owned(), addr.clone());
    }

    fn create(&mut self, msg: CreateRoom) -> Result<CallReply, RoomError> {
        if self.rooms.contains_key(&msg.name) || self.store.get_room::<RoomState>(&msg.name)?.is_some() {
            return Err(RoomError::AlreadyExists(format!("room {:?}", msg.name)));
        }
        let limit = self.config.max_rooms_per_client;
        let mut created = match self.created.take() {
            Some(counts) => counts,
            None => self.count_creators()?,
        };
        let mine = created.get(&msg.caller).copied().unwrap_or(0);
        if limit > 0 && mine >= limit {
            self.created = Some(created);
            return Err(RoomError::QuotaExceeded { client: msg.caller, limit });
        }
        let state = RoomState::new(&msg.name, msg.topic, &msg.caller, msg.role, msg.private, msg.allow);
        let stored = self.store.put_room(&msg.name, &state);
        if stored.is_ok() {
            created.insert(msg.caller.clone(), mine + 1);
        }
        self.created = Some(created);
        stored?;
        let value = state.summary(0);
        let addr = self.start_room(state);
        self.publish(&msg.name, &addr);
        info!(actor = Rooms::NAME, room = %msg.name, client_id = %msg.caller, "room created");
        Ok(CallReply { value, durable: Some(self.store.commit()) })
    }

    /// Rooms per creator, counted from the store.
    fn count_creators(&self) -> Result<HashMap<String, usize>, RoomError> {
        let mut counts = HashMap::new();
        for item in self.store.rooms_after::<RoomState>(None) {
            *counts.entry(item?.1.created_by).or_default() += 1;
        }
        Ok(counts)
    }

    /// One page of [`ListRooms`]: up to `limit` rooms after `cursor` that the caller may see, and
    /// whether more follow.
    fn page(&self, msg: &ListRooms) -> Result<(Vec<RoomState>, bool), RoomError> {
        let mut page = Vec::new();
        for item in self.store.rooms_after::<RoomState>(msg.cursor.as_deref()) {
            let (_, state) = item?;
            if !visible(msg.identity.as_deref(), msg.caller.as_deref(), &state) {
                continue;
            }
            if page.len() == msg.limit {
                return Ok((page, true));
            }
            page.push(state);
        }
        Ok((page, false))
    }
}

supervisee!(Rooms, RoomError, child);

impl Actor for Rooms {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 20);
    }
}

impl Supervised for Rooms {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // The started rooms are supervised on their own and keep running; the map stays. The
        // creators' counts are taken from the store again.
        self.created = None;
    }
}

guarded!(Rooms, CreateRoom, |r, msg, _| r.create(msg));

/// Member ids a room shows in the operator's listing.
const ADMIN_MEMBER_IDS: usize = 100;

impl Handler<ListRooms> for Rooms {
    type Result = ResponseFuture<Result<Value, RoomError>>;
    fn handle(&mut self, msg: ListRooms, ctx: &mut Self::Context) -> Self::Result {
        let listed = self.guard(ctx, |r, _| {
            let (page, more) = r.page(&msg)?;
            let presence: Vec<_> = page.iter().map(|s| r.rooms.get(&s.name).map(|addr| addr.send(Presence))).collect();
            Ok((page, more, presence))
        });
        Box::pin(async move {
            let (page, more, presence) = listed?;
            let mut rooms = Vec::with_capacity(page.len());
            for (s, online) in page.iter().zip(presence) {
                let online = match online {
                    Some(req) => req.await.unwrap_or(0),
                    None => 0,
                };
                let mut v = s.summary(online);
                match (&msg.caller, &mut v) {
                    (Some(caller), Value::Object(m)) => {
                        m.insert("role".into(), json!(s.members.get(caller).map(|m| &m.role)));
                    }
                    // The operator's listing (`GET /admin/rooms`: no caller, no identity) names
                    // the members.
                    (None, Value::Object(m)) if msg.identity.is_none() => {
                        m.insert("member_ids".into(), json!(s.members.keys().take(ADMIN_MEMBER_IDS).collect::<Vec<_>>()));
                    }
                    _ => {}
                }
                rooms.push(v);
            }
            let next_cursor = if more { page.last().map(|s| s.name.clone()) } else { None };
            Ok(json!({ "count": rooms.len(), "rooms": rooms, "next_cursor": next_cursor }))
        })
    }
}

impl<M, T> Handler<Forward<M>> for Rooms
where
    M: Message<Result = Result<T, RoomError>> + Send + 'static,
    T: Send + 'static,
    Room: Handler<M>,
{
    type Result = ResponseFuture<Result<T, RoomError>>;
    fn handle(&mut self, f: Forward<M>, ctx: &mut Self::Context) -> Self::Result {
        match self.guard(ctx, |r, _| r.resolve(&f.room)) {
            Ok((addr, fresh)) => {
                let req = addr.send(f.msg);
                if fresh {
                    self.publish(&f.room, &addr);
                }
                Box::pin(async move { req.await? })
            }
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}


// ---------------------------------------------------------------------------------------------
// The handle
// ---------------------------------------------------------------------------------------------

/// Everything about rooms, for sessions and HTTP handlers. Cheap to clone.
#[derive(Clone)]
pub struct RoomsHandle {
    registry: Addr<Rooms>,
    /// Started rooms (published by the registry).
    started: Arc<RwLock<HashMap<String, Addr<Room>>>>,
    /// Session id → the rooms it joined, so a closing session leaves exactly those.
    joined: Arc<Mutex<HashMap<String, HashSet<String>>>>,
    store: Store,
    config: Arc<RoomsConfig>,
    /// The desktop controller (`desktop.prompt`), when one runs.
    desktop: Option<Recipient<Prompt>>,
    /// The agent registry (`agent.*`, `pool.*`, `task.*`).
    agents: Option<Recipient<AgentCall>>,
    /// The search index (`history.search`), when it opened.
    search: Option<crate::search::SearchIndex>,
    /// The GitHub actor (`github.issue`).
    github: Option<Recipient<CreateIssue>>,
    /// Managed CLI agents and the code sandbox (`agent.spawn` …, `code.run`).
    managed: Option<Recipient<ManagedCall>>,
}

/// Whether a listing shows `state`: a public room always; a private one only to whom may join it
/// (`crate::auth::may_join_room`), so that its name, topic, creator and channels stay hidden from
/// everyone else. Without a client id to join as, only admins see private rooms; without
/// credentials at all (`GET /admin/rooms`, behind the admin check) every room is listed.
fn visible(identity: Option<&Identity>, caller: Option<&str>, state: &RoomState) -> bool {
    let Some(identity) = identity else { return true };
    if !state.private {
        return true;
    }
    match caller {
        Some(client) => may_join_room(identity, client, &state.name, RoomAccess::Private { allow: &state.allow }).is_ok(),
        None => identity.permissions.has(Permission::Admin),
    }
}

/// The issue's title and body: a card's title and description, or a closed proposal's text with
/// its outcome (an open proposal is not a decision: `invalid_params`).
fn issue_text(room: &str, source: &IssueSource, read: &Value) -> Result<(String, String), RoomError> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    let short = |t: &str| t.lines().next().unwrap_or("-").chars().take(200).collect::<String>();
    match source {
        IssueSource::Card(id) => {
            let cards = read.get("cards").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let card = cards.iter().find(|c| c["card_id"] == id.as_str()).ok_or_else(|| RoomError::NotFound(format!("no card {id:?} on this board")))?;
            let description = card.get("description").and_then(Value::as_str).unwrap_or("");
            let body = format!(
                "{description}\n\n---\nBoard card `{id}` of room `{room}` (agent-bridge): column {}, created by {}, assignee {}.",
                s(card, "column"), s(card, "created_by"), s(card, "assignee")
            );
            Ok((short(&s(card, "title")), body.trim_start().to_owned()))
        }
        IssueSource::Proposal(id) => {
            if read.get("status").and_then(Value::as_str) != Some("closed") {
                return Err(RoomError::InvalidParams(format!("proposal {id} is still open: an issue is made from a decision")));
            }
            let text = s(read, "text");
            let body = format!(
                "{text}\n\n---\nDecision `{id}` of room `{room}` (agent-bridge): {} under rule {}, proposed by {}; tally {}.",
                s(read, "outcome"), s(read, "rule"), s(read, "created_by"), read.get("tally").cloned().unwrap_or_default()
            );
            Ok((format!("Decision: {}", short(&text)), body))
        }
    }
}

/// The room a stream belongs to (`lab` for `lab/design`).
fn top(stream: &str) -> &str {
    stream.split('/').next().unwrap_or(stream)
}

/// Refuses a call the credentials do not allow (`forbidden`): the permission the table of calls
/// gives it ([`calls::Access`]); a name not in the table needs `write` (and is then unknown).
fn permitted(identity: Option<&Identity>, method: &str) -> Result<(), RoomError> {
    let Some(identity) = identity else { return Ok(()) };
    let needed = calls::find(method).map_or(Permission::Write, |s| s.access.permission());
    identity.require(needed).map_err(|e| RoomError::Forbidden(e.to_string()))
}

/// Whether a call only reads (so it may be made with `GET /api/call`).
pub fn changes_nothing(method: &str) -> bool {
    calls::find(method).is_some_and(calls::Spec::changes_nothing)
}

impl RoomsHandle {
    /// Sends `msg` to the room of `stream`: straight to its mailbox when started, else through the
    /// registry. The request is queued before this returns.
    fn dispatch<M, T>(&self, stream: &str, msg: M) -> Pending<T>
    where
        M: Message<Result = Result<T, RoomError>> + Send + 'static,
        T: Send + 'static,
        Room: Handler<M>,
    {
        let room = top(stream);
        let cached = self.started.read().get(room).cloned();
        match cached {
            Some(addr) => {
                let req = addr.send(msg);
                Box::pin(async move { req.await? })
            }
            None => {
                let req = self.registry.send(Forward { room: room.to_owned(), msg });
                Box::pin(async move { req.await? })
            }
        }
    }

    /// A room message (`send` with `room`, `POST /api/send` with `room`): resolves with the room
    /// seq once stored and, with sync durability, flushed.
    pub fn route(&self, env: Envelope) -> Pending<Routed> {
        let Target::Room(room) = &env.target else {
            return Box::pin(async { Err(RoomError::InvalidParams("not a room message".into())) });
        };
        let room = room.clone();
        let req = self.dispatch(&room, RoomSend(env));
        Box::pin(async move {
            let accepted = req.await?;
            if let Some(durable) = accepted.durable {
                durable.await.map_err(|_| RoomError::NotDurable)?;
            }
            Ok(accepted.routed)
        })
    }

    /// Runs a room operation of the call `method` and waits for its commit.
    fn submit(&self, caller: &str, method: &str, stream: String, op: RoomOp) -> Pending<Value> {
        debug_assert!(calls::find(method).is_some(), "{method} is in the table of calls");
        if let RoomOp::Join { link: Some(link), .. } = &op {
            self.joined.lock().entry(link.session_id.clone()).or_default().insert(top(&stream).to_owned());
        }
        let req = self.dispatch(&stream, RoomCall { caller: caller.to_owned(), stream: stream.clone(), op, on_channels: calls::find(method).is_some_and(|s| s.on_channels) });
        Box::pin(async move {
            let reply = req.await?;
            if let Some(durable) = reply.durable {
                durable.await.map_err(|_| RoomError::NotDurable)?;
            }
            Ok(reply.value)
        })
    }

    /// A call (PROTOCOL.md section 4) by `caller`. `link` is the calling WebSocket session, if any:
    /// `room.join` then also joins it to the room's live traffic, like the `join` frame.
    /// `identity`: the caller's credentials when authentication is on (checked per method, and
    /// against a private room's allow-list on `room.join` and `room.history`).
    pub fn call(&self, caller: &str, identity: Option<Arc<Identity>>, method: &str, params: &Payload, link: Option<JoinLink>) -> Pending<Value> {
        let parsed = match permitted(identity.as_deref(), method).and_then(|()| calls::parse_call(method, params, Cx { config: &self.config, link, identity: identity.clone() })) {
            Ok(p) => p,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        match parsed {
            Parsed::Create(mut msg) => {
                msg.caller = caller.to_owned();
                let req = self.registry.send(msg);
                Box::pin(async move {
                    let reply = req.await??;
                    if let Some(durable) = reply.durable {
                        durable.await.map_err(|_| RoomError::NotDurable)?;
                    }
                    Ok(reply.value)
                })
            }
            Parsed::Desktop(prompt) => self.prompt(prompt),
            Parsed::Managed(op) => {
                let Some(managed) = &self.managed else { return Box::pin(async { Err(RoomError::NotSupported("no managed agents".into())) }) };
                let req = managed.send(ManagedCall { caller: caller.to_owned(), op });
                Box::pin(async move { req.await? })
            }
            Parsed::Agent(op) => {
                let Some(agents) = &self.agents else { return Box::pin(async { Err(RoomError::NotSupported("no agent registry".into())) }) };
                let req = agents.send(AgentCall { caller: caller.to_owned(), op });
                Box::pin(async move { req.await? })
            }
            Parsed::GitHub { room, source, labels } => self.issue(caller, room, source, labels),
            Parsed::List { limit, cursor } => self.list(Some(caller.to_owned()), identity, limit, cursor),
            Parsed::Thread(q) => {
                let answer = crate::threads::get(&self.store, caller, &q);
                Box::pin(async move { answer })
            }
            Parsed::Search(q) => {
                let answer = match &self.search {
                    Some(index) => index.search(&self.store, caller, identity.as_deref(), &q),
                    None => Err(RoomError::NotSupported("history.search: this broker keeps no search index (search_index = false, or it could not be opened: see its log)".into())),
                };
                Box::pin(async move { answer })
            }
            Parsed::Room { stream, op, download: false } => self.submit(caller, method, stream, op),
            Parsed::Room { stream, op, download: true } => {
                let meta = self.submit(caller, method, stream, op);
                let store = self.store.clone();
                Box::pin(async move {
                    let mut meta = meta.await?;
                    let bytes = read_file(&store, &meta)?;
                    if let Value::Object(m) = &mut meta {
                        m.insert("content_base64".into(), json!(base64::engine::general_purpose::STANDARD.encode(bytes)));
                    }
                    Ok(meta)
                })
            }
        }
    }

    /// Hands agent, pool and task calls to the agent registry (`Broker::start`).
    pub fn with_agents(mut self, agents: Recipient<AgentCall>) -> Self {
        self.agents = Some(agents);
        self
    }

    /// Answers `history.search` from this index (`Broker::start`).
    pub fn with_search(mut self, search: crate::search::SearchIndex) -> Self {
        self.search = Some(search);
        self
    }

    /// Hands managed-agent calls and `code.run` to the `managed` registry (`Broker::start`).
    pub fn with_managed(mut self, managed: Recipient<ManagedCall>) -> Self {
        self.managed = Some(managed);
        self
    }

    /// Hands `desktop.prompt` calls to the desktop controller (`Broker::start`).
    pub fn with_desktop(mut self, desktop: Recipient<Prompt>) -> Self {
        self.desktop = Some(desktop);
        self
    }

    /// Hands `github.issue` calls to the GitHub actor (`Broker::start`).
    pub fn with_github(mut self, github: Recipient<CreateIssue>) -> Self {
        self.github = Some(github);
        self
    }

    /// `github.issue`: reads the card or proposal as `caller` (a member), then the GitHub actor
    /// makes the issue and posts its link.
    fn issue(&self, caller: &str, room: String, source: IssueSource, labels: Vec<String>) -> Pending<Value> {
        let Some(github) = self.github.clone() else { return Box::pin(async { Err(GitHubError::NotConfigured.into()) }) };
        let read = match &source {
            IssueSource::Card(_) => self.submit(caller, "board.list", room.clone(), RoomOp::BoardList),
            IssueSource::Proposal(id) => self.submit(caller, "proposal.get", room.clone(), RoomOp::ProposalGet { proposal_id: Some(id.clone()) }),
        };
        let caller = caller.to_owned();
        Box::pin(async move {
            let (title, body) = issue_text(&room, &source, &read.await?)?;
            Ok(github.send(CreateIssue { room, caller, source, title, body, labels }).await.map_err(GitHubError::from)??)
        })
    }

    /// `desktop.prompt`: the controller's answer as `{response}`, or `not_supported` without one.
    fn prompt(&self, prompt: Prompt) -> Pending<Value> {
        let Some(desktop) = &self.desktop else { return Box::pin(async { Err(DesktopError::Disabled.into()) }) };
        let req = desktop.send(prompt);
        Box::pin(async move {
            let response = req.await.map_err(DesktopError::from)??;
            Ok(json!({ "response": response }))
        })
    }

    /// One page of the rooms `caller` may join, in name order: `room.list`, `GET /api/rooms`, and
    /// (with no identity: every room) `GET /admin/rooms`. `limit` defaults to
    /// [`DEFAULT_ROOM_PAGE`] and is at most [`MAX_ROOM_PAGE`]; `cursor` is the previous page's
    /// `next_cursor`.
    pub fn list(&self, caller: Option<String>, identity: Option<Arc<Identity>>, limit: Option<usize>, cursor: Option<String>) -> Pending<Value> {
        if let Err(e) = permitted(identity.as_deref(), "room.list") {
            return Box::pin(async move { Err(e) });
        }
        let limit = limit.unwrap_or(DEFAULT_ROOM_PAGE).clamp(1, MAX_ROOM_PAGE);
        let req = self.registry.send(ListRooms { caller, identity, limit, cursor });
        Box::pin(async move { req.await? })
    }

    /// `room.history` for HTTP clients.
    pub fn history(&self, caller: &str, identity: Option<Arc<Identity>>, room: &str, since: u64, limit: usize) -> Pending<Value> {
        match permitted(identity.as_deref(), "room.history").and_then(|()| stream_name(room)) {
            Ok(stream) => self.submit(caller, "room.history", stream, RoomOp::History { since, limit: limit.clamp(1, MAX_HISTORY), identity, thread_id: None }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    /// Shares a file given as raw bytes (`PUT /api/rooms/{room}/files/{name}`).
    pub fn upload(&self, caller: &str, identity: Option<Arc<Identity>>, room: &str, name: String, bytes: Vec<u8>) -> Pending<Value> {
        let op = permitted(identity.as_deref(), "file.upload").and_then(|()| upload_op(self.config.max_file_bytes, name, bytes));
        match op.and_then(|op| Ok((stream_name(room)?, op))) {
            Ok((stream, op)) => self.submit(caller, "file.upload", stream, op),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    /// A file's metadata and contents by id or name (`GET /api/rooms/{room}/files/{name}`).
    pub fn download(&self, caller: &str, identity: Option<Arc<Identity>>, room: &str, file: String) -> Pending<(Value, Vec<u8>)> {
        let meta = match permitted(identity.as_deref(), "file.download").and_then(|()| stream_name(room)) {
            Ok(stream) => self.submit(caller, "file.download", stream, RoomOp::FileMeta { file }),
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let store = self.store.clone();
        Box::pin(async move {
            let meta = meta.await?;
            let bytes = read_file(&store, &meta)?;
            Ok((meta, bytes))
        })
    }

    /// The largest file a room accepts.
    pub fn max_file_bytes(&self) -> usize {
        self.config.max_file_bytes
    }

    /// `join`, `leave` and `call` frames of a WebSocket session; resolves to the frame to write
    /// back, if any (`join` is confirmed by the room's own `joined` event, ahead of any replay).
    pub fn frame(
        &self,
        client_id: &str,
        identity: Option<Arc<Identity>>,
        frame: ClientFrame,
        link: JoinLink,
    ) -> Pin<Box<dyn Future<Output = Option<ServerFrame>>>> {
        let error = |e: RoomError| Some(ServerFrame::error(e.code(), e.to_string(), None));
        match frame {
            ClientFrame::Join(j) => {
                let op = permitted(identity.as_deref(), "room.join").and_then(|()| j.role.map(|r| text("role", r, 64)).transpose()).and_then(|role| {
                    Ok((stream_name(&j.room)?, RoomOp::Join { role, since: j.since, link: Some(link), identity }))
                });
                let fut = match op {
                    Ok((stream, op)) => self.submit(client_id, "room.join", stream, op),
                    Err(e) => return Box::pin(async move { error(e) }),
                };
                Box::pin(async move { fut.await.err().and_then(error) })
            }
            ClientFrame::Leave(l) => {
                let fut = match permitted(identity.as_deref(), "room.leave").and_then(|()| stream_name(&l.room)) {
                    Ok(stream) => self.submit(client_id, "room.leave", stream, RoomOp::Leave),
                    Err(e) => return Box::pin(async move { error(e) }),
                };
                Box::pin(async move {
                    match fut.await {
                        Ok(data) => Some(ServerFrame::Event(Event {
                            event: "left".into(),
                            room: Some(l.room),
                            data: Payload::from_serialize(&data),
                        })),
                        Err(e) => error(e),
                    }
                })
            }
            ClientFrame::Call(c) => {
                let fut = self.call(client_id, identity, &c.method, &c.params, Some(link));
                Box::pin(async move { Some(result_frame(c.r#ref, fut.await)) })
            }
            _ => Box::pin(async { None }),
        }
    }

    /// A session stopped: it leaves every room it joined.
    pub fn session_closed(&self, session_id: &str) {
        let Some(rooms) = self.joined.lock().remove(session_id) else { return };
        let started = self.started.read();
        for room in rooms {
            if let Some(addr) = started.get(&room) {
                addr.do_send(SessionClosed { session_id: session_id.to_owned() });
            }
        }
    }
}

/// The contents of a file whose metadata a room returned.
fn read_file(store: &Store, meta: &Value) -> Result<Vec<u8>, RoomError> {
    let sha = meta["sha256"].as_str().unwrap_or_default();
    store.get_file(sha)?.ok_or_else(|| RoomError::NotFound(format!("the contents of file {sha} are missing")))
}

/// The `result` frame answering a call.
pub fn result_frame(r#ref: String, res: Result<Value, RoomError>) -> ServerFrame {
    ServerFrame::Result(match res {
        Ok(v) => CallResult { r#ref, ok: true, result: Some(Payload::from_serialize(&v)), error: None },
        Err(e) => CallResult { r#ref, ok: false, result: None, error: Some(ErrorBody { code: e.code().into(), error: e.to_string() }) },
    })
}
