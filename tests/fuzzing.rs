//! The protocol decoder under cargo-fuzz (libFuzzer), for a bounded time, in CI.
//!
//! `fuzz/run.sh SECONDS` installs cargo-fuzz if needed, fuzzes the `decode_frame` target and keeps
//! any failing input in `fuzz/regressions/` (replayed by `protocol/tests/fuzz_regressions.rs`).
//! It takes minutes (the first build of the fuzz target included), so it runs here only when `CI`
//! is set, or when `FUZZ_SECONDS` asks for it; otherwise this test says how to run it and passes.

use std::process::Command;

#[test]
fn the_frame_decoder_survives_bounded_fuzzing() {
    let seconds = match (std::env::var("FUZZ_SECONDS"), std::env::var_os("CI")) {
        (Ok(s), _) => s,
        (Err(_), Some(_)) => "60".to_owned(),
        (Err(_), None) => {
            eprintln!("skipped: set CI=1 or FUZZ_SECONDS=N to fuzz the frame decoder (fuzz/run.sh N)");
            return;
        }
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/run.sh");
    let out = Command::new("bash").args([script, &seconds]).output().expect("running fuzz/run.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the fuzzer found a failure (kept in fuzz/regressions/):\n{text}");
    assert!(text.contains("Done") || text.contains("stat::number_of_executed_units"), "the fuzzer did not run:\n{text}");
}
