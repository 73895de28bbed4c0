//! Replays the fuzz corpus that is kept in the repository through the checks of the
//! `decode_frame` fuzz target: the seeds (fuzz/seeds/decode_frame) and every input the fuzzer
//! ever found to crash, hang or misbehave (fuzz/regressions/decode_frame, kept as regression
//! tests after the fix). `fuzz/run.sh` copies new crash inputs there.

use std::path::Path;

#[test]
fn saved_fuzz_inputs_decode_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["seeds/decode_frame", "regressions/decode_frame"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for e in entries.flatten() {
            if e.file_name() == "README.md" {
                continue;
            }
            let data = std::fs::read(e.path()).expect("read a saved input");
            agent_bridge_protocol::fuzzing::decode_frame(&data);
            n += 1;
        }
    }
    assert!(n >= 5, "the seeds are there ({n} inputs)");
}

#[test]
fn edge_inputs_decode_cleanly() {
    for data in [&b""[..], b"{", b"{\"type\":\"send\"", b"\xff\xfe", &[0u8; 64], b"{\"type\":\"ping\",\"timestamp\":\"9999-12-31T23:59:59.999Z\"}"] {
        agent_bridge_protocol::fuzzing::decode_frame(data);
    }
}
