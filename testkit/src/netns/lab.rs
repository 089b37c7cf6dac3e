//! The [`Lab`]: one test's switch namespace and bridge, the hosts' namespaces wired into it
//! (or behind a router), and the teardown that deletes every namespace it made.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::host::{Host, CHUNK_PORT};
use super::ip::{add_address, ip_binary, ip_cmd, ip_ok, run, run_prefix};
use super::subnet::Subnet;
use crate::network::Network;
use crate::node::Node;

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

    /// A new namespace (`<tag>h<n>`, like a host's) with nothing but its loopback, up: for
    /// peers on `127.0.0.x` ([`crate::loopback::TestNet::inside`]) whose traffic no other test
    /// sees, and that a capture on its `lo` records whole. Deleted with the lab.
    pub fn loopback_namespace(&self) -> String {
        let n = self.host_count.get();
        self.host_count.set(n + 1);
        let ns = format!("{}h{n}", self.tag);
        self.namespace(&ns);
        self.log(&format!("namespace {ns}: loopback only"));
        ns
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
