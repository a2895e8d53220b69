//! The IKE daemon's link to the dataplane's control API: installs and removes child SAs, keeps
//! a copy of everything installed, and re-installs it all when the dataplane comes back after a
//! restart (the dataplane keeps forwarding while the IKE daemon restarts; the IKE daemon restores
//! the dataplane when the dataplane restarts). Every SA it installs carries an owner tag; at each
//! connection it lists the dataplane's SAs and reconciles those of earlier runs
//! ([`super::reconcile`]).

use super::params::range_to_prefixes;
use super::reconcile::{owner_tag, Foreign, Reconciler};
use crate::ike::rng::{RandomSource, SystemRandom};
use crate::ike::session::{ChildMode, ChildSaInstall};
use esprit_api::{ApiError, Client, Direction, Encap, Mode, Request, SaInfo, SaKey, SaSpec, Spi};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The address an installed SA is filed under: its local address if inbound, its peer's if
/// outbound.
fn address_of(sa: &SaSpec) -> IpAddr {
    match sa.direction {
        Direction::In => sa.local,
        Direction::Out => sa.remote,
    }
}

/// The keys of the installed SAs with this SPI and direction, whatever their address.
fn any_key<'a>(
    m: &'a BTreeMap<(u32, &'static str, IpAddr), Installed>,
    spi: u32,
    dir: &'static str,
) -> impl Iterator<Item = (u32, &'static str, IpAddr)> + 'a {
    let lo = (spi, dir, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let hi = (spi, dir, IpAddr::V6(Ipv6Addr::from(u128::MAX)));
    m.range(lo..=hi).map(|(k, _)| *k)
}

/// One installed SA as sent to the dataplane (its key is wiped on drop).
struct Installed {
    sa: SaSpec,
}

/// The link to esprit-dataplane.
pub struct DataplaneLink {
    path: PathBuf,
    client: Option<Client>,
    workers: u32,
    /// By (SPI, direction, address): the local address of an inbound SA, the peer's of an
    /// outbound one (peers pick our outbound SPIs, so two peers may pick the same).
    installed: BTreeMap<(u32, &'static str, IpAddr), Installed>,
    policies: BTreeMap<u32, (Vec<String>, Vec<String>)>,
    next_attempt: Instant,
    last_probe: Instant,
    /// Set when SAs were re-installed into a dataplane that had restarted: their outbound
    /// sequence numbers started again, so the daemon rekeys them.
    pub restored: bool,
    ever_connected: bool,
    reconciler: Reconciler,
    /// SAs to remove at a given time ([`DataplaneLink::remove_later`]).
    later: Vec<(Instant, u32, &'static str, IpAddr)>,
    /// The configured (connection, child) pairs: orphans of others are removed at once.
    configured: BTreeSet<(String, String)>,
}

/// The two SA objects (inbound, outbound) of the dataplane API for a child SA pair.
pub fn sa_objects(c: &ChildSaInstall) -> [(u32, &'static str, SaSpec); 2] {
    sa_objects_owned(c, None)
}

/// [`sa_objects`] with an owner tag on both SAs.
pub fn sa_objects_owned(
    c: &ChildSaInstall,
    owner: Option<&str>,
) -> [(u32, &'static str, SaSpec); 2] {
    let mode = match c.mode {
        ChildMode::Tunnel => Mode::Tunnel,
        ChildMode::Transport => Mode::Transport,
    };
    let local_ts: Vec<String> = c.local_ts.iter().flat_map(range_to_prefixes).collect();
    let remote_ts: Vec<String> = c.remote_ts.iter().flat_map(range_to_prefixes).collect();
    // Negotiation only agrees on suites the dataplane has; the encryption name is a fallback
    // the dataplane would refuse rather than misread.
    let suite = c.suite.dataplane_name().unwrap_or(c.suite.encr.name());
    let one = |dir: Direction, spi: u32, key: &[u8], integ_key: &[u8]| -> SaSpec {
        let mut sa = SaSpec::new(
            Spi(spi),
            dir,
            suite,
            SaKey::from_bytes(key),
            c.local.ip(),
            c.remote.ip(),
        );
        if c.suite.integ.is_some() {
            sa.integ_key = Some(SaKey::from_bytes(integ_key));
            // AES-CBC: the padded payload fills whole cipher blocks (RFC 3602 §2.4).
            sa.pad_align = Some(16);
        }
        sa.mode = Some(mode);
        sa.esn = Some(c.suite.esn);
        sa.local_ts = Some(local_ts.clone());
        sa.remote_ts = Some(remote_ts.clone());
        sa.owner = owner.map(str::to_string);
        if dir == Direction::In {
            sa.replay_window = Some(c.limits.replay_window);
        }
        if c.encap {
            sa.encap = Some(Encap::Udp);
            sa.encap_ports = Some(if dir == Direction::Out {
                [c.local.port(), c.remote.port()]
            } else {
                [c.remote.port(), c.local.port()]
            });
        }
        let positive = |v: u64| (v > 0).then_some(v);
        sa.soft_bytes = positive(c.limits.soft_bytes);
        sa.soft_packets = positive(c.limits.soft_packets);
        sa.hard_bytes = positive(c.limits.hard_bytes);
        sa.hard_packets = positive(c.limits.hard_packets);
        sa
    };
    [
        (
            c.inbound_spi,
            "in",
            one(
                Direction::In,
                c.inbound_spi,
                &c.inbound_key,
                &c.inbound_integ_key,
            ),
        ),
        (
            c.outbound_spi,
            "out",
            one(
                Direction::Out,
                c.outbound_spi,
                &c.outbound_key,
                &c.outbound_integ_key,
            ),
        ),
    ]
}

/// The API direction of `"in"` or `"out"` (how the link keys its SAs).
fn direction(dir: &str) -> Direction {
    if dir == "in" {
        Direction::In
    } else {
        Direction::Out
    }
}

impl DataplaneLink {
    /// A link to the API socket at `path` (connected lazily, retried every second). SAs of
    /// earlier runs that no new child replaces within `orphan_timeout` are removed.
    pub fn new(path: PathBuf, orphan_timeout: Duration) -> Self {
        let now = Instant::now();
        let instance = format!("{:016x}", SystemRandom::new().next_u64());
        DataplaneLink {
            path,
            client: None,
            workers: 1,
            installed: BTreeMap::new(),
            policies: BTreeMap::new(),
            next_attempt: now,
            last_probe: now,
            restored: false,
            ever_connected: false,
            reconciler: Reconciler::new(instance, orphan_timeout),
            later: Vec::new(),
            configured: BTreeSet::new(),
        }
    }

    /// This run's instance id, part of every owner tag.
    pub fn instance(&self) -> &str {
        self.reconciler.instance()
    }

    /// Declare the configured (connection, child) pairs (at start and on reload).
    pub fn set_configured(&mut self, pairs: impl IntoIterator<Item = (String, String)>) {
        self.configured = pairs.into_iter().collect();
    }

    /// List the dataplane's SAs and reconcile those this run did not install.
    fn reconcile(&mut self) {
        let listing: Vec<SaInfo> = match self.call_typed(Request::SaList) {
            Ok(l) => l,
            Err(e) => {
                tracing::info!("listing the dataplane's SAs: {e}");
                return;
            }
        };
        let installed = &self.installed;
        let configured = &self.configured;
        let review = self.reconciler.review(
            Instant::now(),
            &listing,
            |spi, dir| any_key(installed, spi, dir).next().is_some(),
            |conn, child| configured.contains(&(conn.to_string(), child.to_string())),
        );
        if review.adopted > 0 {
            tracing::info!(
                "{} SAs of an earlier run of esprit-ike: kept until their children are \
                 re-established",
                review.adopted
            );
        }
        for f in review.remove {
            tracing::info!(
                conn = %f.owner.conn,
                child = %f.owner.child,
                spi = %format_args!("{:08x}", f.spi),
                "removing SA {:08x} {} of {}/{}: no longer owned",
                f.spi, f.dir, f.owner.conn, f.owner.child
            );
            self.delete_foreign(&f);
        }
    }

    fn delete_foreign(&mut self, f: &Foreign) {
        let r = self.call(Request::SaDelete {
            spi: Spi(f.spi),
            direction: direction(f.dir),
            address: Some(f.address),
        });
        if let Err(e) = r {
            if !e.starts_with("not_found") {
                tracing::info!("removing SA {:08x} {}: {e}", f.spi, f.dir);
            }
        }
    }

    /// Children of earlier runs to re-establish now, as (connection, child); see
    /// [`Reconciler::wanted`].
    pub fn wanted(
        &mut self,
        established: impl Fn(&str) -> bool,
        has_ike_sa: impl Fn(&str) -> bool,
    ) -> Vec<(String, String)> {
        self.reconciler.wanted(established, has_ike_sa)
    }

    /// A child came up in this run: the SAs an earlier run installed for it go, the outbound
    /// one now (the new outbound SA is installed), the inbound one after `grace`.
    pub fn child_up(&mut self, conn: &str, child: &str, grace: Duration) {
        let out = self.reconciler.replaced(Instant::now(), conn, child, grace);
        for f in out {
            tracing::info!(
                conn,
                child,
                spi = %format_args!("{:08x}", f.spi),
                "{conn}: child {child} re-established: removing the earlier run's SA {:08x} out",
                f.spi
            );
            if self.connect() {
                self.delete_foreign(&f);
            }
        }
    }

    /// Workers of the dataplane (from its hello), 1 until known.
    pub fn workers(&self) -> u32 {
        self.workers
    }

    /// Whether the dataplane is connected.
    pub fn connected(&self) -> bool {
        self.client.is_some()
    }

    fn connect(&mut self) -> bool {
        if self.client.is_some() {
            return true;
        }
        let now = Instant::now();
        if now < self.next_attempt {
            return false;
        }
        self.next_attempt = now + Duration::from_secs(1);
        let mut c = match Client::connect(&self.path) {
            Ok(c) => c,
            Err(_) => return false,
        };
        match c.hello() {
            Ok(h) => {
                self.workers = h.workers.max(1);
            }
            Err(e) => {
                tracing::warn!("dataplane hello failed: {e}");
                return false;
            }
        }
        self.client = Some(c);
        if self.ever_connected && !self.installed.is_empty() {
            self.restored = true;
        }
        self.ever_connected = true;
        tracing::info!(
            "connected to the dataplane at {} ({} workers)",
            self.path.display(),
            self.workers
        );
        // A dataplane that restarted has lost our SAs: put every one back.
        let all: Vec<SaSpec> = self.installed.values().map(|i| i.sa.clone()).collect();
        let mut restored = 0;
        for sa in all {
            if self.call_sa(true, &sa).is_ok() {
                restored += 1;
            }
        }
        if restored > 0 {
            tracing::info!("re-installed {restored} SAs in the dataplane");
        }
        if self.client.is_some() {
            self.reconcile();
        }
        self.client.is_some()
    }

    fn call(&mut self, r: Request) -> Result<Value, String> {
        let Some(c) = &mut self.client else {
            return Err("dataplane not connected".into());
        };
        match c.call(r) {
            Ok(v) => Ok(v),
            Err(ApiError::Refused { code, message }) => Err(format!("{code}: {message}")),
            Err(e) => {
                self.client = None;
                tracing::warn!("lost the dataplane: {e}");
                Err(e.to_string())
            }
        }
    }

    fn call_typed<T: serde::de::DeserializeOwned>(&mut self, r: Request) -> Result<T, String> {
        let v = self.call(r)?;
        serde_json::from_value(v).map_err(|e| format!("unexpected answer: {e}"))
    }

    fn call_sa(&mut self, update: bool, sa: &SaSpec) -> Result<(), String> {
        let sa = Box::new(sa.clone());
        let r = if update {
            Request::SaUpdate { sa }
        } else {
            Request::SaAdd { sa }
        };
        self.call(r).map(|_| ())
    }

    /// Install (or replace) a child SA pair. It is remembered even when the dataplane is down,
    /// and installed when it comes up. A new SA (the usual case: a child's SPIs are fresh) is
    /// added in one step (`sa.add`); one installed before, or one the dataplane has already
    /// (an earlier run's inbound SA with the same SPI), is replaced (`sa.update`: a delete and
    /// an add in the dataplane, twice the waits for its worker).
    pub fn install(&mut self, c: &ChildSaInstall) -> Result<(), String> {
        let owner = owner_tag(self.reconciler.instance(), &c.conn, &c.child);
        for (spi, dir, sa) in sa_objects_owned(c, Some(&owner)) {
            let known = self
                .installed
                .insert((spi, dir, address_of(&sa)), Installed { sa: sa.clone() })
                .is_some();
            if self.connect() {
                match self.call_sa(known, &sa) {
                    Err(e) if !known && e.starts_with("exists") => self.call_sa(true, &sa)?,
                    r => r?,
                }
            }
        }
        Ok(())
    }

    /// Remove one SA (one direction of a child): the inbound SA `spi` to local address `addr`
    /// or the outbound SA `spi` to peer `addr`. The delete names the address, so that another
    /// peer's outbound SA with the same SPI stays.
    pub fn remove_one(&mut self, spi: u32, dir: &'static str, addr: IpAddr) -> Result<(), String> {
        let key = if self.installed.contains_key(&(spi, dir, addr)) {
            Some((spi, dir, addr))
        } else {
            // The SA went in under another address (the peer moved): only if unambiguous.
            let mut keys = any_key(&self.installed, spi, dir);
            match (keys.next(), keys.next()) {
                (Some(k), None) => Some(k),
                _ => None,
            }
        };
        let Some(key) = key else {
            return Ok(());
        };
        if self.installed.remove(&key).is_some() && self.connect() {
            let r = self.call(Request::SaDelete {
                spi: Spi(spi),
                direction: direction(dir),
                address: Some(key.2),
            });
            if let Err(e) = r {
                if !e.starts_with("not_found") {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Remove one SA of ours at `at` (checked by [`DataplaneLink::tick`]), as
    /// [`DataplaneLink::remove_one`].
    pub fn remove_later(&mut self, spi: u32, dir: &'static str, addr: IpAddr, at: Instant) {
        self.later.push((at, spi, dir, addr));
    }

    /// Periodic work: reconnect and probe the dataplane (a restart shows as a broken socket).
    pub fn tick(&mut self) {
        let now = Instant::now();
        let due: Vec<(u32, &'static str, IpAddr)> = self
            .later
            .iter()
            .filter(|(t, _, _, _)| *t <= now)
            .map(|(_, s, d, a)| (*s, *d, *a))
            .collect();
        self.later.retain(|(t, _, _, _)| *t > now);
        for (spi, dir, addr) in due {
            if let Err(e) = self.remove_one(spi, dir, addr) {
                tracing::info!("removing SA {spi:08x} {dir}: {e}");
            }
        }
        if self.client.is_some() {
            let (drained, expired) = self.reconciler.due(now);
            for f in &expired {
                tracing::info!(
                    conn = %f.owner.conn,
                    child = %f.owner.child,
                    spi = %format_args!("{:08x}", f.spi),
                    "{}: child {} not re-established in time: removing the earlier run's SA {:08x} {}",
                    f.owner.conn, f.owner.child, f.spi, f.dir
                );
            }
            for f in drained.iter().chain(expired.iter()) {
                self.delete_foreign(f);
            }
        }
        if self.client.is_none() {
            self.connect();
            return;
        }
        if now.duration_since(self.last_probe) >= Duration::from_secs(1) {
            self.last_probe = now;
            let _ = self.call(Request::Hello);
            if self.client.is_none() {
                self.connect();
            }
        }
    }

    /// Install a trap policy (kept and re-installed after a dataplane restart).
    pub fn add_policy(
        &mut self,
        policy: u32,
        local_ts: Vec<String>,
        remote_ts: Vec<String>,
    ) -> Result<(), String> {
        self.policies
            .insert(policy, (local_ts.clone(), remote_ts.clone()));
        if self.connect() {
            self.call(Request::PolicyAdd {
                policy,
                local_ts,
                remote_ts,
            })?;
        }
        Ok(())
    }

    /// Remove a trap policy (and forget it for re-installation after a dataplane restart).
    pub fn remove_policy(&mut self, policy: u32) -> Result<(), String> {
        self.policies.remove(&policy);
        if self.connect() {
            self.call(Request::PolicyDelete { policy })?;
        }
        Ok(())
    }

    /// How many SAs are installed (both directions).
    pub fn installed(&self) -> usize {
        self.installed.len()
    }
}

/// Follow the dataplane's event stream (acquire, soft/hard expiry) on a thread, reconnecting
/// after a restart, until `stop` is set. Each event is sent on `tx` and `wake` is called.
pub fn follow_events(
    path: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tx: std::sync::mpsc::Sender<esprit_api::EventLine>,
    wake: impl Fn() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::sync::atomic::Ordering;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(c) = Client::connect(&path) {
                if let Ok(events) = c.events() {
                    for e in events {
                        let Ok(e) = e else { break };
                        if tx.send(e).is_err() {
                            return;
                        }
                        wake();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
}
