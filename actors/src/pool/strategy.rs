//! How a pool chooses one member for a message: [`Strategy`] and [`Balancer::pick`].
//!
//! A [`Balancer`] holds the pool's healthy members with their statistics (in-flight count, moving
//! average latency, weight) and the strategy's state (the round-robin cursor, sticky bindings).

use std::collections::HashMap;

pub use crate::messages::Strategy;

/// The weight of the moving average: the newest sample counts for a fifth.
const EWMA_ALPHA: f64 = 0.2;

/// One healthy member of a pool and its statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The agent's client id.
    pub id: String,
    /// Its weight for [`Strategy::Weighted`] (at least 1).
    pub weight: u32,
    /// Messages sent to it and not yet acknowledged.
    pub in_flight: u32,
    /// Moving average of its ack/reply latency in milliseconds; `None` before the first sample.
    pub latency_ms: Option<f64>,
}

/// A pool's members and its strategy's state.
#[derive(Debug, Default)]
pub struct Balancer {
    /// The strategy in force.
    pub strategy: Strategy,
    members: Vec<Member>,
    cursor: usize,
    sticky: HashMap<String, String>,
}

impl Balancer {
    /// An empty pool with the given strategy.
    pub fn new(strategy: Strategy) -> Self {
        Balancer { strategy, ..Balancer::default() }
    }

    /// The members, in joining order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Adds a member (or updates its weight if it is already in).
    pub fn join(&mut self, id: &str, weight: u32) {
        let weight = weight.max(1);
        match self.members.iter_mut().find(|m| m.id == id) {
            Some(m) => m.weight = weight,
            None => self.members.push(Member { id: id.to_owned(), weight, in_flight: 0, latency_ms: None }),
        }
    }

    /// Removes a member (it went offline); its sticky keys are rebound on their next message.
    pub fn leave(&mut self, id: &str) {
        self.members.retain(|m| m.id != id);
        self.sticky.retain(|_, member| member != id);
    }

    /// Chooses the member for one message, counting it in flight; `None` if the pool is empty.
    pub fn pick(&mut self, key: Option<&str>) -> Option<String> {
        if self.members.is_empty() {
            return None;
        }
        let index = match self.strategy {
            Strategy::RoundRobin => self.next_in_turn(),
            Strategy::LeastLoaded => self.least_by(|m| m.in_flight as f64),
            Strategy::Fastest => self.least_by(|m| m.latency_ms.unwrap_or(0.0)),
            Strategy::Random => (random_u64() % self.members.len() as u64) as usize,
            Strategy::Weighted => self.weighted(),
            Strategy::Sticky => self.sticky(key),
        };
        let member = &mut self.members[index];
        member.in_flight += 1;
        Some(member.id.clone())
    }

    /// Records an ack (or reply) from `id` after `latency_ms`: one fewer in flight, a new sample.
    pub fn acked(&mut self, id: &str, latency_ms: f64) {
        if let Some(m) = self.members.iter_mut().find(|m| m.id == id) {
            m.in_flight = m.in_flight.saturating_sub(1);
            m.latency_ms = Some(match m.latency_ms {
                Some(avg) => avg + EWMA_ALPHA * (latency_ms - avg),
                None => latency_ms,
            });
        }
    }

    /// One fewer in flight for `id`, without a latency sample (a message that needs no ack, a
    /// missed ack, a dead letter).
    pub fn release(&mut self, id: &str) {
        if let Some(m) = self.members.iter_mut().find(|m| m.id == id) {
            m.in_flight = m.in_flight.saturating_sub(1);
        }
    }

    /// Whether `id` is a (healthy) member.
    pub fn contains(&self, id: &str) -> bool {
        self.members.iter().any(|m| m.id == id)
    }

    fn next_in_turn(&mut self) -> usize {
        let index = self.cursor % self.members.len();
        self.cursor = index + 1;
        index
    }

    /// The first member with the lowest `score` (ties go to the earliest joined).
    fn least_by(&self, score: impl Fn(&Member) -> f64) -> usize {
        let mut best = 0;
        for (i, m) in self.members.iter().enumerate() {
            if score(m) < score(&self.members[best]) {
                best = i;
            }
        }
        best
    }

    fn weighted(&self) -> usize {
        let total: u64 = self.members.iter().map(|m| u64::from(m.weight)).sum();
        let mut ticket = random_u64() % total;
        for (i, m) in self.members.iter().enumerate() {
            if ticket < u64::from(m.weight) {
                return i;
            }
            ticket -= u64::from(m.weight);
        }
        self.members.len() - 1
    }

    /// The member bound to `key`, binding it round-robin on first use; no key: round robin.
    fn sticky(&mut self, key: Option<&str>) -> usize {
        let Some(key) = key else { return self.next_in_turn() };
        if let Some(bound) = self.sticky.get(key) {
            if let Some(i) = self.members.iter().position(|m| &m.id == bound) {
                return i;
            }
        }
        let index = self.next_in_turn();
        self.sticky.insert(key.to_owned(), self.members[index].id.clone());
        index
    }
}

/// A random number from the operating system.
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).expect("the OS random source");
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(strategy: Strategy, weights: &[u32]) -> Balancer {
        let mut b = Balancer::new(strategy);
        for (i, w) in weights.iter().enumerate() {
            b.join(&format!("a{i}"), *w);
        }
        b
    }

    fn counts(b: &mut Balancer, n: usize, key: impl Fn(usize) -> Option<String>) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for i in 0..n {
            let id = b.pick(key(i).as_deref()).expect("a member");
            *counts.entry(id).or_default() += 1;
        }
        counts
    }

    #[test]
    fn round_robin_is_even() {
        let mut b = pool(Strategy::RoundRobin, &[1, 1, 1, 1]);
        let c = counts(&mut b, 1000, |_| None);
        assert!(c.values().all(|&n| n == 250), "{c:?}");
    }

    #[test]
    fn weighted_is_within_five_percent() {
        let mut b = pool(Strategy::Weighted, &[1, 3]);
        let c = counts(&mut b, 10_000, |_| None);
        let share = c["a1"] as f64 / 10_000.0;
        assert!((share - 0.75).abs() < 0.05, "{c:?}");
    }

    #[test]
    fn sticky_keeps_a_key_on_one_member_and_rebinds_after_leave() {
        let mut b = pool(Strategy::Sticky, &[1, 1, 1]);
        let c = counts(&mut b, 1000, |i| Some(format!("k{}", i % 10)));
        assert_eq!(c.values().sum::<usize>(), 1000);
        let first = b.pick(Some("k3")).unwrap();
        assert!((0..100).all(|_| b.pick(Some("k3")).as_deref() == Some(first.as_str())));
        b.leave(&first);
        let second = b.pick(Some("k3")).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn least_loaded_prefers_the_idle_member() {
        let mut b = pool(Strategy::LeastLoaded, &[1, 1]);
        for _ in 0..1000 {
            let id = b.pick(None).unwrap();
            if id == "a1" {
                b.acked("a1", 1.0);
            }
        }
        assert!(b.members()[0].in_flight <= 1, "{:?}", b.members());
    }

    #[test]
    fn fastest_prefers_the_fast_member() {
        let mut b = pool(Strategy::Fastest, &[1, 1]);
        b.acked("a0", 50.0);
        b.acked("a1", 5.0);
        let c = counts(&mut b, 1000, |_| None);
        assert_eq!(c.get("a1"), Some(&1000), "{c:?}");
    }

    #[test]
    fn random_uses_every_member_and_empty_pool_picks_none() {
        let mut b = pool(Strategy::Random, &[1, 1, 1]);
        assert_eq!(counts(&mut b, 1000, |_| None).len(), 3);
        assert_eq!(Balancer::new(Strategy::Random).pick(None), None);
    }
}
