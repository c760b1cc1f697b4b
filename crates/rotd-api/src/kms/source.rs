//! Where a request comes from: the TCP peer, or, when the peer is one of `api.trusted_proxies`, the
//! address that proxy says it forwarded for.
//!
//! `X-Forwarded-For` is a list each proxy appends its own peer to, so only its right end can be believed:
//! the list is read right to left, skipping addresses of trusted proxies, and the first address that is
//! not one is the client. A header from a peer that is not a trusted proxy is ignored entirely (anyone can
//! send one), and so is everything left of an entry that is not an address. The source is what the
//! per-source budget counts and what the audit record's `source` shows.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use rotd_core::IpNet;

/// A request's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Source {
    /// The client's address: the peer's, or the forwarded one.
    pub ip: IpAddr,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether `ip` came from a trusted proxy's `X-Forwarded-For`.
    pub forwarded: bool,
}

impl Source {
    /// The audit record's `source`: the peer as `ip:port`, or the forwarded client address.
    pub fn audit_source(&self) -> String {
        if self.forwarded {
            self.ip.to_string()
        } else {
            self.peer.to_string()
        }
    }

    /// The audit record's `via`: the proxy a forwarded request came through.
    pub fn audit_via(&self) -> Option<String> {
        self.forwarded.then(|| self.peer.to_string())
    }
}

/// The source of a request from `peer` with `headers`.
pub(crate) fn resolve(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Source {
    let direct = Source {
        ip: rotd_core::canonical_ip(peer.ip()),
        peer,
        forwarded: false,
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(direct.ip) {
        return direct;
    }
    // Several headers are one list, in order (RFC 9110 §5.3).
    let mut entries: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            // Not ASCII: no entry of it can be read, so nothing left of it can be believed either.
            entries.clear();
            break;
        };
        entries.extend(text.split(','));
    }
    let mut source = direct;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_entry(entry.trim()) else {
            break;
        };
        source.ip = ip;
        source.forwarded = true;
        if !is_trusted(ip) {
            break;
        }
    }
    source
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (`192.0.2.1:4711`, `[2001:db8::1]:80`).
fn parse_entry(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .or_else(|_| s.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(rotd_core::canonical_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().expect("header"));
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().expect("net")).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_forwarded_address_counts_only_from_a_trusted_peer() {
        let peer: SocketAddr = "10.0.0.2:5000".parse().expect("peer");
        let h = headers(&["203.0.113.9"]);
        assert_eq!(resolve(peer, &h, &[]).ip, ip("10.0.0.2"), "no proxies configured");
        assert_eq!(
            resolve(peer, &h, &nets(&["10.9.0.0/16"])).ip,
            ip("10.0.0.2"),
            "peer not a proxy"
        );
        let s = resolve(peer, &h, &nets(&["10.0.0.0/24"]));
        assert_eq!((s.ip, s.forwarded), (ip("203.0.113.9"), true));
        assert_eq!(s.audit_via().as_deref(), Some("10.0.0.2:5000"));
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let peer: SocketAddr = "10.0.0.2:5000".parse().expect("peer");
        let trusted = nets(&["10.0.0.0/24", "fd00::/8"]);
        // The client forged the left part; the proxies appended the rest.
        let h = headers(&["1.1.1.1, 198.51.100.7", "fd00::5, 10.0.0.3"]);
        assert_eq!(resolve(peer, &h, &trusted).ip, ip("198.51.100.7"));
        // Ports and brackets are accepted; garbage stops the walk at the last address read.
        let h = headers(&["junk, [2001:db8::1]:443"]);
        assert_eq!(resolve(peer, &h, &trusted).ip, ip("2001:db8::1"));
        let h = headers(&["198.51.100.7, junk"]);
        let s = resolve(peer, &h, &trusted);
        assert_eq!((s.ip, s.forwarded), (ip("10.0.0.2"), false));
        // Every entry trusted: the left-most one reached.
        let h = headers(&["10.0.0.9, 10.0.0.3"]);
        assert_eq!(resolve(peer, &h, &trusted).ip, ip("10.0.0.9"));
        // No header: the proxy itself.
        assert_eq!(resolve(peer, &HeaderMap::new(), &trusted).ip, ip("10.0.0.2"));
    }
}
