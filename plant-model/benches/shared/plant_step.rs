//! The `plant_step` benchmark group, shared by `plant-model`'s `plant_step` bench and
//! `control`'s `control_step` bench (included with `#[path]`), so that one run of the control
//! bench gives every figure of BENCHMARKS.md on the same machine state.
//!
//! Cost of the plant step, per preset, against a hand-written scalar baseline. Each iteration
//! is what one 1 kHz control tick asks of the plant: a new current command, then
//! `advance_to(now + 1 ms)` (10 steps at the presets' 100 µs step, including one sensor sample
//! and the once-per-sample thermal update). Throughput is reported in steps.
//!
//! `scalar` is the same rigid-gear step written by hand with plain f64 fields and no nalgebra:
//! the same exact-discretisation coefficients (taken from the plant), the same friction, gear,
//! PI current loop, energy ledger, accrued losses, thermal update and sensor sample. It is
//! checked against the plant before it is timed. The nalgebra step must stay within 1.2× of it.
//!
//! On a shared machine criterion's means carry the load of the moment, and two benchmarks
//! measured seconds apart see different loads. `plant_step_interleaved` therefore also times
//! both variants alternately in short chunks and reports the minimum and the median per tick:
//! preemption only ever adds time, so the minimum over many short chunks estimates the
//! uncontended cost, and alternating puts both variants under the same load. Its ratio is the
//! one that counts.

use criterion::{Criterion, Throughput};
use plant_model::plant::RigidStepMaps;
use plant_model::{AxisParams, DriveCommand, Plant, VelocitySource};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::{Duration, Instant};

pub(crate) const STEPS_PER_TICK: u64 = 10;
/// A 1 kHz controller's current commands: ±60 % of the limit, switching every 100 ms.
pub(crate) fn command_amps(params: &AxisParams, tick: u64) -> f64 {
    let sign = if (tick / 100).is_multiple_of(2) {
        1.0
    } else {
        -1.0
    };
    sign * 0.6 * params.drive.current_a_max
}

/// The rigid plant step by hand, scalars only (see the module docs).
pub(crate) struct ScalarRigid {
    // Exact maps, z = [i, ω_m, u_eff, τ_h]: rows i(h), ω(h), ∫i, ∫ω; packed R·∫i², f/N²·∫ω².
    linear: [[f64; 4]; 4],
    copper: [f64; 10],
    viscous_sq: [f64; 10],
    // Sums over the sample period: the products z_i·z_j and i0·∫i.
    products_sum: [f64; 10],
    current_sum: f64,
    // Constants.
    r25: f64,
    r_model: f64,
    alpha: f64,
    n_inv: f64,
    eta: f64,
    viscous: f64,
    coulomb: f64,
    stribeck: f64,
    inv_w_coul: f64,
    inv_w_st: f64,
    bus_v: f64,
    // Current loop.
    pi_k: f64,
    pi_ki: f64,
    pi_bemf: f64,
    i_max: f64,
    pi_int: f64,
    pi_saturated: bool,
    // Thermal: exact map over a sample period, [T_w, T_h]⁺ = map·[T_w, T_h, P, T_a].
    tw: f64,
    th: f64,
    thermal: [[f64; 4]; 2],
    ambient: f64,
    // State and ledger.
    i: f64,
    w: f64,
    theta_m: f64,
    load_nm: f64,
    e_in: f64,
    e_cu: f64,
    e_fr: f64,
    e_gear: f64,
    e_load: f64,
    // Sensors.
    steps_per_sample: u64,
    to_sample: u64,
    counts_per_rad: f64,
    rad_per_count: f64,
    sample_period_s: f64,
    vel_lsb: f64,
    velocity: VelocitySource,
    noise_a: f64,
    cur_lsb: f64,
    temp_lsb: f64,
    volt_lsb: f64,
    prev_counts: i64,
    prev_pos: f64,
    pending_i: f64,
    read_pos: f64,
    read_vel: f64,
    read_i: f64,
    read_temp: f64,
    read_bus: f64,
    rng: ChaCha8Rng,
}

fn quantise(v: f64, lsb: f64) -> f64 {
    if lsb > 0.0 {
        libm::round(v / lsb) * lsb
    } else {
        v
    }
}

impl ScalarRigid {
    pub(crate) fn new(p: &AxisParams, maps: &RigidStepMaps, rng: ChaCha8Rng) -> ScalarRigid {
        let step_s = p.integration.step_ns as f64 * 1e-9;
        let (r, l) = (p.motor.resistance_ohm, p.motor.inductance_h);
        let a = libm::exp(-step_s * r / l);
        let b = (1.0 - a) / r;
        let pole =
            libm::exp(-2.0 * core::f64::consts::PI * p.drive.current_loop_bandwidth_hz * step_s);
        let k = (1.0 - pole) / b;
        let w_brk = p.friction.breakaway_velocity_rad_per_s;
        let cpr = f64::from(p.sensor.encoder_counts_per_rev) / core::f64::consts::TAU;
        let mut s = ScalarRigid {
            linear: maps.linear,
            copper: maps.copper,
            viscous_sq: maps.viscous,
            products_sum: [0.0; 10],
            current_sum: 0.0,
            r25: r,
            r_model: r,
            alpha: p.motor.resistance_temperature_coefficient_per_k,
            n_inv: 1.0 / p.gear.ratio,
            eta: p.gear.efficiency,
            viscous: p.friction.viscous_nm_s_per_rad,
            coulomb: p.friction.coulomb_nm,
            stribeck: libm::sqrt(2.0 * core::f64::consts::E)
                * (p.friction.breakaway_nm - p.friction.coulomb_nm),
            inv_w_coul: 10.0 / w_brk,
            inv_w_st: 1.0 / (core::f64::consts::SQRT_2 * w_brk),
            bus_v: p.drive.bus_voltage_v,
            pi_k: k,
            pi_ki: k * (1.0 - a),
            pi_bemf: p.motor.torque_constant_nm_per_a,
            i_max: p.drive.current_a_max,
            pi_int: 0.0,
            pi_saturated: false,
            tw: p.thermal.ambient_c,
            th: p.thermal.ambient_c,
            thermal: maps.thermal,
            ambient: p.thermal.ambient_c,
            i: 0.0,
            w: 0.0,
            theta_m: 0.0,
            load_nm: p.load.torque_nm,
            e_in: 0.0,
            e_cu: 0.0,
            e_fr: 0.0,
            e_gear: 0.0,
            e_load: 0.0,
            steps_per_sample: p.sensor.sample_period_ns / p.integration.step_ns,
            to_sample: p.sensor.sample_period_ns / p.integration.step_ns,
            counts_per_rad: cpr,
            rad_per_count: 1.0 / cpr,
            sample_period_s: p.sensor.sample_period_ns as f64 * 1e-9,
            vel_lsb: p.sensor.velocity_lsb_rad_per_s,
            velocity: p.sensor.velocity,
            noise_a: p.sensor.current_noise_a,
            cur_lsb: p.sensor.current_lsb_a,
            temp_lsb: p.sensor.temperature_lsb_c,
            volt_lsb: p.sensor.voltage_lsb_v,
            prev_counts: 0,
            prev_pos: 0.0,
            pending_i: 0.0,
            read_pos: 0.0,
            read_vel: 0.0,
            read_i: 0.0,
            read_temp: 0.0,
            read_bus: 0.0,
            rng,
        };
        s.sample(true);
        s.read_i = 0.0;
        s
    }

    #[inline]
    fn friction(&self, w: f64) -> f64 {
        let x = w * self.inv_w_coul;
        let c = if x > 22.0 {
            self.coulomb
        } else if x < -22.0 {
            -self.coulomb
        } else {
            self.coulomb * libm::tanh(x)
        };
        let y = w * self.inv_w_st;
        let y2 = y * y;
        let st = if y2 > 40.0 {
            0.0
        } else {
            self.stribeck * libm::exp(-y2) * y
        };
        c + st
    }

    #[inline]
    fn dot<const K: usize>(row: &[f64; K], v: &[f64; K]) -> f64 {
        let mut acc = row[0] * v[0];
        for k in 1..K {
            acc += row[k] * v[k];
        }
        acc
    }

    #[inline]
    pub(crate) fn step(&mut self, amps: f64) {
        let r_t = self.r25 * (1.0 + self.alpha * (self.tw - 25.0));
        let excess = r_t - self.r_model;
        let (i0, w0) = (self.i, self.w);
        let wl0 = w0 * self.n_inv;
        let tf = self.friction(wl0);
        let visc = self.viscous * wl0;
        let held_out = self.load_nm + tf;
        let transmitted = held_out + visc;
        let inv_k = if transmitted * wl0 >= 0.0 {
            1.0 / self.eta
        } else {
            self.eta
        };
        let gear = transmitted * self.n_inv * (inv_k - 1.0);
        let tau_h = held_out * self.n_inv + gear;

        // PI current loop, re-seeded after a saturated step.
        if self.pi_saturated {
            self.pi_int = self.r25 * i0;
        }
        let sp = amps.clamp(-self.i_max, self.i_max);
        let e = sp - i0;
        let unc = self.pi_k * e + self.pi_int + self.pi_bemf * w0;
        let u = unc.clamp(-self.bus_v, self.bus_v);
        self.pi_saturated = (unc > self.bus_v && e > 0.0) || (unc < -self.bus_v && e < 0.0);
        if !self.pi_saturated {
            self.pi_int += self.pi_ki * e;
        }
        let z = [i0, w0, u - excess * i0, tau_h];
        let products = [
            z[0] * z[0],
            z[0] * z[1],
            z[0] * z[2],
            z[0] * z[3],
            z[1] * z[1],
            z[1] * z[2],
            z[1] * z[3],
            z[2] * z[2],
            z[2] * z[3],
            z[3] * z[3],
        ];
        let (i1, w1) = (
            Self::dot(&self.linear[0], &z),
            Self::dot(&self.linear[1], &z),
        );
        let (int_i, int_w) = (
            Self::dot(&self.linear[2], &z),
            Self::dot(&self.linear[3], &z),
        );
        for (sum, p) in self.products_sum.iter_mut().zip(products) {
            *sum += p;
        }
        self.current_sum += i0 * int_i;
        let out_angle = int_w * self.n_inv;
        self.e_in += u * int_i;
        self.e_fr += tf * out_angle;
        self.e_gear += gear * int_w;
        self.e_load += self.load_nm * out_angle;
        self.theta_m += int_w;
        self.i = i1;
        self.w = w1;

        self.to_sample -= 1;
        if self.to_sample == 0 {
            self.to_sample = self.steps_per_sample;
            self.end_period(excess);
            self.sample(false);
        }
    }

    /// Once per sample period: copper and viscous loss from the sums, then the thermal update.
    fn end_period(&mut self, excess: f64) {
        let heat = Self::dot(&self.copper, &self.products_sum) + excess * self.current_sum;
        self.e_cu += heat;
        self.e_fr += Self::dot(&self.viscous_sq, &self.products_sum);
        self.products_sum = [0.0; 10];
        self.current_sum = 0.0;
        let x = [self.tw, self.th, heat / self.sample_period_s, self.ambient];
        self.tw = Self::dot(&self.thermal[0], &x);
        self.th = Self::dot(&self.thermal[1], &x);
        let drift = self.r25 * (1.0 + self.alpha * (self.tw - 25.0)) - self.r_model;
        // The nalgebra plant re-discretises here; the baseline cannot (no matrix exponential),
        // so the benchmark keeps it from being needed (see `bench_params`).
        assert!(
            drift.abs() <= 0.01 * self.r25,
            "scalar baseline needs a re-discretisation"
        );
    }

    fn sample(&mut self, first: bool) {
        let pos = self.theta_m * self.n_inv;
        let counts = libm::floor(pos * self.counts_per_rad) as i64;
        if first {
            self.prev_counts = counts;
        }
        let vel = quantise((pos - self.prev_pos) / self.sample_period_s, self.vel_lsb);
        let vel_enc =
            (counts - self.prev_counts) as f64 * self.rad_per_count / self.sample_period_s;
        self.prev_counts = counts;
        self.prev_pos = pos;
        const INV: f64 = 1.0 / 9_007_199_254_740_992.0;
        let u1 = ((self.rng.next_u64() >> 11) as f64 + 1.0) * INV;
        let u2 = (self.rng.next_u64() >> 11) as f64 * INV;
        let n = libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(core::f64::consts::TAU * u2);
        let meas = quantise(self.i + self.noise_a * n, self.cur_lsb);
        self.read_i = self.pending_i;
        self.pending_i = meas;
        self.read_temp = quantise(self.tw, self.temp_lsb);
        self.read_bus = quantise(self.bus_v, self.volt_lsb);
        self.read_pos = counts as f64 * self.rad_per_count;
        self.read_vel = match self.velocity {
            VelocitySource::Drive => vel,
            VelocitySource::EncoderDifference => vel_enc,
        };
    }
}

/// The preset as benchmarked: unchanged except that the winding's resistance does not depend
/// on temperature, so the plant never re-discretises and the scalar baseline (which cannot)
/// stays comparable over criterion's long runs. Re-discretisation happens once per 2.6 K of
/// winding temperature change in real runs: a few times a minute at most.
pub(crate) fn bench_params(name: &str) -> AxisParams {
    let mut p = AxisParams::preset(name).expect("preset");
    p.motor.resistance_temperature_coefficient_per_k = 0.0;
    p
}

/// Runs the plant and the baseline side by side for 2 s and checks they agree.
fn check_baseline(name: &str) {
    let p = bench_params(name);
    let mut plant = Plant::new(p.clone(), ChaCha8Rng::seed_from_u64(1));
    let maps = plant.rigid_step_maps().expect("rigid preset");
    let mut scalar = ScalarRigid::new(&p, &maps, ChaCha8Rng::seed_from_u64(1));
    for tick in 0..2000 {
        let amps = command_amps(&p, tick);
        plant.command(DriveCommand::Current { amps });
        plant.advance_to(Duration::from_millis(tick + 1));
        for _ in 0..STEPS_PER_TICK {
            scalar.step(amps);
        }
    }
    let t = plant.truth();
    let s = plant.sensors();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-9);
    assert!(
        close(t.current_a, scalar.i),
        "{name}: current {} vs {}",
        t.current_a,
        scalar.i
    );
    assert!(close(t.motor_velocity_rad_per_s, scalar.w), "{name}: speed");
    assert!(close(t.motor_position_rad, scalar.theta_m), "{name}: angle");
    assert!(
        close(t.energy.electrical_in_j, scalar.e_in),
        "{name}: energy in"
    );
    assert!(close(t.energy.copper_loss_j, scalar.e_cu), "{name}: copper");
    assert!(close(t.energy.gear_loss_j, scalar.e_gear), "{name}: gear");
    assert!(
        close(t.winding_temperature_c, scalar.tw),
        "{name}: temperature"
    );
    assert!(
        close(s.velocity_rad_per_s, scalar.read_vel),
        "{name}: velocity reading"
    );
    assert!(
        close(t.energy.friction_loss_j, scalar.e_fr),
        "{name}: friction"
    );
    assert!(
        close(t.energy.load_work_j, scalar.e_load),
        "{name}: load work"
    );
    assert!(
        close(s.position_rad, scalar.read_pos),
        "{name}: position reading"
    );
    assert!(close(s.current_a, scalar.read_i), "{name}: current reading");
    assert_eq!(
        s.winding_temperature_c, scalar.read_temp,
        "{name}: temperature reading"
    );
    assert_eq!(s.bus_voltage_v, scalar.read_bus, "{name}: bus reading");
}

/// Registers the `plant_step` group: nalgebra and scalar per preset, and the two-mass model.
pub(crate) fn plant_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("plant_step");
    group.throughput(Throughput::Elements(STEPS_PER_TICK));
    group.measurement_time(Duration::from_secs(4));
    for name in plant_model::PRESET_NAMES {
        check_baseline(name);
        let p = bench_params(name);

        let mut plant = Plant::new(p.clone(), ChaCha8Rng::seed_from_u64(1));
        let mut tick = 0_u64;
        group.bench_function(format!("{name}/nalgebra"), |b| {
            b.iter(|| {
                plant.command(DriveCommand::Current {
                    amps: command_amps(&p, tick),
                });
                tick += 1;
                plant.advance_to(Duration::from_millis(tick));
                black_box(plant.sensors())
            })
        });

        let probe = Plant::new(p.clone(), ChaCha8Rng::seed_from_u64(1));
        let maps = probe.rigid_step_maps().expect("rigid preset");
        let mut scalar = ScalarRigid::new(&p, &maps, ChaCha8Rng::seed_from_u64(1));
        let mut tick = 0_u64;
        group.bench_function(format!("{name}/scalar"), |b| {
            b.iter(|| {
                let amps = command_amps(&p, tick);
                tick += 1;
                for _ in 0..STEPS_PER_TICK {
                    scalar.step(black_box(amps));
                }
                black_box(scalar.read_pos)
            })
        });
    }

    // For information: the two-mass (backlash) model, which the presets do not use.
    let mut p = bench_params("xm430-w350");
    p.backlash.width_rad = 0.005;
    p.load.inertia_kg_m2 = 0.002;
    let mut plant = Plant::new(p.clone(), ChaCha8Rng::seed_from_u64(1));
    let mut tick = 0_u64;
    group.bench_function("xm430-w350+backlash/nalgebra", |b| {
        b.iter(|| {
            plant.command(DriveCommand::Current {
                amps: command_amps(&p, tick),
            });
            tick += 1;
            plant.advance_to(Duration::from_millis(tick));
            black_box(plant.sensors())
        })
    });
    group.finish();
}

/// Chunks per interleaved measurement, and control ticks (1 ms of simulated time) per chunk.
pub(crate) const INTERLEAVED_CHUNKS: usize = 2000;
pub(crate) const INTERLEAVED_TICKS: u64 = 100;

/// Wall time of `f`, s.
// A benchmark measures wall time; this code is outside any simulation (docs/DESIGN.md §3).
#[allow(clippy::disallowed_methods)]
pub(crate) fn wall_s(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

/// Minimum and median of a set of chunk timings, s.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChunkTimes {
    pub(crate) min_s: f64,
    pub(crate) median_s: f64,
}

impl ChunkTimes {
    pub(crate) fn of(mut samples: Vec<f64>) -> ChunkTimes {
        assert!(!samples.is_empty(), "no chunk was timed");
        samples.sort_by(f64::total_cmp);
        ChunkTimes {
            min_s: samples[0],
            median_s: samples[samples.len() / 2],
        }
    }
}

/// The plant's 1 ms of stepping, nalgebra and scalar alternating in chunks of
/// `INTERLEAVED_TICKS` ticks; prints ns per tick (min and median) and the ratios.
pub(crate) fn plant_step_interleaved(_: &mut Criterion) {
    println!(
        "plant_step_interleaved: {INTERLEAVED_CHUNKS} alternating chunks of {INTERLEAVED_TICKS} \
         ticks each, ns per 1 ms tick (10 steps)"
    );
    for name in plant_model::PRESET_NAMES {
        let p = bench_params(name);
        let mut plant = Plant::new(p.clone(), ChaCha8Rng::seed_from_u64(1));
        let maps = plant.rigid_step_maps().expect("rigid preset");
        let mut scalar = ScalarRigid::new(&p, &maps, ChaCha8Rng::seed_from_u64(1));
        let (mut nalgebra_s, mut scalar_s) = (Vec::new(), Vec::new());
        let mut tick = 0_u64;
        for _ in 0..INTERLEAVED_CHUNKS {
            nalgebra_s.push(wall_s(|| {
                for k in tick..tick + INTERLEAVED_TICKS {
                    plant.command(DriveCommand::Current {
                        amps: command_amps(&p, k),
                    });
                    plant.advance_to(Duration::from_millis(k + 1));
                    black_box(plant.sensors());
                }
            }));
            scalar_s.push(wall_s(|| {
                for k in tick..tick + INTERLEAVED_TICKS {
                    let amps = command_amps(&p, k);
                    for _ in 0..STEPS_PER_TICK {
                        scalar.step(black_box(amps));
                    }
                    black_box(scalar.read_pos);
                }
            }));
            tick += INTERLEAVED_TICKS;
        }
        let (n, s) = (ChunkTimes::of(nalgebra_s), ChunkTimes::of(scalar_s));
        let per_tick_ns = |t: f64| t / INTERLEAVED_TICKS as f64 * 1e9;
        println!(
            "  {name}: nalgebra min {:.0} median {:.0}; scalar min {:.0} median {:.0}; \
             ratio min {:.3} median {:.3}",
            per_tick_ns(n.min_s),
            per_tick_ns(n.median_s),
            per_tick_ns(s.min_s),
            per_tick_ns(s.median_s),
            n.min_s / s.min_s,
            n.median_s / s.median_s,
        );
    }
}
