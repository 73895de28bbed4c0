//! What every session shares, WebSocket ([`super::Session`]) and SSE (`crate::sse`): settings,
//! dependencies, the backlog's size, and the life cycle of [`Registration`]. A leaf of `session`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;

use crate::auth::limits::{until_ms, CredentialsRevoked};
use crate::auth::SessionAuth;
use crate::delivery::{Backlog, CloseSession, Deliver, Notify, SessionLink, Transport, TypeFilter};
use crate::messages::{CatchUp, Connect, Connected, Disconnect, RouteError, ShardPort, TrackerLink};
use crate::rooms::RoomsHandle;
use crate::router::RouterHandle;
use crate::supervisor::{ChildHandle, ChildSpec, Fault, Intensity, RestartPolicy, Tree};

/// Session settings, shared by all sessions.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Frames above this get a `too_large` error frame; the session stays open.
    pub max_frame_bytes: usize,
    /// Frames above this close the socket with 1009 (the codec refuses to buffer them).
    pub hard_frame_bytes: usize,
    /// Server ping interval.
    pub heartbeat_interval: Duration,
    /// Silence allowed after a missed ping before the session is closed.
    pub heartbeat_timeout: Duration,
    /// Frames queued for one session before it is fed from the store instead (WebSocket and SSE
    /// sessions allow at least `queue_bytes / 256`, so the byte budget is what binds).
    pub queue_limit: usize,
    /// Bytes queued for one session (encoded frames plus [`crate::delivery::FRAME_OVERHEAD`] each)
    /// before it is fed from the store, or `persist: false` messages are dropped for it.
    pub queue_bytes: usize,
    /// Sends awaiting their `sent` reply before the session stops reading its socket; it reads
    /// again once half of them are answered (TCP pushes back on the client meanwhile).
    pub max_in_flight: usize,
    pub server_name: String,
    pub version: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_frame_bytes: agent_bridge_protocol::DEFAULT_MAX_FRAME_BYTES,
            hard_frame_bytes: 4 * agent_bridge_protocol::DEFAULT_MAX_FRAME_BYTES,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(10),
            queue_limit: 4096,
            queue_bytes: 64 << 20,
            max_in_flight: 10_000,
            server_name: "agent-bridge".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// How a session encodes its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Bincode,
}

/// Everything a new session needs, resolved by the HTTP layer.
pub struct SessionParams {
    pub client_id: String,
    pub since: Option<u64>,
    pub types: Option<HashSet<String>>,
    pub encoding: Encoding,
    /// The authenticated identity and its limits (crate::auth).
    pub auth: SessionAuth,
    /// Run when the session stops: the HTTP layer ends the TCP connection if it outlives the
    /// close (actix-http can keep it open after a close the server starts).
    pub on_stop: Option<Box<dyn FnOnce()>>,
}

/// Shared dependencies of all sessions.
#[derive(Clone)]
pub struct SessionDeps {
    pub router: RouterHandle,
    pub tracker: TrackerLink,
    pub rooms: RoomsHandle,
    pub tree: Arc<Tree>,
    pub config: Arc<SessionConfig>,
}

/// The name of the supervision group sessions belong to.
pub const SESSIONS_GROUP: &str = "sessions";

/// The backlog of a WebSocket or SSE session: bounded by `queue_bytes`, with room for at least as
/// many frames as fit in it at 256 bytes each.
pub(crate) fn session_backlog(config: &SessionConfig) -> Arc<Backlog> {
    Backlog::sized(config.queue_limit.max(config.queue_bytes / 256), config.queue_bytes)
}

/// A session actor (WebSocket or SSE) on a [`Registration`]: what differs between them.
pub(crate) trait Connection: Actor {
    /// Ends the session because its credentials are no longer valid (revoked or expired).
    fn close_credentials(&mut self, why: &str, ctx: &mut Self::Context);
    /// The shard answered the registration: greet the client, or tell it and close.
    fn connected(&mut self, result: Result<Connected, RouteError>, ctx: &mut Self::Context);
}

/// What WebSocket and SSE sessions share, and their common life cycle: a temporary child of the
/// [`SESSIONS_GROUP`] node, registered with its client's shard and for revocation of its key
/// when it starts, and leaving all three when it stops.
pub(crate) struct Registration {
    /// The bound client id.
    pub(crate) client_id: String,
    /// Unique per connection.
    pub(crate) session_id: String,
    /// This client's shard (registration, catch-up).
    pub(crate) shard: ShardPort,
    /// Supervision link (temporary child).
    pub(crate) child: ChildHandle,
    /// The bounded outbound queue shared with the shard.
    pub(crate) backlog: Arc<Backlog>,
    /// Message types this session wants (shared with the router).
    pub(crate) filter: Arc<TypeFilter>,
    /// Replay the inbox after this seq first.
    pub(crate) since: Option<u64>,
    /// Who this session is (its identity, permissions, rate limits and connection slot). Room
    /// code checks private rooms with `crate::auth::may_join_room(&reg.auth.identity, ...)`.
    pub(crate) auth: SessionAuth,
}

impl Registration {
    /// A new session of `client_id`, named `<prefix>:<client>:<session>` in the tree.
    pub(crate) fn new(deps: &SessionDeps, kind: &'static str, prefix: &str, client_id: String, since: Option<u64>, types: Option<HashSet<String>>, auth: SessionAuth) -> Self {
        let session_id = uuid::Uuid::now_v7().simple().to_string();
        let child = deps.tree.register(ChildSpec {
            name: format!("{prefix}:{client_id}:{session_id}"),
            kind,
            parent: SESSIONS_GROUP.into(),
            policy: RestartPolicy::Temporary,
            intensity: Intensity::default(),
            critical: false,
        });
        Registration {
            shard: deps.router.shard(&client_id).clone(),
            client_id,
            session_id,
            child,
            backlog: session_backlog(&deps.config),
            filter: TypeFilter::new(types),
            since,
            auth,
        }
    }

    /// In `started`: makes the session reachable by fault injection and by revocation of its
    /// key, arms the expiry of its credentials, and registers it with its shard, handling nothing
    /// else until the shard answers ([`Connection::connected`]): the replay the shard queues comes
    /// before live traffic. `Err` with the reason to close at once when the key is revoked.
    pub(crate) fn start<A>(&self, ctx: &mut A::Context, transport: Transport) -> Result<(), &'static str>
    where
        A: Connection + Handler<Fault> + Handler<CredentialsRevoked> + Handler<Deliver> + Handler<Notify> + Handler<CloseSession>,
        A::Context: AsyncContext<A>
            + ToEnvelope<A, Fault>
            + ToEnvelope<A, CredentialsRevoked>
            + ToEnvelope<A, Deliver>
            + ToEnvelope<A, Notify>
            + ToEnvelope<A, CloseSession>,
    {
        let addr = ctx.address();
        self.child.set_fault_target(addr.clone().recipient());
        if !self.auth.register(&self.session_id, addr.clone().recipient()) {
            return Err("this API key has been revoked");
        }
        if let Some(at) = self.auth.identity.expires_at_ms {
            ctx.run_later(until_ms(at), |act, ctx| act.close_credentials("the credentials of this session have expired", ctx));
        }
        let link = SessionLink::of(addr, &self.session_id, &self.backlog, &self.filter, transport);
        let connect = self.shard.connect.send(Connect { client_id: self.client_id.clone(), link, since: self.since });
        ctx.wait(actix::fut::wrap_future::<_, A>(connect).map(|res, act, ctx| act.connected(res.map_err(RouteError::from).and_then(|r| r), ctx)));
        Ok(())
    }

    /// The request for the next batch once a lagging backlog drained.
    pub(crate) fn catch_up(&self) -> CatchUp {
        CatchUp { client_id: self.client_id.clone(), session_id: self.session_id.clone() }
    }

    /// In `stopped`: leaves the revocation registry, the shard and the tree.
    pub(crate) fn stop(&self) {
        self.auth.deregister(&self.session_id);
        self.shard.disconnect.do_send(Disconnect { client_id: self.client_id.clone(), session_id: self.session_id.clone() });
        self.child.stopped();
    }
}
