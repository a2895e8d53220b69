//! `esprit-bench`: benchmarks operators can run themselves.

use bench::esp::{measure, Fixture, Op, Size};
use bench::report::{header, Row};
use bench::stats::{max, median, min};
use clap::{Parser, Subcommand};
use dataplane::esp::{Backend, Suite};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// esprit benchmarks.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// ESP encrypt/decrypt (full path) against bare AES-GCM, one core, batches of 32.
    Esp {
        /// "ring", "aws-lc-rs" or "both".
        #[arg(long, default_value = "both")]
        backend: String,
        /// Rounds per configuration (ESP and AEAD alternate in each).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Milliseconds per measurement.
        #[arg(long, default_value_t = 150)]
        ms: u64,
        /// A short run (3 rounds of 10 ms) to check the tool works; figures are rough.
        #[arg(long)]
        quick: bool,
        /// Only these sizes (comma-separated, e.g. 64,1420,imix).
        #[arg(long)]
        sizes: Option<String>,
        /// Write the rows as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Core to pin to (default: the last core).
        #[arg(long)]
        core: Option<usize>,
        /// Run only one side ("esp" or "aead"), for profiling; ratios are then meaningless.
        #[arg(long, value_name = "SIDE")]
        only: Option<String>,
    },
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn parse_sizes(s: &str) -> Result<Vec<Size>, String> {
    s.split(',')
        .map(|t| match t.trim() {
            "imix" => Ok(Size::Imix),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|&n| (64..=1500).contains(&n))
                .map(Size::Fixed)
                .ok_or_else(|| format!("--sizes: {n:?} is not a size in 64..=1500 or \"imix\"")),
        })
        .collect()
}

fn run_esp(
    backends: &[Backend],
    rounds: usize,
    dur: Duration,
    sizes: &[Size],
    core: Option<usize>,
    only: Option<&str>,
) -> Vec<Row> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let pinned = match core
        .map(|c| core_affinity::CoreId { id: c })
        .or(cores.last().copied())
    {
        Some(c) if core_affinity::set_for_current(c) => format!("pinned to core {}", c.id),
        _ => "not pinned".to_string(),
    };
    println!(
        "esprit-bench esp: {} | {} | {} rounds x {} ms per figure, ESP and AES-GCM interleaved | batches of {} | {}",
        cpu_model(),
        pinned,
        rounds,
        dur.as_millis(),
        bench::esp::BATCH,
        std::env::var("ESPRIT_BENCH_NOTE").unwrap_or_default()
    );
    println!("{}", header());
    let mut rows = Vec::new();
    for &backend in backends {
        for suite in Suite::ALL {
            for &size in sizes {
                for op in [Op::Encrypt, Op::Decrypt] {
                    let mut f = Fixture::new(backend, suite, size, op);
                    let bytes = f.batch_bytes();
                    let (mut esp, mut aead, mut mpps, mut ratios) =
                        (vec![], vec![], vec![], vec![]);
                    let mut counter = 0u64;
                    for r in 0..rounds {
                        if let Some(side) = only {
                            let e = if side == "esp" {
                                measure(dur, bytes, || f.esp_batch())
                            } else {
                                (0.0, 0.0)
                            };
                            let a = if side == "aead" {
                                measure(dur, bytes, || f.aead_batch(&mut counter))
                            } else {
                                (0.0, 0.0)
                            };
                            esp.push(e.0);
                            mpps.push(e.1);
                            aead.push(a.0);
                            ratios.push(0.0);
                            continue;
                        }
                        // Alternate the order so neither side always runs on a warmer core.
                        let (e, a) = if r % 2 == 0 {
                            let e = measure(dur, bytes, || f.esp_batch());
                            let a = measure(dur, bytes, || f.aead_batch(&mut counter));
                            (e, a)
                        } else {
                            let a = measure(dur, bytes, || f.aead_batch(&mut counter));
                            let e = measure(dur, bytes, || f.esp_batch());
                            (e, a)
                        };
                        esp.push(e.0);
                        mpps.push(e.1);
                        aead.push(a.0);
                        ratios.push(e.0 / a.0);
                    }
                    let row = Row {
                        suite: suite.name().into(),
                        size: match size {
                            Size::Fixed(n) => serde_json::json!(n),
                            Size::Imix => serde_json::json!("imix"),
                        },
                        op: op.label().into(),
                        esp_gbps: median(&esp),
                        aead_gbps: median(&aead),
                        ratio: median(&ratios),
                        backend: backend.name().into(),
                        esp_mpps: median(&mpps),
                        esp_gbps_min: min(&esp),
                        esp_gbps_max: max(&esp),
                        aead_gbps_min: min(&aead),
                        aead_gbps_max: max(&aead),
                        rounds,
                    };
                    println!("{}", row.line());
                    rows.push(row);
                }
            }
        }
    }
    rows
}

fn main() -> ExitCode {
    match Args::parse().cmd {
        Cmd::Esp {
            backend,
            rounds,
            ms,
            quick,
            sizes,
            json,
            core,
            only,
        } => {
            if only.as_deref().is_some_and(|o| o != "esp" && o != "aead") {
                eprintln!("esprit-bench: --only: expected \"esp\" or \"aead\"");
                return ExitCode::from(2);
            }
            let backends = match backend.as_str() {
                "both" => Backend::ALL.to_vec(),
                b => match b.parse::<Backend>() {
                    Ok(b) => vec![b],
                    Err(e) => {
                        eprintln!("esprit-bench: --backend: {e} (or \"both\")");
                        return ExitCode::from(2);
                    }
                },
            };
            let sizes = match sizes.as_deref().map(parse_sizes).transpose() {
                Ok(s) => s.unwrap_or_else(|| Size::ALL.to_vec()),
                Err(e) => {
                    eprintln!("esprit-bench: {e}");
                    return ExitCode::from(2);
                }
            };
            let (rounds, dur) = if quick {
                (3, Duration::from_millis(10))
            } else {
                (rounds.max(1), Duration::from_millis(ms.max(1)))
            };
            let rows = run_esp(&backends, rounds, dur, &sizes, core, only.as_deref());
            if let Some(p) = json {
                let text = serde_json::to_string_pretty(&rows).expect("rows serialise");
                if let Err(e) = std::fs::write(&p, text) {
                    eprintln!("esprit-bench: {}: {e}", p.display());
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
    }
}
