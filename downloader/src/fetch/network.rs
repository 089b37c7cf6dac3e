//! How this peer talks to chunk servers: the source address, the timeouts, what counts as too
//! slow, and how much a download may take. Plain data, set from the command line.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shared::trust::{ChannelKeys, Identity, NetworkKey, TrustError};

/// How to talk to chunk servers: source address, timeouts, when a transfer is too slow, and
/// (on a private network) the keys of the encrypted channel.
#[derive(Debug, Clone)]
pub struct Network {
    /// Source address of outgoing connections; `None` lets the system choose.
    pub bind: Option<IpAddr>,
    /// To establish a connection.
    pub connect: Duration,
    /// Longest silence during a transfer.
    pub idle: Duration,
    /// How long a holder of ours may take to answer a request with its header, counted from
    /// the request: a holder that accepts and then says nothing is given up this soon.
    pub first_byte: Duration,
    /// Silence after which a legacy server that sent data is taken to have finished.
    pub legacy_end: Duration,
    /// A transfer that moves less than [`Network::stall_bytes`] in this long is abandoned (a
    /// trickling peer): for another holder when there is one, else the download fails.
    pub stall_window: Duration,
    /// See [`Network::stall_window`].
    pub stall_bytes: u64,
    /// Size and disk limits.
    pub limits: Limits,
    /// The keys of the encrypted channel, on a private network: our holders are then asked
    /// only through it ([`channel_keys`]). `None` on an open network.
    pub keys: Option<ChannelKeys>,
}

/// The channel keys of the peer folder `dir`: `None` without a network key (an open network;
/// no identity is made then), else the key and this peer's identity (made if missing).
///
/// # Errors
/// A key or identity file that exists but cannot be used: never silently an open network.
pub fn channel_keys(dir: &Path) -> Result<Option<ChannelKeys>, TrustError> {
    let Some(key) = NetworkKey::load(dir)? else {
        return Ok(None);
    };
    let identity = Identity::load_or_create(dir)?;
    Ok(Some(ChannelKeys::new(&key, Arc::new(identity))))
}

impl Default for Network {
    fn default() -> Self {
        Network {
            bind: None,
            connect: shared::CONNECT_TIMEOUT,
            idle: shared::IO_IDLE_TIMEOUT,
            first_byte: FIRST_BYTE_TIMEOUT,
            legacy_end: shared::LEGACY_END_IDLE,
            stall_window: Duration::from_secs(10),
            stall_bytes: 64 * 1024,
            limits: Limits::default(),
            keys: None,
        }
    }
}

/// The error of a disk about to fill: `free` bytes left, `min_free` to be kept.
pub(crate) fn no_space(free: u64, min_free: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        format!("No space left on device for this download: {free} bytes free, {min_free} to be kept free (--min-free)"),
    )
}

/// How much a download may take: the largest content accepted and the free space to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest content accepted, in bytes: a content announced larger is refused, and no chunk
    /// of unknown length (legacy peers) may exceed a fifth of it.
    pub max_size: u64,
    /// Bytes that must stay free on the disk of `temp/`: checked before a download and while
    /// chunks arrive.
    pub min_free: u64,
}

/// Default of [`Limits::max_size`]: 64 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 30;

/// Default of [`Limits::min_free`]: 64 MiB.
pub const DEFAULT_MIN_FREE: u64 = 64 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: DEFAULT_MAX_SIZE,
            min_free: DEFAULT_MIN_FREE,
        }
    }
}

impl Limits {
    /// The longest chunk of the largest content accepted.
    pub fn max_chunk_len(&self) -> u64 {
        shared::chunk::chunk_len(self.max_size)
    }
}

/// Default of [`Network::first_byte`]: our chunk servers answer at once, from a local file.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(5);

impl Network {
    /// The source address for a connection to `holder`: `bind`, unless it is a loopback
    /// address and the holder is not (or the other way round), which could never connect.
    pub fn source_for(&self, holder: SocketAddr) -> Option<IpAddr> {
        self.bind
            .filter(|ip| ip.is_loopback() == holder.ip().is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_bind_is_used_only_towards_loopback_holders() {
        let net = Network {
            bind: Some(IpAddr::from([127, 0, 0, 3])),
            ..Network::default()
        };
        let local = SocketAddr::from(([127, 0, 0, 2], 5001));
        let remote = SocketAddr::from(([10, 77, 0, 11], 5001));
        assert_eq!(net.source_for(local), net.bind);
        assert_eq!(net.source_for(remote), None);
        let lan = Network {
            bind: Some(IpAddr::from([10, 77, 0, 12])),
            ..Network::default()
        };
        assert_eq!(lan.source_for(remote), lan.bind);
        assert_eq!(lan.source_for(local), None);
    }
}
