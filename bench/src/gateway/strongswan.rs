//! strongSwan on gwA (charon with kernel-libipsec: ESP in userspace through a TUN device, always
//! UDP-encapsulated), keyed by IKEv2 with a charon on gwB that only does IKE: the bench takes
//! gwB's place for ESP, with the child SA keys charon logs (`topology::strongswan`, `log_keys`).

use super::systems::{PeerSas, GW_A_WAN, GW_B_WAN};
use std::path::Path;
use std::time::Duration;
use topology::strongswan::{ensure_installed, Charon, CharonSpec};
use topology::{Lab, Node};

/// The strongSwan pair: the gateway under test on gwA, its IKE peer on gwB.
pub struct SswanDut {
    gw_a: Charon,
    gw_b: Charon,
    /// The bench's twins of gwA's child SA.
    pub peer: PeerSas,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The bench's side of a child SA, as an SA file: outbound with gwA's inbound SPI and key,
/// inbound with gwA's outbound ones, ESP-in-UDP on 4500.
fn twin_text(in_spi: u32, in_key: &[u8], out_spi: u32, out_key: &[u8]) -> String {
    let one = |spi: u32, dir: &str, key: &[u8]| {
        format!(
            "[[sa]]\nspi = \"0x{spi:08x}\"\ndirection = \"{dir}\"\nsuite = \"aes128gcm16\"\n\
             key = \"{}\"\nlocal = \"{GW_B_WAN}\"\nremote = \"{GW_A_WAN}\"\nencap = \"udp\"\n\
             local_ts = [\"{}\"]\nremote_ts = [\"{}\"]\n\n",
            hex(key),
            topology::lab::SITE_B,
            topology::lab::SITE_A
        )
    };
    one(in_spi, "out", in_key) + &one(out_spi, "in", out_key)
}

impl SswanDut {
    /// Starts charon on gwB then gwA (keys logged), has gwA initiate, pins gwA's charon to
    /// `core`, and reads the child SA's keys back. `Err` says why strongSwan cannot be
    /// measured (not installed, did not connect…).
    pub fn start(
        lab: &Lab,
        dir: &Path,
        core: usize,
        say: &mut dyn FnMut(&str),
    ) -> Result<SswanDut, String> {
        ensure_installed().map_err(|e| format!("{e}"))?;
        let spec = |mut s: CharonSpec| {
            s.log_keys = true;
            s
        };
        let gw_b = Charon::start(
            lab,
            Node::GwB,
            &dir.join("charon-gwB"),
            &spec(CharonSpec::lab_gw_b(lab)),
        )
        .map_err(|e| format!("charon on gwB: {e}"))?;
        let gw_a = Charon::start(
            lab,
            Node::GwA,
            &dir.join("charon-gwA"),
            &spec(CharonSpec::lab_gw_a(lab)),
        )
        .map_err(|e| format!("charon on gwA: {e}"))?;
        let child = gw_a.spec().child.clone();
        gw_a.initiate(&child)
            .map_err(|e| format!("initiating from gwA: {e}"))?;
        let ike = gw_a
            .wait_established(Duration::from_secs(15))
            .map_err(|e| format!("waiting for the IKE SA: {e}"))?;
        let sa = ike
            .installed_child(&child)
            .ok_or("no installed child SA on gwA")?
            .clone();
        let keys = gw_a.child_keys();
        let key = |spi: u32, inbound: bool| {
            keys.iter()
                .rev()
                .find(|k| k.spi == spi && k.inbound == inbound)
                .map(|k| k.encr_key.clone())
                .ok_or_else(|| format!("gwA's log has no key for SPI 0x{spi:08x}"))
        };
        let text = twin_text(
            sa.spi_in,
            &key(sa.spi_in, true)?,
            sa.spi_out,
            &key(sa.spi_out, false)?,
        );
        let peer = PeerSas::from_text(&text, "strongSwan twin SAs")?;
        let pinned = gw_a
            .pid()
            .is_some_and(|pid| super::placement::pin(pid, core, true));
        let niced = gw_a
            .pid()
            .map(|pid| super::placement::renice_threads(pid, "", -20))
            .unwrap_or(0);
        say(&format!(
            "  strongSwan {} on gwA (kernel-libipsec, {} {}, SPIs in 0x{:08x} out 0x{:08x}), charon {} core {core}, {niced} threads at nice -20",
            topology::strongswan::strongswan_version().unwrap_or_default(),
            sa.encr_alg,
            sa.encr_keysize.map(|k| k.to_string()).unwrap_or_default(),
            sa.spi_in,
            sa.spi_out,
            if pinned { "pinned to" } else { "NOT pinned to" },
        ));
        Ok(SswanDut { gw_a, gw_b, peer })
    }

    /// Stops both charons; returns a line with gwA's child SA counters.
    pub fn stop(self) -> String {
        let counters = self
            .gw_a
            .list_sas()
            .ok()
            .and_then(|sas| {
                sas.iter().find_map(|s| {
                    s.installed_child(&self.gw_a.spec().child).map(|c| {
                        format!("child SA packets in {} out {}", c.packets_in, c.packets_out)
                    })
                })
            })
            .unwrap_or_else(|| "no child SA listed".into());
        self.gw_a.stop();
        self.gw_b.stop();
        format!("strongSwan on gwA stopped: {counters}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twins_cross_spis_and_keys() {
        let text = twin_text(0x1111_2222, &[1; 20], 0x3333_4444, &[2; 20]);
        let peer = PeerSas::from_text(&text, "t").unwrap();
        let out = &peer.gen.outbound()[0];
        assert_eq!(out.cfg.spi, 0x1111_2222);
        assert!(out.cfg.encap.is_some());
        let inb = peer.sink.inbound().next().unwrap();
        assert_eq!(inb.cfg.spi, 0x3333_4444);
        assert_eq!(inb.cfg.key.expose_secret(), &[2u8; 20][..]);
    }
}
