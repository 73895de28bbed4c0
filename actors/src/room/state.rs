//! The room's persistent state: members, channels, questions, proposals and their voting rules,
//! the board and file metadata. Pure data and decisions, no actor: the `Room` actor owns one.

use std::collections::BTreeMap;

use agent_bridge_protocol::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::messages::RoomError;

/// How a proposal is decided (README "Voting rules" says exactly how).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Majority,
    Consensus,
    Veto,
    Weighted,
    Quorum,
}

/// A ballot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    Yes,
    No,
    Abstain,
    Veto,
}

/// A kanban column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    Todo,
    InProgress,
    Review,
    Done,
}

impl Column {
    pub const NAMES: [&'static str; 4] = ["todo", "in_progress", "review", "done"];

    /// Parses a column name; anything else is `bad_column`.
    pub fn parse(s: &str) -> Result<Column, RoomError> {
        match s {
            "todo" => Ok(Column::Todo),
            "in_progress" => Ok(Column::InProgress),
            "review" => Ok(Column::Review),
            "done" => Ok(Column::Done),
            other => Err(RoomError::BadColumn(other.chars().take(64).collect())),
        }
    }
}

/// How a closed proposal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Rejected,
}

/// A member and its role (coordinator, researcher, coder, reviewer, tester, observer, or any text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub role: String,
    pub joined_at: Timestamp,
}

/// A sub-channel (`room/name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    pub created_by: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub text: String,
    pub by: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub question_id: String,
    pub text: String,
    pub asked_by: String,
    pub asked_at: Timestamp,
    pub answers: Vec<Answer>,
}

/// Why and when a proposal closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Closure {
    pub outcome: Outcome,
    /// `decided` (the remaining votes could not change it), `all_voted`, `deadline`, `no_quorum`.
    pub reason: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub proposal_id: String,
    pub text: String,
    pub rule: Rule,
    pub created_by: String,
    pub created_at: Timestamp,
    pub quorum: Option<u32>,
    /// Per-member weights for `weighted` (absent members weigh 1).
    pub weights: BTreeMap<String, f64>,
    pub deadline: Option<Timestamp>,
    /// Who may vote: the members when the proposal opened, less those who left without voting.
    pub electorate: Vec<String>,
    pub votes: BTreeMap<String, Vote>,
    pub closed: Option<Closure>,
}

/// A move of a card between columns (`from` is `None` when the card was added).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardMove {
    pub from: Option<Column>,
    pub to: Column,
    pub by: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    pub card_id: String,
    pub title: String,
    pub description: Option<String>,
    pub assignee: Option<String>,
    pub column: Column,
    pub created_by: String,
    pub created_at: Timestamp,
    pub history: Vec<CardMove>,
}

/// A shared file's metadata; the contents are in the store's `files` tree under `sha256`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    pub file_id: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub uploaded_by: String,
    pub uploaded_at: Timestamp,
}

/// Everything durable about a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomState {
    pub name: String,
    pub topic: Option<String>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub members: BTreeMap<String, Member>,
    pub channels: BTreeMap<String, Channel>,
    pub questions: Vec<Question>,
    pub proposals: Vec<Proposal>,
    pub cards: Vec<Card>,
    pub files: Vec<FileMeta>,
    /// A private room admits (with authentication) only the client ids or patterns in `allow`
    /// (the creator is always there), credentials that name the room, and admins.
    pub private: bool,
    pub allow: Vec<String>,
}

/// Stored in the `rooms` tree; bump the version (with an upgrade) when a field changes.
impl crate::store::Stored for RoomState {
    const WHAT: &'static str = "room";
}

impl RoomState {
    /// A new room whose creator is its first member.
    pub fn new(name: &str, topic: Option<String>, creator: &str, role: String, private: bool, mut allow: Vec<String>) -> Self {
        if private && !allow.iter().any(|a| a == creator) {
            allow.insert(0, creator.to_owned());
        }
        let now = Timestamp::now();
        let mut members = BTreeMap::new();
        members.insert(creator.to_owned(), Member { role, joined_at: now });
        RoomState {
            name: name.to_owned(),
            topic,
            created_by: creator.to_owned(),
            created_at: now,
            members,
            channels: BTreeMap::new(),
            questions: Vec::new(),
            proposals: Vec::new(),
            cards: Vec::new(),
            files: Vec::new(),
            private,
            allow,
        }
    }

    /// The durable facts shown by `room.list` and `room.create`.
    pub fn summary(&self, online: usize) -> Value {
        json!({
            "name": self.name,
            "topic": self.topic,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "members": self.members.len(),
            "online": online,
            "private": self.private,
            "channels": self.channels.keys().map(|c| format!("{}/{c}", self.name)).collect::<Vec<_>>(),
        })
    }
}

/// Counts of a proposal's ballots (veto counted apart) and their weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    pub yes: u32,
    pub no: u32,
    pub abstain: u32,
    pub veto: u32,
    /// Members of the electorate who have not voted.
    pub remaining: u32,
    pub weights: WeightTally,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WeightTally {
    pub yes: f64,
    pub no: f64,
    pub abstain: f64,
    pub veto: f64,
    pub remaining: f64,
    pub total: f64,
}

impl Proposal {
    fn weight(&self, client: &str) -> f64 {
        self.weights.get(client).copied().unwrap_or(1.0)
    }

    /// The current tally over the electorate.
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for c in &self.electorate {
            let w = self.weight(c);
            t.weights.total += w;
            let (count, weight) = match self.votes.get(c) {
                Some(Vote::Yes) => (&mut t.yes, &mut t.weights.yes),
                Some(Vote::No) => (&mut t.no, &mut t.weights.no),
                Some(Vote::Abstain) => (&mut t.abstain, &mut t.weights.abstain),
                Some(Vote::Veto) => (&mut t.veto, &mut t.weights.veto),
                None => (&mut t.remaining, &mut t.weights.remaining),
            };
            *count += 1;
            *weight += w;
        }
        t
    }

    /// The outcome, if it is decided now. `at_deadline`: the deadline has passed, so the votes not
    /// cast will never come. Returns the outcome and the closing reason.
    pub fn decide(&self, at_deadline: bool) -> Option<(Outcome, &'static str)> {
        use Outcome::{Passed, Rejected};
        let t = self.tally();
        let r = t.remaining;
        let final_ = at_deadline || r == 0;
        let reason = if at_deadline { "deadline" } else if r == 0 { "all_voted" } else { "decided" };
        // `no` for the rules where a veto is just a strong no.
        let no = t.no + t.veto;
        let outcome = match self.rule {
            Rule::Majority => {
                if t.yes > no + r {
                    Some(Passed)
                } else if t.yes + r <= no || final_ {
                    Some(if t.yes > no { Passed } else { Rejected })
                } else {
                    None
                }
            }
            Rule::Consensus => {
                if t.no + t.veto > 0 {
                    Some(Rejected)
                } else if t.yes as usize == self.electorate.len() {
                    Some(Passed)
                } else {
                    final_.then_some(Rejected)
                }
            }
            Rule::Veto => {
                if t.veto > 0 {
                    Some(Rejected)
                } else {
                    final_.then_some(Passed)
                }
            }
            Rule::Weighted => {
                let w = t.weights;
                let half = w.total / 2.0;
                if w.yes > half {
                    Some(Passed)
                } else if w.yes + w.remaining <= half || final_ {
                    Some(Rejected)
                } else {
                    None
                }
            }
            Rule::Quorum => {
                let q = self.quorum.unwrap_or(1);
                let cast = t.yes + t.no + t.abstain + t.veto;
                if cast + r < q || (final_ && cast < q) {
                    return Some((Rejected, "no_quorum"));
                }
                if cast >= q && t.yes > no + r {
                    Some(Passed)
                } else if t.yes + r <= no || final_ {
                    Some(if t.yes > no { Passed } else { Rejected })
                } else {
                    None
                }
            }
        };
        outcome.map(|o| (o, reason))
    }

    /// The JSON view: the stored fields plus status and tally.
    pub fn view(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("status".into(), json!(if self.closed.is_some() { "closed" } else { "open" }));
            m.insert("outcome".into(), json!(self.closed.as_ref().map(|c| c.outcome)));
            m.insert("tally".into(), json!(self.tally()));
        }
        v
    }
}

pub(crate) fn question_view(q: &Question) -> Value {
    let mut v = serde_json::to_value(q).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("open".into(), json!(q.answers.is_empty()));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------
