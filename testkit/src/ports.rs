//! Ports and sockets seen from outside: free ephemeral ports, and whether a program listens,
//! read from the kernel's tables (`/proc/net/*`) so that checking leaves no trace in its log.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

/// A UDP port no socket uses at the moment of the call. Found with a socket *without*
/// `SO_REUSEADDR`: the kernel may hand a port-0 `SO_REUSEADDR` socket a port another such socket
/// already holds, which would let two tests hear each other's broadcasts.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
        .and_then(|s| s.local_addr())
        .expect("bind an ephemeral UDP port")
        .port()
}

/// A TCP port free on `ip` at the moment of the call.
pub fn free_tcp_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("bind an ephemeral TCP port on {ip}: {e}"))
        .port()
}

/// Whether some socket is listening on TCP `addr`, read from `/proc/net/tcp`: a readiness check
/// that, unlike a probe connection, leaves no trace in the server's log.
pub fn tcp_listening(addr: SocketAddr) -> bool {
    listening_in_table("/proc/net/tcp", addr)
}

/// [`tcp_listening`] in the network namespace of the process `pid` (its `/proc/<pid>/net/tcp`):
/// for a program started in another namespace than the test's.
pub fn tcp_listening_in(pid: u32, addr: SocketAddr) -> bool {
    listening_in_table(&format!("/proc/{pid}/net/tcp"), addr)
}

fn listening_in_table(path: &str, addr: SocketAddr) -> bool {
    let Ok(table) = fs::read_to_string(path) else {
        return false;
    };
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
            return false;
        };
        *state == "0A"
            && proc_addr(local).is_some_and(|(ip, port)| {
                // A wildcard bind matches every IP.
                port == addr.port() && (ip.is_unspecified() || IpAddr::V4(ip) == addr.ip())
            })
    })
}

/// Whether some socket is bound to UDP `port` (on any address), read from `/proc/net/udp`.
pub fn udp_bound(port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/udp") else {
        return false;
    };
    table.lines().skip(1).any(|line| {
        line.split_whitespace()
            .nth(1)
            .and_then(|local| local.split_once(':'))
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            == Some(port)
    })
}

/// Established TCP connections in the table `/proc/<pid>/net/tcp` (the table of `pid`'s network
/// namespace) whose local port is `local_port` and whose remote end is `from`.
pub fn established_from(pid: u32, local_port: u16, from: Ipv4Addr) -> usize {
    let table = fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state)) =
                (fields.get(1), fields.get(2), fields.get(3))
            else {
                return false;
            };
            *state == "01"
                && proc_addr(local).is_some_and(|(_, port)| port == local_port)
                && proc_addr(remote).is_some_and(|(ip, _)| ip == from)
        })
        .count()
}

/// Parses a `/proc/net/tcp` address (`0100007F:1389`).
fn proc_addr(text: &str) -> Option<(Ipv4Addr, u16)> {
    let (ip_hex, port_hex) = text.split_once(':')?;
    let ip = u32::from_str_radix(ip_hex, 16).ok()?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    // The kernel prints the network-order address as a host-order integer.
    Some((Ipv4Addr::from(ip.to_ne_bytes()), port))
}
