//! esprit keyed by IKEv2 in the lab: an esprit-dataplane without manual SAs and an esprit-ike
//! daemon, both in-process in a gateway's namespace, and the configuration they need.

use crate::lab::{Lab, Node};
use control::daemon::control::{call, ControlRequest};
use control::daemon::run::Daemon;
use dataplane::daemon::config::DataplaneConfig;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The pre-shared key the lab's IKE configurations use (the same as the strongSwan harness's).
pub const LAB_PSK: &str = "a-long-random-test-secret";

/// How an esprit gateway of the lab authenticates.
#[derive(Clone, Debug)]
pub enum IkeAuth {
    /// The lab's pre-shared key.
    Psk,
    /// Certificates: this gateway's certificate and key, and the CA that signed the peer's, as
    /// PEM file paths; identities are the certificates' DNs or SANs.
    Pubkey {
        /// Our certificate (PEM).
        cert: PathBuf,
        /// Our private key (PEM).
        key: PathBuf,
        /// The CA (PEM).
        ca: PathBuf,
        /// Our identity.
        local_id: String,
        /// The peer's identity.
        remote_id: String,
    },
}

/// Options of a lab gateway's esprit-ike configuration.
#[derive(Clone, Debug)]
pub struct IkeSite {
    /// IKE proposals.
    pub proposals: Vec<String>,
    /// ESP proposals.
    pub esp_proposals: Vec<String>,
    /// `start_action` of the connection.
    pub start_action: String,
    /// Force UDP encapsulation.
    pub encap: bool,
    /// Authentication.
    pub auth: IkeAuth,
    /// Extra lines for the connection table.
    pub extra_conn: String,
    /// Extra lines for the `[daemon]` table.
    pub extra_daemon: String,
    /// `[metrics] listen`: where esprit-ike serves its metrics (none by default).
    pub metrics: Option<std::net::SocketAddr>,
    /// `[metrics] listen` of the gateway's dataplane (none by default).
    pub dataplane_metrics: Option<std::net::SocketAddr>,
    /// A route-based child (`0.0.0.0/0 === 0.0.0.0/0`) instead of the sites' prefixes.
    pub route_based: bool,
    /// Extra tables for the gateway's dataplane configuration (`[[tunnel]]`, …).
    pub dataplane_extra: String,
}

impl Default for IkeSite {
    fn default() -> Self {
        IkeSite {
            proposals: vec![
                "aes256gcm16-prfsha384-x25519".into(),
                "aes128gcm16-prfsha256-ecp256".into(),
            ],
            esp_proposals: vec!["aes256gcm16".into(), "aes128gcm16".into()],
            start_action: "none".into(),
            encap: false,
            auth: IkeAuth::Psk,
            extra_conn: String::new(),
            extra_daemon: String::new(),
            metrics: None,
            dataplane_metrics: None,
            route_based: false,
            dataplane_extra: String::new(),
        }
    }
}

/// A TOML array of strings.
pub(crate) fn list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Writes a file only its owner may read (mode 0600 from its creation): esprit-ike refuses a
/// configuration holding a PSK that others can read.
pub fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The `local`, `remote` and `[[secrets.ike]]` of a connection authenticated with the lab's
/// PSK, between identities `lid` (ours) and `rid` (the peer's).
pub(crate) fn psk_auth(lid: &str, rid: &str) -> (String, String, String) {
    (
        format!("{{ auth = \"psk\", id = \"{lid}\" }}"),
        format!("{{ auth = \"psk\", id = \"{rid}\" }}"),
        format!("[[secrets.ike]]\nids = [\"{lid}\", \"{rid}\"]\nsecret = \"{LAB_PSK}\"\n"),
    )
}

/// A lab gateway's dataplane configuration without SAs (esprit-ike installs them): API socket,
/// `lan0`/`wan0`, `workers` workers, then `extra` (more tables).
pub(crate) fn dataplane_toml(socket: &Path, workers: u32, extra: &str) -> String {
    format!(
        "api_socket = \"{}\"\n[lan]\ninterface = \"lan0\"\n[wan]\ninterface = \"wan0\"\n[workers]\ncount = {workers}\n{extra}",
        socket.display(),
    )
}

/// Write `<node>-ike.toml` and `<node>-dp.toml` for gateway `node` (GwA or GwB) into `dir`.
/// Returns (IKE config path, dataplane config).
pub fn write_configs(
    lab: &Lab,
    node: Node,
    dir: &Path,
    site: &IkeSite,
) -> Result<(PathBuf, DataplaneConfig), String> {
    let a = node == Node::GwA;
    let (me, peer) = if a {
        (lab.gw_a_wan(), lab.gw_b_wan())
    } else {
        (lab.gw_b_wan(), lab.gw_a_seen_by_b())
    };
    let (lts, rts) = if site.route_based {
        (r#"["0.0.0.0/0"]"#, r#"["0.0.0.0/0"]"#)
    } else if a {
        (
            r#"["10.201.1.0/24", "fd00:201:1::/64"]"#,
            r#"["10.201.2.0/24", "fd00:201:2::/64"]"#,
        )
    } else {
        (
            r#"["10.201.2.0/24", "fd00:201:2::/64"]"#,
            r#"["10.201.1.0/24", "fd00:201:1::/64"]"#,
        )
    };
    let (lid, rid) = if a { ("gwA", "gwB") } else { ("gwB", "gwA") };
    let name = if a { "gwA" } else { "gwB" };
    let sock = dir.join(format!("{name}-dp.sock"));
    let ike_sock = dir.join(format!("{name}-ike.sock"));
    let (local, remote, secrets) = match &site.auth {
        IkeAuth::Psk => psk_auth(lid, rid),
        IkeAuth::Pubkey {
            cert,
            key,
            ca,
            local_id,
            remote_id,
        } => (
            format!(
                "{{ auth = \"pubkey\", id = \"{local_id}\", certs = [\"{}\"], key = \"{}\" }}",
                cert.display(),
                key.display()
            ),
            format!(
                "{{ auth = \"pubkey\", id = \"{remote_id}\", cacerts = [\"{}\"] }}",
                ca.display()
            ),
            String::new(),
        ),
    };
    let ike = format!(
        "[daemon]\ndataplane_socket = \"{}\"\nsocket = \"{}\"\nretransmit_timeout = \"1s\"\n{}\n\
         [connections.site]\nlocal_addrs = [\"{me}\"]\nremote_addrs = [\"{peer}\"]\nproposals = {}\n\
         local = {local}\nremote = {remote}\nstart_action = \"{}\"\nencap = {}\n{}\n\
         [connections.site.children.net]\nlocal_ts = {lts}\nremote_ts = {rts}\nesp_proposals = {}\n\n{secrets}{}",
        sock.display(),
        ike_sock.display(),
        site.extra_daemon,
        list(&site.proposals),
        site.start_action,
        site.encap,
        site.extra_conn,
        list(&site.esp_proposals),
        match site.metrics {
            Some(a) => format!("\n[metrics]\nlisten = \"{a}\"\n"),
            None => String::new(),
        },
    );
    let ike_path = dir.join(format!("{name}-ike.toml"));
    write_private(&ike_path, &ike)?;
    // No `gateway`: the dataplane follows the kernel's routes (behind the NAT, gwA's default
    // route to 10.200.1.254).
    let dp = dataplane_toml(
        &sock,
        lab.spec.queues,
        &(match site.dataplane_metrics {
            Some(a) => format!("[metrics]\nlisten = \"{a}\"\n"),
            None => String::new(),
        } + &site.dataplane_extra),
    );
    let dp_path = dir.join(format!("{name}-dp.toml"));
    std::fs::write(&dp_path, dp).map_err(|e| format!("{}: {e}", dp_path.display()))?;
    let cfg = DataplaneConfig::load(&dp_path).map_err(|e| e.to_string())?;
    Ok((ike_path, cfg))
}

/// esprit-ike running in-process in a lab node.
pub struct IkeDaemon {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<(), String>>>,
    /// Its control socket.
    pub socket: PathBuf,
}

impl IkeDaemon {
    /// Start esprit-ike with `config` inside `node`'s namespace; waits for its control socket.
    pub fn start(lab: &Lab, node: Node, config: &Path) -> Result<IkeDaemon, String> {
        let cfg = control::config::Config::load(config).map_err(|e| e.to_string())?;
        let socket = cfg.daemon.socket.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (lab, cfgp, st) = (lab.clone(), config.to_path_buf(), stop.clone());
        esprit_log::init_captured("esprit-lab", cfg.daemon.log_level.into());
        let handle = std::thread::spawn(move || -> Result<(), String> {
            lab.enter(node).map_err(|e| e.to_string())?;
            let _span = tracing::info_span!("esprit-ike", node = %node).entered();
            Daemon::new(&cfgp)
                .and_then(|d| d.run_until(st))
                .map_err(|e| format!("{node}: esprit-ike: {e}"))
        });
        let d = IkeDaemon {
            stop,
            handle: Some(handle),
            socket,
        };
        let start = Instant::now();
        while d.call(&ControlRequest::Stats).is_err() {
            if d.handle.as_ref().is_some_and(|h| h.is_finished())
                || start.elapsed() > Duration::from_secs(10)
            {
                return Err(d
                    .stop()
                    .err()
                    .unwrap_or_else(|| "esprit-ike did not start".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    /// One control request.
    pub fn call(&self, req: &ControlRequest) -> Result<Value, String> {
        call(&self.socket, req)
    }

    /// `ike.list`.
    pub fn list(&self) -> Result<Value, String> {
        self.call(&ControlRequest::IkeList)
    }

    /// Wait until an IKE SA is established with at least one child; returns it.
    pub fn wait_child(&self, timeout: Duration) -> Result<Value, String> {
        wait_child(&self.socket, timeout)
    }

    /// Wait until no IKE SA is left.
    pub fn wait_empty(&self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let v = self.list()?;
            if v.as_array().is_some_and(|a| a.is_empty()) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(format!("IKE SAs still there after {timeout:?}: {v}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop it and report how it ended.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err("esprit-ike panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for IkeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// esprit-dataplane running in-process in a lab node.
pub struct DataplaneThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<dataplane::api::Snapshot, String>>>,
}

impl DataplaneThread {
    /// Start the dataplane with `cfg` in `node`'s namespace and wait until it runs.
    pub fn start(lab: &Lab, node: Node, cfg: DataplaneConfig) -> Result<DataplaneThread, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let (lab, st) = (lab.clone(), stop.clone());
        esprit_log::init_captured("esprit-lab", cfg.log_level);
        let handle = std::thread::spawn(move || {
            lab.enter(node).map_err(|e| e.to_string())?;
            let _span = tracing::info_span!("esprit-dataplane", node = %node).entered();
            dataplane::daemon::run::run(&cfg, st, |m| {
                let _ = tx.send(m.to_string());
            })
            .map_err(|e| format!("{node}: esprit-dataplane: {e}"))
        });
        let mut d = DataplaneThread {
            stop,
            handle: Some(handle),
        };
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            return Err(d
                .finish()
                .err()
                .unwrap_or_else(|| "the dataplane did not start".into()));
        }
        Ok(d)
    }

    fn finish(&mut self) -> Result<dataplane::api::Snapshot, String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err("dataplane panicked".into())),
            None => Err("already stopped".into()),
        }
    }

    /// Stop it; returns its final counters.
    pub fn stop(mut self) -> Result<dataplane::api::Snapshot, String> {
        self.finish()
    }
}

impl Drop for DataplaneThread {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Waits until the esprit-ike answering on `socket` has an established IKE SA with at least
/// one child; returns that SA (as `ike.list` gives it).
pub fn wait_child(socket: &Path, timeout: Duration) -> Result<Value, String> {
    let start = Instant::now();
    loop {
        let v = call(socket, &ControlRequest::IkeList)?;
        let up = v.as_array().and_then(|a| {
            a.iter()
                .find(|s| {
                    s["state"] == "established"
                        && s["children"].as_array().is_some_and(|c| !c.is_empty())
                })
                .cloned()
        });
        if let Some(sa) = up {
            return Ok(sa);
        }
        if start.elapsed() > timeout {
            return Err(format!("no child SA after {timeout:?}: {v}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A daemon of the lab run as a process of its own (`esprit-lab ike|dataplane CONFIG` in a
/// node's namespace), so a test can kill it with SIGKILL as a crash would. Its stderr goes to
/// `<config>.log`.
pub struct DaemonProcess {
    child: Option<std::process::Child>,
    /// The socket it answers on: esprit-ike's control socket or the dataplane's API socket.
    pub socket: PathBuf,
}

impl DaemonProcess {
    fn spawn(
        lab: &Lab,
        node: Node,
        exe: &Path,
        what: &str,
        config: &Path,
        socket: PathBuf,
        up: impl Fn(&Path) -> bool,
    ) -> Result<DaemonProcess, String> {
        let log_path = config.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let child = lab
            .command(node, exe)
            .arg(what)
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{node}: starting {what}: {e}"))?;
        let mut d = DaemonProcess {
            child: Some(child),
            socket,
        };
        let start = Instant::now();
        while !up(&d.socket) {
            let exited = d
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || start.elapsed() > Duration::from_secs(20) {
                d.kill();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("{node}: {what} did not start: {log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    /// esprit-ike with `config` in `node`'s namespace, run by `exe` (the `esprit-lab` binary);
    /// returns once its control socket answers.
    pub fn ike(lab: &Lab, node: Node, exe: &Path, config: &Path) -> Result<DaemonProcess, String> {
        let cfg = control::config::Config::load(config).map_err(|e| e.to_string())?;
        let socket = cfg.daemon.socket.clone();
        // A killed daemon leaves its socket file behind: only a fresh answer counts.
        let _ = std::fs::remove_file(&socket);
        Self::spawn(lab, node, exe, "ike", config, socket, |s| {
            call(s, &ControlRequest::Stats).is_ok()
        })
    }

    /// esprit-dataplane with `config` in `node`'s namespace; returns once its API answers.
    pub fn dataplane(
        lab: &Lab,
        node: Node,
        exe: &Path,
        config: &Path,
    ) -> Result<DaemonProcess, String> {
        let cfg = DataplaneConfig::load(config).map_err(|e| e.to_string())?;
        let socket = cfg.api_socket.clone();
        let _ = std::fs::remove_file(&socket);
        Self::spawn(lab, node, exe, "dataplane", config, socket, |s| {
            dataplane::api::Client::connect(s)
                .and_then(|mut c| c.call(dataplane::api::Request::Hello))
                .is_ok()
        })
    }

    /// `ike.list` (esprit-ike only).
    pub fn list(&self) -> Result<Value, String> {
        call(&self.socket, &ControlRequest::IkeList)
    }

    /// `sa.list` (the dataplane only).
    pub fn sa_list(&self) -> Result<Value, String> {
        dataplane::api::Client::connect(&self.socket)
            .and_then(|mut c| c.call(dataplane::api::Request::SaList))
            .map_err(|e| e.to_string())
    }

    /// Leaves the daemon running after this handle (and the program holding it) is gone;
    /// returns its pid, for the caller to record ([`crate::kept`]).
    pub fn detach(mut self) -> Option<u32> {
        self.child.take().map(|c| c.id())
    }

    /// SIGKILL, as a crash: nothing is cleaned up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
