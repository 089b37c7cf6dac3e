//! Addresses: the private /16 this run takes its subnets from (checked against the machine's
//! routes, so no address of ours can pass for a real one) and the [`Subnet`]s handed out.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use super::ip::ip_cmd;

/// The private /16 the subnets are taken from: the first candidate that overlaps no route of
/// the machine's own namespace (the default route aside), so that no address of ours can be
/// mistaken for a real one even in a failure message.
pub(super) fn subnet_base() -> Result<[u8; 2], String> {
    static BASE: OnceLock<Result<[u8; 2], String>> = OnceLock::new();
    BASE.get_or_init(|| {
        let routes = ip_cmd(&["-4", "route", "show", "table", "all"])?;
        let prefixes: Vec<(u32, u32)> = routes.lines().filter_map(route_prefix).collect();
        const CANDIDATES: [[u8; 2]; 5] = [[10, 213], [10, 231], [10, 187], [172, 29], [10, 149]];
        CANDIDATES
            .into_iter()
            .find(|[a, b]| {
                let net = u32::from(Ipv4Addr::new(*a, *b, 0, 0));
                prefixes
                    .iter()
                    .all(|&(p, len)| !overlaps((net, 16), (p, len)))
            })
            .ok_or_else(|| {
                format!("every candidate test subnet overlaps a route of this machine:\n{routes}")
            })
    })
    .clone()
}

/// The destination prefix of one `ip -4 route` line; `None` for the default route.
fn route_prefix(line: &str) -> Option<(u32, u32)> {
    const TYPES: [&str; 10] = [
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "unreachable",
        "blackhole",
        "prohibit",
        "throw",
        "anycast",
        "nat",
    ];
    let mut words = line.split_whitespace();
    let mut dest = words.next()?;
    if TYPES.contains(&dest) {
        dest = words.next()?;
    }
    if dest == "default" {
        return None;
    }
    let (ip, len) = dest.split_once('/').unwrap_or((dest, "32"));
    Some((u32::from(ip.parse::<Ipv4Addr>().ok()?), len.parse().ok()?))
}

fn overlaps((a, a_len): (u32, u32), (b, b_len): (u32, u32)) -> bool {
    let len = a_len.min(b_len).min(32);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == b & mask
}

/// A /24 of this run, unique in the process: `base.<n>.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    octets: [u8; 3],
}

impl Subnet {
    pub(super) fn next() -> Subnet {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let [a, b] = subnet_base().expect("checked by skip_reason");
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % 250 + 1;
        Subnet {
            octets: [a, b, u8::try_from(n).expect("n <= 250")],
        }
    }

    /// `<subnet>.<host>`.
    pub fn addr(self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.octets;
        Ipv4Addr::new(a, b, c, host)
    }

    /// `<subnet>.0/24`.
    pub fn cidr(self) -> String {
        format!("{}/24", self.addr(0))
    }

    /// `<subnet>.255`: the directed broadcast address.
    pub fn broadcast(self) -> Ipv4Addr {
        self.addr(255)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_prefixes_and_overlaps() {
        assert_eq!(route_prefix("default via 192.0.2.1 dev eth0"), None);
        let p = |s: &str| route_prefix(s).unwrap();
        assert_eq!(
            p("192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2"),
            (u32::from(Ipv4Addr::new(192, 0, 2, 0)), 24)
        );
        assert_eq!(
            p("local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1"),
            (u32::from(Ipv4Addr::new(127, 0, 0, 1)), 32)
        );
        let net = |a, b, c, d, len| (u32::from(Ipv4Addr::new(a, b, c, d)), len);
        assert!(overlaps(net(10, 213, 0, 0, 16), net(10, 0, 0, 0, 8)));
        assert!(overlaps(net(10, 213, 0, 0, 16), net(10, 213, 7, 9, 32)));
        assert!(!overlaps(net(10, 213, 0, 0, 16), net(10, 214, 0, 0, 16)));
        assert!(!overlaps(net(10, 213, 0, 0, 16), net(192, 0, 2, 0, 24)));
    }
}
