//! How a test says that it cannot run its real check here. One file for this crate's unit
//! tests (a `#[cfg(test)]` module) and its integration tests (`tests/support` includes it by
//! path), so that both mean the same by `LOOPCHECK_REQUIRE_TOOLS`.

#![allow(dead_code, unreachable_pub)]

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
