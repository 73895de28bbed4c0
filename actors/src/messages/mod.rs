//! The seam between actors: every message that crosses from one actor to another, with its error
//! and the settings more than one actor reads (`Durability`, `Retention`), and the small handles
//! of recipients an actor is given at start ([`TrackerLink`], [`Shards`]).
//!
//! A leaf: it imports no actor module (only `delivery`, `store` and the protocol crate), and every
//! actor module imports it, so no actor depends on another actor's module and a test can stand a
//! probe in for any of them.

pub mod agents;
pub mod desktop;
pub mod email;
pub mod github;
pub mod managed;
pub mod managed_error;
pub mod room;
pub mod router;
pub mod tracker;
pub mod webhooks;

pub use agents::*;
pub use desktop::*;
pub use managed::*;
pub use managed_error::*;
pub use room::*;
pub use router::*;
pub use tracker::*;
