//! Reading message text into pieces. All the work that can fail (syntax,
//! files, regexes, size limits) and all that is done once per run (files
//! read, `global.re` drawn) happens here, so that rendering cannot fail.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;

use oorandom::Rand32;

use super::pieces::{
    ExprError, Piece, Template, MAX_FILE_LEN, MAX_RAW_DEPTH, MAX_REGEX_TEXT, MAX_TEMPLATE_LEN,
};
use crate::content::escape::unescape;
use crate::content::regexgen::{printable, Regex};

/// How much of an expression an error message quotes.
const QUOTE_LIMIT: usize = 120;

/// Appends `piece`, merging neighbouring bytes and dropping empty ones.
fn push_piece(pieces: &mut Vec<Piece>, piece: Piece) {
    match (pieces.last_mut(), piece) {
        (_, Piece::Bytes(bytes)) if bytes.is_empty() => {}
        (Some(Piece::Bytes(prev)), Piece::Bytes(bytes)) => prev.extend_from_slice(&bytes),
        (_, piece) => pieces.push(piece),
    }
}

impl Template {
    /// Parses message text. With `unescape` (`-e`), literal runs get the
    /// `-e` transform; quoted strings inside `\{…}` always do. Files are
    /// read and `global.re` is drawn (from `global_rng`) here.
    pub fn parse(
        data: &[u8],
        unescape: bool,
        global_rng: &mut Rand32,
    ) -> Result<Template, ExprError> {
        Template::parse_limited(data, unescape, global_rng, MAX_TEMPLATE_LEN)
    }

    /// [`Template::parse`] with a size limit of `max_total` bytes.
    pub(super) fn parse_limited(
        data: &[u8],
        unescape: bool,
        global_rng: &mut Rand32,
        max_total: usize,
    ) -> Result<Template, ExprError> {
        let mut parser = Parser {
            data,
            pos: 0,
            start: 0,
            rng: global_rng,
            produced: 0,
            max_total,
            regex_text: 0,
        };
        let mut pieces = Vec::new();
        let literal = |from: usize, to: usize| {
            let run = data.get(from..to).unwrap_or(&[]);
            if unescape {
                Piece::Bytes(crate::content::escape::unescape(run))
            } else {
                Piece::Bytes(run.to_vec())
            }
        };
        let mut literal_start = 0;
        let mut i = 0;
        while let Some(offset) = data
            .get(i..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
        {
            i += offset;
            match data.get(i + 1) {
                Some(b'{') => {
                    push_piece(&mut pieces, literal(literal_start, i));
                    let piece = parser.expression(i)?;
                    push_piece(&mut pieces, piece);
                    i = parser.pos;
                    literal_start = i;
                }
                Some(b'\\') => i += 2,
                _ => i += 1,
            }
        }
        push_piece(&mut pieces, literal(literal_start, data.len()));
        let template = Template { pieces };
        if template.lengths(true).max > max_total {
            return Err(ExprError::TooLarge);
        }
        Ok(template)
    }
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The text of an `std::io::Error` without the "(os error N)" suffix.
fn io_reason(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(cut) => text.get(..cut).unwrap_or(&text).to_string(),
        None => text,
    }
}

struct Parser<'d, 'r> {
    data: &'d [u8],
    pos: usize,
    /// Where the current top-level `\{` is (for error messages).
    start: usize,
    rng: &'r mut Rand32,
    /// Bytes brought in by files and `global.re` so far.
    produced: usize,
    /// The limit for `produced` and for the template's length.
    max_total: usize,
    /// Regex text parsed so far, for [`MAX_REGEX_TEXT`].
    regex_text: usize,
}

impl Parser<'_, '_> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
    }

    /// The current top-level expression, from `\{` to its `}` (or the end),
    /// in printable form.
    fn text(&self) -> String {
        let rest = self.data.get(self.start..).unwrap_or(&[]);
        let mut i = 2;
        let mut depth = 1usize;
        let mut end = rest.len();
        while let Some(&b) = rest.get(i) {
            match b {
                b'\\' => i += 1,
                b'"' => {
                    i += 1;
                    while let Some(&c) = rest.get(i) {
                        if c == b'"' {
                            break;
                        }
                        if c == b'\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        printable(rest.get(..end).unwrap_or(rest), QUOTE_LIMIT)
    }

    fn unterminated(&self) -> ExprError {
        ExprError::Unterminated { text: self.text() }
    }

    fn unknown(&self) -> ExprError {
        if self.peek().is_none() {
            return self.unterminated();
        }
        ExprError::Unknown { text: self.text() }
    }

    fn syntax(&self, problem: impl Into<String>) -> ExprError {
        ExprError::Syntax {
            problem: problem.into(),
            text: self.text(),
        }
    }

    /// "unexpected …" for whatever is at the current position.
    fn unexpected(&self) -> ExprError {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        let len = rest.iter().take_while(|&&b| is_word(b)).count().max(1);
        let token = printable(rest.get(..len).unwrap_or(rest), 24);
        self.syntax(format!("unexpected \"{token}\""))
    }

    /// A run of word characters (possibly empty).
    fn word(&mut self) -> &[u8] {
        let begin = self.pos;
        while self.peek().is_some_and(is_word) {
            self.pos += 1;
        }
        self.data.get(begin..self.pos).unwrap_or(&[])
    }

    /// One complete expression starting at the `\{` at `start`.
    fn expression(&mut self, start: usize) -> Result<Piece, ExprError> {
        self.start = start;
        self.pos = start + 2;
        let piece = self.body(0)?;
        self.close()?;
        Ok(piece)
    }

    /// The closing `}`.
    fn close(&mut self) -> Result<(), ExprError> {
        self.skip_blanks();
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                Ok(())
            }
            None => Err(self.unterminated()),
            Some(_) => Err(self.unexpected()),
        }
    }

    /// A `.` between keywords.
    fn dot(&mut self) -> Result<(), ExprError> {
        self.skip_blanks();
        match self.peek() {
            Some(b'.') => {
                self.pos += 1;
                self.skip_blanks();
                Ok(())
            }
            None => Err(self.unterminated()),
            Some(_) => Err(self.unknown()),
        }
    }

    /// The inside of `\{…}` (or of `raw {…}` at `depth` > 0).
    fn body(&mut self, depth: usize) -> Result<Piece, ExprError> {
        self.skip_blanks();
        match self.peek() {
            None => return Err(self.unterminated()),
            Some(b'<') => return Ok(Piece::Bytes(self.file()?)),
            Some(b'}') => return Err(self.syntax("empty expression")),
            Some(_) => {}
        }
        match self.word() {
            b"raw" => self.raw(depth),
            b"global" => {
                self.dot()?;
                if self.word() != b"re" {
                    return Err(self.unknown());
                }
                let re = self.regex()?;
                if self.produced.saturating_add(re.max_len()) > self.max_total {
                    return Err(ExprError::TooLarge);
                }
                let mut out = Vec::new();
                re.generate(self.rng, &mut out);
                self.produced = self.produced.saturating_add(out.len());
                Ok(Piece::Bytes(out))
            }
            b"connection" => {
                self.dot()?;
                match self.word() {
                    b"uid" => Ok(Piece::ConnUid {
                        modulo: self.modulo()?,
                    }),
                    b"ptr" => Ok(Piece::ConnPtr {
                        modulo: self.modulo()?,
                    }),
                    b"re" => Ok(Piece::ConnRe(self.regex()?)),
                    _ => Err(self.unknown()),
                }
            }
            b"message" => {
                self.dot()?;
                if self.word() != b"marker" {
                    return Err(self.unknown());
                }
                self.skip_blanks();
                if self.peek() == Some(b'%') {
                    return Err(self.syntax("\"%\" cannot apply to message.marker"));
                }
                Ok(Piece::MessageMarker)
            }
            b"re" => Ok(Piece::MsgRe(self.regex()?)),
            b"ws" if depth > 0 => Err(self.syntax("a WebSocket frame cannot be inside raw")),
            b"ws" => self.ws_frame(),
            _ => Err(self.unknown()),
        }
    }

    /// `raw "…"`, `raw <file>` or `raw {expr}`, after the `raw`.
    fn raw(&mut self, depth: usize) -> Result<Piece, ExprError> {
        self.skip_blanks();
        match self.peek() {
            Some(b'"') => Ok(Piece::Raw(vec![Piece::Bytes(self.quoted()?)])),
            Some(b'<') => Ok(Piece::Raw(vec![Piece::Bytes(self.file()?)])),
            Some(b'{') => {
                if depth + 1 > MAX_RAW_DEPTH {
                    return Err(self.syntax(format!("\"raw\" nested deeper than {MAX_RAW_DEPTH}")));
                }
                self.pos += 1;
                let inner = self.body(depth + 1)?;
                self.close()?;
                Ok(Piece::Raw(vec![inner]))
            }
            None => Err(self.unterminated()),
            Some(_) => Err(self.syntax("\"raw\" needs a quoted string, a <file> or {…}")),
        }
    }

    /// An optional `% n` after a numeric expression.
    fn modulo(&mut self) -> Result<Option<u64>, ExprError> {
        self.skip_blanks();
        if self.peek() != Some(b'%') {
            return Ok(None);
        }
        self.pos += 1;
        self.skip_blanks();
        let mut value: Option<u64> = None;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            self.pos += 1;
            let next = value
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')));
            match next {
                Some(v) => value = Some(v),
                None => return Err(self.syntax("modulus too large")),
            }
        }
        match value {
            None => Err(self.syntax("\"%\" needs a whole number")),
            Some(0) => Err(ExprError::ModuloByZero { text: self.text() }),
            Some(v) => {
                self.skip_blanks();
                if self.peek() == Some(b'%') {
                    return Err(self.syntax("only one \"%\" is supported"));
                }
                Ok(Some(v))
            }
        }
    }

    /// A regex: from the first non-blank up to the closing `}`.
    fn regex(&mut self) -> Result<Regex, ExprError> {
        self.skip_blanks();
        let begin = self.pos;
        let mut depth = 0usize;
        loop {
            match self.peek() {
                None => return Err(self.unterminated()),
                Some(b'\\') => self.pos += 2,
                Some(b'[') => {
                    self.pos += 1;
                    loop {
                        match self.peek() {
                            None => return Err(self.unterminated()),
                            Some(b'\\') => self.pos += 2,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            Some(_) => self.pos += 1,
                        }
                    }
                }
                Some(b'{') => {
                    depth += 1;
                    self.pos += 1;
                }
                Some(b'}') if depth == 0 => break,
                Some(b'}') => {
                    depth -= 1;
                    self.pos += 1;
                }
                Some(_) => self.pos += 1,
            }
        }
        let text = self.data.get(begin..self.pos).unwrap_or(&[]);
        if text.is_empty() {
            return Err(self.syntax("missing regex"));
        }
        self.regex_text = self.regex_text.saturating_add(text.len() + 64);
        if self.regex_text > MAX_REGEX_TEXT {
            return Err(self.syntax(format!(
                "more than {} KiB of regex text in one message",
                MAX_REGEX_TEXT >> 10
            )));
        }
        Regex::parse_bytes(text).map_err(|error| ExprError::Regex { error })
    }

    /// `ws.OP payload* flag*`, after the `ws`.
    fn ws_frame(&mut self) -> Result<Piece, ExprError> {
        self.dot()?;
        let opcode = match self.word() {
            b"continuation" | b"cont" => 0x0,
            b"text" => 0x1,
            b"binary" => 0x2,
            b"close" => 0x8,
            b"ping" => 0x9,
            b"pong" => 0xa,
            b"" => return Err(self.unknown()),
            other => {
                let name = printable(other, 24);
                return Err(self.syntax(format!("unknown WebSocket frame type \"{name}\"")));
            }
        };
        let mut payload = Vec::new();
        let mut fin = true;
        let mut rsv = 0u8;
        let mut flags_seen = false;
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Err(self.unterminated()),
                Some(b'}') => break,
                Some(b'"' | b'<') if flags_seen => {
                    return Err(self.syntax("frame payload after flags"));
                }
                Some(b'"') => {
                    let more = self.quoted()?;
                    payload.extend_from_slice(&more);
                }
                Some(b'<') => {
                    let more = self.file()?;
                    payload.extend_from_slice(&more);
                }
                Some(b'.') => {
                    let end = self.pos.saturating_add(3);
                    if self.data.get(self.pos..end) != Some(b"...") {
                        return Err(self.unexpected());
                    }
                    self.pos = end;
                    fin = false;
                    flags_seen = true;
                }
                Some(_) => {
                    let at = self.pos;
                    rsv |= match self.word() {
                        b"rsv1" => 0x40,
                        b"rsv2" => 0x20,
                        b"rsv3" => 0x10,
                        _ => {
                            self.pos = at;
                            return Err(self.unexpected());
                        }
                    };
                    flags_seen = true;
                }
            }
        }
        if opcode >= 0x8 && payload.len() > 125 {
            return Err(self.syntax(format!(
                "control frame payload of {} bytes (more than 125)",
                payload.len()
            )));
        }
        Ok(Piece::WsFrame {
            fin,
            rsv,
            opcode,
            payload,
        })
    }

    /// A quoted string at the current `"`, unescaped.
    fn quoted(&mut self) -> Result<Vec<u8>, ExprError> {
        self.pos += 1;
        let begin = self.pos;
        loop {
            match self.peek() {
                None => return Err(self.unterminated()),
                Some(b'\\') => self.pos += 2,
                Some(b'"') => break,
                Some(_) => self.pos += 1,
            }
        }
        let inside = self.data.get(begin..self.pos).unwrap_or(&[]);
        self.pos += 1;
        Ok(unescape(inside))
    }

    /// `<name>` at the current `<`: the file's contents.
    fn file(&mut self) -> Result<Vec<u8>, ExprError> {
        self.pos += 1;
        self.skip_blanks();
        let name = if self.peek() == Some(b'"') {
            self.quoted()?
        } else {
            let begin = self.pos;
            while self
                .peek()
                .is_some_and(|b| !is_blank(b) && !b"[]\"'{}<>()".contains(&b))
            {
                self.pos += 1;
            }
            self.data.get(begin..self.pos).unwrap_or(&[]).to_vec()
        };
        self.skip_blanks();
        match self.peek() {
            None => return Err(self.unterminated()),
            Some(b'>') if !name.is_empty() => self.pos += 1,
            Some(b'>') => return Err(self.syntax("missing file name")),
            Some(_) => return Err(self.syntax("bad file name")),
        }
        self.read_file(&name)
    }

    fn read_file(&mut self, name: &[u8]) -> Result<Vec<u8>, ExprError> {
        let path = printable(name, QUOTE_LIMIT);
        let fail = |error: io::Error| ExprError::File {
            path: path.clone(),
            reason: io_reason(&error),
        };
        let room = self.max_total.saturating_sub(self.produced);
        let limit = MAX_FILE_LEN.min(room);
        let file = File::open(OsStr::from_bytes(name)).map_err(fail)?;
        let mut contents = Vec::new();
        file.take(limit as u64 + 1)
            .read_to_end(&mut contents)
            .map_err(fail)?;
        if contents.len() > limit {
            return Err(if limit == MAX_FILE_LEN {
                ExprError::FileTooLarge { path }
            } else {
                ExprError::TooLarge
            });
        }
        self.produced = self.produced.saturating_add(contents.len());
        Ok(contents)
    }
}
