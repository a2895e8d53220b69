//! A paced UDP stream with sequence numbers between two lab hosts, for measuring what a
//! failover loses: one datagram every `interval`, round-robin over several flows (source
//! ports), so that ECMP spreads them over the paths and the ones on a path that is cut show
//! how long that path's traffic took to move. The receiver records which sequence numbers
//! arrived; [`analyse`] turns that into packets lost and the longest outage of any flow.

use crate::lab::{Lab, Node};
use serde::Serialize;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the receiver keeps listening after the last datagram was sent.
const DRAIN: Duration = Duration::from_millis(500);
/// The first of the senders' source ports (flow `i` uses `SRC_PORT_BASE + i`).
pub const SRC_PORT_BASE: u16 = 40_000;

/// One datagram sent: its sequence number, flow and when it left (since the stream began).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sent {
    /// Sequence number (from 0).
    pub seq: u32,
    /// Flow (source port index).
    pub flow: u16,
    /// Send time since the stream began.
    pub at: Duration,
}

/// What a stream lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Loss {
    /// Datagrams sent.
    pub sent: usize,
    /// Datagrams that never arrived.
    pub lost: usize,
    /// Flows that lost at least one datagram.
    pub flows_hit: usize,
    /// The longest outage of any flow, milliseconds: from the send time of the first datagram
    /// of its longest run of losses to that of the first one received after it.
    pub outage_ms: f64,
    /// Every flow that lost something got datagrams through again afterwards.
    pub recovered: bool,
}

/// Losses and outages of a stream from what was sent and which sequence numbers arrived.
pub fn analyse(sent: &[Sent], arrived: &[bool]) -> Loss {
    let got = |s: &Sent| arrived.get(s.seq as usize).copied().unwrap_or(false);
    let flows = sent.iter().map(|s| s.flow).max().map_or(0, |m| m + 1);
    let mut loss = Loss {
        sent: sent.len(),
        lost: sent.iter().filter(|s| !got(s)).count(),
        recovered: true,
        ..Loss::default()
    };
    for f in 0..flows {
        let mut run_start: Option<Duration> = None;
        let mut hit = false;
        for s in sent.iter().filter(|s| s.flow == f) {
            match (got(s), run_start) {
                (false, None) => {
                    run_start = Some(s.at);
                    hit = true;
                }
                (true, Some(t0)) => {
                    let ms = (s.at - t0).as_secs_f64() * 1e3;
                    loss.outage_ms = loss.outage_ms.max(ms);
                    run_start = None;
                }
                _ => {}
            }
        }
        if hit {
            loss.flows_hit += 1;
        }
        if run_start.is_some() {
            loss.recovered = false;
        }
    }
    loss
}

/// A stream under way.
pub struct Stream {
    stop: Arc<AtomicBool>,
    sender: JoinHandle<Result<Vec<Sent>, String>>,
    receiver: JoinHandle<Result<(), String>>,
    arrived: Arc<Mutex<Vec<bool>>>,
    receiving: Arc<AtomicBool>,
}

impl Stream {
    /// Starts sending from `from` (over `flows` source ports of `src`) to `dst` in `to`'s
    /// namespace, one datagram every `interval`.
    pub fn start(
        lab: &Lab,
        (from, src): (Node, std::net::IpAddr),
        (to, dst): (Node, SocketAddr),
        interval: Duration,
        flows: u16,
    ) -> Result<Stream, String> {
        let arrived = Arc::new(Mutex::new(Vec::new()));
        let receiving = Arc::new(AtomicBool::new(true));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (lab_r, got, on) = (lab.clone(), arrived.clone(), receiving.clone());
        let receiver = std::thread::spawn(move || -> Result<(), String> {
            lab_r.enter(to).map_err(|e| format!("{to}: {e}"))?;
            let sock = UdpSocket::bind(dst).map_err(|e| format!("{to}: binding {dst}: {e}"))?;
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .map_err(|e| e.to_string())?;
            let _ = ready_tx.send(());
            let mut buf = [0u8; 64];
            while on.load(Ordering::Relaxed) {
                let Ok(n) = sock.recv(&mut buf) else { continue };
                let Some(seq) = buf.get(..4).filter(|_| n >= 4) else {
                    continue;
                };
                let seq = u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]) as usize;
                let mut g = got.lock().map_err(|_| "receiver lock poisoned")?;
                if seq >= g.len() {
                    g.resize(seq + 1, false);
                }
                g[seq] = true;
            }
            Ok(())
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| format!("{to}: the stream's receiver did not start"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (lab_s, st) = (lab.clone(), stop.clone());
        let sender = std::thread::spawn(move || -> Result<Vec<Sent>, String> {
            lab_s.enter(from).map_err(|e| format!("{from}: {e}"))?;
            let socks = (0..flows.max(1))
                .map(|i| {
                    let a = SocketAddr::new(src, SRC_PORT_BASE + i);
                    UdpSocket::bind(a).map_err(|e| format!("{from}: binding {a}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut sent = Vec::new();
            let start = Instant::now();
            let mut seq = 0u32;
            while !st.load(Ordering::Relaxed) {
                let due = interval * seq;
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
                let flow = (seq % u32::from(flows.max(1))) as u16;
                let at = start.elapsed();
                // A send error (no route for a moment) is a lost datagram like any other.
                let _ = socks[usize::from(flow)].send_to(&seq.to_be_bytes(), dst);
                sent.push(Sent { seq, flow, at });
                seq += 1;
            }
            Ok(sent)
        });
        Ok(Stream {
            stop,
            sender,
            receiver,
            arrived,
            receiving,
        })
    }

    /// Stops sending, lets the last datagrams arrive, and returns what was lost.
    pub fn finish(self) -> Result<Loss, String> {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self
            .sender
            .join()
            .map_err(|_| "the stream's sender panicked")?;
        std::thread::sleep(DRAIN);
        self.receiving.store(false, Ordering::Relaxed);
        self.receiver
            .join()
            .map_err(|_| "the stream's receiver panicked")??;
        let sent = sent?;
        let arrived = self.arrived.lock().map_err(|_| "receiver lock poisoned")?;
        Ok(analyse(&sent, &arrived))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(n: u32, flows: u16) -> Vec<Sent> {
        (0..n)
            .map(|seq| Sent {
                seq,
                flow: (seq % u32::from(flows)) as u16,
                at: Duration::from_millis(u64::from(seq) * 5),
            })
            .collect()
    }

    #[test]
    fn nothing_lost_is_no_outage() {
        let l = analyse(&sent(100, 4), &[true; 100]);
        assert_eq!((l.sent, l.lost, l.flows_hit), (100, 0, 0));
        assert_eq!(l.outage_ms, 0.0);
        assert!(l.recovered);
    }

    #[test]
    fn a_flow_cut_for_a_while_gives_its_outage() {
        // Flow 1 (seq 1, 5, 9, …) loses seq 21..=41; it is back at seq 45.
        let s = sent(100, 4);
        let arrived: Vec<bool> = (0..100)
            .map(|i| !(i % 4 == 1 && (21..=41).contains(&i)))
            .collect();
        let l = analyse(&s, &arrived);
        assert_eq!(l.lost, 6);
        assert_eq!(l.flows_hit, 1);
        assert_eq!(l.outage_ms, 120.0);
        assert!(l.recovered);
    }

    #[test]
    fn a_flow_that_never_comes_back_is_not_recovered() {
        let s = sent(40, 2);
        let arrived: Vec<bool> = (0..40).map(|i| i < 10 || i % 2 == 0).collect();
        let l = analyse(&s, &arrived);
        assert!(!l.recovered);
        assert_eq!(l.lost, 15);
        // A shorter arrival record (the last datagrams never came) counts them as lost.
        assert_eq!(analyse(&s, &arrived[..20]).lost, 25);
    }
}
