//! A small JSON (RFC 8259) value type with a parser and a serialiser.
//!
//! Parsing never panics: every malformed input becomes a [`ParseError`]
//! carrying the byte offset where the problem was found. Containers may be
//! nested at most [`MAX_DEPTH`] levels deep, which bounds the parser's
//! recursion; serialisation uses an explicit stack and does not recurse.
//!
//! Numbers are `f64`. Literals that overflow to infinity (`1e400`) are
//! rejected, so every parsed value serialises back to valid JSON and
//! re-parses to an equal value.

use std::fmt;
use std::fmt::Write as _;

/// How many arrays/objects may be open at once while parsing.
pub const MAX_DEPTH: usize = 64;

/// 2^53: the largest integer up to which every integer is exact in `f64`.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// A JSON value. Objects keep their keys in insertion order (Vec of pairs).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

/// Why a text is not JSON, and the byte offset where that was noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for ParseError {}

impl Value {
    /// Parses one JSON document; whitespace may surround it, anything else
    /// after it is an error.
    pub fn parse(text: &str) -> Result<Value, ParseError> {
        let mut p = Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        };
        let value = p.value(0)?;
        p.skip_ws();
        if p.pos < p.bytes.len() {
            return Err(p.err_at(p.pos, "trailing characters"));
        }
        Ok(value)
    }

    /// The value of the first `key` in an object; `None` for non-objects.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(x) => Some(*x),
            _ => None,
        }
    }

    /// Only numbers that are exact non-negative integers no larger than 2^53.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(x)
                if x.is_finite() && *x >= 0.0 && x.fract() == 0.0 && *x <= MAX_EXACT =>
            {
                Some(*x as u64)
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Compact serialisation; `pretty` adds newlines and two-space indents.
    pub fn to_json(&self, pretty: bool) -> String {
        let mut w = Writer {
            out: String::new(),
            pretty,
            stack: Vec::new(),
        };
        w.open(self);
        while let Some(frame) = w.stack.last_mut() {
            let step = match frame {
                Frame::Array { items, first } => match items.next() {
                    Some(item) => Step::Item(None, item, std::mem::replace(first, false)),
                    None => Step::Close(']'),
                },
                Frame::Object { pairs, first } => match pairs.next() {
                    Some((key, item)) => {
                        Step::Item(Some(key), item, std::mem::replace(first, false))
                    }
                    None => Step::Close('}'),
                },
            };
            let depth = w.stack.len();
            match step {
                Step::Item(key, item, first) => {
                    if !first {
                        w.out.push(',');
                    }
                    w.newline(depth);
                    if let Some(key) = key {
                        write_string(&mut w.out, key);
                        w.out.push_str(if w.pretty { ": " } else { ":" });
                    }
                    w.open(item);
                }
                Step::Close(bracket) => {
                    w.stack.pop();
                    w.newline(depth - 1);
                    w.out.push(bracket);
                }
            }
        }
        w.out
    }
}

/// Builds an object from borrowed keys, keeping their order.
pub fn obj(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Values above 2^53 are rounded to the nearest `f64`.
impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Number(n as f64)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::Number(x)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

// ---------------------------------------------------------------------------
// Parsing

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err_at(&self, offset: usize, reason: &str) -> ParseError {
        ParseError {
            offset,
            reason: reason.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// `depth` is the number of containers already open around this value.
    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.err_at(self.pos, "expected value")),
            Some(b'[' | b'{') if depth >= MAX_DEPTH => {
                Err(self.err_at(self.pos, "nesting too deep"))
            }
            Some(b'[') => self.array(depth + 1),
            Some(b'{') => self.object(depth + 1),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(_) => Err(self.err_at(self.pos, "expected value")),
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, ParseError> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        if rest.starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.err_at(self.pos, "invalid literal"))
        }
    }

    /// At `[`.
    fn array(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err_at(self.pos, "expected ',' or ']'")),
            }
        }
    }

    /// At `{`.
    fn object(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.pos += 1;
        let mut pairs = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(pairs));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err_at(self.pos, "expected string key"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err_at(self.pos, "expected ':'"));
            }
            self.pos += 1;
            let value = self.value(depth)?;
            pairs.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(pairs));
                }
                _ => return Err(self.err_at(self.pos, "expected ',' or '}'")),
            }
        }
    }

    /// Appends `text[from..to]`; both ends sit next to ASCII bytes, so they
    /// are always character boundaries.
    fn copy_run(&self, out: &mut String, from: usize, to: usize) -> Result<(), ParseError> {
        match self.text.get(from..to) {
            Some(s) => {
                out.push_str(s);
                Ok(())
            }
            None => Err(self.err_at(from, "invalid string")),
        }
    }

    /// At `"`; an unterminated string is reported at its opening quote.
    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut run = self.pos;
        loop {
            match self.peek() {
                None => return Err(self.err_at(start, "unterminated string")),
                Some(b'"') => {
                    self.copy_run(&mut out, run, self.pos)?;
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.copy_run(&mut out, run, self.pos)?;
                    out.push(self.escape(start)?);
                    run = self.pos;
                }
                Some(b) if b < 0x20 => {
                    return Err(self.err_at(self.pos, "control character in string"))
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// At `\`; consumes the escape. Errors are reported at the backslash.
    fn escape(&mut self, string_start: usize) -> Result<char, ParseError> {
        let at = self.pos;
        self.pos += 1;
        let c = match self.peek() {
            None => return Err(self.err_at(string_start, "unterminated string")),
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                return self.unicode_escape(at);
            }
            Some(_) => return Err(self.err_at(at, "invalid escape")),
        };
        self.pos += 1;
        Ok(c)
    }

    /// Just after `\u` (the backslash at `at`); handles surrogate pairs.
    fn unicode_escape(&mut self, at: usize) -> Result<char, ParseError> {
        let first = self.hex4(at)?;
        let code = match first {
            0xD800..=0xDBFF => {
                let low_at = self.pos;
                if self.bytes.get(low_at..low_at + 2) != Some(b"\\u".as_slice()) {
                    return Err(self.err_at(at, "lone surrogate"));
                }
                self.pos += 2;
                let second = self.hex4(low_at)?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.err_at(at, "lone surrogate"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.err_at(at, "lone surrogate")),
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| self.err_at(at, "invalid \\u escape"))
    }

    /// Four hex digits at the cursor; errors are reported at `at`.
    fn hex4(&mut self, at: usize) -> Result<u32, ParseError> {
        let mut code = 0u32;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.err_at(at, "invalid \\u escape"))?;
            code = code * 16 + digit;
            self.pos += 1;
        }
        Ok(code)
    }

    fn digits(&mut self) -> Result<(), ParseError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.err_at(self.pos, "expected digit"));
        }
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        Ok(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        if self.peek() == Some(b'0') {
            self.pos += 1;
        } else {
            self.digits()?;
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.digits()?;
        }
        let x = self
            .text
            .get(start..self.pos)
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| self.err_at(start, "invalid number"))?;
        if !x.is_finite() {
            return Err(self.err_at(start, "number out of range"));
        }
        Ok(Value::Number(x))
    }
}

// ---------------------------------------------------------------------------
// Serialising

enum Frame<'a> {
    Array {
        items: std::slice::Iter<'a, Value>,
        first: bool,
    },
    Object {
        pairs: std::slice::Iter<'a, (String, Value)>,
        first: bool,
    },
}

/// What the serialiser does next with the innermost open container.
enum Step<'a> {
    /// Write an element (with its key, in objects); `bool`: it is the first.
    Item(Option<&'a str>, &'a Value, bool),
    /// Close the container with this bracket.
    Close(char),
}

struct Writer<'a> {
    out: String,
    pretty: bool,
    stack: Vec<Frame<'a>>,
}

impl<'a> Writer<'a> {
    /// Writes a scalar or an empty container whole; opens any other
    /// container and leaves its contents to the caller's loop.
    fn open(&mut self, v: &'a Value) {
        match v {
            Value::Null => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Number(x) => write_number(&mut self.out, *x),
            Value::String(s) => write_string(&mut self.out, s),
            Value::Array(a) if a.is_empty() => self.out.push_str("[]"),
            Value::Object(o) if o.is_empty() => self.out.push_str("{}"),
            Value::Array(a) => {
                self.out.push('[');
                self.stack.push(Frame::Array {
                    items: a.iter(),
                    first: true,
                });
            }
            Value::Object(o) => {
                self.out.push('{');
                self.stack.push(Frame::Object {
                    pairs: o.iter(),
                    first: true,
                });
            }
        }
    }

    fn newline(&mut self, depth: usize) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str("  ");
            }
        }
    }
}

fn write_number(out: &mut String, x: f64) {
    if !x.is_finite() {
        out.push_str("null");
    } else if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0" } else { "0" });
    } else if x.fract() == 0.0 && x.abs() < MAX_EXACT {
        let _ = write!(out, "{}", x as i64);
    } else if x.abs() >= 1e21 || x.abs() < 1e-6 {
        // Shortest round-trip digits either way; exponent form keeps very
        // large and very small magnitudes short (`1e21`, `1e-7`).
        let _ = write!(out, "{:e}", x);
    } else {
        let _ = write!(out, "{}", x);
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (usize, String) {
        match Value::parse(text) {
            Ok(v) => panic!("{:?} parsed as {:?}", text, v),
            Err(e) => (e.offset, e.reason),
        }
    }

    fn num(text: &str) -> f64 {
        Value::parse(text)
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(f64::NAN)
    }

    fn assert_round_trip(v: &Value) {
        for pretty in [false, true] {
            let text = v.to_json(pretty);
            assert_eq!(Value::parse(&text).as_ref(), Ok(v), "via {}", text);
        }
    }

    fn sample() -> Value {
        obj(vec![
            ("name", "tcpkali".into()),
            ("version", 1u64.into()),
            ("ratio", (-0.5).into()),
            ("tiny", 1e-7.into()),
            ("big", 1e21.into()),
            ("ok", true.into()),
            ("missing", Value::Null),
            ("empty_list", Value::Array(vec![])),
            ("empty_obj", Value::Object(vec![])),
            (
                "text",
                "tab\there \"quoted\" back\\slash \u{1} é 中 😀".into(),
            ),
            (
                "nested",
                Value::Array(vec![
                    obj(vec![("a", Value::Array(vec![1u64.into(), 2u64.into()]))]),
                    Value::Array(vec![Value::Array(vec![Value::Null])]),
                    false.into(),
                    String::from("s").into(),
                ]),
            ),
            ("dup", 1u64.into()),
            ("dup", 2u64.into()),
        ])
    }

    #[test]
    fn round_trips() {
        let v = sample();
        assert_round_trip(&v);
        assert_eq!(v.get("dup").and_then(Value::as_u64), Some(1));
        assert_eq!(v.get("name").and_then(Value::as_str), Some("tcpkali"));
        assert_eq!(v.get("nope"), None);
        assert_eq!(Value::Null.get("x"), None);
        let nested = v
            .get("nested")
            .and_then(Value::as_array)
            .unwrap_or_default();
        assert_eq!(nested.len(), 4);
        assert_eq!(nested[0].as_object().map(<[_]>::len), Some(1));
    }

    #[test]
    fn formatting() {
        let v = obj(vec![
            ("a", Value::Array(vec![1u64.into(), Value::Null])),
            ("b", Value::Object(vec![])),
            ("c", Value::Array(vec![])),
        ]);
        assert_eq!(v.to_json(false), r#"{"a":[1,null],"b":{},"c":[]}"#);
        assert_eq!(
            v.to_json(true),
            "{\n  \"a\": [\n    1,\n    null\n  ],\n  \"b\": {},\n  \"c\": []\n}"
        );
        assert_eq!(Value::Array(vec![]).to_json(true), "[]");
        assert_eq!(Value::from("x").to_json(true), "\"x\"");
        assert_eq!(
            Value::parse(" \t\r\n[ 1 , { \"a\" : [ ] } ]\n ").map(|v| v.to_json(false)),
            Ok("[1,{\"a\":[]}]".to_string())
        );
    }

    #[test]
    fn escapes() {
        let v = Value::parse(r#""\"\\\/\b\f\n\r\t\u0041\u00e9\u4E2D\ud83d\uDE00\u0000""#);
        assert_eq!(
            v,
            Ok(Value::String("\"\\/\u{8}\u{c}\n\r\t\u{41}é中😀\0".into()))
        );
        let all: String = (0u8..0x20)
            .map(char::from)
            .chain("\"\\/\u{7f}é".chars())
            .collect();
        let text = Value::String(all.clone()).to_json(false);
        assert_eq!(
            text,
            "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\
             \\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\
             \\\"\\\\/\u{7f}é\""
        );
        assert_round_trip(&Value::String(all));
        // Raw (unescaped) non-ASCII passes through untouched.
        assert_eq!(Value::parse("\"中😀\""), Ok(Value::from("中😀")));
    }

    #[test]
    fn surrogates() {
        assert_eq!(Value::parse(r#""\ud834\udd1e""#), Ok(Value::from("𝄞")));
        assert_eq!(err(r#""\ud834""#), (1, "lone surrogate".into()));
        assert_eq!(err(r#""ab\udd1e""#), (3, "lone surrogate".into()));
        assert_eq!(err(r#""\ud834x""#), (1, "lone surrogate".into()));
        assert_eq!(err(r#""\ud834\u0041""#), (1, "lone surrogate".into()));
        assert_eq!(err(r#""\ud834\ud834""#), (1, "lone surrogate".into()));
        assert_eq!(err(r#""\ud834\n""#), (1, "lone surrogate".into()));
        assert_eq!(err(r#""\ud834\uZZZZ""#), (7, "invalid \\u escape".into()));
        assert_eq!(err(r#""\u12""#), (1, "invalid \\u escape".into()));
        assert_eq!(err(r#""\u12"#), (1, "invalid \\u escape".into()));
    }

    #[test]
    fn numbers() {
        assert_eq!(num("0"), 0.0);
        assert_eq!(num("-0.5"), -0.5);
        assert_eq!(num("1e-7"), 1e-7);
        assert_eq!(num("1E+2"), 100.0);
        assert_eq!(num("-12.5e-1"), -1.25);
        assert_eq!(num("123456789012"), 123456789012.0);
        assert_eq!(num("9007199254740992"), MAX_EXACT);
        assert!(num("-0").is_sign_negative());
        assert_eq!(num("1e-400"), 0.0);

        let text = |x: f64| Value::from(x).to_json(false);
        assert_eq!(text(0.0), "0");
        assert_eq!(text(-0.0), "-0");
        assert_eq!(text(-0.5), "-0.5");
        assert_eq!(text(1e-7), "1e-7");
        assert_eq!(text(0.000001), "0.000001");
        assert_eq!(text(123456789012.0), "123456789012");
        assert_eq!(text(-123456789012.0), "-123456789012");
        assert_eq!(text(MAX_EXACT), "9007199254740992");
        assert_eq!(text(1e21), "1e21");
        assert_eq!(text(-1.5e300), "-1.5e300");
        assert_eq!(text(0.1), "0.1");
        assert_eq!(text(f64::NAN), "null");
        assert_eq!(text(f64::INFINITY), "null");
        assert_eq!(text(f64::NEG_INFINITY), "null");
        for x in [
            0.0,
            -0.5,
            1e-7,
            123456789012.0,
            MAX_EXACT,
            1e21,
            0.1,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            1.0 / 3.0,
        ] {
            assert_round_trip(&Value::from(x));
            assert_round_trip(&Value::from(-x));
        }

        assert_eq!(Value::from(MAX_EXACT).as_u64(), Some(1 << 53));
        assert_eq!(Value::from(123456789012u64).as_u64(), Some(123456789012));
        assert_eq!(Value::from(0.0).as_u64(), Some(0));
        assert_eq!(Value::from(MAX_EXACT + 2.0).as_u64(), None);
        assert_eq!(Value::from(-1.0).as_u64(), None);
        assert_eq!(Value::from(1.5).as_u64(), None);
        assert_eq!(Value::from(f64::NAN).as_u64(), None);
        assert_eq!(Value::from("1").as_u64(), None);
        assert_eq!(Value::from(true).as_f64(), None);

        assert_eq!(err("-"), (1, "expected digit".into()));
        assert_eq!(err("1."), (2, "expected digit".into()));
        assert_eq!(err("1e"), (2, "expected digit".into()));
        assert_eq!(err("1e+"), (3, "expected digit".into()));
        assert_eq!(err("-a"), (1, "expected digit".into()));
        assert_eq!(err(".5"), (0, "expected value".into()));
        assert_eq!(err("+1"), (0, "expected value".into()));
        assert_eq!(err("01"), (1, "trailing characters".into()));
        assert_eq!(err("[1e400]"), (1, "number out of range".into()));
    }

    #[test]
    fn errors() {
        assert_eq!(err("[1,2,]"), (5, "expected value".into()));
        assert_eq!(err(r#"{"a":1,}"#), (7, "expected string key".into()));
        assert_eq!(err(r#"{"a" 1}"#), (5, "expected ':'".into()));
        assert_eq!(err(r#""ab\x""#), (3, "invalid escape".into()));
        assert_eq!(err(r#""abc"#), (0, "unterminated string".into()));
        assert_eq!(err(r#"["abc\"#), (1, "unterminated string".into()));
        assert_eq!(err("[1 2]"), (3, "expected ',' or ']'".into()));
        assert_eq!(err(r#"{"a":1 "b":2}"#), (7, "expected ',' or '}'".into()));
        assert_eq!(err(r#"{"a":1"#), (6, "expected ',' or '}'".into()));
        assert_eq!(err("{1:2}"), (1, "expected string key".into()));
        assert_eq!(err("\"a\nb\""), (2, "control character in string".into()));
        assert_eq!(err("1 x"), (2, "trailing characters".into()));
        assert_eq!(err("{} {}"), (3, "trailing characters".into()));
        assert_eq!(err(""), (0, "expected value".into()));
        assert_eq!(err("  "), (2, "expected value".into()));
        assert_eq!(err("[1,"), (3, "expected value".into()));
        assert_eq!(err("tru"), (0, "invalid literal".into()));
        assert_eq!(err("nul1"), (0, "invalid literal".into()));
        assert_eq!(err("\u{feff}1"), (0, "expected value".into()));

        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(Value::parse(&deep(64)).is_ok());
        let e = Value::parse(&deep(65)).err();
        assert_eq!(
            e.as_ref().map(|e| (e.offset, e.reason.as_str())),
            Some((64, "nesting too deep"))
        );
        assert_eq!(
            e.map(|e| e.to_string()),
            Some("at byte 64: nesting too deep".to_string())
        );
        let objects = format!("{}1{}", "{\"k\":".repeat(65), "}".repeat(65));
        assert_eq!(err(&objects), (5 * 64, "nesting too deep".into()));
        assert_eq!(err(&"[".repeat(100_000)), (64, "nesting too deep".into()));

        let at64 = Value::parse(&format!("{}1{}", "{\"k\":".repeat(64), "}".repeat(64)));
        assert!(at64.is_ok());
        if let Ok(v) = at64 {
            assert_round_trip(&v);
        }
    }

    #[test]
    fn serialise_deep_value_without_recursion() {
        let mut v = Value::Null;
        for _ in 0..1000 {
            v = Value::Array(vec![v]);
        }
        let text = v.to_json(true);
        assert!(text.starts_with("[\n  [\n    ["));
        assert_eq!(
            v.to_json(false),
            format!("{}null{}", "[".repeat(1000), "]".repeat(1000))
        );
    }

    /// xorshift64*: deterministic, dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Parsing must never panic, and whatever parses must round-trip.
    fn check(text: &str) {
        if let Ok(v) = Value::parse(text) {
            assert_round_trip(&v);
        }
    }

    const ALPHABET: &[u8] = b"{}[]\",:\\/ \t\n0123456789.-+eEtrufalsnbu\xc3\xa9\xff";

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut parsed = 0;
        for i in 0..20_000 {
            let len = rng.below(48);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if i % 2 == 0 {
                        rng.next() as u8
                    } else {
                        ALPHABET[rng.below(ALPHABET.len())]
                    }
                })
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            check(&text);
            parsed += usize::from(Value::parse(&text).is_ok());
        }
        assert!(parsed > 0);
    }

    #[test]
    fn random_mutations_never_panic() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let base = sample().to_json(false).into_bytes();
        let mut parsed = 0;
        for _ in 0..20_000 {
            let mut bytes = base.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len() + 1);
                match rng.below(6) {
                    0 if at < bytes.len() => bytes[at] = rng.next() as u8,
                    1 if at < bytes.len() => bytes[at] = ALPHABET[rng.below(ALPHABET.len())],
                    2 => bytes.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                    3 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    4 => {
                        let end = (at + rng.below(16)).min(bytes.len());
                        let chunk = bytes[at..end].to_vec();
                        bytes.splice(at..at, chunk);
                    }
                    _ => bytes.truncate(at),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            check(&text);
            parsed += usize::from(Value::parse(&text).is_ok());
        }
        assert!(parsed > 0);
    }
}
