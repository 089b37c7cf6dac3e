//! The network-namespace implementation of the host API: real hosts made of Linux network
//! namespaces on this machine, for the multi-host tests.
//!
//! A [`Lab`] is one test's private network. It owns:
//! - a *switch* namespace holding a bridge, so that nothing changes in the machine's own network
//!   namespace (no interface, address or route is ever added there);
//! - one namespace per [`Host`], plugged into the switch by a veth pair (its end named after the
//!   host, the switch's end a bridge port), with `lo` up and one address in a private subnet;
//! - optionally a *router* namespace (`ip_forward=1`) between the switch and a host of a second
//!   subnet, which therefore shares no broadcast domain with the switch's hosts;
//! - a temporary folder per host (its peer folder).
//!
//! Every host runs the programs with their default ports (5000/udp, 5001/tcp): each namespace has
//! its own ports, as a real machine does. Programs are started through `ip netns exec <ns>
//! <binary> ...`, which enters the namespace and `exec`s the program, so the child handle is
//! the program itself and is killed by that handle, never by name.
//!
//! Names are unique to the run and the test (`p2p<pid>t<n>` plus a two-letter suffix; interface
//! names stay within Linux's 15 characters) and subnets are drawn from a private /16 checked not
//! to overlap any route of the machine's namespace. Dropping the [`Lab`] — also on panic — kills
//! every program, prints the diagnostics when the test failed, and deletes every namespace it
//! made (deleting a namespace deletes its interfaces, so the switch takes the bridge and all
//! veth pairs with it).
//!
//! The tests need root and iproute2: [`lab_or_skip`] says why when they cannot run.
//!
//! Layout: `ip` runs iproute2, `subnet` hands out the addresses, `lab` builds and tears down the
//! network, `host` starts a host's programs; this module says whether the tests can run here and
//! starts a lab when they can.

mod host;
mod ip;
mod lab;
mod subnet;

use std::fs;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub use host::{Host, ANNOUNCE_INTERVAL_SECS, ANNOUNCE_PORT, CHUNK_PORT};
pub(crate) use ip::ip_binary;
pub use lab::Lab;
pub use subnet::Subnet;

use ip::{ip_cmd, run, run_prefix};
use subnet::subnet_base;

/// Why the namespace tests cannot run here (not root, no iproute2, namespaces refused, no free
/// private subnet), or `None` when they can. Checked once per test process.
pub fn skip_reason() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON.get_or_init(find_skip_reason).clone()
}

fn find_skip_reason() -> Option<String> {
    match effective_uid() {
        Some(0) => {}
        Some(uid) => return Some(format!("not running as root (effective uid {uid})")),
        None => return Some("cannot read the effective uid from /proc/self/status".to_owned()),
    }
    let Some(ip) = ip_binary() else {
        return Some("iproute2 is not installed (no `ip` command)".to_owned());
    };
    if let Err(e) = run(Command::new(ip).arg("-V")) {
        return Some(format!("`ip -V` fails: {e}"));
    }
    // Root without the capabilities (an unprivileged container): say so instead of failing.
    let probe = format!("{}probe", run_prefix());
    if let Err(e) = ip_cmd(&["netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace: {e}"));
    }
    let veth = ip_cmd(&[
        "-n",
        &probe,
        "link",
        "add",
        "p2pprobe0",
        "type",
        "veth",
        "peer",
        "name",
        "p2pprobe1",
    ]);
    let _ = ip_cmd(&["netns", "del", &probe]);
    if let Err(e) = veth {
        return Some(format!("cannot create a veth pair in a namespace: {e}"));
    }
    if let Err(e) = subnet_base() {
        return Some(e);
    }
    None
}

/// The effective uid, from `/proc/self/status` (no libc dependency).
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Starts a lab for one test, or prints `skipping netns tests: <reason>` and returns `None`.
pub fn lab_or_skip(test: &str, budget: Duration) -> Option<Lab> {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping netns tests: {reason} ({test} did not run)");
        return None;
    }
    Some(Lab::new(test, budget))
}
