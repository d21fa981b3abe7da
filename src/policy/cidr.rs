//! Address-prefix tables: which configured networks a client address falls in.
//!
//! One hash map per prefix length, probed from the longest length down: a lookup costs one probe
//! per distinct length in the table, whatever the number of networks.

use std::net::IpAddr;

use ipnet::IpNet;
use rustc_hash::FxHashMap;

/// Networks, each with a value.
#[derive(Debug, Clone)]
pub struct PrefixTable<T> {
    /// (prefix length, is IPv6, networks of that length keyed by their masked address)
    levels: Vec<(u8, bool, FxHashMap<u128, T>)>,
}

impl<T> Default for PrefixTable<T> {
    fn default() -> Self {
        PrefixTable { levels: Vec::new() }
    }
}

impl<T> PrefixTable<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Adds a network; a network added twice keeps the value `merge` makes of both.
    pub fn insert_with(&mut self, net: IpNet, value: T, merge: impl FnOnce(&mut T, T)) {
        let (bits, v6) = (net.prefix_len(), matches!(net, IpNet::V6(_)));
        let key = key_of(net.network(), bits);
        let at = match self.levels.iter().position(|l| l.0 == bits && l.1 == v6) {
            Some(at) => at,
            None => {
                self.levels.push((bits, v6, FxHashMap::default()));
                self.levels.sort_by_key(|l| std::cmp::Reverse(l.0));
                self.levels
                    .iter()
                    .position(|l| l.0 == bits && l.1 == v6)
                    .expect("just inserted")
            }
        };
        let map = &mut self.levels[at].2;
        match map.get_mut(&key) {
            Some(old) => merge(old, value),
            None => {
                map.insert(key, value);
            }
        }
    }

    /// The value of the longest network that holds `addr`.
    pub fn longest(&self, addr: IpAddr) -> Option<&T> {
        self.matches(addr).next()
    }

    /// Values of every network that holds `addr`, longest first.
    pub fn matches(&self, addr: IpAddr) -> impl Iterator<Item = &T> {
        let addr = canonical(addr);
        let v6 = addr.is_ipv6();
        self.levels
            .iter()
            .filter(move |l| l.1 == v6)
            .filter_map(move |(bits, _, map)| map.get(&key_of(addr, *bits)))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4 peers)
/// match IPv4 networks.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

fn key_of(addr: IpAddr, bits: u8) -> u128 {
    match addr {
        IpAddr::V4(a) => mask(u32::from(a) as u128, bits, 32),
        IpAddr::V6(a) => mask(u128::from(a), bits, 128),
    }
}

fn mask(value: u128, bits: u8, width: u8) -> u128 {
    let drop = (width - bits.min(width)) as u32;
    if drop >= 128 {
        0
    } else {
        (value >> drop) << drop
    }
}

/// Text that is neither an address nor a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not an address or a CIDR network")]
pub struct NotANetwork(pub String);

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a host network). A network inside
/// the IPv4-mapped range (`::ffff:10.0.0.0/104`, `::ffff:10.0.0.1`) is the IPv4 network it maps
/// (`10.0.0.0/8`, `10.0.0.1/32`): lookups see IPv4 clients in IPv4 form, so a network kept in
/// mapped form would never match. Every configured network (static bindings, groups' clients,
/// trusted forwarders, shared networks) is read here.
pub fn parse_net(text: &str) -> Result<IpNet, NotANetwork> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(unmapped(net.trunc()));
    }
    text.parse::<IpAddr>()
        .map(|a| IpNet::from(a.to_canonical()))
        .map_err(|_| NotANetwork(text.to_string()))
}

/// `net` in IPv4 form when it lies within `::ffff:0:0/96`.
fn unmapped(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, u32)]) -> PrefixTable<u32> {
        let mut t = PrefixTable::new();
        for &(net, v) in entries {
            t.insert_with(parse_net(net).unwrap(), v, |old, new| *old = new);
        }
        t
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table(&[("10.0.0.0/8", 1), ("10.1.2.0/24", 2), ("10.1.2.3", 3)]);
        assert_eq!(t.longest("10.1.2.3".parse().unwrap()), Some(&3));
        assert_eq!(t.longest("10.1.2.4".parse().unwrap()), Some(&2));
        assert_eq!(t.longest("10.9.9.9".parse().unwrap()), Some(&1));
        assert_eq!(t.longest("11.0.0.1".parse().unwrap()), None);
        let all: Vec<_> = t.matches("10.1.2.3".parse().unwrap()).copied().collect();
        assert_eq!(all, vec![3, 2, 1]);
    }

    #[test]
    fn v4_mapped_v6_matches_v4_networks_and_families_stay_apart() {
        let t = table(&[("192.0.2.0/24", 1), ("::/0", 9)]);
        assert_eq!(t.longest("::ffff:192.0.2.7".parse().unwrap()), Some(&1));
        assert_eq!(t.longest("2001:db8::1".parse().unwrap()), Some(&9));
        assert_eq!(t.longest("198.51.100.1".parse().unwrap()), None);
    }

    #[test]
    fn zero_length_prefix_holds_everything() {
        let t = table(&[("0.0.0.0/0", 7)]);
        assert_eq!(t.longest("203.0.113.9".parse().unwrap()), Some(&7));
    }

    #[test]
    fn parse_net_accepts_hosts_and_rejects_junk() {
        assert_eq!(parse_net("10.1.2.3").unwrap().prefix_len(), 32);
        assert_eq!(parse_net("10.1.2.3/24").unwrap().to_string(), "10.1.2.0/24");
        assert!(parse_net("10.1.2/24").is_err());
    }

    #[test]
    fn mapped_networks_are_read_as_ipv4() {
        assert_eq!(
            parse_net("::ffff:10.1.2.3").unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            parse_net("::ffff:10.1.2.3/120").unwrap().to_string(),
            "10.1.2.0/24"
        );
        assert_eq!(parse_net("::ffff:0:0/96").unwrap().to_string(), "0.0.0.0/0");
        // wider than the mapped range, or another range: IPv6 as written
        assert_eq!(parse_net("::/64").unwrap().to_string(), "::/64");
        assert_eq!(
            parse_net("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        let t = table(&[("::ffff:192.0.2.0/120", 1)]);
        assert_eq!(t.longest("192.0.2.9".parse().unwrap()), Some(&1));
        assert_eq!(t.longest("::ffff:192.0.2.9".parse().unwrap()), Some(&1));
    }
}
