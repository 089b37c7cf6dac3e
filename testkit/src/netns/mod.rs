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

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::network::Network;
use crate::node::Node;
use crate::ports::established_from;
use crate::process::Program;

/// Announce interval of every test announcer (`--interval`): short, so nothing waits a minute.
pub const ANNOUNCE_INTERVAL_SECS: u64 = 2;

/// The announce port (UDP) and chunk port (TCP): the programs' defaults, never given.
pub const ANNOUNCE_PORT: u16 = shared::DEFAULT_ANNOUNCE_PORT;
/// See [`ANNOUNCE_PORT`].
pub const CHUNK_PORT: u16 = shared::DEFAULT_CHUNK_PORT;

// ---------------------------------------------------------------------------------------------
// Whether the tests can run at all.

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

/// The `ip` command: on `PATH`, or in the usual sbin folders (not always on a user's `PATH`).
pub(crate) fn ip_binary() -> Option<&'static Path> {
    static IP: OnceLock<Option<PathBuf>> = OnceLock::new();
    IP.get_or_init(|| {
        let from_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        from_path
            .into_iter()
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|dir| dir.join("ip"))
            .find(|p| p.is_file())
    })
    .as_deref()
}

/// Runs a command to completion; its stdout, or an error with its status and stderr.
fn run(command: &mut Command) -> Result<String, String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `ip <args>`.
fn ip_cmd(args: &[&str]) -> Result<String, String> {
    let ip = ip_binary().ok_or("no `ip` command")?;
    run(Command::new(ip).args(args))
}

/// `ip <args>`, panicking on failure (network set-up: a failure there is a broken test).
fn ip_ok(args: &[&str]) -> String {
    ip_cmd(args).unwrap_or_else(|e| panic!("network set-up failed: {e}"))
}

/// Gives interface `iface` of namespace `ns` the address `ip/24`, with its broadcast address.
fn add_address(ns: &str, iface: &str, ip: Ipv4Addr) {
    ip_ok(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{ip}/24"),
        "brd",
        "+",
        "dev",
        iface,
    ]);
}

/// `p2p<pid>`: what every name this process makes starts with.
fn run_prefix() -> String {
    format!("p2p{}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Addresses.

/// The private /16 the subnets are taken from: the first candidate that overlaps no route of
/// the machine's own namespace (the default route aside), so that no address of ours can be
/// mistaken for a real one even in a failure message.
fn subnet_base() -> Result<[u8; 2], String> {
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
    fn next() -> Subnet {
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

// ---------------------------------------------------------------------------------------------
// The lab.

/// Starts a lab for one test, or prints `skipping netns tests: <reason>` and returns `None`.
pub fn lab_or_skip(test: &str, budget: Duration) -> Option<Lab> {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping netns tests: {reason} ({test} did not run)");
        return None;
    }
    Some(Lab::new(test, budget))
}

/// One test's network: a switch, hosts, maybe a router; torn down on drop.
pub struct Lab {
    /// `p2p<pid>t<n>`: prefix of every name of this lab.
    tag: String,
    test: String,
    root: tempfile::TempDir,
    deadline: Instant,
    started: Instant,
    /// The switch's namespace and its bridge.
    switch_ns: String,
    bridge: String,
    /// Every namespace made, in creation order.
    namespaces: RefCell<Vec<String>>,
    hosts: RefCell<Vec<Rc<Host>>>,
    /// Bridge ports made so far (they are named `<tag>s<n>`).
    ports: Cell<u8>,
    /// Hosts made so far (their namespaces are `<tag>h<n>`).
    host_count: Cell<u8>,
}

impl Network for Lab {
    fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Lab {
    /// A lab with an empty switch. Its test must finish within `budget`: every wait and every
    /// downloader run is cut at that deadline.
    ///
    /// # Panics
    /// When the switch cannot be made (after removing what was made).
    pub fn new(test: &str, budget: Duration) -> Lab {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{}t{}",
            run_prefix(),
            NEXT.fetch_add(1, Ordering::Relaxed) % 100
        );
        let lab = Lab {
            switch_ns: format!("{tag}sw"),
            bridge: format!("{tag}br"),
            tag,
            test: test.to_owned(),
            root: tempfile::Builder::new()
                .prefix("p2p-netns-")
                .tempdir()
                .expect("create temp dir"),
            deadline: Instant::now() + budget,
            started: Instant::now(),
            namespaces: RefCell::new(Vec::new()),
            hosts: RefCell::new(Vec::new()),
            ports: Cell::new(0),
            host_count: Cell::new(0),
        };
        lab.namespace(&lab.switch_ns);
        ip_ok(&[
            "-n",
            &lab.switch_ns,
            "link",
            "add",
            &lab.bridge,
            "type",
            "bridge",
        ]);
        ip_ok(&["-n", &lab.switch_ns, "link", "set", &lab.bridge, "up"]);
        eprintln!(
            "[{test}] lab {}: switch namespace {} with bridge {}",
            lab.tag, lab.switch_ns, lab.bridge
        );
        lab
    }

    /// The switch's namespace.
    pub fn switch_ns(&self) -> &str {
        &self.switch_ns
    }

    /// Seconds since the lab was made, for the timings printed by the tests.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Prints `[test +secs] message`.
    pub fn log(&self, message: &str) {
        eprintln!(
            "[{} +{:.1}s] {message}",
            self.test,
            self.elapsed().as_secs_f64()
        );
    }

    /// Creates namespace `name` (registered for deletion first) with `lo` up.
    fn namespace(&self, name: &str) {
        ip_ok(&["netns", "add", name]);
        self.namespaces.borrow_mut().push(name.to_owned());
        ip_ok(&["-n", name, "link", "set", "lo", "up"]);
    }

    /// A veth pair with one end in each namespace, created there directly (it never exists in
    /// the machine's namespace), both ends up.
    fn wire(&self, ns_a: &str, if_a: &str, ns_b: &str, if_b: &str) {
        for name in [if_a, if_b] {
            assert!(name.len() <= 15, "interface name {name:?} is too long");
        }
        ip_ok(&[
            "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b,
        ]);
        ip_ok(&["-n", ns_a, "link", "set", if_a, "up"]);
        ip_ok(&["-n", ns_b, "link", "set", if_b, "up"]);
    }

    /// Plugs interface `iface` of namespace `ns` into the switch; returns the bridge port.
    fn plug(&self, ns: &str, iface: &str) -> String {
        let n = self.ports.get();
        self.ports.set(n + 1);
        let port = format!("{}s{n}", self.tag);
        self.wire(ns, iface, &self.switch_ns, &port);
        ip_ok(&[
            "-n",
            &self.switch_ns,
            "link",
            "set",
            &port,
            "master",
            &self.bridge,
        ]);
        port
    }

    /// A new /24 for this lab.
    pub fn subnet(&self) -> Subnet {
        let subnet = Subnet::next();
        assert!(
            self.hosts.borrow().iter().all(|h| h.subnet != subnet),
            "subnet {} reused",
            subnet.cidr()
        );
        subnet
    }

    /// A new namespace `<tag>h<n>` with its peer folder; not wired yet.
    fn new_host(&self, name: &str) -> (String, String, PathBuf) {
        let n = self.host_count.get();
        self.host_count.set(n + 1);
        let ns = format!("{}h{n}", self.tag);
        self.namespace(&ns);
        let dir = self.root.path().join(name);
        // Its one interface is named like its namespace: unique in the whole machine too.
        (ns.clone(), ns, dir)
    }

    /// A host on the switch at `<subnet>.<host>/24`.
    pub fn lan_host(&self, name: &str, subnet: Subnet, host: u8) -> Rc<Host> {
        let (ns, iface, dir) = self.new_host(name);
        let port = self.plug(&ns, &iface);
        let ip = subnet.addr(host);
        add_address(&ns, &iface, ip);
        self.add_host(name, dir, ns, Some(port), ip, subnet)
    }

    /// A new subnet with one host per name, at `.1`, `.2`, … on the switch.
    pub fn lan(&self, names: &[&str]) -> (Subnet, Vec<Rc<Host>>) {
        let subnet = self.subnet();
        let hosts = names
            .iter()
            .zip(1u8..)
            .map(|(name, n)| self.lan_host(name, subnet, n))
            .collect();
        (subnet, hosts)
    }

    /// A host in a subnet of its own behind a router: the router (namespace `<tag>rt`,
    /// `ip_forward=1`) is on the switch at `<lan>.254` and at `<other>.254` on a point-to-point
    /// link to the host at `<other>.1`. Every host of `lan` made so far gets a route to the new
    /// subnet through the router, and the new host one to `lan`. No broadcast crosses the router.
    pub fn routed_host(&self, name: &str, lan: Subnet) -> Rc<Host> {
        let router = format!("{}rt", self.tag);
        self.namespace(&router);
        let router_lan = format!("{}ra", self.tag);
        let router_far = format!("{}rb", self.tag);
        self.plug(&router, &router_lan);
        let far = self.subnet();
        let (ns, iface, dir) = self.new_host(name);
        self.wire(&router, &router_far, &ns, &iface);
        for (dev, addr) in [(&router_lan, lan.addr(254)), (&router_far, far.addr(254))] {
            add_address(&router, dev, addr);
        }
        run(Command::new(ip_binary().expect("checked")).args([
            "netns",
            "exec",
            &router,
            "/bin/sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward && cat /proc/sys/net/ipv4/ip_forward",
        ]))
        .and_then(|v| {
            (v.trim() == "1")
                .then_some(())
                .ok_or(format!("ip_forward reads {v:?}"))
        })
        .unwrap_or_else(|e| panic!("cannot turn forwarding on in {router}: {e}"));
        let ip = far.addr(1);
        add_address(&ns, &iface, ip);
        ip_ok(&[
            "-n",
            &ns,
            "route",
            "add",
            &lan.cidr(),
            "via",
            &far.addr(254).to_string(),
        ]);
        for host in self.hosts.borrow().iter().filter(|h| h.subnet == lan) {
            ip_ok(&[
                "-n",
                &host.ns,
                "route",
                "add",
                &far.cidr(),
                "via",
                &lan.addr(254).to_string(),
            ]);
        }
        self.add_host(name, dir, ns, None, ip, far)
    }

    /// Registers the host of namespace `ns` (its one interface is named like it), at `ip` in
    /// `subnet`, with its peer folder `dir`.
    fn add_host(
        &self,
        name: &str,
        dir: PathBuf,
        ns: String,
        switch_port: Option<String>,
        ip: Ipv4Addr,
        subnet: Subnet,
    ) -> Rc<Host> {
        let host = Rc::new(Host {
            node: Node::new(
                name,
                dir,
                SocketAddr::from((ip, CHUNK_PORT)),
                Some(ns.clone()),
                self.deadline,
            ),
            iface: ns.clone(),
            ns,
            switch_port,
            ip,
            subnet,
        });
        self.log(&format!(
            "host {} = namespace {} ({} {}/24{})",
            host.name,
            host.ns,
            host.iface,
            host.ip,
            host.switch_port
                .as_ref()
                .map(|p| format!(", switch port {p}"))
                .unwrap_or_default()
        ));
        self.hosts.borrow_mut().push(Rc::clone(&host));
        host
    }

    /// Cuts `host`'s cable at the switch: its bridge port goes down (the host's own interface
    /// loses its carrier; packets to and from it are dropped, nothing is refused).
    pub fn cut_link(&self, host: &Host) {
        let port = host
            .switch_port
            .as_deref()
            .expect("only hosts on the switch can be cut from it");
        ip_ok(&["-n", &self.switch_ns, "link", "set", port, "down"]);
    }

    /// Each host's files, program output, logs and `tags.txt` (tails), addresses and routes.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for ns in self.namespaces.borrow().iter() {
            let addrs = ip_cmd(&["-n", ns, "-br", "addr"]).unwrap_or_else(|e| e);
            let routes = ip_cmd(&["-n", ns, "-4", "route"]).unwrap_or_else(|e| e);
            let _ = writeln!(out, "===== namespace {ns} =====\n{addrs}{routes}");
        }
        for host in self.hosts.borrow().iter() {
            let _ = writeln!(
                out,
                "===== host {} ({} in {}) : {} =====",
                host.name,
                host.ip,
                host.ns,
                host.dir.display()
            );
            out.push_str(&host.report(5000));
        }
        out
    }

    /// Namespaces of this lab that still exist.
    fn leftovers(&self) -> Vec<String> {
        let list = ip_cmd(&["netns", "list"]).unwrap_or_default();
        list.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| self.namespaces.borrow().iter().any(|n| n == name))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Programs first: a namespace lives on while a process is inside it.
        for host in self.hosts.borrow().iter() {
            host.stop_all();
        }
        if std::thread::panicking() {
            eprintln!("\n[{}] diagnostics:\n{}", self.test, self.diagnostics());
        }
        // Hosts and router first, the switch (and with it the bridge) last.
        for ns in self.namespaces.borrow().iter().rev() {
            if let Err(e) = ip_cmd(&["netns", "del", ns]) {
                eprintln!("[{}] cannot delete namespace {ns}: {e}", self.test);
            }
        }
        let left = self.leftovers();
        if !left.is_empty() {
            eprintln!("[{}] namespaces left behind: {left:?}", self.test);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hosts.

/// One host: a namespace with one interface and address, and a [`Node`] (its peer folder and
/// programs), which it derefs to.
pub struct Host {
    node: Node,
    /// Its namespace.
    pub ns: String,
    /// Its interface.
    pub iface: String,
    /// Its switch port, when it is on the switch.
    pub switch_port: Option<String>,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its subnet.
    pub subnet: Subnet,
}

impl Deref for Host {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

impl Host {
    /// `chunk-server --dir D [extra]`: default port, all addresses, sharing `served_files/`.
    pub fn start_chunk_server(&self, extra: &[&str]) {
        self.start(Program::ChunkServer, extra);
    }

    /// `announcer --dir D --username U --interval 2 [extra]`: default targets (the directed
    /// broadcast of each up interface), default ports.
    pub fn start_announcer(&self, username: &str, extra: &[&str]) {
        let interval = ANNOUNCE_INTERVAL_SECS.to_string();
        let mut args = vec!["--username", username, "--interval", &interval];
        args.extend_from_slice(extra);
        self.start(Program::Announcer, &args);
    }

    /// `listener --dir D [extra]`: default port and targets.
    pub fn start_listener(&self, extra: &[&str]) {
        self.start(Program::Listener, extra);
    }

    /// A full peer: chunk server, listener, announcer (the downloader runs as a command).
    pub fn start_all(&self, username: &str) {
        self.start_chunk_server(&[]);
        self.start_listener(&[]);
        self.start_announcer(username, &[]);
    }

    /// Established TCP connections of its chunk server (port 5001) whose remote end is `from`,
    /// read from `/proc/<pid>/net/tcp`: the table of the chunk server's own namespace.
    pub fn chunk_connections_from(&self, from: Ipv4Addr) -> usize {
        self.pid_of(Program::ChunkServer)
            .map_or(0, |pid| established_from(pid, CHUNK_PORT, from))
    }

    /// Whether its `tags.txt` has any entry whose chunk server is at `ip`; `Err` describes it.
    pub fn lists_no_host(&self, ip: Ipv4Addr) -> Result<(), String> {
        let Ok(tags) = self.tags() else {
            return Ok(()); // not written yet: lists nothing
        };
        match tags.entries.iter().find(|e| e.addr.ip() == ip) {
            None => Ok(()),
            Some(e) => Err(format!(
                "{}/tags.txt lists {} at {}:\n{tags}",
                self.name, e.content, e.addr
            )),
        }
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
