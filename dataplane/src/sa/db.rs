//! The SA database of one worker: inbound SAs by (SPI, destination), outbound SAs by traffic
//! selectors.

use crate::esp::{Backend, DropCounters};
use crate::sa::config::NAT_T_PORT;
use crate::sa::{Direction, InboundSa, Mode, OutboundSa, SaConfig, SaEvent};
use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// Why an SA could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaDbError {
    /// The configuration is inconsistent.
    #[error("SA {label}: {reason}")]
    Invalid {
        /// Which SA.
        label: String,
        /// What is wrong.
        reason: String,
    },
    /// An inbound SA with this SPI and destination exists already.
    #[error("SA {label}: an inbound SA with this SPI and destination exists already")]
    Duplicate {
        /// Which SA.
        label: String,
    },
}

/// Inbound SAs by (SPI, local address) and outbound SAs in selector order. Counters for drops
/// that no SA can be charged with (unknown SPI, malformed outer headers, no outbound SA) live in
/// `drops`.
#[derive(Default)]
pub struct SaDb {
    inbound: FxHashMap<(u32, IpAddr), InboundSa>,
    outbound: Vec<OutboundSa>,
    nat_t_ports: Vec<u16>,
    /// Drops not charged to an SA.
    pub drops: DropCounters,
    /// Events raised by SAs, for the control plane to collect (`take_events`).
    pub(crate) events: Vec<SaEvent>,
    backend: Option<Backend>,
}

impl SaDb {
    /// An empty database whose SAs use `backend` for AES-GCM.
    pub fn new(backend: Backend) -> Self {
        SaDb {
            nat_t_ports: vec![NAT_T_PORT],
            backend: Some(backend),
            ..Default::default()
        }
    }

    /// Adds an SA.
    pub fn insert(&mut self, cfg: SaConfig) -> Result<(), SaDbError> {
        let label = cfg.label();
        let invalid = |reason: String| SaDbError::Invalid {
            label: label.clone(),
            reason,
        };
        let backend = self.backend.unwrap_or_default();
        match cfg.direction {
            Direction::In => {
                let key = (cfg.spi, cfg.local);
                if self.inbound.contains_key(&key) {
                    return Err(SaDbError::Duplicate { label });
                }
                if let Some(e) = cfg.encap {
                    if !self.nat_t_ports.contains(&e.dst_port) {
                        self.nat_t_ports.push(e.dst_port);
                    }
                }
                let sa = InboundSa::new(cfg, backend).map_err(invalid)?;
                self.inbound.insert(key, sa);
            }
            Direction::Out => {
                let sa = OutboundSa::new(cfg, backend).map_err(invalid)?;
                self.outbound.push(sa);
            }
        }
        Ok(())
    }

    /// Events raised since the last call, oldest first.
    pub fn take_events(&mut self) -> std::vec::Drain<'_, SaEvent> {
        self.events.drain(..)
    }

    /// True if events are waiting (cheap: a length check).
    #[inline]
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Removes SAs with this SPI and direction; `address` narrows to one local address
    /// (inbound) or remote address (outbound). Returns how many were removed.
    pub fn remove(&mut self, spi: u32, direction: Direction, address: Option<IpAddr>) -> usize {
        match direction {
            Direction::In => {
                let before = self.inbound.len();
                self.inbound
                    .retain(|&(s, local), _| !(s == spi && address.is_none_or(|a| a == local)));
                before - self.inbound.len()
            }
            Direction::Out => {
                let before = self.outbound.len();
                self.outbound.retain(|sa| {
                    !(sa.cfg.spi == spi && address.is_none_or(|a| a == sa.cfg.remote))
                });
                before - self.outbound.len()
            }
        }
    }

    /// Replaces the SA with the same SPI, direction and addresses (counters restart), or adds
    /// it if there is none.
    pub fn replace(&mut self, cfg: SaConfig) -> Result<(), SaDbError> {
        let addr = match cfg.direction {
            Direction::In => cfg.local,
            Direction::Out => cfg.remote,
        };
        self.remove(cfg.spi, cfg.direction, Some(addr));
        self.insert(cfg)
    }

    /// True if `port` is a local UDP port on which ESP-in-UDP is expected.
    #[inline]
    pub fn is_nat_t_port(&self, port: u16) -> bool {
        self.nat_t_ports.contains(&port)
    }

    /// Local UDP ports on which ESP-in-UDP is expected (4500 and every inbound SA's port).
    pub fn nat_t_ports(&self) -> &[u16] {
        &self.nat_t_ports
    }

    /// The inbound SA for `spi` addressed to `dst`.
    #[inline]
    pub fn inbound_mut(&mut self, spi: u32, dst: IpAddr) -> Option<&mut InboundSa> {
        self.inbound.get_mut(&(spi, dst))
    }

    /// Index of the first outbound SA whose selectors carry a packet from `src` to `dst`.
    /// Tunnel-mode SAs match on the inner addresses; transport-mode SAs also need the packet's
    /// addresses to be the SA's own endpoints.
    pub fn outbound_index(&self, src: IpAddr, dst: IpAddr) -> Option<usize> {
        self.outbound.iter().position(|sa| {
            let c = &sa.cfg;
            c.local_ts.matches(src)
                && c.remote_ts.matches(dst)
                && (c.mode == Mode::Tunnel || (c.local == src && c.remote == dst))
        })
    }

    /// The outbound SA at `index`.
    pub fn outbound_mut(&mut self, index: usize) -> Option<&mut OutboundSa> {
        self.outbound.get_mut(index)
    }

    /// Every inbound SA.
    pub fn inbound(&self) -> impl Iterator<Item = &InboundSa> {
        self.inbound.values()
    }

    /// Every outbound SA, in lookup order.
    pub fn outbound(&self) -> &[OutboundSa] {
        &self.outbound
    }

    /// Number of SAs in both directions.
    pub fn len(&self) -> usize {
        self.inbound.len() + self.outbound.len()
    }

    /// True if there is no SA.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
