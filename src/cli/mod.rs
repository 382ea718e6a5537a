//! Command line: one table of flags, a getopt_long-style scanner over it,
//! the per-option checks and the cross-option checks (spec §1).
//!
//! [`parse`] runs the pieces in that order. Each lives in a file of its own
//! that imports only files listed before it here, so that none of them
//! needs this one: `config` and `units` (what a run is, how values are
//! written), `outcome` (what parsing returns), `flags` (the table and the
//! help texts), `man` and `complete` (the table as a manual page and as
//! completion scripts), `scan` (argv to occurrences), `values`, `address`,
//! `stage` and `threshold` (the syntax of one value), `apply` (what each option does) and
//! `validate` (the options together).
//!
//! Deliberate differences from tcpkali 1.1 (spec §11): `-h`/`--help` exit 0,
//! `--listen-mode=silent` is accepted, every malformed value is an error,
//! `-e` applies to all message options wherever it appears, `\\` unescapes
//! to one backslash, and `-l` accepts port 65535 and `[v6]:port`.

mod address;
mod apply;
mod complete;
pub mod config;
mod flags;
mod man;
mod outcome;
mod scan;
mod stage;
mod start;
mod threshold;
pub mod units;
mod validate;
mod values;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use apply::State;
use scan::{scan, Item};
use validate::validate;

pub use address::parse_listen;
pub use outcome::{Action, CliError, Parsed};

/// Parses the command line (`args` without the program name).
pub fn parse(args: &[OsString]) -> Result<Action, CliError> {
    let raw: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let (items, scan_error) = scan(&raw);
    let mut state = State::new();
    // Options first, left to right (so `--help` acts even when an operand
    // or a later option is bad), then the operands, as getopt permutes them.
    let mut operands = Vec::new();
    for item in &items {
        match item {
            Item::Operand(text) => operands.push(*text),
            Item::Opt(occ) => {
                if let Some(action) = state.apply(occ)? {
                    return Ok(action);
                }
            }
        }
    }
    if let Some(error) = scan_error {
        return Err(error);
    }
    for text in operands {
        state.operand(text)?;
    }
    if let Some(option) = state.unsupported.take() {
        return Err(CliError::NotSupported { option });
    }
    state.finish_snippets()?;
    state.finish_ssl();
    if state.opts.latency.target.is_some() && !state.duration_given {
        // The search runs until it has an answer.
        state.opts.duration = None;
    }
    if !state.opts.stages.is_empty() && !state.duration_given {
        // The stages end the run; a longer -T holds their last values.
        let total = state.opts.stages.iter().map(|s| s.duration).sum();
        state.opts.duration = Some(total);
    }
    let State {
        mut opts,
        mut notes,
        ..
    } = state;
    validate(&mut opts, &mut notes)?;
    Ok(Action::Run(Parsed {
        options: opts,
        notes,
    }))
}
#[cfg(test)]
mod tests {
    use super::config::{DestSpec, ListenSpec, Options, Snippet, SslOptions};
    use super::flags::help_text;
    use super::*;
    use crate::content::expr::Template;
    use std::time::Duration;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn run(list: &[&str]) -> Parsed {
        match parse(&args(list)) {
            Ok(Action::Run(p)) => p,
            Ok(other) => panic!("{list:?}: expected a run, got {other:?}"),
            Err(e) => panic!("{list:?}: unexpected error: {e}"),
        }
    }

    fn opts(list: &[&str]) -> Options {
        run(list).options
    }

    fn err(list: &[&str]) -> CliError {
        match parse(&args(list)) {
            Ok(a) => panic!("{list:?}: expected an error, got {a:?}"),
            Err(e) => {
                assert_eq!(e.exit_code(), 64);
                let text = e.to_string();
                assert!(!text.contains('\n'), "{list:?}: more than one line: {text}");
                e
            }
        }
    }

    fn err_text(list: &[&str]) -> String {
        err(list).to_string()
    }

    /// What a snippet renders to (client side, connection 1).
    fn render(t: &Template) -> Vec<u8> {
        let mut rng = oorandom::Rand32::new(1);
        let mut ctx = crate::content::expr::RenderCtx {
            uid: 1,
            ptr: 0,
            rng: &mut rng,
            client_side: true,
        };
        let mut out = Vec::new();
        t.render(&mut ctx, &mut out, &mut Vec::new());
        out
    }

    fn data(snippets: &[Snippet]) -> Vec<Vec<u8>> {
        snippets.iter().map(|s| render(&s.template)).collect()
    }

    fn message(o: &Options) -> Vec<u8> {
        o.messages
            .iter()
            .flat_map(|s| render(&s.template))
            .collect()
    }

    fn temp_file(name: &str, content: &[u8]) -> String {
        let path = std::env::temp_dir().join(format!("tcpkali-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, content).expect("write temp file");
        path.to_str().expect("utf-8 temp path").to_string()
    }

    #[test]
    fn defaults() {
        let o = opts(&["127.0.0.1:80"]);
        let want = Options {
            destinations: o.destinations.clone(),
            ..Options::default()
        };
        assert_eq!(o, want);
        assert_eq!(o.verbosity, 0);
        assert_eq!(o.duration, Some(Duration::from_secs(10)));
        assert!(run(&["127.0.0.1:80"]).notes.is_empty());
    }

    #[test]
    fn help_and_version() {
        match parse(&args(&["-h"])) {
            Ok(Action::Help(t)) => assert_eq!(t, help_text(false)),
            other => panic!("{other:?}"),
        }
        match parse(&args(&["--help"])) {
            Ok(Action::Help(t)) => assert_eq!(t, help_text(true)),
            other => panic!("{other:?}"),
        }
        match parse(&args(&["--vers"])) {
            Ok(Action::Version(t)) => assert!(t.starts_with("tcpkali version ")),
            other => panic!("{other:?}"),
        }
        // Help wins over a later bad option, as it is processed first,
        // and over bad operands, which are processed after all options.
        assert!(matches!(
            parse(&args(&["--help", "--bogus"])),
            Ok(Action::Help(_))
        ));
        assert!(matches!(parse(&args(&["h:0", "-h"])), Ok(Action::Help(_))));
        assert!(matches!(
            parse(&args(&["--bogus", "--help"])),
            Err(CliError::UnknownOption { .. })
        ));
    }
    #[test]
    fn bundled_short_options() {
        let o = opts(&["-em", "a\\tb", "h:1"]);
        assert_eq!(data(&o.messages), vec![b"a\tb".to_vec()]);
        let o = opts(&["-me", "h:1"]);
        assert_eq!(data(&o.messages), vec![b"e".to_vec()]);
        assert_eq!(o.destinations.len(), 1);
        assert_eq!(opts(&["-vvv", "h:1"]).verbosity, 3);
        assert_eq!(opts(&["-vvvvv", "h:1"]).verbosity, 3);
        assert_eq!(opts(&["-c10", "h:1"]).connections, 10);
        assert_eq!(opts(&["-vc2", "h:1"]).connections, 2);
        assert_eq!(opts(&["-vc2", "h:1"]).verbosity, 1);
        // -d is not supported yet, but the bundle is split first: a bad
        // value after it is reported, a good line then fails on -d.
        assert_eq!(
            err_text(&["-dvc2q", "h:1"]),
            "--connections=2q: unknown unit \"q\" (expected a number with optional k or m)"
        );
        let o = opts(&["-dvc2", "h:1"]);
        assert!(o.dump.one_in && o.dump.one_out);
        assert_eq!((o.verbosity, o.connections), (1, 2));
    }

    #[test]
    fn long_values() {
        assert_eq!(
            opts(&["--duration=5s", "h:1"]).duration,
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            opts(&["--duration", "5", "h:1"]).duration,
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            opts(&["-T", "1.5m", "h:1"]).duration,
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            opts(&["-T250ms", "-c", "0", "h:1"]).duration,
            Some(Duration::from_millis(250))
        );
        assert_eq!(opts(&["-T", "inf", "h:1"]).duration, None);
        assert_eq!(opts(&["-T", "-1", "h:1"]).duration, None);
        assert_eq!(opts(&["--duration=inf", "h:1"]).duration, None);
        assert_eq!(opts(&["--duration=-1", "h:1"]).duration, None);
        // An empty value given with '=' is a value, and a bad one.
        assert!(err_text(&["--duration=", "h:1"]).starts_with("--duration=: empty value"));
        // A required value may start with '-'.
        assert_eq!(
            err_text(&["--connect-rate", "-3", "h:1"]),
            "--connect-rate=-3: expected a rate > 0"
        );
    }

    #[test]
    fn duration_errors() {
        assert!(err_text(&["-T", "5x", "h:1"]).starts_with("--duration=5x: unknown unit \"x\""));
        assert!(err_text(&["-T", "1x", "h:1"]).starts_with("--duration=1x:"));
        assert!(err_text(&["-T", "0", "h:1"]).contains("expected a time > 0"));
        assert!(err_text(&["-T", "-2", "h:1"]).contains("expected a time > 0"));
        assert!(err_text(&["-T", "-0.5", "h:1"]).contains("expected a time > 0"));
        assert!(err_text(&["-T", "1e300y", "h:1"]).contains("too large"));
        assert!(err_text(&["-T", "1e-30", "h:1"]).contains("too small"));
        assert!(err_text(&["-T", " 5", "h:1"]).contains("whitespace"));
    }

    #[test]
    fn long_prefixes() {
        assert_eq!(
            opts(&["--dur=5", "h:1"]).duration,
            Some(Duration::from_secs(5))
        );
        assert_eq!(opts(&["--connections", "3", "h:1"]).connections, 3);
        assert_eq!(opts(&["--connecti=3", "h:1"]).connections, 3);
        let e = err(&["--conn=2", "h:1"]);
        assert!(matches!(e, CliError::AmbiguousOption { .. }));
        assert_eq!(
            e.to_string(),
            "--conn=2: ambiguous option, could be --connections, --connect-rate, --connect-timeout"
        );
        // Aliases of one option are not ambiguous with each other...
        assert!(opts(&["--webs", "h:1"]).websocket);
        // ...but are with other options.
        assert!(matches!(
            err(&["--w", "h:1"]),
            CliError::AmbiguousOption { .. }
        ));
        // An exact name always wins over longer names it prefixes.
        assert!(opts(&["--ws", "h:1"]).websocket);
        assert_eq!(
            opts(&["--message", "x", "h:1"]).messages[0].origin,
            "--message"
        );
        // --dump-one is exact although --dump-one-in/-out extend it.
        let d = opts(&["--dump-one", "h:1"]).dump;
        assert!(d.one_in && d.one_out && !d.all_in);
        // --statsd is exact although --statsd-host & co. extend it.
        assert!(opts(&["--statsd", "h:1"]).statsd.enabled);
        assert_eq!(
            err_text(&["--bogus", "h:1"]),
            "--bogus: unknown option. See -h or --help."
        );
        assert!(matches!(
            err(&["--", "-c"]),
            CliError::BadDestination { .. }
        ));
        assert!(matches!(err(&["--=3"]), CliError::UnknownOption { .. }));
        assert_eq!(
            err_text(&["--ws=1", "h:1"]),
            "--ws=1: this option does not take a value"
        );
    }

    #[test]
    fn permutation_and_double_dash() {
        let o = opts(&["h:1", "-c", "4", "g:2", "-v"]);
        assert_eq!(o.connections, 4);
        assert_eq!(o.verbosity, 1);
        let hosts: Vec<&str> = o.destinations.iter().map(|d| d.host.as_str()).collect();
        assert_eq!(hosts, ["h", "g"]);
        let e = err(&["-c", "2", "--", "h:1", "-v"]);
        assert_eq!(
            e.to_string(),
            "destination -v: expected :port specification"
        );
        let o = opts(&["--", "h:1", "g:2"]);
        assert_eq!(o.destinations.len(), 2);
    }

    #[test]
    fn lone_dash_is_an_operand() {
        assert_eq!(
            err_text(&["-"]),
            "destination -: expected :port specification"
        );
    }

    #[test]
    fn unknown_and_missing() {
        assert_eq!(
            err_text(&["-x", "h:1"]),
            "-x: unknown option. See -h or --help."
        );
        assert_eq!(
            err_text(&["-vx", "h:1"]),
            "-x (in -vx): unknown option. See -h or --help."
        );
        assert!(matches!(err(&["h:1", "-c"]), CliError::MissingValue { .. }));
        assert_eq!(err_text(&["h:1", "-c"]), "-c: missing value (expected <N>)");
        assert_eq!(
            err_text(&["h:1", "--message"]),
            "--message: missing value (expected <string>)"
        );
    }

    #[test]
    fn bad_units() {
        assert_eq!(
            err_text(&["-c", "1q", "h:1"]),
            "--connections=1q: unknown unit \"q\" (expected a number with optional k or m)"
        );
        assert_eq!(
            err_text(&["--connections=1q", "h:1"]),
            "--connections=1q: unknown unit \"q\" (expected a number with optional k or m)"
        );
        assert!(err_text(&["-c", "-1", "h:1"]).contains(">= 0"));
        assert!(err_text(&["-c", "1e30", "h:1"]).contains("too large"));
        assert!(err_text(&["--connect-rate", "0", "h:1"]).contains("> 0"));
        assert!(err_text(&["--connect-timeout", "0", "h:1"]).contains("> 0"));
        assert!(err_text(&["--channel-lifetime", "-1", "h:1"]).contains(">= 0"));
        assert!(err_text(&["--delay-send", "x", "h:1"]).starts_with("--delay-send=x: not a number"));
        assert!(err_text(&["--delay-send", "-1", "h:1"]).contains(">= 0"));
        assert!(err_text(&["--sndbuf", "0", "h:1"]).contains("> 0"));
        assert!(err_text(&["--rcvbuf", "1g", "h:1"]).contains("unknown unit"));
        assert!(err_text(&["--rcvbuf", "4096m", "h:1"]).contains("too large"));
        assert!(err_text(&["--nagle", "yes", "h:1"]).contains("\"on\" or \"off\""));
        assert!(err_text(&["--write-combine", "no", "h:1"]).contains("\"on\" or \"off\""));
        assert!(err_text(&["--listen-mode", "loud", "h:1"]).contains("silent"));
        assert!(err_text(&["--verbose", "4", "h:1"]).contains("0..3"));
        assert!(err_text(&["--verbose", "x", "h:1"]).contains("0..3"));
        assert!(err_text(&["-w", "0", "h:1"]).contains("1..1024"));
        assert!(err_text(&["-w", "1025", "h:1"]).contains("1..1024"));
        assert!(err_text(&["-w", "2x", "h:1"]).contains("1..1024"));
        assert!(err_text(&["-ws", "h:1"]).contains("--ws"));
    }

    #[test]
    fn unit_values() {
        let o = opts(&[
            "-c1.5k",
            "--connect-rate=0.25k",
            "--connect-timeout=250ms",
            "--channel-lifetime=0",
            "--delay-send=1.5s",
            "--sndbuf=64k",
            "--rcvbuf=1m",
            "-T",
            "1h",
            "h:1",
        ]);
        assert_eq!(o.connections, 1500);
        assert_eq!(o.connect_rate, 250.0);
        assert_eq!(o.connect_timeout, Duration::from_millis(250));
        assert_eq!(o.channel_lifetime, Some(Duration::ZERO));
        assert_eq!(o.delay_send, Duration::from_millis(1500));
        assert_eq!(o.sndbuf, Some(65536));
        assert_eq!(o.rcvbuf, Some(1_048_576));
        assert_eq!(
            opts(&["-c", "5k", "--connect-rate=1m", "h:1"]).connections,
            5000
        );
        assert_eq!(opts(&["-c", "0", "h:1"]).connections, 0);
        // A fraction of a connection, or of a marker, is no count.
        for bad in [
            &["-c1.5", "h:1"][..],
            &["--latency-marker-skip=1e30", "h:1"][..],
        ] {
            let e = err(bad).to_string();
            assert!(e.contains("whole number") || e.contains("too many"), "{e}");
        }
    }

    #[test]
    fn simple_options() {
        let o = opts(&[
            "--verbose=2",
            "-v",
            "-w",
            "4",
            "--nagle",
            "on",
            "--source-ip",
            "10.0.0.1",
            "--source-ip=::1",
            "--listen-mode=active",
            "-l",
            "8080",
            "h:1",
        ]);
        assert_eq!(o.verbosity, 3);
        assert_eq!(o.workers, Some(4));
        assert_eq!(o.nagle, Some(true));
        assert_eq!(o.source_ips, ["10.0.0.1", "::1"]);
        assert!(o.listen_active);
        assert!(!opts(&["--listen-mode=silent", "h:1"]).listen_active);
        assert_eq!(opts(&["-w1024", "h:1"]).workers, Some(1024));
    }

    #[test]
    fn write_combine_notes() {
        let p = run(&["--write-combine=on", "h:1"]);
        assert!(p.options.write_combine);
        assert_eq!(p.notes, ["NOTE: --write-combine on is a default setting"]);
        let p = run(&["--write-combine=off", "h:1"]);
        assert!(!p.options.write_combine);
        assert_eq!(p.options.nagle, Some(false));
        assert_eq!(p.notes, ["NOTE: --write-combine=off presumes --nagle=off."]);
        let p = run(&["--write-combine=off", "--nagle=on", "h:1"]);
        assert_eq!(p.options.nagle, Some(true));
        assert_eq!(
            p.notes,
            ["WARNING: --write-combine=off makes little sense with --nagle=on."]
        );
        let p = run(&["--nagle=off", "--write-combine=off", "h:1"]);
        assert!(p.notes.is_empty());
    }

    #[test]
    fn destinations() {
        let d = &opts(&["[::1]:8080"]).destinations[0];
        assert_eq!(
            *d,
            DestSpec {
                host: "::1".into(),
                port: "8080".into(),
                path: "".into(),
                host_port: "[::1]:8080".into(),
            }
        );
        let d = &opts(&["127.1:80/some/path"]).destinations[0];
        assert_eq!(
            *d,
            DestSpec {
                host: "127.1".into(),
                port: "80".into(),
                path: "some/path".into(),
                host_port: "127.1:80".into(),
            }
        );
        let d = &opts(&["[fe80::1%lo]:http/x"]).destinations[0];
        assert_eq!(d.host, "fe80::1%lo");
        assert_eq!(d.port, "http");
        assert_eq!(d.path, "x");
        assert_eq!(d.host_port, "[fe80::1%lo]:http");
        let d = &opts(&["example.org:smtp"]).destinations[0];
        assert_eq!((d.host.as_str(), d.port.as_str()), ("example.org", "smtp"));
        let d = &opts(&["h:65535/"]).destinations[0];
        assert_eq!((d.port.as_str(), d.path.as_str()), ("65535", ""));
    }

    #[test]
    fn destination_errors() {
        assert_eq!(
            err_text(&["127.0.0.1:0"]),
            "destination 127.0.0.1:0: port out of range (expected 1..65535)"
        );
        assert_eq!(
            err_text(&["127.0.0.1:70000"]),
            "destination 127.0.0.1:70000: port out of range (expected 1..65535)"
        );
        assert!(err_text(&["127.0.0.1:99999999999999999999"]).contains("out of range"));
        assert!(err_text(&["127.0.0.1"]).contains("expected :port"));
        assert!(err_text(&["127.0.0.1:"]).contains("missing port"));
        assert!(err_text(&["127.0.0.1:/x"]).contains("missing port"));
        assert!(err_text(&[":80"]).contains("empty host"));
        assert!(err_text(&["::1:80"]).contains("empty host"));
        assert!(err_text(&["[]:80"]).contains("empty host"));
        assert!(err_text(&["[::1]"]).contains("expected :port"));
        assert!(err_text(&["[::1:80"]).contains("missing ']'"));
        assert!(err_text(&["[::1]80"]).contains("expected :port"));
    }

    #[test]
    fn listen_port() {
        let l = opts(&["-l", "8080"]).listen;
        assert_eq!(
            l,
            Some(ListenSpec {
                host: None,
                port: 8080
            })
        );
        let l = opts(&["-l127.1:65535"]).listen;
        assert_eq!(
            l,
            Some(ListenSpec {
                host: Some("127.1".into()),
                port: 65535
            })
        );
        let l = opts(&["--listen-port=[::1]:99"]).listen;
        assert_eq!(
            l,
            Some(ListenSpec {
                host: Some("::1".into()),
                port: 99
            })
        );
        // The last -l wins.
        assert_eq!(opts(&["-l1", "-l2"]).listen.map(|l| l.port), Some(2));
        assert_eq!(
            err_text(&["-l", "0"]),
            "--listen-port=0: port out of range (expected 1..65535)"
        );
        assert!(err_text(&["-l", "65536"]).contains("out of range"));
        assert!(err_text(&["-l", "http"]).contains("expected :port"));
        assert!(err_text(&["-l", "h:http"]).contains("not a number"));
        assert!(err_text(&["-l", ""]).contains("expected :port"));
        assert!(err_text(&["-l", "h:"]).contains("missing port"));
    }

    #[test]
    fn no_destination() {
        assert_eq!(
            err_text(&[]),
            "Expecting target <host:port> or --listen-port. See -h or --help."
        );
        assert_eq!(
            err_text(&["-c", "5"]),
            "Expecting target <host:port> or --listen-port. See -h or --help."
        );
        // Listening only: connections forced to 0, no feasibility check.
        let o = opts(&["-c", "1000", "--connect-rate=1", "-l", "9"]);
        assert_eq!(o.connections, 0);
    }

    #[test]
    fn connect_rate_feasibility() {
        assert_eq!(
            err_text(&["-c", "100", "--connect-rate", "10", "-T", "5", "h:1"]),
            "100 connections can not be opened at a rate 10 within test duration 5. \
             Decrease --connections=100, or increase --duration=5 or --connect-rate=10."
        );
        let p = run(&["-c", "100", "--connect-rate", "10", "-T", "50", "h:1"]);
        assert_eq!(
            p.notes,
            [
                "WARNING: 100 connections might not be opened at a rate 10 within test duration 50.",
                "Decrease --connections=100, or increase --duration=50 or --connect-rate=10."
            ]
        );
        assert!(
            run(&["-c", "100", "--connect-rate", "10", "-T", "100", "h:1"])
                .notes
                .is_empty()
        );
        // Infinite duration or no connections: no check.
        assert!(
            run(&["-c", "1m", "--connect-rate", "1", "-T", "inf", "h:1"])
                .notes
                .is_empty()
        );
        assert!(run(&["-c", "0", "-T", "0.001", "h:1"]).notes.is_empty());
        assert!(
            err_text(&["-c", "4", "--connect-rate=2", "-T", "1.5", "h:1"])
                .contains("test duration 1.5.")
        );
    }

    #[test]
    fn messages_in_order_and_unescaped_everywhere_but_in_files() {
        let f = temp_file("order", b"F\\n");
        let o = opts(&[
            "-m",
            "a\\n",
            "-1",
            "one",
            "-f",
            &f,
            "--first-message",
            "two\\x41",
            "-m",
            "b",
            "-e",
            "h:1",
        ]);
        let _ = std::fs::remove_file(&f);
        assert_eq!(
            data(&o.messages),
            vec![b"a\n".as_slice(), b"F\\n".as_slice(), b"b".as_slice()]
        );
        assert_eq!(
            data(&o.first_messages),
            vec![b"one".as_slice(), b"twoA".as_slice()]
        );
        assert_eq!(o.messages[0].origin, "--message");
        assert_eq!(o.messages[1].origin, format!("--message-file={f}"));
        assert_eq!(o.first_messages[0].origin, "--first-message");
        assert_eq!(message(&o), b"a\nF\\nb");
        // Without -e the data is kept as typed.
        let o = opts(&["-m", "a\\n", "h:1"]);
        assert_eq!(message(&o), b"a\\n");
    }

    #[test]
    fn first_message_file_and_empty_file() {
        let f = temp_file("first", b"");
        let p = run(&["--first-message-file", &f, "h:1"]);
        let _ = std::fs::remove_file(&f);
        assert_eq!(data(&p.options.first_messages), vec![b"".to_vec()]);
        assert_eq!(p.notes, [format!("{f}: Warning: file has no content")]);
    }

    #[test]
    fn a_statsd_namespace_too_long_for_a_datagram_is_refused() {
        let ns = "n".repeat(1024);
        assert_eq!(
            opts(&["--statsd-namespace", &ns, "h:1"]).statsd.namespace,
            ns
        );
        let text = err_text(&["--statsd-namespace", &"n".repeat(1025), "h:1"]);
        assert!(
            text.starts_with("--statsd-namespace: 1025 bytes, more than 1024"),
            "{text}"
        );
    }

    #[test]
    fn missing_message_file() {
        let e = err(&["-f", "/nonexistent/tcpkali-msg", "h:1"]);
        assert!(matches!(e, CliError::MessageFile(_)));
        let text = e.to_string();
        assert!(
            text.starts_with("--message-file=\"/nonexistent/tcpkali-msg\": "),
            "{text}"
        );
        assert!(text.contains("No such file or directory"), "{text}");
        let text = err_text(&["--first-message-file=/nonexistent/x", "h:1"]);
        assert!(text.starts_with("--first-message-file="), "{text}");
    }

    #[test]
    fn expressions_are_parsed_and_errors_name_the_option() {
        let o = opts(&["-m", "GET /image-\\{connection.uid%10}.jpg", "h:1"]);
        assert_eq!(message(&o), b"GET /image-1.jpg");
        assert_eq!(
            err_text(&["-1", "\\{bogus}", "h:1"]),
            "--first-message: unknown expression \"\\{bogus}\""
        );
        assert!(err_text(&["-m", "\\{connection.uid % 0}", "h:1"])
            .starts_with("--message: modulo by zero"));
        // Files are sent as they are: a binary file may contain `\{`.
        let f = temp_file("expr", b"x\\{re [z-a]}");
        let o = opts(&["-f", &f, "-e", "h:1"]);
        let _ = std::fs::remove_file(&f);
        assert_eq!(message(&o), b"x\\{re [z-a]}");
        // A plain brace is fine.
        assert_eq!(message(&opts(&["-m", "{}", "h:1"])), b"{}");
        // A message marker switches message-marker mode on.
        assert!(opts(&["-m", "\\{message.marker}", "h:1"]).message_marker);
    }

    #[test]
    fn a_rate_needs_messages_that_cannot_be_empty() {
        assert!(err_text(&["-r", "1", "-m", "\\{re a{0,3}}", "h:1"]).contains("zero length"));
        assert_eq!(
            opts(&["-r", "1", "-m", "\\{re a{1,3}}", "h:1"]).message_rate,
            Some(1.0)
        );
    }

    #[test]
    fn rates_and_bandwidths_are_parsed_with_units() {
        let o = opts(&["-r", "2.5k", "-m", "x", "h:1"]);
        assert_eq!(o.message_rate, Some(2500.0));
        let o = opts(&[
            "--channel-bandwidth-upstream=100kbps",
            "--channel-bandwidth-downstream",
            "2MBps",
            "h:1",
        ]);
        assert_eq!(o.bandwidth_up, Some(12_500.0));
        assert_eq!(o.bandwidth_down, Some(2_000_000.0));
        assert_eq!(
            opts(&["--channel-bandwidth-downstream=0", "h:1"]).bandwidth_down,
            Some(0.0)
        );
    }

    #[test]
    fn rate_needs_a_message_and_excludes_upstream_bandwidth() {
        assert!(err_text(&["-r", "5", "h:1"]).contains("makes no sense without --message"));
        assert!(err_text(&[
            "-r",
            "5",
            "-m",
            "x",
            "--channel-bandwidth-upstream=1kBps",
            "h:1"
        ])
        .contains("--channel-bandwidth-upstream"));
    }

    #[test]
    fn websocket_headers_need_ws_and_messages_become_frames() {
        assert!(err_text(&["-H", "X: y", "h:1"]).contains("--ws"));
        let o = opts(&[
            "--ws",
            "-H",
            "X-Id: \\{connection.uid}",
            "-m",
            "hi",
            "h:1/p/q",
        ]);
        assert_eq!(o.ws_headers.len(), 1);
        // The message is one text frame (masked on the client side).
        let framed = message(&o);
        assert_eq!(framed[0], 0x81);
        assert_eq!(framed[1], 0x80 | 2);
        assert_eq!(framed.len(), 2 + 4 + 2);
        let r = run(&["--ws", "-H", "1X: b", "h:1"]);
        assert!(
            r.notes.iter().any(|n| n.contains("starts with '1'")),
            "{:?}",
            r.notes
        );
    }

    #[test]
    fn statsd_options_and_window_checks() {
        let o = opts(&[
            "--statsd",
            "--statsd-host=h",
            "--statsd-port=9",
            "--statsd-namespace=n",
            "h:1",
        ]);
        assert!(o.statsd.enabled);
        assert_eq!(
            (
                o.statsd.host.as_str(),
                o.statsd.port,
                o.statsd.namespace.as_str()
            ),
            ("h", 9, "n")
        );
        assert!(err_text(&["--statsd-latency-window=20s", "-T10s", "h:1"]).contains("exceeds"));
        assert!(err_text(&["--statsd-latency-window=0.2s", "h:1"]).contains("too small"));
    }

    #[test]
    fn unsupported_options() {
        assert!(err_text(&["-r", "@5ms", "-m", "x", "h:1"])
            .contains("requires specifying --latency-marker"));
        let o = opts(&["-r", "@5ms", "-m", "x", "--latency-marker", "x", "h:1"]);
        assert_eq!(o.latency.target, Some((0.005, "5ms".to_string())));
        assert_eq!((o.message_rate, o.duration), (Some(100.0), None));
        let o = opts(&[
            "-T5s",
            "-r",
            "@5ms",
            "-m",
            "x",
            "--latency-marker",
            "x",
            "h:1",
        ]);
        assert_eq!(o.duration, Some(Duration::from_secs(5)));
        assert_eq!(
            err_text(&["-r", "1q", "h:1"]),
            "--message-rate=1q: unknown unit \"q\" (expected a number with optional k or m)"
        );
        assert!(err_text(&["-r", "@5x", "h:1"]).contains("unknown unit \"x\""));
        assert!(err_text(&["-r", "0", "h:1"]).contains("> 0"));
        assert!(err_text(&["-r", "@0", "h:1"]).contains("> 0"));
        // The first unsupported option is named, after the whole line parsed.
        assert_eq!(
            err_text(&["--ssl-cert=c", "--server=h:2", "--ssl", "h:1"]),
            "--server: not supported yet"
        );
        assert!(err_text(&["--server=h:2", "-c", "x", "h:1"]).starts_with("--connections=x"));
        // Even without a destination, the unsupported option is reported.
        assert_eq!(err_text(&["--server=h:2"]), "--server: not supported yet");
        for (line, want) in [
            (&["--channel-bandwidth-upstream=0"][..], "> 0"),
            (&["--channel-bandwidth-upstream=1x"], "unknown unit"),
            (&["--channel-bandwidth-downstream=-1"], ">= 0"),
            (&["--latency-marker-skip=-1"], ">= 0"),
            (&["--latency-marker="], "non-empty"),
            (&["--message-stop="], "non-empty"),
            (&["--latency-percentiles=50,,90"], "not a number"),
            (&["--latency-percentiles=101"], "0..100"),
            (&["--statsd-port=0"], "out of range"),
            (&["--statsd-port=x"], "1..65535"),
            (&["--statsd-latency-window=0"], "> 0"),
            (&["--server=localhost"], "host:port"),
            (&["-H", "a\nb"], "newline"),
        ] {
            let mut list = line.to_vec();
            list.push("h:1");
            let text = err_text(&list);
            assert!(text.contains(want), "{line:?}: {text}");
        }
        let e = err(&["--server=h:1", "h:1"]);
        assert!(matches!(e, CliError::NotSupported { .. }), "{e}");
    }

    #[test]
    fn ssl_takes_its_files_and_verification_along() {
        assert_eq!(opts(&["h:1"]).ssl, None);
        assert_eq!(opts(&["--ssl", "h:1"]).ssl, Some(SslOptions::default()));
        let o = opts(&["--ssl-cert", "c.pem", "--ssl-key=k.pem", "--ssl", "-l", "1"]);
        assert_eq!(
            o.ssl,
            Some(SslOptions {
                cert: Some("c.pem".into()),
                key: Some("k.pem".into()),
                verify: false,
                ca: None,
            })
        );
        let o = opts(&["--ssl", "--ssl-verify", "h:1"]);
        assert_eq!(o.ssl.map(|s| (s.verify, s.ca)), Some((true, None)));
        let o = opts(&["--ssl", "--ssl-ca=roots.pem", "h:1"]);
        assert_eq!(
            o.ssl.map(|s| (s.verify, s.ca)),
            Some((true, Some("roots.pem".into())))
        );
    }

    #[test]
    fn ssl_companions_without_ssl_only_warn() {
        let p = run(&["--ssl-key=k.pem", "--ssl-verify", "h:1"]);
        assert_eq!(p.options.ssl, None);
        assert_eq!(
            p.notes,
            ["WARNING: --ssl-key has no effect without --ssl".to_string()]
        );
    }

    #[test]
    fn ssl_file_options_need_a_name() {
        for option in ["--ssl-cert=", "--ssl-key=", "--ssl-ca="] {
            let text = err_text(&["--ssl", option, "h:1"]);
            assert!(text.ends_with("expected a file name"), "{text}");
        }
        assert!(matches!(err(&["--ssl-ca"]), CliError::MissingValue { .. }));
    }

    #[test]
    fn ssl_options_are_in_the_long_help() {
        let help = help_text(true);
        for option in [
            "--ssl ",
            "--ssl-cert",
            "--ssl-key",
            "--ssl-verify",
            "--ssl-ca",
        ] {
            assert!(help.contains(option), "{option} missing");
        }
        let ssl_lines: Vec<&str> = help.lines().filter(|l| l.contains("--ssl")).collect();
        assert!(
            ssl_lines.iter().all(|l| !l.contains("not supported")),
            "{ssl_lines:?}"
        );
    }

    #[test]
    fn non_utf8_is_an_error_not_a_panic() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'h', 0xff, b':', b'1']);
        let e = parse(&[bad]).expect_err("must fail");
        assert_eq!(e.to_string(), "destination h\\xff:1: not valid UTF-8");
        let e =
            parse(&[OsString::from("-c"), OsString::from_vec(vec![0xfe])]).expect_err("must fail");
        assert_eq!(
            e.to_string(),
            "--connections=\\xfe: value is not valid UTF-8"
        );
        let e = parse(&[OsString::from_vec(vec![b'-', 0xc3, 0xa9])]).expect_err("must fail");
        assert!(matches!(e, CliError::UnknownOption { .. }));
        // Message data may be any bytes.
        let o = match parse(&[
            OsString::from("-m"),
            OsString::from_vec(vec![0xff, 0x00]),
            OsString::from("h:1"),
        ]) {
            Ok(Action::Run(p)) => p.options,
            other => panic!("{other:?}"),
        };
        assert_eq!(message(&o), [0xff, 0x00]);
        // Control characters in a value stay on one line.
        assert_eq!(
            err_text(&["-c", "1\n2", "h:1"]),
            "--connections=1\\n2: unknown unit \"\\n2\" (expected a number with optional k or m)"
        );
    }

    #[test]
    fn no_panic_on_odd_input() {
        let odd = [
            "", "-", "--", "---", "-=", "--=", "-1", "-T", "[", "]", ":", "[:", "[]", "[]:", "é:1",
            "-é", "--é", "h:1/é", "%", "\u{0}", "-c\u{0}", "--c",
        ];
        for a in odd {
            for b in odd {
                let _ = parse(&args(&[a, b]));
            }
        }
    }
}
