//! A minimal HTTP/1.1 responder for `GET /metrics`, without threads or an async runtime: the
//! daemon calls [`MetricsServer::service`] from its event loop (when the listener is readable,
//! and every few milliseconds while [`MetricsServer::busy`]); every socket is non-blocking.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections, a request head of at most [`MAX_REQUEST`]
//! octets, [`TIMEOUT`] to send it and [`TIMEOUT`] without progress while the answer is written.
//! One answer per connection (`Connection: close`). Whatever a client sends, the outcome is
//! counted ([`ServerStats`]) and never a panic.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Longest request head (request line and headers) accepted.
pub const MAX_REQUEST: usize = 8192;
/// Connections served at once; more are closed at once (counted as `refused`).
pub const MAX_CONNECTIONS: usize = 16;
/// Time a client has to send its request, and to take each part of the answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Bad requests logged one by one before only every 1000th is.
const LOG_FIRST: u64 = 10;

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound (in use, not local, no permission).
    #[error("metrics listener {addr}: cannot listen: {err}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The cause.
        err: io::Error,
    },
}

/// What the responder did, by outcome (each request counts once).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    /// `GET /metrics` answered.
    pub ok: u64,
    /// `GET /metrics` answered 503: the daemon could not gather its counters.
    pub unavailable: u64,
    /// Requests that are not HTTP/1.x, too large, not GET/HEAD, or cut short.
    pub bad_requests: u64,
    /// Requests for another path (answered 404).
    pub not_found: u64,
    /// Clients that did not send their request, or take the answer, in time.
    pub timeouts: u64,
    /// Connections closed at once because [`MAX_CONNECTIONS`] were open.
    pub refused: u64,
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    head: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    deadline: Instant,
}

/// What to answer to a complete request head.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Metrics { head_only: bool },
    NotFound,
    Bad(&'static str),
    MethodNotAllowed,
}

/// The metrics listener and its open connections.
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
    conns: Vec<Conn>,
    stats: ServerStats,
}

impl MetricsServer {
    /// Listens on `addr` (non-blocking). A failure is a start-up error naming the address.
    pub fn bind(addr: SocketAddr) -> Result<Self, MetricsError> {
        let err = |err| MetricsError::Bind { addr, err };
        let listener = TcpListener::bind(addr).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        Ok(MetricsServer {
            listener,
            addr,
            conns: Vec::new(),
            stats: ServerStats::default(),
        })
    }

    /// The address listened on (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The responder's counters.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// Whether connections are open: call [`MetricsServer::service`] again soon (within a few
    /// milliseconds) rather than waiting for the listener to become readable.
    pub fn busy(&self) -> bool {
        !self.conns.is_empty()
    }

    /// Accepts new connections, reads requests, writes answers and closes what is done or
    /// late. `render` makes the exposition, or None when the daemon cannot (answered 503);
    /// it is called at most once per call, and only when a
    /// `GET /metrics` is complete); `log` receives one line per bad request (rate-limited).
    pub fn service(
        &mut self,
        now: Instant,
        render: impl FnOnce(&ServerStats) -> Option<String>,
        mut log: impl FnMut(&str),
    ) {
        self.accept(now);
        let mut render = Some(render);
        let mut body: Option<Option<String>> = None;
        let mut i = 0;
        while i < self.conns.len() {
            let done = self.step(i, now, &mut render, &mut body, &mut log);
            if done {
                let c = self.conns.swap_remove(i);
                let _ = c.stream.shutdown(Shutdown::Both);
            } else {
                i += 1;
            }
        }
    }

    fn accept(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if self.conns.len() >= MAX_CONNECTIONS || stream.set_nonblocking(true).is_err()
                    {
                        self.stats.refused += 1;
                        continue;
                    }
                    self.conns.push(Conn {
                        stream,
                        peer,
                        head: Vec::new(),
                        out: Vec::new(),
                        sent: 0,
                        deadline: now + TIMEOUT,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Out of descriptors, a connection reset before accept: try again next time.
                Err(_) => return,
            }
        }
    }

    /// Advances connection `i`; true when it is finished.
    fn step(
        &mut self,
        i: usize,
        now: Instant,
        render: &mut Option<impl FnOnce(&ServerStats) -> Option<String>>,
        body: &mut Option<Option<String>>,
        log: &mut impl FnMut(&str),
    ) -> bool {
        if self.conns[i].out.is_empty() {
            match read_head(&mut self.conns[i]) {
                Head::Pending if now >= self.conns[i].deadline => {
                    self.stats.timeouts += 1;
                    let peer = self.conns[i].peer;
                    self.note(log, peer, "no complete request in time");
                    return true;
                }
                Head::Pending => return false,
                Head::Closed if self.conns[i].head.is_empty() => return true,
                Head::Closed => {
                    let peer = self.conns[i].peer;
                    self.bad(
                        log,
                        peer,
                        "connection closed before the request was complete",
                    );
                    return true;
                }
                Head::TooLarge => {
                    let peer = self.conns[i].peer;
                    self.bad(log, peer, "request head too large");
                    self.conns[i].out = answer(431, "Request Header Fields Too Large", None);
                }
                Head::Complete(n) => {
                    let verdict = parse(&self.conns[i].head[..n]);
                    let peer = self.conns[i].peer;
                    self.conns[i].out = match verdict {
                        Verdict::Metrics { head_only } => {
                            if body.is_none() {
                                let stats = self.stats;
                                *body = render.take().map(|r| r(&stats));
                            }
                            match body.as_ref().and_then(|b| b.as_deref()) {
                                Some(text) => {
                                    self.stats.ok += 1;
                                    answer(200, "OK", Some((text, head_only)))
                                }
                                None => {
                                    self.stats.unavailable += 1;
                                    answer(503, "Service Unavailable", None)
                                }
                            }
                        }
                        Verdict::NotFound => {
                            self.stats.not_found += 1;
                            answer(404, "Not Found", None)
                        }
                        Verdict::MethodNotAllowed => {
                            self.bad(log, peer, "method other than GET or HEAD");
                            answer(405, "Method Not Allowed", None)
                        }
                        Verdict::Bad(why) => {
                            self.bad(log, peer, why);
                            answer(400, "Bad Request", None)
                        }
                    };
                }
            }
            self.conns[i].deadline = now + TIMEOUT;
        }
        let c = &mut self.conns[i];
        loop {
            if c.sent == c.out.len() {
                return true;
            }
            match c.stream.write(&c.out[c.sent..]) {
                Ok(0) => return true,
                Ok(n) => {
                    c.sent += n;
                    c.deadline = now + TIMEOUT;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        if now >= c.deadline {
            let peer = c.peer;
            self.stats.timeouts += 1;
            self.note(log, peer, "answer not taken in time");
            return true;
        }
        false
    }

    fn bad(&mut self, log: &mut impl FnMut(&str), peer: SocketAddr, why: &str) {
        self.stats.bad_requests += 1;
        self.note(log, peer, why);
    }

    fn note(&self, log: &mut impl FnMut(&str), peer: SocketAddr, why: &str) {
        let n = self.stats.bad_requests + self.stats.timeouts;
        if n <= LOG_FIRST || n % 1000 == 0 {
            log(&format!(
                "metrics listener {}: {peer}: {why} ({} bad requests, {} timeouts so far)",
                self.addr, self.stats.bad_requests, self.stats.timeouts
            ));
        }
    }
}

impl AsRawFd for MetricsServer {
    /// The listener's descriptor, to register with the daemon's poll loop.
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

enum Head {
    Pending,
    Closed,
    TooLarge,
    /// The head ends at this offset.
    Complete(usize),
}

/// Reads what is available; reports whether the head (up to the empty line) is complete.
fn read_head(c: &mut Conn) -> Head {
    let mut tmp = [0u8; 2048];
    loop {
        if let Some(n) = head_end(&c.head) {
            return Head::Complete(n);
        }
        if c.head.len() > MAX_REQUEST {
            return Head::TooLarge;
        }
        match c.stream.read(&mut tmp) {
            Ok(0) => return Head::Closed,
            Ok(n) => c.head.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return match head_end(&c.head) {
                    Some(n) => Head::Complete(n),
                    None => Head::Pending,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Head::Closed,
        }
    }
}

/// Where the head ends (after CRLF CRLF, or LF LF as RFC 9112 §2.2 allows).
fn head_end(b: &[u8]) -> Option<usize> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Judges a complete request head.
fn parse(head: &[u8]) -> Verdict {
    let Ok(text) = std::str::from_utf8(head) else {
        return Verdict::Bad("request head is not UTF-8");
    };
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Verdict::Bad("malformed request line");
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Verdict::Bad("not HTTP/1.0 or HTTP/1.1");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            return Verdict::MethodNotAllowed
        }
        _ => return Verdict::Bad("malformed method"),
    };
    let path = target.split('?').next().unwrap_or("");
    if path == "/metrics" {
        Verdict::Metrics { head_only }
    } else if path.starts_with('/') {
        Verdict::NotFound
    } else {
        Verdict::Bad("malformed request target")
    }
}

/// A whole answer: status line, headers and, for 200, the exposition.
fn answer(code: u16, reason: &str, body: Option<(&str, bool)>) -> Vec<u8> {
    let (ctype, text, head_only) = match body {
        Some((t, h)) => (crate::CONTENT_TYPE, t, h),
        None => ("text/plain; charset=utf-8", reason, false),
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(text.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> MetricsServer {
        MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap()
    }

    /// Sends `request`, drives the server until the client has its answer (or gives up after
    /// `TIMEOUT` of simulated time), and returns the answer and the log lines.
    fn exchange(s: &mut MetricsServer, request: &[u8], close_write: bool) -> (String, Vec<String>) {
        let mut c = TcpStream::connect(s.local_addr()).unwrap();
        c.write_all(request).unwrap();
        if close_write {
            c.shutdown(Shutdown::Write).unwrap();
        }
        c.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut logs = Vec::new();
        let start = Instant::now();
        let mut now = start;
        for _ in 0..2000 {
            s.service(
                now,
                |_| Some("x_total 1\n# EOF\n".to_string()),
                |l| logs.push(l.to_string()),
            );
            let mut tmp = [0u8; 4096];
            match c.read(&mut tmp) {
                Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), logs),
                Ok(n) => got.extend_from_slice(&tmp[..n]),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
            now += Duration::from_millis(10);
        }
        (String::from_utf8_lossy(&got).into_owned(), logs)
    }

    #[test]
    fn get_metrics_is_answered_with_the_exposition() {
        let mut s = server();
        let (a, logs) = exchange(
            &mut s,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
            false,
        );
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        assert!(
            a.contains("Content-Type: application/openmetrics-text"),
            "{a}"
        );
        assert!(a.contains("Content-Length: 16\r\n"), "{a}");
        assert!(a.ends_with("\r\n\r\nx_total 1\n# EOF\n"), "{a}");
        assert!(logs.is_empty());
        assert_eq!(s.stats().ok, 1);
        assert!(!s.busy());
        let (a, _) = exchange(&mut s, b"HEAD /metrics?x=1 HTTP/1.0\n\n", false);
        assert!(
            a.starts_with("HTTP/1.1 200 OK\r\n") && a.ends_with("\r\n\r\n"),
            "{a}"
        );
    }

    #[test]
    fn bad_requests_are_answered_counted_and_logged() {
        let mut s = server();
        for (req, status) in [
            (&b"POST /metrics HTTP/1.1\r\n\r\n"[..], "405"),
            (b"GET /metrics HTTP/2.0\r\n\r\n", "400"),
            (b"GET /metrics\r\n\r\n", "400"),
            (b"\xff\xfe /metrics HTTP/1.1\r\n\r\n", "400"),
            (b"get /metrics HTTP/1.1\r\n\r\n", "400"),
            (b"GET metrics HTTP/1.1\r\n\r\n", "400"),
            (b"\r\n\r\n", "400"),
        ] {
            let (a, logs) = exchange(&mut s, req, false);
            assert!(
                a.starts_with(&format!("HTTP/1.1 {status} ")),
                "{req:?}: {a}"
            );
            assert_eq!(logs.len(), 1, "{req:?}: {logs:?}");
        }
        assert_eq!(s.stats().bad_requests, 7);
        let (a, logs) = exchange(&mut s, b"GET /other HTTP/1.1\r\n\r\n", false);
        assert!(a.starts_with("HTTP/1.1 404 "), "{a}");
        assert!(logs.is_empty());
        assert_eq!(s.stats().not_found, 1);
        assert_eq!(s.stats().ok, 0);
    }

    #[test]
    fn oversized_cut_short_and_silent_clients_are_bounded() {
        let mut s = server();
        let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while big.len() <= MAX_REQUEST + 10 {
            big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let (a, _) = exchange(&mut s, &big, false);
        assert!(a.starts_with("HTTP/1.1 431 "), "{a}");
        let (a, logs) = exchange(&mut s, b"GET /metr", true);
        assert_eq!(a, "");
        assert!(
            logs[0].contains("closed before the request was complete"),
            "{logs:?}"
        );
        // A client that sends half a request and waits: closed after TIMEOUT (simulated time).
        let (a, logs) = exchange(&mut s, b"GET /metrics HTTP/1.1\r\n", false);
        assert_eq!(a, "");
        assert!(logs[0].contains("no complete request in time"), "{logs:?}");
        assert_eq!(s.stats().timeouts, 1);
        assert_eq!(s.stats().bad_requests, 2);
        assert!(!s.busy());
        // Connecting and leaving without a word is not a bad request.
        let (_, logs) = exchange(&mut s, b"", true);
        assert!(logs.is_empty());
    }

    #[test]
    fn a_daemon_that_cannot_gather_its_counters_answers_503() {
        let mut s = server();
        let mut c = TcpStream::connect(s.local_addr()).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.service(Instant::now(), |_| None, |_| {});
        let mut a = String::new();
        c.read_to_string(&mut a).unwrap();
        assert!(a.starts_with("HTTP/1.1 503 "), "{a}");
        assert_eq!((s.stats().ok, s.stats().unavailable), (0, 1));
    }

    #[test]
    fn connections_beyond_the_limit_are_refused() {
        let mut s = server();
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS + 3)
            .map(|_| TcpStream::connect(s.local_addr()).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        s.service(Instant::now(), |_| Some(String::new()), |_| {});
        assert_eq!(s.stats().refused, 3);
        assert!(s.busy());
        drop(idle);
    }

    #[test]
    fn an_address_that_cannot_be_bound_is_a_clear_error() {
        let s = server();
        let e = MetricsServer::bind(s.local_addr()).err().unwrap();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "metrics listener {}: cannot listen: ",
                s.local_addr()
            )),
            "{msg}"
        );
        let e = MetricsServer::bind("192.0.2.1:9100".parse().unwrap())
            .err()
            .unwrap();
        assert!(e.to_string().contains("192.0.2.1:9100"), "{e}");
    }

    #[test]
    fn arbitrary_heads_never_panic() {
        let samples: [&[u8]; 6] = [
            b"",
            b" ",
            b"GET  /metrics HTTP/1.1",
            b"GET /metrics HTTP/1.1 extra",
            b"\0\0\0",
            b"GET /metrics\tHTTP/1.1",
        ];
        for s in samples {
            let _ = parse(s);
        }
        assert_eq!(head_end(b"a\n\nb\r\n\r\n"), Some(3));
    }
}
