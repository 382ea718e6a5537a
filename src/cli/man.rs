//! `tcpkali --generate man`: the manual page, in roff for `man -l`.
//!
//! The options come from the flag table, as in `--help`; the value units
//! from the help's own units text. The examples and the differences from
//! tcpkali are the README's sections, converted, so that the page and the
//! README cannot drift apart.

use super::flags::{Flag, Value, FLAGS, GROUPS, VALUE_HELP};

/// The README, whose "Examples" and "Differences from tcpkali" sections
/// the page carries.
const README: &str = include_str!("../../README.md");

/// The whole page, ending with a newline.
pub fn page() -> String {
    let mut out = String::new();
    out.push_str(&format!(
        ".TH TCPKALI 1 \"\" \"tcpkali {}\" \"User Commands\"\n",
        env!("CARGO_PKG_VERSION")
    ));
    // Option names must not be hyphenated across lines.
    out.push_str(".nh\n");
    out.push_str(".SH NAME\ntcpkali \\- fast TCP and WebSocket load generator and sink\n");
    synopsis(&mut out);
    description(&mut out);
    options(&mut out);
    units(&mut out);
    out.push_str(EXPRESSIONS);
    out.push_str(EXIT_STATUS);
    examples(&mut out);
    differences(&mut out);
    out.push_str(SEE_ALSO);
    out
}

fn synopsis(out: &mut String) {
    out.push_str(
        ".SH SYNOPSIS\n\
         .B tcpkali\n\
         [\\fIOPTIONS\\fR] [\\fB\\-l\\fR [\\fIhost\\fR:]\\fIport\\fR] \
         [\\fIhost\\fR:\\fIport\\fR[/\\fIpath\\fR] ...]\n\
         .br\n\
         .B tcpkali merge\n\
         [\\fB\\-\\-json\\fR \\fIfile\\fR|\\fB\\-\\fR] \\fIreport.json\\fR ...\n\
         .br\n\
         .B tcpkali monitor\n\
         \\fIpid\\fR\n",
    );
}

fn description(out: &mut String) {
    out.push_str(
        ".SH DESCRIPTION\n\
         .B tcpkali\n\
         opens many TCP or WebSocket connections to the destinations given as operands \
         and sends messages on them, accepts connections on the ports given with \
         \\fB\\-l\\fR, or both at once. It counts the bytes and messages that flow, \
         measures latencies, and ends with a summary on standard output. It is a \
         rewrite of tcpkali 1.1 and takes the same command lines; see \
         \\fBDIFFERENCES FROM TCPKALI\\fR.\n\
         .PP\n\
         The run first opens the connections (ramp-up, at \\fB\\-\\-connect\\-rate\\fR), \
         then keeps them busy for \\fB\\-\\-duration\\fR (the steady state, which the \
         summary covers). Work is spread over worker processes, one per CPU by \
         default. SIGINT or SIGTERM ends the run with the summary.\n\
         .PP\n\
         Options follow the GNU getopt conventions: short options may be bundled \
         (\\fB\\-vvv\\fR, \\fB\\-em\\fR \\fItext\\fR) and take attached values \
         (\\fB\\-c10\\fR); long options take \\fB\\-\\-opt=\\fR\\fIvalue\\fR or \
         \\fB\\-\\-opt\\fR \\fIvalue\\fR and may be shortened to any unambiguous prefix \
         (\\fB\\-\\-dur=5s\\fR); options may follow the operands; \\fB\\-\\-\\fR ends \
         the options.\n\
         .PP\n\
         \\fBtcpkali merge\\fR adds up the \\fB\\-\\-json\\fR reports of runs made at the \
         same time on several hosts (histograms add exactly) and prints one summary. \
         \\fBtcpkali monitor\\fR follows the counters of a running tcpkali, given its \
         process id.\n",
    );
}

fn options(out: &mut String) {
    out.push_str(".SH OPTIONS\n");
    for (group, title) in GROUPS {
        out.push_str(&format!(".SS {}\n", escape(title)));
        for f in FLAGS.iter().filter(|f| f.group == *group) {
            option(out, f);
        }
    }
    out.push_str(
        ".PP\nOptions marked \\fI[not supported yet]\\fR are recognised and checked, \
         then refused.\n",
    );
}

fn option(out: &mut String, f: &Flag) {
    let mut names: Vec<String> = Vec::new();
    if let Some(short) = f.short {
        names.push(format!(
            "\\fB\\-{}\\fR",
            escape(&char::from(short).to_string())
        ));
    }
    let mut longs: Vec<&str> = f.long.to_vec();
    longs.sort_by_key(|l| l.len());
    names.extend(longs.iter().map(|l| format!("\\fB\\-\\-{}\\fR", escape(l))));
    let mut head = names.join(", ");
    if let Value::Required(p) = f.value {
        head.push(' ');
        head.push_str(&placeholder(p));
    }
    out.push_str(".TP\n");
    out.push_str(&line(&head));
    let mut text = escape(f.help);
    text.push('.');
    if !f.default.is_empty() {
        text.push_str(&format!(" Default: {}.", escape(f.default)));
    }
    if !f.supported {
        text.push_str(" \\fI[not supported yet]\\fR");
    }
    out.push_str(&line(&text));
}

/// `<N>` and `[<host>:]<port>` in italics, the fixed words of `on|off`
/// in bold.
fn placeholder(p: &str) -> String {
    if p.contains('<') {
        let mut out = String::new();
        let mut rest = p;
        while let Some(open) = rest.find('<') {
            out.push_str(&escape(&rest[..open]));
            let Some(close) = rest[open..].find('>') else {
                break;
            };
            let name = &rest[open + 1..open + close];
            out.push_str(&format!("\\fI{}\\fR", escape(name)));
            rest = &rest[open + close + 1..];
        }
        out.push_str(&escape(rest));
        out
    } else {
        p.split('|')
            .map(|w| format!("\\fB{}\\fR", escape(w)))
            .collect::<Vec<_>>()
            .join("|")
    }
}

/// The help's units table: a term in the first columns, its description
/// after, continuation lines indented.
fn units(out: &mut String) {
    out.push_str(
        ".SH UNITS\nValues with units are written as a number and an optional suffix, \
         without a space.\n",
    );
    for l in VALUE_HELP.lines().skip(1) {
        let body = l.trim_start();
        if body.is_empty() {
            continue;
        }
        if l.len() - body.len() <= 2 {
            let (term, desc) = body.split_once("  ").unwrap_or((body, ""));
            out.push_str(".TP\n");
            out.push_str(&line(&placeholder(term)));
            out.push_str(&line(&escape(desc.trim())));
        } else {
            out.push_str(&line(&escape(body)));
        }
    }
}

const EXPRESSIONS: &str = r#".SH EXPRESSIONS
Message texts (\fB\-m\fR, \fB\-1\fR, \fB\-\-latency\-marker\fR, \fB\-H\fR...) may hold expressions in \fB\e{\fR...\fB}\fR, evaluated once, per connection or per message. File contents (\fB\-f\fR, \fB\-\-first\-message\-file\fR) are sent as they are. With \fB\-e\fR the literal text is unescaped (\fB\en\fR, \fB\ex\fR\fIHH\fR, \fB\e0\fR\fIooo\fR...); quoted strings inside expressions always are.
.TP
\fB\e{<\fR\fIfile\fR\fB>}\fR
The file's bytes, read at start.
.TP
\fB\e{connection.uid}\fR, \fB\e{connection.ptr}\fR
A number unique to the connection across all workers, or an opaque per-connection token. \fB% \fR\fIn\fR takes either modulo \fIn\fR.
.TP
\fB\e{re\fR \fIregex\fR\fB}\fR, \fB\e{connection.re\fR \fIregex\fR\fB}\fR, \fB\e{global.re\fR \fIregex\fR\fB}\fR
A random string the regex matches: new for every message, once per connection, or once per run. The regex has literals, escapes, \fB.\fR, classes \fB[a\-z]\fR and \fB[^...]\fR, groups, \fB|\fR and the operators \fB? * + {\fR\fIn\fR\fB} {\fR\fIn\fR\fB,} {\fR\fIn\fR\fB,\fR\fIm\fR\fB}\fR (\fB*\fR and \fB+\fR repeat at most 16 times).
.TP
\fB\e{message.marker}\fR
A timestamp that a receiving tcpkali with \fB\-\-message\-marker\fR turns into message latency.
.TP
\fB\e{ws.\fR\fIop\fR \fIpayload\fR... \fIflag\fR...\fB}\fR
A complete WebSocket frame: \fIop\fR is \fBtext binary close ping pong continuation\fR, a payload is a quoted string or \fB<\fR\fIfile\fR\fB>\fR, flags are \fBrsv1 rsv2 rsv3\fR and \fB...\fR (no FIN).
.TP
\fB\e{raw\fR \fB"\fR\fItext\fR\fB"}\fR, \fB\e{raw <\fR\fIfile\fR\fB>}\fR, \fB\e{raw {\fR\fIexpr\fR\fB}}\fR
Bytes that are never framed as WebSocket messages.
"#;

const EXIT_STATUS: &str = r#".SH EXIT STATUS
.TP
.B 0
The run ended normally, also after SIGINT or SIGTERM. Outputs that could not be written are named by a last line on standard error that starts with \fBWARNING: not written:\fR.
.TP
.B 1
Ramp-up could not open the connections within the duration, a worker failed on its own or \fB\-\-max\-restarts\fR was reached (the summary and the report are still written), or \fBtcpkali merge\fR could not write its report.
.TP
.B 64
The command line is wrong; one line on standard error names the option.
.TP
.B 65
\fBtcpkali merge\fR: a report cannot be read or merged.
.TP
.B 69
A listening port cannot be bound.
.TP
.B 130
A second SIGINT or SIGTERM ended the run at once.
"#;

const SEE_ALSO: &str = r#".SH SEE ALSO
The README of the tcpkali (Rust) sources: reports, merging, soaks, benchmarks.
"#;

/// The lines of a README section, without its heading; empty when the
/// section is missing.
fn readme_section(title: &str) -> Vec<&'static str> {
    let heading = format!("## {title}");
    README
        .lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect()
}

/// The README's example block: each comment becomes a paragraph, the
/// commands below it an example.
fn examples(out: &mut String) {
    out.push_str(".SH EXAMPLES\n");
    let mut in_code = false;
    let mut commands: Vec<&str> = Vec::new();
    let mut comment = String::new();
    for l in readme_section("Examples") {
        if l.starts_with("```") {
            if in_code {
                flush_example(out, &mut comment, &mut commands);
                break;
            }
            in_code = true;
            continue;
        }
        if !in_code {
            continue;
        }
        if let Some(text) = l.strip_prefix('#') {
            if !commands.is_empty() {
                flush_example(out, &mut comment, &mut commands);
            }
            if !comment.is_empty() {
                comment.push(' ');
            }
            comment.push_str(text.trim());
        } else if !l.trim().is_empty() {
            commands.push(l);
        }
    }
}

fn flush_example(out: &mut String, comment: &mut String, commands: &mut Vec<&str>) {
    if !comment.is_empty() {
        out.push_str(".PP\n");
        out.push_str(&line(&inline_markdown(comment)));
    }
    if !commands.is_empty() {
        out.push_str(".PP\n.RS 4\n.nf\n");
        for c in commands.iter() {
            out.push_str(&line(&format!("\\f(CR{}\\fR", escape(c))));
        }
        out.push_str(".fi\n.RE\n");
    }
    comment.clear();
    commands.clear();
}

/// The README's bullet list of deliberate differences.
fn differences(out: &mut String) {
    out.push_str(".SH DIFFERENCES FROM TCPKALI\n");
    let mut item = String::new();
    let mut items = Vec::new();
    for l in readme_section("Differences from tcpkali") {
        if let Some(text) = l.strip_prefix("- ") {
            if !item.is_empty() {
                items.push(std::mem::take(&mut item));
            }
            item.push_str(text.trim());
        } else if l.starts_with("  ") && !item.is_empty() {
            item.push(' ');
            item.push_str(l.trim());
        } else if !l.trim().is_empty() && items.is_empty() && item.is_empty() {
            out.push_str(&line(&inline_markdown(l.trim())));
        }
    }
    if !item.is_empty() {
        items.push(item);
    }
    for i in items {
        out.push_str(".IP \\(bu 2\n");
        out.push_str(&line(&inline_markdown(&i)));
    }
}

/// Markdown code spans in bold, the rest escaped.
fn inline_markdown(text: &str) -> String {
    let mut out = String::new();
    for (n, part) in text.split('`').enumerate() {
        if n % 2 == 1 {
            out.push_str(&format!("\\fB{}\\fR", escape(part)));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

/// Text as roff reads it literally: backslashes, hyphens (so that options
/// copy and paste as typed) and characters beyond ASCII as escapes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&format!("\\[u{:04X}]", u32::from(c))),
        }
    }
    out
}

/// One line of text; roff would take a leading `.` or `'` for a request.
fn line(text: &str) -> String {
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}\n")
    } else {
        format!("{text}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_on_the_page() {
        let page = page();
        for f in FLAGS {
            for l in f.long {
                let name = format!("\\fB\\-\\-{}\\fR", escape(l));
                assert!(page.contains(&name), "--{l} missing");
            }
            if let Some(s) = f.short {
                assert!(page.contains(&format!("\\fB\\-{}\\fR", char::from(s))));
            }
        }
    }

    #[test]
    fn the_readme_sections_are_found() {
        let page = page();
        assert!(page.contains("tcpkali \\-l 8080 \\-T1h"), "examples");
        assert!(page.matches(".IP \\(bu 2\n").count() >= 10, "differences");
    }

    #[test]
    fn text_cannot_turn_into_requests() {
        assert_eq!(line(".x"), "\\&.x\n");
        assert_eq!(line("'x"), "\\&'x\n");
        assert_eq!(escape("a\\b-c\u{21c5}"), "a\\eb\\-c\\[u21C5]");
    }
}
