//! Batch sends (`send_batch` frames, `POST /api/send_batch`): every entry goes the way of a single
//! send — the same checks, [`crate::envelope`], the router — and [`Batch`] only gathers the
//! answers, in the entries' order, into the one reply of the batch.
//!
//! Every entry is routed before its batch is answered or the next frame is read, so entries keep
//! their order in each recipient's stream, among themselves and with the sender's single sends
//! (the router's futures are already in the shard mailboxes when they are created).

use std::future::Future;
use std::pin::Pin;

use agent_bridge_protocol::frames::BatchResult;
use agent_bridge_protocol::ProtocolError;

use crate::messages::{RouteError, Routed};
use crate::metrics::metrics;

/// A router answer still to come.
type Reply = Pin<Box<dyn Future<Output = Result<Routed, RouteError>>>>;

/// One entry of a batch: refused already, or routed and waiting for the router.
enum Entry {
    Done(BatchResult),
    Routed { index: usize, r#ref: Option<String>, reply: Reply },
}

/// The entries of one batch, in order.
#[derive(Default)]
pub struct Batch {
    entries: Vec<Entry>,
    routed: usize,
}

impl Batch {
    /// Room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        Batch { entries: Vec::with_capacity(n), routed: 0 }
    }

    /// Entry `index` was refused before routing, with the code an `error` frame would carry.
    pub fn refuse(&mut self, index: usize, r#ref: Option<String>, code: &str, error: impl Into<String>, retry_after: Option<u64>) {
        metrics().rejected.with_label_values(&[code]).inc();
        self.entries.push(Entry::Done(BatchResult::failed(index, r#ref, code, error, retry_after)));
    }

    /// Entry `index` could not be decoded or validated.
    pub fn invalid(&mut self, index: usize, r#ref: Option<String>, e: &ProtocolError) {
        self.refuse(index, r#ref, e.code(), e.to_string(), None);
    }

    /// Entry `index` is in the router; `reply` resolves once it is durable.
    pub fn routed(&mut self, index: usize, r#ref: Option<String>, reply: impl Future<Output = Result<Routed, RouteError>> + 'static) {
        self.routed += 1;
        self.entries.push(Entry::Routed { index, r#ref, reply: Box::pin(reply) });
    }

    /// How many entries reached the router (what a session counts in flight).
    pub fn routed_count(&self) -> usize {
        self.routed
    }

    /// Every entry's result, in order, once the router has answered them all.
    pub fn results(self) -> impl Future<Output = Vec<BatchResult>> + 'static {
        let answers = self.entries.into_iter().map(|entry| async move {
            match entry {
                Entry::Done(result) => result,
                Entry::Routed { index, r#ref, reply } => result_of(index, r#ref, reply.await),
            }
        });
        futures_util::future::join_all(answers)
    }
}

/// The result of a routed entry: what its `sent` or `error` frame would have said.
pub fn result_of(index: usize, r#ref: Option<String>, routed: Result<Routed, RouteError>) -> BatchResult {
    match routed {
        Ok(r) => BatchResult::sent(index, r#ref, r.message_id, r.seq, r.status, r.recipients),
        Err(e) => {
            metrics().rejected.with_label_values(&[e.code()]).inc();
            BatchResult::failed(index, r#ref, e.code(), e.to_string(), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_bridge_protocol::frames::{BatchStatus, SentStatus};

    #[actix::test]
    async fn results_keep_the_entries_order() {
        let mut batch = Batch::with_capacity(3);
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<Routed, RouteError>>();
        batch.routed(0, Some("a".into()), async move { rx.await.unwrap_or(Err(RouteError::Unavailable)) });
        batch.invalid(1, None, &ProtocolError::NotAFrame);
        batch.routed(2, None, async { Err(RouteError::UnknownRecipient("pool:x".into())) });
        assert_eq!(batch.routed_count(), 2);
        let results = batch.results();
        let _ = tx.send(Ok(Routed { message_id: "msg-1".into(), seq: Some(1), status: SentStatus::Queued, recipients: 1 }));
        let results = results.await;
        assert_eq!(results.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!((results[0].status, results[0].r#ref.as_deref()), (Some(BatchStatus::Sent), Some("a")));
        assert_eq!(results[1].code.as_deref(), Some("bad_frame"));
        assert_eq!(results[2].code.as_deref(), Some("unknown_recipient"));
    }
}
