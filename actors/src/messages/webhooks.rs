//! The `Webhooks` actor's messages (sent by the admin HTTP routes), its records and its error.

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::events::{kind_names, EventFilter, EventKind, FilterError};
use crate::store::format::decode_body;
use crate::store::{Stored, StoreError};
use crate::supervisor::{Failure, Refusal};

/// The body a webhook is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// `{"event", "at", "data"}`.
    #[default]
    #[serde(alias = "generic")]
    Json,
    /// `{"text": "..."}` (a Slack incoming webhook).
    Slack,
    /// `{"content": "..."}` (a Discord webhook).
    Discord,
}

/// `POST /admin/webhooks`: what an operator asks for. Checked by the actor ([`Register`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `http://` or `https://`, at most 2048 characters.
    pub url: String,
    /// Event names ([`EventKind`]); at least one.
    pub events: Vec<String>,
    #[serde(default)]
    pub format: Option<String>,
    /// The signing secret (16 to 256 characters); generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// Only events about this client.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Only events in this room (or `room/channel`).
    #[serde(default)]
    pub room: Option<String>,
}

/// A registration as stored (its secret included: every delivery is signed with it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    /// The events it wants (the filter e-mail subscriptions use too).
    pub filter: EventFilter,
    pub format: WebhookFormat,
    pub secret: String,
    pub created_at_ms: i64,
}

impl Stored for WebhookRecord {
    const WHAT: &'static str = "webhook";
    /// 2: the event filter as one [`EventFilter`] after the url.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, StoreError> {
        if version > 1 {
            return Err(StoreError::Corrupt(format!("a stored webhook has format version {version}, which this build cannot upgrade")));
        }
        let v1: WebhookRecordV1 = decode_body(body)?;
        Ok(WebhookRecord {
            id: v1.id,
            url: v1.url,
            filter: EventFilter { events: v1.events, client_id: v1.client_id, room: v1.room },
            format: v1.format,
            secret: v1.secret,
            created_at_ms: v1.created_at_ms,
        })
    }
}

/// The layout of version 1 (and 0), read by [`WebhookRecord::upgrade`].
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct WebhookRecordV1 {
    id: String,
    url: String,
    events: Vec<EventKind>,
    format: WebhookFormat,
    secret: String,
    client_id: Option<String>,
    room: Option<String>,
    created_at_ms: i64,
}

/// A registration as listed: no secret, with its endpoint's figures.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<EventKind>,
    pub format: WebhookFormat,
    pub client_id: Option<String>,
    pub room: Option<String>,
    pub created_at: String,
    /// Deliveries that got a 2xx answer.
    pub delivered: u64,
    /// Deliveries given up (after the last retry, or refused by the open breaker).
    pub failed: u64,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    /// Failed attempts in a row.
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

/// A delivery given up, kept (bounded) to be listed and sent again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedDelivery {
    /// Time-ordered (UUIDv7).
    pub id: String,
    pub webhook_id: String,
    pub url: String,
    pub event: EventKind,
    /// The exact body that was sent (it is signed again when re-sent).
    pub body: String,
    pub attempts: u32,
    pub error: String,
    pub at_ms: i64,
}

impl Stored for FailedDelivery {
    const WHAT: &'static str = "webhook failure";
}

/// What `POST /admin/webhooks` answers: the registration, and its secret (shown only here).
#[derive(Debug, Clone, Serialize)]
pub struct Registered {
    #[serde(flatten)]
    pub webhook: WebhookView,
    pub secret: String,
}

/// Registers a webhook. Sent by `POST /admin/webhooks`.
#[derive(Message)]
#[rtype(result = "Result<Registered, WebhookError>")]
pub struct Register(pub NewWebhook);

/// Every registration with its figures. Sent by `GET /admin/webhooks`.
#[derive(Message)]
#[rtype(result = "Result<Vec<WebhookView>, WebhookError>")]
pub struct ListWebhooks;

/// Removes a registration. Sent by `DELETE /admin/webhooks/{id}`.
#[derive(Message)]
#[rtype(result = "Result<(), WebhookError>")]
pub struct RemoveWebhook(pub String);

/// Up to this many failed deliveries, oldest first. Sent by `GET /admin/webhooks/failures`.
#[derive(Message)]
#[rtype(result = "Result<Vec<FailedDelivery>, WebhookError>")]
pub struct ListFailures(pub usize);

/// Sends a failed delivery again (with retries), forgetting it; a new failure is kept if it fails
/// again. Sent by `POST /admin/webhooks/failures/{id}/resend`.
#[derive(Message)]
#[rtype(result = "Result<(), WebhookError>")]
pub struct Resend(pub String);

/// Errors of webhook administration; each has a stable code.
#[derive(Debug, Error)]
pub enum WebhookError {
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    #[error("unknown event {0:?}: use one of {names}", names = kind_names())]
    UnknownEvent(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no webhook with id {0:?}")]
    UnknownWebhook(String),
    #[error("no failed delivery with id {0:?}")]
    UnknownFailure(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the webhooks actor failed while handling this request ({0}); it has been restarted, try again")]
    Internal(String),
    #[error("the webhooks actor is down after repeated failures")]
    Unavailable,
    #[error("webhooks mailbox: {0}")]
    Mailbox(#[from] MailboxError),
}

impl WebhookError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::InvalidUrl(_) => "invalid_url",
            WebhookError::UnknownEvent(_) => "unknown_event",
            WebhookError::Invalid(_) => "bad_request",
            WebhookError::UnknownWebhook(_) => "unknown_webhook",
            WebhookError::UnknownFailure(_) => "unknown_failure",
            WebhookError::Store(e) if e.is_unavailable() => "unavailable",
            WebhookError::Store(_) => "storage_error",
            WebhookError::Internal(_) => "internal",
            WebhookError::Unavailable | WebhookError::Mailbox(_) => "unavailable",
        }
    }
}

impl From<FilterError> for WebhookError {
    fn from(e: FilterError) -> Self {
        match e {
            FilterError::UnknownEvent(name) => WebhookError::UnknownEvent(name),
            FilterError::Invalid(why) => WebhookError::Invalid(why),
        }
    }
}

impl Refusal for WebhookError {
    fn internal(failure: &Failure) -> Self {
        WebhookError::Internal(failure.reason.clone())
    }
    fn unavailable() -> Self {
        WebhookError::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_registration_is_read_with_its_filter() {
        let v1 = WebhookRecordV1 {
            id: "wh_1".into(),
            url: "https://hooks.example/x".into(),
            events: vec![EventKind::Message, EventKind::DeadLetter],
            format: WebhookFormat::Slack,
            secret: "a-secret-of-sixteen-or-more".into(),
            client_id: Some("bob".into()),
            room: None,
            created_at_ms: 7,
        };
        let body = bincode::serde::encode_to_vec(&v1, bincode::config::standard()).expect("encode");
        let read = WebhookRecord::upgrade(1, &body).expect("upgrade");
        assert_eq!(read.filter, EventFilter { events: v1.events.clone(), client_id: Some("bob".into()), room: None });
        assert_eq!((read.id.as_str(), read.format, read.secret.as_str(), read.created_at_ms), ("wh_1", WebhookFormat::Slack, v1.secret.as_str(), 7));
        assert!(WebhookRecord::upgrade(3, &body).is_err(), "a version it does not know");
    }
}
