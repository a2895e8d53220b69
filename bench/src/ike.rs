//! `esprit-bench ike`: IKE SA setups per second on one core.
//!
//! An initiator and a responder [`Endpoint`] of the sans-IO IKEv2 core live in one thread and
//! hand each other their datagrams over memory. One setup is IKE_SA_INIT and IKE_AUTH with the
//! first child SA, all of both sides' work (key exchange, key schedule, AUTH, SK payloads,
//! proposals, traffic selectors), with the system random generator: every setup has fresh
//! key-exchange secrets, nonces and SPIs. Only the setup is timed; each IKE SA is then deleted
//! (an INFORMATIONAL exchange) outside the timed part, so the endpoints stay small.

use crate::esp::Spread;
use crate::report::{cpu_model, load_average, now_utc};
use control::ike::algorithms::{DhGroup, EncrAlg, PrfAlg};
use control::ike::crypto::auth::PrivateKey;
use control::ike::crypto::cert::{Certificate, TrustStore};
use control::ike::identity::Identity;
use control::ike::rng::SystemRandom;
use control::ike::session::{
    ts, ChildMode, ChildParams, ConnectionParams, Endpoint, EndpointSettings, EspProposalSpec,
    IkeEvent, IkeProposalSpec, LocalCredential, RemoteCredential, Retransmit, TsSpec,
};
use serde::Serialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// The initiator's address.
const INITIATOR: &str = "10.200.0.1:500";
/// The responder's address.
const RESPONDER: &str = "10.200.0.2:500";
/// Connection name on the initiator.
const CONN: &str = "bench";
/// Identities (FQDNs, also the certificates' subjectAltNames).
const INITIATOR_ID: &str = "gw-a.esprit.example";
const RESPONDER_ID: &str = "gw-b.esprit.example";
/// The IKE encryption and PRF of every suite (the key exchange and authentication vary).
const IKE_ENCR: EncrAlg = EncrAlg::AesGcm16_128;
const IKE_PRF: PrfAlg = PrfAlg::HmacSha256;
/// The first child's ESP encryption.
const ESP_ENCR: EncrAlg = EncrAlg::AesGcm16_128;

/// How both ends prove their identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    /// A pre-shared key (AUTH method 2).
    Psk,
    /// ECDSA P-256 keys with certificates from one CA (RFC 7427 signatures, SHA-256).
    EcdsaP256,
}

/// One measured configuration: authentication and key exchange method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    /// Authentication of both ends.
    pub auth: AuthKind,
    /// Key exchange method of IKE_SA_INIT.
    pub dh: DhGroup,
}

impl Suite {
    /// Every suite, in the order of the report.
    pub const ALL: [Suite; 4] = [
        Suite {
            auth: AuthKind::Psk,
            dh: DhGroup::X25519,
        },
        Suite {
            auth: AuthKind::Psk,
            dh: DhGroup::Ecp256,
        },
        Suite {
            auth: AuthKind::Psk,
            dh: DhGroup::Modp2048,
        },
        Suite {
            auth: AuthKind::EcdsaP256,
            dh: DhGroup::X25519,
        },
    ];

    /// The name on the command line and in reports ("psk-x25519", "ecdsa-p256-x25519").
    pub fn name(&self) -> String {
        let auth = match self.auth {
            AuthKind::Psk => "psk",
            AuthKind::EcdsaP256 => "ecdsa-p256",
        };
        format!("{auth}-{}", self.dh.name())
    }

    /// The IKE proposal both ends use ("aes128gcm16-prfsha256-x25519").
    pub fn ike_proposal(&self) -> String {
        format!("{}-{}-{}", IKE_ENCR.name(), IKE_PRF.name(), self.dh.name())
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Suite {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Suite::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                let names: Vec<String> = Suite::ALL.iter().map(Suite::name).collect();
                format!("unknown suite {s:?} (expected one of {})", names.join(", "))
            })
    }
}

/// One end's private key and certificate.
#[derive(Clone)]
struct Leaf {
    key: Arc<PrivateKey>,
    cert: Arc<Certificate>,
}

/// The keys and certificates of certificate authentication: an ECDSA P-256 CA and a leaf for
/// each end (subjectAltName the end's FQDN identity), made once per run with rcgen.
pub struct Credentials {
    ca: Certificate,
    initiator: Leaf,
    responder: Leaf,
    /// The clock the endpoints check validity against (seconds since the epoch).
    unix_time: i64,
}

fn dn(cn: &str) -> rcgen::DistinguishedName {
    let mut d = rcgen::DistinguishedName::new();
    d.push(rcgen::DnType::CountryName, "CH");
    d.push(rcgen::DnType::OrganizationName, "esprit");
    d.push(rcgen::DnType::CommonName, cn);
    d
}

fn rcgen_err(what: &str) -> impl Fn(rcgen::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Credentials {
    /// A new CA and two leaf certificates, valid from a year before now to two years after.
    pub fn generate() -> Result<Self, String> {
        let unix_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| format!("clock before 1970: {e}"))?
            .as_secs();
        let year = 1970 + (unix_time / 31_556_952) as i32;
        let validity = |p: &mut rcgen::CertificateParams| {
            p.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
            p.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
        };
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let ca_key = rcgen::KeyPair::generate_for(alg).map_err(rcgen_err("CA key"))?;
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.distinguished_name = dn("esprit bench CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        validity(&mut ca_params);
        let ca_der = ca_params
            .self_signed(&ca_key)
            .map_err(rcgen_err("CA certificate"))?;
        let ca = Certificate::from_der(ca_der.der().to_vec())
            .map_err(|e| format!("CA certificate: {e}"))?;
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf = |fqdn: &str| -> Result<Leaf, String> {
            let key = rcgen::KeyPair::generate_for(alg).map_err(rcgen_err(fqdn))?;
            let mut p =
                rcgen::CertificateParams::new(vec![fqdn.to_string()]).map_err(rcgen_err(fqdn))?;
            p.distinguished_name = dn(fqdn);
            p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
            validity(&mut p);
            let der = p.signed_by(&key, &issuer).map_err(rcgen_err(fqdn))?;
            let cert =
                Certificate::from_der(der.der().to_vec()).map_err(|e| format!("{fqdn}: {e}"))?;
            let key = PrivateKey::from_pkcs8_der(&key.serialize_der())
                .map_err(|e| format!("{fqdn} key: {e}"))?;
            if !key.matches_certificate(&cert) {
                return Err(format!("{fqdn}: the key does not match the certificate"));
            }
            Ok(Leaf {
                key: Arc::new(key),
                cert: Arc::new(cert),
            })
        };
        Ok(Credentials {
            initiator: leaf(INITIATOR_ID)?,
            responder: leaf(RESPONDER_ID)?,
            ca,
            unix_time: unix_time as i64,
        })
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a constant socket address")
}

fn selector(s: &str) -> TsSpec {
    let (a, l) = s.split_once('/').expect("a constant prefix");
    TsSpec::Fixed(ts::prefix(
        a.parse().expect("a constant address"),
        l.parse().expect("a constant prefix length"),
    ))
}

/// One end's connection: `me` and `peer` are the ends' addresses, identities and networks.
pub(crate) fn connection(
    suite: Suite,
    creds: Option<&Credentials>,
    initiator: bool,
) -> Result<ConnectionParams, String> {
    let (me, peer) = if initiator {
        (
            (INITIATOR, INITIATOR_ID, "10.201.1.0/24"),
            (RESPONDER, RESPONDER_ID, "10.201.2.0/24"),
        )
    } else {
        (
            (RESPONDER, RESPONDER_ID, "10.201.2.0/24"),
            (INITIATOR, INITIATOR_ID, "10.201.1.0/24"),
        )
    };
    let (local_auth, remote_auth) = match suite.auth {
        AuthKind::Psk => {
            let psk = Arc::new(Zeroizing::new(
                b"esprit-bench ike: a pre-shared key of some length".to_vec(),
            ));
            (
                LocalCredential::Psk(psk.clone()),
                RemoteCredential::Psk(psk),
            )
        }
        AuthKind::EcdsaP256 => {
            let c = creds.ok_or("certificate suites need credentials")?;
            let own = if initiator {
                &c.initiator
            } else {
                &c.responder
            };
            (
                LocalCredential::Pubkey {
                    key: own.key.clone(),
                    certs: vec![own.cert.clone()],
                },
                RemoteCredential::Pubkey {
                    trust: Arc::new(
                        TrustStore::new(vec![c.ca.clone()])
                            .expect("the bench CA is a CA certificate"),
                    ),
                    ca_hashes: vec![c.ca.spki_sha1()],
                },
            )
        }
    };
    let id = |s: &str| Identity::parse(s).map_err(|e| format!("identity {s}: {e}"));
    Ok(ConnectionParams {
        name: CONN.into(),
        local_addrs: vec![addr(me.0).ip()],
        remote_addrs: vec![addr(peer.0).ip()],
        remote_port: 500,
        proposals: vec![IkeProposalSpec {
            encr: vec![IKE_ENCR],
            integ: vec![],
            prf: vec![IKE_PRF],
            dh: vec![suite.dh],
            addke: Default::default(),
        }],
        local_id: id(me.1)?,
        remote_id: Some(id(peer.1)?),
        local_auth,
        remote_auth,
        children: vec![ChildParams {
            name: "net".into(),
            local_ts: vec![selector(me.2)],
            remote_ts: vec![selector(peer.2)],
            proposals: vec![EspProposalSpec {
                encr: vec![ESP_ENCR],
                integ: vec![],
                dh: vec![],
                esn: vec![true],
                addke: Default::default(),
            }],
            mode: ChildMode::Tunnel,
            rekey_time: None,
            rekey_bytes: 0,
            rekey_packets: 0,
            life_bytes: 0,
            life_packets: 0,
            replay_window: 1024,
        }],
        force_encap: false,
        retransmit: Retransmit::default(),
        dpd_delay: None,
        rekey_time: None,
        fragmentation: true,
    })
}

/// Where the time of one setup went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetupTime {
    /// From the initiate command to the last datagram handled.
    pub total: Duration,
    /// Inside the initiator's calls (initiate and its datagrams).
    pub initiator: Duration,
    /// Inside the responder's calls.
    pub responder: Duration,
}

/// What the endpoints reported during one exchange.
#[derive(Debug, Default)]
struct Outcome {
    ike_up: usize,
    child_up: usize,
    problems: Vec<String>,
}

fn drain(e: &mut Endpoint, side: &str, o: &mut Outcome) {
    while let Some(ev) = e.poll_event() {
        match ev {
            IkeEvent::IkeUp { .. } => o.ike_up += 1,
            IkeEvent::ChildUp(_) => o.child_up += 1,
            IkeEvent::IkeDown { reason, .. } => o.problems.push(format!("{side}: {reason}")),
            IkeEvent::ChildFailed { reason, .. } => {
                o.problems.push(format!("{side}: child failed: {reason}"))
            }
            // Deletions, logs and whatever else the core reports are not a setup's outcome.
            _ => {}
        }
    }
}

/// An initiator and a responder joined over memory, ready to set up IKE SAs one after another.
pub struct Fixture {
    suite: Suite,
    initiator: Endpoint,
    responder: Endpoint,
}

impl Fixture {
    /// Two endpoints configured for `suite` (`creds` is needed for certificate suites).
    pub fn new(suite: Suite, creds: Option<&Credentials>) -> Result<Self, String> {
        let endpoint = |initiator: bool| -> Result<Endpoint, String> {
            let c = connection(suite, creds, initiator)?;
            let mut e = Endpoint::new(
                vec![Arc::new(c)],
                EndpointSettings::default(),
                Box::new(SystemRandom::new()),
            );
            if let Some(c) = creds {
                e.set_unix_time(c.unix_time);
            }
            Ok(e)
        };
        Ok(Fixture {
            suite,
            initiator: endpoint(true)?,
            responder: endpoint(false)?,
        })
    }

    /// The suite set up.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Deliver datagrams both ways until neither side has any, timing each side's handling.
    fn pump(&mut self, now: Instant, t: &mut SetupTime) -> Result<(), String> {
        for _ in 0..32 {
            let mut moved = false;
            while let Some(d) = self.initiator.poll_transmit() {
                moved = true;
                let s = Instant::now();
                self.responder
                    .handle_datagram(now, d.remote, d.local, &d.data);
                t.responder += s.elapsed();
            }
            while let Some(d) = self.responder.poll_transmit() {
                moved = true;
                let s = Instant::now();
                self.initiator
                    .handle_datagram(now, d.remote, d.local, &d.data);
                t.initiator += s.elapsed();
            }
            if !moved {
                return Ok(());
            }
        }
        Err("the exchange did not settle".into())
    }

    /// One IKE SA with its first child SA, checked on both sides, then deleted (untimed).
    pub fn setup(&mut self) -> Result<SetupTime, String> {
        let mut t = SetupTime::default();
        let start = Instant::now();
        let spi = self
            .initiator
            .initiate(start, CONN, None, addr(INITIATOR))
            .map_err(|e| e.to_string())?;
        t.initiator += start.elapsed();
        self.pump(start, &mut t)?;
        t.total = start.elapsed();

        let (mut i, mut r) = (Outcome::default(), Outcome::default());
        drain(&mut self.initiator, "initiator", &mut i);
        drain(&mut self.responder, "responder", &mut r);
        if (i.ike_up, i.child_up, r.ike_up, r.child_up) != (1, 1, 1, 1) {
            i.problems.append(&mut r.problems);
            return Err(format!(
                "{}: no IKE SA with a child on both sides: {}",
                self.suite,
                i.problems.join("; ")
            ));
        }
        let dh = self
            .initiator
            .sa(spi)
            .and_then(|sa| sa.suite())
            .map(|s| s.dh);
        if dh != Some(self.suite.dh) {
            return Err(format!("{}: negotiated {dh:?}", self.suite));
        }

        self.initiator.terminate(start, CONN);
        self.pump(start, &mut SetupTime::default())?;
        let mut o = Outcome::default();
        drain(&mut self.initiator, "initiator", &mut o);
        drain(&mut self.responder, "responder", &mut o);
        if self.initiator.sas().next().is_some() || self.responder.sas().next().is_some() {
            return Err(format!("{}: the IKE SA outlived its deletion", self.suite));
        }
        Ok(t)
    }
}

/// The setups of one round.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Round {
    /// Setups done.
    pub setups: u64,
    /// Seconds spent in them (teardown excluded).
    pub secs: f64,
    /// Seconds inside the initiator's calls.
    pub initiator_secs: f64,
    /// Seconds inside the responder's calls.
    pub responder_secs: f64,
}

impl Round {
    /// Setups per second.
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.setups as f64 / self.secs
        } else {
            0.0
        }
    }

    fn us(&self, secs: f64) -> f64 {
        if self.setups > 0 {
            secs * 1e6 / self.setups as f64
        } else {
            0.0
        }
    }
}

/// Setups back to back for `dur` of wall time (at least one).
pub fn measure(f: &mut Fixture, dur: Duration) -> Result<Round, String> {
    let start = Instant::now();
    let mut r = Round::default();
    while r.setups == 0 || start.elapsed() < dur {
        let t = f.setup()?;
        r.setups += 1;
        r.secs += t.total.as_secs_f64();
        r.initiator_secs += t.initiator.as_secs_f64();
        r.responder_secs += t.responder.as_secs_f64();
    }
    Ok(r)
}

/// One suite's result.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Suite name ("psk-x25519").
    pub suite: String,
    /// Median setups per second over the rounds.
    pub setups_per_s: f64,
    /// Slowest round.
    pub setups_per_s_min: f64,
    /// Fastest round.
    pub setups_per_s_max: f64,
    /// Microseconds per setup at the median rate.
    pub us_per_setup: f64,
    /// Median over rounds of the microseconds per setup inside the initiator.
    pub initiator_us: f64,
    /// Median over rounds of the microseconds per setup inside the responder.
    pub responder_us: f64,
    /// IKE proposal.
    pub ike: String,
    /// ESP proposal of the first child.
    pub esp: String,
    /// Setups measured over all rounds.
    pub setups: u64,
    /// Rounds.
    pub rounds: usize,
    /// Setups per second of each round, in order.
    pub per_round: Vec<f64>,
}

impl Row {
    /// Summarises the rounds of one suite.
    pub fn new(suite: Suite, rounds: &[Round]) -> Row {
        let rates: Vec<f64> = rounds.iter().map(Round::rate).collect();
        let rate = Spread::of(&rates);
        let side = |f: fn(&Round) -> f64| {
            Spread::of(&rounds.iter().map(|r| r.us(f(r))).collect::<Vec<_>>()).median
        };
        Row {
            suite: suite.name(),
            setups_per_s: rate.median,
            setups_per_s_min: rate.min,
            setups_per_s_max: rate.max,
            us_per_setup: if rate.median > 0.0 {
                1e6 / rate.median
            } else {
                0.0
            },
            initiator_us: side(|r| r.initiator_secs),
            responder_us: side(|r| r.responder_secs),
            ike: suite.ike_proposal(),
            esp: format!("{}-esn", ESP_ENCR.name()),
            setups: rounds.iter().map(|r| r.setups).sum(),
            rounds: rounds.len(),
            per_round: rates,
        }
    }

    /// One line of the table (columns as in [`header`]).
    pub fn line(&self) -> String {
        format!(
            "{:<18} {:>9.0} {:>15} {:>9.1} {:>9.1} {:>9.1} {:>7}",
            self.suite,
            self.setups_per_s,
            format!("{:.0}-{:.0}", self.setups_per_s_min, self.setups_per_s_max),
            self.us_per_setup,
            self.initiator_us,
            self.responder_us,
            self.setups,
        )
    }
}

/// The table header.
pub fn header() -> String {
    format!(
        "{:<18} {:>9} {:>15} {:>9} {:>9} {:>9} {:>7}",
        "suite", "setups/s", "min-max", "us/setup", "init us", "resp us", "setups"
    )
}

/// How long to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Rounds; each runs every suite once, the order reversing from one round to the next.
    pub rounds: usize,
    /// Wall time per suite per round.
    pub dur: Duration,
}

/// Measures `suites`, interleaved round by round (A B C D, D C B A, …) so that a drift of the
/// machine spreads over all of them; one unmeasured setup per suite first checks that it works.
/// `say` hears about progress. Returns one row per suite, in the order given.
pub fn run_suites(
    suites: &[Suite],
    plan: Plan,
    say: &mut dyn FnMut(&str),
) -> Result<Vec<Row>, String> {
    let creds = if suites.iter().any(|s| s.auth != AuthKind::Psk) {
        Some(Credentials::generate()?)
    } else {
        None
    };
    let mut fixtures = suites
        .iter()
        .map(|&s| Fixture::new(s, creds.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    for f in &mut fixtures {
        f.setup()?;
    }
    let mut rounds = vec![Vec::new(); suites.len()];
    for r in 0..plan.rounds.max(1) {
        let order: Vec<usize> = if r % 2 == 0 {
            (0..suites.len()).collect()
        } else {
            (0..suites.len()).rev().collect()
        };
        for i in order {
            rounds[i].push(measure(&mut fixtures[i], plan.dur)?);
        }
        say(&format!("round {}/{} done", r + 1, plan.rounds.max(1)));
    }
    Ok(suites
        .iter()
        .zip(&rounds)
        .map(|(&s, r)| Row::new(s, r))
        .collect())
}

/// Arguments of `esprit-bench ike`.
#[derive(clap::Args, Debug)]
pub struct IkeArgs {
    /// Suites, comma-separated: psk-x25519, psk-ecp256, psk-modp2048, ecdsa-p256-x25519
    /// (default: all).
    #[arg(long, value_delimiter = ',')]
    pub suites: Option<Vec<Suite>>,
    /// Rounds; each runs every suite once.
    #[arg(long, default_value_t = 9)]
    pub rounds: usize,
    /// Milliseconds per suite per round.
    #[arg(long, default_value_t = 500)]
    pub ms: u64,
    /// A short smoke run for CI (3 rounds of 100 ms per suite): figures are rough.
    #[arg(long)]
    pub quick: bool,
    /// Write the rows and the run's details as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Core to pin to (default: the last core).
    #[arg(long)]
    pub core: Option<usize>,
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

/// `esprit-bench ike`: measures, prints the table and writes the JSON.
pub fn run(a: IkeArgs) -> Result<(), String> {
    let suites = a.suites.unwrap_or_else(|| Suite::ALL.to_vec());
    let plan = if a.quick {
        Plan {
            rounds: 3,
            dur: Duration::from_millis(100),
        }
    } else {
        Plan {
            rounds: a.rounds.max(1),
            dur: Duration::from_millis(a.ms.max(1)),
        }
    };
    let pinned = pin(a.core);
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let (date, cpu, load_start) = (now_utc(), cpu_model(), load_average());
    println!("esprit-bench ike");
    println!("  date:    {date}");
    println!("  cpu:     {cpu} ({pinned})");
    println!("  rustc:   {}", env!("ESPRIT_RUSTC_VERSION"));
    println!("  load:    {load_start} (1, 5, 15 min) at start");
    println!("  command: {command}");
    println!(
        "  method:  initiator and responder Endpoints in one thread over memory, system random \
         generator; a setup = IKE_SA_INIT + IKE_AUTH with the first child (both sides' work, \
         {}, ESP {}-esn, tunnel, /24 selectors), timed from initiate to the last datagram; \
         the IKE SA is deleted after each setup, untimed; {} rounds x {} ms per suite, suites \
         in reverse order every other round; init/resp us = time inside each endpoint's calls",
        format_args!("{}-{}-<group>", IKE_ENCR.name(), IKE_PRF.name()),
        ESP_ENCR.name(),
        plan.rounds,
        plan.dur.as_millis()
    );
    println!();
    let rows = run_suites(&suites, plan, &mut |_| {})?;
    let load_end = load_average();
    println!("{}", header());
    for r in &rows {
        println!("{}", r.line());
    }
    println!();
    println!("load: {load_end} (1, 5, 15 min) at end");
    if let Some(p) = &a.json {
        let doc = serde_json::json!({
            "date": date,
            "cpu": cpu,
            "pinned": pinned,
            "rustc": env!("ESPRIT_RUSTC_VERSION"),
            "command": command,
            "load_start": load_start,
            "load_end": load_end,
            "rounds": plan.rounds,
            "ms_per_round": plan.dur.as_millis() as u64,
            "rows": rows,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| format!("--json {}: {e}", d.display()))?;
        }
        std::fs::write(p, text).map_err(|e| format!("--json {}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_names_round_trip() {
        let names: Vec<String> = Suite::ALL.iter().map(Suite::name).collect();
        assert_eq!(
            names,
            [
                "psk-x25519",
                "psk-ecp256",
                "psk-modp2048",
                "ecdsa-p256-x25519"
            ]
        );
        for s in Suite::ALL {
            assert_eq!(s.name().parse::<Suite>(), Ok(s));
        }
        assert!("psk-ecp384".parse::<Suite>().is_err());
        assert_eq!(Suite::ALL[3].ike_proposal(), "aes128gcm16-prfsha256-x25519");
    }

    #[test]
    fn every_suite_sets_up_and_tears_down_repeatedly() {
        let creds = Credentials::generate().unwrap();
        for s in Suite::ALL {
            let mut f = Fixture::new(s, Some(&creds)).unwrap();
            for _ in 0..2 {
                let t = f.setup().unwrap_or_else(|e| panic!("{s}: {e}"));
                assert!(t.initiator + t.responder <= t.total, "{s}: {t:?}");
            }
        }
    }

    #[test]
    fn wrong_ca_fails_loudly() {
        let creds = Credentials::generate().unwrap();
        let other = Credentials::generate().unwrap();
        let mut f = Fixture::new(Suite::ALL[3], Some(&creds)).unwrap();
        let mut c = connection(Suite::ALL[3], Some(&other), false).unwrap();
        c.local_auth = connection(Suite::ALL[3], Some(&creds), false)
            .unwrap()
            .local_auth;
        f.responder.set_connections(vec![Arc::new(c)]);
        let e = f.setup().unwrap_err();
        assert!(e.contains("no IKE SA"), "{e}");
    }

    #[test]
    fn rows_summarise_rounds() {
        let r = |setups, secs| Round {
            setups,
            secs,
            initiator_secs: secs / 2.0,
            responder_secs: secs / 4.0,
        };
        let row = Row::new(Suite::ALL[0], &[r(100, 1.0), r(300, 1.0), r(200, 1.0)]);
        assert_eq!(row.setups_per_s, 200.0);
        assert_eq!((row.setups_per_s_min, row.setups_per_s_max), (100.0, 300.0));
        assert_eq!(row.us_per_setup, 5000.0);
        assert_eq!(row.initiator_us, 2500.0);
        assert_eq!(row.responder_us, 1250.0);
        assert_eq!(row.setups, 600);
        assert_eq!(row.line().len(), header().len());
    }

    #[test]
    fn measure_runs_at_least_one_setup() {
        let mut f = Fixture::new(Suite::ALL[0], None).unwrap();
        let r = measure(&mut f, Duration::ZERO).unwrap();
        assert_eq!(r.setups, 1);
        assert!(r.rate() > 0.0);
        assert!(Fixture::new(Suite::ALL[3], None).is_err());
    }
}
