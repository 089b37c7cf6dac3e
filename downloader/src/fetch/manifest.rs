//! Asking one holder for the manifest of a content: the request our peers answer with the
//! chunk digests ([`Manifest`]). Whether the answer is believed is the caller's decision
//! (`download::manifest`); this module only carries it.

use shared::digest::Digest;
use shared::protocol::{Manifest, Request, Response};

use super::connect::{connect, CancelHandle};
use super::error::FetchError;
use super::network::Network;
use crate::catalog::Holder;

/// Asks `holder` for the manifest of the content `name` whose file digest is `digest`; `handle`
/// cuts the request off (when another holder answered first). Our servers answer at once, so
/// the answer is awaited only [`Network::first_byte`].
///
/// # Errors
/// A [`FetchError`] saying why this holder sent no manifest.
pub fn fetch_manifest(
    holder: &Holder,
    name: &str,
    digest: Digest,
    net: &Network,
    handle: &CancelHandle,
) -> Result<Manifest, FetchError> {
    let mut conn = connect(holder, net, net.first_byte, handle)?;
    conn.write_request(&Request::Manifest {
        content: name.to_owned(),
        content_sha256: Some(digest),
    })
    .map_err(FetchError::Send)?;
    match conn.read_response() {
        Ok(Response::Manifest(m)) => Ok(m),
        Ok(Response::Error { code, message }) => Err(FetchError::refused(
            holder.addr,
            net.keys.is_none(),
            code,
            message,
        )),
        Ok(other) => Err(FetchError::Protocol(format!("answered {other:?}"))),
        Err(e) => Err(FetchError::Transfer(e)),
    }
}
