//! The `TtlSweeper` alone: a temporary store with messages written as the router writes them, a
//! probe for the AckTracker, paused time for its own timer.

use std::time::Duration;

use actix::prelude::*;
use agent_bridge_actors::messages::Expired;
use agent_bridge_actors::store::{Store, Stream};
use agent_bridge_actors::supervisor::{Escalated, Mailbox, Tree};
use agent_bridge_actors::ttl_sweeper::{Archive, SweepConfig, SweepNow, TtlSweeper};
use tokio::time::Instant;

use super::fixture::{ago, child, hence, store, stored, tree};
use super::probe::{probe, Seen};

pub struct TestSweeper {
    pub addr: Addr<TtlSweeper>,
    pub store: Store,
    pub expired: Seen<Expired>,
    pub tree: std::sync::Arc<Tree>,
    pub root: Seen<Escalated>,
}

/// A sweeper over `store`, restarted at most `max_restarts` times a minute.
pub fn start_sweeper(store: Store, config: SweepConfig, max_restarts: u32) -> TestSweeper {
    let (expired, seen) = probe::<Expired>();
    let (tree, root) = tree();
    let child = child(&tree, TtlSweeper::NAME, TtlSweeper::NAME, max_restarts);
    let addr = Mailbox::new().supervise(&child, TtlSweeper::new(child.clone(), store.clone(), config, expired));
    TestSweeper { addr, store, expired: seen, tree, root }
}

/// Settings with an interval long enough that only `SweepNow` runs a pass within a test.
pub fn by_hand_config() -> SweepConfig {
    SweepConfig { interval: Duration::from_secs(3600), ..SweepConfig::default() }
}

#[actix::test]
async fn an_expired_message_is_removed_and_reported_and_an_unexpired_one_stays() {
    let store = store();
    stored(&store, "bob", 1, true, ago(5));
    stored(&store, "bob", 2, true, hence(3600));
    stored(&store, "bob", 3, false, None);
    let mut s = start_sweeper(store, by_hand_config(), 3);
    assert_eq!(s.addr.send(SweepNow).await.expect("answers"), 1);
    let e = s.expired.next().await;
    assert_eq!((e.client_id.as_str(), e.seq, e.gone), ("bob", 1, true), "the tracker hears of the require-ack one");
    let inbox = Stream::Inbox("bob");
    assert_eq!(s.store.get(inbox, 1).expect("read"), None);
    assert!(s.store.get(inbox, 2).expect("read").is_some() && s.store.get(inbox, 3).expect("read").is_some());
    assert_eq!(s.store.queue_len("bob"), 2, "its queue entry went with it");
    assert_eq!(s.addr.send(SweepNow).await.expect("answers"), 0, "nothing more is due");
    s.expired.quiet().await;
}

#[actix::test]
async fn the_sweepers_own_timer_runs_the_passes() {
    tokio::time::pause();
    let store = store();
    stored(&store, "bob", 1, true, ago(5));
    let start = Instant::now();
    let mut s = start_sweeper(store, SweepConfig { interval: Duration::from_secs(5), ..SweepConfig::default() }, 3);
    assert_eq!(s.expired.next().await.seq, 1);
    assert!(start.elapsed() >= Duration::from_secs(5), "swept by the timer after {:?}", start.elapsed());
    assert_eq!(s.store.get(Stream::Inbox("bob"), 1).expect("read"), None);
}

#[actix::test]
async fn a_pass_is_bounded_and_a_full_one_is_followed_at_once() {
    tokio::time::pause();
    let store = store();
    for seq in 1..=5 {
        stored(&store, "bob", seq, true, ago(5));
    }
    let mut s = start_sweeper(store, SweepConfig { max_per_pass: 2, ..by_hand_config() }, 3);
    let start = Instant::now();
    assert_eq!(s.addr.send(SweepNow).await.expect("answers"), 2, "at most max_per_pass");
    let mut seqs = Vec::new();
    for _ in 0..5 {
        seqs.push(s.expired.next().await.seq);
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert!(start.elapsed() < Duration::from_secs(1), "the next passes did not wait for the interval");
    assert_eq!(s.store.queue_len("bob"), 0);
}

#[actix::test]
async fn archiving_to_the_store_keeps_what_it_removes() {
    let store = store();
    stored(&store, "bob", 1, false, ago(5));
    let s = start_sweeper(store, SweepConfig { archive: Archive::Store, ..by_hand_config() }, 3);
    assert_eq!(s.addr.send(SweepNow).await.expect("answers"), 1);
    assert_eq!(s.store.archived(), 1);
}
