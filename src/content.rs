//! Message data: the `-e` backslash unescaping, reading message files, and
//! the run's parsed messages ([`Content`]).
//!
//! `\{...}` expressions are parsed by `expr`: `unescape` passes `\{`
//! through untouched so that the expression stage still sees it.

use crate::expr::{Lengths, Piece, RenderCtx, Scope, Template};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};

/// The largest message file accepted (`-f`, `--first-message-file`).
pub const MAX_MESSAGE_FILE: u64 = 64 * 1024 * 1024;

/// The value of a hex digit, or `None`.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The `-e` transform: replaces backslash escapes by the bytes they name.
///
/// * `\n \r \t \v \f \b \a \e` → LF CR TAB VT FF BS BEL ESC
/// * `\\` `\"` `\'` → one `\`, `"`, `'`
/// * `\x` + 1 or 2 hex digits → that byte; `\x` without a hex digit stays
/// * `\0` + up to 3 more octal digits → that byte (value & 0xFF): `\012` is
///   LF, `\0101` is `A`, `\0` is NUL
/// * `\{` and every other unknown escape stay as they are (both bytes), as
///   does a backslash at the very end.
pub fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&c) = data.get(i) else {
            // A lone backslash at the end.
            out.push(b'\\');
            break;
        };
        i += 1;
        let simple = match c {
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'f' => Some(0x0c),
            b'b' => Some(0x08),
            b'a' => Some(0x07),
            b'e' => Some(0x1b),
            b'\\' => Some(b'\\'),
            b'"' => Some(b'"'),
            b'\'' => Some(b'\''),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            continue;
        }
        match c {
            b'x' => {
                let mut value: u8 = 0;
                let mut digits = 0;
                while digits < 2 {
                    match data.get(i).copied().and_then(hex_value) {
                        Some(d) => {
                            value = value * 16 + d;
                            digits += 1;
                            i += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    out.extend_from_slice(b"\\x");
                } else {
                    out.push(value);
                }
            }
            b'0' => {
                // The leading 0 is the first of up to four octal digits.
                let mut value: u32 = 0;
                let mut more = 0;
                while more < 3 {
                    match data.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            more += 1;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((value & 0xff) as u8);
            }
            // `\{` starts an expression, handled by a later stage; any
            // other unknown escape is kept as typed as well.
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    out
}

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

    fn u(s: &[u8]) -> Vec<u8> {
        unescape(s)
    }

    #[test]
    fn plain_data_is_unchanged() {
        assert_eq!(u(b""), b"");
        assert_eq!(u(b"hello world"), b"hello world");
        assert_eq!(u(&[0xff, 0x00, b'a']), vec![0xff, 0x00, b'a']);
    }

    #[test]
    fn simple_escapes() {
        assert_eq!(u(b"\\n"), b"\n");
        assert_eq!(u(b"\\r"), b"\r");
        assert_eq!(u(b"\\f"), b"\x0c");
        assert_eq!(u(b"\\b"), b"\x08");
        assert_eq!(u(b"\\t"), b"\t");
        assert_eq!(u(b"\\v"), b"\x0b");
        assert_eq!(u(b"\\a"), b"\x07");
        assert_eq!(u(b"\\e"), b"\x1b");
        assert_eq!(u(b"\\\""), b"\"");
        assert_eq!(u(b"\\'"), b"'");
        assert_eq!(u(b"GET / HTTP/1.0\\r\\n\\r\\n"), b"GET / HTTP/1.0\r\n\r\n");
    }

    #[test]
    fn backslash_backslash_is_one_backslash() {
        assert_eq!(u(b"\\\\"), b"\\");
        assert_eq!(u(b"a\\\\n"), b"a\\n");
        assert_eq!(u(b"\\\\\\\\"), b"\\\\");
    }

    #[test]
    fn hex() {
        assert_eq!(u(b"\\x41"), b"A");
        assert_eq!(u(b"\\xff"), [0xff]);
        assert_eq!(u(b"\\xFF"), [0xff]);
        assert_eq!(u(b"\\x4\""), b"\x04\"");
        assert_eq!(u(b"\\x414"), b"A4");
        assert_eq!(u(b"\\x"), b"\\x");
        assert_eq!(u(b"\\xzz"), b"\\xzz");
        assert_eq!(u(b"\\x+5"), b"\\x+5");
        assert_eq!(u(b"\\x0"), [0]);
    }

    #[test]
    fn octal() {
        assert_eq!(u(b"\\0"), [0]);
        assert_eq!(u(b"\\012"), b"\n");
        assert_eq!(u(b"\\0101"), b"A");
        assert_eq!(u(b"\\01011"), b"A1");
        assert_eq!(u(b"\\08"), b"\x008");
        assert_eq!(u(b"\\0777"), [0xff]);
        // Only \0 starts an octal escape.
        assert_eq!(u(b"\\1"), b"\\1");
        assert_eq!(u(b"\\7"), b"\\7");
    }

    #[test]
    fn kept_verbatim() {
        assert_eq!(u(b"\\"), b"\\");
        assert_eq!(u(b"abc\\"), b"abc\\");
        assert_eq!(u(b"\\q"), b"\\q");
        assert_eq!(u(b"\\{connection.uid}"), b"\\{connection.uid}");
        assert_eq!(u(b"a\\{re [a-z]}\\n"), b"a\\{re [a-z]}\n");
        assert_eq!(u(&[b'\\', 0xc3, 0xa9]), vec![b'\\', 0xc3, 0xa9]);
    }

    #[test]
    fn spec_example_with_our_rules() {
        // The spec's observed example, with \\ -> one backslash, \t -> TAB,
        // \a -> BEL and unknown escapes kept.
        let got = u(b"AB\\x01\\xff\\x4\"\\\\ Z\\0\\012\\0101\\t\\a\\q\\x\\xzz\\");
        let want: &[u8] = &[
            0x41, 0x42, 0x01, 0xff, 0x04, 0x22, 0x5c, 0x20, 0x5a, 0x00, 0x0a, 0x41, 0x09, 0x07,
            0x5c, 0x71, 0x5c, 0x78, 0x5c, 0x78, 0x7a, 0x7a, 0x5c,
        ];
        assert_eq!(got, want);
    }

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
