//! esprit's one logging facade (decision 0019). Code logs with [`tracing`]'s macros, with the
//! connection, IKE SA and child SPIs as fields where a line concerns them; the programs
//! (esprit-ike, esprit-dataplane, espctl, esp-pcap, esprit-lab) install the subscriber made
//! here once, at start-up, with [`init`].
//!
//! One event is one line on stderr:
//!
//! ```text
//! 2026-12-06T02:53:41.081Z esprit-ike: info: site: IKE SA 30db7a2a0af26b33 established with gwB (aes256gcm16-prfsha384-x25519) conn=site ike_spi_i=30db7a2a0af26b33 ike_spi_r=9a9a77a606b30f7f
//! ```
//!
//! or, with [`Format::Json`], one JSON object per line with the same content
//! (`timestamp`, `level`, `daemon`, `target`, `message`, then the fields). When stderr is
//! systemd's journal (`JOURNAL_STREAM` names stderr's device and inode) the timestamp is left
//! out, since the journal keeps its own, and text lines start with the syslog priority
//! (`<6>`) so the journal files them at the right level.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

pub use tracing;
pub use tracing::level_filters::LevelFilter;

/// The environment variable that overrides the configured level (`debug`, or
/// `info,control::ike=debug`: a default level and levels per target, comma-separated).
pub const ENV_FILTER: &str = "RUST_LOG";

/// How lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// `TIMESTAMP DAEMON: LEVEL: MESSAGE key=value …`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// Its name in configuration files and on command lines.
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = LogError;

    fn from_str(s: &str) -> Result<Format, LogError> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err(LogError::Format(s.to_string())),
        }
    }
}

/// What can go wrong setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A format name that is neither `text` nor `json`.
    #[error("unknown log format {0:?} (expected \"text\" or \"json\")")]
    Format(String),
    /// A level name that is not one of error, warn, info, debug, trace.
    #[error("unknown log level {0:?} (expected error, warn, info, debug or trace)")]
    Level(String),
    /// A logger is already installed in this process.
    #[error("a logger is already installed")]
    AlreadyInstalled,
}

/// Parses a level name: `error`, `warn` (or `warning`), `info`, `debug`, `trace`, `off`.
pub fn parse_level(s: &str) -> Result<LevelFilter, LogError> {
    match s.to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::OFF),
        "error" => Ok(LevelFilter::ERROR),
        "warn" | "warning" => Ok(LevelFilter::WARN),
        "info" => Ok(LevelFilter::INFO),
        "debug" => Ok(LevelFilter::DEBUG),
        "trace" => Ok(LevelFilter::TRACE),
        _ => Err(LogError::Level(s.to_string())),
    }
}

/// How a program logs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The program's name, written on every line (`esprit-ike`).
    pub daemon: String,
    /// The most verbose level written (unless `RUST_LOG` says otherwise).
    pub level: LevelFilter,
    /// Text or JSON.
    pub format: Format,
    /// Whether stderr is the journal: text lines start with the syslog priority.
    pub journal: bool,
    /// Whether lines carry a timestamp (not under the journal, which keeps its own, nor for
    /// the command-line tools).
    pub timestamps: bool,
}

impl Settings {
    /// Settings for `daemon` at `level` in `format`, with the journal detected from the
    /// environment ([`stderr_is_journal`]).
    pub fn new(daemon: &str, level: LevelFilter, format: Format) -> Settings {
        let journal = stderr_is_journal();
        Settings {
            daemon: daemon.to_string(),
            level,
            format,
            journal,
            timestamps: !journal,
        }
    }

    /// Settings for a command-line tool: text at info, no timestamps (a person reads them as
    /// they come), `TOOL: LEVEL: MESSAGE`.
    pub fn tool(name: &str) -> Settings {
        Settings {
            daemon: name.to_string(),
            level: LevelFilter::INFO,
            format: Format::Text,
            journal: false,
            timestamps: false,
        }
    }
}

/// Whether stderr is connected to systemd's journal: systemd sets `JOURNAL_STREAM` to the
/// `DEVICE:INODE` of the stream it connects, and a program whose stderr has that device and
/// inode writes to the journal (a redirected stderr, or a child that inherited the variable,
/// does not match).
pub fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    journal_stream_matches(&v, stderr_dev_ino())
}

/// Whether a `JOURNAL_STREAM` value names `dev_ino`.
fn journal_stream_matches(value: &str, dev_ino: Option<(u64, u64)>) -> bool {
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    match (
        dev.trim().parse::<u64>(),
        ino.trim().parse::<u64>(),
        dev_ino,
    ) {
        (Ok(d), Ok(i), Some(have)) => (d, i) == have,
        _ => false,
    }
}

/// The device and inode of what stderr is.
fn stderr_dev_ino() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The filter: `RUST_LOG` when it is set and parses, else `level` for everything. Returns a
/// warning to log when `RUST_LOG` did not parse.
pub fn filter(level: LevelFilter, rust_log: Option<&str>) -> (Targets, Option<String>) {
    let default = Targets::new().with_default(level);
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => (default, None),
        Some(s) => match Targets::from_str(s) {
            Ok(t) => (t, None),
            Err(e) => (
                default,
                Some(format!("{ENV_FILTER}={s:?} ignored ({e}); level {level}")),
            ),
        },
    }
}

/// Installs the logger for the whole process: lines on stderr, as `settings` say, at the
/// configured level unless `RUST_LOG` overrides it.
pub fn init(settings: &Settings) -> Result<(), LogError> {
    init_with(settings, |line: &[u8]| {
        // A line is written in one call, so lines of several threads do not mix; a failed
        // write to stderr has nowhere to be reported.
        let _ = std::io::stderr().lock().write_all(line);
    })
}

/// Installs the logger for a program whose output a test harness captures (the lab's
/// in-process daemons): lines go through `eprint!`, which the harness intercepts. Does
/// nothing when a logger is already installed.
pub fn init_captured(daemon: &str, level: LevelFilter) {
    let settings = Settings {
        daemon: daemon.to_string(),
        level,
        format: Format::Text,
        journal: false,
        timestamps: true,
    };
    let _ = init_with(&settings, |line: &[u8]| {
        eprint!("{}", String::from_utf8_lossy(line))
    });
}

fn init_with(
    settings: &Settings,
    sink: impl Fn(&[u8]) + Send + Sync + 'static,
) -> Result<(), LogError> {
    let rust_log = std::env::var(ENV_FILTER).ok();
    let (targets, warning) = filter(settings.level, rust_log.as_deref());
    tracing_subscriber::registry()
        .with(targets)
        .with(LineLayer::new(settings, sink))
        .try_init()
        .map_err(|_| LogError::AlreadyInstalled)?;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    Ok(())
}

/// The layer that writes each event as one line to `sink`.
pub struct LineLayer<W> {
    daemon: String,
    format: Format,
    journal: bool,
    timestamps: bool,
    sink: W,
}

impl<W: Fn(&[u8]) + Send + Sync + 'static> LineLayer<W> {
    /// A layer writing lines as `settings` say (its level is not applied here: put a filter
    /// before it) to `sink`, one call per line, newline included.
    pub fn new(settings: &Settings, sink: W) -> LineLayer<W> {
        LineLayer {
            daemon: settings.daemon.clone(),
            format: settings.format,
            journal: settings.journal,
            timestamps: settings.timestamps,
            sink,
        }
    }
}

/// A field's value as recorded.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// The message and fields of an event or span.
#[derive(Clone, Debug, Default)]
struct Fields {
    message: Option<String>,
    fields: Vec<(&'static str, Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, v: Value) {
        if field.name() == "message" {
            self.message = Some(v.to_string());
        } else if let Some(slot) = self.fields.iter_mut().find(|(n, _)| *n == field.name()) {
            slot.1 = v;
        } else {
            self.fields.push((field.name(), v));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::Str(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::Str(value.to_string()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::U64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::I64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::Str(value.to_string()));
    }
}

impl<S, W> Layer<S> for LineLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: Fn(&[u8]) + Send + Sync + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(f);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(f) = span.extensions_mut().get_mut::<Fields>() {
                values.record(f);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut own = Fields::default();
        event.record(&mut own);
        // The fields of the spans the event is in, outermost first, then the event's own.
        let mut fields = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<Fields>() {
                    fields.extend(f.fields.iter().cloned());
                }
            }
        }
        fields.extend(own.fields);
        let meta = event.metadata();
        let line = Line {
            time: self.timestamps.then(SystemTime::now),
            level: *meta.level(),
            daemon: &self.daemon,
            target: meta.target(),
            message: own.message.as_deref().unwrap_or(""),
            fields: &fields,
        };
        let text = match self.format {
            Format::Text => line.text(self.journal),
            Format::Json => line.json(),
        };
        (self.sink)(text.as_bytes());
    }
}

/// One line's content.
struct Line<'a> {
    time: Option<SystemTime>,
    level: Level,
    daemon: &'a str,
    target: &'a str,
    message: &'a str,
    fields: &'a [(&'static str, Value)],
}

/// A level's name in lines.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// A level's syslog priority (what the journal reads from a `<N>` prefix).
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Writes `s` with control characters escaped, so text from a peer cannot start a new line.
fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
}

impl Line<'_> {
    fn text(&self, journal: bool) -> String {
        let mut out = String::with_capacity(128);
        if journal {
            let _ = write!(out, "<{}>", syslog_priority(self.level));
        }
        if let Some(t) = self.time {
            out.push_str(&rfc3339_millis(t));
            out.push(' ');
        }
        let _ = write!(out, "{}: {}: ", self.daemon, level_name(self.level));
        push_escaped(&mut out, self.message);
        for (name, v) in self.fields {
            let _ = write!(out, " {name}=");
            match v {
                Value::Str(s)
                    if s.is_empty()
                        || s.chars().any(|c| {
                            c.is_whitespace() || c == '"' || c == '=' || c.is_control()
                        }) =>
                {
                    let _ = write!(out, "{s:?}");
                }
                Value::Str(s) => out.push_str(s),
                v => {
                    let _ = write!(out, "{v}");
                }
            }
        }
        out.push('\n');
        out
    }

    fn json(&self) -> String {
        const FIXED: [&str; 5] = ["timestamp", "level", "daemon", "target", "message"];
        let mut out = String::with_capacity(160);
        let mut put = |k: &str, v: serde_json::Value| {
            out.push(if out.is_empty() { '{' } else { ',' });
            let _ = write!(out, "{}:{v}", serde_json::Value::from(k));
        };
        if let Some(t) = self.time {
            put("timestamp", rfc3339_millis(t).into());
        }
        put("level", level_name(self.level).into());
        put("daemon", self.daemon.into());
        put("target", self.target.into());
        put("message", self.message.into());
        for (name, v) in self.fields.iter().filter(|(n, _)| !FIXED.contains(n)) {
            put(
                name,
                match v {
                    Value::Str(s) => s.as_str().into(),
                    Value::U64(n) => (*n).into(),
                    Value::I64(n) => (*n).into(),
                    Value::F64(n) => (*n).into(),
                    Value::Bool(b) => (*b).into(),
                },
            );
        }
        out.push_str("}\n");
        out
    }
}

/// `t` as RFC 3339 in UTC with milliseconds: `2026-12-06T02:53:41.081Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests;
