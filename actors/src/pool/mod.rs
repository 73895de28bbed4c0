//! Pools of agents (issue #14): the load-balancing strategies a pool picks its member with.
//!
//! Only the pure selection logic lives here so far ([`strategy`]); the `LoadBalancer` actor, the
//! agent registry calls and `pool:NAME` routing are not wired in yet.

pub mod strategy;
