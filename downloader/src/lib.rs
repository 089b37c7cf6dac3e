//! The downloader: reads `tags.txt`, fetches a content's five chunks from the peers that hold
//! them, verifies and reassembles the file into `downloads/`.
//!
//! - [`catalog`]: what is on offer (from `tags.txt`) and how the user picks it.
//! - [`download`]: the download itself (many holders, fallbacks, verification, reassembly).
//! - [`fetch`]: every request to a holder (a manifest, a chunk).
//! - `actions`: the commands `list`, `find`, `peers`, `history`, `get`; [`json`]: what they print for scripts
//!   (`--json`); `prompt`: the interactive loop (line editor, Tab completion, history);
//!   `wording`: what the user reads about a download.
//! - [`peer_view`]: who is heard, and whether their chunk servers answer.
//! - [`folder`]: `get FOLDER/`, every content under a folder path.
//! - [`sharing`]: the commands `share`, `unshare`, `shared` (the peer folder's `shares.txt`).
//! - [`send`]: `send PATH|FOLDER --to USER`, `sends`, `unsend ID|all` (the outbox
//!   `sends.txt`); [`offers`]: `offers`, `accept N…|all`, `decline N…|all` and the auto-accept of `sync` (the inbox
//!   `offers.txt` the listener keeps, and `accept-from.txt`).
//! - [`network`]: `network new`, `join PHRASE`, `leave`, `status` (the peer folder's
//!   `network.key`: a private network).
//! - [`command`]: parsing of interactive input; [`history`](mod@history): the download history;
//!   [`format`](mod@format): sizes and rates for people.
//!
//! User-facing text goes to the writers passed in; diagnostics go through `log` (to stderr and
//! `client.log`), so they do not break up the prompt.
#![deny(missing_docs)]
#![warn(clippy::cast_possible_truncation)]

mod actions;
mod bar;
pub mod catalog;
pub mod command;
pub mod download;
pub mod error;
pub mod fetch;
pub mod folder;
pub mod format;
pub mod history;
pub mod json;
pub mod network;
pub mod offers;
pub mod peer_view;
mod prompt;
pub mod send;
pub mod sharing;
pub mod subscriptions;
pub mod sync;
mod wording;

pub use crate::actions::{
    find, get, history, list, load_catalog, peers, print_get_result, require_peer_dir, Got,
    ListFilter,
};
pub use crate::bar::Feedback;
pub use crate::download::Config;
pub use crate::error::Error;
pub use crate::prompt::interactive;
pub use crate::sharing::{share, shared, unshare};
