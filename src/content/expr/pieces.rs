//! The pieces a message is made of (literal runs, files, regexes, ids,
//! markers, WebSocket frames), their scopes and the limits they obey, and
//! the length accounting of a rendering, which the parser (for its size
//! limits) and the renderer (for frame headers) both rely on.

use std::fmt;

use oorandom::Rand32;

use crate::content::regexgen;
use crate::proto::ws;

/// The bytes every message marker starts with.
pub const MARKER_PREFIX: &[u8] = b"TCPKaliMsgTS-";
/// A marker's length: prefix, 16 hex digits, `.`.
pub const MARKER_LEN: usize = 30;
/// The largest file an expression may read.
pub const MAX_FILE_LEN: usize = 64 << 20;
/// The most bytes one template may render, and the most bytes that files
/// and `global.re` may bring into one template.
pub const MAX_TEMPLATE_LEN: usize = 128 << 20;
/// How deeply `raw {raw {…}}` may nest.
pub const MAX_RAW_DEPTH: usize = 16;
/// The most regex text (counting 64 bytes more for each regex) one
/// template may hold, which bounds the memory its parsed regexes take.
pub const MAX_REGEX_TEXT: usize = 1 << 20;

/// How often a template (or piece) must be re-rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Once for the whole run.
    Static,
    /// Once per connection.
    Connection,
    /// For every message.
    Message,
}

/// One part of a parsed message.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Literal text, file contents, quoted strings, `global.re` results.
    Bytes(Vec<u8>),
    /// `connection.uid`, optionally modulo a non-zero number.
    ConnUid { modulo: Option<u64> },
    /// `connection.ptr`: `0x` + lower-case hex, or the decimal value modulo
    /// a non-zero number.
    ConnPtr { modulo: Option<u64> },
    /// `connection.re R`: drawn per connection.
    ConnRe(regexgen::Regex),
    /// `re R`: drawn per message.
    MsgRe(regexgen::Regex),
    /// `message.marker`: [`MARKER_LEN`] bytes, [`MARKER_PREFIX`] + 16 hex
    /// digits + `.`.
    MessageMarker,
    /// A WebSocket frame; `rsv` holds the 0x40/0x20/0x10 bits.
    WsFrame {
        fin: bool,
        rsv: u8,
        opcode: u8,
        payload: Vec<u8>,
    },
    /// Content that is never WebSocket-framed.
    Raw(Vec<Piece>),
    /// `--ws` automatic framing: the inner pieces rendered as one text frame
    /// (FIN, opcode 1), whose header is written once their length is known.
    /// See [`ws_auto_frame`].
    TextFrame(Vec<Piece>),
}

/// A parsed message: render it to get its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub pieces: Vec<Piece>,
}

/// The length range of a rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lengths {
    pub min: usize,
    pub max: usize,
    /// An estimate for rate computations.
    pub avg: usize,
}

/// What a rendering needs to know about the connection.
pub struct RenderCtx<'a> {
    /// `connection.uid`.
    pub uid: u64,
    /// `connection.ptr`.
    pub ptr: u64,
    /// For `re`, `connection.re` and WebSocket masking keys.
    pub rng: &'a mut Rand32,
    /// Frames are masked on the client side (outgoing connections).
    pub client_side: bool,
}

/// Why message text could not be parsed. Displayed as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprError {
    /// `\{` without its closing `}` (or a quote without its end).
    Unterminated { text: String },
    /// A word that is no expression (`\{foo}`, `\{ws}`).
    Unknown { text: String },
    /// Any other syntax error.
    Syntax { problem: String, text: String },
    /// `% 0`.
    ModuloByZero { text: String },
    /// A file that could not be opened or read.
    File { path: String, reason: String },
    /// A file larger than [`MAX_FILE_LEN`].
    FileTooLarge { path: String },
    /// A regex that does not parse.
    Regex { error: regexgen::RegexError },
    /// The message could render more than [`MAX_TEMPLATE_LEN`] bytes.
    TooLarge,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExprError::Unterminated { text } => write!(f, "unterminated \"\\{{\" in \"{text}\""),
            ExprError::Unknown { text } => write!(f, "unknown expression \"{text}\""),
            ExprError::Syntax { problem, text } => write!(f, "{problem} in \"{text}\""),
            ExprError::ModuloByZero { text } => write!(f, "modulo by zero in \"{text}\""),
            ExprError::File { path, reason } => write!(f, "cannot read <{path}>: {reason}"),
            ExprError::FileTooLarge { path } => write!(
                f,
                "cannot read <{path}>: larger than {} MiB",
                MAX_FILE_LEN >> 20
            ),
            ExprError::Regex { error } => {
                write!(f, "bad regex \"{}\": {}", error.regex(), error.problem())
            }
            ExprError::TooLarge => write!(
                f,
                "message data could be larger than {} MiB",
                MAX_TEMPLATE_LEN >> 20
            ),
        }
    }
}

impl std::error::Error for ExprError {}

impl Piece {
    /// How often this piece changes.
    pub fn scope(&self) -> Scope {
        match self {
            Piece::Bytes(_) | Piece::WsFrame { .. } => Scope::Static,
            Piece::ConnUid { .. } | Piece::ConnPtr { .. } | Piece::ConnRe(_) => Scope::Connection,
            Piece::MsgRe(_) | Piece::MessageMarker => Scope::Message,
            Piece::Raw(inner) | Piece::TextFrame(inner) => inner
                .iter()
                .map(Piece::scope)
                .max()
                .unwrap_or(Scope::Static),
        }
    }

    fn lengths(&self, client_side: bool) -> Lengths {
        let exact = |n: usize| Lengths {
            min: n,
            max: n,
            avg: n,
        };
        match self {
            Piece::Bytes(bytes) => exact(bytes.len()),
            Piece::ConnUid { modulo: Some(m) } | Piece::ConnPtr { modulo: Some(m) } => {
                modulo_lengths(*m)
            }
            // The uid counts connections: short in practice.
            Piece::ConnUid { modulo: None } => Lengths {
                min: 1,
                max: 20,
                avg: 5,
            },
            // `0x` and 1..16 hex digits; typically a 48-bit address.
            Piece::ConnPtr { modulo: None } => Lengths {
                min: 3,
                max: 18,
                avg: 14,
            },
            Piece::ConnRe(re) | Piece::MsgRe(re) => Lengths {
                min: re.min_len(),
                max: re.max_len(),
                avg: re.avg_len(),
            },
            Piece::MessageMarker => exact(MARKER_LEN),
            Piece::WsFrame { payload, .. } => exact(
                ws::frame_header_len(payload.len(), client_side).saturating_add(payload.len()),
            ),
            Piece::Raw(inner) => sum_lengths(inner, client_side),
            Piece::TextFrame(inner) => {
                // The header grows with the length, so each bound is exact.
                let payload = sum_lengths(inner, client_side);
                let framed = |n: usize| n.saturating_add(ws::frame_header_len(n, client_side));
                Lengths {
                    min: framed(payload.min),
                    max: framed(payload.max),
                    avg: framed(payload.avg),
                }
            }
        }
    }
}

pub(super) fn sum_lengths(pieces: &[Piece], client_side: bool) -> Lengths {
    let mut total = Lengths {
        min: 0,
        max: 0,
        avg: 0,
    };
    for piece in pieces {
        let l = piece.lengths(client_side);
        total.min = total.min.saturating_add(l.min);
        total.max = total.max.saturating_add(l.max);
        total.avg = total.avg.saturating_add(l.avg);
    }
    total
}

/// Decimal digits of `v`.
fn decimal_len(mut v: u64) -> usize {
    let mut digits = 1;
    while v >= 10 {
        v /= 10;
        digits += 1;
    }
    digits
}

/// Lengths of the decimal values 0..m (m > 0), assumed uniform.
fn modulo_lengths(m: u64) -> Lengths {
    let m = m.max(1);
    let mut total: u128 = 0;
    let mut low: u128 = 0;
    let mut high: u128 = 10;
    let mut digits: u128 = 1;
    while low < u128::from(m) {
        let end = high.min(u128::from(m));
        total += (end - low) * digits;
        low = high;
        high *= 10;
        digits += 1;
    }
    let avg = total / u128::from(m);
    Lengths {
        min: 1,
        max: decimal_len(m - 1),
        avg: usize::try_from(avg).unwrap_or(usize::MAX),
    }
}

impl Template {
    /// The most dynamic scope of any piece (`Static` for no pieces).
    pub fn scope(&self) -> Scope {
        self.pieces
            .iter()
            .map(Piece::scope)
            .max()
            .unwrap_or(Scope::Static)
    }

    #[cfg(test)]
    /// Whether the template is only bytes (no frames, raw parts or dynamic
    /// parts).
    pub fn is_plain(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Bytes(_)))
    }

    /// Length range of a rendering on the given side (client-side
    /// WebSocket frames carry 4 more bytes: the masking key).
    pub fn lengths(&self, client_side: bool) -> Lengths {
        sum_lengths(&self.pieces, client_side)
    }

    #[cfg(test)]
    /// The shortest rendering on either side.
    pub fn min_len(&self) -> usize {
        self.lengths(false).min
    }

    #[cfg(test)]
    /// The longest rendering on either side.
    pub fn max_len(&self) -> usize {
        self.lengths(true).max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::expr::{stamp_marker, ws_auto_frame};
    use std::path::PathBuf;

    fn parse(text: &str, unescape: bool) -> Template {
        parse_bytes(text.as_bytes(), unescape)
    }

    fn parse_bytes(text: &[u8], unescape: bool) -> Template {
        let mut rng = Rand32::new(7);
        match Template::parse(text, unescape, &mut rng) {
            Ok(t) => t,
            Err(e) => panic!("{:?} should parse: {e}", String::from_utf8_lossy(text)),
        }
    }

    fn fail(text: &str) -> ExprError {
        let mut rng = Rand32::new(7);
        match Template::parse(text.as_bytes(), false, &mut rng) {
            Ok(t) => panic!("{text:?} should fail, got {t:?}"),
            Err(e) => e,
        }
    }

    fn render_with(t: &Template, uid: u64, ptr: u64, client_side: bool, seed: u64) -> Vec<u8> {
        let mut rng = Rand32::new(seed);
        let mut ctx = RenderCtx {
            uid,
            ptr,
            rng: &mut rng,
            client_side,
        };
        let mut out = Vec::new();
        let mut markers = Vec::new();
        t.render(&mut ctx, &mut out, &mut markers);
        out
    }

    fn render(t: &Template) -> Vec<u8> {
        render_with(t, 1, 0x7ff6_b400_1730, false, 1)
    }

    /// A file under the temp directory, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &[u8]) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("expr-test-{}-{name}", std::process::id()));
            if let Err(e) = std::fs::write(&path, contents) {
                panic!("cannot write {path:?}: {e}");
            }
            TempFile(path)
        }

        fn path(&self) -> String {
            self.0.to_string_lossy().into_owned()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn plain_text() {
        let t = parse("hello", false);
        assert_eq!(t.pieces, vec![Piece::Bytes(b"hello".to_vec())]);
        assert!(t.is_plain());
        assert_eq!(t.scope(), Scope::Static);
        assert_eq!(parse("", false).pieces, vec![]);
        // `\\{x}` is literal, so are a lone `}` and a final backslash.
        assert_eq!(render(&parse(r"a\\{x}b}c\", false)), br"a\\{x}b}c\");
    }

    #[test]
    fn spec_get_example() {
        let t = parse(r"GET /image-\{connection.uid%10}.jpg\r\n\r\n", true);
        assert_eq!(
            t.pieces,
            vec![
                Piece::Bytes(b"GET /image-".to_vec()),
                Piece::ConnUid { modulo: Some(10) },
                Piece::Bytes(b".jpg\r\n\r\n".to_vec()),
            ]
        );
        assert_eq!(t.scope(), Scope::Connection);
        assert!(!t.is_plain());
        assert_eq!(
            render_with(&t, 123, 0, true, 1),
            b"GET /image-3.jpg\r\n\r\n"
        );
        assert_eq!(
            t.lengths(false),
            Lengths {
                min: 20,
                max: 20,
                avg: 20
            }
        );
        // Without -e the escapes stay.
        let t = parse(r"GET /\{connection.uid}\r\n", false);
        assert_eq!(render_with(&t, 42, 0, false, 1), br"GET /42\r\n");
    }

    #[test]
    fn numbers() {
        let t = parse(r"\{ connection . uid % 7 }", false);
        assert_eq!(t.pieces, vec![Piece::ConnUid { modulo: Some(7) }]);
        assert_eq!(render_with(&t, 20, 0, false, 1), b"6");
        let t = parse("\\{\tconnection\n.uid}", false);
        assert_eq!(
            render_with(&t, u64::MAX, 0, false, 1),
            b"18446744073709551615"
        );
        assert_eq!(render_with(&t, 0, 0, false, 1), b"0");
        let t = parse(r"\{connection.ptr}", false);
        assert_eq!(
            render_with(&t, 1, 0x7ff6_b400_1730, false, 1),
            b"0x7ff6b4001730"
        );
        assert_eq!(render_with(&t, 1, 0, false, 1), b"0x0");
        assert_eq!(t.scope(), Scope::Connection);
        let t = parse(r"\{connection.ptr % 1000}", false);
        assert_eq!(t.pieces, vec![Piece::ConnPtr { modulo: Some(1000) }]);
        assert_eq!(render_with(&t, 1, 123_456, false, 1), b"456");
        assert_eq!(
            modulo_lengths(10),
            Lengths {
                min: 1,
                max: 1,
                avg: 1
            }
        );
        assert_eq!(
            modulo_lengths(1000),
            Lengths {
                min: 1,
                max: 3,
                avg: 2
            }
        );
        assert_eq!(modulo_lengths(u64::MAX).max, 20);
        assert_eq!(modulo_lengths(1).max, 1);
    }

    #[test]
    fn regexes() {
        let t = parse(r"\{re [a-z0-9]+}", false);
        assert_eq!(t.scope(), Scope::Message);
        let mut distinct = std::collections::HashSet::new();
        for seed in 0..50 {
            let out = render_with(&t, 1, 1, false, seed);
            assert!((1..=16).contains(&out.len()));
            assert!(out
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
            distinct.insert(out);
        }
        assert!(distinct.len() > 40, "re should differ per render");

        let t = parse(r"\{connection.re (ab|cd){3}}", false);
        assert_eq!(t.scope(), Scope::Connection);
        assert_eq!(render(&t).len(), 6);

        // global.re: drawn once at parse time.
        let t = parse(r"x\{global.re [a-z]{12}}y", false);
        assert_eq!(t.scope(), Scope::Static);
        assert!(t.is_plain());
        assert_eq!(t.pieces.len(), 1);
        let first = render_with(&t, 1, 1, false, 1);
        assert_eq!(first.len(), 14);
        for seed in 2..10 {
            assert_eq!(render_with(&t, seed, seed, true, seed), first);
        }

        // The regex runs to the closing brace, braces of {n} included;
        // leading blanks are skipped, trailing ones kept.
        assert_eq!(
            render(&parse(r"\{re  hello world }", false)),
            b"hello world "
        );
        assert_eq!(render(&parse(r"\{re a{3}}", false)), b"aaa");
        assert_eq!(render(&parse(r"\{re [}]\}}", false)), b"}}");
        assert_eq!(render(&parse(r"\{raw {re x{2}}}!", false)), b"xx!");
    }

    #[test]
    fn markers() {
        let t = parse(r"Foo\{message.marker}Bar\{ message . marker }", false);
        assert_eq!(t.scope(), Scope::Message);
        assert_eq!(
            t.lengths(true),
            Lengths {
                min: 66,
                max: 66,
                avg: 66
            }
        );
        let mut rng = Rand32::new(1);
        let mut ctx = RenderCtx {
            uid: 1,
            ptr: 1,
            rng: &mut rng,
            client_side: true,
        };
        let mut out = b"prefix".to_vec();
        let mut markers = Vec::new();
        t.render(&mut ctx, &mut out, &mut markers);
        assert_eq!(markers, vec![9, 42]);
        assert_eq!(&out[9..39], b"TCPKaliMsgTS-0000000000000000.");
        stamp_marker(&mut out, 9, 0x0006_6142_52c0_e482);
        stamp_marker(&mut out, 42, u64::MAX);
        assert_eq!(
            out,
            b"prefixFooTCPKaliMsgTS-0006614252c0e482.BarTCPKaliMsgTS-ffffffffffffffff.".to_vec()
        );
        // Out of range: nothing happens.
        let mut short = b"TCPKaliMsgTS-0000".to_vec();
        stamp_marker(&mut short, 0, 1);
        stamp_marker(&mut short, usize::MAX, 1);
        assert_eq!(short, b"TCPKaliMsgTS-0000");
    }

    #[test]
    fn ws_frames() {
        let t = parse(r#"\{ws.binary "hi" rsv1 rsv3 ...}"#, false);
        assert_eq!(
            t.pieces,
            vec![Piece::WsFrame {
                fin: false,
                rsv: 0x50,
                opcode: 2,
                payload: b"hi".to_vec()
            }]
        );
        assert_eq!(render(&t)[0], 0x52);
        assert_eq!(t.scope(), Scope::Static);
        assert!(!t.is_plain());

        let t = parse(r#"\{ws.text "hi"}"#, false);
        assert_eq!(render_with(&t, 1, 1, false, 1), [0x81, 0x02, b'h', b'i']);
        let client = render_with(&t, 1, 1, true, 1);
        assert_eq!(client.len(), 8);
        assert_eq!(client[..2], [0x81, 0x82]);
        let key = [client[2], client[3], client[4], client[5]];
        assert_eq!([client[6] ^ key[0], client[7] ^ key[1]], *b"hi");
        // The key is random: different seeds give different keys.
        let other = render_with(&t, 1, 1, true, 2);
        assert_ne!(client[2..6], other[2..6]);
        assert_eq!(t.lengths(false).max, 4);
        assert_eq!(t.lengths(true).min, 8);
        assert_eq!((t.min_len(), t.max_len()), (4, 8));

        let opcodes = [
            ("continuation", 0x0),
            ("cont", 0x0),
            ("text", 0x1),
            ("binary", 0x2),
            ("close", 0x8),
            ("ping", 0x9),
            ("pong", 0xa),
        ];
        for (name, code) in opcodes {
            let t = parse(&format!("\\{{ ws . {name} }}"), false);
            assert_eq!(render(&t), [0x80 | code, 0]);
            assert_eq!(render_with(&t, 1, 1, true, 3).len(), 6);
        }
        let t = parse(r#"\{ws.pong "a" "b" rsv2}"#, false);
        assert_eq!(render(&t), [0xaa, 2, b'a', b'b']);

        // Medium and long payloads.
        let file = TempFile::new("long", &vec![7u8; 70_000]);
        let t = parse(&format!("\\{{ws.binary <{}>}}", file.path()), false);
        let out = render(&t);
        assert_eq!(out[..10], [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(out.len(), 70_010);
        assert_eq!(t.lengths(true).max, 70_014);
        let medium = "x".repeat(300);
        let t = parse(&format!("\\{{ws.text \"{medium}\"}}"), false);
        let out = render_with(&t, 1, 1, true, 9);
        assert_eq!(out[..4], [0x81, 0xfe, 0x01, 0x2c]);
        assert_eq!(out.len(), 4 + 4 + 300);
        assert_eq!(t.lengths(true).avg, 308);
        let t = parse(&format!("\\{{ws.ping \"{}\"}}", "y".repeat(125)), false);
        assert_eq!(render(&t).len(), 127);
    }

    #[test]
    fn raw_parts() {
        let t = parse(r#"A\{raw "hi"}B"#, false);
        assert_eq!(
            t.pieces,
            vec![
                Piece::Bytes(b"A".to_vec()),
                Piece::Raw(vec![Piece::Bytes(b"hi".to_vec())]),
                Piece::Bytes(b"B".to_vec()),
            ]
        );
        assert_eq!(render(&t), b"AhiB");
        assert!(!t.is_plain());
        assert_eq!(t.scope(), Scope::Static);

        let t = parse(r"\{raw {connection.uid}}", false);
        assert_eq!(
            t.pieces,
            vec![Piece::Raw(vec![Piece::ConnUid { modulo: None }])]
        );
        assert_eq!(t.scope(), Scope::Connection);
        assert_eq!(render_with(&t, 77, 0, false, 1), b"77");
        let t = parse(r"\{raw{raw { message.marker } }}", false);
        assert_eq!(t.scope(), Scope::Message);
        assert_eq!(render(&t).len(), MARKER_LEN);
        let file = TempFile::new("raw", b"\x00\xffbin");
        let t = parse(&format!("\\{{raw <{}>}}", file.path()), false);
        assert_eq!(render(&t), b"\x00\xffbin");
    }

    #[test]
    fn files() {
        assert_eq!(
            parse(r"a\{ < /dev/null >}b", false).pieces,
            vec![Piece::Bytes(b"ab".to_vec())]
        );
        let file = TempFile::new("data", b"\\{not an expression}\x00\n\\n");
        let t = parse(&format!("<\\{{<{}>}}>", file.path()), true);
        // File contents are neither parsed nor unescaped.
        assert_eq!(
            t.pieces,
            vec![Piece::Bytes(b"<\\{not an expression}\x00\n\\n>".to_vec())]
        );
        let t = parse(&format!("\\{{<\"{}\">}}", file.path()), false);
        assert_eq!(render(&t).len(), 24);
    }

    #[test]
    fn quoting_and_unescaping() {
        // Quoted strings are always unescaped; `\"` is a quote.
        assert_eq!(render(&parse(r#"\{raw "a\"b\n\x41"}"#, false)), b"a\"b\nA");
        assert_eq!(render(&parse(r#"\{raw "a\"b\n\x41"}"#, true)), b"a\"b\nA");
        assert_eq!(render(&parse(r#"\{raw "}{"}"#, false)), b"}{");
        // -e applies to literal runs only when asked.
        assert_eq!(
            render(&parse(r#"a\nb\{raw "c\nd"}\t"#, false)),
            b"a\\nbc\nd\\t"
        );
        assert_eq!(
            render(&parse(r#"a\nb\{raw "c\nd"}\t"#, true)),
            b"a\nbc\nd\t"
        );
        // A quoted string is unescaped once only, even with -e.
        assert_eq!(render(&parse(r#"\{ws.text "\\n"}"#, true)), b"\x81\x02\\n");
        // `\\{` stays literal text; with -e it becomes `\{`, still literal.
        assert_eq!(
            render(&parse(r"\\{connection.uid}", true)),
            br"\{connection.uid}"
        );
        // Non-UTF-8 literal data passes through.
        assert_eq!(
            render(&parse_bytes(b"\xff\\{raw \"\xfe\"}", false)),
            b"\xff\xfe"
        );
    }

    #[test]
    fn errors() {
        use ExprError as E;
        let unknown = [
            "\\{foo}",
            "\\{ws}",
            "\\{ws.}",
            "\\{connection.foo}",
            "\\{global.uid}",
            "\\{message}",
            "\\{message.uid}",
            "\\{\"x\"}",
            "\\{%}",
            "\\{reabc}",
            "\\{connection uid}",
        ];
        for text in unknown {
            assert!(
                matches!(fail(text), E::Unknown { .. }),
                "{text}: {:?}",
                fail(text)
            );
        }
        assert_eq!(
            fail(r"\{foo}").to_string(),
            r#"unknown expression "\{foo}""#
        );
        assert_eq!(
            fail(r"x\{connection.uid % 0}y").to_string(),
            r#"modulo by zero in "\{connection.uid % 0}""#
        );
        assert!(matches!(
            fail(r"\{connection.ptr%0}"),
            E::ModuloByZero { .. }
        ));
        let syntax = [
            r#"\{ws.binary rsv1 "x"}"#,
            r#"\{ws.binary ... <x>}"#,
            r"\{ws.text bogus}",
            r"\{ws.text ..}",
            r"\{ws.foo}",
            r#"\{ws.ping "a" "b" ! }"#,
            r"\{message.marker % 5}",
            r"\{message.marker%5}",
            r"\{connection.uid % 10 % 3}",
            r"\{connection.uid %}",
            r"\{connection.uid % x}",
            r"\{connection.uid % 99999999999999999999}",
            r"\{connection.uid x}",
            r"\{}",
            r"\{ }",
            r"\{re }",
            r"\{raw}",
            r"\{raw x}",
            r#"\{raw {ws.text "x"}}"#,
            r"\{raw {}}",
            r"\{<>}",
            r"\{< >}",
            r"\{<a b>}",
            r#"\{"a" }"#,
        ];
        for text in syntax {
            match fail(text) {
                E::Syntax { .. } | E::Unknown { .. } => {}
                other => panic!("{text}: {other:?}"),
            }
        }
        assert_eq!(
            fail(r#"\{ws.binary rsv1 "x"}"#).to_string(),
            r#"frame payload after flags in "\{ws.binary rsv1 "x"}""#
        );
        let deep = format!(
            "\\{{{}connection.uid{}}}",
            "raw {".repeat(17),
            "}".repeat(17)
        );
        assert!(matches!(fail(&deep), E::Syntax { .. }));
        let ok = format!(
            "\\{{{}connection.uid{}}}",
            "raw {".repeat(16),
            "}".repeat(16)
        );
        assert_eq!(parse(&ok, false).scope(), Scope::Connection);

        let long_ping = format!("\\{{ws.ping \"{}\"}}", "y".repeat(126));
        assert!(matches!(fail(&long_ping), E::Syntax { .. }));
        assert!(matches!(
            fail(&long_ping.replace("ping", "close")),
            E::Syntax { .. }
        ));
        assert!(matches!(
            fail(&long_ping.replace("ping", "pong")),
            E::Syntax { .. }
        ));
        assert!(Template::parse(
            long_ping.replace("ping", "text").as_bytes(),
            false,
            &mut Rand32::new(1)
        )
        .is_ok());

        for text in [
            r"\{",
            r"x\{connection.uid",
            r"\{raw {connection.uid}",
            r#"\{raw "abc}"#,
            r"\{re abc",
            r"\{re [}",
            r"\{re a{2}",
            r"\{ws.text",
            r#"\{ws.text "a"#,
            r"\{</dev/null",
            r"\{raw",
            r"\{connection.",
            r"\{re a\",
        ] {
            assert!(
                matches!(fail(text), E::Unterminated { .. }),
                "{text}: {:?}",
                fail(text)
            );
        }
        assert_eq!(
            fail(r"ab\{connection.uid").to_string(),
            r#"unterminated "\{" in "\{connection.uid""#
        );

        assert_eq!(
            fail(r"\{</no/such/file>}").to_string(),
            "cannot read </no/such/file>: No such file or directory"
        );
        assert!(matches!(fail(r"\{ws.text </no/such>}"), E::File { .. }));
        assert!(matches!(fail(r"\{raw </>}"), E::File { .. }));

        let e = fail(r"\{re [z-a]}");
        assert!(matches!(e, E::Regex { .. }));
        assert_eq!(e.to_string(), r#"bad regex "[z-a]": bad range "z-a""#);
        assert!(matches!(fail(r"\{connection.re (ab}"), E::Regex { .. }));
        assert!(matches!(fail(r"\{global.re a{x}}"), E::Regex { .. }));
        assert!(matches!(fail(r"\{re *a}"), E::Regex { .. }));

        // Messages stay on one line.
        let e = fail("\\{foo\nbar}").to_string();
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn size_limits() {
        let limited = |text: &str, max: usize| {
            Template::parse_limited(text.as_bytes(), false, &mut Rand32::new(1), max)
        };
        // global.re output counts, and is checked before drawing.
        let one = r"\{global.re .{1000}}";
        assert!(limited(&one.repeat(4), 4000).is_ok());
        assert!(matches!(
            limited(&one.repeat(5), 4000),
            Err(ExprError::TooLarge)
        ));
        // So do files.
        let file = TempFile::new("limit", &[b'z'; 1500]);
        let reference = format!("\\{{<{}>}}", file.path());
        assert!(limited(&reference.repeat(2), 3000).is_ok());
        assert!(matches!(
            limited(&reference.repeat(3), 3000),
            Err(ExprError::TooLarge)
        ));
        assert!(matches!(
            limited(&reference, 1000),
            Err(ExprError::TooLarge)
        ));
        // So do the longest renderings of dynamic parts.
        assert!(limited(r"\{re .{1000}}", 1000).is_ok());
        assert!(matches!(
            limited(r"\{re .{1000}x}", 1000),
            Err(ExprError::TooLarge)
        ));
        assert!(matches!(
            limited("x".repeat(11).as_str(), 10),
            Err(ExprError::TooLarge)
        ));
        // Regex text is bounded too.
        let big = format!("\\{{re {}}}", "a".repeat(4000));
        assert!(Template::parse(big.repeat(200).as_bytes(), false, &mut Rand32::new(1)).is_ok());
        assert!(matches!(fail(&big.repeat(300)), ExprError::Syntax { .. }));
        // And with the real limit.
        let dynamic = r"\{re (.{1000}){1000}}".repeat(200);
        assert!(matches!(fail(&dynamic), ExprError::TooLarge));
    }

    /// Parses `input` and renders it on both sides, checking the lengths.
    fn exercise(input: &[u8], unescape: bool, rng: &mut Rand32) -> bool {
        let Ok(t) = Template::parse(input, unescape, rng) else {
            return false;
        };
        for client_side in [false, true] {
            let lengths = t.lengths(client_side);
            assert!(lengths.min <= lengths.max && lengths.max <= MAX_TEMPLATE_LEN);
            let uid = u64::from(rng.rand_u32()) << rng.rand_range(0..33);
            let ptr = u64::from(rng.rand_u32()) << rng.rand_range(0..33);
            let mut out = Vec::new();
            let mut markers = Vec::new();
            let mut ctx = RenderCtx {
                uid,
                ptr,
                rng: &mut *rng,
                client_side,
            };
            t.render(&mut ctx, &mut out, &mut markers);
            assert!(
                out.len() >= lengths.min && out.len() <= lengths.max,
                "{:?}: {} not in {lengths:?}",
                String::from_utf8_lossy(input),
                out.len()
            );
            for &at in &markers {
                assert_eq!(out.get(at..at + 13), Some(MARKER_PREFIX));
                stamp_marker(&mut out, at, u64::from(rng.rand_u32()));
            }
        }
        true
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rand32::new(11);
        for i in 0..20_000 {
            let len = rng.rand_range(0..48) as usize;
            let mut input: Vec<u8> = (0..len).map(|_| rng.rand_u32() as u8).collect();
            if i % 2 == 0 {
                input.splice(0..0, b"\\{".iter().copied());
            }
            exercise(&input, i % 3 == 0, &mut rng);
        }
    }

    #[test]
    fn random_tokens_never_panic() {
        const TOKENS: &[&str] = &[
            "\\{",
            "}",
            "{",
            "ws.",
            "ws",
            ".",
            "text",
            "ping",
            "close",
            "binary",
            "cont",
            "re ",
            "connection.",
            "uid",
            "ptr",
            "message.marker",
            "raw ",
            "global.re ",
            "\"",
            "\\\"",
            "<",
            ">",
            "%",
            " ",
            "0",
            "7",
            "12345678901234567890",
            "...",
            "rsv1",
            "rsv3",
            "[a-z]",
            "[",
            "]",
            "(",
            ")",
            "|",
            "*",
            "+",
            "{3}",
            "a",
            "\\",
            "\\\\",
            "/dev/null",
            "\n",
            "\\n",
            "\\x41",
            "é",
        ];
        let mut rng = Rand32::new(12);
        let mut parsed = 0;
        for i in 0..20_000 {
            let count = rng.rand_range(0..20) as usize;
            let mut input = Vec::new();
            for _ in 0..count {
                let token = TOKENS[rng.rand_range(0..TOKENS.len() as u32) as usize];
                input.extend_from_slice(token.as_bytes());
            }
            if exercise(&input, i % 2 == 0, &mut rng) && input.windows(2).any(|w| w == b"\\{") {
                parsed += 1;
            }
        }
        assert!(parsed > 100, "only {parsed} inputs with expressions parsed");
    }

    #[test]
    fn mutated_expressions_never_panic() {
        const FRAGMENTS: &[&str] = &[
            "text ",
            r"\\{",
            "}",
            r"\{connection.uid}",
            r"\{connection.uid % 10}",
            r"\{ connection . ptr }",
            r"\{connection.ptr%7}",
            r"\{re [a-z]{2,5}}",
            r"\{connection.re (ab|cd)+}",
            r"\{global.re x?y*}",
            r"\{message.marker}",
            r#"\{ws.text "hi"}"#,
            r#"\{ws.binary "a" "b" rsv1 ...}"#,
            r"\{ws.ping}",
            r"\{ws.close </dev/null> rsv2}",
            r#"\{raw "r\n"}"#,
            r"\{raw {re .}}",
            r"\{raw {raw {connection.uid % 3}}}",
            r"\{</dev/null>}",
            r"\n\t\x41",
        ];
        let mut rng = Rand32::new(13);
        let mut parsed = 0;
        for i in 0..20_000 {
            let count = 1 + rng.rand_range(0..4) as usize;
            let mut input = Vec::new();
            for _ in 0..count {
                let fragment = FRAGMENTS[rng.rand_range(0..FRAGMENTS.len() as u32) as usize];
                input.extend_from_slice(fragment.as_bytes());
            }
            for _ in 0..rng.rand_range(0..3) {
                let at = rng.rand_range(0..input.len() as u32 + 1) as usize;
                match rng.rand_range(0..3) {
                    0 if at < input.len() => {
                        input.remove(at);
                    }
                    1 => {
                        const META: &[u8] = br#"{}\"% .<>[]()*+|0123456789"#;
                        input.insert(at, META[rng.rand_range(0..META.len() as u32) as usize]);
                    }
                    _ => input.insert(at, rng.rand_u32() as u8),
                }
            }
            if exercise(&input, i % 2 == 0, &mut rng) {
                parsed += 1;
            }
        }
        assert!(parsed > 5_000, "only {parsed} inputs parsed");
    }

    /// Parses `text` and frames it as `--ws` does.
    fn framed(text: &str) -> Template {
        ws_auto_frame(&parse(text, false))
    }

    /// The frames in `data` (as sent by the given side): (opcode, payload)
    /// of each, checked by the WebSocket parser.
    fn frames_in(data: &[u8], client_side: bool) -> Vec<(u8, Vec<u8>)> {
        use crate::proto::ws::{FrameEvent, FrameReader};
        let mut reader = FrameReader::new(client_side);
        let mut frames = Vec::new();
        let mut payload = Vec::new();
        reader.feed(&mut data.to_vec(), &mut |event| match event {
            FrameEvent::Data(d) => payload.extend_from_slice(d),
            FrameEvent::FrameEnd { opcode } => frames.push((opcode, std::mem::take(&mut payload))),
            FrameEvent::Error(e) => panic!("{e} in {data:02x?}"),
            _ => {}
        });
        assert!(payload.is_empty(), "incomplete frame in {data:02x?}");
        frames
    }

    #[test]
    fn auto_framing_spec_examples() {
        let t = framed(r#"A\{ws.text "hi"}B"#);
        assert_eq!(render(&t), b"\x81\x01A\x81\x02hi\x81\x01B");
        let t = framed(r#"A\{raw "hi"}B"#);
        assert_eq!(render(&t), b"\x81\x01Ahi\x81\x01B");
        assert_eq!(t.scope(), Scope::Static);
        // Client side: mask bit and a 4-byte key on every frame.
        let client = render_with(&t, 1, 1, true, 5);
        assert_eq!(client.len(), 6 + 1 + 2 + 6 + 1);
        assert_eq!(client[..2], [0x81, 0x81]);
        assert_eq!(
            client[2..6]
                .iter()
                .zip(&client[6..7])
                .map(|(k, b)| k ^ b)
                .collect::<Vec<_>>(),
            b"A"
        );
        assert_eq!(&client[7..9], b"hi");
        assert_eq!(client[9..11], [0x81, 0x81]);
        assert_eq!(client[11] ^ client[15], b'B');
        let t = framed(r#"A\{ws.text "hi"}B"#);
        let client = render_with(&t, 1, 1, true, 5);
        assert_eq!(
            frames_in(&client, true),
            vec![(1, b"A".to_vec()), (1, b"hi".to_vec()), (1, b"B".to_vec())]
        );
        assert_eq!(
            t.lengths(true),
            Lengths {
                min: 22,
                max: 22,
                avg: 22
            }
        );
        assert_eq!(t.lengths(false).max, 10);
        // A plain snippet is one frame; with a first message of "ABC" the
        // client sends 6 + 3 bytes (spec §7.4).
        let t = framed("ABC");
        assert_eq!(t.lengths(true).min, 9);
        assert_eq!(render_with(&t, 1, 1, true, 1).len(), 9);
        assert_eq!(render(&t), b"\x81\x03ABC");
        // Only explicit parts: no empty text frames around them.
        assert_eq!(render(&framed(r#"\{ws.ping "p"}"#)), b"\x89\x01p");
        assert_eq!(render(&framed(r#"\{raw "r"}\{raw "s"}"#)), b"rs");
        // An empty snippet is one empty frame.
        let t = ws_auto_frame(&parse("", false));
        assert_eq!(render(&t), b"\x81\x00");
        assert_eq!(render_with(&t, 1, 1, true, 1).len(), 6);
        // Framing twice changes nothing.
        let t = framed(r#"x\{connection.uid}\{raw "r"}\{re a+}\{ws.pong}y"#);
        assert_eq!(ws_auto_frame(&t), t);
    }

    #[test]
    fn text_frames_with_dynamic_parts() {
        let t = framed(r"id=\{connection.uid}!");
        assert_eq!(
            t.pieces,
            vec![Piece::TextFrame(vec![
                Piece::Bytes(b"id=".to_vec()),
                Piece::ConnUid { modulo: None },
                Piece::Bytes(b"!".to_vec()),
            ])]
        );
        assert_eq!(t.scope(), Scope::Connection);
        assert_eq!(render_with(&t, 12345, 0, false, 1), b"\x81\x09id=12345!");
        assert_eq!(
            t.lengths(false),
            Lengths {
                min: 7,
                max: 26,
                avg: 11
            }
        );
        assert_eq!(
            t.lengths(true),
            Lengths {
                min: 11,
                max: 30,
                avg: 15
            }
        );
        let a = render_with(&t, 12345, 0, true, 1);
        let b = render_with(&t, 12345, 0, true, 2);
        assert_eq!(a[..2], [0x81, 0x89]);
        assert_ne!(a[2..6], b[2..6], "random masking keys");
        assert_ne!(a[2..6], [0; 4]);
        for out in [a, b] {
            assert_eq!(frames_in(&out, true), vec![(1, b"id=12345!".to_vec())]);
        }
        // Text around an explicit frame, with per-message parts.
        let t = framed(r#"\{re [a-c]{3}}\{ws.binary "B"}\{connection.ptr}"#);
        assert_eq!(t.scope(), Scope::Message);
        let out = render_with(&t, 1, 0xabc, true, 3);
        let frames = frames_in(&out, true);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].1.len(), 3);
        assert_eq!(frames[1], (2, b"B".to_vec()));
        assert_eq!(frames[2], (1, b"0xabc".to_vec()));
    }

    #[test]
    fn text_frame_headers_follow_the_rendered_length() {
        // Payloads of 120..=130 bytes straddle the 125-byte limit of the short form.
        let t = framed(r"<\{re x{88,98}}\{message.marker}>");
        let lengths = t.lengths(true);
        assert_eq!(lengths.min, 6 + 120);
        assert_eq!(lengths.max, 8 + 130);
        let mut seen = std::collections::HashSet::new();
        for seed in 0..200 {
            for client_side in [false, true] {
                let mut rng = Rand32::new(seed);
                let mut ctx = RenderCtx {
                    uid: 1,
                    ptr: 1,
                    rng: &mut rng,
                    client_side,
                };
                let mut out = b"before".to_vec();
                let mut markers = Vec::new();
                t.render(&mut ctx, &mut out, &mut markers);
                let l = t.lengths(client_side);
                assert!((l.min..=l.max).contains(&(out.len() - 6)));
                assert_eq!(markers.len(), 1);
                let at = markers[0];
                assert_eq!(out.get(at..at + 13), Some(MARKER_PREFIX));
                stamp_marker(&mut out, at, 0x1234);
                assert_eq!(&out[at + 13..at + 30], b"0000000000001234.");
                assert_eq!(out[at + 30], b'>');
                if client_side {
                    // A frame with a marker has the zero key.
                    let key_at = if out[7] & 0x7f == 126 { 10 } else { 8 };
                    assert_eq!(out[key_at..key_at + 4], [0; 4]);
                }
                let frames = frames_in(&out[6..], client_side);
                assert_eq!(frames.len(), 1);
                seen.insert(frames[0].1.len() > 125);
            }
        }
        assert_eq!(seen.len(), 2, "both header forms were exercised");

        // A 64-bit length.
        let t = ws_auto_frame(&Template {
            pieces: vec![
                Piece::Bytes(vec![b'z'; 70_000]),
                Piece::ConnUid { modulo: None },
            ],
        });
        let out = render_with(&t, 42, 0, false, 1);
        assert_eq!(out[..10], [0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x72]);
        assert_eq!(out.len(), 10 + 70_002);
        assert_eq!(&out[out.len() - 2..], b"42");
        let out = render_with(&t, 42, 0, true, 1);
        assert_eq!(out.len(), 14 + 70_002);
        assert_eq!(frames_in(&out, true)[0].1.len(), 70_002);
        assert_eq!(t.lengths(true).min, 14 + 70_001);
    }

    #[test]
    fn text_frame_masks_markers_only_with_a_zero_key() {
        let t = framed(r"a\{message.marker}b");
        let out = render_with(&t, 1, 1, true, 1);
        assert_eq!(out[..6], [0x81, 0x80 | 32, 0, 0, 0, 0]);
        assert_eq!(&out[6..7], b"a");
        assert_eq!(&out[7..20], MARKER_PREFIX);
        // The marker's frame only: the next snippet's frame is masked.
        let t = Template {
            pieces: [
                framed(r"\{message.marker}").pieces,
                framed(r"\{re q{40}}").pieces,
            ]
            .concat(),
        };
        let out = render_with(&t, 1, 1, true, 1);
        assert_eq!(out[2..6], [0; 4]);
        let second = 6 + MARKER_LEN;
        assert_ne!(out[second + 2..second + 6], [0; 4]);
        assert_eq!(frames_in(&out, true)[1], (1, vec![b'q'; 40]));
    }

    #[test]
    fn auto_framed_mutations_stay_well_formed() {
        const FRAGMENTS: &[&str] = &[
            "text ",
            "}",
            r"\{connection.uid}",
            r"\{connection.uid % 10}",
            r"\{connection.ptr}",
            r"\{re [a-z]{2,5}}",
            r"\{re x{100,140}}",
            r"\{connection.re (ab|cd)+}",
            r"\{global.re x?y*}",
            r"\{message.marker}",
            r#"\{ws.text "hi"}"#,
            r"\{ws.ping}",
            r#"\{raw "r\n"}"#,
            r"\{raw {re .}}",
            r"\{raw {message.marker}}",
        ];
        let mut rng = Rand32::new(21);
        for _ in 0..5_000 {
            let count = rng.rand_range(0..6) as usize;
            let mut input = Vec::new();
            for _ in 0..count {
                let fragment = FRAGMENTS[rng.rand_range(0..FRAGMENTS.len() as u32) as usize];
                input.extend_from_slice(fragment.as_bytes());
            }
            let Ok(t) = Template::parse(&input, false, &mut rng) else {
                continue;
            };
            let t = ws_auto_frame(&t);
            let unframed = t.pieces.iter().any(|p| matches!(p, Piece::Raw(_)));
            for client_side in [false, true] {
                let lengths = t.lengths(client_side);
                let mut out = Vec::new();
                let mut markers = Vec::new();
                let mut ctx = RenderCtx {
                    uid: u64::from(rng.rand_u32()),
                    ptr: u64::from(rng.rand_u32()),
                    rng: &mut rng,
                    client_side,
                };
                t.render(&mut ctx, &mut out, &mut markers);
                assert!((lengths.min..=lengths.max).contains(&out.len()));
                for &at in &markers {
                    assert_eq!(out.get(at..at + 13), Some(MARKER_PREFIX));
                }
                if !unframed {
                    assert_eq!(frames_in(&out, client_side).len(), t.pieces.len());
                }
            }
        }
    }
}
