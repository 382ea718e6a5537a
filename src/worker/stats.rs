//! A worker's slot in the stats region: its counters, latency histograms,
//! gauges, heartbeat and ramp mark. This is the one place a worker writes
//! to the region (the header's connection-id counter included), so the
//! single-writer rule can be checked by reading one file. It owns the local
//! mirror of the open-connection gauges and touches nothing else.

use tcpkali_ipc::{BucketLayout, Counter, Fault, Gauge, HistKind, Region, Slot};

use std::sync::atomic::Ordering::Relaxed;

/// Local mirror of the slot's connection gauges, published when they
/// change.
#[derive(Debug, Default)]
pub struct Open {
    /// Outgoing connections ready to carry messages.
    pub out: u64,
    /// Outgoing connections not ready yet (connecting, in their TLS
    /// handshake or their WebSocket upgrade).
    pub connecting: u64,
    /// Of `connecting`, those past TCP and TLS, in their WebSocket upgrade.
    pub upgrading: u64,
    pub inbound: u64,
}

pub struct Stats<'a> {
    region: &'a Region,
    slot: &'a Slot,
    hist: BucketLayout,
    /// Published in the slot as a liveness signal.
    heartbeat: u64,
    pub open: Open,
}

impl<'a> Stats<'a> {
    /// Takes over slot `index` for a new generation of its worker: the
    /// counters carry on from the previous one, the gauges start afresh.
    pub fn start(region: &'a Region, index: usize) -> Stats<'a> {
        let slot = region.slot(index);
        slot.gauges.set(Gauge::Pid, u64::from(std::process::id()));
        for g in [Gauge::OpenOut, Gauge::ConnectingOut, Gauge::OpenIn] {
            slot.gauges.set(g, 0);
        }
        slot.gauges.set(Gauge::Fault, 0);
        Stats {
            region,
            slot,
            hist: BucketLayout::standard(),
            heartbeat: 0,
            open: Open::default(),
        }
    }

    #[inline]
    pub fn add(&self, counter: Counter, n: u64) {
        self.slot.counters.add(counter, n);
    }

    /// Records one latency sample in microseconds.
    #[inline]
    pub fn record_us(&self, kind: HistKind, us: u64) {
        self.slot.record_us(kind, &self.hist, us);
    }

    /// Accounts for one readiness wait: `busy_ns` of work before it, and,
    /// when it had a `deadline` and ended on it with no `events`, how late
    /// the wake-up came.
    #[inline]
    pub fn waited(&self, busy_ns: u64, woke: u64, deadline: Option<u64>, events: usize) {
        self.add(Counter::BusyNs, busy_ns);
        match deadline {
            Some(at) if events == 0 && woke >= at => {
                self.record_us(HistKind::WakeLate, (woke - at) / 1000);
            }
            _ => {}
        }
    }

    /// Tells the supervisor this worker is alive.
    pub fn beat(&mut self) {
        self.heartbeat += 1;
        self.slot.gauges.set(Gauge::Heartbeat, self.heartbeat);
    }

    pub fn publish_open(&self) {
        let g = &self.slot.gauges;
        g.set(Gauge::OpenOut, self.open.out);
        g.set(Gauge::ConnectingOut, self.open.connecting);
        g.set(Gauge::OpenIn, self.open.inbound);
    }

    /// Reports a condition that ends the run (the first one stays).
    pub fn fault(&self, fault: Fault) {
        if self.slot.gauges.get(Gauge::Fault) == 0 {
            self.slot.gauges.set(Gauge::Fault, fault as u64);
        }
    }

    /// Marks the start of this worker's steady state (once per slot: a
    /// restarted worker keeps the first mark).
    pub fn ramp_done(&self) {
        self.slot
            .ramp
            .set_once(tcpkali_ipc::monotonic_ns(), &self.slot.counters);
    }

    /// Marks, once per slot, that this worker's connections have all been
    /// ready to carry messages: the run ramps up when every worker has.
    pub fn ready_done(&self) {
        self.slot.ramp.set_ready_once(tcpkali_ipc::monotonic_ns());
    }

    /// A `connection.uid`, unique across the run's workers.
    pub fn next_uid(&self) -> u64 {
        self.region.header().next_uid.fetch_add(1, Relaxed)
    }
}

/// Latency samples of one kind, recorded in runs of equal values: the
/// answers to one write arrive together with one latency, and a run costs
/// one atomic add.
#[derive(Debug)]
pub struct SampleRun {
    kind: HistKind,
    value: u64,
    count: u64,
}

impl SampleRun {
    /// An empty run of samples of `kind`.
    pub fn new(kind: HistKind) -> SampleRun {
        SampleRun {
            kind,
            value: 0,
            count: 0,
        }
    }

    /// Adds a sample (µs), recording the run so far if it differs.
    #[inline]
    pub fn add(&mut self, stats: &Stats<'_>, us: u64) {
        if self.count > 0 && self.value != us {
            self.flush(stats);
        }
        self.value = us;
        self.count += 1;
    }

    /// Records the run so far.
    pub fn flush(&mut self, stats: &Stats<'_>) {
        if self.count > 0 {
            stats
                .slot
                .record_us_n(self.kind, &stats.hist, self.value, self.count);
            self.count = 0;
        }
    }
}
