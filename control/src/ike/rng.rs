//! Randomness as an input of the sans-IO core: the daemon passes the system's generator, tests
//! pass a seeded one so every exchange replays byte for byte.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SecureRandom;

/// A source of random octets (SPIs, nonces, key-exchange secrets, IVs, jitter).
pub trait RandomSource {
    /// Fill `buf` with random octets.
    fn fill(&mut self, buf: &mut [u8]);

    /// A random u64.
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

/// The operating system's CSPRNG (through aws-lc).
#[derive(Default)]
pub struct SystemRandom(aws_lc_rs::rand::SystemRandom);

impl SystemRandom {
    /// A handle on the system generator.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RandomSource for SystemRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        // The system generator only fails if the kernel refuses getrandom(2), which leaves no
        // safe way to go on keying SAs.
        self.0
            .fill(buf)
            .expect("the system random generator failed (getrandom)");
    }
}

/// A deterministic generator for tests and benchmarks: SHA-256 in counter mode over a seed.
/// Not for keys that protect traffic.
pub struct SeededRandom {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededRandom {
    /// A generator whose whole output is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        SeededRandom {
            seed: s,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl RandomSource for SeededRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            if self.used == self.block.len() {
                let mut ctx = digest::Context::new(&digest::SHA256);
                ctx.update(&self.seed);
                ctx.update(&self.counter.to_le_bytes());
                self.block.copy_from_slice(ctx.finish().as_ref());
                self.counter += 1;
                self.used = 0;
            }
            *b = self.block[self.used];
            self.used += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_repeatable_and_seed_dependent() {
        let (mut a, mut b, mut c) = (
            SeededRandom::new(1),
            SeededRandom::new(1),
            SeededRandom::new(2),
        );
        let (mut x, mut y, mut z) = ([0u8; 100], [0u8; 100], [0u8; 100]);
        a.fill(&mut x);
        b.fill(&mut y[..33]);
        b.fill(&mut y[33..]);
        c.fill(&mut z);
        assert_eq!(x, y);
        assert_ne!(x, z);
    }

    #[test]
    fn system_fills() {
        let mut r = SystemRandom::new();
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        r.fill(&mut a);
        r.fill(&mut b);
        assert_ne!(a, b);
    }
}
