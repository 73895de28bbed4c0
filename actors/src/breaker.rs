//! [`Endpoint`]: a circuit breaker with its figures, for whatever calls out and may fail: a
//! webhook's endpoint (shared by the `webhooks` actor, which lists them, and its delivery futures,
//! which ask it before each attempt and report to it) and a managed CLI agent (`managed`). A leaf.
//!
//! The breaker: `closed` lets every attempt through and counts failures in a row; at the threshold
//! it opens: attempts are refused, without a request, until the cool-down has passed; then it is
//! `half_open` and lets exactly one trial through: success closes it, failure opens it again for
//! another cool-down.

use std::time::{Duration, Instant};

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    /// `trial`: the one attempt allowed is under way.
    HalfOpen { trial: bool },
}

/// The breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Failed attempts in a row that open the breaker.
    pub threshold: u32,
    /// How long it stays open before a trial.
    pub cooldown: Duration,
}

/// One endpoint's breaker and figures.
#[derive(Debug)]
pub struct Endpoint {
    config: BreakerConfig,
    state: State,
    consecutive_failures: u32,
    pub delivered: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

impl Endpoint {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Endpoint {
        Endpoint { config, state: State::Closed, consecutive_failures: 0, delivered: 0, failed: 0, last_error: None }
    }

    /// Whether an attempt may go out now (a half-open breaker lets one through).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { trial: true };
                true
            }
            State::Open { .. } | State::HalfOpen { trial: true } => false,
            State::HalfOpen { trial: false } => {
                self.state = State::HalfOpen { trial: true };
                true
            }
        }
    }

    /// An attempt got a 2xx answer.
    pub fn succeeded(&mut self) {
        self.state = State::Closed;
        self.consecutive_failures = 0;
        self.last_error = None;
    }

    /// An attempt failed with `error`.
    pub fn attempt_failed(&mut self, now: Instant, error: &str) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_error = Some(error.to_owned());
        let trip = match self.state {
            State::HalfOpen { .. } => true,
            State::Closed => self.consecutive_failures >= self.config.threshold,
            State::Open { .. } => false,
        };
        if trip {
            self.state = State::Open { until: now + self.config.cooldown };
        }
    }

    /// `closed`, `open` or `half_open` (an open breaker past its cool-down shows `half_open`).
    pub fn state_name(&self, now: Instant) -> &'static str {
        match self.state {
            State::Closed => "closed",
            State::Open { until } if now < until => "open",
            State::Open { .. } | State::HalfOpen { .. } => "half_open",
        }
    }

    /// Failed attempts in a row.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_at_the_threshold_then_half_opens_for_one_trial() {
        let config = BreakerConfig { threshold: 2, cooldown: Duration::from_secs(10) };
        let mut e = Endpoint::new(config);
        let t0 = Instant::now();
        assert!(e.allow(t0));
        e.attempt_failed(t0, "500");
        assert_eq!(e.state_name(t0), "closed");
        e.attempt_failed(t0, "500");
        assert_eq!(e.state_name(t0), "open");
        assert!(!e.allow(t0 + Duration::from_secs(5)), "open: refused");
        let later = t0 + Duration::from_secs(11);
        assert!(e.allow(later), "after the cool-down: one trial");
        assert!(!e.allow(later), "only one");
        e.attempt_failed(later, "500");
        assert_eq!(e.state_name(later), "open", "a failed trial opens it again");
        let again = later + Duration::from_secs(11);
        assert!(e.allow(again));
        e.succeeded();
        assert_eq!((e.state_name(again), e.consecutive_failures()), ("closed", 0));
        assert!(e.allow(again) && e.allow(again), "closed: everything goes");
    }
}
