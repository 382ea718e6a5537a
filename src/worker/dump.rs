//! Traffic dumps (`-d`, `--dump-one*`, `--dump-all*`): which connections are
//! shown, and the printable form of their bytes, in tcpkali's format:
//! `Snd(<fd>, <n>): [<printable>]` and `Rcv(<fd>, <n>): [<printable>]`.

use crate::cli::config::DumpSpec;

/// Bits of a connection's dump flags.
pub const DUMP_IN: u8 = 1;
pub const DUMP_OUT: u8 = 2;

/// Flags every connection gets.
pub fn all_flags(spec: &DumpSpec) -> u8 {
    (if spec.all_in { DUMP_IN } else { 0 }) | (if spec.all_out { DUMP_OUT } else { 0 })
}

/// Flags the single chosen connection gets.
pub fn one_flags(spec: &DumpSpec) -> u8 {
    (if spec.one_in { DUMP_IN } else { 0 }) | (if spec.one_out { DUMP_OUT } else { 0 })
}

/// Appends the printable form of `data`: printable ASCII as is, `\` as
/// `\\`, `"` as `\"` when `quoted`, CR as `\r`, LF as `\n` plus a line
/// break and a TAB (unless it is the last byte), anything else as `\xHH`.
pub fn printable_into(out: &mut String, data: &[u8], quoted: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, &b) in data.iter().enumerate() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' if quoted => out.push_str("\\\""),
            b'\r' => out.push_str("\\r"),
            b'\n' => {
                out.push_str("\\n");
                if i + 1 < data.len() {
                    out.push_str("\n\t");
                }
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                out.push_str("\\x");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
}

/// One dump line (with its final newline): `Snd(fd, n): [...]`.
pub fn line(sent: bool, fd: i32, data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() + 32);
    s.push_str(if sent { "Snd(" } else { "Rcv(" });
    s.push_str(&fd.to_string());
    s.push_str(", ");
    s.push_str(&data.len().to_string());
    s.push_str("): [");
    printable_into(&mut s, data, false);
    s.push_str("]\n");
    s
}

/// Writes one dump line to stderr in a single call, ignoring errors.
pub fn emit(sent: bool, fd: i32, data: &[u8]) {
    use std::io::Write;
    let text = line(sent, fd, data);
    let _ = std::io::stderr().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_as_tcpkali_shows_them() {
        assert_eq!(
            line(true, 18, b"AB\x01\xff\"\\ Z"),
            "Snd(18, 8): [AB\\x01\\xff\"\\\\ Z]\n"
        );
    }

    #[test]
    fn line_feeds_continue_on_a_tabbed_line_except_the_last() {
        assert_eq!(
            line(false, 7, b"a\r\nb\r\n"),
            "Rcv(7, 6): [a\\r\\n\n\tb\\r\\n]\n"
        );
    }

    #[test]
    fn quoted_contexts_escape_double_quotes() {
        let mut s = String::new();
        printable_into(&mut s, b"1\"X", true);
        assert_eq!(s, "1\\\"X");
    }

    #[test]
    fn flags_follow_the_options() {
        let d = DumpSpec {
            one_in: true,
            one_out: true,
            ..DumpSpec::default()
        };
        assert_eq!(one_flags(&d), DUMP_IN | DUMP_OUT);
        assert_eq!(all_flags(&d), 0);
        assert!(DumpSpec::default().is_off());
    }
}
