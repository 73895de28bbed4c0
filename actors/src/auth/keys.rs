//! API keys: creation (the secret is shown once), storage as a SHA-256 hash, lookup by key id,
//! expiry, revocation and usage statistics.
//!
//! A key reads `abk_<id>_<secret>`: `id` is 12 hex digits (48 random bits) and names the record,
//! so verifying a key is one lookup plus one hash comparison (constant time); `secret` is 64 hex
//! digits (256 random bits). Only `sha256("agent-bridge api key v1\0" + secret)` is stored, in the
//! store's `keys` tree; with 256 random bits a plain hash is enough (there is nothing to
//! brute-force, so no slow KDF is needed, and verification stays cheap on every request).
//!
//! Records are cached in memory. Usage counters (requests, messages, last used) are counted in
//! memory and written back by [`KeyRegistry::persist_usage`], which `GET /admin/keys` and a timer
//! call: the request path never writes to the store.
//!
//! Writes (create, revoke, usage) go into the store's page cache and then wait, asynchronously,
//! for the store's group commit ([`Store::commit`]): the `fsync` happens on the store's flusher
//! thread, never on the caller's (an actix event loop). The command line, which has no event loop,
//! runs these futures on a small runtime of its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use agent_bridge_protocol::Timestamp;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::limits::{Revocations, TokenBucket};
use super::permissions::{AuthError, ClientPattern, Permissions};
use crate::store::{Store, StoreError, Stored};

/// The prefix every API key starts with (recognisable in logs and secret scanners).
pub const KEY_PREFIX: &str = "abk_";
const ID_HEX: usize = 12;
const SECRET_HEX: usize = 64;
const HASH_DOMAIN: &[u8] = b"agent-bridge api key v1\0";

/// A stored API key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// The key id (12 hex digits), also the record's name in the store.
    pub id: String,
    /// Hex SHA-256 of the secret (domain-separated).
    pub hash: String,
    /// Client ids this key may act as: the main pattern, then any extra ones.
    pub clients: Vec<String>,
    /// `read`, `write`, `admin`.
    pub permissions: Vec<String>,
    /// Requests (HTTP requests and WebSocket sends) per hour; `None`: the server default; 0: no limit.
    pub rate_limit_per_hour: Option<u64>,
    /// Largest burst; `None`: the server default.
    pub burst: Option<u64>,
    /// Rooms named in the key (private rooms this key may enter).
    pub rooms: Vec<String>,
    /// Free text for operators.
    pub label: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    pub requests: u64,
    pub messages: u64,
    pub last_used_ms: Option<i64>,
}

impl Stored for ApiKeyRecord {
    const WHAT: &'static str = "API key";
}

/// What a new key is for.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    /// Client id pattern (`code`, `browser-*`, `*`).
    pub client_id: String,
    /// More patterns this key may act as.
    pub allowed_clients: Vec<String>,
    pub permissions: Permissions,
    pub rate_limit_per_hour: Option<u64>,
    pub burst: Option<u64>,
    pub expires_days: Option<f64>,
    pub rooms: Vec<String>,
    pub label: String,
}

/// A freshly created key: the only time the full key exists.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub key: String,
    pub record: ApiKeyRecord,
}

/// Default limits for keys that do not set their own.
#[derive(Debug, Clone, Copy)]
pub struct KeyDefaults {
    pub rate_limit_per_hour: u64,
    pub burst: u64,
}

impl Default for KeyDefaults {
    fn default() -> Self {
        KeyDefaults { rate_limit_per_hour: 36_000, burst: 600 }
    }
}

/// A key as the running server holds it: the record plus live counters and its rate limiter.
pub struct KeyState {
    record: RwLock<ApiKeyRecord>,
    /// Parsed `clients`.
    pub patterns: Vec<ClientPattern>,
    pub permissions: Permissions,
    revoked: AtomicBool,
    requests: AtomicU64,
    messages: AtomicU64,
    last_used_ms: AtomicI64,
    dirty: AtomicBool,
    /// `None`: unlimited.
    bucket: Option<Mutex<TokenBucket>>,
}

impl std::fmt::Debug for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyState").field("id", &self.id()).field("permissions", &self.permissions.names()).finish()
    }
}

impl KeyState {
    fn new(record: ApiKeyRecord, defaults: KeyDefaults) -> Result<Self, AuthError> {
        let patterns = record.clients.iter().map(|p| ClientPattern::parse(p)).collect::<Result<Vec<_>, _>>()?;
        let permissions = Permissions::parse_list(record.permissions.iter().map(String::as_str))?;
        let per_hour = record.rate_limit_per_hour.unwrap_or(defaults.rate_limit_per_hour);
        let burst = record.burst.unwrap_or(defaults.burst.min(per_hour.max(1)));
        let bucket = (per_hour > 0).then(|| Mutex::new(TokenBucket::per_hour(per_hour, burst.max(1))));
        Ok(KeyState {
            revoked: AtomicBool::new(record.revoked_at_ms.is_some()),
            requests: AtomicU64::new(record.requests),
            messages: AtomicU64::new(record.messages),
            last_used_ms: AtomicI64::new(record.last_used_ms.unwrap_or(0)),
            dirty: AtomicBool::new(false),
            patterns,
            permissions,
            bucket,
            record: RwLock::new(record),
        })
    }

    /// The key id.
    pub fn id(&self) -> String {
        self.record.read().id.clone()
    }

    /// Rooms named in the key.
    pub fn rooms(&self) -> Vec<String> {
        self.record.read().rooms.clone()
    }

    /// When the key expires (ms since the epoch).
    pub fn expires_at_ms(&self) -> Option<i64> {
        self.record.read().expires_at_ms
    }

    /// Refuses a revoked or expired key.
    pub fn check_valid(&self, now_ms: i64) -> Result<(), AuthError> {
        if self.revoked.load(Ordering::Acquire) {
            return Err(AuthError::Invalid("this API key has been revoked".into()));
        }
        if self.expires_at_ms().is_some_and(|at| at <= now_ms) {
            return Err(AuthError::Invalid("this API key has expired".into()));
        }
        Ok(())
    }

    /// Counts one request (HTTP request or WebSocket send) against the key's rate limit.
    pub fn take(&self) -> Result<(), AuthError> {
        if let Some(b) = &self.bucket {
            b.lock().try_take().map_err(|retry_after| AuthError::RateLimited {
                retry_after,
                what: "this API key's request rate limit is reached".into(),
            })?;
        }
        Ok(())
    }

    /// Counts an HTTP request in the usage statistics.
    pub fn used_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    /// Counts a message sent in the usage statistics.
    pub fn used_message(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    fn touch(&self) {
        self.last_used_ms.store(Timestamp::now().millis(), Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
    }

    /// The record with the live counters folded in.
    pub fn snapshot(&self) -> ApiKeyRecord {
        let mut r = self.record.read().clone();
        r.requests = self.requests.load(Ordering::Relaxed);
        r.messages = self.messages.load(Ordering::Relaxed);
        let last = self.last_used_ms.load(Ordering::Relaxed);
        r.last_used_ms = (last > 0).then_some(last);
        r
    }
}

/// All API keys: the store's `keys` tree plus the in-memory cache.
pub struct KeyRegistry {
    store: Store,
    defaults: KeyDefaults,
    keys: RwLock<HashMap<String, Arc<KeyState>>>,
    /// Live sessions per key, closed on revocation.
    pub revocations: Arc<Revocations>,
}

/// Parses `abk_<id>_<secret>`; `None` when the text is not shaped like a key.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_HEX) && hex(secret, SECRET_HEX)).then_some((id, secret))
}

fn hash_secret(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

fn random_hex(bytes: usize) -> Result<String, AuthError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).map_err(|e| AuthError::Internal(format!("no randomness available: {e}")))?;
    Ok(hex::encode(buf))
}

/// The stored record of a new key: everything but the secret, of which only the hash is kept.
fn new_record(new: NewKey, id: &str, secret: &str, clients: Vec<String>, now: i64, expires_at_ms: Option<i64>) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.to_owned(),
        hash: hash_secret(secret),
        clients,
        permissions: new.permissions.names().into_iter().map(str::to_owned).collect(),
        rate_limit_per_hour: new.rate_limit_per_hour,
        burst: new.burst,
        rooms: new.rooms,
        label: new.label,
        created_at_ms: now,
        expires_at_ms,
        revoked_at_ms: None,
        requests: 0,
        messages: 0,
        last_used_ms: None,
    }
}

fn store_err(e: StoreError) -> AuthError {
    AuthError::Internal(e.to_string())
}

/// Waits for the store's next group commit: the flush runs on the store's flusher thread.
async fn committed(store: &Store) -> Result<(), AuthError> {
    store.commit().await.map_err(|_| AuthError::Internal("the API key could not be written to disk (store flush failed)".into()))
}

impl KeyRegistry {
    /// Loads every key from the store.
    pub fn open(store: Store, defaults: KeyDefaults) -> Result<Self, AuthError> {
        let mut keys = HashMap::new();
        for record in store.api_keys::<ApiKeyRecord>().map_err(store_err)? {
            let id = record.id.clone();
            match KeyState::new(record, defaults) {
                Ok(state) => {
                    keys.insert(id, Arc::new(state));
                }
                Err(e) => tracing::error!(key_id = %id, error = %e, "ignoring an unreadable API key record"),
            }
        }
        Ok(KeyRegistry { store, defaults, keys: RwLock::new(keys), revocations: Arc::new(Revocations::default()) })
    }

    /// True once any key has been created in this store (revoked and expired keys included), which
    /// makes authentication required.
    pub fn any(&self) -> bool {
        !self.keys.read().is_empty()
    }

    /// Creates a key and waits until its record is on disk; the returned full key is not stored
    /// anywhere.
    pub async fn create(&self, new: NewKey) -> Result<CreatedKey, AuthError> {
        let mut clients = vec![new.client_id.clone()];
        clients.extend(new.allowed_clients.iter().cloned());
        for c in &clients {
            ClientPattern::parse(c)?;
        }
        for room in &new.rooms {
            agent_bridge_protocol::ids::validate_room(room).map_err(|e| AuthError::BadRequest(e.to_string()))?;
        }
        if new.permissions.is_empty() {
            return Err(AuthError::BadRequest("a key needs at least one permission: read, write or admin".into()));
        }
        let now = Timestamp::now().millis();
        let expires_at_ms = match new.expires_days {
            None => None,
            Some(d) if d.is_finite() && d > 0.0 && d <= 36_500.0 => Some(now + (d * 86_400_000.0) as i64),
            Some(d) => return Err(AuthError::BadRequest(format!("expires_days = {d}: use a number of days from above 0 to 36500"))),
        };
        if new.label.len() > 256 {
            return Err(AuthError::BadRequest("label: at most 256 bytes".into()));
        }
        let created = self.insert_new(new, clients, now, expires_at_ms)?;
        committed(&self.store).await?;
        Ok(created)
    }

    /// Picks an unused id and a secret, and writes the record to the cache and the store.
    fn insert_new(&self, new: NewKey, clients: Vec<String>, now: i64, expires_at_ms: Option<i64>) -> Result<CreatedKey, AuthError> {
        let mut keys = self.keys.write();
        let id = loop {
            let id = random_hex(ID_HEX / 2)?;
            if !keys.contains_key(&id) {
                break id;
            }
        };
        let secret = random_hex(SECRET_HEX / 2)?;
        let record = new_record(new, &id, &secret, clients, now, expires_at_ms);
        let state = KeyState::new(record.clone(), self.defaults)?;
        self.store.put_api_key(&record.id, &record).map_err(store_err)?;
        keys.insert(id.clone(), Arc::new(state));
        Ok(CreatedKey { key: format!("{KEY_PREFIX}{id}_{secret}"), record })
    }

    /// Installs a key the operator chose (`abk_<id>_<secret>`, the bootstrap admin key) unless the
    /// store already has it, and flushes it to disk. `Ok(false)`: it was there already (revoked or
    /// not: a revocation sticks across restarts). A different key with the same id is refused.
    pub fn install(&self, key: &str, new: NewKey) -> Result<bool, AuthError> {
        let (id, secret) = split_key(key).ok_or_else(|| AuthError::BadRequest("not an API key: abk_<12 hex>_<64 hex>".into()))?;
        let mut keys = self.keys.write();
        if let Some(existing) = keys.get(id) {
            if existing.record.read().hash == hash_secret(secret) {
                return Ok(false);
            }
            return Err(AuthError::BadRequest(format!("another API key already has the id {id}")));
        }
        let clients = std::iter::once(new.client_id.clone()).chain(new.allowed_clients.iter().cloned()).collect();
        let record = new_record(new, id, secret, clients, Timestamp::now().millis(), None);
        let state = KeyState::new(record.clone(), self.defaults)?;
        self.store.put_api_key(id, &record).map_err(store_err)?;
        self.store.flush().map_err(store_err)?;
        keys.insert(id.to_owned(), Arc::new(state));
        Ok(true)
    }

    /// Finds the key and checks its secret, expiry and revocation.
    pub fn verify(&self, key: &str) -> Result<Arc<KeyState>, AuthError> {
        let invalid = || AuthError::Invalid("unknown or malformed API key".into());
        let (id, secret) = split_key(key).ok_or_else(invalid)?;
        let state = self.keys.read().get(id).cloned().ok_or_else(invalid)?;
        let expected = state.record.read().hash.clone();
        // No early exit: timing does not tell how much of the hash matched.
        if !bool::from(hash_secret(secret).as_bytes().ct_eq(expected.as_bytes())) {
            return Err(invalid());
        }
        state.check_valid(Timestamp::now().millis())?;
        Ok(state)
    }

    /// Revokes a key at once: later requests are refused and its open sessions are closed; then
    /// waits until the revocation is on disk. Returns the number of sessions closed; `None` for an
    /// unknown id.
    pub async fn revoke(&self, id: &str) -> Result<Option<usize>, AuthError> {
        let Some(state) = self.keys.read().get(id).cloned() else { return Ok(None) };
        state.revoked.store(true, Ordering::Release);
        let closed = self.revocations.revoke(id, "this API key has been revoked");
        {
            let mut r = state.record.write();
            if r.revoked_at_ms.is_none() {
                r.revoked_at_ms = Some(Timestamp::now().millis());
            }
        }
        self.store.put_api_key(id, &state.snapshot()).map_err(store_err)?;
        state.dirty.store(false, Ordering::Release);
        committed(&self.store).await?;
        Ok(Some(closed))
    }

    /// Every key, oldest first, with live usage.
    pub fn list(&self) -> Vec<ApiKeyRecord> {
        let mut v: Vec<ApiKeyRecord> = self.keys.read().values().map(|k| k.snapshot()).collect();
        v.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        v
    }

    /// Writes changed usage counters to the store and waits until they are on disk.
    pub async fn persist_usage(&self) -> Result<usize, AuthError> {
        let dirty: Vec<Arc<KeyState>> = self.keys.read().values().filter(|k| k.dirty.swap(false, Ordering::AcqRel)).cloned().collect();
        for k in &dirty {
            let snap = k.snapshot();
            self.store.put_api_key(&snap.id, &snap).map_err(store_err)?;
        }
        if !dirty.is_empty() {
            committed(&self.store).await?;
        }
        Ok(dirty.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Permission;

    fn registry() -> (tempfile::TempDir, KeyRegistry) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(Some(dir.path()), None).expect("store");
        (dir, KeyRegistry::open(store, KeyDefaults::default()).expect("registry"))
    }

    fn new_key(pattern: &str, perms: &[Permission]) -> NewKey {
        NewKey { client_id: pattern.into(), permissions: Permissions::of(perms), ..NewKey::default() }
    }

    #[actix::test]
    async fn create_verify_revoke() {
        let (_dir, reg) = registry();
        assert!(!reg.any());
        let created = reg.create(new_key("browser-*", &[Permission::Read])).await.expect("create");
        assert!(reg.any());
        assert!(created.key.starts_with("abk_"));
        assert!(!created.record.hash.contains(created.key.rsplit('_').next().unwrap_or("x")));
        let state = reg.verify(&created.key).expect("verify");
        assert!(state.patterns.iter().any(|p| p.matches("browser-7")));
        let mut wrong = created.key.clone();
        wrong.pop();
        wrong.push(if created.key.ends_with('0') { '1' } else { '0' });
        assert_eq!(reg.verify(&wrong).map(|_| ()).expect_err("a wrong secret").code(), "unauthorized");
        assert!(reg.verify("abk_nope").is_err());
        assert_eq!(reg.revoke(&created.record.id).await.expect("revoke"), Some(0));
        assert!(reg.verify(&created.key).expect_err("revoked").to_string().contains("revoked"));
        assert_eq!(reg.revoke("000000000000").await.expect("revoke"), None);
    }

    /// Create and persist wait for the store's group commit themselves: nothing flushes here.
    #[actix::test]
    async fn usage_is_persisted_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = {
            let store = Store::open(Some(dir.path()), None).expect("store");
            let reg = KeyRegistry::open(store, KeyDefaults::default()).expect("registry");
            let created = reg.create(new_key("code", &[Permission::Read, Permission::Write])).await.expect("create");
            let state = reg.verify(&created.key).expect("verify");
            state.used_request();
            state.used_message();
            state.used_message();
            assert_eq!(reg.persist_usage().await.expect("persist"), 1);
            assert_eq!(reg.persist_usage().await.expect("persist"), 0, "nothing changed since");
            created.key
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let store = loop {
            match Store::open(Some(dir.path()), None) {
                Ok(s) => break s,
                Err(e) if std::time::Instant::now() > deadline => panic!("reopen: {e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        let reg = KeyRegistry::open(store, KeyDefaults::default()).expect("registry");
        let listed = reg.list();
        assert_eq!((listed[0].requests, listed[0].messages), (1, 2));
        assert!(listed[0].last_used_ms.is_some());
        assert!(reg.verify(&key).is_ok());
    }

    #[actix::test]
    async fn bad_keys_are_refused_at_creation() {
        let (_dir, reg) = registry();
        assert!(reg.create(new_key("has space", &[Permission::Read])).await.is_err());
        assert!(reg.create(new_key("a*b", &[Permission::Read])).await.is_err());
        assert!(reg.create(new_key("code", &[])).await.is_err());
        let mut k = new_key("code", &[Permission::Read]);
        k.expires_days = Some(-1.0);
        assert!(reg.create(k).await.is_err());
    }

    #[test]
    fn key_shape() {
        assert!(split_key(&format!("abk_{}_{}", "a".repeat(12), "b".repeat(64))).is_some());
        assert!(split_key(&format!("abk_{}_{}", "a".repeat(11), "b".repeat(64))).is_none());
        assert!(split_key(&format!("abk_{}_{}", "g".repeat(12), "b".repeat(64))).is_none());
        assert!(split_key("eyJ.x.y").is_none());
    }
}
