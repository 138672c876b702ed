//! `// loopcheck:allow(LC010, wildcard-bind)` comments.

use loopcheck::report::Code;

const MARKER: &str = "loopcheck:allow(";

/// The `loopcheck:allow` comments of a file, by line.
pub(crate) struct Suppressions {
    /// (line from 1, codes allowed on it, whether also on the line after): a comment on a line
    /// of its own covers the next line, one after code covers only that code.
    lines: Vec<(u32, Vec<Code>, bool)>,
}

impl Suppressions {
    /// Reads the comments of `source`. Only text after `//` or `/*` on a line counts.
    pub(crate) fn new(source: &str) -> Suppressions {
        Suppressions::after(source, &["//", "/*"])
    }

    /// [`Suppressions::new`] for a config file, whose comments start with `#` (TOML, YAML) or
    /// `//` (JSON with comments).
    pub(crate) fn of_config(source: &str) -> Suppressions {
        Suppressions::after(source, &["#", "//", "/*"])
    }

    fn after(source: &str, comment_starts: &[&str]) -> Suppressions {
        let mut lines = Vec::new();
        if !source.contains(MARKER) {
            return Suppressions { lines };
        }
        for (index, line) in source.lines().enumerate() {
            let Some(at) = line.find(MARKER) else {
                continue;
            };
            let before = &line[..at];
            let Some(start) = comment_starts.iter().filter_map(|start| before.find(start)).min() else {
                continue;
            };
            let own_line = before[..start].trim().is_empty();
            let rest = &line[at + MARKER.len()..];
            let list = rest.split(')').next().unwrap_or("");
            let codes: Vec<Code> = list.split(',').filter_map(Code::parse).collect();
            if !codes.is_empty() {
                lines.push((index as u32 + 1, codes, own_line));
            }
        }
        Suppressions { lines }
    }

    /// Whether a finding with `code` on `line` is suppressed.
    pub(crate) fn allows(&self, code: Code, line: u32) -> bool {
        self.lines
            .iter()
            .any(|(at, codes, next)| (*at == line || (*next && *at + 1 == line)) && codes.contains(&code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_codes_and_names_on_the_line_and_the_line_before() {
        let source = "// loopcheck:allow(LC010, wildcard-bind)\nb\nc /* loopcheck:allow(lc014) */\n\"loopcheck:allow(LC010)\"\n";
        let s = Suppressions::new(source);
        assert!(s.allows(Code::HardCodedPort, 1));
        assert!(s.allows(Code::WildcardBind, 2));
        assert!(!s.allows(Code::HardCodedPort, 3));
        assert!(s.allows(Code::RacyAllocation, 3));
        assert!(!s.allows(Code::RacyAllocation, 4));
        assert!(!s.allows(Code::HardCodedPort, 4));
        assert!(!s.allows(Code::HardCodedPort, 5));
        let config = Suppressions::of_config(
            "port = 1 # loopcheck:allow(LC010)\n# loopcheck:allow(wildcard-bind)\nhost = \"::\"\n",
        );
        assert!(config.allows(Code::HardCodedPort, 1));
        assert!(config.allows(Code::WildcardBind, 3));
        assert!(!Suppressions::new("# loopcheck:allow(LC010)\n").allows(Code::HardCodedPort, 1));
    }

    #[test]
    fn a_comment_after_code_covers_only_its_line() {
        let s = Suppressions::new("a(8080); // loopcheck:allow(LC010): the vendor's port\nb(8081);\n");
        assert!(s.allows(Code::HardCodedPort, 1));
        assert!(!s.allows(Code::HardCodedPort, 2));
        let config = Suppressions::of_config("debug_port = 8082 # loopcheck:allow(LC010)\nport = 8085\n");
        assert!(config.allows(Code::HardCodedPort, 1));
        assert!(!config.allows(Code::HardCodedPort, 2));
        let own = Suppressions::new("    /* loopcheck:allow(LC010) */\nb(8081);\n");
        assert!(own.allows(Code::HardCodedPort, 2));
    }
}
