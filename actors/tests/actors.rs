//! Isolated actor tests: each starts one actor in-process with probe recipients for its
//! dependencies (see `actors/probe.rs`) and a temporary store. One binary, modules by actor.

mod actors {
    pub mod fixture;
    pub mod probe;

    mod room;
    mod rooms;
    mod router;
    mod session;
    mod supervision;
    mod sweeper;
    mod tracker;
}
