//! The full-screen live view of `tcpkali monitor` on a terminal: rates,
//! latency percentiles with a sparkline of each kind's recent p99,
//! connections, errors by kind, and one row per worker (pid, busy share,
//! restarts, heartbeat age). It reads the run's stats region and nothing
//! else, so leaving it (`q`, Esc or Ctrl-C) never touches the run.
//! Drawn with `ratatui`.

use crate::supervisor::report::ERROR_KINDS;
use hdrhistogram::Histogram;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tcpkali_ipc::{BucketLayout, Counter, Gauge, HistKind, Region, Snapshot};

/// How often the view is redrawn.
const REFRESH: Duration = Duration::from_millis(500);
/// Points kept for each sparkline.
const HISTORY: usize = 120;

const KINDS: [(HistKind, &str); 5] = [
    (HistKind::Connect, "connect"),
    (HistKind::TlsHandshake, "tls handshake"),
    (HistKind::FirstByte, "first byte"),
    (HistKind::Message, "message"),
    (HistKind::MessageIntended, "message (intended)"),
];

/// One worker's standing, as the view tracks it.
#[derive(Debug, Default, Clone)]
struct WorkerView {
    pid: u64,
    busy: f64,
    restarts: u64,
    heartbeat: u64,
    beat_at: Option<Instant>,
    busy_ns: u64,
}

/// One latency kind: its histogram over the run so far, and the p99 of
/// each refresh interval (µs).
struct KindView {
    kind: usize,
    total: Histogram<u64>,
    points: VecDeque<u64>,
}

/// Everything the view shows, updated from the region.
struct View {
    pid: u32,
    started: Instant,
    at: Instant,
    last: Snapshot,
    rates: [f64; 5],
    latency: Vec<KindView>,
    workers: Vec<WorkerView>,
}

impl View {
    fn new(pid: u32, region: &Region, layout: &BucketLayout) -> View {
        let now = Instant::now();
        View {
            pid,
            started: now,
            at: now,
            last: region.snapshot(),
            rates: [0.0; 5],
            latency: KINDS
                .iter()
                .enumerate()
                .map(|(i, &(k, _))| KindView {
                    kind: i,
                    total: region.histogram(k, layout),
                    points: VecDeque::new(),
                })
                .collect(),
            workers: vec![WorkerView::default(); region.workers()],
        }
    }

    fn update(&mut self, region: &Region, layout: &BucketLayout) {
        let now = Instant::now();
        let dt = (now - self.at).as_secs_f64().max(1e-6);
        let snap = region.snapshot();
        let d = snap.since(&self.last);
        let per_s = |c: Counter| d.get(c) as f64 / dt;
        let errors: u64 = ERROR_KINDS.iter().map(|(c, _, _)| d.get(*c)).sum();
        self.rates = [
            per_s(Counter::BytesRcvd) * 8.0 / 1e6,
            per_s(Counter::BytesSent) * 8.0 / 1e6,
            per_s(Counter::MsgsRcvd),
            per_s(Counter::MsgsSent),
            errors as f64 / dt,
        ];
        for k in &mut self.latency {
            let now_h = region.histogram(KINDS[k.kind].0, layout);
            let mut interval = now_h.clone();
            let _ = interval.subtract(&k.total);
            k.points.push_back(if interval.is_empty() {
                0
            } else {
                interval.value_at_quantile(0.99)
            });
            if k.points.len() > HISTORY {
                k.points.pop_front();
            }
            k.total = now_h;
        }
        for (i, w) in self.workers.iter_mut().enumerate() {
            let slot = region.slot(i);
            let busy_ns = slot.counters.get(Counter::BusyNs);
            w.busy = (busy_ns.saturating_sub(w.busy_ns) as f64 / 1e9 / dt).min(1.0);
            w.busy_ns = busy_ns;
            w.pid = slot.gauges.get(Gauge::Pid);
            w.restarts = slot.control.restarts.load(Relaxed);
            let beat = slot.gauges.get(Gauge::Heartbeat);
            if beat != w.heartbeat || w.beat_at.is_none() {
                w.heartbeat = beat;
                w.beat_at = Some(now);
            }
        }
        self.last = snap;
        self.at = now;
    }

    fn draw(&self, f: &mut Frame<'_>) {
        let kinds: Vec<&KindView> = self
            .latency
            .iter()
            .filter(|k| !k.total.is_empty())
            .collect();
        let areas = Layout::vertical([
            Constraint::Length(4),
            Constraint::Length(kinds.len() as u16 * 2 + 3),
            Constraint::Length(4),
            Constraint::Min(4),
        ])
        .split(f.area());
        let s = &self.last;
        let [rx, tx, mrx, mtx, errs] = self.rates;
        let traffic = vec![
            Line::from(format!(
                "Traffic {rx:.3}\u{2193} {tx:.3}\u{2191} Mbps   Messages {mrx:.0}\u{2193} {mtx:.0}\u{2191} /s   Errors {errs:.1}/s"
            )),
            Line::from(format!(
                "Connections {} out, {} in, {} connecting   Sent {} bytes, received {}",
                s.gauge(Gauge::OpenOut),
                s.gauge(Gauge::OpenIn),
                s.gauge(Gauge::ConnectingOut),
                s.get(Counter::BytesSent),
                s.get(Counter::BytesRcvd)
            )),
        ];
        let title = format!(
            " tcpkali {} \u{2014} watched for {:.0} s \u{2014} q to leave (the run goes on) ",
            self.pid,
            self.started.elapsed().as_secs_f64()
        );
        f.render_widget(
            Paragraph::new(traffic).block(Block::default().borders(Borders::ALL).title(title)),
            areas[0],
        );
        self.draw_latency(f, areas[1], &kinds);
        let errors: Vec<String> = ERROR_KINDS
            .iter()
            .map(|(c, words, _)| format!("{} {words}", s.get(*c)))
            .collect();
        f.render_widget(
            Paragraph::new(errors.join(", "))
                .wrap(ratatui::widgets::Wrap { trim: true })
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(" Connection errors "),
                ),
            areas[2],
        );
        let rows = self.workers.iter().enumerate().map(|(i, w)| {
            let age = w.beat_at.map_or(0.0, |t| t.elapsed().as_secs_f64());
            Row::new(vec![
                Cell::from(format!("worker {i}")),
                Cell::from(format!("pid {}", w.pid)),
                Cell::from(format!("busy {:.0}%", w.busy * 100.0)),
                Cell::from(format!("restarts {}", w.restarts)),
                Cell::from(format!("heartbeat {age:.1} s ago")),
            ])
        });
        let widths = [
            Constraint::Length(10),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(12),
            Constraint::Min(10),
        ];
        let table = Table::new(rows, widths)
            .block(Block::default().borders(Borders::ALL).title(" Workers "));
        f.render_widget(table, areas[3]);
    }

    fn draw_latency(&self, f: &mut Frame<'_>, area: ratatui::layout::Rect, kinds: &[&KindView]) {
        let block = Block::default()
            .borders(Borders::ALL)
            .title(" Latency (ms): p50 p95 p99 max, and the p99 of each interval ");
        let inner = block.inner(area);
        f.render_widget(block, area);
        if kinds.is_empty() {
            f.render_widget(Paragraph::new("no latency measured"), inner);
            return;
        }
        let rows = Layout::vertical(vec![Constraint::Length(2); kinds.len()]).split(inner);
        for (k, row) in kinds.iter().zip(rows.iter()) {
            let (total, points) = (&k.total, &k.points);
            let cols =
                Layout::horizontal([Constraint::Length(56), Constraint::Min(10)]).split(*row);
            let ms = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
            let text = format!(
                "{:<19} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                KINDS[k.kind].1,
                ms(0.5),
                ms(0.95),
                ms(0.99),
                total.max() as f64 / 1000.0
            );
            f.render_widget(Paragraph::new(text), cols[0]);
            let data: Vec<u64> = points.iter().copied().collect();
            let width = cols[1].width as usize;
            let shown = &data[data.len().saturating_sub(width)..];
            f.render_widget(Sparkline::default().data(shown), cols[1]);
        }
    }
}

/// Shows the live view of run `pid` until `q`, Esc or Ctrl-C, or until
/// `ended()` says the run is over; returns the exit status.
pub fn run(pid: u32, region: &Region, ended: impl Fn() -> bool) -> i32 {
    let layout = BucketLayout::standard();
    let mut view = View::new(pid, region, &layout);
    let mut terminal = ratatui::init();
    let status = loop {
        if ended() {
            break 0;
        }
        view.update(region, &layout);
        if terminal.draw(|f| view.draw(f)).is_err() {
            break 1;
        }
        let deadline = Instant::now() + REFRESH;
        let mut leave = false;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match event::poll(left) {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => {
                    leave = true;
                    break;
                }
            }
            if let Ok(Event::Key(k)) = event::read() {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if k.kind == KeyEventKind::Press
                    && (ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc))
                {
                    leave = true;
                    break;
                }
            }
        }
        if leave {
            break 0;
        }
    };
    ratatui::restore();
    if status == 0 && ended() {
        println!("tcpkali {pid} has ended.");
    }
    status
}
