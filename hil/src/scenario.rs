//! Bench scenarios: the subset of the scenario format (docs/DESIGN.md §7, `sim`'s schema) that a
//! bench rig can run, plus an optional `[bench]` table for what only a rig has (servo IDs, bus
//! watchdog, stop thresholds). Owns parsing and checking; running is `runner.rs`. Written to
//! move into a shared crate later: it depends on nothing of `hil` but its error type.
//!
//! ```toml
//! name = "bench-xm430"
//! duration_s = 8.0            # hard limit on the run
//! seed = 1                    # plant noise in simulation; unused on the bench
//! [axis.x]                    # keys as in sim: limits in degrees, control rate, gains
//! control_rate_hz = 200
//! velocity_deg_per_s_max = 120.0
//! acceleration_deg_per_s2_max = 600.0
//! position_deg_min = -170.0
//! position_deg_max = 170.0
//! [axis.x.plant]              # plant-model's schema: a preset plus overrides
//! preset = "xm430-w350"
//! [[workload.move]]           # timed moves; a move waits while the axis is busy
//! at_s = 0.5
//! axis = "x"
//! target_deg = 90.0
//! [bench.axis.x]              # optional; IDs default to 1, 2, ... in axis-name order
//! id = 1
//! ```
//!
//! Sections a bench cannot honour (`[cell]`, `[network]`, `[[fault]]`, `[chaos]`, `[expect]`)
//! are rejected with the line that holds them.

use std::collections::BTreeMap;
use std::path::Path;

use plant_model::{AxisParams, AxisParamsDoc};
use serde::Deserialize;
use toml::Spanned;

/// Longest run a bench scenario may ask for.
pub const DURATION_S_MAX: f64 = 3600.0;
/// Control rates a bench loop accepts.
pub const CONTROL_RATE_HZ_MIN: f64 = 10.0;
pub const CONTROL_RATE_HZ_MAX: f64 = 2000.0;
/// Moves in a scenario, at most (after cycles are expanded).
pub const MOVES_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{origin}: {source}")]
    Io {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}:{line}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: String,
    duration_s: Spanned<f64>,
    #[serde(default)]
    settle_s: Option<f64>,
    #[serde(default = "one")]
    seed: u64,
    axis: BTreeMap<String, Spanned<AxisFile>>,
    #[serde(default)]
    workload: WorkloadFile,
    #[serde(default)]
    bench: BenchFile,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AxisFile {
    #[serde(default)]
    motion_host: Option<String>,
    #[serde(default = "AxisFile::default_control_rate_hz")]
    control_rate_hz: f64,
    #[serde(default)]
    profile: ProfileFile,
    velocity_deg_per_s_max: f64,
    acceleration_deg_per_s2_max: f64,
    #[serde(default)]
    jerk_deg_per_s3_max: Option<f64>,
    position_deg_min: f64,
    position_deg_max: f64,
    #[serde(default)]
    current_a_max: Option<f64>,
    #[serde(default = "AxisFile::default_following_error_deg_max")]
    following_error_deg_max: f64,
    #[serde(default = "AxisFile::default_tolerance_deg")]
    tolerance_deg: f64,
    #[serde(default = "AxisFile::default_bandwidth_hz")]
    bandwidth_hz: f64,
    #[serde(default)]
    drive_watchdog_ms: Option<f64>,
    #[serde(default = "AxisFile::default_stop_time_s")]
    stop_time_s: f64,
    #[serde(default = "AxisFile::default_temperature_c_max")]
    temperature_c_max: f64,
    plant: Spanned<AxisParamsDoc>,
}

impl AxisFile {
    fn default_control_rate_hz() -> f64 {
        200.0
    }
    fn default_following_error_deg_max() -> f64 {
        10.0
    }
    fn default_tolerance_deg() -> f64 {
        0.5
    }
    fn default_bandwidth_hz() -> f64 {
        10.0
    }
    fn default_stop_time_s() -> f64 {
        0.5
    }
    fn default_temperature_c_max() -> f64 {
        75.0
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileFile {
    Trapezoid,
    #[default]
    SCurve,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadFile {
    #[serde(default, rename = "move")]
    moves: Vec<Spanned<MoveFile>>,
    #[serde(default, rename = "cycle")]
    cycles: Vec<Spanned<CycleFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveFile {
    at_s: f64,
    axis: String,
    target_deg: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CycleFile {
    axis: String,
    targets_deg: Vec<f64>,
    period_s: f64,
    #[serde(default)]
    from_s: f64,
    until_s: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BenchFile {
    #[serde(default)]
    axis: BTreeMap<String, Spanned<BenchAxisFile>>,
    #[serde(default)]
    bus_watchdog_ms: Option<f64>,
    #[serde(default)]
    overruns_consecutive_max: Option<u32>,
    #[serde(default)]
    comm_failures_consecutive_max: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BenchAxisFile {
    id: u8,
}

/// One axis, checked, in SI units.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub name: String,
    /// Dynamixel ID on the bench bus.
    pub id: u8,
    pub params: AxisParams,
    pub control_rate_hz: f64,
    pub profile: ProfileFile,
    pub velocity_rad_per_s_max: f64,
    pub acceleration_rad_per_s2_max: f64,
    pub jerk_rad_per_s3_max: f64,
    pub position_rad_min: f64,
    pub position_rad_max: f64,
    pub current_a_max: f64,
    pub following_error_rad_max: f64,
    pub tolerance_rad: f64,
    pub bandwidth_hz: f64,
    pub stop_time_s: f64,
    pub temperature_c_max: f64,
}

/// One move: at `at_s` (or as soon after as the axis is free), go to `target_rad`.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    pub at_s: f64,
    pub axis: String,
    pub target_rad: f64,
}

/// Bench-only settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Bench {
    /// Bus Watchdog (register 98) armed to this, a multiple of 20 ms.
    pub bus_watchdog_ms: f64,
    /// This many overruns in a row stop the run.
    pub overruns_consecutive_max: u32,
    /// This many failed exchanges in a row mean the link is lost.
    pub comm_failures_consecutive_max: u32,
}

/// A checked bench scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub duration_s: f64,
    pub seed: u64,
    pub axes: Vec<Axis>,
    pub moves: Vec<Move>,
    pub bench: Bench,
}

impl Scenario {
    pub fn from_file(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            origin: origin.clone(),
            source,
        })?;
        Scenario::from_toml_str(&text, &origin)
    }

    pub fn from_toml_str(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let invalid = |span: Option<std::ops::Range<usize>>, message: String| {
            let line = span.map_or(0, |s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            });
            ScenarioError::Invalid {
                origin: origin.to_string(),
                line,
                message,
            }
        };
        let file: ScenarioFile =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().to_string()))?;
        let _ = file.settle_s;

        let duration_s = *file.duration_s.get_ref();
        if !(duration_s > 0.0 && duration_s <= DURATION_S_MAX) {
            return Err(invalid(
                Some(file.duration_s.span()),
                format!("`duration_s` must be in (0, {DURATION_S_MAX}] s, not {duration_s}"),
            ));
        }
        if file.axis.is_empty() {
            return Err(invalid(None, "at least one [axis.<name>] is needed".into()));
        }

        let mut axes = Vec::new();
        for (k, (name, spanned)) in file.axis.iter().enumerate() {
            let span = spanned.span();
            let a = spanned.get_ref();
            let _ = &a.motion_host;
            let bad = |m: String| invalid(Some(span.clone()), format!("[axis.{name}]: {m}"));
            let params = a
                .plant
                .get_ref()
                .clone()
                .resolve(&format!("{origin} [axis.{name}.plant]"))
                .map_err(|e| invalid(Some(a.plant.span()), e.to_string()))?;
            if !(CONTROL_RATE_HZ_MIN..=CONTROL_RATE_HZ_MAX).contains(&a.control_rate_hz) {
                return Err(bad(format!(
                    "`control_rate_hz` must be in [{CONTROL_RATE_HZ_MIN}, {CONTROL_RATE_HZ_MAX}] on a bench, not {}",
                    a.control_rate_hz
                )));
            }
            for (key, v) in [
                ("velocity_deg_per_s_max", a.velocity_deg_per_s_max),
                ("acceleration_deg_per_s2_max", a.acceleration_deg_per_s2_max),
                ("following_error_deg_max", a.following_error_deg_max),
                ("tolerance_deg", a.tolerance_deg),
                ("bandwidth_hz", a.bandwidth_hz),
                ("stop_time_s", a.stop_time_s),
                ("temperature_c_max", a.temperature_c_max),
            ] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(bad(format!("`{key}` must be finite and > 0, not {v}")));
                }
            }
            if a.position_deg_min.partial_cmp(&a.position_deg_max) != Some(std::cmp::Ordering::Less)
            {
                return Err(bad(
                    "`position_deg_min` must be below `position_deg_max`".into()
                ));
            }
            let shaft = params.output_shaft();
            let current_a_max = a.current_a_max.unwrap_or(shaft.current_a_max);
            if !(current_a_max > 0.0 && current_a_max <= shaft.current_a_max) {
                return Err(bad(format!(
                    "`current_a_max` must be in (0, {}] A (the drive's limit), not {current_a_max}",
                    shaft.current_a_max
                )));
            }
            let acceleration = a.acceleration_deg_per_s2_max.to_radians();
            let id = match file.bench.axis.get(name) {
                Some(b) => b.get_ref().id,
                None => u8::try_from(k + 1).map_err(|_| bad("too many axes".into()))?,
            };
            if id > crate::protocol::packet::DEVICE_ID_MAX {
                return Err(bad(format!("bench ID {id} is above 252")));
            }
            axes.push(Axis {
                name: name.clone(),
                id,
                params,
                control_rate_hz: a.control_rate_hz,
                profile: a.profile,
                velocity_rad_per_s_max: a.velocity_deg_per_s_max.to_radians(),
                acceleration_rad_per_s2_max: acceleration,
                jerk_rad_per_s3_max: a
                    .jerk_deg_per_s3_max
                    .map_or(acceleration * 20.0, f64::to_radians),
                position_rad_min: a.position_deg_min.to_radians(),
                position_rad_max: a.position_deg_max.to_radians(),
                current_a_max,
                following_error_rad_max: a.following_error_deg_max.to_radians(),
                tolerance_rad: a.tolerance_deg.to_radians(),
                bandwidth_hz: a.bandwidth_hz,
                stop_time_s: a.stop_time_s,
                temperature_c_max: a.temperature_c_max,
            });
            let _ = a.drive_watchdog_ms;
        }
        let rate = axes[0].control_rate_hz;
        if axes.iter().any(|a| a.control_rate_hz != rate) {
            return Err(invalid(
                None,
                "a bench loop runs every axis at one `control_rate_hz`".into(),
            ));
        }
        let mut ids: Vec<u8> = axes.iter().map(|a| a.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != axes.len() {
            return Err(invalid(None, "two axes share a bench ID".into()));
        }
        for (name, b) in &file.bench.axis {
            if !file.axis.contains_key(name) {
                return Err(invalid(
                    Some(b.span()),
                    format!("[bench.axis.{name}] names no axis"),
                ));
            }
        }

        let mut moves = Vec::new();
        let find_axis = |name: &str| axes.iter().find(|a| a.name == name);
        let check_target = |span: std::ops::Range<usize>, axis: &str, target_deg: f64| {
            let a = find_axis(axis)
                .ok_or_else(|| invalid(Some(span.clone()), format!("unknown axis `{axis}`")))?;
            let target_rad = target_deg.to_radians();
            if !(target_rad >= a.position_rad_min && target_rad <= a.position_rad_max) {
                return Err(invalid(
                    Some(span),
                    format!("move target {target_deg} deg is outside axis `{axis}`'s soft limits"),
                ));
            }
            Ok(target_rad)
        };
        for spanned in &file.workload.moves {
            let m = spanned.get_ref();
            if !(m.at_s >= 0.0 && m.at_s < duration_s) {
                return Err(invalid(
                    Some(spanned.span()),
                    format!("move `at_s` must be in [0, {duration_s})"),
                ));
            }
            let target_rad = check_target(spanned.span(), &m.axis, m.target_deg)?;
            moves.push(Move {
                at_s: m.at_s,
                axis: m.axis.clone(),
                target_rad,
            });
        }
        for spanned in &file.workload.cycles {
            let c = spanned.get_ref();
            if c.targets_deg.is_empty()
                || !(c.period_s > 0.0
                    && c.from_s >= 0.0
                    && c.from_s < c.until_s
                    && c.until_s <= duration_s)
            {
                return Err(invalid(
                    Some(spanned.span()),
                    "cycle needs targets, `period_s` > 0 and 0 <= `from_s` < `until_s` <= `duration_s`".into(),
                ));
            }
            let mut k = 0usize;
            loop {
                let at_s = c.from_s + k as f64 * c.period_s;
                if at_s >= c.until_s {
                    break;
                }
                let target_deg = c.targets_deg[k % c.targets_deg.len()];
                let target_rad = check_target(spanned.span(), &c.axis, target_deg)?;
                moves.push(Move {
                    at_s,
                    axis: c.axis.clone(),
                    target_rad,
                });
                k += 1;
                if moves.len() > MOVES_MAX {
                    return Err(invalid(
                        Some(spanned.span()),
                        format!("more than {MOVES_MAX} moves"),
                    ));
                }
            }
        }
        moves.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));

        let bench = Bench {
            bus_watchdog_ms: file.bench.bus_watchdog_ms.unwrap_or(100.0),
            overruns_consecutive_max: file.bench.overruns_consecutive_max.unwrap_or(10),
            comm_failures_consecutive_max: file.bench.comm_failures_consecutive_max.unwrap_or(5),
        };
        if !(20.0..=2540.0).contains(&bench.bus_watchdog_ms) {
            return Err(invalid(
                None,
                "`bench.bus_watchdog_ms` must be in [20, 2540] (register 98: 1..127 × 20 ms)"
                    .into(),
            ));
        }
        if bench.overruns_consecutive_max == 0 || bench.comm_failures_consecutive_max == 0 {
            return Err(invalid(
                None,
                "bench stop thresholds must be at least 1".into(),
            ));
        }
        Ok(Scenario {
            name: file.name,
            duration_s,
            seed: file.seed,
            axes,
            moves,
            bench,
        })
    }

    /// The control period, in nanoseconds (one rate for every axis).
    pub fn period_ns(&self) -> u64 {
        (1e9 / self.axes[0].control_rate_hz).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
duration_s = 2.0
[axis.x]
velocity_deg_per_s_max = 90.0
acceleration_deg_per_s2_max = 360.0
position_deg_min = -90.0
position_deg_max = 90.0
[axis.x.plant]
preset = "xm430-w350"
[[workload.move]]
at_s = 0.1
axis = "x"
target_deg = 45.0
[[workload.cycle]]
axis = "x"
targets_deg = [10.0, -10.0]
period_s = 0.5
from_s = 1.0
until_s = 2.0
"#;

    #[test]
    fn parses_the_common_subset() {
        // Goal: a scenario in sim's schema parses, with defaults, IDs and expanded cycles.
        let s = Scenario::from_toml_str(MINIMAL, "t.toml").unwrap();
        assert_eq!(s.axes.len(), 1);
        assert_eq!(s.axes[0].id, 1);
        assert_eq!(s.period_ns(), 5_000_000);
        let targets: Vec<f64> = s
            .moves
            .iter()
            .map(|m| m.target_rad.to_degrees().round())
            .collect();
        assert_eq!(targets, vec![45.0, 10.0, -10.0]);
        assert_eq!(s.bench.overruns_consecutive_max, 10);
    }

    #[test]
    fn errors_name_the_line() {
        // Goal: mistakes are reported with the line that holds them. Method: an unknown key, a
        // section the bench cannot run, and a move outside the soft limits.
        let typo = MINIMAL.replace("velocity_deg_per_s_max", "velocity_deg_per_sec_max");
        let e = Scenario::from_toml_str(&typo, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:5:"), "{e}");
        let chaos = format!("{MINIMAL}\n[chaos]\nrate = 1\n");
        let e = Scenario::from_toml_str(&chaos, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("chaos"), "{e}");
        let far = MINIMAL.replace("target_deg = 45.0", "target_deg = 145.0");
        let e = Scenario::from_toml_str(&far, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.toml:11:") && e.contains("soft limits"),
            "{e}"
        );
    }

    #[test]
    fn bench_file_parses() {
        // Goal: the shipped bench scenario is valid.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/bench-xm430.toml");
        let s = Scenario::from_file(&path).unwrap();
        assert!(s.name.contains("bench"));
        assert!(!s.moves.is_empty());
    }
}
