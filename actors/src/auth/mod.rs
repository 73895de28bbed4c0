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

mod identity;
pub mod jwt;
pub mod keys;
pub mod limits;
mod permissions;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use self::identity::{may_join_room, Identity, IdentityKind, RoomAccess};
use self::jwt::{JwtConfig, JwtVerifier};
use self::keys::{KeyDefaults, KeyRegistry};
use self::limits::{AttemptLimiter, ConnectionLimits};
pub use self::permissions::{AuthError, ClientPattern, Permission, Permissions};
use crate::store::Store;

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
