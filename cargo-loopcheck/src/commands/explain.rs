//! `cargo loopcheck explain CODE`: the documentation of a diagnostic code.

use loopcheck::report::Code;

use crate::Exit;
use crate::cli::{Common, ExplainArgs};
use crate::error::{Error, Result};
use crate::report::{self, explain::Explanation};
use crate::term::{Format, Term};

/// `docs/diagnostics.md`, embedded so that `explain` works without the source tree. The crate's
/// `docs/diagnostics.md` is a symlink to the workspace's, so that the crate's tarball carries the
/// file (cargo packages a symlink as the file it points to).
const DIAGNOSTICS: &str = include_str!("../../docs/diagnostics.md");

/// The section of `docs/diagnostics.md` about `code`: from its `## LC001 name` heading to the
/// next level-2 heading.
///
/// ```
/// use loopcheck::report::Code;
/// let text = cargo_loopcheck::commands::explain::section(Code::PortInUse).expect("documented");
/// assert!(text.starts_with("## LC001 port-in-use"));
/// ```
pub fn section(code: Code) -> Option<&'static str> {
    let heading = format!("## {code} {}", code.name());
    let start = DIAGNOSTICS.match_indices(&heading).find_map(|(i, _)| {
        let at_line_start = i == 0 || DIAGNOSTICS.as_bytes()[i - 1] == b'\n';
        let rest = &DIAGNOSTICS[i + heading.len()..];
        (at_line_start && rest.starts_with(['\n', '\r'])).then_some(i)
    })?;
    let body = &DIAGNOSTICS[start + heading.len()..];
    let end = body
        .find("\n## ")
        .map_or(DIAGNOSTICS.len(), |i| start + heading.len() + i + 1);
    Some(DIAGNOSTICS[start..end].trim_end())
}

/// Runs `explain`: the section goes to stdout, like `rustc --explain`.
pub fn run(common: &Common, args: &ExplainArgs, term: &Term) -> Result<u8> {
    let format = common
        .format
        .expect_one_of("explain", &[Format::Human, Format::Json])?;
    let code = Code::parse(&args.code).ok_or_else(|| {
        let known: Vec<String> = Code::ALL.iter().map(|c| format!("{c} ({})", c.name())).collect();
        Error::Usage(format!(
            "unknown diagnostic code `{}`; known codes: {}",
            args.code,
            known.join(", ")
        ))
    })?;
    let text = section(code).ok_or_else(|| Error::Usage(format!("{code} has no documentation section")))?;
    let explanation = Explanation {
        code,
        name: code.name(),
        severity: code.severity(),
        text,
    };
    report::emit(&explanation, format, term)?;
    Ok(Exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_exactly_one_section_in_order() {
        let mut last = 0;
        for code in Code::ALL {
            let text = section(code).unwrap_or_else(|| panic!("{code} has no section"));
            assert!(
                text.len() > 200,
                "{code}'s section is too short to explain anything"
            );
            assert_eq!(DIAGNOSTICS.matches(&format!("\n## {code} ")).count(), 1, "{code}");
            let at = DIAGNOSTICS.find(&format!("\n## {code} ")).unwrap();
            assert!(at > last, "{code} is out of order");
            last = at;
        }
    }

    #[test]
    fn the_embedded_text_is_the_workspace_s_diagnostics() {
        let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let workspace = manifest_dir.join("../docs/diagnostics.md");
        if !workspace.exists() {
            // Built from the crate's tarball: the embedded copy is all there is.
            loopcheck::sys::skip_test("no workspace docs beside this crate");
            return;
        }
        // A checkout without symlinks (git's core.symlinks=false) writes the link's target as
        // text; a copy made by hand drifts. Either way the texts differ.
        assert_eq!(
            DIAGNOSTICS,
            std::fs::read_to_string(&workspace).unwrap(),
            "cargo-loopcheck/docs/diagnostics.md must be a symlink to ../../docs/diagnostics.md"
        );
    }

    #[test]
    fn a_section_ends_before_the_next_code() {
        let text = section(Code::PortInUse).unwrap();
        assert!(!text.contains("## LC002"));
        assert!(
            section(Code::StaleLease)
                .unwrap()
                .starts_with("## LC015 stale-lease")
        );
    }
}
