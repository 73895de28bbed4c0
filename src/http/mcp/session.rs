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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use agent_bridge_actors::auth::Identity;

    fn caller(subject: &str) -> Caller {
        Caller(Arc::new(Identity { subject: subject.into(), ..Identity::anonymous() }))
    }

    #[test]
    fn a_session_answers_only_its_own_credentials_until_it_ends() {
        let sessions = Sessions::default();
        let (owner, other) = (caller("key-1"), caller("key-2"));
        let id = sessions.open("alice", "2025-11-25", &owner).expect("opened");
        let req = TestRequest::default().insert_header((SESSION_HEADER, id.as_str())).to_http_request();
        let (_, s) = sessions.of(&req, &owner).expect("known").expect("named");
        assert_eq!((s.client_id.as_str(), s.version.as_str()), ("alice", "2025-11-25"));
        assert_eq!(sessions.of(&req, &other).err().map(|e| e.status), Some(StatusCode::NOT_FOUND), "other credentials");
        let mut closed = s.closed.subscribe();
        assert!(sessions.close(&id));
        assert!(*closed.borrow_and_update(), "its listening stream is told");
        assert!(!sessions.close(&id));
        assert_eq!(sessions.of(&req, &owner).err().map(|e| e.status), Some(StatusCode::NOT_FOUND), "ended");
        assert!(sessions.of(&TestRequest::default().to_http_request(), &owner).expect("no header").is_none());
    }

    #[test]
    fn the_client_id_is_bound_named_or_generated() {
        let anyone = caller("anonymous");
        let named = TestRequest::default().insert_header((CLIENT_ID_HEADER, "bob")).to_http_request();
        assert_eq!(client_id(&named, &anyone).ok().as_deref(), Some("bob"));
        let query = TestRequest::default().uri("/mcp?client_id=carol").to_http_request();
        assert_eq!(client_id(&query, &anyone).ok().as_deref(), Some("carol"));
        let generated = client_id(&TestRequest::default().to_http_request(), &anyone).expect("generated");
        assert!(generated.starts_with("mcp-") && generated.len() > 8, "{generated}");
        let bad = TestRequest::default().insert_header((CLIENT_ID_HEADER, "a b")).to_http_request();
        assert!(client_id(&bad, &anyone).is_err(), "an invalid id is refused");
    }
}
