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
    /// Run many seeds of one or more scenarios on a worker pool; exit 1 when any seed fails.
    Sweep {
        /// Scenario files (TOML).
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// Seeds A..B, B excluded (a Rust range).
        #[arg(long, value_parser = sim::sweep::parse_seeds)]
        seeds: std::ops::Range<u64>,
        /// Worker threads, each running whole simulations; the number of CPUs when absent.
        #[arg(long)]
        jobs: Option<usize>,
        /// Run only shard K of N (K counted from 0): the seeds whose index in the range is K
        /// modulo N. Combine the shards' directories with `sim merge`.
        #[arg(long, value_parser = sim::sweep::Shard::parse, value_name = "K/N")]
        shard: Option<sim::sweep::Shard>,
        /// Directory for results.jsonl (appended as seeds finish), coverage.json, coverage.txt,
        /// sweep.json and summary.txt.
        #[arg(long, value_name = "DIR", default_value = "sweep-out")]
        out: PathBuf,
        /// Also write JUnit XML for CI systems.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Continue the stopped sweep in --out: the same scenarios (unchanged), seeds and shard;
        /// the seeds already done are kept, the rest run. Ends with the files an uninterrupted
        /// sweep writes.
        #[arg(long)]
        resume: bool,
    },
    /// Run each seed here and in a fresh process, and compare trace hashes; exit 1 on a
    /// divergence, naming the first trace event that differs.
    CheckDeterminism {
        scenario: PathBuf,
        /// Seeds A..B, B excluded.
        #[arg(long, value_parser = sim::sweep::parse_seeds)]
        seeds: std::ops::Range<u64>,
        /// Seeds checked at once; the number of CPUs when absent.
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Cut a failing seed's fault schedule down to the faults that matter, and write it as a
    /// new scenario file with an explicit schedule.
    Shrink {
        scenario: PathBuf,
        /// The failing seed.
        #[arg(long)]
        seed: u64,
        /// The oracle that must keep failing; the first failing one when absent.
        #[arg(long)]
        oracle: Option<String>,
        /// Where to write the shrunk scenario; `<name>-seed<N>-shrunk.toml` when absent.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Most simulations the search may run.
        #[arg(long, default_value_t = sim::shrink::SHRINK_RUN_COUNT_MAX)]
        runs_max: usize,
    },
    /// Combine the directories of a sharded sweep into one; exit 1 when any seed failed.
    Merge {
        /// The shards' output directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also write JUnit XML for CI systems.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Measure sweep throughput with 1 and 2 workers, and a worker process's peak memory.
    BenchSweep {
        scenario: PathBuf,
        /// Seeds A..B, B excluded.
        #[arg(long, value_parser = sim::sweep::parse_seeds, default_value = "0..40")]
        seeds: std::ops::Range<u64>,
    },
    /// (For `sim bench-sweep`.) Run seeds one after another in this process and print its peak memory.
    #[command(hide = true)]
    BenchWorker {
        scenario: PathBuf,
        #[arg(long, value_parser = sim::sweep::parse_seeds)]
        seeds: std::ops::Range<u64>,
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
                        "{:<40} {:>7.1} s simulated in {:>7.3} s: {:>7.1}x real time (turmoil tick {} ms)",
                        m.name, m.simulated_s, m.wall_s, m.real_time_factor, m.tick_ms
                    );
                }
                println!("ratio to baseline: {:.3}", report.ratio_to_baseline);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sweep {
            scenarios,
            seeds,
            jobs,
            shard,
            out,
            junit,
            resume,
        } => sweep_command(
            &scenarios,
            seeds,
            jobs,
            shard,
            &out,
            junit.as_deref(),
            resume,
        ),
        Command::CheckDeterminism {
            scenario,
            seeds,
            jobs,
        } => check_determinism_command(&scenario, seeds, jobs),
        Command::Shrink {
            scenario,
            seed,
            oracle,
            out,
            runs_max,
        } => shrink_command(&scenario, seed, oracle, out, runs_max),
        Command::Merge { dirs, out, junit } => merge_command(&dirs, &out, junit.as_deref()),
        Command::BenchSweep { scenario, seeds } => bench_command(&scenario, seeds),
        Command::BenchWorker { scenario, seeds } => bench_worker_command(&scenario, seeds),
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
        if let Some(orders) = &report.orders {
            let statuses: Vec<String> = orders
                .gateway_statuses
                .iter()
                .map(|(status, count)| format!("{status}×{count}"))
                .collect();
            println!(
                "orders: {} placed, {} started, {} completed, {} compensated, {} given up, {} taken over; saga p50 {} ms, p99 {} ms; gateway answered {}",
                orders.placed,
                orders.started,
                orders.completed,
                orders.compensated,
                orders.given_up,
                orders.takeovers,
                orders
                    .saga_ms_p50
                    .map_or("-".to_owned(), |ms| format!("{ms:.0}")),
                orders
                    .saga_ms_p99
                    .map_or("-".to_owned(), |ms| format!("{ms:.0}")),
                statuses.join(" ")
            );
        }
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

/// The wall clock, for throughput figures only. `sim` commands that sweep run outside every
/// simulation (each simulation reads only simulated time), so the determinism ban on
/// `Instant::now` (clippy.toml) does not apply here.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> std::time::Instant {
    std::time::Instant::now()
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn load_sweep_scenarios(paths: &[PathBuf]) -> Result<Vec<sim::sweep::SweepScenario>> {
    paths
        .iter()
        .map(|path| {
            let s = sim::sweep::SweepScenario::load(path).map_err(|e| UsageError(e.to_string()))?;
            check_expectations(&s.scenario).map_err(UsageError)?;
            Ok(s)
        })
        .collect()
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Writes a finished sweep's JUnit XML, prints its summary; exit 1 when any seed failed.
fn report_sweep(sweep: &sim::sweep::Sweep, out: &Path, junit: Option<&Path>) -> Result<ExitCode> {
    if let Some(junit) = junit {
        write_file(junit, &sweep.junit())?;
    }
    print!("{}", sweep.summary(sim::sweep::FAILURES_PRINTED_MAX));
    println!(
        "results in {}, coverage table in {}",
        out.join(sim::sweep::RESULTS_FILE).display(),
        out.join(sim::sweep::COVERAGE_TABLE_FILE).display()
    );
    if sweep.failures().next().is_some() {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn sweep_command(
    paths: &[PathBuf],
    seeds: std::ops::Range<u64>,
    jobs: Option<usize>,
    shard: Option<sim::sweep::Shard>,
    out: &Path,
    junit: Option<&Path>,
    resume: bool,
) -> Result<ExitCode> {
    let scenarios = load_sweep_scenarios(paths)?;
    let jobs = jobs.unwrap_or_else(default_jobs);
    let started = wall_clock();
    let start = if resume {
        sim::sweep::Start::Resume
    } else {
        sim::sweep::Start::Fresh
    };
    let options = sim::sweep::SweepOptions {
        jobs,
        progress: true,
    };
    let run = sim::sweep::sweep_into(out, &scenarios, seeds, shard, options, start).map_err(
        |e| match e {
            // A plan that does not match, or damaged files: the user's to fix.
            sim::sweep::SweepError::Plan(_) | sim::sweep::SweepError::Parse { .. } => {
                anyhow::Error::new(UsageError(e.to_string()))
            }
            sim::sweep::SweepError::Io { .. } => anyhow::Error::new(e),
        },
    )?;
    if let Some(discarded) = run.discarded {
        eprintln!(
            "note: {} held an unfinished sweep ({discarded} runs done); started afresh without --resume, it is discarded",
            out.display()
        );
    }
    let wall_s = started.elapsed().as_secs_f64();
    let code = report_sweep(&run.sweep, out, junit)?;
    if run.resumed > 0 {
        println!(
            "resumed: {} runs were done already, {} run now",
            run.resumed, run.ran
        );
    }
    println!(
        "{} runs in {wall_s:.1} s with {jobs} workers: {:.1} seeds/s",
        run.ran,
        run.ran as f64 / wall_s.max(1e-9)
    );
    Ok(code)
}

fn check_determinism_command(
    path: &Path,
    seeds: std::ops::Range<u64>,
    jobs: Option<usize>,
) -> Result<ExitCode> {
    let scenario = load(path)?;
    let exe = std::env::current_exe().context("finding this program's path")?;
    let seeds: Vec<u64> = seeds.collect();
    let checks = sim::sweep::parallel_map(
        &seeds,
        jobs.unwrap_or_else(default_jobs),
        |seed| sim::determinism::check_seed(&exe, path, &scenario, *seed),
        |_| {},
    );
    let mut diverged = 0;
    for check in checks {
        let check = check?;
        if !check.agrees() {
            diverged += 1;
            println!(
                "seed {}: DIVERGES: hash {} here, {} in a fresh process",
                check.seed, check.hash_here, check.hash_fresh
            );
            if let Some(difference) = &check.first_difference {
                println!("  {difference}");
            }
            println!(
                "  reproduce: {}",
                sim::sweep::reproduce_command(&path.display().to_string(), check.seed)
            );
        }
    }
    println!(
        "{}: {} seeds run here and in a fresh process: {} agree, {diverged} diverge",
        path.display(),
        seeds.len(),
        seeds.len() - diverged
    );
    if diverged > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn shrink_command(
    path: &Path,
    seed: u64,
    oracle: Option<String>,
    out: Option<PathBuf>,
    runs_max: usize,
) -> Result<ExitCode> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("{}: cannot read the scenario: {e}", path.display())))?;
    let source = sim::scenario::Source::new(path.display().to_string(), text);
    let scenario = Scenario::from_source(&source).map_err(|e| UsageError(e.to_string()))?;
    check_expectations(&scenario).map_err(UsageError)?;
    let options = sim::shrink::ShrinkOptions { oracle, runs_max };
    let shrunk = sim::shrink::shrink(&source, &scenario, seed, &options)
        .map_err(|e| UsageError(e.to_string()))?;
    let out =
        out.unwrap_or_else(|| PathBuf::from(format!("{}-seed{seed}-shrunk.toml", scenario.name)));
    write_file(&out, &shrunk.text)?;

    // Judge the file as written, from disk, twice (DT1).
    let written = load(&out)?;
    let report = sim::shrink::verify(&written, seed);
    println!(
        "shrunk seed {seed} of {}: {} faults cut to {}, oracle {} still fails ({} runs{})",
        path.display(),
        shrunk.original.len(),
        written.faults.len(),
        shrunk.oracle,
        shrunk.runs,
        if shrunk.budget_exhausted {
            "; the run limit stopped the search, a smaller schedule may exist"
        } else {
            ""
        }
    );
    for fault in &written.faults {
        println!("  {fault}");
    }
    println!(
        "  {} first fails at {:.4} s: {}",
        shrunk.oracle,
        shrunk.violation.t.as_secs_f64(),
        shrunk.violation.detail
    );
    if !sim::shrink::reproduces(&report, &shrunk.oracle) {
        anyhow::bail!(
            "the written file {} does not fail {} deterministically when run twice: this is a bug in sim shrink",
            out.display(),
            shrunk.oracle
        );
    }
    println!(
        "wrote {} (it fails {} the same way on every run); reproduce: {}",
        out.display(),
        shrunk.oracle,
        sim::sweep::reproduce_command(&out.display().to_string(), seed)
    );
    Ok(ExitCode::SUCCESS)
}

fn merge_command(dirs: &[PathBuf], out: &Path, junit: Option<&Path>) -> Result<ExitCode> {
    let parts = dirs
        .iter()
        .map(|dir| sim::sweep::Sweep::read(dir))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UsageError(e.to_string()))?;
    let merged = sim::merge::merge(parts).map_err(|e| UsageError(e.to_string()))?;
    merged.write(out)?;
    report_sweep(&merged, out, junit)
}

fn bench_command(path: &Path, seeds: std::ops::Range<u64>) -> Result<ExitCode> {
    let scenarios = load_sweep_scenarios(&[path.to_owned()])?;
    let count = seeds.end - seeds.start;
    // Warm up (page faults, allocator pools) so that neither measurement pays for them.
    let warm = seeds.start..seeds.start + count.min(2);
    let options = |jobs| sim::sweep::SweepOptions {
        jobs,
        progress: false,
    };
    sim::sweep::sweep(&scenarios, warm, None, options(2)).map_err(|e| UsageError(e.to_string()))?;
    let mut rates = Vec::new();
    for jobs in [1, 2] {
        let started = wall_clock();
        let cpu_before = sim::sweep::process_cpu_s();
        sim::sweep::sweep(&scenarios, seeds.clone(), None, options(jobs))
            .map_err(|e| UsageError(e.to_string()))?;
        let wall_s = started.elapsed().as_secs_f64();
        let rate = count as f64 / wall_s;
        // CPU time over wall time: the cores this measurement really had. On a shared machine
        // it falls below --jobs, and the speed-up with it.
        let cores = match (cpu_before, sim::sweep::process_cpu_s()) {
            (Some(before), Some(after)) => format!(
                ", {:.2} s CPU: {:.2} cores busy, {:.2} seeds per CPU-second",
                after - before,
                (after - before) / wall_s,
                count as f64 / (after - before).max(1e-9)
            ),
            _ => String::new(),
        };
        println!("--jobs {jobs}: {count} seeds in {wall_s:.2} s, {rate:.2} seeds/s{cores}");
        rates.push(rate);
    }
    println!(
        "speed-up of --jobs 2 over --jobs 1: {:.2}x",
        rates[1] / rates[0]
    );

    // Peak memory per worker: two worker processes side by side, each running the same seeds
    // one after another as a sweep worker thread does, each reporting its own VmHWM.
    let exe = std::env::current_exe().context("finding this program's path")?;
    let range = format!("{}..{}", seeds.start, seeds.end);
    let children = (0..2)
        .map(|_| {
            std::process::Command::new(&exe)
                .arg("bench-worker")
                .arg(path)
                .args(["--seeds", &range])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .context("starting a bench worker")
        })
        .collect::<Result<Vec<_>>>()?;
    for (k, child) in children.into_iter().enumerate() {
        let output = child
            .wait_with_output()
            .context("waiting for a bench worker")?;
        let text = String::from_utf8_lossy(&output.stdout);
        println!("worker process {k}: {}", text.trim());
    }
    if let Some(kib) = sim::sweep::peak_rss_kib() {
        println!(
            "this process (both sweeps above, 2 worker threads at most): peak RSS {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_worker_command(path: &Path, seeds: std::ops::Range<u64>) -> Result<ExitCode> {
    let scenarios = load_sweep_scenarios(&[path.to_owned()])?;
    let started = wall_clock();
    let count = seeds.end - seeds.start;
    for seed in seeds {
        sim::sweep::run_seed(&scenarios[0], seed);
    }
    let wall_s = started.elapsed().as_secs_f64();
    let kib = sim::sweep::peak_rss_kib().unwrap_or(0);
    println!(
        "{count} seeds in {wall_s:.2} s ({:.2} seeds/s), peak RSS {:.1} MiB",
        count as f64 / wall_s,
        kib as f64 / 1024.0
    );
    Ok(ExitCode::SUCCESS)
}
