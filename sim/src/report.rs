//! The report of a run (docs/DESIGN.md §9): what was run, what was injected, what held.
//!
//! One type serves `sim run --json`, the insta snapshots (YAML, floats rounded to a fixed number
//! of significant digits by [`Report::rounded`]) and sweeps. It is built by `run.rs` from the
//! run's trace, oracle verdicts and per-axis statistics; it does no judging of its own.

use serde::Serialize;

use crate::fault::Fault;
use crate::fieldbus::FieldbusStats;
use crate::oracle::Violation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub version: String,
    pub verdict: Verdict,
    pub simulated_s: f64,
    pub trace_hash: String,
    pub trace_events: usize,
    pub oracles: Vec<OracleReport>,
    pub faults: Vec<Fault>,
    /// With `[chaos] swarm = true`: the kinds and rates this seed drew (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swarm: Option<crate::swarm::SwarmConfig>,
    pub moves: MoveCounts,
    /// The order path (scenarios with `[services]` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders: Option<OrderCounts>,
    pub axes: Vec<AxisReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OracleReport {
    pub id: String,
    pub statement: String,
    pub holds: bool,
    /// Whether the scenario's `[expect]` requires this oracle to hold (or, for a planted
    /// violation, to fail); an oracle not expected either way is reported but does not decide.
    pub expected: Expectation,
    pub first_violation: Option<Violation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expectation {
    Holds,
    Fails,
    Ignored,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MoveCounts {
    pub requested: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub retries: u64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub latency_ms_max: Option<f64>,
}

/// What became of the orders, from the services' own events.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OrderCounts {
    /// Orders the workload placed (first submission).
    pub placed: u64,
    /// Orders whose saga started (`saga_started`, each order once).
    pub started: u64,
    pub completed: u64,
    pub compensated: u64,
    /// Orders the workload gave up on before the gateway accepted them.
    pub given_up: u64,
    /// Sagas taken over by another orders instance.
    pub takeovers: u64,
    /// From a saga's start to its end (completed or compensated).
    pub saga_ms_p50: Option<f64>,
    pub saga_ms_p99: Option<f64>,
    pub saga_ms_max: Option<f64>,
    /// Every HTTP status the gateway answered, with its count.
    pub gateway_statuses: std::collections::BTreeMap<u16, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AxisReport {
    pub name: String,
    pub following_error_deg_max: f64,
    pub following_error_deg_rms: f64,
    pub current_a_peak: f64,
    pub position_deg_final: f64,
    pub winding_temperature_c_max: f64,
    pub watchdog_trips: u64,
    pub fieldbus: FieldbusStats,
    /// The run's time series, decimated (when recorded): what `hil compare` overlays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<Samples>,
}

/// Time series of one axis, in the units people read (the keys `hil`'s report uses too).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Samples {
    pub t_s: Vec<f64>,
    pub setpoint_deg: Vec<f64>,
    pub position_deg: Vec<f64>,
    pub current_a: Vec<f64>,
}

impl Report {
    /// The report with every float rounded to `SNAPSHOT_SIGNIFICANT_DIGITS`, as a JSON value:
    /// what the snapshots store, so that a last-bit difference in a libm or a compiler does not
    /// churn them while any real change still shows.
    pub fn rounded(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("a report always serializes");
        round_floats(&mut value);
        value
    }
}

/// Significant digits kept in snapshots.
pub const SNAPSHOT_SIGNIFICANT_DIGITS: i32 = 6;

fn round_floats(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().expect("is_f64 checked");
            if let Some(rounded) =
                serde_json::Number::from_f64(round_significant(x, SNAPSHOT_SIGNIFICANT_DIGITS))
            {
                *n = rounded;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(round_floats),
        serde_json::Value::Object(map) => map.values_mut().for_each(round_floats),
        _ => {}
    }
}

fn round_significant(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = libm::floor(libm::log10(x.abs())) as i32;
    let scale = libm::pow(10.0, f64::from(digits - 1 - magnitude));
    let rounded = libm::round(x * scale) / scale;
    // Print-parse round trip gives the shortest decimal for the rounded value.
    format!("{rounded:.*e}", (digits - 1) as usize)
        .parse()
        .unwrap_or(rounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: rounding keeps six significant digits at every magnitude and leaves zero, integers
    // and non-finite values alone.
    #[test]
    fn rounds_to_significant_digits() {
        assert_eq!(round_significant(1.23456789, 6), 1.23457);
        assert_eq!(round_significant(-0.000123456789, 6), -0.000123457);
        assert_eq!(round_significant(123456789.0, 6), 123457000.0);
        assert_eq!(round_significant(0.0, 6), 0.0);
        let mut v = serde_json::json!({"a": [1.23456789, 7], "b": {"c": 2.0000001}});
        round_floats(&mut v);
        assert_eq!(v, serde_json::json!({"a": [1.23457, 7], "b": {"c": 2.0}}));
    }
}
