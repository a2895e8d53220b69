//! The policy table every worker keeps when there are several: which worker owns the outbound
//! SA a LAN packet needs, so the packet can be handed to it. Entries mirror the outbound SAs in
//! lookup order, without keys or state.

use crate::sa::{Mode, SaConfig, Selectors};
use std::net::IpAddr;

#[derive(Debug, Clone)]
struct Entry {
    spi: u32,
    local: IpAddr,
    remote: IpAddr,
    transport: bool,
    local_ts: Selectors,
    remote_ts: Selectors,
    owner: usize,
}

/// Outbound policies with their owning workers.
#[derive(Debug, Clone, Default)]
pub struct Policies(Vec<Entry>, Vec<IpAddr>);

impl Policies {
    /// Appends the policy of an outbound SA owned by worker `owner`.
    pub fn add(&mut self, cfg: &SaConfig, owner: usize) {
        self.0.push(Entry {
            spi: cfg.spi,
            local: cfg.local,
            remote: cfg.remote,
            transport: cfg.mode == Mode::Transport,
            local_ts: cfg.local_ts.clone(),
            remote_ts: cfg.remote_ts.clone(),
            owner,
        });
    }

    /// Removes the policies of outbound SAs with this SPI (and remote address, if given).
    pub fn remove(&mut self, spi: u32, remote: Option<IpAddr>) {
        self.0
            .retain(|e| !(e.spi == spi && remote.is_none_or(|r| r == e.remote)));
    }

    /// The worker owning the outbound SA for a packet from `src` to `dst` (the same first-match
    /// rule as `SaDb::outbound_index`).
    #[inline]
    pub fn owner_of(&self, src: IpAddr, dst: IpAddr) -> Option<usize> {
        self.0
            .iter()
            .find(|e| {
                !self.1.contains(&e.remote)
                    && e.local_ts.matches(src)
                    && e.remote_ts.matches(dst)
                    && (!e.transport || (e.local == src && e.remote == dst))
            })
            .map(|e| e.owner)
    }

    /// Declares the route-based peers (skipped by `owner_of`, as by the SA lookup).
    pub fn set_route_peers(&mut self, peers: Vec<IpAddr>) {
        self.1 = peers;
    }

    /// The worker owning the first outbound SA towards `peer` (route-based tunnels).
    pub fn owner_of_peer(&self, peer: IpAddr) -> Option<usize> {
        self.0.iter().find(|e| e.remote == peer).map(|e| e.owner)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A trap policy: traffic it matches should be protected, but no SA exists yet. The first
/// packets are dropped and raise an acquire event (at most one a second per trap and worker).
#[derive(Debug, Clone)]
pub struct Trap {
    /// Identifier chosen by the control plane.
    pub id: u32,
    /// Source prefixes (this side).
    pub local_ts: Selectors,
    /// Destination prefixes (the peer's side).
    pub remote_ts: Selectors,
    last_acquire: Option<std::time::Instant>,
}

impl Trap {
    /// A trap with these selectors.
    pub fn new(id: u32, local_ts: Selectors, remote_ts: Selectors) -> Self {
        Trap {
            id,
            local_ts,
            remote_ts,
            last_acquire: None,
        }
    }

    /// True if the trap covers a packet from `src` to `dst`.
    #[inline]
    pub fn matches(&self, src: IpAddr, dst: IpAddr) -> bool {
        self.local_ts.matches(src) && self.remote_ts.matches(dst)
    }

    /// True if an acquire may be raised now (rate limit; reads the clock only on this path).
    pub fn due(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self
            .last_acquire
            .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(1))
        {
            return false;
        }
        self.last_acquire = Some(now);
        true
    }
}
