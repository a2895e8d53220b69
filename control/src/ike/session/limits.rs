//! Half-open IKE SAs (responder, IKE_SA_INIT answered, IKE_AUTH not yet come): an index by the
//! initiator's SPI and address for retransmitted requests, a count per source address, and the
//! limits that refuse new ones (strongSwan's `init_limit_half_open` and `block_threshold`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Limits on half-open IKE SAs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HalfOpenLimits {
    /// Half-open IKE SAs in total; IKE_SA_INIT requests beyond are dropped.
    pub total: usize,
    /// Half-open IKE SAs from one source address; requests beyond are dropped.
    pub per_source: usize,
}

impl Default for HalfOpenLimits {
    fn default() -> Self {
        HalfOpenLimits {
            total: 1000,
            per_source: 5,
        }
    }
}

/// Why a new half-open IKE SA is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverLimit {
    /// The total limit.
    Total,
    /// The limit of the source address.
    Source,
}

/// The half-open IKE SAs of an endpoint.
#[derive(Default)]
pub struct HalfOpen {
    /// (initiator's SPI, initiator's address) -> our SPI.
    by_init: HashMap<(u64, SocketAddr), u64>,
    /// Our SPI -> (initiator's SPI, initiator's address).
    by_spi: HashMap<u64, (u64, SocketAddr)>,
    per_source: HashMap<IpAddr, usize>,
}

impl HalfOpen {
    /// How many there are.
    pub fn len(&self) -> usize {
        self.by_spi.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_spi.is_empty()
    }

    /// How many come from `ip`.
    pub fn from_source(&self, ip: IpAddr) -> usize {
        self.per_source.get(&ip).copied().unwrap_or(0)
    }

    /// Our SPI of the half-open IKE SA this initiator's request made, if any.
    pub fn lookup(&self, spi_i: u64, remote: SocketAddr) -> Option<u64> {
        self.by_init.get(&(spi_i, remote)).copied()
    }

    /// Whether one more from `ip` would break a limit.
    pub fn check(&self, limits: &HalfOpenLimits, ip: IpAddr) -> Result<(), OverLimit> {
        if self.len() >= limits.total {
            return Err(OverLimit::Total);
        }
        if self.from_source(ip) >= limits.per_source {
            return Err(OverLimit::Source);
        }
        Ok(())
    }

    /// Record a new half-open IKE SA.
    pub fn insert(&mut self, spi_i: u64, remote: SocketAddr, spi_r: u64) {
        if self.by_spi.contains_key(&spi_r) {
            return;
        }
        if let Some(old) = self.by_init.insert((spi_i, remote), spi_r) {
            self.by_spi.remove(&old);
            self.dec(remote.ip());
        }
        self.by_spi.insert(spi_r, (spi_i, remote));
        *self.per_source.entry(remote.ip()).or_insert(0) += 1;
    }

    /// Forget the half-open IKE SA with our SPI `spi_r` (completed, failed or expired).
    /// Returns whether it was one.
    pub fn remove(&mut self, spi_r: u64) -> bool {
        let Some((spi_i, remote)) = self.by_spi.remove(&spi_r) else {
            return false;
        };
        self.by_init.remove(&(spi_i, remote));
        self.dec(remote.ip());
        true
    }

    fn dec(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_source.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_source_and_refuses_over_the_limits() {
        let l = HalfOpenLimits {
            total: 3,
            per_source: 2,
        };
        let a: SocketAddr = "192.0.2.1:500".parse().unwrap();
        let a2: SocketAddr = "192.0.2.1:4500".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:500".parse().unwrap();
        let mut h = HalfOpen::default();
        assert_eq!(h.check(&l, a.ip()), Ok(()));
        h.insert(1, a, 101);
        h.insert(2, a2, 102);
        assert_eq!(h.from_source(a.ip()), 2);
        assert_eq!(h.check(&l, a.ip()), Err(OverLimit::Source));
        assert_eq!(h.check(&l, b.ip()), Ok(()));
        h.insert(3, b, 103);
        assert_eq!(h.check(&l, b.ip()), Err(OverLimit::Total));
        assert_eq!(h.lookup(2, a2), Some(102));
        assert!(h.remove(102));
        assert!(!h.remove(102));
        assert_eq!(h.lookup(2, a2), None);
        assert_eq!(h.from_source(a.ip()), 1);
        assert_eq!(h.check(&l, a.ip()), Ok(()));
        h.remove(101);
        h.remove(103);
        assert!(h.is_empty() && h.per_source.is_empty());
    }
}
