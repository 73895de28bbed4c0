//! `Mailer`: e-mail notifications of broker events over SMTP (lettre, tokio, rustls), one mail
//! per event or one digest per subscription every `digest_seconds` (see [`compose`]).
//!
//! Owns: the subscriptions (loaded from the store's `email` tree on start and restart), their
//! figures, the digests being gathered (bounded: at most `digest_max_events` events each, the rest
//! counted), and the failed mails it keeps in the store (`email_failures`, bounded). Events come
//! from the event bus of the supervision tree ([`crate::events`]) and, only while a subscription
//! wants `message`, from the router's [`Monitor`] — the same sources and the same
//! [`EventFilter`] as the webhooks. Every mail is one future spawned on this actor's arbiter, so
//! a slow SMTP server never blocks the actor; its outcome comes back as [`Sent`].
//!
//! Sent by: the admin HTTP routes ([`crate::messages::email`]). Supervised by the root
//! (permanent, not critical), on its own arbiter. A restart sends the digests gathered so far.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use agent_bridge_protocol::Timestamp;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tracing::{info, warn};

pub mod compose;

pub use crate::messages::email::*;
use crate::events::{stream_of, BridgeEvent, EventFilter};
use crate::router::{Monitor, Traffic};
use crate::store::{Records, Store};
use crate::supervisor::{guarded, supervisee, ChildHandle, Supervisee};
pub use compose::{Security, SmtpConfig};

/// Recipients of one subscription.
pub const MAX_RECIPIENTS: usize = 50;
/// Subscriptions kept at once (each may hold a digest of `digest_max_events` events).
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// Longest digest window (a day).
pub const MAX_DIGEST_S: u64 = 86_400;
/// Mails being sent at once; one more is kept as a failure (`busy`), never queued without bound.
const MAX_IN_FLIGHT: usize = 256;

/// Settings of the e-mail actor.
#[derive(Debug, Clone)]
pub struct MailerConfig {
    /// The SMTP server; `None`: subscriptions are kept, and each mail fails as `not_configured`.
    pub smtp: Option<SmtpConfig>,
    /// Failed mails kept; the oldest beyond it are dropped.
    pub max_failures: usize,
    /// Events one digest holds; the rest are counted ("and N more").
    pub digest_max_events: usize,
}

impl Default for MailerConfig {
    fn default() -> Self {
        MailerConfig { smtp: None, max_failures: 1000, digest_max_events: 200 }
    }
}

/// A mail went out, or did not. Sent by its own future to the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Sent {
    subscription_id: String,
    to: Vec<String>,
    subject: String,
    events: usize,
    /// Whether it was handed to the transport (and counted in flight).
    spawned: bool,
    outcome: Result<(), String>,
}

/// A digest window ended. Sent by the window's timer.
#[derive(Message)]
#[rtype(result = "()")]
struct DigestDue(String);

/// What a subscription has sent.
#[derive(Debug, Default)]
struct Figures {
    sent: u64,
    failed: u64,
    last_error: Option<String>,
}

/// The events of a digest window.
#[derive(Debug, Default)]
struct Digest {
    events: Vec<Arc<BridgeEvent>>,
    dropped: usize,
}

/// The e-mail actor.
pub struct Mailer {
    /// Supervision link (`email`); its tree carries the event bus.
    child: ChildHandle,
    store: Store,
    config: MailerConfig,
    monitor: Monitor,
    /// Built from `config.smtp`, cloned into every mail's future.
    transport: Result<AsyncSmtpTransport<Tokio1Executor>, String>,
    /// The subscriptions, in id order.
    subs: Vec<EmailSubscription>,
    figures: HashMap<String, Figures>,
    /// Per subscription id: the digest being gathered (its timer runs while it is here).
    digests: HashMap<String, Digest>,
    in_flight: usize,
    /// The subscription to the monitor, while some subscription wants `message`.
    traffic: Option<SpawnHandle>,
}

impl Mailer {
    pub const NAME: &'static str = "email";

    pub fn new(child: ChildHandle, store: Store, config: MailerConfig, monitor: Monitor) -> Self {
        let transport = match &config.smtp {
            Some(smtp) => smtp.transport(),
            None => Err("not_configured: no smtp_url is set".into()),
        };
        Mailer { child, store, config, monitor, transport, subs: Vec::new(), figures: HashMap::new(), digests: HashMap::new(), in_flight: 0, traffic: None }
    }

    fn watch_traffic(&mut self, ctx: &mut Context<Self>) {
        let wanted = self.subs.iter().any(|s| s.filter.wants_messages());
        self.traffic = self.monitor.watch(Mailer::NAME, wanted, self.traffic.take(), ctx);
    }

    fn view(&self, s: &EmailSubscription) -> SubscriptionView {
        let f = self.figures.get(&s.id);
        SubscriptionView {
            id: s.id.clone(),
            to: s.to.clone(),
            filter: s.filter.clone(),
            digest_seconds: s.digest_seconds,
            created_at: Timestamp(s.created_at_ms).to_rfc3339(),
            sent: f.map_or(0, |f| f.sent),
            failed: f.map_or(0, |f| f.failed),
            pending: self.digests.get(&s.id).map_or(0, |d| d.events.len() + d.dropped),
            last_error: f.and_then(|f| f.last_error.clone()),
        }
    }

    fn subscribe(&mut self, new: NewSubscription, ctx: &mut Context<Self>) -> Result<SubscriptionView, EmailError> {
        if self.subs.len() >= MAX_SUBSCRIPTIONS {
            return Err(EmailError::Invalid(format!("at most {MAX_SUBSCRIPTIONS} e-mail subscriptions; remove one first")));
        }
        let record = validate(new)?;
        self.store.put_record(Records::Email, &record.id, &record)?;
        drop(self.store.commit()); // flushed with the next group commit; nobody waits
        info!(actor = Mailer::NAME, subscription = %record.id, to = ?record.to, events = ?record.filter.events, "e-mail subscription added");
        let view = self.view(&record);
        self.subs.push(record);
        self.watch_traffic(ctx);
        Ok(view)
    }

    fn unsubscribe(&mut self, id: &str, ctx: &mut Context<Self>) -> Result<(), EmailError> {
        if !self.store.remove_record(Records::Email, id)? {
            return Err(EmailError::UnknownSubscription(id.to_owned()));
        }
        drop(self.store.commit()); // flushed with the next group commit; nobody waits
        self.subs.retain(|s| s.id != id);
        self.figures.remove(id);
        self.digests.remove(id);
        self.watch_traffic(ctx);
        info!(actor = Mailer::NAME, subscription = %id, "e-mail subscription removed");
        Ok(())
    }

    /// Every matching subscription gets a mail now, or the event joins its digest.
    fn dispatch(&mut self, event: Arc<BridgeEvent>, ctx: &mut Context<Self>) {
        let matching: Vec<(String, Option<u64>)> =
            self.subs.iter().filter(|s| s.filter.matches(&event)).map(|s| (s.id.clone(), s.digest_seconds)).collect();
        for (id, digest_s) in matching {
            match digest_s {
                None => self.send(&id, vec![Arc::clone(&event)], 0, ctx),
                Some(seconds) => {
                    let max = self.config.digest_max_events;
                    let digest = self.digests.entry(id.clone()).or_insert_with(|| {
                        let due = id.clone();
                        ctx.notify_later(DigestDue(due), Duration::from_secs(seconds));
                        Digest::default()
                    });
                    if digest.events.len() < max {
                        digest.events.push(Arc::clone(&event));
                    } else {
                        digest.dropped += 1;
                    }
                }
            }
        }
    }

    /// Sends the digest of `id`, if it gathered anything.
    fn flush(&mut self, id: &str, ctx: &mut Context<Self>) {
        if let Some(d) = self.digests.remove(id) {
            if !d.events.is_empty() {
                self.send(id, d.events, d.dropped, ctx);
            }
        }
    }

    /// Composes the mail of `events` for subscription `id` and spawns its sending.
    fn send(&mut self, id: &str, events: Vec<Arc<BridgeEvent>>, dropped: usize, ctx: &mut Context<Self>) {
        let Some(sub) = self.subs.iter().find(|s| s.id == id) else { return };
        let count = events.len() + dropped;
        let smtp = self.config.smtp.as_ref();
        let to: Result<Vec<Mailbox>, String> = sub.to.iter().map(|t| compose::mailbox(t)).collect();
        let mail = match (smtp, to) {
            (Some(smtp), Ok(to)) => compose::compose(&smtp.from, &to, id, &events, dropped, sub.digest_seconds),
            (None, _) => Err("not_configured: no smtp_url is set".into()),
            (_, Err(e)) => Err(format!("invalid_address {e}")),
        };
        let (sent, me) = (Sent { subscription_id: id.to_owned(), to: sub.to.clone(), subject: String::new(), events: count, spawned: false, outcome: Ok(()) }, ctx.address());
        let (mail, transport) = match (mail, &self.transport) {
            (Ok(mail), Ok(t)) if self.in_flight < MAX_IN_FLIGHT => (mail, t.clone()),
            (Ok(_), Ok(_)) => return me.do_send(Sent { outcome: Err(format!("busy: {MAX_IN_FLIGHT} mails are being sent")), ..sent }),
            (Err(e), _) => return me.do_send(Sent { outcome: Err(e), ..sent }),
            (_, Err(e)) => return me.do_send(Sent { outcome: Err(e.clone()), ..sent }),
        };
        let subject = mail.headers().get_raw("Subject").unwrap_or_default().to_owned();
        self.in_flight += 1;
        actix::spawn(async move {
            let outcome = transport.send(mail).await.map(|_| ()).map_err(|e| format!("smtp: {e}"));
            me.do_send(Sent { subject, outcome, spawned: true, ..sent });
        });
    }

    fn sent(&mut self, msg: Sent) -> Result<(), EmailError> {
        if msg.spawned {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        let figures = self.figures.entry(msg.subscription_id.clone()).or_default();
        let error = match msg.outcome {
            Ok(()) => {
                figures.sent += 1;
                return Ok(());
            }
            Err(e) => e,
        };
        figures.failed += 1;
        figures.last_error = Some(error.clone());
        warn!(actor = Mailer::NAME, subscription = %msg.subscription_id, events = msg.events, error = %error, "mail not sent");
        let failure = FailedMail {
            id: uuid::Uuid::now_v7().to_string(),
            subscription_id: msg.subscription_id,
            to: msg.to,
            subject: msg.subject,
            events: msg.events,
            error,
            at_ms: Timestamp::now().millis(),
        };
        self.store.put_bounded(Records::EmailFailures, &failure.id, &failure, self.config.max_failures)?;
        Ok(())
    }
}

/// Checks an operator's request and makes the record.
fn validate(new: NewSubscription) -> Result<EmailSubscription, EmailError> {
    if new.to.is_empty() || new.to.len() > MAX_RECIPIENTS {
        return Err(EmailError::Invalid(format!("to must list 1 to {MAX_RECIPIENTS} addresses")));
    }
    for address in &new.to {
        if address.len() > 320 {
            return Err(EmailError::InvalidAddress("longer than 320 bytes".into()));
        }
        compose::mailbox(address).map_err(EmailError::InvalidAddress)?;
    }
    if new.digest_seconds.is_some_and(|s| !(1..=MAX_DIGEST_S).contains(&s)) {
        return Err(EmailError::Invalid(format!("digest_seconds must be 1 to {MAX_DIGEST_S}")));
    }
    let filter = EventFilter::new(&new.events, new.client_id, new.room)?;
    Ok(EmailSubscription {
        id: format!("em_{}", uuid::Uuid::now_v7().simple()),
        to: new.to.iter().map(|t| t.trim().to_owned()).collect(),
        filter,
        digest_seconds: new.digest_seconds,
        created_at_ms: Timestamp::now().millis(),
    })
}

impl Actor for Mailer {
    type Context = Context<Self>;

    /// Loads the subscriptions and subscribes (again, after a restart).
    fn started(&mut self, ctx: &mut Context<Self>) {
        match self.store.records::<EmailSubscription>(Records::Email, "", usize::MAX) {
            Ok(subs) => self.subs = subs,
            Err(e) => warn!(actor = Mailer::NAME, error = %e, "loading e-mail subscriptions; none are active"),
        }
        if let Err(e) = &self.transport {
            if !self.subs.is_empty() {
                warn!(actor = Mailer::NAME, error = %e, "e-mail subscriptions exist but no SMTP server can be used");
            }
        }
        ctx.add_stream(stream_of(Mailer::NAME, self.child.events().subscribe()));
        self.traffic = None;
        self.watch_traffic(ctx);
    }
}

impl Supervised for Mailer {
    /// The digests' timers went with the old context: what they gathered goes out now.
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        let ids: Vec<String> = self.digests.keys().cloned().collect();
        for id in ids {
            self.flush(&id, ctx);
        }
    }
}

supervisee!(Mailer, EmailError, child);

impl StreamHandler<Arc<BridgeEvent>> for Mailer {
    fn handle(&mut self, event: Arc<BridgeEvent>, ctx: &mut Context<Self>) {
        let _ = self.guard(ctx, |m, ctx| {
            m.dispatch(event, ctx);
            Ok(())
        });
    }

    /// The bus lives as long as the tree: nothing to do (the default would stop the actor).
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl StreamHandler<Arc<Traffic>> for Mailer {
    fn handle(&mut self, traffic: Arc<Traffic>, ctx: &mut Context<Self>) {
        let _ = self.guard(ctx, |m, ctx| {
            m.dispatch(Arc::new(traffic.event()), ctx);
            Ok(())
        });
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

guarded!(Mailer, Subscribe, |m, msg, ctx| m.subscribe(msg.0, ctx));
guarded!(Mailer, ListSubscriptions, |m, _msg, _| Ok(m.subs.iter().map(|s| m.view(s)).collect()));
guarded!(Mailer, Unsubscribe, |m, msg, ctx| m.unsubscribe(&msg.0, ctx));
guarded!(Mailer, ListMailFailures, |m, msg, _| Ok(m.store.records(Records::EmailFailures, "", msg.0)?));
guarded!(Mailer, Sent => (), |m, msg, _| m.sent(msg)?);
guarded!(Mailer, DigestDue => (), |m, msg, ctx| m.flush(&msg.0, ctx));

#[cfg(test)]
mod tests {
    use super::*;

    fn new(to: &[&str], events: &[&str], digest: Option<u64>) -> NewSubscription {
        NewSubscription {
            to: to.iter().map(|t| t.to_string()).collect(),
            events: events.iter().map(|e| e.to_string()).collect(),
            client_id: None,
            room: None,
            digest_seconds: digest,
        }
    }

    #[test]
    fn validation_has_codes() {
        let code = |n: NewSubscription| validate(n).err().map(|e| e.code());
        assert_eq!(code(new(&[], &["message"], None)), Some("bad_request"));
        assert_eq!(code(new(&["not an address"], &["message"], None)), Some("invalid_address"));
        assert_eq!(code(new(&["a@b.org"], &["nope"], None)), Some("unknown_event"));
        assert_eq!(code(new(&["a@b.org"], &["message"], Some(0))), Some("bad_request"));
        let ok = validate(new(&["Ops <ops@example.org>"], &["member_joined"], Some(60))).expect("valid");
        assert!(ok.id.starts_with("em_") && ok.digest_seconds == Some(60));
    }
}
