//! What a credential allows: [`AuthError`] (why a request was refused), [`Permission`] and
//! [`Permissions`], and [`ClientPattern`] (which client ids it may act as). A leaf of `auth`.

use agent_bridge_protocol::ids::{validate_client_id, MAX_ID_LEN};
use serde::Serialize;
use thiserror::Error;

/// Why a request was refused. Each variant has a stable code and an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No credentials where they are required.
    #[error("authentication required: {0}")]
    Missing(String),
    /// Credentials that do not verify, have expired or were revoked.
    #[error("{0}")]
    Invalid(String),
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many requests; retry after `retry_after` seconds.
    #[error("{what}; retry after {retry_after} s")]
    RateLimited { retry_after: u64, what: String },
    /// A connection limit is reached.
    #[error("{0}")]
    TooManyConnections(String),
    /// A bad argument to a key operation.
    #[error("{0}")]
    BadRequest(String),
    /// The store or the system failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing(_) | AuthError::Invalid(_) => "unauthorized",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::RateLimited { .. } => "rate_limited",
            AuthError::TooManyConnections(_) => "too_many_connections",
            AuthError::BadRequest(_) => "bad_request",
            AuthError::Internal(_) => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing(_) | AuthError::Invalid(_) => 401,
            AuthError::Forbidden(_) => 403,
            AuthError::RateLimited { .. } | AuthError::TooManyConnections(_) => 429,
            AuthError::BadRequest(_) => 400,
            AuthError::Internal(_) => 500,
        }
    }

    /// Seconds to wait, for `rate_limited`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            AuthError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Receive: WebSocket and SSE sessions, `GET /api/messages`, acks.
    Read,
    /// Send messages.
    Write,
    /// `/admin/*`.
    Admin,
}

impl Permission {
    fn bit(self) -> u8 {
        match self {
            Permission::Read => 1,
            Permission::Write => 2,
            Permission::Admin => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(u8);

impl Permissions {
    pub const ALL: Permissions = Permissions(7);
    pub const NONE: Permissions = Permissions(0);

    pub fn of(list: &[Permission]) -> Self {
        Permissions(list.iter().fold(0, |acc, p| acc | p.bit()))
    }

    /// Parses names (`read`, `write`, `admin`); unknown names are an error.
    pub fn parse_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, AuthError> {
        let mut bits = 0;
        for n in names {
            bits |= match n.trim() {
                "read" => Permission::Read.bit(),
                "write" => Permission::Write.bit(),
                "admin" => Permission::Admin.bit(),
                "" => 0,
                other => {
                    return Err(AuthError::BadRequest(format!("unknown permission {other:?}: use read, write or admin")))
                }
            };
        }
        Ok(Permissions(bits))
    }

    /// Parses `read,write,admin`.
    pub fn parse(csv: &str) -> Result<Self, AuthError> {
        Permissions::parse_list(csv.split(','))
    }

    pub fn has(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names, in the order read, write, admin.
    pub fn names(self) -> Vec<&'static str> {
        [Permission::Read, Permission::Write, Permission::Admin].into_iter().filter(|p| self.has(*p)).map(Permission::name).collect()
    }
}

impl Serialize for Permissions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

/// Which client ids a credential may act as: one id, a prefix (`browser-*`), or any (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientPattern {
    Any,
    Exact(String),
    Prefix(String),
}

impl ClientPattern {
    /// Parses a pattern: a valid client id, optionally ending in `*`.
    pub fn parse(p: &str) -> Result<Self, AuthError> {
        let bad = |why: String| AuthError::BadRequest(format!("client id pattern {p:?}: {why}"));
        if p == "*" {
            return Ok(ClientPattern::Any);
        }
        match p.strip_suffix('*') {
            Some(prefix) => {
                if prefix.contains('*') || prefix.len() >= MAX_ID_LEN {
                    return Err(bad("`*` may only appear once, at the end".into()));
                }
                // The prefix plus one character must be a valid id.
                validate_client_id(&format!("{prefix}x")).map_err(|e| bad(e.to_string()))?;
                Ok(ClientPattern::Prefix(prefix.to_owned()))
            }
            None => {
                validate_client_id(p).map_err(|e| bad(e.to_string()))?;
                Ok(ClientPattern::Exact(p.to_owned()))
            }
        }
    }

    pub fn matches(&self, client_id: &str) -> bool {
        match self {
            ClientPattern::Any => true,
            ClientPattern::Exact(id) => id == client_id,
            ClientPattern::Prefix(p) => client_id.len() > p.len() && client_id.starts_with(p.as_str()),
        }
    }
}

impl std::fmt::Display for ClientPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientPattern::Any => f.write_str("*"),
            ClientPattern::Exact(id) => f.write_str(id),
            ClientPattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}
