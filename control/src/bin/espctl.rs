//! `espctl`: the operator's command line for esprit.

use clap::{Parser, Subcommand};
use control::daemon::control::ControlRequest;
use control::daemon::render;
use control::daemon::wait::{self, Goal};
use esprit_api::DEFAULT_SOCKET;
use esprit_api::{Client, Direction, Request, SaInfo, SaSpec, Snapshot, Spi};
use std::path::PathBuf;
use std::process::ExitCode;

/// Inspect and drive the esprit dataplane.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The directory holding both daemons' sockets (`dataplane.sock`, `ike.sock`); the
    /// default is where the daemons put them, /run/esprit.
    #[arg(long, global = true, env = "ESPRIT_RUN_DIR", value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// The dataplane's API socket [default: RUN_DIR/dataplane.sock, /run/esprit/dataplane.sock].
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// esprit-ike's control socket [default: RUN_DIR/ike.sock, /run/esprit/ike.sock].
    #[arg(long, global = true)]
    ike_socket: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Security associations.
    Sa {
        #[command(subcommand)]
        cmd: SaCmd,
    },
    /// Routes: route-based tunnels, bypass and drop.
    Route {
        #[command(subcommand)]
        cmd: RouteCmd,
    },
    /// Trap policies: traffic to protect before its SA exists (raises acquire events).
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Counters of the whole dataplane.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Follow expiry and exhaustion events (one JSON object per line) until interrupted.
    Events,
    /// IKE SAs of esprit-ike.
    Ike {
        #[command(subcommand)]
        cmd: IkeCmd,
    },
    /// Bring a connection up (esprit-ike).
    Initiate {
        /// Connection name.
        conn: String,
        /// Child to negotiate (default: the connection's first).
        #[arg(long)]
        child: Option<String>,
        /// Wait until the IKE SA and the child are up (exit 1 if the exchange fails or the
        /// time runs out); TIMEOUT like "30s" or "2m", 30s if omitted.
        #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "30s")]
        wait: Option<String>,
    },
    /// Delete a connection's IKE SAs and children, telling the peer (esprit-ike).
    Terminate {
        /// Connection name.
        conn: String,
        /// Wait until no IKE SA of the connection is left (exit 1 on timeout).
        #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "30s")]
        wait: Option<String>,
    },
    /// Make esprit-ike re-read its configuration file.
    Reload,
    /// Follow esprit-ike's events as they happen (IKE and child SAs up, down, rekeyed,
    /// failed) until interrupted.
    Monitor {
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rekey a connection's child SAs now (make-before-break), or its IKE SA with --ike.
    Rekey {
        /// Connection name.
        conn: String,
        /// Rekey the IKE SA instead.
        #[arg(long, conflicts_with = "child")]
        ike: bool,
        /// Rekey only the children of this name.
        #[arg(long)]
        child: Option<String>,
        /// Wait until every rekeyed SA is replaced (exit 1 if the exchange fails or the time
        /// runs out).
        #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "30s")]
        wait: Option<String>,
    },
    /// Check what the gateway needs (XDP and AF_XDP modes, queues, pinning, NUMA, IRQs,
    /// offloads): OK, WARN or FAIL with what to fix; exit 1 on any FAIL.
    Doctor {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// The `--wait` timeout, if asked for.
fn wait_for(arg: &Option<String>) -> Result<Option<std::time::Duration>, String> {
    arg.as_deref()
        .map(|t| control::config::parse_duration(t).map_err(|e| format!("--wait: {e}")))
        .transpose()
}

#[derive(Subcommand)]
enum IkeCmd {
    /// IKE SAs with their children, algorithms, SPIs and ages.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The configured connections: addresses, proposals, authentication, children, actions.
    ListConns {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The certificates esprit-ike loaded: own, intermediates and CAs, with their validity.
    ListCerts {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The algorithms esprit-ike implements and the proposal keywords for each.
    ListAlgs {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// esprit-ike's counters.
    Stats,
}

#[derive(Subcommand)]
enum RouteCmd {
    /// List routes.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add or replace a route.
    Add {
        /// Destination prefix, e.g. 10.201.2.0/24.
        prefix: String,
        /// Send it through the tunnel to this peer (its outbound SA).
        #[arg(long, conflicts_with_all = ["bypass", "drop"])]
        tunnel: Option<std::net::IpAddr>,
        /// Forward it in the clear out of the WAN.
        #[arg(long, conflicts_with = "drop")]
        bypass: bool,
        /// Drop it.
        #[arg(long)]
        drop: bool,
    },
    /// Remove a route.
    Delete {
        /// Destination prefix.
        prefix: String,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// List trap policies.
    List,
    /// Add or replace a trap policy.
    Add {
        /// Identifier, echoed in acquire events.
        id: u32,
        /// Source prefixes (this side), comma-separated.
        #[arg(long, value_delimiter = ',')]
        local_ts: Vec<String>,
        /// Destination prefixes (the peer's side), comma-separated.
        #[arg(long, value_delimiter = ',')]
        remote_ts: Vec<String>,
    },
    /// Remove a trap policy.
    Delete {
        /// Its identifier.
        id: u32,
    },
}

#[derive(Subcommand)]
enum SaCmd {
    /// List SAs with their counters.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Install every SA of an SA file (docs/sa-file.md).
    Add {
        /// The SA file.
        file: PathBuf,
        /// Replace SAs that exist already.
        #[arg(long)]
        replace: bool,
    },
    /// Remove SAs by SPI.
    Delete {
        /// SPI, as a number or 0x… hex.
        spi: String,
        /// "in" or "out".
        #[arg(long)]
        direction: String,
        /// Local address (in) or remote address (out), to narrow the match.
        #[arg(long)]
        address: Option<std::net::IpAddr>,
    },
}

fn table(sas: &[SaInfo]) -> String {
    let mut s = format!(
        "{:<12} {:<4} {:<10} {:<12} {:<34} {:>10} {:>14} {:>12}  drops\n",
        "spi", "dir", "mode", "suite", "endpoints", "packets", "bytes", "seq"
    );
    for sa in sas {
        let ends = if sa.direction == "in" {
            format!("{} -> {}", sa.remote, sa.local)
        } else {
            format!("{} -> {}", sa.local, sa.remote)
        };
        let d: Vec<String> = sa.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
        s.push_str(&format!(
            "{:<12} {:<4} {:<10} {:<12} {:<34} {:>10} {:>14} {:>12}  {}{}\n",
            sa.spi,
            sa.direction,
            sa.mode,
            sa.suite,
            ends,
            sa.packets,
            sa.bytes,
            sa.seq,
            if d.is_empty() {
                "-".into()
            } else {
                d.join(" ")
            },
            if sa.expired { " (expired)" } else { "" }
        ));
    }
    s
}

/// One request to esprit-ike's control socket.
fn ike_call(path: &std::path::Path, req: &ControlRequest) -> Result<serde_json::Value, String> {
    control::daemon::control::call(path, req)
}

/// `espctl ike list` as a human reads it.
fn ike_table(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let sas = v.as_array().cloned().unwrap_or_default();
    if sas.is_empty() {
        return "no IKE SAs\n".into();
    }
    let s = |x: &serde_json::Value, k: &str| {
        x.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_string()
    };
    let n = |x: &serde_json::Value, k: &str| x.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    // An optional algorithm (integrity of AES-CBC, PFS group) as `-name`, or nothing.
    let dash = |x: &serde_json::Value, k: &str| {
        x.get(k)
            .and_then(|v| v.as_str())
            .map(|p| format!("-{p}"))
            .unwrap_or_default()
    };
    for sa in &sas {
        let _ = writeln!(
            out,
            "{}: {} {}, {} {} -> {} {}, IKE[{}_{}] {}{}-{}-{}{}{}, {}s",
            s(sa, "conn"),
            s(sa, "state"),
            s(sa, "role"),
            s(sa, "local_id"),
            s(sa, "local"),
            s(sa, "remote_id"),
            s(sa, "remote"),
            s(sa, "spi_i"),
            s(sa, "spi_r"),
            s(sa, "encr"),
            dash(sa, "integ"),
            s(sa, "prf"),
            s(sa, "dh"),
            match sa.get("addke").and_then(|v| v.as_str()) {
                Some(a) if !a.is_empty() => format!("-{a}"),
                _ => String::new(),
            },
            if sa.get("encap").and_then(|v| v.as_bool()).unwrap_or(false) {
                ", NAT-T"
            } else {
                ""
            },
            n(sa, "age_s"),
        );
        if let Some(d) = sa.get("dropped").and_then(|d| d.as_object()) {
            let nonzero: Vec<String> = d
                .iter()
                .filter(|(k, v)| k.as_str() != "total" && v.as_u64().unwrap_or(0) > 0)
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            if !nonzero.is_empty() {
                let _ = writeln!(out, "  dropped: {}", nonzero.join(", "));
            }
        }
        for c in sa
            .get("children")
            .and_then(|c| c.as_array())
            .cloned()
            .unwrap_or_default()
        {
            let list = |k: &str| {
                c.get(k)
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default()
            };
            let _ = writeln!(
                out,
                "  {}: {} SPIs in {} out {}, {}{}{}{}, {} === {}, {}s",
                s(&c, "name"),
                s(&c, "mode"),
                s(&c, "inbound_spi"),
                s(&c, "outbound_spi"),
                s(&c, "encr"),
                dash(&c, "integ"),
                dash(&c, "pfs"),
                c.get("addke")
                    .and_then(|v| v.as_str())
                    .filter(|a| !a.is_empty())
                    .map(|a| format!("-{a}"))
                    .unwrap_or_default(),
                list("local_ts"),
                list("remote_ts"),
                n(&c, "age_s"),
            );
        }
    }
    out
}

/// Follows esprit-ike's events (`monitor`) until the daemon closes the stream.
fn monitor(path: &std::path::Path, json: bool) -> Result<(), String> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("esprit-ike control socket {}: {e}", path.display()))?;
    let mut req = serde_json::to_string(&ControlRequest::Monitor).map_err(|e| e.to_string())?;
    req.push('\n');
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut lines = std::io::BufReader::new(s).lines();
    let first = lines
        .next()
        .ok_or("esprit-ike closed the connection")?
        .map_err(|e| e.to_string())?;
    let answer: serde_json::Value = serde_json::from_str(&first).map_err(|e| e.to_string())?;
    if answer["ok"] != true {
        return Err(answer["error"].as_str().unwrap_or("refused").to_string());
    }
    eprintln!("espctl: following esprit-ike's events (interrupt to stop)");
    for line in lines {
        let line = line.map_err(|e| e.to_string())?;
        if json {
            println!("{line}");
        } else {
            match serde_json::from_str(&line) {
                Ok(v) => println!("{}", render::event(&v)),
                Err(_) => println!("{line}"),
            }
        }
        let _ = std::io::stdout().flush();
    }
    Err("esprit-ike closed the event stream".into())
}

fn run(mut args: Args) -> Result<(), String> {
    let run_dir = args.run_dir.clone();
    let in_run_dir = |name: &str, default: &str| -> PathBuf {
        run_dir
            .as_ref()
            .map_or_else(|| PathBuf::from(default), |d| d.join(name))
    };
    let ike_socket = args
        .ike_socket
        .take()
        .unwrap_or_else(|| in_run_dir("ike.sock", control::daemon::control::DEFAULT_SOCKET));
    let socket = args
        .socket
        .take()
        .unwrap_or_else(|| in_run_dir("dataplane.sock", DEFAULT_SOCKET));
    let ike = |req: ControlRequest| ike_call(&ike_socket, &req);
    let print = |v: &serde_json::Value, json: bool, text: fn(&serde_json::Value) -> String| {
        if json {
            serde_json::to_string_pretty(v)
                .map(|t| println!("{t}"))
                .map_err(|e| e.to_string())
        } else {
            print!("{}", text(v));
            Ok(())
        }
    };
    match &args.cmd {
        Cmd::Ike {
            cmd: IkeCmd::ListConns { json },
        } => return print(&ike(ControlRequest::ConnsList)?, *json, render::conns),
        Cmd::Ike {
            cmd: IkeCmd::ListCerts { json },
        } => return print(&ike(ControlRequest::CertsList)?, *json, render::certs),
        Cmd::Ike {
            cmd: IkeCmd::ListAlgs { json },
        } => return print(&ike(ControlRequest::AlgsList)?, *json, render::algs),
        Cmd::Monitor { json } => return monitor(&ike_socket, *json),
        Cmd::Ike {
            cmd: IkeCmd::List { json },
        } => {
            let v = ike(ControlRequest::IkeList)?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", ike_table(&v));
            }
            return Ok(());
        }
        Cmd::Ike { cmd: IkeCmd::Stats } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&ike(ControlRequest::Stats)?)
                    .map_err(|e| e.to_string())?
            );
            return Ok(());
        }
        Cmd::Initiate { conn, child, wait } => {
            let timeout = wait_for(wait)?;
            let v = ike(ControlRequest::Initiate {
                conn: conn.clone(),
                child: child.clone(),
            })?;
            let id = v.get("ike_sa").and_then(|x| x.as_str()).unwrap_or("?");
            println!("{conn}: initiating, IKE SA {id}");
            if let Some(t) = timeout {
                let goal = Goal::Up {
                    ike_sa: id.to_string(),
                    child: child.clone(),
                };
                println!("{conn}: {}", wait::wait(&ike_socket, &goal, t)?);
            }
            return Ok(());
        }
        Cmd::Terminate { conn, wait } => {
            let timeout = wait_for(wait)?;
            let v = ike(ControlRequest::Terminate { conn: conn.clone() })?;
            println!(
                "{conn}: {} IKE SAs terminated",
                v.get("terminated").and_then(|x| x.as_u64()).unwrap_or(0)
            );
            if let Some(t) = timeout {
                let goal = Goal::Gone { conn: conn.clone() };
                println!("{}", wait::wait(&ike_socket, &goal, t)?);
            }
            return Ok(());
        }
        Cmd::Rekey {
            conn,
            ike: whole,
            child,
            wait,
        } => {
            let timeout = wait_for(wait)?;
            // What is replaced, read before the rekey starts.
            let goal = match timeout {
                None => None,
                Some(_) => {
                    let list = ike(ControlRequest::IkeList)?;
                    Some(if *whole {
                        Goal::IkeRekeyed {
                            conn: conn.clone(),
                            old: wait::ike_ids(&list, conn),
                        }
                    } else {
                        Goal::ChildrenRekeyed {
                            conn: conn.clone(),
                            child: child.clone(),
                            old: wait::child_ids(&list, conn, child.as_deref()),
                        }
                    })
                }
            };
            let v = ike(ControlRequest::Rekey {
                conn: conn.clone(),
                ike: *whole,
                child: child.clone(),
            })?;
            let started = v.get("rekeying").and_then(|x| x.as_u64()).unwrap_or(0);
            println!("{conn}: {started} rekeys started");
            if let (Some(goal), Some(t)) = (goal, timeout) {
                if started == 0 {
                    return Err(format!("{conn}: nothing to rekey"));
                }
                println!("{}", wait::wait(&ike_socket, &goal, t)?);
            }
            return Ok(());
        }
        Cmd::Reload => {
            let v = ike(ControlRequest::Reload)?;
            println!(
                "reloaded: {} connections",
                v.get("connections").and_then(|x| x.as_u64()).unwrap_or(0)
            );
            let names = |k: &str| -> Vec<String> {
                v[k].as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            };
            for (k, what) in [
                ("added", "added"),
                ("removed", "removed (peer told)"),
                ("reestablished", "re-established"),
                ("unchanged", "unchanged"),
            ] {
                let n = names(k);
                if !n.is_empty() {
                    println!("  {what}: {}", n.join(", "));
                }
            }
            for c in v["children_changed"].as_array().into_iter().flatten() {
                let list = |k: &str| -> String {
                    c[k].as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                println!(
                    "  {}: IKE SA kept; children added [{}], removed [{}], rekeyed [{}]",
                    c["conn"].as_str().unwrap_or("?"),
                    list("added"),
                    list("removed"),
                    list("changed")
                );
            }
            let restart = names("restart_needed");
            if !restart.is_empty() {
                println!(
                    "  not applied, restart esprit-ike for: {}",
                    restart.join(", ")
                );
            }
            return Ok(());
        }
        Cmd::Doctor { json } => return control::doctor::cli(&socket, *json),
        _ => {}
    }
    let mut c = Client::connect(&socket).map_err(|e| e.to_string())?;
    match args.cmd {
        Cmd::Sa {
            cmd: SaCmd::List { json },
        } => {
            let v = c.call(Request::SaList).map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
            } else {
                let sas: Vec<SaInfo> = serde_json::from_value(v).map_err(|e| e.to_string())?;
                print!("{}", table(&sas));
            }
        }
        Cmd::Sa {
            cmd: SaCmd::Add { file, replace },
        } => {
            // The daemon validates each SA with the SA file's rules; its message names the key.
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let raw: toml::Table =
                toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let entries = raw
                .get("sa")
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default();
            if entries.is_empty() {
                return Err(format!("{}: no [[sa]] tables", file.display()));
            }
            for (i, entry) in entries.into_iter().enumerate() {
                let sa: Box<SaSpec> = Box::new(
                    entry
                        .try_into()
                        .map_err(|e| format!("{} sa[{i}]: {e}", file.display()))?,
                );
                let req = if replace {
                    Request::SaUpdate { sa }
                } else {
                    Request::SaAdd { sa }
                };
                let v = c
                    .call(req)
                    .map_err(|e| format!("{} sa[{i}]: {e}", file.display()))?;
                println!("installed {}", v["sa"].as_str().unwrap_or("?"));
            }
        }
        Cmd::Sa {
            cmd:
                SaCmd::Delete {
                    spi,
                    direction,
                    address,
                },
        } => {
            let spi = Spi::parse(&spi)
                .ok_or_else(|| format!("spi: expected a non-zero 32-bit SPI, got {spi:?}"))?;
            let direction = match direction.as_str() {
                "in" => Direction::In,
                "out" => Direction::Out,
                o => return Err(format!("direction: expected \"in\" or \"out\", got {o:?}")),
            };
            let v = c
                .call(Request::SaDelete {
                    spi,
                    direction,
                    address,
                })
                .map_err(|e| e.to_string())?;
            println!("removed {}", v["removed"]);
        }
        Cmd::Route {
            cmd: RouteCmd::List { json },
        } => {
            let v = c.call(Request::RouteList).map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
            } else {
                println!("{:<24} {:<8} peer", "prefix", "action");
                for r in v.as_array().cloned().unwrap_or_default() {
                    println!(
                        "{:<24} {:<8} {}",
                        r["prefix"].as_str().unwrap_or("?"),
                        r["action"].as_str().unwrap_or("?"),
                        r["tunnel"].as_str().unwrap_or("-")
                    );
                }
            }
        }
        Cmd::Route {
            cmd:
                RouteCmd::Add {
                    prefix,
                    tunnel,
                    bypass,
                    drop,
                },
        } => {
            let action = match (tunnel, bypass, drop) {
                (Some(_), _, _) => None,
                (None, true, _) => Some("bypass".to_string()),
                (None, _, true) => Some("drop".to_string()),
                (None, false, false) => {
                    return Err("route add needs --tunnel PEER, --bypass or --drop".into())
                }
            };
            let v = c
                .call(Request::RouteAdd {
                    prefix,
                    tunnel,
                    action,
                })
                .map_err(|e| e.to_string())?;
            println!("route {}", v["route"].as_str().unwrap_or("?"));
        }
        Cmd::Route {
            cmd: RouteCmd::Delete { prefix },
        } => {
            c.call(Request::RouteDelete {
                prefix: prefix.clone(),
            })
            .map_err(|e| e.to_string())?;
            println!("removed {prefix}");
        }
        Cmd::Policy {
            cmd: PolicyCmd::List,
        } => {
            let v = c.call(Request::PolicyList).map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
            );
        }
        Cmd::Policy {
            cmd:
                PolicyCmd::Add {
                    id,
                    local_ts,
                    remote_ts,
                },
        } => {
            c.call(Request::PolicyAdd {
                policy: id,
                local_ts,
                remote_ts,
            })
            .map_err(|e| e.to_string())?;
            println!("trap policy {id}");
        }
        Cmd::Policy {
            cmd: PolicyCmd::Delete { id },
        } => {
            c.call(Request::PolicyDelete { policy: id })
                .map_err(|e| e.to_string())?;
            println!("removed trap policy {id}");
        }
        Cmd::Stats { json } => {
            let v = c.call(Request::Stats).map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
            } else {
                let s: Snapshot = serde_json::from_value(v).map_err(|e| e.to_string())?;
                print!("{}", s.render());
                println!(
                    "sockets: lan rx_dropped={} rx_ring_full={} fill_empty={}  wan rx_dropped={} rx_ring_full={} fill_empty={}  events_lost={}",
                    s.lan_socket.rx_dropped,
                    s.lan_socket.rx_ring_full,
                    s.lan_socket.rx_fill_ring_empty,
                    s.wan_socket.rx_dropped,
                    s.wan_socket.rx_ring_full,
                    s.wan_socket.rx_fill_ring_empty,
                    s.events_lost
                );
            }
        }
        Cmd::Events => {
            for e in c.events().map_err(|e| e.to_string())? {
                let e = e.map_err(|e| e.to_string())?;
                println!("{}", serde_json::to_string(&e).map_err(|e| e.to_string())?);
            }
        }
        Cmd::Ike { .. }
        | Cmd::Initiate { .. }
        | Cmd::Terminate { .. }
        | Cmd::Reload
        | Cmd::Monitor { .. }
        | Cmd::Rekey { .. }
        | Cmd::Doctor { .. } => {}
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = esprit_log::init(&esprit_log::Settings::tool("espctl"));
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ike_table;
    use serde_json::json;

    /// The integrity algorithm of an AES-CBC suite appears after its cipher, for the IKE SA and
    /// the child; an AEAD suite reads as before.
    #[test]
    fn ike_table_names_integrity_algorithms() {
        let sa = |encr: &str, integ: Option<&str>, child_integ: Option<&str>| {
            json!([{
                "conn": "site", "state": "established", "role": "initiator",
                "local_id": "gwA", "local": "10.200.0.1", "remote_id": "gwB",
                "remote": "10.200.0.2", "spi_i": "01", "spi_r": "02", "encr": encr,
                "integ": integ, "prf": "prfsha256", "dh": "modp2048", "age_s": 3,
                "children": [{
                    "name": "net", "mode": "tunnel", "inbound_spi": "c1",
                    "outbound_spi": "c2", "encr": "aes256", "integ": child_integ,
                    "pfs": "ecp521", "local_ts": ["10.1.0.0/16"],
                    "remote_ts": ["10.2.0.0/16"], "age_s": 3
                }]
            }])
        };
        let t = ike_table(&sa("aes256", Some("sha256"), Some("sha512")));
        assert!(
            t.contains("IKE[01_02] aes256-sha256-prfsha256-modp2048,"),
            "{t}"
        );
        assert!(t.contains(", aes256-sha512-ecp521, "), "{t}");
        let t = ike_table(&sa("aes128gcm16", None, None));
        assert!(
            t.contains("IKE[01_02] aes128gcm16-prfsha256-modp2048,"),
            "{t}"
        );
        assert!(t.contains(", aes256-ecp521, "), "{t}");
    }
}
