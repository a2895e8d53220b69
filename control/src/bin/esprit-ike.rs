//! `esprit-ike`: the IKEv2 daemon that keys the esprit dataplane.

use clap::Parser;
use control::daemon::run::Daemon;
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check {
        return match control::config::Config::load(&args.config)
            .map_err(|e| e.to_string())
            .and_then(|c| c.check_secret_files(&args.config).map(|()| c))
            .and_then(|c| control::daemon::params::connection_params(&c).map(|p| p.len()))
        {
            Ok(n) => {
                println!("{}: ok, {n} connections", args.config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("esprit-ike: {e}");
                ExitCode::from(2)
            }
        };
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
            eprintln!("esprit-ike: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reports a notification to systemd that could not be sent.
fn notified(r: Result<bool, esprit_harden::notify::NotifyError>) {
    if let Err(e) = r {
        eprintln!("esprit-ike: {e}");
    }
}
