//! The checks of the `decode_frame` fuzz target (fuzz/fuzz_targets/decode_frame.rs), here so that
//! protocol/tests/fuzz_regressions.rs replays every saved input with exactly the same checks.

use crate::frames::extract_ref;
use crate::http::{AckRequest, SendRequest};
use crate::{ClientFrame, ServerFrame, DEFAULT_MAX_FRAME_BYTES};

/// Decodes `data` every way the server does: as a JSON text frame (when it is UTF-8), as a
/// bincode frame, as HTTP bodies, and for the `ref` of an error reply. Panics if a decoded frame
/// does not survive re-encoding, which is the bug the fuzzer looks for beyond panics and hangs.
pub fn decode_frame(data: &[u8]) {
    let limit = DEFAULT_MAX_FRAME_BYTES;
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(frame) = ClientFrame::from_json(text, limit) {
            let again = ClientFrame::from_json(&frame.to_json(), limit);
            assert_eq!(again.as_ref(), Ok(&frame), "a decoded JSON frame re-decodes to itself");
        }
        let _ = extract_ref(text);
        let _ = ServerFrame::from_json(text, limit);
        let _ = serde_json::from_str::<SendRequest>(text);
        let _ = serde_json::from_str::<AckRequest>(text);
    }
    if let Ok(frame) = ClientFrame::from_bincode(data, limit) {
        let again = ClientFrame::from_bincode(&frame.to_bincode(), limit);
        assert_eq!(again.as_ref(), Ok(&frame), "a decoded bincode frame re-decodes to itself");
    }
    let _ = ServerFrame::from_bincode(data, limit);
}
