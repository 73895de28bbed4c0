//! The table of calls (PROTOCOL.md section 4): every `room.*`, `channel.*`, `question.*`,
//! `proposal.*`, `board.*`, `file.*`, `desktop.*` and `github.*` call declared once, in [`calls!`] — its name, the
//! permission it needs, whether it also works on a sub-channel, its MCP tool, its description, its
//! typed parameters (serde for the wire, `utoipa::ToSchema` for the JSON Schema) and the handler
//! that checks them and builds the room operation.
//!
//! Everything else is derived from [`CALLS`]: the permission check and `GET /api/call`'s
//! read-only rule ([`Spec::access`]), the dispatch of `call` frames and `POST /api/call`
//! ([`parse_call`]), the MCP tool list (`src/cli/mcp/tools.rs`), the OpenAPI description of
//! `/api/call` (`src/http/openapi.rs`) and `agent-bridge call --list` (`src/cli/call.rs`).
//!
//! Adding a call: a params struct below, a handler that turns it into a [`RoomOp`] (or a
//! registry message), one row in [`calls!`], and the operation's arm in `room/calls.rs` if it is a
//! new [`RoomOp`]. Plus its tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agent_bridge_protocol::ids::MAX_ID_LEN;
use agent_bridge_protocol::Payload;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::checks::{file_name, parse, rule, stream_name, text, upload_op, vote, MAX_DEADLINE_S, MAX_HISTORY, MAX_SHORT, MAX_TEXT};
use super::agent_calls::*;
use super::call_params::*;
use super::managed_calls::{self, CodeParams, ExecuteParams, ManagedNameParams, SpawnParams};
use super::requests::CreateRoom;
pub use super::access::{Access, Spec};
use crate::auth::Identity;
use crate::messages::github::IssueSource;
use crate::messages::Prompt;
use crate::room::{Column, JoinLink, RoomError, RoomOp, RoomsConfig, Rule};

/// The call named `name`.
pub fn find(name: &str) -> Option<&'static Spec> {
    CALLS.iter().find(|s| s.name == name)
}

/// The call an MCP tool makes.
pub fn by_tool(tool: &str) -> Option<&'static Spec> {
    CALLS.iter().find(|s| s.tool == tool)
}

/// `thread.get`.
#[derive(Deserialize, ToSchema)]
pub struct ThreadParams {
    /// The thread (1 to 256 bytes).
    pub thread_id: String,
    /// At most this many messages (default 100, at most 1000).
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The previous page's next_cursor.
    pub cursor: Option<String>,
}

fn thread(p: ThreadParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    if p.thread_id.is_empty() || p.thread_id.len() > 256 || p.thread_id.contains('\0') {
        return Err(RoomError::InvalidParams("thread_id must be 1 to 256 bytes without NUL".into()));
    }
    let limit = p.limit.unwrap_or(crate::threads::DEFAULT_THREAD_PAGE);
    Ok(Parsed::Thread(crate::threads::ThreadQuery { thread_id: p.thread_id, limit, cursor: p.cursor }))
}

fn schema_of<P: ToSchema>() -> Value {
    serde_json::to_value(P::schema()).unwrap_or_default()
}

/// What a handler gets besides the params.
pub(super) struct Cx<'a> {
    pub config: &'a RoomsConfig,
    /// The calling WebSocket session (`room.join` links it to the room's live traffic).
    pub link: Option<JoinLink>,
    pub identity: Option<Arc<Identity>>,
}

/// What a parsed call does.
pub(super) enum Parsed {
    Create(CreateRoom),
    List { limit: Option<usize>, cursor: Option<String> },
    /// `thread.get`: read from the store's thread index, not from one room.
    Thread(crate::threads::ThreadQuery),
    /// `history.search`: answered from the search index.
    Search(crate::search::SearchQuery),
    /// A room operation; `download` adds the file's contents to the metadata.
    Room { stream: String, op: RoomOp, download: bool },
    /// `desktop.prompt`, for the desktop controller.
    Desktop(Prompt),
    /// `agent.*`, `pool.*`, `task.*`, for the agent registry.
    Agent(crate::messages::AgentOp),
    /// `github.issue`: the card or proposal is read in the room, then handed to the GitHub actor.
    GitHub { room: String, source: IssueSource, labels: Vec<String> },
    /// Managed CLI agents and `code.run`, for the `managed` registry.
    Managed(crate::messages::ManagedOp),
}

fn agent_spawn(p: SpawnParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    Ok(Parsed::Managed(managed_calls::spawn(p)?))
}

fn agent_execute(p: ExecuteParams, cx: Cx<'_>) -> Result<Parsed, RoomError> {
    Ok(Parsed::Managed(managed_calls::execute(p, cx.link)?))
}

fn agent_stop(p: ManagedNameParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    Ok(Parsed::Managed(managed_calls::stop(p)?))
}

fn agent_managed(_: NoParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    Ok(Parsed::Managed(crate::messages::ManagedOp::List))
}

fn code_run(p: CodeParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    Ok(Parsed::Managed(managed_calls::code(p)?))
}

/// The handler of every agent, pool and task call: its params build the registry's operation.
fn agent<P: AgentParams>(p: P, _: Cx<'_>) -> Result<Parsed, RoomError> {
    Ok(Parsed::Agent(p.op()?))
}

/// Declares the calls: the [`CALLS`] table and the [`parse`] dispatch, from one row per call.
macro_rules! calls {
    ($( $name:literal => $params:ty, $handler:path {
        access: $access:ident, channels: $channels:literal, tool: $tool:literal, title: $title:literal, doc: $doc:literal $(,)?
    } )*) => {
        /// Every call, in the order of PROTOCOL.md section 4.
        pub static CALLS: &[Spec] = &[$(
            Spec { name: $name, access: Access::$access, on_channels: $channels, tool: $tool, title: $title, doc: $doc, schema: schema_of::<$params> },
        )*];

        /// Checks the params of `method` and builds what it does (`unknown_method` for a name
        /// not in the table).
        pub(super) fn parse_call(method: &str, params: &Payload, cx: Cx<'_>) -> Result<Parsed, RoomError> {
            match method {
                $( $name => $handler(parse::<$params>(params)?, cx), )*
                other => Err(RoomError::UnknownMethod(other.chars().take(64).collect())),
            }
        }
    };
}

calls! {
    "room.create" => CreateParams, create {
        access: Write, channels: false, tool: "create_room", title: "Create a room",
        doc: "Create a room where several agents talk together; the caller becomes its first member. Answers the room.",
    }
    "room.list" => ListParams, list {
        access: Read, channels: false, tool: "list_rooms", title: "List rooms",
        doc: "A page of the rooms the caller may join, in name order: {count, rooms, next_cursor}.",
    }
    "room.join" => JoinParams, join {
        access: Membership, channels: true, tool: "join_room", title: "Join a room",
        doc: "Join a room: its messages then arrive in read_messages, and send_message with room reaches its members. Rejoined automatically after a reconnect.",
    }
    "room.leave" => RoomParams, leave {
        access: Membership, channels: true, tool: "leave_room", title: "Leave a room",
        doc: "Stop being a member of a room (on a channel: stop following it). Answers {room, left, member}.",
    }
    "room.members" => RoomParams, members {
        access: Read, channels: true, tool: "room_members", title: "Room members",
        doc: "Who is in a room, with their roles and presence.",
    }
    "room.history" => HistoryParams, history {
        access: Read, channels: true, tool: "room_history", title: "Room history",
        doc: "The messages of a room, oldest first: {room, count, messages, next_since, last_seq}.",
    }
    "room.topic" => TopicParams, topic {
        access: Write, channels: false, tool: "room_topic", title: "Room topic",
        doc: "Set a room's topic (with topic) or read it (without): {room, topic, changed}. Members are told with a topic_changed event.",
    }
    "channel.create" => ChannelParams, channel {
        access: Write, channels: false, tool: "create_channel", title: "Create a sub-channel",
        doc: "Create a sub-channel room/name of a room: it carries messages of its own.",
    }
    "question.ask" => AskParams, ask {
        access: Write, channels: false, tool: "ask_room", title: "Ask the room a question",
        doc: "Ask the room a question; answers the question {question_id, text, asked_by, asked_at, answers}.",
    }
    "question.answer" => AnswerParams, answer {
        access: Write, channels: false, tool: "answer_question", title: "Answer a room question",
        doc: "Answer a question asked in the room; answers the question with its answers.",
    }
    "question.list" => QuestionsParams, questions {
        access: Read, channels: false, tool: "list_questions", title: "Room questions",
        doc: "The room's questions (only the unanswered ones with open): {room, questions}.",
    }
    "proposal.create" => ProposeParams, propose {
        access: Write, channels: false, tool: "create_proposal", title: "Propose a decision",
        doc: "Put a proposal to the room's members under a voting rule; answers the proposal.",
    }
    "proposal.vote" => VoteParams, vote_on {
        access: Write, channels: false, tool: "vote", title: "Vote on a proposal",
        doc: "Vote yes, no, abstain or veto on an open proposal; answers the proposal with its tally.",
    }
    "proposal.get" => ProposalParams, proposal {
        access: Read, channels: false, tool: "get_proposal", title: "A proposal",
        doc: "One proposal (with proposal_id), or every proposal of the room: {room, proposals}.",
    }
    "proposal.list" => ProposalParams, proposal {
        access: Read, channels: false, tool: "list_proposals", title: "Room proposals",
        doc: "Every proposal of the room: {room, proposals} (or one, with proposal_id).",
    }
    "board.add" => CardParams, board_add {
        access: Write, channels: false, tool: "add_card", title: "Add a board card",
        doc: "Add a card to the room's task board; answers the card.",
    }
    "board.move" => MoveParams, board_move {
        access: Write, channels: false, tool: "move_card", title: "Move a board card",
        doc: "Move a card to another column (todo, in_progress, review, done); answers the card with its history.",
    }
    "board.list" => RoomParams, board_list {
        access: Read, channels: false, tool: "list_cards", title: "The room's board",
        doc: "The room's task board: {room, columns, cards}.",
    }
    "file.upload" => UploadParams, upload {
        access: Write, channels: false, tool: "upload_file", title: "Share a file",
        doc: "Share a file with the room (its contents in base64); answers {file_id, name, size, sha256, uploaded_by, uploaded_at}.",
    }
    "file.download" => DownloadParams, download {
        access: Read, channels: false, tool: "download_file", title: "Download a file",
        doc: "A shared file by id (or the newest of that name): its metadata and content_base64.",
    }
    "file.list" => RoomParams, file_list {
        access: Read, channels: false, tool: "list_files", title: "The room's files",
        doc: "The files shared in the room: {room, files}.",
    }
    "desktop.prompt" => PromptParams, desktop_prompt {
        access: Write, channels: false, tool: "desktop_prompt", title: "Prompt the desktop app",
        doc: "Put a prompt into the desktop app's window (Claude Desktop), submit it and answer its reply read back through the clipboard: {response}.",
    }
    "agent.register" => RegisterParams, agent {
        access: Write, channels: false, tool: "register_agent", title: "Register as an agent",
        doc: "Register the caller as an agent: capabilities, pools (messages to pool:NAME reach one healthy member), weight. Answers the agent.",
    }
    "agent.status" => StatusParams, agent {
        access: Write, channels: false, tool: "agent_status", title: "Report the agent's status",
        doc: "Say what the caller is doing (idle, working, stuck, completed) with a detail; an agent working without progress becomes stuck.",
    }
    "agent.list" => AgentListParams, agent {
        access: Read, channels: false, tool: "list_agents", title: "List agents",
        doc: "The registered agents, filtered by pool, capability or status: {count, agents}.",
    }
    "agent.spawn" => SpawnParams, agent_spawn {
        access: Admin, channels: false, tool: "spawn_agent", title: "Start a managed CLI agent",
        doc: "Start a managed CLI agent from a command template of the broker's configuration (default: claude -p {prompt} --output-format json), with a working directory, environment and timeout. Needs admin. Answers {name, spawned}.",
    }
    "agent.execute" => ExecuteParams, agent_execute {
        access: Write, channels: false, tool: "execute_agent", title: "Run a prompt through a managed agent",
        doc: "Run a prompt through a managed agent (one process per prompt): its stdout lines arrive as command_progress events, the answer is {agent, format, result, exit_code, stderr, truncated, attempts, duration_ms} with result parsed as JSON when the output is JSON. Crashes are retried with backoff; timeout, circuit_open, agent_failed on failure.",
    }
    "agent.stop" => ManagedNameParams, agent_stop {
        access: Admin, channels: false, tool: "stop_agent", title: "Stop a managed agent",
        doc: "Stop a managed agent: its running processes are ended (SIGTERM, then SIGKILL). Needs admin. Answers {name, stopped}.",
    }
    "agent.managed" => NoParams, agent_managed {
        access: Read, channels: false, tool: "list_managed_agents", title: "List managed agents",
        doc: "The managed CLI agents with their template, circuit state and figures: {count, agents}.",
    }
    "code.run" => CodeParams, code_run {
        access: Write, channels: false, tool: "run_code", title: "Run code in the sandbox",
        doc: "Run python, javascript (node) or bash code in the broker's sandbox (off unless enabled: disabled) with CPU, memory, process, file-size and output limits and a wall-clock timeout: {exit_code, signal, stdout, stderr, truncated, timed_out, duration_ms, network_isolated}.",
    }
    "pool.configure" => PoolConfigureParams, agent {
        access: Write, channels: false, tool: "configure_pool", title: "Configure a pool",
        doc: "Set a pool's strategy (round_robin, least_loaded, fastest, random, weighted, sticky) at run time: {pool, strategy}.",
    }
    "pool.list" => NoParams, agent {
        access: Read, channels: false, tool: "list_pools", title: "List pools",
        doc: "Every pool with its strategy, healthy members and their statistics, open circuits and unacked messages: {count, pools}.",
    }
    "task.assign" => AssignParams, agent {
        access: Write, channels: false, tool: "assign_task", title: "Assign a task",
        doc: "Give a task to an agent or a pool (one member is picked); the assignee gets a task message, the caller task_updated messages. Answers the task.",
    }
    "task.update" => UpdateParams, agent {
        access: Write, channels: false, tool: "update_task", title: "Update a task",
        doc: "The assignee reports a task's state (working, input-required, completed, failed, rejected), progress or result. Answers the task.",
    }
    "task.get" => TaskParams, agent {
        access: Read, channels: false, tool: "get_task", title: "A task",
        doc: "One task the caller assigned or was assigned.",
    }
    "task.list" => TaskListParams, agent {
        access: Read, channels: false, tool: "list_tasks", title: "List tasks",
        doc: "The caller's tasks (assigned by or to it), newest first, filtered by assignee, state or assigner: {count, tasks}.",
    }
    "task.cancel" => CancelParams, agent {
        access: Write, channels: false, tool: "cancel_task", title: "Cancel a task",
        doc: "The assigner cancels an unfinished task; the assignee gets a task_canceled message. Answers the task.",
    }
    "github.issue" => IssueParams, github_issue {
        access: Write, channels: false, tool: "github_issue", title: "Open a GitHub issue",
        doc: "Open an issue in the room's GitHub repository from a board card (card_id) or a decision (proposal_id of a closed proposal), and post its link into the room: {room, repo, number, html_url, card_id | proposal_id, message_seq}. Moves of the card become comments on the issue.",
    }
    "thread.get" => ThreadParams, thread {
        access: Read, channels: false, tool: "get_thread", title: "A conversation thread",
        doc: "The messages of a thread the caller may read (its inbox, its own sends, rooms it is a member of), oldest first: {thread_id, count, messages, next_cursor}.",
    }
    "history.search" => crate::search::SearchParams, search {
        access: Read, channels: false, tool: "search_messages", title: "Search message history",
        doc: "Full-text search (BM25-ranked) over the messages the caller may read: its inbox, its own sends, rooms it is a member of. Query syntax: terms, \"phrases\", AND, OR, -term, field:term (text, type, from, thread). Answers {query, count, results: [{score, message}], next_cursor}.",
    }
}

fn search(p: crate::search::SearchParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    Ok(Parsed::Search(p.check()?))
}

// ---------------------------------------------------------------------------------------------
// Params and handlers, in table order
// ---------------------------------------------------------------------------------------------

/// Only the room.
#[derive(Deserialize, ToSchema)]
pub struct RoomParams {
    /// Room name: "name" or "name/channel".
    pub room: String,
}

/// A room operation on the room (or channel) of the params.
fn on(room: &str, op: RoomOp) -> Result<Parsed, RoomError> {
    Ok(Parsed::Room { stream: stream_name(room)?, op, download: false })
}

/// `room.create`.
#[derive(Deserialize, ToSchema)]
pub struct CreateParams {
    /// The room's name (letters, digits, `-`, `_`, `.`; no `/`).
    pub name: String,
    /// What the room is for.
    pub topic: Option<String>,
    /// The creator's role (default coordinator).
    pub role: Option<String>,
    /// Only the creator and `allow` may join (and see) the room.
    #[serde(default)]
    pub private: bool,
    /// Client ids or patterns (`team-*`) a private room admits.
    #[serde(default)]
    pub allow: Vec<String>,
}

fn create(p: CreateParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    if p.name.contains('/') {
        return Err(RoomError::InvalidParams("a room name has no '/'; use channel.create for sub-channels".into()));
    }
    Ok(Parsed::Create(CreateRoom {
        name: stream_name(&p.name)?,
        topic: p.topic.map(|t| text("topic", t, MAX_SHORT)).transpose()?,
        role: text("role", p.role.unwrap_or_else(|| "coordinator".into()), 64)?,
        private: p.private,
        allow: p.allow.into_iter().map(|a| text("allow", a, MAX_ID_LEN)).collect::<Result<_, _>>()?,
        caller: String::new(), // set by `RoomsHandle::call`
    }))
}

/// `room.list`.
#[derive(Deserialize, ToSchema)]
pub struct ListParams {
    /// Rooms per page (default 100, at most 1000).
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The previous page's next_cursor.
    pub cursor: Option<String>,
}

fn list(p: ListParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    Ok(Parsed::List { limit: p.limit, cursor: p.cursor })
}

/// `room.join`.
#[derive(Deserialize, ToSchema)]
pub struct JoinParams {
    /// Room name: "name" or "name/channel".
    pub room: String,
    /// Your role in the room (optional).
    pub role: Option<String>,
    /// Replay the room's messages after this room seq.
    pub since: Option<u64>,
}

fn join(p: JoinParams, cx: Cx<'_>) -> Result<Parsed, RoomError> {
    let role = p.role.map(|r| text("role", r, 64)).transpose()?;
    on(&p.room, RoomOp::Join { role, since: p.since, link: cx.link, identity: cx.identity })
}

fn leave(p: RoomParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    on(&p.room, RoomOp::Leave)
}

fn members(p: RoomParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    on(&p.room, RoomOp::Members)
}

/// `room.history`.
#[derive(Deserialize, ToSchema)]
pub struct HistoryParams {
    /// Room name: "name" or "name/channel".
    pub room: String,
    /// Only messages after this room seq.
    pub since: Option<u64>,
    /// At most this many messages (default 100, at most 1000).
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Only the messages of this thread (limit still counts the messages read; page with next_since).
    pub thread_id: Option<String>,
}

fn history(p: HistoryParams, cx: Cx<'_>) -> Result<Parsed, RoomError> {
    let (since, limit) = (p.since.unwrap_or(0), p.limit.unwrap_or(100).clamp(1, MAX_HISTORY));
    on(&p.room, RoomOp::History { since, limit, identity: cx.identity, thread_id: p.thread_id })
}

/// `room.topic`.
#[derive(Deserialize, ToSchema)]
pub struct TopicParams {
    /// The room (not a channel).
    pub room: String,
    /// The new topic (1 to 1024 characters); leave it out to read the topic.
    pub topic: Option<String>,
}

fn topic(p: TopicParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    let topic = p.topic.map(|t| text("topic", t, MAX_SHORT)).transpose()?;
    on(&p.room, RoomOp::Topic { topic })
}

/// `channel.create`.
#[derive(Deserialize, ToSchema)]
pub struct ChannelParams {
    /// The room (not a channel).
    pub room: String,
    /// The sub-channel's name: the channel is room/name.
    pub name: String,
}

fn channel(p: ChannelParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    let parent = stream_name(&p.room)?;
    if parent.contains('/') {
        return Err(RoomError::InvalidParams("channels are created in a room, not in a channel".into()));
    }
    stream_name(&format!("{parent}/{}", p.name))?;
    on(&parent, RoomOp::ChannelCreate { name: p.name })
}

/// `question.ask`.
#[derive(Deserialize, ToSchema)]
pub struct AskParams {
    /// The room (not a channel).
    pub room: String,
    /// The question (at most 64 KiB of text).
    pub text: String,
}

fn ask(p: AskParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    on(&p.room, RoomOp::Ask { text: text("text", p.text, MAX_TEXT)? })
}

/// `question.answer`.
#[derive(Deserialize, ToSchema)]
pub struct AnswerParams {
    /// The room (not a channel).
    pub room: String,
    /// The question (q-1, q-2 …).
    pub question_id: String,
    /// The answer (at most 64 KiB of text).
    pub text: String,
}

fn answer(p: AnswerParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    on(&p.room, RoomOp::Answer { question_id: p.question_id, text: text("text", p.text, MAX_TEXT)? })
}

/// `question.list`.
#[derive(Deserialize, ToSchema)]
pub struct QuestionsParams {
    /// The room (not a channel).
    pub room: String,
    /// Only the questions without an answer.
    pub open: Option<bool>,
}

fn questions(p: QuestionsParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    on(&p.room, RoomOp::Questions { open_only: p.open.unwrap_or(false) })
}

/// `proposal.create`.
#[derive(Deserialize, ToSchema)]
pub struct ProposeParams {
    /// The room (not a channel).
    pub room: String,
    /// What is proposed.
    pub text: String,
    /// majority, consensus, veto, weighted or quorum.
    pub rule: String,
    /// Votes needed (rule quorum, at least 1).
    pub quorum: Option<u32>,
    /// Weight per client id (rule weighted), finite and ≥ 0.
    pub weights: Option<BTreeMap<String, f64>>,
    /// Close the proposal after this many seconds (at most 30 days).
    pub deadline_s: Option<f64>,
}

fn propose(p: ProposeParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    let rule = rule(&p.rule)?;
    if rule == Rule::Quorum && p.quorum.is_none_or(|q| q < 1) {
        return Err(RoomError::InvalidParams("rule quorum needs quorum: the number of votes (at least 1)".into()));
    }
    let weights = p.weights.unwrap_or_default();
    if weights.values().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(RoomError::InvalidParams("weights are finite numbers ≥ 0".into()));
    }
    if p.deadline_s.is_some_and(|d| !(d > 0.0 && d <= MAX_DEADLINE_S)) {
        return Err(RoomError::InvalidParams("deadline_s is a number of seconds, above 0 and at most 30 days".into()));
    }
    let text = text("text", p.text, MAX_TEXT)?;
    on(&p.room, RoomOp::Propose { text, rule, quorum: p.quorum, weights, deadline_s: p.deadline_s })
}

/// `proposal.vote`.
#[derive(Deserialize, ToSchema)]
pub struct VoteParams {
    /// The room (not a channel).
    pub room: String,
    /// The proposal (p-1, p-2 …).
    pub proposal_id: String,
    /// yes, no, abstain or veto.
    pub vote: String,
}

fn vote_on(p: VoteParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    on(&p.room, RoomOp::Vote { proposal_id: p.proposal_id, vote: vote(&p.vote)? })
}

/// `proposal.get` and `proposal.list`.
#[derive(Deserialize, ToSchema)]
pub struct ProposalParams {
    /// The room (not a channel).
    pub room: String,
    /// One proposal; without it, all of them.
    pub proposal_id: Option<String>,
}

fn proposal(p: ProposalParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    on(&p.room, RoomOp::ProposalGet { proposal_id: p.proposal_id })
}

/// `board.add`.
#[derive(Deserialize, ToSchema)]
pub struct CardParams {
    /// The room (not a channel).
    pub room: String,
    /// The card's title (1 to 1024 characters).
    pub title: String,
    /// Details (at most 64 KiB of text).
    pub description: Option<String>,
    /// Who does it.
    pub assignee: Option<String>,
    /// todo (default), in_progress, review or done.
    pub column: Option<String>,
}

fn board_add(p: CardParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    let op = RoomOp::BoardAdd {
        title: text("title", p.title, MAX_SHORT)?,
        description: p.description.map(|d| text("description", d, MAX_TEXT)).transpose()?,
        assignee: p.assignee.map(|a| text("assignee", a, MAX_SHORT)).transpose()?,
        column: p.column.as_deref().map_or(Ok(Column::Todo), Column::parse)?,
    };
    on(&p.room, op)
}

/// `board.move`.
#[derive(Deserialize, ToSchema)]
pub struct MoveParams {
    /// The room (not a channel).
    pub room: String,
    /// The card (card-1, card-2 …).
    pub card_id: String,
    /// todo, in_progress, review or done.
    pub column: String,
}

fn board_move(p: MoveParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    on(&p.room, RoomOp::BoardMove { card_id: p.card_id, column: Column::parse(&p.column)? })
}

fn board_list(p: RoomParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    on(&p.room, RoomOp::BoardList)
}

/// `file.upload`.
#[derive(Deserialize, ToSchema)]
pub struct UploadParams {
    /// The room (not a channel).
    pub room: String,
    /// The file's name (no slashes).
    pub name: String,
    /// The contents, base64 (standard alphabet).
    pub content_base64: String,
}

fn upload(p: UploadParams, cx: Cx<'_>) -> Result<Parsed, RoomError> {
    // The decoded size is known before decoding: refuse oversized files without the work.
    let approx = p.content_base64.len() / 4 * 3;
    let limit = cx.config.max_file_bytes;
    if approx > limit.saturating_add(3) {
        return Err(RoomError::TooLarge { size: approx, limit });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(p.content_base64.trim())
        .map_err(|e| RoomError::InvalidParams(format!("content_base64: {e}")))?;
    on(&p.room, upload_op(limit, file_name(p.name)?, bytes)?)
}

fn download(p: DownloadParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    let file = p.file_id.or(p.name).ok_or_else(|| RoomError::InvalidParams("file_id (or name) is required".into()))?;
    Ok(Parsed::Room { stream: stream_name(&p.room)?, op: RoomOp::FileMeta { file }, download: true })
}

fn file_list(p: RoomParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    on(&p.room, RoomOp::FileList)
}

fn desktop_prompt(p: PromptParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    if p.timeout_s.is_some_and(|t| !(1..=3600).contains(&t)) {
        return Err(RoomError::InvalidParams("timeout_s must be between 1 and 3600".into()));
    }
    let (window, timeout) = (p.window.map(|w| text("window", w, MAX_SHORT)).transpose()?, p.timeout_s.map(Duration::from_secs));
    Ok(Parsed::Desktop(Prompt { text: text("text", p.text, MAX_TEXT)?, window, timeout }))
}

fn github_issue(p: IssueParams, _: Cx<'_>) -> Result<Parsed, RoomError> {
    let source = match (p.card_id, p.proposal_id) {
        (Some(card), None) => IssueSource::Card(text("card_id", card, MAX_SHORT)?),
        (None, Some(proposal)) => IssueSource::Proposal(text("proposal_id", proposal, MAX_SHORT)?),
        _ => return Err(RoomError::InvalidParams("give card_id or proposal_id (one of them)".into())),
    };
    if p.labels.len() > 10 {
        return Err(RoomError::InvalidParams("at most 10 labels".into()));
    }
    let labels = p.labels.into_iter().map(|l| text("labels", l, 50)).collect::<Result<_, _>>()?;
    Ok(Parsed::GitHub { room: stream_name(&p.room)?, source, labels })
}

#[cfg(test)]
mod tests;
