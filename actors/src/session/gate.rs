//! The read side of a WebSocket session: [`GatedPayload`], the request body actix-web-actors
//! decodes frames from, read only as fast as the session takes them ([`Gate`]), with frame
//! headers checked against the hard limit as they go by ([`FrameScan`]). A leaf of `session`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use actix_http::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::task::AtomicWaker;
use tracing::debug;

/// What a session and the reader of its socket share.
///
/// actix-web-actors decodes frames from a stream of request-body chunks ([`GatedPayload`]) and
/// hands them to the session in the same task. Holding that stream back (`Poll::Pending`) stops
/// reading the socket: actix-http pauses its read once the payload buffer passes its high-water
/// mark, the kernel buffers fill and TCP pushes back on the client. The session's mailbox keeps
/// being handled meanwhile (the `sent` replies that reopen the gate arrive there), which
/// `ctx.wait` would not allow.
#[derive(Default)]
pub struct Gate {
    /// Set while the session has too many sends awaiting their reply.
    paused: AtomicBool,
    /// The reader's task, woken when the gate opens.
    waker: AtomicWaker,
    /// Frames the session has been handed (one per decoded frame or error).
    pub(super) handled: AtomicU64,
    /// A frame header declared more than the hard frame limit.
    pub(super) overflow: AtomicBool,
}

impl Gate {
    pub(super) fn pause(&self) {
        self.paused.store(true, Ordering::Release);
    }

    pub(super) fn resume(&self) {
        if self.paused.swap(false, Ordering::AcqRel) {
            self.waker.wake();
        }
    }
}

/// The request body of a WebSocket session, read only as fast as the session can take it.
///
/// Besides the pause above, it yields no new bytes while a complete frame it has already passed
/// on waits to be decoded, and it reads each frame header as it goes by: a header declaring more
/// than the hard limit ends the stream at once (the session closes with 1009). actix-web-actors
/// reads everything available into its buffer before decoding, and the codec checks a frame's
/// length only once the whole frame is buffered, so without this a header declaring 2^40 bytes
/// would make the broker buffer whatever follows it.
pub struct GatedPayload<S> {
    inner: S,
    gate: Arc<Gate>,
    scan: FrameScan,
    /// Complete frames passed on to the decoder.
    passed: u64,
    max_frame: u64,
}

impl<S> GatedPayload<S> {
    pub fn new(inner: S, gate: Arc<Gate>, max_frame: usize) -> Self {
        GatedPayload { inner, gate, scan: FrameScan::default(), passed: 0, max_frame: max_frame as u64 }
    }
}

impl<S> futures_util::Stream for GatedPayload<S>
where
    S: futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.gate.overflow.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        // A decoded frame is handled before the decoder asks for more, so this only holds while
        // the decoder's buffer still has a whole frame for it: it takes that without us.
        if this.passed > this.gate.handled.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        if this.gate.paused.load(Ordering::Acquire) {
            this.gate.waker.register(cx.waker());
            // Re-check: a reply may have opened the gate between the load and the register.
            if this.gate.paused.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => match this.scan.feed(&chunk, this.max_frame) {
                Ok(frames) => {
                    this.passed += frames;
                    Poll::Ready(Some(Ok(chunk)))
                }
                Err(declared) => {
                    debug!(declared, limit = this.max_frame, "frame header over the hard limit");
                    this.gate.overflow.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(PayloadError::Overflow)))
                }
            },
            other => other,
        }
    }
}

/// Follows WebSocket frame boundaries in the client's byte stream (RFC 6455 §5.2) without
/// buffering payloads: collects each header, then skips the payload it declares.
#[derive(Default)]
struct FrameScan {
    head: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to come.
    skip: u64,
}

impl FrameScan {
    /// Feeds bytes; returns how many frames they completed, or the declared length of a frame
    /// above `max`.
    fn feed(&mut self, mut data: &[u8], max: u64) -> Result<u64, u64> {
        let mut frames = 0;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(data.len());
                self.skip -= n as u64;
                data = &data[n..];
                if self.skip == 0 {
                    frames += 1;
                }
                continue;
            }
            let need = if self.have < 2 { 2 } else { header_len(&self.head) };
            let n = (need - self.have).min(data.len());
            self.head[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have < 2 || self.have < header_len(&self.head) {
                continue;
            }
            let len = match self.head[1] & 0x7F {
                126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                127 => u64::from_be_bytes(self.head[2..10].try_into().unwrap_or([0xFF; 8])),
                n => u64::from(n),
            };
            if len > max {
                return Err(len);
            }
            self.have = 0;
            self.skip = len;
            if len == 0 {
                frames += 1;
            }
        }
        Ok(frames)
    }
}

/// The length of a frame header given its first two bytes.
fn header_len(head: &[u8; 14]) -> usize {
    let ext = match head[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if head[1] & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

#[cfg(test)]
mod tests {
    use super::FrameScan;

    /// A masked client frame header for a payload of `len` bytes (RFC 6455 §5.2).
    fn header(len: u64) -> Vec<u8> {
        let mut h = vec![0x82];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=0xFFFF => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn counts_frames_split_anywhere() {
        let mut bytes = Vec::new();
        for len in [0u64, 5, 125, 126, 70_000] {
            bytes.extend(header(len));
            bytes.extend(std::iter::repeat(7u8).take(len as usize));
        }
        for step in [1, 3, 13, 4096, bytes.len()] {
            let mut scan = FrameScan::default();
            let frames: u64 = bytes.chunks(step).map(|c| scan.feed(c, 1 << 20).expect("within the limit")).sum();
            assert_eq!(frames, 5, "chunks of {step}");
        }
    }

    #[test]
    fn refuses_by_the_declared_length_at_the_header() {
        let mut scan = FrameScan::default();
        assert_eq!(scan.feed(&header(1 << 40), 4 << 20), Err(1 << 40));
        let mut scan = FrameScan::default();
        let h = header((4 << 20) + 1);
        assert_eq!(scan.feed(&h[..5], 4 << 20), Ok(0), "header incomplete: nothing decided yet");
        assert_eq!(scan.feed(&h[5..], 4 << 20), Err((4 << 20) + 1));
    }
}
