//! [`Identity`]: an authenticated caller, and [`may_join_room`], the rule the room code applies.

use std::sync::Arc;

use agent_bridge_protocol::Timestamp;

use super::keys::KeyState;
use super::permissions::{AuthError, ClientPattern, Permission, Permissions};

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// Auth is off (loopback, or `--insecure`): any client id, every permission.
    Anonymous,
    /// No credentials, accepted by the explicit guest settings.
    Guest,
    ApiKey,
    Jwt,
}

/// An authenticated caller, bound to a request or a session for its whole life.
#[derive(Clone)]
pub struct Identity {
    /// For logs: `anonymous`, `guest`, `key:<id>`, `jwt:<sub>`.
    pub subject: String,
    pub kind: IdentityKind,
    /// The client ids this caller may act as.
    pub clients: Vec<ClientPattern>,
    pub permissions: Permissions,
    /// Private rooms named in the credentials.
    pub rooms: Vec<String>,
    /// When the credentials expire (ms since the epoch).
    pub expires_at_ms: Option<i64>,
    /// The API key behind this identity (usage, rate limit, revocation).
    pub key: Option<Arc<KeyState>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .field("clients", &self.clients.iter().map(ToString::to_string).collect::<Vec<_>>())
            .field("permissions", &self.permissions.names())
            .finish()
    }
}

impl Identity {
    /// The identity of every caller while auth is off.
    pub fn anonymous() -> Self {
        Identity {
            subject: "anonymous".into(),
            kind: IdentityKind::Anonymous,
            clients: vec![ClientPattern::Any],
            permissions: Permissions::ALL,
            rooms: Vec::new(),
            expires_at_ms: None,
            key: None,
        }
    }

    /// The API key id, if a key authenticated this caller.
    pub fn key_id(&self) -> Option<String> {
        self.key.as_ref().map(|k| k.id())
    }

    /// True when this caller may act as `client_id`.
    pub fn may_act_as(&self, client_id: &str) -> bool {
        self.clients.iter().any(|p| p.matches(client_id))
    }

    /// Refuses with `forbidden` unless this caller may act as `client_id`.
    pub fn check_client(&self, client_id: &str) -> Result<(), AuthError> {
        if self.may_act_as(client_id) {
            return Ok(());
        }
        let allowed = self.clients.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        Err(AuthError::Forbidden(format!("these credentials may not act as client id {client_id:?} (allowed: {allowed})")))
    }

    /// Refuses with `forbidden` unless this caller has `p`.
    pub fn require(&self, p: Permission) -> Result<(), AuthError> {
        if self.permissions.has(p) {
            return Ok(());
        }
        Err(AuthError::Forbidden(format!("these credentials lack the {:?} permission", p.name())))
    }

    /// The one client id this caller can act as, when its credentials name exactly one.
    pub fn sole_client(&self) -> Option<&str> {
        match self.clients.as_slice() {
            [ClientPattern::Exact(id)] => Some(id),
            _ => None,
        }
    }

    /// True when the credentials have expired by now.
    pub fn expired(&self) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= Timestamp::now().millis())
    }
}

/// Who may enter a room.
#[derive(Debug, Clone, Copy)]
pub enum RoomAccess<'a> {
    /// Anyone with `read` may join and read history.
    Public,
    /// Only the client ids (or patterns, `team-*`) on the allow-list, callers whose credentials name
    /// the room (`rooms` in the key or JWT), and admins.
    Private { allow: &'a [String] },
}

/// May `identity`, acting as `client_id`, join `room` and read its history?
///
/// For the room code: call it on `join`, `room.history` and any read of a room's messages, with the
/// room's access setting. `client_id` is the session's bound id (already checked against the
/// identity). Sending to a room needs `write` on top (checked by the send path).
pub fn may_join_room(identity: &Identity, client_id: &str, room: &str, access: RoomAccess<'_>) -> Result<(), AuthError> {
    identity.require(Permission::Read)?;
    identity.check_client(client_id)?;
    let RoomAccess::Private { allow } = access else { return Ok(()) };
    let base = room.split('/').next().unwrap_or(room);
    let named = identity.rooms.iter().any(|r| r == room || r == base);
    let listed = allow.iter().any(|p| ClientPattern::parse(p).is_ok_and(|p| p.matches(client_id)));
    if identity.permissions.has(Permission::Admin) || named || listed {
        return Ok(());
    }
    Err(AuthError::Forbidden(format!("room {room:?} is private and {client_id:?} is not on its allow-list")))
}
