//! esprit labs: two sites joined over a WAN in network namespaces, built, checked and removed
//! idempotently with `ip`, `sysctl` and `nft`, and the demo that runs two esprit gateways
//! across them.
//!
//! ```text
//! hA (10.201.1.2) — lan0 [gwA] wan0 (10.200.0.1) ==== (10.200.0.2) wan0 [gwB] lan0 — hB (10.201.2.2)
//! ```
//!
//! Every address has an IPv6 twin (`fd00:201:1::2`…). With `nat`, a NAT namespace sits on the
//! WAN: gwA's WAN is the private 10.200.1.0/24 behind an nftables masquerade to 10.200.0.0/24.
//! See `docs/lab.md` and [`plan`] for the exact addressing.

pub mod bgp;
pub mod capture;
pub mod cmd;
pub mod demo;
pub mod ike;
pub mod kept;
pub mod lab;
pub mod libreswan;
pub mod many;
pub mod netns;
pub mod pki;
pub mod plan;
pub mod routingd;
pub mod scaleout;
pub mod spec;
pub mod stream;
pub mod strongswan;

pub use lab::{IfaceInfo, Lab, LabError, LabGuard, LabInfo, LabSpec, Node, NodeInfo, UpOutcome};
