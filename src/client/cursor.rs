//! Where to resume a stream after a reconnect, and which deliveries were already seen.
//!
//! # The resume point
//! The broker numbers every message of an inbox (and of a room) with a `seq`, and `?since=N` replays
//! everything stored with `seq > N`, then the queue of messages not yet delivered. Messages do not
//! arrive in `seq` order: the queue is delivered by priority, and a type filter skips some seqs.
//! So the resume point is not the highest seq seen but the **highest seq N such that every seq up to
//! N has been received** — a low watermark. Resuming there can repeat messages above it (they are
//! dropped by [`Seen`]), never skip one.
//!
//! A session started without `since` begins with the queue, whose oldest entries may be far above
//! seqs that earlier sessions already received; the watermark then starts just below the first seq
//! received. Anything older either went to an earlier session or is still queued, and the broker
//! delivers the queue after every replay.
//!
//! Gaps that never fill (a message filtered out by type, expired, or `persist: false` traffic that
//! shares a seq) would pin the watermark; after [`MAX_GAP_ENTRIES`] seqs wait above a gap, the oldest
//! gap is given up and the watermark moves past it.

use std::collections::{BTreeSet, HashMap, VecDeque};

/// Seqs remembered above the lowest gap before that gap is given up.
pub const MAX_GAP_ENTRIES: usize = 4096;

/// Deliveries remembered for duplicate detection.
pub const SEEN_CAPACITY: usize = 16_384;

/// The low watermark of one stream (an inbox or a room).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Every seq `<= floor` has been received (or was given up as a gap).
    floor: Option<u64>,
    /// Seqs received above `floor + 1`.
    above: BTreeSet<u64>,
}

impl Cursor {
    /// A cursor resuming after `since` (`None`: nothing known yet).
    pub fn new(since: Option<u64>) -> Self {
        Cursor { floor: since, above: BTreeSet::new() }
    }

    /// The `since` to reconnect with; `None` until anything is known.
    pub fn resume_point(&self) -> Option<u64> {
        self.floor
    }

    /// The highest seq received so far (not a safe resume point).
    pub fn highest(&self) -> Option<u64> {
        self.above.last().copied().or(self.floor)
    }

    /// Records a received seq; returns true when the resume point moved.
    pub fn observe(&mut self, seq: u64) -> bool {
        let before = self.floor;
        let floor = *self.floor.get_or_insert(seq.saturating_sub(1));
        if seq <= floor {
            return self.floor != before;
        }
        self.above.insert(seq);
        self.settle();
        if self.above.len() > MAX_GAP_ENTRIES {
            if let Some(first) = self.above.first().copied() {
                self.floor = Some(first - 1);
                self.settle();
            }
        }
        self.floor != before
    }

    /// Moves the floor up over every contiguous seq.
    fn settle(&mut self) {
        let Some(mut floor) = self.floor else { return };
        while self.above.first() == Some(&(floor + 1)) {
            self.above.pop_first();
            floor += 1;
        }
        self.floor = Some(floor);
    }
}

/// What [`Seen::check`] knows about a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not seen before.
    New,
    /// Seen before and not acknowledged.
    Again,
    /// Seen before and acknowledged by this client: drop it and ack again (the first ack was lost).
    Acked,
}

/// A bounded memory of recent message ids and whether they were acked.
#[derive(Debug, Default)]
pub struct SeenIds {
    acked: HashMap<String, bool>,
    order: VecDeque<String>,
}

impl SeenIds {
    /// Records `id` and says whether it was seen (and acked) before.
    pub fn check(&mut self, id: &str) -> Seen {
        match self.acked.get(id) {
            Some(true) => Seen::Acked,
            Some(false) => Seen::Again,
            None => {
                if self.order.len() >= SEEN_CAPACITY {
                    if let Some(old) = self.order.pop_front() {
                        self.acked.remove(&old);
                    }
                }
                self.acked.insert(id.to_owned(), false);
                self.order.push_back(id.to_owned());
                Seen::New
            }
        }
    }

    /// Marks `id` as acknowledged (remembered even if it was never delivered here).
    pub fn acked(&mut self, id: &str) {
        if let Some(flag) = self.acked.get_mut(id) {
            *flag = true;
        } else {
            self.check(id);
            self.acked.insert(id.to_owned(), true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_waits_for_gaps() {
        let mut c = Cursor::new(Some(0));
        assert!(c.observe(1));
        assert!(!c.observe(3), "2 is missing");
        assert_eq!(c.resume_point(), Some(1));
        assert_eq!(c.highest(), Some(3));
        assert!(c.observe(2));
        assert_eq!(c.resume_point(), Some(3));
        assert!(!c.observe(2), "a repeat changes nothing");
        assert_eq!(c.resume_point(), Some(3));
    }

    #[test]
    fn priority_order_keeps_the_watermark_low() {
        // The queue delivers high priority first: 9, then 7 and 8.
        let mut c = Cursor::new(Some(6));
        c.observe(9);
        assert_eq!(c.resume_point(), Some(6));
        c.observe(7);
        c.observe(8);
        assert_eq!(c.resume_point(), Some(9));
    }

    #[test]
    fn an_unknown_start_begins_below_the_first_seq() {
        let mut c = Cursor::new(None);
        assert_eq!(c.resume_point(), None);
        assert!(c.observe(42));
        assert_eq!(c.resume_point(), Some(42));
        c.observe(44);
        assert_eq!(c.resume_point(), Some(42));
    }

    #[test]
    fn a_gap_that_never_fills_is_given_up() {
        let mut c = Cursor::new(Some(0));
        for seq in 2..=(MAX_GAP_ENTRIES as u64 + 2) {
            c.observe(seq);
        }
        assert_eq!(c.resume_point(), Some(MAX_GAP_ENTRIES as u64 + 2), "seq 1 was given up");
    }

    #[test]
    fn seen_ids_remember_acks_and_forget_the_oldest() {
        let mut s = SeenIds::default();
        assert_eq!(s.check("a"), Seen::New);
        assert_eq!(s.check("a"), Seen::Again);
        s.acked("a");
        assert_eq!(s.check("a"), Seen::Acked);
        s.acked("never-delivered");
        assert_eq!(s.check("never-delivered"), Seen::Acked);
        for i in 0..SEEN_CAPACITY {
            s.check(&format!("id-{i}"));
        }
        assert_eq!(s.check("a"), Seen::New, "the oldest id is forgotten");
    }
}
