//! `[workspace.metadata.loopcheck]` and `[package.metadata.loopcheck]`: which findings to drop.

use loopcheck::report::{Code, Finding};
use serde_json::Value;

use super::LintError;

/// What the lint leaves out.
///
/// ```
/// use cargo_loopcheck::lint::LintConfig;
/// use loopcheck::report::Code;
/// use serde_json::json;
///
/// let workspace = json!({ "loopcheck": { "allow": ["wildcard-bind"] } });
/// let package = json!({ "loopcheck": { "allow": ["LC014"], "allow-ports": [8080] } });
/// let config = LintConfig::from_metadata(&workspace, &package)?;
/// assert_eq!(config.allow, [Code::WildcardBind, Code::RacyAllocation]);
/// assert_eq!(config.allow_ports, [8080]);
/// # Ok::<(), cargo_loopcheck::lint::LintError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintConfig {
    /// Codes never reported (`allow = ["LC010", "wildcard-bind"]`).
    pub allow: Vec<Code>,
    /// Ports that `hard-coded-port` (LC010) does not report (`allow-ports = [8080]`).
    pub allow_ports: Vec<u16>,
}

impl LintConfig {
    /// The settings of the `loopcheck` tables in `[workspace.metadata]` (`workspace`, as in
    /// [`Workspace::metadata`](crate::workspace::Workspace::metadata)) and `[package.metadata]`
    /// (`package`), combined. Either may be `null`. Keys other than `allow` and `allow-ports`
    /// belong to other commands and are left alone.
    ///
    /// # Errors
    ///
    /// [`LintError::Config`] naming the table and key, for an unknown code, a port outside
    /// `1..=65535`, or a value of the wrong type.
    pub fn from_metadata(workspace: &Value, package: &Value) -> Result<LintConfig, LintError> {
        let mut config = LintConfig::default();
        config.read(workspace, "[workspace.metadata.loopcheck]")?;
        config.read(package, "[package.metadata.loopcheck]")?;
        Ok(config)
    }

    /// `self` with the codes and ports of `other` added.
    pub fn merged(&self, other: &LintConfig) -> LintConfig {
        let mut merged = self.clone();
        for &code in &other.allow {
            if !merged.allow.contains(&code) {
                merged.allow.push(code);
            }
        }
        for &port in &other.allow_ports {
            if !merged.allow_ports.contains(&port) {
                merged.allow_ports.push(port);
            }
        }
        merged
    }

    /// Whether `finding` is left out by these settings.
    pub fn allows(&self, finding: &Finding) -> bool {
        self.allow.contains(&finding.code)
            || (finding.code == Code::HardCodedPort
                && finding.port.is_some_and(|port| self.allow_ports.contains(&port)))
    }

    fn read(&mut self, metadata: &Value, table: &str) -> Result<(), LintError> {
        let settings = match metadata.get("loopcheck") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Object(settings)) => settings,
            Some(other) => {
                return Err(config_error(
                    table,
                    "",
                    format!("expected a table, found `{other}`"),
                ));
            }
        };
        if let Some(allow) = settings.get("allow") {
            for value in array(allow, table, "allow")? {
                let code = value
                    .as_str()
                    .and_then(Code::parse)
                    .ok_or_else(|| {
                        config_error(
                            table,
                            "allow",
                            format!(
                                "unknown code `{value}`; expected a code such as \"LC010\" or a name such as \"hard-coded-port\""
                            ),
                        )
                    })?;
                if !self.allow.contains(&code) {
                    self.allow.push(code);
                }
            }
        }
        for key in ["allow-ports", "allow_ports"] {
            let Some(ports) = settings.get(key) else {
                continue;
            };
            for value in array(ports, table, key)? {
                let port = value
                    .as_u64()
                    .and_then(|port| u16::try_from(port).ok())
                    .filter(|&port| port != 0)
                    .ok_or_else(|| {
                        config_error(
                            table,
                            key,
                            format!("`{value}` is not a port; expected a number from 1 to 65535"),
                        )
                    })?;
                if !self.allow_ports.contains(&port) {
                    self.allow_ports.push(port);
                }
            }
        }
        Ok(())
    }
}

fn array<'a>(value: &'a Value, table: &str, key: &str) -> Result<&'a Vec<Value>, LintError> {
    value
        .as_array()
        .ok_or_else(|| config_error(table, key, format!("expected an array, found `{value}`")))
}

fn config_error(table: &str, key: &str, message: String) -> LintError {
    LintError::Config {
        table: table.to_owned(),
        key: key.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_and_merges_both_tables() {
        let config = LintConfig::from_metadata(
            &json!({ "loopcheck": { "allow": ["LC011", "racy-allocation"], "other": 1 } }),
            &json!({ "loopcheck": { "allow": ["lc011"], "allow-ports": [8080, 9000] } }),
        )
        .unwrap();
        assert_eq!(config.allow, [Code::WildcardBind, Code::RacyAllocation]);
        assert_eq!(config.allow_ports, [8080, 9000]);
        assert_eq!(
            LintConfig::from_metadata(&Value::Null, &json!({})).unwrap(),
            LintConfig::default()
        );
    }

    #[test]
    fn names_the_table_and_key_of_a_bad_value() {
        let error = |workspace: Value, package: Value| {
            LintConfig::from_metadata(&workspace, &package)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(json!({ "loopcheck": { "allow": ["LC999"] } }), Value::Null),
            "invalid `allow` in `[workspace.metadata.loopcheck]`: unknown code `\"LC999\"`; expected a code such as \"LC010\" or a name such as \"hard-coded-port\""
        );
        assert_eq!(
            error(Value::Null, json!({ "loopcheck": { "allow-ports": [0] } })),
            "invalid `allow-ports` in `[package.metadata.loopcheck]`: `0` is not a port; expected a number from 1 to 65535"
        );
        assert_eq!(
            error(Value::Null, json!({ "loopcheck": { "allow-ports": 8080 } })),
            "invalid `allow-ports` in `[package.metadata.loopcheck]`: expected an array, found `8080`"
        );
        assert_eq!(
            error(Value::Null, json!({ "loopcheck": true })),
            "invalid `[package.metadata.loopcheck]`: expected a table, found `true`"
        );
    }
}
