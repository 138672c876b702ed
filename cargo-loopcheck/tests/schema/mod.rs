//! Validation of real JSON output against the JSON Schemas in `docs/schema/`, shared by the
//! test crates that produce the documents.

#![allow(dead_code, reason = "each test crate uses what it needs")]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The directory of the schemas.
pub(crate) fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema")
}

/// Panics, naming every violation, unless `document` is valid against
/// `docs/schema/SHAPE.schema.json`.
pub(crate) fn assert_valid(shape: &str, document: &Value) {
    let errors = violations(shape, document);
    assert!(
        errors.is_empty(),
        "`{shape}` output does not match docs/schema/{shape}.schema.json:\n{}\n{document:#}",
        errors.join("\n")
    );
}

/// Every way `document` breaks `docs/schema/SHAPE.schema.json`, one line each.
pub(crate) fn violations(shape: &str, document: &Value) -> Vec<String> {
    let path = std::path::absolute(dir().join(format!("{shape}.schema.json"))).unwrap();
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let schema: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    // The schemas refer to `common.schema.json` beside them.
    let validator = jsonschema::options()
        .with_base_uri(format!("file://{}", path.display()))
        .build(&schema)
        .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()));
    validator
        .iter_errors(document)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}
