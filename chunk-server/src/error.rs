//! The errors that stop the chunk server as a whole.
//!
//! Only start-up can fail: once the server is accepting, a failure on one connection or one
//! shared file is logged and the server carries on (see the `serve` and `split` modules),
//! so none of those appear here. Each variant names the step that failed; the underlying cause
//! is kept as the error's `source()`, not repeated in its message, so `main` can print the chain
//! once.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use shared::store::StoreError;

/// Why [`run`](crate::run) could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A folder of the peer folder (the folder itself or the default share folder) could not be
    /// created.
    #[error("cannot create the folder {path}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The chunk store (`DIR/temp`) could not be opened.
    #[error("cannot open the chunk store")]
    OpenStore(#[source] StoreError),
    /// The listening socket could not be bound ([`bind`](crate::bind)).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// The listening socket could not be set up for the accept loop.
    #[error("cannot prepare the listening socket")]
    Listener(#[source] io::Error),
    /// The record of where the server listens (`DIR/.run/chunk-server.json`) could not be
    /// written ([`record_address`](crate::record_address)).
    #[error("cannot record where the server listens in {}", path.display())]
    Record {
        /// The record file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A background thread could not be started.
    #[error("cannot start the {what} thread")]
    SpawnThread {
        /// Which thread.
        what: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The network key or the identity of the peer folder cannot be used.
    #[error("cannot load the peer folder's trust files")]
    Trust(#[source] shared::trust::TrustError),
}
