//! HTTP body compression, both ways (PROTOCOL.md section 3, "Compression").
//!
//! - **Responses**: actix-web's `Compress` middleware, gzip or zstd as the request's
//!   `Accept-Encoding` prefers (nothing without one). Event streams opt out
//!   (`Content-Encoding: identity`, set by [`uncompressed`]): each event must reach the client as
//!   it is written, and the encoder would hand chunks over 1 KiB to a blocking thread first.
//!   WebSocket upgrades (101) are never encoded.
//! - **Request bodies** with `Content-Encoding: gzip` (or `x-gzip`) or `zstd` are decoded by
//!   [`decode`] before any handler reads them, into a buffer capped at the largest body any route
//!   takes; each route's own limit (`read_body`) then applies to the decoded size, so a small
//!   compressed body that inflates past it (a "gzip bomb") is refused with 413 `too_large` after
//!   at most that many bytes were decoded. Any other encoding is refused with 415
//!   `unsupported_encoding`.
//!
//! actix-web's `web::Payload` extractor hands handlers the raw bytes (only its `Bytes`/`Json`
//! extractors decode, without a cap on one chunk's expansion), which is why the decoding is here.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponseBuilder, ResponseError};
use futures_util::Stream;

use super::ApiError;

/// A buffer that refuses to grow past `cap` bytes in total.
struct Capped {
    buf: Vec<u8>,
    /// Bytes still allowed.
    left: usize,
    /// Set once a write did not fit.
    over: bool,
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() > self.left {
            self.over = true;
            return Err(std::io::Error::other("decoded body exceeds the limit"));
        }
        self.left -= data.len();
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A streaming decoder writing into a [`Capped`] buffer.
enum Decoder {
    Gzip(flate2::write::GzDecoder<Capped>),
    Zstd(zstd::stream::write::Decoder<'static, Capped>),
}

impl Decoder {
    fn new(encoding: &str, cap: usize) -> Option<std::io::Result<Decoder>> {
        let out = Capped { buf: Vec::new(), left: cap, over: false };
        match encoding {
            "gzip" | "x-gzip" => Some(Ok(Decoder::Gzip(flate2::write::GzDecoder::new(out)))),
            "zstd" => Some(zstd::stream::write::Decoder::new(out).map(Decoder::Zstd)),
            _ => None,
        }
    }

    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match self {
            Decoder::Gzip(d) => d.write_all(chunk),
            Decoder::Zstd(d) => d.write_all(chunk),
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Decoder::Gzip(d) => d.try_finish(),
            Decoder::Zstd(d) => d.flush(),
        }
    }

    /// What was decoded since the last call.
    fn take(&mut self) -> Vec<u8> {
        let out = match self {
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Zstd(d) => d.get_mut(),
        };
        std::mem::take(&mut out.buf)
    }

    /// Whether the cap was reached.
    fn full(&mut self) -> bool {
        match self {
            Decoder::Gzip(d) => d.get_mut().over,
            Decoder::Zstd(d) => d.get_mut().over,
        }
    }
}

/// The decoded request body.
struct Decoded {
    inner: Payload,
    decoder: Decoder,
    done: bool,
}

impl Stream for Decoded {
    type Item = Result<web::Bytes, PayloadError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let step = match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(chunk))) => this.decoder.write(&chunk),
                Poll::Ready(None) => {
                    this.done = true;
                    this.decoder.finish()
                }
            };
            if let Err(e) = step {
                this.done = true;
                let err = if this.decoder.full() { PayloadError::Overflow } else { PayloadError::Io(e) };
                return Poll::Ready(Some(Err(err)));
            }
            let out = this.decoder.take();
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(out.into())));
            }
        }
    }
}

/// The largest decoded body any route reads, plus one byte (so a route's own limit, not the cap,
/// is what refuses a body of exactly its size plus some).
pub fn decode_cap(config: &crate::config::Config) -> usize {
    config.max_frame_bytes.max(config.max_file_bytes).max(agent_bridge_protocol::batch::MAX_BATCH_BYTES) + 1
}

/// Decodes a request body sent with `Content-Encoding` (see the module docs).
pub async fn decode(mut req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let encoding = req.headers().get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_ascii_lowercase());
    let Some(encoding) = encoding.filter(|e| !e.is_empty() && e != "identity") else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let cap = req.app_data::<web::Data<super::AppState>>().map_or(agent_bridge_protocol::batch::MAX_BATCH_BYTES, |s| decode_cap(&s.config));
    let decoder = match Decoder::new(&encoding, cap) {
        Some(Ok(d)) => d,
        Some(Err(e)) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("decoder: {e}")).into()),
        None => {
            let shown: String = encoding.chars().take(32).collect();
            let err = ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding", format!("Content-Encoding {shown:?} is not supported: use gzip or zstd"));
            return Ok(req.into_response(err.error_response()));
        }
    };
    let inner = req.take_payload();
    req.set_payload(Payload::Stream { payload: Box::pin(Decoded { inner, decoder, done: false }) });
    req.headers_mut().remove(header::CONTENT_ENCODING);
    req.headers_mut().remove(header::CONTENT_LENGTH);
    next.call(req).await.map(ServiceResponse::map_into_boxed_body)
}

/// Marks a streamed response (server-sent events) as not to be compressed.
pub fn uncompressed(builder: &mut HttpResponseBuilder) -> &mut HttpResponseBuilder {
    builder.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("identity")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    }

    #[test]
    fn a_decoder_stops_at_its_cap() {
        let zeros = gzip(&vec![0u8; 1 << 20]);
        let mut d = Decoder::new("gzip", 4096).expect("known").expect("new");
        assert!(d.write(&zeros).and_then(|()| d.finish()).is_err());
        assert!(d.full() && d.take().len() <= 4096);
        let mut d = Decoder::new("zstd", 100).expect("known").expect("new");
        let small = zstd::encode_all(&b"hello"[..], 3).expect("zstd");
        d.write(&small).and_then(|()| d.finish()).expect("fits");
        assert_eq!(d.take(), b"hello");
        assert!(Decoder::new("br", 10).is_none());
    }
}
