//! `hil compare`: any two reports of one scenario side by side — a simulation (`sim run
//! --json`), a run against the emulator or on a bench (`hil run --json`) — with each axis's
//! tracking figures, the RMS and maximum deviation between the two position trajectories over
//! the time both cover, and an SVG overlay (setpoint and position of both, and their deviation).
//!
//! Owns the comparison and its pictures. The reports are read as `report.rs`'s type, which
//! takes a `sim run --json` report as it is (sim's extra keys are ignored, its absent setpoints
//! are `null`); which substrate a report came from is read from what it carries (a trace hash:
//! simulation; a timing section: a bench loop, real or emulated).

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

use crate::report::{Report, Samples};

/// Points per curve in the SVG, at most (longer trajectories are thinned).
pub const SVG_POINTS_MAX: usize = 2000;
/// The overlay's width, and the height of each axis's pair of panels, in SVG pixels.
pub const SVG_WIDTH_PX: u32 = 1000;
pub const SVG_AXIS_HEIGHT_PX: u32 = 560;
const TIME_TICK_COUNT_MAX: usize = 12;
const VALUE_TICK_COUNT_MAX: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{0}: the two reports share no axis name")]
    NoCommonAxis(String),
    #[error("the reports are of two scenarios, `{0}` and `{1}`: compare two runs of one scenario")]
    DifferentScenarios(String, String),
    #[error("{0}: not a report of `sim run --json` or `hil run --json`: {1}")]
    Unreadable(String, serde_json::Error),
}

/// Reads a report from its JSON text; `origin` (its file) names it in errors.
pub fn read_report(origin: &str, text: &str) -> Result<Report, CompareError> {
    serde_json::from_str(text).map_err(|e| CompareError::Unreadable(origin.to_owned(), e))
}

/// Where a report came from, as the table's column heading says it.
pub fn substrate(report: &Report) -> String {
    if report.trace_hash.is_some() {
        format!("sim seed {}", report.seed)
    } else if report.timing.is_some() {
        "hil run".to_owned()
    } else {
        "report".to_owned()
    }
}

/// One axis compared; each pair is (A, B).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AxisComparison {
    pub name: String,
    pub following_error_deg_max: [f64; 2],
    pub following_error_deg_rms: [f64; 2],
    pub current_a_peak: [f64; 2],
    pub position_deg_final: [f64; 2],
    /// RMS of (B − A) position over the common time span; `None` without samples.
    pub position_deviation_deg_rms: Option<f64>,
    pub position_deviation_deg_max: Option<f64>,
    pub overlap_s: f64,
}

/// The whole comparison (`--json` prints this).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// What each report is (`sim seed 1`, `hil run`), A then B.
    pub reports: [String; 2],
    pub scenario: String,
    pub verdict: [String; 2],
    pub axes: Vec<AxisComparison>,
}

/// Linear interpolation of `(t, y)` at `t`; `t` must be inside the samples' span.
fn interpolate(t_s: &[f64], y: &[f64], t: f64) -> f64 {
    let k = t_s.partition_point(|&x| x <= t);
    if k == 0 {
        return y[0];
    }
    if k >= t_s.len() {
        return y[t_s.len() - 1];
    }
    let (t0, t1) = (t_s[k - 1], t_s[k]);
    if t1 <= t0 {
        return y[k];
    }
    y[k - 1] + (y[k] - y[k - 1]) * (t - t0) / (t1 - t0)
}

/// The time both sample series cover, when they overlap.
fn common_span(a: &Samples, b: &Samples) -> Option<(f64, f64)> {
    let (a_first, a_last) = (a.t_s.first()?, a.t_s.last()?);
    let (b_first, b_last) = (b.t_s.first()?, b.t_s.last()?);
    let (lo, hi) = (a_first.max(*b_first), a_last.min(*b_last));
    (hi >= lo).then_some((lo, hi))
}

/// `(t, b − a)` of the positions at `a`'s sample times inside both spans.
fn deviation_series(a: &Samples, b: &Samples) -> Vec<(f64, f64)> {
    let Some((lo, hi)) = common_span(a, b) else {
        return Vec::new();
    };
    a.t_s
        .iter()
        .zip(&a.position_deg)
        .filter(|(t, p)| **t >= lo && **t <= hi && p.is_finite())
        .map(|(&t, &p)| (t, interpolate(&b.t_s, &b.position_deg, t) - p))
        .filter(|(_, d)| d.is_finite())
        .collect()
}

/// RMS and max of `b − a` (positions) at `a`'s sample times inside both spans, and the length
/// of that span; `None` when the two share no instant.
pub fn deviation(a: &Samples, b: &Samples) -> Option<(f64, f64, f64)> {
    let (lo, hi) = common_span(a, b)?;
    let series = deviation_series(a, b);
    if series.is_empty() {
        return None;
    }
    let sum: f64 = series.iter().map(|(_, d)| d * d).sum();
    let max = series.iter().fold(0.0f64, |m, (_, d)| m.max(d.abs()));
    Some(((sum / series.len() as f64).sqrt(), max, hi - lo))
}

/// Compares report A with report B, axis by axis (the axes both have, in A's order).
pub fn compare(a: &Report, b: &Report) -> Result<Comparison, CompareError> {
    if a.scenario != b.scenario {
        return Err(CompareError::DifferentScenarios(
            a.scenario.clone(),
            b.scenario.clone(),
        ));
    }
    let mut axes = Vec::new();
    for (x, y) in common_axes(a, b) {
        let dev = deviation(&x.samples, &y.samples);
        axes.push(AxisComparison {
            name: x.name.clone(),
            following_error_deg_max: [x.following_error_deg_max, y.following_error_deg_max],
            following_error_deg_rms: [x.following_error_deg_rms, y.following_error_deg_rms],
            current_a_peak: [x.current_a_peak, y.current_a_peak],
            position_deg_final: [x.position_deg_final, y.position_deg_final],
            position_deviation_deg_rms: dev.map(|d| d.0),
            position_deviation_deg_max: dev.map(|d| d.1),
            overlap_s: dev.map_or(0.0, |d| d.2),
        });
    }
    if axes.is_empty() {
        return Err(CompareError::NoCommonAxis(a.scenario.clone()));
    }
    let verdict = |r: &Report| format!("{:?}", r.verdict).to_lowercase();
    Ok(Comparison {
        reports: labels(a, b),
        scenario: a.scenario.clone(),
        verdict: [verdict(a), verdict(b)],
        axes,
    })
}

/// The two reports' headings, told apart when they would read the same.
fn labels(a: &Report, b: &Report) -> [String; 2] {
    let (x, y) = (substrate(a), substrate(b));
    if x == y {
        [format!("{x} (A)"), format!("{y} (B)")]
    } else {
        [x, y]
    }
}

fn common_axes<'r>(
    a: &'r Report,
    b: &'r Report,
) -> Vec<(&'r crate::report::AxisReport, &'r crate::report::AxisReport)> {
    a.axes
        .iter()
        .filter_map(|x| b.axes.iter().find(|y| y.name == x.name).map(|y| (x, y)))
        .collect()
}

impl Comparison {
    /// The side-by-side table `hil compare` prints.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let [a, b] = &self.reports;
        let _ = writeln!(s, "scenario {}: A = {a}, B = {b}", self.scenario);
        let _ = writeln!(s, "{:<30} {:>16} {:>16}", "", a, b);
        let _ = writeln!(
            s,
            "{:<30} {:>16} {:>16}",
            "verdict", self.verdict[0], self.verdict[1]
        );
        for axis in &self.axes {
            let _ = writeln!(s, "axis {}", axis.name);
            let row = |s: &mut String, label: &str, v: [f64; 2], unit: &str| {
                let _ = writeln!(
                    s,
                    "  {:<28} {:>12.3} {unit:<3} {:>12.3} {unit}",
                    label, v[0], v[1]
                );
            };
            row(
                &mut s,
                "following error max",
                axis.following_error_deg_max,
                "deg",
            );
            row(
                &mut s,
                "following error rms",
                axis.following_error_deg_rms,
                "deg",
            );
            row(&mut s, "current peak", axis.current_a_peak, "A");
            row(&mut s, "final position", axis.position_deg_final, "deg");
            match (
                axis.position_deviation_deg_rms,
                axis.position_deviation_deg_max,
            ) {
                (Some(rms), Some(max)) => {
                    let _ = writeln!(
                        s,
                        "  position deviation (B - A): rms {rms:.3} deg, max {max:.3} deg over {:.2} s",
                        axis.overlap_s
                    );
                }
                _ => {
                    let _ = writeln!(
                        s,
                        "  position deviation: no trajectory samples in one of the reports"
                    );
                }
            }
        }
        s
    }
}

/// A tick value as people write it: plotters' key points are round (1, 2 or 5 × 10^k) but carry
/// float noise (`0.30000000000000004`, `-5.6e-17`), so print six decimals at most, without
/// trailing zeros, and no negative zero.
fn tick_label(value: f64) -> String {
    let text = format!("{value:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// Drawing into a `String` has no I/O that could fail; an error is a bug in the layout.
const DRAWING: &str = "drawing an SVG into a String cannot fail";

/// Every `step`-th sample, so that a curve has at most [`SVG_POINTS_MAX`] points.
fn thinned(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let step = points.len().div_ceil(SVG_POINTS_MAX).max(1);
    points.into_iter().step_by(step).collect()
}

/// The finite `(t, value)` stretches of one column (an absent setpoint is NaN).
fn finite_runs(t_s: &[f64], values: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (t, v) in t_s.iter().zip(values) {
        if v.is_finite() {
            current.push((*t, *v));
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs.into_iter().map(thinned).collect()
}

fn span<'a>(values: impl Iterator<Item = &'a f64>) -> (f64, f64) {
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        low = low.min(*v);
        high = high.max(*v);
    }
    if !low.is_finite() {
        return (-1.0, 1.0);
    }
    let pad = ((high - low) * 0.05).max(1e-3);
    (low - pad, high + pad)
}

/// An SVG overlay of both runs, per common axis: setpoint and position of A and B (position,
/// deg, against time, s), and below it the deviation B − A (deg).
pub fn svg(a: &Report, b: &Report) -> String {
    let pairs = common_axes(a, b);
    let [label_a, label_b] = labels(a, b);
    let height = SVG_AXIS_HEIGHT_PX * pairs.len().max(1) as u32;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (SVG_WIDTH_PX, height)).into_drawing_area();
        root.fill(&WHITE).expect(DRAWING);
        let rows = root.split_evenly((pairs.len().max(1), 1));
        for ((x, y), area) in pairs.iter().zip(&rows) {
            let area = area
                .titled(
                    &format!(
                        "{} — axis {}: A = {label_a}, B = {label_b}",
                        a.scenario, x.name
                    ),
                    ("sans-serif", 16),
                )
                .expect(DRAWING);
            let (upper, lower) = area.split_vertically(SVG_AXIS_HEIGHT_PX as i32 * 3 / 5);
            let t_max = x
                .samples
                .t_s
                .iter()
                .chain(&y.samples.t_s)
                .fold(0.0f64, |m, &t| m.max(t))
                .max(1e-3);
            let curves = [
                (&x.samples, true, RGBColor(0x88, 0x88, 0x88), "A setpoint"),
                (&x.samples, false, RGBColor(0x1f, 0x77, 0xb4), "A position"),
                (&y.samples, true, RGBColor(0xbb, 0xbb, 0xbb), "B setpoint"),
                (&y.samples, false, RGBColor(0xd6, 0x27, 0x28), "B position"),
            ];
            let columns: Vec<Column<'_>> = curves
                .iter()
                .map(|(s, setpoint, colour, label)| {
                    let values = if *setpoint {
                        &s.setpoint_deg
                    } else {
                        &s.position_deg
                    };
                    (finite_runs(&s.t_s, values), *setpoint, *colour, *label)
                })
                .collect();
            let range = span(
                x.samples
                    .position_deg
                    .iter()
                    .chain(&x.samples.setpoint_deg)
                    .chain(&y.samples.position_deg)
                    .chain(&y.samples.setpoint_deg),
            );
            draw_panel(&upper, t_max, range, "position (deg)", &columns);
            let deviation = thinned(deviation_series(&x.samples, &y.samples));
            let range = span(deviation.iter().map(|(_, d)| d));
            draw_panel(
                &lower,
                t_max,
                range,
                "deviation B − A (deg)",
                &[(
                    vec![deviation],
                    false,
                    RGBColor(0x2c, 0xa0, 0x2c),
                    "position B − A",
                )],
            );
        }
        root.present().expect(DRAWING);
    }
    out
}

type Column<'a> = (Vec<Vec<(f64, f64)>>, bool, RGBColor, &'a str);

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    t_max: f64,
    (low, high): (f64, f64),
    value_desc: &str,
    columns: &[Column<'_>],
) {
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..t_max, low..high)
        .expect(DRAWING);
    chart
        .configure_mesh()
        .x_labels(TIME_TICK_COUNT_MAX)
        .y_labels(VALUE_TICK_COUNT_MAX)
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| tick_label(*v))
        .x_desc("time (s)")
        .y_desc(value_desc)
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(RGBColor(0xf0, 0xf0, 0xf0))
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .draw()
        .expect(DRAWING);
    for (runs, dashed, colour, label) in columns {
        let style = ShapeStyle::from(colour).stroke_width(if *dashed { 1 } else { 2 });
        for (k, run) in runs.iter().enumerate() {
            let drawn = if *dashed {
                chart.draw_series(DashedLineSeries::new(run.iter().copied(), 6, 4, style))
            } else {
                chart.draw_series(LineSeries::new(run.iter().copied(), style))
            }
            .expect(DRAWING);
            if k == 0 {
                let colour = *colour;
                drawn
                    .label(*label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0x99, 0x99, 0x99))
        .label_font(("sans-serif", 12))
        .draw()
        .expect(DRAWING);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deviation_of_a_shifted_trajectory() {
        // Goal: the RMS deviation is computed over the common span with interpolation. Method:
        // b = a + 2 deg, sampled at other times; deviation must be 2 deg everywhere.
        let mut a = Samples::default();
        let mut b = Samples::default();
        for k in 0..100 {
            let t = k as f64 * 0.01;
            a.push(t, 0.0, 10.0 * t, 0.0);
            let tb = 0.005 + k as f64 * 0.01;
            b.push(tb, 0.0, 10.0 * tb + 2.0, 0.0);
        }
        let (rms, max, overlap) = deviation(&a, &b).unwrap();
        assert!(
            (rms - 2.0).abs() < 1e-9 && (max - 2.0).abs() < 1e-9,
            "{rms} {max}"
        );
        assert!((overlap - 0.985).abs() < 1e-9);
        assert!(deviation(&a, &Samples::default()).is_none());
    }
}
