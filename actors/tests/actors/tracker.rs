//! The `AckTracker` alone: probes for the router shard it redelivers through and sends receipts
//! to, a temporary store, and paused time for its timers.

use std::time::Duration;

use actix::prelude::*;
use agent_bridge_actors::ack_tracker::{AckConfig, AckTracker};
use agent_bridge_actors::messages::{
    Acknowledge, Delivered, Expired, NegativeAck, NotifyClient, PendingCount, Redeliver, Settled, ShardLink, Shards, Track,
};
use agent_bridge_actors::store::Store;
use agent_bridge_actors::supervisor::{Fault, Mailbox};
use agent_bridge_protocol::frames::ReceiptStatus;
use agent_bridge_protocol::{Priority, ServerFrame};
use tokio::time::Instant;

use super::fixture::{child, store, stored, tree};
use super::probe::{probe, probe_with, Seen};

/// Waits this long for an ack in these tests (virtual time).
const TIMEOUT: Duration = Duration::from_secs(2);

struct TestTracker {
    addr: Addr<AckTracker>,
    store: Store,
    redeliver: Seen<Redeliver>,
    settled: Seen<Settled>,
    notify: Seen<NotifyClient>,
}

/// A tracker over `store` whose shard probe answers every redelivery with `online`.
fn start_tracker(store: Store, max_attempts: u32, online: bool) -> TestTracker {
    let (redeliver, redeliver_seen) = probe_with::<Redeliver>(move |_| online);
    let (settled, settled_seen) = probe::<Settled>();
    let (notify, notify_seen) = probe::<NotifyClient>();
    let shards = Shards::new(vec![ShardLink { redeliver, settled, notify }]);
    let config = AckConfig { timeout: TIMEOUT, backoff_max: TIMEOUT * 4, max_attempts };
    let (tree, _root) = tree();
    let child = child(&tree, AckTracker::NAME, AckTracker::NAME, 3);
    let addr = Mailbox::new().supervise(&child, AckTracker::new(child.clone(), store.clone(), config, shards));
    TestTracker { addr, store, redeliver: redeliver_seen, settled: settled_seen, notify: notify_seen }
}

impl TestTracker {
    /// Message `seq` for bob from alice, stored and tracked as the router does, then delivered.
    async fn delivered(&self, seq: u64) -> String {
        let msg = stored(&self.store, "bob", seq, true, None);
        self.addr.do_send(Track { client_id: "bob".into(), seq, priority: Priority::Normal, message_id: msg.id.clone(), from: "alice".into(), pool: None });
        self.addr.do_send(Delivered { client_id: "bob".into(), seq });
        msg.id
    }

    /// The next receipt: (to whom, message id, status).
    async fn receipt(&mut self) -> (String, String, ReceiptStatus) {
        let NotifyClient { client_id, note } = self.notify.next().await;
        match &note.frame {
            ServerFrame::Receipt(r) => (client_id, r.message_id.clone(), r.status),
            other => panic!("expected a receipt, got {other:?}"),
        }
    }

    async fn pending(&self) -> usize {
        self.addr.send(PendingCount).await.expect("the tracker answers")
    }

    async fn ack(&self, id: &str) -> bool {
        self.addr.send(Acknowledge { client_id: "bob".into(), message_id: id.into() }).await.expect("answers")
    }
}

#[actix::test]
async fn an_ack_settles_the_message_and_the_sender_hears_delivered_then_acked() {
    let mut t = start_tracker(store(), 5, true);
    let id = t.delivered(1).await;
    assert_eq!(t.receipt().await, ("alice".into(), id.clone(), ReceiptStatus::Delivered));
    assert_eq!(t.pending().await, 1);
    assert!(t.ack(&id).await, "it was waiting for bob's ack");
    let settled = t.settled.next().await;
    assert_eq!((settled.client_id.as_str(), settled.seq), ("bob", 1));
    assert_eq!(t.receipt().await, ("alice".into(), id.clone(), ReceiptStatus::Acked));
    assert_eq!((t.pending().await, t.store.queue_len("bob")), (0, 0), "dequeued");
    assert!(!t.ack(&id).await, "a second ack finds nothing");
    let other = t.addr.send(Acknowledge { client_id: "mallory".into(), message_id: id }).await.expect("answers");
    assert!(!other);
    t.redeliver.quiet().await;
}

#[actix::test]
async fn without_an_ack_it_is_redelivered_after_the_timeout_then_after_twice_that() {
    tokio::time::pause();
    let mut t = start_tracker(store(), 5, true);
    t.delivered(1).await;
    let start = Instant::now();
    assert_eq!(t.receipt().await.2, ReceiptStatus::Delivered);
    tokio::time::sleep(TIMEOUT - Duration::from_millis(300)).await;
    t.pending().await;
    t.redeliver.quiet().await;
    let r = t.redeliver.next().await;
    let first = start.elapsed();
    assert_eq!((r.client_id.as_str(), r.seq), ("bob", 1));
    assert!(first >= TIMEOUT && first < TIMEOUT + Duration::from_millis(300), "redelivered after {first:?}");
    // The shard delivered it again: the next wait is doubled.
    t.addr.do_send(Delivered { client_id: "bob".into(), seq: 1 });
    let again = Instant::now();
    t.redeliver.next().await;
    let second = again.elapsed();
    assert!(second >= TIMEOUT * 2 && second < TIMEOUT * 2 + Duration::from_millis(300), "then after {second:?}");
    assert_eq!(t.store.attempts("bob", 1).expect("attempts"), 2, "attempts survive in the store");
}

#[actix::test]
async fn after_max_attempts_the_message_is_dead_lettered_and_the_sender_told() {
    tokio::time::pause();
    let mut t = start_tracker(store(), 2, true);
    let id = t.delivered(1).await;
    assert_eq!(t.receipt().await.2, ReceiptStatus::Delivered);
    t.redeliver.next().await;
    t.addr.do_send(Delivered { client_id: "bob".into(), seq: 1 });
    assert_eq!(t.receipt().await, ("alice".into(), id.clone(), ReceiptStatus::Dead));
    assert_eq!(t.settled.next().await.seq, 1);
    let dead = t.store.dead_letters(10).expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].message.id.as_str(), dead[0].recipient.as_str(), dead[0].attempts), (id.as_str(), "bob", 2));
    assert_eq!((t.pending().await, t.store.queue_len("bob")), (0, 0));
    t.redeliver.quiet().await;
}

#[actix::test]
async fn a_nack_brings_the_redelivery_forward() {
    tokio::time::pause();
    let mut t = start_tracker(store(), 5, true);
    let id = t.delivered(1).await;
    t.receipt().await;
    let start = Instant::now();
    let nacked = t.addr.send(NegativeAck { client_id: "bob".into(), message_id: id }).await.expect("answers");
    assert!(nacked);
    t.redeliver.next().await;
    assert!(start.elapsed() < TIMEOUT, "redelivered after {:?}, before the ack timeout", start.elapsed());
}

#[actix::test]
async fn pending_acks_are_rebuilt_from_the_store_at_start_and_after_a_restart() {
    tokio::time::pause();
    let store = store();
    let first = stored(&store, "bob", 1, true, None);
    stored(&store, "bob", 2, false, None);
    let mut t = start_tracker(store, 5, true);
    assert_eq!(t.pending().await, 1, "only the require-ack entry waits for an ack");
    t.addr.do_send(Fault);
    assert_eq!(t.pending().await, 1, "rebuilt again after the restart");
    let r = t.redeliver.next().await;
    assert_eq!((r.client_id.as_str(), r.seq), ("bob", 1), "a rebuilt entry is redelivered on its timer");
    assert!(t.ack(&first.id).await, "acks find rebuilt entries by message id");
    assert_eq!(t.receipt().await.2, ReceiptStatus::Acked);
}

#[actix::test]
async fn a_redelivery_nobody_takes_waits_for_the_next_delivery() {
    tokio::time::pause();
    let mut t = start_tracker(store(), 5, false);
    t.delivered(1).await;
    t.receipt().await;
    t.redeliver.next().await;
    // Offline: no timer until a session takes it again (the shard's feed reports Delivered).
    tokio::time::sleep(TIMEOUT * 8).await;
    t.pending().await;
    t.redeliver.quiet().await;
    t.addr.do_send(Delivered { client_id: "bob".into(), seq: 1 });
    t.redeliver.next().await;
}

#[actix::test]
async fn an_expired_message_settles_with_an_expired_receipt() {
    let mut t = start_tracker(store(), 5, true);
    let id = t.delivered(1).await;
    t.receipt().await;
    t.addr.do_send(Expired { client_id: "bob".into(), seq: 1, gone: true });
    assert_eq!(t.receipt().await, ("alice".into(), id.clone(), ReceiptStatus::Expired));
    assert_eq!(t.settled.next().await.seq, 1);
    assert!(!t.ack(&id).await, "nothing left to ack");
}
