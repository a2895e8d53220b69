//! The gateway core's own cost: how busy one CPU was over a trial, from `/proc/stat`.
//!
//! Busy is user + nice + system + irq + softirq + steal (idle and iowait are not); the
//! fraction is taken over the CPU's own tick total, so no clock rate is needed. Ticks are
//! USER_HZ (10 ms here): a 1 s trial resolves 1 % of the core, a 200 ms one 5 %. Whatever else
//! ran on that core (the machine is shared) is counted too.
//!
//! This kernel samples CPU time at the tick (no IRQ time accounting) and stops the tick on an
//! idle CPU: softirq work that wakes an idle core (the kernel's forwarding behind RPS) was
//! never sampled, and read as free. So a [`Soaker`] keeps the gateway's core out of idle: a
//! SCHED_IDLE thread pinned there that spins on whatever time nothing else wants. Its own
//! user ticks are taken off the busy count; the rest is the gateway's (and any neighbour's)
//! work.

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

    /// The counters of `cpu` now, less the ticks of thread `soaker` (`None` if `/proc/stat`
    /// cannot be read or has no such CPU).
    pub fn now(cpu: usize, soaker: Option<u32>) -> Option<CpuTicks> {
        let mut t = CpuTicks::parse(&std::fs::read_to_string("/proc/stat").ok()?, cpu)?;
        if let Some(tid) = soaker {
            t.busy = t.busy.saturating_sub(thread_ticks(tid)?);
        }
        Some(t)
    }

    /// The fraction of the time since `earlier` the CPU was busy (`None` if no tick passed).
    pub fn busy_since(&self, earlier: &CpuTicks) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

/// utime of `stat` text (`/proc/<pid>/task/<tid>/stat`), ticks. Not stime: with tick
/// accounting, a tick that lands in softirq while the soaker is current counts as softirq on
/// the CPU *and* as the soaker's system time, and that softirq is the gateway's work.
fn parse_thread_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11)?.parse::<u64>().ok()
}

/// User-mode CPU ticks of thread `tid` of this process.
pub fn thread_ticks(tid: u32) -> Option<u64> {
    parse_thread_ticks(&std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?)
}

/// A SCHED_IDLE thread spinning on one core, so that the core never idles (see the module
/// documentation). Stops when dropped.
pub struct Soaker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    /// Its thread id.
    pub tid: u32,
}

impl Soaker {
    /// Starts it on `core`; `None` if it could not be pinned or made SCHED_IDLE.
    pub fn start(core: usize) -> Option<Soaker> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("gw-core-soaker".into())
            .spawn(move || {
                let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: core });
                let tid = super::placement::current_tid();
                let idle = tid.is_some_and(|t| {
                    std::process::Command::new("chrt")
                        .args(["-i", "-p", "0", &t.to_string()])
                        .output()
                        .is_ok_and(|o| o.status.success())
                });
                let ok = pinned && idle;
                let _ = tx.send(tid.filter(|_| ok));
                while ok && !stop2.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
            .ok()?;
        let mut s = Soaker {
            stop,
            handle: Some(handle),
            tid: 0,
        };
        match rx.recv().ok().flatten() {
            Some(tid) => {
                s.tid = tid;
                Some(s)
            }
            None => None,
        }
    }
}

impl Drop for Soaker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
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
    fn thread_ticks_parse() {
        let stat = "1234 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 170 30 0 0 20 0";
        assert_eq!(parse_thread_ticks(stat), Some(170));
        assert!(thread_ticks(placement_tid()).is_some());
    }

    fn placement_tid() -> u32 {
        super::super::placement::current_tid().unwrap()
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
