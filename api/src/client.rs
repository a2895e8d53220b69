//! A blocking client of the dataplane API, for `espctl`, the IKE daemon and tests.

use crate::proto::{Envelope, EventLine, Hello, Request, Response, SaInfo, Snapshot, VERSION};
use crate::runtime::Runtime;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The default socket path of `esprit-dataplane`.
pub const DEFAULT_SOCKET: &str = "/run/esprit/dataplane.sock";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The socket could not be reached or broke.
    #[error("dataplane API at {path}: {err}")]
    Io {
        /// Socket path.
        path: String,
        /// Cause.
        err: io::Error,
    },
    /// The daemon answered something that is not a response.
    #[error("dataplane API: unexpected answer: {0}")]
    Protocol(String),
    /// The daemon refused the request.
    #[error("{code}: {message}")]
    Refused {
        /// Stable code (see `docs/api.md`).
        code: String,
        /// Explanation.
        message: String,
    },
}

/// A connection to the dataplane.
pub struct Client {
    path: String,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Client {
    /// Connects to the daemon's socket.
    pub fn connect(path: &Path) -> Result<Self, ApiError> {
        let p = path.display().to_string();
        let io_err = |err| ApiError::Io {
            path: p.clone(),
            err,
        };
        let s = UnixStream::connect(path).map_err(io_err)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io_err)?;
        let reader = BufReader::new(s.try_clone().map_err(io_err)?);
        Ok(Client {
            path: p,
            writer: s,
            reader,
            next_id: 1,
        })
    }

    fn io(&self, err: io::Error) -> ApiError {
        ApiError::Io {
            path: self.path.clone(),
            err,
        }
    }

    /// Sends a request and returns its result.
    pub fn call(&mut self, request: Request) -> Result<serde_json::Value, ApiError> {
        let id = self.next_id;
        self.next_id += 1;
        let line = serde_json::to_string(&Envelope {
            version: VERSION,
            id: Some(id),
            request,
        })
        .map_err(|e| ApiError::Protocol(e.to_string()))?;
        self.exchange(id, line)
    }

    /// Sends a request and reads its result as `T`.
    pub fn call_typed<T: serde::de::DeserializeOwned>(
        &mut self,
        request: Request,
    ) -> Result<T, ApiError> {
        let v = self.call(request)?;
        serde_json::from_value(v).map_err(|e| ApiError::Protocol(e.to_string()))
    }

    /// `hello`: who is there.
    pub fn hello(&mut self) -> Result<Hello, ApiError> {
        self.call_typed(Request::Hello)
    }

    /// `sa.list`: every SA with its counters.
    pub fn sa_list(&mut self) -> Result<Vec<SaInfo>, ApiError> {
        self.call_typed(Request::SaList)
    }

    /// `stats`: the counters of the whole dataplane.
    pub fn stats(&mut self) -> Result<Snapshot, ApiError> {
        self.call_typed(Request::Stats)
    }

    /// `runtime`: what the dataplane runs with (interfaces, queues, workers).
    pub fn runtime(&mut self) -> Result<Runtime, ApiError> {
        self.call_typed(Request::Runtime)
    }

    /// Sends a request given as a JSON object (`op` and its arguments; the envelope's `version`
    /// and `id` are added), for requests the typed [`Request`] cannot express: tests of the
    /// server's own checks, or ops of a newer server.
    pub fn call_json(
        &mut self,
        mut request: serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Value, ApiError> {
        let id = self.next_id;
        self.next_id += 1;
        request.insert("version".into(), VERSION.into());
        request.insert("id".into(), id.into());
        let line = serde_json::Value::Object(request).to_string();
        self.exchange(id, line)
    }

    fn exchange(&mut self, id: u64, mut line: String) -> Result<serde_json::Value, ApiError> {
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| self.io(e))?;
        let mut answer = String::new();
        let n = self.reader.read_line(&mut answer).map_err(|e| self.io(e))?;
        if n == 0 {
            return Err(self.io(io::Error::from(io::ErrorKind::UnexpectedEof)));
        }
        let r: Response = serde_json::from_str(answer.trim())
            .map_err(|e| ApiError::Protocol(format!("{e}: {answer}")))?;
        if r.id != Some(id) {
            return Err(ApiError::Protocol(format!(
                "answer to request {:?}, expected {id}",
                r.id
            )));
        }
        match (r.ok, r.result, r.error) {
            (true, Some(v), _) => Ok(v),
            (true, None, _) => Ok(serde_json::Value::Null),
            (false, _, Some(e)) => Err(ApiError::Refused {
                code: e.code,
                message: e.message,
            }),
            (false, _, None) => Err(ApiError::Protocol("error without a body".into())),
        }
    }

    /// Subscribes to events and returns them as they come (blocking; `None` when the daemon
    /// closes the stream).
    pub fn events(mut self) -> Result<impl Iterator<Item = Result<EventLine, ApiError>>, ApiError> {
        self.call(Request::Events)?;
        self.writer.set_read_timeout(None).map_err(|e| self.io(e))?;
        let _ = self.reader.get_ref().set_read_timeout(None);
        let mut reader = self.reader;
        Ok(std::iter::from_fn(move || {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => None,
                Ok(_) => Some(
                    serde_json::from_str(line.trim())
                        .map_err(|e| ApiError::Protocol(e.to_string())),
                ),
                Err(e) => Some(Err(ApiError::Protocol(e.to_string()))),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Envelope, Response};
    use crate::sa::{Direction, Spi};
    use serde_json::json;
    use std::os::unix::net::UnixListener;

    /// A server that answers `hello`, refuses `sa.delete` and streams one event.
    fn serve(listener: UnixListener) {
        let (s, _) = listener.accept().unwrap();
        let mut out = s.try_clone().unwrap();
        for line in BufReader::new(s).lines() {
            let env: Envelope = serde_json::from_str(&line.unwrap()).unwrap();
            let answer = match env.request {
                Request::Hello => Response::ok(
                    env.id,
                    json!({"daemon": "test", "version": 1, "workers": 2}),
                ),
                Request::SaDelete { spi, .. } => {
                    Response::err(env.id, "not_found", format!("no in SA with SPI {spi}"))
                }
                Request::Events => Response::ok(env.id, json!({"subscribed": true})),
                _ => Response::err(env.id, "bad_request", "unexpected"),
            };
            let events = env.request == Request::Events;
            writeln!(out, "{}", serde_json::to_string(&answer).unwrap()).unwrap();
            if events {
                writeln!(
                    out,
                    r#"{{"version":1,"event":"acquire","spi":"0x00000000","direction":"out","local":"10.1.0.1","remote":"10.2.0.1","policy":3}}"#
                )
                .unwrap();
                return;
            }
        }
    }

    #[test]
    fn client_against_a_server() {
        let dir = std::env::temp_dir().join(format!("esprit-api-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            serve(listener.try_clone().unwrap());
            serve(listener);
        });
        let mut c = Client::connect(&path).unwrap();
        assert_eq!(c.call(Request::Hello).unwrap()["workers"], 2);
        let hello = c.hello().unwrap();
        assert_eq!((hello.daemon.as_str(), hello.workers), ("test", 2));
        match c.call(Request::SaDelete {
            spi: Spi(0xc001),
            direction: Direction::In,
            address: None,
        }) {
            Err(ApiError::Refused { code, message }) => {
                assert_eq!(code, "not_found");
                assert_eq!(message, "no in SA with SPI 0x0000c001");
            }
            other => panic!("{other:?}"),
        }
        let raw = json!({"op": "route.list"});
        match c.call_json(raw.as_object().unwrap().clone()) {
            Err(ApiError::Refused { code, .. }) => assert_eq!(code, "bad_request"),
            other => panic!("{other:?}"),
        }
        drop(c);
        let events: Vec<_> = Client::connect(&path).unwrap().events().unwrap().collect();
        assert_eq!(events.len(), 1);
        let e = events[0].as_ref().unwrap();
        assert_eq!((e.event.as_str(), e.policy), ("acquire", Some(3)));
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
