//! `send_batch` frames: each entry goes the way of a `send` frame ([`Session::envelope`], then the
//! router), and one `sent_batch` answers them all, in order, once every routed entry is durable
//! (PROTOCOL.md section 7). The entries count in flight like single sends, so a session that
//! sends batches faster than the store takes them stops being read.

use actix::prelude::*;
use actix_web_actors::ws;
use agent_bridge_protocol::batch::{decode_send, BATCH_TOO_LARGE, MAX_BATCH_MESSAGES};
use agent_bridge_protocol::frames::{extract_ref, SendBatch, SentBatch};
use agent_bridge_protocol::ServerFrame;

use super::{Refused, Session};
use crate::batch::Batch;
use crate::metrics::metrics;

impl Session {
    /// Routes every entry of a `send_batch` before returning, and answers it with one
    /// `sent_batch` (or, refused whole — empty or over [`MAX_BATCH_MESSAGES`] — one `error`).
    pub(super) fn send_batch(&mut self, frame: SendBatch, ctx: &mut ws::WebsocketContext<Self>) {
        if let Err(e) = frame.check() {
            return self.reject(&e, frame.r#ref, ctx);
        }
        if frame.too_many(MAX_BATCH_MESSAGES) {
            metrics().rejected.with_label_values(&[BATCH_TOO_LARGE]).inc();
            let why = format!("a batch of {} messages exceeds the limit of {MAX_BATCH_MESSAGES}", frame.messages.len());
            return self.write(&ServerFrame::error(BATCH_TOO_LARGE, why, frame.r#ref), ctx);
        }
        let SendBatch { r#ref, messages } = frame;
        let mut batch = Batch::with_capacity(messages.len());
        for (index, entry) in messages.iter().enumerate() {
            let send = match decode_send(entry, self.config.max_frame_bytes) {
                Ok(send) => send,
                Err(e) => {
                    batch.invalid(index, extract_ref(entry.json()), &e);
                    continue;
                }
            };
            let entry_ref = send.r#ref.clone();
            match self.envelope(send) {
                Ok(env) => batch.routed(index, entry_ref, self.router.route(env)),
                Err(Refused::Auth(e)) => batch.refuse(index, entry_ref, e.code(), e.to_string(), e.retry_after()),
                Err(Refused::Invalid(e)) => batch.invalid(index, entry_ref, &e),
            }
        }
        let routed = batch.routed_count();
        self.admitted(routed);
        ctx.spawn(batch.results().into_actor(self).map(move |results, act, ctx| {
            act.settled(routed);
            act.write(&ServerFrame::SentBatch(SentBatch { r#ref, results }), ctx);
        }));
    }
}
