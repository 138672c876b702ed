//! Config files of tests: TOML, JSON and YAML files under `tests/`, and those a test names with
//! a literal path. A fixed loopback port is LC010 (`bind_addr = "127.0.0.1:2333"`,
//! `port: 8080`), a wildcard address LC011 (`host = "0.0.0.0"`, `":8080"`, `"*:8080"`), each at
//! the file's line; inline tables, flow maps and one-line lists are read piece by piece.
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

/// The pieces of a line between `{`, `}`, `[`, `]` and `,` outside quotes, with their byte
/// offsets: an inline table (`server = { host = "::", port = 8080 }`), a flow map
/// (`server: {host: "::", port: 8080}`), a one-line JSON object, a list (`ports = [8080, 8081]`).
fn pieces(code: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut quote = None;
    let mut start = 0;
    for (i, b) in code.bytes().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if matches!(b, b'{' | b'}' | b'[' | b']' | b',') => {
                out.push((start, &code[start..i]));
                start = i + 1;
            }
            None => {}
        }
    }
    out.push((start, &code[start..]));
    out.retain(|(_, piece)| !piece.trim().is_empty());
    out
}

/// Every key and value of a line ([`key_value`] of each of its [`pieces`]); a bare value in a
/// list takes the key the list is the value of (`ports = [8080, 8081]`: two `ports`).
fn key_values(code: &str) -> Vec<(String, &str, usize)> {
    let mut out: Vec<(String, &str, usize)> = Vec::new();
    let mut list_key: Option<String> = None;
    for (offset, piece) in pieces(code) {
        match key_value(piece) {
            Some((key, value, at)) => {
                list_key = Some(key.clone());
                if !value.is_empty() {
                    out.push((key, value, offset + at));
                }
            }
            None => {
                let Some(key) = &list_key else { continue };
                let trimmed = piece.trim();
                let lead = piece.len() - piece.trim_start().len();
                let value = trimmed.trim_matches(|c| c == '"' || c == '\'');
                let at = offset + lead + usize::from(value.len() < trimmed.len());
                out.push((key.clone(), value, at));
            }
        }
    }
    out
}

/// `:8080` and `*:8080`: every address of the host on port 8080 (Go's and nginx's forms).
fn wildcard_port(value: &str) -> Option<u16> {
    value
        .strip_prefix("*:")
        .or_else(|| value.strip_prefix(':'))
        .and_then(|port| port.parse().ok())
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
        let pairs = key_values(code);
        let remote_here = pairs
            .iter()
            .any(|(key, value, _)| is_host_key(key) && addr::is_remote_host(value));
        for (key, value, at) in pairs {
            // `ports = [..]`, `http_ports: [..]`: each item is a port.
            let singular = key.strip_suffix('s').unwrap_or(&key);
            if (super::names::is_port_name(&key) || super::names::is_port_name(singular))
                && !reported_port
                && let Ok(port) = value.parse::<u16>()
                && port != 0
                && !remote_here
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
            if let Some(port) = wildcard_port(value) {
                if port != 0 {
                    let message = format!("hard-coded port {port} in `{value}` in a config file");
                    hit(Code::HardCodedPort, at, Some(port), message, PORT_HELP);
                }
                let message = format!(
                    "wildcard address `{value}` in key `{key}` of a config file exposes the test to the network"
                );
                hit(
                    Code::WildcardBind,
                    at,
                    Some(port).filter(|&p| p != 0),
                    message,
                    WILDCARD_HELP,
                );
            }
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

    #[test]
    fn inline_tables_flow_maps_lists_and_any_address_forms() {
        let toml = "server = { host = \"::\", port = 7301 }\nports = [7302, 7303]\nlisten = \":7304\"\nbind = \"*:0\"\ndb = { host = \"db.example.com\", port = 5432 }\n";
        assert_eq!(
            keys(toml),
            [
                (Code::WildcardBind, 1, 19, None),
                (Code::HardCodedPort, 1, 32, Some(7301)),
                (Code::HardCodedPort, 2, 10, Some(7302)),
                (Code::HardCodedPort, 2, 16, Some(7303)),
                (Code::HardCodedPort, 3, 10, Some(7304)),
                (Code::WildcardBind, 3, 10, Some(7304)),
                (Code::WildcardBind, 4, 8, None),
            ]
        );
        let yaml = "server: {host: 0.0.0.0, port: 7305}\n";
        assert_eq!(
            keys(yaml),
            [
                (Code::WildcardBind, 1, 16, None),
                (Code::HardCodedPort, 1, 31, Some(7305))
            ]
        );
        let json = "{\"host\": \"127.0.0.1\", \"httpPort\": 7306}\n";
        assert_eq!(keys(json), [(Code::HardCodedPort, 1, 35, Some(7306))]);
    }
}
