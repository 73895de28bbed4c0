//! Probes: tiny actors that stand in for an actor's dependencies. A probe records every message
//! it receives into a channel; the test awaits "the next message" with a bounded wait, or checks
//! that nothing more came once everything sent so far has been handled.

use std::marker::PhantomData;
use std::time::Duration;

use actix::dev::MessageResponse;
use actix::prelude::*;
use tokio::sync::mpsc;

/// The longest a test waits for something it expects. Under `tokio::time::pause` this is virtual
/// time, which jumps to the next timer while the runtime is idle: a timer a test awaits must be due
/// within it (ack timeouts, sweep intervals and deadlines in these tests are a few seconds).
pub const WAIT: Duration = Duration::from_secs(10);

/// Answers a probe gives to the messages that expect one.
type Reply<M> = Box<dyn FnMut(&M) -> <M as Message>::Result>;

/// Records each `M` it receives and answers it with its reply function.
pub struct Probe<M: Message> {
    tx: mpsc::UnboundedSender<M>,
    reply: Reply<M>,
}

impl<M: Message + 'static> Actor for Probe<M> {
    type Context = Context<Self>;
}

impl<M> Handler<M> for Probe<M>
where
    M: Message + 'static,
    M::Result: MessageResponse<Probe<M>, M>,
{
    type Result = M::Result;
    fn handle(&mut self, msg: M, _: &mut Context<Self>) -> M::Result {
        let answer = (self.reply)(&msg);
        let _ = self.tx.send(msg);
        answer
    }
}

/// Sent by [`Seen::drain`] behind the messages already in the probe's mailbox. (Generic over
/// `M` so that it can never be the `M` of the same probe.)
struct Sync<M>(PhantomData<fn() -> M>);

impl<M: 'static> Message for Sync<M> {
    type Result = ();
}

impl<M: Message + 'static> Handler<Sync<M>> for Probe<M> {
    type Result = ();
    fn handle(&mut self, _: Sync<M>, _: &mut Context<Self>) {}
}

/// What a probe has received, in order.
pub struct Seen<M: Message + 'static> {
    rx: mpsc::UnboundedReceiver<M>,
    addr: Addr<Probe<M>>,
}

/// A probe for messages without an answer: the recipient to hand to the actor under test, and
/// what it receives.
pub fn probe<M>() -> (Recipient<M>, Seen<M>)
where
    M: Message<Result = ()> + Send + 'static,
{
    probe_with(|_| ())
}

/// A probe that answers each message with `reply` (e.g. `Redeliver` → whether a session took it).
pub fn probe_with<M>(reply: impl FnMut(&M) -> M::Result + 'static) -> (Recipient<M>, Seen<M>)
where
    M: Message + Send + 'static,
    M::Result: Send + MessageResponse<Probe<M>, M>,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = Probe { tx, reply: Box::new(reply) }.start();
    (addr.clone().recipient(), Seen { rx, addr })
}

impl<M: Message + 'static> Seen<M> {
    /// The next message; fails the test if none comes within [`WAIT`].
    pub async fn next(&mut self) -> M {
        match tokio::time::timeout(WAIT, self.rx.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => panic!("the probe for {} stopped", std::any::type_name::<M>()),
            Err(_) => panic!("no {} within {WAIT:?}", std::any::type_name::<M>()),
        }
    }

    /// Everything received so far: the probe handles what is already in its mailbox first.
    pub async fn drain(&mut self) -> Vec<M> {
        self.addr.send(Sync(PhantomData)).await.expect("the probe runs");
        let mut out = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            out.push(m);
        }
        out
    }

    /// Asserts that nothing was received beyond what the test has taken. Call it after a request
    /// whose answer shows that the actor under test has handled everything that matters.
    pub async fn quiet(&mut self) {
        let extra = self.drain().await.len();
        assert_eq!(extra, 0, "unexpected {} message(s) for the probe of {}", extra, std::any::type_name::<M>());
    }
}
