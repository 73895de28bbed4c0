//! One delivery: the body in the webhook's format, the signature, and the attempts with
//! exponential backoff and jitter. Each delivery is its own future (spawned by the actor on its
//! arbiter), so a slow or dead endpoint's retries never hold up another delivery.
//!
//! Signature: `X-Bridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with
//! the webhook's secret, computed again for every attempt (a fresh `t`). A receiver recomputes it
//! over the raw body, compares in constant time and rejects `|now - t| > 300 s` (replay).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_bridge_protocol::Timestamp;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::json;
use sha2::Sha256;

use crate::breaker::Endpoint;
use crate::events::{BridgeEvent, EventKind};
use crate::messages::webhooks::WebhookFormat;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-bridge-signature";
/// Characters of a Slack or Discord text (Discord takes at most 2000).
const TEXT_CHARS: usize = 1900;

/// Retry settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryConfig {
    /// The wait after the first failed attempt (before jitter); doubled after each further one.
    pub base: Duration,
    /// The longest wait between attempts.
    pub max_delay: Duration,
    /// Attempts of one delivery, the first included.
    pub max_attempts: u32,
    /// Time one attempt may take.
    pub timeout: Duration,
}

impl RetryConfig {
    /// The wait after the `attempt`-th failed attempt: `d = base * 2^(attempt-1)` (capped), of
    /// which a random half is taken off ("equal jitter": between `d/2` and `d`), so waits spread
    /// out across deliveries yet never shrink from one attempt to the next.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        let d = self.base.saturating_mul(factor).min(self.max_delay);
        d / 2 + (d / 2).mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// A random fraction in `[0, 1)`.
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::getrandom(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

/// `t=<t>,v1=<hex hmac>` over `"<t>.<body>"`.
pub fn sign(secret: &str, t: i64, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC takes a key of any length")
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The body of `event` in `format`.
pub fn body(format: WebhookFormat, event: &BridgeEvent) -> String {
    let value = match format {
        WebhookFormat::Json => json!({ "event": event.kind, "at": event.at.to_rfc3339(), "data": event.data }),
        WebhookFormat::Slack => json!({ "text": event.summary(TEXT_CHARS) }),
        WebhookFormat::Discord => json!({ "content": event.summary(TEXT_CHARS) }),
    };
    value.to_string()
}


/// What one delivery sends where.
#[derive(Debug, Clone)]
pub struct Job {
    /// The delivery's id (`X-Bridge-Delivery`), kept when it is re-sent.
    pub id: String,
    pub webhook_id: String,
    pub url: String,
    pub secret: String,
    pub event: EventKind,
    pub body: String,
}

/// How a delivery ended: the attempts made, and the last error if it was given up.
pub type Outcome = (u32, Option<String>);

/// Sends `job`, retrying until `retry.max_attempts` or until the endpoint's breaker refuses.
pub async fn deliver(client: reqwest::Client, job: &Job, endpoint: Arc<Mutex<Endpoint>>, retry: RetryConfig) -> Outcome {
    let mut error = String::new();
    let mut attempts = 0;
    while attempts < retry.max_attempts.max(1) {
        if !endpoint.lock().allow(Instant::now()) {
            error = if attempts == 0 { "circuit_open".to_owned() } else { format!("circuit_open after: {error}") };
            break;
        }
        attempts += 1;
        match attempt(&client, job, attempts, retry.timeout).await {
            Ok(()) => {
                let mut e = endpoint.lock();
                e.succeeded();
                e.delivered += 1;
                return (attempts, None);
            }
            Err(why) => {
                endpoint.lock().attempt_failed(Instant::now(), &why);
                error = why;
            }
        }
        if attempts < retry.max_attempts {
            tokio::time::sleep(retry.backoff(attempts, jitter())).await;
        }
    }
    endpoint.lock().failed += 1;
    (attempts, Some(error))
}

/// One signed POST; `Err` unless the answer is 2xx.
async fn attempt(client: &reqwest::Client, job: &Job, n: u32, timeout: Duration) -> Result<(), String> {
    let t = Timestamp::now().millis().div_euclid(1000);
    let response = client
        .post(&job.url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, sign(&job.secret, t, &job.body))
        .header("x-bridge-event", job.event.as_str())
        .header("x-bridge-delivery", &job.id)
        .header("x-bridge-attempt", n.to_string())
        .body(job.body.clone())
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn backoff_grows_with_equal_jitter_and_is_capped() {
        let r = RetryConfig { base: Duration::from_millis(100), max_delay: Duration::from_secs(1), max_attempts: 5, timeout: Duration::from_secs(1) };
        assert_eq!(r.backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(r.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(r.backoff(2, 0.0), Duration::from_millis(100), "the next wait starts where the last could end");
        assert_eq!(r.backoff(3, 0.5), Duration::from_millis(300));
        assert_eq!(r.backoff(30, 1.0), Duration::from_secs(1));
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn signature_is_hmac_sha256_of_t_dot_body() {
        // Computed independently: python3 -c 'import hmac, hashlib; print(hmac.new(b"key", b"1.{}", hashlib.sha256).hexdigest())'
        let sig = sign("key", 1, "{}");
        assert_eq!(sig, "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224");
        assert_ne!(sign("key", 2, "{}"), sig, "the timestamp is signed");
    }

    #[test]
    fn formats() {
        let ev = BridgeEvent::now(EventKind::MemberJoined, Some("alice".into()), Some("lab".into()), json!({"client_id": "alice"}));
        let generic: Value = serde_json::from_str(&body(WebhookFormat::Json, &ev)).expect("json");
        assert_eq!((generic["event"].as_str(), generic["data"]["client_id"].as_str()), (Some("member_joined"), Some("alice")));
        let slack: Value = serde_json::from_str(&body(WebhookFormat::Slack, &ev)).expect("json");
        assert_eq!(slack["text"], "agent-bridge: alice joined lab");
        let discord: Value = serde_json::from_str(&body(WebhookFormat::Discord, &ev)).expect("json");
        assert_eq!(discord["content"], slack["text"]);
    }
}
