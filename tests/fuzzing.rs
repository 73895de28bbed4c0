//! The protocol decoder under cargo-fuzz (libFuzzer), for a bounded time, in CI.
//!
//! `fuzz/run.sh SECONDS` installs cargo-fuzz if needed, fuzzes the `decode_frame` target and keeps
//! any failing input in `fuzz/regressions/` (replayed by `protocol/tests/fuzz_regressions.rs`).
//! It takes minutes (the first build of the fuzz target included), so a plain `cargo test` ignores
//! it; the README's test command runs it with `--include-ignored` (`FUZZ_SECONDS`, default 60).

use std::process::Command;

#[test]
#[ignore = "builds a fuzz target and fuzzes for 60 s (cargo-fuzz installed on first run): cargo test -- --include-ignored"]
fn the_frame_decoder_survives_bounded_fuzzing() {
    let seconds = std::env::var("FUZZ_SECONDS").unwrap_or_else(|_| "60".to_owned());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/run.sh");
    let out = Command::new("bash").args([script, &seconds]).output().expect("running fuzz/run.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the fuzzer found a failure (kept in fuzz/regressions/):\n{text}");
    assert!(text.contains("Done") || text.contains("stat::number_of_executed_units"), "the fuzzer did not run:\n{text}");
}
