//! What parsing the command line ends in: the action to take, or the
//! one-line error to show, and the rendering of raw argv bytes that those
//! errors and notes quote.
//!
//! Every other part of the command line produces these values, so this file
//! depends on nothing in `cli` but the configuration a run carries: it sits
//! at the bottom, where anything may import it without forming a circle.

use std::fmt;

use super::config::Options;
use crate::content::MessageFileError;

/// What the command line asked for.
#[derive(Debug)]
// `Run` is by far the largest variant, but an `Action` exists once per run.
#[allow(clippy::large_enum_variant)]
pub enum Action {
    /// Run with these options.
    Run(Parsed),
    /// Print this text on stdout (it ends with a newline), exit 0.
    Help(String),
    /// Print this text on stdout (it ends with a newline), exit 0.
    Version(String),
}

/// A command line that passed every check.
#[derive(Debug)]
pub struct Parsed {
    pub options: Options,
    /// Complete lines for stderr (`NOTE: ...`, `WARNING: ...`), in order.
    pub notes: Vec<String>,
}

/// A command line that cannot be run. `Display` gives one line.
#[derive(Debug)]
pub enum CliError {
    /// No such option (`token` as typed).
    UnknownOption { token: String },
    /// A long-option prefix that matches several options.
    AmbiguousOption {
        token: String,
        candidates: Vec<String>,
    },
    /// An option that needs a value came last.
    MissingValue { option: String, expected: String },
    /// `--flag=value` for an option that takes no value.
    UnexpectedValue { option: String },
    /// The value of `option` is wrong for `reason`.
    InvalidValue {
        option: String,
        value: String,
        reason: String,
    },
    /// A `host:port` operand that cannot be used.
    BadDestination { operand: String, reason: String },
    /// A message file that cannot be used.
    MessageFile(MessageFileError),
    /// A valid option whose behaviour does not exist yet.
    NotSupported { option: String },
    /// Any other usage error, as a complete line.
    Usage(String),
}

impl CliError {
    /// The process exit status for this error (sysexits `EX_USAGE`).
    pub fn exit_code(&self) -> i32 {
        64
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::UnknownOption { token } => {
                write!(f, "{token}: unknown option. See -h or --help.")
            }
            CliError::AmbiguousOption { token, candidates } => write!(
                f,
                "{token}: ambiguous option, could be {}",
                candidates.join(", ")
            ),
            CliError::MissingValue { option, expected } => {
                write!(f, "{option}: missing value (expected {expected})")
            }
            CliError::UnexpectedValue { option } => {
                write!(f, "{option}: this option does not take a value")
            }
            CliError::InvalidValue {
                option,
                value,
                reason,
            } => write!(f, "{option}={value}: {reason}"),
            CliError::BadDestination { operand, reason } => {
                write!(f, "destination {operand}: {reason}")
            }
            CliError::MessageFile(e) => write!(f, "{e}"),
            CliError::NotSupported { option } => write!(f, "{option}: not supported yet"),
            CliError::Usage(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for CliError {}

/// Renders arbitrary argv bytes on one printable line: control characters
/// and bytes that are not UTF-8 become escapes.
pub(super) fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}
