//! The plot of `esprit-bench pipeline`: packet rate of one core against the number of tunnels
//! (logarithmic axis), one line per packet size, uniform traffic solid and skewed traffic
//! dashed, one panel for encryption and one for decryption. Plain SVG text, like the gateway
//! plot (no plotting crate; see decision 0009).

use serde_json::Value;
use std::fmt::Write;

const W: f64 = 1000.0;
const H: f64 = 440.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 70.0;
const LEFT: f64 = 60.0;
const GAP: f64 = 50.0;

fn colour(size: &str) -> &'static str {
    match size {
        "64" => "#1f77b4",
        "512" => "#2ca02c",
        "1420" => "#d62728",
        "imix" => "#9467bd",
        _ => "#000000",
    }
}

fn size_of(r: &Value) -> String {
    match &r["size"] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// The plot of the single-worker rows of a `{"rows": [...]}` report, as an SVG document.
pub fn plot(rows: &[Value], subtitle: &str) -> String {
    let rows: Vec<&Value> = rows
        .iter()
        .filter(|r| r.get("workers").is_none_or(Value::is_null))
        .collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">esprit worker pipeline, one core: Mpps by tunnel count</text>"#,
        W / 2.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="40" text-anchor="middle" fill="#444">{}</text>"##,
        W / 2.0,
        subtitle
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    );
    let ymax = rows
        .iter()
        .filter_map(|r| r["mpps"].as_f64())
        .fold(0.0, f64::max)
        .max(0.1)
        * 1.1;
    let tunnels = |r: &Value| r["tunnels"].as_f64().unwrap_or(1.0).max(1.0);
    let xmax = rows
        .iter()
        .map(|r| tunnels(r).log10())
        .fold(0.0, f64::max)
        .max(1.0);
    let panel_w = (W - LEFT - GAP - 20.0) / 2.0;
    let plot_h = H - TOP - BOTTOM;
    let mut sizes: Vec<String> = Vec::new();
    for r in &rows {
        let z = size_of(r);
        if !sizes.contains(&z) {
            sizes.push(z);
        }
    }
    for (i, op) in ["encrypt", "decrypt"].into_iter().enumerate() {
        let x0 = LEFT + i as f64 * (panel_w + GAP);
        let x = |t: f64| x0 + t.log10() / xmax * panel_w;
        let y = |m: f64| TOP + plot_h - m / ymax * plot_h;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{op}</text>"#,
            x0 + panel_w / 2.0,
            TOP - 10.0
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{TOP}" width="{panel_w}" height="{plot_h}" fill="none" stroke="#999"/>"##
        );
        for k in 0..=5 {
            let m = ymax * f64::from(k) / 5.0;
            let (x1, yy, tx, ty) = (x0 + panel_w, y(m), x0 - 4.0, y(m) + 4.0);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" x2="{x1}" y1="{yy}" y2="{yy}" stroke="#eee"/><text x="{tx}" y="{ty}" text-anchor="end" fill="#444">{m:.1}</text>"##
            );
        }
        for d in 0..=(xmax.ceil() as i32) {
            let t = 10f64.powi(d);
            let label = match d {
                0 => "1".to_string(),
                3 => "1k".into(),
                6 => "1M".into(),
                _ if d < 3 => format!("{t}"),
                _ => format!("{}k", t / 1e3),
            };
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#444">{label}</text>"##,
                x(t),
                TOP + plot_h + 16.0
            );
        }
        if i == 0 {
            let mid = TOP + plot_h / 2.0;
            let _ = writeln!(
                s,
                r##"<text x="14" y="{mid}" transform="rotate(-90 14 {mid})" text-anchor="middle" fill="#444">Mpps (one core)</text>"##
            );
        }
        for size in &sizes {
            for (spread, dash) in [("uniform", ""), ("skewed", r#" stroke-dasharray="5,4""#)] {
                let mut pts: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r["op"] == op && r["spread"] == spread && size_of(r) == *size)
                    .filter_map(|r| Some((tunnels(r), r["mpps"].as_f64()?)))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                if pts.is_empty() {
                    continue;
                }
                let path: Vec<String> = pts
                    .iter()
                    .map(|(t, m)| format!("{:.1},{:.1}", x(*t), y(*m)))
                    .collect();
                let _ = writeln!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
                    path.join(" "),
                    colour(size)
                );
                for (t, m) in &pts {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                        x(*t),
                        y(*m),
                        colour(size)
                    );
                }
            }
        }
    }
    let mut lx = LEFT;
    let ly = H - 22.0;
    for size in &sizes {
        let label = if size == "imix" {
            "IMIX".to_string()
        } else {
            format!("{size} B")
        };
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{label}</text>"#,
            lx + 24.0,
            colour(size),
            lx + 30.0,
            ly + 4.0
        );
        lx += 100.0;
    }
    let _ = writeln!(
        s,
        r##"<text x="{lx}" y="{}" fill="#444">solid: uniform traffic, dashed: skewed (Zipf)</text>"##,
        ly + 4.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_line_per_size_and_spread_and_no_handoff_rows() {
        let mut rows = Vec::new();
        for t in [1, 1000, 1_000_000] {
            for size in [json!(64), json!("imix")] {
                for spread in ["uniform", "skewed"] {
                    rows.push(json!({"tunnels": t, "size": size, "op": "encrypt",
                        "spread": spread, "mpps": 5.0 / (1.0 + (t as f64).log10())}));
                }
            }
        }
        rows.push(
            json!({"tunnels": 2, "size": 64, "op": "encrypt", "spread": "uniform",
            "mpps": 9.0, "workers": 2}),
        );
        let svg = plot(&rows, "test & <run>");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 12);
        assert!(svg.contains("test &amp; &lt;run&gt;"));
    }
}
