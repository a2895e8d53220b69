//! `esp-pcap`: encrypt or decrypt the packets of a capture with manual SAs, for debugging.

use clap::{Parser, Subcommand};
use dataplane::esp::Backend;
use dataplane::pcap::tool::{load_sas, run, write_wireshark_keys, Op, Options};
use std::path::PathBuf;
use std::process::ExitCode;

/// Encrypt or decrypt the packets of a pcap file with the SAs of an SA file (docs/sa-file.md).
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct Common {
    /// The SA file.
    #[arg(long)]
    sa: PathBuf,
    /// Input capture (pcap or pcapng; link type Ethernet, or raw IP 101/228/229).
    input: PathBuf,
    /// Output capture (pcap, same link type).
    output: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Also write Wireshark's `esp_sa` table and `preferences` into this directory (they hold
    /// keys: for debugging only).
    #[arg(long, value_name = "DIR")]
    wireshark_keys: Option<PathBuf>,
    /// AES-GCM library.
    #[arg(long, default_value = "ring")]
    backend: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Plain IP packets in, ESP out: each packet is encrypted with the outbound SA whose
    /// traffic selectors match it.
    Encrypt(Common),
    /// ESP in, plain packets out: each packet is decrypted with the inbound SA of its SPI and
    /// destination, through the replay window; only packets that pass are written, in order.
    Decrypt(Common),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = esprit_log::init(&esprit_log::Settings::tool("esp-pcap"));
    let (op, c) = match args.cmd {
        Cmd::Encrypt(c) => (Op::Encrypt, c),
        Cmd::Decrypt(c) => (Op::Decrypt, c),
    };
    let backend: Backend = match c.backend.parse() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("--backend: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        op,
        sa_file: c.sa.clone(),
        input: c.input,
        output: c.output,
        backend,
    };
    let summary = match run(&opts) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Some(dir) = &c.wireshark_keys {
        let written = load_sas(&c.sa).map_err(|e| e.to_string()).and_then(|sas| {
            write_wireshark_keys(dir, &sas).map_err(|e| format!("{}: {e}", dir.display()))
        });
        match written {
            Ok(()) => tracing::warn!(
                "wrote Wireshark keys to {} (esp_sa, preferences): these files hold secrets; use with WIRESHARK_CONFIG_DIR or copy into a profile, then delete them",
                dir.display()
            ),
            Err(e) => {
                tracing::error!("--wireshark-keys: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if c.json {
        match serde_json::to_string_pretty(&summary) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!("{}", summary.render());
    }
    ExitCode::SUCCESS
}
