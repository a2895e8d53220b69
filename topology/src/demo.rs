//! `esprit-lab demo`: two sites, two esprit gateways keyed with fresh manual SAs, ping and a
//! TCP transfer checked by SHA-256 across the tunnel, the per-SA counters, a throughput figure.
//! (IKEv2 keying replaces the manual SAs when the control plane lands.)

use crate::ike::DaemonProcess;
use crate::lab::{Lab, LabError, LabSpec, Node};
use dataplane::api::{Client, Request, Snapshot};
use dataplane::daemon::DataplaneConfig;
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Lab name (namespace prefix).
    pub name: String,
    /// Bytes to send over TCP.
    pub bytes: usize,
    /// Workers per gateway (and queues per veth).
    pub workers: u32,
    /// Leave the lab and both gateways' daemons running afterwards (`esprit-lab down` stops
    /// them): the daemons then run as processes of their own, with their files in
    /// [`crate::kept::dir`].
    pub keep: bool,
    /// Key the tunnel by hand (random SAs written to SA files) instead of IKEv2.
    pub manual_keys: bool,
    /// The `esprit-lab` executable that runs the kept daemons; `None`: this program.
    pub exe: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            name: "esprit-demo".into(),
            bytes: 100 << 20,
            workers: 1,
            keep: false,
            manual_keys: false,
            exe: None,
        }
    }
}

/// What the demo measured. The first four fields are the documented JSON.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// IPv4 ping loss across the tunnel, percent.
    pub ping_loss_pct: f64,
    /// Bytes that arrived over TCP.
    pub tcp_bytes: u64,
    /// The SHA-256 of what arrived equals that of what was sent.
    pub tcp_sha256_ok: bool,
    /// TCP goodput across the tunnel, Gbit/s.
    pub gbps: f64,
    /// IPv6 ping loss, percent.
    pub ping6_loss_pct: f64,
    /// How the tunnel was keyed: "ikev2 <suite>" or "manual".
    pub keying: String,
    /// Counters of gateway A at the end.
    pub gw_a: Snapshot,
    /// Counters of gateway B at the end.
    pub gw_b: Snapshot,
    /// The OpenMetrics endpoints of each gateway (its dataplane's, and its esprit-ike's when
    /// IKE keys the tunnel), to scrape from inside the gateway's namespace.
    pub metrics_urls: MetricsUrls,
    /// What `--keep` left running: each daemon's socket, for `espctl` inside its namespace.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<KeptDaemon>,
}

/// The metrics endpoints of both gateways.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsUrls {
    /// Gateway A's.
    pub gw_a: Vec<String>,
    /// Gateway B's.
    pub gw_b: Vec<String>,
}

/// A daemon the demo left running.
#[derive(Debug, Clone, Serialize)]
pub struct KeptDaemon {
    /// The lab node (namespace) it runs in: "gwA" or "gwB".
    pub node: String,
    /// "esprit-dataplane" or "esprit-ike".
    pub daemon: String,
    /// Its process id.
    pub pid: u32,
    /// Its API (dataplane) or control (esprit-ike) socket.
    pub socket: PathBuf,
}

/// Where a demo gateway's dataplane serves metrics, inside the gateway's namespace.
pub const DATAPLANE_METRICS: &str = "127.0.0.1:9101";
/// Where a demo gateway's esprit-ike serves metrics, inside the gateway's namespace.
pub const IKE_METRICS: &str = "127.0.0.1:9102";

fn metrics_url(addr: &str) -> String {
    format!("http://{addr}/metrics")
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The lab could not be built.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// Something else, with context.
    #[error("{0}")]
    Other(String),
}

fn other(context: &str) -> impl Fn(String) -> DemoError + '_ {
    move |e| DemoError::Other(format!("{context}: {e}"))
}

fn random_hex(n: usize) -> Result<String, DemoError> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| DemoError::Other(format!("reading /dev/urandom: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn random_spi() -> Result<u32, DemoError> {
    let h = random_hex(4)?;
    Ok(u32::from_str_radix(&h, 16).expect("hex").max(0x100))
}

fn sa_entry(
    spi: u32,
    dir: &str,
    key: &str,
    local: &str,
    remote: &str,
    lts: &str,
    rts: &str,
) -> String {
    format!(
        "[[sa]]\nspi = \"0x{spi:08x}\"\ndirection = \"{dir}\"\nsuite = \"aes256gcm16\"\nkey = \"{key}\"\nlocal = \"{local}\"\nremote = \"{remote}\"\nesn = true\nlocal_ts = {lts}\nremote_ts = {rts}\n\n"
    )
}

/// Writes both gateways' SA files (`gwA-sa.toml`, `gwB-sa.toml`) and configurations into `dir`
/// and returns the configurations.
pub fn configs(dir: &Path, lab: &Lab) -> Result<(DataplaneConfig, DataplaneConfig), DemoError> {
    let (spi_ab, spi_ba) = (random_spi()?, random_spi()?);
    let (key_ab, key_ba) = (random_hex(36)?, random_hex(36)?);
    let a_ts = r#"["10.201.1.0/24", "fd00:201:1::/64"]"#;
    let b_ts = r#"["10.201.2.0/24", "fd00:201:2::/64"]"#;
    let (a, b) = (lab.gw_a_wan(), lab.gw_b_wan());
    let a_seen = lab.gw_a_seen_by_b();
    let sa_a = sa_entry(spi_ab, "out", &key_ab, a, b, a_ts, b_ts)
        + &sa_entry(spi_ba, "in", &key_ba, a, b, a_ts, b_ts);
    let sa_b = sa_entry(spi_ba, "out", &key_ba, b, a_seen, b_ts, a_ts)
        + &sa_entry(spi_ab, "in", &key_ab, b, a_seen, b_ts, a_ts);
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| DemoError::Other(format!("{}: {e}", p.display())))
    };
    write("gwA-sa.toml", &sa_a)?;
    write("gwB-sa.toml", &sa_b)?;
    // No `gateway`: behind the NAT, gwA reaches gwB through its kernel default route, which
    // the dataplane follows as any other program would.
    let cfg = |name: &str| {
        format!(
            "sa_file = \"{name}-sa.toml\"\napi_socket = \"{}\"\n[lan]\ninterface = \"lan0\"\n[wan]\ninterface = \"wan0\"\n[workers]\ncount = {}\n[metrics]\nlisten = \"{DATAPLANE_METRICS}\"\n",
            dir.join(format!("{name}.sock")).display(),
            lab.spec.queues
        )
    };
    write("gwA.toml", &cfg("gwA"))?;
    write("gwB.toml", &cfg("gwB"))?;
    let load =
        |n: &str| DataplaneConfig::load(&dir.join(n)).map_err(|e| DemoError::Other(e.to_string()));
    Ok((load("gwA.toml")?, load("gwB.toml")?))
}

/// Pings each site's host from the other site's (5 pings, 0.2 s apart): (from, to, ping's
/// output) both ways.
pub fn ping_across(lab: &Lab) -> Result<Vec<(Node, &'static str, String)>, LabError> {
    [
        (Node::HostA, crate::lab::HOST_B.0),
        (Node::HostB, "10.201.1.2"),
    ]
    .into_iter()
    .map(|(node, dst)| {
        let out = lab.exec(node, &["ping", "-c", "5", "-i", "0.2", "-W", "2", dst])?;
        Ok((node, dst, String::from_utf8_lossy(&out.stdout).into_owned()))
    })
    .collect()
}

/// Loss percentage from ping's summary line.
pub fn loss(out: &str) -> f64 {
    out.lines()
        .find_map(|l| {
            let i = l.find("% packet loss")?;
            l[..i].rsplit([' ', ',']).next()?.parse().ok()
        })
        .unwrap_or(100.0)
}

/// What a ping stopped by SIGINT saw (`ping -n` output): the sequence numbers never answered
/// up to the highest answered one, that highest number, and the summary line. Requests sent
/// after the last reply (at most the ones in flight when ping stopped: SIGINT makes ping print
/// its summary without waiting for them) do not count as lost.
pub fn ping_gaps(out: &str) -> (Vec<u32>, u32, String) {
    let answered: std::collections::HashSet<u32> = out
        .lines()
        .filter_map(|l| {
            let s = l.split("icmp_seq=").nth(1)?;
            s.split_whitespace().next()?.parse().ok()
        })
        .collect();
    let last = answered.iter().copied().max().unwrap_or(0);
    let lost = (1..=last).filter(|s| !answered.contains(s)).collect();
    let summary = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .to_string();
    (lost, last, summary)
}

/// Sends `len` pseudo-random bytes from hA to hB; returns (bytes received, digests equal,
/// seconds).
pub fn tcp_transfer(lab: &Lab, len: usize) -> Result<(u64, bool, f64), DemoError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let lab_b = lab.clone();
    let server = std::thread::spawn(move || -> Result<(Vec<u8>, u64), String> {
        lab_b.enter(Node::HostB).map_err(|e| e.to_string())?;
        let l = TcpListener::bind("10.201.2.2:5201").map_err(|e| e.to_string())?;
        let _ = tx.send(());
        let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    ctx.update(&buf[..n]);
                    total += n as u64;
                }
                Err(e) => return Err(format!("receiving after {total} bytes: {e}")),
            }
        }
        Ok((ctx.finish().as_ref().to_vec(), total))
    });
    rx.recv_timeout(Duration::from_secs(10))
        .map_err(|_| DemoError::Other("TCP server did not start".into()))?;
    let lab_a = lab.clone();
    let start = Instant::now();
    let client = std::thread::spawn(move || -> Result<Vec<u8>, String> {
        lab_a.enter(Node::HostA).map_err(|e| e.to_string())?;
        let mut s = TcpStream::connect_timeout(
            &"10.201.2.2:5201".parse().expect("addr"),
            Duration::from_secs(10),
        )
        .map_err(|e| format!("connecting: {e}"))?;
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut block = vec![0u8; 1 << 16];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut sent = 0usize;
        while sent < len {
            for c in block.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            let n = block.len().min(len - sent);
            s.write_all(&block[..n])
                .map_err(|e| format!("sending after {sent} bytes: {e}"))?;
            ctx.update(&block[..n]);
            sent += n;
        }
        Ok(ctx.finish().as_ref().to_vec())
    });
    let sent = client
        .join()
        .map_err(|_| DemoError::Other("TCP client panicked".into()))?
        .map_err(other("TCP client"))?;
    let (got, n) = server
        .join()
        .map_err(|_| DemoError::Other("TCP server panicked".into()))?
        .map_err(other("TCP server"))?;
    Ok((n, sent == got, start.elapsed().as_secs_f64()))
}

/// Two gateways running in-process, each in its namespace.
pub struct Gateways {
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<Result<Snapshot, String>>>,
}

impl Gateways {
    /// Starts gwA and gwB with these configurations and waits until both forward.
    pub fn start(
        lab: &Lab,
        cfg_a: DataplaneConfig,
        cfg_b: DataplaneConfig,
        mut say: impl FnMut(&str),
    ) -> Result<Gateways, DemoError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (rtx, rrx) = std::sync::mpsc::channel::<String>();
        let mut handles = Vec::new();
        for (node, cfg) in [(Node::GwA, cfg_a), (Node::GwB, cfg_b)] {
            let (lab, stop, rtx) = (lab.clone(), stop.clone(), rtx.clone());
            handles.push(std::thread::spawn(move || -> Result<Snapshot, String> {
                lab.enter(node).map_err(|e| e.to_string())?;
                dataplane::daemon::run::run(&cfg, stop, |m| {
                    let _ = rtx.send(format!("{node}: {m}"));
                })
                .map_err(|e| format!("{node}: {e}"))
            }));
        }
        let gws = Gateways { stop, handles };
        for _ in 0..2 {
            match rrx.recv_timeout(Duration::from_secs(20)) {
                Ok(m) => say(&m),
                Err(_) => {
                    let errs: Vec<String> =
                        gws.stop().into_iter().filter_map(|r| r.err()).collect();
                    return Err(DemoError::Other(format!(
                        "the gateways did not start: {}",
                        errs.join("; ")
                    )));
                }
            }
        }
        Ok(gws)
    }

    /// Stops both and returns their final counters (or why they failed).
    pub fn stop(self) -> Vec<Result<Snapshot, String>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handles
            .into_iter()
            .map(|g| g.join().unwrap_or_else(|_| Err("gateway panicked".into())))
            .collect()
    }
}

/// The gateways of a demo: keyed by hand, or by esprit-ike, in this process; or daemons of
/// their own that outlive it (`--keep`).
enum Running {
    Manual(Gateways),
    Ike {
        ike: Vec<crate::ike::IkeDaemon>,
        dataplanes: Vec<crate::ike::DataplaneThread>,
    },
    Processes(Vec<(Node, &'static str, DaemonProcess)>),
}

impl Running {
    /// Stops the in-process gateways (their final counters, or why they failed), or leaves
    /// the processes running and records them in the lab's state directory.
    fn finish(self, lab_name: &str) -> Result<Vec<KeptDaemon>, DemoError> {
        let results: Vec<Result<Snapshot, String>> = match self {
            Running::Manual(g) => g.stop(),
            Running::Ike { ike, dataplanes } => {
                let mut out: Vec<Result<Snapshot, String>> = Vec::new();
                for i in ike {
                    if let Err(e) = i.stop() {
                        out.push(Err(e));
                    }
                }
                out.extend(
                    dataplanes
                        .into_iter()
                        .map(crate::ike::DataplaneThread::stop),
                );
                out
            }
            Running::Processes(procs) => {
                let mut kept = Vec::new();
                for (node, daemon, p) in procs {
                    let socket = p.socket.clone();
                    if let Some(pid) = p.detach() {
                        crate::kept::record(lab_name, pid, &format!("{node} {daemon}"))
                            .map_err(DemoError::Other)?;
                        kept.push(KeptDaemon {
                            node: node.to_string(),
                            daemon: daemon.into(),
                            pid,
                            socket,
                        });
                    }
                }
                return Ok(kept);
            }
        };
        for r in results {
            r.map_err(DemoError::Other)?;
        }
        Ok(Vec::new())
    }
}

/// Starts esprit-dataplane and esprit-ike on both gateways (gwA initiates, gwB responds) and
/// waits until both have the child SA: in this process, or, given the `esprit-lab`
/// executable `exe`, as processes of their own. Returns the gateways and the negotiated suite.
fn start_ike(
    lab: &Lab,
    dir: &Path,
    exe: Option<&Path>,
    say: &mut impl FnMut(&str),
) -> Result<(Running, String), DemoError> {
    use crate::ike::{wait_child, write_configs, DataplaneThread, IkeDaemon, IkeSite};
    let metrics = |site: IkeSite| IkeSite {
        metrics: IKE_METRICS.parse().ok(),
        dataplane_metrics: DATAPLANE_METRICS.parse().ok(),
        ..site
    };
    let site_a = metrics(IkeSite {
        start_action: "start".into(),
        ..IkeSite::default()
    });
    let site_b = metrics(IkeSite::default());
    let (ike_a, dp_a) = write_configs(lab, Node::GwA, dir, &site_a).map_err(DemoError::Other)?;
    let (ike_b, dp_b) = write_configs(lab, Node::GwB, dir, &site_b).map_err(DemoError::Other)?;
    say("starting esprit-dataplane on gwA and gwB (no SAs yet)");
    let t = Duration::from_secs(20);
    let (running, sa) = match exe {
        Some(exe) => {
            let dp = |node: Node, name: &str| {
                DaemonProcess::dataplane(lab, node, exe, &dir.join(format!("{name}-dp.toml")))
                    .map_err(DemoError::Other)
            };
            let dp_a = dp(Node::GwA, "gwA")?;
            let dp_b = dp(Node::GwB, "gwB")?;
            say("starting esprit-ike on gwB (responder) and gwA (initiator: start_action = start), PSK");
            let b = DaemonProcess::ike(lab, Node::GwB, exe, &ike_b).map_err(DemoError::Other)?;
            let a = DaemonProcess::ike(lab, Node::GwA, exe, &ike_a).map_err(DemoError::Other)?;
            let sa = wait_child(&a.socket, t).map_err(DemoError::Other)?;
            wait_child(&b.socket, t).map_err(DemoError::Other)?;
            let procs = vec![
                (Node::GwA, "esprit-dataplane", dp_a),
                (Node::GwB, "esprit-dataplane", dp_b),
                (Node::GwA, "esprit-ike", a),
                (Node::GwB, "esprit-ike", b),
            ];
            (Running::Processes(procs), sa)
        }
        None => {
            let dataplanes = vec![
                DataplaneThread::start(lab, Node::GwA, dp_a).map_err(DemoError::Other)?,
                DataplaneThread::start(lab, Node::GwB, dp_b).map_err(DemoError::Other)?,
            ];
            say("starting esprit-ike on gwB (responder) and gwA (initiator: start_action = start), PSK");
            let b = IkeDaemon::start(lab, Node::GwB, &ike_b).map_err(DemoError::Other)?;
            let a = IkeDaemon::start(lab, Node::GwA, &ike_a).map_err(DemoError::Other)?;
            let sa = a.wait_child(t).map_err(DemoError::Other)?;
            b.wait_child(t).map_err(DemoError::Other)?;
            (
                Running::Ike {
                    ike: vec![a, b],
                    dataplanes,
                },
                sa,
            )
        }
    };
    let child = &sa["children"][0];
    let keying = format!(
        "ikev2 {}-{}-{}, child {} (SPIs {} / {})",
        sa["encr"].as_str().unwrap_or("?"),
        sa["prf"].as_str().unwrap_or("?"),
        sa["dh"].as_str().unwrap_or("?"),
        child["encr"].as_str().unwrap_or("?"),
        child["inbound_spi"].as_str().unwrap_or("?"),
        child["outbound_spi"].as_str().unwrap_or("?"),
    );
    say(&format!("  IKE SA established, {keying}"));
    Ok((running, keying))
}

/// Runs the demo; `say` receives progress lines.
pub fn run(o: &DemoOptions, mut say: impl FnMut(&str)) -> Result<DemoReport, DemoError> {
    let spec = LabSpec {
        name: o.name.clone(),
        queues: o.workers.max(1),
        ..LabSpec::default()
    };
    say(&format!(
        "building the lab {} (hA — gwA ==== gwB — hB, IPv4 and IPv6)",
        spec.name
    ));
    // Daemons an earlier `--keep` left in a lab of this name would hold its sockets.
    crate::kept::stop_all(&spec.name);
    let lab = Lab::up(&spec)?;
    let exe = if o.keep {
        Some(match &o.exe {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| DemoError::Other(format!("finding esprit-lab: {e}")))?,
        })
    } else {
        None
    };
    let dir = crate::kept::run_dir(&spec.name, o.keep).map_err(DemoError::Other)?;
    let result = (|| {
        let (gws, keying, socks) = if o.manual_keys {
            let (cfg_a, cfg_b) = configs(&dir, &lab)?;
            say("starting esprit-dataplane on gwA and gwB with fresh AES-256-GCM SAs (random keys and SPIs)");
            let g = match &exe {
                Some(exe) => {
                    let dp = |node: Node, file: &str| {
                        DaemonProcess::dataplane(&lab, node, exe, &dir.join(file))
                            .map_err(DemoError::Other)
                    };
                    Running::Processes(vec![
                        (Node::GwA, "esprit-dataplane", dp(Node::GwA, "gwA.toml")?),
                        (Node::GwB, "esprit-dataplane", dp(Node::GwB, "gwB.toml")?),
                    ])
                }
                None => Running::Manual(Gateways::start(&lab, cfg_a, cfg_b, &mut say)?),
            };
            (
                g,
                "manual".to_string(),
                [dir.join("gwA.sock"), dir.join("gwB.sock")],
            )
        } else {
            let (g, keying) = start_ike(&lab, &dir, exe.as_deref(), &mut say)?;
            (
                g,
                keying,
                [dir.join("gwA-dp.sock"), dir.join("gwB-dp.sock")],
            )
        };
        let ping = |dst: &str| -> Result<(f64, String), DemoError> {
            let out = lab.exec(
                Node::HostA,
                &["ping", "-c", "10", "-i", "0.2", "-W", "2", dst],
            )?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            Ok((loss(&text), text))
        };
        say("ping hA -> hB over IPv4 and IPv6 (10 each)");
        let (l4, _) = ping("10.201.2.2")?;
        let (l6, _) = ping("fd00:201:2::2")?;
        say(&format!("  IPv4 loss {l4}%, IPv6 loss {l6}%"));
        say(&format!(
            "TCP transfer of {} MB hA -> hB, SHA-256 checked on arrival",
            o.bytes >> 20
        ));
        let tcp = tcp_transfer(&lab, o.bytes);
        let stats = |p: &PathBuf| Client::connect(p).and_then(|mut c| c.call(Request::Stats));
        let (sa, sb) = (stats(&socks[0]), stats(&socks[1]));
        let kept = gws.finish(&o.name)?;
        let (n, ok, secs) = tcp?;
        let urls: Vec<String> = if o.manual_keys {
            vec![metrics_url(DATAPLANE_METRICS)]
        } else {
            vec![metrics_url(DATAPLANE_METRICS), metrics_url(IKE_METRICS)]
        };
        let snap = |v: Result<serde_json::Value, dataplane::api::ApiError>| -> Result<Snapshot, DemoError> {
            let v = v.map_err(|e| DemoError::Other(e.to_string()))?;
            serde_json::from_value(v).map_err(|e| DemoError::Other(e.to_string()))
        };
        Ok(DemoReport {
            ping_loss_pct: l4,
            tcp_bytes: n,
            tcp_sha256_ok: ok && n == o.bytes as u64,
            gbps: n as f64 * 8.0 / secs / 1e9,
            ping6_loss_pct: l6,
            keying,
            gw_a: snap(sa)?,
            gw_b: snap(sb)?,
            metrics_urls: MetricsUrls {
                gw_a: urls.clone(),
                gw_b: urls,
            },
            kept,
        })
    })();
    if !o.keep {
        let _ = std::fs::remove_dir_all(&dir);
        lab.down()?;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_loss_parses() {
        assert_eq!(
            loss("10 packets transmitted, 10 received, 0% packet loss, time 1807ms"),
            0.0
        );
        assert_eq!(
            loss("5 packets transmitted, 3 received, 40% packet loss, time 9ms"),
            40.0
        );
        assert_eq!(loss("garbage"), 100.0);
        // Echo 2 lost, echo 4 in flight when ping stopped: only 2 counts.
        let out = "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\
                   64 bytes from 10.0.0.2: icmp_seq=1 ttl=63 time=0.4 ms\n\
                   64 bytes from 10.0.0.2: icmp_seq=3 ttl=63 time=0.4 ms\n\n\
                   --- 10.0.0.2 ping statistics ---\n\
                   4 packets transmitted, 2 received, 50% packet loss, time 31ms\n";
        let (lost, last, summary) = ping_gaps(out);
        assert_eq!((lost, last), (vec![2], 3));
        assert!(summary.starts_with("4 packets transmitted"), "{summary}");
        assert_eq!(ping_gaps("garbage"), (Vec::new(), 0, String::new()));
    }
}
