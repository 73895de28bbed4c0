//! The `Mailer` actor's messages (sent by the admin HTTP routes), its records and its error.

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::events::{kind_names, EventFilter, FilterError};
use crate::store::{StoreError, Stored};
use crate::supervisor::{Failure, Refusal};

/// `POST /admin/email`: what an operator asks for. Checked by the actor ([`Subscribe`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// Recipients (`name@host` or `Name <name@host>`), 1 to 50.
    pub to: Vec<String>,
    /// Event names, as for webhooks; at least one.
    pub events: Vec<String>,
    /// Only events about this client.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Only events in this room (or `room/channel`).
    #[serde(default)]
    pub room: Option<String>,
    /// Batch the events of this many seconds into one mail (1 to 86400); absent: one mail per event.
    #[serde(default)]
    pub digest_seconds: Option<u64>,
}

/// A subscription as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmailSubscription {
    pub id: String,
    pub to: Vec<String>,
    pub filter: EventFilter,
    pub digest_seconds: Option<u64>,
    pub created_at_ms: i64,
}

impl Stored for EmailSubscription {
    const WHAT: &'static str = "e-mail subscription";
}

/// A subscription as listed, with its figures.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionView {
    pub id: String,
    pub to: Vec<String>,
    #[serde(flatten)]
    pub filter: EventFilter,
    pub digest_seconds: Option<u64>,
    pub created_at: String,
    /// Mails the SMTP server accepted.
    pub sent: u64,
    /// Mails that could not be sent (kept under `/admin/email/failures`).
    pub failed: u64,
    /// Events waiting for the next digest.
    pub pending: usize,
    pub last_error: Option<String>,
}

/// A mail that could not be sent, kept (bounded) to be listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedMail {
    /// Time-ordered (UUIDv7).
    pub id: String,
    pub subscription_id: String,
    pub to: Vec<String>,
    pub subject: String,
    /// The events the mail carried.
    pub events: usize,
    pub error: String,
    pub at_ms: i64,
}

impl Stored for FailedMail {
    const WHAT: &'static str = "failed mail";
}

/// Registers a subscription. Sent by `POST /admin/email`.
#[derive(Message)]
#[rtype(result = "Result<SubscriptionView, EmailError>")]
pub struct Subscribe(pub NewSubscription);

/// Every subscription with its figures. Sent by `GET /admin/email`.
#[derive(Message)]
#[rtype(result = "Result<Vec<SubscriptionView>, EmailError>")]
pub struct ListSubscriptions;

/// Removes a subscription (a pending digest is dropped). Sent by `DELETE /admin/email/{id}`.
#[derive(Message)]
#[rtype(result = "Result<(), EmailError>")]
pub struct Unsubscribe(pub String);

/// Up to this many failed mails, oldest first. Sent by `GET /admin/email/failures`.
#[derive(Message)]
#[rtype(result = "Result<Vec<FailedMail>, EmailError>")]
pub struct ListMailFailures(pub usize);

/// Errors of e-mail administration; each has a stable code.
#[derive(Debug, Error)]
pub enum EmailError {
    #[error("invalid address {0}")]
    InvalidAddress(String),
    #[error("unknown event {0:?}: use one of {names}", names = kind_names())]
    UnknownEvent(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no e-mail subscription with id {0:?}")]
    UnknownSubscription(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the e-mail actor failed while handling this request ({0}); it has been restarted, try again")]
    Internal(String),
    #[error("the e-mail actor is down after repeated failures")]
    Unavailable,
    #[error("e-mail mailbox: {0}")]
    Mailbox(#[from] MailboxError),
}

impl EmailError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EmailError::InvalidAddress(_) => "invalid_address",
            EmailError::UnknownEvent(_) => "unknown_event",
            EmailError::Invalid(_) => "bad_request",
            EmailError::UnknownSubscription(_) => "unknown_subscription",
            EmailError::Store(_) => "storage_error",
            EmailError::Internal(_) => "internal",
            EmailError::Unavailable | EmailError::Mailbox(_) => "unavailable",
        }
    }
}

impl From<FilterError> for EmailError {
    fn from(e: FilterError) -> Self {
        match e {
            FilterError::UnknownEvent(name) => EmailError::UnknownEvent(name),
            FilterError::Invalid(why) => EmailError::Invalid(why),
        }
    }
}

impl Refusal for EmailError {
    fn internal(failure: &Failure) -> Self {
        EmailError::Internal(failure.reason.clone())
    }
    fn unavailable() -> Self {
        EmailError::Unavailable
    }
}
