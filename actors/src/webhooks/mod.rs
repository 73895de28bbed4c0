//! `Webhooks`: delivers broker events to registered HTTP endpoints, signed (see [`deliver`]).
//!
//! Owns: the registrations (loaded from the store's `webhooks` tree on start and restart), one
//! [`Endpoint`] per webhook (circuit breaker and figures, kept across restarts), and the failed
//! deliveries it keeps in the store (`webhook_failures`, bounded). Events come from the event bus
//! of the supervision tree ([`crate::events`]: room membership, proposals, restarts, dead letters)
//! and, only while some webhook wants `message`, from the router's [`Monitor`]. Every matching
//! event becomes one delivery future spawned on this actor's arbiter, so retries never block the
//! actor or another delivery; a delivery given up comes back as [`Finished`] and is kept.
//!
//! Sent by: the admin HTTP routes ([`crate::messages::webhooks`]). Supervised by the root
//! (permanent, not critical), on its own arbiter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use agent_bridge_protocol::Timestamp;
use parking_lot::Mutex;
use tracing::{info, warn};

pub mod deliver;

pub use crate::breaker::{BreakerConfig, Endpoint};
pub use deliver::{RetryConfig, SIGNATURE_HEADER};

use crate::events::{stream_of, BridgeEvent, EventFilter};
pub use crate::messages::webhooks::*;
use crate::router::{Monitor, Traffic};
use crate::store::{Records, Store};
use crate::supervisor::{guarded, supervisee, ChildHandle, Supervisee};
use deliver::{Job, Outcome};

/// Longest webhook URL.
pub const MAX_URL_CHARS: usize = 2048;

/// Settings of the webhooks actor.
#[derive(Debug, Clone)]
pub struct WebhooksConfig {
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
    /// Failed deliveries kept; the oldest beyond it are dropped.
    pub max_failures: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            retry: RetryConfig {
                base: Duration::from_secs(1),
                max_delay: Duration::from_secs(300),
                max_attempts: 5,
                timeout: Duration::from_secs(10),
            },
            breaker: BreakerConfig { threshold: 5, cooldown: Duration::from_secs(60) },
            max_failures: 1000,
        }
    }
}

/// A delivery ended. Sent by its own future to the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Finished {
    job: Job,
    outcome: Outcome,
}

/// The webhooks actor.
pub struct Webhooks {
    /// Supervision link (`webhooks`); its tree carries the event bus.
    child: ChildHandle,
    /// Registrations and failed deliveries.
    store: Store,
    config: WebhooksConfig,
    /// The router's tap of routed messages.
    monitor: Monitor,
    /// Shared by every delivery (connection pool); redirects are not followed.
    client: reqwest::Client,
    /// The registrations, in id order.
    hooks: Vec<WebhookRecord>,
    /// Per webhook id: breaker and figures.
    endpoints: HashMap<String, Arc<Mutex<Endpoint>>>,
    /// The subscription to the monitor, while some webhook wants `message`.
    traffic: Option<SpawnHandle>,
}

impl Webhooks {
    pub const NAME: &'static str = "webhooks";

    pub fn new(child: ChildHandle, store: Store, config: WebhooksConfig, monitor: Monitor) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("agent-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Webhooks { child, store, config, monitor, client, hooks: Vec::new(), endpoints: HashMap::new(), traffic: None }
    }

    fn endpoint(&mut self, id: &str) -> Arc<Mutex<Endpoint>> {
        let breaker = self.config.breaker;
        Arc::clone(self.endpoints.entry(id.to_owned()).or_insert_with(|| Arc::new(Mutex::new(Endpoint::new(breaker)))))
    }

    /// Subscribes to the router's monitor while a webhook wants `message`, and only then (the
    /// monitor builds its summaries only while somebody watches).
    fn watch_traffic(&mut self, ctx: &mut Context<Self>) {
        let wanted = self.hooks.iter().any(|h| h.filter.wants_messages());
        self.traffic = self.monitor.watch(Webhooks::NAME, wanted, self.traffic.take(), ctx);
    }

    fn view(&self, h: &WebhookRecord) -> WebhookView {
        let now = Instant::now();
        let (delivered, failed, breaker, consecutive_failures, last_error) = match self.endpoints.get(&h.id) {
            Some(e) => {
                let e = e.lock();
                (e.delivered, e.failed, e.state_name(now), e.consecutive_failures(), e.last_error.clone())
            }
            None => (0, 0, "closed", 0, None),
        };
        WebhookView {
            id: h.id.clone(),
            url: h.url.clone(),
            events: h.filter.events.clone(),
            format: h.format,
            client_id: h.filter.client_id.clone(),
            room: h.filter.room.clone(),
            created_at: Timestamp(h.created_at_ms).to_rfc3339(),
            delivered,
            failed,
            breaker,
            consecutive_failures,
            last_error,
        }
    }

    fn register(&mut self, new: NewWebhook, ctx: &mut Context<Self>) -> Result<Registered, WebhookError> {
        let record = validate(new)?;
        self.store.put_record(Records::Webhooks, &record.id, &record)?;
        let _ = self.store.commit();
        info!(actor = Webhooks::NAME, webhook_id = %record.id, url = %record.url, events = ?record.filter.events, "webhook registered");
        self.endpoint(&record.id);
        let secret = record.secret.clone();
        let webhook = self.view(&record);
        self.hooks.push(record);
        self.watch_traffic(ctx);
        Ok(Registered { webhook, secret })
    }

    fn remove(&mut self, id: &str, ctx: &mut Context<Self>) -> Result<(), WebhookError> {
        if !self.store.remove_record(Records::Webhooks, id)? {
            return Err(WebhookError::UnknownWebhook(id.to_owned()));
        }
        let _ = self.store.commit();
        self.hooks.retain(|h| h.id != id);
        self.endpoints.remove(id);
        self.watch_traffic(ctx);
        info!(actor = Webhooks::NAME, webhook_id = %id, "webhook removed");
        Ok(())
    }

    fn resend(&mut self, id: &str, ctx: &mut Context<Self>) -> Result<(), WebhookError> {
        let failure: FailedDelivery = self.store.record(Records::WebhookFailures, id)?.ok_or_else(|| WebhookError::UnknownFailure(id.to_owned()))?;
        let hook = self.hooks.iter().find(|h| h.id == failure.webhook_id).ok_or_else(|| WebhookError::UnknownWebhook(failure.webhook_id.clone()))?;
        let job = Job { id: failure.id, webhook_id: hook.id.clone(), url: hook.url.clone(), secret: hook.secret.clone(), event: failure.event, body: failure.body };
        self.store.remove_record(Records::WebhookFailures, id)?;
        self.spawn(job, ctx);
        Ok(())
    }

    /// Every webhook whose subscription matches gets its own delivery.
    fn dispatch(&mut self, event: &BridgeEvent, ctx: &mut Context<Self>) {
        let jobs: Vec<Job> = self
            .hooks
            .iter()
            .filter(|h| h.filter.matches(event))
            .map(|h| Job {
                id: uuid::Uuid::now_v7().to_string(),
                webhook_id: h.id.clone(),
                url: h.url.clone(),
                secret: h.secret.clone(),
                event: event.kind,
                body: deliver::body(h.format, event),
            })
            .collect();
        for job in jobs {
            self.spawn(job, ctx);
        }
    }

    fn spawn(&mut self, job: Job, ctx: &mut Context<Self>) {
        let (client, endpoint, retry, me) = (self.client.clone(), self.endpoint(&job.webhook_id), self.config.retry, ctx.address());
        actix::spawn(async move {
            let outcome = deliver::deliver(client, &job, endpoint, retry).await;
            me.do_send(Finished { job, outcome });
        });
    }

    fn finished(&mut self, msg: Finished) -> Result<(), WebhookError> {
        let Finished { job, outcome: (attempts, error) } = msg;
        let Some(error) = error else { return Ok(()) };
        warn!(actor = Webhooks::NAME, webhook_id = %job.webhook_id, delivery = %job.id, attempts, error = %error, "webhook delivery failed");
        let failure = FailedDelivery {
            id: job.id,
            webhook_id: job.webhook_id,
            url: job.url,
            event: job.event,
            body: job.body,
            attempts,
            error,
            at_ms: Timestamp::now().millis(),
        };
        self.store.put_bounded(Records::WebhookFailures, &failure.id, &failure, self.config.max_failures)?;
        Ok(())
    }
}

/// Checks an operator's request and makes the record (a secret generated when none is given).
fn validate(new: NewWebhook) -> Result<WebhookRecord, WebhookError> {
    let url = new.url.trim().to_owned();
    if url.chars().count() > MAX_URL_CHARS {
        return Err(WebhookError::InvalidUrl(format!("longer than {MAX_URL_CHARS} characters")));
    }
    let parsed = reqwest::Url::parse(&url).map_err(|e| WebhookError::InvalidUrl(format!("{url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().map_or(true, str::is_empty) {
        return Err(WebhookError::InvalidUrl(format!("{url:?}: only http:// and https:// URLs with a host")));
    }
    let filter = EventFilter::new(&new.events, new.client_id, new.room)?;
    let format = match new.format.as_deref() {
        None => WebhookFormat::Json,
        Some(f) => serde_json::from_value(serde_json::Value::from(f))
            .map_err(|_| WebhookError::Invalid(format!("unknown format {f:?}: use json, slack or discord")))?,
    };
    let secret = match new.secret {
        Some(s) if (16..=256).contains(&s.len()) => s,
        Some(_) => return Err(WebhookError::Invalid("secret must be 16 to 256 bytes".into())),
        None => generate_secret()?,
    };
    Ok(WebhookRecord { id: format!("wh_{}", uuid::Uuid::now_v7().simple()), url, filter, format, secret, created_at_ms: Timestamp::now().millis() })
}

/// `whsec_` and 32 random bytes in hex.
fn generate_secret() -> Result<String, WebhookError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| WebhookError::Invalid(format!("no randomness for a secret: {e}")))?;
    Ok(format!("whsec_{}", hex::encode(bytes)))
}

impl Actor for Webhooks {
    type Context = Context<Self>;

    /// Loads the registrations and subscribes (again, after a restart: the streams went with the
    /// old context).
    fn started(&mut self, ctx: &mut Context<Self>) {
        match self.store.records::<WebhookRecord>(Records::Webhooks, "", usize::MAX) {
            Ok(hooks) => self.hooks = hooks,
            Err(e) => warn!(actor = Webhooks::NAME, error = %e, "loading webhooks; none are active"),
        }
        let ids: Vec<String> = self.hooks.iter().map(|h| h.id.clone()).collect();
        for id in ids {
            self.endpoint(&id);
        }
        ctx.add_stream(stream_of(Webhooks::NAME, self.child.events().subscribe()));
        self.traffic = None;
        self.watch_traffic(ctx);
    }
}

impl Supervised for Webhooks {}

supervisee!(Webhooks, WebhookError, child);

impl StreamHandler<Arc<BridgeEvent>> for Webhooks {
    fn handle(&mut self, event: Arc<BridgeEvent>, ctx: &mut Context<Self>) {
        let _ = self.guard(ctx, |w, ctx| {
            w.dispatch(&event, ctx);
            Ok(())
        });
    }

    /// The bus lives as long as the tree: nothing to do (the default would stop the actor).
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl StreamHandler<Arc<Traffic>> for Webhooks {
    fn handle(&mut self, traffic: Arc<Traffic>, ctx: &mut Context<Self>) {
        let _ = self.guard(ctx, |w, ctx| {
            w.dispatch(&traffic.event(), ctx);
            Ok(())
        });
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

guarded!(Webhooks, Register, |w, msg, ctx| w.register(msg.0, ctx));
guarded!(Webhooks, ListWebhooks, |w, _msg, _| Ok(w.hooks.iter().map(|h| w.view(h)).collect()));
guarded!(Webhooks, RemoveWebhook, |w, msg, ctx| w.remove(&msg.0, ctx));
guarded!(Webhooks, ListFailures, |w, msg, _| Ok(w.store.records(Records::WebhookFailures, "", msg.0)?));
guarded!(Webhooks, Resend, |w, msg, ctx| w.resend(&msg.0, ctx));
guarded!(Webhooks, Finished => (), |w, msg, _| w.finished(msg)?);

#[cfg(test)]
mod tests {
    use super::*;

    fn new(url: &str, events: &[&str]) -> NewWebhook {
        NewWebhook { url: url.into(), events: events.iter().map(|e| e.to_string()).collect(), format: None, secret: None, client_id: None, room: None }
    }

    #[test]
    fn validation_has_codes() {
        let code = |n: NewWebhook| validate(n).err().map(|e| e.code());
        assert_eq!(code(new("ftp://x", &["message"])), Some("invalid_url"));
        assert_eq!(code(new("not a url", &["message"])), Some("invalid_url"));
        assert_eq!(code(new(&format!("http://x/{}", "a".repeat(3000)), &["message"])), Some("invalid_url"));
        assert_eq!(code(new("http://x", &["nope"])), Some("unknown_event"));
        assert_eq!(code(new("http://x", &[])), Some("bad_request"));
        let ok = validate(new("https://hooks.example/x", &["message", "dead_letter", "message"])).expect("valid");
        assert_eq!(ok.filter.events, [crate::events::EventKind::Message, crate::events::EventKind::DeadLetter]);
        assert!(ok.secret.starts_with("whsec_") && ok.secret.len() == 70);
    }
}
