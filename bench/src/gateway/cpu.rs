//! The gateway core's own cost: how busy one CPU was over a trial, from `/proc/stat`.
//!
//! Busy is user + nice + system + irq + softirq + steal (idle and iowait are not); the
//! fraction is taken over the CPU's own tick total, so no clock rate is needed. Ticks are
//! USER_HZ (10 ms here): a 1 s trial resolves 1 % of the core, a 200 ms one 5 %. Whatever else
//! ran on that core (the machine is shared) is counted too.

/// One CPU's tick counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// Ticks spent on work (user, nice, system, irq, softirq, steal).
    pub busy: u64,
    /// All ticks (busy, idle and iowait).
    pub total: u64,
}

impl CpuTicks {
    /// Parses the `cpuN` line of `/proc/stat` text.
    pub fn parse(stat: &str, cpu: usize) -> Option<CpuTicks> {
        let name = format!("cpu{cpu}");
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        // user nice system idle iowait irq softirq steal [guest guest_nice: part of user/nice]
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
        Some(CpuTicks {
            busy,
            total: busy + at(3) + at(4),
        })
    }

    /// The counters of `cpu` now (`None` if `/proc/stat` cannot be read or has no such CPU).
    pub fn now(cpu: usize) -> Option<CpuTicks> {
        CpuTicks::parse(&std::fs::read_to_string("/proc/stat").ok()?, cpu)
    }

    /// The fraction of the time since `earlier` the CPU was busy (`None` if no tick passed).
    pub fn busy_since(&self, earlier: &CpuTicks) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

/// CPU time per packet in nanoseconds: a core `busy` (fraction) for `secs` seconds that
/// forwarded `packets` (`None` without packets).
pub fn ns_per_packet(busy: f64, secs: f64, packets: u64) -> Option<f64> {
    (packets > 0).then(|| busy * secs * 1e9 / packets as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 0 10 100 0 0 0 0 0 0\n\
                        cpu0 1 2 3 40 5 6 7 8 0 0\n\
                        cpu1 100 0 50 800 10 0 40 10 0 0\n\
                        intr 1 2 3\n";

    #[test]
    fn parses_one_cpu() {
        let a = CpuTicks::parse(STAT, 1).unwrap();
        assert_eq!(
            a,
            CpuTicks {
                busy: 200,
                total: 1010
            }
        );
        assert_eq!(
            CpuTicks::parse(STAT, 0).unwrap().busy,
            1 + 2 + 3 + 6 + 7 + 8
        );
        assert!(CpuTicks::parse(STAT, 2).is_none());
    }

    #[test]
    fn busy_fraction_and_cost() {
        let a = CpuTicks {
            busy: 200,
            total: 1000,
        };
        let b = CpuTicks {
            busy: 275,
            total: 1100,
        };
        assert_eq!(b.busy_since(&a), Some(0.75));
        assert_eq!(a.busy_since(&a), None);
        // Three quarters of a core for 2 s, 1.5 million packets: 1 µs each.
        assert_eq!(ns_per_packet(0.75, 2.0, 1_500_000), Some(1000.0));
        assert_eq!(ns_per_packet(0.75, 2.0, 0), None);
    }
}
