//! The HTML report (`tcpkali report RUN.json… -o FILE`, `--html FILE`): one
//! self-contained page, readable from disk with no network: styles inline,
//! no script, every chart an inline SVG drawn with `plotters`. Charts over
//! time come from the reports' series rows (latency percentiles, messages
//! asked and achieved, throughput, open connections, errors by kind, with
//! a mark where a worker restarted or a stage began); the latency
//! distribution is an HDR percentile plot; the summary lines and the
//! threshold verdicts follow. Several reports are overlaid, each in its
//! own colour. Plain data in, a string out.
//!
//! Every plotted series is a polyline of stroke width 2 (grid, axes and
//! marks use 1), so a reader of the page can count them.

use crate::supervisor::hdr::CompactHistogram;
use crate::supervisor::results::RunReport;
use plotters::prelude::*;
use std::fmt::Write as _;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 300;

/// Colours of the reports' series, report by report.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// One line of a chart: its legend and its points.
struct Line {
    label: String,
    colour: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One chart as inline SVG: `lines` over `x_label`, vertical marks at
/// `marks` (x, label); `log_x` draws x as given (already a log scale).
fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line],
    marks: &[(f64, String)],
) -> String {
    let drawn: Vec<&Line> = lines.iter().filter(|l| !l.points.is_empty()).collect();
    if drawn.is_empty() {
        return format!(
            "<p class=\"empty\">{}: nothing to draw.</p>\n",
            escape(title)
        );
    }
    let xs = drawn.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let ys = drawn.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let y1 = ys.fold(0.0f64, f64::max);
    let (x0, x1) = if x0 < x1 { (x0, x1) } else { (0.0, 1.0) };
    let y1 = if y1 > 0.0 { y1 * 1.1 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let Ok(mut c) = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, 0.0..y1)
        else {
            return String::new();
        };
        let _ = c
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .light_line_style(WHITE.mix(0.0))
            .draw();
        for (x, label) in marks {
            let mark = BLACK.mix(0.4);
            let _ = c.draw_series(std::iter::once(PathElement::new(
                vec![(*x, 0.0), (*x, y1)],
                mark.stroke_width(1),
            )));
            let _ = c.draw_series(std::iter::once(Text::new(
                label.clone(),
                (*x, y1 * 0.97),
                ("sans-serif", 11),
            )));
        }
        for l in &drawn {
            let style = l.colour.stroke_width(2);
            let series = if l.dashed {
                c.draw_series(DashedLineSeries::new(l.points.iter().copied(), 6, 4, style))
            } else {
                c.draw_series(LineSeries::new(l.points.iter().copied(), style))
            };
            if let Ok(s) = series {
                let colour = l.colour;
                s.label(l.label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
            }
        }
        let _ = c
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw();
        let _ = root.present();
    }
    format!(
        "<figure class=\"chart\" data-series=\"{}\">{svg}</figure>\n",
        drawn.len()
    )
}

/// x of each row: its middle, in seconds after the earliest row of all
/// reports; y from `value(row)` when it gives one.
fn over_time(
    report: &RunReport,
    origin: u64,
    value: impl Fn(&crate::supervisor::series::Row) -> Option<f64>,
) -> Vec<(f64, f64)> {
    report
        .series
        .iter()
        .filter_map(|r| {
            let x = r.t.saturating_sub(origin) as f64 + r.width as f64 / 2.0;
            value(r).map(|y| (x, y))
        })
        .collect()
}

/// The page for `reports` (named by `names`).
pub fn page(reports: &[RunReport], names: &[String]) -> String {
    let origin = reports
        .iter()
        .filter_map(|r| r.series.first().map(|row| row.t))
        .min()
        .unwrap_or(0);
    let colour = |i: usize| COLOURS[i % COLOURS.len()];
    let tag = |i: usize, what: &str| {
        if reports.len() > 1 {
            format!("{} {what}", names[i])
        } else {
            what.to_string()
        }
    };
    let mut body = String::new();
    let mut marks = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        for row in r.series.iter().filter(|row| row.restarts > 0) {
            let x = row.t.saturating_sub(origin) as f64;
            marks.push((
                x,
                format!(
                    "{}restart",
                    if reports.len() > 1 {
                        format!("{} ", names[i])
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        if let Some(first) = r.series.first() {
            let start = first.t.saturating_sub(origin) as f64;
            for s in &r.judgement.stages {
                marks.push((start + s.start_s, format!("stage {}", s.stage)));
            }
        }
    }
    let per_s =
        |n: f64, row: &crate::supervisor::series::Row| (row.span_s > 0.0).then(|| n / row.span_s);
    // Latency over time: p50 and p99 of each kind.
    let mut lines = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        let kinds: Vec<String> = r.latency.iter().map(|(k, _)| k.clone()).collect();
        for kind in kinds {
            for (p, dashed) in [(50, true), (99, false)] {
                let readout = |h: &CompactHistogram| if p == 50 { h.p50() } else { h.p99() };
                lines.push(Line {
                    label: tag(i, &format!("{kind} p{p}")),
                    colour: colour(i),
                    dashed,
                    points: over_time(r, origin, |row| {
                        let h = &row.latency.iter().find(|(k, _)| *k == kind)?.1;
                        Some(readout(h) as f64 / 1000.0)
                    }),
                });
            }
        }
    }
    body += &chart("Latency over time", "seconds", "ms", &lines, &marks);
    let mut lines = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        lines.push(Line {
            label: tag(i, "sent"),
            colour: colour(i),
            dashed: false,
            points: over_time(r, origin, |row| per_s(row.msgs_sent as f64, row)),
        });
        lines.push(Line {
            label: tag(i, "asked"),
            colour: colour(i),
            dashed: true,
            points: over_time(r, origin, |row| per_s(row.msgs_asked?, row)),
        });
    }
    body += &chart(
        "Messages per second",
        "seconds",
        "messages/s",
        &lines,
        &marks,
    );
    let mut lines = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        for (what, dashed, bytes) in [
            (
                "received",
                false,
                (|row: &crate::supervisor::series::Row| row.bytes_rcvd) as fn(&_) -> u64,
            ),
            ("sent", true, |row| row.bytes_sent),
        ] {
            lines.push(Line {
                label: tag(i, what),
                colour: colour(i),
                dashed,
                points: over_time(r, origin, |row| per_s(bytes(row) as f64 * 8.0 / 1e6, row)),
            });
        }
    }
    body += &chart("Throughput", "seconds", "Mbps", &lines, &marks);
    let mut lines = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        lines.push(Line {
            label: tag(i, "open"),
            colour: colour(i),
            dashed: false,
            points: over_time(r, origin, |row| Some((row.open_out + row.open_in) as f64)),
        });
    }
    body += &chart("Open connections", "seconds", "connections", &lines, &marks);
    let mut lines = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        let mut kinds: Vec<String> = r
            .series
            .iter()
            .flat_map(|row| row.errors.iter().map(|(k, _)| k.clone()))
            .collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            lines.push(Line {
                label: tag(i, &kind),
                colour: colour(i),
                dashed: false,
                points: over_time(r, origin, |row| {
                    let n = row
                        .errors
                        .iter()
                        .find(|(k, _)| *k == kind)
                        .map_or(0, |e| e.1);
                    per_s(n as f64, row)
                }),
            });
        }
    }
    body += &chart("Connection errors", "seconds", "errors/s", &lines, &marks);
    // The latency distribution: x is log10(1 / (1 - q)).
    let quantiles: Vec<f64> = (0..=50)
        .map(|i| 1.0 - 10f64.powf(-(i as f64) / 10.0))
        .collect();
    let mut lines = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        for (kind, h) in &r.latency {
            lines.push(Line {
                label: tag(i, kind),
                colour: colour(i),
                dashed: kind.ends_with("intended"),
                points: if h.is_empty() {
                    Vec::new()
                } else {
                    quantiles
                        .iter()
                        .map(|&q| {
                            (
                                (1.0 / (1.0 - q)).log10(),
                                h.value_at_quantile(q) as f64 / 1000.0,
                            )
                        })
                        .collect()
                },
            });
        }
    }
    body += &chart(
        "Latency by percentile (x: 1 = 90%, 2 = 99%, 3 = 99.9%…)",
        "log10(1 / (1 - percentile))",
        "ms",
        &lines,
        &[],
    );
    for (i, r) in reports.iter().enumerate() {
        let _ = write!(
            body,
            "<h2>{}</h2>\n<p class=\"command\">{}</p>\n<pre>{}</pre>\n",
            escape(&names[i]),
            escape(&r.command_line.join(" ")),
            escape(&r.summary_text())
        );
        if !r.judgement.thresholds.is_empty() {
            body += "<ul class=\"thresholds\">\n";
            for v in &r.judgement.thresholds {
                let (class, word) = if v.pass {
                    ("pass", "PASS")
                } else {
                    ("fail", "FAIL")
                };
                let _ = writeln!(
                    body,
                    "<li class=\"{class}\">{} {word}</li>",
                    escape(&v.threshold)
                );
            }
            body += "</ul>\n";
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>tcpkali report</title>\n<style>\
         body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}\
         figure{{margin:1em 0}} pre{{background:#f6f6f6;padding:1em;overflow-x:auto}}\
         .command{{font-family:monospace;color:#555}} .pass{{color:#2a7}} .fail{{color:#c22;font-weight:bold}}\
         </style></head>\n<body>\n<h1>tcpkali report</h1>\n{body}</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_a_report_cannot_become_markup() {
        assert_eq!(
            escape("<script>alert(\"x\")</script> & more"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more"
        );
    }

    #[test]
    fn a_chart_declares_its_series_and_an_empty_one_says_so() {
        let line = |label: &str, points: Vec<(f64, f64)>| Line {
            label: label.to_string(),
            colour: COLOURS[0],
            dashed: false,
            points,
        };
        let svg = chart(
            "T",
            "x",
            "y",
            &[
                line("a", vec![(0.0, 1.0), (1.0, 2.0)]),
                line("b", Vec::new()),
            ],
            &[],
        );
        assert!(
            svg.starts_with("<figure class=\"chart\" data-series=\"1\"><svg"),
            "{svg}"
        );
        for reference in ["href=", "src=", "url("] {
            assert!(
                !svg.contains(reference),
                "the chart refers out: {reference}"
            );
        }
        let empty = chart("Errors", "x", "y", &[line("b", Vec::new())], &[]);
        assert_eq!(empty, "<p class=\"empty\">Errors: nothing to draw.</p>\n");
    }
}
