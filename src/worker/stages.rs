//! Following `--stage`: at each loop turn after the steady state began,
//! the worker's targets at that moment. A rate moved by at least 1% (or
//! reaching a stage's end value) retimes every connection's schedule in
//! place; a connection target below what is open sheds the excess
//! gracefully, one above it lets the dialer open more at the connect rate.
//! It owns no state: the rate in force is the sender's, the target the
//! dialer's.

use crate::worker::conn::{Direction, Phase};
use crate::worker::pace::Rate;
use crate::worker::plan::{targets_at, Targets};
use crate::worker::state::Worker;
use crate::worker::timers::GRAIN_NS;

/// A rate change smaller than this share waits for the next one.
const RATE_STEP: f64 = 0.01;
/// How often a worker looks at moving targets at least.
const FOLLOW_NS: u64 = 10 * GRAIN_NS;

impl Worker<'_> {
    /// When the steady state began: once every worker has marked the end
    /// of its ramp, the last mark (as the supervisor reckons it too), so
    /// that every worker's stage clock starts at the same moment.
    fn stage_origin(&mut self) -> Option<u64> {
        if self.plan.stages.is_empty() {
            return None;
        }
        if self.stage_origin == 0 {
            let mut latest = 0;
            for i in 0..self.region.workers() {
                let (at, _) = self.region.slot(i).ramp.get()?;
                latest = latest.max(at);
            }
            self.stage_origin = latest;
        }
        Some(self.stage_origin)
    }

    /// The stages' targets now, once the steady state has begun.
    fn stage_targets(&mut self, now: u64) -> Option<(u64, Targets)> {
        let origin = self.stage_origin()?;
        Some((
            origin,
            targets_at(&self.plan.stages, now.saturating_sub(origin)),
        ))
    }

    /// When the worker must look at the stages again (`None`: no need).
    pub(super) fn stage_wake(&mut self, now: u64) -> Option<u64> {
        if self.plan.stages.is_empty() {
            return None;
        }
        let Some((origin, t)) = self.stage_targets(now) else {
            // Waiting for the other workers' ramps.
            return Some(now + GRAIN_NS);
        };
        let next = origin.saturating_add(t.next_change_ns);
        Some(if t.moving {
            next.min(now + FOLLOW_NS)
        } else {
            next
        })
    }

    pub(super) fn follow_stages(&mut self, now: u64) {
        let Some((_, t)) = self.stage_targets(now) else {
            return;
        };
        if let (Some(want), Some(old)) = (t.rate, self.sender.rate) {
            let have = self.sender.staged;
            let settled = !t.moving && want != have;
            if settled || (want - have).abs() >= RATE_STEP * have {
                let new = Rate::messages(want, self.shared.message_len);
                self.sender.rate = Some(new);
                self.sender.staged = want;
                self.retime_all(&old, &new, now);
            }
        }
        self.dialer.target = t.conns;
        let open = self.stats.open.out + self.stats.open.connecting;
        if open > t.conns {
            self.shed_excess(open - t.conns, now);
        }
    }

    fn retime_all(&mut self, old: &Rate, new: &Rate, now: u64) {
        for (slot, gen) in self.conns.live() {
            if let Some(c) = self.conns.get_mut(slot, gen) {
                c.send.retime(old, new, now);
            }
            self.service(slot, gen, now);
        }
    }

    /// Closes `n` open outgoing connections, the newest first (those
    /// still connecting are shed once open, if still in excess).
    fn shed_excess(&mut self, n: u64, now: u64) {
        let victims: Vec<(u32, u32)> = self
            .conns
            .live()
            .into_iter()
            .rev()
            .filter(|&(slot, gen)| {
                self.conns.get(slot, gen).is_some_and(|c| {
                    c.phase == Phase::Open
                        && matches!(c.dir, Direction::Out { .. })
                        && !c.framing.upgrading()
                })
            })
            .take(usize::try_from(n).unwrap_or(usize::MAX))
            .collect();
        for (slot, gen) in victims {
            self.shed(slot, gen, now);
        }
    }
}
