//! `tcpkali --generate man|complete-bash|complete-zsh`: the manual page and
//! the completion scripts cover every option of `--help`, the page renders
//! without warnings, and the scripts register in real shells.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tcpkali");

fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run tcpkali");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Every `--name` that `--help` prints.
fn long_options_of_help() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    let mut names: Vec<String> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() > 50, "{names:?}");
    names
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tcpkali-generate-{}-{name}", std::process::id()))
}

#[test]
fn every_long_option_of_help_is_in_the_page_and_both_completions() {
    let page = stdout_of(&["--generate", "man"]);
    let bash = stdout_of(&["--generate", "complete-bash"]);
    let zsh = stdout_of(&["--generate", "complete-zsh"]);
    for name in long_options_of_help() {
        let roff = format!("\\fB{}\\fR", name.replace('-', "\\-"));
        assert!(page.contains(&roff), "man page lacks {name}");
        assert!(
            bash.split(|c: char| c.is_whitespace() || c == '\'' || c == '|' || c == ')')
                .any(|w| w == name),
            "bash completion lacks {name}"
        );
        assert!(
            ["[", "=["]
                .iter()
                .any(|end| zsh.contains(&format!("{name}{end}"))),
            "zsh completion lacks {name}"
        );
    }
}

#[test]
fn the_page_renders_without_warnings() {
    let page = stdout_of(&["--generate", "man"]);
    assert!(page.starts_with(".TH TCPKALI 1 "), "{}", &page[..40]);
    for section in [
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "UNITS",
        "EXPRESSIONS",
        "EXIT STATUS",
        "EXAMPLES",
        "DIFFERENCES FROM TCPKALI",
    ] {
        assert!(page.contains(&format!("\n.SH {section}\n")), "{section}");
    }
    let path = temp("tcpkali.1");
    std::fs::write(&path, &page).expect("write page");
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out.expect("groff (.ci/run installs groff-base)");
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && warnings.is_empty(), "{warnings}");
}

/// Runs `script` in a non-interactive bash after sourcing the completion.
fn in_bash_with_completion(script: &str) -> String {
    let file = temp("completion.bash");
    std::fs::write(&file, stdout_of(&["--generate", "complete-bash"])).expect("write");
    let out = Command::new("bash")
        .arg("--norc")
        .arg("-c")
        .arg(format!("source \"$0\" || exit 9\n{script}"))
        .arg(&file)
        .output()
        .expect("bash");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_bash_completion_registers_and_completes() {
    let spec = in_bash_with_completion("complete -p tcpkali");
    assert_eq!(spec.trim(), "complete -F _tcpkali tcpkali");
    let complete = |words: &str| {
        in_bash_with_completion(&format!(
            "COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _tcpkali; echo \"${{COMPREPLY[*]}}\""
        ))
        .trim()
        .to_string()
    };
    assert_eq!(complete("tcpkali --latency-f"), "--latency-first-byte");
    assert_eq!(complete("tcpkali --nagle ''"), "on off");
    assert_eq!(complete("tcpkali --listen-mode=a"), "active");
    assert_eq!(
        complete("tcpkali --generate c"),
        "complete-bash complete-zsh"
    );
    assert_eq!(complete("tcpkali me"), "merge");
}

#[test]
fn the_zsh_completion_registers() {
    let dir = temp("zsh-functions");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("_tcpkali"),
        stdout_of(&["--generate", "complete-zsh"]),
    )
    .expect("write");
    // As installed: a file in $fpath that compinit picks up; and sourced.
    let out = Command::new("zsh")
        .arg("-f")
        .arg("-c")
        .arg(
            "fpath=(\"$0\" $fpath); autoload -Uz compinit; compinit -u -D || exit 9\n\
             print -r -- \"fpath:$_comps[tcpkali]\"\n\
             unset '_comps[tcpkali]'; source \"$0/_tcpkali\" || exit 8\n\
             print -r -- \"sourced:$_comps[tcpkali]\"",
        )
        .arg(&dir)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.expect("zsh (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text, "fpath:_tcpkali\nsourced:_tcpkali\n");
}

#[test]
fn an_unknown_generator_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["--generate", "fish"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--generate=fish"), "{err}");
}
