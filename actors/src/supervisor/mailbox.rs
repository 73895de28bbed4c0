//! [`Mailbox`]: an actor's address before the actor, and the restart loop it runs under.

use std::future::Future;
use std::pin::Pin;
use std::task::{self as std_task, Poll};

use actix::dev::channel::{self, AddressReceiver};
use actix::dev::ContextFut;
use actix::prelude::*;



use super::tree::{ChildHandle, Fault};


/// An actor's mailbox, created before the actor. Its [`Mailbox::address`] can be handed to the
/// actors this one depends on (which may need its address in turn) before it starts; messages
/// sent meanwhile wait in it. This is what `actix::Supervisor::start_in_arbiter` does inside:
/// a channel, `Context::with_receiver`, `Addr::new`.
pub struct Mailbox<A: Actor<Context = Context<A>>> {
    rx: AddressReceiver<A>,
    addr: Addr<A>,
}

impl<A> Default for Mailbox<A>
where
    A: Supervised + Actor<Context = Context<A>>,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<A> Mailbox<A>
where
    A: Supervised + Actor<Context = Context<A>>,
{
    /// An empty mailbox (no actor system needed yet).
    pub fn new() -> Self {
        let (tx, rx) = channel::channel(16);
        Mailbox { rx, addr: Addr::new(tx) }
    }

    /// The address of the actor that will run on this mailbox.
    pub fn address(&self) -> Addr<A> {
        self.addr.clone()
    }

    /// Starts `actor` on the current arbiter, restarted whenever its context stops (the root).
    pub fn start(self, actor: A) -> Addr<A> {
        actix::spawn(Restarts { fut: Context::with_receiver(self.rx).into_future(actor), child: None });
        self.addr
    }

    /// Starts the supervised child `child` on the current arbiter (see [`Mailbox::supervise_in`]).
    pub fn supervise(self, child: &ChildHandle, actor: A) -> Addr<A>
    where
        A: Handler<Fault>,
    {
        child.set_fault_target(self.addr.clone().recipient());
        actix::spawn(Restarts { fut: Context::with_receiver(self.rx).into_future(actor), child: Some(child.clone()) });
        self.addr
    }

    /// Starts the actor `make` builds on `arbiter`, as the child `child`: reachable by fault
    /// injection at once, and restarted whenever its context stops (a contained failure stops
    /// it); after each restart the child's node is marked running again.
    pub fn supervise_in(self, child: &ChildHandle, arbiter: &ArbiterHandle, make: impl FnOnce() -> A + Send + 'static) -> Addr<A>
    where
        A: Handler<Fault>,
    {
        child.set_fault_target(self.addr.clone().recipient());
        let (rx, child) = (self.rx, child.clone());
        arbiter.spawn_fn(move || {
            actix::spawn(Restarts { fut: Context::with_receiver(rx).into_future(make()), child: Some(child) });
        });
        self.addr
    }
}

/// The restart loop (actix's `Supervisor` future): polls the actor's context; when it stops and
/// its mailbox still has senders, `restart()` runs `Supervised::restarting` and the actor goes on.
struct Restarts<A: Supervised + Actor<Context = Context<A>>> {
    fut: ContextFut<A, Context<A>>,
    child: Option<ChildHandle>,
}

impl<A> Future for Restarts<A>
where
    A: Supervised + Actor<Context = Context<A>>,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std_task::Context<'_>) -> Poll<()> {
        loop {
            match Pin::new(&mut self.fut).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    if !self.fut.restart() {
                        return Poll::Ready(());
                    }
                    if let Some(child) = &self.child {
                        child.running();
                    }
                }
            }
        }
    }
}
