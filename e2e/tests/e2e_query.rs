//! Issue 9, "one peer, one command": a peer answers another listener's start-up query whatever
//! order its programs were started in, and even while its own listener is not running.
//!
//! Every announcer here announces every 600 s (the longest interval there is): once its start
//! announcement has gone out (to nobody), only an answer to a query can explain a listener
//! started afterwards listing it. Each announcer's log (`-v`) also says how the query reached
//! it: `heard` (on its own socket on the broadcast address) or `passed on by our listener`
//! (through `DIR/.queries/`).

use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use shared::protocol::{Announcement, Kind, QUERY_USERNAME};
use testkit::announce::{ours_with, Receiver};
use testkit::loopback::Peer;
use testkit::prelude::*;

/// The interval of every announcer of these tests: the longest allowed.
const INTERVAL_SECS: &str = "600";

/// How long a listener may take to list a peer it can only learn of by an answer to its
/// query: generous for a loaded machine, and still nothing next to the 600 s interval.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// `announcer --bind IP --broadcast 127.255.255.255:<udp> --port <udp> --interval 600 -v`, as
/// `user`, announcing the port its folder's chunk server records (no `--chunk-port`).
fn start_announcer(net: &TestNet, peer: &Peer, user: &str) {
    let (ip, broadcast, port) = (
        peer.ip.to_string(),
        net.broadcast().to_string(),
        net.udp_port().to_string(),
    );
    peer.start(
        Program::Announcer,
        &[
            "--bind",
            &ip,
            "--username",
            user,
            "--broadcast",
            &broadcast,
            "--port",
            &port,
            "--interval",
            INTERVAL_SECS,
            "-v",
        ],
    );
}

/// `listener --port <udp> --broadcast 127.255.255.255:<udp> -v`: its start-up query stays on
/// loopback.
fn start_listener(net: &TestNet, peer: &Peer) {
    let broadcast = net.broadcast().to_string();
    peer.start_listener(&["--broadcast", &broadcast, "-v"]);
}

/// Waits until `peer`'s announcer has logged `what`.
fn wait_for_announcer_log(net: &TestNet, peer: &Peer, what: &str) {
    net.wait_until(
        WAIT,
        &format!("{}'s announcer logs {what:?}", peer.name),
        || {
            let log = peer.stderr_of(Program::Announcer);
            log.contains(what).then_some(()).ok_or(log)
        },
    );
}

/// The lines of `peer`'s announcer log about the query of `querier`.
fn answers_logged(peer: &Peer, querier: &str) -> Vec<String> {
    peer.stderr_of(Program::Announcer)
        .lines()
        .filter(|l| l.contains(&format!("the query of {querier} (")))
        .map(str::to_owned)
        .collect()
}

/// Waits until `viewer`'s tags.txt lists `holder`'s `content`, within [`ANSWER_WAIT`] of
/// `since`.
fn wait_listed(net: &TestNet, viewer: &Peer, holder: &Peer, user: &str, content: &str) {
    let (digest, _) = file_digest(&holder.share_dir().join(content));
    let started = Instant::now();
    net.wait_until(
        ANSWER_WAIT,
        &format!(
            "{}/tags.txt lists {user}'s {content} at {} (the announcer announces only every \
             {INTERVAL_SECS} s: only an answer to the query can list it)",
            viewer.name,
            holder.chunk_addr()
        ),
        || {
            let tags = viewer.tags()?;
            tags.entries
                .iter()
                .any(|e| {
                    e.user == user
                        && e.content == content
                        && e.addr == holder.chunk_addr()
                        && e.sha256 == Some(digest)
                })
                .then_some(())
                .ok_or_else(|| format!("tags.txt is:\n{tags}"))
        },
    );
    eprintln!(
        "{} listed {user} {:?} after starting to wait",
        viewer.name,
        started.elapsed()
    );
}

/// Announcer first, chunk server second, no listener at all: a listener started afterwards
/// lists the peer at once, and downloads from it.
#[test]
fn a_peer_without_a_listener_answers_a_new_listeners_query() {
    let net = TestNet::new(Duration::from_secs(90));
    let a = net.peer("a");
    let b = net.peer("b");
    let (original, _) = a.write_share("seed.bin", 100_003, 9);
    start_announcer(&net, &a, "alice");
    wait_for_announcer_log(&net, &a, "no chunk server is running");
    a.start_chunk_server(&[], &[]);
    // Its start announcement, once the server is there: to nobody.
    wait_for_announcer_log(&net, &a, "announced 5 chunks");

    start_listener(&net, &b);
    wait_listed(&net, &b, &a, "alice", "seed.bin");
    let listener_query = net.wait_until(WAIT, "alice's announcer logs its answer", || {
        let log = a.stderr_of(Program::Announcer);
        log.lines()
            .find(|l| l.contains("answered the query of") && l.contains("(heard)"))
            .map(str::to_owned)
            .ok_or(log)
    });
    eprintln!("{listener_query}");
    assert!(
        !a.dir.join(shared::QUERIES_DIR).exists(),
        "no listener ran for alice, so nothing could have passed a query on"
    );

    let out = b.downloader(&["get", "seed.bin"]);
    assert_success(&out, "bob downloads seed.bin from alice");
    assert_same_file(&original, &b.downloads_dir().join("seed.bin"));
}

/// The order the README suggests for a seed (server, announcer, then listener last), with
/// another peer's listener started before that listener: both listeners list the peer, and the
/// peer's own listener's query, which its announcer hears directly and through the query
/// file, is answered once.
#[test]
fn server_announcer_then_anothers_listener_then_its_own_listener() {
    let net = TestNet::new(Duration::from_secs(90));
    let a = net.peer("a");
    let b = net.peer("b");
    a.write_share("order.txt", 5_000, 3);
    a.start_chunk_server(&[], &[]);
    start_announcer(&net, &a, "alice");
    wait_for_announcer_log(&net, &a, "announced 5 chunks");

    start_listener(&net, &b);
    wait_listed(&net, &b, &a, "alice", "order.txt");

    start_listener(&net, &a);
    wait_listed(&net, &a, &a, "alice", "order.txt");
    // Alice's listener passed on what it heard (its own query among them) and the announcer
    // took the file away.
    net.wait_until(WAIT, "alice's query folder is emptied", || {
        let left: Vec<_> = std::fs::read_dir(a.dir.join(shared::QUERIES_DIR))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    });
    let log = a.stderr_of(Program::Announcer);
    assert!(
        log.contains("(passed on by our listener)"),
        "alice's announcer never got a query from her listener:\n{log}"
    );
}

/// A query a peer's announcer hears itself and through its listener gets one answer, per
/// query round (a querier is answered at most once per `shared::QUERY_ANSWER_GAP`).
#[test]
fn a_query_heard_both_ways_is_answered_once_per_round() {
    let net = TestNet::new(Duration::from_secs(90));
    let a = net.peer("a");
    a.write_share("once.bin", 2_000, 4);
    a.start_chunk_server(&[], &[]);
    start_listener(&net, &a);
    start_announcer(&net, &a, "alice");
    // Alice's listener heard her announcer: both run, and the start announcement is out.
    wait_listed(&net, &a, &a, "alice", "once.bin");

    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the querier");
    socket.set_broadcast(true).expect("allow broadcast");
    let querier = Receiver::with_socket(socket);
    let me = querier.addr().to_string();
    let query = ours_with(QUERY_USERNAME, 0, 60, &[], None, Kind::Query).encode();
    for round in 1..=2 {
        querier
            .socket()
            .send_to(&query, net.broadcast())
            .expect("send the query");
        // The first answer, then long enough for a second one through the query file (the
        // announcer looks every 100 ms), but less than the gap after which it may answer again.
        let answer = first_from(&querier, a.ip.into(), ANSWER_WAIT)
            .unwrap_or_else(|| panic!("round {round}: no answer"));
        let more = all_from(&querier, a.ip.into(), Duration::from_millis(900));
        assert_eq!(answer.username, "alice");
        assert_eq!(answer.files.len(), 5, "{answer:?}");
        assert!(
            more.is_empty(),
            "round {round}: answered more than once: {more:?}\n{}",
            answers_logged(&a, &me).join("\n")
        );
        net.wait_until(
            WAIT,
            &format!("round {round}: alice's announcer answered {me} once and skipped the repeat"),
            || {
                let lines = answers_logged(&a, &me);
                let answered = lines
                    .iter()
                    .filter(|l| l.contains("answered the query"))
                    .count();
                let repeats = lines
                    .iter()
                    .filter(|l| l.contains("answered already"))
                    .count();
                (answered == round && repeats >= round)
                    .then_some(())
                    .ok_or(lines.join("\n"))
            },
        );
        // The next round starts after the gap.
        std::thread::sleep(shared::QUERY_ANSWER_GAP.saturating_sub(Duration::from_millis(800)));
    }
    let listener_log = a.stderr_of(Program::Listener);
    assert!(
        listener_log.contains(&format!("asked our announcer to answer {me}")),
        "alice's listener never passed the query on:\n{listener_log}"
    );
}

/// The first announcement `querier` receives from `ip` within `timeout`.
fn first_from(querier: &Receiver, ip: IpAddr, timeout: Duration) -> Option<Announcement> {
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match querier.next(left) {
            Some(r) if r.from.ip() == ip => return Some(r.announcement),
            Some(_) => {}
            None => return None,
        }
    }
    None
}

/// Every announcement `querier` receives from `ip` for `period`.
fn all_from(querier: &Receiver, ip: IpAddr, period: Duration) -> Vec<Announcement> {
    let deadline = Instant::now() + period;
    std::iter::from_fn(|| {
        first_from(
            querier,
            ip,
            deadline.checked_duration_since(Instant::now())?,
        )
    })
    .collect()
}
