//! The mutable state of an SA as one worker owns it: keys expanded, sequence numbers,
//! replay window, counters.

use crate::counters::SaCounters;
use crate::crypto::aead::{new_aead, AeadKey, Backend};
use crate::crypto::SALT_LEN;
use crate::sa::event::{SaEvent, SaEventKind, EV_HARD, EV_SEQ, EV_SOFT};
use crate::sa::replay::ReplayWindow;
use crate::sa::{Direction, Lifetime, SaConfig};

/// Lifetime bookkeeping shared by both directions.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LifeState {
    /// Soft limit already reported.
    pub soft_done: bool,
    /// Hard limit reached: the SA drops everything.
    pub hard: bool,
    /// Events not yet collected (EV_* bits).
    pub pending: u8,
}

impl LifeState {
    /// Checks the limits after counters moved; sets pending events.
    #[inline]
    pub(crate) fn check(&mut self, l: &Lifetime, c: &SaCounters) {
        let over = |lim: Option<u64>, v: u64| lim.is_some_and(|x| v >= x);
        if !self.soft_done && (over(l.soft_bytes, c.bytes) || over(l.soft_packets, c.packets)) {
            self.soft_done = true;
            self.pending |= EV_SOFT;
        }
        if !self.hard && (over(l.hard_bytes, c.bytes) || over(l.hard_packets, c.packets)) {
            self.hard = true;
            self.pending |= EV_HARD;
        }
    }
}

/// Turns pending bits into events for `cfg`.
pub(crate) fn drain_events(cfg: &SaConfig, pending: &mut u8, out: &mut impl FnMut(SaEvent)) {
    for (bit, kind) in [
        (EV_SOFT, SaEventKind::SoftExpire),
        (EV_HARD, SaEventKind::HardExpire),
        (EV_SEQ, SaEventKind::SeqExhausted),
    ] {
        if *pending & bit != 0 {
            out(SaEvent {
                kind,
                spi: cfg.spi,
                direction: cfg.direction,
                local: cfg.local,
                remote: cfg.remote,
                policy: None,
            });
        }
    }
    *pending = 0;
}

fn split_key(cfg: &SaConfig) -> (&[u8], [u8; SALT_LEN]) {
    let k = cfg.key.expose_secret();
    let n = cfg.suite.key_len();
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&k[n..n + SALT_LEN]);
    (&k[..n], salt)
}

/// Builds the RFC 4106 nonce: salt || explicit IV.
#[inline]
pub(crate) fn nonce(salt: &[u8; SALT_LEN], iv: &[u8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(&iv[..8]);
    n
}

/// An outbound SA. Invariant: `seq` is the last number sent; it never wraps.
pub struct OutboundSa {
    /// The configuration it was built from.
    pub cfg: SaConfig,
    pub(crate) aead: AeadKey,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) seq: u64,
    /// Packets, bytes and drops.
    pub counters: SaCounters,
    pub(crate) exhausted: bool,
    pub(crate) life: LifeState,
}

impl OutboundSa {
    /// Starts loading the fields of this SA the fast path reads, its key schedule included
    /// (see [`crate::worker::Pipeline`]), not the whole SA: the configuration's cold parts
    /// and the drop counters stay out of the cache.
    #[inline]
    pub fn prefetch_hot(&self) {
        self.cfg.prefetch_hot();
        crate::sa::prefetch::value(&self.aead);
        crate::prefetch_fields!(
            self.salt,
            self.seq,
            self.exhausted,
            self.life,
            self.counters.packets,
            self.counters.bytes,
        );
    }

    /// Starts loading what this SA points at (selectors of more than two prefixes) into the
    /// cache (see [`crate::worker::Pipeline`]); the SA itself must be loaded already.
    #[inline]
    pub fn prefetch(&self) {
        self.cfg.local_ts.prefetch();
        self.cfg.remote_ts.prefetch();
    }

    /// Expands the key. The configuration must have passed `SaConfig::validate`.
    pub fn new(cfg: SaConfig, backend: Backend) -> Result<Self, String> {
        cfg.validate()?;
        if cfg.direction != Direction::Out {
            return Err("not an outbound SA".into());
        }
        let (key, salt) = split_key(&cfg);
        let aead = new_aead(backend, cfg.suite, key).map_err(|e| e.to_string())?;
        Ok(OutboundSa {
            seq: cfg.seq,
            cfg,
            aead,
            salt,
            counters: SaCounters::default(),
            exhausted: false,
            life: LifeState::default(),
        })
    }

    /// The last sequence number sent.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// True once a hard lifetime limit is reached: the SA processes nothing more.
    pub fn is_expired(&self) -> bool {
        self.life.hard
    }

    /// Events raised since the last call (soft/hard expiry, sequence exhaustion).
    pub fn take_events(&mut self, mut out: impl FnMut(SaEvent)) {
        drain_events(&self.cfg, &mut self.life.pending, &mut out);
    }

    /// True once the sequence space is used up: the SA sends nothing more and must be
    /// replaced (the control plane sees this as a hard expiry).
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
    }

    /// The largest inner packet (tunnel mode) or IP packet (transport mode) that fits a WAN MTU
    /// of `mtu` once encapsulated with this SA: outer header, UDP, ESP header and IV, trailer
    /// padded to `pad_align`, ICV.
    pub fn max_inner_len(&self, mtu: usize) -> usize {
        let outer = if self.cfg.local.is_ipv6() { 40 } else { 20 };
        let udp = if self.cfg.encap.is_some() { 8 } else { 0 };
        let align = usize::from(self.cfg.pad_align.max(4));
        let fixed = udp + crate::crypto::ESP_PREFIX_LEN + crate::crypto::ICV_LEN;
        match self.cfg.mode {
            crate::sa::Mode::Tunnel => {
                let avail = mtu.saturating_sub(outer + fixed);
                (avail / align * align).saturating_sub(crate::wire::esp::TRAILER_LEN)
            }
            crate::sa::Mode::Transport => {
                let avail = mtu.saturating_sub(outer + fixed);
                outer + (avail / align * align).saturating_sub(crate::wire::esp::TRAILER_LEN)
            }
        }
    }

    /// The next sequence number to send, or `None` when the space is used up.
    #[inline]
    pub(crate) fn next_seq(&self) -> Option<u64> {
        let limit = if self.cfg.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        (self.seq < limit).then_some(self.seq + 1)
    }
}

/// An inbound SA with its replay window.
pub struct InboundSa {
    /// The configuration it was built from.
    pub cfg: SaConfig,
    pub(crate) aead: AeadKey,
    pub(crate) salt: [u8; SALT_LEN],
    /// The anti-replay window.
    pub replay: ReplayWindow,
    /// Packets, bytes and drops.
    pub counters: SaCounters,
    pub(crate) life: LifeState,
}

impl InboundSa {
    /// Starts loading the fields of this SA the fast path reads, its key schedule included
    /// (see [`crate::worker::Pipeline`]), not the whole SA.
    #[inline]
    pub fn prefetch_hot(&self) {
        self.cfg.prefetch_hot();
        crate::sa::prefetch::value(&self.aead);
        crate::prefetch_fields!(
            self.salt,
            self.replay,
            self.life,
            self.counters.packets,
            self.counters.bytes,
        );
    }

    /// Starts loading what this SA points at (replay bitmap, selectors of more than two
    /// prefixes) into the cache (see [`crate::worker::Pipeline`]); the SA itself must be
    /// loaded already.
    #[inline]
    pub fn prefetch(&self) {
        self.replay.prefetch();
        self.cfg.remote_ts.prefetch();
        self.cfg.local_ts.prefetch();
    }

    /// True once a hard lifetime limit is reached: the SA processes nothing more.
    pub fn is_expired(&self) -> bool {
        self.life.hard
    }

    /// Events raised since the last call (soft/hard expiry).
    pub fn take_events(&mut self, mut out: impl FnMut(SaEvent)) {
        drain_events(&self.cfg, &mut self.life.pending, &mut out);
    }

    /// Expands the key and sets up the replay window.
    pub fn new(cfg: SaConfig, backend: Backend) -> Result<Self, String> {
        cfg.validate()?;
        if cfg.direction != Direction::In {
            return Err("not an inbound SA".into());
        }
        let (key, salt) = split_key(&cfg);
        let aead = new_aead(backend, cfg.suite, key).map_err(|e| e.to_string())?;
        Ok(InboundSa {
            replay: ReplayWindow::new(cfg.replay_window, cfg.seq, cfg.esn),
            cfg,
            aead,
            salt,
            counters: SaCounters::default(),
            life: LifeState::default(),
        })
    }
}
