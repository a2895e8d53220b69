//! `esprit-lab`: two sites in network namespaces, and the demo that runs esprit across them.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use topology::demo::{run as demo, DemoOptions};
use topology::{Lab, LabSpec, Node};

/// Build, use and remove esprit labs; run the demo.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct LabArgs {
    /// Lab name: prefix of its namespaces.
    #[arg(long, default_value = "esprit")]
    name: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the lab (rebuilding it if it exists): hA — gwA ==== gwB — hB.
    Up {
        #[command(flatten)]
        lab: LabArgs,
        /// Queues on every veth (one AF_XDP worker per queue).
        #[arg(long, default_value_t = 1)]
        queues: u32,
        /// Put a masquerading NAT between the gateways.
        #[arg(long)]
        nat: bool,
    },
    /// Remove the lab (nothing to do if it is absent).
    Down {
        #[command(flatten)]
        lab: LabArgs,
    },
    /// Show which namespaces of the lab exist.
    Status {
        #[command(flatten)]
        lab: LabArgs,
    },
    /// Run a command in a node: hA, gwA, nat, gwB or hB.
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
        /// Leave the lab up afterwards.
        #[arg(long)]
        keep: bool,
        /// Lab name.
        #[arg(long, default_value = "esprit-demo")]
        name: String,
    },
}

fn main() -> ExitCode {
    match Args::parse().cmd {
        Cmd::Up { lab, queues, nat } => {
            let spec = LabSpec {
                name: lab.name,
                queues,
                nat,
            };
            match Lab::up(&spec) {
                Ok(l) => {
                    println!("lab {} is up:", spec.name);
                    for n in l.nodes() {
                        println!("  {:<4} namespace {}", n.name(), l.ns(n));
                    }
                    println!(
                        "  site A 10.201.1.0/24 fd00:201:1::/64 (hA .2, gwA lan0 .1)  WAN gwA {} gwB {}  site B 10.201.2.0/24 fd00:201:2::/64 (gwB lan0 .1, hB .2)",
                        l.gw_a_wan(),
                        l.gw_b_wan()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("esprit-lab: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Down { lab } => {
            let l = Lab {
                spec: LabSpec {
                    name: lab.name,
                    ..Default::default()
                },
            };
            match l.down() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("esprit-lab: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Status { lab } => {
            let l = Lab {
                spec: LabSpec {
                    name: lab.name,
                    ..Default::default()
                },
            };
            match l.status() {
                Ok(s) => {
                    for (n, up) in s {
                        println!(
                            "{:<4} {:<24} {}",
                            n.name(),
                            l.ns(n),
                            if up { "up" } else { "absent" }
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("esprit-lab: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Exec { lab, node, cmd } => {
            let Some(n) = Node::parse(&node) else {
                eprintln!("esprit-lab: unknown node {node:?}: expected hA, gwA, nat, gwB or hB");
                return ExitCode::from(2);
            };
            let l = Lab {
                spec: LabSpec {
                    name: lab.name,
                    ..Default::default()
                },
            };
            let status = std::process::Command::new("ip")
                .args(["netns", "exec", &l.ns(n)])
                .args(&cmd)
                .status();
            match status {
                Ok(s) => ExitCode::from(s.code().unwrap_or(1) as u8),
                Err(e) => {
                    eprintln!("esprit-lab: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Demo {
            mb,
            workers,
            json,
            keep,
            name,
        } => {
            let o = DemoOptions {
                name,
                bytes: mb << 20,
                workers,
                keep,
            };
            match demo(&o, |m| println!("{m}")) {
                Ok(r) => {
                    println!();
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
    }
}
