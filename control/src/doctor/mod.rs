//! `espctl doctor`: checks of what a gateway needs, from what the dataplane runs with (its
//! `runtime` API request) and what the host says (sysfs, procfs, ethtool). Each check gives
//! OK, WARN, FAIL or n/a, what it found and what to do; `docs/operations.md` says why each
//! check exists.
//!
//! One file per check family: [`xdp`] (XDP attach mode, AF_XDP bind mode), [`queues`] (RX
//! queues served, worker pinning), [`numa`], [`irq`], [`offload`]; [`host`] reads sysfs and
//! procfs under roots a test can point elsewhere, [`ethtool`] reads offload features.

pub mod check;
pub mod ethtool;
#[cfg(test)]
mod fixtures;
pub mod host;
pub mod irq;
pub mod numa;
pub mod offload;
pub mod queues;
pub mod xdp;

pub use check::{Check, Status};
pub use ethtool::Features;
pub use host::Roots;

use esprit_api::{ApiError, Client, Runtime};
use std::path::Path;

/// Why `espctl doctor` could not run its checks.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// The dataplane could not be reached.
    #[error("{0} (is esprit-dataplane running, and is this its socket?)")]
    Unreachable(ApiError),
    /// The dataplane does not know the `runtime` request.
    #[error("the dataplane does not answer the runtime request ({0}): it is older than this espctl; upgrade esprit-dataplane")]
    TooOld(String),
    /// The dataplane answered something else.
    #[error("{0}")]
    Api(ApiError),
}

/// Asks the dataplane at `socket` what it runs with.
pub fn fetch(socket: &Path) -> Result<Runtime, DoctorError> {
    let mut c = Client::connect(socket).map_err(DoctorError::Unreachable)?;
    c.runtime().map_err(|e| match e {
        ApiError::Refused { code, message } if code == "bad_request" => {
            DoctorError::TooOld(message)
        }
        e @ ApiError::Io { .. } => DoctorError::Unreachable(e),
        e => DoctorError::Api(e),
    })
}

/// Every check, for each interface then each worker; `features` reads an interface's
/// offload features.
pub fn diagnose(
    rt: &Runtime,
    roots: &Roots,
    features: impl Fn(&str) -> Result<Features, String>,
) -> Vec<Check> {
    let mut out = Vec::new();
    for i in &rt.interfaces {
        out.push(xdp::xdp_mode(i, &rt.xdp_requested));
        out.push(xdp::xsk_bind(i, roots));
        out.push(queues::queues(i));
        out.push(numa::numa(&i.name, &rt.workers, roots));
        out.push(irq::irq_affinity(&i.name, &rt.workers, roots));
        out.extend(offload::offloads(
            &i.name,
            i.xdp_attached.as_deref(),
            &features(&i.name),
        ));
    }
    for w in &rt.workers {
        out.push(queues::pinning(w, &rt.workers));
    }
    out
}

/// The host's features of `iface`, read with the ethtool ioctls.
pub fn host_features(iface: &str) -> Result<Features, String> {
    ethtool::features(iface).map_err(|e| e.to_string())
}

/// `espctl doctor [--json]`: asks the dataplane at `socket`, runs every check against the
/// host, prints the result; an error when a check failed (exit code 1) or the dataplane
/// could not be asked.
pub fn cli(socket: &Path, json: bool) -> Result<(), String> {
    let rt = fetch(socket).map_err(|e| e.to_string())?;
    let checks = diagnose(&rt, &Roots::default(), host_features);
    if json {
        println!("{}", render_json(&checks));
    } else {
        print!("{}", render_text(&checks));
    }
    let n = checks.iter().filter(|c| c.status == Status::Fail).count();
    if n > 0 {
        return Err(format!("doctor: {n} check(s) FAIL"));
    }
    Ok(())
}

/// Whether any check failed (`espctl doctor` then exits with 1).
pub fn failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Fail)
}

/// One line per check (`STATUS  name  subject  detail`), and `fix:` under those with one.
pub fn render_text(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let subject = match (&c.interface, c.worker) {
            (Some(i), _) => i.clone(),
            (None, Some(w)) => format!("worker {w}"),
            (None, None) => "-".into(),
        };
        s.push_str(&format!(
            "{:<5} {:<20} {:<10} {}\n",
            c.status.name(),
            c.name,
            subject,
            c.detail
        ));
        if let Some(f) = &c.fix {
            s.push_str(&format!("{:<5} fix: {f}\n", ""));
        }
    }
    let count = |st| checks.iter().filter(|c| c.status == st).count();
    s.push_str(&format!(
        "{} OK, {} WARN, {} FAIL, {} n/a\n",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::NotApplicable)
    ));
    s
}

/// `{"checks": [{"name", "interface"?, "worker"?, "status", "detail", "fix"?}, …]}`.
pub fn render_json(checks: &[Check]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({ "checks": checks }))
        .unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use esprit_api::InterfaceRuntime;

    fn runtime() -> Runtime {
        let iface = |role: &str, name: &str| InterfaceRuntime {
            role: role.into(),
            ..fixtures::iface(name, Some("native"), &["copy"])
        };
        Runtime {
            daemon: "esprit-dataplane".into(),
            xdp_requested: "native".into(),
            mode_requested: "copy".into(),
            poll: "adaptive".into(),
            interfaces: vec![iface("lan", "lan0"), iface("wan", "wan0")],
            workers: vec![fixtures::worker(0, Some(1), &[1])],
        }
    }

    #[test]
    fn a_healthy_veth_gateway_has_no_failure_and_the_json_has_the_documented_shape() {
        let roots = fixtures::roots("all");
        let dir = roots.sys.clone();
        std::fs::create_dir_all(dir.join("class/net/lan0")).unwrap();
        std::fs::create_dir_all(dir.join("class/net/wan0")).unwrap();
        let checks = diagnose(&runtime(), &roots, |_| Ok(Features::new()));
        assert!(!failed(&checks), "{}", render_text(&checks));
        assert!(
            checks.iter().all(|c| c.status != Status::Warn),
            "{}",
            render_text(&checks)
        );
        let v: serde_json::Value = serde_json::from_str(&render_json(&checks)).unwrap();
        let first = &v["checks"][0];
        assert_eq!(
            (
                first["name"].as_str(),
                first["interface"].as_str(),
                first["status"].as_str()
            ),
            (Some("xdp_mode"), Some("lan0"), Some("OK"))
        );
        assert!(first.get("fix").is_none());
        let numa = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "numa")
            .unwrap();
        assert_eq!(numa["status"], "n/a");

        let mut rt = runtime();
        rt.interfaces[1].xdp_attached = Some("none".into());
        let checks = diagnose(&rt, &roots, |_| Ok(Features::new()));
        assert!(failed(&checks));
        let text = render_text(&checks);
        assert!(text.contains("FAIL  xdp_mode"), "{text}");
        assert!(text.contains("fix: restart esprit-dataplane"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_absent_dataplane_is_a_clear_error() {
        let e = fetch(Path::new("/nonexistent/esprit-doctor.sock")).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("/nonexistent/esprit-doctor.sock")
                && s.contains("is esprit-dataplane running"),
            "{s}"
        );
    }
}
