//! Authentication at the HTTP edge: one middleware authenticates every request (but the public
//! health and description routes), binds an [`Identity`] to it, enforces `admin` on `/admin/*` and
//! the per-key request rate limit, and counts key usage. Handlers take a [`Caller`] to check the
//! client ids and permissions their route needs; every admin handler also takes [`Admin`], so the
//! permission is checked on the matched route as a second line.
//!
//! Paths are judged the way the router sees them, never by the raw request line: actix decodes
//! percent-escapes before matching (`/%61dmin/keys` is routed to `/admin/keys`), so the middleware
//! decides on [`canonical_path`] — fully percent-decoded, dot segments resolved, repeated slashes
//! and trailing dots dropped, lower-cased — which can only say "admin" more often than the router.
//!
//! Credentials: `Authorization: Bearer <api key or JWT>`, or `?token=` for browsers (EventSource
//! and WebSocket cannot set headers). With auth off (no keys, no JWT, no `require_auth`, which the
//! start-up check allows only on loopback or with `--insecure`) callers without credentials are
//! anonymous with every permission, and credentials that are given are still verified.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, ResponseError};
use agent_bridge_actors::auth::{AuthError, Identity, Permission, SessionAuth};

use super::{ApiError, AppState};

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
        let mut err = ApiError::new(status, e.code(), e.to_string());
        err.retry_after = e.retry_after();
        err
    }
}

/// Routes anyone may call: probes (orchestrators call them without credentials), the API
/// description, metrics (whose labels never carry client ids or room names) and the dashboard's
/// page (static: it holds no data and asks for an admin key to read `/admin/*`). `path` is the
/// decoded path the router matches on, compared exactly.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/health" | "/health/live" | "/health/ready" | "/health/startup" | "/openapi.json" | "/metrics" | "/dashboard" | "/" | "/.well-known/agent-card.json"
    )
}

/// The path as the most generous reading of it: percent-decoded until nothing changes (so `%2561`
/// and `%2F` count too), empty segments and trailing dots dropped, lower-cased; `..` segments
/// resolved when `resolve` (as a proxy would) or kept (as actix's router does).
pub fn canonical_path(path: &str, resolve: bool) -> String {
    let mut decoded = path.to_owned();
    for _ in 0..4 {
        let next = percent_encoding::percent_decode_str(&decoded).decode_utf8_lossy().into_owned();
        if next == decoded {
            break;
        }
        decoded = next;
    }
    let mut out: Vec<String> = Vec::new();
    for raw in decoded.split(['/', '\\']) {
        match raw.trim() {
            ".." if resolve => {
                out.pop();
            }
            seg => {
                let seg = seg.trim_end_matches(['.', ' ', '\t']);
                if !seg.is_empty() {
                    out.push(seg.to_ascii_lowercase());
                }
            }
        }
    }
    format!("/{}", out.join("/"))
}

/// Whether a request for `path` (as received or as decoded) needs the `admin` permission: under
/// either reading of [`canonical_path`] it is `/admin` or below. It can say "admin" for more paths
/// than the router sends to admin routes, never for fewer.
pub fn needs_admin(path: &str) -> bool {
    [true, false].into_iter().any(|resolve| {
        let canonical = canonical_path(path, resolve);
        canonical == "/admin" || canonical.starts_with("/admin/")
    })
}

/// The bearer token of a request: the `Authorization` header, else `?token=`.
pub fn token(req: &HttpRequest) -> Option<String> {
    if let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let v = h.to_str().ok()?.trim();
        let (scheme, rest) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim().to_owned());
    }
    let q = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).ok()?;
    q.into_inner().into_iter().find(|(k, _)| k == "token").map(|(_, v)| v)
}

/// Authenticates the request and binds its identity (see the module docs).
pub async fn authenticate(req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    // The router matches the decoded path (`match_info`), not the request line (`req.path()`).
    let routed = req.match_info().as_str().to_owned();
    let admin = needs_admin(&routed) || needs_admin(req.path());
    if !admin && is_public(&routed) || req.method() == actix_web::http::Method::OPTIONS {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "application state missing").into());
    };
    let ip = req.peer_addr().map(|a| a.ip());
    let token = token(req.request());
    let checked = state.auth.authenticate(token.as_deref(), ip).and_then(|identity| {
        if admin {
            identity.require(Permission::Admin)?;
        }
        if let Some(key) = &identity.key {
            key.take()?;
            key.used_request();
        }
        Ok(identity)
    });
    match checked {
        Ok(identity) => {
            req.extensions_mut().insert(Caller(Arc::new(identity)));
            next.call(req).await.map(ServiceResponse::map_into_boxed_body)
        }
        Err(e) => {
            let subject = if token.is_some() { "token" } else { "none" };
            tracing::debug!(path = req.path(), credentials = subject, code = e.code(), error = %e, "request refused");
            let resp = ApiError::from(e).error_response();
            Ok(req.into_response(resp).map_into_boxed_body())
        }
    }
}

/// The identity bound to a request by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Identity>);

impl std::ops::Deref for Caller {
    type Target = Identity;
    fn deref(&self) -> &Identity {
        &self.0
    }
}

impl Caller {
    /// The identity of a request (fails closed with 401 when the middleware did not run).
    pub fn of(req: &HttpRequest) -> Result<Caller, ApiError> {
        req.extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "this request was not authenticated"))
    }

    /// Refuses unless the caller has `p`.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        self.0.require(p).map_err(ApiError::from)
    }

    /// Refuses unless the caller has `p` and may act as `client_id`.
    pub fn act_as(&self, client_id: &str, p: Permission) -> Result<(), ApiError> {
        self.0.require(p)?;
        self.0.check_client(client_id)?;
        Ok(())
    }

    /// The client id a request acts as: `named` if given (and allowed), else the one client id the
    /// credentials name; `None` when neither says.
    pub fn client_id(&self, named: Option<&str>) -> Result<Option<String>, ApiError> {
        match named {
            Some(id) => {
                agent_bridge_protocol::ids::validate_client_id(id)?;
                self.0.check_client(id)?;
                Ok(Some(id.to_owned()))
            }
            None => Ok(self.0.sole_client().map(str::to_owned)),
        }
    }
}

/// The caller of an admin route, checked on the matched route: every admin handler takes one, so
/// the `admin` permission holds even if the middleware's path test were ever wrong.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Admin, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Caller::of(req).and_then(|c| c.require(Permission::Admin).map(|()| Admin(c))))
    }
}

/// What a new WebSocket or SSE session needs: checks that the caller may read as `client_id`,
/// takes a connection slot, and hands over the limits and the revocation registry.
pub fn session_auth(state: &AppState, caller: &Caller, client_id: &str) -> Result<SessionAuth, ApiError> {
    caller.act_as(client_id, Permission::Read)?;
    let guard = state.auth.connections.acquire(client_id)?;
    Ok(SessionAuth {
        identity: Arc::clone(&caller.0),
        messages: state.auth.message_bucket(),
        guard: Some(guard),
        revocations: Some(Arc::clone(&state.auth.keys.revocations)),
    })
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Caller, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Caller::of(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn token_from_header_or_query() {
        let r = TestRequest::default().insert_header(("authorization", "Bearer abc")).to_http_request();
        assert_eq!(token(&r).as_deref(), Some("abc"));
        let r = TestRequest::default().insert_header(("authorization", "bearer  abc ")).to_http_request();
        assert_eq!(token(&r).as_deref(), Some("abc"));
        let r = TestRequest::default().insert_header(("authorization", "Basic abc")).uri("/x?token=q").to_http_request();
        assert_eq!(token(&r), None, "a non-bearer header is not a token (and the query is not consulted)");
        let r = TestRequest::default().uri("/ws/a?since=1&token=abk_x").to_http_request();
        assert_eq!(token(&r).as_deref(), Some("abk_x"));
        assert!(is_public("/health/ready") && is_public("/openapi.json") && !is_public("/admin/keys") && !is_public("/healthz"));
    }

    #[test]
    fn canonical_paths() {
        for p in ["/admin/keys", "/%61dmin/keys", "/%2561dmin/keys", "//admin//keys", "/./admin/./keys", "/x/../admin/keys",
                  "/health/%2e%2e/admin/keys", "/admin./keys", "/ADMIN/keys", "/admin%2Fkeys", "/admin\\keys", "/admin", "/admin/.."] {
            assert!(needs_admin(p), "{p}");
        }
        for p in ["/api/send", "/administrator", "/health/admin", "/api/admin", "/x/admin/keys", "/"] {
            assert!(!needs_admin(p), "{p}");
        }
        assert!(!is_public("/health/../admin/keys") && !is_public("/metrics/") && is_public("/health/live"));
    }

    /// Path segments an attacker would try, in every spelling.
    fn segment() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("admin".to_owned()),
            Just("%61dmin".to_owned()),
            Just("%2561dmin".to_owned()),
            Just("ADMIN".to_owned()),
            Just("admin.".to_owned()),
            Just("health".to_owned()),
            Just("metrics".to_owned()),
            Just("keys".to_owned()),
            Just("api".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e%2e".to_owned()),
            Just("%2F".to_owned()),
            Just("".to_owned()),
            "[a-z%0-9.]{0,6}",
        ]
    }

    proptest::proptest! {
        // Cases found once are unit tests above (`/admin/..`), so no regression files are written.
        #![proptest_config(proptest::prelude::ProptestConfig { failure_persistence: None, ..Default::default() })]

        /// Whatever the router would take for an `/admin` route, the middleware asks `admin` for;
        /// nothing public is under `/admin`.
        #[test]
        fn every_path_the_router_takes_for_admin_needs_admin(segs in proptest::collection::vec(segment(), 0..6)) {
            let raw = format!("/{}", segs.join("/"));
            let Ok(uri) = raw.parse::<actix_web::http::Uri>() else { return Ok(()) };
            let routed = actix_web::dev::Url::new(uri).path().to_owned();
            let admin_route = actix_web::dev::ResourceDef::prefix("/admin");
            if admin_route.is_match(&routed) {
                proptest::prop_assert!(needs_admin(&routed), "{} routed as {}", raw, routed);
            }
            if is_public(&routed) {
                proptest::prop_assert!(!needs_admin(&routed) && !needs_admin(&raw));
            }
        }

        /// Any `Authorization` header is parsed without a panic, and only `Bearer <token>` yields one.
        #[test]
        fn authorization_headers_never_panic(value in "[ -~]{0,80}") {
            if let Ok(h) = actix_web::http::header::HeaderValue::from_str(&value) {
                let r = TestRequest::default().insert_header((actix_web::http::header::AUTHORIZATION, h)).to_http_request();
                if let Some(t) = token(&r) {
                    let scheme = value.trim().split_once(' ').map(|(s, _)| s.to_ascii_lowercase());
                    proptest::prop_assert_eq!(scheme.as_deref(), Some("bearer"));
                    proptest::prop_assert!(!t.starts_with(' '));
                }
            }
        }
    }
}
