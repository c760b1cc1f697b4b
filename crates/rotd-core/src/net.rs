//! Network address ranges as configuration speaks them: an address (`10.0.0.5`, `::1`) or a CIDR block
//! (`10.0.0.0/8`, `fd00::/8`). Parsed here once, so the configuration loader and the API agree on what
//! `api.trusted_proxies` means.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP address range: `addr/prefix`, with the bits past the prefix cleared. A bare address is its own
/// range (`/32` or `/128`). An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is matched as the IPv4
/// address it maps, since that is how a dual-stack listener reports IPv4 peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a range does not parse; the message names the shape expected, never more than the input's length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an ip address or a cidr block such as 10.0.0.0/8 or fd00::/8")]
pub struct IpNetError;

impl IpNet {
    /// The range's first address and prefix length.
    pub fn parts(&self) -> (IpAddr, u8) {
        (self.addr, self.prefix)
    }

    /// Whether `ip` lies in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical_ip(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(u32::from(ip), self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(u128::from(ip), self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it maps; any other address unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - u32::from(prefix)))
    }
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(prefix)))
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            None => (s, None),
            Some((a, p)) => (a, Some(p)),
        };
        let addr = canonical_ip(addr.parse::<IpAddr>().map_err(|_| IpNetError)?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only: `u8::from_str` would also take a leading `+`.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| IpNetError)?
            }
            Some(_) => return Err(IpNetError),
        };
        if prefix > max {
            return Err(IpNetError);
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(mask_v4(u32::from(a), prefix).into()),
            IpAddr::V6(a) => IpAddr::V6(mask_v6(u128::from(a), prefix).into()),
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ranges_parse_and_match() {
        let net: IpNet = "10.1.2.3/8".parse().expect("v4 block");
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains(ip("10.255.0.1")));
        assert!(net.contains(ip("::ffff:10.0.0.1")), "mapped v4 matches");
        assert!(!net.contains(ip("11.0.0.1")));
        let one: IpNet = "192.0.2.7".parse().expect("bare v4");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: IpNet = "fd00::/8".parse().expect("v6 block");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: IpNet = "0.0.0.0/0".parse().expect("everything");
        assert!(all.contains(ip("203.0.113.9")));
        let all6: IpNet = "::/0".parse().expect("everything v6");
        assert!(all6.contains(ip("2001:db8::1")));
    }

    #[test]
    fn malformed_ranges_are_refused() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "host",
            "10.0.0.0/8/8",
            "10.0.0.0/0008",
        ] {
            assert_eq!(bad.parse::<IpNet>(), Err(IpNetError), "{bad:?}");
        }
    }
}
