//! MCP sessions of the 2025-11-25 revision (`initialize` → `Mcp-Session-Id`) and the agent records
//! both revisions share, and how a request's client id is chosen.
//!
//! A session is bound to the credentials that opened it: a request carrying its id with other
//! credentials is told the session does not exist (404), as is one after `DELETE /mcp`.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use agent_bridge_actors::auth::Permission;
use tokio::sync::watch;

use super::port::Agent;
use crate::http::auth::Caller;
use crate::http::ApiError;

/// The request header naming the client id an MCP connection acts as (also `?client_id=`), and
/// the response header saying which one it got.
pub const CLIENT_ID_HEADER: &str = "x-client-id";
/// The session header of the 2025-11-25 revision.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// Open sessions at most; `initialize` past this answers 503.
const MAX_SESSIONS: usize = 10_000;
/// Agent records at most; past this the map starts over (read positions then restart at 0).
const MAX_AGENTS: usize = 50_000;

/// One open session.
#[derive(Debug)]
pub struct Session {
    /// The client id the session acts as.
    pub client_id: String,
    /// The negotiated protocol version.
    pub version: String,
    /// Who opened it (the credentials' subject).
    pub subject: String,
    /// Raised (or dropped) when the session ends: its listening stream closes.
    pub closed: watch::Sender<bool>,
}

/// Every open session and agent record (in [`crate::http::AppState`]).
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: parking_lot::Mutex<HashMap<String, Arc<Session>>>,
    agents: parking_lot::Mutex<HashMap<String, Arc<Agent>>>,
}

impl Sessions {
    /// Opens a session for `client_id`; answers its id.
    pub fn open(&self, client_id: &str, version: &str, caller: &Caller) -> Result<String, ApiError> {
        let mut sessions = self.sessions.lock();
        if sessions.len() >= MAX_SESSIONS {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "too many open MCP sessions"));
        }
        let id = uuid::Uuid::now_v7().simple().to_string();
        let session = Session {
            client_id: client_id.to_owned(),
            version: version.to_owned(),
            subject: caller.subject.clone(),
            closed: watch::channel(false).0,
        };
        sessions.insert(id.clone(), Arc::new(session));
        Ok(id)
    }

    /// The session a request names (`Mcp-Session-Id`): `Ok(None)` without the header, 404 when
    /// it is unknown, ended, or was opened with other credentials.
    pub fn of(&self, req: &HttpRequest, caller: &Caller) -> Result<Option<(String, Arc<Session>)>, ApiError> {
        let Some(id) = req.headers().get(SESSION_HEADER).map(|v| v.to_str().unwrap_or_default().to_owned()) else {
            return Ok(None);
        };
        match self.sessions.lock().get(&id) {
            Some(s) if s.subject == caller.subject => Ok(Some((id, Arc::clone(s)))),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_session",
                "no such MCP session (it ended, or was never opened): initialize a new one",
            )),
        }
    }

    /// Ends a session; false when there was none.
    pub fn close(&self, id: &str) -> bool {
        let Some(s) = self.sessions.lock().remove(id) else { return false };
        s.closed.send_replace(true);
        true
    }

    /// The agent record of `client_id`.
    pub fn agent(&self, client_id: &str) -> Arc<Agent> {
        let mut agents = self.agents.lock();
        if agents.len() >= MAX_AGENTS && !agents.contains_key(client_id) {
            agents.clear();
        }
        Arc::clone(agents.entry(client_id.to_owned()).or_default())
    }
}

/// The client id a request acts as: the one its credentials are bound to, else the one it names
/// (`X-Client-Id`, or `?client_id=`) if the credentials allow it, else a new one. It must be
/// allowed to read that client id's messages.
pub fn client_id(req: &HttpRequest, caller: &Caller) -> Result<String, ApiError> {
    let header = req.headers().get(CLIENT_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let named = header.or_else(|| {
        let q = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).ok()?;
        q.into_inner().into_iter().find(|(k, _)| k == "client_id").map(|(_, v)| v)
    });
    let id = match caller.client_id(named.as_deref().filter(|n| !n.is_empty()))? {
        Some(id) => id,
        // The tail of a v7 uuid is random.
        None => format!("mcp-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]),
    };
    caller.act_as(&id, Permission::Read)?;
    Ok(id)
}
