//! Every compile error of `#[loopback_test]`: one case per message in `tests/ui/`, its
//! expected output beside it (regenerate with `TRYBUILD=overwrite`).

#[test]
fn ui() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
