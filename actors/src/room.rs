//! `Room`: one actor per room — its members and roles, live presence, message streams (the room's
//! and its sub-channels'), questions, proposals and votes, the kanban board and shared files.
//!
//! Owns: the room's [`RoomState`] (mirrored in the store's `rooms` tree and written on every change,
//! before the change is answered), the per-stream seq counters, and the joined sessions of each
//! stream (`lab`, `lab/design` …) with their own bounded backlogs. A sub-channel lives inside its
//! parent's actor: it has its own stream, history and presence, and inherits the parent's members.
//!
//! Sent by: [`crate::rooms::RoomsHandle`] (room sends from sessions and `POST /api/send`, calls and
//! `join`/`leave` frames from sessions and HTTP), sessions (`RoomCatchUp`, `SessionClosed`), its own
//! timers (proposal deadlines, presence pruning). Supervised by `actix::Supervisor` on the rooms
//! arbiter, registered as `room:<name>` under the `rooms` node (permanent, not critical). Every
//! handler runs inside [`contain`]; after a panic `restarting()` reloads the state from the store
//! (nothing answered is lost: every change was persisted before its reply) and keeps the joined
//! sessions, so members notice nothing but the failed request's `internal` error.
//!
//! Delivery: a room message gets the stream's next seq, is stored with its expiry and idempotency
//! entries in one batch, is encoded once, and the same bytes go to every joined session of every
//! member except the sender — one delivery per session, never through inboxes, so a member gets each
//! room message exactly once. A session whose room backlog is full is fed from the stream as it
//! drains, like a lagging inbox session; `join` with `since` replays the stream the same way before
//! live traffic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use agent_bridge_protocol::frames::{Event, SentStatus};
use agent_bridge_protocol::{Message as Msg, Payload, ServerFrame, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;
use tokio::sync::oneshot;
use tracing::{debug, error, info};

use crate::auth::{may_join_room, Identity, RoomAccess};
use crate::delivery::{new_message_id, Backlog, Envelope, Note, Notify, Outgoing, Target, TypeFilter};
use crate::metrics::metrics;
use crate::router::{Durability, Retention, Routed};
use crate::store::{Batch, IdempotencyRecord, Store, StoreError, Stream};
use crate::supervisor::{contain, ChildHandle, Decision, Failure, Fault, Intensity};

/// Errors of room operations; each has a stable client-facing code.
#[derive(Debug, Error)]
pub enum RoomError {
    #[error("no room named {0:?}")]
    UnknownRoom(String),
    #[error("{client:?} is not a member of room {room:?}")]
    NotMember { room: String, client: String },
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("proposal {0} is closed")]
    ProposalClosed(String),
    #[error("file of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("bad column {0:?}: use todo, in_progress, review or done")]
    BadColumn(String),
    #[error("invalid params: {0}")]
    InvalidParams(String),
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotSupported(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the change could not be made durable (store flush failed)")]
    NotDurable,
    #[error("the room failed while handling this request ({0}); it has been restarted, try again")]
    Internal(String),
    #[error("the room is down after repeated failures")]
    Unavailable,
    #[error("room mailbox: {0}")]
    Mailbox(#[from] MailboxError),
}

impl RoomError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RoomError::UnknownRoom(_) => "unknown_room",
            RoomError::NotMember { .. } => "not_member",
            RoomError::AlreadyExists(_) => "already_exists",
            RoomError::ProposalClosed(_) => "proposal_closed",
            RoomError::TooLarge { .. } => "too_large",
            RoomError::BadColumn(_) => "bad_column",
            RoomError::InvalidParams(_) => "invalid_params",
            RoomError::UnknownMethod(_) => "unknown_method",
            RoomError::Forbidden(_) => "forbidden",
            RoomError::NotFound(_) => "not_found",
            RoomError::NotSupported(_) => "not_supported",
            RoomError::Store(_) | RoomError::NotDurable => "storage_error",
            RoomError::Internal(_) => "internal",
            RoomError::Unavailable | RoomError::Mailbox(_) => "unavailable",
        }
    }
}

/// Settings of every room.
#[derive(Debug, Clone)]
pub struct RoomsConfig {
    /// Largest file accepted by `file.upload` and `PUT /api/rooms/{room}/files/{name}`.
    pub max_file_bytes: usize,
    /// Whether replies wait for the group commit.
    pub durability: Durability,
    /// Expiry of room messages, by type (the same policy as inboxes).
    pub retention: Retention,
    /// How long idempotency keys of room sends are remembered.
    pub idempotency_window: Duration,
    /// Room frames queued per joined session before it is fed from the stream instead.
    pub queue_limit: usize,
    /// Restart intensity of each room.
    pub intensity: Intensity,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            max_file_bytes: 10 * 1024 * 1024,
            durability: Durability::Sync,
            retention: Retention::default(),
            idempotency_window: Duration::from_secs(24 * 3600),
            queue_limit: 4096,
            intensity: Intensity::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The persisted state (bincode in the `rooms` tree; the same structs are the JSON views)
// ---------------------------------------------------------------------------------------------

/// How a proposal is decided (README "Voting rules" says exactly how).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Majority,
    Consensus,
    Veto,
    Weighted,
    Quorum,
}

/// A ballot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    Yes,
    No,
    Abstain,
    Veto,
}

/// A kanban column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    Todo,
    InProgress,
    Review,
    Done,
}

impl Column {
    pub const NAMES: [&'static str; 4] = ["todo", "in_progress", "review", "done"];

    /// Parses a column name; anything else is `bad_column`.
    pub fn parse(s: &str) -> Result<Column, RoomError> {
        match s {
            "todo" => Ok(Column::Todo),
            "in_progress" => Ok(Column::InProgress),
            "review" => Ok(Column::Review),
            "done" => Ok(Column::Done),
            other => Err(RoomError::BadColumn(other.chars().take(64).collect())),
        }
    }
}

/// How a closed proposal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Rejected,
}

/// A member and its role (coordinator, researcher, coder, reviewer, tester, observer, or any text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub role: String,
    pub joined_at: Timestamp,
}

/// A sub-channel (`room/name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    pub created_by: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub text: String,
    pub by: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub question_id: String,
    pub text: String,
    pub asked_by: String,
    pub asked_at: Timestamp,
    pub answers: Vec<Answer>,
}

/// Why and when a proposal closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Closure {
    pub outcome: Outcome,
    /// `decided` (the remaining votes could not change it), `all_voted`, `deadline`, `no_quorum`.
    pub reason: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub proposal_id: String,
    pub text: String,
    pub rule: Rule,
    pub created_by: String,
    pub created_at: Timestamp,
    pub quorum: Option<u32>,
    /// Per-member weights for `weighted` (absent members weigh 1).
    pub weights: BTreeMap<String, f64>,
    pub deadline: Option<Timestamp>,
    /// Who may vote: the members when the proposal opened, less those who left without voting.
    pub electorate: Vec<String>,
    pub votes: BTreeMap<String, Vote>,
    pub closed: Option<Closure>,
}

/// A move of a card between columns (`from` is `None` when the card was added).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardMove {
    pub from: Option<Column>,
    pub to: Column,
    pub by: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    pub card_id: String,
    pub title: String,
    pub description: Option<String>,
    pub assignee: Option<String>,
    pub column: Column,
    pub created_by: String,
    pub created_at: Timestamp,
    pub history: Vec<CardMove>,
}

/// A shared file's metadata; the contents are in the store's `files` tree under `sha256`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    pub file_id: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub uploaded_by: String,
    pub uploaded_at: Timestamp,
}

/// Everything durable about a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomState {
    pub name: String,
    pub topic: Option<String>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub members: BTreeMap<String, Member>,
    pub channels: BTreeMap<String, Channel>,
    pub questions: Vec<Question>,
    pub proposals: Vec<Proposal>,
    pub cards: Vec<Card>,
    pub files: Vec<FileMeta>,
    /// A private room admits (with authentication) only the client ids or patterns in `allow`
    /// (the creator is always there), credentials that name the room, and admins.
    pub private: bool,
    pub allow: Vec<String>,
}

impl RoomState {
    /// A new room whose creator is its first member.
    pub fn new(name: &str, topic: Option<String>, creator: &str, role: String, private: bool, mut allow: Vec<String>) -> Self {
        if private && !allow.iter().any(|a| a == creator) {
            allow.insert(0, creator.to_owned());
        }
        let now = Timestamp::now();
        let mut members = BTreeMap::new();
        members.insert(creator.to_owned(), Member { role, joined_at: now });
        RoomState {
            name: name.to_owned(),
            topic,
            created_by: creator.to_owned(),
            created_at: now,
            members,
            channels: BTreeMap::new(),
            questions: Vec::new(),
            proposals: Vec::new(),
            cards: Vec::new(),
            files: Vec::new(),
            private,
            allow,
        }
    }

    /// The durable facts shown by `room.list` and `room.create`.
    pub fn summary(&self, online: usize) -> Value {
        json!({
            "name": self.name,
            "topic": self.topic,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "members": self.members.len(),
            "online": online,
            "private": self.private,
            "channels": self.channels.keys().map(|c| format!("{}/{c}", self.name)).collect::<Vec<_>>(),
        })
    }
}

/// Counts of a proposal's ballots (veto counted apart) and their weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    pub yes: u32,
    pub no: u32,
    pub abstain: u32,
    pub veto: u32,
    /// Members of the electorate who have not voted.
    pub remaining: u32,
    pub weights: WeightTally,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WeightTally {
    pub yes: f64,
    pub no: f64,
    pub abstain: f64,
    pub veto: f64,
    pub remaining: f64,
    pub total: f64,
}

impl Proposal {
    fn weight(&self, client: &str) -> f64 {
        self.weights.get(client).copied().unwrap_or(1.0)
    }

    /// The current tally over the electorate.
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for c in &self.electorate {
            let w = self.weight(c);
            t.weights.total += w;
            let (count, weight) = match self.votes.get(c) {
                Some(Vote::Yes) => (&mut t.yes, &mut t.weights.yes),
                Some(Vote::No) => (&mut t.no, &mut t.weights.no),
                Some(Vote::Abstain) => (&mut t.abstain, &mut t.weights.abstain),
                Some(Vote::Veto) => (&mut t.veto, &mut t.weights.veto),
                None => (&mut t.remaining, &mut t.weights.remaining),
            };
            *count += 1;
            *weight += w;
        }
        t
    }

    /// The outcome, if it is decided now. `at_deadline`: the deadline has passed, so the votes not
    /// cast will never come. Returns the outcome and the closing reason.
    pub fn decide(&self, at_deadline: bool) -> Option<(Outcome, &'static str)> {
        use Outcome::{Passed, Rejected};
        let t = self.tally();
        let r = t.remaining;
        let final_ = at_deadline || r == 0;
        let reason = if at_deadline { "deadline" } else if r == 0 { "all_voted" } else { "decided" };
        // `no` for the rules where a veto is just a strong no.
        let no = t.no + t.veto;
        let outcome = match self.rule {
            Rule::Majority => {
                if t.yes > no + r {
                    Some(Passed)
                } else if t.yes + r <= no || final_ {
                    Some(if t.yes > no { Passed } else { Rejected })
                } else {
                    None
                }
            }
            Rule::Consensus => {
                if t.no + t.veto > 0 {
                    Some(Rejected)
                } else if t.yes as usize == self.electorate.len() {
                    Some(Passed)
                } else {
                    final_.then_some(Rejected)
                }
            }
            Rule::Veto => {
                if t.veto > 0 {
                    Some(Rejected)
                } else {
                    final_.then_some(Passed)
                }
            }
            Rule::Weighted => {
                let w = t.weights;
                let half = w.total / 2.0;
                if w.yes > half {
                    Some(Passed)
                } else if w.yes + w.remaining <= half || final_ {
                    Some(Rejected)
                } else {
                    None
                }
            }
            Rule::Quorum => {
                let q = self.quorum.unwrap_or(1);
                let cast = t.yes + t.no + t.abstain + t.veto;
                if cast + r < q || (final_ && cast < q) {
                    return Some((Rejected, "no_quorum"));
                }
                if cast >= q && t.yes > no + r {
                    Some(Passed)
                } else if t.yes + r <= no || final_ {
                    Some(if t.yes > no { Passed } else { Rejected })
                } else {
                    None
                }
            }
        };
        outcome.map(|o| (o, reason))
    }

    /// The JSON view: the stored fields plus status and tally.
    pub fn view(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("status".into(), json!(if self.closed.is_some() { "closed" } else { "open" }));
            m.insert("outcome".into(), json!(self.closed.as_ref().map(|c| c.outcome)));
            m.insert("tally".into(), json!(self.tally()));
        }
        v
    }
}

fn question_view(q: &Question) -> Value {
    let mut v = serde_json::to_value(q).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("open".into(), json!(q.answers.is_empty()));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// A message for a room stream. Sent by [`crate::rooms::RoomsHandle::route`]; answers like the
/// router, with the room seq, once stored (the durable receiver is awaited by the handle).
#[derive(Message)]
#[rtype(result = "Result<Accepted, RoomError>")]
pub struct RoomSend(pub Envelope);

/// The answer to [`RoomSend`]: what `sent` says, and the commit to await before saying it.
pub struct Accepted {
    pub routed: Routed,
    pub durable: Option<oneshot::Receiver<()>>,
}

/// A request/response operation on this room or one of its channels (`stream`). Sent by the
/// handle for `call`, `join` and `leave` frames and for the HTTP routes.
#[derive(Message)]
#[rtype(result = "Result<CallReply, RoomError>")]
pub struct RoomCall {
    pub caller: String,
    pub stream: String,
    pub op: RoomOp,
}

/// The answer to [`RoomCall`]: the result, and the commit to await before showing it.
pub struct CallReply {
    pub value: Value,
    pub durable: Option<oneshot::Receiver<()>>,
}

/// What a [`RoomCall`] does (built from validated params by [`crate::rooms`]).
pub enum RoomOp {
    /// Become a member (or change role); with a link, also join the stream's live traffic.
    Join { role: Option<String>, since: Option<u64>, link: Option<JoinLink>, identity: Option<Arc<Identity>> },
    /// Leave: on a room, membership ends; on a channel, the caller's sessions leave it.
    Leave,
    Members,
    History { since: u64, limit: usize, identity: Option<Arc<Identity>> },
    ChannelCreate { name: String },
    Ask { text: String },
    Answer { question_id: String, text: String },
    Questions { open_only: bool },
    Propose { text: String, rule: Rule, quorum: Option<u32>, weights: BTreeMap<String, f64>, deadline_s: Option<f64> },
    Vote { proposal_id: String, vote: Vote },
    ProposalGet { proposal_id: Option<String> },
    BoardAdd { title: String, description: Option<String>, assignee: Option<String>, column: Column },
    BoardMove { card_id: String, column: Column },
    BoardList,
    FileUpload { name: String, sha256: String, bytes: Vec<u8> },
    /// A file's metadata by id or name (the newest of that name); the caller reads the contents.
    FileMeta { file: String },
    FileList,
}

impl RoomOp {
    /// Whether the operation also works on a sub-channel (the others belong to the room).
    fn on_channels(&self) -> bool {
        matches!(self, RoomOp::Join { .. } | RoomOp::Leave | RoomOp::Members | RoomOp::History { .. })
    }
}

/// How a room reaches one session.
pub struct JoinLink {
    pub session_id: String,
    pub deliver: Recipient<RoomDeliver>,
    pub notify: Recipient<Notify>,
    /// The session's `subscribe` filter: room messages of other types are not handed over.
    pub filter: Arc<TypeFilter>,
}

/// A session stopped: it leaves every stream of this room. Sent by the handle.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    pub session_id: String,
}

/// A lagging session drained its room backlog: feed it more of the stream. Sent by the session
/// (through [`RoomDeliver::written`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoomCatchUp {
    stream: String,
    session_id: String,
}

/// How many members have a session in the room. Sent by the registry for `room.list`.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Presence;

/// A room message for one session, counted in that session's backlog for the stream. Sent by the
/// room; the session writes `out` and then calls [`RoomDeliver::written`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoomDeliver {
    pub out: Arc<Outgoing>,
    link: Arc<LinkShared>,
}

impl RoomDeliver {
    /// The session wrote the frame: count it, and ask for more when a lagging backlog drained.
    pub fn written(&self) {
        if self.link.backlog.delivered() {
            self.link.room.do_send(RoomCatchUp { stream: self.link.stream.clone(), session_id: self.link.session_id.clone() });
        }
    }
}

/// What a room and one joined session share.
struct LinkShared {
    backlog: Arc<Backlog>,
    room: Recipient<RoomCatchUp>,
    stream: String,
    session_id: String,
}

/// A proposal's deadline passed. Sent by the room's own timer.
struct Deadline(String);

// ---------------------------------------------------------------------------------------------
// The actor
// ---------------------------------------------------------------------------------------------

/// A joined session of a stream.
struct Link {
    client_id: String,
    session_id: String,
    deliver: Recipient<RoomDeliver>,
    notify: Recipient<Notify>,
    filter: Arc<TypeFilter>,
    shared: Arc<LinkShared>,
    /// The last seq handed to (or skipped for) this session; a feed resumes after it.
    after: u64,
}

/// One stream's live side.
#[derive(Default)]
struct Live {
    /// Cached last seq (`None`: read it from the store).
    seq: Option<u64>,
    links: Vec<Link>,
}

/// One room.
pub struct Room {
    /// Supervision link (`room:<name>`).
    child: ChildHandle,
    /// Shared database.
    store: Store,
    config: Arc<RoomsConfig>,
    /// The durable state, as last persisted.
    state: RoomState,
    /// Per stream (`name` and `name/channel`): seq cache and joined sessions.
    streams: HashMap<String, Live>,
    /// Set when the child escalated: every request is answered `unavailable`.
    failed: bool,
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn event_note(stream: &str, name: &str, data: &Value) -> Arc<Note> {
    Note::new(ServerFrame::Event(Event { event: name.to_owned(), room: Some(stream.to_owned()), data: Payload::from_serialize(data) }))
}

impl Room {
    pub const NAME: &'static str = "room";

    pub fn new(child: ChildHandle, store: Store, config: Arc<RoomsConfig>, state: RoomState) -> Self {
        Room { child, store, config, state, streams: HashMap::new(), failed: false }
    }

    fn name(&self) -> &str {
        &self.state.name
    }

    /// `None` for the room itself, the channel name for `room/channel`; `unknown_room` otherwise.
    fn channel_of<'s>(&self, stream: &'s str) -> Result<Option<&'s str>, RoomError> {
        match stream.split_once('/') {
            None if stream == self.state.name => Ok(None),
            Some((room, ch)) if room == self.state.name && self.state.channels.contains_key(ch) => Ok(Some(ch)),
            _ => Err(RoomError::UnknownRoom(stream.to_owned())),
        }
    }

    /// With authentication on, whether these credentials may enter the room (a private room
    /// admits only its allow-list, credentials naming it, and admins) — `crate::auth`'s rule.
    fn admit(&self, identity: Option<&Identity>, client: &str, stream: &str) -> Result<(), RoomError> {
        let Some(identity) = identity else { return Ok(()) };
        let access = if self.state.private { RoomAccess::Private { allow: &self.state.allow } } else { RoomAccess::Public };
        may_join_room(identity, client, stream, access).map_err(|e| RoomError::Forbidden(e.to_string()))
    }

    fn require_member(&self, client: &str) -> Result<&Member, RoomError> {
        self.state
            .members
            .get(client)
            .ok_or_else(|| RoomError::NotMember { room: self.state.name.clone(), client: client.to_owned() })
    }

    fn last_seq(&mut self, stream: &str) -> Result<u64, RoomError> {
        let live = self.streams.entry(stream.to_owned()).or_default();
        if let Some(s) = live.seq {
            return Ok(s);
        }
        let s = self.store.last_seq(Stream::Room(stream))?;
        live.seq = Some(s);
        Ok(s)
    }

    fn commit(&self) -> Option<oneshot::Receiver<()>> {
        (self.config.durability == Durability::Sync).then(|| self.store.commit())
    }

    /// Writes the state; the reply waits for the returned commit.
    fn persist(&self) -> Result<Option<oneshot::Receiver<()>>, RoomError> {
        self.store.put_room(self.name(), &self.state)?;
        Ok(self.commit())
    }

    /// Whether `client` has a session joined to `stream`.
    fn present(&self, stream: &str, client: &str) -> bool {
        self.streams.get(stream).is_some_and(|l| l.links.iter().any(|k| k.client_id == client))
    }

    /// Sends an event to every session joined to `stream`, except `skip`.
    fn event(&self, stream: &str, name: &str, data: &Value, skip: Option<&str>) {
        let Some(live) = self.streams.get(stream) else { return };
        if live.links.is_empty() {
            return;
        }
        let note = event_note(stream, name, data);
        for l in live.links.iter().filter(|l| Some(l.session_id.as_str()) != skip) {
            l.notify.do_send(Notify(Arc::clone(&note)));
        }
    }

    fn members_view(&self, stream: &str) -> Vec<Value> {
        let links = self.streams.get(stream).map(|l| l.links.as_slice()).unwrap_or_default();
        self.state
            .members
            .iter()
            .map(|(id, m)| {
                let sessions = links.iter().filter(|l| &l.client_id == id).count();
                json!({ "client_id": id, "role": m.role, "joined_at": m.joined_at, "online": sessions > 0, "sessions": sessions })
            })
            .collect()
    }

    fn expiry_ms(&self, msg: &Msg) -> Option<i64> {
        let retention = self.config.retention.for_type(&msg.msg_type).map(|d| msg.timestamp.plus_secs(d.as_secs().max(1)));
        match (msg.expires_at, retention) {
            (Some(a), Some(b)) => Some(a.min(b).millis()),
            (a, b) => a.or(b).map(Timestamp::millis),
        }
    }

    // -- messages -------------------------------------------------------------------------------

    fn send(&mut self, env: Envelope) -> Result<Accepted, RoomError> {
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
            if let Some(at) = self.expiry_ms(&message) {
                batch.expire_at(at, Stream::Room(&stream), seq);
            }
            if let Some(key) = &env.idempotency_key {
                let rec = IdempotencyRecord { message_id: id.clone(), seq: Some(seq), at_ms: timestamp.millis() };
                batch.idempotency(&env.from, &scope, key, &rec)?;
            }
            self.store.apply(batch)?;
            self.streams.entry(stream.clone()).or_default().seq = Some(seq);
        }
        let delivered = self.fan_out(&stream, message)?;
        metrics().messages_routed.with_label_values(&[env.transport.label()]).inc();
        debug!(actor = Room::NAME, room = %stream, msg_id = %id, seq, delivered, "room message");
        let others = self.state.members.len().saturating_sub(1);
        let status = if delivered > 0 { SentStatus::Delivered } else { SentStatus::Queued };
        let routed = Routed { message_id: id, seq: Some(seq), status, recipients: u32::try_from(others).unwrap_or(u32::MAX) };
        Ok(Accepted { routed, durable: if env.persist { self.commit() } else { None } })
    }

    /// Hands a stored (or `persist: false`) message to every joined session that keeps up, except
    /// the sender's. Returns how many sessions got it.
    fn fan_out(&mut self, stream: &str, message: Msg) -> Result<usize, RoomError> {
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
            if backlog.is_lagging() {
                continue; // its feed reads this message from the stream
            }
            if backlog.pending() >= backlog.limit {
                if backlog.start_lag() {
                    drained.push(link.session_id.clone());
                }
                continue;
            }
            backlog.add(1);
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
    fn feed(&mut self, stream: &str, session_id: &str) -> Result<(), RoomError> {
        loop {
            let Some(link) = self.streams.get(stream).and_then(|l| l.links.iter().find(|k| k.session_id == session_id)) else {
                return Ok(());
            };
            let (after, shared, deliver, client, filter) =
                (link.after, Arc::clone(&link.shared), link.deliver.clone(), link.client_id.clone(), Arc::clone(&link.filter));
            let limit = shared.backlog.limit;
            let msgs = self.store.range(Stream::Room(stream), after, limit)?;
            let exhausted = msgs.len() < limit;
            let next = msgs.last().map_or(after, |m| m.seq);
            let t = now();
            let out: Vec<Msg> =
                msgs.into_iter().filter(|m| m.from != client && !m.is_expired(t) && filter.accepts(&m.msg_type)).collect();
            let n = out.len();
            shared.backlog.add(n);
            for m in out {
                deliver.do_send(RoomDeliver { out: Outgoing::new(m), link: Arc::clone(&shared) });
            }
            metrics().deliveries.with_label_values(&["websocket"]).inc_by(n as u64);
            if let Some(link) = self.streams.get_mut(stream).and_then(|l| l.links.iter_mut().find(|k| k.session_id == session_id)) {
                link.after = next;
            }
            if exhausted {
                shared.backlog.stop_lag();
                return Ok(());
            }
            if n > 0 {
                return Ok(()); // the session asks for the next batch (RoomCatchUp) once it wrote this one
            }
        }
    }

    /// Removes the links matching `which` from `stream`; returns the clients that lost their last
    /// session there.
    fn unlink(&mut self, stream: &str, which: impl Fn(&Link) -> bool) -> Vec<String> {
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

    fn member_left(&self, stream: &str, client: &str, reason: &str) {
        let role = self.state.members.get(client).map(|m| m.role.clone());
        self.event(stream, "member_left", &json!({ "client_id": client, "role": role, "reason": reason }), None);
    }

    /// A session is gone: it leaves every stream; members without another session leave presence.
    fn session_closed(&mut self, session_id: &str) {
        let streams: Vec<String> = self.streams.keys().cloned().collect();
        for stream in streams {
            for client in self.unlink(&stream, |l| l.session_id == session_id) {
                self.member_left(&stream, &client, "disconnected");
            }
        }
    }

    // -- calls ----------------------------------------------------------------------------------

    fn call(&mut self, msg: RoomCall, ctx: &mut Context<Self>) -> Result<CallReply, RoomError> {
        let RoomCall { caller, stream, op } = msg;
        let channel = self.channel_of(&stream)?.is_some();
        if channel && !op.on_channels() {
            return Err(RoomError::InvalidParams(format!("{stream:?} is a sub-channel: it carries messages; use the room {:?}", self.name())));
        }
        let reply = |value: Value| Ok(CallReply { value, durable: None });
        match op {
            RoomOp::Join { role, since, link, identity } => {
                self.admit(identity.as_deref(), &caller, &stream)?;
                self.join(&caller, &stream, role, since, link, ctx)
            }
            RoomOp::Leave => self.leave(&caller, &stream),
            RoomOp::Members => {
                self.require_member(&caller)?;
                reply(json!({ "room": stream, "members": self.members_view(&stream) }))
            }
            RoomOp::History { since, limit, identity } => {
                self.require_member(&caller)?;
                self.admit(identity.as_deref(), &caller, &stream)?;
                let last = self.last_seq(&stream)?;
                let t = now();
                let msgs = self.store.range(Stream::Room(&stream), since, limit)?;
                let next_since = msgs.last().map_or(since.min(last), |m| m.seq);
                let msgs: Vec<Msg> = msgs.into_iter().filter(|m| !m.is_expired(t)).collect();
                reply(json!({ "room": stream, "count": msgs.len(), "messages": msgs, "next_since": next_since, "last_seq": last }))
            }
            RoomOp::ChannelCreate { name } => {
                self.require_member(&caller)?;
                let full = format!("{}/{name}", self.name());
                if self.state.channels.contains_key(&name) {
                    return Err(RoomError::AlreadyExists(format!("channel {full:?}")));
                }
                self.state.channels.insert(name, Channel { created_by: caller.clone(), created_at: now() });
                let durable = self.persist()?;
                let value = json!({ "room": full, "parent": self.name(), "created_by": caller });
                self.event(&stream, "channel_created", &value, None);
                Ok(CallReply { value, durable })
            }
            RoomOp::Ask { text } => {
                self.require_member(&caller)?;
                let q = Question {
                    question_id: format!("q-{}", self.state.questions.len() + 1),
                    text,
                    asked_by: caller,
                    asked_at: now(),
                    answers: Vec::new(),
                };
                let value = question_view(&q);
                self.state.questions.push(q);
                let durable = self.persist()?;
                self.event(&stream, "question_asked", &value, None);
                Ok(CallReply { value, durable })
            }
            RoomOp::Answer { question_id, text } => {
                self.require_member(&caller)?;
                let q = self
                    .state
                    .questions
                    .iter_mut()
                    .find(|q| q.question_id == question_id)
                    .ok_or_else(|| RoomError::NotFound(format!("no question {question_id:?} in this room")))?;
                let answer = Answer { text, by: caller, at: now() };
                q.answers.push(answer.clone());
                let value = question_view(q);
                let durable = self.persist()?;
                let data = json!({ "question_id": question_id, "answer": answer, "question": value });
                self.event(&stream, "question_answered", &data, None);
                Ok(CallReply { value, durable })
            }
            RoomOp::Questions { open_only } => {
                self.require_member(&caller)?;
                let qs: Vec<Value> =
                    self.state.questions.iter().filter(|q| !open_only || q.answers.is_empty()).map(question_view).collect();
                reply(json!({ "room": stream, "questions": qs }))
            }
            RoomOp::Propose { text, rule, quorum, weights, deadline_s } => {
                self.require_member(&caller)?;
                self.propose(caller, &stream, text, rule, quorum, weights, deadline_s, ctx)
            }
            RoomOp::Vote { proposal_id, vote } => self.vote(&caller, &stream, &proposal_id, vote),
            RoomOp::ProposalGet { proposal_id } => {
                self.require_member(&caller)?;
                match proposal_id {
                    Some(id) => reply(self.proposal(&id)?.view()),
                    None => reply(json!({ "room": stream, "proposals": self.state.proposals.iter().map(Proposal::view).collect::<Vec<_>>() })),
                }
            }
            RoomOp::BoardAdd { title, description, assignee, column } => {
                self.require_member(&caller)?;
                let at = now();
                let card = Card {
                    card_id: format!("card-{}", self.state.cards.len() + 1),
                    title,
                    description,
                    assignee,
                    column,
                    created_by: caller.clone(),
                    created_at: at,
                    history: vec![CardMove { from: None, to: column, by: caller, at }],
                };
                let value = json!(card);
                self.state.cards.push(card);
                let durable = self.persist()?;
                self.event(&stream, "board_changed", &json!({ "action": "added", "card": value }), None);
                Ok(CallReply { value, durable })
            }
            RoomOp::BoardMove { card_id, column } => {
                self.require_member(&caller)?;
                let card = self
                    .state
                    .cards
                    .iter_mut()
                    .find(|c| c.card_id == card_id)
                    .ok_or_else(|| RoomError::NotFound(format!("no card {card_id:?} on this board")))?;
                let from = card.column;
                if from == column {
                    return reply(json!(card));
                }
                card.column = column;
                card.history.push(CardMove { from: Some(from), to: column, by: caller, at: now() });
                let value = json!(card);
                let durable = self.persist()?;
                let data = json!({ "action": "moved", "from": from, "to": column, "card": value });
                self.event(&stream, "board_changed", &data, None);
                Ok(CallReply { value, durable })
            }
            RoomOp::BoardList => {
                self.require_member(&caller)?;
                reply(json!({ "room": stream, "columns": Column::NAMES, "cards": self.state.cards }))
            }
            RoomOp::FileUpload { name, sha256, bytes } => {
                self.require_member(&caller)?;
                self.store.put_file(&sha256, &bytes)?;
                let meta = FileMeta {
                    file_id: format!("file-{}", self.state.files.len() + 1),
                    name,
                    size: bytes.len() as u64,
                    sha256,
                    uploaded_by: caller,
                    uploaded_at: now(),
                };
                let value = json!(meta);
                self.state.files.push(meta);
                let durable = self.persist()?;
                self.event(&stream, "file_shared", &value, None);
                Ok(CallReply { value, durable })
            }
            RoomOp::FileMeta { file } => {
                self.require_member(&caller)?;
                let meta = self
                    .state
                    .files
                    .iter()
                    .find(|f| f.file_id == file)
                    .or_else(|| self.state.files.iter().rev().find(|f| f.name == file))
                    .ok_or_else(|| RoomError::NotFound(format!("no file {file:?} in this room")))?;
                reply(json!(meta))
            }
            RoomOp::FileList => {
                self.require_member(&caller)?;
                reply(json!({ "room": stream, "files": self.state.files }))
            }
        }
    }

    fn join(
        &mut self,
        caller: &str,
        stream: &str,
        role: Option<String>,
        since: Option<u64>,
        link: Option<JoinLink>,
        ctx: &mut Context<Self>,
    ) -> Result<CallReply, RoomError> {
        let mut durable = None;
        let mut new_member = false;
        if self.channel_of(stream)?.is_none() {
            match self.state.members.get_mut(caller) {
                Some(m) => {
                    if let Some(r) = role.filter(|r| *r != m.role) {
                        m.role = r;
                        durable = self.persist()?;
                    }
                }
                None => {
                    let role = role.unwrap_or_else(|| "member".to_owned());
                    self.state.members.insert(caller.to_owned(), Member { role, joined_at: now() });
                    new_member = true;
                    durable = self.persist()?;
                }
            }
        } else {
            self.require_member(caller)?;
        }
        let role = self.require_member(caller)?.role.clone();
        let last = self.last_seq(stream)?;
        let resumed_from = since.map(|s| s.min(last));
        if let Some(link) = link {
            // A session joining again replaces its link (and replays again when it gives `since`);
            // the others hear of the member only when it was not present before.
            let first = !self.present(stream, caller);
            self.unlink(stream, |l| l.session_id == link.session_id);
            let shared = Arc::new(LinkShared {
                backlog: Backlog::new(self.config.queue_limit),
                room: ctx.address().recipient(),
                stream: stream.to_owned(),
                session_id: link.session_id.clone(),
            });
            let after = resumed_from.unwrap_or(last);
            let replay = after < last;
            if replay {
                // Behind from the start: nothing live reaches it before the replay has caught up.
                shared.backlog.start_lag();
            }
            let session_id = link.session_id.clone();
            let notify = link.notify.clone();
            self.streams.entry(stream.to_owned()).or_default().links.push(Link {
                client_id: caller.to_owned(),
                session_id: session_id.clone(),
                deliver: link.deliver,
                notify: link.notify,
                filter: link.filter,
                shared,
                after,
            });
            // `joined` first, then the replay, then live traffic: all through the session's mailbox.
            let joined = json!({ "room": stream, "role": role, "last_seq": last, "resumed_from": resumed_from,
                                 "members": self.members_view(stream) });
            notify.do_send(Notify(event_note(stream, "joined", &joined)));
            if replay {
                self.feed(stream, &session_id)?;
            }
            if first {
                let data = json!({ "client_id": caller, "role": role, "new_member": new_member });
                self.event(stream, "member_joined", &data, Some(&session_id));
            }
            info!(actor = Room::NAME, room = %stream, client_id = %caller, session_id = %session_id, "joined");
        } else if new_member {
            self.event(stream, "member_joined", &json!({ "client_id": caller, "role": role, "new_member": true }), None);
        }
        let value = json!({ "room": stream, "role": role, "last_seq": last, "resumed_from": resumed_from,
                            "new_member": new_member, "members": self.members_view(stream) });
        Ok(CallReply { value, durable })
    }

    fn leave(&mut self, caller: &str, stream: &str) -> Result<CallReply, RoomError> {
        let role = self.require_member(caller)?.role.clone();
        if self.channel_of(stream)?.is_some() {
            let gone = self.unlink(stream, |l| l.client_id == caller);
            if !gone.is_empty() {
                self.member_left(stream, caller, "left");
            }
            return Ok(CallReply { value: json!({ "room": stream, "left": true, "member": true }), durable: None });
        }
        // Leaving the room ends membership: its sessions leave the room and its channels.
        let streams: Vec<String> = self.streams.keys().cloned().collect();
        for s in &streams {
            if !self.unlink(s, |l| l.client_id == caller).is_empty() && s != stream {
                self.member_left(s, caller, "left");
            }
        }
        self.state.members.remove(caller);
        // Its unvoted place in open proposals goes too, which may decide them.
        let mut touched = Vec::new();
        for p in self.state.proposals.iter_mut().filter(|p| p.closed.is_none()) {
            if !p.votes.contains_key(caller) && p.electorate.iter().any(|c| c == caller) {
                p.electorate.retain(|c| c != caller);
                touched.push(p.proposal_id.clone());
            }
        }
        let closed: Vec<Value> = touched.iter().filter_map(|id| self.settle(id, false)).collect();
        let durable = self.persist()?;
        self.event(stream, "member_left", &json!({ "client_id": caller, "role": role, "reason": "left" }), None);
        for data in closed {
            self.event(stream, "proposal_closed", &data, None);
        }
        Ok(CallReply { value: json!({ "room": stream, "left": true, "member": false }), durable })
    }

    fn proposal(&self, id: &str) -> Result<&Proposal, RoomError> {
        self.state
            .proposals
            .iter()
            .find(|p| p.proposal_id == id)
            .ok_or_else(|| RoomError::NotFound(format!("no proposal {id:?} in this room")))
    }

    /// Closes the proposal if its outcome is decided; returns the `proposal_closed` data.
    fn settle(&mut self, id: &str, at_deadline: bool) -> Option<Value> {
        let p = self.state.proposals.iter_mut().find(|p| p.proposal_id == id)?;
        if p.closed.is_some() {
            return None;
        }
        let (outcome, reason) = p.decide(at_deadline)?;
        p.closed = Some(Closure { outcome, reason: reason.to_owned(), at: now() });
        info!(actor = Room::NAME, room = %self.state.name, proposal = %id, ?outcome, reason, "proposal closed");
        Some(json!({ "proposal_id": id, "outcome": outcome, "reason": reason, "tally": p.tally(), "proposal": p.view() }))
    }

    #[allow(clippy::too_many_arguments)]
    fn propose(
        &mut self,
        caller: String,
        stream: &str,
        text: String,
        rule: Rule,
        quorum: Option<u32>,
        weights: BTreeMap<String, f64>,
        deadline_s: Option<f64>,
        ctx: &mut Context<Self>,
    ) -> Result<CallReply, RoomError> {
        let created_at = now();
        let deadline = deadline_s.map(|s| Timestamp(created_at.millis().saturating_add((s * 1000.0) as i64)));
        let p = Proposal {
            proposal_id: format!("p-{}", self.state.proposals.len() + 1),
            text,
            rule,
            created_by: caller,
            created_at,
            quorum,
            weights,
            deadline,
            electorate: self.state.members.keys().cloned().collect(),
            votes: BTreeMap::new(),
            closed: None,
        };
        let id = p.proposal_id.clone();
        self.state.proposals.push(p);
        let closed = self.settle(&id, false);
        let durable = self.persist()?;
        let value = self.proposal(&id)?.view();
        self.event(stream, "proposal_created", &value, None);
        if let Some(data) = closed {
            self.event(stream, "proposal_closed", &data, None);
        } else if let Some(s) = deadline_s {
            self.arm(&id, Duration::from_secs_f64(s), ctx);
        }
        Ok(CallReply { value, durable })
    }

    fn vote(&mut self, caller: &str, stream: &str, id: &str, vote: Vote) -> Result<CallReply, RoomError> {
        self.require_member(caller)?;
        let p = self
            .state
            .proposals
            .iter_mut()
            .find(|p| p.proposal_id == id)
            .ok_or_else(|| RoomError::NotFound(format!("no proposal {id:?} in this room")))?;
        if p.closed.is_some() {
            return Err(RoomError::ProposalClosed(id.to_owned()));
        }
        if !p.electorate.iter().any(|c| c == caller) {
            return Err(RoomError::NotMember { room: format!("{} (electorate of {id})", self.state.name), client: caller.to_owned() });
        }
        let previous = p.votes.insert(caller.to_owned(), vote);
        let cast = json!({ "proposal_id": id, "client_id": caller, "vote": vote, "previous": previous, "tally": p.tally() });
        let closed = self.settle(id, false);
        let durable = self.persist()?;
        self.event(stream, "vote_cast", &cast, None);
        if let Some(data) = closed {
            self.event(stream, "proposal_closed", &data, None);
        }
        Ok(CallReply { value: self.proposal(id)?.view(), durable })
    }

    /// Arms a proposal's deadline timer.
    fn arm(&self, id: &str, after: Duration, ctx: &mut Context<Self>) {
        let id = id.to_owned();
        ctx.run_later(after, move |act, ctx| act.on_deadline(Deadline(id), ctx));
    }

    fn on_deadline(&mut self, Deadline(id): Deadline, ctx: &mut Context<Self>) {
        let res = self.guard(ctx, |room, _| {
            if let Some(data) = room.settle(&id, true) {
                room.persist()?;
                let stream = room.state.name.clone();
                room.event(&stream, "proposal_closed", &data, None);
            }
            Ok(())
        });
        if let Err(e) = res {
            error!(actor = Room::NAME, room = %self.state.name, proposal = %id, error = %e, "closing at the deadline failed");
        }
    }

    /// A handler failed: report, stop (actix's Supervisor restarts us) and build the client error.
    fn fail(&mut self, failure: &Failure, ctx: &mut Context<Self>) -> RoomError {
        if self.child.failed(failure) == Decision::Escalate {
            self.failed = true;
        }
        ctx.stop();
        RoomError::Internal(failure.reason.clone())
    }

    fn guard<R>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut Self, &mut Context<Self>) -> Result<R, RoomError>,
    ) -> Result<R, RoomError> {
        if self.failed {
            return Err(RoomError::Unavailable);
        }
        let child = self.child.clone();
        match contain(&child, || f(self, ctx)) {
            Ok(Err(RoomError::Store(e))) => {
                // The store may hold less than memory: take the store's word for it.
                self.reload();
                Err(RoomError::Store(e))
            }
            Ok(r) => r,
            Err(failure) => Err(self.fail(&failure, ctx)),
        }
    }

    /// Rebuilds the durable state from the store.
    fn reload(&mut self) {
        match self.store.get_room::<RoomState>(&self.state.name) {
            Ok(Some(state)) => self.state = state,
            Ok(None) => error!(actor = Room::NAME, room = %self.state.name, "room state missing from the store"),
            Err(e) => error!(actor = Room::NAME, room = %self.state.name, error = %e, "reloading room state"),
        }
        for live in self.streams.values_mut() {
            live.seq = None;
        }
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.child.set_fault_target(ctx.address().recipient());
        // Sends must never park a sender; memory is bounded by the sessions' own limits.
        ctx.set_mailbox_capacity(1 << 20);
        // Deadlines survive restarts of the actor and of the process: re-arm them from the state.
        let t = now().millis();
        let due: Vec<(String, i64)> = self
            .state
            .proposals
            .iter()
            .filter(|p| p.closed.is_none())
            .filter_map(|p| p.deadline.map(|d| (p.proposal_id.clone(), d.millis())))
            .collect();
        for (id, at) in due {
            self.arm(&id, Duration::from_millis(u64::try_from(at - t).unwrap_or(0)), ctx);
        }
        // Sessions that vanished without a `SessionClosed` (e.g. a join racing a disconnect).
        ctx.run_interval(Duration::from_secs(5), |act, _| {
            let dead: Vec<String> = act
                .streams
                .values()
                .flat_map(|l| l.links.iter().filter(|k| !k.deliver.connected()).map(|k| k.session_id.clone()))
                .collect();
            for session_id in dead {
                act.session_closed(&session_id);
            }
        });
    }
}

impl Supervised for Room {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.reload();
        for live in self.streams.values_mut() {
            live.links.retain(|l| l.deliver.connected());
        }
        self.failed = self.child.is_failed();
        self.child.running();
    }
}

impl Handler<RoomSend> for Room {
    type Result = Result<Accepted, RoomError>;
    fn handle(&mut self, msg: RoomSend, ctx: &mut Self::Context) -> Self::Result {
        self.guard(ctx, |room, _| room.send(msg.0))
    }
}

impl Handler<RoomCall> for Room {
    type Result = Result<CallReply, RoomError>;
    fn handle(&mut self, msg: RoomCall, ctx: &mut Self::Context) -> Self::Result {
        self.guard(ctx, |room, ctx| room.call(msg, ctx))
    }
}

impl Handler<SessionClosed> for Room {
    type Result = ();
    fn handle(&mut self, msg: SessionClosed, ctx: &mut Self::Context) {
        let _ = self.guard(ctx, |room, _| {
            room.session_closed(&msg.session_id);
            Ok(())
        });
    }
}

impl Handler<RoomCatchUp> for Room {
    type Result = ();
    fn handle(&mut self, msg: RoomCatchUp, ctx: &mut Self::Context) {
        if let Err(e) = self.guard(ctx, |room, _| room.feed(&msg.stream, &msg.session_id)) {
            error!(actor = Room::NAME, room = %msg.stream, session_id = %msg.session_id, error = %e, "room catch-up failed");
        }
    }
}

impl Handler<Presence> for Room {
    type Result = usize;
    fn handle(&mut self, _: Presence, _ctx: &mut Self::Context) -> usize {
        let mut clients: Vec<&str> =
            self.streams.get(&self.state.name).map(|l| l.links.iter().map(|k| k.client_id.as_str()).collect()).unwrap_or_default();
        clients.sort_unstable();
        clients.dedup();
        clients.len()
    }
}

impl Handler<Fault> for Room {
    type Result = ();
    fn handle(&mut self, _: Fault, ctx: &mut Self::Context) {
        let _ = self.guard(ctx, |_, _| -> Result<(), RoomError> { panic!("fault injected by /admin/fault") });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(rule: Rule, n: usize, votes: &[(usize, Vote)]) -> Proposal {
        let electorate: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        Proposal {
            proposal_id: "p-1".into(),
            text: "t".into(),
            rule,
            created_by: "m0".into(),
            created_at: Timestamp::now(),
            quorum: None,
            weights: BTreeMap::new(),
            deadline: None,
            votes: votes.iter().map(|(i, v)| (electorate[*i].clone(), *v)).collect(),
            electorate,
            closed: None,
        }
    }

    use Outcome::{Passed, Rejected};
    use Vote::{Abstain, No, Yes};

    #[test]
    fn majority() {
        assert_eq!(proposal(Rule::Majority, 5, &[(0, Yes), (1, Yes)]).decide(false), None);
        assert_eq!(proposal(Rule::Majority, 5, &[(0, Yes), (1, Yes), (2, Yes)]).decide(false), Some((Passed, "decided")));
        assert_eq!(proposal(Rule::Majority, 5, &[(0, No), (1, No), (2, Vote::Veto)]).decide(false), Some((Rejected, "decided")));
        assert_eq!(proposal(Rule::Majority, 4, &[(0, Yes), (1, Yes), (2, No), (3, No)]).decide(false), Some((Rejected, "all_voted")));
        assert_eq!(proposal(Rule::Majority, 5, &[(0, Yes), (1, No)]).decide(true), Some((Rejected, "deadline")));
        assert_eq!(proposal(Rule::Majority, 5, &[(0, Yes), (1, Abstain)]).decide(true), Some((Passed, "deadline")));
    }

    #[test]
    fn consensus_and_veto() {
        assert_eq!(proposal(Rule::Consensus, 3, &[(0, Yes), (1, Yes)]).decide(false), None);
        assert_eq!(proposal(Rule::Consensus, 3, &[(0, Yes), (1, Yes), (2, Yes)]).decide(false), Some((Passed, "all_voted")));
        assert_eq!(proposal(Rule::Consensus, 3, &[(0, No)]).decide(false), Some((Rejected, "decided")));
        assert_eq!(proposal(Rule::Consensus, 2, &[(0, Yes), (1, Abstain)]).decide(false), Some((Rejected, "all_voted")));
        assert_eq!(proposal(Rule::Veto, 3, &[(0, No), (1, No)]).decide(false), None);
        assert_eq!(proposal(Rule::Veto, 3, &[(0, No), (1, No), (2, Abstain)]).decide(false), Some((Passed, "all_voted")));
        assert_eq!(proposal(Rule::Veto, 3, &[(0, Yes), (1, Vote::Veto)]).decide(false), Some((Rejected, "decided")));
        assert_eq!(proposal(Rule::Veto, 3, &[(0, Yes)]).decide(true), Some((Passed, "deadline")));
    }

    #[test]
    fn weighted_and_quorum() {
        let mut p = proposal(Rule::Weighted, 3, &[(0, Yes)]);
        p.weights.insert("m0".into(), 3.0);
        assert_eq!(p.decide(false), Some((Passed, "decided")), "3 of 5 is more than half");
        let mut p = proposal(Rule::Weighted, 3, &[(1, Yes), (2, Yes)]);
        p.weights.insert("m0".into(), 3.0);
        assert_eq!(p.decide(false), None, "2 of 5 with 3 to come");
        p.votes.insert("m0".into(), No);
        assert_eq!(p.decide(false), Some((Rejected, "all_voted")));
        let mut q = proposal(Rule::Quorum, 5, &[(0, Yes), (1, Yes)]);
        q.quorum = Some(3);
        assert_eq!(q.decide(false), None);
        assert_eq!(q.decide(true), Some((Rejected, "no_quorum")));
        q.votes.insert("m2".into(), Abstain);
        assert_eq!(q.decide(true), Some((Passed, "deadline")));
        q.quorum = Some(9);
        assert_eq!(q.decide(false), Some((Rejected, "no_quorum")));
    }

    #[test]
    fn state_round_trips_through_bincode() {
        let mut s = RoomState::new("lab", Some("t".into()), "a", "coordinator".into(), true, vec!["team-*".into()]);
        assert_eq!(s.allow, ["a", "team-*"], "the creator is always allowed");
        s.proposals.push(proposal(Rule::Weighted, 2, &[(0, Yes)]));
        s.cards.push(Card {
            card_id: "card-1".into(),
            title: "x".into(),
            description: None,
            assignee: Some("b".into()),
            column: Column::Review,
            created_by: "a".into(),
            created_at: Timestamp::now(),
            history: vec![CardMove { from: None, to: Column::Todo, by: "a".into(), at: Timestamp::now() }],
        });
        let bytes = agent_bridge_protocol::encode_bincode(&s).expect("encode");
        let back: RoomState = agent_bridge_protocol::decode_bincode(&bytes).expect("decode");
        assert_eq!(back, s);
    }
}
