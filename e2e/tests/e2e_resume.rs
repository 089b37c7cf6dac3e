//! Crashes and contention at the process level: a downloader killed with SIGKILL resumes where
//! its bytes on disk end, never refetching a complete chunk and never leaving a partial file in
//! `downloads/`; two downloaders of one content in one peer folder do not both run; a full disk
//! fails cleanly; a chunk server killed while hashing a shared file hashes it again on restart
//! and leaves nothing behind (nor do older versions' `.split` files stay).

use std::fs;
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use shared::chunk::chunk_ranges;
use shared::events::Event;
use testkit::prelude::*;

// ---------------------------------------------------------------------------------------------
// A downloader killed with SIGKILL, then run again
// ---------------------------------------------------------------------------------------------

/// 10 MiB: five chunks of 2 MiB.
const RESUME_SIZE: u64 = 10 << 20;
const RESUME_CONTENT: &str = "film.bin";
/// 1 MiB/s per connection and two connections at a time: chunks arrive two by two, 2 s each,
/// so that there is a moment when some chunks are complete and others are mid-way.
const RESUME_RATE: &str = "1048576";
const RESUME_CONNECTIONS: &str = "2";

/// When to kill the downloader.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// As soon as the first `.part` file exists.
    FirstPart,
    /// Once at least one chunk is complete in `temp/` and another has bytes in its `.part` file
    /// (but is not near its end, so that the kill cannot fall between the server's last write
    /// and the downloader's reading it).
    MidChunks,
}

/// What the downloader's chunk store holds of the content.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoreState {
    /// `temp/<content>_<i>` exists (only a verified chunk is renamed there), or the record of
    /// the file received in place counts the whole chunk.
    complete: [bool; 5],
    /// Size of `temp/.incoming/<content>_<i>.part`, when it exists, or the bytes the record
    /// counts of a chunk under way.
    part: [Option<u64>; 5],
}

impl StoreState {
    /// Chunk and part files, or the record of the file the content is received into in place
    /// (whose counts are the bytes of each chunk on disk).
    fn read(peer: &Peer, content: &str) -> StoreState {
        let temp = peer.temp_dir();
        let lens = chunk_ranges(RESUME_SIZE).map(|r| r.len());
        let record = testkit::files::receiving_record(&temp, content);
        StoreState {
            complete: std::array::from_fn(|i| {
                temp.join(format!("{content}_{}", i + 1)).is_file()
                    || record.is_some_and(|r| r[i] == lens[i])
            }),
            part: std::array::from_fn(|i| {
                let part = temp
                    .join(".incoming")
                    .join(format!("{content}_{}.part", i + 1));
                fs::metadata(part)
                    .ok()
                    .map(|m| m.len())
                    .or(record.map(|r| r[i]).filter(|&n| n > 0 && n < lens[i]))
            }),
        }
    }

    /// Bytes of an incomplete chunk already on disk (0 when none), by chunk position.
    fn resumable(&self, i: usize) -> u64 {
        if self.complete[i] {
            0
        } else {
            self.part[i].unwrap_or(0)
        }
    }

    fn reached(&self, point: KillPoint, lens: &[u64; 5]) -> bool {
        match point {
            KillPoint::FirstPart => self.part.iter().any(Option::is_some),
            KillPoint::MidChunks => {
                let some_complete = self.complete.iter().any(|&c| c);
                let in_flight: Vec<u64> = (0..5)
                    .filter(|&i| !self.complete[i])
                    .filter_map(|i| self.part[i])
                    .collect();
                let some_mid_way = (0..5).any(|i| !self.complete[i] && self.resumable(i) > 0);
                let none_near_end = (0..5)
                    .filter(|&i| !self.complete[i])
                    .all(|i| self.resumable(i) < lens[i] * 3 / 4);
                some_complete && !in_flight.is_empty() && some_mid_way && none_near_end
            }
        }
    }
}

/// Files in `downloads/` (there must be none until a download succeeds).
fn downloads_of(peer: &Peer) -> Vec<(PathBuf, u64)> {
    files_under(&peer.downloads_dir())
}

/// One run of the downloader, bound to its own source IP so that the chunk server's log tells
/// the runs apart (`served ... peer=<ip>:<port>`).
struct Run {
    ip: IpAddr,
    /// The store right after the run was killed; `None` for the final run.
    after_kill: Option<StoreState>,
}

fn served_by_run<'a>(events: &'a [Event], chunk: &str, ip: IpAddr) -> Vec<&'a Event> {
    matching(events, "served", &[("chunk", chunk)])
        .into_iter()
        .filter(|e| {
            e.get("peer")
                .and_then(|p| p.parse::<std::net::SocketAddr>().ok())
                .is_some_and(|p| p.ip() == ip)
        })
        .collect()
}

fn field_u64(event: &Event, key: &str) -> u64 {
    event
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {key}= in {event}"))
}

/// alice shares a 10 MiB file through a slow chunk server; carol's downloader is killed with
/// SIGKILL at each of `kills` in turn (each kill in a new run), then run once more to the end.
fn killed_downloader_resumes(kills: &[KillPoint]) {
    let net = TestNet::new(Duration::from_secs(200));
    let a = net.peer("a");
    let c = net.peer("c");
    let (original, digest) = a.write_share(RESUME_CONTENT, RESUME_SIZE, 0xF11E);
    a.start_chunk_server(
        &[],
        &[
            "--max-rate",
            RESUME_RATE,
            "--max-connections",
            RESUME_CONNECTIONS,
        ],
    );
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", RESUME_CONTENT, digest);
    let lens = chunk_ranges(RESUME_SIZE).map(|r| r.len());
    let names: Vec<String> = (1..=5).map(|i| format!("{RESUME_CONTENT}_{i}")).collect();

    let mut runs: Vec<Run> = Vec::new();
    for (k, &point) in kills.iter().enumerate() {
        let ip = IpAddr::V4(net.next_ip());
        let ip_text = ip.to_string();
        let mut download = c.spawn_downloader(&["--bind", &ip_text, "get", RESUME_CONTENT]);
        let deadline = Instant::now() + WAIT;
        let poll = match point {
            KillPoint::FirstPart => Duration::from_millis(2),
            KillPoint::MidChunks => Duration::from_millis(20),
        };
        loop {
            let files = downloads_of(&c);
            assert!(
                files.is_empty(),
                "run {} ({point:?}): downloads/ holds {files:?} while the download is still \
                 running",
                k + 1
            );
            let state = StoreState::read(&c, RESUME_CONTENT);
            if state.reached(point, &lens) {
                break;
            }
            if !download.is_running() {
                let status = download.kill();
                panic!(
                    "run {}: the downloader exited ({status}) before reaching {point:?}; last \
                     store state {state:?}; raise RESUME_SIZE or lower RESUME_RATE",
                    k + 1
                );
            }
            assert!(
                Instant::now() < deadline,
                "run {}: {point:?} not reached within {WAIT:?}; store state {state:?}",
                k + 1
            );
            std::thread::sleep(poll);
        }
        let command = download.command().to_owned();
        let status = download.kill();
        assert_eq!(
            status.signal(),
            Some(9),
            "`{command}` should have been killed by SIGKILL at {point:?}, but exited: {status}"
        );
        // Only now, with the process gone, is what is on disk final.
        let state = StoreState::read(&c, RESUME_CONTENT);
        eprintln!("run {} killed at {point:?}; store: {state:?}", k + 1);
        let files = downloads_of(&c);
        assert!(
            files.is_empty(),
            "after SIGKILL at {point:?} (run {}), downloads/ must hold no file, but holds \
             {files:?}",
            k + 1
        );
        if let KillPoint::MidChunks = point {
            assert!(
                state.complete.iter().any(|&x| x) && (0..5).any(|i| state.resumable(i) > 0),
                "the kill should leave a complete chunk and a partial one: {state:?}"
            );
        }
        runs.push(Run {
            ip,
            after_kill: Some(state),
        });
    }

    let ip = IpAddr::V4(net.next_ip());
    let ip_text = ip.to_string();
    let out = c
        .spawn_downloader(&["--bind", &ip_text, "get", RESUME_CONTENT])
        .wait(DOWNLOADER_TIMEOUT);
    assert_success(&out, "the download after the kill(s)");
    let path = printed_path(&out, &c.dir);
    assert_same_file(&original, &path);
    assert_eq!(
        path.canonicalize().ok(),
        c.downloads_dir().join(RESUME_CONTENT).canonicalize().ok(),
        "{}",
        describe_output(&out)
    );
    let files = downloads_of(&c);
    assert_eq!(
        files.len(),
        1,
        "downloads/ should hold exactly the file: {files:?}"
    );
    runs.push(Run {
        ip,
        after_kill: None,
    });

    // The chunks the last kill left complete are taken as they are.
    let last = runs[runs.len() - 2]
        .after_kill
        .clone()
        .expect("a killed run precedes the final one");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for i in (0..5).filter(|&i| last.complete[i]) {
        assert!(
            stderr.contains(&format!("chunk {}/5 already here", i + 1)),
            "the final run should keep chunk {} from before\n{}",
            i + 1,
            describe_output(&out)
        );
    }

    // Every request the killed runs made has been logged by the server (a killed transfer is
    // logged when the server's next write fails), and the final run's five.
    let events = net.wait_until(
        WAIT,
        "alice's server.log has every chunk served ok and an entry for each killed transfer \
         that left bytes on disk",
        || {
            let events = a.server_events();
            for name in &names {
                if matching(&events, "served", &[("chunk", name), ("outcome", "ok")]).is_empty() {
                    return Err(format!("no ok for {name}:\n{}", show_events(&events)));
                }
            }
            for (r, run) in runs.iter().enumerate() {
                let Some(state) = &run.after_kill else {
                    continue;
                };
                let previous = r.checked_sub(1).and_then(|p| runs[p].after_kill.as_ref());
                for (i, name) in names.iter().enumerate() {
                    let before = previous.map_or(0, |s| s.resumable(i));
                    let grew = state.resumable(i) > before;
                    if grew && served_by_run(&events, name, run.ip).is_empty() {
                        return Err(format!(
                            "no served {name} for run {} ({}):\n{}",
                            r + 1,
                            run.ip,
                            show_events(&events)
                        ));
                    }
                }
            }
            Ok(events)
        },
    );
    let all = show_events(&events);

    for (i, name) in names.iter().enumerate() {
        // Each chunk crossed the network in full exactly once.
        let ok = matching(&events, "served", &[("chunk", name), ("outcome", "ok")]);
        assert_eq!(
            ok.len(),
            1,
            "{name} should be served with outcome=ok exactly once over the whole test:\n{all}"
        );

        for (r, run) in runs.iter().enumerate() {
            let Some(state) = &run.after_kill else {
                continue;
            };
            let next = &runs[r + 1];
            let later: Vec<&Event> = runs[r + 1..]
                .iter()
                .flat_map(|later| served_by_run(&events, name, later.ip))
                .collect();
            if state.complete[i] {
                // A complete chunk is never asked for again.
                assert!(
                    later.is_empty(),
                    "{name} was complete when run {} was killed, yet was requested again: \
                     {later:?}\nall events:\n{all}",
                    r + 1
                );
                continue;
            }
            let on_disk = state.resumable(i);
            let asked = served_by_run(&events, name, next.ip);
            if next.after_kill.is_none() {
                assert_eq!(
                    asked.len(),
                    1,
                    "the final run should ask for {name} exactly once:\n{all}"
                );
            }
            // The next request continues exactly where the bytes on disk end.
            if let Some(first) = asked.first() {
                assert_eq!(
                    field_u64(first, "offset"),
                    on_disk,
                    "after run {} was killed with {on_disk} bytes of {name} on disk, the next \
                     request should start there: {first}\nall events:\n{all}",
                    r + 1
                );
                if next.after_kill.is_none() {
                    assert_eq!(first.get("outcome"), Some("ok"), "{first}");
                    assert_eq!(field_u64(first, "bytes"), lens[i] - on_disk, "{first}");
                }
            }
            // What the killed run was sent and did not get onto disk is all that was re-sent.
            let previous = r.checked_sub(1).and_then(|p| runs[p].after_kill.as_ref());
            let before = previous.map_or(0, |s| s.resumable(i));
            if on_disk > before {
                let killed = served_by_run(&events, name, run.ip);
                assert_eq!(
                    killed.len(),
                    1,
                    "run {} should have asked once for {name}:\n{all}",
                    r + 1
                );
                let (offset, bytes) = (
                    field_u64(killed[0], "offset"),
                    field_u64(killed[0], "bytes"),
                );
                assert_eq!(offset, before, "{}", killed[0]);
                assert!(
                    offset + bytes >= on_disk,
                    "{} bytes of {name} on disk, but the server sent only up to byte {}: {}",
                    on_disk,
                    offset + bytes,
                    killed[0]
                );
                let resent = offset + bytes - on_disk;
                assert!(
                    resent <= 1 << 20,
                    "{resent} bytes of {name} were sent to the killed run beyond what reached \
                     its disk (socket buffers and the writer's buffer should hold far less): {}",
                    killed[0]
                );
            }
        }
    }

    // client.log: one successful fetch per chunk over the whole test, and the resumed ones say
    // from where.
    let client = c.client_events();
    let client_all = show_events(&client);
    let mut resumed_any = false;
    for (i, _) in names.iter().enumerate() {
        let chunk = (i + 1).to_string();
        let ok = matching(
            &client,
            "fetched",
            &[
                ("content", RESUME_CONTENT),
                ("chunk", &chunk),
                ("outcome", "ok"),
            ],
        );
        assert_eq!(
            ok.len(),
            1,
            "client.log: chunk {chunk} should be fetched once:\n{client_all}"
        );
        assert_eq!(ok[0].get("verified"), Some("yes"), "{}", ok[0]);
        assert_eq!(field_u64(ok[0], "bytes"), lens[i], "{}", ok[0]);
        if !last.complete[i] {
            let on_disk = last.resumable(i);
            if on_disk > 0 {
                resumed_any = true;
                assert_eq!(
                    ok[0].get("resumed_from"),
                    Some(on_disk.to_string().as_str()),
                    "chunk {chunk} resumed from the {on_disk} bytes on disk:\n{client_all}"
                );
            } else {
                assert_eq!(ok[0].get("resumed_from"), None, "{}", ok[0]);
            }
        }
    }
    if kills.iter().any(|k| matches!(k, KillPoint::MidChunks)) {
        assert!(resumed_any, "no chunk was resumed:\n{client_all}");
    }
    let done = matching(
        &client,
        "download",
        &[("content", RESUME_CONTENT), ("outcome", "ok")],
    );
    assert_eq!(done.len(), 1, "{client_all}");
    assert_eq!(done[0].get("sha256"), Some(digest.to_string().as_str()));
    assert_eq!(done[0].get("verified"), Some("yes"));
}

#[test]
fn downloader_killed_mid_chunk_resumes_without_fetching_anything_twice() {
    killed_downloader_resumes(&[KillPoint::MidChunks]);
}

#[test]
fn downloader_killed_at_start_and_again_mid_chunk_resumes_each_time() {
    killed_downloader_resumes(&[KillPoint::FirstPart, KillPoint::MidChunks]);
}

// ---------------------------------------------------------------------------------------------
// Two downloaders of one content in one peer folder
// ---------------------------------------------------------------------------------------------

#[test]
fn second_downloader_of_the_same_content_in_the_same_folder_refuses() {
    let net = TestNet::new(Duration::from_secs(120));
    let a = net.peer("a");
    let c = net.peer("c");
    let (original, digest) = a.write_share("album.zip", 10 << 20, 0xA1B);
    // About 2 s per download: the first is still running when the second starts.
    a.start_chunk_server(&[], &["--max-rate", RESUME_RATE]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "album.zip", digest);

    let first = c.spawn_downloader(&["get", "album.zip"]);
    let second = c.spawn_downloader(&["get", "album.zip"]);
    let outs = [
        first.wait(DOWNLOADER_TIMEOUT),
        second.wait(DOWNLOADER_TIMEOUT),
    ];
    let succeeded: Vec<&std::process::Output> =
        outs.iter().filter(|o| o.status.success()).collect();
    let both = format!(
        "first:\n{}\n\nsecond:\n{}",
        describe_output(&outs[0]),
        describe_output(&outs[1])
    );
    assert_eq!(
        succeeded.len(),
        1,
        "exactly one of two simultaneous downloaders should succeed\n{both}"
    );
    let winner = succeeded[0];
    let loser = outs
        .iter()
        .find(|o| !o.status.success())
        .expect("one failed");
    assert_eq!(loser.status.code(), Some(1), "{both}");
    assert!(
        String::from_utf8_lossy(&loser.stderr).contains("another downloader"),
        "the refused downloader should say another downloader is running\n{both}"
    );
    assert!(
        loser.stdout.is_empty(),
        "the refused downloader must print no path\n{both}"
    );
    assert_same_file(&original, &printed_path(winner, &c.dir));
    let files = downloads_of(&c);
    assert_eq!(
        files.len(),
        1,
        "downloads/ should hold the one file: {files:?}"
    );
    // The refused one disturbed nothing: every chunk crossed the network once.
    wait_for_served_all(&net, &a, "album.zip");
    let events = a.server_events();
    for i in 1..=5 {
        let name = format!("album.zip_{i}");
        let served = matching(&events, "served", &[("chunk", &name)]);
        assert_eq!(
            served.len(),
            1,
            "{name} should be requested once:\n{}",
            show_events(&events)
        );
    }
    // And the lock is released: a third run finds the file already there.
    let again = c.downloader(&["get", "album.zip"]);
    assert_success(&again, "a third get after both finished");
    assert_same_file(&original, &printed_path(&again, &c.dir));
    // Lock files do not pile up: each run removes its own when it ends.
    let locks = files_under(&c.temp_dir().join(".locks"));
    assert!(locks.is_empty(), "temp/.locks should be empty: {locks:?}");
}

// ---------------------------------------------------------------------------------------------
// A full disk
// ---------------------------------------------------------------------------------------------

/// A tmpfs mounted for the test; unmounted on drop (also when the test panics).
struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (`mount -o size=`) on `path`, or says why it cannot.
    fn mount(path: &Path, size: &str) -> Result<TmpfsMount, String> {
        let uid = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
            })
            .unwrap_or_else(|| "?".into());
        if uid != "0" {
            return Err(format!("not running as root (effective uid {uid})"));
        }
        fs::create_dir_all(path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(TmpfsMount {
            path: path.to_owned(),
        })
    }

    /// Changes its size in place, keeping its files.
    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount {} with size={size}: {}",
            self.path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut cmd = Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&self.path).output()
        };
        match umount(false) {
            Ok(out) if out.status.success() => {}
            other => {
                eprintln!(
                    "umount {} failed ({other:?}); detaching it lazily",
                    self.path.display()
                );
                let _ = umount(true);
            }
        }
    }
}

/// Whether the error the downloader ended with (its `error:` line and the causes under it), not
/// merely a progress line before it, names the local write failure.
fn no_space_message(output: &std::process::Output) -> bool {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error: String = stderr
        .lines()
        .skip_while(|l| !l.starts_with("downloader: error:"))
        .collect::<Vec<_>>()
        .join("\n");
    error.contains("No space left") || error.contains("cannot write")
}

/// 15 MiB: five chunks of 3 MiB, each larger than the 2 MiB disk.
const FULL_DISK_SIZE: u64 = 15 << 20;

#[test]
fn full_disk_fails_before_any_byte_then_completes_when_space_is_freed() {
    let net = TestNet::new(Duration::from_secs(120));
    let a = net.peer("a");
    let c = net.peer("c");
    // carol's chunk store is a 2 MiB tmpfs; downloads/ stays on the ordinary disk, so the last
    // step (temp/.incoming → downloads/) also crosses file systems.
    let mount = match TmpfsMount::mount(&c.temp_dir(), "2m") {
        Ok(m) => m,
        Err(reason) => {
            eprintln!("skipping full-disk test: {reason}");
            return;
        }
    };
    let (original, digest) = a.write_share("backup.tar", FULL_DISK_SIZE, 0xD15C);
    a.start_chunk_server(&[], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "backup.tar", digest);

    // 1. The chunks do not fit.
    let out = c.downloader(&["--min-free", "0", "get", "backup.tar"]);
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "a download onto a full disk must fail and print no path\n{}",
        describe_output(&out)
    );
    assert!(
        no_space_message(&out),
        "the error the downloader ends with should name the local write failure (a full disk \
         is not the peers' fault)\n{}",
        describe_output(&out)
    );
    let files = downloads_of(&c);
    assert!(files.is_empty(), "downloads/ must hold no file: {files:?}");

    // Nothing was fetched: the whole file is reserved before the first byte, and did not fit.
    assert_eq!(
        c.incoming_bytes(),
        0,
        "nothing should be received onto a full disk"
    );

    // 2. With room, the download completes. Chunks are written once, at their place in the
    // file, so it needs room for the file, not for chunks and an assembled copy.
    mount.resize("20m");
    let out = c.downloader(&["--min-free", "0", "get", "backup.tar"]);
    assert_success(&out, "the download once the disk has room");
    assert_same_file(&original, &printed_path(&out, &c.dir));
    let events = c.client_events();
    let failed = matching(
        &events,
        "download",
        &[("content", "backup.tar"), ("outcome", "failed")],
    );
    assert_eq!(
        failed.len(),
        1,
        "one failed download in client.log:\n{}",
        show_events(&events)
    );
    let leftovers = files_under(&c.temp_dir().join(".incoming"));
    assert!(
        leftovers.is_empty(),
        "a finished download leaves nothing in .incoming: {leftovers:?}"
    );
    drop(mount);
}

// ---------------------------------------------------------------------------------------------
// A chunk server killed while hashing a shared file (it copies nothing: the file is served in
// place, and only its manifest is written, once the whole file is hashed)
// ---------------------------------------------------------------------------------------------

/// `.split` files in `temp/.incoming/`: what chunk servers that copied shared files into the
/// store left when killed mid-split.
fn split_files(peer: &Peer) -> Vec<(PathBuf, u64)> {
    files_under(&peer.temp_dir().join(".incoming"))
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().ends_with(".split"))
        .collect()
}

/// Whether process `pid` has a file named `file_name` open (`/proc/PID/fd`).
fn has_open(pid: u32, file_name: &str) -> bool {
    fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| fs::read_link(e.path()).is_ok_and(|target| target.ends_with(file_name)))
    })
}

/// Starts `peer`'s chunk server with `shares` and kills it (SIGKILL) as soon as it has
/// `file_name` open, hashing it.
fn kill_chunk_server_mid_hash(peer: &Peer, shares: &[&Path], file_name: &str) {
    peer.start_chunk_server(shares, &[]);
    let pid = peer
        .pid_of(Program::ChunkServer)
        .expect("the chunk server runs");
    let deadline = Instant::now() + WAIT;
    while !has_open(pid, file_name) {
        peer.check_running(Program::ChunkServer)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            Instant::now() < deadline,
            "the chunk server did not open {file_name} within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    peer.stop(Program::ChunkServer);
}

#[test]
fn chunk_server_killed_mid_split_splits_again_and_serves_correct_chunks() {
    let net = TestNet::new(Duration::from_secs(300));
    let a = net.peer("a");
    let c = net.peer("c");
    let (original, digest) = a.write_share("disk.img", 200 << 20, 0x5B17);

    kill_chunk_server_mid_hash(&a, &[], "disk.img");
    let manifest = a.temp_dir().join(".manifests").join("disk.img.json");
    eprintln!(
        "killed mid-hash; manifest recorded: {}; temp/: {:?}",
        manifest.exists(),
        files_under(&a.temp_dir())
    );
    assert!(split_files(&a).is_empty());
    assert!((1..=5).all(|i| !a.temp_dir().join(format!("disk.img_{i}")).exists()));

    // Restart: it hashes again (or finds the manifest the killed run completed).
    a.start_chunk_server(&[], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "disk.img", digest);

    let out = c.downloader(&["get", "disk.img"]);
    assert_success(&out, "download from the restarted chunk server");
    assert_same_file(&original, &printed_path(&out, &c.dir));
    let (fetched, _) = assert_fetched_all(&c, "disk.img");
    for event in &fetched {
        assert_eq!(event.get("verified"), Some("yes"), "{event}");
    }
    // Served in place: no copy of the shared file in alice's temp/.
    let copies: u64 = files_under(&a.temp_dir()).iter().map(|(_, len)| len).sum();
    assert!(copies < 1 << 20, "{:?}", files_under(&a.temp_dir()));
}

#[test]
fn leftovers_of_a_killed_split_are_removed_even_when_the_file_is_no_longer_shared() {
    let net = TestNet::new(Duration::from_secs(240));
    let a = net.peer("a");
    // What a chunk server that copied shared files into the store left when killed mid-split.
    let incoming = a.temp_dir().join(".incoming");
    fs::create_dir_all(&incoming).unwrap();
    fs::write(incoming.join("old.iso_2.split"), vec![7u8; 100_000]).unwrap();
    let big = net.root().join("elsewhere").join("old.iso");
    write_random_file(&big, 200 << 20, 0x1507);
    kill_chunk_server_mid_hash(&a, &[big.as_path()], "old.iso");
    // The big file is gone; the server now shares a small one.
    fs::remove_file(&big).expect("remove the big file");
    let (small, small_digest) = a.write_share("small.txt", 1000, 3);
    a.start_chunk_server(&[], &[]);
    net.wait_until(
        WAIT,
        "the restarted chunk server has hashed small.txt",
        || {
            a.check_running(Program::ChunkServer)?;
            a.temp_dir()
                .join(".manifests")
                .join("small.txt.json")
                .is_file()
                .then_some(())
                .ok_or_else(|| "not yet".to_owned())
        },
    );
    let leftovers = split_files(&a);
    assert!(
        leftovers.is_empty(),
        "the restarted chunk server left the killed split's files in temp/.incoming: \
         {leftovers:?}"
    );
    assert!(!a
        .temp_dir()
        .join(".manifests")
        .join("old.iso.json")
        .exists());
    // It works as usual.
    let c = net.peer("c");
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "small.txt", small_digest);
    let out = c.downloader(&["get", "small.txt"]);
    assert_success(&out, "download of small.txt");
    assert_same_file(&small, &printed_path(&out, &c.dir));
}

#[test]
fn cleaning_up_after_one_content_never_touches_another_contents_files() {
    let net = TestNet::new(Duration::from_secs(60));
    let a = net.peer("a");
    let c = net.peer("c");
    let (original, digest) = a.write_share("a", 50_000, 0xC1EA);
    a.start_chunk_server(&[], &[]);
    a.start_announcer("alice", ANNOUNCE_INTERVAL_SECS);
    c.start_listener(&[]);
    net.wait_for_entry(&c, &a, "alice", "a", digest);

    // What downloads of other contents have in flight in carol's temp/.incoming/: `a.b` being
    // assembled by process 4242, and an endgame copy of chunk 2 of a content named `a_1`. Their
    // names begin with `a`, but they are not `a`'s.
    let incoming = c.temp_dir().join(".incoming");
    fs::create_dir_all(&incoming).unwrap();
    let others = ["a.b.4242.download", "a_1_2.part.3", "4242-a.b"];
    for name in &others[..2] {
        fs::write(incoming.join(name), b"in flight").unwrap();
    }
    fs::create_dir_all(incoming.join(others[2])).unwrap();
    // And what a crashed download of `a` itself left: these go.
    let own = ["a.4243.download", "a_3.part.1"];
    for name in own {
        fs::write(incoming.join(name), b"left over").unwrap();
    }

    let out = c.downloader(&["get", "a"]);
    assert_success(&out, "the download of a");
    assert_same_file(&original, &printed_path(&out, &c.dir));
    for name in others {
        assert!(
            incoming.join(name).exists(),
            "`get a` removed {name}, which belongs to another download"
        );
    }
    for name in own {
        assert!(
            !incoming.join(name).exists(),
            "`get a` should remove its own leftover {name}"
        );
    }
}

/// A legacy holder (no length, no digest) that sends for ever, onto a 24 MiB disk with
/// `--min-free 16M`: the free-space check while receiving stops the download when less than
/// 16 MiB is left, long before the disk is full, and the unverifiable bytes are removed.
#[test]
fn free_space_is_watched_while_receiving_a_chunk_of_unknown_length() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let net = TestNet::new(Duration::from_secs(60));
    let c = net.peer("c");
    let mount = match TmpfsMount::mount(&c.temp_dir(), "24m") {
        Ok(m) => m,
        Err(reason) => {
            eprintln!("skipping free-space test: {reason}");
            return;
        }
    };
    // The endless legacy server: reads the request, then sends zeros until the client leaves.
    let ip = net.next_ip();
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind");
    let port = listener.local_addr().expect("address").port();
    listener.set_nonblocking(true).expect("non-blocking");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
                let zeros = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::SeqCst) && stream.write_all(&zeros).is_ok() {}
            }
        })
    };
    c.start_listener(&["--legacy-chunk-port", &port.to_string()]);
    let files: Vec<String> = (1..=5).map(|i| format!("endless_{i}")).collect();
    net.wait_until(WAIT, "tags.txt lists the endless legacy holder", || {
        testkit::legacy::legacy_announce(ip, net.broadcast(), "ece", &files);
        let tags = c.tags()?;
        if tags.entries.iter().any(|e| e.content == "endless") {
            Ok(())
        } else {
            Err(format!("tags.txt is:\n{tags}"))
        }
    });
    let out = c.downloader(&["--min-free", "16M", "get", "endless"]);
    stop.store(true, Ordering::SeqCst);
    let _ = server.join();
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert!(
        no_space_message(&out),
        "the error should name the disk, not the peer\n{}",
        describe_output(&out)
    );
    let free = fs2::available_space(c.temp_dir()).expect("free space");
    assert!(
        free > 20 << 20,
        "the unverifiable bytes should be gone: {free} bytes free of 24 MiB"
    );
    drop(mount);
}
