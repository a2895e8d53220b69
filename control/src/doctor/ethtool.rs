//! An interface's offload features through the ethtool ioctls (`ETHTOOL_GSSET_INFO`,
//! `ETHTOOL_GSTRINGS`, `ETHTOOL_GFEATURES`), as `ethtool -k` shows them, in the calling
//! thread's network namespace.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// One feature's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// On now.
    pub active: bool,
    /// Cannot be changed (`[fixed]` in `ethtool -k`).
    pub fixed: bool,
}

/// Features by their kernel name (`rx-lro`, `rx-gro`, `rx-gro-hw`…; `ethtool -k` shows some
/// under longer names: `large-receive-offload`, `generic-receive-offload`).
pub type Features = BTreeMap<String, Feature>;

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// Runs `SIOCETHTOOL` for `iface` with `data` as the command buffer.
fn ethtool(fd: &OwnedFd, iface: &str, data: &mut [u64]) -> io::Result<()> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ || iface.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {iface:?}"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_data = data.as_mut_ptr() as *mut libc::c_char;
    // SAFETY: SIOCETHTOOL reads ifr_name and reads and writes the command buffer ifr_data
    // points at; every command used here stays within the length its header announces,
    // which the callers size `data` for, and `data` outlives the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The features of `iface`.
pub fn features(iface: &str) -> io::Result<Features> {
    // SAFETY: plain socket creation; checked below and closed by OwnedFd.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // struct ethtool_sset_info: cmd, reserved, sset_mask (u64), data[1].
    let mut info = [0u64; 3];
    info[0] = ETHTOOL_GSSET_INFO as u64;
    info[1] = 1 << ETH_SS_FEATURES;
    ethtool(&fd, iface, &mut info)?;
    if info[1] & (1 << ETH_SS_FEATURES) == 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no feature strings",
        ));
    }
    let count = (info[2] & 0xffff_ffff) as usize;
    // struct ethtool_gstrings: cmd, string_set, len, then the strings.
    let mut strings = vec![0u64; (12 + count * ETH_GSTRING_LEN).div_ceil(8)];
    let head = words_mut(&mut strings);
    head[0] = ETHTOOL_GSTRINGS;
    head[1] = ETH_SS_FEATURES;
    head[2] = count as u32;
    ethtool(&fd, iface, &mut strings)?;
    let bytes = as_bytes(&strings);
    let names: Vec<String> = (0..count)
        .map(|i| {
            let s = &bytes[12 + i * ETH_GSTRING_LEN..12 + (i + 1) * ETH_GSTRING_LEN];
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        })
        .collect();
    // struct ethtool_gfeatures: cmd, size, then per 32 features {available, requested,
    // active, never_changed}.
    let blocks = count.div_ceil(32);
    let mut feats = vec![0u64; (8 + blocks * 16).div_ceil(8)];
    let head = words_mut(&mut feats);
    head[0] = ETHTOOL_GFEATURES;
    head[1] = blocks as u32;
    ethtool(&fd, iface, &mut feats)?;
    let w = words(&feats);
    Ok(names
        .into_iter()
        .enumerate()
        .filter(|(_, n)| !n.is_empty())
        .map(|(i, n)| {
            let (b, bit) = (2 + (i / 32) * 4, 1u32 << (i % 32));
            let f = Feature {
                active: w[b + 2] & bit != 0,
                fixed: w[b] & bit == 0 || w[b + 3] & bit != 0,
            };
            (n, f)
        })
        .collect())
}

fn words(v: &[u64]) -> Vec<u32> {
    as_bytes(v)
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn words_mut(v: &mut [u64]) -> &mut [u32] {
    // SAFETY: a u64 slice is a valid, suitably aligned u32 slice of twice the length.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u32, v.len() * 2) }
}

fn as_bytes(v: &[u64]) -> &[u8] {
    // SAFETY: a u64 slice is a valid byte slice of eight times the length.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 8) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_features() {
        let f = features("lo").unwrap();
        assert!(f.len() > 10, "{f:?}");
        assert!(
            f.contains_key("rx-gro") && f.contains_key("rx-lro"),
            "{f:?}"
        );
        assert!(features("no-such-if0").is_err());
    }
}
