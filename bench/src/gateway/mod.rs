//! `esprit-bench gateway`: the throughput of one IPsec gateway (gwA of the lab) in both
//! directions, against its no-crypto forwarding, the kernel's forwarding and a strongSwan
//! gateway, interleaved round by round.
//!
//! ```text
//!  generator/sink ── hA/eth0 ─── lan0 [gwA: device under test] wan0 ─── wan0/gwB ── generator/sink
//!  (AF_XDP, bench)                                                       (AF_XDP, bench, ESP keys)
//! ```
//!
//! Only gwA is under test: the bench takes gwB's place on the WAN with an AF_XDP endpoint that
//! speaks ESP itself (the twins of gwA's SAs, through the dataplane's ESP engine), so
//! - **LAN → WAN (encrypt)**: plaintext from hA, gwA encrypts, the bench decrypts and checks
//!   every packet on gwB's WAN interface;
//! - **WAN → LAN (decrypt)**: the bench encrypts on gwB's WAN interface, gwA decrypts, the
//!   bench counts the plaintext on hA.
//!
//! Both endpoints are driven by one thread pinned to the generator core; the gateway's
//! workers run on the other core. Each (system, direction, size) gets an overload trial (the
//! maximum receive rate) and a bounded binary search for the highest offered rate with at most
//! 0.5% loss, whose trial also gives the latency percentiles. Systems alternate round by round
//! (A B C … then … C B A), and ratios are taken per round.

pub mod cpu;
pub mod dpdk;
pub mod endpoint;
pub mod packet;
pub mod placement;
pub mod report;
pub mod search;
pub mod strongswan;
pub mod svg;
pub mod systems;
pub mod traffic;

use dpdk::DpdkDut;
use endpoint::Endpoint;
use packet::{ethernet, ipv4_udp, parse_mac, FrameSize};
use placement::Placement;
use report::{Latency, Measurement, Row};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use strongswan::SswanDut;
use systems::{counters_line, Dir, EspritDut, PeerSas, System, HOST_A};
use topology::{Lab, LabGuard, LabSpec, Node};
use traffic::{run_trial, Clock, Sink, Source, TrialSpec};

/// What to measure and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Systems, in the order of the first round.
    pub systems: Vec<System>,
    /// Packet sizes.
    pub sizes: Vec<FrameSize>,
    /// Rounds (each measures every system once).
    pub rounds: usize,
    /// Sending window of each trial.
    pub trial: Duration,
    /// Most rate-controlled trials of each binary search.
    pub steps: usize,
    /// Core of the generator and sink thread.
    pub gen_core: usize,
    /// Core of the gateway's worker (and of charon's threads).
    pub dut_core: usize,
    /// Lab name (namespace prefix).
    pub lab: String,
    /// Leave the lab up afterwards.
    pub keep_lab: bool,
    /// Print every trial.
    pub verbose: bool,
    /// Where the kernel's receive work runs.
    pub placement: Placement,
}

impl Options {
    /// The defaults of a full run on a machine with `cores` cores.
    pub fn full(cores: usize) -> Options {
        Options {
            systems: System::ALL.to_vec(),
            sizes: FrameSize::ALL.to_vec(),
            rounds: 3,
            trial: Duration::from_millis(1000),
            steps: 6,
            gen_core: 0,
            dut_core: cores.saturating_sub(1),
            lab: format!("esprit-gwb{}", std::process::id()),
            keep_lab: false,
            verbose: false,
            placement: Placement::Nic,
        }
    }

    /// A smoke run: 64 and 1420 B, one round, 200 ms trials, three search steps.
    pub fn quick(cores: usize) -> Options {
        Options {
            sizes: vec![FrameSize::Fixed(64), FrameSize::Fixed(1420)],
            rounds: 1,
            trial: Duration::from_millis(200),
            steps: 3,
            ..Options::full(cores)
        }
    }
}

/// A system left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skip {
    /// System key.
    pub system: String,
    /// Why.
    pub reason: String,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Summaries per (system, direction, size).
    pub rows: Vec<Row>,
    /// Every measurement, per round.
    pub measurements: Vec<serde_json::Value>,
    /// Systems that could not be measured.
    pub skipped: Vec<Skip>,
    /// Notes from the gateways (counters at each stop).
    pub notes: Vec<String>,
}

fn mac(node: Node, iface: &str) -> [u8; 6] {
    parse_mac(&topology::plan::mac(node, iface)).expect("the plan's MACs parse")
}

/// Opens an endpoint from a thread inside `node`'s namespace.
fn open_in(lab: &Lab, node: Node, iface: &str) -> Result<Endpoint, String> {
    let (lab, iface) = (lab.clone(), iface.to_string());
    std::thread::spawn(move || {
        lab.enter(node)
            .map_err(|e| format!("entering {node}: {e}"))?;
        Endpoint::open(&format!("{node}/{iface}"), &iface)
    })
    .join()
    .map_err(|_| "opening an endpoint panicked".to_string())?
}

/// Runs a command in a node and fails with its stderr if it fails.
fn exec(lab: &Lab, node: Node, args: &[&str]) -> Result<(), String> {
    let out = lab.exec(node, args).map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{node}: {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn measurement_json(m: &Measurement) -> serde_json::Value {
    serde_json::json!({
        "system": m.system.key(),
        "dir": m.dir.key(),
        "size": m.size.label(),
        "round": m.round,
        "max_rx_pps": m.max_rx_pps,
        "max_tx_pps": m.max_tx_pps,
        "rfc_pps": m.rfc_pps,
        "rfc_loss": m.rfc_loss,
        "generator_limited": m.generator_limited,
        "latency_us": m.latency,
        "trials": m.trials,
        "esp_errors": m.esp_errors,
        "gateway_ns_per_packet": m.gateway_ns_per_packet,
    })
}

/// The bench's state during a run.
struct Bench<'a> {
    lab: &'a Lab,
    o: &'a Options,
    clock: Clock,
    ha: Endpoint,
    gwb: Endpoint,
    trial_id: u32,
    dir: PathBuf,
    esprit: Option<EspritDut>,
    sswan: Option<SswanDut>,
    dpdk: Option<DpdkDut>,
    /// The thread id of the gateway core's soaker ([`cpu::Soaker`]).
    soaker: Option<u32>,
    /// ipsec-secgw's binary, or why it could not be built (built once, when first needed).
    dpdk_bin: Option<Result<PathBuf, String>>,
    notes: Vec<String>,
}

impl Bench<'_> {
    fn stop_esprit(&mut self, say: &mut dyn FnMut(&str)) {
        if let Some(mut d) = self.esprit.take() {
            let line = match d.stop() {
                Ok(s) => format!("esprit on gwA stopped: {}", counters_line(&s)),
                Err(e) => format!("esprit on gwA: {e}"),
            };
            say(&format!("  {line}"));
            self.notes.push(line);
        }
    }

    fn stop_sswan(&mut self, say: &mut dyn FnMut(&str)) {
        if let Some(d) = self.sswan.take() {
            let line = d.stop();
            say(&format!("  {line}"));
            self.notes.push(line);
        }
    }

    fn stop_dpdk(&mut self, say: &mut dyn FnMut(&str)) {
        if let Some(d) = self.dpdk.take() {
            let line = d.stop();
            say(&format!("  {line}"));
            self.notes.push(line);
            if self.o.placement != Placement::Inline {
                for dev in ["lan0", "wan0"] {
                    if let Err(e) = placement::set_rps(self.lab, Node::GwA, dev, self.o.dut_core) {
                        say(&format!("  {e}"));
                    }
                }
            }
        }
    }

    /// Puts gwA into the state `sys` needs. `Err` is a reason to skip the system.
    fn switch_to(&mut self, sys: System, say: &mut dyn FnMut(&str)) -> Result<(), String> {
        if let Some(pmd) = dpdk::Pmd::of(sys) {
            self.stop_esprit(say);
            self.stop_sswan(say);
            if self.dpdk.as_ref().is_some_and(|d| d.pmd != pmd) {
                self.stop_dpdk(say);
            }
            if self.dpdk.is_none() {
                let bin = self
                    .dpdk_bin
                    .get_or_insert_with(|| dpdk::build(say))
                    .clone()?;
                // In the NIC placement the ports' receive copy runs where the frames were
                // sent from, as esprit's native XDP does: RPS would put the kernel's half of
                // af_packet on the gateway's core, where softirq deferred to ksoftirqd starves
                // behind the polling lcore.
                if self.o.placement == Placement::Nic {
                    for dev in ["lan0", "wan0"] {
                        placement::clear_rps(self.lab, Node::GwA, dev)?;
                    }
                }
                let d = DpdkDut::start(self.lab, &self.dir, &bin, pmd, self.o.dut_core, say)?;
                self.dpdk = Some(d);
            }
            return Ok(());
        }
        self.stop_dpdk(say);
        if sys.is_esprit() {
            self.stop_sswan(say);
            if self.esprit.is_none() {
                let generic = self.o.placement == Placement::Split;
                let d = EspritDut::start(self.lab, &self.dir, self.o.dut_core, generic)?;
                let n = placement::renice_threads(std::process::id(), "esprit-worker", -20);
                say(&format!("  {} ({n} worker(s) at nice -20)", d.banner));
                self.esprit = Some(d);
            }
        } else if sys == System::StrongSwan {
            self.stop_esprit(say);
            if self.sswan.is_none() {
                let d = SswanDut::start(self.lab, &self.dir, self.o.dut_core, say)?;
                self.sswan = Some(d);
            }
        } else {
            self.stop_esprit(say);
            self.stop_sswan(say);
        }
        Ok(())
    }

    /// Measures one (system, direction, size) in one round.
    fn measure(
        &mut self,
        sys: System,
        dir: Dir,
        size: FrameSize,
        round: usize,
    ) -> Result<Measurement, String> {
        let Bench {
            o,
            clock,
            ha,
            gwb,
            trial_id,
            esprit,
            sswan,
            dpdk,
            soaker,
            ..
        } = self;
        let peer: Option<&mut PeerSas> = match sys {
            System::Esprit | System::EspritEsp => esprit.as_mut().map(|d| &mut d.peer),
            System::StrongSwan => sswan.as_mut().map(|d| &mut d.peer),
            System::DpdkAfXdp | System::DpdkAfPacket => dpdk.as_mut().map(|d| &mut d.peer),
            _ => None,
        };
        let (gen_db, sink_db) = match peer {
            Some(p) => (Some(&mut p.gen), Some(&mut p.sink)),
            None => (None, None),
        };
        let far = sys.far_host();
        let (gen, sink, eth, src_ip, dst_ip, gen_esp, sink_esp) = match dir {
            Dir::Encrypt => (
                ha,
                gwb,
                ethernet(mac(Node::GwA, "lan0"), mac(Node::HostA, "eth0")),
                HOST_A,
                far,
                None,
                sink_db,
            ),
            Dir::Decrypt => (
                gwb,
                ha,
                ethernet(mac(Node::GwA, "wan0"), mac(Node::GwB, "wan0")),
                far,
                HOST_A,
                gen_db,
                None,
            ),
        };
        let mut src = Source {
            eth,
            templates: size
                .cycle()
                .into_iter()
                // strongSwan's TUN device has a fixed 1400-byte MTU (kernel-libipsec reads it
                // with a buffer of that size): larger packets towards it go without DF, so the
                // kernel fragments them and strongSwan carries two ESP packets for one.
                .map(|len| {
                    let df = !(sys == System::StrongSwan && dir == Dir::Encrypt);
                    ipv4_udp(src_ip, dst_ip, len, df)
                })
                .collect(),
            esp: gen_esp,
        };
        let mut rx = Sink { esp: sink_esp };
        let mut esp_errors = 0;
        let mut trials = 0;
        let mut trial = |rate: Option<f64>, duration: Duration| {
            *trial_id += 1;
            trials += 1;
            let t = run_trial(
                clock,
                gen,
                &mut src,
                sink,
                &mut rx,
                &TrialSpec {
                    trial: *trial_id,
                    rate,
                    duration,
                    gateway_core: Some(o.dut_core),
                    soaker: *soaker,
                },
            )?;
            esp_errors += t.esp_errors;
            if o.verbose {
                let st = gen.statistics();
                let sk = sink.statistics();
                println!(
                    "    trial {}: target {} sent {} ({:.3} Mpps) received {} in window {} ({:.3} Mpps) loss {:.4} esp_err {} foreign {} p50 {} us; gwA core busy {}; gen tx_invalid {} sink rx_dropped {} ring_full {} fill_empty {}",
                    *trial_id,
                    rate.map(|r| format!("{:.3} Mpps", r / 1e6)).unwrap_or("overload".into()),
                    t.sent,
                    t.tx_pps() / 1e6,
                    t.received,
                    t.received_in_window,
                    t.rx_pps() / 1e6,
                    t.loss(),
                    t.esp_errors,
                    t.foreign,
                    t.latency.value_at_quantile(0.5) / 1000,
                    t.gateway_busy.map(|b| format!("{:.0}%", b * 100.0)).unwrap_or("-".into()),
                    st.tx_invalid_descs,
                    sk.rx_dropped,
                    sk.rx_ring_full,
                    sk.rx_fill_ring_empty_descs,
                );
            }
            Ok::<_, String>(t)
        };
        // Warm up (next hops, caches, a sleeping worker) and make sure packets come through.
        let mut through = false;
        for _ in 0..6 {
            if trial(Some(20_000.0), Duration::from_millis(50))?.received > 0 {
                through = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(400));
        }
        if !through {
            return Err("no packet came through the gateway".into());
        }
        let s = search::search(o.steps, |rate| trial(rate, o.trial))?;
        let latency = s.latency_trial().map(|b| {
            let q = |p: f64| b.latency.value_at_quantile(p) as f64 / 1e3;
            Latency {
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p999: q(0.999),
                max: b.latency.max() as f64 / 1e3,
            }
        });
        Ok(Measurement {
            system: sys,
            dir,
            size,
            round,
            max_rx_pps: s.overload.rx_pps(),
            max_tx_pps: s.overload.tx_pps(),
            rfc_pps: s.best.as_ref().map(|b| b.tx_pps()).unwrap_or(0.0),
            rfc_loss: s.best.as_ref().map(|b| b.loss()).unwrap_or(0.0),
            generator_limited: s.generator_limited(),
            latency,
            trials,
            esp_errors,
            gateway_ns_per_packet: s.best.as_ref().and_then(|b| b.gateway_ns_per_packet()),
        })
    }
}

/// Runs the benchmark (as root): builds the lab, opens the endpoints, measures every system
/// round by round, and tears everything down. `say` receives progress lines.
pub fn run(o: &Options, say: &mut dyn FnMut(&str)) -> Result<Outcome, String> {
    if o.systems.is_empty() || o.sizes.is_empty() {
        return Err("nothing to measure: no systems or no sizes".into());
    }
    let spec = LabSpec {
        name: o.lab.clone(),
        queues: 1,
        ..LabSpec::default()
    };
    say(&format!(
        "building the lab {} (hA — gwA ════ gwB — hB); gwA is the device under test",
        spec.name
    ));
    let guard;
    let lab_kept;
    let lab: &Lab = if o.keep_lab {
        lab_kept = Lab::up(&spec).map_err(|e| e.to_string())?;
        &lab_kept
    } else {
        guard = LabGuard::up(&spec).map_err(|e| e.to_string())?;
        &guard
    };
    let dir = std::env::temp_dir().join(format!("{}-files", o.lab));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run_in(lab, o, dir.clone(), say);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(
    lab: &Lab,
    o: &Options,
    dir: PathBuf,
    say: &mut dyn FnMut(&str),
) -> Result<Outcome, String> {
    // The clear baseline's far prefix: gwA routes it to gwB (esprit: a bypass route instead).
    exec(
        lab,
        Node::GwA,
        &[
            "ip",
            "route",
            "replace",
            systems::CLEAR_PREFIX,
            "via",
            systems::GW_B_WAN,
        ],
    )?;
    let ha = open_in(lab, Node::HostA, "eth0")?;
    let gwb = open_in(lab, Node::GwB, "wan0")?;
    let napi_known = placement::napi_threads();
    if o.placement != Placement::Inline {
        placement::set_threaded(lab, Node::HostA, "eth0")?;
        placement::set_threaded(lab, Node::GwB, "wan0")?;
        let pinned = placement::pin_new_napi(&napi_known, o.gen_core);
        say(&format!(
            "the bench's NAPI threads (hA/eth0, gwB/wan0) on core {}, SCHED_FIFO: {}",
            o.gen_core,
            pinned.join(", ")
        ));
        for dev in ["lan0", "wan0"] {
            placement::set_rps(lab, Node::GwA, dev, o.dut_core)?;
        }
    }
    // gwA learns both neighbours (the endpoints leave ICMP and ARP to the kernel).
    for ip in [HOST_A.to_string(), systems::GW_B_WAN.to_string()] {
        let _ = lab.exec(Node::GwA, &["ping", "-c", "1", "-W", "1", &ip]);
    }
    let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: o.gen_core });
    let niced = placement::current_tid().is_some_and(|t| placement::renice(t, -20));
    say(&format!(
        "generator and sink: one thread {} core {}{}; gateway workers on core {}",
        if pinned { "pinned to" } else { "NOT pinned to" },
        o.gen_core,
        if niced {
            ", nice -20"
        } else {
            ", nice unchanged"
        },
        o.dut_core
    ));
    let soak = cpu::Soaker::start(o.dut_core);
    say(&match &soak {
        Some(s) => format!(
            "gateway core {}: a SCHED_IDLE soaker (tid {}) keeps it out of idle, so that /proc/stat samples its softirq time; its own user ticks are not counted",
            o.dut_core, s.tid
        ),
        None => format!(
            "gateway core {}: no soaker (could not pin or make it SCHED_IDLE); softirq time on an idle core goes unsampled",
            o.dut_core
        ),
    });
    let mut b = Bench {
        lab,
        o,
        clock: Clock::new(),
        ha,
        gwb,
        trial_id: 0,
        dir,
        esprit: None,
        sswan: None,
        dpdk: None,
        soaker: soak.as_ref().map(|s| s.tid),
        dpdk_bin: None,
        notes: Vec::new(),
    };
    let mut all = Vec::new();
    let mut skipped: Vec<Skip> = Vec::new();
    for round in 0..o.rounds {
        let mut order = o.systems.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        say(&format!(
            "round {}/{}: {}",
            round + 1,
            o.rounds,
            order.iter().map(|s| s.key()).collect::<Vec<_>>().join(", ")
        ));
        for sys in order {
            if skipped.iter().any(|s| s.system == sys.key()) {
                continue;
            }
            if let Err(reason) = b.switch_to(sys, say) {
                if sys.is_esprit() {
                    return Err(reason);
                }
                say(&format!("  {}: skipped: {reason}", sys.label()));
                skipped.push(Skip {
                    system: sys.key().into(),
                    reason,
                });
                continue;
            }
            for &size in &o.sizes {
                for &dir in sys.dirs() {
                    match b.measure(sys, dir, size, round) {
                        Ok(m) => {
                            say(&format!(
                                "  {:<20} {} {:>4}: max rx {:.3} Mpps (offered {:.3}), <=0.5% loss {:.3} Mpps{}, p50 {} p99 {} us, gwA core {} ns/pkt [{} trials{}]",
                                sys.label(),
                                dir.label(),
                                size.label(),
                                m.max_rx_pps / 1e6,
                                m.max_tx_pps / 1e6,
                                m.rfc_pps / 1e6,
                                if m.generator_limited { " (generator-limited)" } else { "" },
                                m.latency.map(|l| format!("{:.0}", l.p50)).unwrap_or("-".into()),
                                m.latency.map(|l| format!("{:.0}", l.p99)).unwrap_or("-".into()),
                                m.gateway_ns_per_packet.map(|n| format!("{n:.0}")).unwrap_or("-".into()),
                                m.trials,
                                if m.esp_errors > 0 {
                                    format!(", {} ESP errors", m.esp_errors)
                                } else {
                                    String::new()
                                }
                            ));
                            all.push(m);
                        }
                        Err(e) => {
                            say(&format!(
                                "  {:<20} {} {:>4}: failed: {e}",
                                sys.label(),
                                dir.label(),
                                size.label()
                            ));
                            b.notes.push(format!(
                                "round {}: {} {} {}: {e}",
                                round + 1,
                                sys.key(),
                                dir.key(),
                                size.label()
                            ));
                        }
                    }
                }
            }
        }
        b.stop_esprit(say);
        b.stop_sswan(say);
        b.stop_dpdk(say);
    }
    let rows = report::rows(&all, &o.systems, &o.sizes);
    Ok(Outcome {
        rows,
        measurements: all.iter().map(measurement_json).collect(),
        skipped,
        notes: b.notes,
    })
}
