//! The `Room`'s calls (PROTOCOL.md section 4): the dispatcher, joining and leaving, and proposals
//! with their deadlines. A second `impl Room` block, split from mod.rs by responsibility.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use agent_bridge_protocol::{Message as Msg, Timestamp};
use serde_json::{json, Value};
use tracing::{error, info};

use crate::delivery::Backlog;
use crate::messages::github::{links_prefix, IssueLink, IssueSource};
use crate::store::{Records, Stream};

/// Issue links a board listing reads at most.
const MAX_LINKS: usize = 10_000;

use super::*;

/// The result of `room.topic`.
#[derive(serde::Serialize)]
struct TopicView {
    room: String,
    topic: Option<String>,
    /// Whether this call changed it.
    changed: bool,
}

impl Room {
    pub(super) fn call(&mut self, msg: RoomCall, ctx: &mut Context<Self>) -> Result<CallReply, RoomError> {
        let RoomCall { caller, stream, op, on_channels } = msg;
        let channel = self.channel_of(&stream)?.is_some();
        if channel && !on_channels {
            return Err(RoomError::InvalidParams(format!("{stream:?} is a sub-channel: it carries messages; use the room {:?}", self.name())));
        }
        let reply = |value: Value| Ok(CallReply { value, durable: None });
        match op {
            RoomOp::Join { role, since, link, identity } => {
                self.admit(identity.as_deref(), &caller, &stream)?;
                self.join(&caller, &stream, role, since, link, ctx)
            }
            RoomOp::Leave => self.leave(&caller, &stream),
            RoomOp::Members => {
                self.require_member(&caller)?;
                reply(json!({ "room": stream, "members": self.members_view(&stream) }))
            }
            RoomOp::History { since, limit, identity, thread_id } => {
                self.require_member(&caller)?;
                self.admit(identity.as_deref(), &caller, &stream)?;
                let last = self.last_seq(&stream)?;
                let t = now();
                let msgs = self.store.range(Stream::Room(&stream), since, limit)?;
                let next_since = msgs.last().map_or(since.min(last), |m| m.seq);
                let in_thread = |m: &Msg| thread_id.is_none() || m.thread_id == thread_id;
                let msgs: Vec<Msg> = msgs.into_iter().filter(|m| !m.is_expired(t) && in_thread(m)).collect();
                reply(json!({ "room": stream, "count": msgs.len(), "messages": msgs, "next_since": next_since, "last_seq": last }))
            }
            RoomOp::Topic { topic: None } => {
                self.require_member(&caller)?;
                reply(json!(TopicView { room: stream, topic: self.state.topic.clone(), changed: false }))
            }
            RoomOp::Topic { topic: Some(topic) } => {
                self.require_member(&caller)?;
                if self.state.topic.as_deref() == Some(topic.as_str()) {
                    return reply(json!(TopicView { room: stream, topic: Some(topic), changed: false }));
                }
                self.state.topic = Some(topic.clone());
                let durable = self.persist()?;
                self.event(&stream, "topic_changed", &json!({ "room": stream, "topic": topic, "by": caller }), None);
                Ok(CallReply { value: json!(TopicView { room: stream, topic: Some(topic), changed: true }), durable })
            }
            RoomOp::ChannelCreate { name } => {
                self.require_member(&caller)?;
                let full = format!("{}/{name}", self.name());
                if self.state.channels.contains_key(&name) {
                    return Err(RoomError::AlreadyExists(format!("channel {full:?}")));
                }
                self.state.channels.insert(name, Channel { created_by: caller.clone(), created_at: now() });
                let durable = self.persist()?;
                let value = json!({ "room": full, "parent": self.name(), "created_by": caller });
                self.event(&stream, "channel_created", &value, None);
                Ok(CallReply { value, durable })
            }
            RoomOp::Ask { text } => {
                self.require_member(&caller)?;
                let q = Question {
                    question_id: format!("q-{}", self.state.questions.len() + 1),
                    text,
                    asked_by: caller,
                    asked_at: now(),
                    answers: Vec::new(),
                };
                let value = question_view(&q);
                self.state.questions.push(q);
                self.changed(&stream, "question_asked", value, None)
            }
            RoomOp::Answer { question_id, text } => {
                self.require_member(&caller)?;
                let q = found(&mut self.state.questions, |q| q.question_id == question_id, || format!("no question {question_id:?} in this room"))?;
                let answer = Answer { text, by: caller, at: now() };
                q.answers.push(answer.clone());
                let value = question_view(q);
                let data = json!({ "question_id": question_id, "answer": answer, "question": value });
                self.changed(&stream, "question_answered", value, Some(data))
            }
            RoomOp::Questions { open_only } => {
                self.require_member(&caller)?;
                let qs: Vec<Value> =
                    self.state.questions.iter().filter(|q| !open_only || q.answers.is_empty()).map(question_view).collect();
                reply(json!({ "room": stream, "questions": qs }))
            }
            RoomOp::Propose { text, rule, quorum, weights, deadline_s } => {
                self.require_member(&caller)?;
                self.propose(caller, &stream, text, rule, quorum, weights, deadline_s, ctx)
            }
            RoomOp::Vote { proposal_id, vote } => self.vote(&caller, &stream, &proposal_id, vote),
            RoomOp::ProposalGet { proposal_id } => {
                self.require_member(&caller)?;
                match proposal_id {
                    Some(id) => reply(self.proposal(&id)?.view()),
                    None => reply(json!({ "room": stream, "proposals": self.state.proposals.iter().map(Proposal::view).collect::<Vec<_>>() })),
                }
            }
            RoomOp::BoardAdd { title, description, assignee, column } => {
                self.require_member(&caller)?;
                let at = now();
                let card = Card {
                    card_id: format!("card-{}", self.state.cards.len() + 1),
                    title,
                    description,
                    assignee,
                    column,
                    created_by: caller.clone(),
                    created_at: at,
                    history: vec![CardMove { from: None, to: column, by: caller, at }],
                };
                let value = json!(card);
                self.state.cards.push(card);
                let data = json!({ "action": "added", "card": value });
                self.changed(&stream, "board_changed", value, Some(data))
            }
            RoomOp::BoardMove { card_id, column } => {
                self.require_member(&caller)?;
                let card = found(&mut self.state.cards, |c| c.card_id == card_id, || format!("no card {card_id:?} on this board"))?;
                let from = card.column;
                if from == column {
                    return reply(json!(card));
                }
                card.column = column;
                card.history.push(CardMove { from: Some(from), to: column, by: caller, at: now() });
                let value = json!(card);
                let data = json!({ "action": "moved", "from": from, "to": column, "card": value });
                self.changed(&stream, "board_changed", value, Some(data))
            }
            RoomOp::BoardList => {
                self.require_member(&caller)?;
                reply(json!({ "room": stream, "columns": Column::NAMES, "cards": self.cards_with_issues()? }))
            }
            RoomOp::FileUpload { name, sha256, bytes } => {
                self.require_member(&caller)?;
                self.store.put_file(&sha256, &bytes)?;
                let meta = FileMeta {
                    file_id: format!("file-{}", self.state.files.len() + 1),
                    name,
                    size: bytes.len() as u64,
                    sha256,
                    uploaded_by: caller,
                    uploaded_at: now(),
                };
                let value = json!(meta);
                self.state.files.push(meta);
                self.changed(&stream, "file_shared", value, None)
            }
            RoomOp::FileMeta { file } => {
                self.require_member(&caller)?;
                let meta = self
                    .state
                    .files
                    .iter()
                    .find(|f| f.file_id == file)
                    .or_else(|| self.state.files.iter().rev().find(|f| f.name == file))
                    .ok_or_else(|| RoomError::NotFound(format!("no file {file:?} in this room")))?;
                reply(json!(meta))
            }
            RoomOp::FileList => {
                self.require_member(&caller)?;
                reply(json!({ "room": stream, "files": self.state.files }))
            }
        }
    }

    pub(super) fn join(
        &mut self,
        caller: &str,
        stream: &str,
        role: Option<String>,
        since: Option<u64>,
        link: Option<JoinLink>,
        ctx: &mut Context<Self>,
    ) -> Result<CallReply, RoomError> {
        let mut durable = None;
        let mut new_member = false;
        if self.channel_of(stream)?.is_none() {
            match self.state.members.get_mut(caller) {
                Some(m) => {
                    if let Some(r) = role.filter(|r| *r != m.role) {
                        m.role = r;
                        durable = self.persist()?;
                    }
                }
                None => {
                    let role = role.unwrap_or_else(|| "member".to_owned());
                    self.state.members.insert(caller.to_owned(), Member { role, joined_at: now() });
                    new_member = true;
                    durable = self.persist()?;
                }
            }
        } else {
            self.require_member(caller)?;
        }
        let role = self.require_member(caller)?.role.clone();
        let last = self.last_seq(stream)?;
        let resumed_from = since.map(|s| s.min(last));
        if let Some(link) = link {
            // A session joining again replaces its link (and replays again when it gives `since`);
            // the others hear of the member only when it was not present before.
            let first = !self.present(stream, caller);
            self.unlink(stream, |l| l.session_id == link.session_id);
            let shared = Arc::new(LinkShared {
                backlog: Backlog::sized(self.config.queue_limit, self.config.queue_bytes),
                room: ctx.address().recipient(),
                stream: stream.to_owned(),
                session_id: link.session_id.clone(),
            });
            let after = resumed_from.unwrap_or(last);
            let replay = after < last;
            if replay {
                // Behind from the start: nothing live reaches it before the replay has caught up.
                shared.backlog.start_lag();
            }
            let session_id = link.session_id.clone();
            let notify = link.notify.clone();
            self.streams.entry(stream.to_owned()).or_default().links.push(Link {
                client_id: caller.to_owned(),
                session_id: session_id.clone(),
                deliver: link.deliver,
                notify: link.notify,
                filter: link.filter,
                shared,
                after,
            });
            // `joined` first, then the replay, then live traffic: all through the session's mailbox.
            let joined = json!({ "room": stream, "role": role, "last_seq": last, "resumed_from": resumed_from,
                                 "members": self.members_view(stream) });
            notify.do_send(Notify(event_note(stream, "joined", &joined)));
            if replay {
                self.feed(stream, &session_id)?;
            }
            if first {
                let data = json!({ "client_id": caller, "role": role, "new_member": new_member });
                self.event(stream, "member_joined", &data, Some(&session_id));
            }
            info!(actor = Room::NAME, room = %stream, client_id = %caller, session_id = %session_id, "joined");
        } else if new_member {
            self.event(stream, "member_joined", &json!({ "client_id": caller, "role": role, "new_member": true }), None);
        }
        let value = json!({ "room": stream, "role": role, "last_seq": last, "resumed_from": resumed_from,
                            "new_member": new_member, "members": self.members_view(stream) });
        Ok(CallReply { value, durable })
    }

    pub(super) fn leave(&mut self, caller: &str, stream: &str) -> Result<CallReply, RoomError> {
        let role = self.require_member(caller)?.role.clone();
        if self.channel_of(stream)?.is_some() {
            let gone = self.unlink(stream, |l| l.client_id == caller);
            if !gone.is_empty() {
                self.member_left(stream, caller, "left");
            }
            return Ok(CallReply { value: json!({ "room": stream, "left": true, "member": true }), durable: None });
        }
        // Leaving the room ends membership: its sessions leave the room and its channels.
        let streams: Vec<String> = self.streams.keys().cloned().collect();
        for s in &streams {
            if !self.unlink(s, |l| l.client_id == caller).is_empty() && s != stream {
                self.member_left(s, caller, "left");
            }
        }
        self.state.members.remove(caller);
        // Its unvoted place in open proposals goes too, which may decide them.
        let mut touched = Vec::new();
        for p in self.state.proposals.iter_mut().filter(|p| p.closed.is_none()) {
            if !p.votes.contains_key(caller) && p.electorate.iter().any(|c| c == caller) {
                p.electorate.retain(|c| c != caller);
                touched.push(p.proposal_id.clone());
            }
        }
        let closed: Vec<Value> = touched.iter().filter_map(|id| self.settle(id, false)).collect();
        let durable = self.persist()?;
        self.event(stream, "member_left", &json!({ "client_id": caller, "role": role, "reason": "left" }), None);
        for data in closed {
            self.event(stream, "proposal_closed", &data, None);
        }
        Ok(CallReply { value: json!({ "room": stream, "left": true, "member": false }), durable })
    }

    /// Persists a change, tells the stream's sessions with `event` (its data: `data`, or the
    /// answer itself), and answers `value` once the change is durable.
    fn changed(&self, stream: &str, event: &str, value: Value, data: Option<Value>) -> Result<CallReply, RoomError> {
        let durable = self.persist()?;
        self.event(stream, event, data.as_ref().unwrap_or(&value), None);
        Ok(CallReply { value, durable })
    }

    /// The cards, each with `issue: {repo, number, html_url}` when a GitHub issue was made from it.
    fn cards_with_issues(&self) -> Result<Vec<Value>, RoomError> {
        let links: Vec<IssueLink> = self.store.records(Records::GitHub, &links_prefix(self.name()), MAX_LINKS)?;
        let cards = self.state.cards.iter().map(|c| {
            let mut v = json!(c);
            if let Some(l) = links.iter().find(|l| l.source == IssueSource::Card(c.card_id.clone())) {
                v["issue"] = json!({ "repo": l.repo, "number": l.number, "html_url": l.html_url });
            }
            v
        });
        Ok(cards.collect())
    }

    pub(super) fn proposal(&self, id: &str) -> Result<&Proposal, RoomError> {
        self.state
            .proposals
            .iter()
            .find(|p| p.proposal_id == id)
            .ok_or_else(|| RoomError::NotFound(format!("no proposal {id:?} in this room")))
    }

    /// Closes the proposal if its outcome is decided; returns the `proposal_closed` data.
    pub(super) fn settle(&mut self, id: &str, at_deadline: bool) -> Option<Value> {
        let p = self.state.proposals.iter_mut().find(|p| p.proposal_id == id)?;
        if p.closed.is_some() {
            return None;
        }
        let (outcome, reason) = p.decide(at_deadline)?;
        p.closed = Some(Closure { outcome, reason: reason.to_owned(), at: now() });
        info!(actor = Room::NAME, room = %self.state.name, proposal = %id, ?outcome, reason, "proposal closed");
        Some(json!({ "proposal_id": id, "outcome": outcome, "reason": reason, "tally": p.tally(), "proposal": p.view() }))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn propose(
        &mut self,
        caller: String,
        stream: &str,
        text: String,
        rule: Rule,
        quorum: Option<u32>,
        weights: BTreeMap<String, f64>,
        deadline_s: Option<f64>,
        ctx: &mut Context<Self>,
    ) -> Result<CallReply, RoomError> {
        let created_at = now();
        let deadline = deadline_s.map(|s| Timestamp(created_at.millis().saturating_add((s * 1000.0) as i64)));
        let p = Proposal {
            proposal_id: format!("p-{}", self.state.proposals.len() + 1),
            text,
            rule,
            created_by: caller,
            created_at,
            quorum,
            weights,
            deadline,
            electorate: self.state.members.keys().cloned().collect(),
            votes: BTreeMap::new(),
            closed: None,
        };
        let id = p.proposal_id.clone();
        self.state.proposals.push(p);
        let closed = self.settle(&id, false);
        let durable = self.persist()?;
        let value = self.proposal(&id)?.view();
        self.event(stream, "proposal_created", &value, None);
        if let Some(data) = closed {
            self.event(stream, "proposal_closed", &data, None);
        } else if let Some(s) = deadline_s {
            self.arm(&id, Duration::from_secs_f64(s), ctx);
        }
        Ok(CallReply { value, durable })
    }

    pub(super) fn vote(&mut self, caller: &str, stream: &str, id: &str, vote: Vote) -> Result<CallReply, RoomError> {
        self.require_member(caller)?;
        let p = found(&mut self.state.proposals, |p| p.proposal_id == id, || format!("no proposal {id:?} in this room"))?;
        if p.closed.is_some() {
            return Err(RoomError::ProposalClosed(id.to_owned()));
        }
        if !p.electorate.iter().any(|c| c == caller) {
            return Err(RoomError::NotMember { room: format!("{} (electorate of {id})", self.state.name), client: caller.to_owned() });
        }
        let previous = p.votes.insert(caller.to_owned(), vote);
        let cast = json!({ "proposal_id": id, "client_id": caller, "vote": vote, "previous": previous, "tally": p.tally() });
        let closed = self.settle(id, false);
        let durable = self.persist()?;
        self.event(stream, "vote_cast", &cast, None);
        if let Some(data) = closed {
            self.event(stream, "proposal_closed", &data, None);
        }
        Ok(CallReply { value: self.proposal(id)?.view(), durable })
    }

    /// Arms a proposal's deadline timer.
    pub(super) fn arm(&self, id: &str, after: Duration, ctx: &mut Context<Self>) {
        let id = id.to_owned();
        ctx.run_later(after, move |act, ctx| act.on_deadline(Deadline(id), ctx));
    }

    pub(super) fn on_deadline(&mut self, Deadline(id): Deadline, ctx: &mut Context<Self>) {
        let res = self.guard(ctx, |room, _| {
            if let Some(data) = room.settle(&id, true) {
                room.persist()?;
                let stream = room.state.name.clone();
                room.event(&stream, "proposal_closed", &data, None);
            }
            Ok(())
        });
        if let Err(e) = res {
            error!(actor = Room::NAME, room = %self.state.name, proposal = %id, error = %e, "closing at the deadline failed");
        }
    }
}

/// The item of `items` that `matches`, or `not_found` with the message `missing` builds.
fn found<T>(items: &mut [T], matches: impl Fn(&T) -> bool, missing: impl FnOnce() -> String) -> Result<&mut T, RoomError> {
    items.iter_mut().find(|t| matches(t)).ok_or_else(|| RoomError::NotFound(missing()))
}
