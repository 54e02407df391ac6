//! The drive's sensors: encoder, velocity estimate, current measurement, temperature and bus
//! voltage, sampled at a fixed period.
//!
//! Owns: quantisation, seeded noise, the one-sample delay on current, and the encoder faults'
//! effect on the readings. Does not own: the true state (handed in at each sample) or the
//! random stream's origin (the caller hands the plant a `ChaCha8Rng`, docs/DESIGN.md §3).
//!
//! Samples are taken at step boundaries that are multiples of `sample_period_ns` (1 ms in the
//! presets, so a 1 kHz controller reading at k ms sees the sample taken at k ms). The noise
//! stream is consumed only at samples, a fixed number of draws per sample, so readings do not
//! depend on how the caller chunks `advance_to`.

use crate::params::{self, VelocitySource};
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use serde::Serialize;

/// What a drive reports.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SensorReading {
    /// Output position from the encoder, quantised to counts (plus any glitch offset), rad.
    pub position_rad: f64,
    /// Output velocity as configured (`sensor.velocity`), rad/s.
    pub velocity_rad_per_s: f64,
    /// Winding current with noise and quantisation, one sample old, A.
    pub current_a: f64,
    /// Winding temperature, quantised, °C.
    pub winding_temperature_c: f64,
    /// Bus voltage, quantised, V.
    pub bus_voltage_v: f64,
    /// False during an encoder dropout; position and velocity are then frozen.
    pub valid: bool,
}

/// True values handed to a sample.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    pub(crate) output_position_rad: f64,
    pub(crate) current_a: f64,
    pub(crate) winding_temperature_c: f64,
    pub(crate) bus_voltage_v: f64,
    pub(crate) encoder_offset_counts: i32,
    pub(crate) encoder_dropout: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Sensors {
    counts_per_rad: f64,
    rad_per_count: f64,
    period_s: f64,
    velocity_source: VelocitySource,
    velocity_lsb: f64,
    current_noise_a: f64,
    current_lsb: f64,
    temperature_lsb: f64,
    voltage_lsb: f64,
    previous_counts: i64,
    previous_position_rad: f64,
    pending_current_a: f64,
    reading: SensorReading,
    noise: ChaCha8Rng,
}

impl Sensors {
    /// Sensors whose first sample (at t = 0) is `first`.
    pub(crate) fn new(p: &params::Sensor, noise: ChaCha8Rng, first: &Sample) -> Sensors {
        let counts_per_rad = f64::from(p.encoder_counts_per_rev) / core::f64::consts::TAU;
        let mut sensors = Sensors {
            counts_per_rad,
            rad_per_count: 1.0 / counts_per_rad,
            period_s: p.sample_period_ns as f64 * 1e-9,
            velocity_source: p.velocity,
            velocity_lsb: p.velocity_lsb_rad_per_s,
            current_noise_a: p.current_noise_a,
            current_lsb: p.current_lsb_a,
            temperature_lsb: p.temperature_lsb_c,
            voltage_lsb: p.voltage_lsb_v,
            previous_counts: 0,
            previous_position_rad: first.output_position_rad,
            pending_current_a: 0.0,
            reading: SensorReading {
                position_rad: 0.0,
                velocity_rad_per_s: 0.0,
                current_a: 0.0,
                winding_temperature_c: 0.0,
                bus_voltage_v: 0.0,
                valid: true,
            },
            noise,
        };
        sensors.previous_counts = sensors.counts(first);
        sensors.sample(first);
        // Nothing was measured before t = 0: the delayed current starts at zero.
        sensors.reading.current_a = 0.0;
        sensors
    }

    pub(crate) fn reading(&self) -> SensorReading {
        self.reading
    }

    fn counts(&self, s: &Sample) -> i64 {
        let raw = libm::floor(s.output_position_rad * self.counts_per_rad);
        assert!(
            raw.abs() < 9.0e15,
            "encoder count {raw} beyond f64 integer precision"
        );
        raw as i64 + i64::from(s.encoder_offset_counts)
    }

    /// Takes one sample of the true values.
    pub(crate) fn sample(&mut self, s: &Sample) {
        let counts = self.counts(s);
        let velocity = match self.velocity_source {
            VelocitySource::EncoderDifference => {
                (counts - self.previous_counts) as f64 * self.rad_per_count / self.period_s
            }
            VelocitySource::Drive => quantise(
                (s.output_position_rad - self.previous_position_rad) / self.period_s,
                self.velocity_lsb,
            ),
        };
        // The encoder keeps counting during a dropout; only the report is lost.
        self.previous_counts = counts;
        self.previous_position_rad = s.output_position_rad;

        let measured_current = quantise(
            s.current_a + self.current_noise_a * standard_normal(&mut self.noise),
            self.current_lsb,
        );
        self.reading.current_a = self.pending_current_a;
        self.pending_current_a = measured_current;
        self.reading.winding_temperature_c =
            quantise(s.winding_temperature_c, self.temperature_lsb);
        self.reading.bus_voltage_v = quantise(s.bus_voltage_v, self.voltage_lsb);
        self.reading.valid = !s.encoder_dropout;
        if !s.encoder_dropout {
            self.reading.position_rad = counts as f64 * self.rad_per_count;
            self.reading.velocity_rad_per_s = velocity;
        }
    }
}

/// Rounds to the nearest multiple of `lsb`; `lsb == 0` leaves the value alone.
#[inline]
fn quantise(value: f64, lsb: f64) -> f64 {
    if lsb > 0.0 {
        libm::round(value / lsb) * lsb
    } else {
        value
    }
}

/// One standard normal draw (Box–Muller, cosine branch), from exactly two u64 draws.
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    const INV_2_POW_53: f64 = 1.0 / 9_007_199_254_740_992.0;
    // u1 in (0, 1] so the logarithm is finite; u2 in [0, 1).
    let u1 = ((rng.next_u64() >> 11) as f64 + 1.0) * INV_2_POW_53;
    let u2 = (rng.next_u64() >> 11) as f64 * INV_2_POW_53;
    libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(core::f64::consts::TAU * u2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn normal_draws_have_unit_variance() {
        // Goal: the noise has the configured standard deviation. Method: mean and variance of
        // 100 000 draws within a few standard errors.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 100_000;
        let draws: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }

    #[test]
    fn quantise_rounds_to_the_lsb() {
        // Goal: readings land on LSB multiples. Method: XM430's 2.69 mA LSB.
        assert_eq!(quantise(0.0030, 2.69e-3), 2.69e-3);
        assert_eq!(quantise(-0.0041, 2.69e-3), -2.0 * 2.69e-3);
        assert_eq!(quantise(0.0012, 2.69e-3), 0.0);
        assert_eq!(quantise(0.123, 0.0), 0.123);
    }
}
