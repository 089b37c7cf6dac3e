//! What a packet capture shows of a private network: nothing of what is shared.
//!
//! In a fresh network namespace (its loopback alone: no other test's traffic), `tcpdump`
//! records `lo` to a pcap file while three peers on `127.0.0.2`–`.4`, the real binaries, run:
//! alice and bob share a file with a distinctive name whose content holds a marker string every
//! 4 KiB, and carol downloads it (verified, byte-identical). tcpdump is then stopped by its PID
//! and the pcap's raw bytes searched.
//!
//! - Keyed (the three joined `TEST_PHRASE`): the capture holds the whole transfer (more bytes
//!   than the file), but neither the file's name nor the marker.
//! - The control, the same run on an open network: the capture holds both, so the search
//!   does find them when they are there, and the keyed result means something.
//!
//! Needs root, iproute2 and tcpdump (`.ci/run` installs it); without them it prints why it is
//! skipped and passes, like the other namespace tests.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::netns::{lab_or_skip, Lab};
use testkit::prelude::*;
use testkit::process::{find_tool, wait_exit, ChildGuard};

/// The shared file's name: found nowhere else in a capture.
const NAME: &str = "Kestrel-ledger-zq7781.bin";

/// Written into the file's content every [`MARKER_EVERY`] bytes.
const MARKER: &[u8] = b"PLAINTEXT-MARKER-6b1e0c-never-on-the-wire";
const MARKER_EVERY: usize = 4096;

/// The file's size: more than one chunk's worth of markers in each of the five chunks.
const SIZE: usize = 600 * 1024;

const BUDGET: Duration = Duration::from_secs(150);

fn ip() -> PathBuf {
    find_tool("ip").unwrap_or_else(|| PathBuf::from("ip"))
}

/// tcpdump recording a namespace's `lo` into a pcap file.
struct Capture {
    child: ChildGuard,
    pcap: PathBuf,
    stderr: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -i lo` in `ns`, packet-buffered (`-U`), whole packets (`-s 0`), as root
    /// (`-Z root`: the pcap is written where the test says); returns once it captures.
    fn start(lab: &Lab, tcpdump: &Path, ns: &str, folder: &Path) -> Capture {
        let (pcap, stderr) = (folder.join("lo.pcap"), folder.join("tcpdump.stderr"));
        // `ip netns exec` execs tcpdump: the child's PID is tcpdump's own.
        let child = ChildGuard(
            Command::new(ip())
                .args(["netns", "exec", ns])
                .arg(tcpdump)
                .args(["-i", "lo", "-n", "-s", "0", "-U", "-Z", "root", "-w"])
                .arg(&pcap)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&stderr).expect("tcpdump's stderr file"))
                .spawn()
                .expect("start tcpdump"),
        );
        let mut capture = Capture {
            child,
            pcap,
            stderr,
        };
        lab.wait_until(WAIT, "tcpdump says it is listening on lo", || {
            let said = fs::read_to_string(&capture.stderr).unwrap_or_default();
            if let Ok(Some(status)) = capture.child.0.try_wait() {
                panic!("tcpdump exited ({status}): {said}");
            }
            said.contains("listening on").then_some(()).ok_or(said)
        });
        capture
    }

    /// Stops tcpdump by its PID (SIGINT: it flushes and closes the file) and returns the pcap,
    /// once it holds everything sent before: a sentinel datagram sent on `lo` after the last
    /// packet of interest is in the file (tcpdump stopped earlier would lose what the kernel
    /// still held for it).
    fn stop(mut self, lab: &Lab, ns: &str) -> Vec<u8> {
        let sentinel = format!("capture-sentinel-{}", std::process::id());
        lab.wait_until(WAIT, "tcpdump records the sentinel datagram", || {
            // Sent again at each poll: a datagram may be dropped.
            let sent = Command::new(ip())
                .args(["netns", "exec", ns, "bash", "-c"])
                .arg(format!("printf %s {sentinel} > /dev/udp/127.0.0.1/9"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let pcap = fs::read(&self.pcap).unwrap_or_default();
            contains(&pcap, sentinel.as_bytes())
                .then_some(())
                .ok_or_else(|| format!("not yet ({} bytes; sending: {sent:?})", pcap.len()))
        });
        signal(self.child.0.id(), "INT");
        let status = wait_exit(&mut self.child.0, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("tcpdump still runs 20 s after SIGINT"));
        let said = fs::read_to_string(&self.stderr).unwrap_or_default();
        eprintln!("tcpdump ({status}): {}", said.trim());
        fs::read(&self.pcap).unwrap_or_else(|e| panic!("cannot read {}: {e}", self.pcap.display()))
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// How many times `needle` occurs in `haystack`.
fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Pseudo-random bytes with [`MARKER`] every [`MARKER_EVERY`] bytes.
fn marked_content() -> Vec<u8> {
    let mut bytes = random_bytes(SIZE, 0x6b1e);
    for at in (0..SIZE - MARKER.len()).step_by(MARKER_EVERY) {
        bytes[at..at + MARKER.len()].copy_from_slice(MARKER);
    }
    bytes
}

/// One run: a fresh namespace, tcpdump on its `lo`, alice and bob sharing [`NAME`], carol
/// downloading it (on the private network of `TEST_PHRASE` when `private`). The pcap's bytes.
fn capture_of_a_download(lab: &Lab, tcpdump: &Path, private: bool) -> Vec<u8> {
    let kind = if private { "keyed" } else { "open" };
    let ns = lab.loopback_namespace();
    let net = TestNet::inside(&ns, BUDGET);
    let capture = Capture::start(lab, tcpdump, &ns, &net.folder("capture"));
    lab.log(&format!("{kind}: tcpdump captures {ns}'s lo"));

    let (alice, bob, carol) = (net.peer("alice"), net.peer("bob"), net.peer("carol"));
    let content = marked_content();
    for holder in [&alice, &bob] {
        fs::write(holder.share_dir().join(NAME), &content).expect("write the shared file");
    }
    let (digest, _) = file_digest(&alice.share_dir().join(NAME));
    for (peer, user) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
        if private {
            peer.join_network(TEST_PHRASE);
        }
        peer.start_all(user, &[]);
    }
    let started = Instant::now();
    for (holder, user) in [(&alice, "alice"), (&bob, "bob")] {
        net.wait_for_entry(&carol, holder, user, NAME, digest);
    }
    lab.log(&format!(
        "{kind}: carol lists {NAME} from alice and bob after {:.2} s",
        started.elapsed().as_secs_f64()
    ));

    let out = carol.downloader(&["get", NAME]);
    assert_success(&out, &format!("{kind}: carol's downloader get {NAME}"));
    assert_same_file(
        &alice.share_dir().join(NAME),
        &carol.downloads_dir().join(NAME),
    );
    lab.log(&format!(
        "{kind}: downloaded and verified {} bytes in {:.2} s",
        content.len(),
        started.elapsed().as_secs_f64()
    ));
    // The five chunks as alice's and bob's chunk servers logged them: on the private network,
    // each served to carol's peer ID, proven in the encrypted channel.
    let served = lab.wait_until(WAIT, "alice and bob logged the five chunks served", || {
        let events: Vec<_> = [&alice, &bob]
            .iter()
            .flat_map(|h| h.server_events())
            .filter(|e| e.name == "served" && e.get("outcome") == Some("ok"))
            .filter(|e| e.get("chunk").is_some_and(|c| c.starts_with(NAME)))
            .collect();
        let mut chunks: Vec<&str> = events.iter().filter_map(|e| e.get("chunk")).collect();
        chunks.sort_unstable();
        chunks.dedup();
        (chunks.len() == 5)
            .then(|| events.clone())
            .ok_or_else(|| format!("served so far: {chunks:?}"))
    });
    let carol_id = carol.peer_id().to_string();
    for event in &served {
        let id = event.get("id").filter(|id| *id != "-");
        if private {
            assert_eq!(id, Some(carol_id.as_str()), "{kind}: {event}");
        } else {
            assert_eq!(id, None, "{kind}: an open transfer proves no ID: {event}");
        }
    }
    for peer in [&alice, &bob, &carol] {
        peer.stop_all();
    }
    let pcap = capture.stop(lab, &ns);
    lab.log(&format!("{kind}: pcap of {} bytes", pcap.len()));
    pcap
}

#[test]
fn a_capture_of_a_keyed_download_shows_neither_the_name_nor_the_content() {
    let Some(tcpdump) = find_tool("tcpdump") else {
        eprintln!("skipping the capture test: tcpdump is not installed");
        return;
    };
    let Some(lab) = lab_or_skip("private_capture", BUDGET) else {
        return;
    };

    // The control first: on an open network, the capture shows both.
    let open = capture_of_a_download(&lab, &tcpdump, false);
    assert!(
        contains(&open, NAME.as_bytes()),
        "control: the open network's capture should hold the file name (is tcpdump capturing?)"
    );
    assert!(
        contains(&open, MARKER),
        "control: the open network's capture should hold the content's marker"
    );
    lab.log(&format!(
        "open: the capture holds the name {} times and the marker {} times",
        count(&open, NAME.as_bytes()),
        count(&open, MARKER)
    ));

    let keyed = capture_of_a_download(&lab, &tcpdump, true);
    assert!(
        keyed.len() > SIZE,
        "the keyed capture ({} bytes) should hold the whole transfer ({SIZE} bytes of file)",
        keyed.len()
    );
    assert!(
        !contains(&keyed, NAME.as_bytes()),
        "the keyed capture holds the file name {NAME:?} ({} times)",
        count(&keyed, NAME.as_bytes())
    );
    assert!(
        !contains(&keyed, MARKER),
        "the keyed capture holds the content's marker ({} times)",
        count(&keyed, MARKER)
    );
    lab.log("keyed: the capture holds neither the name nor the marker");
}
