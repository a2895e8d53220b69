//! IRQ affinity of the interface's queue IRQs against the CPU of the worker serving each
//! queue.
//!
//! Why: in need-wakeup (adaptive) mode the driver's NAPI poll, which moves packets to the
//! AF_XDP ring, runs in softirq on the CPU the queue's IRQ is delivered to. On the worker's
//! CPU the packets are in its cache; elsewhere every packet crosses caches, and the softirq
//! competes with whatever else runs there (irqbalance moves IRQs by load, not by worker).

use super::check::{Check, Status};
use super::host::{format_cpulist, Roots};
use esprit_api::WorkerRuntime;

/// The IRQ affinity of `iface`'s queues against their workers' CPUs.
pub fn irq_affinity(iface: &str, workers: &[WorkerRuntime], roots: &Roots) -> Check {
    let c = |s, d: String| Check::iface("irq_affinity", iface, s, d);
    let irqs = roots.iface_irqs(iface);
    if irqs.is_empty() {
        return c(
            Status::NotApplicable,
            format!(
                "no IRQ named after {iface} in /proc/interrupts (a virtual interface has none)"
            ),
        );
    }
    let mut wrong = Vec::new();
    let mut fixes = Vec::new();
    let mut checked = 0;
    for w in workers {
        let Some(cpu) = w.pinned_cpu else { continue };
        for (irq, _) in irqs.iter().filter(|(_, q)| *q == Some(w.queue)) {
            checked += 1;
            let aff = roots.irq_affinity(*irq).unwrap_or_default();
            if !aff.contains(&cpu) {
                wrong.push(format!(
                    "queue {}'s IRQ {irq} goes to CPUs {} but worker {} runs on CPU {cpu}",
                    w.queue,
                    format_cpulist(&aff),
                    w.queue
                ));
                fixes.push(format!("echo {cpu} > /proc/irq/{irq}/smp_affinity_list"));
            }
        }
    }
    if !wrong.is_empty() {
        return c(Status::Warn, wrong.join("; ")).fix(format!(
            "{} (and keep irqbalance off these IRQs)",
            fixes.join("; ")
        ));
    }
    if checked == 0 {
        return c(
            Status::NotApplicable,
            format!(
                "{} IRQ(s) of {iface}, none with the queue number of a pinned worker",
                irqs.len()
            ),
        );
    }
    c(
        Status::Ok,
        format!("{checked} queue IRQ(s) delivered to their worker's CPU"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    fn worker(queue: u32, cpu: Option<u32>) -> WorkerRuntime {
        fixtures::worker(queue, cpu, &Vec::from_iter(cpu))
    }

    #[test]
    fn affinities() {
        let roots = fixtures::roots("irq");
        let dir = roots.sys.clone();
        std::fs::write(
            dir.join("interrupts"),
            "           CPU0 CPU1 CPU2 CPU3\n\
             40: 0 0 0 0 PCI-MSI 1-edge nic0\n\
             41: 9 0 0 0 PCI-MSI 2-edge nic0-TxRx-0\n\
             42: 0 9 0 0 PCI-MSI 3-edge nic0-TxRx-1\n",
        )
        .unwrap();
        for (irq, list) in [(40, "0-3"), (41, "2"), (42, "0-1")] {
            let d = dir.join("irq").join(irq.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("smp_affinity_list"), format!("{list}\n")).unwrap();
        }
        let ok = irq_affinity("nic0", &[worker(0, Some(2))], &roots);
        assert_eq!(ok.status, Status::Ok, "{}", ok.detail);
        let bad = irq_affinity("nic0", &[worker(0, Some(2)), worker(1, Some(3))], &roots);
        assert_eq!(bad.status, Status::Warn);
        assert!(
            bad.detail.contains("IRQ 42 goes to CPUs 0-1"),
            "{}",
            bad.detail
        );
        assert!(bad
            .fix
            .unwrap()
            .starts_with("echo 3 > /proc/irq/42/smp_affinity_list"));
        assert_eq!(
            irq_affinity("nic0", &[worker(0, None)], &roots).status,
            Status::NotApplicable
        );
        assert_eq!(
            irq_affinity("veth0", &[worker(0, Some(1))], &roots).status,
            Status::NotApplicable
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
