//! Opt-in export of the keys esprit-ike negotiates as a Wireshark profile directory
//! (`daemon.wireshark_keys`), so `tshark -o …` or `WIRESHARK_CONFIG_DIR` decrypts captured IKE
//! and ESP. For debugging only: the files hold keys (mode 0600), and nothing is written unless
//! the setting is present.

use crate::ike::algorithms::{EncrAlg, IntegAlg};
use crate::ike::crypto::keys::IkeKeys;
use crate::ike::session::ChildSaInstall;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

fn hex(b: &[u8]) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(b.len() * 2));
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// The key export: every entry since the daemon started (old SAs stay, so older captures keep
/// decrypting), rewritten on each change.
pub struct KeyLog {
    dir: PathBuf,
    ike: Vec<Zeroizing<String>>,
    esp: Vec<Zeroizing<String>>,
}

impl KeyLog {
    /// A key log writing into `dir` (created if missing).
    pub fn new(dir: &Path) -> KeyLog {
        KeyLog {
            dir: dir.to_path_buf(),
            ike: Vec::new(),
            esp: Vec::new(),
        }
    }

    /// The `ikev2_decryption_table` line of an IKE SA.
    pub fn ike_line(
        spi_i: u64,
        spi_r: u64,
        encr: EncrAlg,
        integ: Option<IntegAlg>,
        k: &IkeKeys,
    ) -> Zeroizing<String> {
        let alg = match encr {
            EncrAlg::AesGcm16_128 => "AES-GCM-128 with 16 octet ICV [RFC5282]",
            EncrAlg::AesGcm16_256 => "AES-GCM-256 with 16 octet ICV [RFC5282]",
            EncrAlg::AesCbc128 => "AES-CBC-128 [RFC3602]",
            EncrAlg::AesCbc256 => "AES-CBC-256 [RFC3602]",
            EncrAlg::ChaCha20Poly1305 => "ChaCha20-Poly1305 [RFC7634]",
        };
        let integ = match integ {
            None => "NONE [RFC4306]",
            Some(IntegAlg::HmacSha256_128) => "HMAC_SHA2_256_128 [RFC4868]",
            Some(IntegAlg::HmacSha384_192) => "HMAC_SHA2_384_192 [RFC4868]",
            Some(IntegAlg::HmacSha512_256) => "HMAC_SHA2_512_256 [RFC4868]",
        };
        Zeroizing::new(format!(
            "{spi_i:016x},{spi_r:016x},{},{},\"{alg}\",{},{},\"{integ}\"\n",
            &*hex(&k.sk_ei),
            &*hex(&k.sk_er),
            &*hex(&k.sk_ai),
            &*hex(&k.sk_ar)
        ))
    }

    /// The two `esp_sa` lines of a child SA pair.
    pub fn esp_lines(c: &ChildSaInstall) -> [Zeroizing<String>; 2] {
        let encr = match c.suite.encr {
            EncrAlg::AesGcm16_128 | EncrAlg::AesGcm16_256 => "AES-GCM with 16 octet ICV [RFC4106]",
            EncrAlg::AesCbc128 | EncrAlg::AesCbc256 => "AES-CBC [RFC3602]",
            EncrAlg::ChaCha20Poly1305 => "ChaCha20 with Poly1305 [RFC7634]",
        };
        let integ = match c.suite.integ {
            None => "NULL",
            Some(IntegAlg::HmacSha256_128) => "HMAC-SHA-256-128 [RFC4868]",
            Some(IntegAlg::HmacSha384_192) => "HMAC-SHA-384-192 [RFC4868]",
            Some(IntegAlg::HmacSha512_256) => "HMAC-SHA-512-256 [RFC4868]",
        };
        let line = |src: IpAddr, dst: IpAddr, spi: u32, key: &[u8], ikey: &[u8]| {
            let fam = if src.is_ipv4() { "IPv4" } else { "IPv6" };
            let ikey = if ikey.is_empty() {
                Zeroizing::new(String::new())
            } else {
                Zeroizing::new(format!("0x{}", &*hex(ikey)))
            };
            Zeroizing::new(format!(
                "\"{fam}\",\"{src}\",\"{dst}\",\"0x{spi:08x}\",\"{encr}\",\"0x{}\",\"{integ}\",\"{}\"\n",
                &*hex(key),
                &*ikey
            ))
        };
        let (l, r) = (c.local.ip(), c.remote.ip());
        [
            line(r, l, c.inbound_spi, &c.inbound_key, &c.inbound_integ_key),
            line(l, r, c.outbound_spi, &c.outbound_key, &c.outbound_integ_key),
        ]
    }

    /// Record an IKE SA's keys.
    pub fn add_ike(&mut self, line: Zeroizing<String>) -> std::io::Result<()> {
        self.ike.push(line);
        self.write()
    }

    /// Record a child SA pair's keys.
    pub fn add_child(&mut self, c: &ChildSaInstall) -> std::io::Result<()> {
        self.esp.extend(Self::esp_lines(c));
        self.write()
    }

    fn write(&self) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let put = |name: &str, lines: &[Zeroizing<String>]| -> std::io::Result<()> {
            // A new file is created 0600; an existing one with a wider mode is tightened before
            // a key is written to it; a symbolic link is not followed.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(self.dir.join(name))?;
            if f.metadata()?.permissions().mode() & 0o077 != 0 {
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            for l in lines {
                f.write_all(l.as_bytes())?;
            }
            Ok(())
        };
        put("ikev2_decryption_table", &self.ike)?;
        put("esp_sa", &self.esp)?;
        let prefs = Zeroizing::new(
            "# written by esprit-ike (daemon.wireshark_keys)\nesp.enable_encryption_decode: TRUE\nesp.enable_authentication_check: TRUE\n".to_string(),
        );
        put("preferences", std::slice::from_ref(&prefs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_key_file_with_a_wide_mode_is_tightened() {
        let dir = std::env::temp_dir().join(format!("esprit-keylog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ikev2_decryption_table");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        KeyLog::new(&dir).write().unwrap();
        for name in ["ikev2_decryption_table", "esp_sa", "preferences"] {
            let mode = std::fs::metadata(dir.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
