//! The gate every received datagram passes: what a program lets in, by the network it is on.
//!
//! | network | sealed, ours, fresh | sealed, another key | sealed, forged/replayed | plain (legacy, open peers) |
//! |---|---|---|---|---|
//! | open    | refused: "on a private network" | same | same | let in |
//! | private | let in, with its signer | refused: "a different network key" | refused | refused, or let in as legacy with `--allow-legacy` |
//!
//! Refusals are returned with their reason for the caller to count and log (rate-limited).

use std::net::SocketAddr;

use super::envelope::{is_sealed, Opened, Opener, Unsealed};
use super::key::{tag_id, NetworkKey, TAG_BYTES};
use super::replay::{ReplayGuard, Stale};

/// What came through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passed<'a> {
    /// A plain datagram: on an open network, anyone's; on a private one (only with
    /// `--allow-legacy`), to be read as a legacy peer's, whatever it claims.
    Plain(&'a [u8]),
    /// A sealed datagram of our network, with its signer.
    Sealed(Opened),
}

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Plain, on a private network without `--allow-legacy`.
    Plain,
    /// Sealed, but we have no network key.
    Private,
    /// Sealed for another network (its tag).
    OtherNetwork([u8; TAG_BYTES]),
    /// Sealed under our tag, but failing authentication.
    Forged,
    /// Authentic, but a replay or off our clock.
    Stale(Stale),
}

impl Refused {
    /// What a log line says about it, `from` the sender.
    pub fn describe(&self, from: SocketAddr, ours: Option<&NetworkKey>) -> String {
        match self {
            Refused::Plain => format!(
                "an unauthenticated datagram from {from} (a legacy peer, or a peer without the \
                 network key) ignored: this is a private network (start with --allow-legacy to \
                 accept legacy peers)"
            ),
            Refused::Private => format!(
                "peer at {from} is on a private network; this peer has no network key (`downloader \
                 network join`)"
            ),
            Refused::OtherNetwork(tag) => format!(
                "peer at {from} uses a different network key (its network {}, ours {})",
                tag_id(*tag),
                ours.map_or_else(|| "none".to_owned(), NetworkKey::id)
            ),
            Refused::Forged => format!(
                "a datagram from {from} sealed under our network's tag fails authentication \
                 (forged or damaged)"
            ),
            Refused::Stale(stale) => format!("a sealed datagram from {from} refused: {stale}"),
        }
    }
}

/// The gate of one receiving program.
#[derive(Debug)]
pub struct Gate {
    opener: Option<Opener>,
    replay: ReplayGuard,
    allow_legacy: bool,
}

impl Gate {
    /// The gate of a program on the network of `key` (`None`: open); `allow_legacy` lets
    /// plain datagrams in on a private network.
    pub fn new(key: Option<&NetworkKey>, allow_legacy: bool) -> Gate {
        Gate {
            opener: key.map(Opener::new),
            replay: ReplayGuard::new(),
            allow_legacy,
        }
    }

    /// Whether the network is private.
    pub fn is_private(&self) -> bool {
        self.opener.is_some()
    }

    /// Lets `bytes` in, received at `now_ms`, or says why not.
    ///
    /// # Errors
    /// [`Refused`].
    pub fn admit<'a>(&mut self, bytes: &'a [u8], now_ms: u64) -> Result<Passed<'a>, Refused> {
        let Some(opener) = &self.opener else {
            return if is_sealed(bytes) {
                Err(Refused::Private)
            } else {
                Ok(Passed::Plain(bytes))
            };
        };
        match opener.open(bytes) {
            Ok(opened) => {
                self.replay.check(&opened, now_ms).map_err(Refused::Stale)?;
                Ok(Passed::Sealed(opened))
            }
            Err(Unsealed::Plain) if self.allow_legacy => Ok(Passed::Plain(bytes)),
            Err(Unsealed::Plain) => Err(Refused::Plain),
            Err(Unsealed::OtherNetwork(tag)) => Err(Refused::OtherNetwork(tag)),
            Err(Unsealed::Forged) => Err(Refused::Forged),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::trust::envelope::{now_ms, Sealer};
    use crate::trust::Identity;

    fn key(byte: u8) -> NetworkKey {
        NetworkKey::from_bytes([byte; 32])
    }

    fn sealed(key: &NetworkKey) -> Vec<u8> {
        Sealer::new(key, Arc::new(Identity::from_seed(&[3; 32])))
            .unwrap()
            .seal(b"{}")
            .unwrap()
    }

    const PLAIN: &[u8] = br#"{"username":"ece","files":["a_1"]}"#;

    #[test]
    fn an_open_network_lets_plain_in_and_refuses_sealed() {
        let mut gate = Gate::new(None, false);
        assert_eq!(gate.admit(PLAIN, now_ms()), Ok(Passed::Plain(PLAIN)));
        assert_eq!(
            gate.admit(&sealed(&key(1)), now_ms()),
            Err(Refused::Private)
        );
    }

    #[test]
    fn a_private_network_lets_in_only_its_own_fresh_datagrams() {
        let mut gate = Gate::new(Some(&key(1)), false);
        let ours = sealed(&key(1));
        assert!(matches!(gate.admit(&ours, now_ms()), Ok(Passed::Sealed(_))));
        assert_eq!(
            gate.admit(&ours, now_ms()),
            Err(Refused::Stale(Stale::Repeated))
        );
        assert_eq!(gate.admit(PLAIN, now_ms()), Err(Refused::Plain));
        assert_eq!(
            gate.admit(&sealed(&key(2)), now_ms()),
            Err(Refused::OtherNetwork(key(2).tag()))
        );
        let from: SocketAddr = "127.0.0.3:5000".parse().unwrap();
        let message = Refused::OtherNetwork(key(2).tag()).describe(from, Some(&key(1)));
        assert!(
            message.starts_with("peer at 127.0.0.3:5000 uses a different network key"),
            "{message}"
        );
        let mut legacy_too = Gate::new(Some(&key(1)), true);
        assert_eq!(legacy_too.admit(PLAIN, now_ms()), Ok(Passed::Plain(PLAIN)));
        assert!(matches!(
            legacy_too.admit(&ours, now_ms()),
            Ok(Passed::Sealed(_))
        ));
    }
}
