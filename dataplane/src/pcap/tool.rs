//! The logic of `esp-pcap`: encrypt or decrypt every packet of a capture with the SAs of an SA
//! file, in batches, writing what passes in order, with per-reason counters at the end.

use super::{
    Header, PcapError, Reader, Record, Writer, LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6,
    LINKTYPE_RAW,
};
use crate::api::convert::{drops_map, sa_infos};
use crate::crypto::Integ;
use crate::esp::{Backend, Suite, Verdict};
use crate::frame::OwnedFrame;
use crate::sa::{file, Direction, SaConfig, SaDb};
use crate::wire::ethernet::{EtherType, EthernetFrame, EthernetRepr};
use esprit_api::SaInfo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Encrypt or decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Plain IP packets in, ESP out (outbound SAs).
    Encrypt,
    /// ESP in, plain IP packets out (inbound SAs).
    Decrypt,
}

/// What to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Encrypt or decrypt.
    pub op: Op,
    /// The SA file.
    pub sa_file: PathBuf,
    /// Input capture.
    pub input: PathBuf,
    /// Output capture.
    pub output: PathBuf,
    /// AES-GCM library.
    pub backend: Backend,
}

/// Why the tool stopped.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The SA file is wrong.
    #[error("{0}")]
    SaFile(#[from] file::SaFileError),
    /// Two SAs collide.
    #[error("{file}: {err}")]
    Sa {
        /// The SA file.
        file: String,
        /// Cause.
        err: crate::sa::SaDbError,
    },
    /// The input is not a usable capture.
    #[error("{file}: {err}")]
    Input {
        /// The input file.
        file: String,
        /// Cause.
        err: PcapError,
    },
    /// A file could not be opened or written.
    #[error("{file}: {err}")]
    Io {
        /// The file.
        file: String,
        /// Cause.
        err: std::io::Error,
    },
}

/// What happened, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The operation.
    pub op: Op,
    /// Records read.
    pub records: u64,
    /// Records written.
    pub written: u64,
    /// Records not for this operation, by kind (`non_ip`, `ike`, `nat_keepalive`, `not_esp`).
    pub skipped: BTreeMap<String, u64>,
    /// Per-SA counters (packets, bytes, drops by reason).
    pub sas: Vec<SaInfo>,
    /// Drops charged to no SA (`unknown_spi`, `malformed`, `no_policy`, …).
    pub drops: BTreeMap<String, u64>,
    /// Link type of the output file.
    pub output_linktype: u32,
}

impl Summary {
    /// Records dropped (by any SA or the database).
    pub fn dropped(&self) -> u64 {
        self.drops.values().sum::<u64>()
            + self
                .sas
                .iter()
                .map(|s| s.drops.values().sum::<u64>())
                .sum::<u64>()
    }

    /// A human-readable report.
    pub fn render(&self) -> String {
        let op = match self.op {
            Op::Encrypt => "encrypt",
            Op::Decrypt => "decrypt",
        };
        let mut s = format!(
            "esp-pcap {op}: {} records read, {} written, {} dropped, {} skipped\n",
            self.records,
            self.written,
            self.dropped(),
            self.skipped.values().sum::<u64>()
        );
        if !self.skipped.is_empty() {
            let k: Vec<_> = self
                .skipped
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!("  skipped (not for {op}): {}\n", k.join(" ")));
        }
        s.push_str(&format!(
            "  {:<44} {:>9} {:>12}  drops\n",
            "SA", "packets", "bytes"
        ));
        for sa in &self.sas {
            let d: Vec<_> = sa.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!(
                "  {:<44} {:>9} {:>12}  {}\n",
                sa.label,
                sa.packets,
                sa.bytes,
                if d.is_empty() {
                    "-".to_string()
                } else {
                    d.join(" ")
                }
            ));
        }
        let d: Vec<_> = self.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
        s.push_str(&format!(
            "  drops (no SA): {}\n",
            if d.is_empty() {
                "-".to_string()
            } else {
                d.join(" ")
            }
        ));
        s
    }
}

/// Headroom and tailroom around each packet: room for the largest encapsulation.
const HEADROOM: usize = 128;
const TAILROOM: usize = 64;
const BATCH: usize = 64;

struct Pending {
    ts_sec: u32,
    ts_frac: u32,
    l2: Option<EthernetRepr>,
}

/// Splits a record into its link-layer header (if Ethernet) and IP packet, or says why not.
fn l3_of(linktype: u32, data: &[u8]) -> Result<(Option<EthernetRepr>, &[u8]), &'static str> {
    match linktype {
        LINKTYPE_ETHERNET => {
            let e = EthernetFrame::new_checked(data).map_err(|_| "non_ip")?;
            if !matches!(e.ethertype(), EtherType::IPV4 | EtherType::IPV6) {
                return Err("non_ip");
            }
            let hl = e.header_len();
            Ok((Some(EthernetRepr::parse(&e)), &data[hl..]))
        }
        _ => match data.first().map(|b| b >> 4) {
            Some(4) | Some(6) => Ok((None, data)),
            _ => Err("non_ip"),
        },
    }
}

/// Runs the operation; the summary says what happened to every record.
pub fn run(o: &Options) -> Result<Summary, ToolError> {
    let sa_name = o.sa_file.display().to_string();
    let sas = file::load(&o.sa_file)?;
    let mut db = SaDb::new(o.backend);
    for sa in sas.iter().cloned() {
        db.insert(sa).map_err(|err| ToolError::Sa {
            file: sa_name.clone(),
            err,
        })?;
    }
    let in_name = o.input.display().to_string();
    let out_name = o.output.display().to_string();
    let f = std::fs::File::open(&o.input).map_err(|err| ToolError::Io {
        file: in_name.clone(),
        err,
    })?;
    let mut reader = Reader::new(BufReader::new(f)).map_err(|err| ToolError::Input {
        file: in_name.clone(),
        err,
    })?;
    let Header {
        linktype, nanos, ..
    } = reader.header;
    let out = std::fs::File::create(&o.output).map_err(|err| ToolError::Io {
        file: out_name.clone(),
        err,
    })?;
    let out_io = |err| ToolError::Io {
        file: out_name.clone(),
        err,
    };
    let mut writer = Writer::new(BufWriter::new(out), linktype, nanos).map_err(out_io)?;
    let mut summary = Summary {
        op: o.op,
        records: 0,
        written: 0,
        skipped: BTreeMap::new(),
        sas: Vec::new(),
        drops: BTreeMap::new(),
        output_linktype: linktype,
    };
    let mut rec = Record::default();
    let mut frames: Vec<OwnedFrame> = Vec::with_capacity(BATCH);
    let mut pending: Vec<Pending> = Vec::with_capacity(BATCH);
    let mut verdicts = [Verdict::Pass; BATCH];
    let mut out_buf = Vec::with_capacity(super::MAX_RECORD as usize + HEADROOM);
    let mut family_changed = false;
    let mut done = false;
    while !done {
        let mut n = 0;
        pending.clear();
        while n < BATCH {
            if !reader.next_into(&mut rec).map_err(|err| ToolError::Input {
                file: in_name.clone(),
                err,
            })? {
                done = true;
                break;
            }
            summary.records += 1;
            let (l2, l3) = match l3_of(linktype, &rec.data) {
                Ok(x) => x,
                Err(kind) => {
                    *summary.skipped.entry(kind.into()).or_default() += 1;
                    continue;
                }
            };
            if n == frames.len() {
                frames.push(OwnedFrame::from_packet(
                    &[],
                    0,
                    super::MAX_RECORD as usize + HEADROOM + TAILROOM,
                ));
            }
            frames[n].refill(l3, HEADROOM);
            pending.push(Pending {
                ts_sec: rec.ts_sec,
                ts_frac: rec.ts_frac,
                l2,
            });
            n += 1;
        }
        match o.op {
            Op::Encrypt => db.encrypt_batch(&mut frames[..n], &mut verdicts[..n]),
            Op::Decrypt => crate::esp::decrypt_batch(&mut db, &mut frames[..n], &mut verdicts[..n]),
        }
        for i in 0..n {
            let skipped = match verdicts[i] {
                Verdict::Pass => None,
                Verdict::Drop(_) => continue,
                Verdict::Ike => Some("ike"),
                Verdict::Keepalive => Some("nat_keepalive"),
                Verdict::NotEsp => Some("not_esp"),
            };
            if let Some(kind) = skipped {
                *summary.skipped.entry(kind.into()).or_default() += 1;
                continue;
            }
            let pkt = frames[i].data();
            let v6 = pkt.first().map(|b| b >> 4) == Some(6);
            out_buf.clear();
            if let Some(mut l2) = pending[i].l2 {
                l2.ethertype = if v6 { EtherType::IPV6 } else { EtherType::IPV4 };
                out_buf.resize(l2.header_len(), 0);
                l2.emit(&mut out_buf);
            }
            out_buf.extend_from_slice(pkt);
            if (linktype == LINKTYPE_IPV4 && v6) || (linktype == LINKTYPE_IPV6 && !v6) {
                family_changed = true;
            }
            writer
                .write(pending[i].ts_sec, pending[i].ts_frac, &out_buf)
                .map_err(out_io)?;
            summary.written += 1;
        }
    }
    let mut file = writer
        .finish()
        .map_err(out_io)?
        .into_inner()
        .map_err(|e| out_io(e.into_error()))?;
    if family_changed {
        // Raw IPv4/IPv6 link types cannot hold the other family: the output becomes raw IP
        // (101), which is the same format with the version read from each packet.
        file.seek(SeekFrom::Start(20)).map_err(out_io)?;
        file.write_all(&LINKTYPE_RAW.to_le_bytes())
            .map_err(out_io)?;
        summary.output_linktype = LINKTYPE_RAW;
    }
    file.flush().map_err(out_io)?;
    summary.sas = sa_infos(&db);
    summary.sas.sort_by(|a, b| a.label.cmp(&b.label));
    summary.drops = drops_map(&db.drops);
    Ok(summary)
}

/// Writes the `esp_sa` table and the `preferences` Wireshark needs to decrypt traffic of these
/// SAs into `dir` (files mode 0600: they hold keys).
pub fn write_wireshark_keys(dir: &Path, sas: &[SaConfig]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join(name))
    };
    let mut t = open("esp_sa")?;
    for sa in sas {
        let (src, dst) = match sa.direction {
            Direction::Out => (sa.local, sa.remote),
            Direction::In => (sa.remote, sa.local),
        };
        let fam = if src.is_ipv4() { "IPv4" } else { "IPv6" };
        let (encr, integ) = wireshark_algorithms(sa.suite);
        let integ_key = sa
            .integ_key
            .as_ref()
            .map(|k| zeroize::Zeroizing::new(format!("0x{}", &*k.expose_hex())))
            .unwrap_or_default();
        let line = zeroize::Zeroizing::new(format!(
            "\"{fam}\",\"{src}\",\"{dst}\",\"0x{:08x}\",\"{encr}\",\"0x{}\",\"{integ}\",\"{}\"\n",
            sa.spi,
            &*sa.key.expose_hex(),
            &*integ_key
        ));
        t.write_all(line.as_bytes())?;
    }
    let mut p = open("preferences")?;
    p.write_all(b"# written by esp-pcap --wireshark-keys\nesp.enable_encryption_decode: TRUE\nesp.enable_authentication_check: TRUE\n")?;
    Ok(())
}

/// Wireshark's names (`esp_sa` table) of a suite's encryption and integrity algorithms.
pub fn wireshark_algorithms(suite: Suite) -> (&'static str, &'static str) {
    let encr = match suite {
        Suite::Aes128Gcm16 | Suite::Aes256Gcm16 => "AES-GCM with 16 octet ICV [RFC4106]",
        Suite::ChaCha20Poly1305 => "ChaCha20 with Poly1305 [RFC7634]",
        _ => "AES-CBC [RFC3602]",
    };
    let integ = match suite.integ() {
        None => "NULL",
        Some(Integ::Sha256) => "HMAC-SHA-256-128 [RFC4868]",
        Some(Integ::Sha384) => "HMAC-SHA-384-192 [RFC4868]",
        Some(Integ::Sha512) => "HMAC-SHA-512-256 [RFC4868]",
    };
    (encr, integ)
}

/// The SAs of a file (for the key export).
pub fn load_sas(path: &Path) -> Result<Vec<SaConfig>, ToolError> {
    Ok(file::load(path)?)
}

/// True for the link types the tool reads.
pub fn supported_linktype(l: u32) -> bool {
    matches!(
        l,
        LINKTYPE_ETHERNET | LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wireshark_keys_name_every_suite_and_carry_the_integ_key() {
        let d = std::env::temp_dir().join(format!("esprit-ws-keys-{}", std::process::id()));
        let text = "[[sa]]\nspi = 7\ndirection = \"in\"\nsuite = \"aes256cbc-sha512\"\n\
            key = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n\
            integ_key = \""
            .to_string()
            + &"5a".repeat(64)
            + "\"\nlocal = \"10.0.0.2\"\nremote = \"10.0.0.1\"\n";
        let sas = file::parse(&text, "t").unwrap();
        write_wireshark_keys(&d, &sas).unwrap();
        let t = std::fs::read_to_string(d.join("esp_sa")).unwrap();
        assert!(
            t.contains("\"AES-CBC [RFC3602]\",\"0x000102")
                && t.contains(&format!(
                    "\"HMAC-SHA-512-256 [RFC4868]\",\"0x{}\"",
                    "5a".repeat(64)
                )),
            "{t}"
        );
        assert_eq!(
            wireshark_algorithms(Suite::ChaCha20Poly1305),
            ("ChaCha20 with Poly1305 [RFC7634]", "NULL")
        );
        assert_eq!(
            wireshark_algorithms(Suite::Aes128CbcSha256).1,
            "HMAC-SHA-256-128 [RFC4868]"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
