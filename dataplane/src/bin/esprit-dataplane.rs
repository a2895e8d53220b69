//! `esprit-dataplane`: the AF_XDP ESP gateway daemon.

use clap::Parser;
use dataplane::daemon::run::{run_reloading, runtime_capabilities, ReloadOn};
use dataplane::daemon::DataplaneConfig;
use dataplane::harden::{notify, LockDown};
use esprit_log::{Format, LevelFilter, Settings};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tracing::{error, info};

/// The esprit dataplane: AF_XDP workers that encrypt LAN traffic into ESP and decrypt ESP
/// back, keyed by manual SAs (and later by esprit-ike).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML; see docs/dataplane.md).
    #[arg(short, long, default_value = "/etc/esprit/dataplane.toml")]
    config: PathBuf,
    /// Write the final counters as JSON to this file on exit.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Remove the XDP programs a fail-closed dataplane leaves on the configuration's LAN and
    /// WAN interfaces (decommissioning: the kernel forwards between them again), then exit.
    #[arg(long)]
    detach: bool,
    /// Log lines as `text` or `json` (overrides `log_format`).
    #[arg(long)]
    log_format: Option<Format>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let loaded = DataplaneConfig::load(&args.config);
    let (level, format) = loaded
        .as_ref()
        .map(|c| (c.log_level, c.log_format))
        .unwrap_or((LevelFilter::INFO, Format::Text));
    let settings = Settings::new("esprit-dataplane", level, args.log_format.unwrap_or(format));
    if let Err(e) = esprit_log::init(&settings) {
        eprintln!("esprit-dataplane: {e}");
        return ExitCode::FAILURE;
    }
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(1);
        }
    };
    if args.detach {
        let mut ok = true;
        for iface in [&cfg.lan.interface, &cfg.wan.interface] {
            match dataplane::xdp::program::detach_all(iface) {
                Ok(()) => info!(interface = %iface, "XDP detached from {iface}"),
                Err(e) => {
                    error!(interface = %iface, "detaching XDP from {iface}: {e}");
                    ok = false;
                }
            }
        }
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    if let Some(f) = &cfg.sa_file {
        if let Err(e) = dataplane::harden::check_private(f) {
            error!("{e}");
            return ExitCode::from(1);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            error!("cannot handle signal {sig}: {e}");
            return ExitCode::from(1);
        }
    }
    let reload = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone()) {
        error!("cannot handle SIGHUP: {e}");
        return ExitCode::from(1);
    }
    // Once set up, keep only what the dataplane still needs (see runtime_capabilities), as
    // `user` if configured.
    let user = match &cfg.user {
        None => None,
        Some(name) => match dataplane::harden::lookup_user(name) {
            Ok(u) => Some(u),
            Err(e) => {
                error!("user {name:?}: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let lock = LockDown {
        user,
        keep: runtime_capabilities(&cfg),
    };
    let reload = ReloadOn {
        path: args.config.clone(),
        requested: reload,
    };
    // Workers running, API socket listening: tell systemd (Type=notify) it serves.
    let ready = |msg: &str| {
        info!("{}", msg.strip_prefix("esprit-dataplane: ").unwrap_or(msg));
        notified(notify::ready(msg));
    };
    let ran = run_reloading(&cfg, Some(reload), stop, Some(&lock), ready);
    notified(notify::stopping());
    let report = match ran {
        Ok(r) => r,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(1);
        }
    };
    print!("{}", report.render());
    if let Some(p) = args.json {
        let text = serde_json::to_string_pretty(&report).expect("report serialises");
        if let Err(e) = std::fs::write(&p, text) {
            error!("writing {}: {e}", p.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// Reports a notification to systemd that could not be sent.
fn notified(r: Result<bool, notify::NotifyError>) {
    if let Err(e) = r {
        error!("{e}");
    }
}
