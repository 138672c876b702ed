//! How a test says that it cannot run its real check here. One file for this crate's unit
//! tests (a `#[cfg(test)]` module) and its integration tests (`tests/support` includes it by
//! path), so that both mean the same by `LOOPCHECK_REQUIRE_TOOLS`.

#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Stdio};

/// Set to `1` (CI sets it), a test that cannot run its real check fails instead of skipping.
pub const REQUIRE_TOOLS_VAR: &str = "LOOPCHECK_REQUIRE_TOOLS";

/// For a test that cannot run its real check here (a tool or condition is absent): prints why
/// on stderr, and fails when `LOOPCHECK_REQUIRE_TOOLS=1`, so that a skip is never silent
/// there. The caller returns after it.
pub fn skip(reason: &str) {
    eprintln!("skipped: {reason}");
    assert!(
        std::env::var_os(REQUIRE_TOOLS_VAR).is_none_or(|v| v != "1"),
        "{REQUIRE_TOOLS_VAR}=1 and this test cannot run: {reason}"
    );
}

/// Whether this process runs as root; when not, [`skip`]s with `reason` (CI runs as root, so
/// a test that needs root fails there without it).
#[cfg(unix)]
pub fn is_root(reason: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip(reason);
    }
    root
}

/// Whether `cargo-nextest` runs here; when not, [`skip`]s the nextest case.
pub fn nextest_installed() -> bool {
    let installed = Command::new("cargo-nextest")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        skip("cargo-nextest is not installed");
    }
    installed
}
