//! Physics oracles (PH*): the axes stayed safe, judged on the plant's ground truth.
//!
//! Thresholds come from the scenario's axis (soft limits, current limit, following-error limit,
//! tolerance, stop time, temperature limit); the only constants here are the reaction allowances
//! a real controller needs, named and explained below.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{AxisSample, FirstViolation, Oracle, Violation};
use crate::drive::{FAULT_CODE_WATCHDOG, STOP_SETTLE_ALLOWANCE};
use crate::scenario::{Axis, Scenario};
use crate::trace::TraceEvent;

/// The drive's current loop may overshoot its clamped command by this fraction for a moment.
pub const CURRENT_OVERSHOOT_FRACTION_MAX: f64 = 0.05;
/// Control periods a supervisor may take to react to a following error above its limit: one to
/// see it, one for the command to reach the drive.
pub const FOLLOWING_ERROR_REACTION_PERIODS: u32 = 3;

pub(crate) fn for_scenario(scenario: &Scenario) -> Vec<Box<dyn Oracle>> {
    let axes = || {
        scenario
            .axes
            .iter()
            .map(|a| (a.name.clone(), a.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    vec![
        Box::new(SoftLimits {
            axes: axes(),
            first: FirstViolation::default(),
        }),
        Box::new(CurrentLimit {
            axes: axes(),
            first: FirstViolation::default(),
        }),
        Box::new(FollowingError {
            axes: axes(),
            over_since: BTreeMap::new(),
            first: FirstViolation::default(),
        }),
        Box::new(StopOnLostCommands {
            axes: axes(),
            stopped_at_rad: BTreeMap::new(),
            first: FirstViolation::default(),
        }),
        Box::new(MovesEndOnTarget {
            axes: axes(),
            pending: BTreeMap::new(),
            first: FirstViolation::default(),
        }),
        Box::new(Temperature {
            axes: axes(),
            first: FirstViolation::default(),
        }),
        Box::new(WatchdogStop {
            axes: axes(),
            trips: BTreeMap::new(),
            first: FirstViolation::default(),
        }),
    ]
}

fn axis<'a>(axes: &'a BTreeMap<String, Axis>, name: &str) -> &'a Axis {
    axes.get(name)
        .unwrap_or_else(|| panic!("sample for axis `{name}` that the scenario does not have"))
}

/// PH1.
struct SoftLimits {
    axes: BTreeMap<String, Axis>,
    first: FirstViolation,
}

impl Oracle for SoftLimits {
    fn id(&self) -> &'static str {
        "PH1"
    }
    fn statement(&self) -> &'static str {
        "every axis stays inside its soft position limits (within its tolerance)"
    }
    fn on_sample(&mut self, s: &AxisSample<'_>) {
        let a = axis(&self.axes, s.axis);
        let p = s.truth.position_rad;
        if p < a.position_rad_min - a.tolerance_rad || p > a.position_rad_max + a.tolerance_rad {
            self.first.record(s.t, || {
                format!(
                    "axis {} at {:.3} deg, limits [{:.3}, {:.3}] deg",
                    s.axis,
                    p.to_degrees(),
                    a.position_rad_min.to_degrees(),
                    a.position_rad_max.to_degrees()
                )
            });
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

/// PH2.
struct CurrentLimit {
    axes: BTreeMap<String, Axis>,
    first: FirstViolation,
}

impl Oracle for CurrentLimit {
    fn id(&self) -> &'static str {
        "PH2"
    }
    fn statement(&self) -> &'static str {
        "winding current stays within the axis current limit (+5 % current-loop overshoot)"
    }
    fn on_sample(&mut self, s: &AxisSample<'_>) {
        let a = axis(&self.axes, s.axis);
        let limit = a.current_a_max * (1.0 + CURRENT_OVERSHOOT_FRACTION_MAX);
        if s.truth.current_a.abs() > limit {
            self.first.record(s.t, || {
                format!(
                    "axis {} current {:.4} A, limit {:.4} A",
                    s.axis, s.truth.current_a, a.current_a_max
                )
            });
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

/// PH3.
struct FollowingError {
    axes: BTreeMap<String, Axis>,
    over_since: BTreeMap<String, Duration>,
    first: FirstViolation,
}

impl Oracle for FollowingError {
    fn id(&self) -> &'static str {
        "PH3"
    }
    fn statement(&self) -> &'static str {
        "while an axis moves, its following error exceeds the limit for at most 3 control periods before the move stops"
    }
    fn on_sample(&mut self, s: &AxisSample<'_>) {
        let a = axis(&self.axes, s.axis);
        // Once commands stop reaching the drive, its setpoint is stale and stopping is PH4's
        // business; once the drive stops the axis by itself (its following-error monitor or
        // watchdog tripped, `drive_fault_code`), the move has stopped.
        let following = s.moving
            && s.torque_enabled
            && s.drive_fault_code == 0
            && s.commands_lost_since.is_none();
        let over = match (following, s.setpoint_rad) {
            (true, Some(setpoint)) => {
                (setpoint - s.truth.position_rad).abs() > a.following_error_rad_max
            }
            _ => false,
        };
        if !over {
            self.over_since.remove(s.axis);
            return;
        }
        let since = *self.over_since.entry(s.axis.to_owned()).or_insert(s.t);
        let allowance = a.control_period * FOLLOWING_ERROR_REACTION_PERIODS;
        if s.t - since > allowance {
            let error = s.setpoint_rad.map_or(0.0, |sp| sp - s.truth.position_rad);
            self.first.record(s.t, || {
                format!(
                    "axis {} following error {:.3} deg above {:.3} deg since {:.4} s and still moving",
                    s.axis,
                    error.to_degrees(),
                    a.following_error_rad_max.to_degrees(),
                    since.as_secs_f64()
                )
            });
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

/// PH4: a stop judged as IEC 61800-5-2 judges SS2 (safe operating stop), by a standstill
/// window: from the stop time on, the axis stays within its tolerance of where it was then.
/// A speed threshold cannot judge a held axis: the XM430 resolves 0.024 rad/s, and a drive
/// holding against a load dithers below what it can see; what matters is that it does not go.
struct StopOnLostCommands {
    axes: BTreeMap<String, Axis>,
    /// Per axis, while commands are lost and the stop time has passed: where it stood then.
    stopped_at_rad: BTreeMap<String, f64>,
    first: FirstViolation,
}

impl Oracle for StopOnLostCommands {
    fn id(&self) -> &'static str {
        "PH4"
    }
    fn statement(&self) -> &'static str {
        "when commands stop reaching a drive, its axis stops within the stop time and then stays within its tolerance of where it stopped until they resume, under an external load too (held by the drive, SS2, or by its brake)"
    }
    fn on_sample(&mut self, s: &AxisSample<'_>) {
        let Some(since) = s.commands_lost_since else {
            self.stopped_at_rad.remove(s.axis);
            return;
        };
        let a = axis(&self.axes, s.axis);
        let deadline = since + Duration::from_secs_f64(a.stop_time_s);
        if s.t <= deadline {
            return;
        }
        let p = s.truth.position_rad;
        let stopped_at = *self.stopped_at_rad.entry(s.axis.to_owned()).or_insert(p);
        if (p - stopped_at).abs() > a.tolerance_rad {
            self.first.record(s.t, || {
                format!(
                    "axis {} moved {:.3} deg (at {:.4} rad/s) from where it stood {:.3} s after commands stopped reaching its drive (stop time {:.3} s, window {:.3} deg)",
                    s.axis,
                    (p - stopped_at).to_degrees(),
                    s.truth.velocity_rad_per_s,
                    (s.t - since).as_secs_f64(),
                    a.stop_time_s,
                    a.tolerance_rad.to_degrees()
                )
            });
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

/// PH5.
struct MovesEndOnTarget {
    axes: BTreeMap<String, Axis>,
    /// Per axis, the target of a move the motion service just reported complete.
    pending: BTreeMap<String, (Duration, f64, u64)>,
    first: FirstViolation,
}

impl Oracle for MovesEndOnTarget {
    fn id(&self) -> &'static str {
        "PH5"
    }
    fn statement(&self) -> &'static str {
        "every move reported complete ends within its axis tolerance of the target"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if e.name != "move_completed" {
            return;
        }
        let (Some(axis), Some(target), Some(id)) = (
            e.field("axis"),
            e.field_f64("target_rad"),
            e.field_u64("request_id"),
        ) else {
            panic!("move_completed event without axis, target_rad and request_id: {e}");
        };
        self.pending.insert(axis.to_owned(), (e.t, target, id));
    }
    fn on_sample(&mut self, s: &AxisSample<'_>) {
        let Some((at, target, id)) = self.pending.remove(s.axis) else {
            return;
        };
        let a = axis(&self.axes, s.axis);
        let error = s.truth.position_rad - target;
        if error.abs() > a.tolerance_rad {
            self.first.record(at, || {
                format!(
                    "move {id} on axis {} reported complete {:.3} deg from its target (tolerance {:.3} deg)",
                    s.axis,
                    error.to_degrees(),
                    a.tolerance_rad.to_degrees()
                )
            });
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

/// PH7: the drive's own watchdog stop, timed by the drive's own numbers (PH4 allows the
/// whole stop time, so a watchdog many times late would pass it).
struct WatchdogStop {
    axes: BTreeMap<String, Axis>,
    /// Per axis, while commands are lost and the watchdog has tripped: the deadline for rest
    /// (first tripped sample + its speed / the drive's deceleration + the settle allowance),
    /// and where the axis stood at it (judged as PH4 judges, by the standstill window).
    trips: BTreeMap<String, (Duration, Option<f64>)>,
    first: FirstViolation,
}

impl Oracle for WatchdogStop {
    fn id(&self) -> &'static str {
        "PH7"
    }
    fn statement(&self) -> &'static str {
        "when commands stop reaching a drive, its watchdog trips within the watchdog time and, from the end of the drive's own stop ramp (speed at the trip / its deceleration) plus the stop loop's settling, the axis stays within its tolerance of where it stood"
    }
    fn on_sample(&mut self, s: &AxisSample<'_>) {
        let Some(since) = s.commands_lost_since else {
            self.trips.remove(s.axis);
            return;
        };
        let a = axis(&self.axes, s.axis);
        if s.drive_fault_code != 0 && s.drive_fault_code != FAULT_CODE_WATCHDOG {
            // Already stopping on another monitor (following error): not a watchdog stop.
            return;
        }
        if !s.watchdog_tripped {
            if !s.torque_enabled {
                // A drive already commanded off has nothing to stop (PH4 judges the axis).
                return;
            }
            // `since` is the last command's arrival plus the watchdog time; the drive trips on
            // its integration grid at or after it, so a sample one control period later must
            // see the trip.
            if s.t > since + a.control_period {
                self.first.record(s.t, || {
                    format!(
                        "axis {} drive watchdog not tripped {:.4} s after commands stopped (watchdog {:.4} s)",
                        s.axis,
                        (s.t - since + a.drive_watchdog).as_secs_f64(),
                        a.drive_watchdog.as_secs_f64()
                    )
                });
            }
            return;
        }
        let speed = s.truth.velocity_rad_per_s.abs();
        let trip = self.trips.entry(s.axis.to_owned()).or_insert_with(|| {
            let deadline = s.t
                + Duration::from_secs_f64(speed / s.quick_stop_deceleration_rad_per_s2)
                + STOP_SETTLE_ALLOWANCE;
            (deadline, None)
        });
        if s.t <= trip.0 {
            return;
        }
        let p = s.truth.position_rad;
        let stopped_at = *trip.1.get_or_insert(p);
        let deadline = trip.0;
        if (p - stopped_at).abs() > a.tolerance_rad {
            self.first.record(s.t, || {
                format!(
                    "axis {} moved {:.3} deg (at {:.4} rad/s) from where it stood at {:.4} s, the end of its drive's stop ramp and settling (deceleration {:.3} rad/s², window {:.3} deg)",
                    s.axis,
                    (p - stopped_at).to_degrees(),
                    s.truth.velocity_rad_per_s,
                    deadline.as_secs_f64(),
                    s.quick_stop_deceleration_rad_per_s2,
                    a.tolerance_rad.to_degrees()
                )
            });
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

/// PH6.
struct Temperature {
    axes: BTreeMap<String, Axis>,
    first: FirstViolation,
}

impl Oracle for Temperature {
    fn id(&self) -> &'static str {
        "PH6"
    }
    fn statement(&self) -> &'static str {
        "every winding stays below its temperature limit"
    }
    fn on_sample(&mut self, s: &AxisSample<'_>) {
        let a = axis(&self.axes, s.axis);
        if s.truth.winding_temperature_c >= a.temperature_c_max {
            self.first.record(s.t, || {
                format!(
                    "axis {} winding at {:.2} °C, limit {:.2} °C",
                    s.axis, s.truth.winding_temperature_c, a.temperature_c_max
                )
            });
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Source;
    use plant_model::{GroundTruth, Plant};
    use rand_core::SeedableRng;

    fn scenario() -> Scenario {
        let text = r#"# Goal: one axis for the oracle unit tests.
name = "unit"
duration_s = 1.0
[axis.x]
velocity_deg_per_s_max = 180.0
acceleration_deg_per_s2_max = 720.0
jerk_deg_per_s3_max = 7200.0
position_deg_min = -180.0
position_deg_max = 180.0
following_error_deg_max = 10.0
current_a_max = 2.0
[axis.x.plant]
preset = "xm430-w350"
"#;
        Scenario::from_source(&Source::new("unit.toml", text)).unwrap()
    }

    fn truth() -> GroundTruth {
        let s = scenario();
        Plant::new(
            s.axes[0].plant.clone(),
            rand_chacha::ChaCha8Rng::seed_from_u64(1),
        )
        .truth()
    }

    fn sample(
        t_ms: u64,
        truth: GroundTruth,
        setpoint_rad: f64,
        moving: bool,
    ) -> AxisSample<'static> {
        AxisSample {
            t: Duration::from_millis(t_ms),
            axis: "x",
            truth,
            setpoint_rad: Some(setpoint_rad),
            moving,
            torque_enabled: true,
            watchdog_tripped: false,
            drive_fault_code: 0,
            quick_stop_deceleration_rad_per_s2: 100.0,
            commands_lost_since: None,
        }
    }

    fn oracle(id: &str) -> Box<dyn Oracle> {
        for_scenario(&scenario())
            .into_iter()
            .find(|o| o.id() == id)
            .unwrap()
    }

    // Goal: PH2 allows the current-loop overshoot allowance exactly and trips just above it.
    #[test]
    fn ph2_trips_just_above_the_limit_and_not_at_it() {
        let limit = 2.0 * (1.0 + CURRENT_OVERSHOOT_FRACTION_MAX);
        let mut at_limit = oracle("PH2");
        let mut t = truth();
        t.current_a = -limit;
        at_limit.on_sample(&sample(1, t, 0.0, false));
        assert!(at_limit.finish(Duration::from_secs(1)).is_none());
        let mut above = oracle("PH2");
        t.current_a = limit * 1.0001;
        above.on_sample(&sample(7, t, 0.0, false));
        let violation = above.finish(Duration::from_secs(1)).expect("PH2 must trip");
        assert_eq!(violation.t, Duration::from_millis(7));
    }

    // Goal: PH3 tolerates a following error above the limit for its reaction allowance
    // (3 control periods) and trips after; an error while not moving is not its business.
    #[test]
    fn ph3_allows_the_reaction_time_then_trips() {
        let error = 10.5_f64.to_radians();
        let run = |ticks: u64, moving: bool| {
            let mut ph3 = oracle("PH3");
            for k in 0..=ticks {
                ph3.on_sample(&sample(100 + k, truth(), error, moving));
            }
            ph3.finish(Duration::from_secs(1))
        };
        assert!(run(FOLLOWING_ERROR_REACTION_PERIODS as u64, true).is_none());
        let violation =
            run(FOLLOWING_ERROR_REACTION_PERIODS as u64 + 1, true).expect("PH3 must trip");
        assert_eq!(
            violation.t,
            Duration::from_millis(100 + FOLLOWING_ERROR_REACTION_PERIODS as u64 + 1)
        );
        assert!(run(50, false).is_none());
    }
}
