//! Terminal output: colour choice and cargo's look for human text on stderr, JSON on stdout.

use std::io::Write;

use anstream::{AutoStream, ColorChoice};
use anstyle::{AnsiColor, Style};
use loopcheck::report::{Diagnosis, Finding, Severity};

use crate::error::{Error, Result};

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// Colour when stderr is a terminal and `NO_COLOR` is not set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// `--message-format` (alias `--format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Text for people, on stderr.
    #[default]
    Human,
    /// JSON, on stdout.
    Json,
    /// GitHub Actions workflow annotations, on stdout (`check`, `lint`, `test`).
    Github,
    /// SARIF 2.1.0 for code scanning, on stdout (`check`, `lint`).
    Sarif,
}

impl Format {
    /// The name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Human => "human",
            Format::Json => "json",
            Format::Github => "github",
            Format::Sarif => "sarif",
        }
    }

    /// A usage error unless this format is one of `allowed`.
    pub fn expect_one_of(self, command: &str, allowed: &[Format]) -> Result<Format> {
        if allowed.contains(&self) {
            return Ok(self);
        }
        let names: Vec<&str> = allowed.iter().map(|f| f.name()).collect();
        Err(Error::Usage(format!(
            "`cargo loopcheck {command}` does not support `--message-format {}`; use one of: {}",
            self.name(),
            names.join(", ")
        )))
    }
}

/// Where and how output goes.
#[derive(Debug, Clone, Copy)]
pub struct Term {
    choice: ColorChoice,
}

pub(crate) const ERROR: Style = AnsiColor::Red.on_default().bold();
pub(crate) const WARNING: Style = AnsiColor::Yellow.on_default().bold();
pub(crate) const NOTE: Style = AnsiColor::Cyan.on_default().bold();
pub(crate) const GOOD: Style = AnsiColor::Green.on_default().bold();
pub(crate) const EMPHASIS: Style = Style::new().bold();
const ARROW: Style = AnsiColor::Blue.on_default().bold();

impl Term {
    /// Resolves the colour choice: `--color`, else `CARGO_TERM_COLOR`, else automatic (which
    /// honours `NO_COLOR` and whether stderr is a terminal).
    pub fn new(flag: Option<ColorWhen>) -> Term {
        let from_env = || match std::env::var("CARGO_TERM_COLOR").ok()?.as_str() {
            "always" => Some(ColorWhen::Always),
            "never" => Some(ColorWhen::Never),
            "auto" => Some(ColorWhen::Auto),
            _ => None,
        };
        let choice = match flag.or_else(from_env).unwrap_or(ColorWhen::Auto) {
            ColorWhen::Always => ColorChoice::Always,
            ColorWhen::Never => ColorChoice::Never,
            ColorWhen::Auto => ColorChoice::Auto,
        };
        Term { choice }
    }

    /// Whether human output is coloured: what a runner started by this command should do.
    pub fn colors(&self) -> bool {
        match self.choice {
            ColorChoice::Never => false,
            ColorChoice::Auto => AutoStream::choice(&std::io::stderr()) != ColorChoice::Never,
            _ => true,
        }
    }

    /// Human output: stderr, styled or plain as chosen.
    pub fn stderr(&self) -> AutoStream<std::io::Stderr> {
        AutoStream::new(std::io::stderr(), self.choice)
    }

    /// Writes a cargo-style status line such as `error: message`.
    pub fn message(&self, severity: Severity, message: &str) {
        let mut err = self.stderr();
        let style = severity_style(severity);
        let _ = writeln!(err, "{style}{severity}{style:#}: {message}");
    }

    /// `note: message` in cargo's look.
    pub fn note(&self, message: &str) {
        let mut err = self.stderr();
        let _ = writeln!(err, "{NOTE}note{NOTE:#}: {message}");
    }

    /// A green one-line verdict, like cargo's `Finished`.
    pub fn success(&self, label: &str, message: &str) {
        let mut err = self.stderr();
        let _ = writeln!(err, "{GOOD}{label:>12}{GOOD:#} {message}");
    }

    /// An error that ends the command, with its chain of causes.
    pub fn error_chain(&self, error: &dyn std::error::Error) {
        let mut err = self.stderr();
        let _ = writeln!(err, "{ERROR}error{ERROR:#}: {error}");
        let mut source = error.source();
        while let Some(cause) = source {
            let _ = writeln!(err, "  {EMPHASIS}caused by{EMPHASIS:#}: {cause}");
            source = cause.source();
        }
    }

    /// A diagnosis in the shape of a compiler message.
    pub fn diagnosis(&self, diagnosis: &Diagnosis) {
        let mut err = self.stderr();
        let _ = write_diagnosis(&mut err, diagnosis);
    }

    /// A finding in the shape of a compiler message.
    pub fn finding(&self, finding: &Finding) {
        let mut err = self.stderr();
        let _ = write_finding(&mut err, finding);
    }
}

fn severity_style(severity: Severity) -> Style {
    match severity {
        Severity::Error => ERROR,
        Severity::Warning => WARNING,
        Severity::Info => NOTE,
    }
}

/// Writes `diagnosis` with styles; the stream strips them when colour is off.
pub fn write_diagnosis(out: &mut impl Write, diagnosis: &Diagnosis) -> std::io::Result<()> {
    let style = severity_style(diagnosis.severity);
    writeln!(
        out,
        "{style}{}[{}]{style:#}{EMPHASIS}: {}{EMPHASIS:#}",
        diagnosis.severity, diagnosis.code, diagnosis.summary
    )?;
    if let Some(addr) = diagnosis.addr {
        writeln!(out, "  {ARROW}-->{ARROW:#} {addr}")?;
    }
    for line in &diagnosis.evidence {
        writeln!(out, "   {ARROW}={ARROW:#} {EMPHASIS}note{EMPHASIS:#}: {line}")?;
    }
    writeln!(
        out,
        "   {ARROW}={ARROW:#} {EMPHASIS}help{EMPHASIS:#}: {}",
        diagnosis.fix
    )
}

/// Writes `finding` with styles; the stream strips them when colour is off.
pub fn write_finding(out: &mut impl Write, finding: &Finding) -> std::io::Result<()> {
    let style = severity_style(finding.severity);
    writeln!(
        out,
        "{style}{}[{}]{style:#}{EMPHASIS}: {}{EMPHASIS:#}",
        finding.severity, finding.code, finding.message
    )?;
    if let Some(file) = &finding.file {
        let line = finding.line.map(|l| format!(":{l}")).unwrap_or_default();
        let column = finding.column.map(|c| format!(":{c}")).unwrap_or_default();
        writeln!(out, "  {ARROW}-->{ARROW:#} {file}{line}{column}")?;
    }
    if let (Some(pid), Some(command)) = (finding.pid, &finding.command) {
        writeln!(
            out,
            "   {ARROW}={ARROW:#} {EMPHASIS}note{EMPHASIS:#}: pid {pid} `{command}`"
        )?;
    }
    if let Some(suggestion) = &finding.suggestion {
        writeln!(
            out,
            "   {ARROW}={ARROW:#} {EMPHASIS}help{EMPHASIS:#}: {suggestion}"
        )?;
    }
    Ok(())
}
