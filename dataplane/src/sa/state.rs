//! The mutable state of an SA as one worker owns it: keys expanded, sequence numbers,
//! replay window, counters.

use crate::counters::SaCounters;
use crate::crypto::Backend;
use crate::crypto::{EspKey, SALT_LEN};
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

/// The bytes ESP adds around the payload with an SA's suite, kept with the SA's hot fields so
/// the packet path reads two bytes instead of deriving them from the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Framing {
    /// ESP header and IV.
    pub prefix: u8,
    /// ICV.
    pub icv: u8,
}

impl Framing {
    fn of(suite: crate::crypto::Suite) -> Framing {
        Framing {
            prefix: (crate::wire::esp::HEADER_LEN + suite.iv_len()) as u8,
            icv: suite.icv_len() as u8,
        }
    }
}

/// Expands the SA's keys; returns them with the salt of the AEAD suites (zero for CBC).
fn expand_keys(cfg: &SaConfig, backend: Backend) -> Result<(EspKey, [u8; SALT_LEN]), String> {
    let k = cfg.key.expose_secret();
    let n = cfg.suite.key_len();
    let mut salt = [0u8; SALT_LEN];
    salt[..cfg.suite.salt_len()].copy_from_slice(&k[n..n + cfg.suite.salt_len()]);
    let integ = cfg.integ_key.as_ref().map(|k| k.expose_secret());
    let key = EspKey::new(backend, cfg.suite, &k[..n], integ).map_err(|e| e.to_string())?;
    Ok((key, salt))
}

/// An outbound SA. Invariant: `seq` is the last number sent; it never wraps.
pub struct OutboundSa {
    /// The configuration it was built from.
    pub cfg: SaConfig,
    pub(crate) cipher: EspKey,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) framing: Framing,
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
        crate::prefetch::value(&self.cipher);
        crate::prefetch_fields!(
            self.salt,
            self.framing,
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
        self.cipher.prefetch();
        self.cfg.local_ts.prefetch();
        self.cfg.remote_ts.prefetch();
    }

    /// Expands the key. The configuration must have passed `SaConfig::validate`.
    pub fn new(cfg: SaConfig, backend: Backend) -> Result<Self, String> {
        cfg.validate()?;
        if cfg.direction != Direction::Out {
            return Err("not an outbound SA".into());
        }
        let (cipher, salt) = expand_keys(&cfg, backend)?;
        let suite = cfg.suite;
        Ok(OutboundSa {
            seq: cfg.seq,
            cfg,
            cipher,
            salt,
            framing: Framing::of(suite),
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
        let align = usize::from(self.cfg.pad_align).max(self.cfg.suite.block_len());
        let fixed =
            udp + crate::wire::esp::HEADER_LEN + self.cfg.suite.iv_len() + self.cfg.suite.icv_len();
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
    pub(crate) cipher: EspKey,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) framing: Framing,
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
        crate::prefetch::value(&self.cipher);
        crate::prefetch_fields!(
            self.salt,
            self.framing,
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
        self.cipher.prefetch();
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
        let (cipher, salt) = expand_keys(&cfg, backend)?;
        let suite = cfg.suite;
        Ok(InboundSa {
            replay: ReplayWindow::new(cfg.replay_window, cfg.seq, cfg.esn),
            cfg,
            cipher,
            salt,
            framing: Framing::of(suite),
            counters: SaCounters::default(),
            life: LifeState::default(),
        })
    }
}
