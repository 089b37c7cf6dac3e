//! Who gets an answer at all, before any request is looked at.
//!
//! On a private network (a `DIR/network.key`) a client must open the encrypted channel with
//! the same network key and prove its peer ID; with an allow list (`DIR/allowed-peers.txt`)
//! that ID must be listed. Plaintext requests (legacy peers, our peers without the key) are
//! refused unless the server was started with `--allow-legacy`: a legacy request gets only the
//! close (all a legacy client understands, which it reads as a missing chunk), ours an error
//! reply saying the network is private. On an open network, plaintext is served as always and
//! a client opening the channel is refused with "this peer has no network key".
//!
//! So no byte of content reaches a client that has not completed the handshake with the right
//! key, unless the user explicitly allowed plaintext. Refusals here are logged at most
//! [`REFUSALS_LOGGED_PER_SEC`] per second: an outsider's flood must not fill the log.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use shared::connection::Transport;
use shared::events::Outcome;
use shared::ratelimit::TokenBucket;
use shared::trust::channel::{self, ChannelError, ChannelKeys};
use shared::trust::{AllowWatch, PeerId, Trust};

use super::refusal::{log_refused, Refusal};

/// Refusals of the gate logged per second, on average; a burst of twice as many is logged
/// whole.
const REFUSALS_LOGGED_PER_SEC: f64 = 10.0;

/// The server's trust settings and the allow list, shared by every handler.
#[derive(Debug)]
pub(crate) struct Gate {
    /// The channel keys; `None` on an open network.
    keys: Option<ChannelKeys>,
    /// `--allow-legacy`: plaintext answered on a private network too.
    allow_legacy: bool,
    /// The allow list, re-read by a handler when the file changed.
    allow: Mutex<AllowWatch>,
    /// Bounds the gate's `refused` events, and counts those left out.
    log_budget: Mutex<(TokenBucket, u64)>,
}

impl Gate {
    /// The gate of a server whose peer folder is `dir`.
    pub(crate) fn new(trust: &Trust, dir: &Path, allow_legacy: bool) -> Gate {
        let gate = Gate {
            keys: trust.channel_keys(),
            allow_legacy,
            allow: Mutex::new(AllowWatch::new(dir)),
            log_budget: Mutex::new((
                TokenBucket::new(
                    REFUSALS_LOGGED_PER_SEC,
                    2.0 * REFUSALS_LOGGED_PER_SEC,
                    Instant::now(),
                ),
                0,
            )),
        };
        if gate.keys.is_some() {
            // Read (and its state logged) once at start, not at the first download.
            if let Ok(mut allow) = gate.allow.lock() {
                allow.current();
            }
        }
        gate
    }

    /// The transport of an accepted connection: the encrypted channel when the client opens
    /// one (its first byte says so), else the plain socket. Waits for the first byte, and
    /// the handshake, no later than `deadline`.
    ///
    /// # Errors
    /// The refusal of a failed handshake: another key, or none on one side. The channel has
    /// told the client already.
    pub(super) fn open(&self, stream: TcpStream, deadline: Instant) -> Result<Transport, Refusal> {
        if !first_byte(&stream, deadline).is_some_and(channel::opens_channel) {
            // Silence, a close and plaintext are all read as plaintext, which says what it was.
            return Ok(Transport::Plain(stream));
        }
        channel::accept(stream, self.keys.as_ref(), deadline)
            .map(Transport::from)
            .map_err(|e| handshake_refusal(&e))
    }

    /// Whether a request that came over a transport whose client proved `id` (`None`:
    /// plaintext) may be answered.
    ///
    /// # Errors
    /// The refusal to answer with.
    pub(super) fn admit(&self, id: Option<PeerId>) -> Result<(), Refusal> {
        match (id, &self.keys) {
            (_, None) => Ok(()),
            (None, Some(_)) if self.allow_legacy => Ok(()),
            (None, Some(_)) => Err(Refusal::new(
                Outcome::PrivateNetwork,
                "this peer is on a private network and answers only the encrypted channel \
                 (a plaintext request: a legacy peer, or a peer without the network key)",
            )),
            (Some(id), Some(_)) => {
                let allowed = self
                    .allow
                    .lock()
                    .map(|mut watch| watch.current().allows(&id))
                    .unwrap_or(false);
                if allowed {
                    Ok(())
                } else {
                    Err(Refusal::new(
                        Outcome::NotAllowed,
                        format!(
                            "peer {id} is not in the allow list ({}) of this peer",
                            shared::trust::ALLOW_FILE
                        ),
                    ))
                }
            }
        }
    }

    /// Whether a request for what this peer lists (its catalog) that came over a transport
    /// whose client proved `id` may be answered: as [`Gate::admit`], except that every member
    /// of the network may, whatever the allow list says. Members read the same list in the
    /// sealed announcements; the allow list bounds downloads, not listing.
    ///
    /// # Errors
    /// The refusal to answer with.
    pub(super) fn admit_listing(&self, id: Option<PeerId>) -> Result<(), Refusal> {
        match id {
            Some(_) if self.keys.is_some() => Ok(()),
            _ => self.admit(id),
        }
    }

    /// Logs a refusal of the gate's, unless too many were logged lately.
    pub(super) fn log(&self, peer: SocketAddr, chunk: Option<&str>, refusal: &Refusal) {
        let Ok(mut budget) = self.log_budget.lock() else {
            return;
        };
        let (bucket, unlogged) = &mut *budget;
        if !bucket.try_take(1.0, Instant::now()) {
            *unlogged += 1;
            return;
        }
        if *unlogged > 0 {
            log::warn!(
                "{unlogged} more connections were refused (network key, private network or \
                 allow list) without logging each"
            );
            *unlogged = 0;
        }
        log_refused(peer, refusal.outcome, chunk, &refusal.reason);
    }
}

/// The first byte the client sent, without taking it; `None` when it closed or sent nothing
/// by `deadline`.
fn first_byte(stream: &TcpStream, deadline: Instant) -> Option<u8> {
    let mut byte = [0u8; 1];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return None;
        }
        return match stream.peek(&mut byte) {
            Ok(1) => Some(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            _ => None,
        };
    }
}

/// The refusal of a handshake that failed.
fn handshake_refusal(err: &ChannelError) -> Refusal {
    let outcome = match err {
        ChannelError::DifferentKey => Outcome::WrongKey,
        ChannelError::NoKeyHere => Outcome::PrivateNetwork,
        ChannelError::Timeout(_) => Outcome::Timeout,
        ChannelError::Closed => Outcome::Empty,
        ChannelError::Malformed(_)
        | ChannelError::UnsupportedVersion(_)
        | ChannelError::BadProof => Outcome::Malformed,
        _ => Outcome::Error,
    };
    let reason = match err {
        ChannelError::DifferentKey => {
            "secure channel: the client uses a different network key".to_owned()
        }
        other => format!("secure channel: {other}"),
    };
    Refusal::new(outcome, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::trust::{Identity, NetworkKey};
    use std::sync::Arc;

    fn trust(key: Option<u8>) -> Trust {
        Trust {
            key: key.map(|k| NetworkKey::from_bytes([k; 32])),
            identity: Arc::new(Identity::from_seed(&[1; 32])),
        }
    }

    #[test]
    fn plaintext_is_refused_on_a_private_network_unless_legacy_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let open = Gate::new(&trust(None), dir.path(), false);
        assert!(open.admit(None).is_ok());
        let private = Gate::new(&trust(Some(7)), dir.path(), false);
        let refusal = private.admit(None).unwrap_err();
        assert_eq!(refusal.outcome, Outcome::PrivateNetwork);
        let legacy = Gate::new(&trust(Some(7)), dir.path(), true);
        assert!(legacy.admit(None).is_ok());
    }

    #[test]
    fn the_allow_list_admits_only_the_listed_members() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Gate::new(&trust(Some(7)), dir.path(), false);
        let alice = Identity::from_seed(&[2; 32]).id();
        let bob = Identity::from_seed(&[3; 32]).id();
        assert!(gate.admit(Some(alice)).is_ok(), "no list: every member");
        std::fs::write(
            dir.path().join(shared::trust::ALLOW_FILE),
            format!("{alice}\n"),
        )
        .unwrap();
        assert!(gate.admit(Some(alice)).is_ok());
        let refusal = gate.admit(Some(bob)).unwrap_err();
        assert_eq!(refusal.outcome, Outcome::NotAllowed);
        assert!(refusal.reason.contains(&bob.to_string()));
        // Listing is not downloading: every member may read the catalog.
        assert!(gate.admit_listing(Some(bob)).is_ok());
        assert_eq!(
            gate.admit_listing(None).unwrap_err().outcome,
            Outcome::PrivateNetwork
        );
    }
}
