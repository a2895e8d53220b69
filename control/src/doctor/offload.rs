//! Offloads that break XDP and AF_XDP.
//!
//! Why: LRO and hardware GRO merge TCP segments in the NIC into frames larger than the MTU
//! and than an AF_XDP frame: XDP cannot handle them (drivers refuse XDP with LRO on, or XDP
//! would see merged frames it cannot pass to a socket), and forwarding merged segments is
//! wrong for a router anyway. Software GRO runs after the driver, so native XDP never sees
//! its result; generic XDP runs after it, so with generic XDP GRO (and its UDP and fraglist
//! variants) hand the classifier merged packets larger than an AF_XDP frame, which the
//! kernel drops (`rx_dropped` of the socket).

use super::check::{Check, Status};
use super::ethtool::Features;

/// The offload checks of `iface` under XDP mode `xdp` (`native`, `generic`…), from its
/// features (or why they could not be read). Features go by their kernel names (`rx-lro`,
/// `rx-gro`, `rx-gro-hw`; `ethtool -k` shows the first two as `large-receive-offload` and
/// `generic-receive-offload`).
pub fn offloads(iface: &str, xdp: Option<&str>, features: &Result<Features, String>) -> Vec<Check> {
    let f = match features {
        Ok(f) => f,
        Err(e) => {
            return vec![Check::iface(
                "offloads",
                iface,
                Status::Warn,
                format!("cannot read the interface's features: {e}"),
            )
            .fix(format!("check `ethtool -k {iface}`"))]
        }
    };
    let on = |name: &str| f.get(name).is_some_and(|x| x.active);
    let mut out = Vec::new();
    // (check, kernel name, `ethtool -K` name, what it is, as `ethtool -k` shows it)
    for (check, feature, short, what, shown) in [
        (
            "offload_lro",
            "rx-lro",
            "lro",
            "LRO",
            "large-receive-offload",
        ),
        (
            "offload_gro_hw",
            "rx-gro-hw",
            "rx-gro-hw",
            "hardware GRO",
            "rx-gro-hw",
        ),
    ] {
        out.push(if on(feature) {
            Check::iface(
                check,
                iface,
                Status::Fail,
                format!("{what} ({shown}) is on: the NIC merges segments into frames XDP and AF_XDP cannot take"),
            )
            .fix(format!("ethtool -K {iface} {short} off"))
        } else if f.contains_key(feature) {
            Check::iface(check, iface, Status::Ok, format!("{shown} off"))
        } else {
            Check::iface(
                check,
                iface,
                Status::NotApplicable,
                format!("the driver has no {feature}"),
            )
        });
    }
    let gro: Vec<&str> = ["rx-gro", "rx-gro-list", "rx-udp-gro-forwarding"]
        .into_iter()
        .filter(|n| on(n))
        .collect();
    out.push(match xdp {
        Some("generic") if !gro.is_empty() => Check::iface(
            "offload_gro_generic",
            iface,
            Status::Fail,
            format!(
                "{} on with generic XDP: merged packets larger than an AF_XDP frame are dropped",
                gro.join(", ")
            ),
        )
        .fix(format!(
            "ethtool -K {iface} {}",
            gro.iter()
                .map(|g| match *g {
                    "rx-gro" => "gro off",
                    "rx-gro-list" => "rx-gro-list off",
                    _ => "rx-udp-gro-forwarding off",
                })
                .collect::<Vec<_>>()
                .join(" ")
        )),
        Some("generic") => Check::iface(
            "offload_gro_generic",
            iface,
            Status::Ok,
            "software GRO off, as generic XDP needs".into(),
        ),
        _ => Check::iface(
            "offload_gro_generic",
            iface,
            Status::NotApplicable,
            "native XDP runs before software GRO".into(),
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::super::ethtool::Feature;
    use super::*;

    fn feats(list: &[(&str, bool)]) -> Result<Features, String> {
        Ok(list
            .iter()
            .map(|(n, a)| {
                (
                    n.to_string(),
                    Feature {
                        active: *a,
                        fixed: false,
                    },
                )
            })
            .collect())
    }

    fn status(v: &[Check], name: &str) -> Status {
        v.iter().find(|c| c.name == name).unwrap().status
    }

    #[test]
    fn lro_and_hardware_gro_fail() {
        let v = offloads(
            "wan0",
            Some("native"),
            &feats(&[("rx-lro", true), ("rx-gro-hw", false), ("rx-gro", true)]),
        );
        let lro = v.iter().find(|c| c.name == "offload_lro").unwrap();
        assert_eq!(lro.status, Status::Fail);
        assert_eq!(lro.fix.as_deref(), Some("ethtool -K wan0 lro off"));
        assert_eq!(status(&v, "offload_gro_hw"), Status::Ok);
        assert_eq!(status(&v, "offload_gro_generic"), Status::NotApplicable);
        let v = offloads("wan0", Some("native"), &feats(&[("rx-gro-hw", true)]));
        assert_eq!(status(&v, "offload_lro"), Status::NotApplicable);
        let hw = v.iter().find(|c| c.name == "offload_gro_hw").unwrap();
        assert_eq!(hw.fix.as_deref(), Some("ethtool -K wan0 rx-gro-hw off"));
    }

    #[test]
    fn software_gro_matters_with_generic_xdp_only() {
        let f = feats(&[("rx-gro", true), ("rx-udp-gro-forwarding", true)]);
        let v = offloads("lan0", Some("generic"), &f);
        let g = v.iter().find(|c| c.name == "offload_gro_generic").unwrap();
        assert_eq!(g.status, Status::Fail);
        assert_eq!(
            g.fix.as_deref(),
            Some("ethtool -K lan0 gro off rx-udp-gro-forwarding off")
        );
        let off = feats(&[("rx-gro", false)]);
        assert_eq!(
            status(
                &offloads("lan0", Some("generic"), &off),
                "offload_gro_generic"
            ),
            Status::Ok
        );
        let e = offloads("lan0", Some("native"), &Err("gone".into()));
        assert_eq!((e.len(), e[0].status), (1, Status::Warn));
    }
}
