//! Answering a catalog request: this peer's whole list of contents, which a listener of ours
//! fetches when a compact announcement named a catalog digest it does not hold
//! ([`shared::protocol::Request::Catalog`]).
//!
//! The announcer publishes the catalog it announces in the peer folder, under its digest
//! ([`shared::catalog_file`]), before announcing it; the answer is that file, byte for byte,
//! so what a listener receives is what was announced and the chunk server never reads the
//! whole store for it. A digest with no file (the catalog changed since it was announced, or
//! this folder announces inline) is answered `wrong_content`; the listener fetches the new
//! catalog when the announcer announces it, within about a second.
//!
//! Listing is not downloading: on a private network, every member reads the list in the
//! announcements already, so the allow list (which bounds downloads) does not apply here; a
//! plaintext request there is refused as any other (see `gate`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::net::SocketAddr;
use std::time::Instant;

use shared::catalog_file;
use shared::connection::Connection;
use shared::digest::Digest;
use shared::events::Outcome;
use shared::fsutil::OpenError;
use shared::protocol::Response;

use super::refusal::Refusal;
use super::{refuse_p2p, ServeContext};

/// Answers a catalog request: the header, then the catalog's bytes; or an error reply. A sent
/// catalog is logged at debug level only: `served` events count chunks.
pub(super) fn serve_catalog(
    conn: &mut Connection,
    peer: SocketAddr,
    wanted: Digest,
    ctx: &ServeContext,
) {
    let started = Instant::now();
    let (mut file, length) = match catalog_file::open(&ctx.peer_dir, &wanted) {
        Ok((file, meta)) => (file, meta.len()),
        Err(e) => {
            let refusal = match e {
                OpenError::Missing => Refusal::new(
                    Outcome::WrongContent,
                    format!(
                        "catalog: no catalog {} here (it changed since it was announced)",
                        wanted.short(16)
                    ),
                ),
                other => Refusal::new(
                    Outcome::Error,
                    format!("catalog: cannot open {}: {other}", wanted.short(16)),
                ),
            };
            refuse_p2p(conn, peer, None, &refusal);
            return;
        }
    };
    let count = match count_lines(&mut file) {
        Ok(count) => count,
        Err(e) => {
            let refusal = Refusal::new(Outcome::Error, format!("catalog: cannot read it: {e}"));
            refuse_p2p(conn, peer, None, &refusal);
            return;
        }
    };
    let header = Response::Catalog {
        count,
        length,
        sha256: wanted,
    };
    let sent = conn.write_response(&header).and_then(|()| {
        let stream = conn.stream();
        let copied = io::copy(&mut (&mut file).take(length), stream)?;
        stream.flush()?;
        if copied == length {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the catalog file shrank to {copied} of {length} bytes"),
            ))
        }
    });
    match sent {
        Ok(()) => log::debug!(
            "sent the catalog {} ({count} contents, {length} bytes) to {peer} in {} ms",
            wanted.short(16),
            started.elapsed().as_millis()
        ),
        Err(e) => log::debug!("cannot send the catalog to {peer}: {e}"),
    }
}

/// The lines (contents) of the catalog `file`, which is then rewound: read once with a small
/// buffer, so an answer holds no copy of the catalog.
fn count_lines(file: &mut File) -> io::Result<u64> {
    let mut reader = BufReader::with_capacity(64 * 1024, &mut *file);
    let mut count = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        count += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let n = buf.len();
        reader.consume(n);
    }
    drop(reader);
    file.rewind()?;
    Ok(count)
}
