//! Long-lived responses end when the broker stops: a WebSocket gets a close frame (1001, going
//! away) and an SSE stream ends, so that a graceful stop does not wait `shutdown_timeout` for
//! connections that would never finish by themselves, and clients learn the broker is going.
//!
//! actix-web stops accepting and lets in-flight requests finish on a graceful stop, but a
//! WebSocket or an event stream is a response body that never ends: [`Closing::wrap`] puts such a
//! body behind a signal that [`Closing::start`] raises (`crate::Serving::until` does, before it
//! stops the HTTP server).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use tokio::sync::watch;

/// The broker-wide "we are stopping" signal, shared by every worker.
pub struct Closing {
    tx: watch::Sender<bool>,
}

impl Default for Closing {
    fn default() -> Self {
        Closing { tx: watch::Sender::new(false) }
    }
}

impl Closing {
    /// Ends every wrapped body, now and for those wrapped from now on.
    pub fn start(&self) {
        self.tx.send_replace(true);
    }

    /// `resp` with a body that ends when [`Closing::start`] is called, after writing `last` (a
    /// WebSocket close frame; nothing for SSE). The inner body is dropped then, which stops the
    /// session actor behind it.
    pub fn wrap(&self, resp: HttpResponse, last: Option<Bytes>) -> HttpResponse {
        let mut rx = self.tx.subscribe();
        let signal: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
            // An error means the sender is gone: the broker is gone too.
            let _ = rx.wait_for(|closing| *closing).await;
        });
        resp.map_body(|_, inner| BoxBody::new(UntilClosing { inner: Some(inner), signal, last }))
    }

    /// A WebSocket close frame with code 1001 (going away), as a server writes it (unmasked).
    pub fn ws_close_frame() -> Bytes {
        use actix_http::ws::{CloseCode, CloseReason, Parser};
        let mut buf = actix_web::web::BytesMut::new();
        let reason = CloseReason { code: CloseCode::Away, description: Some("server shutting down".into()) };
        Parser::write_close(&mut buf, Some(reason), false);
        buf.freeze()
    }
}

/// A body that yields its inner body's chunks until the signal, then `last`, then ends.
///
/// The inner bodies wrapped here (actix-web-actors' WebSocket context, the SSE body) yield whole
/// frames or events per chunk, so ending between two chunks never cuts one in half.
struct UntilClosing {
    inner: Option<BoxBody>,
    signal: Pin<Box<dyn Future<Output = ()>>>,
    last: Option<Bytes>,
}

impl MessageBody for UntilClosing {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        if this.signal.as_mut().poll(cx).is_ready() {
            this.inner = None;
            return Poll::Ready(this.last.take().map(Ok));
        }
        let next = Pin::new(inner).poll_next(cx);
        if let Poll::Ready(None) = next {
            this.inner = None;
        }
        next
    }
}
