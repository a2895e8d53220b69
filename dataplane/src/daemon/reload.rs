//! Reloading esprit-dataplane's configuration (SIGHUP, `systemctl reload`): the file is read
//! again and what can change while the workers run is applied; the rest is named as needing a
//! restart and left as it runs.
//!
//! What a reload applies:
//! - the SA file (`sa_file`, manual keying): SAs only in the new file are installed, SAs only
//!   in the old one removed, SAs whose settings changed replaced; SAs installed through the API
//!   (esprit-ike's) are not the file's and are never touched;
//! - the `[[route]]` table of the file: routes only in the new file (or with a new action) are
//!   set, routes only in the old one removed; routes added through the API stay.
//!
//! A file that does not load, or an SA file that does not, changes nothing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::config::DataplaneConfig;
use super::router::Router;
use crate::sa::{file, Direction, SaConfig};

/// What one reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// SAs of the SA file installed.
    pub sas_added: usize,
    /// SAs of the old SA file removed.
    pub sas_removed: usize,
    /// SAs whose settings changed, replaced.
    pub sas_replaced: usize,
    /// Routes set (new, or with a new action).
    pub routes_set: usize,
    /// Routes of the old file removed.
    pub routes_removed: usize,
    /// Settings that differ but take a restart.
    pub restart_needed: Vec<String>,
}

/// The identity of an SA for the dataplane: its SPI, direction and the address that tells SAs
/// with one SPI apart (the local one inbound, the peer outbound).
/// Logs a notification to systemd that could not be sent.
fn notified(r: Result<bool, crate::harden::notify::NotifyError>) {
    if let Err(e) = r {
        tracing::warn!("{e}");
    }
}

fn key(sa: &SaConfig) -> (u32, Direction, std::net::IpAddr) {
    let addr = match sa.direction {
        Direction::In => sa.local,
        Direction::Out => sa.remote,
    };
    (sa.spi, sa.direction, addr)
}

/// Reloads on request: the flag SIGHUP sets, the file, and what the running configuration is.
pub struct Reloader {
    path: PathBuf,
    running: DataplaneConfig,
    file_sas: Vec<SaConfig>,
    requested: Arc<AtomicBool>,
}

impl Reloader {
    /// A reloader for the daemon started from `path` with `running` and the SAs of its SA
    /// file; `requested` is the flag a signal handler sets.
    pub fn new(
        path: PathBuf,
        running: DataplaneConfig,
        file_sas: Vec<SaConfig>,
        requested: Arc<AtomicBool>,
    ) -> Self {
        Reloader {
            path,
            running,
            file_sas,
            requested,
        }
    }

    /// Reloads if asked to since the last call, telling systemd (`RELOADING=1`, then
    /// `READY=1`).
    pub fn poll(&mut self, router: &Router) -> Option<Result<ReloadReport, String>> {
        self.requested.swap(false, Ordering::Relaxed).then(|| {
            notified(crate::harden::notify::reloading());
            let r = self.reload(router);
            notified(crate::harden::notify::ready("configuration reloaded"));
            r
        })
    }

    /// Reads the file again and applies what changed.
    pub fn reload(&mut self, router: &Router) -> Result<ReloadReport, String> {
        let new = DataplaneConfig::load(&self.path).map_err(|e| e.to_string())?;
        let sas = match &new.sa_file {
            Some(f) => {
                crate::harden::check_private(f).map_err(|e| e.to_string())?;
                file::load(f).map_err(|e| e.to_string())?
            }
            None => Vec::new(),
        };
        let mut r = ReloadReport {
            restart_needed: restart_needed(&self.running, &new),
            ..ReloadReport::default()
        };
        // A new NAT-T port needs the XDP classifier reloaded: that takes a restart.
        let ports = |v: &[SaConfig]| -> Vec<u16> {
            let mut p: Vec<u16> = v
                .iter()
                .filter_map(|s| s.encap)
                .map(|e| e.dst_port)
                .collect();
            p.sort_unstable();
            p.dedup();
            p
        };
        let known = ports(&self.file_sas);
        if ports(&sas)
            .iter()
            .any(|p| *p != crate::sa::config::NAT_T_PORT && !known.contains(p))
        {
            r.restart_needed
                .push("sa_file (a new UDP encapsulation port)".into());
        }
        for old in &self.file_sas {
            if !sas.iter().any(|s| key(s) == key(old)) {
                let (spi, dir, addr) = key(old);
                router
                    .delete(spi, dir, Some(addr))
                    .map_err(|e| format!("removing SA 0x{spi:08x}: {e}"))?;
                r.sas_removed += 1;
            }
        }
        for sa in &sas {
            match self.file_sas.iter().find(|o| key(o) == key(sa)) {
                Some(o) if o == sa => {}
                Some(_) => {
                    router
                        .add(sa.clone(), true)
                        .map_err(|e| format!("replacing SA 0x{:08x}: {e}", sa.spi))?;
                    r.sas_replaced += 1;
                }
                None => {
                    router
                        .add(sa.clone(), false)
                        .map_err(|e| format!("installing SA 0x{:08x}: {e}", sa.spi))?;
                    r.sas_added += 1;
                }
            }
        }
        for (p, _) in &self.running.routes {
            if !new.routes.iter().any(|(q, _)| q == p) && router.remove_route(*p) {
                r.routes_removed += 1;
            }
        }
        for (p, a) in &new.routes {
            if !self.running.routes.contains(&(*p, *a)) {
                router.set_route(*p, *a);
                r.routes_set += 1;
            }
        }
        self.file_sas = sas;
        // Settings that take a restart stay as the daemon runs with them.
        self.running = DataplaneConfig {
            sa_file: new.sa_file,
            routes: new.routes,
            ..self.running.clone()
        };
        Ok(r)
    }
}

/// The settings of `new` that differ from `old` and that only a restart applies.
pub fn restart_needed(old: &DataplaneConfig, new: &DataplaneConfig) -> Vec<String> {
    let mut v = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            v.push(name.to_string());
        }
    };
    check("lan", old.lan != new.lan);
    check("wan", old.wan != new.wan);
    check("workers", old.workers != new.workers);
    check("cores", old.cores != new.cores);
    check("poll", old.poll != new.poll);
    check("mode", old.mode != new.mode);
    check("generic_xdp", old.generic_xdp != new.generic_xdp);
    check("ring_size", old.ring_size != new.ring_size);
    check("frames", old.frames != new.frames);
    check("backend", old.backend != new.backend);
    check("api_socket", old.api_socket != new.api_socket);
    check("mss_clamp", old.mss_clamp != new.mss_clamp);
    check("icmp_rate", old.icmp_rate != new.icmp_rate);
    check("fail_mode", old.fail_mode != new.fail_mode);
    check("api_group", old.api_group != new.api_group);
    check("user", old.user != new.user);
    check("metrics", old.metrics != new.metrics);
    check("log_level", old.log_level != new.log_level);
    check("log_format", old.log_format != new.log_format);
    check("tunnel", old.tunnels != new.tunnels);
    check("routing", old.max_routes != new.max_routes);
    v
}
