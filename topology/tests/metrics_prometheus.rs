//! Metrics scraped by a real Prometheus server (Debian's `prometheus`): two esprit gateways
//! keyed by esprit-ike, gateway A serving its dataplane's and its esprit-ike's metrics on
//! loopback in its namespace, a Prometheus in the same namespace scraping both every second,
//! and PromQL through Prometheus' HTTP API that must see the tunnel's byte counters grow with
//! the traffic sent through it. Also: a dataplane whose metrics address is taken does not
//! start, and says why.

use esprit_testkit::{require_root, require_tool};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use topology::ike::{write_configs, DataplaneThread, IkeDaemon, IkeSite};
use topology::{Lab, LabGuard, LabSpec, Node};

const WAIT: Duration = Duration::from_secs(30);
const DP_METRICS: &str = "127.0.0.1:9661";
const IKE_METRICS: &str = "127.0.0.1:9662";
const PROMETHEUS: &str = "127.0.0.1:9690";

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Prometheus server we started; killed (by its pid) when dropped.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `f` on a thread inside `node`'s network namespace (where 127.0.0.1 is the node's own
/// loopback).
fn in_node<T: Send + 'static>(
    lab: &Lab,
    node: Node,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let lab = lab.clone();
    std::thread::spawn(move || {
        lab.enter(node).map_err(|e| e.to_string())?;
        f()
    })
    .join()
    .map_err(|_| "the thread panicked".to_string())?
}

/// `GET path` from `addr` over HTTP/1.1; the body of a 200 answer.
fn http_get(addr: &str, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {answer:?}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{path}: {head}\n{body}"));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The result vector of an instant PromQL query, through Prometheus' HTTP API.
fn query(lab: &Lab, promql: &str) -> Result<Vec<Value>, String> {
    let path = format!("/api/v1/query?query={}", urlencode(promql));
    let body = in_node(lab, Node::GwA, move || http_get(PROMETHEUS, &path))?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{promql}: {v}"));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The value of a one-sample result.
fn value(r: &[Value]) -> f64 {
    r.first()
        .and_then(|s| s["value"][1].as_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `promql` until `ok` holds for its result.
fn wait_for(lab: &Lab, promql: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    let mut last = Err("not asked yet".to_string());
    while start.elapsed() < WAIT {
        last = query(lab, promql);
        if let Ok(r) = &last {
            if ok(r) {
                return r.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{promql}: not satisfied after {WAIT:?}; last answer {last:?}");
}

fn start_prometheus(lab: &Lab, dir: &Path) -> Prometheus {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: esprit-dataplane\n    static_configs:\n      - targets: ['{DP_METRICS}']\n\
             \x20 - job_name: esprit-ike\n    static_configs:\n      - targets: ['{IKE_METRICS}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = lab
        .command(Node::GwA, "prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Prometheus(child)
}

/// Pings host B from host A through the tunnel: `count` echoes of 1000 octets; returns the
/// loss in percent and ping's output.
fn ping(lab: &Lab, count: u32) -> (f64, String) {
    let cmd = format!("ping -n -c {count} -i 0.05 -s 1000 -W 1 10.201.2.2");
    let args: Vec<&str> = cmd.split(' ').collect();
    let out = lab.exec(Node::HostA, &args).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (topology::demo::loss(&text), text)
}

#[test]
#[ignore = "needs root and prometheus: ./ci/test.sh runs it as root"]
fn prometheus_sees_the_tunnel_byte_counters_grow() {
    require_root();
    require_tool("prometheus", &["--version"]);
    let lab = LabGuard::up(&LabSpec {
        name: format!("esprit-mx{}", std::process::id()),
        ..LabSpec::default()
    })
    .unwrap();
    let dir = TempDir(std::env::temp_dir().join(format!("esprit-mx-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let site_a = IkeSite {
        start_action: "start".into(),
        metrics: Some(IKE_METRICS.parse().unwrap()),
        ..IkeSite::default()
    };
    let (ike_a, mut dp_a) = write_configs(&lab, Node::GwA, &dir.0, &site_a).unwrap();
    let (ike_b, mut dp_b) = write_configs(&lab, Node::GwB, &dir.0, &IkeSite::default()).unwrap();
    dp_a.metrics = Some(DP_METRICS.parse().unwrap());

    // A metrics address already in use: the dataplane refuses to start and names it.
    let taken_listener = in_node(&lab, Node::GwB, || {
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())
    })
    .unwrap();
    let taken: SocketAddr = taken_listener.local_addr().unwrap();
    dp_b.metrics = Some(taken);
    let err = DataplaneThread::start(&lab, Node::GwB, dp_b.clone())
        .err()
        .expect("a dataplane whose metrics address is taken must not start");
    assert!(
        err.contains(&format!("metrics listener {taken}: cannot listen: ")),
        "{err}"
    );
    drop(taken_listener);
    dp_b.metrics = None;

    let dp_a = DataplaneThread::start(&lab, Node::GwA, dp_a).unwrap();
    let dp_b = DataplaneThread::start(&lab, Node::GwB, dp_b).unwrap();
    let ike_b = IkeDaemon::start(&lab, Node::GwB, &ike_b).unwrap();
    let ike_a = IkeDaemon::start(&lab, Node::GwA, &ike_a).unwrap();
    ike_a.wait_child(WAIT).unwrap();
    let prom = start_prometheus(&lab, &dir.0);

    // Both targets scraped, and each shows its side of the tunnel.
    wait_for(
        &lab,
        "min(up{job=~\"esprit-.*\"}) == 1 and count(up{job=~\"esprit-.*\"}) == 2",
        |r| !r.is_empty(),
    );
    wait_for(
        &lab,
        "ipsec_ike_sa_state{job=\"esprit-ike\",name=\"site\",state=\"established\"} == 1",
        |r| r.len() == 1,
    );
    wait_for(
        &lab,
        "ipsec_child_sa_state{job=\"esprit-ike\",name=\"site\",child=\"net\",state=\"installed\"}",
        |r| r.len() == 1,
    );
    let out =
        "sum(ipsec_child_sa_bytes_out_total{job=\"esprit-dataplane\",name=\"site\",child=\"net\"})";
    let before = value(&wait_for(&lab, out, |r| r.len() == 1));

    // Traffic through the tunnel: 40 echoes of 1000 octets each way.
    let (loss, text) = ping(&lab, 40);
    assert!(loss <= 10.0, "{text}");

    // The byte counter of the tunnel grows, as Prometheus sees it.
    wait_for(
        &lab,
        "increase(ipsec_child_sa_bytes_out_total{job=\"esprit-dataplane\",name=\"site\",child=\"net\"}[30s]) > 30000",
        |r| !r.is_empty(),
    );
    let after = value(&wait_for(&lab, out, |r| value(r) >= before + 36.0 * 1028.0));
    assert!(after > before, "{before} → {after}");
    wait_for(
        &lab,
        "increase(ipsec_child_sa_packets_in_total{job=\"esprit-dataplane\",name=\"site\",child=\"net\"}[30s]) > 30",
        |r| !r.is_empty(),
    );
    wait_for(
        &lab,
        "sum(esprit_dataplane_packets_total{job=\"esprit-dataplane\",direction=\"lan_to_wan\"}) >= 36",
        |r| !r.is_empty(),
    );
    // No drop reason grew by more than a handful (the first echo may wait for a next hop).
    let r = query(
        &lab,
        "sum(esprit_dataplane_drops_total{job=\"esprit-dataplane\"}) or vector(0)",
    )
    .unwrap();
    assert!(value(&r) <= 4.0, "{r:?}");
    // Nothing Prometheus fetched looks like a key or the PSK.
    let dp_text = in_node(&lab, Node::GwA, || http_get(DP_METRICS, "/metrics")).unwrap();
    let ike_text = in_node(&lab, Node::GwA, || http_get(IKE_METRICS, "/metrics")).unwrap();
    for t in [&dp_text, &ike_text] {
        assert!(!t.contains(topology::ike::LAB_PSK), "{t}");
        assert!(t.ends_with("# EOF\n"));
    }
    drop(prom);
    drop(ike_a);
    drop(ike_b);
    dp_a.stop().unwrap();
    dp_b.stop().unwrap();
}
