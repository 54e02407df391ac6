//! The `hil` command: `emulate` a Dynamixel bus behind a pseudo-terminal, `run` a bench
//! scenario on a real (or emulated) servo, `compare` two reports of one scenario.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use hil::control_table::{BAUD_RATES, XM430_W350, address};
use hil::emulator::link_fault::LinkFaults;
use hil::emulator::pty::{Line, PortLine, PtyLine, serve};
use hil::emulator::{EmulatedBus, EmulatedServo, LinkFault};

#[derive(Debug, Parser)]
#[command(
    name = "hil",
    version,
    about = "servocell bench rig: Dynamixel Protocol 2.0 hardware in the loop"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A virtual Dynamixel bus: the plant model in real time behind a pseudo-terminal.
    Emulate(EmulateArgs),
    /// Run a scenario's motion program on the rig and report like `sim run`.
    Run(RunArgs),
    /// Compare two reports of one scenario (simulation, emulator or bench) side by side.
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Scenario file (TOML); see scenarios/bench-xm430.toml.
    scenario: PathBuf,
    /// Serial port of the bus (a U2D2 is /dev/ttyUSB0; `hil emulate --pty` prints one).
    #[arg(long)]
    port: String,
    /// Baud rate of the bus (the servos' Baud Rate register must match).
    #[arg(long, default_value_t = 57_600)]
    baud: u32,
    /// Servo IDs in axis-name order, replacing the scenario's.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    ids: Option<Vec<u8>>,
    /// Control rate in Hz, replacing the scenario's.
    #[arg(long)]
    rate: Option<f64>,
    /// Ping, check models and write limits with torque off, print the plan, and stop.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON (as `sim run --json` does).
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Report A (JSON): `sim run --json`, `hil run --json` or `hil run --out`.
    report_a: PathBuf,
    /// Report B (JSON), of the same scenario.
    report_b: PathBuf,
    /// Write an SVG overlay of both runs (position and setpoint, and their deviation) here.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Print the comparison as one JSON object.
    #[arg(long)]
    json: bool,
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let scenario = hil::scenario::Scenario::from_file(&args.scenario)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handler")?;
    }
    let options = hil::runner::RunOptions {
        port: args.port.clone(),
        baud: args.baud,
        ids: args.ids.clone(),
        rate_hz: args.rate,
        dry_run: args.dry_run,
    };
    match hil::runner::run(scenario, &options, stop).context("hil run")? {
        hil::runner::RunOutcome::DryRun { log, plan } => {
            println!(
                "dry run on {} at {} baud: preflight done, torque left off",
                args.port, args.baud
            );
            for line in log.iter().chain(&plan) {
                println!("  {line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        hil::runner::RunOutcome::Report { log, report } => {
            for line in &log {
                eprintln!("preflight: {line}");
            }
            if let Some(path) = &args.out {
                std::fs::write(path, report.to_json())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.summary());
            }
            Ok(match report.verdict {
                hil::report::Verdict::Pass => ExitCode::SUCCESS,
                hil::report::Verdict::Fail => ExitCode::from(1),
            })
        }
    }
}

fn load_report(path: &std::path::Path) -> Result<hil::report::Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hil::compare::read_report(
        &path.display().to_string(),
        &text,
    )?)
}

fn compare(args: CompareArgs) -> Result<ExitCode> {
    let a = load_report(&args.report_a)?;
    let b = load_report(&args.report_b)?;
    let comparison = hil::compare::compare(&a, &b)?;
    if let Some(svg) = &args.svg {
        std::fs::write(svg, hil::compare::svg(&a, &b))
            .with_context(|| format!("writing {}", svg.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print!("{}", comparison.table());
        if let Some(svg) = &args.svg {
            println!("overlay: {}", svg.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
struct EmulateArgs {
    /// Open a pseudo-terminal and print its device path as the first line of stdout.
    #[arg(long, conflicts_with = "port")]
    pty: bool,
    /// Serve on this serial port instead (a second adapter wired to the host's).
    #[arg(long)]
    port: Option<String>,
    /// Servo IDs on the bus (repeat for several); default 1.
    #[arg(long = "id", value_parser = clap::value_parser!(u8).range(0..=252))]
    ids: Vec<u8>,
    /// Device preset: the plant-model preset and the control table of that model.
    #[arg(long, default_value = "xm430-w350")]
    preset: String,
    /// Baud rate whose wire time is modelled (and set on a real port).
    #[arg(long, default_value_t = 57_600)]
    baud: u32,
    /// Link fault, KIND@START_S[+FOR_S] with KIND garbage, drop, corrupt or vanish (repeatable).
    #[arg(long = "fault")]
    faults: Vec<LinkFault>,
    /// Seed of the plant's sensor noise and of link-fault garbage.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn emulate(args: EmulateArgs) -> Result<ExitCode> {
    if args.preset != "xm430-w350" {
        bail!(
            "unknown preset {:?}: the emulator knows xm430-w350",
            args.preset
        );
    }
    if args.baud == 0 || args.baud > 10_000_000 {
        bail!("baud {} outside 1..=10000000", args.baud);
    }
    let ids = if args.ids.is_empty() {
        vec![1]
    } else {
        args.ids.clone()
    };
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != ids.len() {
        bail!("duplicate --id in {ids:?}");
    }
    let params = plant_model::AxisParams::preset(&args.preset)
        .with_context(|| format!("loading preset {}", args.preset))?;
    let baud_register = BAUD_RATES
        .iter()
        .find(|(_, b)| *b == args.baud)
        .map(|(r, _)| *r);
    let servos = ids
        .iter()
        .map(|&id| {
            let mut servo = EmulatedServo::new(XM430_W350, id, params.clone(), args.seed);
            if let Some(r) = baud_register {
                servo.set_register(address::BAUD_RATE, i64::from(r));
            }
            servo
        })
        .collect();
    let mut bus = EmulatedBus::new(servos, args.baud);
    let mut faults = LinkFaults::new(args.faults.clone(), args.seed);

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handler")?;
    }

    let mut line: Box<dyn Line> = match (&args.port, args.pty) {
        (Some(path), false) => {
            let line = PortLine::open(path, args.baud)?;
            println!("{path}");
            Box::new(line)
        }
        (None, true) => {
            let line = PtyLine::open().context("opening a pseudo-terminal")?;
            println!("{}", line.path().display());
            Box::new(line)
        }
        _ => bail!("give --pty or --port PATH"),
    };
    use std::io::Write as _;
    std::io::stdout().flush().ok();
    eprintln!(
        "hil emulate: {} servo(s) {:?} ({}), {} baud modelled; Ctrl-C to stop",
        ids.len(),
        ids,
        args.preset,
        args.baud
    );
    let summary = serve(&mut bus, &mut faults, line.as_mut(), &stop)?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Emulate(args) => emulate(args),
        Command::Run(args) => run(args),
        Command::Compare(args) => compare(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hil: {e:#}");
            ExitCode::from(2)
        }
    }
}
