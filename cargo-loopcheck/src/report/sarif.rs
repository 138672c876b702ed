//! SARIF 2.1.0 for code scanning: the findings of `check` and `lint`, with every code as a rule.

use loopcheck::report::{Code, Severity};
use serde_json::json;

use super::findings::Report;

/// SARIF 2.1.0, for code scanning.
pub(crate) fn sarif(report: &Report) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = Code::ALL
        .iter()
        .map(|code| {
            json!({
                "id": code.to_string(),
                "name": code.name(),
                "shortDescription": { "text": code.name().replace('-', " ") },
                "help": { "text": format!("cargo loopcheck explain {code}") },
                "defaultConfiguration": { "level": sarif_level(code.severity()) },
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            let mut result = json!({
                "ruleId": f.code.to_string(),
                "ruleIndex": f.code.number() - 1,
                "level": sarif_level(f.severity),
                "message": { "text": match &f.suggestion {
                    Some(s) => format!("{}\nhelp: {s}", f.message),
                    None => f.message.clone(),
                } },
            });
            if let Some(file) = &f.file {
                let mut region = serde_json::Map::new();
                if let Some(line) = f.line {
                    region.insert("startLine".into(), line.into());
                }
                if let Some(column) = f.column {
                    region.insert("startColumn".into(), column.into());
                }
                result["locations"] = json!([{ "physicalLocation": {
                    "artifactLocation": { "uri": file, "uriBaseId": "%SRCROOT%" },
                    "region": region,
                } }]);
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "cargo-loopcheck",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": concat!("https://docs.rs/cargo-loopcheck/", env!("CARGO_PKG_VERSION")),
                "rules": rules,
            } },
            "results": results,
        }],
    })
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}
