//! A `Router` shard alone: started under the supervision loop with probes for the AckTracker and
//! for its sessions (their links: deliveries, notes and a shared backlog), a temporary store.

use std::sync::Arc;

use actix::prelude::*;
use agent_bridge_actors::delivery::{new_message_id, CloseSession, Envelope, Target};
use agent_bridge_actors::messages::{
    CatchUp, Connect, Disconnect, Kick, NotifyClient, Poll, PollFrom, Polled, Replied, ReplyTo, Route, RouteBroadcast, RouteError,
    Routed, RouterConfig,
};
use agent_bridge_actors::router::Router;
use agent_bridge_actors::store::Store;
use agent_bridge_actors::supervisor::{Fault, Mailbox, Tree};
use agent_bridge_protocol::frames::SentStatus;
use agent_bridge_actors::delivery::Note;
use agent_bridge_protocol::{Priority, ServerFrame, Timestamp};
use tokio::sync::oneshot;

use super::fixture::{ago, child, send, store, stored, to, tracker_probes, tree, FakeSession, TrackerProbes};
use super::probe::probe;

pub struct TestShard {
    pub addr: Addr<Router>,
    pub store: Store,
    pub tracker: TrackerProbes,
    pub tree: Arc<Tree>,
}

/// Shard `router-0` with probes for the tracker.
pub fn start_shard(config: RouterConfig) -> TestShard {
    let (link, tracker) = tracker_probes();
    let (tree, _root) = tree();
    let child = child(&tree, "router-0", Router::NAME, 3);
    let store = store();
    let addr = Mailbox::new().supervise(&child, Router::new(child.clone(), store.clone(), config, link));
    TestShard { addr, store, tracker, tree }
}

impl TestShard {
    /// Routes `env` and waits for its outcome.
    pub async fn route(&self, env: Envelope) -> Result<Routed, RouteError> {
        let (tx, rx) = oneshot::channel();
        self.addr.do_send(Route { env, reply: ReplyTo::Future(tx) });
        rx.await.expect("every route is answered")
    }

    /// Routes `env`, expecting it accepted with `status`; returns its seq.
    pub async fn routed(&self, env: Envelope, status: SentStatus) -> u64 {
        let routed = self.route(env).await.expect("accepted");
        assert_eq!(routed.status, status, "{routed:?}");
        routed.seq.expect("a client message has a seq")
    }

    /// Registers `session` for `client`.
    pub async fn connect(&self, client: &str, session: &FakeSession) {
        let connect = Connect { client_id: client.into(), link: session.link.clone(), since: None };
        self.addr.send(connect).await.expect("the shard answers").expect("connected");
    }

    /// The session wrote `n` deliveries; it asks for the next batch when its lag drained, as a
    /// session does.
    pub async fn write(&self, client: &str, session: &mut FakeSession, n: usize) -> Vec<u64> {
        let mut got = Vec::new();
        for _ in 0..n {
            let (value, _seq, drained) = session.take_noting_drain().await;
            got.push(value);
            if drained {
                self.addr.do_send(CatchUp { client_id: client.into(), session_id: session.link.session_id.clone() });
            }
        }
        got
    }
}

/// A shard with bob connected, his backlog holding `frames` frames and `bytes` bytes.
async fn with_bob(frames: usize, bytes: usize) -> (TestShard, FakeSession) {
    let shard = start_shard(RouterConfig::default());
    let bob = FakeSession::new("s-bob", frames, bytes);
    shard.connect("bob", &bob).await;
    (shard, bob)
}

#[actix::test]
async fn a_message_to_a_connected_session_is_delivered_and_the_sender_told_so() {
    let (shard, mut bob) = with_bob(64, 1 << 20).await;
    let (reply, mut replies) = probe::<Replied>();
    shard.addr.do_send(Route { env: to("alice", "bob", 1), reply: ReplyTo::Session { to: reply, r#ref: Some("r-1".into()) } });
    let Replied { r#ref, result } = replies.next().await;
    let routed = result.expect("accepted");
    assert_eq!((r#ref.as_deref(), routed.status, routed.seq, routed.recipients), (Some("r-1"), SentStatus::Delivered, Some(1), 1));
    assert_eq!(bob.take().await, (1, 1));
    replies.quiet().await;
}

#[actix::test]
async fn a_message_to_an_offline_client_is_queued_and_delivered_when_it_connects() {
    let shard = start_shard(RouterConfig::default());
    for n in 1..=3 {
        assert_eq!(shard.routed(to("alice", "bob", n), SentStatus::Queued).await, n);
    }
    let mut bob = FakeSession::new("s-bob", 64, 1 << 20);
    shard.connect("bob", &bob).await;
    let got = shard.write("bob", &mut bob, 3).await;
    assert_eq!(got, [1, 2, 3]);
    // Delivered once: a second session of bob gets nothing from the queue.
    let mut second = FakeSession::new("s-bob-2", 64, 1 << 20);
    shard.connect("bob", &second).await;
    second.deliveries.quiet().await;
    bob.deliveries.quiet().await;
}

#[actix::test]
async fn fire_and_forget_to_nobody_is_dropped_and_never_delivered() {
    let shard = start_shard(RouterConfig::default());
    let mut env = to("alice", "bob", 1);
    env.persist = false;
    let routed = shard.route(env).await.expect("answered");
    assert_eq!((routed.status, routed.recipients), (SentStatus::Dropped, 0));
    shard.routed(to("alice", "bob", 2), SentStatus::Queued).await;
    let mut bob = FakeSession::new("s-bob", 64, 1 << 20);
    shard.connect("bob", &bob).await;
    assert_eq!(bob.take().await.0, 2, "only the persisted message waited");
    bob.deliveries.quiet().await;
}

#[actix::test]
async fn a_broadcast_reaches_every_connected_client_but_its_sender() {
    let shard = start_shard(RouterConfig::default());
    let mut sessions: Vec<(&str, FakeSession)> =
        ["alice", "bob", "carol"].into_iter().map(|c| (c, FakeSession::new(&format!("s-{c}"), 64, 1 << 20))).collect();
    for (c, s) in &sessions {
        shard.connect(c, s).await;
    }
    let env = Arc::new(send("alice", Target::Broadcast, 9));
    let part = shard
        .addr
        .send(RouteBroadcast { envelope: env, id: new_message_id(), timestamp: Timestamp::now() })
        .await
        .expect("the shard answers")
        .expect("accepted");
    assert_eq!(part.recipients, 2);
    if let Some(durable) = part.durable {
        durable.await.expect("committed");
    }
    for (c, s) in sessions.iter_mut().skip(1) {
        assert_eq!(s.take().await, (9, 1), "{c} got it as seq 1 of its inbox");
    }
    sessions[0].1.deliveries.quiet().await;
}

#[actix::test]
async fn queued_messages_are_delivered_in_priority_order_fifo_within_a_level() {
    let shard = start_shard(RouterConfig::default());
    let order = [(1, Priority::Low), (2, Priority::Normal), (3, Priority::Critical), (4, Priority::High), (5, Priority::Critical)];
    for (n, p) in order {
        let mut env = to("alice", "bob", n);
        env.priority = p;
        shard.routed(env, SentStatus::Queued).await;
    }
    let mut bob = FakeSession::new("s-bob", 64, 1 << 20);
    shard.connect("bob", &bob).await;
    assert_eq!(shard.write("bob", &mut bob, 5).await, [3, 5, 4, 2, 1]);
}

#[actix::test]
async fn require_ack_is_tracked_before_any_session_sees_it_and_its_delivery_reported() {
    let (mut shard, mut bob) = with_bob(64, 1 << 20).await;
    let mut env = to("alice", "bob", 1);
    env.require_ack = true;
    let routed = shard.route(env).await.expect("accepted");
    let track = shard.tracker.track.next().await;
    assert_eq!((track.client_id.as_str(), track.seq, track.message_id.as_str(), track.from.as_str()), ("bob", 1, routed.message_id.as_str(), "alice"));
    let delivered = shard.tracker.delivered.next().await;
    assert_eq!((delivered.client_id.as_str(), delivered.seq), ("bob", 1));
    assert_eq!(bob.take().await, (1, 1));
    // A message without require_ack is not the tracker's business.
    shard.routed(to("alice", "bob", 2), SentStatus::Delivered).await;
    shard.tracker.track.quiet().await;
    shard.tracker.delivered.quiet().await;
}

#[actix::test]
async fn a_slow_session_is_held_to_its_frame_bound_and_caught_up_from_the_store_in_order() {
    let (shard, mut bob) = with_bob(2, 1 << 20).await;
    for n in 1..=6 {
        shard.route(to("alice", "bob", n)).await.expect("accepted");
    }
    assert_eq!(bob.link.backlog.pending(), 2, "two frames at most are handed over before the session writes");
    assert!(bob.link.backlog.is_lagging(), "the rest waits in the store");
    assert_eq!(shard.write("bob", &mut bob, 6).await, [1, 2, 3, 4, 5, 6]);
    assert!(!bob.link.backlog.is_lagging(), "caught up");
}

#[actix::test]
async fn fire_and_forget_beyond_a_full_backlog_is_dropped_counted_and_reported_once() {
    let (shard, mut bob) = with_bob(1, 1 << 20).await;
    for n in 1..=4 {
        let mut env = to("alice", "bob", n);
        env.persist = false;
        let routed = shard.route(env).await.expect("answered");
        let want = if n == 1 { SentStatus::Delivered } else { SentStatus::Dropped };
        assert_eq!(routed.status, want, "message {n}");
    }
    let (n, _) = bob.take().await;
    assert_eq!(n, 1);
    match bob.link.backlog.take_dropped() {
        Some(ServerFrame::Dropped(d)) => assert_eq!((d.count, d.room), (3, None), "the inbox's drops"),
        other => panic!("expected a dropped notice, got {other:?}"),
    }
    assert!(bob.link.backlog.take_dropped().is_none());
}

#[actix::test]
async fn a_session_is_bounded_in_bytes_and_the_rest_waits_in_the_store() {
    let shard = start_shard(RouterConfig::default());
    // Room for one frame (about 400 bytes with FRAME_OVERHEAD), not two.
    let mut bob = FakeSession::new("s-bob", 1000, 600);
    shard.connect("bob", &bob).await;
    for n in 1..=3 {
        shard.route(to("alice", "bob", n)).await.expect("accepted");
    }
    assert_eq!(bob.link.backlog.pending(), 1, "the byte budget holds one frame");
    assert!((300..=600).contains(&bob.link.backlog.bytes()), "{} bytes held", bob.link.backlog.bytes());
    assert_eq!(shard.write("bob", &mut bob, 3).await, [1, 2, 3], "the rest came from the store, in order");
}

#[actix::test]
async fn a_panic_in_the_shard_is_contained_it_restarts_and_keeps_its_sessions() {
    let (shard, mut bob) = with_bob(64, 1 << 20).await;
    shard.addr.do_send(Fault);
    shard.routed(to("alice", "bob", 1), SentStatus::Delivered).await;
    let node = shard.tree.node("router-0").expect("node");
    assert_eq!(node.restarts, 1);
    assert_eq!(bob.take().await, (1, 1), "the registry survived the restart");
    shard.addr.do_send(Disconnect { client_id: "bob".into(), session_id: "s-bob".into() });
    assert_eq!(shard.routed(to("alice", "bob", 2), SentStatus::Queued).await, 2, "seqs go on after the restart");
}

#[actix::test]
async fn a_queued_require_ack_message_found_expired_is_not_delivered_and_the_tracker_told() {
    let mut shard = start_shard(RouterConfig::default());
    stored(&shard.store, "bob", 1, true, ago(5));
    stored(&shard.store, "bob", 2, false, None);
    let mut bob = FakeSession::new("s-bob", 64, 1 << 20);
    shard.connect("bob", &bob).await;
    assert_eq!(bob.take().await, (2, 2), "only the live message");
    let e = shard.tracker.expired.next().await;
    assert_eq!((e.client_id.as_str(), e.seq, e.gone), ("bob", 1, false), "the message is still stored; the sweeper removes it");
    assert_eq!(shard.store.queue_len("bob"), 0, "both left the queue");
    bob.deliveries.quiet().await;
}

#[actix::test]
async fn a_note_for_a_client_reaches_each_of_its_sessions() {
    let shard = start_shard(RouterConfig::default());
    let (mut one, mut two) = (FakeSession::new("s-1", 64, 1 << 20), FakeSession::new("s-2", 64, 1 << 20));
    shard.connect("bob", &one).await;
    shard.connect("bob", &two).await;
    let note = Note::new(ServerFrame::error("test", "a note", None));
    shard.addr.do_send(NotifyClient { client_id: "bob".into(), note: Arc::clone(&note) });
    for s in [&mut one, &mut two] {
        let got = s.notes.next().await;
        assert!(Arc::ptr_eq(&got.0, &note), "the same encoded frame for every session");
    }
}

#[actix::test]
async fn a_long_poll_on_an_empty_inbox_is_parked_and_woken_by_the_next_message() {
    let shard = start_shard(RouterConfig::default());
    let poll = |from| Poll { client_id: "bob".into(), from, limit: 10, wait: true, seen: true };
    let polled = shard.addr.send(poll(PollFrom::Seq(0))).await.expect("answers").expect("polled");
    let Polled::Wait { mut wake, next_since } = polled else { panic!("an empty inbox parks the poll") };
    assert_eq!(next_since, 0);
    assert!(wake.try_recv().is_err(), "not woken before a message arrives");
    shard.routed(to("alice", "bob", 1), SentStatus::Queued).await;
    tokio::time::timeout(super::probe::WAIT, wake).await.expect("woken in time").expect("woken, not dropped");
    let Polled::Page { messages, next_since } = shard.addr.send(poll(PollFrom::Seq(0))).await.expect("answers").expect("polled") else {
        panic!("a page now")
    };
    assert_eq!((messages.len(), next_since), (1, 1));
}

#[actix::test]
async fn connecting_with_since_replays_the_stream_in_seq_order_before_live_traffic() {
    let shard = start_shard(RouterConfig::default());
    for n in 1..=3 {
        shard.routed(to("alice", "bob", n), SentStatus::Queued).await;
    }
    let mut first = FakeSession::new("s-1", 64, 1 << 20);
    shard.connect("bob", &first).await;
    assert_eq!(shard.write("bob", &mut first, 3).await, [1, 2, 3]);
    // Everything was delivered; a second session resuming after seq 1 still gets 2 and 3 again.
    let mut resumed = FakeSession::new("s-2", 64, 1 << 20);
    let connect = Connect { client_id: "bob".into(), link: resumed.link.clone(), since: Some(1) };
    let connected = shard.addr.send(connect).await.expect("answers").expect("connected");
    assert_eq!((connected.resumed_from, connected.last_seq), (Some(1), 3));
    shard.route(to("alice", "bob", 4)).await.expect("accepted");
    assert_eq!(shard.write("bob", &mut resumed, 3).await, [2, 3, 4], "the replay, then the live message");
}

#[actix::test]
async fn a_repeated_idempotency_key_answers_duplicate_with_the_first_id_and_delivers_once() {
    let (shard, mut bob) = with_bob(64, 1 << 20).await;
    let keyed = |n| {
        let mut env = to("alice", "bob", n);
        env.idempotency_key = Some("k-1".into());
        env
    };
    let first = shard.route(keyed(1)).await.expect("accepted");
    let again = shard.route(keyed(2)).await.expect("accepted");
    assert_eq!(again.status, SentStatus::Duplicate);
    assert_eq!((again.message_id, again.seq), (first.message_id, first.seq));
    assert_eq!(bob.take().await, (1, 1));
    bob.deliveries.quiet().await;
}

#[actix::test]
async fn a_session_gets_only_the_types_it_subscribed_to_and_the_rest_stays_queued() {
    let (shard, mut bob) = with_bob(64, 1 << 20).await;
    bob.link.filter.set(vec!["alert".into()]);
    shard.routed(to("alice", "bob", 1), SentStatus::Queued).await;
    let mut alert = to("alice", "bob", 2);
    alert.msg_type = "alert".into();
    shard.routed(alert, SentStatus::Delivered).await;
    assert_eq!(bob.take().await, (2, 2));
    bob.deliveries.quiet().await;
    assert_eq!(shard.store.queue_len("bob"), 1, "the note waits for a session that wants it");
}

#[actix::test]
async fn a_kick_closes_every_session_of_the_client_and_no_other() {
    let (shard, mut bob) = with_bob(64, 1 << 20).await;
    let mut second = FakeSession::new("s-bob-2", 64, 1 << 20);
    shard.connect("bob", &second).await;
    let mut carol = FakeSession::new("s-carol", 64, 1 << 20);
    shard.connect("carol", &carol).await;
    let ended = shard.addr.send(Kick { client_id: "bob".into(), reason: "operator".into() }).await.expect("answered");
    assert_eq!(ended, 2);
    for s in [&mut bob, &mut second] {
        let CloseSession { code, reason } = s.closes.next().await;
        assert_eq!((code, reason.as_str()), ("kicked", "operator"));
    }
    carol.closes.quiet().await;
    let unknown = shard.addr.send(Kick { client_id: "nobody".into(), reason: "x".into() }).await.expect("answered");
    assert_eq!(unknown, 0);
}
