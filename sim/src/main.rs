//! The `sim` command: run scenarios, list them, characterize plant models.
//!
//! Exit codes: 0 when every expected oracle came out as expected, 1 when one did not, 2 for
//! usage errors and bad scenario or parameter files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use plant_model::{AxisParams, PRESET_NAMES, characterize};
use sim::report::Verdict;
use sim::run::{RunOptions, check_expectations, run};
use sim::scenario::Scenario;

#[derive(Debug, Parser)]
#[command(
    name = "sim",
    version,
    about = "servocell: deterministic simulation of a microservice-run servo cell"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario under one seed and judge it.
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// The seed; the scenario's own `seed` when absent.
        #[arg(long)]
        seed: Option<u64>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// Write one SVG plot per axis into this directory.
        #[arg(long, value_name = "DIR")]
        plot: Option<PathBuf>,
        /// Print the canonical trace, one event per line.
        #[arg(long)]
        trace: bool,
        /// Skip the second run that judges determinism (DT1).
        #[arg(long)]
        no_determinism_check: bool,
    },
    /// List the scenarios in a directory with their goals.
    List {
        #[arg(default_value = "scenarios")]
        dir: PathBuf,
    },
    /// Measure how much faster than real time a scenario runs, against bare turmoil in the same run.
    Bench {
        #[arg(default_value = "scenarios/flagship.toml")]
        scenario: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Plant-model tools.
    Plant {
        #[command(subcommand)]
        command: PlantCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PlantCommand {
    /// Measure a plant model the way a test bench would: by simulated experiments.
    Characterize {
        /// A preset shipped with servocell.
        #[arg(long, conflicts_with = "params", required_unless_present = "params", value_parser = clap::builder::PossibleValuesParser::new(PRESET_NAMES))]
        preset: Option<String>,
        /// A plant parameter file (TOML, the `plant-model` schema).
        #[arg(long, value_name = "FILE")]
        params: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// A failure the user caused (bad file, bad argument): exit code 2.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(code) => code,
        Err(error) => {
            if let Some(usage) = error.downcast_ref::<UsageError>() {
                eprintln!("error: {usage}");
                ExitCode::from(2)
            } else {
                eprintln!("error: {error:#}");
                ExitCode::from(2)
            }
        }
    }
}

fn execute(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run {
            scenario,
            seed,
            json,
            plot,
            trace,
            no_determinism_check,
        } => run_scenario(
            &scenario,
            seed,
            json,
            plot.as_deref(),
            trace,
            !no_determinism_check,
        ),
        Command::List { dir } => list(&dir),
        Command::Bench { scenario, json } => {
            let scenario = load(&scenario)?;
            let report = sim::bench::compare(&scenario);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for m in [&report.baseline, &report.scenario] {
                    println!(
                        "{:<40} {:>7.1} s simulated in {:>7.3} s: {:>7.1}x real time",
                        m.name, m.simulated_s, m.wall_s, m.real_time_factor
                    );
                }
                println!("ratio to baseline: {:.3}", report.ratio_to_baseline);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plant {
            command:
                PlantCommand::Characterize {
                    preset,
                    params,
                    json,
                },
        } => {
            let params = match (preset, params) {
                (Some(name), _) => {
                    AxisParams::preset(&name).map_err(|e| UsageError(e.to_string()))?
                }
                (None, Some(path)) => {
                    AxisParams::from_toml_file(&path).map_err(|e| UsageError(e.to_string()))?
                }
                (None, None) => unreachable!("clap requires --preset or --params"),
            };
            let c = characterize(&params);
            if json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                println!("no-load speed          {:>10.3} rpm", c.no_load_speed_rpm);
                println!("stall torque           {:>10.4} N·m", c.stall_torque_nm);
                println!(
                    "electrical time const  {:>10.3} ms",
                    c.electrical_time_constant_s * 1e3
                );
                println!(
                    "mechanical time const  {:>10.3} ms",
                    c.mechanical_time_constant_s * 1e3
                );
                println!("(all at the output shaft, measured by simulated experiments)");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load(path: &Path) -> Result<Scenario> {
    let scenario = Scenario::load(path).map_err(|e| UsageError(e.to_string()))?;
    check_expectations(&scenario).map_err(UsageError)?;
    Ok(scenario)
}

fn run_scenario(
    path: &Path,
    seed: Option<u64>,
    json: bool,
    plot: Option<&Path>,
    print_trace: bool,
    check_determinism: bool,
) -> Result<ExitCode> {
    let scenario = load(path)?;
    let seed = seed.unwrap_or(scenario.seed);
    // `--json` carries the decimated time series too, so that `hil compare` can overlay runs.
    let options = RunOptions {
        check_determinism,
        record_series: plot.is_some() || json,
    };
    let output = run(&scenario, seed, options);
    if print_trace {
        for event in output.trace.events() {
            println!("{event}");
        }
    }
    if let Some(dir) = plot {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating plot directory {}", dir.display()))?;
        for series in &output.series {
            let file = dir.join(format!(
                "{}-seed{}-{}.svg",
                scenario.name, seed, series.name
            ));
            let svg = sim::plot::axis_svg(
                &scenario.name,
                seed,
                series,
                &output.schedule,
                scenario.duration.as_secs_f64(),
            );
            std::fs::write(&file, svg).with_context(|| format!("writing {}", file.display()))?;
            eprintln!("wrote {}", file.display());
        }
    }
    let report = &output.report;
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!(
            "scenario {}  seed {}  servocell {}",
            report.scenario, report.seed, report.version
        );
        println!(
            "simulated {:.1} s, {} faults, {} trace events, trace hash {}",
            report.simulated_s,
            report.faults.len(),
            report.trace_events,
            report.trace_hash
        );
        println!(
            "moves: {} requested, {} succeeded, {} failed, {} retries",
            report.moves.requested,
            report.moves.succeeded,
            report.moves.failed,
            report.moves.retries
        );
        for axis in &report.axes {
            println!(
                "axis {}: following error max {:.3}° rms {:.3}°, peak current {:.3} A, final {:.3}°, {} watchdog trips",
                axis.name,
                axis.following_error_deg_max,
                axis.following_error_deg_rms,
                axis.current_a_peak,
                axis.position_deg_final,
                axis.watchdog_trips
            );
        }
        for oracle in &report.oracles {
            let mark = if oracle.holds { "holds" } else { "FAILS" };
            println!(
                "  {:<4} {mark:<5} [{:?}] {}",
                oracle.id, oracle.expected, oracle.statement
            );
            if let Some(v) = &oracle.first_violation {
                println!("         first at {:.4} s: {}", v.t.as_secs_f64(), v.detail);
            }
        }
        println!("verdict: {:?}", report.verdict);
    }
    if report.verdict == Verdict::Fail {
        eprintln!("FAILED: scenario {} seed {seed}", scenario.name);
        eprintln!(
            "reproduce: cargo run --release -p sim -- run {} --seed {seed}",
            path.display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn list(dir: &Path) -> Result<ExitCode> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading scenario directory {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for file in files {
        let goal = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| {
                text.lines()
                    .next()
                    .map(|l| l.trim_start_matches('#').trim().to_owned())
            })
            .unwrap_or_default();
        match Scenario::load(&file) {
            Ok(s) => println!(
                "{:<40} {:>6.1} s  {} axes  seed {:<4} {goal}",
                file.display(),
                s.duration.as_secs_f64(),
                s.axes.len(),
                s.seed
            ),
            Err(error) => println!("{:<40} INVALID: {error}", file.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}
