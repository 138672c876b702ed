//! What `lease` says before its command starts: the ports it leased, for people or as one
//! JSON line a script reads while the command holds them.

use serde::Serialize;

use crate::error::Result;
use crate::term::{Format, Term};

/// What `--format json` prints on stdout before the command starts (after its
/// `format_version`).
#[derive(Serialize)]
pub(crate) struct Leased<'a> {
    /// The command, as shown to people and recorded as the leases' test.
    pub(crate) command: &'a str,
    /// This process, which holds the leases until the command starts (the command then
    /// inherits them, and their records name it).
    pub(crate) pid: u32,
    pub(crate) ports: &'a [u16],
    pub(crate) contiguous: bool,
}

impl<'a> Leased<'a> {
    /// The leases of this process for `command`.
    pub(crate) fn new(command: &'a str, ports: &'a [u16], contiguous: bool) -> Leased<'a> {
        Leased {
            command,
            pid: std::process::id(),
            ports,
            contiguous,
        }
    }

    /// Shows the leases in `format` (human or JSON; `lease` refused the others).
    pub(crate) fn emit(&self, format: Format, term: &Term) -> Result<()> {
        match format {
            // One line, flushed before the command writes to the same stdout: a script can
            // read it while the command holds the ports.
            Format::Json => super::json::print_line(self),
            _ => {
                term.success("Leased", &format!("{} for `{}`", list(self.ports), self.command));
                Ok(())
            }
        }
    }
}

/// `20000-20003` for a contiguous run, else `20000, 20007`.
pub(crate) fn list(ports: &[u16]) -> String {
    let contiguous = ports.windows(2).all(|w| w[1] == w[0].wrapping_add(1));
    match ports {
        [one] => one.to_string(),
        [first, .., last] if contiguous => format!("{first}-{last}"),
        _ => ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_name_runs() {
        assert_eq!(list(&[20000]), "20000");
        assert_eq!(list(&[20000, 20001, 20002]), "20000-20002");
        assert_eq!(list(&[20000, 20005]), "20000, 20005");
    }
}
