//! Harness for the multi-host tests: real hosts made of Linux network namespaces on this machine.
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
//! <binary> ...`, which enters the namespace and `exec`s the program, so the [`Child`] handle is
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
#![allow(dead_code)] // the test file uses most, not all, of the harness

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shared::chunk::ChunkSet;
use shared::digest::Digest;
use shared::events::Event;
use shared::tags::{TagEntry, TagsIndex};

// The helpers the loopback e2e harness already has are reused, not copied.
pub use crate::support::{
    assert_same_file, assert_success, describe_output, printed_path, read_events, show_events,
    wait_until, write_random_file, Program, WAIT,
};
use crate::support::{kill_and_reap, list_files, tail};

/// How often every wait polls its condition.
pub const POLL: Duration = Duration::from_millis(50);

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
fn ip_binary() -> Option<&'static Path> {
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
        fs::create_dir_all(dir.join(shared::DEFAULT_SHARE_DIR)).expect("create served_files");
        // Its one interface is named like its namespace: unique in the whole machine too.
        (ns.clone(), ns, dir)
    }

    /// A host on the switch at `<subnet>.<host>/24`.
    pub fn lan_host(&self, name: &str, subnet: Subnet, host: u8) -> Rc<Host> {
        let (ns, iface, dir) = self.new_host(name);
        let port = self.plug(&ns, &iface);
        let ip = subnet.addr(host);
        ip_ok(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "brd",
            "+",
            "dev",
            &iface,
        ]);
        self.add_host(Host::new(
            name,
            ns,
            iface,
            Some(port),
            ip,
            subnet,
            dir,
            self.deadline,
        ))
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
            ip_ok(&[
                "-n",
                &router,
                "addr",
                "add",
                &format!("{addr}/24"),
                "brd",
                "+",
                "dev",
                dev,
            ]);
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
        ip_ok(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "brd",
            "+",
            "dev",
            &iface,
        ]);
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
        self.add_host(Host::new(
            name,
            ns,
            iface,
            None,
            ip,
            far,
            dir,
            self.deadline,
        ))
    }

    fn add_host(&self, host: Host) -> Rc<Host> {
        let host = Rc::new(host);
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

    /// Polls `cond` every [`POLL`] until it returns `Ok`, for at most `timeout` (and never past
    /// the test's deadline). `Err` carries a description of what was seen instead.
    ///
    /// # Panics
    /// On timeout, with `what` and the last thing `cond` saw.
    pub fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl FnMut() -> Result<T, String>,
    ) -> T {
        wait_until((Instant::now() + timeout).min(self.deadline), what, cond)
    }

    /// Checks `cond` every [`POLL`] for `period` (never past the deadline): it must hold all
    /// along.
    ///
    /// # Panics
    /// The first time it does not, with `what` and what `cond` saw.
    pub fn holds_for(
        &self,
        period: Duration,
        what: &str,
        mut cond: impl FnMut() -> Result<(), String>,
    ) {
        let end = (Instant::now() + period).min(self.deadline);
        loop {
            if let Err(seen) = cond() {
                panic!("expected {what} all along, but: {seen}");
            }
            if Instant::now() >= end {
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until `viewer`'s `tags.txt` lists `user` with all five chunks of `content` at
    /// `holder`'s chunk server (its own IP, port 5001), identified by `sha256`.
    pub fn wait_for_entry(
        &self,
        viewer: &Host,
        holder: &Host,
        user: &str,
        content: &str,
        sha256: Digest,
    ) -> TagEntry {
        let addr = holder.chunk_addr();
        self.wait_until(
            WAIT,
            &format!(
                "{}/tags.txt lists user {user} at {addr} with chunks 12345 of {content:?} \
                 (sha256 {sha256})",
                viewer.name
            ),
            || {
                let tags = viewer.tags()?;
                tags.entries
                    .iter()
                    .find(|e| {
                        e.user == user
                            && e.addr == addr
                            && e.content == content
                            && e.chunks == ChunkSet::ALL
                            && e.sha256 == Some(sha256)
                    })
                    .cloned()
                    .ok_or_else(|| format!("tags.txt is:\n{tags}"))
            },
        )
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
            let mut files = Vec::new();
            list_files(&host.dir, &mut files);
            for (path, len) in &files {
                let rel = path.strip_prefix(&host.dir).unwrap_or(path);
                let _ = writeln!(out, "  {:>12}  {}", len, rel.display());
            }
            for (path, _) in &files {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let wanted = name.ends_with(".stderr")
                    || name.ends_with(".stdout")
                    || name.ends_with(".log")
                    || name == shared::TAGS_FILE;
                if wanted && path.parent() == Some(host.dir.as_path()) {
                    let _ = writeln!(out, "----- {name} (tail) -----\n{}", tail(path, 5000));
                }
            }
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

/// One host: a namespace with one interface and address, a peer folder, its programs.
pub struct Host {
    /// Name of the host (and of its folder).
    pub name: String,
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
    /// Its peer folder.
    pub dir: PathBuf,
    deadline: Instant,
    /// Programs started and not yet stopped; killed and reaped by [`Lab`]'s drop.
    children: RefCell<Vec<(Program, Child)>>,
    /// Counter naming the output files of successive downloader runs.
    runs: Cell<u32>,
}

impl Host {
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &str,
        ns: String,
        iface: String,
        switch_port: Option<String>,
        ip: Ipv4Addr,
        subnet: Subnet,
        dir: PathBuf,
        deadline: Instant,
    ) -> Host {
        Host {
            name: name.to_owned(),
            ns,
            iface,
            switch_port,
            ip,
            subnet,
            dir,
            deadline,
            children: RefCell::new(Vec::new()),
            runs: Cell::new(0),
        }
    }

    /// Where its chunk server answers (port 5001 on its address).
    pub fn chunk_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, CHUNK_PORT))
    }

    /// `served_files/`.
    pub fn share_dir(&self) -> PathBuf {
        self.dir.join(shared::DEFAULT_SHARE_DIR)
    }

    /// `temp/`.
    pub fn temp_dir(&self) -> PathBuf {
        self.dir.join(shared::TEMP_DIR)
    }

    /// Writes `served_files/<name>` with `size` pseudo-random bytes from `seed`.
    pub fn write_share(&self, name: &str, size: u64, seed: u64) -> (PathBuf, Digest) {
        let path = self.share_dir().join(name);
        let digest = write_random_file(&path, size, seed);
        (path, digest)
    }

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

    /// `ip netns exec <ns> <program> --dir D <args>`, detached from stdin, its stdout and stderr
    /// appended to `<program>.stdout` / `<program>.stderr` in the peer folder.
    fn command(&self, program: Program, args: &[&str], stdout: File, stderr: File) -> Command {
        let mut command = Command::new(ip_binary().expect("checked by skip_reason"));
        command
            .args(["netns", "exec", &self.ns])
            .arg(program.path())
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        command
    }

    fn start(&self, program: Program, args: &[&str]) {
        let stdout = self.append(&format!("{}.stdout", program.name()));
        let stderr = self.append(&format!("{}.stderr", program.name()));
        let child = self
            .command(program, args, stdout, stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} on {}: {e}", program.name(), self.name));
        self.children.borrow_mut().push((program, child));
    }

    fn append(&self, name: &str) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))
            .unwrap_or_else(|e| panic!("cannot open {name}: {e}"))
    }

    /// Kills (SIGKILL, by its handle) and reaps every running instance of `program`.
    pub fn stop(&self, program: Program) {
        let mut children = self.children.borrow_mut();
        let (stopping, kept) = std::mem::take(&mut *children)
            .into_iter()
            .partition(|(p, _)| *p == program);
        *children = kept;
        for (_, mut child) in stopping {
            let _ = kill_and_reap(&mut child);
        }
    }

    /// Kills every program of this host.
    pub fn stop_all(&self) {
        for (_, mut child) in std::mem::take(&mut *self.children.borrow_mut()) {
            let _ = kill_and_reap(&mut child);
        }
    }

    /// The process id of the running `program`.
    pub fn pid_of(&self, program: Program) -> Option<u32> {
        self.children
            .borrow()
            .iter()
            .find(|(p, _)| *p == program)
            .map(|(_, c)| c.id())
    }

    /// `Ok` while every program started is still running; else which one exited, and its stderr.
    pub fn check_running(&self) -> Result<(), String> {
        for (program, child) in self.children.borrow_mut().iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "{} of {} exited: {status}; stderr:\n{}",
                    program.name(),
                    self.name,
                    tail(&self.dir.join(format!("{}.stderr", program.name())), 4000)
                ));
            }
        }
        Ok(())
    }

    /// Established TCP connections of its chunk server (port 5001) whose remote end is `from`,
    /// read from `/proc/<pid>/net/tcp`: the table of the chunk server's own namespace.
    pub fn chunk_connections_from(&self, from: Ipv4Addr) -> usize {
        let Some(pid) = self.pid_of(Program::ChunkServer) else {
            return 0;
        };
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
                    && proc_addr(local).is_some_and(|(_, port)| port == CHUNK_PORT)
                    && proc_addr(remote).is_some_and(|(ip, _)| ip == from)
            })
            .count()
    }

    /// Starts `downloader --dir D <args>` in the host's namespace without waiting; its output
    /// goes to numbered files in the peer folder.
    pub fn spawn_downloader(&self, args: &[&str]) -> RunningDownloader {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let stdout_path = self.dir.join(format!("downloader-{n}.stdout"));
        let stderr_path = self.dir.join(format!("downloader-{n}.stderr"));
        let child = self
            .command(
                Program::Downloader,
                args,
                File::create(&stdout_path).expect("create stdout file"),
                File::create(&stderr_path).expect("create stderr file"),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start downloader on {}: {e}", self.name));
        RunningDownloader {
            command: format!("downloader (on {}) {}", self.name, args.join(" ")),
            child,
            stdout_path,
            stderr_path,
            deadline: self.deadline,
            started: Instant::now(),
        }
    }

    /// Its `tags.txt`.
    pub fn tags(&self) -> Result<TagsIndex, String> {
        TagsIndex::load(&self.dir.join(shared::TAGS_FILE)).map_err(|e| e.to_string())
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

    /// The events of `server.log`.
    pub fn server_events(&self) -> Vec<Event> {
        read_events(&self.dir.join(shared::SERVER_LOG))
    }

    /// The events of `client.log`.
    pub fn client_events(&self) -> Vec<Event> {
        read_events(&self.dir.join(shared::CLIENT_LOG))
    }

    /// The text of `<program>.stderr`.
    pub fn stderr_of(&self, program: Program) -> String {
        fs::read_to_string(self.dir.join(format!("{}.stderr", program.name()))).unwrap_or_default()
    }

    /// Bytes in the downloader's part files (`temp/.incoming/*.part`).
    pub fn incoming_bytes(&self) -> u64 {
        fs::read_dir(self.temp_dir().join(".incoming"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
                    .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Parses a `/proc/net/tcp` address (`0100007F:1389`).
fn proc_addr(text: &str) -> Option<(Ipv4Addr, u16)> {
    let (ip_hex, port_hex) = text.split_once(':')?;
    let ip = u32::from_str_radix(ip_hex, 16).ok()?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    // The kernel prints the network-order address as a host-order integer.
    Some((Ipv4Addr::from(ip.to_ne_bytes()), port))
}

/// A downloader started in the background; killed on drop if still running.
pub struct RunningDownloader {
    command: String,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    deadline: Instant,
    started: Instant,
}

impl RunningDownloader {
    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How long it has been running.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for it to exit, for at most `timeout` (and never past the test's deadline).
    ///
    /// # Panics
    /// On timeout, after killing it, with what it printed.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = (Instant::now() + timeout).min(self.deadline);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let status = kill_and_reap(&mut self.child)
                        .unwrap_or_else(|e| panic!("cannot reap `{}`: {e}", self.command));
                    panic!(
                        "`{}` did not finish within {timeout:?}; killed it.\n{}",
                        self.command,
                        describe_output(&self.read_output(status))
                    );
                }
                Ok(None) => std::thread::sleep(POLL),
                Err(e) => panic!("cannot wait for `{}`: {e}", self.command),
            }
        };
        self.read_output(status)
    }

    fn read_output(&self, status: ExitStatus) -> Output {
        Output {
            status,
            stdout: fs::read(&self.stdout_path).unwrap_or_default(),
            stderr: fs::read(&self.stderr_path).unwrap_or_default(),
        }
    }
}

impl Drop for RunningDownloader {
    fn drop(&mut self) {
        let _ = kill_and_reap(&mut self.child);
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers (after tests/support/mod.rs).

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
