//! Convergence of the route table through the kernel: in a network namespace of its own
//! (`lpm-conv-<pid>`, under /tmp/esprit-netns.lock), one end of a veth pair stands for a tunnel
//! interface; the dataplane's own route follower ([`RouteFollower`], the real netlink code,
//! in a thread moved into the namespace) feeds a [`Router`] whose one "worker" is this
//! measurement. `ip -batch` installs every prefix through the interface (as a routing daemon
//! would, one netlink request per route), and the clock runs until a table holding them all
//! reaches the worker; then a withdrawal of some of them, the same way. Needs root.

use dataplane::daemon::follower::RouteFollower;
use dataplane::daemon::router::Router;
use dataplane::daemon::tunnels::TunnelStats;
use dataplane::sa::Prefix;
use dataplane::worker::handoff::Waker;
use dataplane::worker::xsk::WorkerUpdate;
use dataplane::worker::Port;
use serde::Serialize;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Convergence figures.
#[derive(Debug, Clone, Serialize)]
pub struct Convergence {
    /// Routes installed (IPv4 + IPv6).
    pub routes: usize,
    /// Seconds `ip -batch` took to install them (the kernel's own pace).
    pub install_s: f64,
    /// Seconds from the start of the installation until the workers' table held them all.
    pub converged_s: f64,
    /// Copies of the table given to the worker during the installation.
    pub publishes: usize,
    /// Routes withdrawn.
    pub withdrawn: usize,
    /// Seconds `ip -batch` took to withdraw them.
    pub withdraw_install_s: f64,
    /// Seconds from the start of the withdrawal until the workers' table had lost them all.
    pub withdraw_converged_s: f64,
    /// Route notifications the follower read.
    pub messages: u64,
    /// Full reads of the kernel's table (start, lost notifications, resync).
    pub dumps: u64,
    /// Times notifications were lost (ENOBUFS).
    pub lost: u64,
    /// Follower thread CPU seconds over both phases.
    pub follower_cpu_s: f64,
    /// Heap growth over the installation, MB: the follower's state, the router's map of
    /// kernel routes, its master table (the workers' copies are dropped as they arrive).
    pub heap_mb: f64,
}

impl Convergence {
    /// Prints the figures.
    pub fn print(&self) {
        println!(
            "  convergence through the kernel ({} routes via `ip -batch` on a veth interface):",
            self.routes
        );
        println!(
            "    installed in {:.2} s by ip; in the workers' table {:.2} s after the start ({} copies published)",
            self.install_s, self.converged_s, self.publishes
        );
        println!(
            "    withdrawal of {}: {:.3} s by ip, {:.3} s until gone from the workers' table",
            self.withdrawn, self.withdraw_install_s, self.withdraw_converged_s
        );
        println!(
            "    follower: {} notifications, {} full reads, {} losses (ENOBUFS), {:.2} s CPU; heap +{:.0} MB",
            self.messages, self.dumps, self.lost, self.follower_cpu_s, self.heap_mb
        );
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Runs `ip -n ns -batch -` over `lines`; returns how long it took.
fn batch(ns: &str, lines: &[String]) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip -batch: {e}"))?;
    {
        let mut w = std::io::BufWriter::new(child.stdin.take().ok_or("ip -batch: no stdin")?);
        for l in lines {
            writeln!(w, "{l}").map_err(|e| format!("ip -batch: {e}"))?;
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "ip -batch: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        ));
    }
    Ok(t0.elapsed())
}

/// Waits for tables on `rx` until one's number of routes satisfies `done` (or `limit`
/// passes, or the follower ends); returns when it arrived (since `t0`), how many tables came
/// and that table's number of routes.
fn until(
    rx: &Receiver<WorkerUpdate>,
    done: impl Fn(usize) -> bool,
    t0: Instant,
    limit: Duration,
    alive: &dyn Fn() -> bool,
) -> Result<(Duration, usize, usize), String> {
    let mut n = 0;
    let mut last = None;
    while t0.elapsed() < limit && alive() {
        if let Ok(WorkerUpdate::Routes(t)) = rx.recv_timeout(Duration::from_millis(100)) {
            n += 1;
            last = Some(t.len());
            if done(t.len()) {
                return Ok((t0.elapsed(), n, t.len()));
            }
        }
    }
    Err(format!(
        "the table did not converge in {limit:?} (last had {last:?} routes)"
    ))
}

/// The namespace's lock file, held while the namespace exists.
struct Lock {
    _file: std::fs::File,
}

impl Lock {
    fn take() -> Result<Lock, String> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/esprit-netns.lock")
            .map_err(|e| format!("/tmp/esprit-netns.lock: {e}"))?;
        // SAFETY: flock on a descriptor we own; released when the file is closed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!("flock: {}", std::io::Error::last_os_error()));
        }
        Ok(Lock { _file: f })
    }
}

/// The namespace, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

/// Moves the calling thread into network namespace `ns`.
fn enter(ns: &str) -> Result<(), String> {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).map_err(|e| e.to_string())?;
    // SAFETY: setns on a namespace descriptor we own; it changes only this thread's namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the calling thread's CPU clock into a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Measures convergence of `v4` and `v6` through the kernel, then the withdrawal of
/// `withdraw` of them.
pub fn measure(v4: &[Prefix], v6: &[Prefix], withdraw: usize) -> Result<Convergence, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root".into());
    }
    let _lock = Lock::take()?;
    let ns = Netns(format!("lpm-conv-{}", std::process::id()));
    ip(&["netns", "add", &ns.0])?;
    ip(&["-n", &ns.0, "link", "set", "lo", "up"])?;
    ip(&[
        "-n", &ns.0, "link", "add", "lpm0", "type", "veth", "peer", "name", "lpm1",
    ])?;
    ip(&["-n", &ns.0, "link", "set", "lpm1", "up"])?;
    ip(&["-n", &ns.0, "link", "set", "lpm0", "up"])?;
    let (tx, rx) = sync_channel(1 << 16);
    let router = Arc::new(Router::new(vec![tx]));
    let stats = Arc::new(TunnelStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (cpu_tx, cpu_rx) = sync_channel(1);
    let follower = {
        let (router, stats, stop, name) =
            (router.clone(), stats.clone(), stop.clone(), ns.0.clone());
        std::thread::spawn(move || -> Result<(), String> {
            enter(&name)?;
            let c = std::ffi::CString::new("lpm0").map_err(|e| e.to_string())?;
            // SAFETY: a live NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
            let peer: IpAddr = "100.64.0.1".parse().map_err(|e| format!("{e}"))?;
            let f = RouteFollower {
                sides: [(Port::Lan, 0), (Port::Wan, 0)],
                tunnels: vec![(ifindex, peer)],
                max_routes: usize::MAX,
                stats,
            };
            let (side_tx, _side_rx) = sync_channel(16);
            let waker = Waker::new().map_err(|e| e.to_string())?;
            let c0 = thread_cpu();
            f.run(&router, &side_tx, &waker, &stop);
            let _ = cpu_tx.send(thread_cpu() - c0);
            Ok(())
        })
    };
    // The follower's first read of the (empty) table.
    std::thread::sleep(Duration::from_millis(300));
    while rx.try_recv().is_ok() {}
    let add: Vec<String> = v4
        .iter()
        .chain(v6)
        .map(|p| format!("route add {p} dev lpm0"))
        .collect();
    let total = add.len();
    let limit = Duration::from_secs(if total > 200_000 { 600 } else { 60 });
    let heap0 = crate::pipeline::heap_bytes();
    let t0 = Instant::now();
    let result = (|| {
        let install = batch(&ns.0, &add)?;
        let alive = || !follower.is_finished();
        // The kernel adds a route of its own (fe80::/64) through the interface.
        let (converged, publishes, had) = until(&rx, |n| n >= total, t0, limit, &alive)?;
        let heap = crate::pipeline::heap_bytes().saturating_sub(heap0);
        let gone: Vec<String> = v4
            .iter()
            .chain(v6)
            .step_by((total / withdraw.max(1)).max(1))
            .take(withdraw)
            .map(|p| format!("route del {p} dev lpm0"))
            .collect();
        // A withdrawal in steady state, not at the tail of the installation's burst.
        std::thread::sleep(Duration::from_secs(1));
        let t1 = Instant::now();
        let w_install = batch(&ns.0, &gone)?;
        let left = had - gone.len();
        let (w_converged, _, _) = until(&rx, |n| n <= left, t1, limit, &alive)?;
        Ok::<_, String>((
            install,
            converged,
            publishes,
            gone.len(),
            w_install,
            w_converged,
            heap,
        ))
    })();
    stop.store(true, Ordering::Relaxed);
    follower
        .join()
        .map_err(|_| "the follower panicked".to_string())??;
    let cpu = cpu_rx.recv().unwrap_or(0.0);
    let (install, converged, publishes, withdrawn, w_install, w_converged, heap) = result?;
    Ok(Convergence {
        routes: total,
        install_s: install.as_secs_f64(),
        converged_s: converged.as_secs_f64(),
        publishes,
        withdrawn,
        withdraw_install_s: w_install.as_secs_f64(),
        withdraw_converged_s: w_converged.as_secs_f64(),
        messages: stats.route_messages.load(Ordering::Relaxed),
        dumps: stats.route_dumps.load(Ordering::Relaxed),
        lost: stats.route_lost.load(Ordering::Relaxed),
        follower_cpu_s: cpu,
        heap_mb: heap as f64 / 1e6,
    })
}
