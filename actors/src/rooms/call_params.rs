//! The params of the `file.download`, `desktop.prompt` and `github.issue` calls of the table
//! ([`super::calls`]): plain data, checked by their handlers there. A leaf of `rooms`.

use serde::Deserialize;
use utoipa::ToSchema;

/// `file.download`.
#[derive(Deserialize, ToSchema)]
pub struct DownloadParams {
    /// The room (not a channel).
    pub room: String,
    /// The file's id (or give name).
    pub file_id: Option<String>,
    /// The newest file of this name.
    pub name: Option<String>,
}

/// `desktop.prompt`.
#[derive(Deserialize, ToSchema)]
pub struct PromptParams {
    /// The prompt.
    pub text: String,
    /// A title (substring) of the window to use instead of the configured one.
    pub window: Option<String>,
    /// Give up after this many seconds (default: the configured desktop timeout).
    #[schema(minimum = 1, maximum = 3600)]
    pub timeout_s: Option<u64>,
}

/// `github.issue`.
#[derive(Deserialize, ToSchema)]
pub struct IssueParams {
    /// The room (not a channel); it must be mapped to a repository.
    pub room: String,
    /// The board card (card-1 …); or give proposal_id.
    pub card_id: Option<String>,
    /// A closed proposal (p-1 …).
    pub proposal_id: Option<String>,
    /// Labels for the issue (at most 10).
    #[serde(default)]
    pub labels: Vec<String>,
}
