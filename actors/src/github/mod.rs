//! `GitHub`: rooms' work on GitHub over its REST API ([`api`]): a room maps to a repository, an
//! issue is made from a board card or a room decision (a closed proposal) by the `github.issue`
//! call, linked back into the room (a `github.issue` room message with the issue's URL), and every
//! move of a linked card becomes a comment on its issue.
//!
//! Owns: the mappings and issue links (the store's `github` tree: `repo:<room>`,
//! `link:<room>\0<card or proposal id>`) and the failures of requests no caller waits for
//! (`github_failures`, bounded). `github.issue` reaches it through `RoomsHandle::call`, which
//! first reads the card or proposal in the room (so only members make issues); `task_updated`
//! events come from the event bus. Each request is a future on this actor's arbiter, so a slow
//! GitHub never blocks the actor.
//!
//! Sent by: `RoomsHandle` ([`CreateIssue`]) and the admin HTTP routes. Supervised by the root
//! (permanent, not critical), on its own arbiter.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use agent_bridge_protocol::{Payload, Timestamp};
use serde_json::{json, Value};
use tracing::{info, warn};

pub mod api;

use crate::delivery::{Envelope, Target, Transport};
use crate::events::{stream_of, BridgeEvent, EventKind};
pub use crate::messages::github::*;
use crate::rooms::RoomsHandle;
use crate::store::{Records, Store};
use crate::supervisor::{guarded, supervisee, ChildHandle, Supervisee};
use api::Api;

/// Settings of the GitHub actor.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// `https://api.github.com`, or a GitHub Enterprise server's `https://HOST/api/v3`.
    pub api_url: String,
    /// A token that may write issues; empty: `github.issue` answers `not_configured`.
    pub token: String,
    pub timeout: Duration,
    /// Failures kept; the oldest beyond it are dropped.
    pub max_failures: usize,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        GitHubConfig { api_url: "https://api.github.com".into(), token: String::new(), timeout: Duration::from_secs(10), max_failures: 1000 }
    }
}

/// A comment request no caller waits for ended badly. Sent by its future to the actor.
#[derive(Message)]
#[rtype(result = "()")]
struct Failed {
    room: String,
    what: String,
    error: GitHubError,
}

/// The GitHub actor.
pub struct GitHub {
    /// Supervision link (`github`); its tree carries the event bus.
    child: ChildHandle,
    store: Store,
    config: GitHubConfig,
    /// Where the links are posted.
    rooms: RoomsHandle,
    /// `None` without a token.
    api: Option<Api>,
}

fn repo_key(room: &str) -> String {
    format!("repo:{room}")
}

fn link_key(room: &str, id: &str) -> String {
    format!("{}{id}", links_prefix(room))
}

/// `owner/name`, each part of GitHub's characters.
fn valid_repo(repo: &str) -> Result<(), GitHubError> {
    let part = |p: &str| !p.is_empty() && p.len() <= 100 && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && p != "." && p != "..";
    match repo.split_once('/') {
        Some((owner, name)) if part(owner) && part(name) => Ok(()),
        _ => Err(GitHubError::Invalid(format!("repo {repo:?} must be owner/name"))),
    }
}

impl GitHub {
    pub const NAME: &'static str = "github";

    pub fn new(child: ChildHandle, store: Store, config: GitHubConfig, rooms: RoomsHandle) -> Self {
        let api = match config.token.is_empty() {
            true => None,
            false => Api::new(&config.api_url, &config.token, config.timeout)
                .inspect_err(|e| warn!(actor = GitHub::NAME, error = %e, "GitHub client; the integration is off"))
                .ok(),
        };
        GitHub { child, store, config, rooms, api }
    }

    fn map(&mut self, msg: MapRepo) -> Result<RepoMapping, GitHubError> {
        if msg.room.is_empty() || msg.room.len() > 256 || msg.room.contains('\0') {
            return Err(GitHubError::Invalid("room must be 1 to 256 bytes".into()));
        }
        valid_repo(&msg.repo)?;
        let mapping = RepoMapping { room: msg.room, repo: msg.repo, created_at_ms: Timestamp::now().millis() };
        self.store.put_record(Records::GitHub, &repo_key(&mapping.room), &mapping)?;
        drop(self.store.commit()); // flushed with the next group commit; nobody waits
        info!(actor = GitHub::NAME, room = %mapping.room, repo = %mapping.repo, "room mapped to a GitHub repository");
        Ok(mapping)
    }

    fn repo_of(&self, room: &str) -> Result<String, GitHubError> {
        let top = room.split('/').next().unwrap_or(room);
        let mapping: Option<RepoMapping> = self.store.record(Records::GitHub, &repo_key(top))?;
        mapping.map(|m| m.repo).ok_or_else(|| GitHubError::NoRepository(top.to_owned()))
    }

    /// What `github.issue` needs before it asks GitHub: a client, the room's repository, and no
    /// issue made from the same card or proposal yet.
    fn check(&self, msg: &CreateIssue) -> Result<(Api, String), GitHubError> {
        let api = self.api.clone().ok_or(GitHubError::NotConfigured)?;
        let repo = self.repo_of(&msg.room)?;
        if let Some(link) = self.store.record::<IssueLink>(Records::GitHub, &link_key(&msg.room, msg.source.id()))? {
            return Err(GitHubError::AlreadyLinked(msg.source.id().to_owned(), link.html_url));
        }
        Ok((api, repo))
    }

    /// Creates the issue, then stores and posts its link; the caller waits for all of it.
    fn create(&mut self, msg: CreateIssue, api: Api, repo: String) -> ResponseActFuture<Self, Result<Value, GitHubError>> {
        let (rooms, repo2) = (self.rooms.clone(), repo.clone());
        let work = async move {
            let issue = api.create_issue(&repo2, &msg.title, &msg.body, &msg.labels).await?;
            Ok::<_, GitHubError>((msg, issue))
        };
        Box::pin(fut::wrap_future::<_, Self>(work).then(move |made, actor, _| {
            let outcome = made.and_then(|(msg, issue)| {
                let link = IssueLink {
                    room: msg.room.clone(),
                    source: msg.source.clone(),
                    repo: repo.clone(),
                    number: issue.number,
                    html_url: issue.html_url.clone(),
                    created_by: msg.caller.clone(),
                    created_at_ms: Timestamp::now().millis(),
                };
                actor.store.put_record(Records::GitHub, &link_key(&link.room, link.source.id()), &link)?;
                drop(actor.store.commit()); // flushed with the next group commit; nobody waits
                info!(actor = GitHub::NAME, room = %link.room, repo = %link.repo, number = link.number, "GitHub issue created");
                Ok((msg.caller, link))
            });
            let post = async move {
                let (caller, link) = outcome?;
                let mut answer = json!({ "room": link.room, "repo": link.repo, "number": link.number, "html_url": link.html_url });
                answer[link.source.field()] = json!(link.source.id());
                let routed = rooms.route(link_message(&caller, &answer)).await;
                match routed {
                    Ok(r) => answer["message_seq"] = json!(r.seq),
                    Err(e) => {
                        warn!(actor = GitHub::NAME, room = %link.room, error = %e, "the issue link could not be posted into the room");
                        answer["message_error"] = json!(e.code());
                    }
                }
                Ok(answer)
            };
            fut::wrap_future::<_, Self>(post)
        }))
    }

    /// A move of a linked card: a comment on its issue.
    fn on_event(&mut self, event: &BridgeEvent, ctx: &mut Context<Self>) -> Result<(), GitHubError> {
        if event.kind != EventKind::TaskUpdated || event.data.get("action").and_then(Value::as_str) != Some("moved") {
            return Ok(());
        }
        let (Some(room), Some(api)) = (event.room.clone(), self.api.clone()) else { return Ok(()) };
        let card = &event.data["card"];
        let Some(card_id) = card.get("card_id").and_then(Value::as_str) else { return Ok(()) };
        let Some(link) = self.store.record::<IssueLink>(Records::GitHub, &link_key(&room, card_id))? else { return Ok(()) };
        let by = card.get("history").and_then(Value::as_array).and_then(|h| h.last()).and_then(|m| m.get("by")).and_then(Value::as_str).unwrap_or("-");
        let text = |k: &str| event.data.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
        let body = format!("Card `{card_id}` in room `{room}` moved from **{}** to **{}** by `{by}` (agent-bridge).", text("from"), text("to"));
        let me = ctx.address();
        actix::spawn(async move {
            if let Err(error) = api.comment(&link.repo, link.number, &body).await {
                me.do_send(Failed { room, what: format!("comment on {}#{}", link.repo, link.number), error });
            }
        });
        Ok(())
    }

    fn failed(&mut self, msg: Failed) -> Result<(), GitHubError> {
        warn!(actor = GitHub::NAME, room = %msg.room, what = %msg.what, error = %msg.error, "GitHub request failed");
        let failure = GitHubFailure {
            id: uuid::Uuid::now_v7().to_string(),
            room: msg.room,
            what: msg.what,
            code: msg.error.code().to_owned(),
            error: msg.error.to_string(),
            at_ms: Timestamp::now().millis(),
        };
        self.store.put_bounded(Records::GitHubFailures, &failure.id, &failure, self.config.max_failures)?;
        Ok(())
    }

    fn links(&self, msg: &ListLinks) -> Result<Vec<IssueLink>, GitHubError> {
        let prefix = msg.room.as_deref().map_or_else(|| "link:".to_owned(), links_prefix);
        Ok(self.store.records(Records::GitHub, &prefix, msg.limit)?)
    }
}

/// The room message that links an issue: type `github.issue`, the call's answer as payload.
fn link_message(caller: &str, answer: &Value) -> Envelope {
    let room = answer["room"].as_str().unwrap_or_default().to_owned();
    Envelope::plain(caller, Target::Room(room), "github.issue", Payload::from_serialize(answer), Transport::Http)
}

impl Actor for GitHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(stream_of(GitHub::NAME, self.child.events().subscribe()));
    }
}

impl Supervised for GitHub {}

supervisee!(GitHub, GitHubError, child);

impl StreamHandler<Arc<BridgeEvent>> for GitHub {
    fn handle(&mut self, event: Arc<BridgeEvent>, ctx: &mut Context<Self>) {
        let _ = self.guard(ctx, |g, ctx| g.on_event(&event, ctx));
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

guarded!(GitHub, MapRepo, |g, msg, _| g.map(msg));
guarded!(GitHub, UnmapRepo, |g, msg, _| {
    if !g.store.remove_record(Records::GitHub, &repo_key(&msg.0))? {
        return Err(GitHubError::NoRepository(msg.0));
    }
    drop(g.store.commit()); // flushed with the next group commit; nobody waits
    Ok(())
});
guarded!(GitHub, ListRepos, |g, _msg, _| Ok(g.store.records(Records::GitHub, "repo:", usize::MAX)?));
guarded!(GitHub, ListLinks, |g, msg, _| g.links(&msg));
guarded!(GitHub, ListGitHubFailures, |g, msg, _| Ok(g.store.records(Records::GitHubFailures, "", msg.0)?));
guarded!(GitHub, Failed => (), |g, msg, _| g.failed(msg)?);

impl Handler<CreateIssue> for GitHub {
    type Result = ResponseActFuture<Self, Result<Value, GitHubError>>;

    /// The checks run inside `guard`; the requests after them are a future of this context.
    fn handle(&mut self, msg: CreateIssue, ctx: &mut Context<Self>) -> Self::Result {
        match self.guard(ctx, |g, _| g.check(&msg)) {
            Ok((api, repo)) => self.create(msg, api, repo),
            Err(e) => Box::pin(fut::ready(Err(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repos_are_owner_slash_name() {
        assert!(valid_repo("octo-org/hello.world_1").is_ok());
        for bad in ["octo", "/x", "x/", "a/b/c", "a b/c", "../x", "a/.."] {
            assert_eq!(valid_repo(bad).err().map(|e| e.code()), Some("invalid_params"), "{bad}");
        }
    }
}
