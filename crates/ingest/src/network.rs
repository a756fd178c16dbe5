//! Where a request comes from: the peer address, or — only when the peer is a configured trusted
//! proxy — the address that proxy saw (`X-Forwarded-For`, read from the right, skipping trusted
//! hops). And which addresses may send a provider's webhooks, when its sending ranges are
//! configured (`HOOKLINE_SOURCE_ALLOWLIST`).

use std::collections::HashMap;
use std::net::IpAddr;

use axum::http::HeaderMap;

/// An address range, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or a CIDR range"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0-{max}"))?
        };
        Ok(Self { net, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix_eq(&n.octets(), &a.octets(), self.prefix as usize)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(&n.octets(), &a.octets(), self.prefix as usize)
            }
            (IpAddr::V4(_), IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|a| self.contains(IpAddr::V4(a))),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: usize) -> bool {
    let (whole, rest) = (bits / 8, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// The client's address: the peer's, unless the peer is a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[Cidr]) -> IpAddr {
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|c| c.contains(ip));
    if !trusted(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .copied()
        .find(|ip| !trusted(*ip))
        .or_else(|| hops.first().copied())
        .unwrap_or(peer)
}

/// Per provider route, the ranges allowed to send (a provider not listed: any address).
#[derive(Debug, Clone, Default)]
pub struct Allowlist(HashMap<String, Vec<Cidr>>);

impl Allowlist {
    /// Parses `name=cidr` entries (several per name allowed).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut map: HashMap<String, Vec<Cidr>> = HashMap::new();
        for entry in entries.iter().filter(|e| !e.trim().is_empty()) {
            let (name, cidr) = entry
                .split_once('=')
                .ok_or_else(|| format!("entry {entry:?}: expected name=cidr"))?;
            let cidr = cidr.parse().map_err(|e| format!("entry {entry:?}: {e}"))?;
            map.entry(name.trim().to_owned()).or_default().push(cidr);
        }
        Ok(Self(map))
    }

    pub fn allows(&self, provider: &str, ip: IpAddr) -> bool {
        self.0
            .get(provider)
            .is_none_or(|ranges| ranges.iter().any(|c| c.contains(ip)))
    }

    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let c: Cidr = "192.76.120.192/27".parse().unwrap();
        assert!(c.contains(ip("192.76.120.200")));
        assert!(!c.contains(ip("192.76.120.224")));
        assert!(c.contains(ip("::ffff:192.76.120.193")));
        let one: Cidr = "10.1.2.3".parse().unwrap();
        assert!(one.contains(ip("10.1.2.3")) && !one.contains(ip("10.1.2.4")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("ten".parse::<Cidr>().is_err());
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9, 10.0.0.2".parse().unwrap(),
        );
        let proxies: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        // From an untrusted peer, the header is the client's own claim: ignored.
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &proxies),
            ip("198.51.100.1")
        );
        // From the proxy: the rightmost hop it did not add itself.
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &proxies), ip("203.0.113.9"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &proxies),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn allowlists_apply_per_provider() {
        let a = Allowlist::parse(&["p=192.0.2.0/24".into(), "p=198.51.100.7".into()]).unwrap();
        assert!(a.allows("p", ip("192.0.2.9")) && a.allows("p", ip("198.51.100.7")));
        assert!(!a.allows("p", ip("203.0.113.1")));
        assert!(
            a.allows("other", ip("203.0.113.1")),
            "an unlisted provider takes anyone"
        );
        assert!(Allowlist::parse(&["p".into()]).is_err());
        assert!(Allowlist::parse(&["p=300.1.1.1".into()]).is_err());
    }
}
