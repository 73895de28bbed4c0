//! `GET /openapi.json`: an OpenAPI 3.1 description of the HTTP API (utoipa), for client
//! generators and for the property-based HTTP fuzzer (schemathesis, see `fuzz/http.sh`).
//!
//! The operations are described here, next to one another, with stub functions carrying the
//! `#[utoipa::path]` attributes, rather than on the handlers: the handlers stay short, and
//! tests/openapi.rs checks that every registered route is described. The schemas mirror the wire
//! types of the protocol crate (which stays free of utoipa). The long-poll limit (`wait`) is the
//! running server's `long_poll_max_s`.

// The stub functions and schema structs exist only for their utoipa attributes.
#![allow(dead_code)]

use std::sync::OnceLock;

use actix_web::{web, HttpResponse};
use agent_bridge_actors::rooms::calls::CALLS;
use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::keys::{CreateKeyRequest, KeyGrant, KeyUsage, KeyView};
use super::AppState;

/// Every error body.
#[derive(ToSchema)]
pub struct ErrorBody {
    /// Human-readable; may change between versions.
    error: String,
    /// Machine-readable and stable: `bad_request`, `bad_frame`, `unauthorized`, `forbidden`,
    /// `rate_limited`, `too_large`, `not_found`, ...
    code: String,
    /// With `rate_limited`: seconds to wait (also the `Retry-After` header).
    retry_after: Option<u64>,
}

/// `POST /api/send`.
#[derive(ToSchema)]
pub struct SendBody {
    /// The sender: a client id the credentials allow (optional when they name exactly one).
    #[schema(pattern = r"^[A-Za-z0-9._@:-]{1,128}$")]
    from: Option<String>,
    /// A client id, `all`, or `pool:<name>` (or give `room`).
    to: Option<String>,
    /// A room, `room` or `room/channel` (or give `to`).
    room: Option<String>,
    /// The application message type (`msg_type` is accepted too).
    #[schema(rename = "type", min_length = 1, max_length = 64)]
    r#type: String,
    /// Any JSON value; required (`null` is a value), as in the WebSocket `send` frame.
    payload: Value,
    /// `critical`, `high`, `normal`, `low`, `bulk` (or 1, 3, 5, 7, 9).
    priority: Option<String>,
    /// Time to live in seconds.
    ttl: Option<u64>,
    require_ack: Option<bool>,
    correlation_id: Option<String>,
    idempotency_key: Option<String>,
    /// false: to online recipients only, never stored.
    persist: Option<bool>,
}

/// Answer of `POST /api/send`.
#[derive(ToSchema)]
pub struct SendAnswer {
    /// As in the WebSocket `sent` frame: `queued`, `delivered`, `duplicate` or `dropped` (`persist: false` nobody took).
    status: String,
    message_id: String,
    seq: Option<u64>,
    recipients: u32,
}

/// `POST /api/send_batch`.
#[derive(ToSchema)]
pub struct SendBatchBody {
    /// `POST /api/send` bodies, sent in order; each is decoded and checked on its own.
    #[schema(min_items = 1, max_items = 1000)]
    messages: Vec<SendBody>,
}

/// One entry's outcome in `POST /api/send_batch`: accepted (`status`, `message_id`, `seq`,
/// `outcome`, `recipients`) or refused (`code`, `error`, `retry_after`).
#[derive(ToSchema)]
pub struct BatchResultDoc {
    /// The entry's position in `messages`, from 0.
    index: u32,
    /// The entry's `ref`, when it had one.
    r#ref: Option<String>,
    /// `sent`, or `duplicate` (its `idempotency_key` was seen before); absent when refused.
    status: Option<String>,
    message_id: Option<String>,
    seq: Option<u64>,
    /// As `POST /api/send`'s `status`: `queued`, `delivered`, `duplicate` or `dropped`.
    outcome: Option<String>,
    recipients: Option<u32>,
    /// Why the entry was refused, as `POST /api/send` would have answered it.
    code: Option<String>,
    error: Option<String>,
    retry_after: Option<u64>,
}

/// Answer of `POST /api/send_batch`.
#[derive(ToSchema)]
pub struct SendBatchAnswer {
    /// `sent_batch`.
    status: String,
    /// One per entry, in order.
    results: Vec<BatchResultDoc>,
}

/// A routed message (PROTOCOL.md section 1).
#[derive(ToSchema)]
pub struct MessageDoc {
    id: String,
    seq: u64,
    from: String,
    to: Option<String>,
    room: Option<String>,
    #[schema(rename = "type")]
    r#type: String,
    payload: Value,
    timestamp: String,
    priority: String,
    requires_ack: bool,
    correlation_id: Option<String>,
    expires_at: Option<String>,
}

/// Answer of `GET /api/messages`.
#[derive(ToSchema)]
pub struct MessagesAnswer {
    count: u64,
    messages: Vec<MessageDoc>,
    /// Pass as `since` next time.
    next_since: u64,
}

/// `POST /api/ack`.
#[derive(ToSchema)]
pub struct AckBody {
    #[schema(pattern = r"^[A-Za-z0-9._@:-]{1,128}$")]
    client_id: String,
    #[schema(max_items = 1000)]
    message_ids: Vec<String>,
}

/// `POST /api/call`.
#[derive(ToSchema)]
pub struct CallBody {
    /// `noun.verb` (PROTOCOL.md section 4).
    method: String,
    params: Option<Value>,
    r#ref: Option<String>,
    /// The caller: a client id the credentials allow.
    from: Option<String>,
}

/// `POST /admin/fault`.
#[derive(ToSchema)]
pub struct FaultBody {
    actor: String,
}

const OK_JSON: &str = "JSON answer";

#[utoipa::path(get, path = "/ws/{client_id}", tag = "messaging",
    params(("client_id" = String, Path, description = "The client id to act as"),
           ("since" = Option<u64>, Query, description = "Resume after this inbox seq"),
           ("types" = Option<String>, Query, description = "Comma-separated message types"),
           ("encoding" = Option<String>, Query, description = "json (default) or bincode"),
           ("token" = Option<String>, Query, description = "Credentials for browsers")),
    responses((status = 101, description = "WebSocket upgrade; frames as in PROTOCOL.md section 2")))]
fn ws() {}

#[utoipa::path(post, path = "/api/send", tag = "messaging", request_body = SendBody,
    responses((status = 200, description = OK_JSON, body = SendAnswer)))]
fn send() {}

#[utoipa::path(post, path = "/api/send_batch", tag = "messaging", request_body = SendBatchBody,
    responses((status = 200, description = OK_JSON, body = SendBatchAnswer),
              (status = 413, description = "`batch_too_large`: over 1000 messages or a body over 1 MiB", body = ErrorBody)))]
fn send_batch() {}

#[utoipa::path(get, path = "/api/messages", tag = "messaging",
    params(("to" = Option<String>, Query, description = "The inbox to read (may be left out with credentials bound to one client id)"),
           ("since" = Option<String>, Query, description = "An integer below 10^11 is a seq; a decimal number below 10^11 unix seconds; a number from 10^11 on unix milliseconds; else an RFC 3339 time"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000),
           ("wait" = Option<f64>, Query, minimum = 0, maximum = 60, description = "Long-poll seconds")),
    responses((status = 200, description = OK_JSON, body = MessagesAnswer)))]
fn messages() {}

#[utoipa::path(post, path = "/api/ack", tag = "messaging", request_body = AckBody,
    responses((status = 200, description = "`{acked}`")))]
fn ack() {}

#[utoipa::path(get, path = "/api/status", tag = "messaging", responses((status = 200, description = OK_JSON)))]
fn status() {}

#[utoipa::path(post, path = "/api/call", tag = "rooms", request_body = CallBody,
    responses((status = 200, description = "`{ok, ref, result}`"),
              (status = 502, description = "`github.issue`: GitHub refused the request (`github_unauthorized`, `github_forbidden`, `github_not_found`, `github_unprocessable`, `github_error`, `github_unreachable`)", body = ErrorBody)))]
fn call() {}

#[utoipa::path(get, path = "/api/call", tag = "rooms",
    params(("method" = String, Query), ("params" = Option<String>, Query, description = "JSON text"),
           ("from" = Option<String>, Query), ("client_id" = Option<String>, Query)),
    responses((status = 200, description = "`{ok, ref, result}`"),
              (status = 405, description = "`method_not_allowed`: the call changes state; use POST", body = ErrorBody)))]
fn call_get() {}

#[utoipa::path(get, path = "/api/rooms", tag = "rooms",
    params(("from" = Option<String>, Query), ("client_id" = Option<String>, Query),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "rooms per page (100)"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, description = "`{count, rooms, next_cursor}`: the rooms the caller may join")))]
fn rooms() {}

#[utoipa::path(get, path = "/api/rooms/{room}/history", tag = "rooms",
    params(("room" = String, Path), ("since" = Option<u64>, Query), ("limit" = Option<u32>, Query),
           ("from" = Option<String>, Query), ("client_id" = Option<String>, Query)),
    responses((status = 200, description = OK_JSON)))]
fn room_history() {}

#[utoipa::path(get, path = "/api/search", tag = "rooms",
    params(("q" = String, Query, description = "The query: terms, \"phrases\", AND, OR, -term, field:term (text, type, from, thread); 1 to 1024 bytes"),
           ("client_id" = Option<String>, Query, description = "Who searches; may be left out with credentials bound to one client id"),
           ("room" = Option<String>, Query, description = "Only this room (and its channels) or room/channel"),
           ("with" = Option<String>, Query, description = "Only the direct conversation with this client id (not with room)"),
           ("from" = Option<String>, Query, description = "Only messages sent by this client id"),
           ("type" = Option<String>, Query, description = "Only messages of exactly this type"),
           ("since" = Option<String>, Query, description = "RFC 3339: only messages at or after"),
           ("until" = Option<String>, Query, description = "RFC 3339: only messages before"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 200), ("cursor" = Option<String>, Query, description = "The previous page's next_cursor")),
    responses((status = 200, description = "`{query, count, results: [{score, message}], next_cursor}`: the history.search call, best first")))]
fn search() {}

#[utoipa::path(put, path = "/api/rooms/{room}/files/{name}", tag = "rooms",
    params(("room" = String, Path), ("name" = String, Path), ("from" = Option<String>, Query)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, description = OK_JSON)))]
fn put_file() {}

#[utoipa::path(get, path = "/api/rooms/{room}/files/{name}", tag = "rooms",
    params(("room" = String, Path), ("name" = String, Path), ("from" = Option<String>, Query)),
    responses((status = 200, description = "The file", content_type = "application/octet-stream")))]
fn get_file() {}

#[utoipa::path(get, path = "/stream/events", tag = "messaging",
    params(("client_id" = Option<String>, Query, description = "May be left out with credentials bound to one client id"), ("types" = Option<String>, Query), ("since" = Option<u64>, Query),
           ("token" = Option<String>, Query, description = "Credentials for EventSource")),
    responses((status = 200, description = "Server-Sent Events; `id:` is the seq", content_type = "text/event-stream")))]
fn events() {}

#[utoipa::path(get, path = "/api/subscribe", tag = "messaging",
    params(("client_id" = Option<String>, Query, description = "May be left out with credentials bound to one client id"),
           ("types" = Option<String>, Query), ("since" = Option<u64>, Query),
           ("token" = Option<String>, Query, description = "Credentials for EventSource")),
    responses((status = 200, description = "The same stream as /stream/events (the original extension's path)", content_type = "text/event-stream")))]
fn subscribe() {}

#[utoipa::path(get, path = "/api/whoami", tag = "messaging",
    responses((status = 200, description = "`{subject, client_id, clients, permissions}`: `client_id` when the credentials are bound to exactly one, else null")))]
fn whoami() {}

#[utoipa::path(post, path = "/mcp", tag = "mcp",
    request_body(content = Value, description = "One JSON-RPC 2.0 message of the Model Context Protocol (PROTOCOL.md section 7)"),
    params(("mcp-session-id" = Option<String>, Header, description = "The session (2025-11-25) from `initialize`"),
           ("x-client-id" = Option<String>, Header, description = "The client id to act as, when the credentials are not bound to one")),
    responses((status = 200, description = "The JSON-RPC response (`Mcp-Session-Id` after `initialize`, `X-Client-Id` always)"),
              (status = 202, description = "A notification or response was taken")))]
fn mcp_post() {}

#[utoipa::path(get, path = "/mcp", tag = "mcp",
    params(("mcp-session-id" = Option<String>, Header, description = "The session whose listening stream to open")),
    responses((status = 200, description = "The listening stream: `notifications/message` per message", content_type = "text/event-stream"),
              (status = 405, description = "No session: the stateless revision has no listening stream", body = ErrorBody),
              (status = 406, description = "`Accept` does not take `text/event-stream`", body = ErrorBody)))]
fn mcp_get() {}

#[utoipa::path(delete, path = "/mcp", tag = "mcp",
    params(("mcp-session-id" = Option<String>, Header, description = "The session to end")),
    responses((status = 204, description = "The session ended")))]
fn mcp_delete() {}

#[utoipa::path(get, path = "/health", tag = "health", security(()), responses((status = 200, description = OK_JSON),
    (status = 503, description = "Not ready: an actor escalated, or the store cannot write (disk full, read-only); `checks` says which")))]
fn health() {}
#[utoipa::path(get, path = "/health/live", tag = "health", security(()), responses((status = 200, description = OK_JSON)))]
fn live() {}
#[utoipa::path(get, path = "/health/ready", tag = "health", security(()), responses((status = 200, description = OK_JSON),
    (status = 503, description = "Not ready: an actor escalated, or the store cannot write (disk full, read-only); `checks` says which")))]
fn ready() {}
#[utoipa::path(get, path = "/health/startup", tag = "health", security(()), responses((status = 200, description = OK_JSON)))]
fn startup() {}
#[utoipa::path(get, path = "/metrics", tag = "health", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
fn metrics() {}
#[utoipa::path(get, path = "/openapi.json", tag = "health", security(()), responses((status = 200, description = "This document")))]
fn openapi() {}

#[utoipa::path(get, path = "/admin/supervisors", tag = "admin", responses((status = 200, description = OK_JSON)))]
fn supervisors() {}
#[utoipa::path(get, path = "/admin/clients", tag = "admin", responses((status = 200, description = OK_JSON)))]
fn clients() {}
#[utoipa::path(delete, path = "/admin/clients/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, description = "`{client_id, disconnected}`: its sessions closed (WebSocket close 4001) and long-polls ended")))]
fn kick() {}
#[utoipa::path(get, path = "/admin/messages", tag = "admin",
    params(("client_id" = Option<String>, Query), ("room" = Option<String>, Query),
           ("from" = Option<String>, Query, description = "First seq, or an RFC 3339 time"),
           ("to" = Option<String>, Query, description = "Last seq, or an RFC 3339 time"),
           ("limit" = Option<u32>, Query, minimum = 1), ("format" = Option<String>, Query, description = "json (a page) or ndjson (the whole range)")),
    responses((status = 200, description = "`{count, messages, next_from}`, or NDJSON lines")))]
fn replay() {}
#[utoipa::path(post, path = "/admin/messages/{id}/redeliver", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, description = "`{status: redelivered, dead_letter, message_id, seq, recipient}`")))]
fn redeliver() {}
#[utoipa::path(get, path = "/admin/stream", tag = "admin",
    responses((status = 200, description = "Server-Sent Events: `message` per routed message, `stats` every 2 s", content_type = "text/event-stream")))]
fn admin_stream() {}
#[utoipa::path(get, path = "/dashboard", tag = "health", security(()),
    responses((status = 200, description = "The live dashboard (HTML)", content_type = "text/html")))]
fn dashboard() {}
#[utoipa::path(get, path = "/", tag = "health", security(()), responses((status = 302, description = "To /dashboard")))]
fn home() {}
#[utoipa::path(get, path = "/admin/rooms", tag = "admin",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = OK_JSON)))]
fn admin_rooms() {}
#[utoipa::path(get, path = "/admin/queues", tag = "admin", responses((status = 200, description = OK_JSON)))]
fn queues() {}
#[utoipa::path(get, path = "/admin/dead-letters", tag = "admin",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 10000)),
    responses((status = 200, description = OK_JSON)))]
fn dead_letters() {}
#[utoipa::path(post, path = "/admin/fault", tag = "admin", request_body = FaultBody,
    responses((status = 202, description = "Only with --enable-fault-injection")))]
fn fault() {}
#[utoipa::path(post, path = "/admin/keys", tag = "admin", request_body = CreateKeyRequest,
    responses((status = 201, description = "The key (shown only here) and its record", body = KeyView)))]
fn create_key() {}
#[utoipa::path(get, path = "/admin/keys", tag = "admin", responses((status = 200, description = "`{count, keys}` with usage")))]
fn list_keys() {}
#[utoipa::path(delete, path = "/admin/keys/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, description = "`{id, revoked, sessions_closed}`")))]
fn revoke_key() {}

#[utoipa::path(post, path = "/admin/webhooks", tag = "admin", request_body = WebhookBody,
    responses((status = 201, description = "`{id, url, events, format, ..., secret}`: the signing secret is shown only here")))]
fn create_webhook() {}
#[utoipa::path(get, path = "/admin/webhooks", tag = "admin",
    responses((status = 200, description = "`{count, webhooks}`, each with `delivered`, `failed`, `breaker` (closed, open, half_open)")))]
fn list_webhooks() {}
#[utoipa::path(delete, path = "/admin/webhooks/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, description = "`{id, removed}`; 404 `unknown_webhook`")))]
fn remove_webhook() {}
#[utoipa::path(get, path = "/admin/webhooks/failures", tag = "admin",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 10000)),
    responses((status = 200, description = "`{count, failures}`: deliveries given up, oldest first")))]
fn webhook_failures() {}
#[utoipa::path(post, path = "/admin/webhooks/failures/{id}/resend", tag = "admin", params(("id" = String, Path)),
    responses((status = 202, description = "`{id, status: resending}`; 404 `unknown_failure` or `unknown_webhook`")))]
fn resend_webhook() {}

#[utoipa::path(post, path = "/admin/email", tag = "admin", request_body = EmailBody,
    responses((status = 201, description = "`{id, to, events, client_id, room, digest_seconds, created_at, sent, failed, pending, last_error}`; 400 `invalid_address`, `unknown_event`, `bad_request`")))]
fn create_email() {}
#[utoipa::path(get, path = "/admin/email", tag = "admin",
    responses((status = 200, description = "`{count, subscriptions}`, each with `sent`, `failed` and `pending` (events waiting for the digest)")))]
fn list_email() {}
#[utoipa::path(delete, path = "/admin/email/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, description = "`{id, removed}`; 404 `unknown_subscription`")))]
fn remove_email() {}
#[utoipa::path(get, path = "/admin/email/failures", tag = "admin",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 10000)),
    responses((status = 200, description = "`{count, failures}`: mails not sent (`id, subscription_id, to, subject, events, error, at_ms`), oldest first")))]
fn email_failures() {}

#[utoipa::path(put, path = "/admin/github/repos/{room}", tag = "admin", params(("room" = String, Path)), request_body = GitHubRepoBody,
    responses((status = 200, description = "`{room, repo, created_at_ms}`; 400 `invalid_params` for a repo that is not owner/name")))]
fn map_github_repo() {}
#[utoipa::path(get, path = "/admin/github/repos", tag = "admin", responses((status = 200, description = "`{count, repos}`")))]
fn list_github_repos() {}
#[utoipa::path(delete, path = "/admin/github/repos/{room}", tag = "admin", params(("room" = String, Path)),
    responses((status = 200, description = "`{room, removed}`; 404 `no_repository`")))]
fn unmap_github_repo() {}
#[utoipa::path(get, path = "/admin/github/links", tag = "admin",
    params(("room" = Option<String>, Query), ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000)),
    responses((status = 200, description = "`{count, links}`: issues made (`room, source, repo, number, html_url, created_by, created_at_ms`)")))]
fn github_links() {}
#[utoipa::path(get, path = "/admin/github/failures", tag = "admin",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 10000)),
    responses((status = 200, description = "`{count, failures}`: comments GitHub refused (`id, room, what, code, error, at_ms`), oldest first")))]
fn github_failures() {}

/// `POST /admin/email`.
#[derive(ToSchema)]
pub struct EmailBody {
    /// Recipients, 1 to 50 (`name@host` or `Name <name@host>`; `invalid_address`).
    #[schema(min_items = 1, max_items = 50)]
    to: Vec<String>,
    /// Event names as for webhooks, and `task_updated` (`unknown_event`).
    events: Vec<String>,
    /// Only events about this client.
    client_id: Option<String>,
    /// Only events in this room and its channels.
    room: Option<String>,
    /// One mail per this many seconds with every event of the window (1 to 86400); absent: a mail per event.
    #[schema(minimum = 1, maximum = 86400)]
    digest_seconds: Option<u64>,
}

/// `PUT /admin/github/repos/{room}`.
#[derive(ToSchema)]
pub struct GitHubRepoBody {
    /// `owner/name`.
    #[schema(example = "octo-org/agents")]
    repo: String,
}

/// `POST /admin/webhooks`.
#[derive(ToSchema)]
pub struct WebhookBody {
    /// `http://` or `https://`, at most 2048 characters (`invalid_url`).
    #[schema(max_length = 2048)]
    url: String,
    /// `message`, `member_joined`, `member_left`, `proposal_closed`, `actor_restarted`, `dead_letter`, `agent_status`, `task_updated`, `command_progress` (`unknown_event`).
    events: Vec<String>,
    /// `json` (default: `{event, at, data}`), `slack` (`{text}`) or `discord` (`{content}`).
    format: Option<String>,
    /// The signing secret, 16 to 256 bytes; generated when absent.
    secret: Option<String>,
    /// Only events about this client (a message: its recipient or sender).
    client_id: Option<String>,
    /// Only events in this room and its channels.
    room: Option<String>,
}

/// Bearer auth on every operation (but those that say `security(())`), and the error answers
/// every operation may give.
struct Common;

impl Modify for Common {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let scheme = SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API key (abk_...) or a JWT; `?token=` where headers cannot be set"))
                .build(),
        );
        api.components.get_or_insert_with(Default::default).add_security_scheme("bearer", scheme);
        let error = |what: &str| -> RefOr<Response> {
            ResponseBuilder::new()
                .description(what)
                .content("application/json", utoipa::openapi::ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody"))).build())
                .into()
        };
        for item in api.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete].into_iter().flatten() {
                let public = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let mut errors = vec![
                    ("400", "Bad request (`bad_request`, `bad_frame`, `invalid_client_id`, ...)"),
                    ("404", "Not found"),
                    ("413", "Body too large (`too_large`), decoded size when sent with Content-Encoding"),
                    ("415", "Content-Encoding other than gzip, zstd or identity (`unsupported_encoding`)"),
                    ("503", "Temporarily unavailable"),
                ];
                if !public {
                    errors.extend([
                        ("401", "Missing or invalid credentials (`unauthorized`)"),
                        ("403", "Not allowed for these credentials (`forbidden`)"),
                        ("409", "Conflict"),
                        ("429", "Rate or connection limit (`rate_limited`, `too_many_connections`) with `Retry-After`"),
                    ]);
                }
                for (code, what) in errors {
                    op.responses.responses.entry(code.to_owned()).or_insert_with(|| error(what));
                }
            }
        }
    }
}

/// A JSON-RPC 2.0 request of the A2A binding (a2a-sdk 1.x method names).
#[derive(ToSchema)]
pub struct A2aRpcBody {
    #[schema(example = "2.0")]
    jsonrpc: String,
    id: Option<Value>,
    /// `SendMessage`, `SendStreamingMessage` (SSE), `GetTask`, `CancelTask`, `SubscribeToTask` (SSE).
    #[schema(example = "SendMessage")]
    method: String,
    /// `{"message": {...}}` for the send methods, `{"id": "task-..."}` for the task methods.
    params: Option<Value>,
}

const A2A_RPC: &str = "A JSON-RPC answer (`result` or `error`, code -32001 for an unknown task or agent); the streaming \
                       methods answer `text/event-stream`, one JSON-RPC answer per event (PROTOCOL.md section 7)";

#[utoipa::path(get, path = "/.well-known/agent-card.json", tag = "a2a", security(()),
    responses((status = 200, description = "The broker's A2A agent card: a directory of the connected agents")))]
fn a2a_gateway_card() {}
#[utoipa::path(get, path = "/a2a/{client_id}/.well-known/agent-card.json", tag = "a2a", params(("client_id" = String, Path)),
    responses((status = 200, description = "The A2A agent card of a connected agent"), (status = 404, description = "`unknown_agent`", body = ErrorBody)))]
fn a2a_agent_card() {}
#[utoipa::path(post, path = "/a2a", tag = "a2a", request_body = A2aRpcBody,
    responses((status = 200, description = A2A_RPC)))]
fn a2a_rpc_gateway() {}
#[utoipa::path(post, path = "/a2a/{client_id}", tag = "a2a", params(("client_id" = String, Path)), request_body = A2aRpcBody,
    responses((status = 200, description = A2A_RPC)))]
fn a2a_rpc_agent() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "agent-bridge", description = "HTTP API of the agent-bridge broker (PROTOCOL.md sections 3 and 5)."),
    paths(ws, send, send_batch, messages, ack, status, whoami, subscribe, call, call_get, search, rooms, room_history, put_file, get_file, events,
          mcp_post, mcp_get, mcp_delete,
          health, live, ready, startup, metrics, openapi,
          dashboard, home, kick, replay, redeliver, admin_stream,
          supervisors, clients, admin_rooms, queues, dead_letters, fault, create_key, list_keys, revoke_key,
          create_webhook, list_webhooks, remove_webhook, webhook_failures, resend_webhook,
          create_email, list_email, remove_email, email_failures,
          map_github_repo, list_github_repos, unmap_github_repo, github_links, github_failures,
          a2a_gateway_card, a2a_agent_card, a2a_rpc_gateway, a2a_rpc_agent),
    components(schemas(ErrorBody, SendBody, SendAnswer, SendBatchBody, BatchResultDoc, SendBatchAnswer, MessageDoc, MessagesAnswer, AckBody, CallBody, FaultBody,
                       CreateKeyRequest, KeyGrant, KeyView, KeyUsage, WebhookBody, EmailBody, GitHubRepoBody, A2aRpcBody)),
    security(("bearer" = [])),
    modifiers(&Common),
)]
struct ApiDoc;

/// The document for this server (its long-poll limit patched in).
pub fn document(long_poll_max_s: f64) -> Value {
    static BASE: OnceLock<Value> = OnceLock::new();
    let mut doc = BASE
        .get_or_init(|| {
            let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
            describe_calls(&mut doc);
            doc
        })
        .clone();
    doc["info"]["version"] = Value::from(env!("CARGO_PKG_VERSION"));
    if let Some(params) = doc["paths"]["/api/messages"]["get"]["parameters"].as_array_mut() {
        for p in params.iter_mut().filter(|p| p["name"] == "wait") {
            p["schema"]["maximum"] = Value::from(long_poll_max_s);
        }
    }
    doc
}

/// The calls of `/api/call`, from the table of calls: their names (all for `POST`, the read-only
/// ones for `GET`), a table of what each does and needs, and each one's params schema
/// (`components.schemas["<method>.params"]`, derived from the params' type).
fn describe_calls(doc: &mut Value) {
    let names: Vec<&str> = CALLS.iter().map(|c| c.name).collect();
    let read_only: Vec<&str> = CALLS.iter().filter(|c| c.changes_nothing()).map(|c| c.name).collect();
    let mut table = String::from("| call | permission | what it does |\n|---|---|---|\n");
    for c in CALLS {
        table.push_str(&format!("| `{}` | {} | {} |\n", c.name, c.access.label(), c.doc));
        doc["components"]["schemas"][format!("{}.params", c.name)] = c.params_schema();
    }
    let refs: Vec<Value> = CALLS.iter().map(|c| json!({"$ref": format!("#/components/schemas/{}.params", c.name)})).collect();
    let body = &mut doc["components"]["schemas"]["CallBody"]["properties"];
    body["method"]["enum"] = json!(names);
    body["params"] = json!({"anyOf": refs, "description": "The params of `method` (its `<method>.params` schema)."});
    doc["paths"]["/api/call"]["post"]["description"] = Value::from(table);
    if let Some(params) = doc["paths"]["/api/call"]["get"]["parameters"].as_array_mut() {
        for p in params.iter_mut().filter(|p| p["name"] == "method") {
            p["schema"]["enum"] = json!(read_only);
            p["description"] = Value::from("A call that changes nothing; the others are POST only");
        }
    }
}

/// `GET /openapi.json`.
pub async fn serve(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(document(state.config.long_poll_max_s))
}
