//! Query files: how a listener asks its own peer's announcer to answer a query.
//!
//! A starting listener broadcasts a `query` datagram ([`Kind::Query`]) from an ephemeral UDP
//! port. The datagram reaches the *listeners* of the other peers, which own the announce port;
//! but the announcement it asks for is the announcer's to send. The two programs of one peer
//! coordinate through the peer folder, like everything else: the listener creates an empty file
//! `DIR/.queries/<ip>_<port>` named after the query's source address, and the announcer, which
//! polls that folder, sends its whole announcement by unicast to that address and deletes the
//! file.
//!
//! This module owns only the file names, so both programs agree on them; creating, polling and
//! deleting the files is each program's business.
//!
//! # Format
//! ```text
//! DIR/.queries/192.168.1.17_40321        IPv4 source 192.168.1.17, port 40321
//! DIR/.queries/fe80--1_40321             IPv6 source fe80::1 (':' is written '-')
//! ```
//!
//! [`Kind::Query`]: crate::protocol::Kind::Query

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The file name that asks for an answer to `addr`. IPv4-mapped IPv6 addresses are written as
/// plain IPv4, and a port of 0 (which cannot be answered) gives a name that
/// [`parse_query_file_name`] rejects.
pub fn query_file_name(addr: SocketAddr) -> String {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => format!("{ip}_{}", addr.port()),
        IpAddr::V6(ip) => format!("{}_{}", ip.to_string().replace(':', "-"), addr.port()),
    }
}

/// The address a query file asks an answer for; `None` for any name [`query_file_name`] would
/// not have produced (so stray files, temporary files and hostile names are never answered).
pub fn parse_query_file_name(name: &str) -> Option<SocketAddr> {
    let (ip_text, port_text) = name.rsplit_once('_')?;
    let port: u16 = port_text.parse().ok()?;
    if port == 0 {
        return None;
    }
    let ip = if ip_text.contains('-') {
        IpAddr::V6(ip_text.replace('-', ":").parse::<Ipv6Addr>().ok()?)
    } else {
        IpAddr::V4(ip_text.parse::<Ipv4Addr>().ok()?)
    };
    let addr = SocketAddr::new(ip, port);
    // Only the canonical spelling: no "+80", no leading zeros, no mapped IPv4 in IPv6 form.
    (query_file_name(addr) == name).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for text in [
            "127.0.0.1:40321",
            "192.168.1.17:1",
            "10.255.255.255:65535",
            "[fe80::1]:5000",
            "[2001:db8::42:1]:123",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let name = query_file_name(addr);
            assert!(!name.contains(['/', ':', '\\']), "{name}");
            assert_eq!(parse_query_file_name(&name), Some(addr), "{name}");
        }
        assert_eq!(
            query_file_name("192.168.1.17:40321".parse().unwrap()),
            "192.168.1.17_40321"
        );
        assert_eq!(
            query_file_name("[fe80::1]:40321".parse().unwrap()),
            "fe80--1_40321"
        );
    }

    #[test]
    fn mapped_ipv4_is_written_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.2]:7000".parse().unwrap();
        assert_eq!(query_file_name(mapped), "127.0.0.2_7000");
        assert_eq!(
            parse_query_file_name("127.0.0.2_7000"),
            Some("127.0.0.2:7000".parse().unwrap())
        );
    }

    #[test]
    fn anything_else_is_rejected() {
        for name in [
            "",
            "_",
            "127.0.0.1",
            "127.0.0.1_",
            "_5000",
            "127.0.0.1_0",
            "127.0.0.1_65536",
            "127.0.0.1_+80",
            "127.0.0.1_080",
            "127.0.0.01_80",
            "127.0.0.1_80_80",
            "127.0.0.1:80",
            "localhost_80",
            ".127.0.0.1_80.tmp",
            "127.0.0.1_80 ",
            "--ffff-127.0.0.1_80",
            "fe80::1_80",
            "FE80--1_80",
            "../../etc/passwd_1",
        ] {
            assert_eq!(parse_query_file_name(name), None, "{name:?}");
        }
    }
}
