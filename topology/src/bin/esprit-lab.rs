//! `esprit-lab`: two sites in network namespaces, and the demo that runs esprit across them.
//!
//! `up` builds a lab (or leaves it alone if it is already as asked, or rebuilds it if it is
//! not), `down` removes it, `status` shows what exists, `exec` runs a command in a node.

use clap::{Parser, Subcommand};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitCode;
use topology::demo::{run as demo, DemoOptions};
use topology::routingd::RoutingDaemon;
use topology::{Lab, LabInfo, LabSpec, Node};

/// Build, use and remove esprit labs; run the demo.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct LabArgs {
    /// Lab name: prefix of its namespaces (`<name>-gwA`…).
    #[arg(long, default_value = "esprit")]
    name: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the lab hA — gwA ==== gwB — hB (IPv4 and IPv6) and print it; a lab already as
    /// asked is left alone, one that differs (half-built, other options) is rebuilt.
    Up {
        #[command(flatten)]
        lab: LabArgs,
        /// RX and TX queues on every veth (one AF_XDP worker per queue).
        #[arg(long, default_value_t = 1)]
        queues: u32,
        /// Put a masquerading NAT (nftables) between the gateways: gwA's WAN becomes private.
        #[arg(long)]
        nat: bool,
        /// Route the sites to each other in the kernel (plain forwarding, no tunnel).
        #[arg(long)]
        routed: bool,
        /// MTU of every veth (default: the veth default, 1500).
        #[arg(long)]
        mtu: Option<u32>,
        /// Print the lab as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the lab (nothing to do if it is absent).
    Down {
        #[command(flatten)]
        lab: LabArgs,
    },
    /// Show which parts of the lab exist: namespaces, interfaces, addresses, MACs, routes.
    Status {
        #[command(flatten)]
        lab: LabArgs,
        /// Print the lab as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a node (hA, gwA, nat, gwB or hB; the scale-out lab also rA, gwA1, gwA2,
    /// inet); exits with the command's code.
    Exec {
        #[command(flatten)]
        lab: LabArgs,
        /// The node.
        node: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Two sites, two esprit gateways, ping and a TCP transfer checked by SHA-256, the per-SA
    /// counters and a throughput figure; the lab is removed afterwards.
    Demo {
        /// Megabytes to send over TCP.
        #[arg(long, default_value_t = 100)]
        mb: usize,
        /// Workers per gateway (queues per veth).
        #[arg(long, default_value_t = 1)]
        workers: u32,
        /// Write {ping_loss_pct, tcp_bytes, tcp_sha256_ok, gbps, …} here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Leave the lab and both gateways running afterwards (try espctl and the metrics;
        /// `esprit-lab down --name NAME` stops them).
        #[arg(long)]
        keep: bool,
        /// Lab name.
        #[arg(long, default_value = "esprit-demo")]
        name: String,
        /// Key the tunnel with random manual SAs instead of IKEv2.
        #[arg(long)]
        manual_keys: bool,
    },
    /// One esprit gateway (gwB) against N simulated sites (gwA): every IKE SA and child up,
    /// setup time and memory per tunnel, every child rekeyed on schedule, pings through a few
    /// tunnels; the lab is removed afterwards.
    Many {
        /// Tunnels (sites).
        #[arg(long, default_value_t = 1000)]
        tunnels: usize,
        /// Initiations in flight at most.
        #[arg(long, default_value_t = 100)]
        window: usize,
        /// The children's rekey_time on the sites' side, seconds.
        #[arg(long, default_value_t = 30)]
        rekey_secs: u64,
        /// Sites that ping hB through their tunnel.
        #[arg(long, default_value_t = 4)]
        probes: usize,
        /// gwB's dataplane worker spins (`poll = "busy"`) instead of sleeping when idle
        /// (`"adaptive"`, its default).
        #[arg(long)]
        busy_poll: bool,
        /// Write the figures here as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Lab name.
        #[arg(long, default_value = "esprit-many")]
        name: String,
    },
    /// Two sites joined by two route-based tunnels over two WAN paths, eBGP with BFD over each
    /// (BIRD or FRR), ECMP across them: the routes learned, a TCP transfer checked by SHA-256,
    /// the failover when WAN path 1 is cut, clear text on the WAN counted; the lab is removed
    /// afterwards.
    Bgp {
        /// Write {prefixes_learned_a, prefixes_learned_b, tcp_sha256_ok, failover_ms, …} here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The routing daemon: bird (BIRD 2) or frr (zebra, bgpd, bfdd).
        #[arg(long, default_value = "bird")]
        daemon: RoutingDaemon,
        /// Extra /24s each site announces besides its own prefix.
        #[arg(long, default_value_t = 300)]
        prefixes: usize,
        /// Leave the lab and every daemon running afterwards (`esprit-lab down --name NAME`
        /// stops them).
        #[arg(long)]
        keep: bool,
        /// Lab name.
        #[arg(long, default_value = "esprit-bgp")]
        name: String,
    },
    /// Print the configurations `bgp` gives a gateway (gwA or gwB): esprit-dataplane's tunnels,
    /// esprit-ike's, and the routing daemon's.
    BgpConfig {
        /// The gateway: gwA or gwB.
        node: String,
        /// The routing daemon: bird or frr.
        #[arg(long, default_value = "bird")]
        daemon: RoutingDaemon,
        /// Extra /24s announced.
        #[arg(long, default_value_t = 3)]
        prefixes: usize,
    },
    /// Two esprit gateways at site A (gwA1, gwA2) behind a site router (rA), each with its own
    /// WAN path and tunnel to gwB, all speaking eBGP with BFD: rA spreads flows over both
    /// (ECMP), one gateway's esprit is SIGKILLed mid-stream and started again, and the packets
    /// lost, the failover time and clear text on the WANs are measured; the lab is removed
    /// afterwards.
    Scaleout {
        /// Write {daemon, gateways, flows_per_gateway, kill_lost_packets, kill_failover_ms, …}
        /// here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The routing daemon: bird (BIRD 2) or frr (zebra, bgpd, bfdd).
        #[arg(long, default_value = "bird")]
        daemon: RoutingDaemon,
        /// Extra /24s each site announces besides its own prefix.
        #[arg(long, default_value_t = 50)]
        prefixes: usize,
        /// Leave the lab and every daemon running afterwards (`esprit-lab down --name NAME`
        /// stops them).
        #[arg(long)]
        keep: bool,
        /// Lab name.
        #[arg(long, default_value = "esprit-scaleout")]
        name: String,
    },
    /// Print the configurations `scaleout` gives a node: the routing daemon's for rA, gwA1,
    /// gwA2 and gwB, and esprit-dataplane's tunnels and esprit-ike's for the gateways.
    ScaleoutConfig {
        /// The node: rA, gwA1, gwA2 or gwB.
        node: String,
        /// The routing daemon: bird or frr.
        #[arg(long, default_value = "bird")]
        daemon: RoutingDaemon,
        /// Extra /24s announced.
        #[arg(long, default_value_t = 0)]
        prefixes: usize,
    },
    /// The site simulator of `many`, which runs it in gwA's namespace (options as JSON).
    #[command(hide = true)]
    ManySim {
        /// topology::many::SimOptions as JSON.
        options: String,
    },
    /// esprit-ike as a process of its own, which the lab's restart tests kill (SIGKILL).
    #[command(hide = true)]
    Ike {
        /// esprit-ike's configuration.
        config: PathBuf,
    },
    /// esprit-dataplane as a process of its own, which the lab's restart tests kill.
    #[command(hide = true)]
    Dataplane {
        /// esprit-dataplane's configuration.
        config: PathBuf,
    },
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("esprit-lab: {e}");
    ExitCode::from(1)
}

fn print_info(info: &LabInfo, json: bool, header: Option<&str>) -> ExitCode {
    let text = if json {
        match serde_json::to_string_pretty(info) {
            Ok(s) => s + "\n",
            Err(e) => return fail(format!("lab {}: JSON: {e}", info.name)),
        }
    } else {
        let h = header.map(|h| format!("{h}\n")).unwrap_or_default();
        if info.nodes.iter().any(|n| n.exists) {
            format!("{h}{info}")
        } else {
            h
        }
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// Installs the logger: a daemon's own (`ike`, `dataplane`: its name, its configuration's level
/// and format), esprit-lab's otherwise (the demo's in-process daemons log through it).
fn init_logging(cmd: &Cmd) {
    use esprit_log::{Format, LevelFilter, Settings};
    let settings = match cmd {
        Cmd::Ike { config } => {
            let (level, format) = control::config::Config::load(config)
                .map(|c| (c.daemon.log_level.into(), c.daemon.log_format))
                .unwrap_or((LevelFilter::INFO, Format::Text));
            Settings::new("esprit-ike", level, format)
        }
        Cmd::Dataplane { config } => {
            let (level, format) = dataplane::daemon::config::DataplaneConfig::load(config)
                .map(|c| (c.log_level, c.log_format))
                .unwrap_or((LevelFilter::INFO, Format::Text));
            Settings::new("esprit-dataplane", level, format)
        }
        _ => Settings::new("esprit-lab", LevelFilter::INFO, Format::Text),
    };
    let _ = esprit_log::init(&settings);
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.cmd);
    match args.cmd {
        Cmd::Up {
            lab,
            queues,
            nat,
            routed,
            mtu,
            json,
        } => {
            let spec = LabSpec {
                name: lab.name,
                queues,
                nat,
                routed,
                mtu,
            };
            let (l, outcome) = match Lab::up_report(&spec) {
                Ok(x) => x,
                Err(e) => return fail(format!("up: {e}")),
            };
            match l.describe() {
                Ok(info) => print_info(
                    &info,
                    json,
                    Some(&format!("lab {} is up ({outcome})", spec.name)),
                ),
                Err(e) => fail(format!("lab {} is up ({outcome}), but: {e}", spec.name)),
            }
        }
        Cmd::Down { lab } => {
            let spec = LabSpec {
                name: lab.name,
                ..Default::default()
            };
            if let Err(e) = spec.validate() {
                return fail(e);
            }
            match Lab::new(spec).down() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("down: {e}")),
            }
        }
        Cmd::Status { lab, json } => {
            let l = match Lab::find(&lab.name) {
                Ok(l) => l,
                Err(e) => return fail(format!("status: {e}")),
            };
            let existing = match l.status() {
                Ok(s) => s.iter().filter(|(_, up)| *up).count(),
                Err(e) => return fail(format!("status: {e}")),
            };
            let header = if existing == 0 {
                format!("lab {} is down (no namespace exists)", lab.name)
            } else {
                match l.check() {
                    Ok(d) if d.is_empty() => format!("lab {} is up", lab.name),
                    Ok(d) => format!(
                        "lab {} is incomplete or altered ({}); `esprit-lab up` rebuilds it",
                        lab.name,
                        d.join("; ")
                    ),
                    Err(e) => return fail(format!("status: {e}")),
                }
            };
            match l.describe() {
                Ok(info) => print_info(&info, json, Some(&header)),
                Err(e) => fail(format!("status: {e}")),
            }
        }
        Cmd::Exec { lab, node, cmd } => {
            let Some(n) = Node::parse(&node) else {
                eprintln!("esprit-lab: unknown node {node:?}: expected hA, gwA, nat, gwB or hB (scaleout: rA, gwA1, gwA2, inet)");
                return ExitCode::from(2);
            };
            let l = Lab::new(LabSpec {
                name: lab.name,
                ..Default::default()
            });
            if let Err(e) = l.spec.validate() {
                return fail(e);
            }
            let mut child = match l.spawn(n, &cmd) {
                Ok(c) => c,
                Err(e) => return fail(format!("exec: {e}")),
            };
            match child.wait() {
                // The command's own exit code; a signal is reported as a shell would (128 + n).
                Ok(s) => match (s.code(), s.signal()) {
                    (Some(c), _) => ExitCode::from(c as u8),
                    (None, Some(sig)) => ExitCode::from(128u8.wrapping_add(sig as u8)),
                    _ => ExitCode::from(1),
                },
                Err(e) => fail(format!("exec: waiting for {cmd:?}: {e}")),
            }
        }
        Cmd::Demo {
            mb,
            workers,
            json,
            keep,
            name,
            manual_keys,
        } => {
            let o = DemoOptions {
                name,
                bytes: mb << 20,
                workers,
                keep,
                manual_keys,
                exe: None,
            };
            match demo(&o, |m| println!("{m}")) {
                Ok(r) => {
                    println!();
                    println!("keying: {}", r.keying);
                    println!("gwA:");
                    print!("{}", r.gw_a.render());
                    println!("gwB:");
                    print!("{}", r.gw_b.render());
                    println!();
                    println!(
                        "result: ping loss {}% (IPv6 {}%), TCP {} bytes, SHA-256 {}, {:.2} Gbit/s through the tunnel",
                        r.ping_loss_pct,
                        r.ping6_loss_pct,
                        r.tcp_bytes,
                        if r.tcp_sha256_ok { "ok" } else { "MISMATCH" },
                        r.gbps
                    );
                    if !r.kept.is_empty() {
                        println!();
                        println!(
                            "left running (stop with `esprit-lab down --name {}`):",
                            o.name
                        );
                        for k in &r.kept {
                            let tool = if k.daemon == "esprit-ike" {
                                format!("espctl --ike-socket {} ike list", k.socket.display())
                            } else {
                                format!("espctl --socket {} sa list", k.socket.display())
                            };
                            println!(
                                "  {} {} (pid {}): esprit-lab exec --name {} {} -- {tool}",
                                k.node, k.daemon, k.pid, o.name, k.node
                            );
                        }
                        for (node, urls) in
                            [("gwA", &r.metrics_urls.gw_a), ("gwB", &r.metrics_urls.gw_b)]
                        {
                            for u in urls {
                                println!(
                                    "  metrics: esprit-lab exec --name {} {node} -- curl -s {u}",
                                    o.name
                                );
                            }
                        }
                    }
                    if let Some(p) = json {
                        let v = serde_json::to_string_pretty(&r).expect("report serialises");
                        if let Err(e) = std::fs::write(&p, v) {
                            eprintln!("esprit-lab: {}: {e}", p.display());
                            return ExitCode::from(1);
                        }
                    }
                    if r.tcp_sha256_ok && r.ping_loss_pct < 100.0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("esprit-lab demo: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Many {
            tunnels,
            window,
            rekey_secs,
            probes,
            busy_poll,
            json,
            name,
        } => many_cmd(tunnels, window, rekey_secs, probes, busy_poll, json, name),
        Cmd::Bgp {
            json,
            daemon,
            prefixes,
            keep,
            name,
        } => bgp_cmd(json, daemon, prefixes, keep, name),
        Cmd::BgpConfig {
            node,
            daemon,
            prefixes,
        } => {
            use topology::bgp::{dataplane_tunnels, ike_toml, peering};
            use topology::routingd::{bird_conf, frr_conf};
            let n = match Node::parse(&node) {
                Some(n @ (Node::GwA | Node::GwB)) => n,
                _ => return fail(format!("bgp-config: {node:?}: expected gwA or gwB")),
            };
            let run = std::path::Path::new("/run/esprit");
            let p = peering(n, prefixes);
            let log = run.join(format!("{daemon}.log"));
            println!(
                "# esprit-dataplane (besides [lan], [wan], [workers])\n{}",
                dataplane_tunnels(n)
            );
            println!(
                "# esprit-ike\n{}",
                ike_toml(n, &run.join("dataplane.sock"), &run.join("ike.sock"))
            );
            match daemon {
                RoutingDaemon::Bird => println!("# bird.conf\n{}", bird_conf(&p, &log)),
                RoutingDaemon::Frr => println!("! frr.conf\n{}", frr_conf(&p, &log)),
            }
            ExitCode::SUCCESS
        }
        Cmd::Scaleout {
            json,
            daemon,
            prefixes,
            keep,
            name,
        } => scaleout_cmd(json, daemon, prefixes, keep, name),
        Cmd::ScaleoutConfig {
            node,
            daemon,
            prefixes,
        } => scaleout_config(&node, daemon, prefixes),
        Cmd::ManySim { options } => match serde_json::from_str(&options) {
            Ok(o) => match topology::many::simulate(&o) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("many-sim: {e}")),
            },
            Err(e) => fail(format!("many-sim: options: {e}")),
        },
        Cmd::Ike { config } => {
            match control::daemon::run::Daemon::new(&config)
                .and_then(control::daemon::run::Daemon::run)
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("esprit-ike: {e}")),
            }
        }
        Cmd::Dataplane { config } => {
            let cfg = match dataplane::daemon::config::DataplaneConfig::load(&config) {
                Ok(c) => c,
                Err(e) => return fail(format!("esprit-dataplane: {e}")),
            };
            // Runs until killed: the restart tests end it with a signal.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let ready =
                |m: &str| tracing::info!("{}", m.strip_prefix("esprit-dataplane: ").unwrap_or(m));
            match dataplane::daemon::run::run(&cfg, stop, ready) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(format!("esprit-dataplane: {e}")),
            }
        }
    }
}

fn many_cmd(
    tunnels: usize,
    window: usize,
    rekey_secs: u64,
    probes: usize,
    busy_poll: bool,
    json: Option<PathBuf>,
    name: String,
) -> ExitCode {
    let simulator = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(format!("many: own executable: {e}")),
    };
    let o = topology::many::ManyOptions {
        name,
        tunnels,
        window,
        rekey: std::time::Duration::from_secs(rekey_secs),
        probes,
        simulator,
        busy_poll,
        setup_timeout: topology::many::setup_timeout_for(tunnels),
    };
    let r = match topology::many::run(&o, |m| println!("{m}")) {
        Ok(r) => r,
        Err(e) => return fail(format!("many: {e}")),
    };
    println!();
    println!("{}", r.render());
    if let Some(p) = json {
        let v = serde_json::to_string_pretty(&r).expect("report serialises");
        if let Err(e) = std::fs::write(&p, v) {
            return fail(format!("{}: {e}", p.display()));
        }
    }
    let problems = r.problems();
    for p in &problems {
        eprintln!("esprit-lab many: {p}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn bgp_cmd(
    json: Option<PathBuf>,
    daemon: RoutingDaemon,
    prefixes: usize,
    keep: bool,
    name: String,
) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(format!("bgp: own executable: {e}")),
    };
    let o = topology::bgp::BgpOptions {
        name: name.clone(),
        daemon,
        extra_prefixes: prefixes,
        keep,
        exe,
        ..Default::default()
    };
    let r = match topology::bgp::run(&o, |m| println!("{m}")) {
        Ok(r) => r,
        Err(e) => return fail(format!("bgp: {e}")),
    };
    println!();
    println!(
        "result: {} learned {} / {} prefixes (gwA / gwB, {} announced per site), TCP SHA-256 {}, \
         failover {:.0} ms with {} datagram(s) lost, {} after the restore, clear text on the WAN: {}",
        r.daemon,
        r.prefixes_learned_a,
        r.prefixes_learned_b,
        r.prefixes_announced,
        if r.tcp_sha256_ok { "ok" } else { "MISMATCH" },
        r.failover_ms,
        r.failover_lost_packets,
        r.after_restore.lost,
        r.cleartext_packets
    );
    if !r.kept.is_empty() {
        println!("left running (stop with `esprit-lab down --name {name}`):");
        for (node, what, pid) in &r.kept {
            println!("  {node} {what} (pid {pid})");
        }
    }
    if let Some(p) = json {
        let v = serde_json::to_string_pretty(&r).expect("report serialises");
        if let Err(e) = std::fs::write(&p, v) {
            return fail(format!("{}: {e}", p.display()));
        }
    }
    let ok = r.tcp_sha256_ok
        && r.cleartext_packets == 0
        && r.prefixes_learned_a >= r.prefixes_announced
        && r.prefixes_learned_b >= r.prefixes_announced
        && r.failover.recovered
        && r.ecmp_restored;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn scaleout_config(node: &str, daemon: RoutingDaemon, prefixes: usize) -> ExitCode {
    use topology::routingd::{bird_conf, frr_conf};
    use topology::scaleout::{dataplane_tunnels, ike_toml, peering};
    let n = match Node::parse(node) {
        Some(n @ (Node::RouterA | Node::GwA1 | Node::GwA2 | Node::GwB)) => n,
        _ => {
            return fail(format!(
                "scaleout-config: {node:?}: expected rA, gwA1, gwA2 or gwB"
            ))
        }
    };
    let run = std::path::Path::new("/run/esprit");
    let p = match peering(n, prefixes) {
        Ok(p) => p,
        Err(e) => return fail(format!("scaleout-config: {e}")),
    };
    if n != Node::RouterA {
        let (tunnels, ike) = match (
            dataplane_tunnels(n),
            ike_toml(n, &run.join("dataplane.sock"), &run.join("ike.sock")),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => return fail(format!("scaleout-config: {e}")),
        };
        println!("# esprit-dataplane (besides [lan], [wan], [workers])\n{tunnels}");
        println!("# esprit-ike\n{ike}");
    }
    let log = run.join(format!("{daemon}.log"));
    match daemon {
        RoutingDaemon::Bird => println!("# bird.conf\n{}", bird_conf(&p, &log)),
        RoutingDaemon::Frr => println!("! frr.conf\n{}", frr_conf(&p, &log)),
    }
    ExitCode::SUCCESS
}

fn scaleout_cmd(
    json: Option<PathBuf>,
    daemon: RoutingDaemon,
    prefixes: usize,
    keep: bool,
    name: String,
) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(format!("scaleout: own executable: {e}")),
    };
    let o = topology::scaleout::ScaleoutOptions {
        name: name.clone(),
        daemon,
        extra_prefixes: prefixes,
        keep,
        exe,
        ..Default::default()
    };
    let r = match topology::scaleout::run(&o, |m| println!("{m}")) {
        Ok(r) => r,
        Err(e) => return fail(format!("scaleout: {e}")),
    };
    println!();
    println!(
        "result: {}, {} gateways, flows per gateway {:?} (after the rejoin {:?}); kill: {} datagram(s) \
         lost, {:.0} ms; rejoin: {} lost; {} prefixes learned; clear text on the WANs: {}",
        r.daemon,
        r.gateways,
        r.flows_per_gateway,
        r.flows_per_gateway_after_rejoin,
        r.kill_lost_packets,
        r.kill_failover_ms,
        r.rejoin_lost_packets,
        r.prefixes_learned,
        r.cleartext_packets
    );
    if !r.kept.is_empty() {
        println!("left running (stop with `esprit-lab down --name {name}`):");
        for (node, what, pid) in &r.kept {
            println!("  {node} {what} (pid {pid})");
        }
    }
    if let Some(p) = json {
        let v = serde_json::to_string_pretty(&r).expect("report serialises");
        if let Err(e) = std::fs::write(&p, v) {
            return fail(format!("{}: {e}", p.display()));
        }
    }
    let ok = r.cleartext_packets == 0
        && r.kill_forward.recovered
        && r.kill_reverse.recovered
        && r.survivor_forward.lost + r.survivor_reverse.lost == 0
        && r.flows_per_gateway.iter().all(|&n| n > 0)
        && r.flows_per_gateway_after_rejoin.iter().all(|&n| n > 0);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
