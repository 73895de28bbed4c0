//! The agent registry (issue 14): who is an agent (capabilities, pools, weight), what it says it
//! is doing, the pools' [`crate::pool::LoadBalancer`]s, and tasks.
//!
//! ```text
//! agents (Agents registry: own arbiter; permanent, not critical)
//!   └─ pool:<name>   one LoadBalancer per pool, on the registry's arbiter (permanent, not
//!                    critical), started when the first agent registers with the pool
//! ```
//!
//! Owns: the registrations (`agents` tree, reloaded in `started()`, so also after a restart), every
//! agent's status (in memory: after a process restart agents are offline until they connect), the
//! set of connected clients (from the shards' [`Presence`](crate::messages::Presence)), the tasks
//! (`tasks` tree) and their deadlines. Sent by: the rooms handle (`agent.*`, `pool.*`, `task.*`
//! calls), router shards (presence). It tells balancers about members coming and going, sends
//! `task` and `task_updated` messages through the shards, and publishes `agent_status` and
//! `task_updated` on the event bus.

mod records;
mod registry;
mod tasks;

pub use records::{AgentRecord, AgentsConfig, TaskRecord};
pub use registry::Agents;
