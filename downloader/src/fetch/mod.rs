//! Every request this peer makes to a holder: the manifest of a content ([`fetch_manifest`])
//! and one chunk ([`fetch_chunk`]). Both connect the same way (`connect`: one bind rule, one
//! [`CancelHandle`]), and fail with the same [`FetchError`], whose [`FetchError::outcome`] is the
//! word the log gives it.
//!
//! - `network`: the settings ([`Network`], [`Limits`], the channel keys);
//! - `connect`: the connection to a holder (over the encrypted channel on a private network)
//!   and its [`CancelHandle`];
//! - `chunk`: one chunk into a part file or its place in the file, checked, resumed where it
//!   can be;
//! - `manifest`: one manifest request;
//! - `error`: [`FetchError`].
//!
//! Deciding whom to ask, and what to believe, is `download`'s business, not this module's.

mod chunk;
mod connect;
mod error;
mod manifest;
mod network;

pub use chunk::{
    check_in_file, check_pieces, fetch_chunk, Delivery, Dest, Expected, Fetched, InFile, Job,
    MAX_WRITE,
};
pub use connect::CancelHandle;
pub use error::FetchError;
pub use manifest::fetch_manifest;
pub use network::{
    channel_keys, Limits, Network, DEFAULT_MAX_SIZE, DEFAULT_MIN_FREE, FIRST_BYTE_TIMEOUT,
};
