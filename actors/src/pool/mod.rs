//! Pools of agents (issue 14): the strategies a pool picks its member with ([`strategy`]) and the
//! [`LoadBalancer`] actor, one per pool, started by the agent registry (`crate::agents`).

pub mod balancer;
pub mod strategy;

pub use balancer::LoadBalancer;
