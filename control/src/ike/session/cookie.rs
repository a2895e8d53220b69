//! COOKIEs of RFC 7296 §2.6 with a rotating secret: `Cookie = <VersionIDofSecret> |
//! Hash(Ni | IPi | SPIi | <secret>)`. The secret is replaced every `lifetime` and after
//! `max_uses` cookies; a cookie made with the secret just replaced is still accepted for
//! `grace`, older ones never.

use crate::ike::rng::RandomSource;
use aws_lc_rs::constant_time;
use aws_lc_rs::digest;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// When the COOKIE secret is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookiePolicy {
    /// Age at which a secret is replaced.
    pub lifetime: Duration,
    /// Cookies made with one secret before it is replaced.
    pub max_uses: u64,
    /// How long cookies made with the replaced secret are still accepted.
    pub grace: Duration,
}

impl Default for CookiePolicy {
    fn default() -> Self {
        CookiePolicy {
            lifetime: Duration::from_secs(300),
            max_uses: 100_000,
            grace: Duration::from_secs(60),
        }
    }
}

struct Secret {
    version: u8,
    key: Zeroizing<[u8; 32]>,
    made: Instant,
    uses: u64,
}

/// The current COOKIE secret and the one it replaced.
pub struct CookieJar {
    policy: CookiePolicy,
    current: Secret,
    /// The replaced secret and when it was retired.
    previous: Option<(Secret, Instant)>,
    rotations: u64,
}

impl CookieJar {
    /// A jar with a fresh secret made at `now`.
    pub fn new(policy: CookiePolicy, rng: &mut dyn RandomSource, now: Instant) -> Self {
        CookieJar {
            policy,
            current: Self::secret(rng, 0, now),
            previous: None,
            rotations: 0,
        }
    }

    fn secret(rng: &mut dyn RandomSource, version: u8, now: Instant) -> Secret {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill(&mut key[..]);
        Secret {
            version,
            key,
            made: now,
            uses: 0,
        }
    }

    /// How many times the secret was replaced.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// Replace the secret if it is too old or used too often.
    fn maybe_rotate(&mut self, rng: &mut dyn RandomSource, now: Instant) {
        let expires = self.current.made + self.policy.lifetime;
        if now < expires && self.current.uses < self.policy.max_uses {
            return;
        }
        // A secret that outlived its lifetime unused retires when it should have.
        let retired = now.min(expires);
        let next = Self::secret(rng, self.current.version.wrapping_add(1), now);
        let old = std::mem::replace(&mut self.current, next);
        self.previous = Some((old, retired));
        self.rotations += 1;
    }

    fn hash(key: &[u8; 32], version: u8, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(ni);
        match ip {
            IpAddr::V4(a) => ctx.update(&a.octets()),
            IpAddr::V6(a) => ctx.update(&a.octets()),
        }
        ctx.update(&spi_i.to_be_bytes());
        ctx.update(key);
        let mut c = vec![version];
        c.extend_from_slice(&ctx.finish().as_ref()[..16]);
        c
    }

    /// A cookie for this initiator, made with the current secret (rotated first if due).
    pub fn make(
        &mut self,
        rng: &mut dyn RandomSource,
        now: Instant,
        ni: &[u8],
        ip: IpAddr,
        spi_i: u64,
    ) -> Vec<u8> {
        self.maybe_rotate(rng, now);
        self.current.uses += 1;
        Self::hash(&self.current.key, self.current.version, ni, ip, spi_i)
    }

    /// Whether `cookie` is one we made for this initiator with the current secret, or with the
    /// previous one less than `grace` after it was retired.
    pub fn check(
        &mut self,
        rng: &mut dyn RandomSource,
        now: Instant,
        cookie: &[u8],
        ni: &[u8],
        ip: IpAddr,
        spi_i: u64,
    ) -> bool {
        self.maybe_rotate(rng, now);
        let Some(&version) = cookie.first() else {
            return false;
        };
        let key = if version == self.current.version {
            &self.current.key
        } else {
            match &self.previous {
                Some((s, retired))
                    if s.version == version && now < *retired + self.policy.grace =>
                {
                    &s.key
                }
                _ => return false,
            }
        };
        let want = Self::hash(key, version, ni, ip, spi_i);
        constant_time::verify_slices_are_equal(cookie, &want).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::rng::SeededRandom;

    fn jar(now: Instant) -> (CookieJar, SeededRandom) {
        let mut rng = SeededRandom::new(7);
        let policy = CookiePolicy {
            lifetime: Duration::from_secs(300),
            max_uses: 3,
            grace: Duration::from_secs(60),
        };
        (CookieJar::new(policy, &mut rng, now), rng)
    }

    #[test]
    fn rotation_keeps_the_previous_secret_for_the_grace_period_only() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let (mut j, mut rng) = jar(t0);
        let c0 = j.make(&mut rng, t0, b"ni", ip, 1);
        assert!(j.check(&mut rng, t0, &c0, b"ni", ip, 1));
        // Bound to the nonce, the address and the SPI.
        assert!(!j.check(&mut rng, t0, &c0, b"nj", ip, 1));
        assert!(!j.check(&mut rng, t0, &c0, b"ni", "192.0.2.2".parse().unwrap(), 1));
        assert!(!j.check(&mut rng, t0, &c0, b"ni", ip, 2));
        assert!(!j.check(&mut rng, t0, &[], b"ni", ip, 1));
        // After its lifetime the secret is replaced; the old cookie passes within the grace.
        let t1 = t0 + Duration::from_secs(300);
        let c1 = j.make(&mut rng, t1, b"ni", ip, 1);
        assert_eq!(j.rotations(), 1);
        assert_ne!(c0, c1);
        assert!(j.check(&mut rng, t1 + Duration::from_secs(59), &c0, b"ni", ip, 1));
        assert!(!j.check(&mut rng, t1 + Duration::from_secs(60), &c0, b"ni", ip, 1));
        assert!(j.check(&mut rng, t1 + Duration::from_secs(60), &c1, b"ni", ip, 1));
        // A second rotation retires c1's secret; c0's (two secrets back) is refused at once.
        let t2 = t1 + Duration::from_secs(300);
        let c2 = j.make(&mut rng, t2, b"ni", ip, 1);
        assert_eq!(j.rotations(), 2);
        assert!(j.check(&mut rng, t2, &c1, b"ni", ip, 1));
        assert!(j.check(&mut rng, t2, &c2, b"ni", ip, 1));
        assert!(!j.check(&mut rng, t2, &c0, b"ni", ip, 1));
    }

    #[test]
    fn secret_is_replaced_after_max_uses_and_after_idle_lifetimes() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let (mut j, mut rng) = jar(t0);
        let first: Vec<Vec<u8>> = (0..3).map(|i| j.make(&mut rng, t0, b"n", ip, i)).collect();
        assert_eq!(j.rotations(), 0);
        let fourth = j.make(&mut rng, t0, b"n", ip, 3);
        assert_eq!(j.rotations(), 1);
        assert_ne!(first[0][0], fourth[0]);
        assert!(j.check(&mut rng, t0, &first[0], b"n", ip, 0));
        // Idle for longer than a lifetime plus the grace: the secret that should have retired
        // at t0 + 300 s takes no grace from the late rotation.
        let late = t0 + Duration::from_secs(300 + 61);
        assert!(!j.check(&mut rng, late, &fourth, b"n", ip, 3));
        assert_eq!(j.rotations(), 2);
    }
}
