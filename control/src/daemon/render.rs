//! espctl's text for `ike list-conns`, `ike list-certs`, `ike list-algs` and `monitor`, from
//! the JSON esprit-ike answers (see [`super::introspect`]).

use serde_json::Value;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn list(v: &Value) -> String {
    let items: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

fn secs(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "never".into(), |n| format!("{n}s"))
}

/// `ike list-conns` as text: one block per connection, its children indented.
pub fn conns(v: &Value) -> String {
    let mut out = String::new();
    for c in v.as_array().into_iter().flatten() {
        out += &format!(
            "{}: {} -> {} (port {}), {} IKE SA(s) up\n",
            s(&c["name"]),
            list(&c["local_addrs"]),
            list(&c["remote_addrs"]),
            c["remote_port"],
            c["ike_sas_established"]
        );
        out += &format!("  proposals: {}\n", list(&c["proposals"]));
        out += &format!(
            "  local: {} {}, remote: {} {}\n",
            s(&c["local_auth"]),
            c["local_id"].as_str().unwrap_or("(address)"),
            s(&c["remote_auth"]),
            c["remote_id"].as_str().unwrap_or("%any")
        );
        out += &format!(
            "  start_action {}, dpd {} ({}), rekey {}, reauth {}{}\n",
            s(&c["start_action"]),
            secs(&c["dpd_delay_s"]),
            s(&c["dpd_action"]),
            secs(&c["rekey_time_s"]),
            secs(&c["reauth_time_s"]),
            if c["encap"] == true { ", encap" } else { "" }
        );
        for ch in c["children"].as_array().into_iter().flatten() {
            out += &format!(
                "  {}: {} === {} ({}), esp {}, start {}, rekey {}\n",
                s(&ch["name"]),
                list(&ch["local_ts"]),
                list(&ch["remote_ts"]),
                s(&ch["mode"]),
                list(&ch["esp_proposals"]),
                s(&ch["start_action"]),
                secs(&ch["rekey_time_s"])
            );
        }
    }
    out
}

/// `ike list-certs` as text.
pub fn certs(v: &Value) -> String {
    let mut out = String::new();
    for c in v.as_array().into_iter().flatten() {
        out += &format!(
            "{} {}: {}\n  issuer {}\n  valid {} to {}{}\n",
            s(&c["conn"]),
            s(&c["role"]),
            s(&c["subject"]),
            s(&c["issuer"]),
            s(&c["not_before"]),
            s(&c["not_after"]),
            if c["valid_now"] == true {
                ""
            } else {
                " (NOT VALID NOW)"
            }
        );
        if c["alt_names"].as_array().is_some_and(|a| !a.is_empty()) {
            out += &format!("  alt names {}\n", list(&c["alt_names"]));
        }
    }
    if out.is_empty() {
        out = "no certificates loaded (no connection uses pubkey authentication)\n".into();
    }
    out
}

/// `ike list-algs` as text, grouped by transform type.
pub fn algs(v: &Value) -> String {
    let mut out = String::new();
    for kind in [
        "encryption",
        "integrity",
        "prf",
        "key-exchange",
        "additional-key-exchange",
        "esn",
    ] {
        out += &format!("{kind}:\n");
        for a in v
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["type"] == kind)
        {
            let used = match (a["ike"] == true, a["esp"] == true) {
                (true, true) => "IKE, ESP",
                (true, false) => "IKE",
                _ => "ESP",
            };
            out += &format!(
                "  {:<16} (IANA {:>2}) {:<9} keywords: {}\n",
                s(&a["name"]),
                a["iana_id"],
                used,
                list(&a["keywords"])
            );
        }
    }
    out
}

/// One `monitor` event as a line of text.
pub fn event(e: &Value) -> String {
    let t = s(&e["time"]);
    let conn = s(&e["conn"]);
    match e["event"].as_str().unwrap_or("") {
        "ike_up" => format!(
            "{t} {conn}: IKE SA {} up with {} ({})",
            s(&e["ike_sa"]),
            s(&e["remote_id"]),
            s(&e["suite"])
        ),
        "ike_down" => format!(
            "{t} {conn}: IKE SA {} down: {}",
            s(&e["ike_sa"]),
            s(&e["reason"])
        ),
        "ike_rekeyed" => format!(
            "{t} {conn}: IKE SA {} rekeyed to {}",
            s(&e["old"]),
            s(&e["new"])
        ),
        "child_up" | "child_rekeyed" => format!(
            "{t} {conn}: child {} {} SPIs in {} out {}{}, {} === {}",
            s(&e["child"]),
            if e["event"] == "child_up" {
                "up:"
            } else {
                "rekeyed:"
            },
            s(&e["inbound_spi"]),
            s(&e["outbound_spi"]),
            e["replaces"]
                .as_str()
                .map(|r| format!(" (replaces {r})"))
                .unwrap_or_default(),
            list(&e["local_ts"]),
            list(&e["remote_ts"])
        ),
        "child_down" => format!(
            "{t} {conn}: child {} down (SPIs in {} out {})",
            s(&e["child"]),
            s(&e["inbound_spi"]),
            s(&e["outbound_spi"])
        ),
        "child_failed" => format!(
            "{t} {conn}: child {} failed: {}",
            s(&e["child"]),
            s(&e["reason"])
        ),
        other => format!("{t} {conn}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn texts_name_what_matters() {
        let algs = super::super::introspect::algs_json();
        let t = self::algs(&algs);
        assert!(
            t.contains("aes256gcm16") && t.contains("x25519") && t.contains("IANA 31"),
            "{t}"
        );
        let e = json!({"time": "2026-12-06T03:00:00.000Z", "event": "child_up", "conn": "site",
            "child": "net", "inbound_spi": "0000abcd", "outbound_spi": "0000dcba",
            "replaces": null, "local_ts": ["10.1.0.0/16"], "remote_ts": ["10.2.0.0/16"]});
        assert_eq!(
            event(&e),
            "2026-12-06T03:00:00.000Z site: child net up: SPIs in 0000abcd out 0000dcba, 10.1.0.0/16 === 10.2.0.0/16"
        );
        assert!(certs(&json!([])).contains("no certificates"));
    }
}
