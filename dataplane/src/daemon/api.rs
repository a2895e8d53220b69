//! The API server: a Unix stream socket (mode 0600, or 0660 with the configured group), one thread per client, requests handed to
//! the worker through its update channel and answered between batches; events fanned out to
//! subscribers.

use super::router::{RouteError, Router};
use super::runtime::RuntimeSetup;
use crate::api::convert::{event_line, sa_config};
use crate::sa::spd::Trap;
use crate::sa::{Direction, Prefix, RouteAction, SaDbError, SaEvent, Selectors};
use esprit_api::{Envelope, Request, Response, SaSpec, VERSION};
use serde_json::json;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest request line accepted.
const MAX_LINE: usize = 1 << 20;

/// Subscribers to the event stream, and the events raised while there were none.
#[derive(Default)]
pub struct EventHub {
    inner: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    subscribers: Vec<SyncSender<SaEvent>>,
    /// Events raised while nobody listened (esprit-ike starting or restarting), oldest first,
    /// at most [`BACKLOG`]: the next subscriber gets those younger than [`BACKLOG_AGE`]. An
    /// acquire is raised once a second per trap, so losing the first one would hold a site's
    /// first packets back for a second.
    backlog: std::collections::VecDeque<(std::time::Instant, SaEvent)>,
}

/// Events kept for the next subscriber.
const BACKLOG: usize = 256;
/// Age beyond which a kept event is no longer delivered.
const BACKLOG_AGE: Duration = Duration::from_secs(5);

impl EventHub {
    /// Starts a thread that copies events from the worker to every subscriber (dropping for
    /// subscribers that do not keep up, rather than stalling the others).
    pub fn spawn(self: &Arc<Self>, from: Receiver<SaEvent>) -> JoinHandle<()> {
        let hub = self.clone();
        std::thread::Builder::new()
            .name("esprit-events".into())
            .spawn(move || {
                for e in from {
                    hub.publish(e);
                }
            })
            .expect("spawn event thread")
    }

    /// Hands `e` to every subscriber, or keeps it for the next one when there is none.
    fn publish(&self, e: SaEvent) {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        st.subscribers.retain(|s| {
            !matches!(
                s.try_send(e),
                Err(std::sync::mpsc::TrySendError::Disconnected(_))
            )
        });
        if st.subscribers.is_empty() {
            if st.backlog.len() == BACKLOG {
                st.backlog.pop_front();
            }
            st.backlog.push_back((std::time::Instant::now(), e));
        }
    }

    /// A new subscription; it first receives the recent events nobody received.
    fn subscribe(&self) -> Receiver<SaEvent> {
        let (tx, rx) = sync_channel(1024);
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for (at, e) in st.backlog.drain(..) {
            if at.elapsed() < BACKLOG_AGE {
                let _ = tx.try_send(e);
            }
        }
        st.subscribers.push(tx);
        rx
    }
}

/// A running API server; stops (and removes its socket) when dropped.
pub struct ApiServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The API's socket, bound but not served yet (so the daemon can bind it while privileged and
/// serve it after dropping privileges).
pub struct ApiListener {
    path: PathBuf,
    listener: UnixListener,
}

impl ApiListener {
    /// Binds `path` (replacing a stale socket file, creating the directory). The socket file is
    /// created with its final mode: 0600, or 0660 and group `group` when given (so an
    /// unprivileged esprit-ike in that group can connect).
    pub fn bind(path: &Path, group: Option<u32>) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running daemon", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        let listener = crate::harden::bind_unix(path, mode, group)?;
        Ok(ApiListener {
            path: path.to_path_buf(),
            listener,
        })
    }
}

impl ApiServer {
    /// Listens on `path` with mode 0600 (see [`ApiListener::bind`]) and serves until dropped.
    pub fn start(
        path: &Path,
        router: Arc<Router>,
        hub: Arc<EventHub>,
        runtime: Arc<RuntimeSetup>,
    ) -> io::Result<Self> {
        Self::serve(ApiListener::bind(path, None)?, router, hub, runtime)
    }

    /// Serves a bound API socket until dropped; `runtime` answers the `runtime` request.
    pub fn serve(
        l: ApiListener,
        router: Arc<Router>,
        hub: Arc<EventHub>,
        runtime: Arc<RuntimeSetup>,
    ) -> io::Result<Self> {
        let ApiListener { path, listener } = l;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("esprit-api".into())
            .spawn(move || accept_loop(listener, router, hub, runtime, s))
            .expect("spawn api thread");
        Ok(ApiServer {
            path,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(
    l: UnixListener,
    router: Arc<Router>,
    hub: Arc<EventHub>,
    runtime: Arc<RuntimeSetup>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((conn, _)) => {
                let (w, h, r, s) = (router.clone(), hub.clone(), runtime.clone(), stop.clone());
                let _ = std::thread::Builder::new()
                    .name("esprit-api-client".into())
                    .spawn(move || {
                        let _ = serve_client(conn, &w, &h, &r, &s);
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn serve_client(
    conn: UnixStream,
    worker: &Router,
    hub: &EventHub,
    runtime: &RuntimeSetup,
    stop: &AtomicBool,
) -> io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if line.len() > MAX_LINE {
                    return write_line(
                        &mut out,
                        &Response::err(None, "bad_request", "request line too long"),
                    );
                }
                continue;
            }
            Err(e) => return Err(e),
        }
        if !line.ends_with('\n') && line.len() <= MAX_LINE {
            continue;
        }
        let text = std::mem::take(&mut line);
        if text.trim().is_empty() {
            continue;
        }
        let env: Envelope = match serde_json::from_str(text.trim()) {
            Ok(e) => e,
            Err(e) => {
                let v = serde_json::from_str::<serde_json::Value>(text.trim()).ok();
                let id = v
                    .as_ref()
                    .and_then(|v| v.get("id").and_then(|i| i.as_u64()));
                write_line(&mut out, &refusal(id, v.as_ref(), e))?;
                continue;
            }
        };
        if env.version != VERSION {
            write_line(
                &mut out,
                &Response::err(
                    env.id,
                    "unsupported_version",
                    format!(
                        "this daemon speaks version {VERSION}, the request is version {}",
                        env.version
                    ),
                ),
            )?;
            continue;
        }
        if env.request == Request::Events {
            // Subscribed before the answer, so every event after it reaches this client.
            let rx = hub.subscribe();
            write_line(&mut out, &Response::ok(env.id, json!({"subscribed": true})))?;
            return stream_events(out, rx, stop);
        }
        let resp = if env.request == Request::Runtime {
            Response::ok(
                env.id,
                serde_json::to_value(runtime.report()).unwrap_or_default(),
            )
        } else {
            handle(env.id, env.request, worker)
        };
        write_line(&mut out, &resp)?;
    }
    Ok(())
}

fn stream_events(mut out: UnixStream, rx: Receiver<SaEvent>, stop: &AtomicBool) -> io::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(e) => write_line(&mut out, &event_line(&e))?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

fn write_line<T: serde::Serialize>(out: &mut UnixStream, v: &T) -> io::Result<()> {
    let mut s = serde_json::to_string(v).map_err(io::Error::other)?;
    s.push('\n');
    out.write_all(s.as_bytes())
}

/// The answer to a line that is not a valid request: `invalid_sa` when it is an `sa.add` or
/// `sa.update` whose SA does not fit the typed SA, `bad_request` otherwise.
fn refusal(id: Option<u64>, v: Option<&serde_json::Value>, e: serde_json::Error) -> Response {
    let op = v.and_then(|v| v.get("op")).and_then(|o| o.as_str());
    if let (Some("sa.add" | "sa.update"), Some(sa)) = (op, v.and_then(|v| v.get("sa"))) {
        if let Err(e) = SaSpec::from_json(sa) {
            return Response::err(id, "invalid_sa", e.to_string());
        }
    }
    Response::err(id, "bad_request", format!("not a valid request: {e}"))
}

fn handle(id: Option<u64>, req: Request, router: &Router) -> Response {
    let unavailable = || Response::err(id, "unavailable", "a worker did not answer");
    match req {
        Request::Hello => Response::ok(
            id,
            json!({"daemon": "esprit-dataplane", "version": VERSION, "workers": router.workers()}),
        ),
        Request::SaAdd { sa } => add(id, &sa, false, router),
        Request::SaUpdate { sa } => add(id, &sa, true, router),
        Request::SaDelete {
            spi,
            direction,
            address,
        } => {
            let spi = spi.0;
            let direction = match direction {
                esprit_api::Direction::In => Direction::In,
                esprit_api::Direction::Out => Direction::Out,
            };
            match router.delete(spi, direction, address) {
                Ok(0) => Response::err(
                    id,
                    "not_found",
                    format!("no {direction} SA with SPI 0x{spi:08x}"),
                ),
                Ok(n) => Response::ok(id, json!({"removed": n})),
                Err(_) => unavailable(),
            }
        }
        Request::SaList => match router.snapshot() {
            Some(s) => Response::ok(id, serde_json::to_value(&s.sas).unwrap_or_default()),
            None => unavailable(),
        },
        Request::Stats => match router.snapshot() {
            Some(s) => Response::ok(id, serde_json::to_value(&s).unwrap_or_default()),
            None => unavailable(),
        },
        Request::RouteAdd {
            prefix,
            tunnel,
            action,
        } => {
            let prefix: Prefix = match prefix.parse() {
                Ok(p) => p,
                Err(e) => return Response::err(id, "bad_request", format!("prefix: {e}")),
            };
            let action = match (tunnel, action.as_deref()) {
                (Some(peer), None | Some("tunnel")) => RouteAction::Tunnel(peer),
                (None, Some("bypass")) => RouteAction::Bypass,
                (None, Some("drop")) => RouteAction::Drop,
                _ => {
                    return Response::err(
                        id,
                        "bad_request",
                        "a route needs \"tunnel\": <peer address>, or \"action\": \"bypass\" | \"drop\"",
                    )
                }
            };
            router.set_route(prefix, action);
            Response::ok(id, json!({"route": prefix.to_string()}))
        }
        Request::RouteDelete { prefix } => match prefix.parse::<Prefix>() {
            Ok(p) if router.remove_route(p) => Response::ok(id, json!({"removed": 1})),
            Ok(p) => Response::err(id, "not_found", format!("no route for {p}")),
            Err(e) => Response::err(id, "bad_request", format!("prefix: {e}")),
        },
        Request::RouteList => {
            let list: Vec<serde_json::Value> = router
                .routes()
                .into_iter()
                .map(|r| {
                    let source = if r.kernel { "kernel" } else { "config" };
                    let p = r.prefix.to_string();
                    match r.action {
                        RouteAction::Tunnel(peer) => json!({"prefix": p, "action": "tunnel", "tunnel": peer.to_string(), "source": source}),
                        RouteAction::Ecmp(_) => json!({"prefix": p, "action": "tunnel", "tunnel": r.peers.first().map(|x| x.to_string()), "tunnels": r.peers.iter().map(|x| x.to_string()).collect::<Vec<_>>(), "source": source}),
                        RouteAction::Bypass => json!({"prefix": p, "action": "bypass", "source": source}),
                        RouteAction::Drop => json!({"prefix": p, "action": "drop", "source": source}),
                    }
                })
                .collect();
            Response::ok(id, serde_json::Value::Array(list))
        }
        Request::PolicyAdd {
            policy: pid,
            local_ts,
            remote_ts,
        } => {
            let parse = |v: &[String], what: &str| -> Result<Selectors, String> {
                v.iter()
                    .map(|p| p.parse::<Prefix>().map_err(|e| format!("{what}: {e}")))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Selectors::new)
            };
            match (parse(&local_ts, "local_ts"), parse(&remote_ts, "remote_ts")) {
                (Ok(l), Ok(r)) => {
                    router.set_trap(Trap::new(pid, l, r));
                    Response::ok(id, json!({"policy": pid}))
                }
                (Err(e), _) | (_, Err(e)) => Response::err(id, "bad_request", e),
            }
        }
        Request::PolicyDelete { policy: pid } => {
            if router.remove_trap(pid) {
                Response::ok(id, json!({"removed": 1}))
            } else {
                Response::err(id, "not_found", format!("no trap policy {pid}"))
            }
        }
        Request::PolicyList => {
            let list: Vec<serde_json::Value> = router
                .traps()
                .iter()
                .map(|t| {
                    json!({
                        "id": t.id,
                        "local_ts": t.local_ts.prefixes().iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                        "remote_ts": t.remote_ts.prefixes().iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Response::ok(id, serde_json::Value::Array(list))
        }
        Request::Events | Request::Runtime => {
            Response::err(id, "bad_request", "handled by the connection")
        }
    }
}

fn add(id: Option<u64>, sa: &SaSpec, replace: bool, router: &Router) -> Response {
    let cfg = match sa_config(sa) {
        Ok(c) => c,
        Err(e) => return Response::err(id, "invalid_sa", e.to_string()),
    };
    let label = cfg.label();
    match router.add(cfg, replace) {
        Ok(()) => Response::ok(id, json!({"sa": label})),
        Err(RouteError::Sa(SaDbError::Duplicate { label })) => Response::err(
            id,
            "exists",
            format!("SA {label} exists already (use sa.update to replace it)"),
        ),
        Err(RouteError::Sa(e)) => Response::err(id, "invalid_sa", e.to_string()),
        Err(RouteError::Unavailable) => Response::err(id, "unavailable", "a worker did not answer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sa::SaEventKind;

    fn acquire(policy: u32) -> SaEvent {
        SaEvent {
            kind: SaEventKind::Acquire,
            spi: 0,
            direction: Direction::Out,
            local: "10.0.0.1".parse().unwrap(),
            remote: "10.0.0.2".parse().unwrap(),
            policy: Some(policy),
        }
    }

    #[test]
    fn events_raised_before_anyone_subscribes_reach_the_first_subscriber() {
        let hub = EventHub::default();
        hub.publish(acquire(1));
        let rx = hub.subscribe();
        hub.publish(acquire(2));
        assert_eq!(rx.try_recv().unwrap().policy, Some(1));
        assert_eq!(rx.try_recv().unwrap().policy, Some(2));
        assert!(rx.try_recv().is_err());
        // Delivered once: a second subscriber sees only what comes after it.
        let rx2 = hub.subscribe();
        assert!(rx2.try_recv().is_err());
    }

    #[test]
    fn the_backlog_keeps_the_newest_events_only() {
        let hub = EventHub::default();
        for p in 0..(BACKLOG as u32 + 10) {
            hub.publish(acquire(p));
        }
        let rx = hub.subscribe();
        let got: Vec<_> = rx.try_iter().map(|e| e.policy.unwrap()).collect();
        assert_eq!(got.len(), BACKLOG);
        assert_eq!(got[0], 10);
    }

    #[test]
    fn a_departed_subscriber_leaves_events_for_the_next() {
        let hub = EventHub::default();
        drop(hub.subscribe());
        hub.publish(acquire(7));
        let rx = hub.subscribe();
        assert_eq!(rx.try_recv().unwrap().policy, Some(7));
    }
}
