//! Random strings from a small regular-expression language (the generator
//! behind `\{re …}`, `\{connection.re …}` and `\{global.re …}`).
//!
//! This is a generator, not a matcher: [`Regex::generate`] appends one
//! random string that the pattern would match.
//!
//! Supported syntax:
//!
//! * literal characters (a multi-byte UTF-8 character is one atom);
//! * escapes: `\n \t \r \f \v \0`, `\xH` / `\xHH`, `\d \w \s` and their
//!   complements `\D \W \S` (as classes), and a backslash before any ASCII
//!   punctuation or space stands for that character (`\. \[ \\ \{ \}` …);
//! * `.`: any printable ASCII character (0x20–0x7E);
//! * classes `[…]` with ranges `a-z`, escapes, a literal `-` at the start
//!   or end, and a leading `^` for the complement within printable ASCII;
//! * groups `( … )` and alternation `|` (an empty alternative is allowed);
//! * postfix operators binding to the preceding atom: `?` (0..1),
//!   `*` (0..16), `+` (1..16), `{n}`, `{n,}` (n..n+16), `{n,m}` (bounds
//!   swapped when m < n); whitespace is allowed inside the braces.
//!
//! Rejected: two postfix operators in a row (`a**`, `a+?`, `a{2}{3}`), an
//! operator with nothing before it, and anything beyond the limits below.
//! A stray `]` or `}` is a literal.
//!
//! The parser is our own rather than `regex-syntax` (or `rand_regex`, which
//! is built on it): that parser reads `^` and `$` as anchors where
//! tcpkali's patterns mean the characters, refuses `\x4`, accepts `a+?`
//! and `a**`, gives `.` and `[^…]` every byte rather than printable ASCII,
//! and takes `&str` where message bytes need not be UTF-8; adapting it
//! would be a second parser's worth of checks around the first.

use std::fmt;

use oorandom::Rand32;

/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 4096;
/// The largest repeat count accepted in `{n}` / `{n,m}`.
pub const MAX_REPEAT: u32 = 1000;
/// The deepest nesting of groups accepted.
pub const MAX_DEPTH: usize = 16;
/// The longest string a pattern may generate.
pub const MAX_GENERATED_LEN: usize = 1 << 20;
/// The most generation steps (node visits) one string may take, so that
/// patterns generating little text with a lot of work (`((){1000}){1000}`)
/// cannot stall the caller.
pub const MAX_STEPS: u64 = 1 << 22;

/// `*` and `+` repeat at most this many times; `{n,}` means n..n+this.
const OPEN_REPEAT: u32 = 16;

/// How much of a pattern an error message quotes.
const QUOTE_LIMIT: usize = 120;

/// A parsed pattern, ready to generate strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Regex {
    alternatives: Vec<Vec<Node>>,
    min: usize,
    max: usize,
    avg: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// Literal bytes.
    Lit(Vec<u8>),
    /// One byte out of a non-empty set (sorted, no duplicates).
    Class(Vec<u8>),
    /// One of several sequences.
    Group(Vec<Vec<Node>>),
    /// The node `min..=max` times.
    Repeat { node: Box<Node>, min: u32, max: u32 },
}

/// Why a pattern was rejected. Every variant carries the pattern, already
/// made printable (control bytes escaped, long patterns shortened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegexError {
    /// Longer than [`MAX_PATTERN_LEN`].
    TooLong { regex: String },
    /// A `(` without its `)`.
    UnclosedGroup { regex: String },
    /// A `)` without its `(`.
    UnopenedGroup { regex: String },
    /// A `[` without its `]`.
    UnclosedClass { regex: String },
    /// `[]`.
    EmptyClass { regex: String },
    /// A `[^…]` that excludes every printable character.
    EmptyNegatedClass { regex: String },
    /// A range whose end comes before its start (`[z-a]`), or whose end is
    /// a class escape (`[a-\d]`).
    BadRange { regex: String, range: String },
    /// A non-ASCII character written inside `[…]` (use `\xHH`).
    NonAsciiInClass { regex: String },
    /// A postfix operator with nothing to apply to (`*a`, `(|+)`).
    NothingToRepeat { regex: String, op: char },
    /// A postfix operator right after another one (`a**`).
    DoubleRepeat { regex: String, op: char },
    /// A malformed `{…}` (`a{`, `a{x}`, `a{2,1x}`, `a{,3}`).
    BadBraces { regex: String },
    /// A `{n,m}` whose upper bound is below its lower one (`a{2,1}`).
    RepeatOutOfOrder { regex: String, low: u32, high: u32 },
    /// A repeat count above [`MAX_REPEAT`].
    RepeatTooLarge { regex: String },
    /// Groups nested deeper than [`MAX_DEPTH`].
    TooDeep { regex: String },
    /// A backslash at the end, `\x` without a hex digit, or an unknown
    /// letter or non-ASCII escape.
    BadEscape { regex: String, escape: String },
    /// Could generate more than [`MAX_GENERATED_LEN`] bytes.
    OutputTooLong { regex: String },
    /// Would take more than [`MAX_STEPS`] steps to generate.
    TooComplex { regex: String },
}

impl RegexError {
    /// The pattern, in printable form.
    pub fn regex(&self) -> &str {
        match self {
            RegexError::TooLong { regex }
            | RegexError::UnclosedGroup { regex }
            | RegexError::UnopenedGroup { regex }
            | RegexError::UnclosedClass { regex }
            | RegexError::EmptyClass { regex }
            | RegexError::EmptyNegatedClass { regex }
            | RegexError::BadRange { regex, .. }
            | RegexError::NonAsciiInClass { regex }
            | RegexError::NothingToRepeat { regex, .. }
            | RegexError::DoubleRepeat { regex, .. }
            | RegexError::BadBraces { regex }
            | RegexError::RepeatOutOfOrder { regex, .. }
            | RegexError::RepeatTooLarge { regex }
            | RegexError::TooDeep { regex }
            | RegexError::BadEscape { regex, .. }
            | RegexError::OutputTooLong { regex }
            | RegexError::TooComplex { regex } => regex,
        }
    }

    /// What is wrong, without the pattern (e.g. `unbalanced "("`).
    pub fn problem(&self) -> String {
        match self {
            RegexError::TooLong { .. } => {
                format!("pattern longer than {MAX_PATTERN_LEN} bytes")
            }
            RegexError::UnclosedGroup { .. } => "unbalanced \"(\"".to_string(),
            RegexError::UnopenedGroup { .. } => "unbalanced \")\"".to_string(),
            RegexError::UnclosedClass { .. } => "unbalanced \"[\"".to_string(),
            RegexError::EmptyClass { .. } => "empty character class".to_string(),
            RegexError::EmptyNegatedClass { .. } => {
                "negated character class excludes every printable character".to_string()
            }
            RegexError::BadRange { range, .. } => format!("bad range \"{range}\""),
            RegexError::NonAsciiInClass { .. } => {
                "non-ASCII character in a class (use \\xHH)".to_string()
            }
            RegexError::NothingToRepeat { op, .. } => {
                format!("\"{op}\" has nothing to repeat")
            }
            RegexError::DoubleRepeat { op, .. } => {
                format!("\"{op}\" follows another repetition operator")
            }
            RegexError::BadBraces { .. } => {
                "malformed \"{n}\", \"{n,}\" or \"{n,m}\" repetition".to_string()
            }
            RegexError::RepeatOutOfOrder { low, high, .. } => {
                format!("repetition \"{{{low},{high}}}\" has its bounds out of order")
            }
            RegexError::RepeatTooLarge { .. } => {
                format!("repeat count above {MAX_REPEAT}")
            }
            RegexError::TooDeep { .. } => {
                format!("groups nested deeper than {MAX_DEPTH}")
            }
            RegexError::BadEscape { escape, .. } => format!("bad escape \"{escape}\""),
            RegexError::OutputTooLong { .. } => format!(
                "could generate more than {} MiB",
                MAX_GENERATED_LEN / (1 << 20)
            ),
            RegexError::TooComplex { .. } => "too much repetition to generate".to_string(),
        }
    }
}

impl fmt::Display for RegexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in regex \"{}\"", self.problem(), self.regex())
    }
}

impl std::error::Error for RegexError {}

/// Renders bytes for a one-line message: valid UTF-8 stays as it is,
/// control characters and invalid bytes become `\n`, `\t`, `\xHH`; text
/// longer than `limit` characters is cut and ends in `...`.
pub fn printable(bytes: &[u8], limit: usize) -> String {
    let mut out = String::new();
    let mut shown = 0usize;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if shown >= limit {
                out.push_str("...");
                return out;
            }
            shown += 1;
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let mut units = [0u8; 4];
                    for b in c.encode_utf8(&mut units).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            if shown >= limit {
                out.push_str("...");
                return out;
            }
            shown += 1;
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A uniformly chosen index below `n` (0 when `n` is 0 or 1).
fn pick(rng: &mut Rand32, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let bound = u32::try_from(n).unwrap_or(u32::MAX);
    rng.rand_range(0..bound) as usize
}

impl Regex {
    /// Parses a pattern given as text.
    #[cfg(test)]
    pub fn parse(src: &str) -> Result<Regex, RegexError> {
        Regex::parse_bytes(src.as_bytes())
    }

    /// Parses a pattern given as bytes (it need not be UTF-8; invalid
    /// sequences are literal bytes).
    pub fn parse_bytes(src: &[u8]) -> Result<Regex, RegexError> {
        let fail = |kind: Kind| kind.into_error(src);
        if src.len() > MAX_PATTERN_LEN {
            return Err(fail(Kind::TooLong));
        }
        let mut parser = Parser { s: src, pos: 0 };
        let alternatives = parser.alternatives(0).map_err(fail)?;
        if parser.pos < src.len() {
            // Only an unmatched `)` stops the top-level alternatives early.
            return Err(fail(Kind::UnopenedGroup));
        }
        let size = alternatives_size(&alternatives);
        if size.max > MAX_GENERATED_LEN as u64 {
            return Err(fail(Kind::OutputTooLong));
        }
        if size.steps > MAX_STEPS {
            return Err(fail(Kind::TooComplex));
        }
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Ok(Regex {
            alternatives,
            min: to_usize(size.min),
            max: to_usize(size.max),
            avg: to_usize(size.avg),
        })
    }

    /// Appends one random string matching the pattern to `out`.
    pub fn generate(&self, rng: &mut Rand32, out: &mut Vec<u8>) {
        generate_alternatives(&self.alternatives, rng, out);
    }

    /// The shortest string the pattern generates.
    pub fn min_len(&self) -> usize {
        self.min
    }

    /// The longest string the pattern generates (at most
    /// [`MAX_GENERATED_LEN`]).
    pub fn max_len(&self) -> usize {
        self.max
    }

    /// The estimated average length: a repetition averages
    /// `avg(child) × (min + max) / 2`, a choice the mean of its branches
    /// (integer arithmetic).
    pub fn avg_len(&self) -> usize {
        self.avg
    }
}

fn generate_alternatives(alternatives: &[Vec<Node>], rng: &mut Rand32, out: &mut Vec<u8>) {
    let index = pick(rng, alternatives.len());
    if let Some(sequence) = alternatives.get(index) {
        for node in sequence {
            generate_node(node, rng, out);
        }
    }
}

fn generate_node(node: &Node, rng: &mut Rand32, out: &mut Vec<u8>) {
    match node {
        Node::Lit(bytes) => out.extend_from_slice(bytes),
        Node::Class(members) => {
            if let Some(&b) = members.get(pick(rng, members.len())) {
                out.push(b);
            }
        }
        Node::Group(alternatives) => generate_alternatives(alternatives, rng, out),
        Node::Repeat { node, min, max } => {
            let span = max.saturating_sub(*min) as usize + 1;
            let count = *min as usize + pick(rng, span);
            for _ in 0..count {
                generate_node(node, rng, out);
            }
        }
    }
}

/// Length bounds and the work needed to generate, saturating.
#[derive(Clone, Copy)]
struct Size {
    min: u64,
    max: u64,
    avg: u64,
    steps: u64,
}

fn sequence_size(sequence: &[Node]) -> Size {
    let mut total = Size {
        min: 0,
        max: 0,
        avg: 0,
        steps: 0,
    };
    for node in sequence {
        let s = node_size(node);
        total.min = total.min.saturating_add(s.min);
        total.max = total.max.saturating_add(s.max);
        total.avg = total.avg.saturating_add(s.avg);
        total.steps = total.steps.saturating_add(s.steps);
    }
    total
}

fn alternatives_size(alternatives: &[Vec<Node>]) -> Size {
    let mut min = u64::MAX;
    let mut max = 0u64;
    let mut avg_sum = 0u64;
    let mut steps = 0u64;
    for sequence in alternatives {
        let s = sequence_size(sequence);
        min = min.min(s.min);
        max = max.max(s.max);
        avg_sum = avg_sum.saturating_add(s.avg);
        steps = steps.max(s.steps);
    }
    let count = alternatives.len() as u64;
    if count == 0 {
        min = 0;
    }
    Size {
        min,
        max,
        avg: avg_sum.checked_div(count).unwrap_or(0),
        steps: steps.saturating_add(1),
    }
}

fn node_size(node: &Node) -> Size {
    match node {
        Node::Lit(bytes) => {
            let len = bytes.len() as u64;
            Size {
                min: len,
                max: len,
                avg: len,
                steps: 1,
            }
        }
        Node::Class(_) => Size {
            min: 1,
            max: 1,
            avg: 1,
            steps: 1,
        },
        Node::Group(alternatives) => alternatives_size(alternatives),
        Node::Repeat { node, min, max } => {
            let child = node_size(node);
            let (min, max) = (u64::from(*min), u64::from(*max));
            Size {
                min: child.min.saturating_mul(min),
                max: child.max.saturating_mul(max),
                avg: child.avg.saturating_mul(min + max) / 2,
                steps: child.steps.saturating_mul(max).saturating_add(1),
            }
        }
    }
}

/// An error before the pattern is attached.
enum Kind {
    TooLong,
    UnclosedGroup,
    UnopenedGroup,
    UnclosedClass,
    EmptyClass,
    EmptyNegatedClass,
    BadRange(String),
    NonAsciiInClass,
    NothingToRepeat(char),
    DoubleRepeat(char),
    BadBraces,
    RepeatOutOfOrder(u32, u32),
    RepeatTooLarge,
    TooDeep,
    BadEscape(String),
    OutputTooLong,
    TooComplex,
}

impl Kind {
    fn into_error(self, src: &[u8]) -> RegexError {
        let regex = printable(src, QUOTE_LIMIT);
        match self {
            Kind::TooLong => RegexError::TooLong { regex },
            Kind::UnclosedGroup => RegexError::UnclosedGroup { regex },
            Kind::UnopenedGroup => RegexError::UnopenedGroup { regex },
            Kind::UnclosedClass => RegexError::UnclosedClass { regex },
            Kind::EmptyClass => RegexError::EmptyClass { regex },
            Kind::EmptyNegatedClass => RegexError::EmptyNegatedClass { regex },
            Kind::BadRange(range) => RegexError::BadRange { regex, range },
            Kind::NonAsciiInClass => RegexError::NonAsciiInClass { regex },
            Kind::NothingToRepeat(op) => RegexError::NothingToRepeat { regex, op },
            Kind::DoubleRepeat(op) => RegexError::DoubleRepeat { regex, op },
            Kind::BadBraces => RegexError::BadBraces { regex },
            Kind::RepeatOutOfOrder(low, high) => RegexError::RepeatOutOfOrder { regex, low, high },
            Kind::RepeatTooLarge => RegexError::RepeatTooLarge { regex },
            Kind::TooDeep => RegexError::TooDeep { regex },
            Kind::BadEscape(escape) => RegexError::BadEscape { regex, escape },
            Kind::OutputTooLong => RegexError::OutputTooLong { regex },
            Kind::TooComplex => RegexError::TooComplex { regex },
        }
    }
}

/// A class escape: `\d \w \s \D \W \S`.
#[derive(Clone, Copy)]
enum Shorthand {
    Digit,
    Word,
    Space,
    NotDigit,
    NotWord,
    NotSpace,
}

fn is_printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

impl Shorthand {
    fn contains(self, b: u8) -> bool {
        let digit = b.is_ascii_digit();
        let word = b.is_ascii_alphanumeric() || b == b'_';
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
        match self {
            Shorthand::Digit => digit,
            Shorthand::Word => word,
            Shorthand::Space => space,
            Shorthand::NotDigit => is_printable(b) && !digit,
            Shorthand::NotWord => is_printable(b) && !word,
            Shorthand::NotSpace => is_printable(b) && !space,
        }
    }

    fn members(self) -> Vec<u8> {
        (0..=255u8).filter(|&b| self.contains(b)).collect()
    }
}

/// What a backslash escape stands for.
enum Escape {
    Byte(u8),
    Set(Shorthand),
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_postfix(b: u8) -> bool {
    matches!(b, b'?' | b'*' | b'+' | b'{')
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.s.get(self.pos.saturating_add(ahead)).copied()
    }

    /// `seq ('|' seq)*`; stops before a `)` or at the end.
    fn alternatives(&mut self, depth: usize) -> Result<Vec<Vec<Node>>, Kind> {
        let mut alternatives = vec![self.sequence(depth)?];
        while self.peek() == Some(b'|') {
            self.pos += 1;
            alternatives.push(self.sequence(depth)?);
        }
        Ok(alternatives)
    }

    /// Atoms with their postfix operators, up to `|`, `)` or the end.
    fn sequence(&mut self, depth: usize) -> Result<Vec<Node>, Kind> {
        let mut nodes: Vec<Node> = Vec::new();
        while let Some(b) = self.peek() {
            if b == b'|' || b == b')' {
                break;
            }
            if is_postfix(b) {
                return Err(Kind::NothingToRepeat(char::from(b)));
            }
            let atom = self.atom(depth)?;
            let node = match self.peek() {
                Some(op) if is_postfix(op) => {
                    let (min, max) = self.postfix()?;
                    if let Some(next) = self.peek().filter(|&n| is_postfix(n)) {
                        return Err(Kind::DoubleRepeat(char::from(next)));
                    }
                    Node::Repeat {
                        node: Box::new(atom),
                        min,
                        max,
                    }
                }
                _ => atom,
            };
            // Merge literal runs.
            match (nodes.last_mut(), node) {
                (Some(Node::Lit(prev)), Node::Lit(more)) => prev.extend_from_slice(&more),
                (_, node) => nodes.push(node),
            }
        }
        Ok(nodes)
    }

    /// One atom: a group, a class, `.`, an escape or a literal character.
    fn atom(&mut self, depth: usize) -> Result<Node, Kind> {
        let Some(b) = self.peek() else {
            return Err(Kind::NothingToRepeat('?'));
        };
        match b {
            b'(' => {
                if depth >= MAX_DEPTH {
                    return Err(Kind::TooDeep);
                }
                self.pos += 1;
                let alternatives = self.alternatives(depth + 1)?;
                if self.peek() != Some(b')') {
                    return Err(Kind::UnclosedGroup);
                }
                self.pos += 1;
                Ok(Node::Group(alternatives))
            }
            b'[' => {
                self.pos += 1;
                self.class()
            }
            b'.' => {
                self.pos += 1;
                Ok(Node::Class((0x20..=0x7e).collect()))
            }
            b'\\' => match self.escape()? {
                Escape::Byte(b) => Ok(Node::Lit(vec![b])),
                Escape::Set(set) => Ok(Node::Class(set.members())),
            },
            _ => {
                let len = match b {
                    0xc0..=0xdf => 2,
                    0xe0..=0xef => 3,
                    0xf0..=0xf7 => 4,
                    _ => 1,
                };
                let end = self.pos.saturating_add(len);
                let take = match self.s.get(self.pos..end) {
                    Some(bytes) if len > 1 && std::str::from_utf8(bytes).is_ok() => len,
                    _ => 1,
                };
                let end = self.pos + take;
                let bytes = self.s.get(self.pos..end).unwrap_or(&[]).to_vec();
                self.pos = end;
                Ok(Node::Lit(bytes))
            }
        }
    }

    /// A backslash escape, starting at the backslash.
    fn escape(&mut self) -> Result<Escape, Kind> {
        self.pos += 1;
        let Some(c) = self.peek() else {
            return Err(Kind::BadEscape("\\".to_string()));
        };
        self.pos += 1;
        let byte = match c {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'f' => 0x0c,
            b'v' => 0x0b,
            b'0' => 0,
            b'd' => return Ok(Escape::Set(Shorthand::Digit)),
            b'w' => return Ok(Escape::Set(Shorthand::Word)),
            b's' => return Ok(Escape::Set(Shorthand::Space)),
            b'D' => return Ok(Escape::Set(Shorthand::NotDigit)),
            b'W' => return Ok(Escape::Set(Shorthand::NotWord)),
            b'S' => return Ok(Escape::Set(Shorthand::NotSpace)),
            b'x' => {
                let mut value = 0u8;
                let mut digits = 0;
                while digits < 2 {
                    match self.peek().and_then(hex_digit) {
                        Some(d) => {
                            value = value * 16 + d;
                            digits += 1;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    return Err(Kind::BadEscape("\\x".to_string()));
                }
                value
            }
            c if c.is_ascii_punctuation() || c == b' ' => c,
            c => {
                let shown = printable(&[c], 4);
                return Err(Kind::BadEscape(format!("\\{shown}")));
            }
        };
        Ok(Escape::Byte(byte))
    }

    /// A class body after the `[`, up to and including the `]`.
    fn class(&mut self) -> Result<Node, Kind> {
        let negated = self.peek() == Some(b'^');
        if negated {
            self.pos += 1;
        }
        let mut set = [false; 256];
        let mut items = 0usize;
        loop {
            let Some(b) = self.peek() else {
                return Err(Kind::UnclosedClass);
            };
            if b == b']' {
                self.pos += 1;
                break;
            }
            items += 1;
            let low = match self.class_item()? {
                Escape::Set(shorthand) => {
                    for (byte, slot) in set.iter_mut().enumerate() {
                        if shorthand.contains(byte as u8) {
                            *slot = true;
                        }
                    }
                    continue;
                }
                Escape::Byte(low) => low,
            };
            let is_range =
                self.peek() == Some(b'-') && !matches!(self.peek_at(1), None | Some(b']'));
            if !is_range {
                if let Some(slot) = set.get_mut(usize::from(low)) {
                    *slot = true;
                }
                continue;
            }
            let range_start = self.pos;
            self.pos += 1;
            let high = match self.class_item()? {
                Escape::Byte(high) => high,
                Escape::Set(_) => {
                    let text = self
                        .s
                        .get(range_start.saturating_sub(1)..self.pos)
                        .unwrap_or(&[]);
                    return Err(Kind::BadRange(printable(text, 16)));
                }
            };
            if high < low {
                let text = self
                    .s
                    .get(range_start.saturating_sub(1)..self.pos)
                    .unwrap_or(&[]);
                return Err(Kind::BadRange(printable(text, 16)));
            }
            for slot in set
                .iter_mut()
                .take(usize::from(high) + 1)
                .skip(usize::from(low))
            {
                *slot = true;
            }
        }
        if items == 0 {
            return Err(Kind::EmptyClass);
        }
        let members: Vec<u8> = (0..=255u8)
            .filter(|&b| {
                let inside = set.get(usize::from(b)).copied().unwrap_or(false);
                if negated {
                    is_printable(b) && !inside
                } else {
                    inside
                }
            })
            .collect();
        if members.is_empty() {
            return Err(if negated {
                Kind::EmptyNegatedClass
            } else {
                Kind::EmptyClass
            });
        }
        Ok(Node::Class(members))
    }

    /// One class member: an escape or a single ASCII character.
    fn class_item(&mut self) -> Result<Escape, Kind> {
        match self.peek() {
            Some(b'\\') => self.escape(),
            Some(b) if b.is_ascii() => {
                self.pos += 1;
                Ok(Escape::Byte(b))
            }
            Some(_) => Err(Kind::NonAsciiInClass),
            None => Err(Kind::UnclosedClass),
        }
    }

    /// A postfix operator at the current position: its repeat bounds.
    fn postfix(&mut self) -> Result<(u32, u32), Kind> {
        let Some(op) = self.peek() else {
            return Err(Kind::BadBraces);
        };
        self.pos += 1;
        match op {
            b'?' => Ok((0, 1)),
            b'*' => Ok((0, OPEN_REPEAT)),
            b'+' => Ok((1, OPEN_REPEAT)),
            _ => self.braces(),
        }
    }

    /// `{n}`, `{n,}` or `{n,m}` after the `{`.
    fn braces(&mut self) -> Result<(u32, u32), Kind> {
        self.skip_spaces();
        let low = self.number()?.ok_or(Kind::BadBraces)?;
        self.skip_spaces();
        let bounds = match self.peek() {
            Some(b'}') => (low, low),
            Some(b',') => {
                self.pos += 1;
                self.skip_spaces();
                let high = self.number()?;
                self.skip_spaces();
                if self.peek() != Some(b'}') {
                    return Err(Kind::BadBraces);
                }
                match high {
                    // A reversed range is a typo, not a request: refuse it
                    // rather than guess which bound was meant.
                    Some(high) if high < low => return Err(Kind::RepeatOutOfOrder(low, high)),
                    Some(high) => (low, high),
                    None => (low, low + OPEN_REPEAT),
                }
            }
            _ => return Err(Kind::BadBraces),
        };
        self.pos += 1; // the `}`
        Ok(bounds)
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// A decimal count, if digits follow; above [`MAX_REPEAT`] is an error.
    fn number(&mut self) -> Result<Option<u32>, Kind> {
        let mut value: Option<u32> = None;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            self.pos += 1;
            let next = value
                .unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(u32::from(d - b'0'));
            value = Some(next.min(MAX_REPEAT + 1));
        }
        match value {
            Some(v) if v > MAX_REPEAT => Err(Kind::RepeatTooLarge),
            v => Ok(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> Rand32 {
        Rand32::new(0x5eed)
    }

    fn one(pattern: &str, rng: &mut Rand32) -> Vec<u8> {
        let re = match Regex::parse(pattern) {
            Ok(re) => re,
            Err(e) => panic!("{pattern:?} should parse: {e}"),
        };
        let mut out = Vec::new();
        re.generate(rng, &mut out);
        assert!(out.len() >= re.min_len() && out.len() <= re.max_len());
        out
    }

    fn samples(pattern: &str, count: usize) -> Vec<Vec<u8>> {
        let mut r = rng();
        (0..count).map(|_| one(pattern, &mut r)).collect()
    }

    fn err(pattern: &str) -> RegexError {
        match Regex::parse(pattern) {
            Ok(re) => panic!("{pattern:?} should fail, got {re:?}"),
            Err(e) => e,
        }
    }

    fn lens(pattern: &str) -> (usize, usize, usize) {
        match Regex::parse(pattern) {
            Ok(re) => (re.min_len(), re.max_len(), re.avg_len()),
            Err(e) => panic!("{pattern:?}: {e}"),
        }
    }

    #[test]
    fn literals() {
        assert_eq!(samples("hello world", 3), vec![b"hello world".to_vec(); 3]);
        assert_eq!(samples("", 1), vec![Vec::<u8>::new()]);
        // Stray closers and other punctuation are literal.
        assert_eq!(samples("a]b}c^$", 1), vec![b"a]b}c^$".to_vec()]);
        // A multi-byte character is one atom.
        for s in samples("é?", 50) {
            assert!(s.is_empty() || s == "é".as_bytes());
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(
            samples(r"\.\[\\\n\t\r\x41\x7e\{\}\(\)\*\ ", 1)[0],
            b".[\\\n\t\rA~{}()* "
        );
        assert_eq!(samples(r"\x4g", 1)[0], b"\x04g");
        assert_eq!(samples(r"\0\f\v", 1)[0], b"\0\x0c\x0b");
        for s in samples(r"\d\w\s\D\W\S", 300) {
            let [d, w, sp, nd, nw, ns] = s[..] else {
                panic!("six bytes expected: {s:?}");
            };
            assert!(d.is_ascii_digit());
            assert!(w.is_ascii_alphanumeric() || w == b'_');
            assert!(b" \t\n\r\x0b\x0c".contains(&sp));
            assert!(is_printable(nd) && !nd.is_ascii_digit());
            assert!(is_printable(nw) && !nw.is_ascii_alphanumeric() && nw != b'_');
            assert!(is_printable(ns) && ns != b' ');
        }
    }

    #[test]
    fn dot_is_printable_ascii() {
        let mut seen = [false; 256];
        for s in samples(".", 5000) {
            assert_eq!(s.len(), 1);
            assert!(is_printable(s[0]));
            seen[usize::from(s[0])] = true;
        }
        assert_eq!(seen.iter().filter(|&&x| x).count(), 95);
    }

    #[test]
    fn classes() {
        for s in samples("[a-c0-2_]{8}", 200) {
            assert_eq!(s.len(), 8);
            assert!(s.iter().all(|b| b"abc012_".contains(b)), "{s:?}");
        }
        for s in samples("[-a]{5}", 100) {
            assert!(s.iter().all(|b| b"-a".contains(b)));
        }
        for s in samples("[a-]", 100) {
            assert!(s == b"a" || s == b"-");
        }
        for s in samples(r"[\]\\\-x\x00]", 200) {
            assert!(s.len() == 1 && b"]\\-x\0".contains(&s[0]), "{s:?}");
        }
        for s in samples(r"[\d.]", 100) {
            assert!(s[0].is_ascii_digit() || s[0] == b'.');
        }
        // `^` is negation only at the start.
        for s in samples("[a^]", 100) {
            assert!(s == b"a" || s == b"^");
        }
        for s in samples("[^a-z]", 2000) {
            assert!(is_printable(s[0]) && !s[0].is_ascii_lowercase());
        }
        assert_eq!(samples("[^ -}]", 5), vec![b"~".to_vec(); 5]);
        // All members show up, uniformly enough.
        let mut counts = [0usize; 3];
        for s in samples("[abc]", 3000) {
            counts[usize::from(s[0] - b'a')] += 1;
        }
        assert!(counts.iter().all(|&c| c > 850), "{counts:?}");
    }

    #[test]
    fn groups_and_alternation() {
        for s in samples("(ab|cd)+", 300) {
            assert!(!s.is_empty() && s.len() % 2 == 0 && s.len() <= 32);
            for pair in s.chunks(2) {
                assert!(pair == b"ab" || pair == b"cd", "{s:?}");
            }
        }
        let all = samples("a|bc|", 600);
        for s in &all {
            assert!(s == b"a" || s == b"bc" || s.is_empty());
        }
        assert!(all.iter().any(|s| s.is_empty()));
        assert!(all.iter().any(|s| s == b"bc"));
        for s in samples("x(y(z|w)?)*", 300) {
            assert_eq!(s[0], b'x');
        }
        // `abc?` binds the `?` to `c` only.
        for s in samples("abc?", 50) {
            assert!(s == b"ab" || s == b"abc");
        }
    }

    #[test]
    fn repetition() {
        let counts = |pattern: &str| -> (usize, usize) {
            let all = samples(pattern, 2000);
            let min = all.iter().map(Vec::len).min().unwrap_or(0);
            let max = all.iter().map(Vec::len).max().unwrap_or(0);
            (min, max)
        };
        assert_eq!(counts("a?"), (0, 1));
        assert_eq!(counts("a*"), (0, 16));
        assert_eq!(counts("a+"), (1, 16));
        assert_eq!(counts("a{3}"), (3, 3));
        assert_eq!(counts("a{ 2 , 4 }"), (2, 4));
        assert_eq!(counts("a{5,}"), (5, 21));
        assert_eq!(counts("a{0}"), (0, 0));
        assert_eq!(counts("[ab]{1000}"), (1000, 1000));
    }

    #[test]
    fn lengths() {
        assert_eq!(lens("abc"), (3, 3, 3));
        assert_eq!(lens("a?"), (0, 1, 0));
        assert_eq!(lens("a*"), (0, 16, 8));
        assert_eq!(lens("a+"), (1, 16, 8));
        assert_eq!(lens("(ab|cd)+"), (2, 32, 17));
        assert_eq!(lens("[a-c0-2_]{8}"), (8, 8, 8));
        assert_eq!(lens("a|bcd"), (1, 3, 2));
        assert_eq!(lens("x(a|bcd){2,4}"), (3, 13, 7));
        assert_eq!(lens(""), (0, 0, 0));
        assert_eq!(lens("é"), (2, 2, 2));
    }

    #[test]
    fn errors() {
        use RegexError as E;
        assert!(matches!(err("(ab"), E::UnclosedGroup { .. }));
        assert!(matches!(err("((a)"), E::UnclosedGroup { .. }));
        assert!(matches!(err("ab)"), E::UnopenedGroup { .. }));
        assert!(matches!(err("(a))"), E::UnopenedGroup { .. }));
        assert!(matches!(err("[abc"), E::UnclosedClass { .. }));
        assert!(matches!(err("[a-"), E::UnclosedClass { .. }));
        assert!(matches!(err("[]"), E::EmptyClass { .. }));
        assert!(matches!(err("[^]"), E::EmptyClass { .. }));
        assert!(matches!(err("[^ -~]"), E::EmptyNegatedClass { .. }));
        assert!(matches!(err(r"[^\x20-\x7e]"), E::EmptyNegatedClass { .. }));
        assert!(matches!(err("[z-a]"), E::BadRange { .. }));
        assert!(matches!(err(r"[a-\d]"), E::BadRange { .. }));
        assert!(matches!(err("[é]"), E::NonAsciiInClass { .. }));
        assert!(matches!(err("*a"), E::NothingToRepeat { op: '*', .. }));
        assert!(matches!(err("+"), E::NothingToRepeat { op: '+', .. }));
        assert!(matches!(err("a|?"), E::NothingToRepeat { op: '?', .. }));
        assert!(matches!(err("(*)"), E::NothingToRepeat { .. }));
        assert!(matches!(err("{2}"), E::NothingToRepeat { op: '{', .. }));
        assert!(matches!(err("a**"), E::DoubleRepeat { op: '*', .. }));
        assert!(matches!(err("a+?"), E::DoubleRepeat { op: '?', .. }));
        assert!(matches!(err("a{2}{3}"), E::DoubleRepeat { op: '{', .. }));
        for bad in [
            "a{", "a{x}", "a{2,1x}", "a{,3}", "a{2", "a{2,", "a{}", "a{1 2}",
        ] {
            assert!(matches!(err(bad), E::BadBraces { .. }), "{bad}");
        }
        assert!(matches!(
            err("a{4,2}"),
            E::RepeatOutOfOrder {
                low: 4,
                high: 2,
                ..
            }
        ));
        assert!(matches!(err("a{1001}"), E::RepeatTooLarge { .. }));
        assert!(matches!(
            err("a{1,99999999999999}"),
            E::RepeatTooLarge { .. }
        ));
        assert!(Regex::parse("a{1000}").is_ok());
        assert!(Regex::parse(&format!("{}a{}", "(".repeat(16), ")".repeat(16))).is_ok());
        let deep = format!("{}a{}", "(".repeat(17), ")".repeat(17));
        assert!(matches!(err(&deep), E::TooDeep { .. }));
        assert!(matches!(err(&"a".repeat(4097)), E::TooLong { .. }));
        assert!(Regex::parse(&"a".repeat(4096)).is_ok());
        assert!(matches!(err("a\\"), E::BadEscape { .. }));
        assert!(matches!(err(r"\q"), E::BadEscape { .. }));
        assert!(matches!(err(r"\xg"), E::BadEscape { .. }));
        assert!(matches!(
            err("(.{1000}){1000}(.{1000}){48}.{577}"),
            E::OutputTooLong { .. }
        ));
        assert!(Regex::parse("(.{1000}){1000}(.{1000}){48}.{576}").is_ok());
        assert!(matches!(
            err("((((){1000}){1000}){1000})"),
            E::TooComplex { .. }
        ));
    }

    #[test]
    fn error_messages_are_one_line() {
        let e = err("[z-a]");
        assert_eq!(e.to_string(), "bad range \"z-a\" in regex \"[z-a]\"");
        assert_eq!(err("(ab").to_string(), "unbalanced \"(\" in regex \"(ab\"");
        assert_eq!(err("\n(").to_string(), "unbalanced \"(\" in regex \"\\n(\"");
        let long = err(&format!("({}", "a".repeat(500))).to_string();
        assert!(long.len() < 250 && long.contains("..."));
        let e = Regex::parse_bytes(b"\xff\x01(").err();
        assert!(e.is_some_and(|e| e.to_string() == "unbalanced \"(\" in regex \"\\xff\\x01(\""));
    }

    /// Parses and generates from `pattern` without panicking.
    fn exercise(pattern: &[u8], rng: &mut Rand32) {
        if let Ok(re) = Regex::parse_bytes(pattern) {
            assert!(re.min_len() <= re.avg_len() && re.avg_len() <= re.max_len());
            assert!(re.max_len() <= MAX_GENERATED_LEN);
            let mut out = Vec::new();
            re.generate(rng, &mut out);
            assert!(out.len() >= re.min_len() && out.len() <= re.max_len());
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut r = Rand32::new(1);
        for _ in 0..20_000 {
            let len = r.rand_range(0..40) as usize;
            let pattern: Vec<u8> = (0..len).map(|_| r.rand_u32() as u8).collect();
            exercise(&pattern, &mut r);
        }
    }

    #[test]
    fn random_metacharacters_never_panic() {
        const TOKENS: &[&str] = &[
            "(", ")", "[", "]", "^", "-", "|", "?", "*", "+", "{", "}", ",", "a", "z", "0", "9",
            ".", "\\", "\\x", "\\d", "\\w", "\\s", "{2}", "{1000}", "{3,}", "{5,2}", " ", "é",
            "\u{1}",
        ];
        let mut r = Rand32::new(2);
        let mut parsed = 0;
        for _ in 0..20_000 {
            let count = r.rand_range(0..24) as usize;
            let mut pattern = Vec::new();
            for _ in 0..count {
                let token = TOKENS[r.rand_range(0..TOKENS.len() as u32) as usize];
                pattern.extend_from_slice(token.as_bytes());
            }
            if Regex::parse_bytes(&pattern).is_ok() {
                parsed += 1;
            }
            exercise(&pattern, &mut r);
        }
        assert!(parsed > 500, "only {parsed} patterns parsed");
    }
}
