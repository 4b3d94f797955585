//! Connection admission: client slots per IP and in total, held for a client's whole life on
//! every transport (security: R5), and the client address behind trusted proxies.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::ConfigError;

/// Why a client was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitError {
    /// `server.max_connections_per_ip` clients are open from this address.
    PerIp,
    /// `server.max_connections` clients are open.
    Total,
}

impl LimitError {
    /// A short message for the refused client.
    pub fn message(self) -> &'static str {
        match self {
            LimitError::PerIp => "too many connections from this address",
            LimitError::Total => "the server is at its connection limit",
        }
    }
}

/// Counts per address (clients, or TCP connections), dropping an address at zero.
#[derive(Debug, Default)]
pub struct PerIp(parking_lot::Mutex<HashMap<IpAddr, usize>>);

impl PerIp {
    /// Counts one more for `ip` unless it has `cap` already (`None`: no cap). `check` runs
    /// under the lock, for a cap that depends on other state: `false` refuses.
    pub fn acquire(&self, ip: IpAddr, cap: Option<usize>, check: impl FnOnce() -> bool) -> bool {
        let mut m = self.0.lock();
        let n = m.entry(ip).or_default();
        if cap.is_some_and(|c| *n >= c) || !check() {
            if *n == 0 {
                m.remove(&ip);
            }
            return false;
        }
        *n += 1;
        true
    }

    /// Gives one back.
    pub fn release(&self, ip: IpAddr) {
        let mut m = self.0.lock();
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// Client slots: a `/ws` connection or a Socket.IO (Engine.IO) session holds one from its
/// handshake to its end, whatever TCP connections it uses (a long-polling client uses several
/// over its life; an upgraded WebSocket leaves hyper's accounting).
#[derive(Debug)]
pub struct ClientSlots {
    per_ip: PerIp,
    total: AtomicUsize,
    max_per_ip: usize,
    max_total: usize,
}

/// One admitted client; dropping it gives the slot back.
#[derive(Debug)]
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
    ip: IpAddr,
}

impl ClientSlots {
    /// Slots with these caps.
    pub fn new(max_per_ip: usize, max_total: usize) -> Arc<ClientSlots> {
        Arc::new(ClientSlots { per_ip: PerIp::default(), total: AtomicUsize::new(0), max_per_ip, max_total })
    }

    /// Takes a slot for a client from `ip`.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ClientSlot, LimitError> {
        let mut total_full = false;
        let ok = self.per_ip.acquire(ip, Some(self.max_per_ip), || {
            // Under the per-address lock: the total cannot move past its cap meanwhile.
            total_full = self.total.fetch_add(1, Ordering::Relaxed) >= self.max_total;
            if total_full {
                self.total.fetch_sub(1, Ordering::Relaxed);
            }
            !total_full
        });
        match (ok, total_full) {
            (true, _) => Ok(ClientSlot { slots: self.clone(), ip }),
            (false, true) => Err(LimitError::Total),
            (false, false) => Err(LimitError::PerIp),
        }
    }

    /// Clients admitted and not yet gone.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.slots.per_ip.release(self.ip);
        self.slots.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An address or a CIDR block (`10.0.0.0/8`, `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    /// Parses `addr` or `addr/len`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, len) = match s.trim().split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (s.trim(), None),
        };
        let net: IpAddr = a.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        (len <= max).then_some(Cidr { net, len })
    }

    /// Whether `ip` is inside (an IPv4-mapped IPv6 address matches its IPv4 block).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0
}

/// The proxies whose `X-Forwarded-For` / `Forwarded` headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses `server.trusted_proxies`.
    pub fn new(list: &[String]) -> Result<TrustedProxies, ConfigError> {
        list.iter()
            .map(|s| {
                Cidr::parse(s).ok_or_else(|| ConfigError::Invalid {
                    field: "server.trusted_proxies",
                    why: format!("{s:?} is not an address or CIDR block"),
                })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address for a request from `peer`: from a trusted proxy, the nearest
    /// address in `X-Forwarded-For` (else `Forwarded: for=`) that is not itself a trusted
    /// proxy; from anyone else, `peer` (their headers are ignored).
    pub fn client_addr(&self, peer: SocketAddr, headers: &http::HeaderMap) -> SocketAddr {
        if !self.trusts(peer.ip()) {
            return peer;
        }
        let mut chain: Vec<IpAddr> = Vec::new();
        for v in headers.get_all("x-forwarded-for") {
            let Ok(v) = v.to_str() else { return peer };
            chain.extend(v.split(',').filter_map(|s| parse_node(s.trim())));
        }
        if chain.is_empty() {
            for v in headers.get_all("forwarded") {
                let Ok(v) = v.to_str() else { return peer };
                for elem in v.split(',') {
                    for pair in elem.split(';') {
                        if let Some((k, val)) = pair.trim().split_once('=') {
                            if k.trim().eq_ignore_ascii_case("for") {
                                if let Some(ip) = parse_node(val.trim().trim_matches('"')) {
                                    chain.push(ip);
                                }
                            }
                        }
                    }
                }
            }
        }
        // Walk back from the proxy nearest to us; the first address it did not add itself is
        // the client.
        let ip = chain.iter().rev().find(|ip| !self.trusts(**ip)).or(chain.first()).copied();
        ip.map_or(peer, |ip| SocketAddr::new(ip, 0))
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[').and_then(|r| r.split_once(']')).and_then(|(a, _)| a.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("192.168.1.0/23").unwrap().contains("192.168.0.7".parse().unwrap()));
        assert!(!Cidr::parse("192.168.1.0/24").unwrap().contains("192.168.0.7".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("nope"), None);
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let t = TrustedProxies::new(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 198.51.100.2, 10.1.1.1".parse().unwrap());
        let proxy: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        // The nearest untrusted hop: 198.51.100.2 (203.0.113.9 could be spoofed by it).
        assert_eq!(t.client_addr(proxy, &h).ip(), "198.51.100.2".parse::<IpAddr>().unwrap());
        // From an untrusted peer the header means nothing.
        let other: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        assert_eq!(t.client_addr(other, &h), other);
        // `Forwarded`, with a quoted IPv6 node and a port.
        let mut h = http::HeaderMap::new();
        h.insert("forwarded", r#"for="[2001:db8::7]:4711";proto=https, for=10.0.0.3"#.parse().unwrap());
        assert_eq!(t.client_addr(proxy, &h).ip(), "2001:db8::7".parse::<IpAddr>().unwrap());
        // No header: the proxy itself.
        assert_eq!(t.client_addr(proxy, &http::HeaderMap::new()), proxy);
        assert!(TrustedProxies::new(&["10.0.0.0/99".into()]).is_err());
    }

    #[test]
    fn slots_per_ip_and_total_come_back_on_drop() {
        let s = ClientSlots::new(2, 3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = s.try_acquire(a).unwrap();
        let _a2 = s.try_acquire(a).unwrap();
        assert_eq!(s.try_acquire(a).err(), Some(LimitError::PerIp));
        let _b1 = s.try_acquire(b).unwrap();
        assert_eq!(s.try_acquire(b).err(), Some(LimitError::Total));
        drop(a1);
        assert_eq!(s.total(), 2);
        assert!(s.try_acquire(a).is_ok());
    }
}
