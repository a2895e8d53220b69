//! `esprit-bench`: benchmarks operators can run themselves.
//!
//! `esprit-bench esp` measures the full ESP path (encrypt and decrypt) against bare AES-GCM on
//! one core, interleaved, and prints a table (and JSON with `--json FILE`).

use bench::esp::{run_group, AeadLen, Op, Options, Plan, Sides, Size, Versus, BATCH};
use bench::report::{cpu_model, header, load_average, now_utc, to_json, Row};
use clap::{Parser, Subcommand, ValueEnum};
use dataplane::esp::{Backend, Suite};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// esprit benchmarks.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// ESP encrypt/decrypt (full path) against bare AES-GCM on the same buffers: one core,
    /// batches of 32, ESP and AEAD interleaved round by round.
    Esp(EspArgs),
}

#[derive(clap::Args)]
struct EspArgs {
    /// AES-GCM library: both (default, so one run compares them), ring or aws-lc-rs.
    #[arg(long, value_enum, default_value_t = BackendArg::Both)]
    backend: BackendArg,
    /// Suites: both (default), aes128gcm16 or aes256gcm16.
    #[arg(long, value_enum, default_value_t = SuiteArg::Both)]
    suite: SuiteArg,
    /// Operations: both (default), encrypt or decrypt.
    #[arg(long, value_enum, default_value_t = OpArg::Both)]
    op: OpArg,
    /// Plaintext packet sizes, comma-separated (28..=1500 or "imix").
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "64,128,256,512,1024,1420,1500,imix"
    )]
    sizes: Vec<Size>,
    /// Rounds per configuration; each round measures ESP and AEAD back to back.
    #[arg(long, default_value_t = 9)]
    rounds: usize,
    /// Milliseconds per loop per round.
    #[arg(long, default_value_t = 50)]
    ms: u64,
    /// A short smoke run (3 rounds of 5 ms): proves the tool works, figures are rough.
    #[arg(long)]
    quick: bool,
    /// Write the rows as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Core to pin to (default: the last core).
    #[arg(long)]
    core: Option<usize>,
    /// Outbound ESP padding alignment of the benchmark SAs (4 = RFC minimum, 16 = default).
    #[arg(long, default_value_t = 16, value_parser = parse_pad_align)]
    pad_align: u8,
    /// Length of the bare AEAD's buffers: the plaintext packet (default, the goal's
    /// definition) or the ESP payload (packet + padding + trailer, the engine's own overhead).
    #[arg(long, value_enum, default_value_t = AeadLenArg::Plain)]
    aead_len: AeadLenArg,
    /// Run one loop only, for profiling (ratios are then 0).
    #[arg(long, value_enum)]
    only: Option<OnlyArg>,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Both,
    Ring,
    #[value(name = "aws-lc-rs")]
    AwsLcRs,
}

#[derive(Clone, Copy, ValueEnum)]
enum SuiteArg {
    Both,
    Aes128gcm16,
    Aes256gcm16,
}

#[derive(Clone, Copy, ValueEnum)]
enum AeadLenArg {
    Plain,
    Esp,
}

#[derive(Clone, Copy, ValueEnum)]
enum OpArg {
    Both,
    Encrypt,
    Decrypt,
}

#[derive(Clone, Copy, ValueEnum)]
enum OnlyArg {
    Esp,
    Aead,
}

fn parse_pad_align(s: &str) -> Result<u8, String> {
    match s {
        "4" => Ok(4),
        "16" => Ok(16),
        _ => Err(format!("{s:?}: expected 4 or 16")),
    }
}

/// Pins the thread to `core` (or the last core); says what happened.
fn pin(core: Option<usize>) -> String {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let n = cores.len();
    let target = match core {
        Some(id) => Some(core_affinity::CoreId { id }),
        None => cores.last().copied(),
    };
    match target {
        Some(c) if core_affinity::set_for_current(c) => format!("pinned to core {} of {n}", c.id),
        Some(c) => format!("not pinned (core {} refused)", c.id),
        None => "not pinned".into(),
    }
}

fn run(a: EspArgs) -> Result<(), String> {
    let backends = match a.backend {
        BackendArg::Both => Backend::ALL.to_vec(),
        BackendArg::Ring => vec![Backend::Ring],
        BackendArg::AwsLcRs => vec![Backend::AwsLc],
    };
    let suites = match a.suite {
        SuiteArg::Both => Suite::ALL.to_vec(),
        SuiteArg::Aes128gcm16 => vec![Suite::Aes128Gcm16],
        SuiteArg::Aes256gcm16 => vec![Suite::Aes256Gcm16],
    };
    let ops = match a.op {
        OpArg::Both => Op::ALL.to_vec(),
        OpArg::Encrypt => vec![Op::Encrypt],
        OpArg::Decrypt => vec![Op::Decrypt],
    };
    let sides = match a.only {
        None => Sides::All,
        Some(OnlyArg::Esp) => Sides::EspOnly,
        Some(OnlyArg::Aead) => Sides::AeadOnly,
    };
    let opts = Options {
        pad_align: a.pad_align,
        aead_len: match a.aead_len {
            AeadLenArg::Plain => AeadLen::Plain,
            AeadLenArg::Esp => AeadLen::Esp,
        },
    };
    let (rounds, dur) = if a.quick {
        (3, Duration::from_millis(5))
    } else {
        (a.rounds.max(1), Duration::from_millis(a.ms.max(1)))
    };
    let plan = Plan {
        rounds,
        dur,
        sides,
        options: opts,
    };
    let pinned = pin(a.core);
    println!("esprit-bench esp");
    println!("  date:   {}", now_utc());
    println!("  cpu:    {} ({pinned})", cpu_model());
    println!("  rustc:  {}", env!("ESPRIT_RUSTC_VERSION"));
    println!("  load:   {} (1, 5, 15 min) at start", load_average());
    println!(
        "  method: tunnel IPv4-in-IPv4, ESN, replay window 1024, batches of {BATCH}, sizes are \
         plaintext IP packets, ESP padded to {} bytes, bare AEAD over the {}; {rounds} rounds \
         x {} ms per loop, ESP and AEAD alternating first, backends interleaved; Gbit/s of \
         plaintext; ratio = median of per-round ESP/AEAD; copy = refill alone",
        opts.pad_align,
        match opts.aead_len {
            AeadLen::Plain => "plaintext length",
            AeadLen::Esp => "ESP payload length (packet + padding + trailer)",
        },
        dur.as_millis()
    );
    println!();
    println!("{}", header());
    let mut rows = Vec::new();
    let mut versus = Vec::new();
    for &suite in &suites {
        for &size in &a.sizes {
            for &op in &ops {
                let all = run_group(&backends, suite, size, op, &plan)?;
                for (&backend, s) in backends.iter().zip(&all) {
                    let row = Row::new(backend, suite, size, op, s);
                    println!("{}", row.line());
                    rows.push(row);
                }
                if let [a, b] = &all[..] {
                    versus.push((suite, size, op, Versus::of(a, b)));
                }
            }
        }
    }
    if !versus.is_empty() && sides == Sides::All {
        println!();
        println!(
            "{} / {}, per-round ratios of Gbit/s (median, min-max):",
            backends[1].name(),
            backends[0].name()
        );
        println!(
            "{:<11} {:>4} {:<7} {:>6} {:>11} {:>6} {:>11}",
            "suite", "size", "op", "AEAD", "range", "ESP", "range"
        );
        for (suite, size, op, v) in &versus {
            println!(
                "{:<11} {:>4} {:<7} {:>6.3} {:>11} {:>6.3} {:>11}",
                suite.name(),
                size.label(),
                op.label(),
                v.aead.median,
                format!("{:.2}-{:.2}", v.aead.min, v.aead.max),
                v.esp.median,
                format!("{:.2}-{:.2}", v.esp.min, v.esp.max),
            );
        }
    }
    println!();
    println!("load: {} (1, 5, 15 min) at end", load_average());
    if let Some(p) = a.json {
        std::fs::write(&p, to_json(&rows)).map_err(|e| format!("--json {}: {e}", p.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match Args::parse().cmd {
        Cmd::Esp(a) => match run(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("esprit-bench esp: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
