//! The pipeline benchmark runs the daemon's path, so its output must be right: packets it
//! encrypts decrypt (with the peers' twin SAs) to what went in, packets it decrypts are the
//! twins' plaintexts, and a large tunnel table picks the right SA for sampled flows.

use bench::esp::Size;
use bench::pipeline::{
    copier, gateway, peer, sa, site, spi_in, spi_out, traffic, tunnel_sequence, Rig, Spread,
};
use dataplane::esp::{decrypt_batch, Backend, Verdict};
use dataplane::frame::OwnedFrame;
use dataplane::sa::{Direction, SaDb};
use dataplane::worker::Port;
use std::net::{IpAddr, Ipv4Addr};

/// Tunnels in the table (the bench goes to 1,000,000; 100,000 keeps the test to a second or so).
const TUNNELS: usize = 100_000;
const WAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// `got` is `want` forwarded once: TTL one lower, header checksum changed to match.
fn same_but_ttl(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len());
    assert_eq!(got[8], want[8] - 1, "TTL decremented once");
    assert_eq!(&got[..8], &want[..8]);
    assert_eq!(&got[12..], &want[12..]);
}

#[test]
fn bench_output_decrypts_to_its_input_and_the_big_table_finds_the_right_sa() {
    let mut p = gateway(TUNNELS, 1, 0).unwrap();
    let seq = tunnel_sequence(TUNNELS, Spread::Skewed, 256, 1);
    let t = traffic(&seq, Size::Imix, true).unwrap();
    let mut rig = Rig::new().unwrap();

    // LAN -> WAN: ESP towards each tunnel's peer with its SPI, opened by the peer's twin.
    let mut twins = SaDb::new(Backend::default());
    for i in &t.distinct {
        twins.insert(sa(*i as usize, Direction::In, true)).unwrap();
    }
    let mut checked = 0;
    for base in (0..t.lan.len()).step_by(64) {
        let end = (base + 64).min(t.lan.len());
        assert_eq!(
            rig.batch(&mut p, Port::Lan, copier(&t.lan, base..end), |_| true),
            end - base
        );
        assert_eq!(rig.tx[Port::Lan as usize].len(), 0);
        let sent = std::mem::take(&mut rig.tx[Port::Wan as usize]);
        assert_eq!(sent.len(), end - base, "every packet leaves by the WAN");
        for (k, d) in sent.iter().enumerate() {
            let i = t.tunnels[base + k] as usize;
            let eth = rig.frame(d).to_vec();
            let ip = &eth[14..];
            assert_eq!(
                &ip[16..20],
                &peer(i).octets(),
                "outer destination: the peer"
            );
            assert_eq!(&ip[20..24], &spi_out(i).to_be_bytes(), "the tunnel's SPI");
            let mut f = [OwnedFrame::from_packet(ip, 128, 64)];
            let mut v = [Verdict::Pass];
            decrypt_batch(&mut twins, &mut f, &mut v);
            assert_eq!(v[0], Verdict::Pass, "packet {}", base + k);
            same_but_ttl(f[0].data(), &t.lan.get(base + k)[14..]);
            checked += 1;
        }
        rig.tx[Port::Wan as usize] = sent;
        rig.complete();
    }
    assert_eq!(checked, t.lan.len());

    // WAN -> LAN: the twins' ESP decrypts to their plaintexts, sent to the LAN host.
    for base in (0..t.wan.len()).step_by(64) {
        let end = (base + 64).min(t.wan.len());
        rig.batch(&mut p, Port::Wan, copier(&t.wan, base..end), |_| true);
        let sent = std::mem::take(&mut rig.tx[Port::Lan as usize]);
        assert_eq!(sent.len(), end - base);
        for (k, d) in sent.iter().enumerate() {
            let eth = rig.frame(d).to_vec();
            let lan = &t.lan.get(base + k)[14..];
            let ip = &eth[14..];
            // The reply of packet k: addresses swapped, same length and payload.
            assert_eq!((&ip[12..16], &ip[16..20]), (&lan[16..20], &lan[12..16]));
            assert_eq!(ip.len(), lan.len());
            assert_eq!(ip[8], 63);
            assert_eq!(&eth[..5], &[2, 0, 0, 1, 0], "to the LAN host's MAC");
        }
        rig.tx[Port::Lan as usize] = sent;
        rig.complete();
    }
    assert_eq!(rig.dropped, 0);

    // Sampled flows: the selector lookup and the SPI lookup return the tunnel's SAs.
    for i in (0..TUNNELS).step_by(97).chain([0, TUNNELS - 1]) {
        let host = IpAddr::V4(Ipv4Addr::from(u32::from(site(i)) + 3));
        let lan_host: IpAddr = "172.16.0.9".parse().unwrap();
        let idx = p.sadb.outbound_lookup(lan_host, host).unwrap();
        assert_eq!(p.sadb.outbound()[idx].cfg.spi, spi_out(i));
        assert_eq!(p.sadb.outbound_to(peer(i).into()), Some(idx));
        let inb = p.sadb.inbound_mut(spi_in(i), WAN.into()).unwrap();
        assert_eq!(inb.cfg.remote, IpAddr::V4(peer(i)));
        let outside = IpAddr::V4(Ipv4Addr::from(u32::from(site(i)) + 16));
        if i + 1 < TUNNELS {
            let j = p.sadb.outbound_lookup(lan_host, outside).unwrap();
            assert_eq!(
                p.sadb.outbound()[j].cfg.spi,
                spi_out(i + 1),
                "the next site"
            );
        }
    }
    assert_eq!(
        p.sadb
            .outbound_lookup("172.16.0.9".parse().unwrap(), "11.0.0.1".parse().unwrap()),
        None
    );
}
