//! The plot: throughput at ≤ 0.5% loss (Gbit/s of plaintext) against packet size, one bar per
//! system with its min–max over the rounds, one panel per direction, on a logarithmic axis
//! (the systems differ by two orders of magnitude). Plain SVG text, written here (no plotting
//! crate; see decision 0009).

use super::report::Row;
use super::systems::{Dir, System};
use std::fmt::Write;

const W: f64 = 1000.0;
const H: f64 = 460.0;
const TOP: f64 = 86.0;
const BOTTOM: f64 = 60.0;
const LEFT: f64 = 60.0;
const GAP: f64 = 50.0;

/// Colour of a system's bars.
fn colour(s: &str) -> &'static str {
    match s {
        "esprit" => "#1f77b4",
        "esprit-esp" => "#6baed6",
        "esprit-nocrypto" => "#2ca02c",
        "kernel" => "#7f7f7f",
        "strongswan" => "#d62728",
        "dpdk-af_xdp" => "#ff7f0e",
        "dpdk-af_packet" => "#fdae6b",
        _ => "#000000",
    }
}

/// The decades a logarithmic axis spans to show `lo..=hi` (both positive): 10^a to 10^b.
fn decades(lo: f64, hi: f64) -> (i32, i32) {
    let a = lo.max(1e-6).log10().floor() as i32;
    let b = (hi.max(lo * 10.0).log10().ceil() as i32).max(a + 1);
    (a, b)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The plot as an SVG document. `title` heads it; `sizes` are the size labels in order.
pub fn plot(rows: &[Row], sizes: &[String], title: &str, subtitle: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="40" text-anchor="middle" fill="#444">{}</text>"##,
        W / 2.0,
        esc(subtitle)
    );
    let size_of = |r: &Row| match &r.size {
        serde_json::Value::String(x) => x.clone(),
        v => v.to_string(),
    };
    let ymax = rows.iter().map(|r| r.rfc_gbps.max).fold(0.0, f64::max);
    let ymin = rows
        .iter()
        .map(|r| r.rfc_gbps.min)
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let (da, db) = decades(if ymin.is_finite() { ymin } else { 0.01 }, ymax);
    let panel_w = (W - LEFT - GAP - 20.0) / 2.0;
    let plot_h = H - TOP - BOTTOM;
    let systems: Vec<System> = System::ALL
        .into_iter()
        .filter(|sys| rows.iter().any(|r| r.system == sys.key()))
        .collect();
    // Legend.
    let mut lx = LEFT;
    for sys in &systems {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="48" width="12" height="12" fill="{}"/><text x="{}" y="58">{}</text>"#,
            colour(sys.key()),
            lx + 16.0,
            esc(sys.label())
        );
        lx += 30.0 + 7.0 * sys.label().len() as f64;
    }
    for (pi, dir) in [Dir::Encrypt, Dir::Decrypt].into_iter().enumerate() {
        let x0 = LEFT + pi as f64 * (panel_w + GAP);
        let y = |v: f64| {
            let f = if v > 0.0 {
                ((v.log10() - f64::from(da)) / f64::from(db - da)).clamp(0.0, 1.0)
            } else {
                0.0
            };
            TOP + plot_h - f * plot_h
        };
        // Axes and grid: every decade, with 2 and 5 in between.
        for d in da..=db {
            for m in [1.0, 2.0, 5.0] {
                let t = m * 10f64.powi(d);
                if d == db && m > 1.0 {
                    break;
                }
                let yy = y(t);
                let _ = writeln!(
                    s,
                    r##"<line x1="{x0}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{}"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10">{}</text>"##,
                    x0 + panel_w,
                    if m == 1.0 { "#bbb" } else { "#eee" },
                    x0 - 4.0,
                    yy + 3.0,
                    trim(t)
                );
            }
        }
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{TOP}" x2="{x0}" y2="{:.1}" stroke="#000"/><line x1="{x0}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#000"/>"##,
            TOP + plot_h,
            TOP + plot_h,
            x0 + panel_w,
            TOP + plot_h
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
            x0 + panel_w / 2.0,
            TOP - 6.0,
            match dir {
                Dir::Encrypt => "LAN → WAN (encrypt)",
                Dir::Decrypt => "WAN → LAN (decrypt)",
            }
        );
        if pi == 0 {
            let _ = writeln!(
                s,
                r#"<text transform="translate(16,{:.1}) rotate(-90)" text-anchor="middle">Gbit/s at ≤ 0.5% loss (plaintext, log scale)</text>"#,
                TOP + plot_h / 2.0
            );
        }
        let in_dir: Vec<&System> = systems
            .iter()
            .filter(|sys| {
                rows.iter()
                    .any(|r| r.system == sys.key() && r.dir == dir.key())
            })
            .collect();
        let group_w = panel_w / sizes.len().max(1) as f64;
        let bar_w = (group_w * 0.8) / in_dir.len().max(1) as f64;
        for (gi, size) in sizes.iter().enumerate() {
            let gx = x0 + gi as f64 * group_w + group_w * 0.1;
            let label = if size == "imix" {
                "IMIX".to_string()
            } else {
                format!("{size} B")
            };
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                gx + group_w * 0.4,
                TOP + plot_h + 18.0
            );
            for (bi, sys) in in_dir.iter().enumerate() {
                let Some(r) = rows
                    .iter()
                    .find(|r| r.system == sys.key() && r.dir == dir.key() && &size_of(r) == size)
                else {
                    continue;
                };
                let bx = gx + bi as f64 * bar_w;
                let v = r.rfc_gbps.median;
                let _ = writeln!(
                    s,
                    r#"<rect x="{bx:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}, {}: {:.3} Gbit/s ({:.3} Mpps), min {:.3}, max {:.3}</title></rect>"#,
                    y(v),
                    (bar_w - 1.0).max(1.0),
                    (TOP + plot_h - y(v)).max(0.0),
                    colour(&r.system),
                    esc(&r.label),
                    label,
                    v,
                    r.rfc_mpps.median,
                    r.rfc_gbps.min,
                    r.rfc_gbps.max
                );
                let cx = bx + bar_w / 2.0;
                let _ = writeln!(
                    s,
                    r##"<line x1="{cx:.1}" y1="{:.1}" x2="{cx:.1}" y2="{:.1}" stroke="#000"/>"##,
                    y(r.rfc_gbps.min),
                    y(r.rfc_gbps.max)
                );
                let _ = writeln!(
                    s,
                    r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="8">{}</text>"#,
                    y(r.rfc_gbps.max) - 3.0,
                    short(v)
                );
            }
        }
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle" font-size="10" fill="#444">bars: median over the rounds; whiskers: min–max; figures: Gbit/s of plaintext IP packets</text>"##,
        W / 2.0,
        H - 12.0
    );
    s.push_str("</svg>\n");
    s
}

/// An axis label without needless decimals.
fn trim(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A bar's value label: two significant figures or so.
fn short(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::packet::FrameSize;
    use crate::gateway::report::{rows, Measurement};

    #[test]
    fn axes_span_whole_decades() {
        assert_eq!(decades(0.006, 3.3), (-3, 1));
        assert_eq!(decades(0.5, 0.5), (-1, 1));
        assert_eq!(decades(1.0, 10.0), (0, 1));
        assert_eq!(trim(0.001), "0.001");
        assert_eq!(trim(2.0), "2");
    }

    #[test]
    fn plot_has_a_bar_per_row() {
        let sizes = [FrameSize::Fixed(64), FrameSize::Imix];
        let mut all = Vec::new();
        for (i, sys) in [System::Esprit, System::EspritBypass, System::StrongSwan]
            .into_iter()
            .enumerate()
        {
            for &dir in sys.dirs() {
                for &size in &sizes {
                    all.push(Measurement {
                        system: sys,
                        dir,
                        size,
                        round: 0,
                        max_rx_pps: 1e5,
                        max_tx_pps: 2e5,
                        rfc_pps: 1e5 / (i + 1) as f64,
                        rfc_loss: 0.0,
                        generator_limited: false,
                        latency: None,
                        trials: 3,
                        esp_errors: 0,
                        gateway_ns_per_packet: None,
                    });
                }
            }
        }
        let r = rows(
            &all,
            &[System::Esprit, System::EspritBypass, System::StrongSwan],
            &sizes,
        );
        let labels: Vec<String> = sizes.iter().map(|s| s.label()).collect();
        let svg = plot(&r, &labels, "t <&>", "s");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<title>").count(), r.len());
        assert!(svg.contains("t &lt;&amp;&gt;"));
    }
}
