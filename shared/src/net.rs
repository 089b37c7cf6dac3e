//! Socket set-up shared by the programs: reusable UDP ports, broadcast targets, addresses.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// The receive buffer asked for on every UDP socket (`SO_RCVBUF`; the kernel caps it at
/// `net.core.rmem_max`). A peer announces its whole store in one burst each interval: a shared
/// folder of a few hundred files is a hundred datagrams or more, and with the usual 208 KiB
/// default a listener that is busy for a moment (writing `tags.txt`, a loaded CPU) lost the tail
/// of the burst every time, so the last contents expired (measured: 14 of 200 files of a tree).
pub const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// Binds a UDP socket with `SO_REUSEADDR`, so several listeners on one host (ours and legacy
/// ones) can share the announce port; each receives every broadcast. Its receive buffer is
/// [`UDP_RECEIVE_BUFFER`] where the kernel allows it.
///
/// # Errors
/// When the socket cannot be created or bound.
pub fn bind_udp_shared(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    // A smaller buffer than asked for is still a working socket.
    let _ = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The directed broadcast address of every up, non-loopback IPv4 interface, at `port`. Falls
/// back to the limited broadcast 255.255.255.255 when there is none.
pub fn broadcast_targets(port: u16) -> Vec<SocketAddr> {
    let mut targets: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|iface| iface.is_oper_up() && !iface.is_loopback())
        .filter_map(|iface| match iface.addr {
            if_addrs::IfAddr::V4(v4) => Some(
                v4.broadcast
                    .unwrap_or_else(|| directed_broadcast(v4.ip, v4.netmask)),
            ),
            if_addrs::IfAddr::V6(_) => None,
        })
        .map(|ip| SocketAddr::new(IpAddr::V4(ip), port))
        .collect();
    targets.sort();
    targets.dedup();
    if targets.is_empty() {
        targets.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::BROADCAST), port));
    }
    targets
}

/// The broadcast addresses this host receives on: the directed broadcast address of every up
/// IPv4 interface, loopback included (`127.255.255.255`), and the limited broadcast
/// 255.255.255.255. An address that is also an interface's own (a /31 or /32 network) is left
/// out: a socket bound there would take that address's unicast traffic too.
pub fn local_broadcast_addresses() -> Vec<Ipv4Addr> {
    let v4: Vec<(Ipv4Addr, Ipv4Addr)> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(if_addrs::Interface::is_oper_up)
        .filter_map(|iface| match iface.addr {
            if_addrs::IfAddr::V4(v4) => Some((
                v4.ip,
                v4.broadcast
                    .unwrap_or_else(|| directed_broadcast(v4.ip, v4.netmask)),
            )),
            if_addrs::IfAddr::V6(_) => None,
        })
        .collect();
    let mut addresses: Vec<Ipv4Addr> = v4
        .iter()
        .map(|(_, broadcast)| *broadcast)
        .filter(|b| !v4.iter().any(|(ip, _)| ip == b))
        .chain([Ipv4Addr::BROADCAST])
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

/// The directed broadcast address of the network `ip`/`netmask`.
pub fn directed_broadcast(ip: Ipv4Addr, netmask: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) | !u32::from(netmask))
}

/// Parses `HOST[:PORT]` (an IP or a host name), using `default_port` when none is given.
///
/// # Errors
/// A message naming the address when it does not parse or resolve.
pub fn parse_host_port(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let with_port = if text
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        text.to_owned()
    } else {
        format!("{text}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text:?}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{text:?} has no IPv4 address"))
}

/// This host's name, when it can be read and is valid UTF-8.
pub fn host_name() -> Option<String> {
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directed_broadcast_of_common_networks() {
        let b = |ip: &str, mask: &str| {
            directed_broadcast(ip.parse().unwrap(), mask.parse().unwrap()).to_string()
        };
        assert_eq!(b("192.168.1.17", "255.255.255.0"), "192.168.1.255");
        assert_eq!(b("10.0.3.4", "255.255.0.0"), "10.0.255.255");
        assert_eq!(b("172.17.0.2", "255.255.240.0"), "172.17.15.255");
    }

    #[test]
    fn loopback_and_limited_broadcast_are_local_broadcast_addresses() {
        let local = local_broadcast_addresses();
        assert!(
            local.contains(&Ipv4Addr::new(127, 255, 255, 255)),
            "{local:?}"
        );
        assert!(local.contains(&Ipv4Addr::BROADCAST), "{local:?}");
        assert!(!local.contains(&Ipv4Addr::LOCALHOST), "{local:?}");
    }

    /// Why the announcer binds its query sockets to broadcast addresses only: on Linux a
    /// socket bound to a unicast address hears no broadcast, and of several sockets sharing a
    /// port the last one bound takes all its unicast datagrams (a listener's included).
    #[test]
    fn a_socket_bound_to_the_broadcast_address_hears_broadcasts_but_takes_no_unicast() {
        let first = bind_udp_shared("0.0.0.0:0".parse().unwrap()).unwrap();
        let port = first.local_addr().unwrap().port();
        let broadcast = SocketAddr::from(([127, 255, 255, 255], port));
        let on_broadcast = bind_udp_shared(broadcast).unwrap();
        for s in [&first, &on_broadcast] {
            s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
                .unwrap();
        }
        let sender = bind_udp_shared("127.0.0.1:0".parse().unwrap()).unwrap();
        sender.send_to(b"unicast", ("127.0.0.1", port)).unwrap();
        sender.send_to(b"broadcast", broadcast).unwrap();
        let drain = |s: &UdpSocket| {
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            got
        };
        assert_eq!(drain(&first), ["unicast", "broadcast"]);
        assert_eq!(drain(&on_broadcast), ["broadcast"]);
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(
            parse_host_port("127.0.0.2", 5000).unwrap(),
            "127.0.0.2:5000".parse().unwrap()
        );
        assert_eq!(
            parse_host_port("127.255.255.255:6000", 5000).unwrap(),
            "127.255.255.255:6000".parse().unwrap()
        );
        assert_eq!(parse_host_port("localhost", 7).unwrap().port(), 7);
        assert!(parse_host_port("no such host.invalid", 7).is_err());
    }

    #[test]
    fn two_sockets_share_a_port_and_both_hear_a_broadcast() {
        let first = bind_udp_shared("0.0.0.0:0".parse().unwrap()).unwrap();
        let port = first.local_addr().unwrap().port();
        let second = bind_udp_shared(SocketAddr::from(([0, 0, 0, 0], port))).unwrap();
        for s in [&first, &second] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
        }
        let sender = bind_udp_shared("127.0.0.1:0".parse().unwrap()).unwrap();
        sender
            .send_to(b"hi", SocketAddr::from(([127, 255, 255, 255], port)))
            .unwrap();
        let mut buf = [0u8; 8];
        for s in [&first, &second] {
            let (n, from) = s.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hi");
            assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
    }
}
