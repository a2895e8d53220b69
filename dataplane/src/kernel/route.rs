//! The kernel's routes: read with an RTM_GETROUTE dump (unicast routes of the main table) and
//! followed through RTNLGRP_IPV4_ROUTE / RTNLGRP_IPV6_ROUTE notifications, parsed into what
//! changed ([`RouteMsg`]: a route added, replaced or deleted), so that the gateway reaches
//! what is not on its links the way the kernel would (through the router the kernel's route
//! names) and follows the routes through its tunnel interfaces without re-reading the table.
//!
//! Links are followed too (RTNLGRP_LINK, [`LinkMsg`]): when an interface is set down the kernel
//! drops the IPv4 routes through it, and marks that hop of a multipath route dead, without a
//! route notification; the follower learns it from the link's. Dead hops (RTNH_F_DEAD) are
//! left out of everything parsed here.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use super::neigh::{dump_with, netlink_socket, recv};
use crate::sa::Prefix;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_APPEND: u16 = 0x800;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTN_UNICAST: u8 = 1;
const RT_TABLE_MAIN: u32 = 254;
/// A next hop the kernel no longer uses (its interface is down), in `rtm_flags` or in a
/// `struct rtnexthop`.
const RTNH_F_DEAD: u32 = 1;
/// Multicast group bits of RTNLGRP_LINK (1), RTNLGRP_IPV4_ROUTE (7) and RTNLGRP_IPV6_ROUTE (11).
const RTMGRP_LINKS_AND_ROUTES: u32 = 1 | (1 << (7 - 1)) | (1 << (11 - 1));
/// Receive buffer asked for the notification socket: a full table's worth of notifications
/// arrives in a burst when a BGP session comes up (SO_RCVBUFFORCE as root, else capped by
/// net.core.rmem_max).
const MONITOR_RCVBUF: i32 = 256 << 20;

/// One route message: a main-table unicast route added, replaced or deleted, with its next
/// hops (one, or several for a multipath route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMsg {
    /// RTM_DELROUTE: the route (IPv4: all its hops; IPv6: the hops listed) is gone.
    pub delete: bool,
    /// The message gives every hop of (prefix, metric): the hops known before are replaced
    /// (IPv4 without NLM_F_APPEND, IPv6 with NLM_F_REPLACE). Otherwise the hops are added
    /// (an IPv6 equal-cost route arrives as one message per next hop).
    pub replace: bool,
    /// The destination prefix.
    pub prefix: Prefix,
    /// The route's metric.
    pub metric: u32,
    /// (interface, router) of each next hop.
    pub hops: Vec<(u32, Option<IpAddr>)>,
}

/// One link message: an interface changed (RTM_NEWLINK) or is gone (RTM_DELLINK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkMsg {
    /// The interface.
    pub ifindex: u32,
    /// Administratively up (IFF_UP) and not deleted.
    pub up: bool,
}

/// One notification: a route or a link changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A route was added, replaced or deleted.
    Route(RouteMsg),
    /// An interface changed or went away.
    Link(LinkMsg),
}

/// One unicast route of the main table, through one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelRoute {
    /// The destination prefix.
    pub prefix: Prefix,
    /// The router to send through; None: the destination is on the link.
    pub gateway: Option<IpAddr>,
    /// The interface.
    pub oif: u32,
    /// The route's metric (lower wins among routes of one prefix).
    pub metric: u32,
}

#[repr(C)]
struct Request {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    family: u8,
    dst_len: u8,
    src_len: u8,
    tos: u8,
    table: u8,
    protocol: u8,
    scope: u8,
    rtype: u8,
    rtm_flags: u32,
}

/// Every unicast route of the main table (IPv4 and IPv6), one entry per next hop of a
/// multipath route.
pub fn dump() -> io::Result<Vec<KernelRoute>> {
    let req = Request {
        len: std::mem::size_of::<Request>() as u32,
        kind: RTM_GETROUTE,
        flags: NLM_F_REQUEST | NLM_F_DUMP,
        seq: 1,
        pid: 0,
        family: libc::AF_UNSPEC as u8,
        dst_len: 0,
        src_len: 0,
        tos: 0,
        table: 0,
        protocol: 0,
        scope: 0,
        rtype: 0,
        rtm_flags: 0,
    };
    let mut routes = Vec::new();
    dump_with(&req, |b| parse(b, |r| routes.push(r)))?;
    Ok(routes)
}

/// The kernel's main-table unicast routes through interface `ifindex`, as
/// (prefix, router, metric). Routes whose router is of the other address family are left out
/// (esprit cannot send through them).
pub fn through(ifindex: u32) -> io::Result<Vec<(Prefix, Option<IpAddr>, u32)>> {
    Ok(through_of(&dump()?, ifindex))
}

/// [`through`] from routes already read with [`dump`].
pub fn through_of(all: &[KernelRoute], ifindex: u32) -> Vec<(Prefix, Option<IpAddr>, u32)> {
    all.iter()
        .filter(|r| r.oif == ifindex)
        .filter(|r| {
            r.gateway
                .is_none_or(|g| g.is_ipv4() == r.prefix.addr().is_ipv4())
        })
        .map(|r| (r.prefix, r.gateway, r.metric))
        .collect()
}

fn ip(family: u8, b: &[u8]) -> Option<IpAddr> {
    match (i32::from(family), b.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        (libc::AF_INET6, 16) => {
            let a: [u8; 16] = b.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

/// The attributes of a route message (or of a multipath next hop): (type, value) pairs.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((kind, value))
    })
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

/// Parses one netlink datagram of route messages, calling `f` for every main-table unicast
/// route of an RTM_NEWROUTE. True when the datagram ends a dump. Malformed messages are
/// skipped, never trusted.
pub(crate) fn parse(b: &[u8], mut f: impl FnMut(KernelRoute)) -> io::Result<bool> {
    let (done, _) = parse_msgs(b, |n| {
        let Notice::Route(m) = n else {
            return;
        };
        if !m.delete {
            for &(oif, gateway) in &m.hops {
                f(KernelRoute {
                    prefix: m.prefix,
                    gateway,
                    oif,
                    metric: m.metric,
                });
            }
        }
    })?;
    Ok(done)
}

/// Parses one netlink datagram of route and link messages, calling `f` for every main-table
/// unicast route added or deleted and every link message. Returns whether the datagram ends a
/// dump, and how many messages were malformed (skipped, never trusted).
pub(crate) fn parse_msgs(mut b: &[u8], mut f: impl FnMut(Notice)) -> io::Result<(bool, u64)> {
    let mut malformed = 0;
    while b.len() >= 16 {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let kind = u16::from_ne_bytes([b[4], b[5]]);
        let flags = u16::from_ne_bytes([b[6], b[7]]);
        if len < 16 || len > b.len() {
            malformed += 1;
            break;
        }
        let msg = &b[16..len];
        match kind {
            NLMSG_DONE => return Ok((true, malformed)),
            NLMSG_ERROR => {
                let errno = msg
                    .get(..4)
                    .map(|e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
                    .unwrap_or(0);
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(-errno));
                }
            }
            RTM_NEWROUTE | RTM_DELROUTE => match route(msg, kind == RTM_DELROUTE, flags) {
                Ok(Some(m)) => f(Notice::Route(m)),
                Ok(None) => {}
                Err(Malformed) => malformed += 1,
            },
            RTM_NEWLINK | RTM_DELLINK => match link(msg, kind == RTM_DELLINK) {
                Some(l) => f(Notice::Link(l)),
                None => malformed += 1,
            },
            _ => {}
        }
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    if !b.is_empty() {
        malformed += 1;
    }
    Ok((false, malformed))
}

/// A route message that does not parse.
struct Malformed;

/// The link of one message (`struct ifinfomsg { u8 family; u8 pad; u16 type; i32 index;
/// u32 flags; u32 change; }`); `None` when it is too short.
fn link(msg: &[u8], deleted: bool) -> Option<LinkMsg> {
    let ifindex = u32_of(msg.get(4..8)?)?;
    let flags = u32_of(msg.get(8..12)?)?;
    Some(LinkMsg {
        ifindex,
        up: !deleted && flags & libc::IFF_UP as u32 != 0,
    })
}

/// The route of one message; `None` for routes that are not main-table unicast ones.
fn route(msg: &[u8], delete: bool, flags: u16) -> Result<Option<RouteMsg>, Malformed> {
    if msg.len() < 12 {
        return Err(Malformed);
    }
    let (family, dst_len, table8, rtype) = (msg[0], msg[1], msg[4], msg[7]);
    let dead = u32_of(&msg[8..12]).unwrap_or(0) & RTNH_F_DEAD != 0;
    if rtype != RTN_UNICAST {
        return Ok(None);
    }
    let (mut dst, mut gateway, mut oif, mut metric, mut table) =
        (None, None, None, 0u32, u32::from(table8));
    let mut hops: Vec<(u32, Option<IpAddr>)> = Vec::new();
    for (kind, v) in attrs(&msg[12..]) {
        match kind {
            RTA_DST => dst = Some(ip(family, v).ok_or(Malformed)?),
            RTA_GATEWAY => gateway = ip(family, v),
            RTA_OIF => oif = u32_of(v),
            RTA_PRIORITY => metric = u32_of(v).unwrap_or(0),
            RTA_TABLE => table = u32_of(v).unwrap_or(table),
            RTA_MULTIPATH => {
                // struct rtnexthop { u16 len; u8 flags; u8 hops; i32 ifindex; } + attributes.
                let mut m = v;
                while m.len() >= 8 {
                    let l = usize::from(u16::from_ne_bytes([m[0], m[1]]));
                    if l < 8 || l > m.len() {
                        return Err(Malformed);
                    }
                    let ifindex = u32_of(&m[4..8]).unwrap_or(0);
                    let gw = attrs(&m[8..l])
                        .find(|(k, _)| *k == RTA_GATEWAY)
                        .and_then(|(_, g)| ip(family, g));
                    if u32::from(m[2]) & RTNH_F_DEAD == 0 {
                        hops.push((ifindex, gw));
                    }
                    m = &m[l.next_multiple_of(4).min(m.len())..];
                }
            }
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN {
        return Ok(None);
    }
    let any = match i32::from(family) {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        libc::AF_INET6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return Err(Malformed),
    };
    let prefix = Prefix::new(dst.unwrap_or(any), dst_len).ok_or(Malformed)?;
    if let Some(oif) = oif.filter(|_| !dead) {
        hops.insert(0, (oif, gateway));
    }
    let replace = if any.is_ipv4() {
        flags & NLM_F_APPEND == 0
    } else {
        flags & NLM_F_REPLACE != 0
    };
    Ok(Some(RouteMsg {
        delete,
        replace,
        prefix,
        metric,
        hops,
    }))
}

/// What [`RouteMonitor::drain`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Route messages passed on.
    pub messages: u64,
    /// Malformed messages skipped.
    pub malformed: u64,
    /// Notifications were lost (ENOBUFS): the caller must read the whole table again.
    pub lost: bool,
}

/// A subscription to the kernel's route notifications.
pub struct RouteMonitor {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl RouteMonitor {
    /// Subscribes to IPv4 and IPv6 route changes (non-blocking socket).
    pub fn open() -> io::Result<Self> {
        let fd = netlink_socket(libc::SOCK_NONBLOCK)?;
        // SAFETY: an all-zero sockaddr_nl is valid; the fields are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = RTMGRP_LINKS_AND_ROUTES;
        // SAFETY: binds to a live sockaddr_nl of the stated size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: sets an int socket option from a live int of the stated size.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &MONITOR_RCVBUF as *const i32 as *const libc::c_void,
                    std::mem::size_of::<i32>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
        Ok(RouteMonitor {
            fd,
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// Sleeps until a notification arrives or `timeout` passes.
    pub fn wait(&self, timeout: std::time::Duration) {
        let mut fd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut fd, 1, timeout.as_millis() as i32) };
    }

    /// Reads every waiting notification without blocking, passing each route and link message
    /// to `f` (at most `budget` datagrams, so a flood does not starve the caller).
    pub fn drain(&mut self, budget: usize, mut f: impl FnMut(Notice)) -> Drained {
        let mut d = Drained::default();
        for _ in 0..budget {
            match recv(&self.fd, &mut self.buf) {
                Ok(Some(n)) => match parse_msgs(&self.buf[..n], |m| {
                    d.messages += 1;
                    f(m)
                }) {
                    Ok((_, bad)) => d.malformed += bad,
                    Err(_) => d.malformed += 1,
                },
                Ok(None) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ENOBUFS: notifications were dropped.
                Err(_) => {
                    d.lost = true;
                    break;
                }
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, v: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(v);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn message(kind: u16, rtmsg: [u8; 12], attrs: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = rtmsg.iter().copied().chain(attrs.concat()).collect();
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    fn collect(b: &[u8]) -> (Vec<KernelRoute>, bool) {
        let mut v = Vec::new();
        let done = parse(b, |r| v.push(r)).unwrap();
        (v, done)
    }

    #[test]
    fn default_and_prefix_routes_with_gateways() {
        let v4 = libc::AF_INET as u8;
        let default = message(
            RTM_NEWROUTE,
            [v4, 0, 0, 0, 254, 3, 0, RTN_UNICAST, 0, 0, 0, 0],
            &[
                attr(RTA_GATEWAY, &[10, 200, 1, 254]),
                attr(RTA_OIF, &7u32.to_ne_bytes()),
                attr(RTA_PRIORITY, &100u32.to_ne_bytes()),
            ],
        );
        let subnet = message(
            RTM_NEWROUTE,
            [v4, 24, 0, 0, 254, 2, 253, RTN_UNICAST, 0, 0, 0, 0],
            &[
                attr(RTA_DST, &[10, 200, 1, 0]),
                attr(RTA_OIF, &7u32.to_ne_bytes()),
            ],
        );
        let local = message(
            RTM_NEWROUTE,
            [v4, 32, 0, 0, 255, 2, 254, 2, 0, 0, 0, 0],
            &[
                attr(RTA_DST, &[10, 200, 1, 1]),
                attr(RTA_OIF, &7u32.to_ne_bytes()),
            ],
        );
        let done = message(NLMSG_DONE, [0; 12], &[]);
        let all = [default, subnet, local, done].concat();
        let (routes, finished) = collect(&all);
        assert!(finished);
        assert_eq!(
            routes.len(),
            2,
            "the local-table route is not one: {routes:?}"
        );
        assert_eq!(
            routes[0].prefix,
            Prefix::new("0.0.0.0".parse().unwrap(), 0).unwrap()
        );
        assert_eq!(routes[0].gateway, Some("10.200.1.254".parse().unwrap()));
        assert_eq!((routes[0].oif, routes[0].metric), (7, 100));
        assert_eq!(routes[1].gateway, None);
    }

    #[test]
    fn multipath_routes_give_one_entry_per_hop_and_garbage_is_skipped() {
        let v6 = libc::AF_INET6 as u8;
        let gw1: [u8; 16] = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        let gw2: [u8; 16] = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        let hop = |ifindex: i32, gw: &[u8; 16]| {
            let a = attr(RTA_GATEWAY, gw);
            let mut h = Vec::new();
            h.extend_from_slice(&((8 + a.len()) as u16).to_ne_bytes());
            h.extend_from_slice(&[0, 0]);
            h.extend_from_slice(&ifindex.to_ne_bytes());
            h.extend_from_slice(&a);
            h
        };
        let mp = [hop(3, &gw1), hop(4, &gw2)].concat();
        let m = message(
            RTM_NEWROUTE,
            [v6, 0, 0, 0, 254, 3, 0, RTN_UNICAST, 0, 0, 0, 0],
            &[attr(RTA_MULTIPATH, &mp)],
        );
        let (routes, _) = collect(&m);
        assert_eq!(routes.len(), 2);
        assert_eq!((routes[0].oif, routes[1].oif), (3, 4));
        assert_eq!(
            routes[1].gateway,
            Some(IpAddr::V6("fd00::2".parse().unwrap()))
        );
        // Truncated and lying lengths: nothing, and no panic.
        for cut in 0..m.len() {
            let _ = collect(&m[..cut]);
        }
        let mut bad = m.clone();
        bad[16 + 12] = 0xff;
        let _ = collect(&bad);
    }

    #[test]
    fn deletes_and_flags_say_how_hops_combine() {
        let v4 = libc::AF_INET as u8;
        let v6 = libc::AF_INET6 as u8;
        let with_flags = |mut m: Vec<u8>, flags: u16| {
            m[6..8].copy_from_slice(&flags.to_ne_bytes());
            m
        };
        let gw6: [u8; 16] = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        let del6 = message(
            RTM_DELROUTE,
            [v6, 48, 0, 0, 254, 3, 0, RTN_UNICAST, 0, 0, 0, 0],
            &[
                attr(RTA_DST, &gw6),
                attr(RTA_OIF, &9u32.to_ne_bytes()),
                attr(RTA_PRIORITY, &1024u32.to_ne_bytes()),
            ],
        );
        let append4 = with_flags(
            message(
                RTM_NEWROUTE,
                [v4, 16, 0, 0, 254, 3, 0, RTN_UNICAST, 0, 0, 0, 0],
                &[
                    attr(RTA_DST, &[10, 9, 0, 0]),
                    attr(RTA_OIF, &9u32.to_ne_bytes()),
                ],
            ),
            NLM_F_APPEND,
        );
        let replace6 = with_flags(del6.clone(), NLM_F_REPLACE);
        let mut replace6 = replace6;
        replace6[4..6].copy_from_slice(&RTM_NEWROUTE.to_ne_bytes());
        let mut got = Vec::new();
        let (done, bad) = parse_msgs(&[del6, append4, replace6].concat(), |n| {
            if let Notice::Route(m) = n {
                got.push(m)
            }
        })
        .unwrap();
        assert_eq!((done, bad), (false, 0));
        assert_eq!(got.len(), 3);
        assert!(got[0].delete && !got[0].replace);
        assert_eq!(
            (got[0].prefix.len(), got[0].metric, got[0].hops[0].0),
            (48, 1024, 9)
        );
        assert!(!got[1].delete && !got[1].replace, "IPv4 append adds a hop");
        assert!(
            !got[2].delete && got[2].replace,
            "IPv6 replace takes all hops"
        );
        // A destination of the wrong length is malformed: skipped and counted.
        let bad = message(
            RTM_NEWROUTE,
            [v4, 24, 0, 0, 254, 3, 0, RTN_UNICAST, 0, 0, 0, 0],
            &[attr(RTA_DST, &[10, 9, 0])],
        );
        let (_, n) = parse_msgs(&bad, |_| panic!("not a route")).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn dead_hops_are_left_out_and_links_are_read() {
        let v4 = libc::AF_INET as u8;
        let hop = |flags: u8, ifindex: i32| {
            let mut h = Vec::new();
            h.extend_from_slice(&8u16.to_ne_bytes());
            h.extend_from_slice(&[flags, 0]);
            h.extend_from_slice(&ifindex.to_ne_bytes());
            h
        };
        // A multipath route whose hop through interface 5 is dead (its link went down).
        let mp = [hop(RTNH_F_DEAD as u8, 5), hop(0, 6)].concat();
        let multipath = message(
            RTM_NEWROUTE,
            [v4, 24, 0, 0, 254, 3, 0, RTN_UNICAST, 0, 0, 0, 0],
            &[attr(RTA_DST, &[10, 9, 9, 0]), attr(RTA_MULTIPATH, &mp)],
        );
        let (routes, _) = collect(&multipath);
        assert_eq!(routes.iter().map(|r| r.oif).collect::<Vec<_>>(), [6]);
        // A single-hop route flagged dead in rtm_flags gives no hop at all.
        let flags = RTNH_F_DEAD.to_ne_bytes();
        let single = message(
            RTM_NEWROUTE,
            [
                v4,
                24,
                0,
                0,
                254,
                3,
                0,
                RTN_UNICAST,
                flags[0],
                flags[1],
                flags[2],
                flags[3],
            ],
            &[
                attr(RTA_DST, &[10, 9, 8, 0]),
                attr(RTA_OIF, &7u32.to_ne_bytes()),
            ],
        );
        assert!(collect(&single).0.is_empty());
        // Links: up, down (IFF_UP clear), deleted; a truncated one is counted as malformed.
        let ifinfo = |kind: u16, index: i32, flags: u32| {
            let mut body = vec![0u8, 0, 0, 0];
            body.extend_from_slice(&index.to_ne_bytes());
            body.extend_from_slice(&flags.to_ne_bytes());
            body.extend_from_slice(&u32::MAX.to_ne_bytes());
            let mut m = Vec::new();
            m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&[0; 10]);
            m.extend_from_slice(&body);
            m
        };
        let up = libc::IFF_UP as u32 | libc::IFF_RUNNING as u32;
        let mut truncated = ifinfo(RTM_NEWLINK, 9, up);
        truncated.truncate(16 + 6);
        truncated[0..4].copy_from_slice(&22u32.to_ne_bytes());
        let datagram = [
            ifinfo(RTM_NEWLINK, 7, up),
            ifinfo(RTM_NEWLINK, 7, libc::IFF_RUNNING as u32),
            ifinfo(RTM_DELLINK, 8, up),
            truncated,
        ]
        .concat();
        let mut links = Vec::new();
        let (_, bad) = parse_msgs(&datagram, |n| {
            if let Notice::Link(l) = n {
                links.push((l.ifindex, l.up))
            }
        })
        .unwrap();
        assert_eq!(links, [(7, true), (7, false), (8, false)]);
        assert_eq!(bad, 1);
    }

    #[test]
    fn the_kernel_dump_runs() {
        // Every machine has routes; as root in a fresh namespace there may be none, so only
        // the call is checked.
        dump().unwrap();
        RouteMonitor::open().unwrap();
    }
}
