//! The report of a bench run, in the shape of `sim run`'s (docs/DESIGN.md §9) so the two can be
//! compared: scenario, seed, version, verdict, run length, oracles with their first violation,
//! faults, per-axis tracking figures with the recorded trajectory, plus the bench's own timing
//! section and the reason a run stopped early. Owns the data shape and its JSON; the figures
//! are computed by `runner.rs`, the comparison is `compare.rs`.

use serde::{Deserialize, Serialize};

use crate::timing::TimingReport;

/// Samples kept per axis, at most (a longer run keeps every k-th cycle).
pub const SAMPLES_MAX: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
}

/// When and how an oracle first failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub t_s: f64,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OracleReport {
    pub id: String,
    pub statement: String,
    pub holds: bool,
    pub first_violation: Option<Violation>,
}

/// Something that happened to the run from outside the program: on a bench, a safety stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub at_s: f64,
    /// `sim` flattens its fault kinds into the record; unknown keys are ignored on reading.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub detail: String,
}

/// Counts of the program's moves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MoveCounts {
    pub requested: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub retries: u64,
}

/// The recorded trajectory, column-wise: `t_s[k]`, `setpoint_deg[k]`, ... belong together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    pub t_s: Vec<f64>,
    pub setpoint_deg: Vec<f64>,
    pub position_deg: Vec<f64>,
    pub current_a: Vec<f64>,
}

impl Samples {
    pub fn len(&self) -> usize {
        self.t_s.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t_s.is_empty()
    }

    pub fn push(&mut self, t_s: f64, setpoint_deg: f64, position_deg: f64, current_a: f64) {
        self.t_s.push(t_s);
        self.setpoint_deg.push(setpoint_deg);
        self.position_deg.push(position_deg);
        self.current_a.push(current_a);
    }
}

/// Tracking figures of one axis (names as in `sim`'s report) and its trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AxisReport {
    pub name: String,
    /// Dynamixel ID on the bench bus (absent in simulation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u8>,
    pub following_error_deg_max: f64,
    pub following_error_deg_rms: f64,
    pub current_a_peak: f64,
    pub position_deg_final: f64,
    pub winding_temperature_c_max: f64,
    #[serde(default)]
    pub samples: Samples,
}

/// Why a bench run stopped before its program ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopRecord {
    pub t_s: f64,
    pub reason: String,
    pub detail: String,
}

/// A run's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    /// The scenario's seed in simulation; 0 on a bench, where nothing is drawn from it.
    pub seed: u64,
    pub version: String,
    pub verdict: Verdict,
    /// How long the run lasted (simulated time in `sim`, wall time on the bench).
    pub simulated_s: f64,
    /// Hash of the simulation trace; a bench run has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_hash: Option<String>,
    pub oracles: Vec<OracleReport>,
    pub faults: Vec<FaultRecord>,
    #[serde(default)]
    pub moves: MoveCounts,
    pub axes: Vec<AxisReport>,
    /// The bench loop's timing (absent in simulation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<TimingReport>,
    /// Set when the run stopped early (safety stop, lost link, Ctrl-C, panic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopRecord>,
    /// Whether torque was read back as off on every servo after the run (bench only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torque_off_confirmed: Option<bool>,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// A human-readable summary (what `hil run` prints without `--json`).
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let verdict = match self.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
        };
        let _ = writeln!(
            s,
            "{verdict}  {}  ({:.2} s, servocell {})",
            self.scenario, self.simulated_s, self.version
        );
        if let Some(stop) = &self.stop {
            let _ = writeln!(
                s,
                "stopped at {:.3} s: {}: {}",
                stop.t_s, stop.reason, stop.detail
            );
        }
        for o in &self.oracles {
            let mark = if o.holds { "ok  " } else { "FAIL" };
            let _ = write!(s, "  {mark} {:<34} {}", o.id, o.statement);
            if let Some(v) = &o.first_violation {
                let _ = write!(s, "  [first at {:.3} s: {}]", v.t_s, v.detail);
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "  moves: {} requested, {} started, {} refused",
            self.moves.requested, self.moves.succeeded, self.moves.failed
        );
        for a in &self.axes {
            let _ = writeln!(
                s,
                "  axis {}: following error max {:.2} deg rms {:.2} deg, current peak {:.3} A, final {:.2} deg",
                a.name,
                a.following_error_deg_max,
                a.following_error_deg_rms,
                a.current_a_peak,
                a.position_deg_final
            );
        }
        if let Some(t) = &self.timing {
            let _ = writeln!(
                s,
                "  timing: {} cycles of {:.0} us; execution p50 {:.0} p99 {:.0} max {:.0} us; jitter p50 {:.0} p99 {:.0} max {:.0} us",
                t.cycles,
                t.period_us,
                t.execution.p50_us,
                t.execution.p99_us,
                t.execution.max_us,
                t.jitter.p50_us,
                t.jitter.p99_us,
                t.jitter.max_us
            );
            let _ = writeln!(
                s,
                "  overruns {} (longest run {}); bus timeouts {}, CRC errors {}, corrupt replies {}, status errors {}",
                t.overruns_total,
                t.overruns_consecutive_max,
                t.bus_timeouts,
                t.crc_errors,
                t.corrupt_replies,
                t.status_errors
            );
            for w in &t.realtime.warnings {
                let _ = writeln!(s, "  warning: {w}");
            }
        }
        if let Some(off) = self.torque_off_confirmed {
            let _ = writeln!(s, "  torque off confirmed: {off}");
        }
        s
    }
}
