//! The `hil` command: `emulate` a Dynamixel bus behind a pseudo-terminal, `run` a bench
//! scenario on a real (or emulated) servo, `compare` a simulation report with a bench report.

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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hil: {e:#}");
            ExitCode::from(2)
        }
    }
}
