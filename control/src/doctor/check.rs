//! One check's result: its name, what it concerns, OK/WARN/FAIL/n/a, what was found and
//! what to do.

use serde::Serialize;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    /// As it should be.
    #[serde(rename = "OK")]
    Ok,
    /// Works, but costs performance or robustness.
    #[serde(rename = "WARN")]
    Warn,
    /// Traffic is (or will be) lost or the dataplane is not what it should be.
    #[serde(rename = "FAIL")]
    Fail,
    /// Does not apply here; the detail says why.
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl Status {
    /// `OK`, `WARN`, `FAIL` or `n/a`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::NotApplicable => "n/a",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The check: `xdp_mode`, `xsk_bind`, `queues`, `pinning`, `numa`, `irq_affinity`,
    /// `offload_lro`, `offload_gro_hw`, `offload_gro_generic`.
    pub name: &'static str,
    /// The interface it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The worker (queue) it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<u32>,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (a command or a configuration change), for WARN and FAIL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    /// A result about `interface`.
    pub fn iface(name: &'static str, interface: &str, status: Status, detail: String) -> Self {
        Check {
            name,
            interface: Some(interface.to_string()),
            worker: None,
            status,
            detail,
            fix: None,
        }
    }

    /// A result about worker `queue`.
    pub fn worker(name: &'static str, queue: u32, status: Status, detail: String) -> Self {
        Check {
            name,
            interface: None,
            worker: Some(queue),
            status,
            detail,
            fix: None,
        }
    }

    /// With what to do.
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}
