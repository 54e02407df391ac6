//! Chaos: a concrete fault schedule drawn from `[chaos]`'s rates with the seed's stream.
//!
//! Generic over the kind table ([`super::KINDS`]): a kind's target class says what it may hit
//! and how one is picked, its magnitude row says the range a magnitude is drawn from. The draw
//! order of the stream is part of every chaos scenario's trace hash; it is documented on
//! [`draw_chaos`] and must not change.

use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

use super::{Draw, Fault, FaultKind, Target, TargetClass};

/// `[chaos]` resolved: per fault kind, a mean rate; the window it may strike in.
#[derive(Debug, Clone, PartialEq)]
pub struct Chaos {
    pub from: Duration,
    pub until: Duration,
    /// (kind, mean faults per simulated minute), kinds in table order.
    pub rates_per_min: Vec<(FaultKind, f64)>,
    pub fault_s_mean: f64,
    pub fault_s_max: f64,
    /// Swarm testing: the seed first draws which kinds are on and at what rates, the rates above
    /// being maxima (`crate::swarm`).
    pub swarm: bool,
}

/// What chaos may aim at: the cell's service hosts, the host pairs that have links, the axes.
#[derive(Debug, Clone)]
pub struct ChaosTargets {
    pub hosts: Vec<String>,
    pub links: Vec<(String, String)>,
    pub axes: Vec<String>,
}

/// Upper bound on drawn faults, whatever the rates: a run's schedule stays small.
pub const CHAOS_FAULT_COUNT_MAX: usize = 256;

/// Draws a concrete fault schedule from the chaos rates with the given stream.
///
/// Arrivals of each kind are a Poisson process (exponential gaps at the kind's rate); each
/// fault lasts an exponential time with mean `fault_s_mean`, capped at `fault_s_max` and at the
/// end of the chaos window. Targets are drawn uniformly. Kinds are drawn in a fixed order so
/// that the schedule is a pure function of the stream. Per fault the stream gives, in order:
/// the gap (one `u64`); a [`Draw::SignedWhole`] magnitude (two `u32`); the target (one `u64`,
/// and for a one-way link one `u32` for its direction; nothing when the cell has no target of
/// the class, which ends that kind's draws); a [`Draw::Uniform`] magnitude (one `u64`); the
/// length of a lasting fault (one `u64`).
pub fn draw_chaos(chaos: &Chaos, targets: &ChaosTargets, rng: &mut ChaCha8Rng) -> Vec<Fault> {
    let mut faults = Vec::new();
    let window_s = chaos.until.saturating_sub(chaos.from).as_secs_f64();
    for (kind, rate_per_min) in &chaos.rates_per_min {
        if *rate_per_min <= 0.0 || window_s <= 0.0 {
            continue;
        }
        let rate_per_s = rate_per_min / 60.0;
        let mut t_s = 0.0;
        loop {
            t_s += exponential(rng, 1.0 / rate_per_s);
            if t_s >= window_s || faults.len() >= CHAOS_FAULT_COUNT_MAX {
                break;
            }
            let Some((target, magnitude)) = draw_kind(*kind, targets, rng) else {
                break;
            };
            let at = chaos.from + Duration::from_secs_f64(t_s);
            let until = if kind.is_instant() {
                None
            } else {
                let length_s = exponential(rng, chaos.fault_s_mean).min(chaos.fault_s_max);
                Some((at + Duration::from_secs_f64(length_s.max(0.001))).min(chaos.until))
            };
            faults.push(Fault {
                kind: *kind,
                target,
                magnitude,
                at,
                until,
                drawn: true,
            });
        }
    }
    faults.sort_by(|a, b| {
        a.at.cmp(&b.at)
            .then_with(|| a.kind.name().cmp(b.kind.name()))
    });
    faults
}

/// One fault of `kind` with a random target and magnitude; `None` when the cell has nothing
/// that kind could hit.
fn draw_kind(
    kind: FaultKind,
    targets: &ChaosTargets,
    rng: &mut ChaCha8Rng,
) -> Option<(Target, Option<f64>)> {
    let magnitude = kind.row().magnitude.map(|m| m.draw);
    let early = magnitude
        .filter(|d| d.precedes_target())
        .map(|d| draw_magnitude(d, rng));
    let target = draw_target(kind.row().target, targets, rng)?;
    let magnitude = early.or_else(|| magnitude.map(|d| draw_magnitude(d, rng)));
    Some((target, magnitude))
}

fn draw_target(class: TargetClass, targets: &ChaosTargets, rng: &mut ChaCha8Rng) -> Option<Target> {
    Some(match class {
        TargetClass::Link => {
            let (a, b) = pick(rng, &targets.links)?.clone();
            Target::Link { a, b }
        }
        TargetClass::LinkOneway => {
            let (a, b) = pick(rng, &targets.links)?.clone();
            if rng.next_u32().is_multiple_of(2) {
                Target::LinkOneway { from: a, to: b }
            } else {
                Target::LinkOneway { from: b, to: a }
            }
        }
        TargetClass::Host | TargetClass::Disk => Target::Host(pick(rng, &targets.hosts)?.clone()),
        TargetClass::Fieldbus | TargetClass::Plant => {
            Target::Axis(pick(rng, &targets.axes)?.clone())
        }
    })
}

fn draw_magnitude(draw: Draw, rng: &mut ChaCha8Rng) -> f64 {
    match draw {
        Draw::Uniform { low, high } => uniform(rng, low, high),
        Draw::SignedWhole { max } => {
            let size = 1 + rng.next_u32() % max;
            let sign = if rng.next_u32().is_multiple_of(2) {
                1.0
            } else {
                -1.0
            };
            sign * f64::from(size)
        }
    }
}

/// Every target chaos may draw for a class (what coverage counts against).
pub fn candidates(class: TargetClass, targets: &ChaosTargets) -> Vec<Target> {
    match class {
        TargetClass::Link => targets
            .links
            .iter()
            .map(|(a, b)| Target::Link {
                a: a.clone(),
                b: b.clone(),
            })
            .collect(),
        TargetClass::LinkOneway => targets
            .links
            .iter()
            .flat_map(|(a, b)| {
                [(a, b), (b, a)].map(|(from, to)| Target::LinkOneway {
                    from: from.clone(),
                    to: to.clone(),
                })
            })
            .collect(),
        TargetClass::Host | TargetClass::Disk => {
            targets.hosts.iter().cloned().map(Target::Host).collect()
        }
        TargetClass::Fieldbus | TargetClass::Plant => {
            targets.axes.iter().cloned().map(Target::Axis).collect()
        }
    }
}

fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    // Inverse transform of a uniform in (0, 1]; 53 random bits, never exactly zero.
    let u = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    -mean * libm::log(u)
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        return None;
    }
    Some(&items[(rng.next_u64() % items.len() as u64) as usize])
}

fn uniform(rng: &mut ChaCha8Rng, low: f64, high: f64) -> f64 {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    low + (high - low) * u
}

#[cfg(test)]
mod tests {
    use super::super::KINDS;
    use super::*;
    use rand_core::SeedableRng;

    fn chaos(rates: &[(FaultKind, f64)]) -> Chaos {
        Chaos {
            from: Duration::from_secs(1),
            until: Duration::from_secs(61),
            rates_per_min: rates.to_vec(),
            fault_s_mean: 1.0,
            fault_s_max: 5.0,
            swarm: false,
        }
    }

    fn targets() -> ChaosTargets {
        ChaosTargets {
            hosts: vec!["motion-1".into()],
            links: vec![("client-1".into(), "motion-1".into())],
            axes: vec!["x".into(), "y".into()],
        }
    }

    // Goal: every kind of the table can be drawn; the schedule is a function of the stream,
    // sorted, inside the window, and its length follows the rate; every drawn target is one of
    // the class's candidates (what coverage counts against) and every magnitude lies in its
    // row's draw range, a whole number where the row says so.
    #[test]
    fn chaos_draws_every_kind_inside_the_window_deterministically() {
        let rates: Vec<(FaultKind, f64)> = KINDS.iter().map(|row| (row.kind, 6.0)).collect();
        let chaos = chaos(&rates);
        let a = draw_chaos(&chaos, &targets(), &mut ChaCha8Rng::seed_from_u64(7));
        let b = draw_chaos(&chaos, &targets(), &mut ChaCha8Rng::seed_from_u64(7));
        let c = draw_chaos(&chaos, &targets(), &mut ChaCha8Rng::seed_from_u64(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        for row in KINDS {
            assert!(
                a.iter().any(|f| f.kind == row.kind),
                "kind {} never drawn",
                row.name
            );
        }
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        for fault in &a {
            assert!(fault.at >= chaos.from && fault.at < chaos.until);
            if let Some(until) = fault.until {
                assert!(until > fault.at && until <= chaos.until);
            }
            assert_eq!(fault.until.is_none(), fault.kind.is_instant(), "{fault}");
            let row = fault.kind.row();
            assert!(
                candidates(row.target, &targets()).contains(&fault.target),
                "{fault}"
            );
            match (row.magnitude, fault.magnitude) {
                (None, None) => {}
                (Some(m), Some(value)) => {
                    let (low, high) = m.draw.bounds();
                    assert!((low..=high).contains(&value), "{fault}: {value}");
                    if m.whole {
                        assert!(value == value.trunc() && value != 0.0, "{fault}: {value}");
                    }
                }
                (want, got) => panic!("{fault}: row {want:?}, drawn {got:?}"),
            }
        }
        // 20 kinds at 6/min over one minute: about 120 faults; a Poisson count stays well inside.
        assert!((60..=200).contains(&a.len()), "drew {} faults", a.len());
    }

    // Goal: a kind with no possible target is skipped, not drawn against a made-up target.
    #[test]
    fn chaos_skips_kinds_without_targets() {
        let empty = ChaosTargets {
            hosts: vec![],
            links: vec![],
            axes: vec![],
        };
        let drawn = draw_chaos(
            &chaos(&[(FaultKind::Crash, 60.0)]),
            &empty,
            &mut ChaCha8Rng::seed_from_u64(1),
        );
        assert!(drawn.is_empty());
    }
}
