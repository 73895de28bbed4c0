//! The one supervision mechanism, seen from outside: a contained panic restarts the actor and is
//! counted in the tree; beyond the restart intensity the child escalates to the root (a probe).

use agent_bridge_actors::supervisor::{Fault, NodeState};
use agent_bridge_actors::ttl_sweeper::{SweepNow, TtlSweeper};

use agent_bridge_actors::metrics::render;
use agent_bridge_actors::room::RoomsConfig;

use super::fixture::store;
use super::room::start_room;
use super::sweeper::{by_hand_config, start_sweeper};

#[actix::test]
async fn a_panic_in_a_handler_is_contained_and_counted_and_the_actor_restarts() {
    let mut s = start_sweeper(store(), by_hand_config(), 2);
    s.addr.do_send(Fault);
    assert_eq!(s.addr.send(SweepNow).await.expect("the restarted sweeper answers"), 0);
    let node = s.tree.node(TtlSweeper::NAME).expect("node");
    assert_eq!((node.restarts, node.state), (1, NodeState::Running));
    assert_eq!(node.last_reason.as_deref(), Some("fault injected by /admin/fault"));
    assert!(s.tree.healthy());
    assert_eq!(s.tree.inject_fault(TtlSweeper::NAME).as_deref(), Some(TtlSweeper::NAME), "reachable by /admin/fault");
    s.addr.send(SweepNow).await.expect("answers");
    assert_eq!(s.tree.node(TtlSweeper::NAME).map(|n| n.restarts), Some(2));
    s.root.quiet().await;
}

#[actix::test]
async fn beyond_its_restart_intensity_a_child_escalates_to_the_root() {
    let mut s = start_sweeper(store(), by_hand_config(), 1);
    s.addr.do_send(Fault);
    s.addr.send(SweepNow).await.expect("restarted once");
    s.root.quiet().await;
    s.addr.do_send(Fault);
    let escalated = s.root.next().await;
    assert_eq!((escalated.actor.as_str(), escalated.critical), (TtlSweeper::NAME, false));
    assert_eq!(escalated.reason, "fault injected by /admin/fault");
    assert_eq!(s.tree.node(TtlSweeper::NAME).map(|n| n.state), Some(NodeState::Failed));
    assert!(!s.tree.healthy(), "readiness is down");
    assert_eq!(s.tree.failed(), [TtlSweeper::NAME]);
    s.root.quiet().await;
}

#[actix::test]
async fn a_restart_is_counted_by_actor_kind_never_by_instance_name() {
    let room = start_room(RoomsConfig::default(), 3);
    room.addr.do_send(Fault);
    room.say("alice", 1, true).await.expect("restarted");
    let text = render();
    let restarts: Vec<&str> = text.lines().filter(|l| l.starts_with("bridge_actor_restarts_total{")).collect();
    assert!(restarts.iter().any(|l| l.contains(r#"actor="room""#)), "{restarts:?}");
    assert!(!text.contains("room:lab"), "no instance name in /metrics: {restarts:?}");
}
