//! Message data: reading message files, and the run's parsed messages
//! ([`Content`]). The `-e` unescaping is in `escape`, `\{...}`
//! expressions in `expr`, the regex generator in `regexgen`, and the
//! pre-rendered send buffers in `payload`.

pub mod escape;
pub mod expr;
pub mod payload;
pub mod regexgen;

use crate::content::expr::{Lengths, Piece, RenderCtx, Scope, Template};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};

/// The largest message file accepted (`-f`, `--first-message-file`).
pub const MAX_MESSAGE_FILE: u64 = 64 * 1024 * 1024;

/// The most message data a run holds: every `-1`, `-m` and `-f` snippet
/// together, as typed or read and as rendered. Each snippet alone has its
/// own limit; this one stops many of them adding up to gigabytes.
pub const MAX_CONTENT_LEN: usize = 128 << 20;

/// Why a message file could not be used.
#[derive(Debug)]
pub enum MessageFileError {
    /// Opening or reading failed.
    Io {
        option: String,
        path: String,
        error: io::Error,
    },
    /// The file holds more than [`MAX_MESSAGE_FILE`] bytes.
    TooLarge { option: String, path: String },
}

impl fmt::Display for MessageFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageFileError::Io {
                option,
                path,
                error,
            } => write!(f, "{option}={path:?}: cannot read file: {error}"),
            MessageFileError::TooLarge { option, path } => write!(
                f,
                "{option}={path:?}: file is larger than {} MiB, which is not supported",
                MAX_MESSAGE_FILE / (1024 * 1024)
            ),
        }
    }
}

impl std::error::Error for MessageFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MessageFileError::Io { error, .. } => Some(error),
            MessageFileError::TooLarge { .. } => None,
        }
    }
}

/// Reads a whole message file as bytes for `option` (e.g. `--message-file`),
/// refusing files larger than [`MAX_MESSAGE_FILE`]. Pipes and other special
/// files are read up to that limit too.
pub fn read_message_file(path: &str, option: &str) -> Result<Vec<u8>, MessageFileError> {
    let io_error = |error| MessageFileError::Io {
        option: option.to_string(),
        path: path.to_string(),
        error,
    };
    let too_large = || MessageFileError::TooLarge {
        option: option.to_string(),
        path: path.to_string(),
    };
    let file = File::open(path).map_err(io_error)?;
    let size_hint = match file.metadata() {
        Ok(meta) if meta.is_file() => {
            if meta.len() > MAX_MESSAGE_FILE {
                return Err(too_large());
            }
            meta.len()
        }
        _ => 0,
    };
    let mut data = Vec::with_capacity(usize::try_from(size_hint).unwrap_or(0));
    file.take(MAX_MESSAGE_FILE + 1)
        .read_to_end(&mut data)
        .map_err(io_error)?;
    if data.len() as u64 > MAX_MESSAGE_FILE {
        return Err(too_large());
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("tcpkali-content-{}-{name}", std::process::id()))
    }

    #[test]
    fn read_file_ok() {
        let path = temp_path("ok");
        let data = [0u8, 1, 2, 255, b'\\', b'n'];
        std::fs::write(&path, data).expect("write temp file");
        let p = path.to_str().expect("utf-8 temp path");
        let got = read_message_file(p, "--message-file");
        let _ = std::fs::remove_file(&path);
        assert_eq!(got.expect("readable"), data);
    }

    #[test]
    fn read_file_missing() {
        let err =
            read_message_file("/nonexistent/tcpkali/msg", "--message-file").expect_err("must fail");
        let text = err.to_string();
        assert!(text.starts_with("--message-file=\"/nonexistent/tcpkali/msg\": "));
        assert!(text.contains("No such file or directory"), "{text}");
    }

    #[test]
    fn read_file_directory() {
        let err = read_message_file("/", "--first-message-file").expect_err("must fail");
        assert!(matches!(err, MessageFileError::Io { .. }));
        assert!(err.to_string().starts_with("--first-message-file=\"/\""));
    }

    #[test]
    fn read_file_too_large() {
        let path = temp_path("big");
        let file = File::create(&path).expect("create temp file");
        // A sparse file: no disk space used.
        file.set_len(MAX_MESSAGE_FILE + 1).expect("set_len");
        drop(file);
        let p = path.to_str().expect("utf-8 temp path");
        let got = read_message_file(p, "--message-file");
        let _ = std::fs::remove_file(&path);
        let err = got.expect_err("too large");
        assert!(matches!(err, MessageFileError::TooLarge { .. }));
        assert!(err.to_string().contains("64 MiB"));
    }

    #[test]
    fn read_unbounded_special_file_is_capped() {
        // /dev/zero never ends: reading must stop at the limit.
        if std::path::Path::new("/dev/zero").exists() {
            let err = read_message_file("/dev/zero", "-f").expect_err("capped");
            assert!(matches!(err, MessageFileError::TooLarge { .. }));
        }
    }
}

/// The run's message data, parsed: what every connection sends once, and
/// the message it repeats (all `-m`/`-f` snippets, in order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Content {
    pub once: Vec<Template>,
    pub body: Vec<Template>,
}

fn pieces_have_marker(pieces: &[Piece]) -> bool {
    pieces.iter().any(|p| match p {
        Piece::MessageMarker => true,
        Piece::Raw(inner) | Piece::TextFrame(inner) => pieces_have_marker(inner),
        _ => false,
    })
}

impl Content {
    fn all(&self) -> impl Iterator<Item = &Template> {
        self.once.iter().chain(&self.body)
    }

    /// How often the data must be rendered: once, per connection, or per
    /// message.
    pub fn scope(&self) -> Scope {
        self.all()
            .map(Template::scope)
            .max()
            .unwrap_or(Scope::Static)
    }

    /// True when a `\{message.marker}` appears anywhere.
    pub fn has_markers(&self) -> bool {
        self.all().any(|t| pieces_have_marker(&t.pieces))
    }

    /// Length range of one repeated message on one side.
    pub fn message_lengths(&self, client_side: bool) -> Lengths {
        self.body.iter().fold(
            Lengths {
                min: 0,
                max: 0,
                avg: 0,
            },
            |acc, t| {
                let l = t.lengths(client_side);
                Lengths {
                    min: acc.min.saturating_add(l.min),
                    max: acc.max.saturating_add(l.max),
                    avg: acc.avg.saturating_add(l.avg),
                }
            },
        )
    }

    /// Appends the once-part.
    pub fn render_once(
        &self,
        ctx: &mut RenderCtx<'_>,
        out: &mut Vec<u8>,
        markers: &mut Vec<usize>,
    ) {
        for t in &self.once {
            t.render(ctx, out, markers);
        }
    }

    /// Appends one repeated message.
    pub fn render_message(
        &self,
        ctx: &mut RenderCtx<'_>,
        out: &mut Vec<u8>,
        markers: &mut Vec<usize>,
    ) {
        for t in &self.body {
            t.render(ctx, out, markers);
        }
    }
}
