//! A fake chunk server that answers catalog requests, honestly or not, and the compact
//! announcement naming its catalog: what a listener's catalog fetch is tested against.
//!
//! The honest one answers exactly as ours does; the others lie in one way each
//! ([`CatalogBehaviour`]). It answers any number of connections until dropped, and counts
//! them.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use shared::chunk::ChunkName;
use shared::digest::Digest;
use shared::protocol::{
    Announcement, AnnouncementExt, Catalog, CatalogSummary, ContentMeta, Request, Response,
    MAX_CATALOG_BYTES,
};

use crate::wait::idle;

/// How a [`CatalogServer`] answers a catalog request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogBehaviour {
    /// The catalog announced, as our chunk servers send it.
    Honest,
    /// The header of the catalog announced, then the bytes of another catalog of the same
    /// length: they do not hash to the digest.
    WrongBytes,
    /// A header announcing more bytes than a listener reads, then the catalog.
    Oversized,
    /// Accepts, reads the request, and says nothing until dropped.
    Silent,
}

/// A fake chunk server on `ip:<ephemeral>` holding one catalog. Stops on drop.
pub struct CatalogServer {
    addr: SocketAddr,
    summary: CatalogSummary,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// The catalog of `count` contents `<prefix>-<i>.bin`, each of all five chunks.
pub fn catalog_of(prefix: &str, count: usize) -> Catalog {
    let mut chunks = Vec::new();
    let mut metas = std::collections::BTreeMap::new();
    for i in 0..count {
        let name = format!("{prefix}-{i:05}.bin");
        chunks.extend(ChunkName::all_of(&name).expect("a valid name"));
        metas.insert(
            name.clone(),
            ContentMeta {
                size: 1000 + i as u64,
                sha256: Digest::of(name.as_bytes()),
                root: Some(Digest::of(format!("root {name}").as_bytes())),
            },
        );
    }
    Catalog::from_parts(&chunks, &metas)
}

impl CatalogServer {
    /// Serves `catalog` on `ip`, behaving as `behaviour`.
    pub fn start(ip: Ipv4Addr, catalog: &Catalog, behaviour: CatalogBehaviour) -> CatalogServer {
        let listener = TcpListener::bind((ip, 0)).expect("bind the fake catalog server");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let addr = listener.local_addr().expect("its address");
        let (bytes, summary) = catalog.encode();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, requests) = (Arc::clone(&stop), Arc::clone(&requests));
            std::thread::spawn(move || {
                let mut handlers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            requests.fetch_add(1, Ordering::SeqCst);
                            let (stop, bytes) = (Arc::clone(&stop), bytes.clone());
                            handlers.push(std::thread::spawn(move || {
                                answer(stream, &bytes, summary, behaviour, &stop);
                            }));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
                for handler in handlers {
                    let _ = handler.join();
                }
            })
        };
        CatalogServer {
            addr,
            summary,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The summary of its catalog, as its announcement names it.
    pub fn summary(&self) -> CatalogSummary {
        self.summary
    }

    /// How many connections it accepted.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The compact announcement of `user` (run `instance`) naming this server's catalog and
    /// port.
    pub fn announcement(&self, user: &str, instance: &str) -> Announcement {
        let ext = AnnouncementExt {
            instance: Some(instance.to_owned()),
            catalog: Some(self.summary),
            ..AnnouncementExt::new(self.addr.port(), 60)
        };
        Announcement::ours(user, &[], ext)
    }
}

impl Drop for CatalogServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one connection.
fn answer(
    mut stream: TcpStream,
    bytes: &[u8],
    summary: CatalogSummary,
    behaviour: CatalogBehaviour,
    stop: &AtomicBool,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        match Request::decode(&request) {
            Ok((Request::Catalog { .. }, _)) => break,
            Err(shared::protocol::DecodeError::Incomplete) => {}
            _ => return,
        }
    }
    let header = |length: u64| Response::Catalog {
        count: summary.count,
        length,
        sha256: summary.sha256,
    };
    let length = bytes.len() as u64;
    let _ = match behaviour {
        CatalogBehaviour::Honest => stream
            .write_all(&header(length).encode())
            .and_then(|()| stream.write_all(bytes)),
        CatalogBehaviour::WrongBytes => {
            // Another size in the first line: a valid catalog, not the one announced.
            let mut other = bytes.to_vec();
            let at = other
                .windows(8)
                .position(|w| w == b"\"size\":1")
                .map(|i| i + 7);
            if let Some(i) = at {
                other[i] = b'2';
            }
            stream
                .write_all(&header(length).encode())
                .and_then(|()| stream.write_all(&other))
        }
        CatalogBehaviour::Oversized => stream
            .write_all(&header(MAX_CATALOG_BYTES + 1).encode())
            .and_then(|()| stream.write_all(bytes)),
        CatalogBehaviour::Silent => {
            idle(stop, Duration::from_secs(120));
            Ok(())
        }
    };
    let _ = stream.shutdown(std::net::Shutdown::Write);
    idle(stop, Duration::from_millis(300));
}
