//! The `esprit-ike` and `espctl` binaries end to end on loopback, without a dataplane or
//! namespaces: two daemons (127.0.0.1 and 127.0.0.2 on unprivileged ports) negotiate an IKE
//! SA with its child, `espctl ike list` shows it on both, `espctl rekey` and `espctl terminate`
//! act on it, `espctl reload` re-reads the file, and `esprit-ike --check` names the file, the
//! line and the key of a configuration error. The daemons lock their memory (`mlockall` with
//! RLIMIT_MEMLOCK raised), which needs root: that test is ignored by a plain `cargo test` and
//! run by `./ci/test.sh`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(
    dir: &Path,
    me: &str,
    peer: &str,
    port: u16,
    start: &str,
    lid: &str,
    rid: &str,
) -> PathBuf {
    let text = format!(
        r#"[daemon]
dataplane_socket = "{dir}/{lid}-dp.sock"
socket = "{dir}/{lid}-ike.sock"
port = {port}
port_nat_t = {natt}
retransmit_timeout = "1s"

[connections.site]
local_addrs = ["{me}"]
remote_addrs = ["{peer}"]
remote_port = {port}
proposals = ["aes128gcm16-prfsha256-x25519"]
local = {{ auth = "psk", id = "{lid}" }}
remote = {{ auth = "psk", id = "{rid}" }}
start_action = "{start}"

[connections.site.children.net]
local_ts = ["10.{a}.0.0/16"]
remote_ts = ["10.{b}.0.0/16"]
esp_proposals = ["aes256gcm16"]

[[secrets.ike]]
ids = ["gwA", "gwB"]
secret = "loopback-test-secret"
"#,
        dir = dir.display(),
        natt = port + 4000,
        a = if lid == "gwA" { 1 } else { 2 },
        b = if lid == "gwA" { 2 } else { 1 },
    );
    let p = dir.join(format!("{lid}.toml"));
    write_private(&p, &text);
    p
}

/// Writes a file with mode 0600 (esprit-ike refuses a PSK others can read).
fn write_private(p: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(p)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn espctl(sock: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_espctl"))
        .arg("--ike-socket")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn start(cfg: &Path, log: &Path) -> Daemon {
    let err = std::fs::File::create(log).unwrap();
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_esprit-ike"))
            .arg("--config")
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap(),
    )
}

/// gwA's configuration (peer 127.0.0.2, IKE on `port`) in a fresh directory named by `tag`,
/// removed when the returned guard drops.
fn gw_a_config(tag: &str, port: u16, start: &str) -> (TempDir, PathBuf) {
    let dir =
        TempDir(std::env::temp_dir().join(format!("esprit-ike-{tag}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let p = config(&dir.0, "127.0.0.1", "127.0.0.2", port, start, "gwA", "gwB");
    (dir, p)
}

/// Runs esprit-ike with `cfg`, which must fail to start; returns its standard error.
fn start_fails(cfg: &Path) -> String {
    let run = Command::new(env!("CARGO_BIN_EXE_esprit-ike"))
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    assert!(!run.status.success());
    String::from_utf8_lossy(&run.stderr).into_owned()
}

/// `GET /metrics` from `addr`: the body of a 200 answer.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    body.to_string()
}

fn list(sock: &Path) -> serde_json::Value {
    let (ok, out, err) = espctl(sock, &["ike", "list", "--json"]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn wait(what: &str, logs: &[&Path], mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > Duration::from_secs(20) {
            let l: Vec<String> = logs
                .iter()
                .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                .collect();
            panic!("{what}\n{}", l.join("\n----\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two daemons on loopback: gwA (127.0.0.1, `start_action = "start"`) and gwB (127.0.0.2,
/// responder), each configuration with extra `[daemon]` lines and extra text at its end; their
/// stderr goes to `la` and `lb`. Fields drop in order: the daemons stop before the directory
/// goes.
struct Loopback {
    _a: Daemon,
    _b: Daemon,
    la: PathBuf,
    lb: PathBuf,
    sa: PathBuf,
    sb: PathBuf,
    _dir: TempDir,
}

fn loopback(tag: &str, port: u16, a: (&str, &str), b: (&str, &str)) -> Loopback {
    let dir =
        TempDir(std::env::temp_dir().join(format!("esprit-ike-{tag}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let ca = config(
        &dir.0,
        "127.0.0.1",
        "127.0.0.2",
        port,
        "start",
        "gwA",
        "gwB",
    );
    let cb = config(&dir.0, "127.0.0.2", "127.0.0.1", port, "none", "gwB", "gwA");
    for (p, (daemon, end)) in [(&ca, a), (&cb, b)] {
        let text = std::fs::read_to_string(p).unwrap();
        let text = text.replacen("[daemon]\n", &format!("[daemon]\n{daemon}"), 1);
        write_private(p, &format!("{text}{end}"));
    }
    let (la, lb) = (dir.0.join("a.log"), dir.0.join("b.log"));
    let (sa, sb) = (dir.0.join("gwA-ike.sock"), dir.0.join("gwB-ike.sock"));
    let _b = start(&cb, &lb);
    wait("gwB's control socket", &[&lb], || sb.exists());
    let _a = start(&ca, &la);
    Loopback {
        _a,
        _b,
        la,
        lb,
        sa,
        sb,
        _dir: dir,
    }
}

#[test]
#[ignore = "needs root (esprit-ike locks its memory with mlockall): ./ci/test.sh runs it as root"]
fn two_daemons_on_loopback_driven_by_espctl() {
    esprit_testkit::require_root();
    let port = 20_000 + (std::process::id() % 5_000) as u16;
    let metrics = format!("127.0.0.1:{}", port + 1000);
    let lo = loopback(
        "lo",
        port,
        ("", &format!("\n[metrics]\nlisten = \"{metrics}\"\n")),
        ("", ""),
    );
    let (la, lb, sa, sb) = (&lo.la, &lo.lb, &lo.sa, &lo.sb);
    let logs = [la.as_path(), lb.as_path()];
    let up = |s: &Path| {
        let v = list(s);
        v.as_array().is_some_and(|a| {
            a.len() == 1
                && a[0]["state"] == "established"
                && a[0]["children"].as_array().is_some_and(|c| c.len() == 1)
        })
    };
    wait("the IKE SA and its child", &logs, || {
        sa.exists() && up(sa) && up(sb)
    });
    let (a, b) = (list(sa), list(sb));
    assert_eq!(a[0]["role"], "initiator");
    assert_eq!(b[0]["role"], "responder");
    assert_eq!(a[0]["spi_i"], b[0]["spi_i"]);
    assert_eq!(a[0]["remote_id"], "gwB");
    assert_eq!(
        a[0]["children"][0]["inbound_spi"],
        b[0]["children"][0]["outbound_spi"]
    );
    assert_eq!(a[0]["children"][0]["encr"], "aes256gcm16");
    assert_eq!(a[0]["children"][0]["local_ts"][0], "10.1.0.0/16");
    // The metrics endpoint, served from the daemon's loop, shows the same IKE SA and child.
    let text = scrape(&metrics);
    let spi_in = a[0]["children"][0]["inbound_spi"].as_str().unwrap();
    for want in [
        "ipsec_ike_sas 1\n".to_string(),
        "role=\"initiator\",state=\"established\"} 1\n".into(),
        format!("ipsec_child_sa_state{{name=\"site\",child=\"net\",spi_in=\"0x{spi_in}\","),
        "esprit_ike_dropped_total{reason=\"malformed\"} 0\n".into(),
        "esprit_metrics_requests_total{outcome=\"ok\"} 0\n".into(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(!text.contains("loopback-test-secret"));
    // The human table names the connection, the state and the child's selectors.
    let (ok, table, _) = espctl(sa, &["ike", "list"]);
    assert!(
        ok && table.contains("site: established initiator")
            && table.contains("10.1.0.0/16 === 10.2.0.0/16"),
        "{table}"
    );
    // A child rekey from B: a new SPI on both sides, still one child.
    let old = a[0]["children"][0]["inbound_spi"].clone();
    let (ok, out, err) = espctl(sb, &["rekey", "site"]);
    assert!(ok, "{out}{err}");
    wait("the rekeyed child", &logs, || {
        let v = list(sa);
        v[0]["children"]
            .as_array()
            .is_some_and(|c| c.len() == 1 && c[0]["inbound_spi"] != old)
    });
    // Reload, then terminate from A: both sides empty.
    let (ok, out, _) = espctl(sa, &["reload"]);
    assert!(ok && out.contains("1 connections"), "{out}");
    let (ok, out, err) = espctl(sa, &["terminate", "site"]);
    assert!(ok, "{out}{err}");
    wait("both sides empty", &logs, || {
        list(sa).as_array().is_some_and(|a| a.is_empty())
            && list(sb).as_array().is_some_and(|a| a.is_empty())
    });
    let (ok, _, err) = espctl(sa, &["terminate", "nope"]);
    assert!(!ok && err.contains("no connection named 'nope'"), "{err}");
    let log = std::fs::read_to_string(la).unwrap();
    assert!(
        log.contains("established with gwB") && !log.contains("loopback-test-secret"),
        "{log}"
    );
}

#[test]
fn check_names_the_file_line_and_key() {
    let (_dir, p) = gw_a_config("chk", 20_500, "start");
    let ok = Command::new(env!("CARGO_BIN_EXE_esprit-ike"))
        .arg("--check")
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok, 1 connections"));
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16-prfsha256-ecp999",
    );
    write_private(&p, &text);
    let bad = Command::new(env!("CARGO_BIN_EXE_esprit-ike"))
        .arg("--check")
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        err.contains("gwA.toml:12:")
            && err.contains("connections.site.proposals[0]")
            && err.contains("ecp999"),
        "{err}"
    );
}

#[test]
fn a_psk_others_can_read_is_refused_by_check_and_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, p) = gw_a_config("mode", 20_600, "start");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let want = format!(
        "{} holds secrets but is accessible by group or others (mode 0644): run `chmod 600 {}`",
        p.display(),
        p.display()
    );
    let check = Command::new(env!("CARGO_BIN_EXE_esprit-ike"))
        .arg("--check")
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2));
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(err.contains(&want), "{err}");
    let err = start_fails(&p);
    assert!(err.contains(&want), "{err}");
}

#[test]
fn a_metrics_listener_that_cannot_bind_is_a_start_up_error() {
    let (_dir, p) = gw_a_config("mx", 20_700, "none");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    write_private(&p, &format!("{text}\n[metrics]\nlisten = \"{addr}\"\n"));
    let err = start_fails(&p);
    assert!(
        err.contains(&format!(
            "esprit-ike: error: metrics listener {addr}: cannot listen: "
        )),
        "{err}"
    );
}

/// RFC 4648 base64 of `b`, with padding.
fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, x)| n | u32::from(*x) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Every key esprit-ike exported to its Wireshark key directory (`daemon.wireshark_keys`):
/// SK_ei and SK_er of each IKE SA and the key of each ESP SA, each with its salt.
fn exported_keys(dir: &Path) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let ike = std::fs::read_to_string(dir.join("ikev2_decryption_table")).unwrap();
    for l in ike.lines() {
        let f: Vec<&str> = l.split(',').collect();
        keys.push(unhex(f[2]));
        keys.push(unhex(f[3]));
    }
    let esp = std::fs::read_to_string(dir.join("esp_sa")).unwrap();
    for l in esp.lines() {
        let f: Vec<&str> = l.split(',').map(|f| f.trim_matches('"')).collect();
        keys.push(unhex(f[5].trim_start_matches("0x")));
    }
    keys
}

/// The ways a secret could appear in a log line: as text, in hex (either case) and in base64,
/// whole and (for keys followed by a salt) without the salt.
fn spellings(secret: &[u8]) -> Vec<String> {
    let mut forms = Vec::new();
    let parts: Vec<&[u8]> = if secret.len() > 8 {
        vec![secret, &secret[..secret.len() - 4]]
    } else {
        vec![secret]
    };
    for p in parts {
        let hex: String = p.iter().map(|b| format!("{b:02x}")).collect();
        forms.push(hex.to_uppercase());
        forms.push(hex);
        forms.push(base64(p).trim_end_matches('=').to_string());
        if let Ok(s) = std::str::from_utf8(p) {
            forms.push(s.to_string());
        }
    }
    forms
}

#[test]
fn base64_matches_rfc4648() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}

#[test]
#[ignore = "needs root (esprit-ike locks its memory with mlockall): ./ci/test.sh runs it as root"]
fn no_log_line_holds_the_psk_or_a_negotiated_key() {
    esprit_testkit::require_root();
    let port = 25_000 + (std::process::id() % 5_000) as u16;
    // Both at the most verbose level, exporting their keys; A writes text, B JSON.
    let tag = format!("esprit-ike-keys-{}", std::process::id());
    let (ka, kb) = (
        std::env::temp_dir().join(format!("{tag}-a")),
        std::env::temp_dir().join(format!("{tag}-b")),
    );
    let daemon = |keys: &Path, format: &str| {
        format!(
            "log_level = \"trace\"\nlog_format = \"{format}\"\nwireshark_keys = \"{}\"\n",
            keys.display()
        )
    };
    let _keys = (TempDir(ka.clone()), TempDir(kb.clone()));
    let lo = loopback(
        "sec",
        port,
        (&daemon(&ka, "text"), ""),
        (&daemon(&kb, "json"), ""),
    );
    let (la, lb, sa, sb) = (&lo.la, &lo.lb, &lo.sa, &lo.sb);
    let logs = [la.as_path(), lb.as_path()];
    let children = |s: &Path| -> Vec<String> {
        list(s)
            .as_array()
            .and_then(|a| a.first())
            .and_then(|sa| sa["children"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|c| c["inbound_spi"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    wait("the IKE SA and its child", &logs, || {
        sa.exists() && children(sa).len() == 1 && children(sb).len() == 1
    });
    // A child rekey, an IKE SA rekey, junk for the drop logs, then a terminate: every kind of
    // line the daemons write while keys change hands.
    let first = children(sa);
    let (ok, out, err) = espctl(sb, &["rekey", "site"]);
    assert!(ok, "{out}{err}");
    wait("the rekeyed child", &logs, || {
        let c = children(sa);
        c.len() == 1 && c != first
    });
    let ike_spi = |s: &Path| list(s)[0]["spi_i"].clone();
    let before = ike_spi(sa);
    let (ok, out, err) = espctl(sa, &["rekey", "site", "--ike"]);
    assert!(ok, "{out}{err}");
    wait("the rekeyed IKE SA", &logs, || {
        list(sa)
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["spi_i"] != before)
    });
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for n in [8usize, 28, 60] {
        junk.send_to(&vec![0x5a; n], ("127.0.0.2", port)).unwrap();
    }
    let (ok, out, err) = espctl(sa, &["terminate", "site"]);
    assert!(ok, "{out}{err}");
    wait("both sides empty", &logs, || {
        list(sa).as_array().is_some_and(|a| a.is_empty())
            && list(sb).as_array().is_some_and(|a| a.is_empty())
    });
    // The secrets: the PSK and every key either side negotiated.
    let mut secrets = vec![b"loopback-test-secret".to_vec()];
    for k in [&ka, &kb] {
        secrets.extend(exported_keys(k));
    }
    // Two IKE SAs (before and after the rekey) of two keys each, two children of two keys.
    assert!(secrets.len() > 8, "{}", secrets.len());
    let forms: Vec<String> = secrets.iter().flat_map(|s| spellings(s)).collect();
    let (a, b) = (
        std::fs::read_to_string(la).unwrap(),
        std::fs::read_to_string(lb).unwrap(),
    );
    // The logs say what happened, with the SA's fields, in their formats.
    assert!(
        a.contains("established with gwB") && a.contains("ike_spi_i=") && a.contains("spi_in="),
        "{a}"
    );
    assert!(
        a.contains("child net up") && a.contains("rekeyed, now"),
        "{a}"
    );
    let mut json_lines = 0;
    for l in b.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}"));
        assert!(
            v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{l}"
        );
        json_lines += 1;
    }
    assert!(
        b.contains("\"ike_spi_r\":") && b.contains("dropped a datagram"),
        "{b}"
    );
    assert!(json_lines > 5, "{b}");
    for (name, text) in [("gwA", &a), ("gwB", &b)] {
        for (n, line) in text.lines().enumerate() {
            for f in &forms {
                assert!(
                    !line.contains(f.as_str()),
                    "{name}'s log line {} holds a secret ({f}): {line}",
                    n + 1
                );
            }
        }
    }
}

/// Under systemd, whose `JOURNAL_STREAM` names the daemon's stderr, lines have no timestamp
/// and start with their syslog priority; the same variable naming another file changes
/// nothing.
#[test]
fn under_the_journal_lines_carry_a_priority_and_no_timestamp() {
    use std::os::unix::fs::MetadataExt;
    let (dir, p) = gw_a_config("journal", 20_800, "none");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    write_private(&p, &format!("{text}\n[metrics]\nlisten = \"{addr}\"\n"));
    let run = |journal_of: Option<&Path>, log: &Path| -> String {
        let err = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_esprit-ike"));
        cmd.arg("--config")
            .arg(&p)
            .stderr(err)
            .env_remove("RUST_LOG");
        if let Some(f) = journal_of {
            let m = std::fs::metadata(f).unwrap();
            cmd.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
        }
        assert!(!cmd.status().unwrap().success());
        std::fs::read_to_string(log).unwrap()
    };
    let log = dir.0.join("journal.log");
    let out = run(Some(&log), &log);
    assert!(
        out.starts_with(&format!(
            "<3>esprit-ike: error: metrics listener {addr}: cannot listen: "
        )),
        "{out}"
    );
    let other = dir.0.join("other.log");
    std::fs::write(&other, "").unwrap();
    let out = run(Some(&other), &log);
    assert!(
        out.starts_with("20") && out.contains("Z esprit-ike: error: metrics listener"),
        "{out}"
    );
}

#[test]
#[ignore = "needs root (esprit-ike locks its memory with mlockall): ./ci/test.sh runs it as root"]
fn espctl_waits_for_the_exchanges_it_starts() {
    esprit_testkit::require_root();
    let dir = TempDir(std::env::temp_dir().join(format!("esprit-ike-wait-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    // Not the ports of two_daemons_on_loopback_driven_by_espctl, which may run at the same time.
    let port = 30_000 + (std::process::id() % 5_000) as u16;
    let ca = config(&dir.0, "127.0.0.1", "127.0.0.2", port, "none", "gwA", "gwB");
    let cb = config(&dir.0, "127.0.0.2", "127.0.0.1", port, "none", "gwB", "gwA");
    let (la, lb) = (dir.0.join("a.log"), dir.0.join("b.log"));
    let (sa, sb) = (dir.0.join("gwA-ike.sock"), dir.0.join("gwB-ike.sock"));
    let b = start(&cb, &lb);
    wait("gwB's control socket", &[&lb], || sb.exists());
    let _a = start(&ca, &la);
    wait("gwA's control socket", &[&la], || sa.exists());

    // initiate --wait returns once the IKE SA and the child are up, with the SA's stable id.
    let (ok, out, err) = espctl(&sa, &["initiate", "site", "--wait", "20s"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("established, child net installed"), "{out}");
    let v = list(&sa);
    let id = v[0]["id"].as_str().unwrap().to_string();
    assert!(out.contains(&id), "{out} does not name {id}");
    let child = &v[0]["children"][0];
    assert_eq!(child["state"], "installed");
    assert_eq!(
        child["id"],
        format!("site/net/{}", child["inbound_spi"].as_str().unwrap())
    );

    // rekey --child: an unknown child is refused; the known one is replaced before it returns.
    let (ok, _, err) = espctl(&sa, &["rekey", "site", "--child", "nope", "--wait"]);
    assert!(!ok && err.contains("no child named 'nope'"), "{err}");
    let old_child = child["id"].clone();
    let (ok, out, err) = espctl(&sa, &["rekey", "site", "--child", "net", "--wait", "20s"]);
    assert!(ok, "{out}{err}");
    let v = list(&sa);
    let children = v[0]["children"].as_array().unwrap();
    assert_eq!(children.len(), 1, "{v}");
    assert_ne!(children[0]["id"], old_child);
    assert_eq!(children[0]["state"], "installed");

    // rekey --ike --wait: a new IKE SA (new id) replaces the old one.
    let (ok, out, err) = espctl(&sa, &["rekey", "site", "--ike", "--wait", "20s"]);
    assert!(ok, "{out}{err}");
    let v = list(&sa);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_ne!(v[0]["id"].as_str().unwrap(), id);

    // terminate --wait returns once nothing is left.
    let (ok, out, err) = espctl(&sa, &["terminate", "site", "--wait", "20s"]);
    assert!(ok, "{out}{err}");
    assert!(list(&sa).as_array().is_some_and(|a| a.is_empty()));

    // A peer with another PSK: the exchange fails and --wait says so with a non-zero exit.
    drop(b);
    let text = std::fs::read_to_string(&cb)
        .unwrap()
        .replace("loopback-test-secret", "another-secret");
    write_private(&cb, &text);
    let _ = std::fs::remove_file(&sb);
    let _b = start(&cb, &lb);
    wait("gwB's control socket again", &[&lb], || sb.exists());
    let (ok, out, err) = espctl(&sa, &["initiate", "site", "--wait", "20s"]);
    assert!(!ok, "{out}{err}");
    assert!(err.contains("failed"), "{err}");

    // No peer at all: the wait runs out of time, also non-zero.
    drop(_b);
    let (ok, _, err) = espctl(&sa, &["initiate", "site", "--wait", "2s"]);
    assert!(!ok && err.contains("not done after"), "{err}");
}

/// One side's configuration for the reload test: connections `(name, local id, remote id,
/// proposal, child rekey_time, local_ts, remote_ts)` between 127.0.0.1 and 127.0.0.2.
fn reload_config(
    dir: &Path,
    me: &str,
    peer: &str,
    port: u16,
    tag: &str,
    conns: &[(&str, &str, &str, &str, &str, &str, &str)],
) -> String {
    let mut text = format!(
        "[daemon]\ndataplane_socket = \"{d}/{tag}-dp.sock\"\nsocket = \"{d}/{tag}-ike.sock\"\nport = {port}\nport_nat_t = {natt}\nretransmit_timeout = \"1s\"\n\n",
        d = dir.display(),
        natt = port + 4000,
    );
    for (name, lid, rid, proposal, rekey, lts, rts) in conns {
        let start = if tag == "a" { "start" } else { "none" };
        text += &format!(
            "[connections.{name}]\nlocal_addrs = [\"{me}\"]\nremote_addrs = [\"{peer}\"]\nremote_port = {port}\n\
             proposals = [\"{proposal}\"]\nlocal = {{ auth = \"psk\", id = \"{lid}\" }}\n\
             remote = {{ auth = \"psk\", id = \"{rid}\" }}\nstart_action = \"{start}\"\n\
             [connections.{name}.children.net]\nlocal_ts = [\"{lts}\"]\nremote_ts = [\"{rts}\"]\n\
             esp_proposals = [\"aes256gcm16\"]\nrekey_time = \"{rekey}\"\n\n\
             [[secrets.ike]]\nids = [\"{lid}\", \"{rid}\"]\nsecret = \"reload-{name}-secret\"\n\n"
        );
    }
    text
}

#[test]
#[ignore = "needs root (esprit-ike locks its memory with mlockall): ./ci/test.sh runs it as root"]
fn reload_touches_only_what_changed() {
    esprit_testkit::require_root();
    let dir =
        TempDir(std::env::temp_dir().join(format!("esprit-ike-reload-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let port = 40_000 + (std::process::id() % 5_000) as u16;
    let p1 = "aes128gcm16-prfsha256-x25519";
    let p2 = "aes256gcm16-prfsha384-ecp256";
    // gwB answers every connection gwA may ask for, with either proposal.
    let both = format!("{p1}\", \"{p2}");
    let b_conns = [
        (
            "keep",
            "kB",
            "kA",
            both.as_str(),
            "1h",
            "10.2.0.0/16",
            "10.1.0.0/16",
        ),
        (
            "change",
            "cB",
            "cA",
            both.as_str(),
            "1h",
            "10.4.0.0/16",
            "10.3.0.0/16",
        ),
        (
            "new",
            "nB",
            "nA",
            both.as_str(),
            "1h",
            "10.6.0.0/16",
            "10.5.0.0/16",
        ),
    ];
    let cb = dir.0.join("b.toml");
    write_private(
        &cb,
        &reload_config(&dir.0, "127.0.0.2", "127.0.0.1", port, "b", &b_conns),
    );
    let keep = ("keep", "kA", "kB", p1, "1h", "10.1.0.0/16", "10.2.0.0/16");
    let change = ("change", "cA", "cB", p1, "1h", "10.3.0.0/16", "10.4.0.0/16");
    let new = ("new", "nA", "nB", p1, "1h", "10.5.0.0/16", "10.6.0.0/16");
    let ca = dir.0.join("a.toml");
    let write_a = |conns: &[(&str, &str, &str, &str, &str, &str, &str)]| {
        write_private(
            &ca,
            &reload_config(&dir.0, "127.0.0.1", "127.0.0.2", port, "a", conns),
        );
    };
    write_a(&[keep, change]);
    let (la, lb) = (dir.0.join("a.log"), dir.0.join("b.log"));
    let (sa, sb) = (dir.0.join("a-ike.sock"), dir.0.join("b-ike.sock"));
    let _b = start(&cb, &lb);
    wait("gwB's control socket", &[&lb], || sb.exists());
    let a = start(&ca, &la);
    let logs = [la.as_path(), lb.as_path()];
    let of = |v: &serde_json::Value, conn: &str| -> Option<serde_json::Value> {
        v.as_array()?
            .iter()
            .find(|s| s["conn"] == conn && s["state"] == "established")
            .cloned()
    };
    let ids = |conn: &str| -> Option<(String, String)> {
        let s = of(&list(&sa), conn)?;
        let c = s["children"]
            .as_array()?
            .iter()
            .find(|c| c["state"] == "installed")?
            .clone();
        Some((s["id"].as_str()?.into(), c["id"].as_str()?.into()))
    };
    wait("keep and change up", &logs, || {
        sa.exists() && ids("keep").is_some() && ids("change").is_some()
    });
    let keep0 = ids("keep").unwrap();
    let change0 = ids("change").unwrap();

    // A child setting changes: the IKE SA stays, the child is rekeyed; `keep` is untouched.
    write_a(&[
        keep,
        ("change", "cA", "cB", p1, "2h", "10.3.0.0/16", "10.4.0.0/16"),
    ]);
    let (ok, out, err) = espctl(&sa, &["reload"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("change: IKE SA kept") && out.contains("rekeyed [net]"),
        "{out}"
    );
    assert!(out.contains("unchanged: keep"), "{out}");
    wait("change's child rekeyed", &logs, || {
        ids("change").is_some_and(|(ike, child)| ike == change0.0 && child != change0.1)
    });
    assert_eq!(
        ids("keep").unwrap(),
        keep0,
        "an untouched connection keeps its SAs"
    );

    // A connection is added: it starts (start_action = start).
    write_a(&[
        keep,
        ("change", "cA", "cB", p1, "2h", "10.3.0.0/16", "10.4.0.0/16"),
        new,
    ]);
    let (ok, out, err) = espctl(&sa, &["reload"]);
    assert!(ok && out.contains("added: new"), "{out}{err}");
    wait("new up", &logs, || ids("new").is_some());

    // It is removed again: deleted, and the peer is told.
    write_a(&[
        keep,
        ("change", "cA", "cB", p1, "2h", "10.3.0.0/16", "10.4.0.0/16"),
    ]);
    let (ok, out, err) = espctl(&sa, &["reload"]);
    assert!(ok && out.contains("removed (peer told): new"), "{out}{err}");
    wait("new gone on both sides", &logs, || {
        let gone = |s: &Path| {
            !list(s)
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["conn"] == "new")
        };
        gone(&sa) && gone(&sb)
    });

    // An IKE setting changes (the proposal): re-established, with a new IKE SA.
    let change_ike = ("change", "cA", "cB", p2, "2h", "10.3.0.0/16", "10.4.0.0/16");
    write_a(&[keep, change_ike]);
    let (ok, out, err) = espctl(&sa, &["reload"]);
    assert!(ok && out.contains("re-established: change"), "{out}{err}");
    wait("change re-established", &logs, || {
        ids("change").is_some_and(|(ike, _)| ike != change0.0)
    });
    let suite = of(&list(&sa), "change").unwrap();
    assert_eq!(suite["prf"], "prfsha384", "{suite}");
    assert_eq!(ids("keep").unwrap(), keep0);

    // A malformed file: refused with file and line, nothing changes.
    let good = std::fs::read_to_string(&ca).unwrap();
    write_private(
        &ca,
        &good.replace("start_action = \"start\"", "start_action = \"sometimes\""),
    );
    let (ok, _, err) = espctl(&sa, &["reload"]);
    assert!(!ok, "a malformed reload must fail");
    assert!(
        err.contains("a.toml") && err.contains("start_action"),
        "{err}"
    );
    assert_eq!(ids("keep").unwrap(), keep0);

    // SIGHUP reloads as espctl does: `change` goes away.
    write_a(&[keep]);
    // SAFETY: kill(2) on our child's pid.
    unsafe {
        libc::kill(a.0.id() as i32, libc::SIGHUP);
    }
    wait("change deleted after SIGHUP", &logs, || {
        !list(&sa)
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["conn"] == "change")
    });
    assert_eq!(ids("keep").unwrap(), keep0);
    let log = std::fs::read_to_string(&la).unwrap();
    assert!(log.contains("configuration reloaded"), "{log}");

    // Two children added to `keep`: the IKE SA stays, the one with start_action = "start" is
    // negotiated in it, the one with "none" waits for the peer.
    let child = |name: &str, third: u8, action: &str| {
        format!(
            "\n[connections.keep.children.{name}]\nlocal_ts = [\"10.1.{third}.0/24\"]\n\
             remote_ts = [\"10.2.{third}.0/24\"]\nesp_proposals = [\"aes256gcm16\"]\n\
             start_action = \"{action}\"\n"
        )
    };
    let base = std::fs::read_to_string(&ca).unwrap();
    write_private(
        &ca,
        &(base + &child("data", 1, "start") + &child("idle", 2, "none")),
    );
    let (ok, out, err) = espctl(&sa, &["reload"]);
    assert!(
        ok && out.contains("keep: IKE SA kept; children added [data, idle]"),
        "{out}{err}"
    );
    let children_of_keep = || -> Vec<String> {
        let v = list(&sa);
        v.as_array()
            .unwrap()
            .iter()
            .filter(|s| s["conn"] == "keep")
            .flat_map(|s| s["children"].as_array().unwrap().clone())
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    wait("the started child", &logs, || {
        children_of_keep().contains(&"data".to_string())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!children_of_keep().contains(&"idle".to_string()));
    assert_eq!(ids("keep").unwrap().0, keep0.0, "the IKE SA stays");
}

#[test]
#[ignore = "needs root (esprit-ike locks its memory with mlockall): ./ci/test.sh runs it as root"]
fn espctl_lists_connections_algorithms_and_follows_events() {
    use std::io::BufRead;
    esprit_testkit::require_root();
    let dir = TempDir(std::env::temp_dir().join(format!("esprit-ike-mon-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let port = 35_000 + (std::process::id() % 5_000) as u16;
    let ca = config(&dir.0, "127.0.0.1", "127.0.0.2", port, "none", "gwA", "gwB");
    let cb = config(&dir.0, "127.0.0.2", "127.0.0.1", port, "none", "gwB", "gwA");
    let (la, lb) = (dir.0.join("a.log"), dir.0.join("b.log"));
    let (sa, sb) = (dir.0.join("gwA-ike.sock"), dir.0.join("gwB-ike.sock"));
    let _b = start(&cb, &lb);
    wait("gwB's control socket", &[&lb], || sb.exists());
    let _a = start(&ca, &la);
    wait("gwA's control socket", &[&la], || sa.exists());

    // --run-dir (and ESPRIT_RUN_DIR) find ike.sock in the directory.
    let run_dir = dir.0.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::os::unix::fs::symlink(&sa, run_dir.join("ike.sock")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_espctl"))
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["ike", "list-conns"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("site: 127.0.0.1 -> 127.0.0.2")
            && text.contains("proposals: aes128gcm16-prfsha256-x25519")
            && text.contains("net: 10.1.0.0/16 === 10.2.0.0/16"),
        "{text}"
    );
    assert!(!text.contains("loopback-test-secret"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_espctl"))
        .env("ESPRIT_RUN_DIR", &run_dir)
        .args(["ike", "list-conns", "--json"])
        .output()
        .unwrap();
    let conns: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(conns[0]["name"], "site");
    assert_eq!(conns[0]["children"][0]["esp_proposals"][0], "aes256gcm16");
    assert_eq!(conns[0]["ike_sas_established"], 0);

    let (ok, algs, err) = espctl(&sa, &["ike", "list-algs"]);
    assert!(
        ok && algs.contains("x25519")
            && algs.contains("prfsha384")
            && algs.contains("integrity:\n  sha256")
            && algs.contains("chacha20poly1305")
            && algs.contains("modp4096"),
        "{algs}{err}"
    );
    let (ok, certs, _) = espctl(&sa, &["ike", "list-certs"]);
    assert!(ok && certs.contains("no certificates"), "{certs}");

    // monitor: the events of an initiation, a rekey and a terminate, as they happen.
    let mut mon = Command::new(env!("CARGO_BIN_EXE_espctl"))
        .arg("--ike-socket")
        .arg(&sa)
        .args(["monitor", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = mon.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // The monitor is registered before its first answer; give it that moment.
    std::thread::sleep(Duration::from_millis(300));
    let (ok, out, err) = espctl(&sa, &["initiate", "site", "--wait", "20s"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = espctl(&sa, &["rekey", "site", "--wait", "20s"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = espctl(&sa, &["terminate", "site", "--wait", "20s"]);
    assert!(ok, "{out}{err}");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
                seen.push(v["event"].as_str().unwrap().to_string());
                if seen.iter().any(|e| e == "ike_down") {
                    break;
                }
            }
            Err(_) => continue,
        }
    }
    let _ = mon.kill();
    let _ = mon.wait();
    for want in [
        "ike_up",
        "child_up",
        "child_rekeyed",
        "child_down",
        "ike_down",
    ] {
        assert!(seen.iter().any(|e| e == want), "{want} missing in {seen:?}");
    }
}
