//! JWT verification (HS256 with a shared secret, RS256 with a public key), for deployments that
//! already have an identity provider.
//!
//! Claims: `sub` is the client id the token acts as (required), `exp` is required, `iss` and `aud`
//! are checked when configured, `nbf` when present. Optional: `permissions` (a list of `read`,
//! `write`, `admin`; absent means the configured default), `rooms` (private rooms the holder may
//! enter), `clients` (extra client id patterns, like an API key's `allowed_clients`).
//!
//! The key is chosen by the token's `alg` among the configured ones only, so a token signed with
//! HS256 using the RS256 public key as the secret (algorithm confusion) is refused.

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::identity::{Identity, IdentityKind};
use super::permissions::{AuthError, ClientPattern, Permissions};

/// JWT settings.
#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    /// HS256 shared secret (empty: HS256 off).
    pub secret: String,
    /// RS256 public key, PEM (empty: RS256 off).
    pub public_key_pem: String,
    pub issuer: String,
    pub audience: String,
    pub leeway_s: u64,
    /// Permissions of a token without a `permissions` claim.
    pub default_permissions: Permissions,
}

impl JwtConfig {
    /// True when any algorithm is configured.
    pub fn enabled(&self) -> bool {
        !self.secret.is_empty() || !self.public_key_pem.is_empty()
    }
}

/// Verifies tokens against the configured keys.
pub struct JwtVerifier {
    hs: Option<DecodingKey>,
    rs: Option<DecodingKey>,
    config: JwtConfig,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier").field("hs256", &self.hs.is_some()).field("rs256", &self.rs.is_some()).finish()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    clients: Vec<String>,
}

impl JwtVerifier {
    /// Checks the configuration (a PEM that does not parse is an error at start-up, not later).
    pub fn new(config: JwtConfig) -> Result<Self, String> {
        let hs = (!config.secret.is_empty()).then(|| DecodingKey::from_secret(config.secret.as_bytes()));
        if !config.secret.is_empty() && config.secret.len() < 32 {
            return Err("jwt_secret must be at least 32 bytes (HS256 keys shorter than the hash are guessable)".into());
        }
        let rs = if config.public_key_pem.is_empty() {
            None
        } else {
            Some(DecodingKey::from_rsa_pem(config.public_key_pem.as_bytes()).map_err(|e| format!("jwt_public_key_file: {e}"))?)
        };
        Ok(JwtVerifier { hs, rs, config })
    }

    /// Verifies a token and turns its claims into an identity.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let invalid = |why: String| AuthError::Invalid(format!("invalid token: {why}"));
        let header = decode_header(token).map_err(|e| invalid(e.to_string()))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs.as_ref(),
            Algorithm::RS256 => self.rs.as_ref(),
            _ => None,
        }
        .ok_or_else(|| invalid(format!("algorithm {:?} is not accepted by this server", header.alg)))?;
        let mut v = Validation::new(header.alg);
        v.leeway = self.config.leeway_s;
        v.set_required_spec_claims(&["exp", "sub"]);
        v.validate_nbf = true;
        if self.config.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&[&self.config.audience]);
        }
        if !self.config.issuer.is_empty() {
            v.set_issuer(&[&self.config.issuer]);
        }
        let data = decode::<Claims>(token, key, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Invalid("token has expired".into()),
            jsonwebtoken::errors::ErrorKind::InvalidAudience => invalid("wrong audience".into()),
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => invalid("wrong issuer".into()),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => invalid("bad signature".into()),
            _ => invalid(e.to_string()),
        })?;
        let c = data.claims;
        agent_bridge_protocol::ids::validate_client_id(&c.sub).map_err(|e| invalid(format!("sub: {e}")))?;
        let permissions = match &c.permissions {
            Some(list) => Permissions::parse_list(list.iter().map(String::as_str)).map_err(|e| invalid(e.to_string()))?,
            None => self.config.default_permissions,
        };
        let mut clients = vec![ClientPattern::Exact(c.sub.clone())];
        for p in &c.clients {
            clients.push(ClientPattern::parse(p).map_err(|e| invalid(format!("clients: {e}")))?);
        }
        Ok(Identity {
            subject: format!("jwt:{}", c.sub),
            kind: IdentityKind::Jwt,
            clients,
            permissions,
            rooms: c.rooms,
            expires_at_ms: Some(c.exp.saturating_mul(1000)),
            key: None,
        })
    }
}
