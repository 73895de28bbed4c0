//! `Room` alone: one room actor under actix's `Supervisor`, probe sessions joined to it, a
//! temporary store.

use std::sync::Arc;

use actix::prelude::*;
use agent_bridge_actors::delivery::Target;
use std::time::Duration;

use agent_bridge_actors::room::{Room, RoomCall, RoomError, RoomOp, RoomSend, RoomState, RoomsConfig, Rule};
use agent_bridge_actors::router::Routed;
use agent_bridge_actors::store::Store;
use agent_bridge_actors::supervisor::{Fault, Mailbox, NodeState, Tree};
use agent_bridge_protocol::frames::SentStatus;
use agent_bridge_protocol::ServerFrame;
use serde_json::Value;

use super::fixture::{child, n_of, send, store, tree, RoomMember};

pub struct TestRoom {
    pub addr: Addr<Room>,
    pub tree: Arc<Tree>,
    pub store: Store,
}

/// Room `lab`, created by `alice`, restarted at most `max_restarts` times a minute.
pub fn start_room(config: RoomsConfig, max_restarts: u32) -> TestRoom {
    let (store, (tree, _root)) = (store(), tree());
    let state = RoomState::new("lab", Some("experiments".into()), "alice", "coordinator".into(), false, Vec::new());
    store.put_room("lab", &state).expect("room state stored");
    let child = child(&tree, "room:lab", Room::NAME, max_restarts);
    let (s, config) = (store.clone(), Arc::new(config));
    let addr = Mailbox::new().supervise(&child, Room::new(child.clone(), s, config, state));
    TestRoom { addr, tree, store }
}

impl TestRoom {
    pub async fn call(&self, caller: &str, op: RoomOp) -> Result<Value, RoomError> {
        let call = RoomCall { caller: caller.into(), stream: "lab".into(), op, on_channels: true };
        let reply = self.addr.send(call).await.expect("the room answers")?;
        if let Some(durable) = reply.durable {
            durable.await.expect("committed");
        }
        Ok(reply.value)
    }

    /// `caller` joins with the session `member`; returns the call's result.
    pub async fn join(&self, caller: &str, member: &RoomMember) -> Value {
        let op = RoomOp::Join { role: None, since: None, link: Some(member.link()), identity: None };
        self.call(caller, op).await.expect("joined")
    }

    /// A room message `n` from `from`.
    pub async fn say(&self, from: &str, n: u64, persist: bool) -> Result<Routed, RoomError> {
        let mut env = send(from, Target::Room("lab".into()), n);
        env.persist = persist;
        let accepted = self.addr.send(RoomSend(env)).await.expect("the room answers")?;
        Ok(accepted.routed)
    }
}

/// The room with alice and bob joined, one session each.
async fn alice_and_bob(config: RoomsConfig, max_restarts: u32) -> (TestRoom, RoomMember, RoomMember) {
    let room = start_room(config, max_restarts);
    let (alice, bob) = (RoomMember::new("s-alice"), RoomMember::new("s-bob"));
    room.join("alice", &alice).await;
    room.join("bob", &bob).await;
    (room, alice, bob)
}

#[actix::test]
async fn a_join_is_confirmed_first_and_announced_to_the_members_present() {
    let room = start_room(RoomsConfig::default(), 3);
    let (mut alice, mut bob) = (RoomMember::new("s-alice"), RoomMember::new("s-bob"));
    room.join("alice", &alice).await;
    assert_eq!(alice.event().await.0, "joined");
    let result = room.join("bob", &bob).await;
    assert_eq!((result["role"].as_str(), result["new_member"].as_bool()), (Some("member"), Some(true)));
    let (event, data) = bob.event().await;
    assert_eq!(event, "joined", "the joiner's own confirmation comes first");
    assert_eq!(data["members"].as_array().map(Vec::len), Some(2));
    let (event, data) = alice.event().await;
    assert_eq!((event.as_str(), data["client_id"].as_str(), data["new_member"].as_bool()), ("member_joined", Some("bob"), Some(true)));
    bob.notes.quiet().await;
}

#[actix::test]
async fn a_room_message_reaches_every_other_member_once_and_not_its_sender() {
    let room = start_room(RoomsConfig::default(), 3);
    let members: Vec<RoomMember> = ["alice", "bob", "carol"].iter().map(|c| RoomMember::new(&format!("s-{c}"))).collect();
    for (c, m) in ["alice", "bob", "carol"].iter().zip(&members) {
        room.join(c, m).await;
    }
    let [mut alice, mut bob, mut carol]: [RoomMember; 3] = members.try_into().ok().expect("three");
    let routed = room.say("alice", 7, true).await.expect("sent");
    assert_eq!((routed.status, routed.seq, routed.recipients), (SentStatus::Delivered, Some(1), 2));
    assert_eq!(bob.take().await, (7, 1));
    assert_eq!(carol.take().await, (7, 1));
    room.say("bob", 8, true).await.expect("sent");
    assert_eq!(alice.take().await, (8, 2));
    assert_eq!(carol.take().await, (8, 2));
    alice.deliveries.quiet().await;
    bob.deliveries.quiet().await;
    carol.deliveries.quiet().await;
}

#[actix::test]
async fn leaving_tells_the_others_and_ends_membership() {
    let (room, mut alice, mut bob) = alice_and_bob(RoomsConfig::default(), 3).await;
    let left = room.call("bob", RoomOp::Leave).await.expect("left");
    assert_eq!((left["left"].as_bool(), left["member"].as_bool()), (Some(true), Some(false)));
    let data = alice.event_named("member_left").await;
    assert_eq!((data["client_id"].as_str(), data["reason"].as_str()), (Some("bob"), Some("left")));
    room.say("alice", 1, true).await.expect("sent");
    let err = room.say("bob", 2, true).await.expect_err("bob is no member any more");
    assert_eq!(err.code(), "not_member");
    let members = room.call("alice", RoomOp::Members).await.expect("members");
    assert_eq!(members["members"].as_array().map(Vec::len), Some(1));
    bob.deliveries.quiet().await;
}

#[actix::test]
async fn fire_and_forget_to_a_room_nobody_is_in_is_dropped_and_a_persisted_one_queued() {
    let room = start_room(RoomsConfig::default(), 3);
    let routed = room.say("alice", 1, false).await.expect("answered");
    assert_eq!((routed.status, routed.recipients), (SentStatus::Dropped, 0));
    let routed = room.say("alice", 2, true).await.expect("answered");
    assert_eq!((routed.status, routed.seq), (SentStatus::Queued, Some(1)), "stored in the room's stream");
    let history = room.call("alice", RoomOp::History { since: 0, limit: 10, identity: None, thread_id: None }).await.expect("history");
    assert_eq!(history["count"].as_u64(), Some(1), "only the persisted message is in the history: {history}");
}

/// Alice sends `sent` messages while bob writes nothing: returns how many frames are held for him,
/// then, as he writes them, every `n` he gets, in order.
async fn slow_member(config: RoomsConfig, sent: u64) -> (usize, Vec<u64>) {
    let (room, _alice, mut bob) = alice_and_bob(config, 3).await;
    for n in 1..=sent {
        room.say("alice", n, true).await.expect("sent");
    }
    let held = bob.deliveries.drain().await;
    let mut got = Vec::new();
    for d in &held {
        d.written();
        got.push(n_of(&d.out.message.payload));
    }
    while got.len() < sent as usize {
        got.push(bob.take().await.0);
    }
    bob.deliveries.quiet().await;
    (held.len(), got)
}

#[actix::test]
async fn a_slow_member_is_fed_from_the_stream_in_order_within_its_frame_bound() {
    let (held, got) = slow_member(RoomsConfig { queue_limit: 2, ..RoomsConfig::default() }, 5).await;
    assert_eq!(held, 2, "the backlog holds at most queue_limit frames");
    assert_eq!(got, [1, 2, 3, 4, 5], "the rest is fed from the stream, in seq order, each once");
}

#[actix::test]
async fn a_slow_member_is_bounded_in_bytes_too() {
    // A frame costs about 400 bytes (its JSON and FRAME_OVERHEAD): one fits in 600, two do not.
    let (held, got) = slow_member(RoomsConfig { queue_bytes: 600, ..RoomsConfig::default() }, 3).await;
    assert_eq!(held, 1, "one frame fills the byte budget");
    assert_eq!(got, [1, 2, 3]);
}

#[actix::test]
async fn fire_and_forget_beyond_the_backlog_is_counted_and_reported_as_dropped() {
    let (room, _alice, mut bob) = alice_and_bob(RoomsConfig { queue_limit: 1, ..RoomsConfig::default() }, 3).await;
    let first = room.say("alice", 1, false).await.expect("sent");
    assert_eq!((first.status, first.recipients), (SentStatus::Delivered, 1));
    for n in 2..=4 {
        let r = room.say("alice", n, false).await.expect("sent");
        assert_eq!(r.status, SentStatus::Dropped, "bob's backlog is full and nobody else is there");
    }
    let d = bob.deliveries.next().await;
    d.written();
    match d.take_dropped() {
        Some(ServerFrame::Dropped(dropped)) => {
            assert_eq!((dropped.count, dropped.room.as_deref()), (3, Some("lab")));
        }
        other => panic!("expected a dropped notice, got {other:?}"),
    }
    assert!(d.take_dropped().is_none(), "reported once");
}

#[actix::test]
async fn a_panic_in_a_handler_is_contained_and_the_room_restarts_with_its_members() {
    let (room, _alice, mut bob) = alice_and_bob(RoomsConfig::default(), 3).await;
    room.addr.do_send(Fault);
    // Handled after the restart: the mailbox survives it.
    room.say("alice", 1, true).await.expect("the restarted room answers");
    let node = room.tree.node("room:lab").expect("node");
    assert_eq!((node.restarts, node.state), (1, NodeState::Running));
    assert_eq!(node.last_reason.as_deref(), Some("fault injected by /admin/fault"));
    assert_eq!(bob.take().await, (1, 1), "bob's session stayed joined across the restart");
    let members = room.call("alice", RoomOp::Members).await.expect("members");
    assert_eq!(members["members"].as_array().map(Vec::len), Some(2), "reloaded from the store");
}

#[actix::test]
async fn beyond_its_restart_intensity_a_room_is_failed_and_answers_unavailable() {
    let room = start_room(RoomsConfig::default(), 1);
    room.addr.do_send(Fault);
    room.say("alice", 1, true).await.expect("restarted once");
    room.addr.do_send(Fault);
    let err = room.say("alice", 2, true).await.expect_err("failed for good");
    assert_eq!(err.code(), "unavailable");
    assert_eq!(room.tree.node("room:lab").map(|n| n.state), Some(NodeState::Failed));
    assert!(!room.tree.healthy());
    let _ = &room.store;
}

#[actix::test]
async fn a_proposal_closes_at_its_deadline_on_the_rooms_timer() {
    tokio::time::pause();
    let (room, mut alice, _bob) = alice_and_bob(RoomsConfig::default(), 3).await;
    let op = RoomOp::Propose { text: "ship it".into(), rule: Rule::Majority, quorum: None, weights: Default::default(), deadline_s: Some(5.0) };
    let proposal = room.call("alice", op).await.expect("proposed");
    assert_eq!(proposal["status"], "open");
    let start = tokio::time::Instant::now();
    let closed = alice.event_named("proposal_closed").await;
    assert!(start.elapsed() >= Duration::from_secs(5), "closed after {:?}", start.elapsed());
    assert_eq!((closed["reason"].as_str(), closed["outcome"].as_str()), (Some("deadline"), Some("rejected")), "{closed}");
    let stored = room.call("alice", RoomOp::ProposalGet { proposal_id: Some("p-1".into()) }).await.expect("read");
    assert_eq!(stored["status"], "closed");
}

#[actix::test]
async fn a_channel_carries_its_own_messages_to_the_sessions_that_joined_it() {
    let (room, _alice, mut bob) = alice_and_bob(RoomsConfig::default(), 3).await;
    room.call("alice", RoomOp::ChannelCreate { name: "design".into() }).await.expect("created");
    let mut carol = RoomMember::new("s-carol");
    room.join("carol", &carol).await;
    let on_channel = RoomCall {
        caller: "carol".into(),
        stream: "lab/design".into(),
        op: RoomOp::Join { role: None, since: None, link: Some(carol.link()), identity: None },
        on_channels: true,
    };
    room.addr.send(on_channel).await.expect("answers").expect("joined the channel");
    let mut env = send("alice", Target::Room("lab/design".into()), 5);
    env.persist = true;
    let routed = room.addr.send(RoomSend(env)).await.expect("answers").expect("sent").routed;
    assert_eq!(routed.seq, Some(1), "the channel's own seq");
    assert_eq!(carol.take().await, (5, 1));
    bob.deliveries.quiet().await;
}
