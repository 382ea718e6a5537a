//! `tcpkali --generate complete-bash` and `complete-zsh`: shell completion
//! scripts built from the flag table, so that every option and every fixed
//! value word (`on|off`, `silent|active`) completes.

use super::flags::{Flag, Value, FLAGS};

/// What a shell should offer for an option's value.
#[derive(Debug, PartialEq, Eq)]
enum ValueKind {
    /// Fixed words, from a placeholder such as `on|off`.
    Words(Vec<&'static str>),
    /// A file name.
    File,
    /// A host name.
    Host,
    /// Free text or a number: nothing to offer.
    Free,
}

fn value_kind(placeholder: &'static str) -> ValueKind {
    let words: Vec<&str> = placeholder.split('|').collect();
    if words.len() > 1
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
    {
        return ValueKind::Words(words);
    }
    match placeholder {
        "<file>" | "<filename>" | "<prefix>" => ValueKind::File,
        "<host>" | "<IP>" => ValueKind::Host,
        _ => ValueKind::Free,
    }
}

/// Every spelling of a flag: `-c`, `--connections`.
fn spellings(f: &Flag) -> Vec<String> {
    let mut out: Vec<String> = f
        .short
        .map(|s| format!("-{}", char::from(s)))
        .into_iter()
        .collect();
    out.extend(f.long.iter().map(|l| format!("--{l}")));
    out
}

/// The bash script: `source <(tcpkali --generate complete-bash)`.
pub fn bash() -> String {
    let mut all: Vec<String> = FLAGS.iter().flat_map(spellings).collect();
    all.sort();
    let mut cases = String::new();
    for f in FLAGS {
        let Value::Required(p) = f.value else {
            continue;
        };
        let action = match value_kind(p) {
            ValueKind::Words(w) => {
                format!("COMPREPLY=($(compgen -W '{}' -- \"$cur\"))", w.join(" "))
            }
            ValueKind::File => "COMPREPLY=($(compgen -f -- \"$cur\"))".to_string(),
            ValueKind::Host => "COMPREPLY=($(compgen -A hostname -- \"$cur\"))".to_string(),
            ValueKind::Free => "COMPREPLY=()".to_string(),
        };
        cases.push_str(&format!(
            "        {}) {action}; return 0 ;;\n",
            spellings(f).join("|")
        ));
    }
    format!(
        r#"# bash completion for tcpkali (tcpkali --generate complete-bash)
_tcpkali() {{
    local cur prev
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev=""
    if [ "$COMP_CWORD" -gt 0 ]; then
        prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    fi
    # --opt=value: complete the value of --opt.
    if [[ "$cur" == --*=* ]]; then
        prev="${{cur%%=*}}"
        cur="${{cur#*=}}"
    fi
    case "$prev" in
{cases}    esac
    if [ "$COMP_CWORD" -eq 1 ] && [[ "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W 'merge monitor' -- "$cur"))
        return 0
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W '{opts}' -- "$cur"))
    fi
    return 0
}}
complete -F _tcpkali tcpkali
"#,
        opts = all.join(" ")
    )
}

/// Text inside a zsh `_arguments` spec: brackets and colons are syntax
/// there, single quotes end the spec.
fn zsh_text(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '[' | ']' | ':' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\'' => out.push_str("'\\''"),
            c => out.push(c),
        }
    }
    out
}

/// The zsh script: install as `_tcpkali` in a directory of `$fpath`, or
/// source it after `compinit`.
pub fn zsh() -> String {
    let mut specs = String::new();
    for f in FLAGS {
        let names = spellings(f);
        let repeatable = f.help.contains("repeatable") || f.short == Some(b'v');
        let exclusion = if repeatable || names.len() < 2 {
            String::from(if repeatable { "*" } else { "" })
        } else {
            format!("({})", names.join(" "))
        };
        let value = match f.value {
            Value::Switch => String::new(),
            Value::Required(p) => {
                let action = match value_kind(p) {
                    ValueKind::Words(w) => format!("({})", w.join(" ")),
                    ValueKind::File => "_files".to_string(),
                    ValueKind::Host => "_hosts".to_string(),
                    ValueKind::Free => " ".to_string(),
                };
                format!(":{}:{action}", zsh_text(p))
            }
        };
        for name in &names {
            // `-c+`: value attached or next; `--connections=`: after `=`
            // or next.
            let suffix = match (f.value, name.starts_with("--")) {
                (Value::Switch, _) => "",
                (Value::Required(_), true) => "=",
                (Value::Required(_), false) => "+",
            };
            specs.push_str(&format!(
                "        '{exclusion}{name}{suffix}[{}]{value}' \\\n",
                zsh_text(f.help)
            ));
        }
    }
    format!(
        r#"#compdef tcpkali
# zsh completion for tcpkali (tcpkali --generate complete-zsh)
_tcpkali() {{
    if (( CURRENT == 2 )) && [[ "$words[2]" != -* ]]; then
        _alternative 'commands:command:(merge monitor)' 'destinations:destination:_hosts'
        return
    fi
    _arguments -s -S \
{specs}        '*:destination (host\:port):_hosts'
}}
if [ "$funcstack[1]" = "_tcpkali" ]; then
    _tcpkali "$@"
else
    compdef _tcpkali tcpkali
fi
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_words_files_and_hosts_are_told_apart() {
        assert_eq!(value_kind("on|off"), ValueKind::Words(vec!["on", "off"]));
        assert_eq!(
            value_kind("man|complete-bash|complete-zsh"),
            ValueKind::Words(vec!["man", "complete-bash", "complete-zsh"])
        );
        assert_eq!(value_kind("<Rate>|@<Latency>"), ValueKind::Free);
        assert_eq!(value_kind("<filename>"), ValueKind::File);
        assert_eq!(value_kind("<host>"), ValueKind::Host);
    }

    #[test]
    fn every_option_completes_in_both_shells() {
        let (b, z) = (bash(), zsh());
        let bash_words: Vec<&str> = b
            .split(|c: char| c.is_whitespace() || "'|)".contains(c))
            .collect();
        for f in FLAGS {
            for name in spellings(f) {
                assert!(bash_words.contains(&name.as_str()), "bash: {name}");
                assert!(
                    ["[", "=[", "+["]
                        .iter()
                        .any(|end| z.contains(&format!("{name}{end}"))),
                    "zsh: {name}"
                );
            }
        }
    }

    #[test]
    fn zsh_specs_keep_their_syntax() {
        assert_eq!(zsh_text("a [b]: c's"), "a \\[b\\]\\: c'\\''s");
    }
}
