//! SVG plots of a run: per axis, position against setpoint and the winding current over time,
//! with every fault that touched the cell drawn as a shaded band.
//!
//! Plain SVG written by hand: a plot is two panels of polylines, ticks and labels, and a
//! plotting library would add a large dependency for that. Output is a pure function of the
//! series, so plots are as reproducible as the run.

use std::fmt::Write as _;

use crate::fault::{Fault, Target};
use crate::run::AxisSeries;

const WIDTH: f64 = 1000.0;
const PANEL_HEIGHT: f64 = 260.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 40.0;
const PANEL_GAP: f64 = 50.0;
const TICK_COUNT: usize = 6;

/// The SVG document for one axis.
pub fn axis_svg(
    scenario: &str,
    seed: u64,
    series: &AxisSeries,
    faults: &[Fault],
    end_s: f64,
) -> String {
    let height = MARGIN_TOP + 2.0 * PANEL_HEIGHT + PANEL_GAP + 50.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{MARGIN_LEFT}" y="22" font-size="15">{} — axis {} — seed {seed}</text>"#,
        escape(scenario),
        escape(&series.name)
    );
    let degrees = |v: &[f64]| v.iter().map(|x| x.to_degrees()).collect::<Vec<_>>();
    let setpoint = degrees(&series.setpoint_rad);
    let position = degrees(&series.position_rad);
    let top = MARGIN_TOP;
    let bottom = MARGIN_TOP + PANEL_HEIGHT + PANEL_GAP;
    let relevant: Vec<&Fault> = faults
        .iter()
        .filter(|f| match &f.target {
            Target::Axis(axis) => *axis == series.name,
            _ => true,
        })
        .collect();
    for (y, panel) in [(top, "position (deg)"), (bottom, "current (A)")] {
        draw_faults(&mut svg, &relevant, end_s, y);
        let _ = writeln!(
            svg,
            r#"<text x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle">{panel}</text>"#,
            y + PANEL_HEIGHT / 2.0,
            y + PANEL_HEIGHT / 2.0
        );
    }
    let position_range = range(setpoint.iter().chain(&position));
    frame(&mut svg, top, end_s, position_range);
    line(
        &mut svg,
        &series.t_s,
        &setpoint,
        top,
        end_s,
        position_range,
        "#888888",
        "4 3",
    );
    line(
        &mut svg,
        &series.t_s,
        &position,
        top,
        end_s,
        position_range,
        "#1f77b4",
        "",
    );
    let current_range = range(series.current_a.iter());
    frame(&mut svg, bottom, end_s, current_range);
    line(
        &mut svg,
        &series.t_s,
        &series.current_a,
        bottom,
        end_s,
        current_range,
        "#d62728",
        "",
    );
    let legend_y = height - 14.0;
    let _ = writeln!(
        svg,
        r##"<text x="{MARGIN_LEFT}" y="{legend_y}"><tspan fill="#888888">- - setpoint</tspan>   <tspan fill="#1f77b4">— position (ground truth)</tspan>   <tspan fill="#d62728">— current</tspan>   <tspan fill="#ff7f0e">▮ fault</tspan>   time (s)</text>"##
    );
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn range<'a>(values: impl Iterator<Item = &'a f64>) -> (f64, f64) {
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

fn x_of(t_s: f64, end_s: f64) -> f64 {
    MARGIN_LEFT + (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) * (t_s / end_s.max(1e-9))
}

fn y_of(v: f64, top: f64, (low, high): (f64, f64)) -> f64 {
    top + PANEL_HEIGHT * (1.0 - (v - low) / (high - low))
}

fn frame(svg: &mut String, top: f64, end_s: f64, range: (f64, f64)) {
    let right = WIDTH - MARGIN_RIGHT;
    let _ = writeln!(
        svg,
        r##"<rect x="{MARGIN_LEFT}" y="{top}" width="{}" height="{PANEL_HEIGHT}" fill="none" stroke="#444"/>"##,
        right - MARGIN_LEFT
    );
    for k in 0..=TICK_COUNT {
        let f = k as f64 / TICK_COUNT as f64;
        let t = end_s * f;
        let x = x_of(t, end_s);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#eee"/>"##,
            top + PANEL_HEIGHT
        );
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{t:.2}</text>"#,
            top + PANEL_HEIGHT + 15.0
        );
        let v = range.0 + (range.1 - range.0) * f;
        let y = y_of(v, top, range);
        let _ = writeln!(
            svg,
            r##"<line x1="{MARGIN_LEFT}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#eee"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{v:.3}</text>"#,
            MARGIN_LEFT - 5.0,
            y + 4.0
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn line(
    svg: &mut String,
    t_s: &[f64],
    values: &[f64],
    top: f64,
    end_s: f64,
    range: (f64, f64),
    color: &str,
    dash: &str,
) {
    let mut points = String::new();
    for (t, v) in t_s.iter().zip(values) {
        if v.is_finite() {
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                x_of(*t, end_s),
                y_of(*v, top, range)
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.3" stroke-dasharray="{dash}"/>"#,
        points.trim_end()
    );
}

fn draw_faults(svg: &mut String, faults: &[&Fault], end_s: f64, top: f64) {
    for fault in faults {
        let start = fault.at.as_secs_f64();
        let stop = fault
            .until
            .map_or(start + end_s / 400.0, |u| u.as_secs_f64());
        let (x0, x1) = (x_of(start, end_s), x_of(stop, end_s));
        let _ = writeln!(
            svg,
            r##"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{PANEL_HEIGHT}" fill="#ff7f0e" fill-opacity="0.18"><title>{}</title></rect>"##,
            (x1 - x0).max(1.5),
            escape(&fault.to_string())
        );
        let _ = writeln!(
            svg,
            r##"<text x="{x0:.1}" y="{}" font-size="10" fill="#b35900">{}</text>"##,
            top + 11.0,
            escape(fault.kind.name())
        );
    }
}
