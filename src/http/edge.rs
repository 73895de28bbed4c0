//! The edge, before authentication and routing: the Host check and the body deadline.
//!
//! **Host.** The DNS-rebinding defence: a web page can make a browser call a port on the user's machine
//! under the page's own host name, so a broker answers only to the names it is reached by. IP
//! literals and loopback names (`localhost`, `*.localhost`) are always accepted — rebinding needs
//! a name the attacker controls — and so are the names in `allowed_hosts` (`*`: any). A broker
//! bound beyond loopback with no `allowed_hosts` accepts any name (it requires credentials there).
//! Refusals are 403 `host_not_allowed` as JSON, before authentication and routing.
//!
//! **Body deadline.** actix limits the time to receive a request's head, not its body: a body that
//! never finishes would hold a connection forever. Every request body (not WebSocket upgrades,
//! whose body is the socket) must arrive within `body_timeout_s`; past it, reading fails with a
//! timed-out error, which [`super::read_body`] answers with 408 `timeout` and closes the connection.
//! A response given before its body was read (a refusal, a route that takes no body) closes the
//! connection too — but actix first drains the rest of the body, however long it takes, so at the
//! deadline a body still unread has its socket shut down through the [`Connection`] handle.

use std::net::IpAddr;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, ResponseError};

use super::ApiError;
use crate::config::Config;

/// Which `Host` values the broker answers to.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    any: bool,
    names: Vec<String>,
}

impl HostPolicy {
    pub fn new(config: &Config) -> HostPolicy {
        let names = config.allowed_host_list();
        let open_bind = !config.bind.ip().is_loopback() && names.is_empty();
        HostPolicy { any: open_bind || names.iter().any(|n| n == "*"), names }
    }

    /// Whether a request naming `host` (a `Host` header value, port optional) is answered.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(name) = host_name(host) else { return false };
        if name.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
            return true;
        }
        name == "localhost" || name.ends_with(".localhost") || self.names.contains(&name)
    }
}

/// The host part of a `Host` value, lower-cased, without port or trailing dot; `None` if it is
/// not a valid authority.
fn host_name(host: &str) -> Option<String> {
    let authority: actix_web::http::uri::Authority = host.trim().parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    Some(authority.host().trim_end_matches('.').to_ascii_lowercase())
}

/// The host a request names: its `Host` header, else the URI's authority (HTTP/2).
fn request_host(req: &HttpRequest) -> Option<Result<String, ()>> {
    match req.headers().get(header::HOST) {
        Some(h) => Some(h.to_str().map(str::to_owned).map_err(|_| ())),
        None => req.uri().authority().map(|a| Ok(a.as_str().to_owned())),
    }
}

/// Refuses requests for a host name the broker does not answer to (see the module docs).
pub async fn check(req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let refused = match (req.app_data::<web::Data<HostPolicy>>(), request_host(req.request())) {
        (Some(policy), Some(Ok(host))) if !policy.allows(&host) => Some(host),
        (Some(_), Some(Err(()))) => Some("(not text)".to_owned()),
        _ => None,
    };
    match refused {
        None => next.call(req).await.map(ServiceResponse::map_into_boxed_body),
        Some(host) => {
            let shown: String = host.chars().take(100).collect();
            tracing::debug!(host = %shown, "request for a host name this broker does not answer to");
            let err = ApiError::new(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                format!("Host {shown:?} is not a name of this broker; add it to allowed_hosts"),
            );
            Ok(req.into_response(err.error_response()).map_into_boxed_body())
        }
    }
}

/// A connection's socket (a duplicate of its descriptor, held in the connection's data and dropped
/// with it), so that a request can end its connection at the TCP level.
pub struct Connection(std::sync::Arc<socket2::Socket>);

impl Connection {
    /// For `HttpServer::on_connect`: the handle of a plain TCP or a TLS connection.
    pub fn on_connect(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
        use std::os::fd::AsFd;
        type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
        let tcp = conn
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .or_else(|| conn.downcast_ref::<Tls>().map(|tls| tls.get_ref().0));
        if let Some(fd) = tcp.and_then(|t| t.as_fd().try_clone_to_owned().ok()) {
            ext.insert(Connection(std::sync::Arc::new(socket2::Socket::from(fd))));
        }
    }
}

impl Connection {
    /// A function that, `grace` after it is called, shuts the request's connection down if it is
    /// still open (a weak handle: a connection that closed by itself is left alone). `None` when
    /// the connection has no handle.
    pub fn closer(req: &HttpRequest, grace: Duration) -> Option<Box<dyn FnOnce()>> {
        let conn = std::sync::Arc::downgrade(&req.conn_data::<Connection>()?.0);
        Some(Box::new(move || {
            actix_web::rt::spawn(async move {
                tokio::time::sleep(grace).await;
                if let Some(socket) = conn.upgrade() {
                    tracing::debug!("shutting down a connection that outlived its WebSocket close");
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                }
            });
        }))
    }
}

/// A request body that fails with `TimedOut` once its deadline passes.
struct Deadline {
    inner: actix_web::dev::Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: bool,
    /// Set once the body has been read to its end (or failed).
    done: std::rc::Rc<std::cell::Cell<bool>>,
}

impl futures_util::Stream for Deadline {
    type Item = Result<web::Bytes, actix_web::error::PayloadError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            if !matches!(item, Some(Ok(_))) {
                self.done.set(true);
            }
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired = true;
            self.done.set(true);
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "the request body did not arrive in time");
            return Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(e))));
        }
        Poll::Pending
    }
}

/// Whether a request carries a body (a length above zero, or chunks).
fn has_body(req: &ServiceRequest) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0")
}

/// Puts every request body but a WebSocket upgrade's under the `body_timeout_s` deadline (see the
/// module docs).
pub async fn body_deadline(mut req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let timeout = req.app_data::<web::Data<super::AppState>>().map(|s| Duration::from_secs_f64(s.config.body_timeout_s));
    let (Some(timeout), false, true) = (timeout, upgrade, has_body(&req)) else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let done = std::rc::Rc::new(std::cell::Cell::new(false));
    let inner = req.take_payload();
    let body = Deadline { inner, sleep: Box::pin(tokio::time::sleep_until(deadline)), expired: false, done: done.clone() };
    req.set_payload(actix_web::dev::Payload::Stream { payload: Box::pin(body) });
    let conn = req.conn_data::<Connection>().map(|c| std::sync::Arc::downgrade(&c.0));
    let mut resp = next.call(req).await?.map_into_boxed_body();
    if !done.get() {
        // Answered before the body was read: no further request on this connection, and if the
        // body has not come by the deadline, the socket is shut down under actix's drain.
        resp.response_mut().head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
        if let Some(conn) = conn {
            actix_web::rt::spawn(async move {
                tokio::time::sleep_until(deadline).await;
                if let Some(socket) = conn.upgrade() {
                    tracing::debug!("closing a connection whose request body did not arrive in time");
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                }
            });
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(bind: &str, hosts: &str) -> HostPolicy {
        let config = Config { bind: bind.parse().expect("address"), allowed_hosts: hosts.into(), ..Config::load(&Default::default()).expect("defaults") };
        HostPolicy::new(&config)
    }

    #[test]
    fn loopback_answers_to_loopback_names_and_ip_literals_only() {
        let p = policy("127.0.0.1:5001", "");
        for ok in ["127.0.0.1:5001", "localhost", "LOCALHOST:5001", "localhost.:1", "app.localhost:5001", "[::1]:5001", "10.1.2.3"] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:5001", "localhost.evil.example", "127.0.0.1.nip.io", "user@localhost", "", " "] {
            assert!(!p.allows(bad), "{bad}");
        }
        let p = policy("127.0.0.1:5001", "bridge.internal, Other.Example");
        assert!(p.allows("bridge.internal:5001") && p.allows("other.example") && !p.allows("evil.example"));
        assert!(policy("127.0.0.1:5001", "*").allows("evil.example"));
    }

    #[test]
    fn beyond_loopback_checks_only_when_names_are_given() {
        assert!(policy("0.0.0.0:5001", "").allows("anything.example"));
        let p = policy("0.0.0.0:5001", "bridge.example.com");
        assert!(p.allows("bridge.example.com") && p.allows("10.0.0.7:5001") && !p.allows("evil.example"));
    }
}
