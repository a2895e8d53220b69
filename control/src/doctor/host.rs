//! What `espctl doctor` reads from the host: sysfs and procfs under roots a test can point
//! at a fixture tree (`/sys` and `/proc` otherwise).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where sysfs and procfs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// sysfs, normally `/sys`.
    pub sys: PathBuf,
    /// procfs, normally `/proc`.
    pub proc: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            sys: PathBuf::from("/sys"),
            proc: PathBuf::from("/proc"),
        }
    }
}

/// Parses a kernel CPU list (`0-3,8,10-11`); `None` if it is not one.
pub fn parse_cpulist(s: &str) -> Option<Vec<u32>> {
    let s = s.trim();
    let mut out = Vec::new();
    if s.is_empty() {
        return Some(out);
    }
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a || b - a > 65_536 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().ok()?),
        }
    }
    Some(out)
}

/// Formats CPUs as a kernel CPU list (`0-3,8`).
pub fn format_cpulist(cpus: &[u32]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

impl Roots {
    /// `/sys/class/net/<iface>`.
    pub fn net(&self, iface: &str) -> PathBuf {
        self.sys.join("class/net").join(iface)
    }

    /// Whether `iface` is backed by a device (a NIC); virtual interfaces (veth, bridges) have
    /// no `device` link.
    pub fn has_device(&self, iface: &str) -> bool {
        self.net(iface).join("device").exists()
    }

    /// The NUMA node of `iface`'s device: `None` without a device, `Some(-1)` when the
    /// platform reports none.
    pub fn iface_numa_node(&self, iface: &str) -> Option<i32> {
        read_trim(&self.net(iface).join("device/numa_node")).and_then(|s| s.parse().ok())
    }

    /// Each NUMA node's CPUs (`/sys/devices/system/node/nodeN/cpulist`).
    pub fn numa_nodes(&self) -> BTreeMap<u32, Vec<u32>> {
        let mut out = BTreeMap::new();
        let dir = self.sys.join("devices/system/node");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return out;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(n) = name
                .strip_prefix("node")
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(cpus) = read_trim(&e.path().join("cpulist")).and_then(|s| parse_cpulist(&s))
            {
                out.insert(n, cpus);
            }
        }
        out
    }

    /// The IRQs whose name in `/proc/interrupts` belongs to `iface` (`wan0-TxRx-3`,
    /// `wan0-rx-3`, `wan0-3`…), with the queue number that ends the name, if any.
    pub fn iface_irqs(&self, iface: &str) -> Vec<(u32, Option<u32>)> {
        let Some(text) = read_trim(&self.proc.join("interrupts")) else {
            return Vec::new();
        };
        parse_interrupts(&text, iface)
    }

    /// The CPUs IRQ `irq` may be delivered to (`/proc/irq/N/smp_affinity_list`).
    pub fn irq_affinity(&self, irq: u32) -> Option<Vec<u32>> {
        read_trim(
            &self
                .proc
                .join("irq")
                .join(irq.to_string())
                .join("smp_affinity_list"),
        )
        .and_then(|s| parse_cpulist(&s))
    }
}

/// The IRQs of `iface` in the text of `/proc/interrupts`: lines `N: counts… chip… name`
/// whose last field is `iface` or starts with `iface-`; with the number ending the name.
pub fn parse_interrupts(text: &str, iface: &str) -> Vec<(u32, Option<u32>)> {
    let prefix = format!("{iface}-");
    text.lines()
        .filter_map(|l| {
            let (n, rest) = l.trim_start().split_once(':')?;
            let irq: u32 = n.trim().parse().ok()?;
            let name = rest.split_whitespace().last()?;
            if name != iface && !name.starts_with(&prefix) {
                return None;
            }
            let digits: String = name
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_digit())
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let queue = if name.len() > iface.len() {
                digits.parse().ok()
            } else {
                None
            };
            Some((irq, queue))
        })
        .collect()
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpulists() {
        assert_eq!(
            parse_cpulist("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpulist(""), Some(vec![]));
        assert_eq!(parse_cpulist("3-1"), None);
        assert_eq!(parse_cpulist("x"), None);
        assert_eq!(format_cpulist(&[8, 0, 1, 2, 3, 10, 11]), "0-3,8,10-11");
    }

    #[test]
    fn interrupts_of_an_interface() {
        let text = "           CPU0       CPU1\n\
             24:          0          0   PCI-MSI 1048576-edge      wan0\n\
             25:       1234          0   PCI-MSI 1048577-edge      wan0-TxRx-0\n\
             26:          0       5678   PCI-MSI 1048578-edge      wan0-TxRx-1\n\
             27:          0          0   PCI-MSI 1048579-edge      wan01-TxRx-0\n\
             28:          0          0   PCI-MSI 1048580-edge      lan0-rx-0\n\
            NMI:          0          0   Non-maskable interrupts\n";
        assert_eq!(
            parse_interrupts(text, "wan0"),
            vec![(24, None), (25, Some(0)), (26, Some(1))]
        );
        assert_eq!(parse_interrupts(text, "lan0"), vec![(28, Some(0))]);
        assert!(parse_interrupts(text, "veth0").is_empty());
    }
}
