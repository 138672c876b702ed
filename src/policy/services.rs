//! The ports `/etc/services` names, which the default range leaves out.
//!
//! Every process reads them on its first allocation, and under nextest every test is a
//! process. Parsing the file's 12 KB in the unoptimised builds tests run in cost 0.6 ms a
//! process, so the parsed list is kept in the registry directory, keyed on the file's
//! identity and change times: a process whose key matches reads 1 KB instead.

use std::path::Path;

use super::SERVICES_FILE;

/// The file in the registry directory that holds the parsed list.
#[cfg_attr(not(unix), allow(dead_code))]
const CACHE_FILE: &str = "services-ports";

/// The ports `/etc/services` names, sorted and without repeats; none when it cannot be read.
pub(crate) fn named_ports() -> Vec<u16> {
    named_ports_of(Path::new(SERVICES_FILE), cache_path().as_deref())
}

/// The cache's place: the registry directory when it is safe to use (it is private to this
/// user, so nobody else can plant a list there); else nothing is cached.
fn cache_path() -> Option<std::path::PathBuf> {
    let registry = crate::lease::Registry::get().ok()?;
    Some(registry.dir().join(CACHE_FILE))
}

/// The ports `services` names, read from `cache` when it was written for this very file.
fn named_ports_of(services: &Path, cache: Option<&Path>) -> Vec<u16> {
    let Ok(meta) = std::fs::metadata(services) else {
        return Vec::new();
    };
    let key = cache::Key::of(&meta);
    if let Some(ports) = cache
        .zip(key.as_ref())
        .and_then(|(path, key)| cache::read(path, key))
    {
        return ports;
    }
    // A change between the `stat` above and this read is harmless: the list is then stored
    // under the old key, which the next process's `stat` no longer matches.
    let Ok(text) = std::fs::read_to_string(services) else {
        return Vec::new();
    };
    let ports = parse(&text);
    if let Some((path, key)) = cache.zip(key.as_ref()) {
        cache::write(path, key, &ports);
    }
    ports
}

/// The ports a services file names: `name port/protocol [aliases] [# ..]`, sorted and without
/// repeats.
pub(crate) fn parse(text: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = text
        .lines()
        .filter_map(|line| {
            let line = line.split('#').next()?;
            let mut fields = line.split_whitespace();
            let _name = fields.next()?;
            let (port, _protocol) = fields.next()?.split_once('/')?;
            port.parse().ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(unix)]
mod cache {
    use std::fs::{File, OpenOptions};
    use std::io::{Read, Write};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    use std::path::Path;

    const MAGIC: &[u8; 8] = b"lcsvc\0\0\x01";

    /// Magic, key and count: what precedes the ports.
    const HEADER: usize = MAGIC.len() + KEY_WORDS * 8 + 4;
    const KEY_WORDS: usize = 7;

    /// A cache file is read with one `read` into a buffer of this size; a longer list (no
    /// services file comes close: Debian's names about 600 ports) is not cached.
    const BUF: usize = 4096;

    /// What identifies one version of the services file: device, inode, size, and the times
    /// of its last change (`ctime` cannot be set back by hand the way `mtime` can).
    #[derive(PartialEq, Eq)]
    pub(super) struct Key([u64; KEY_WORDS]);

    impl Key {
        pub(super) fn of(meta: &std::fs::Metadata) -> Option<Key> {
            Some(Key([
                meta.dev(),
                meta.ino(),
                meta.size(),
                meta.mtime() as u64,
                meta.mtime_nsec() as u64,
                meta.ctime() as u64,
                meta.ctime_nsec() as u64,
            ]))
        }
    }

    /// The list in `path` if it was written for `key` and is whole.
    pub(super) fn read(path: &Path, key: &Key) -> Option<Vec<u16>> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .ok()?;
        let mut buf = [0u8; BUF];
        let len = file.read(&mut buf).ok()?;
        let bytes = buf.get(..len).filter(|b| b.len() >= HEADER && b.len() < BUF)?;
        let (magic, rest) = bytes.split_at(MAGIC.len());
        let (stored, rest) = rest.split_at(KEY_WORDS * 8);
        let (count, ports) = rest.split_at(4);
        let count = u32::from_le_bytes(count.try_into().ok()?) as usize;
        if magic != MAGIC || ports.len() / 2 != count || ports.len() % 2 != 0 || stored != key_bytes(key) {
            return None;
        }
        // Index loops over slices, not iterators: this runs in every test process, in the
        // unoptimised builds tests run in, where each iterator step is several calls (it took
        // about 15 us for Debian's list, more than the file's read).
        let mut list = vec![0u16; count];
        let out: &mut [u16] = &mut list;
        let mut at = 0;
        while at < count {
            out[at] = u16::from(ports[2 * at]) | (u16::from(ports[2 * at + 1]) << 8);
            at += 1;
        }
        Some(list)
    }

    /// Stores `ports` for `key`, replacing the file at once (a temporary file renamed over
    /// it), so that a reader sees the old list or the new one. Failing to store costs only
    /// the next process a parse.
    pub(super) fn write(path: &Path, key: &Key, ports: &[u16]) {
        let mut bytes = Vec::with_capacity(HEADER + ports.len() * 2);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&key_bytes(key));
        let Ok(count) = u32::try_from(ports.len()) else {
            return;
        };
        bytes.extend_from_slice(&count.to_le_bytes());
        for port in ports {
            bytes.extend_from_slice(&port.to_le_bytes());
        }
        if bytes.len() >= BUF {
            return;
        }
        let temporary = path.with_extension(format!("{}.tmp", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)
            .and_then(|mut file: File| file.write_all(&bytes));
        if written.and_then(|()| std::fs::rename(&temporary, path)).is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
    }

    fn key_bytes(key: &Key) -> [u8; KEY_WORDS * 8] {
        let mut bytes = [0u8; KEY_WORDS * 8];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(key.0) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }
}

/// Elsewhere the file is parsed each time (Windows has none).
#[cfg(not(unix))]
mod cache {
    use std::path::Path;

    pub(super) struct Key;

    impl Key {
        pub(super) fn of(_meta: &std::fs::Metadata) -> Option<Key> {
            None
        }
    }

    pub(super) fn read(_path: &Path, _key: &Key) -> Option<Vec<u16>> {
        None
    }

    pub(super) fn write(_path: &Path, _key: &Key, _ports: &[u16]) {}
}

/// A services file with comments, aliases, a repeat, a bad line and a port out of range.
#[cfg(test)]
pub(crate) const SERVICES: &str = "# comment 1/tcp\nhttp\t\t80/tcp\t\twww\t# web\nmemcache 11211/tcp\nmemcache 11211/udp\nbad line\nx 99999/tcp\nsvn 3690/tcp\nfoo 40000/tcp\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_lines_name_their_ports() {
        assert_eq!(parse(SERVICES), [80, 3690, 11211, 40000]);
    }

    #[cfg(unix)]
    #[test]
    fn the_cached_list_is_used_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let services = dir.path().join("services");
        let cache = dir.path().join(CACHE_FILE);
        std::fs::write(&services, SERVICES).unwrap();
        assert_eq!(named_ports_of(&services, Some(&cache)), [80, 3690, 11211, 40000]);
        assert!(cache.exists(), "the first read stores the list");

        // A list stored for this very file is what the next process gets, unparsed: one
        // written by hand under the same key proves it is read, not the file.
        let key = cache::Key::of(&std::fs::metadata(&services).unwrap()).unwrap();
        cache::write(&cache, &key, &[12345]);
        assert_eq!(named_ports_of(&services, Some(&cache)), [12345]);

        // Any change to the file (here its size and times) makes the stored list stale.
        std::fs::write(&services, "memcache 11211/tcp\n").unwrap();
        assert_eq!(named_ports_of(&services, Some(&cache)), [11211]);
        assert_eq!(named_ports_of(&services, Some(&cache)), [11211], "stored again");

        // Damage is a miss, not an error: the file is parsed again.
        for damaged in [&b""[..], b"lcsvc\0\0\x01short", &[0xff; 100]] {
            std::fs::write(&cache, damaged).unwrap();
            assert_eq!(named_ports_of(&services, Some(&cache)), [11211]);
        }
        // A symlink in its place is not followed, and nothing is written through it.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "keep").unwrap();
        std::fs::remove_file(&cache).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &cache).unwrap();
        assert_eq!(named_ports_of(&services, Some(&cache)), [11211]);
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep");
        // Without a cache, or without the file, nothing breaks.
        assert_eq!(named_ports_of(&services, None), [11211]);
        assert!(named_ports_of(&dir.path().join("missing"), Some(&cache)).is_empty());
    }
}
