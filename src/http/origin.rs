//! Browser origins: which web pages (and extensions) may call the broker, and the CORS headers
//! they get.
//!
//! A request without `Origin` (scripts, agents, the CLI) is not affected. A request with one is
//! allowed when the origin is
//! - listed in `cors_origins` (exact, case-insensitive; `*` allows any), which is also how a
//!   browser extension is let in (`chrome-extension://<id>`, `moz-extension://<id>`), or
//! - the broker itself: its `host:port` equals the `Host` the request was sent to. Python's
//!   `websocket-client` (the original bridge's client) sends `Origin: http://<host>:<port>` on
//!   every handshake, and a page the broker served would do the same. Whether that `Host` is one of
//!   the broker's own names is the Host check's business (DNS rebinding), not this one's.
//!
//! Any other origin is refused before routing with 403 and a JSON body `{error, code:
//! "forbidden"}` — preflights, plain requests and WebSocket upgrades alike — so a foreign page can
//! neither read nor drive a local broker. Allowed preflights answer 200 with the methods and the
//! requested headers, and `Access-Control-Allow-Private-Network: true` when Chrome asks for it
//! (`Access-Control-Request-Private-Network: true`, private network access to localhost).
//!
//! Written here rather than with actix-cors because actix-cors refuses in plain text with 400 and
//! cannot compare an origin with the request's `Host`.

use std::collections::HashSet;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{Error, HttpResponse, ResponseError};

use super::ApiError;
use crate::config::Config;

/// Methods browsers may use.
const METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";
/// Request headers allowed when a preflight does not list its own.
const HEADERS: &str = "authorization, content-type, accept, last-event-id";
/// Response headers a page may read besides the simple ones.
const EXPOSE: &str = "retry-after, x-content-sha256";
/// How long a browser may cache a preflight, in seconds.
const MAX_AGE: &str = "3600";

/// Which origins may call (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// `cors_origins = "*"`.
    any: bool,
    /// The listed origins, lower-case, without a trailing `/`.
    listed: HashSet<String>,
}

impl OriginPolicy {
    /// The policy of `cors_origins`.
    pub fn new(config: &Config) -> Self {
        let origins = config.cors_origin_list();
        OriginPolicy {
            any: origins.iter().any(|o| o == "*"),
            listed: origins.iter().filter(|o| *o != "*").map(|o| normalise(o)).collect(),
        }
    }

    /// May a request with this `Origin`, sent to this `Host`, go on?
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        self.any || self.listed.contains(&normalise(origin)) || host.is_some_and(|h| same_origin(origin, h))
    }
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// True when `origin` is `http://` or `https://` followed by exactly the request's `Host`.
fn same_origin(origin: &str, host: &str) -> bool {
    let origin = origin.trim();
    let authority = origin
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .and_then(|_| origin.get(7..))
        .or_else(|| origin.get(..8).filter(|s| s.eq_ignore_ascii_case("https://")).and_then(|_| origin.get(8..)));
    authority.is_some_and(|a| !a.is_empty() && a.trim_end_matches('/').eq_ignore_ascii_case(host.trim()))
}

/// The origin middleware (see the module docs); `crate::http::cors` builds it.
pub struct Cors {
    policy: Rc<OriginPolicy>,
}

impl Cors {
    pub fn new(policy: OriginPolicy) -> Self {
        Cors { policy: Rc::new(policy) }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Cors
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Transform = CorsMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CorsMiddleware { service: Rc::new(service), policy: Rc::clone(&self.policy) }))
    }
}

/// The running origin middleware around the routes.
pub struct CorsMiddleware<S> {
    service: Rc<S>,
    policy: Rc<OriginPolicy>,
}

/// The 403 for a refused origin.
fn refusal(origin: &str) -> HttpResponse {
    let mut resp = ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "origin {origin:?} is not allowed: only the broker's own origin and those in cors_origins may call it \
             (start it with --cors-origins {origin} to allow this one)"
        ),
    )
    .error_response();
    resp.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
    resp
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The answer to an allowed preflight.
fn preflight(req: &ServiceRequest, origin: &HeaderValue, any: bool) -> HttpResponse {
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, if any { HeaderValue::from_static("*") } else { origin.clone() }))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, METHODS))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE))
        .insert_header((header::VARY, "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"));
    // The origin is trusted: whatever headers it wants to send are fine.
    match req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        Some(asked) => resp.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone())),
        None => resp.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, HEADERS)),
    };
    let private = req.headers().get("access-control-request-private-network").and_then(|v| v.to_str().ok());
    if private.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        resp.insert_header(("access-control-allow-private-network", "true"));
    }
    resp.finish()
}

impl<S, B> Service<ServiceRequest> for CorsMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
            let service = Rc::clone(&self.service);
            return Box::pin(async move { service.call(req).await.map(ServiceResponse::map_into_boxed_body) });
        };
        let origin_text = origin.to_str().unwrap_or_default().to_owned();
        let host = header_str(req.headers(), header::HOST).map(str::to_owned).or_else(|| {
            // HTTP/2 carries the host in the URI's authority.
            req.uri().authority().map(|a| a.as_str().to_owned())
        });
        if !self.policy.allows(&origin_text, host.as_deref()) {
            tracing::debug!(origin = %origin_text, host = ?host, path = req.path(), "origin refused");
            let resp = refusal(&origin_text);
            return Box::pin(ready(Ok(req.into_response(resp))));
        }
        if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            let resp = preflight(&req, &origin, self.policy.any);
            return Box::pin(ready(Ok(req.into_response(resp))));
        }
        let allow = if self.policy.any { HeaderValue::from_static("*") } else { origin };
        let service = Rc::clone(&self.service);
        Box::pin(async move {
            let mut res = service.call(req).await?.map_into_boxed_body();
            let headers = res.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE));
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &str) -> OriginPolicy {
        let config = Config { cors_origins: list.into(), ..Config::from_files(None).expect("defaults") };
        OriginPolicy::new(&config)
    }

    #[test]
    fn same_origin_is_the_request_host() {
        let p = policy("https://claude.ai");
        assert!(p.allows("http://127.0.0.1:5001", Some("127.0.0.1:5001")), "what websocket-client sends");
        assert!(p.allows("https://LOCALHOST:5001", Some("localhost:5001")));
        assert!(p.allows("http://localhost", Some("localhost")), "port 80 is left out of both");
        assert!(!p.allows("http://127.0.0.1:5002", Some("127.0.0.1:5001")), "another port is another origin");
        assert!(!p.allows("http://evil.example", Some("127.0.0.1:5001")));
        assert!(!p.allows("http://127.0.0.1:5001", None));
        assert!(!p.allows("ftp://127.0.0.1:5001", Some("127.0.0.1:5001")));
        assert!(!p.allows("http://", Some("")));
        assert!(p.allows("https://claude.ai", Some("127.0.0.1:5001")));
        assert!(p.allows("https://Claude.ai/", Some("127.0.0.1:5001")));
    }

    #[test]
    fn extensions_and_wildcards() {
        let p = policy("chrome-extension://abcdefghijklmnopabcdefghijklmnop");
        assert!(p.allows("chrome-extension://abcdefghijklmnopabcdefghijklmnop", Some("127.0.0.1:5001")));
        assert!(!p.allows("chrome-extension://otherotherotherotherotherotherot", Some("127.0.0.1:5001")));
        assert!(!p.allows("https://claude.ai", Some("127.0.0.1:5001")), "the list replaces the default");
        assert!(policy("*").allows("https://anything.example", None));
        assert!(!policy("").allows("https://claude.ai", Some("127.0.0.1:5001")), "empty: only the broker itself");
        assert!(policy("").allows("http://127.0.0.1:5001", Some("127.0.0.1:5001")));
    }
}
