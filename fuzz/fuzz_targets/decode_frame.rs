//! Fuzzes the protocol decoder with arbitrary bytes: JSON client frames (as a text WebSocket frame
//! arrives), bincode client frames (`?encoding=bincode`), the `ref` extraction used for error
//! replies, and the HTTP bodies. Decoding must never panic or hang, and whatever decodes must
//! re-encode to the same frame. The checks live in `agent_bridge_protocol::fuzzing`, so that
//! protocol/tests/fuzz_regressions.rs replays saved inputs with the very same code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agent_bridge_protocol::fuzzing::decode_frame(data));
