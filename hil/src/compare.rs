//! `hil compare`: a simulation report and a bench report side by side: each axis's tracking
//! figures, the RMS deviation between the two position trajectories over the time both cover,
//! and an SVG overlay of setpoint and position. Owns the comparison and the plot; the reports
//! are `report.rs`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::report::{Report, Samples};

/// Points per curve in the SVG, at most (longer trajectories are thinned).
pub const SVG_POINTS_MAX: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{0}: the two reports share no axis name")]
    NoCommonAxis(String),
}

/// One axis compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AxisComparison {
    pub name: String,
    pub following_error_deg_max: [f64; 2],
    pub following_error_deg_rms: [f64; 2],
    pub current_a_peak: [f64; 2],
    pub position_deg_final: [f64; 2],
    /// RMS of (bench − sim) position over the common time span; `None` without samples.
    pub position_deviation_deg_rms: Option<f64>,
    pub position_deviation_deg_max: Option<f64>,
    pub overlap_s: f64,
}

/// The whole comparison (`--json` prints this).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub scenario: [String; 2],
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

/// RMS and max of `b − a` (positions) at `a`'s sample times inside both spans.
pub fn deviation(a: &Samples, b: &Samples) -> Option<(f64, f64, f64)> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let lo = a.t_s[0].max(b.t_s[0]);
    let hi = a.t_s[a.len() - 1].min(b.t_s[b.len() - 1]);
    let mut sum = 0.0;
    let mut max: f64 = 0.0;
    let mut n = 0usize;
    for (k, &t) in a.t_s.iter().enumerate() {
        if t < lo || t > hi {
            continue;
        }
        let d = interpolate(&b.t_s, &b.position_deg, t) - a.position_deg[k];
        sum += d * d;
        max = max.max(d.abs());
        n += 1;
    }
    (n > 0).then(|| ((sum / n as f64).sqrt(), max, hi - lo))
}

pub fn compare(sim: &Report, hil: &Report) -> Result<Comparison, CompareError> {
    let mut axes = Vec::new();
    for a in &sim.axes {
        let Some(b) = hil.axes.iter().find(|b| b.name == a.name) else {
            continue;
        };
        let dev = deviation(&a.samples, &b.samples);
        axes.push(AxisComparison {
            name: a.name.clone(),
            following_error_deg_max: [a.following_error_deg_max, b.following_error_deg_max],
            following_error_deg_rms: [a.following_error_deg_rms, b.following_error_deg_rms],
            current_a_peak: [a.current_a_peak, b.current_a_peak],
            position_deg_final: [a.position_deg_final, b.position_deg_final],
            position_deviation_deg_rms: dev.map(|d| d.0),
            position_deviation_deg_max: dev.map(|d| d.1),
            overlap_s: dev.map_or(0.0, |d| d.2),
        });
    }
    if axes.is_empty() {
        return Err(CompareError::NoCommonAxis(format!(
            "{} vs {}",
            sim.scenario, hil.scenario
        )));
    }
    Ok(Comparison {
        scenario: [sim.scenario.clone(), hil.scenario.clone()],
        verdict: [
            format!("{:?}", sim.verdict).to_lowercase(),
            format!("{:?}", hil.verdict).to_lowercase(),
        ],
        axes,
    })
}

impl Comparison {
    /// The side-by-side table `hil compare` prints.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{:<32} {:>14} {:>14}", "", "sim", "hil");
        let _ = writeln!(
            s,
            "{:<32} {:>14} {:>14}",
            "scenario", self.scenario[0], self.scenario[1]
        );
        let _ = writeln!(
            s,
            "{:<32} {:>14} {:>14}",
            "verdict", self.verdict[0], self.verdict[1]
        );
        for a in &self.axes {
            let _ = writeln!(s, "axis {}", a.name);
            let row = |s: &mut String, label: &str, v: [f64; 2], unit: &str| {
                let _ = writeln!(
                    s,
                    "  {:<30} {:>11.3} {unit:<2} {:>11.3} {unit}",
                    label, v[0], v[1]
                );
            };
            row(
                &mut s,
                "following error max",
                a.following_error_deg_max,
                "deg",
            );
            row(
                &mut s,
                "following error rms",
                a.following_error_deg_rms,
                "deg",
            );
            row(&mut s, "current peak", a.current_a_peak, "A");
            row(&mut s, "final position", a.position_deg_final, "deg");
            match (a.position_deviation_deg_rms, a.position_deviation_deg_max) {
                (Some(rms), Some(max)) => {
                    let _ = writeln!(
                        s,
                        "  position deviation (hil - sim): rms {rms:.3} deg, max {max:.3} deg over {:.2} s",
                        a.overlap_s
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

fn thin(s: &Samples) -> Vec<usize> {
    let step = s.len().div_ceil(SVG_POINTS_MAX).max(1);
    (0..s.len()).step_by(step).collect()
}

/// An SVG overlay of both runs' setpoint and position for every common axis.
pub fn svg(sim: &Report, hil: &Report) -> String {
    let pairs: Vec<_> = sim
        .axes
        .iter()
        .filter_map(|a| hil.axes.iter().find(|b| b.name == a.name).map(|b| (a, b)))
        .collect();
    let (width, panel) = (900.0, 300.0);
    let height = panel * pairs.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    for (row, (a, b)) in pairs.iter().enumerate() {
        let top = row as f64 * panel;
        let all_t = a.samples.t_s.iter().chain(&b.samples.t_s);
        let t_max = all_t.fold(0.0f64, |m, &t| m.max(t)).max(1e-3);
        let ys = a
            .samples
            .position_deg
            .iter()
            .chain(&a.samples.setpoint_deg)
            .chain(&b.samples.position_deg)
            .chain(&b.samples.setpoint_deg);
        let (y_min, y_max) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &y| {
            (lo.min(y), hi.max(y))
        });
        let (y_min, y_max) = if y_min.is_finite() && y_max > y_min {
            (y_min, y_max)
        } else {
            (-1.0, 1.0)
        };
        let (left, right, pad) = (60.0, width - 20.0, 30.0);
        let x = |t: f64| left + (right - left) * t / t_max;
        let y = |v: f64| top + panel - pad - (panel - 2.0 * pad) * (v - y_min) / (y_max - y_min);
        let _ = writeln!(
            out,
            r#"<text x="{left}" y="{}">axis {} — position (deg) vs time (s), 0 to {t_max:.2} s, {y_min:.1} to {y_max:.1} deg</text>"#,
            top + 18.0,
            a.name
        );
        let _ = writeln!(
            out,
            r##"<rect x="{left}" y="{}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
            top + pad,
            right - left,
            panel - 2.0 * pad
        );
        let curves: [(&Samples, bool, &str, &str); 4] = [
            (&a.samples, true, "#888", "sim setpoint"),
            (&a.samples, false, "#1f77b4", "sim position"),
            (&b.samples, true, "#bbb", "hil setpoint"),
            (&b.samples, false, "#d62728", "hil position"),
        ];
        for (k, (s, setpoint, colour, label)) in curves.iter().enumerate() {
            let values = if *setpoint {
                &s.setpoint_deg
            } else {
                &s.position_deg
            };
            let points: Vec<String> = thin(s)
                .into_iter()
                .map(|i| format!("{:.1},{:.1}", x(s.t_s[i]), y(values[i])))
                .collect();
            let dash = if *setpoint {
                r#" stroke-dasharray="4 3""#
            } else {
                ""
            };
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{}"/>"#,
                points.join(" ")
            );
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" fill="{colour}">{label}</text>"#,
                left + 10.0 + 110.0 * k as f64,
                top + panel - 8.0
            );
        }
    }
    out.push_str("</svg>\n");
    out
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
