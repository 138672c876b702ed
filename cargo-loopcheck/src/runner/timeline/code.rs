//! What the timeline's blame reads besides the timeline: the test's source (the library
//! constants it names, how it binds) and what the host shows now (a socket's owner, the
//! `TIME_WAIT` connections on a port).

use std::path::Path;

use loopcheck::report::Diagnosis;
use loopcheck::scan::{self, ScanOptions};

use super::Owner;

/// Whether a test file's binds may be taken to set `SO_REUSEADDR`, as std's and tokio's do on
/// Unix: not when it builds socket2 sockets without `set_reuse_address`, nor when it starts
/// child processes (which bind by themselves), and never on Windows. Only then is `TIME_WAIT`
/// alone a possible cause (LC003).
pub(crate) fn binds_with_reuse(source: &str) -> bool {
    let raw_socket = source.contains("socket2") && !source.contains("set_reuse_address");
    cfg!(unix) && !(raw_socket || source.contains("Command::new"))
}

/// The ports of the constants `names` declared in the library sources under `dir` (a few
/// hundred files at most).
pub(crate) fn library_constants(dir: &Path, names: &[&str]) -> Vec<u16> {
    const MAX_FILES: usize = 300;
    let mut ports = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && files < MAX_FILES {
                files += 1;
                if let Ok(text) = std::fs::read_to_string(&path) {
                    ports.extend(names.iter().filter_map(|name| constant_port(&text, name)));
                }
            }
        }
    }
    ports
}

/// The process that holds the socket `inode` on `port` now, as the timeline names owners.
pub(crate) fn owner_now(inode: u64, port: u16) -> Option<Owner> {
    let options = ScanOptions {
        ports: Some(vec![port]),
        ..ScanOptions::listeners()
    };
    let table = scan::scan_with(&options).ok()?;
    let socket = table.sockets.iter().find(|s| s.inode == Some(inode))?;
    let process = table.owners(socket).next()?;
    Some(Owner {
        pid: process.pid,
        command: process.command(),
        exe: process.exe.clone(),
        user: process.user.clone(),
        test: process.loopcheck_test.clone(),
        ..Owner::default()
    })
}

/// The constants a source names through a path, `crate_name::SERVICE_PORT`: an upper-case last
/// segment after `::`.
pub(crate) fn constant_paths(source: &str) -> Vec<&str> {
    let mut names: Vec<&str> = source
        .match_indices("::")
        .filter_map(|(at, _)| {
            let rest = &source[at + 2..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            let constant = name.len() > 1
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            constant.then_some(name)
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The value of `const NAME: u16 = N;` in `source`.
fn constant_port(source: &str, name: &str) -> Option<u16> {
    source
        .match_indices(&format!("const {name}"))
        .find_map(|(at, found)| {
            let rest = source[at + found.len()..]
                .trim_start()
                .strip_prefix(':')?
                .trim_start();
            let rest = rest
                .strip_prefix("u16")?
                .trim_start()
                .strip_prefix('=')?
                .trim_start();
            let digits: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '_')
                .collect();
            digits.replace('_', "").parse().ok().filter(|&port| port != 0)
        })
}

/// Adds how many connections on `port` are in TIME_WAIT: the trace of a server that closed
/// moments ago, which is no cause by itself (std and tokio set `SO_REUSEADDR` on Unix).
pub(crate) fn note_time_wait(d: &mut Diagnosis, port: u16) {
    let options = ScanOptions {
        tcp: true,
        ports: Some(vec![port]),
        ..ScanOptions::default()
    };
    let count = scan::scan_with(&options).map_or(0, |t| {
        t.sockets
            .iter()
            .filter(|s| s.state == scan::SocketState::TimeWait)
            .count()
    });
    if count > 0 {
        d.evidence.push(format!(
            "{count} connection(s) on port {port} are in TIME_WAIT: a server on it closed moments ago. That is no cause by itself: std's and tokio's binds set SO_REUSEADDR on Unix, so only a socket holding the port could fail this bind"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_constants_named_by_a_test() {
        let test = "let s = TcpStream::connect((\"127.0.0.1\", my_client::SERVICE_PORT)).unwrap();\nlet e = io::ErrorKind::TimedOut; std::f64::MAX; a::B";
        assert_eq!(constant_paths(test), ["MAX", "SERVICE_PORT"]);
        let lib = "/// The port.\npub const SERVICE_PORT: u16 = 8_080;\nconst MAX: u32 = 9;";
        assert_eq!(constant_port(lib, "SERVICE_PORT"), Some(8080));
        assert_eq!(constant_port(lib, "MAX"), None, "not a u16");
        assert_eq!(constant_port("const P: u16 = 0;", "P"), None);
    }

    #[test]
    fn reuse_is_assumed_for_std_binds_only() {
        let std_bind = "let l = std::net::TcpListener::bind(addr)?;";
        assert_eq!(binds_with_reuse(std_bind), cfg!(unix));
        assert!(!binds_with_reuse(
            "let s = socket2::Socket::new(d, t, None)?; s.bind(&a)?;"
        ));
        assert_eq!(
            binds_with_reuse("socket2::Socket::new(..); s.set_reuse_address(true)?;"),
            cfg!(unix)
        );
        assert!(!binds_with_reuse("Command::new(\"python3\").arg(\"-m\")"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net")).unwrap();
        std::fs::write(dir.path().join("net/mod.rs"), "pub const PORT_A: u16 = 7000;").unwrap();
        std::fs::write(
            dir.path().join("lib.rs"),
            "pub mod net;\npub const PORT_B: u16 = 7001;",
        )
        .unwrap();
        let mut found = library_constants(dir.path(), &["PORT_A", "PORT_B", "OTHER"]);
        found.sort_unstable();
        assert_eq!(found, [7000, 7001]);
    }
}
