//! `esprit-bench`: benchmarks operators can run themselves.
//!
//! `esprit-bench esp` measures the full ESP path (encrypt and decrypt) against bare AES-GCM on
//! one core, interleaved, and prints a table (and JSON with `--json FILE`).
//!
//! `esprit-bench gateway` measures one gateway of a lab (gwA) with AF_XDP traffic in both
//! directions against its no-crypto forwarding, the kernel's and strongSwan's (as root).
//!
//! `esprit-bench ike` measures IKE SA + first child SA setups per second on one core, with the
//! initiator and the responder in one thread over memory (PSK and certificate suites).
//!
//! `esprit-bench offload` measures what completing offloaded checksums and fragmenting non-DF
//! packets cost the LAN->WAN pipeline, in ns per packet on one core.
//!
//! `esprit-bench metrics` measures one scrape of the dataplane's metrics with many child SAs.

use bench::esp::{run_group, AeadLen, Op, Options, Plan, Sides, Size, Versus, BATCH};
use bench::gateway::packet::FrameSize;
use bench::gateway::systems::{Dir, System};
use bench::gateway::{self as gw, report as gwr};
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
    /// Gateway throughput through gwA of a lab (as root): max receive rate, highest rate with
    /// at most 0.5% loss and latency, esprit against no-crypto, kernel and strongSwan
    /// forwarding, interleaved round by round.
    Gateway(GatewayArgs),
    /// IKE SA + first child SA setups per second on one core: initiator and responder in one
    /// thread over memory, PSK (x25519, ECP-256, MODP-2048) and ECDSA P-256 certificates.
    Ike(bench::ike::IkeArgs),
    /// The pipeline's LAN->WAN cost per packet with and without the partial-checksum check,
    /// for partial checksums, and for non-DF packets fragmented to fit the tunnel (one core,
    /// over memory).
    Offload(bench::offload::OffloadArgs),
    /// The worker's whole per-packet path (UMEM frames, pipeline, TX descriptors) over
    /// memory, one core: 1 to 1,000,000 tunnels, uniform and skewed traffic, against bare
    /// AES-GCM interleaved; and two workers handing packets over.
    Pipeline(bench::pipeline::PipelineArgs),
    /// Cost of one datagram to the IKE endpoint (handle_datagram, handle_timeout,
    /// poll_timeout) with 1 and with 10,000 IKE SAs: junk, unknown SPI, retransmission.
    IkeCost(bench::ike_cost::IkeCostArgs),
    /// Cost of one scrape of the dataplane's metrics with 1,000 and 100,000 child SAs: the
    /// worker's snapshot of its SAs and the OpenMetrics text, in µs, and the text's size.
    Metrics(bench::metrics::MetricsArgs),
    /// The route table with a full Internet table (1M IPv4, 200k IPv6 prefixes): build time,
    /// memory and lookups against the former hash-per-length table, convergence through the
    /// kernel (root), forwarding with the full table against an empty one.
    Routes(bench::routes::RoutesArgs),
}

#[derive(clap::Args)]
struct GatewayArgs {
    /// Systems, comma-separated: esprit (ESP-in-UDP), esprit-esp, esprit-nocrypto, kernel,
    /// strongswan, dpdk (DPDK ipsec-secgw with both PMDs, or one of dpdk-af_xdp,
    /// dpdk-af_packet; built from Debian's packages on first use) (default: all).
    #[arg(long, value_delimiter = ',')]
    systems: Option<Vec<String>>,
    /// Plaintext packet sizes, comma-separated (64..=1420 or "imix"; default
    /// 64,512,1420,imix, with --quick 64,1420).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<FrameSize>>,
    /// Rounds; each measures every system once, the order reversing every round (default 3,
    /// with --quick 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Sending window of each trial in milliseconds (default 1000, with --quick 200).
    #[arg(long)]
    trial_ms: Option<u64>,
    /// Most rate-controlled trials per binary search (default 6, with --quick 3).
    #[arg(long)]
    search_steps: Option<usize>,
    /// A smoke run for CI (about 30 s): figures are rough, nothing is checked.
    #[arg(long)]
    quick: bool,
    /// Write the summary and every measurement as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the plot (Gbit/s at 0.5% loss against size, per system) as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Write the table as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Core of the generator/sink thread (default 0).
    #[arg(long)]
    gen_core: Option<usize>,
    /// Core of the gateway under test (default: the last core).
    #[arg(long)]
    dut_core: Option<usize>,
    /// Lab name (default esprit-gwb<pid>).
    #[arg(long)]
    lab: Option<String>,
    /// Leave the lab up afterwards.
    #[arg(long)]
    keep_lab: bool,
    /// Print every trial (rates, counts, the sockets' drop counters).
    #[arg(long)]
    verbose: bool,
    /// Measure nothing: read the rows of an earlier run's --json FILE and print the table and
    /// write --svg / --markdown from them.
    #[arg(long, value_name = "FILE")]
    from_json: Option<PathBuf>,
    /// Where the kernel's receive work runs. nic (default): the bench's on the generator core
    /// in pinned real-time NAPI threads; esprit with native XDP, whose veth receive copy runs
    /// on the sending (generator) core as a NIC's DMA would; the kernel's forwarding and
    /// strongSwan's receive path on the gateway's core through RPS. split: the same, but
    /// esprit with generic XDP behind RPS, so its receive copy runs on its own core too.
    /// inline: veth defaults (receive work on the sender's core), esprit with native XDP.
    #[arg(long, value_enum, default_value_t = NapiArg::Nic)]
    napi: NapiArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum NapiArg {
    Split,
    Nic,
    Inline,
}

#[derive(clap::Args)]
struct EspArgs {
    /// AEAD (and HMAC) library: both (default, so one run compares them), ring or aws-lc-rs.
    #[arg(long, value_enum, default_value_t = BackendArg::Both)]
    backend: BackendArg,
    /// Suites, comma-separated: all (default), gcm (both AES-GCM suites), or suite names
    /// (aes128gcm16, aes256cbc-sha256, chacha20poly1305, ...).
    #[arg(long, value_delimiter = ',', default_value = "all", value_parser = parse_suites)]
    suite: Vec<Vec<Suite>>,
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

/// One `--suite` word: `all`, `gcm` (also `both`, the AES-GCM pair as before) or a suite name.
fn parse_suites(s: &str) -> Result<Vec<Suite>, String> {
    match s {
        "all" => Ok(Suite::ALL.to_vec()),
        "gcm" | "both" => Ok(Suite::GCM.to_vec()),
        name => name.parse().map(|s| vec![s]),
    }
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
    let mut suites: Vec<Suite> = Vec::new();
    for s in a.suite.concat() {
        if !suites.contains(&s) {
            suites.push(s);
        }
    }
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
         plaintext IP packets, ESP padded to {} bytes, bare AEAD (CBC suites: AES-CBC + HMAC, \
         whole blocks) over the {}; {rounds} rounds x {} ms per loop, ESP and bare alternating \
         first, backends interleaved; Gbit/s of plaintext; ratio = median of per-round \
         ESP/bare; copy = refill alone",
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
            "{:<16} {:>4} {:<7} {:>6} {:>11} {:>6} {:>11}",
            "suite", "size", "op", "bare", "range", "ESP", "range"
        );
        for (suite, size, op, v) in &versus {
            println!(
                "{:<16} {:>4} {:<7} {:>6.3} {:>11} {:>6.3} {:>11}",
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

fn write_file(p: &PathBuf, what: &str, text: &str) -> Result<(), String> {
    if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(|e| format!("{what} {}: {e}", d.display()))?;
    }
    std::fs::write(p, text).map_err(|e| format!("{what} {}: {e}", p.display()))
}

/// Prints the table of an earlier run and writes its plot and Markdown again.
fn replot(a: &GatewayArgs, p: &PathBuf) -> Result<(), String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    let rows: Vec<gwr::Row> = serde_json::from_value(doc["rows"].clone())
        .map_err(|e| format!("{}: rows: {e}", p.display()))?;
    println!("{}", gwr::header());
    for r in &rows {
        println!("{}", gwr::line(r));
    }
    if let Some(m) = &a.markdown {
        write_file(m, "--markdown", &gwr::markdown(&rows))?;
    }
    if let Some(svg) = &a.svg {
        let mut sizes: Vec<String> = Vec::new();
        for r in &rows {
            let l = match &r.size {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            if !sizes.contains(&l) {
                sizes.push(l);
            }
        }
        let field = |k: &str| doc[k].as_str().unwrap_or("?").to_string();
        let plot = gw::svg::plot(
            &rows,
            &sizes,
            "esprit-bench gateway: throughput at <= 0.5% loss",
            &format!(
                "{}, {}, {} cores, gwA under test, {} round(s) x {} ms trials",
                field("date"),
                field("cpu"),
                doc["cores"],
                doc["rounds"],
                doc["trial_ms"]
            ),
        );
        write_file(svg, "--svg", &plot)?;
    }
    Ok(())
}

fn run_gateway(a: GatewayArgs) -> Result<(), String> {
    if let Some(p) = &a.from_json {
        return replot(&a, p);
    }
    if !topology::netns::is_root() {
        println!("esprit-bench gateway: skipped: building the lab needs root");
        return Ok(());
    }
    let cores = core_affinity::get_core_ids()
        .unwrap_or_default()
        .len()
        .max(1);
    let mut o = if a.quick {
        gw::Options::quick(cores)
    } else {
        gw::Options::full(cores)
    };
    if let Some(s) = &a.systems {
        o.systems = s
            .iter()
            .map(|x| System::parse_many(x))
            .collect::<Result<Vec<_>, _>>()?
            .concat();
    }
    if let Some(s) = a.sizes {
        o.sizes = s;
    }
    o.rounds = a.rounds.unwrap_or(o.rounds).max(1);
    if let Some(ms) = a.trial_ms {
        o.trial = Duration::from_millis(ms.max(10));
    }
    o.steps = a.search_steps.unwrap_or(o.steps);
    o.gen_core = a.gen_core.unwrap_or(o.gen_core);
    o.dut_core = a.dut_core.unwrap_or(o.dut_core);
    if let Some(l) = a.lab {
        o.lab = l;
    }
    o.keep_lab = a.keep_lab;
    o.verbose = a.verbose;
    o.placement = match a.napi {
        NapiArg::Split => gw::placement::Placement::Split,
        NapiArg::Nic => gw::placement::Placement::Nic,
        NapiArg::Inline => gw::placement::Placement::Inline,
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let (date, cpu, load_start) = (now_utc(), cpu_model(), load_average());
    println!("esprit-bench gateway");
    println!("  date:    {date}");
    println!(
        "  cpu:     {cpu}, {cores} cores; generator/sink on core {}, gateway on core {}",
        o.gen_core, o.dut_core
    );
    println!("  rustc:   {}", env!("ESPRIT_RUSTC_VERSION"));
    println!("  load:    {load_start} (1, 5, 15 min) at start");
    println!("  command: {command}");
    println!(
        "  method:  gwA of a veth lab is the device under test; AF_XDP generator and sink (copy \
         mode) on hA/eth0 and gwB/wan0, the bench speaking ESP on gwB's side; sizes are \
         plaintext IPv4/UDP packets; per (system, direction, size, round): an overload trial \
         and up to {} trials of {} ms searching the highest rate with <= 0.5% loss; {} round(s), \
         systems in reverse order every other round; ratios per round",
        o.steps,
        o.trial.as_millis(),
        o.rounds
    );
    println!();
    let mut say = |m: &str| println!("{m}");
    let out = gw::run(&o, &mut say)?;
    let load_end = load_average();
    println!();
    println!("Mpps and Gbit/s of plaintext; maxrx = receive rate under overload; <=0.5% = highest");
    println!(
        "offered rate with at most 0.5% loss (median and min-max over rounds); latency in us at"
    );
    println!(
        "that rate; x no-crypto = esprit / esprit no-crypto LAN>WAN of the same size, per round."
    );
    println!("{}", gwr::header());
    for r in &out.rows {
        println!("{}", gwr::line(r));
    }
    let limited: Vec<String> = out
        .rows
        .iter()
        .filter(|r| r.rounds_generator_limited > 0)
        .map(|r| {
            format!(
                "{} {} {} ({} of {} rounds)",
                r.label,
                r.dir,
                match &r.size {
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                },
                r.rounds_generator_limited,
                r.rounds
            )
        })
        .collect();
    if !limited.is_empty() {
        println!(
            "generator-limited (no loss at the highest rate the generator offered; the <=0.5% \
             figure is a lower bound): {}",
            limited.join(", ")
        );
    }
    for s in &out.skipped {
        println!("skipped {}: {}", s.system, s.reason);
    }
    println!();
    for r in out.rows.iter().filter(|r| r.system == System::Esprit.key()) {
        let dir = if r.dir == Dir::Encrypt.key() {
            Dir::Encrypt
        } else {
            Dir::Decrypt
        };
        let f = |x: &Option<gwr::Spread>| {
            x.map(|x| format!("{:.2} ({:.2}-{:.2})", x.median, x.min, x.max))
                .unwrap_or_else(|| "n/a".into())
        };
        println!(
            "goals, esprit {} {:>4}: {} x no-crypto (goal >= 0.8 at 1420 B), {} x strongSwan (goal >= 10)",
            dir.label(),
            match &r.size {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            },
            f(&r.vs_nocrypto),
            f(&r.vs_strongswan)
        );
    }
    for line in gwr::cost_goals(&out.rows) {
        println!("{line}");
    }
    println!("load: {load_end} (1, 5, 15 min) at end");
    if let Some(p) = &a.json {
        let doc = serde_json::json!({
            "date": date,
            "cpu": cpu,
            "cores": cores,
            "gen_core": o.gen_core,
            "dut_core": o.dut_core,
            "rustc": env!("ESPRIT_RUSTC_VERSION"),
            "command": command,
            "load_start": load_start,
            "load_end": load_end,
            "trial_ms": o.trial.as_millis() as u64,
            "rounds": o.rounds,
            "search_steps": o.steps,
            "rows": out.rows,
            "measurements": out.measurements,
            "skipped": out.skipped,
            "notes": out.notes,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        write_file(p, "--json", &text)?;
    }
    if let Some(p) = &a.markdown {
        write_file(p, "--markdown", &gwr::markdown(&out.rows))?;
    }
    if let Some(p) = &a.svg {
        let sizes: Vec<String> = o.sizes.iter().map(|s| s.label()).collect();
        let svg = gw::svg::plot(
            &out.rows,
            &sizes,
            "esprit-bench gateway: throughput at <= 0.5% loss",
            &format!(
                "{date}, {cpu}, {cores} cores, gwA under test, {} round(s) x {} ms trials",
                o.rounds,
                o.trial.as_millis()
            ),
        );
        write_file(p, "--svg", &svg)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let (name, r) = match Args::parse().cmd {
        Cmd::Esp(a) => ("esp", run(a)),
        Cmd::Gateway(a) => ("gateway", run_gateway(a)),
        Cmd::Ike(a) => ("ike", bench::ike::run(a)),
        Cmd::Offload(a) => ("offload", bench::offload::run(a)),
        Cmd::Pipeline(a) => ("pipeline", bench::pipeline::run(a)),
        Cmd::IkeCost(a) => ("ike-cost", bench::ike_cost::run(a)),
        Cmd::Metrics(a) => ("metrics", bench::metrics::run(a)),
        Cmd::Routes(a) => ("routes", bench::routes::run(a)),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esprit-bench {name}: {e}");
            ExitCode::FAILURE
        }
    }
}
