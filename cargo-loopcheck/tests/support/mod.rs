//! What the integration tests share: how a test says that it cannot run here, written once
//! for the crate's unit and integration tests in `src/test_support.rs`.

#![allow(dead_code, unused_imports, unreachable_pub)]

#[path = "../../src/test_support.rs"]
mod test_support;

pub use test_support::*;
