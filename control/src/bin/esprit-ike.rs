//! `esprit-ike`: the IKEv2 daemon that keys the esprit dataplane.

use clap::Parser;
use control::daemon::run::Daemon;
use esprit_log::{Format, LevelFilter, Settings};
use std::path::PathBuf;
use std::process::ExitCode;

/// The esprit IKEv2 daemon.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML shaped like swanctl.conf; see docs/configuration.md).
    #[arg(short, long, default_value = "/etc/esprit/esprit-ike.toml")]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Log lines as `text` or `json` (overrides `daemon.log_format`).
    #[arg(long)]
    log_format: Option<Format>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let loaded = control::config::Config::load(&args.config);
    if args.check {
        let _ = esprit_log::init(&Settings::tool("esprit-ike"));
        return match loaded
            .map_err(|e| e.to_string())
            .and_then(|c| c.check_secret_files(&args.config).map(|()| c))
            .and_then(|c| control::daemon::params::connection_params(&c).map(|p| p.len()))
        {
            Ok(n) => {
                println!("{}: ok, {n} connections", args.config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::from(2)
            }
        };
    }
    // The configuration's level and format; an unreadable configuration is reported below,
    // by Daemon::new, at the defaults.
    let (level, format) = loaded
        .as_ref()
        .map(|c| (LevelFilter::from(c.daemon.log_level), c.daemon.log_format))
        .unwrap_or((LevelFilter::INFO, Format::Text));
    let settings = Settings::new("esprit-ike", level, args.log_format.unwrap_or(format));
    if let Err(e) = esprit_log::init(&settings) {
        eprintln!("esprit-ike: {e}");
        return ExitCode::FAILURE;
    }
    let started = Daemon::new(&args.config).and_then(|d| d.drop_privileges().map(|()| d));
    // Sockets bound, control socket listening: tell systemd (Type=notify) it serves.
    if started.is_ok() {
        let status = "IKE sockets bound, control socket listening";
        notified(esprit_harden::notify::ready(status));
    }
    let ran = started.and_then(Daemon::run);
    notified(esprit_harden::notify::stopping());
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Reports a notification to systemd that could not be sent.
fn notified(r: Result<bool, esprit_harden::notify::NotifyError>) {
    if let Err(e) = r {
        tracing::error!("{e}");
    }
}
