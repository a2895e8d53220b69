use super::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs `f` with a logger of `settings` installed for this thread; returns what it wrote.
fn capture(settings: &Settings, f: impl FnOnce()) -> String {
    let out = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = out.clone();
    let layer = LineLayer::new(settings, move |b: &[u8]| {
        sink.lock().unwrap().extend_from_slice(b)
    });
    let (targets, _) = filter(settings.level, None);
    let sub = tracing_subscriber::registry().with(targets).with(layer);
    tracing::subscriber::with_default(sub, f);
    let bytes = out.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

fn settings(format: Format, journal: bool) -> Settings {
    Settings {
        daemon: "esprit-ike".into(),
        level: LevelFilter::INFO,
        format,
        journal,
        timestamps: !journal,
    }
}

#[test]
fn text_lines_carry_time_daemon_level_message_and_fields() {
    let out = capture(&settings(Format::Text, false), || {
        tracing::info!(
            conn = "site",
            ike_spi_i = "30db7a2a0af26b33",
            spi_in = %format_args!("{:08x}", 0xc001u32),
            "site: IKE SA up"
        );
        tracing::debug!("not written at info");
        tracing::warn!(reason = "half-open IKE SA timed out", "gone");
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let (ts, rest) = lines[0].split_once(' ').unwrap();
    assert_eq!(ts.len(), "2026-12-06T02:53:41.081Z".len(), "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.');
    assert_eq!(
        rest,
        "esprit-ike: info: site: IKE SA up conn=site ike_spi_i=30db7a2a0af26b33 spi_in=0000c001"
    );
    assert!(
        lines[1].ends_with("esprit-ike: warn: gone reason=\"half-open IKE SA timed out\""),
        "{}",
        lines[1]
    );
}

#[test]
fn under_the_journal_lines_have_a_priority_and_no_timestamp() {
    let out = capture(&settings(Format::Text, true), || {
        tracing::warn!(conn = "site", "site: child net failed");
        tracing::error!("cannot bind");
    });
    assert_eq!(
        out,
        "<4>esprit-ike: warn: site: child net failed conn=site\n<3>esprit-ike: error: cannot bind\n"
    );
    let json = capture(&settings(Format::Json, true), || tracing::info!("x"));
    assert!(!json.contains("timestamp"), "{json}");
}

#[test]
fn json_lines_are_one_object_each_with_the_fields() {
    let out = capture(&settings(Format::Json, false), || {
        tracing::info!(
            conn = "site",
            child = "net",
            replay_window = 1024u64,
            encap = true,
            "site: child net up"
        );
        tracing::warn!(peer = "a\nb \"c\"", "two\nlines");
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["level"], "info");
    assert_eq!(v["daemon"], "esprit-ike");
    assert_eq!(v["message"], "site: child net up");
    assert_eq!(v["conn"], "site");
    assert_eq!(v["child"], "net");
    assert_eq!(v["replay_window"], 1024);
    assert_eq!(v["encap"], true);
    assert!(v["target"].as_str().unwrap().starts_with("esprit_log"));
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(lines[0].starts_with("{\"timestamp\":"), "{}", lines[0]);
    let w: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(w["message"], "two\nlines");
    assert_eq!(w["peer"], "a\nb \"c\"");
}

#[test]
fn text_from_a_peer_cannot_start_a_line() {
    let out = capture(&settings(Format::Text, true), || {
        tracing::warn!(
            id = "x\nesprit-ike: info: forged",
            "refused: evil\r\nforged"
        );
    });
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("refused: evil\\r\\nforged"), "{out}");
    assert!(out.contains("id=\"x\\nesprit-ike: info: forged\""), "{out}");
}

#[test]
fn tools_write_plain_lines() {
    let out = capture(&Settings::tool("espctl"), || {
        tracing::error!("no connection named 'nope'")
    });
    assert_eq!(out, "espctl: error: no connection named 'nope'\n");
}

#[test]
fn span_fields_come_first() {
    let out = capture(&settings(Format::Text, true), || {
        let span = tracing::info_span!("gw", node = "gwA");
        let _g = span.enter();
        tracing::info!(conn = "site", "up");
    });
    assert_eq!(out, "<6>esprit-ike: info: up node=gwA conn=site\n");
}

#[test]
fn timestamps_are_rfc3339_utc_with_milliseconds() {
    let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms);
    assert_eq!(rfc3339_millis(at(0, 0)), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        rfc3339_millis(at(1_796_456_441, 81)),
        "2026-12-05T07:40:41.081Z"
    );
    assert_eq!(
        rfc3339_millis(at(951_782_400, 999)),
        "2000-02-29T00:00:00.999Z"
    );
    assert_eq!(
        rfc3339_millis(at(4_107_542_399, 5)),
        "2100-02-28T23:59:59.005Z"
    );
}

#[test]
fn journal_stream_must_name_stderr() {
    assert!(journal_stream_matches("8:12345", Some((8, 12345))));
    assert!(!journal_stream_matches("8:12345", Some((8, 12346))));
    assert!(!journal_stream_matches("8:12345", None));
    assert!(!journal_stream_matches("garbage", Some((8, 12345))));
    assert!(!journal_stream_matches("", Some((0, 0))));
    // This process's real stderr matches its own device and inode.
    let (dev, ino) = stderr_dev_ino().unwrap();
    assert!(journal_stream_matches(
        &format!("{dev}:{ino}"),
        Some((dev, ino))
    ));
}

#[test]
fn levels_formats_and_rust_log() {
    assert_eq!(parse_level("Warning").unwrap(), LevelFilter::WARN);
    assert_eq!(parse_level("debug").unwrap(), LevelFilter::DEBUG);
    assert!(parse_level("loud").is_err());
    assert_eq!("JSON".parse::<Format>().unwrap(), Format::Json);
    assert_eq!("text".parse::<Format>().unwrap(), Format::Text);
    assert!("xml".parse::<Format>().is_err());
    let (t, w) = filter(LevelFilter::INFO, Some("debug"));
    assert!(w.is_none());
    assert!(t.would_enable("control::daemon::run", &Level::DEBUG));
    let (t, w) = filter(LevelFilter::INFO, Some("warn,control::ike=trace"));
    assert!(w.is_none());
    assert!(t.would_enable("control::ike::session", &Level::TRACE));
    assert!(!t.would_enable("control::daemon::run", &Level::INFO));
    let (t, w) = filter(LevelFilter::INFO, Some("=#!"));
    assert!(w.is_some());
    assert!(t.would_enable("x", &Level::INFO) && !t.would_enable("x", &Level::DEBUG));
    let (t, w) = filter(LevelFilter::WARN, Some(""));
    assert!(w.is_none() && !t.would_enable("x", &Level::INFO));
}
