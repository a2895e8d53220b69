//! What a lab is made of: its nodes and the specification of what to build. Both the plan
//! (the lab as data) and the lab (building it) depend on this; neither on the other's types.

use crate::cmd::LabError;
use serde::Serialize;
use std::fmt;

/// A namespace of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// Host on site A.
    HostA,
    /// Gateway of site A.
    GwA,
    /// The NAT between the gateways (only with `nat`).
    Nat,
    /// Gateway of site B.
    GwB,
    /// Host on site B.
    HostB,
    /// The site router of site A in the scale-out lab ([`crate::scaleout`]).
    RouterA,
    /// The first of site A's two gateways in the scale-out lab.
    GwA1,
    /// The second of site A's two gateways in the scale-out lab.
    GwA2,
    /// The router between the WANs (the "internet") in the scale-out lab.
    Inet,
}

impl Node {
    /// Every node a lab can have, from site A to site B, then the scale-out lab's own.
    pub const ALL: [Node; 9] = [
        Node::HostA,
        Node::GwA,
        Node::Nat,
        Node::GwB,
        Node::HostB,
        Node::RouterA,
        Node::GwA1,
        Node::GwA2,
        Node::Inet,
    ];

    /// Short name used on the command line and in namespace names.
    pub fn name(self) -> &'static str {
        match self {
            Node::HostA => "hA",
            Node::GwA => "gwA",
            Node::Nat => "nat",
            Node::GwB => "gwB",
            Node::HostB => "hB",
            Node::RouterA => "rA",
            Node::GwA1 => "gwA1",
            Node::GwA2 => "gwA2",
            Node::Inet => "inet",
        }
    }

    /// Parses a short name (case-insensitive).
    pub fn parse(s: &str) -> Option<Node> {
        Node::ALL
            .into_iter()
            .find(|n| n.name().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabSpec {
    /// Prefix of the namespace names (`<name>-gwA`…), so labs never collide: letters, digits,
    /// `.`, `_` and `-`, at most 32 characters, starting with a letter or digit.
    pub name: String,
    /// RX and TX queues on every veth (one AF_XDP worker per queue).
    pub queues: u32,
    /// Put a masquerading NAT between the gateways.
    pub nat: bool,
    /// Route the sites to each other in the kernel (plain forwarding through the gateways, no
    /// tunnel). Off by default: between the sites, traffic is esprit's, and a kernel route
    /// would carry it in clear text whenever a dataplane passed a packet up.
    pub routed: bool,
    /// MTU of every veth; `None` keeps the veth default (1500).
    pub mtu: Option<u32>,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            name: "esprit".into(),
            queues: 1,
            nat: false,
            routed: false,
            mtu: None,
        }
    }
}

impl LabSpec {
    /// Checks the name, queue count and MTU.
    pub fn validate(&self) -> Result<(), LabError> {
        let n = &self.name;
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if n.is_empty()
            || n.len() > 32
            || !n.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !n.chars().all(ok_char)
        {
            return Err(LabError::Spec(format!(
                "lab name {n:?}: expected 1 to 32 letters, digits, '.', '_' or '-', starting \
                 with a letter or digit"
            )));
        }
        if !(1..=256).contains(&self.queues) {
            return Err(LabError::Spec(format!(
                "queues {}: expected 1 to 256",
                self.queues
            )));
        }
        if let Some(m) = self.mtu {
            if !(1280..=65535).contains(&m) {
                return Err(LabError::Spec(format!(
                    "mtu {m}: expected 1280 (the IPv6 minimum) to 65535"
                )));
            }
        }
        Ok(())
    }

    /// The MTU the veths get.
    pub fn effective_mtu(&self) -> u32 {
        self.mtu.unwrap_or(1500)
    }
}
