//! A Python interpreter with the packages a test needs: the system `python3` when it has them,
//! else a virtualenv under the target directory with them installed from PyPI, so the test
//! command provisions its own tools on a fresh machine.

use std::path::Path;
use std::process::Command;

fn imports(python: &str, module: &str) -> bool {
    Command::new(python).args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success())
}

/// One test at a time makes or fills a venv: tests of one binary run on threads, and a second
/// one must not use a venv the first is still creating.
static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A `python3` that can import every `(module, pip package)` of `needs`; panics saying what failed.
pub fn with(venv_name: &str, needs: &[(&str, &str)]) -> String {
    let _one_at_a_time = MAKING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if needs.iter().all(|(m, _)| imports("python3", m)) {
        return "python3".into();
    }
    let venv = format!("{}/{venv_name}", env!("CARGO_TARGET_TMPDIR"));
    let python = format!("{venv}/bin/python");
    if !Path::new(&python).exists() {
        let out = Command::new("python3").args(["-m", "venv", &venv]).output().expect("python3 is needed");
        assert!(out.status.success(), "python3 -m venv {venv}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let missing: Vec<&str> = needs.iter().filter(|(m, _)| !imports(&python, m)).map(|(_, p)| *p).collect();
    if !missing.is_empty() {
        let out = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(&missing)
            .output()
            .expect("running pip");
        assert!(out.status.success(), "pip install {missing:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    python
}
