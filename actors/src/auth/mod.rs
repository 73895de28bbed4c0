//! Authentication and authorisation: who a connection is, which client ids it may act as, what it
//! may do, and how fast.
//!
//! - [`Identity`]: the result of authenticating a request — anonymous (auth off), guest (explicit
//!   guest mode), an API key ([`keys`]) or a JWT ([`jwt`]). It carries the client id patterns the
//!   caller may act as ([`ClientPattern`], `browser-*` suffix wildcard), its [`Permissions`]
//!   (`read` to receive, `write` to send, `admin` for `/admin/*`), the rooms named in its
//!   credentials, and when they expire.
//! - [`Authenticator`]: one per server. Decides whether auth is required (`require_auth`, any key
//!   in the store, or JWT configured), verifies bearer tokens, applies the failed-attempt limiter
//!   per remote address, and holds the connection limits and the per-key session registry
//!   ([`limits`]).
//! - [`may_join_room`]: the check the room code calls before a join or a history read.
//!
//! The HTTP layer (src/http/auth.rs) extracts the token and maps [`AuthError`] to HTTP statuses;
//! sessions keep their [`Identity`] for the whole connection and close (1008) when the key behind
//! it is revoked or expires.

pub mod jwt;
pub mod keys;
pub mod limits;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use agent_bridge_protocol::ids::{validate_client_id, MAX_ID_LEN};
use agent_bridge_protocol::Timestamp;
use serde::Serialize;
use thiserror::Error;

use self::jwt::{JwtConfig, JwtVerifier};
use self::keys::{KeyDefaults, KeyRegistry, KeyState};
use self::limits::{AttemptLimiter, ConnectionLimits};
use crate::store::Store;

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

/// Server-wide auth settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Require credentials even with no keys and no JWT.
    pub require_auth: bool,
    /// Guest mode: permissions of callers without credentials while auth is required (empty: off).
    pub guest_permissions: Permissions,
    /// Client ids guests may act as.
    pub guest_clients: Vec<ClientPattern>,
    pub jwt: JwtConfig,
    pub key_defaults: KeyDefaults,
    /// Failed authentications per minute per remote address (0: no limit).
    pub auth_failures_per_minute: u32,
    /// Open WebSocket and SSE connections in all, and per client id (0: no limit).
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Per-connection message rate (sends per second, 0: no limit) and burst.
    pub message_rate_per_s: f64,
    pub message_burst: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            require_auth: false,
            guest_permissions: Permissions::NONE,
            guest_clients: vec![ClientPattern::Prefix("guest-".into())],
            jwt: JwtConfig::default(),
            key_defaults: KeyDefaults::default(),
            auth_failures_per_minute: 30,
            max_connections: 10_000,
            max_connections_per_client: 32,
            message_rate_per_s: 0.0,
            message_burst: 0,
        }
    }
}

/// The server's authenticator.
pub struct Authenticator {
    config: AuthConfig,
    pub keys: KeyRegistry,
    jwt: Option<JwtVerifier>,
    attempts: AttemptLimiter,
    pub connections: Arc<ConnectionLimits>,
    /// Latched once auth is required, so that it never turns off while the server runs.
    required: AtomicBool,
}

impl Authenticator {
    /// Loads the keys from `store` and checks the JWT settings.
    pub fn new(store: Store, config: AuthConfig) -> Result<Self, AuthError> {
        let jwt = if config.jwt.enabled() { Some(JwtVerifier::new(config.jwt.clone()).map_err(AuthError::BadRequest)?) } else { None };
        let keys = KeyRegistry::open(store, config.key_defaults)?;
        Ok(Authenticator {
            attempts: AttemptLimiter::new(config.auth_failures_per_minute),
            connections: ConnectionLimits::new(config.max_connections, config.max_connections_per_client),
            required: AtomicBool::new(false),
            config,
            keys,
            jwt,
        })
    }

    /// Auth is required with `require_auth`, when JWT is configured, or once any key exists.
    pub fn required(&self) -> bool {
        if self.required.load(Ordering::Acquire) {
            return true;
        }
        let now = self.config.require_auth || self.jwt.is_some() || self.keys.any();
        if now {
            self.required.store(true, Ordering::Release);
        }
        now
    }

    /// Why auth is required (for logs), or `None`.
    pub fn mode(&self) -> &'static str {
        if self.config.require_auth {
            "required (require_auth)"
        } else if self.jwt.is_some() {
            "required (jwt configured)"
        } else if self.keys.any() {
            "required (api keys exist)"
        } else {
            "off (anonymous clients accepted)"
        }
    }

    /// The settings.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Authenticates a request carrying `token` (a bearer API key or JWT) from `ip`.
    pub fn authenticate(&self, token: Option<&str>, ip: Option<IpAddr>) -> Result<Identity, AuthError> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let Some(token) = token else {
            if !self.required() {
                return Ok(Identity::anonymous());
            }
            if !self.config.guest_permissions.is_empty() {
                return Ok(Identity {
                    subject: "guest".into(),
                    kind: IdentityKind::Guest,
                    clients: self.config.guest_clients.clone(),
                    permissions: self.config.guest_permissions,
                    rooms: Vec::new(),
                    expires_at_ms: None,
                    key: None,
                });
            }
            return Err(AuthError::Missing(
                "send `Authorization: Bearer <api key or JWT>` (or `?token=` where headers cannot be set)".into(),
            ));
        };
        self.attempts.check(ip)?;
        let result = self.verify(token);
        if let Err(e) = &result {
            if matches!(e, AuthError::Invalid(_)) {
                self.attempts.failed(ip);
            }
        }
        result
    }

    fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.starts_with(keys::KEY_PREFIX) {
            let key = self.keys.verify(token)?;
            return Ok(Identity {
                subject: format!("key:{}", key.id()),
                kind: IdentityKind::ApiKey,
                clients: key.patterns.clone(),
                permissions: key.permissions,
                rooms: key.rooms(),
                expires_at_ms: key.expires_at_ms(),
                key: Some(key),
            });
        }
        if token.bytes().filter(|b| *b == b'.').count() == 2 {
            return match &self.jwt {
                Some(v) => v.verify(token),
                None => Err(AuthError::Invalid("JWT is not configured on this server".into())),
            };
        }
        Err(AuthError::Invalid("the token is neither an API key (abk_...) nor a JWT".into()))
    }

    /// The per-connection message limiter for a new session (`None`: unlimited).
    pub fn message_bucket(&self) -> Option<limits::TokenBucket> {
        let rate = self.config.message_rate_per_s;
        (rate > 0.0).then(|| {
            let burst = if self.config.message_burst == 0 { rate.ceil() } else { self.config.message_burst as f64 };
            limits::TokenBucket::new(rate, burst)
        })
    }
}

/// What a session needs to enforce its identity: sends need `write`, its rate limits apply, its
/// connection slot is freed when it ends, and revocation closes it.
pub struct SessionAuth {
    pub identity: Arc<Identity>,
    /// The per-connection message limiter.
    pub messages: Option<limits::TokenBucket>,
    /// The connection slot (dropped with the session).
    pub guard: Option<limits::ConnectionGuard>,
    /// Where to register for revocation.
    pub revocations: Option<Arc<limits::Revocations>>,
}

impl SessionAuth {
    /// Anonymous and unlimited (unit tests, embedded use).
    pub fn anonymous() -> Self {
        SessionAuth { identity: Arc::new(Identity::anonymous()), messages: None, guard: None, revocations: None }
    }

    /// Registers a session for the revocation of its API key (nothing to do for other
    /// identities). False when the key was revoked meanwhile: the session must close at once.
    pub fn register(&self, session_id: &str, to: actix::Recipient<limits::CredentialsRevoked>) -> bool {
        match (self.identity.key_id(), &self.revocations) {
            (Some(key_id), Some(revocations)) => revocations.register(&key_id, session_id, to),
            _ => true,
        }
    }

    /// Forgets a closed session.
    pub fn deregister(&self, session_id: &str) {
        if let (Some(key_id), Some(revocations)) = (self.identity.key_id(), &self.revocations) {
            revocations.deregister(&key_id, session_id);
        }
    }

    /// Checks one `send` against permission and rate limits, counting it in the key's usage.
    pub fn check_send(&mut self) -> Result<(), AuthError> {
        self.identity.require(Permission::Write)?;
        if let Some(b) = &mut self.messages {
            b.try_take().map_err(|retry_after| AuthError::RateLimited {
                retry_after,
                what: "this connection's message rate limit is reached".into(),
            })?;
        }
        if let Some(k) = &self.identity.key {
            k.take()?;
            k.used_message();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = ClientPattern::parse("browser-*").expect("pattern");
        assert!(p.matches("browser-1") && p.matches("browser-abc"));
        assert!(!p.matches("browser-") && !p.matches("code") && !p.matches("browser"));
        assert!(ClientPattern::parse("*").expect("any").matches("x"));
        assert!(ClientPattern::parse("code").expect("exact").matches("code"));
        assert!(!ClientPattern::parse("code").expect("exact").matches("code2"));
        for bad in ["", "a*b", "**", "a b*", "all", "pool:*"] {
            assert!(ClientPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn permissions_parse_and_print() {
        let p = Permissions::parse("read, admin").expect("parse");
        assert!(p.has(Permission::Read) && p.has(Permission::Admin) && !p.has(Permission::Write));
        assert_eq!(p.names(), ["read", "admin"]);
        assert!(Permissions::parse("read,fly").is_err());
        assert!(Permissions::parse("").expect("empty").is_empty());
    }

    fn identity(perms: &[Permission], clients: &[&str], rooms: &[&str]) -> Identity {
        Identity {
            subject: "t".into(),
            kind: IdentityKind::ApiKey,
            clients: clients.iter().map(|c| ClientPattern::parse(c).expect("pattern")).collect(),
            permissions: Permissions::of(perms),
            rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
            expires_at_ms: None,
            key: None,
        }
    }

    #[test]
    fn room_access() {
        let reader = identity(&[Permission::Read], &["team-*"], &[]);
        let allow = vec!["team-a".to_owned(), "ops-*".to_owned()];
        assert!(may_join_room(&reader, "team-x", "lobby", RoomAccess::Public).is_ok());
        assert!(may_join_room(&reader, "team-a", "secret", RoomAccess::Private { allow: &allow }).is_ok());
        assert_eq!(
            may_join_room(&reader, "team-b", "secret", RoomAccess::Private { allow: &allow }).unwrap_err().code(),
            "forbidden"
        );
        assert!(may_join_room(&reader, "code", "lobby", RoomAccess::Public).is_err(), "not its client id");
        let named = identity(&[Permission::Read], &["x"], &["secret"]);
        assert!(may_join_room(&named, "x", "secret/side", RoomAccess::Private { allow: &[] }).is_ok());
        let writer = identity(&[Permission::Write], &["*"], &[]);
        assert!(may_join_room(&writer, "x", "lobby", RoomAccess::Public).is_err(), "reading needs read");
        let admin = identity(&[Permission::Read, Permission::Admin], &["*"], &[]);
        assert!(may_join_room(&admin, "y", "secret", RoomAccess::Private { allow: &[] }).is_ok());
    }

    #[actix::test]
    async fn modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(Some(dir.path()), None).expect("store");
        let auth = Authenticator::new(store, AuthConfig::default()).expect("auth");
        assert!(!auth.required());
        assert_eq!(auth.authenticate(None, None).expect("anonymous").kind, IdentityKind::Anonymous);
        assert_eq!(auth.authenticate(Some("abk_junk"), None).unwrap_err().code(), "unauthorized", "a bad token is refused even with auth off");
        let key = auth
            .keys
            .create(keys::NewKey { client_id: "code".into(), permissions: Permissions::ALL, ..Default::default() })
            .await
            .expect("create");
        assert!(auth.required(), "a key turns auth on");
        assert_eq!(auth.authenticate(None, None).unwrap_err().code(), "unauthorized");
        let id = auth.authenticate(Some(&key.key), None).expect("key");
        assert_eq!(id.sole_client(), Some("code"));
        auth.keys.revoke(&key.record.id).await.expect("revoke");
        assert!(auth.required(), "auth stays on once a key existed");
    }
}
