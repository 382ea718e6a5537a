//! The getopt_long-style scanner: splits argv into option occurrences and
//! operands, in order, looking the names up in the flag table.
//!
//! The scanner follows the conventions of GNU `getopt_long`: bundled short
//! options (`-dvc2`), attached short values (`-c10`), `--opt=value` and
//! `--opt value`, unambiguous prefixes of long options, options after
//! operands, `--` to end options and a lone `-` as an operand.
//!
//! pico-args is not used: it matches keys by value anywhere in argv, so it
//! takes a message text such as `-m --json` for an option, and it returns
//! values per key, losing the order of `-m`/`-1`/`-f` across keys. Driven
//! in this scanner's order it only ever takes the next token (tried).
//!
//! It reads the flag table and builds errors, nothing more: values stay raw
//! bytes, since what a value means is for the option handling to say.

use super::flags::{Flag, Value, FLAGS};
use super::outcome::{printable, CliError};

/// One option occurrence found by the scanner.
pub(super) struct Occurrence<'a> {
    pub(super) flag: &'static Flag,
    pub(super) value: Option<&'a [u8]>,
}

/// One thing found on the command line.
pub(super) enum Item<'a> {
    Opt(Occurrence<'a>),
    Operand(&'a [u8]),
}

/// Finds the flag for a long name (without `--`): an exact name wins,
/// otherwise a prefix must select a single option.
fn lookup_long(name: &[u8], token: &[u8]) -> Result<&'static Flag, CliError> {
    if let Some(f) = FLAGS
        .iter()
        .find(|f| f.long.iter().any(|l| l.as_bytes() == name))
    {
        return Ok(f);
    }
    let mut found: Vec<&'static Flag> = Vec::new();
    if !name.is_empty() {
        for f in FLAGS {
            if f.long.iter().any(|l| l.as_bytes().starts_with(name))
                && !found.iter().any(|g| g.id == f.id)
            {
                found.push(f);
            }
        }
    }
    match found.as_slice() {
        [] => Err(CliError::UnknownOption {
            token: printable(token),
        }),
        [one] => Ok(one),
        many => Err(CliError::AmbiguousOption {
            token: printable(token),
            candidates: many.iter().map(|f| f.name()).collect(),
        }),
    }
}

/// Splits argv into options (with their values) and operands, in order.
/// Stops at the first malformed option: returns the items before it and the
/// error, so that the items can still be applied left to right first.
pub(super) fn scan<'a>(args: &[&'a [u8]]) -> (Vec<Item<'a>>, Option<CliError>) {
    let mut items = Vec::new();
    let error = scan_into(args, &mut items).err();
    (items, error)
}

fn scan_into<'a>(args: &[&'a [u8]], items: &mut Vec<Item<'a>>) -> Result<(), CliError> {
    let mut i = 0;
    let mut options_ended = false;
    while i < args.len() {
        let arg = args[i];
        i += 1;
        if options_ended || arg.len() < 2 || arg[0] != b'-' {
            items.push(Item::Operand(arg));
            continue;
        }
        if arg == b"--" {
            options_ended = true;
            continue;
        }
        if let Some(body) = arg.strip_prefix(b"--") {
            let (name, inline) = match body.iter().position(|&b| b == b'=') {
                Some(eq) => (&body[..eq], Some(&body[eq + 1..])),
                None => (body, None),
            };
            let flag = lookup_long(name, arg)?;
            let value = match (flag.value, inline) {
                (Value::Switch, None) => None,
                (Value::Switch, Some(_)) => {
                    return Err(CliError::UnexpectedValue {
                        option: printable(arg),
                    })
                }
                (Value::Required(_), Some(v)) => Some(v),
                (Value::Required(p), None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(*v)
                    }
                    None => {
                        return Err(CliError::MissingValue {
                            option: flag.name(),
                            expected: p.to_string(),
                        })
                    }
                },
            };
            items.push(Item::Opt(Occurrence { flag, value }));
            continue;
        }
        // A cluster of short options: -dvc2
        let mut j = 1;
        while j < arg.len() {
            let letter = arg[j];
            j += 1;
            let Some(flag) = FLAGS.iter().find(|f| f.short == Some(letter)) else {
                let token = if letter.is_ascii_graphic() {
                    let mut t = format!("-{}", char::from(letter));
                    if arg.len() > 2 {
                        t.push_str(&format!(" (in {})", printable(arg)));
                    }
                    t
                } else {
                    printable(arg)
                };
                return Err(CliError::UnknownOption { token });
            };
            match flag.value {
                Value::Switch => items.push(Item::Opt(Occurrence { flag, value: None })),
                Value::Required(p) => {
                    let value = if j < arg.len() {
                        &arg[j..]
                    } else if let Some(v) = args.get(i) {
                        i += 1;
                        v
                    } else {
                        return Err(CliError::MissingValue {
                            option: format!("-{}", char::from(letter)),
                            expected: p.to_string(),
                        });
                    };
                    items.push(Item::Opt(Occurrence {
                        flag,
                        value: Some(value),
                    }));
                    break;
                }
            }
        }
    }
    Ok(())
}
