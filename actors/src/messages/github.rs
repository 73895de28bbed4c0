//! The `GitHub` actor's messages (from the admin HTTP routes, and `github.issue` through the table
//! of calls), its records and its error, whose codes name what GitHub answered.

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::store::{StoreError, Stored};
use crate::supervisor::{Failure, Refusal};

/// A room's repository on GitHub (`PUT /admin/github/repos/{room}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoMapping {
    pub room: String,
    /// `owner/name`.
    pub repo: String,
    pub created_at_ms: i64,
}

impl Stored for RepoMapping {
    const WHAT: &'static str = "GitHub repository mapping";
}

/// What an issue was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueSource {
    /// A board card (`card-1`).
    Card(String),
    /// A closed proposal, the room's decision (`p-1`).
    Proposal(String),
}

impl IssueSource {
    /// The card or proposal id.
    pub fn id(&self) -> &str {
        match self {
            IssueSource::Card(id) | IssueSource::Proposal(id) => id,
        }
    }

    /// `card_id` or `proposal_id`.
    pub fn field(&self) -> &'static str {
        match self {
            IssueSource::Card(_) => "card_id",
            IssueSource::Proposal(_) => "proposal_id",
        }
    }
}

/// The key of a room's links in the store's `github` collection (`link:<room>\0`), followed by the
/// card or proposal id: the GitHub actor writes them, a room reads its cards' links.
pub fn links_prefix(room: &str) -> String {
    format!("link:{room}\0")
}

/// An issue made from a card or a decision, as stored (`link:<room>\0<id>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssueLink {
    pub room: String,
    pub source: IssueSource,
    pub repo: String,
    pub number: u64,
    pub html_url: String,
    pub created_by: String,
    pub created_at_ms: i64,
}

impl Stored for IssueLink {
    const WHAT: &'static str = "GitHub issue link";
}

/// A request to GitHub that failed outside a call (a comment on a card move), kept (bounded).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GitHubFailure {
    /// Time-ordered (UUIDv7).
    pub id: String,
    pub room: String,
    /// What was attempted (`comment on o/r#12`).
    pub what: String,
    /// The error's code (`github_unauthorized` …).
    pub code: String,
    pub error: String,
    pub at_ms: i64,
}

impl Stored for GitHubFailure {
    const WHAT: &'static str = "GitHub failure";
}

/// Maps a room to a repository (replacing an earlier mapping). Sent by `PUT /admin/github/repos/{room}`.
#[derive(Message)]
#[rtype(result = "Result<RepoMapping, GitHubError>")]
pub struct MapRepo {
    pub room: String,
    pub repo: String,
}

/// Forgets a room's repository. Sent by `DELETE /admin/github/repos/{room}`.
#[derive(Message)]
#[rtype(result = "Result<(), GitHubError>")]
pub struct UnmapRepo(pub String);

/// Every mapping. Sent by `GET /admin/github/repos`.
#[derive(Message)]
#[rtype(result = "Result<Vec<RepoMapping>, GitHubError>")]
pub struct ListRepos;

/// The issues made (of one room, or all), at most `limit`. Sent by `GET /admin/github/links`.
#[derive(Message)]
#[rtype(result = "Result<Vec<IssueLink>, GitHubError>")]
pub struct ListLinks {
    pub room: Option<String>,
    pub limit: usize,
}

/// Up to this many failures, oldest first. Sent by `GET /admin/github/failures`.
#[derive(Message)]
#[rtype(result = "Result<Vec<GitHubFailure>, GitHubError>")]
pub struct ListGitHubFailures(pub usize);

/// `github.issue`: creates the issue in the room's repository, stores the link, posts it into the
/// room as a `github.issue` message from `caller`, and answers
/// `{room, repo, number, html_url, card_id | proposal_id, message_seq}`. Sent by `RoomsHandle::call`
/// once it has read the card or proposal (so the caller is a member).
#[derive(Message)]
#[rtype(result = "Result<Value, GitHubError>")]
pub struct CreateIssue {
    pub room: String,
    pub caller: String,
    pub source: IssueSource,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
}

/// Errors of the GitHub integration; each has a stable code. What GitHub answered keeps its
/// meaning: `github_unauthorized` (401), `github_forbidden` (403), `github_not_found` (404),
/// `github_unprocessable` (422), `github_rate_limited` (403 or 429 with `retry_after_s`).
#[derive(Debug, Error)]
pub enum GitHubError {
    #[error("the GitHub integration is not configured: set github_token (BRIDGE_GITHUB_TOKEN)")]
    NotConfigured,
    #[error("room {0:?} has no GitHub repository: map one with PUT /admin/github/repos/{{room}}")]
    NoRepository(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already has an issue: {1}")]
    AlreadyLinked(String, String),
    #[error("GitHub refused the token (401): {0}")]
    Unauthorized(String),
    #[error("GitHub refused the request (403): {0}")]
    Forbidden(String),
    #[error("GitHub does not know the repository or issue, or the token may not see it (404): {0}")]
    NotFound(String),
    #[error("GitHub could not process the request (422): {0}")]
    Unprocessable(String),
    #[error("GitHub's rate limit was hit ({status}); retry after {} s", retry_after_s.map_or("some".to_owned(), |s| s.to_string()))]
    RateLimited { status: u16, retry_after_s: Option<u64> },
    #[error("GitHub answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("GitHub could not be reached: {0}")]
    Unreachable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the GitHub actor failed while handling this request ({0}); it has been restarted, try again")]
    Internal(String),
    #[error("the GitHub actor is down after repeated failures")]
    Unavailable,
    #[error("GitHub mailbox: {0}")]
    Mailbox(#[from] MailboxError),
}

impl GitHubError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            GitHubError::NotConfigured => "not_configured",
            GitHubError::NoRepository(_) => "no_repository",
            GitHubError::Invalid(_) => "invalid_params",
            GitHubError::AlreadyLinked(..) => "already_exists",
            GitHubError::Unauthorized(_) => "github_unauthorized",
            GitHubError::Forbidden(_) => "github_forbidden",
            GitHubError::NotFound(_) => "github_not_found",
            GitHubError::Unprocessable(_) => "github_unprocessable",
            GitHubError::RateLimited { .. } => "github_rate_limited",
            GitHubError::Api { .. } => "github_error",
            GitHubError::Unreachable(_) => "github_unreachable",
            GitHubError::Store(_) => "storage_error",
            GitHubError::Internal(_) => "internal",
            GitHubError::Unavailable | GitHubError::Mailbox(_) => "unavailable",
        }
    }

    /// Seconds GitHub asked to wait, for a rate limit.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            GitHubError::RateLimited { retry_after_s, .. } => *retry_after_s,
            _ => None,
        }
    }
}

impl Refusal for GitHubError {
    fn internal(failure: &Failure) -> Self {
        GitHubError::Internal(failure.reason.clone())
    }
    fn unavailable() -> Self {
        GitHubError::Unavailable
    }
}
