//! Config files of tests: TOML, JSON and YAML files under `tests/`, and those a test names with
//! a literal path. A fixed loopback port is LC010 (`bind_addr = "127.0.0.1:2333"`,
//! `port: 8080`), a wildcard address LC011 (`host = "0.0.0.0"`), each at the file's line.
//!
//! The files are scanned line by line rather than parsed: the three formats write a key and
//! its value on one line in test configs, a line number is what a finding needs, and a file
//! that does not parse (a template, a deliberately broken fixture) is still read.

use std::path::{Path, PathBuf};

use loopcheck::report::Code;

use super::addr::{self, HostKind};
use super::walk::Hit;

/// Whether a file name is that of a config file the lint reads.
pub(crate) fn is_config_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".toml", ".json", ".yaml", ".yml"]
        .iter()
        .any(|e| lower.ends_with(e))
        && !lower.ends_with("cargo.toml")
        && !lower.ends_with("package.json")
}

/// Records `text` when it looks like the path of a config file: `"tests/config/server.toml"`.
pub(super) fn note_path(text: &str, out: &mut Vec<String>) {
    if text.len() < 256
        && !text.contains(char::is_whitespace)
        && !text.contains("://")
        && is_config_name(text)
    {
        out.push(text.to_owned());
    }
}

/// `dir/**/<config files>`, sorted, skipping hidden directories, `target` and nested packages.
pub(crate) fn config_files_under(dir: &Path) -> Vec<PathBuf> {
    super::files::files_under(dir, &|name| is_config_name(name))
}

/// A line without its comment: `#` (TOML, YAML) or `//` (JSON with comments) outside quotes.
fn code_of(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut quote = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(b'"') if b == b'\\' => i += 1,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) => return &line[..i],
            None if b == b'/'
                && bytes.get(i + 1) == Some(&b'/')
                && (i == 0 || bytes[i - 1].is_ascii_whitespace()) =>
            {
                return &line[..i];
            }
            None => {}
        }
        i += 1;
    }
    line
}

/// A `key = value`, `"key": value` or `key: value` line: the key in snake case, the value
/// unquoted, and the value's byte offset.
fn key_value(code: &str) -> Option<(String, &str, usize)> {
    let trimmed = code.trim_start();
    let start = code.len() - trimmed.len();
    let body = trimmed.strip_prefix("- ").unwrap_or(trimmed);
    let offset = start + (trimmed.len() - body.len());
    let split = body.find(['=', ':'])?;
    let key = body[..split].trim().trim_matches(|c| c == '"' || c == '\'');
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return None;
    }
    let raw = &body[split + 1..];
    let value = raw.trim().trim_end_matches(',').trim();
    let value_at = offset + split + 1 + (raw.len() - raw.trim_start().len());
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    Some((snake_case(key.rsplit('.').next().unwrap_or(key)), value, value_at))
}

/// `httpPort` and `http-port` as `http_port`.
fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            if !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c == '-' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    out
}

/// Keys whose value is a host or address to listen on or connect to.
fn is_host_key(key: &str) -> bool {
    [
        "host",
        "bind",
        "listen",
        "addr",
        "address",
        "interface",
        "ip",
        "server",
        "endpoint",
    ]
    .iter()
    .any(|word| key.split('_').any(|part| part == *word))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Whether a line of the same table or mapping as `at` names a remote host
/// (`host = "db.example.com"`): a port beside it is not a loopback port.
fn beside_remote_host(lines: &[&str], at: usize) -> bool {
    let own = indent(lines[at]);
    let same_block = |range: &mut dyn Iterator<Item = usize>| {
        for i in range {
            let line = code_of(lines[i]);
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            if trimmed.starts_with('[') || indent(line) < own {
                return false;
            }
            if indent(line) == own
                && let Some((key, value, _)) = key_value(line)
                && is_host_key(&key)
                && addr::is_remote_host(value)
            {
                return true;
            }
        }
        false
    };
    same_block(&mut (0..at).rev()) || same_block(&mut (at + 1..lines.len()))
}

const PORT_HELP: &str = "write a port leased by the test into a copy of this file before it is read: `loopcheck::reserve_port()` (keep the lease until the server has bound), or `#[loopback_test] fn name(port: u16)`";
const WILDCARD_HELP: &str =
    "listen on loopback: `127.0.0.1`, or the test's own address from `loopcheck::loopback_ip()`";

/// The findings of a config file's text, in line order; suppressions are applied by the
/// caller.
pub(crate) fn scan(source: &str) -> Vec<Hit> {
    let lines: Vec<&str> = source.lines().collect();
    let mut hits = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let code = code_of(line);
        if code.trim().is_empty() {
            continue;
        }
        let line_no = index as u32 + 1;
        let column = |byte: usize| code[..byte].chars().count() as u32 + 1;
        let mut hit = |code: Code, at: usize, port: Option<u16>, message: String, help: &str| {
            hits.push(Hit {
                code,
                line: line_no,
                column: column(at),
                port,
                message,
                suggestion: help.to_owned(),
                warning: false,
            });
        };
        let mut reported_port = false;
        for found in addr::addresses(code) {
            let at = found.text.as_ptr() as usize - code.as_ptr() as usize;
            if found.port != 0 {
                reported_port = true;
                let message = format!(
                    "hard-coded port {} in `{}` in a config file",
                    found.port, found.text
                );
                hit(Code::HardCodedPort, at, Some(found.port), message, PORT_HELP);
            }
            if found.kind == HostKind::Wildcard {
                let message = format!(
                    "wildcard address `{}` in a config file exposes the test to the network",
                    found.text
                );
                hit(
                    Code::WildcardBind,
                    at,
                    Some(found.port).filter(|&p| p != 0),
                    message,
                    WILDCARD_HELP,
                );
            }
        }
        let Some((key, value, at)) = key_value(code) else {
            continue;
        };
        if super::names::is_port_name(&key)
            && !reported_port
            && let Ok(port) = value.parse::<u16>()
            && port != 0
            && !beside_remote_host(&lines, index)
        {
            let message = format!("hard-coded port {port} in key `{key}` of a config file");
            hit(Code::HardCodedPort, at, Some(port), message, PORT_HELP);
        }
        if is_host_key(&key) && addr::host_kind(value) == HostKind::Wildcard {
            let message = format!(
                "wildcard address `{value}` in key `{key}` of a config file exposes the test to the network"
            );
            hit(Code::WildcardBind, at, None, message, WILDCARD_HELP);
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(source: &str) -> Vec<(Code, u32, u32, Option<u16>)> {
        scan(source)
            .into_iter()
            .map(|h| (h.code, h.line, h.column, h.port))
            .collect()
    }

    #[test]
    fn reads_toml_json_and_yaml_lines() {
        // Config files as test data, not addresses of this test: loopcheck:allow(LC010)
        let toml = "# bind = \"0.0.0.0:1\"\n[server]\nbind_addr = \"0.0.0.0:2333\"\nport = 8080 # the port\nhost = \"::\"\nname = \"a:1\"\n";
        assert_eq!(
            keys(toml),
            [
                (Code::HardCodedPort, 3, 14, Some(2333)),
                (Code::WildcardBind, 3, 14, Some(2333)),
                (Code::HardCodedPort, 4, 8, Some(8080)),
                (Code::WildcardBind, 5, 8, None),
            ]
        );
        // Config files as test data, not addresses of this test: loopcheck:allow(LC010)
        let json = "{\n  \"listen\": \"127.0.0.1:9000\",\n  \"httpPort\": 9001,\n  \"port\": 0\n}\n";
        assert_eq!(
            keys(json),
            [
                (Code::HardCodedPort, 2, 14, Some(9000)),
                (Code::HardCodedPort, 3, 15, Some(9001))
            ]
        );
        // Config files as test data, not addresses of this test: loopcheck:allow(LC010)
        let yaml = "server:\n  host: 0.0.0.0\n  port: 7000\nupstream:\n  - url: http://localhost:7001/x\n";
        assert_eq!(
            keys(yaml),
            [
                (Code::WildcardBind, 2, 9, None),
                (Code::HardCodedPort, 3, 9, Some(7000)),
                (Code::HardCodedPort, 5, 17, Some(7001)),
            ]
        );
    }

    #[test]
    fn a_port_beside_a_remote_host_is_left_alone() {
        let toml = "[broker]\nhost = \"x.iot.eu-west-1.example.com\"\nport = 443\n\n[local]\nport = 1883\n";
        assert_eq!(keys(toml), [(Code::HardCodedPort, 6, 8, Some(1883))]);
        let yaml = "db:\n  port: 5432\n  nested:\n    x: 1\n  host: db.example.com\ncache:\n  port: 6379\n";
        assert_eq!(keys(yaml), [(Code::HardCodedPort, 7, 9, Some(6379))]);
    }

    #[test]
    fn names_and_paths() {
        assert!(is_config_name("tests/config/a.TOML"));
        assert!(!is_config_name("Cargo.toml"));
        let mut out = Vec::new();
        note_path("tests/config/server.yaml", &mut out);
        note_path("http://x/a.json", &mut out);
        note_path("a b.json", &mut out);
        assert_eq!(out, ["tests/config/server.yaml"]);
        assert_eq!(snake_case("httpPort"), "http_port");
        assert_eq!(code_of("a = \"#x\" # c"), "a = \"#x\" ");
    }
}
