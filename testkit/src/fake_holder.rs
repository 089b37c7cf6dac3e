//! A fake holder: a chunk server of our protocol in the test's process that misbehaves as told
//! (wrong bytes under a right header, silence, a trickle, a refusal, a forged manifest, an
//! endless chunk), optionally announcing itself over UDP like our announcer. Tests pin down how
//! the downloader verifies, falls back and drops bad holders without a misbehaving real program.
//!
//! It serves one content. Every request it reads is recorded with when it was read, and it
//! counts the chunks it served in full and the body bytes it wrote. Dropping it stops every
//! thread (connections held open included) and joins them.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use shared::chunk::{chunk_ranges, ChunkName};
use shared::connection::Connection;
use shared::digest::Digest;
use shared::protocol::{Announcement, AnnouncementExt, ErrorCode, Manifest, Request, Response};

use crate::files::manifest_of;
use crate::wait::idle;

/// How a fake holder answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers every request right.
    Honest,
    /// The right header (size and SHA-256 of the real chunk), then the chunk's bytes inverted.
    Corrupt,
    /// The right header, then the chunk's bytes with the last one flipped.
    CorruptLastByte,
    /// Answers every chunk request with `not_found`.
    Refuse,
    /// The right header, then the right bytes, this many every 100 ms.
    Trickle(usize),
    /// Accepts the connection, reads the request, never answers.
    Silent,
    /// Answers manifest requests; accepts chunk requests and never answers them.
    SilentAfterManifest,
    /// Claims a chunk of 10^15 bytes, and sends zeros until the client leaves.
    Huge,
    /// Announces the real content's name, size and SHA-256 with the root of a manifest of its
    /// own garbage, answers manifest requests with that manifest, and serves the garbage, which
    /// matches it chunk by chunk: only the whole-file check can tell.
    ForgeManifest,
    /// Serves the real bytes and a manifest with the real chunk digests and root, but with
    /// midstates of other bytes: every chunk fails its step and matches its digest.
    ForgeMidstates,
    /// Honest for whole chunks; every byte of a request from an offset (a piece of a chunk,
    /// or a resumed transfer) inverted.
    CorruptPieces,
}

/// Pause between two pieces of a [`Behaviour::Trickle`].
const TICK: Duration = Duration::from_millis(100);

/// What a fake holder serves and records, shared with its threads.
struct State {
    behaviour: Behaviour,
    data: Vec<u8>,
    manifest: Manifest,
    stop: AtomicBool,
    /// Every request received, in order, with when it was read.
    requests: Mutex<Vec<(Instant, Request)>>,
    /// Chunks whose body was written in full.
    served: AtomicUsize,
    /// Body bytes written.
    bytes_sent: AtomicUsize,
}

/// A holder of one content that speaks our protocol and misbehaves as told. Stops on drop.
pub struct FakeHolder {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeHolder {
    /// Serves `content` made of `data` on `ip:<ephemeral>`, behaving as `behaviour` says.
    pub fn start(ip: Ipv4Addr, content: &str, data: Vec<u8>, behaviour: Behaviour) -> FakeHolder {
        let real_sha256 = Digest::of(&data);
        let data: Vec<u8> = if behaviour == Behaviour::ForgeManifest {
            data.iter().map(|b| b.wrapping_add(1)).collect()
        } else {
            data
        };
        // A forger's midstates are those of its own bytes: they lead to another file digest,
        // so the last chunk's step fails, and its file must be hashed whole.
        let mut manifest = Manifest {
            sha256: real_sha256,
            ..manifest_of(content, &data)
        };
        if behaviour == Behaviour::ForgeMidstates {
            let other: Vec<u8> = data.iter().map(|b| b ^ 0x55).collect();
            manifest.states = manifest_of(content, &other).states;
        }
        let listener = TcpListener::bind((ip, 0)).expect("fake holder: bind TCP");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let addr = listener.local_addr().expect("fake holder address");
        let state = Arc::new(State {
            behaviour,
            data,
            manifest,
            stop: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            served: AtomicUsize::new(0),
            bytes_sent: AtomicUsize::new(0),
        });
        let server = {
            let state = Arc::clone(&state);
            thread::spawn(move || {
                let mut handlers = Vec::new();
                while !state.stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let state = Arc::clone(&state);
                            // One thread per connection, so slow answers hold up no other.
                            handlers.push(thread::spawn(move || serve(stream, &state)));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
                for h in handlers {
                    let _ = h.join();
                }
            })
        };
        FakeHolder {
            addr,
            state,
            threads: vec![server],
        }
    }

    /// Also announces the content as `user` to `target` every second, from its own IP, like our
    /// announcer (the `p2p` extension, with the manifest's size and digest), saying it repeats
    /// every `interval_secs`.
    pub fn announce(mut self, user: &str, target: SocketAddr, interval_secs: u64) -> FakeHolder {
        let manifest = &self.state.manifest;
        let files: Vec<String> = (1..=5).map(|i| format!("{}_{i}", manifest.name)).collect();
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        let ext = AnnouncementExt::new(self.addr.port(), interval_secs)
            .with_content(&manifest.name, manifest.meta());
        let announcement = Announcement::ours(user, &files, ext).encode();
        let socket = shared::net::bind_udp_shared(SocketAddr::from((self.addr.ip(), 0)))
            .expect("fake holder: bind UDP");
        let state = Arc::clone(&self.state);
        self.threads.push(thread::spawn(move || {
            while !state.stop.load(Ordering::SeqCst) {
                let _ = socket.send_to(&announcement, target);
                idle(&state.stop, Duration::from_secs(1));
            }
        }));
        self
    }

    /// Chunks whose body it wrote in full.
    pub fn served(&self) -> usize {
        self.state.served.load(Ordering::SeqCst)
    }

    /// Body bytes it wrote.
    pub fn bytes_sent(&self) -> usize {
        self.state.bytes_sent.load(Ordering::SeqCst)
    }

    /// The offsets of the chunk requests received, in order.
    pub fn offsets(&self) -> Vec<u64> {
        self.chunk_requests().into_iter().map(|(_, o)| o).collect()
    }

    /// The chunk requests received: (chunk name, offset).
    pub fn chunk_requests(&self) -> Vec<(String, u64)> {
        self.timed_chunk_requests()
            .into_iter()
            .map(|(_, name, offset)| (name, offset))
            .collect()
    }

    /// The chunk requests received, with when each was read.
    pub fn timed_chunk_requests(&self) -> Vec<(Instant, String, u64)> {
        self.state
            .requests
            .lock()
            .map(|r| {
                r.iter()
                    .filter_map(|(at, req)| match req {
                        Request::Chunk {
                            filename, offset, ..
                        } => Some((*at, filename.clone(), *offset)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for FakeHolder {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Answers one connection: one request, as the behaviour says.
fn serve(stream: TcpStream, state: &State) {
    let _ = stream.set_nonblocking(false);
    let Ok(mut conn) = Connection::new(stream, Duration::from_secs(5)) else {
        return;
    };
    let Ok(request) = conn.read_request() else {
        return;
    };
    if let Ok(mut r) = state.requests.lock() {
        r.push((Instant::now(), request.clone()));
    }
    let behaviour = state.behaviour;
    if behaviour == Behaviour::Silent {
        // Hold the connection open, say nothing.
        idle(&state.stop, Duration::from_secs(120));
        return;
    }
    match request {
        Request::Manifest { .. } => {
            let _ = conn.write_response(&Response::Manifest(state.manifest.clone()));
        }
        Request::Chunk {
            filename, offset, ..
        } => {
            if !answer_chunk(&mut conn, state, &filename, offset) {
                return;
            }
        }
        Request::LegacyChunk { .. } | Request::Catalog { .. } => {}
    }
    conn.shutdown_write();
    idle(&state.stop, Duration::from_millis(500));
}

/// Answers a chunk request; `false` when the connection is to be dropped at once.
fn answer_chunk(conn: &mut Connection, state: &State, filename: &str, offset: u64) -> bool {
    let manifest = &state.manifest;
    match state.behaviour {
        Behaviour::Refuse => {
            let _ = conn.write_response(&Response::Error {
                code: ErrorCode::NotFound,
                message: "no".into(),
            });
            return false;
        }
        Behaviour::SilentAfterManifest => {
            idle(&state.stop, Duration::from_secs(120));
            return false;
        }
        Behaviour::Huge => {
            let huge = 1_000_000_000_000_000;
            let _ = conn.write_response(&Response::Chunk {
                size: huge,
                length: huge - offset,
                sha256: Digest::of(b"whatever"),
            });
            let zeros = vec![0u8; 64 * 1024];
            while !state.stop.load(Ordering::SeqCst) && conn.stream().write_all(&zeros).is_ok() {
                state.bytes_sent.fetch_add(zeros.len(), Ordering::SeqCst);
            }
            return false;
        }
        _ => {}
    }
    let chunk = ChunkName::parse(filename)
        .ok()
        .filter(|c| c.content() == manifest.name);
    let Some(chunk) = chunk else {
        let _ = conn.write_response(&Response::Error {
            code: ErrorCode::NotFound,
            message: format!("no chunk {filename} here"),
        });
        return false;
    };
    let range = chunk_ranges(manifest.size)[chunk.position()].as_range();
    let bytes = &state.data[range.start as usize..range.end as usize];
    let offset = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let header = Response::Chunk {
        size: bytes.len() as u64,
        length: (bytes.len() - offset) as u64,
        sha256: manifest.chunks[chunk.position()],
    };
    if conn.write_response(&header).is_err() {
        return false;
    }
    let mut body = bytes[offset..].to_vec();
    match state.behaviour {
        Behaviour::Corrupt => body.iter_mut().for_each(|b| *b = !*b),
        Behaviour::CorruptPieces if offset > 0 => body.iter_mut().for_each(|b| *b = !*b),
        Behaviour::CorruptLastByte => {
            if let Some(b) = body.last_mut() {
                *b ^= 0xff;
            }
        }
        _ => {}
    }
    let step = match state.behaviour {
        Behaviour::Trickle(n) => n.max(1),
        _ => body.len().max(1),
    };
    for piece in body.chunks(step) {
        if state.stop.load(Ordering::SeqCst) || conn.stream().write_all(piece).is_err() {
            return false;
        }
        state.bytes_sent.fetch_add(piece.len(), Ordering::SeqCst);
        if step < body.len() {
            thread::sleep(TICK);
        }
    }
    state.served.fetch_add(1, Ordering::SeqCst);
    true
}
