//! The real-time loop's timing figures, as commercial HIL systems report them: per-cycle
//! execution time (TET), period jitter (start − scheduled start), overruns in total and the
//! longest consecutive run, plus the link's error counters. Pure bookkeeping: the loop passes
//! in its timestamps; nothing here reads a clock.

use serde::{Deserialize, Serialize};

use crate::link::LinkStats;

/// Cycles whose timings are kept for percentiles, at most (counters keep counting past it).
pub const CYCLES_RECORDED_MAX: usize = 2_000_000;

/// p50, p99 and maximum of a set of durations, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    fn of(values_ns: &[u64]) -> Percentiles {
        if values_ns.is_empty() {
            return Percentiles::default();
        }
        let mut v = values_ns.to_vec();
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        Percentiles {
            p50_us: at(0.5),
            p99_us: at(0.99),
            max_us: *v.last().expect("non-empty") as f64 / 1000.0,
        }
    }
}

/// Whether the process got the real-time treatment it asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealtimeSetup {
    pub sched_fifo: bool,
    pub memory_locked: bool,
    pub warnings: Vec<String>,
}

/// The timing section of a bench report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimingReport {
    pub period_us: f64,
    pub cycles: u64,
    /// Task execution time per cycle (start to end of the cycle's work).
    pub execution: Percentiles,
    /// |actual start − scheduled start| per cycle.
    pub jitter: Percentiles,
    pub overruns_total: u64,
    pub overruns_consecutive_max: u64,
    pub bus_timeouts: u64,
    pub crc_errors: u64,
    pub corrupt_replies: u64,
    pub status_errors: u64,
    pub io_errors: u64,
    pub discarded_bytes: u64,
    pub realtime: RealtimeSetup,
}

/// What one cycle's timing says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleTiming {
    pub overrun: bool,
    pub overruns_consecutive: u64,
}

/// Accumulates cycle timings.
#[derive(Debug, Clone)]
pub struct TimingRecorder {
    period_ns: u64,
    execution_ns: Vec<u64>,
    jitter_ns: Vec<u64>,
    cycles: u64,
    overruns_total: u64,
    consecutive: u64,
    consecutive_max: u64,
}

impl TimingRecorder {
    pub fn new(period_ns: u64) -> TimingRecorder {
        assert!(period_ns > 0, "a control period must be positive");
        TimingRecorder {
            period_ns,
            execution_ns: Vec::new(),
            jitter_ns: Vec::new(),
            cycles: 0,
            overruns_total: 0,
            consecutive: 0,
            consecutive_max: 0,
        }
    }

    /// Records one cycle scheduled at `scheduled_ns` that started at `started_ns` and finished
    /// at `finished_ns` (same clock). An overrun is a cycle that finished after the next one
    /// was due.
    pub fn record(&mut self, scheduled_ns: u64, started_ns: u64, finished_ns: u64) -> CycleTiming {
        assert!(
            finished_ns >= started_ns,
            "a cycle cannot end before it starts"
        );
        self.cycles += 1;
        if self.execution_ns.len() < CYCLES_RECORDED_MAX {
            self.execution_ns.push(finished_ns - started_ns);
            self.jitter_ns.push(started_ns.abs_diff(scheduled_ns));
        }
        let overrun = finished_ns > scheduled_ns + self.period_ns;
        if overrun {
            self.overruns_total += 1;
            self.consecutive += 1;
            self.consecutive_max = self.consecutive_max.max(self.consecutive);
        } else {
            self.consecutive = 0;
        }
        CycleTiming {
            overrun,
            overruns_consecutive: self.consecutive,
        }
    }

    pub fn report(&self, link: &LinkStats, realtime: RealtimeSetup) -> TimingReport {
        TimingReport {
            period_us: self.period_ns as f64 / 1000.0,
            cycles: self.cycles,
            execution: Percentiles::of(&self.execution_ns),
            jitter: Percentiles::of(&self.jitter_ns),
            overruns_total: self.overruns_total,
            overruns_consecutive_max: self.consecutive_max,
            bus_timeouts: link.timeouts,
            crc_errors: link.crc_errors,
            corrupt_replies: link.corrupt_replies,
            status_errors: link.status_errors,
            io_errors: link.io_errors,
            discarded_bytes: link.discarded_bytes,
            realtime,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_overruns_and_the_longest_run() {
        // Goal: an overrun is a cycle ending after the next deadline; the longest consecutive
        // run is kept. Method: synthetic timestamps with a period of 1000 ns.
        let mut t = TimingRecorder::new(1000);
        let pattern = [
            (0, 10, 500),
            (1000, 1000, 2500),
            (2000, 2600, 3200),
            (3000, 3300, 3900),
            (4000, 4000, 4100),
        ];
        let outcomes: Vec<bool> = pattern
            .iter()
            .map(|&(s, a, f)| t.record(s, a, f).overrun)
            .collect();
        assert_eq!(outcomes, vec![false, true, true, false, false]);
        let r = t.report(&LinkStats::default(), RealtimeSetup::default());
        assert_eq!(
            (r.cycles, r.overruns_total, r.overruns_consecutive_max),
            (5, 2, 2)
        );
        assert_eq!(r.jitter.max_us, 0.6);
        assert_eq!(r.execution.max_us, 1.5);
        assert_eq!(r.execution.p50_us, 0.6);
    }
}
