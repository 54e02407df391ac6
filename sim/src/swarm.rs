//! Swarm testing: per seed, which chaos fault kinds are on, and at what rates.
//!
//! A fixed mix of every fault kind at once tends to hide bugs that need one kind to be absent
//! (a crash-heavy run never lets a slow partition play out). Swarm testing (Groce et al., 2012;
//! TigerBeetle's VOPR draws its options from the seed the same way) lets each seed switch each
//! kind on or off and pick its rate, so a sweep over many seeds explores many *mixes*.
//!
//! With `[chaos] swarm = true`, the `per_min` rates are maxima: for each listed kind in
//! [`crate::fault::KINDS`] order, the seed's [`Stream::Swarm`] decides `on` with
//! probability [`KIND_ON_PROBABILITY`] and a rate uniform between [`RATE_FRACTION_MIN`] and 1
//! times the maximum. The schedule is then drawn from that
//! configuration exactly as without swarm ([`crate::fault::draw_chaos`]), and the report records
//! the configuration. A seed may switch every kind off: a fault-free run is a mix too.
//!
//! This module draws the configuration; it does not draw faults and does not touch the world.

use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use serde::{Deserialize, Serialize};

use crate::fault::{Chaos, FaultKind};
use crate::seed::{Seed, Stream};

/// Chance that a listed kind is on for a seed.
pub const KIND_ON_PROBABILITY: f64 = 0.5;
/// An enabled kind runs at least this fraction of its `per_min` maximum.
pub const RATE_FRACTION_MIN: f64 = 0.1;

/// What one seed drew: every kind of `[chaos.per_min]`, on or off, with its rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwarmConfig {
    pub kinds: Vec<SwarmKind>,
}

/// One kind of a [`SwarmConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwarmKind {
    /// Serialized as its name.
    pub kind: FaultKind,
    pub on: bool,
    /// Mean faults per simulated minute this seed uses (0 when off).
    pub rate_per_min: f64,
    /// The scenario's maximum for this kind.
    pub rate_per_min_max: f64,
}

impl SwarmConfig {
    /// Draws a configuration for `chaos`'s kinds from `rng`. Each kind consumes the same two
    /// numbers whether it ends up on or off, so one kind's draw never shifts another's.
    pub fn draw(chaos: &Chaos, rng: &mut ChaCha8Rng) -> SwarmConfig {
        let kinds = chaos
            .rates_per_min
            .iter()
            .map(|(kind, max)| {
                let on_u = unit(rng);
                let rate_u = unit(rng);
                let on = *max > 0.0 && on_u < KIND_ON_PROBABILITY;
                let fraction = RATE_FRACTION_MIN + (1.0 - RATE_FRACTION_MIN) * rate_u;
                SwarmKind {
                    kind: *kind,
                    on,
                    rate_per_min: if on { max * fraction } else { 0.0 },
                    rate_per_min_max: *max,
                }
            })
            .collect();
        SwarmConfig { kinds }
    }

    /// `chaos` with this configuration's rates in place of its maxima.
    pub fn apply(&self, chaos: &Chaos) -> Chaos {
        let mut drawn = chaos.clone();
        drawn.rates_per_min = self
            .kinds
            .iter()
            .map(|k| (k.kind, k.rate_per_min))
            .collect();
        drawn.swarm = false;
        drawn
    }

    /// The kinds that are on, in `per_min` order.
    pub fn kinds_on(&self) -> Vec<&'static str> {
        self.kinds
            .iter()
            .filter(|k| k.on)
            .map(|k| k.kind.name())
            .collect()
    }
}

/// The configuration `seed` draws, when `chaos` asks for swarm testing.
pub fn for_seed(chaos: &Chaos, seed: u64) -> Option<SwarmConfig> {
    chaos
        .swarm
        .then(|| SwarmConfig::draw(chaos, &mut Seed(seed).rng(Stream::Swarm)))
}

/// The chaos a run under `seed` draws its schedule from: the scenario's own, or with swarm
/// testing the seed's configuration of it.
pub fn effective_chaos(chaos: &Chaos, seed: u64) -> Chaos {
    match for_seed(chaos, seed) {
        Some(config) => config.apply(chaos),
        None => chaos.clone(),
    }
}

/// A uniform number in [0, 1) from 53 random bits.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn chaos(swarm: bool) -> Chaos {
        Chaos {
            from: Duration::from_secs(1),
            until: Duration::from_secs(10),
            rates_per_min: vec![
                (FaultKind::Partition, 6.0),
                (FaultKind::Crash, 2.0),
                (FaultKind::Restart, 0.0),
                (FaultKind::FieldbusLoss, 12.0),
            ],
            fault_s_mean: 1.0,
            fault_s_max: 3.0,
            swarm,
        }
    }

    // Goal: the configuration is a function of the seed; rates stay within [fraction, 1] of
    // their maxima, off kinds run at 0, a kind with maximum 0 is never on, and over many seeds
    // both on and off occur for every kind with a positive maximum (so mixes differ).
    #[test]
    fn draws_bounded_reproducible_mixes() {
        let chaos = chaos(true);
        let mut seen_on = [false; 4];
        let mut seen_off = [false; 4];
        let mut mixes = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let config = for_seed(&chaos, seed).expect("swarm is on");
            assert_eq!(Some(&config), for_seed(&chaos, seed).as_ref());
            assert_eq!(config.kinds.len(), 4);
            for (i, k) in config.kinds.iter().enumerate() {
                assert_eq!(k.kind, chaos.rates_per_min[i].0);
                if k.on {
                    seen_on[i] = true;
                    assert!(
                        k.rate_per_min >= RATE_FRACTION_MIN * k.rate_per_min_max
                            && k.rate_per_min <= k.rate_per_min_max,
                        "{k:?}"
                    );
                } else {
                    seen_off[i] = true;
                    assert_eq!(k.rate_per_min, 0.0);
                }
            }
            mixes.insert(config.kinds_on().join(","));
        }
        assert_eq!(seen_on, [true, true, false, true], "restart has maximum 0");
        assert_eq!(seen_off, [true; 4]);
        assert!(mixes.len() >= 6, "only {} distinct mixes", mixes.len());
    }

    // Goal: without `swarm`, the chaos is used as written and no configuration is recorded;
    // with it, the effective chaos carries exactly the drawn rates.
    #[test]
    fn effective_chaos_applies_the_draw_only_with_swarm() {
        assert_eq!(for_seed(&chaos(false), 3), None);
        assert_eq!(effective_chaos(&chaos(false), 3), chaos(false));
        let config = for_seed(&chaos(true), 3).expect("on");
        let effective = effective_chaos(&chaos(true), 3);
        assert!(!effective.swarm);
        let rates: Vec<f64> = effective.rates_per_min.iter().map(|(_, r)| *r).collect();
        let drawn: Vec<f64> = config.kinds.iter().map(|k| k.rate_per_min).collect();
        assert_eq!(rates, drawn);
    }
}
