//! Rate and connection limits: token buckets (per key, per connection), the failed-authentication
//! limiter per remote address, connection counting with RAII guards, and the registry of live
//! sessions per API key that revocation closes.
//!
//! Everything here is in memory: limits restart empty with the process, which is what a limiter
//! against bursts needs (the hourly key limit is a token bucket, not a persisted counter).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use parking_lot::Mutex;

use super::permissions::AuthError;

/// A token bucket: `capacity` tokens, refilled at `rate` tokens per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` must be positive; `capacity` is at least 1.
    pub fn new(rate_per_s: f64, capacity: f64) -> Self {
        let capacity = capacity.max(1.0);
        TokenBucket { capacity, rate: rate_per_s.max(f64::MIN_POSITIVE), tokens: capacity, last: Instant::now() }
    }

    /// `per_hour` requests per hour with bursts of `burst`.
    pub fn per_hour(per_hour: u64, burst: u64) -> Self {
        TokenBucket::new(per_hour as f64 / 3600.0, burst as f64)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
    }

    /// Takes one token, or says how many whole seconds until one is available (at least 1).
    pub fn try_take(&mut self) -> Result<(), u64> {
        self.try_take_at(Instant::now())
    }

    /// [`TokenBucket::try_take`] at a given instant (for tests with an injected clock).
    pub fn try_take_at(&mut self, now: Instant) -> Result<(), u64> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }

    /// True when no token has been taken for long enough that the bucket is full again.
    fn is_full_at(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity
    }
}

/// Limits failed authentication attempts per remote address, against key guessing.
///
/// Only failures take a token; while an address has none left, every attempt from it is refused
/// with `rate_limited` before the credentials are even looked at.
pub struct AttemptLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

/// Beyond this many tracked addresses, full buckets are dropped (they carry no state).
const MAX_TRACKED: usize = 10_000;

impl AttemptLimiter {
    /// `per_minute` failures per minute per address (0 turns the limiter off).
    pub fn new(per_minute: u32) -> Self {
        AttemptLimiter { per_minute, buckets: Mutex::new(HashMap::new()) }
    }

    fn bucket(&self) -> TokenBucket {
        TokenBucket::new(f64::from(self.per_minute) / 60.0, f64::from(self.per_minute))
    }

    /// Refuses an address that has used up its failures.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), AuthError> {
        let (Some(ip), true) = (ip, self.per_minute > 0) else { return Ok(()) };
        let mut buckets = self.buckets.lock();
        let Some(b) = buckets.get_mut(&ip) else { return Ok(()) };
        let now = Instant::now();
        b.refill(now);
        if b.tokens >= 1.0 {
            return Ok(());
        }
        let retry_after = ((1.0 - b.tokens) / b.rate).ceil().max(1.0) as u64;
        Err(AuthError::RateLimited {
            retry_after,
            what: "too many failed authentication attempts from this address".into(),
        })
    }

    /// Records one failed attempt.
    pub fn failed(&self, ip: Option<IpAddr>) {
        let (Some(ip), true) = (ip, self.per_minute > 0) else { return };
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&ip) {
            let now = Instant::now();
            buckets.retain(|_, b| !b.is_full_at(now));
            if buckets.len() >= MAX_TRACKED {
                // Every tracked address is mid-attack: forget the oldest half rather than grow.
                let mut by_age: Vec<(IpAddr, Instant)> = buckets.iter().map(|(k, b)| (*k, b.last)).collect();
                by_age.sort_by_key(|(_, t)| *t);
                for (k, _) in by_age.iter().take(MAX_TRACKED / 2) {
                    buckets.remove(k);
                }
            }
        }
        let fresh = self.bucket();
        let _ = buckets.entry(ip).or_insert(fresh).try_take();
    }
}

/// Connection counts, total and per client id.
pub struct ConnectionLimits {
    max_total: usize,
    max_per_client: usize,
    counts: Mutex<(usize, HashMap<String, usize>)>,
}

/// Holds one connection slot; dropping it (when the session actor is dropped) frees the slot.
pub struct ConnectionGuard {
    limits: Arc<ConnectionLimits>,
    client_id: String,
}

impl std::fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionGuard").field("client_id", &self.client_id).finish()
    }
}

impl ConnectionLimits {
    /// 0 means unlimited for either bound.
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits { max_total, max_per_client, counts: Mutex::new((0, HashMap::new())) })
    }

    /// Takes a slot for `client_id`, or explains which limit is reached.
    pub fn acquire(self: &Arc<Self>, client_id: &str) -> Result<ConnectionGuard, AuthError> {
        let mut counts = self.counts.lock();
        let (total, per_client) = &mut *counts;
        if self.max_total > 0 && *total >= self.max_total {
            return Err(AuthError::TooManyConnections(format!(
                "the server has reached its limit of {} connections; try again later",
                self.max_total
            )));
        }
        let n = per_client.entry(client_id.to_owned()).or_insert(0);
        if self.max_per_client > 0 && *n >= self.max_per_client {
            return Err(AuthError::TooManyConnections(format!(
                "client id {client_id:?} already has {} open connections (the limit per client id)",
                self.max_per_client
            )));
        }
        *n += 1;
        *total += 1;
        Ok(ConnectionGuard { limits: Arc::clone(self), client_id: client_id.to_owned() })
    }

    /// Open connections in all.
    pub fn total(&self) -> usize {
        self.counts.lock().0
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut counts = self.limits.counts.lock();
        let (total, per_client) = &mut *counts;
        *total = total.saturating_sub(1);
        if let Some(n) = per_client.get_mut(&self.client_id) {
            *n -= 1;
            if *n == 0 {
                per_client.remove(&self.client_id);
            }
        }
    }
}

/// Sent to a live session whose credentials were revoked or expired: it writes an `error` frame
/// (`unauthorized`) and closes with code 1008 (policy violation).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct CredentialsRevoked {
    pub reason: String,
}

/// Live sessions per API key id, so that revoking a key closes them at once.
#[derive(Default)]
pub struct Revocations {
    inner: Mutex<RevocationState>,
}

#[derive(Default)]
struct RevocationState {
    sessions: HashMap<String, HashMap<String, Recipient<CredentialsRevoked>>>,
    revoked: std::collections::HashSet<String>,
}

impl Revocations {
    /// Registers a session of `key_id`. False when the key was revoked meanwhile (between the
    /// authentication of the upgrade request and now): the session must close at once.
    pub fn register(&self, key_id: &str, session_id: &str, to: Recipient<CredentialsRevoked>) -> bool {
        let mut s = self.inner.lock();
        if s.revoked.contains(key_id) {
            return false;
        }
        s.sessions.entry(key_id.to_owned()).or_default().insert(session_id.to_owned(), to);
        true
    }

    /// Forgets a closed session.
    pub fn deregister(&self, key_id: &str, session_id: &str) {
        let mut s = self.inner.lock();
        if let Some(m) = s.sessions.get_mut(key_id) {
            m.remove(session_id);
            if m.is_empty() {
                s.sessions.remove(key_id);
            }
        }
    }

    /// Marks the key revoked and tells each of its sessions to close; returns how many there were.
    pub fn revoke(&self, key_id: &str, reason: &str) -> usize {
        let sessions = {
            let mut s = self.inner.lock();
            s.revoked.insert(key_id.to_owned());
            s.sessions.remove(key_id).unwrap_or_default()
        };
        for to in sessions.values() {
            to.do_send(CredentialsRevoked { reason: reason.to_owned() });
        }
        sessions.len()
    }

    /// Live sessions of a key.
    pub fn count(&self, key_id: &str) -> usize {
        self.inner.lock().sessions.get(key_id).map_or(0, HashMap::len)
    }
}

/// How long until `at_ms` (ms since the epoch), zero if past.
pub fn until_ms(at_ms: i64) -> Duration {
    let now = agent_bridge_protocol::Timestamp::now().millis();
    Duration::from_millis(u64::try_from(at_ms.saturating_sub(now)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bursts_then_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3.0);
        for _ in 0..3 {
            assert_eq!(b.try_take_at(t0), Ok(()));
        }
        assert_eq!(b.try_take_at(t0), Err(1));
        assert_eq!(b.try_take_at(t0 + Duration::from_millis(500)), Ok(()), "2/s refills one token in 0.5 s");
        assert!(b.try_take_at(t0 + Duration::from_millis(500)).is_err());
        let mut hourly = TokenBucket::per_hour(60, 1);
        assert_eq!(hourly.try_take_at(t0), Ok(()));
        assert_eq!(hourly.try_take_at(t0), Err(60), "one per minute: retry after 60 s");
    }

    #[test]
    fn attempt_limiter_blocks_after_failures() {
        let l = AttemptLimiter::new(2);
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        let other = Some(IpAddr::from([10, 0, 0, 2]));
        assert!(l.check(ip).is_ok());
        l.failed(ip);
        assert!(l.check(ip).is_ok());
        l.failed(ip);
        let err = l.check(ip).unwrap_err();
        assert_eq!(err.code(), "rate_limited");
        assert!(err.retry_after().is_some_and(|s| s >= 1));
        assert!(l.check(other).is_ok(), "other addresses are not affected");
        assert!(AttemptLimiter::new(0).check(ip).is_ok());
    }

    #[test]
    fn connection_limits_total_and_per_client() {
        let limits = ConnectionLimits::new(3, 2);
        let a1 = limits.acquire("a").expect("a1");
        let _a2 = limits.acquire("a").expect("a2");
        assert_eq!(limits.acquire("a").unwrap_err().code(), "too_many_connections");
        let _b = limits.acquire("b").expect("b");
        assert!(limits.acquire("c").unwrap_err().to_string().contains("limit of 3"));
        drop(a1);
        assert_eq!(limits.total(), 2);
        let _a3 = limits.acquire("a").expect("a slot is free again");
    }
}
