//! Pod addresses from this node's range. A pod's address is derived from
//! its uid (stable, spread over the /64, no central counter) and recorded
//! in the pod's directory (`<pod dir>/address`) before its interface is made,
//! so a start retried after a crash, or an agent that restarted, keeps it;
//! the addresses in use are read back from those files at start.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::path::Path;
use std::sync::Mutex;

use selur_api::network::Ipv6Cidr;

/// The file in a pod's directory holding its address.
pub const ADDR_FILE: &str = "address";

/// Errors assigning an address.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("node pod range {range} is full ({used} addresses in use)")]
    Exhausted { range: Ipv6Cidr, used: usize },
    #[error("recording the pod's address in {path}: {source}")]
    Record {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The addresses of this node's pods.
#[derive(Debug)]
pub struct Ipam {
    range: Ipv6Cidr,
    /// Never handed out: the network address and the bridge's.
    reserved: BTreeSet<Ipv6Addr>,
    used: Mutex<BTreeSet<Ipv6Addr>>,
}

/// FNV-1a: a stable hash (the std hasher may change between releases and
/// addresses must survive an upgrade of the agent).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Ipam {
    /// An allocator over `range`, never giving out `reserved`.
    pub fn new(range: Ipv6Cidr, reserved: impl IntoIterator<Item = Ipv6Addr>) -> Self {
        let mut r: BTreeSet<Ipv6Addr> = reserved.into_iter().collect();
        r.insert(range.addr());
        Self {
            range,
            reserved: r,
            used: Mutex::new(BTreeSet::new()),
        }
    }

    /// The range pods get addresses from.
    pub fn range(&self) -> Ipv6Cidr {
        self.range
    }

    /// Mark the addresses recorded in the pod directories under `pods_dir`
    /// as used (at agent start; pods that ran here keep theirs).
    pub fn load(&self, pods_dir: &Path) {
        let Ok(entries) = std::fs::read_dir(pods_dir) else {
            return;
        };
        let Ok(mut used) = self.used.lock() else {
            return;
        };
        for e in entries.flatten() {
            if let Some(ip) = recorded(&e.path()) {
                if self.range.contains(ip) {
                    used.insert(ip);
                }
            }
        }
    }

    /// The address of the pod `uid` whose directory is `pod_dir`: the one
    /// recorded there, or a free one, recorded before it is returned.
    pub fn assign(&self, uid: &str, pod_dir: &Path) -> Result<Ipv6Addr, IpamError> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = recorded(pod_dir).filter(|ip| self.range.contains(*ip)) {
            used.insert(ip);
            return Ok(ip);
        }
        let host_bits = 128 - u32::from(self.range.prefix());
        let size: u128 = if host_bits >= 128 {
            u128::MAX
        } else {
            1u128 << host_bits
        };
        let limit = size.min(1 << 20);
        let start = u128::from(fnv1a(uid.as_bytes())) % size;
        let ip = (0..limit)
            .map(|i| (start + i) % size)
            .filter_map(|n| self.range.nth(n))
            .find(|ip| !self.reserved.contains(ip) && !used.contains(ip))
            .ok_or(IpamError::Exhausted {
                range: self.range,
                used: used.len(),
            })?;
        record(pod_dir, ip)?;
        used.insert(ip);
        Ok(ip)
    }

    /// Forget the address of a pod that is gone.
    pub fn release(&self, ip: Ipv6Addr) {
        if let Ok(mut used) = self.used.lock() {
            used.remove(&ip);
        }
    }

    /// How many addresses are in use.
    pub fn in_use(&self) -> usize {
        self.used.lock().map(|u| u.len()).unwrap_or(0)
    }
}

/// Record `ip` as the address of the pod whose directory is `pod_dir`
/// (atomically: a crash leaves the old file or the new one).
pub fn record(pod_dir: &Path, ip: Ipv6Addr) -> Result<(), IpamError> {
    let path = pod_dir.join(ADDR_FILE);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(pod_dir)?;
        let tmp = pod_dir.join(".address.tmp");
        std::fs::write(&tmp, format!("{ip}\n"))?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|source| IpamError::Record {
        path: path.clone(),
        source,
    })
}

/// The address recorded in `pod_dir`, if any.
pub fn recorded(pod_dir: &Path) -> Option<Ipv6Addr> {
    std::fs::read_to_string(pod_dir.join(ADDR_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> Ipv6Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_stable_distinct_and_survive_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let r = range("fd00:0:0:1::/64");
        let gw: Ipv6Addr = "fd00:0:0:1::1".parse().unwrap();
        let ipam = Ipam::new(r, [gw]);
        let mut seen = BTreeSet::new();
        for i in 0..200 {
            let uid = format!("uid-{i}");
            let ip = ipam.assign(&uid, &d.path().join(&uid)).unwrap();
            assert!(r.contains(ip) && ip != gw && ip != r.addr());
            assert!(seen.insert(ip), "duplicate {ip}");
            // Asking again gives the recorded address.
            assert_eq!(ipam.assign(&uid, &d.path().join(&uid)).unwrap(), ip);
        }
        let again = Ipam::new(r, [gw]);
        again.load(d.path());
        assert_eq!(again.in_use(), 200);
        let fresh = again.assign("new", &d.path().join("new")).unwrap();
        assert!(!seen.contains(&fresh));
    }

    #[test]
    fn a_small_range_fills_up_and_frees_again() {
        let d = tempfile::tempdir().unwrap();
        let r = range("fd00::/126");
        let gw: Ipv6Addr = "fd00::1".parse().unwrap();
        let ipam = Ipam::new(r, [gw]);
        let a = ipam.assign("a", &d.path().join("a")).unwrap();
        let b = ipam.assign("b", &d.path().join("b")).unwrap();
        assert_ne!(a, b);
        let e = ipam.assign("c", &d.path().join("c")).unwrap_err();
        assert!(e.to_string().contains("is full"), "{e}");
        ipam.release(a);
        assert_eq!(ipam.assign("c", &d.path().join("c")).unwrap(), a);
    }
}
