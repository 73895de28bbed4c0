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

mod calls;
mod state;
mod streams;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use agent_bridge_protocol::frames::Event;
use agent_bridge_protocol::{Payload, ServerFrame, Timestamp};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tracing::error;

use crate::auth::{may_join_room, Identity, RoomAccess};
use crate::delivery::{Backlog, Envelope, Note, Notify, Outgoing, TypeFilter};
use crate::events::{BridgeEvent, EventKind};
pub use crate::messages::room::RoomError;
use crate::messages::{Accepted, Durability, Retention};
use crate::store::{Store, Stream};
use crate::supervisor::{fault_handler, guarded, ChildHandle, Intensity, Supervisee};

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
    /// Bytes of room frames queued per joined session (each frame's [`Outgoing::cost`]) before it
    /// is fed from the stream instead: what a slow member makes the broker hold is bounded in bytes.
    pub queue_bytes: usize,
    /// Restart intensity of each room.
    pub intensity: Intensity,
    /// Rooms one client id may create (0: no limit).
    pub max_rooms_per_client: usize,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            max_file_bytes: 10 * 1024 * 1024,
            durability: Durability::Sync,
            retention: Retention::default(),
            idempotency_window: Duration::from_secs(24 * 3600),
            queue_limit: 4096,
            queue_bytes: 64 << 20,
            intensity: Intensity::default(),
            max_rooms_per_client: 100,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The persisted state (bincode in the `rooms` tree; the same structs are the JSON views)
// ---------------------------------------------------------------------------------------------

pub use state::*;

/// A message for a room stream. Sent by [`crate::rooms::RoomsHandle::route`]; answers like the
/// router, with the room seq, once stored (the durable receiver is awaited by the handle).
#[derive(Message)]
#[rtype(result = "Result<Accepted, RoomError>")]
pub struct RoomSend(pub Envelope);

/// A request/response operation on this room or one of its channels (`stream`). Sent by the
/// handle for `call`, `join` and `leave` frames and for the HTTP routes.
#[derive(Message)]
#[rtype(result = "Result<CallReply, RoomError>")]
pub struct RoomCall {
    pub caller: String,
    pub stream: String,
    pub op: RoomOp,
    /// Whether the call also works on a sub-channel (from the table of calls).
    pub on_channels: bool,
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
    /// `thread_id`: only the messages of that thread.
    History { since: u64, limit: usize, identity: Option<Arc<Identity>>, thread_id: Option<String> },
    /// Read the topic, or (with `topic`) set it.
    Topic { topic: Option<String> },
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
        if self.link.backlog.delivered_sized(self.out.cost()) {
            self.link.room.do_send(RoomCatchUp { stream: self.link.stream.clone(), session_id: self.link.session_id.clone() });
        }
    }

    /// The `persist: false` room messages this session missed since it was last told, as a
    /// `dropped` frame naming the room (written after the message by whoever takes it).
    pub fn take_dropped(&self) -> Option<ServerFrame> {
        self.link.take_dropped()
    }
}

impl LinkShared {
    fn take_dropped(&self) -> Option<ServerFrame> {
        match self.backlog.take_dropped()? {
            ServerFrame::Dropped(mut d) => {
                d.room = Some(self.stream.clone());
                Some(ServerFrame::Dropped(d))
            }
            other => Some(other),
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
        Room { child, store, config, state, streams: HashMap::new() }
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

    /// Sends an event to every session joined to `stream`, except `skip`; membership, proposal
    /// and board (`task_updated`) events also go to the event bus ([`crate::events`]) for integrations.
    fn event(&self, stream: &str, name: &str, data: &Value, skip: Option<&str>) {
        self.publish(stream, name, data);
        let Some(live) = self.streams.get(stream) else { return };
        if live.links.is_empty() {
            return;
        }
        let note = event_note(stream, name, data);
        for l in live.links.iter().filter(|l| Some(l.session_id.as_str()) != skip) {
            l.notify.do_send(Notify(Arc::clone(&note)));
        }
    }

    /// Publishes a room event that integrations subscribe to (see [`EventKind`]); others are not.
    fn publish(&self, stream: &str, name: &str, data: &Value) {
        let bus = self.child.events();
        let room_kind = |k: &EventKind| matches!(k, EventKind::MemberJoined | EventKind::MemberLeft | EventKind::ProposalClosed);
        let kind = match name {
            "board_changed" => Some(EventKind::TaskUpdated),
            other => EventKind::parse(other).filter(room_kind),
        };
        let Some(kind) = kind.filter(|_| bus.watched()) else { return };
        let client = data.get("client_id").and_then(Value::as_str).map(str::to_owned);
        bus.publish(BridgeEvent::now(kind, client, Some(stream.to_owned()), data.clone()));
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

    // -- calls ----------------------------------------------------------------------------------

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

impl Supervisee for Room {
    type Error = RoomError;

    fn child(&self) -> &ChildHandle {
        &self.child
    }

    /// The store may hold less than memory after a store error: take the store's word for it.
    fn on_error(&mut self, error: &RoomError) {
        if matches!(error, RoomError::Store(_)) {
            self.reload();
        }
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
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
    }
}

guarded!(Room, RoomSend, |room, msg, _| room.send(msg.0));
guarded!(Room, RoomCall, |room, msg, ctx| room.call(msg, ctx));
guarded!(Room, SessionClosed => (), |room, msg, _| room.session_closed(&msg.session_id));

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

fault_handler!(Room);

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
