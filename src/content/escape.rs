//! The `-e` transform: backslash escapes to the bytes they name.
//!
//! `\{...}` expressions are parsed by `expr`: `unescape` passes `\{`
//! through untouched so that the expression stage still sees it.

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
}
