//! SVG plots of a run: per axis, the ground-truth position against the setpoint and the
//! winding current over time, with every fault that touched the axis shaded.
//!
//! Drawn with `plotters` (SVG backend only): its mesh picks round tick values (steps of 1, 2 or
//! 5 times a power of ten), labels the axes and draws the legend. Without the `ttf` feature
//! plotters lays text out with a fixed estimate instead of reading the system's fonts, so a plot
//! is a pure function of the series: the same run gives the same bytes on every machine. This
//! module owns the picture; the series are `run.rs`'s, the faults `fault.rs`'s.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::fault::{Fault, Target};
use crate::run::AxisSeries;

/// The picture's size in SVG pixels.
pub const PLOT_WIDTH_PX: u32 = 1000;
pub const PLOT_HEIGHT_PX: u32 = 720;
/// Tick labels per axis, at most (plotters rounds the step to 1, 2 or 5 × 10^k).
const TIME_TICK_COUNT_MAX: usize = 12;
const VALUE_TICK_COUNT_MAX: usize = 10;
/// A fault without a heal time (an instant one) is drawn this fraction of the run wide.
const INSTANT_FAULT_WIDTH_FRACTION: f64 = 1.0 / 400.0;

const SETPOINT: RGBColor = RGBColor(0x33, 0x33, 0x33);
const POSITION: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const CURRENT: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const FAULT: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const FAULT_TEXT: RGBColor = RGBColor(0xb3, 0x59, 0x00);
const FAULT_OPACITY: f64 = 0.18;
const FAULT_LABEL_ROWS: usize = 3;

/// The SVG document for one axis.
pub fn axis_svg(
    scenario: &str,
    seed: u64,
    series: &AxisSeries,
    faults: &[Fault],
    end_s: f64,
) -> String {
    let end_s = end_s.max(1e-3);
    let relevant: Vec<(f64, f64, &str)> = faults
        .iter()
        .filter(|f| match &f.target {
            Target::Axis(axis) => *axis == series.name,
            _ => true,
        })
        .map(|f| {
            let start = f.at.as_secs_f64();
            let stop = f
                .until
                .map_or(start + end_s * INSTANT_FAULT_WIDTH_FRACTION, |u| {
                    u.as_secs_f64()
                });
            (start, stop.min(end_s), f.kind.name())
        })
        .collect();
    let degrees = |v: &[f64]| v.iter().map(|x| x.to_degrees()).collect::<Vec<_>>();
    let setpoint = degrees(&series.setpoint_rad);
    let position = degrees(&series.position_rad);
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (PLOT_WIDTH_PX, PLOT_HEIGHT_PX)).into_drawing_area();
        root.fill(&WHITE).expect(DRAWING);
        let root = root
            .titled(
                &format!("{scenario} — axis {} — seed {seed}", series.name),
                ("sans-serif", 18),
            )
            .expect(DRAWING);
        let (upper, lower) = root.split_vertically(PLOT_HEIGHT_PX as i32 / 2 - 10);
        panel(
            &upper,
            Panel {
                end_s,
                value_desc: "position (deg)",
                faults: &relevant,
                curves: &[
                    Curve {
                        label: "position (ground truth)",
                        colour: POSITION,
                        dashed: false,
                        t_s: &series.t_s,
                        values: &position,
                    },
                    Curve {
                        label: "setpoint",
                        colour: SETPOINT,
                        dashed: true,
                        t_s: &series.t_s,
                        values: &setpoint,
                    },
                ],
            },
        );
        panel(
            &lower,
            Panel {
                end_s,
                value_desc: "winding current (A)",
                faults: &relevant,
                curves: &[Curve {
                    label: "current (ground truth)",
                    colour: CURRENT,
                    dashed: false,
                    t_s: &series.t_s,
                    values: &series.current_a,
                }],
            },
        );
        root.present().expect(DRAWING);
    }
    svg
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

struct Curve<'a> {
    label: &'a str,
    colour: RGBColor,
    dashed: bool,
    t_s: &'a [f64],
    values: &'a [f64],
}

struct Panel<'a> {
    end_s: f64,
    value_desc: &'a str,
    /// (start, end, kind name) of each fault, in seconds.
    faults: &'a [(f64, f64, &'a str)],
    curves: &'a [Curve<'a>],
}

fn panel(area: &DrawingArea<SVGBackend<'_>, Shift>, panel: Panel<'_>) {
    let (low, high) = value_range(panel.curves.iter().flat_map(|c| c.values.iter()));
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..panel.end_s, low..high)
        .expect(DRAWING);
    chart
        .configure_mesh()
        .x_labels(TIME_TICK_COUNT_MAX)
        .y_labels(VALUE_TICK_COUNT_MAX)
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| tick_label(*v))
        .x_desc("time (s)")
        .y_desc(panel.value_desc)
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(RGBColor(0xf0, 0xf0, 0xf0))
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .draw()
        .expect(DRAWING);
    if !panel.faults.is_empty() {
        chart
            .draw_series(panel.faults.iter().map(|(start, stop, _)| {
                Rectangle::new(
                    [(*start, low), (stop.max(*start), high)],
                    FAULT.mix(FAULT_OPACITY).filled(),
                )
            }))
            .expect(DRAWING)
            .label("fault")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], FAULT.mix(0.4).filled())
            });
        chart
            .draw_series(
                panel
                    .faults
                    .iter()
                    .enumerate()
                    .map(|(k, (start, _, name))| {
                        // Three rows of names, so that faults close together stay readable.
                        let row = (k % FAULT_LABEL_ROWS) as i32;
                        EmptyElement::at((*start, high))
                            + Text::new(
                                (*name).to_owned(),
                                (2, 2 + 11 * row),
                                ("sans-serif", 10).into_font().color(&FAULT_TEXT),
                            )
                    }),
            )
            .expect(DRAWING);
    }
    for curve in panel.curves {
        let style = ShapeStyle::from(&curve.colour).stroke_width(if curve.dashed { 1 } else { 2 });
        let mut labelled = false;
        for run in finite_runs(curve.t_s, curve.values) {
            let drawn = if curve.dashed {
                chart.draw_series(DashedLineSeries::new(run, 6, 4, style))
            } else {
                chart.draw_series(LineSeries::new(run, style))
            }
            .expect(DRAWING);
            if !labelled {
                labelled = true;
                let colour = curve.colour;
                drawn
                    .label(curve.label)
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

/// The stretches of `(t, value)` with a finite value: a setpoint is absent (NaN) before an
/// axis's first move, and a line must not be drawn across the gap.
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
    runs
}

/// The range a panel shows: the finite values' span with 5 % room on each side.
fn value_range<'a>(values: impl Iterator<Item = &'a f64>) -> (f64, f64) {
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

/// Checks that every axis of an SVG plot (this module's or `hil compare`'s) has at least
/// three tick labels, evenly spaced by 1, 2 or 5 × 10^k, each a multiple of the step; an error
/// says which labels are not. Ticks are the numeric `<text>` elements, an axis's written one
/// after another: a y axis's share their `x` (right-aligned), an x axis's their `y`. For tests
/// of plots.
pub fn check_round_ticks(svg: &str) -> Result<(), String> {
    let groups = tick_groups(svg);
    if groups.len() < 2 {
        return Err(format!("fewer than two axes with tick labels: {groups:?}"));
    }
    for mut ticks in groups {
        ticks.sort_by(f64::total_cmp);
        if ticks.len() < 3 {
            return Err(format!("too few ticks: {ticks:?}"));
        }
        let step = ticks[1] - ticks[0];
        let magnitude = libm::pow(10.0, libm::floor(libm::log10(step)));
        let mantissa = step / magnitude;
        if ![1.0, 2.0, 5.0, 10.0]
            .iter()
            .any(|m| (mantissa - m).abs() < 1e-6)
        {
            return Err(format!(
                "step {step} of ticks {ticks:?} is not 1, 2 or 5 × 10^k"
            ));
        }
        for pair in ticks.windows(2) {
            if ((pair[1] - pair[0]) - step).abs() > step * 1e-6 {
                return Err(format!("ticks {ticks:?} are not evenly spaced"));
            }
        }
        for tick in &ticks {
            let multiple = tick / step;
            if (multiple - multiple.round()).abs() > 1e-6 {
                return Err(format!("tick {tick} is not a multiple of the step {step}"));
            }
        }
    }
    Ok(())
}

/// The numbers of an SVG's `<text>` elements, grouped by axis (see [`check_round_ticks`]).
fn tick_groups(svg: &str) -> Vec<Vec<f64>> {
    // An axis's labels are written one after another; a label that shares another attribute
    // starts the next axis (two panels' y axes share their `x`).
    let mut groups: Vec<((bool, String), Vec<f64>)> = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find("<text") {
        let Some(open_end) = rest[start..].find('>').map(|i| start + i) else {
            break;
        };
        let Some(close) = rest[open_end..].find("</text>").map(|i| open_end + i) else {
            break;
        };
        let attributes = &rest[start..open_end];
        let body = rest[open_end + 1..close].trim();
        rest = &rest[close..];
        let attribute = |name: &str| -> String {
            let key = format!(" {name}=\"");
            attributes
                .find(&key)
                .map(|i| {
                    let from = i + key.len();
                    let to = attributes[from..].find('"').map_or(from, |j| from + j);
                    attributes[from..to].to_owned()
                })
                .unwrap_or_default()
        };
        let Ok(value) = body.parse::<f64>() else {
            continue;
        };
        let y_axis = attribute("text-anchor") == "end";
        let shared = if y_axis {
            attribute("x")
        } else {
            attribute("y")
        };
        let key = (y_axis, shared);
        match groups.last_mut() {
            Some((last, values)) if *last == key => values.push(value),
            _ => groups.push((key, vec![value])),
        }
    }
    groups.into_iter().map(|(_, values)| values).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the tick check can fail: the old hand-drawn axis (103.820, 80.455, 57.089 ...) and
    // uneven ticks are refused, round ones pass.
    #[test]
    fn the_tick_check_refuses_unround_labels() {
        let axis = |anchor: &str, values: &[&str]| {
            values
                .iter()
                .enumerate()
                .map(|(k, v)| {
                    let (x, y) = if anchor == "end" {
                        (60, 40 + 50 * k)
                    } else {
                        (70 + 100 * k, 300)
                    };
                    format!(r#"<text x="{x}" y="{y}" text-anchor="{anchor}">{v}</text>"#)
                })
                .collect::<String>()
        };
        let time = axis("middle", &["0", "1", "2", "3"]);
        let old = axis("end", &["103.820", "80.455", "57.089"]);
        assert!(check_round_ticks(&format!("{time}{old}")).is_err());
        let uneven = axis("end", &["0", "20", "50"]);
        assert!(check_round_ticks(&format!("{time}{uneven}")).is_err());
        let round = axis("end", &["-50", "0", "50", "100"]);
        assert_eq!(check_round_ticks(&format!("{time}{round}")), Ok(()));
    }

    // Goal: a NaN splits a curve into separate runs and never reaches the plot.
    #[test]
    fn nan_values_split_a_curve() {
        let t = [0.0, 1.0, 2.0, 3.0, 4.0];
        let v = [f64::NAN, 1.0, 2.0, f64::NAN, 4.0];
        assert_eq!(
            finite_runs(&t, &v),
            vec![vec![(1.0, 1.0), (2.0, 2.0)], vec![(4.0, 4.0)]]
        );
        assert!(finite_runs(&t, &[f64::NAN; 5]).is_empty());
    }
}
