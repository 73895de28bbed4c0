//! How a [`Client`](super::Client) connects: address, identity, resume point, timeouts and backoff.

use std::time::Duration;

use agent_bridge_protocol::ids::validate_client_id;

use super::url::BrokerUrl;
use super::ClientError;

/// The default broker address (PROTOCOL.md section 6).
pub const DEFAULT_URL: &str = "ws://127.0.0.1:5001";

/// Exponential backoff between reconnect attempts, with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Growth per failed attempt.
    pub factor: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(10), factor: 2.0 }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (0-based), jittered to 50–100 % so that many clients
    /// dropped by one broker restart do not reconnect in lock-step.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self.factor.max(1.0).powi(i32::try_from(attempt.min(64)).unwrap_or(64));
        let base = self.initial.as_secs_f64() * exp;
        let capped = base.min(self.max.as_secs_f64());
        Duration::from_secs_f64(capped * (0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
    }
}

/// Everything a client needs to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The broker.
    pub url: BrokerUrl,
    /// This client's id (the inbox it reads).
    pub client_id: String,
    /// API key or JWT: sent as `Authorization: Bearer` and as `?token=`.
    pub token: Option<String>,
    /// Resume the inbox after this seq on the first connection (later ones use the watermark).
    pub since: Option<u64>,
    /// Only these message types are delivered (empty: all), as `?types=`.
    pub types: Vec<String>,
    /// Acknowledge `requires_ack` messages as soon as they are handed to the application.
    pub auto_ack: bool,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// Bound on opening a connection and receiving `connection_confirmed`.
    pub connect_timeout: Duration,
    /// Bound on waiting for `sent` and `result`, including time spent reconnecting.
    pub reply_timeout: Duration,
}

impl ClientConfig {
    /// A configuration with defaults for everything but the address and the id.
    pub fn new(url: &str, client_id: &str) -> Result<Self, ClientError> {
        validate_client_id(client_id)?;
        Ok(ClientConfig {
            url: BrokerUrl::parse(url)?,
            client_id: client_id.to_owned(),
            token: None,
            since: None,
            types: Vec::new(),
            auto_ack: false,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(30),
        })
    }

    /// Sets the token.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// Sets the first resume point.
    pub fn since(mut self, since: Option<u64>) -> Self {
        self.since = since;
        self
    }

    /// Sets the type filter.
    pub fn types(mut self, types: Vec<String>) -> Self {
        self.types = types;
        self
    }

    /// Turns automatic acknowledgement on or off.
    pub fn auto_ack(mut self, on: bool) -> Self {
        self.auto_ack = on;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2), factor: 2.0 };
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(800));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(2));
        assert_eq!(b.delay(30, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_secs(2));
    }

    #[test]
    fn config_validates_id_and_url() {
        assert!(ClientConfig::new(DEFAULT_URL, "code").is_ok());
        assert!(matches!(ClientConfig::new(DEFAULT_URL, "all"), Err(ClientError::Invalid(_))));
        assert!(matches!(ClientConfig::new("nope", "code"), Err(ClientError::InvalidUrl { .. })));
        let c = ClientConfig::new(DEFAULT_URL, "code").expect("valid").token(Some(String::new()));
        assert_eq!(c.token, None, "an empty token means none");
    }
}
