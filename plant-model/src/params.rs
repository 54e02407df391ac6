//! Axis parameters: the TOML schema, the two shipped presets, validation, and the constants a
//! controller sees at the output shaft.
//!
//! Owns: every number that describes one axis (motor, gear, friction, backlash, load, drive,
//! sensors, thermal, integration step), how they are read from TOML, and which combinations are
//! contradictions. Does not own: any state or time (that is `plant`), or scenario-level settings
//! such as control rates and limits (that is the `sim` scenario loader, which embeds this schema).
//!
//! # Schema
//!
//! Keys carry their unit as a suffix; sections group them. Every section and key is required
//! unless the document names a `preset`, in which case the preset supplies everything and the
//! document overrides only the keys it gives:
//!
//! ```toml
//! preset = "xm430-w350"      # optional; one of PRESET_NAMES
//! [gear]
//! efficiency = 0.7           # override one key, keep the rest of the preset
//! [load]
//! inertia_kg_m2 = 0.002
//! ```
//!
//! A scenario embeds the same document as a sub-table (`[axis.<name>]`); it can deserialize
//! [`AxisParamsDoc`] as a field of its own struct (so toml reports line and column within the
//! scenario file) and call [`AxisParamsDoc::resolve`], or hand a parsed table to
//! [`AxisParams::from_toml_table`]. Unknown keys are rejected everywhere (`deny_unknown_fields`).
//!
//! The presets are TOML files in `src/presets/` compiled in with `include_str!` and parsed
//! through the same path as user files, so a preset that does not parse or validate fails the
//! tests like any other file.

use serde::{Deserialize, Serialize};

/// Names of the presets that ship with the crate.
pub const PRESET_NAMES: &[&str] = &["xm430-w350", "sgmp-02b"];

const PRESET_TEXTS: &[(&str, &str)] = &[
    ("xm430-w350", include_str!("presets/xm430-w350.toml")),
    ("sgmp-02b", include_str!("presets/sgmp-02b.toml")),
];

const _: () = assert!(PRESET_NAMES.len() == PRESET_TEXTS.len());

/// The one time step every control tick must land on: the step must divide it.
pub const CONTROL_TICK_NS: u64 = 1_000_000;

/// Limit on the load-torque profile length (limits on everything).
pub const LOAD_PROFILE_POINTS_MAX: usize = 1024;

/// Temperature at which `motor.resistance_ohm` is given.
pub const RESISTANCE_REFERENCE_C: f64 = 25.0;

/// What went wrong reading or checking parameters. Every variant names where (`origin`, the file
/// name or "preset xm430-w350") and what (the dotted field path).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParamsError {
    /// The TOML did not parse or did not match the schema (unknown key, wrong type, ...).
    #[error("{origin}:{line}:{column}: {}{message}", field_prefix(field))]
    Parse {
        origin: String,
        /// 1-based; 0 when the error has no position (e.g. a table handed in without spans).
        line: usize,
        /// 1-based; 0 when unknown.
        column: usize,
        /// Dotted key path when known, e.g. `motor.resistance_ohm`.
        field: Option<String>,
        message: String,
    },
    /// A key is missing and no preset supplies it.
    #[error("{origin}: missing field `{field}` (give it, or start from a preset: preset = \"{}\")", PRESET_NAMES[0])]
    Missing { origin: String, field: String },
    /// `preset = "..."` names no shipped preset.
    #[error("{origin}: unknown preset `{name}`; known presets: {}", PRESET_NAMES.join(", "))]
    UnknownPreset { origin: String, name: String },
    /// The values parse but contradict physics or each other.
    #[error("{origin}: field `{field}`: {reason}")]
    Invalid {
        origin: String,
        field: String,
        reason: String,
    },
    /// The file could not be read.
    #[error("{origin}: cannot read: {message}")]
    Io { origin: String, message: String },
}

fn field_prefix(field: &Option<String>) -> String {
    match field {
        Some(f) => format!("field `{f}`: "),
        None => String::new(),
    }
}

/// Defines a schema section twice from one field list: the complete struct (what the plant
/// uses) and an all-optional twin (what a document that starts from a preset may override).
macro_rules! section {
    (
        $(#[$meta:meta])*
        $name:ident / $partial:ident ($key:literal) {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty $(= $default:expr)? ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name { $( $(#[$fmeta])* pub $field: $ty, )* }

        #[doc = concat!("[`", stringify!($name), "`] with every key optional (overrides on a preset).")]
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $partial {
            $( #[serde(default, skip_serializing_if = "Option::is_none")] pub $field: Option<$ty>, )*
        }

        impl $partial {
            fn apply_to(self, base: &mut $name) {
                $( if let Some(v) = self.$field { base.$field = v; } )*
            }

            fn complete(self, origin: &str) -> Result<$name, ParamsError> {
                Ok($name {
                    $( $field: self.$field $( .or_else(|| Some($default)) )? .ok_or_else(|| ParamsError::Missing {
                        origin: origin.to_string(),
                        field: concat!($key, ".", stringify!($field)).to_string(),
                    })?, )*
                })
            }
        }
    };
}

section! {
    /// `[motor]`: the DC (or DC-equivalent) motor.
    Motor / MotorDoc ("motor") {
        /// Winding resistance at 25 °C, including the driver's switches and wiring, Ω.
        resistance_ohm: f64,
        /// Temperature coefficient of the resistance (copper: 0.0039 /K).
        resistance_temperature_coefficient_per_k: f64,
        /// Winding inductance, H.
        inductance_h: f64,
        /// Torque constant K_t, N·m/A; in SI units also the back-EMF constant K_e, V·s/rad.
        torque_constant_nm_per_a: f64,
        /// Rotor plus gear inertia at the motor shaft, kg·m².
        inertia_kg_m2: f64,
    }
}

section! {
    /// `[gear]`: reduction between motor and output.
    Gear / GearDoc ("gear") {
        /// Motor revolutions per output revolution (1 = direct drive).
        ratio: f64,
        /// Efficiency η while the motor drives the load; 1/η applies while the load back-drives.
        efficiency: f64,
    }
}

section! {
    /// `[friction]`: Stribeck + Coulomb + viscous friction at the output shaft (Simscape form).
    Friction / FrictionDoc ("friction") {
        /// Breakaway (static) friction torque T_brk, N·m; at least `coulomb_nm`.
        breakaway_nm: f64,
        /// Coulomb friction torque T_C, N·m.
        coulomb_nm: f64,
        /// Viscous coefficient f, N·m·s/rad.
        viscous_nm_s_per_rad: f64,
        /// Velocity of peak friction ω_brk, rad/s; the tanh smoothing width is ω_brk/10.
        breakaway_velocity_rad_per_s: f64,
    }
}

section! {
    /// `[backlash]`: gear play as a dead zone with contact stiffness (Modelica ElastoBacklash).
    Backlash / BacklashDoc ("backlash") {
        /// Total play at the output, rad; 0 models a rigid gear (one mass).
        width_rad: f64,
        /// Contact stiffness at the output, N·m/rad (used only when `width_rad` > 0).
        stiffness_nm_per_rad: f64,
        /// Contact damping at the output, N·m·s/rad (used only when `width_rad` > 0).
        damping_nm_s_per_rad: f64,
    }
}

/// One point of a piecewise-constant load-torque profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadTorquePoint {
    /// From this time on (seconds since the plant started) ...
    pub at_s: f64,
    /// ... this torque is added to the load, N·m (sign as `load.torque_nm`).
    pub torque_nm: f64,
}

section! {
    /// `[load]`: what hangs on the output shaft.
    ///
    /// Sign convention: a positive load torque opposes positive rotation (the motor must deliver
    /// +τ at the output to hold it), like a weight hanging on the positive side.
    Load / LoadDoc ("load") {
        /// Load inertia at the output, kg·m² (must be > 0 with backlash).
        inertia_kg_m2: f64,
        /// Constant external load torque at the output, N·m; `Plant::set_load_torque_nm`
        /// replaces it at run time.
        torque_nm: f64,
        /// Optional piecewise-constant profile added on top (`[[load.torque_profile]]`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        torque_profile: Vec<LoadTorquePoint> = Vec::new(),
    }
}

section! {
    /// `[drive]`: the power stage and its current loop.
    Drive / DriveDoc ("drive") {
        /// Nominal DC bus voltage, V; the terminal voltage is clamped to ±bus.
        bus_voltage_v: f64,
        /// Current limit of the drive's current loop, A.
        current_a_max: f64,
        /// Closed-loop bandwidth of the simulated PI current loop, Hz.
        current_loop_bandwidth_hz: f64,
        /// Holding torque of the motor's spring-applied holding brake at the output, N·m;
        /// 0 = the axis has no brake. The drive applies it once its own stop has brought the
        /// axis to rest (a holding brake holds, it does not stop: Yaskawa Σ manuals).
        holding_brake_nm: f64 = 0.0,
    }
}

/// How the reported velocity is formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VelocitySource {
    /// Difference of quantised encoder positions over one sample period.
    EncoderDifference,
    /// The drive's own estimate: mean true velocity over one sample period, quantised to
    /// `velocity_lsb_rad_per_s` (what a Dynamixel's Present Velocity register reports).
    Drive,
}

section! {
    /// `[sensor]`: what the drive measures and reports.
    Sensor / SensorDoc ("sensor") {
        /// Encoder counts per output revolution.
        encoder_counts_per_rev: u32,
        /// Sensor sample period, ns; a multiple of the step that divides 1 ms.
        sample_period_ns: u64,
        /// Standard deviation of Gaussian current-measurement noise, A.
        current_noise_a: f64,
        /// Current LSB, A (0 = not quantised).
        current_lsb_a: f64,
        /// Velocity estimate the drive reports.
        velocity: VelocitySource,
        /// Velocity LSB for `velocity = "drive"`, rad/s (0 = not quantised).
        velocity_lsb_rad_per_s: f64,
        /// Temperature LSB, °C (0 = not quantised).
        temperature_lsb_c: f64,
        /// Bus-voltage LSB, V (0 = not quantised).
        voltage_lsb_v: f64,
    }
}

section! {
    /// `[thermal]`: two-node (winding, housing) thermal model, maxon style.
    Thermal / ThermalDoc ("thermal") {
        /// Ambient temperature, °C; winding and housing start here.
        ambient_c: f64,
        /// Winding heat capacity, J/K.
        winding_capacity_j_per_k: f64,
        /// Housing heat capacity, J/K.
        housing_capacity_j_per_k: f64,
        /// Thermal resistance winding → housing, K/W.
        winding_to_housing_k_per_w: f64,
        /// Thermal resistance housing → ambient, K/W.
        housing_to_ambient_k_per_w: f64,
    }
}

section! {
    /// `[integration]`: the fixed step.
    Integration / IntegrationDoc ("integration") {
        /// Plant step, ns; must divide 1 ms so that 1 kHz control ticks land on steps.
        step_ns: u64,
    }
}

/// Every number that describes one servo axis. SI units; "output" is the shaft after the gear.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisParams {
    pub motor: Motor,
    pub gear: Gear,
    pub friction: Friction,
    pub backlash: Backlash,
    pub load: Load,
    pub drive: Drive,
    pub sensor: Sensor,
    pub thermal: Thermal,
    pub integration: Integration,
}

/// The document form of [`AxisParams`]: an optional preset plus optional sections of optional
/// keys. This is what TOML files and scenario `[axis.<name>]` tables contain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisParamsDoc {
    /// Start from this preset (one of [`PRESET_NAMES`]) and override only the keys given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motor: Option<MotorDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gear: Option<GearDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friction: Option<FrictionDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlash: Option<BacklashDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive: Option<DriveDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<SensorDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thermal: Option<ThermalDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<IntegrationDoc>,
}

impl AxisParamsDoc {
    /// Turns the document into complete parameters: the preset (if named) with the given keys
    /// overriding it, or, without a preset, every key required. Validates the result.
    pub fn resolve(self, origin: &str) -> Result<AxisParams, ParamsError> {
        let params = match self.preset {
            Some(ref name) => {
                let mut base = preset_unchecked(name).map_err(|e| match e {
                    ParamsError::UnknownPreset { name, .. } => ParamsError::UnknownPreset {
                        origin: origin.to_string(),
                        name,
                    },
                    other => other,
                })?;
                self.motor.unwrap_or_default().apply_to(&mut base.motor);
                self.gear.unwrap_or_default().apply_to(&mut base.gear);
                self.friction
                    .unwrap_or_default()
                    .apply_to(&mut base.friction);
                self.backlash
                    .unwrap_or_default()
                    .apply_to(&mut base.backlash);
                self.load.unwrap_or_default().apply_to(&mut base.load);
                self.drive.unwrap_or_default().apply_to(&mut base.drive);
                self.sensor.unwrap_or_default().apply_to(&mut base.sensor);
                self.thermal.unwrap_or_default().apply_to(&mut base.thermal);
                self.integration
                    .unwrap_or_default()
                    .apply_to(&mut base.integration);
                base
            }
            None => AxisParams {
                motor: self.motor.unwrap_or_default().complete(origin)?,
                gear: self.gear.unwrap_or_default().complete(origin)?,
                friction: self.friction.unwrap_or_default().complete(origin)?,
                backlash: self.backlash.unwrap_or_default().complete(origin)?,
                load: self.load.unwrap_or_default().complete(origin)?,
                drive: self.drive.unwrap_or_default().complete(origin)?,
                sensor: self.sensor.unwrap_or_default().complete(origin)?,
                thermal: self.thermal.unwrap_or_default().complete(origin)?,
                integration: self.integration.unwrap_or_default().complete(origin)?,
            },
        };
        params.validate_as(origin)?;
        Ok(params)
    }
}

/// Constants seen at the output shaft (rigid-gear equivalent), for controller tuning.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct OutputShaft {
    /// (J_motor + J_gear)·N² + J_load, kg·m².
    pub inertia_kg_m2: f64,
    /// K_t·N·η, N·m/A.
    pub torque_constant_nm_per_a: f64,
    /// Viscous friction at the output, N·m·s/rad.
    pub viscous_nm_s_per_rad: f64,
    /// Coulomb friction at the output, N·m.
    pub coulomb_nm: f64,
    /// Drive current limit, A.
    pub current_a_max: f64,
    /// Steady no-load speed at the nominal bus voltage (from the steady-state equations), rad/s.
    pub velocity_rad_per_s_max: f64,
    /// Encoder counts per output revolution.
    pub encoder_counts_per_rev: u32,
}

impl AxisParams {
    /// A shipped preset by name; an unknown name is an error that lists the known ones.
    pub fn preset(name: &str) -> Result<AxisParams, ParamsError> {
        let params = preset_unchecked(name)?;
        params.validate_as(&format!("preset {name}"))?;
        Ok(params)
    }

    /// Parses a TOML document; `origin` (usually the file name) prefixes every error message.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<AxisParams, ParamsError> {
        let doc: AxisParamsDoc =
            toml::from_str(text).map_err(|e| parse_error(&e, Some(text), origin))?;
        doc.resolve(origin)
    }

    /// Reads and parses a TOML file; errors name the path.
    pub fn from_toml_file(path: &std::path::Path) -> Result<AxisParams, ParamsError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ParamsError::Io {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        AxisParams::from_toml_str(&text, &origin)
    }

    /// Parses an already-parsed table (e.g. a scenario's `[axis.<name>]`). The table carries no
    /// positions, so errors name the field but not the line: a loader that wants lines should
    /// deserialize [`AxisParamsDoc`] inside its own document instead.
    pub fn from_toml_table(table: &toml::Table, origin: &str) -> Result<AxisParams, ParamsError> {
        let doc: AxisParamsDoc = table
            .clone()
            .try_into()
            .map_err(|e| parse_error(&e, None, origin))?;
        doc.resolve(origin)
    }

    /// Checks for contradictions: non-positive resistance, inductance or inertia, an efficiency
    /// outside (0, 1], a step that does not divide 1 ms, a step too large for the friction
    /// smoothing or the thermal model, and so on.
    pub fn validate(&self) -> Result<(), ParamsError> {
        self.validate_as("parameters")
    }

    /// Constants at the output shaft for controller tuning.
    pub fn output_shaft(&self) -> OutputShaft {
        let n = self.gear.ratio;
        let eta = self.gear.efficiency;
        let kt_out = self.motor.torque_constant_nm_per_a * n * eta;
        let r = self.motor.resistance_ohm;
        let v = self.drive.bus_voltage_v;
        let f = self.friction.viscous_nm_s_per_rad;
        let tc = self.friction.coulomb_nm;
        // Steady state: v = R·i + K_e·N·ω and K_t·N·η·i = T_C + f·ω.
        let ke_out = self.motor.torque_constant_nm_per_a * n;
        let velocity = ((v - r * tc / kt_out) / (ke_out + r * f / kt_out)).max(0.0);
        OutputShaft {
            inertia_kg_m2: self.motor.inertia_kg_m2 * n * n + self.load.inertia_kg_m2,
            torque_constant_nm_per_a: kt_out,
            viscous_nm_s_per_rad: f,
            coulomb_nm: tc,
            current_a_max: self.drive.current_a_max,
            velocity_rad_per_s_max: velocity,
            encoder_counts_per_rev: self.sensor.encoder_counts_per_rev,
        }
    }

    /// True when backlash is modelled (two masses); false for a rigid gear.
    pub fn has_backlash(&self) -> bool {
        self.backlash.width_rad > 0.0
    }

    pub(crate) fn validate_as(&self, origin: &str) -> Result<(), ParamsError> {
        let mut check = Checker { origin };
        let m = &self.motor;
        check.positive("motor.resistance_ohm", m.resistance_ohm)?;
        check.range(
            "motor.resistance_temperature_coefficient_per_k",
            m.resistance_temperature_coefficient_per_k,
            0.0,
            0.01,
        )?;
        check.positive("motor.inductance_h", m.inductance_h)?;
        check.positive("motor.torque_constant_nm_per_a", m.torque_constant_nm_per_a)?;
        check.positive("motor.inertia_kg_m2", m.inertia_kg_m2)?;

        check.range("gear.ratio", self.gear.ratio, 1.0, 1.0e5)?;
        check.positive("gear.efficiency", self.gear.efficiency)?;
        check.range("gear.efficiency", self.gear.efficiency, 0.0, 1.0)?;

        let fr = &self.friction;
        check.non_negative("friction.coulomb_nm", fr.coulomb_nm)?;
        check.non_negative("friction.breakaway_nm", fr.breakaway_nm)?;
        check.non_negative("friction.viscous_nm_s_per_rad", fr.viscous_nm_s_per_rad)?;
        check.positive(
            "friction.breakaway_velocity_rad_per_s",
            fr.breakaway_velocity_rad_per_s,
        )?;
        if fr.breakaway_nm < fr.coulomb_nm {
            return check.fail(
                "friction.breakaway_nm",
                format!(
                    "breakaway {} N·m is below the Coulomb friction {} N·m",
                    fr.breakaway_nm, fr.coulomb_nm
                ),
            );
        }

        let b = &self.backlash;
        check.non_negative("backlash.width_rad", b.width_rad)?;
        check.non_negative("backlash.damping_nm_s_per_rad", b.damping_nm_s_per_rad)?;
        check.non_negative("backlash.stiffness_nm_per_rad", b.stiffness_nm_per_rad)?;
        if self.has_backlash() {
            check.positive("backlash.stiffness_nm_per_rad", b.stiffness_nm_per_rad)?;
            if self.load.inertia_kg_m2 <= 0.0 {
                return check.fail(
                    "load.inertia_kg_m2",
                    "must be > 0 when backlash is modelled: the load is the second mass".into(),
                );
            }
        }

        let l = &self.load;
        check.non_negative("load.inertia_kg_m2", l.inertia_kg_m2)?;
        check.finite("load.torque_nm", l.torque_nm)?;
        if l.torque_profile.len() > LOAD_PROFILE_POINTS_MAX {
            return check.fail(
                "load.torque_profile",
                format!("more than {LOAD_PROFILE_POINTS_MAX} points"),
            );
        }
        let mut previous_s = f64::NEG_INFINITY;
        for point in &l.torque_profile {
            check.non_negative("load.torque_profile.at_s", point.at_s)?;
            check.finite("load.torque_profile.torque_nm", point.torque_nm)?;
            if point.at_s <= previous_s {
                return check.fail(
                    "load.torque_profile.at_s",
                    format!("times must increase; {} follows {}", point.at_s, previous_s),
                );
            }
            previous_s = point.at_s;
        }

        let d = &self.drive;
        check.positive("drive.bus_voltage_v", d.bus_voltage_v)?;
        check.positive("drive.current_a_max", d.current_a_max)?;
        check.positive(
            "drive.current_loop_bandwidth_hz",
            d.current_loop_bandwidth_hz,
        )?;
        check.non_negative("drive.holding_brake_nm", d.holding_brake_nm)?;

        let step_ns = self.integration.step_ns;
        if step_ns == 0 || !CONTROL_TICK_NS.is_multiple_of(step_ns) {
            return check.fail(
                "integration.step_ns",
                format!("{step_ns} ns does not divide the 1 ms control tick"),
            );
        }
        let h = step_ns as f64 * 1e-9;
        let nyquist_hz = 0.5 / h;
        if d.current_loop_bandwidth_hz >= 0.5 * nyquist_hz {
            return check.fail(
                "drive.current_loop_bandwidth_hz",
                format!(
                    "{} Hz is not below a quarter of the {:.0} Hz current-loop rate (1/step)",
                    d.current_loop_bandwidth_hz,
                    1.0 / h
                ),
            );
        }

        let s = &self.sensor;
        if s.encoder_counts_per_rev == 0 {
            return check.fail("sensor.encoder_counts_per_rev", "must be > 0".into());
        }
        if s.sample_period_ns == 0
            || !s.sample_period_ns.is_multiple_of(step_ns)
            || !CONTROL_TICK_NS.is_multiple_of(s.sample_period_ns)
        {
            return check.fail(
                "sensor.sample_period_ns",
                format!(
                    "{} ns must be a multiple of the {step_ns} ns step and divide 1 ms",
                    s.sample_period_ns
                ),
            );
        }
        check.non_negative("sensor.current_noise_a", s.current_noise_a)?;
        check.non_negative("sensor.current_lsb_a", s.current_lsb_a)?;
        check.non_negative("sensor.velocity_lsb_rad_per_s", s.velocity_lsb_rad_per_s)?;
        check.non_negative("sensor.temperature_lsb_c", s.temperature_lsb_c)?;
        check.non_negative("sensor.voltage_lsb_v", s.voltage_lsb_v)?;

        let t = &self.thermal;
        check.range("thermal.ambient_c", t.ambient_c, -60.0, 200.0)?;
        check.positive(
            "thermal.winding_capacity_j_per_k",
            t.winding_capacity_j_per_k,
        )?;
        check.positive(
            "thermal.housing_capacity_j_per_k",
            t.housing_capacity_j_per_k,
        )?;
        check.positive(
            "thermal.winding_to_housing_k_per_w",
            t.winding_to_housing_k_per_w,
        )?;
        check.positive(
            "thermal.housing_to_ambient_k_per_w",
            t.housing_to_ambient_k_per_w,
        )?;
        // The thermal nodes are updated once per sample period (exactly, for the period's mean
        // copper power) and R(T) is held over a period: keep the period, and so the step, far
        // below their time constants.
        let tau_thermal_s = (t.winding_capacity_j_per_k * t.winding_to_housing_k_per_w)
            .min(t.housing_capacity_j_per_k * t.winding_to_housing_k_per_w)
            .min(t.housing_capacity_j_per_k * t.housing_to_ambient_k_per_w);
        let thermal_period_s = s.sample_period_ns as f64 * 1e-9;
        if thermal_period_s > 0.01 * tau_thermal_s {
            return check.fail(
                "sensor.sample_period_ns",
                format!(
                    "sample period {thermal_period_s} s (the thermal update interval) is not \
                     below 1 % of the fastest thermal time constant {tau_thermal_s} s"
                ),
            );
        }

        // Friction is held over a step (explicit). Near zero speed its tanh slope acts as a
        // damper; the update stays non-oscillating while h < J / slope (see lib.rs).
        let slope = friction_slope_max(fr);
        let inertia_out = if self.has_backlash() {
            self.load.inertia_kg_m2
        } else {
            self.output_shaft().inertia_kg_m2
        };
        if slope > 0.0 && h * slope > inertia_out {
            return check.fail(
                "integration.step_ns",
                format!(
                    "step {h} s exceeds J/slope = {:.3e} s of the friction smoothing; raise \
                     friction.breakaway_velocity_rad_per_s or shrink the step",
                    inertia_out / slope
                ),
            );
        }
        Ok(())
    }
}

/// Largest slope of the smoothed Coulomb + Stribeck friction near zero speed, N·m·s/rad.
pub(crate) fn friction_slope_max(fr: &Friction) -> f64 {
    let w_brk = fr.breakaway_velocity_rad_per_s;
    let w_coul = w_brk / 10.0;
    let w_st = core::f64::consts::SQRT_2 * w_brk;
    let stribeck =
        libm::sqrt(2.0 * core::f64::consts::E) * (fr.breakaway_nm - fr.coulomb_nm) / w_st;
    fr.coulomb_nm / w_coul + stribeck
}

struct Checker<'a> {
    origin: &'a str,
}

impl Checker<'_> {
    fn fail(&mut self, field: &str, reason: String) -> Result<(), ParamsError> {
        Err(ParamsError::Invalid {
            origin: self.origin.to_string(),
            field: field.to_string(),
            reason,
        })
    }

    fn finite(&mut self, field: &str, value: f64) -> Result<(), ParamsError> {
        if value.is_finite() {
            Ok(())
        } else {
            self.fail(field, format!("{value} is not a finite number"))
        }
    }

    fn positive(&mut self, field: &str, value: f64) -> Result<(), ParamsError> {
        self.finite(field, value)?;
        if value > 0.0 {
            Ok(())
        } else {
            self.fail(field, format!("{value} must be > 0"))
        }
    }

    fn non_negative(&mut self, field: &str, value: f64) -> Result<(), ParamsError> {
        self.finite(field, value)?;
        if value >= 0.0 {
            Ok(())
        } else {
            self.fail(field, format!("{value} must be >= 0"))
        }
    }

    fn range(&mut self, field: &str, value: f64, min: f64, max: f64) -> Result<(), ParamsError> {
        self.finite(field, value)?;
        if (min..=max).contains(&value) {
            Ok(())
        } else {
            self.fail(field, format!("{value} is outside [{min}, {max}]"))
        }
    }
}

fn preset_unchecked(name: &str) -> Result<AxisParams, ParamsError> {
    let Some((_, text)) = PRESET_TEXTS.iter().find(|(n, _)| *n == name) else {
        return Err(ParamsError::UnknownPreset {
            origin: "preset".to_string(),
            name: name.to_string(),
        });
    };
    let origin = format!("preset {name}");
    // A preset file is complete: parse it without a preset of its own.
    let doc: AxisParamsDoc =
        toml::from_str(text).map_err(|e| parse_error(&e, Some(text), &origin))?;
    assert!(
        doc.preset.is_none(),
        "preset {name} must not name a preset itself"
    );
    AxisParamsDoc {
        preset: None,
        ..doc
    }
    .resolve_unvalidated(&origin)
}

impl AxisParamsDoc {
    fn resolve_unvalidated(self, origin: &str) -> Result<AxisParams, ParamsError> {
        assert!(
            self.preset.is_none(),
            "only complete documents resolve unvalidated"
        );
        Ok(AxisParams {
            motor: self.motor.unwrap_or_default().complete(origin)?,
            gear: self.gear.unwrap_or_default().complete(origin)?,
            friction: self.friction.unwrap_or_default().complete(origin)?,
            backlash: self.backlash.unwrap_or_default().complete(origin)?,
            load: self.load.unwrap_or_default().complete(origin)?,
            drive: self.drive.unwrap_or_default().complete(origin)?,
            sensor: self.sensor.unwrap_or_default().complete(origin)?,
            thermal: self.thermal.unwrap_or_default().complete(origin)?,
            integration: self.integration.unwrap_or_default().complete(origin)?,
        })
    }
}

/// Converts a toml error into [`ParamsError::Parse`] with 1-based line and column (when the
/// error has a span and the text is known) and the dotted key path (when toml knows it).
fn parse_error(error: &toml::de::Error, text: Option<&str>, origin: &str) -> ParamsError {
    let (line, column) = match (text, error.span()) {
        (Some(text), Some(span)) => line_column(text, span.start),
        _ => (0, 0),
    };
    // toml keeps the key path private but prints it ("in `a.b`") when it has no input to quote.
    let mut bare = error.clone();
    bare.set_input(None);
    let rendered = bare.to_string();
    let field = rendered
        .lines()
        .find_map(|l| {
            l.strip_prefix("in `")
                .and_then(|rest| rest.strip_suffix('`'))
        })
        .map(str::to_string);
    ParamsError::Parse {
        origin: origin.to_string(),
        line,
        column,
        field,
        message: error.message().trim_end().to_string(),
    }
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        // Goal: positions in messages match what an editor shows. Method: offsets in a
        // three-line text.
        let text = "a = 1\nbb = 2\nccc = 3";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 9), (2, 4));
        assert_eq!(line_column(text, 14), (3, 2));
    }

    #[test]
    fn every_preset_parses_and_validates() {
        // Goal: shipped presets are valid files. Method: load each by name.
        for name in PRESET_NAMES {
            let p = AxisParams::preset(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(p.validate().is_ok());
        }
    }

    #[test]
    fn step_must_divide_the_control_tick() {
        // Goal: a step that would make 1 kHz ticks fall between steps is rejected. Method:
        // 300 µs does not divide 1 ms.
        let mut p = AxisParams::preset("xm430-w350").unwrap();
        p.integration.step_ns = 300_000;
        p.sensor.sample_period_ns = 300_000;
        let err = p.validate().unwrap_err();
        assert!(err.to_string().contains("integration.step_ns"), "{err}");
    }

    #[test]
    fn thermal_time_constants_must_dwarf_the_sample_period() {
        // Goal: the thermal model, updated once per sample period, is only accepted where that
        // period is far below its time constants. Method: shrink the xm430's winding capacity
        // to τ_w = 50 ms (1 % of it is below the 1 ms period); the error names the period.
        let mut p = AxisParams::preset("xm430-w350").unwrap();
        p.thermal.winding_capacity_j_per_k = 0.05 / p.thermal.winding_to_housing_k_per_w;
        let err = p.validate().unwrap_err();
        assert!(err.to_string().contains("sensor.sample_period_ns"), "{err}");
        p.thermal.winding_capacity_j_per_k = 0.2 / p.thermal.winding_to_housing_k_per_w;
        assert!(p.validate().is_ok(), "τ_w = 200 ms is accepted");
    }

    #[test]
    fn negative_inductance_is_rejected() {
        // Goal: physical contradictions name their field. Method: L < 0.
        let mut p = AxisParams::preset("sgmp-02b").unwrap();
        p.motor.inductance_h = -1e-3;
        let err = p.validate().unwrap_err();
        assert!(err.to_string().contains("motor.inductance_h"), "{err}");
    }

    #[test]
    fn output_shaft_reflects_through_the_gear() {
        // Goal: output-side constants follow J·N² + J_L and K_t·N·η. Method: compare to the
        // preset numbers by hand.
        let p = AxisParams::preset("xm430-w350").unwrap();
        let o = p.output_shaft();
        let n = 353.5_f64;
        assert!((o.inertia_kg_m2 - 2.4e-7 * n * n).abs() < 1e-12);
        assert!((o.torque_constant_nm_per_a - 6.854e-3 * n * 0.7333).abs() < 1e-12);
        // The no-load speed the preset was derived for: 46 rpm.
        let rpm = o.velocity_rad_per_s_max * 60.0 / (2.0 * core::f64::consts::PI);
        assert!((rpm - 46.0).abs() < 0.1, "{rpm}");
    }
}
