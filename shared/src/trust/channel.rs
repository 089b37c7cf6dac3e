//! The transfer channel of a private network: a Noise handshake keyed by the network key, an
//! identity proof each way, then encrypted frames carrying the unchanged request/response
//! protocol ([`SecureStream`]).
//!
//! What this module owns: the bytes on the wire from the client's first byte to the last frame
//! (magic, version, handshake, refusals, proofs, framing), and the errors they can end in. What
//! it does not: which requests are allowed (the chunk server's allow list), which holder is
//! expected (the downloader, from `tags.txt`), and the protocol carried inside (`connection`).
//!
//! # Format
//! ```text
//! client → server   "P2PS" 0x01  frame(Noise message 1: e, psk)      one write
//! server → client   frame(Noise message 2: e, ee)                    or frame(1 byte: refusal)
//! server → client   frame(encrypted: server Ed25519 public key (32) ‖ signature (64))
//! client → server   frame(encrypted: client Ed25519 public key (32) ‖ signature (64))
//! both ways         frame(encrypted request/response bytes)…
//! frame             u16 big-endian length ‖ that many bytes (at most 65535: 65519 of data + 16 of tag)
//! signature         Ed25519 over "p2p-lan transfer v1 server" (or "… client") ‖ handshake hash
//! refusal           1 = different network key, 2 = this peer has no network key,
//!                   3 = unsupported version; the server then closes
//! ```
//! Noise pattern `Noise_NNpsk0_25519_AESGCM_SHA256`, PSK [`NetworkKey::transfer_psk`],
//! prologue `"P2PS" 0x01` (so the version byte is authenticated too). Message 1 is already
//! encrypted under the PSK, so a server tells a wrong key from the first message; the
//! signatures over the handshake hash bind each peer's identity to this one session (the idea
//! of TLS 1.3's CertificateVerify), so no static Noise keys are needed and a member in the
//! middle cannot pass on another member's proof. `docs/PROTOCOL.md` ("Private networks: the
//! transfer channel") gives the reasons.
//!
//! Every handshake read and write is bounded by a deadline; after the handshake, the socket's
//! own timeouts (set by `connection`) bound each read and write. A malformed or forged frame
//! is an error (`InvalidData`), never a panic, and breaks the stream for good.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::identity::{self, Identity, PeerId, PUBLIC_KEY_BYTES, SIGNATURE_BYTES};
use super::key::NetworkKey;

/// First bytes a client of the secure channel sends. A plaintext request starts with `{` or
/// white space, so the server tells them apart by the first byte.
pub const MAGIC: [u8; 4] = *b"P2PS";

/// Version of the channel, sent after [`MAGIC`].
pub const VERSION: u8 = 1;

/// The Noise protocol of the channel. AES-GCM rather than ChaCha20-Poly1305: with AES-NI (most
/// x86 and ARMv8 CPUs) ring's AES-GCM is the faster, and the benchmark showed it.
pub const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";

/// Largest frame body: Noise's largest message.
pub const MAX_FRAME: usize = 65_535;

/// Bytes of authentication tag in each encrypted frame.
const TAG_LEN: usize = 16;

/// Largest plaintext of one encrypted frame.
pub const MAX_FRAME_PLAINTEXT: usize = MAX_FRAME - TAG_LEN;

/// What the server signs (followed by the handshake hash).
const SERVER_PROOF_CONTEXT: &[u8] = b"p2p-lan transfer v1 server";

/// What the client signs (followed by the handshake hash).
const CLIENT_PROOF_CONTEXT: &[u8] = b"p2p-lan transfer v1 client";

/// An identity proof: public key and signature.
const PROOF_LEN: usize = PUBLIC_KEY_BYTES + SIGNATURE_BYTES;

/// How long a refusing server waits for the client to close before closing itself, so its
/// refusal is read rather than destroyed by a reset.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// Whether a connection whose first byte is `first` opens the secure channel (anything else
/// is a plaintext request; a byte that starts neither fails as either).
pub fn opens_channel(first: u8) -> bool {
    first == MAGIC[0]
}

/// Why a server refused a handshake: the one byte of its refusal frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Noise message 1 did not decrypt: the client's network key is not the server's.
    DifferentKey = 1,
    /// The server has no network key (an open network) and cannot open the channel.
    NoKey = 2,
    /// The server does not speak the client's version of the channel.
    UnsupportedVersion = 3,
}

impl Refusal {
    /// The byte on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The refusal of a byte on the wire, if it is one.
    pub fn from_code(code: u8) -> Option<Refusal> {
        match code {
            1 => Some(Refusal::DifferentKey),
            2 => Some(Refusal::NoKey),
            3 => Some(Refusal::UnsupportedVersion),
            _ => None,
        }
    }
}

/// What one side of the channel needs: the network's transfer PSK and this peer's identity.
#[derive(Clone)]
pub struct ChannelKeys {
    psk: [u8; 32],
    identity: Arc<Identity>,
}

impl fmt::Debug for ChannelKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the PSK.
        write!(f, "ChannelKeys({})", self.identity.id())
    }
}

impl ChannelKeys {
    /// The keys of a member of the network of `key`, proving `identity`.
    pub fn new(key: &NetworkKey, identity: Arc<Identity>) -> ChannelKeys {
        ChannelKeys {
            psk: key.transfer_psk(),
            identity,
        }
    }

    /// The peer ID this side proves.
    pub fn id(&self) -> PeerId {
        self.identity.id()
    }

    fn handshake(&self, initiator: bool) -> Result<snow::HandshakeState, ChannelError> {
        let params: snow::params::NoiseParams = NOISE_PARAMS
            .parse()
            .map_err(|e| ChannelError::Crypto(format!("{e}")))?;
        let prologue = prologue();
        let builder = snow::Builder::new(params)
            .prologue(&prologue)
            .and_then(|b| b.psk(0, &self.psk))
            .map_err(|e| ChannelError::Crypto(format!("{e}")))?;
        let state = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        };
        state.map_err(|e| ChannelError::Crypto(format!("{e}")))
    }
}

fn prologue() -> [u8; 5] {
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], VERSION]
}

/// Why the channel could not be opened, or the handshake was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The two sides have different network keys (said by either side).
    #[error("different network key")]
    DifferentKey,
    /// Client side: the server has no network key (an open network).
    #[error("the peer has no network key (an open network)")]
    PeerHasNoKey,
    /// Client side: the server does not speak this version of the channel.
    #[error("the peer does not speak version {VERSION} of the secure channel")]
    VersionRefused,
    /// Server side: a client opened the channel, but this peer has no network key.
    #[error("a client opened the secure channel, but this peer has no network key")]
    NoKeyHere,
    /// Server side: the client's version is not ours.
    #[error("unsupported secure channel version {0}")]
    UnsupportedVersion(u8),
    /// The peer's identity proof does not verify.
    #[error("the peer's identity proof is invalid")]
    BadProof,
    /// Client side: the server proved another identity than the one expected.
    #[error("it proved to be {actual}, not {expected}")]
    WrongPeer {
        /// The ID that announced the content.
        expected: PeerId,
        /// The ID the server proved.
        actual: PeerId,
    },
    /// The bytes are not a handshake of ours.
    #[error("not a secure channel handshake: {0}")]
    Malformed(String),
    /// The handshake did not complete in time.
    #[error("no complete handshake within {0:?}")]
    Timeout(Duration),
    /// The peer closed the connection during the handshake.
    #[error("the peer closed the connection during the handshake")]
    Closed,
    /// The Noise library refused (never expected with our fixed parameters).
    #[error("secure channel: {0}")]
    Crypto(String),
    /// Another socket error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Bytes read from the socket and not yet taken as whole frames. Twice the largest frame, so
/// that after moving leftovers to the front a whole frame always fits.
struct FrameBuf {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// Where a whole frame's body lies in a [`FrameBuf`].
type FrameRange = std::ops::Range<usize>;

impl FrameBuf {
    fn new() -> FrameBuf {
        FrameBuf {
            buf: vec![0u8; 2 * (MAX_FRAME + 2)].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The whole frame at the front, if it has arrived.
    fn complete(&self) -> Option<FrameRange> {
        let pending = self.pending();
        let header = pending.get(..2)?;
        let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
        (pending.len() >= 2 + len).then(|| self.start + 2..self.start + 2 + len)
    }

    /// Takes the bytes up to `end` (the end of a frame, or of a fixed header).
    fn consume_to(&mut self, end: usize) {
        self.start = end.min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads what the socket has; `Ok(false)` at end of stream.
    fn fill(&mut self, from: &mut impl Read) -> io::Result<bool> {
        if self.buf.len() - self.end < MAX_FRAME + 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = from.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n > 0)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Handshake reads: more bytes into `incoming`, waiting no later than `deadline`.
fn fill_until(
    tcp: &mut TcpStream,
    incoming: &mut FrameBuf,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), ChannelError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ChannelError::Timeout(timeout));
        }
        tcp.set_read_timeout(Some(left))?;
        return match incoming.fill(tcp) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ChannelError::Closed),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => Err(ChannelError::Timeout(timeout)),
            Err(e) => Err(ChannelError::Io(e)),
        };
    }
}

/// Handshake reads: one whole frame's body.
fn read_frame_until(
    tcp: &mut TcpStream,
    incoming: &mut FrameBuf,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<u8>, ChannelError> {
    loop {
        if let Some(range) = incoming.complete() {
            let body = incoming.buf[range.clone()].to_vec();
            incoming.consume_to(range.end);
            return Ok(body);
        }
        fill_until(tcp, incoming, deadline, timeout)?;
    }
}

/// Handshake writes: all of `bytes` by `deadline`.
fn write_until(
    tcp: &mut TcpStream,
    bytes: &[u8],
    deadline: Instant,
    timeout: Duration,
) -> Result<(), ChannelError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ChannelError::Timeout(timeout));
    }
    tcp.set_write_timeout(Some(left))?;
    tcp.write_all(bytes).map_err(|e| {
        if is_timeout(&e) {
            ChannelError::Timeout(timeout)
        } else {
            ChannelError::Io(e)
        }
    })
}

/// Appends `body` as one frame.
fn push_frame(out: &mut Vec<u8>, body: &[u8]) -> Result<(), ChannelError> {
    let len = u16::try_from(body.len())
        .map_err(|_| ChannelError::Crypto(format!("frame of {} bytes", body.len())))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// The message a side signs: its context, then the handshake hash.
fn proof_message(context: &[u8], handshake_hash: &[u8]) -> Vec<u8> {
    [context, handshake_hash].concat()
}

/// This side's identity proof for the session of `handshake_hash`.
fn make_proof(identity: &Identity, context: &[u8], handshake_hash: &[u8]) -> [u8; PROOF_LEN] {
    let mut proof = [0u8; PROOF_LEN];
    proof[..PUBLIC_KEY_BYTES].copy_from_slice(identity.public());
    proof[PUBLIC_KEY_BYTES..]
        .copy_from_slice(&identity.sign(&proof_message(context, handshake_hash)));
    proof
}

/// The peer ID a proof proves, if it verifies.
fn check_proof(
    proof: &[u8],
    context: &[u8],
    handshake_hash: &[u8],
) -> Result<PeerId, ChannelError> {
    if proof.len() != PROOF_LEN {
        return Err(ChannelError::BadProof);
    }
    let mut public = [0u8; PUBLIC_KEY_BYTES];
    public.copy_from_slice(&proof[..PUBLIC_KEY_BYTES]);
    if identity::verify(
        &public,
        &proof_message(context, handshake_hash),
        &proof[PUBLIC_KEY_BYTES..],
    ) {
        Ok(PeerId::of(&public))
    } else {
        Err(ChannelError::BadProof)
    }
}

/// Client side: opens the channel on a connected `tcp` within `timeout`. `expected` is the ID
/// that announced the content (from `tags.txt`); a server proving another is refused.
///
/// # Errors
/// [`ChannelError`]: [`ChannelError::DifferentKey`], [`ChannelError::PeerHasNoKey`] and
/// [`ChannelError::WrongPeer`] are the ones a user must be told about.
pub fn connect(
    mut tcp: TcpStream,
    keys: &ChannelKeys,
    expected: Option<PeerId>,
    timeout: Duration,
) -> Result<SecureStream, ChannelError> {
    let deadline = Instant::now() + timeout;
    let mut noise = keys.handshake(true)?;
    let mut message = [0u8; 256];
    let n = noise
        .write_message(&[], &mut message)
        .map_err(|e| ChannelError::Crypto(format!("{e}")))?;
    let mut hello = prologue().to_vec();
    push_frame(&mut hello, &message[..n])?;
    // Nagle would hold the small handshake frames back.
    tcp.set_nodelay(true)?;
    write_until(&mut tcp, &hello, deadline, timeout)?;

    let mut incoming = FrameBuf::new();
    let reply = read_frame_until(&mut tcp, &mut incoming, deadline, timeout)?;
    if let [code] = reply[..] {
        return Err(match Refusal::from_code(code) {
            Some(Refusal::DifferentKey) => ChannelError::DifferentKey,
            Some(Refusal::NoKey) => ChannelError::PeerHasNoKey,
            Some(Refusal::UnsupportedVersion) => ChannelError::VersionRefused,
            None => ChannelError::Malformed(format!("unknown refusal {code}")),
        });
    }
    // A server with another key could only answer garbage: message 2 fails as a wrong key.
    noise
        .read_message(&reply, &mut message)
        .map_err(|_| ChannelError::DifferentKey)?;
    let hash = noise.get_handshake_hash().to_vec();
    let transport = noise
        .into_transport_mode()
        .map_err(|e| ChannelError::Crypto(format!("{e}")))?;
    let mut stream = SecureStream::new(tcp, transport, incoming);

    let proof = stream.read_frame_until(deadline, timeout)?;
    let server = check_proof(&proof, SERVER_PROOF_CONTEXT, &hash)?;
    if let Some(expected) = expected {
        if expected != server {
            return Err(ChannelError::WrongPeer {
                expected,
                actual: server,
            });
        }
    }
    stream.peer = server;
    stream.write_frame_until(
        &make_proof(&keys.identity, CLIENT_PROOF_CONTEXT, &hash),
        deadline,
        timeout,
    )?;
    Ok(stream)
}

/// Server side: opens the channel on an accepted `tcp` whose first byte
/// [`opens_channel`], by `deadline`. Without `keys` (an open network) the client is refused
/// with [`Refusal::NoKey`]; with a wrong key, with [`Refusal::DifferentKey`]. A refusal is sent
/// and the connection half-closed before this returns its error.
///
/// # Errors
/// [`ChannelError`]; the stream is then of no further use.
pub fn accept(
    mut tcp: TcpStream,
    keys: Option<&ChannelKeys>,
    deadline: Instant,
) -> Result<SecureStream, ChannelError> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    let mut incoming = FrameBuf::new();
    while incoming.pending().len() < MAGIC.len() + 1 {
        fill_until(&mut tcp, &mut incoming, deadline, timeout)?;
    }
    let head = &incoming.pending()[..=MAGIC.len()];
    if head[..MAGIC.len()] != MAGIC {
        return Err(ChannelError::Malformed(format!(
            "starts with {:?}",
            String::from_utf8_lossy(&head[..MAGIC.len()])
        )));
    }
    let version = head[MAGIC.len()];
    incoming.consume_to(incoming.start + MAGIC.len() + 1);
    if version != VERSION {
        refuse(tcp, Refusal::UnsupportedVersion, deadline);
        return Err(ChannelError::UnsupportedVersion(version));
    }
    let Some(keys) = keys else {
        refuse(tcp, Refusal::NoKey, deadline);
        return Err(ChannelError::NoKeyHere);
    };
    let hello = read_frame_until(&mut tcp, &mut incoming, deadline, timeout)?;
    let mut noise = keys.handshake(false)?;
    let mut message = [0u8; 256];
    if noise.read_message(&hello, &mut message).is_err() {
        refuse(tcp, Refusal::DifferentKey, deadline);
        return Err(ChannelError::DifferentKey);
    }
    let n = noise
        .write_message(&[], &mut message)
        .map_err(|e| ChannelError::Crypto(format!("{e}")))?;
    let mut reply = Vec::with_capacity(n + 2);
    push_frame(&mut reply, &message[..n])?;
    tcp.set_nodelay(true)?;
    write_until(&mut tcp, &reply, deadline, timeout)?;
    let hash = noise.get_handshake_hash().to_vec();
    let transport = noise
        .into_transport_mode()
        .map_err(|e| ChannelError::Crypto(format!("{e}")))?;
    let mut stream = SecureStream::new(tcp, transport, incoming);
    stream.write_frame_until(
        &make_proof(&keys.identity, SERVER_PROOF_CONTEXT, &hash),
        deadline,
        timeout,
    )?;
    let proof = stream.read_frame_until(deadline, timeout)?;
    stream.peer = check_proof(&proof, CLIENT_PROOF_CONTEXT, &hash)?;
    Ok(stream)
}

/// Sends a refusal frame, half-closes, and waits briefly for the client to close, reading what
/// it still sends: closing with unread bytes would reset the connection and could destroy the
/// refusal before the client reads it.
fn refuse(mut tcp: TcpStream, refusal: Refusal, deadline: Instant) {
    let end = deadline.min(Instant::now() + REFUSAL_LINGER);
    if write_until(&mut tcp, &[0, 1, refusal.code()], end, REFUSAL_LINGER).is_err() {
        return;
    }
    let _ = tcp.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || tcp.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match tcp.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// An open channel: `Read` gives the peer's plaintext, `Write` seals into frames of at most
/// [`MAX_FRAME_PLAINTEXT`] bytes (a frame is sent once full, or on `flush`). Reads and writes
/// wait as long as the socket's timeouts allow and keep partial frames across a timeout, so a
/// caller may retry; a frame that fails authentication breaks the stream.
pub struct SecureStream {
    tcp: TcpStream,
    noise: snow::TransportState,
    /// The ID the other side proved.
    peer: PeerId,
    /// Ciphertext read and not yet decrypted.
    incoming: FrameBuf,
    /// Decrypted bytes not yet read: `plain_in[plain_pos..plain_len]`.
    plain_in: Box<[u8]>,
    plain_pos: usize,
    plain_len: usize,
    /// Plaintext written and not yet sealed.
    plain_out: Vec<u8>,
    /// Sealed frames not yet (wholly) written: `cipher_out[cipher_pos..]`.
    cipher_out: Vec<u8>,
    cipher_pos: usize,
    /// Set when a frame failed authentication: nothing more is read.
    broken: bool,
}

impl fmt::Debug for SecureStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureStream")
            .field("tcp", &self.tcp)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

impl SecureStream {
    fn new(tcp: TcpStream, noise: snow::TransportState, incoming: FrameBuf) -> SecureStream {
        SecureStream {
            tcp,
            noise,
            // Replaced by the proved ID before the stream is handed out.
            peer: PeerId::of(&[0u8; PUBLIC_KEY_BYTES]),
            incoming,
            plain_in: vec![0u8; MAX_FRAME_PLAINTEXT].into_boxed_slice(),
            plain_pos: 0,
            plain_len: 0,
            plain_out: Vec::with_capacity(MAX_FRAME_PLAINTEXT),
            cipher_out: Vec::with_capacity(MAX_FRAME + 2),
            cipher_pos: 0,
            broken: false,
        }
    }

    /// The peer ID the other side proved in the handshake.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// The socket, for its options (timeouts, shutdown).
    pub fn get_ref(&self) -> &TcpStream {
        &self.tcp
    }

    /// Decrypts the whole frame at the front of `incoming` into `out` (at least as long as its
    /// plaintext); returns the plaintext's length.
    fn open_frame(&mut self, range: FrameRange, to_caller: Option<&mut [u8]>) -> io::Result<usize> {
        if range.len() < TAG_LEN {
            self.broken = true;
            return Err(invalid("secure channel: a frame shorter than its tag"));
        }
        let frame = &self.incoming.buf[range.clone()];
        let result = match to_caller {
            Some(out) => self.noise.read_message(frame, out),
            None => self.noise.read_message(frame, &mut self.plain_in),
        };
        self.incoming.consume_to(range.end);
        result.map_err(|_| {
            self.broken = true;
            invalid("secure channel: a frame failed authentication (forged or corrupted)")
        })
    }

    /// Handshake: one whole encrypted frame's plaintext by `deadline`.
    fn read_frame_until(
        &mut self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Vec<u8>, ChannelError> {
        loop {
            if let Some(range) = self.incoming.complete() {
                let n = self
                    .open_frame(range, None)
                    .map_err(|_| ChannelError::BadProof)?;
                return Ok(self.plain_in[..n].to_vec());
            }
            fill_until(&mut self.tcp, &mut self.incoming, deadline, timeout)?;
        }
    }

    /// Handshake: `plaintext` as one encrypted frame, sent by `deadline`.
    fn write_frame_until(
        &mut self,
        plaintext: &[u8],
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), ChannelError> {
        self.seal(plaintext)?;
        let frame = std::mem::take(&mut self.cipher_out);
        let result = write_until(&mut self.tcp, &frame, deadline, timeout);
        self.cipher_out = frame;
        self.cipher_out.clear();
        result
    }

    /// Seals `plaintext` (at most [`MAX_FRAME_PLAINTEXT`]) as one frame after `cipher_out`.
    fn seal(&mut self, plaintext: &[u8]) -> io::Result<()> {
        let len = plaintext.len() + TAG_LEN;
        let header = u16::try_from(len).map_err(|_| invalid("secure channel: frame too long"))?;
        let at = self.cipher_out.len();
        self.cipher_out.extend_from_slice(&header.to_be_bytes());
        self.cipher_out.resize(at + 2 + len, 0);
        self.noise
            .write_message(plaintext, &mut self.cipher_out[at + 2..])
            .map_err(|e| io::Error::other(format!("secure channel: cannot seal a frame: {e}")))?;
        Ok(())
    }

    /// Seals the buffered plaintext, if any.
    fn seal_buffered(&mut self) -> io::Result<()> {
        if self.plain_out.is_empty() {
            return Ok(());
        }
        let plain = std::mem::take(&mut self.plain_out);
        let result = self.seal(&plain);
        self.plain_out = plain;
        self.plain_out.clear();
        result
    }

    /// Writes the sealed frames not yet written, waiting at most the socket's write timeout in
    /// all (as one write to a plain socket does), however slowly the peer takes them: a peer
    /// reading a byte now and then cannot hold a writer for ever. On a timeout what was
    /// written is remembered, and the next call continues.
    fn push(&mut self) -> io::Result<()> {
        let mut first: Option<(Instant, Option<Duration>)> = None;
        let mut restore = None;
        let result = self.push_within(&mut first, &mut restore);
        if let Some(timeout) = restore {
            let _ = self.tcp.set_write_timeout(timeout);
        }
        result
    }

    fn push_within(
        &mut self,
        first: &mut Option<(Instant, Option<Duration>)>,
        restore: &mut Option<Option<Duration>>,
    ) -> io::Result<()> {
        while self.cipher_pos < self.cipher_out.len() {
            match *first {
                None => *first = Some((Instant::now(), self.tcp.write_timeout()?)),
                Some((started, Some(timeout))) => {
                    let left = timeout.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "secure channel: the peer did not take a whole frame within the \
                             write timeout",
                        ));
                    }
                    restore.get_or_insert(Some(timeout));
                    self.tcp.set_write_timeout(Some(left))?;
                }
                Some((_, None)) => {}
            }
            match self.tcp.write(&self.cipher_out[self.cipher_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.cipher_pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.cipher_out.clear();
        self.cipher_pos = 0;
        Ok(())
    }
}

impl Read for SecureStream {
    /// Reads decrypted bytes, waiting for a whole frame. The whole call waits at most the
    /// socket's read timeout, as a plain socket's read does, however the frame's bytes trickle
    /// in: a peer sending a byte now and then cannot stretch a deadline the caller keeps by
    /// setting that timeout.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        // When the first wait began and the socket's timeout then; the timeout to restore if
        // a later wait shortened it.
        let mut waits: Option<(Instant, Option<Duration>)> = None;
        let mut restore = None;
        let result = self.read_frames(out, &mut waits, &mut restore);
        if let Some(timeout) = restore {
            let _ = self.tcp.set_read_timeout(timeout);
        }
        result
    }
}

impl SecureStream {
    fn read_frames(
        &mut self,
        out: &mut [u8],
        waits: &mut Option<(Instant, Option<Duration>)>,
        restore: &mut Option<Option<Duration>>,
    ) -> io::Result<usize> {
        loop {
            if self.plain_pos < self.plain_len {
                let n = out.len().min(self.plain_len - self.plain_pos);
                out[..n].copy_from_slice(&self.plain_in[self.plain_pos..self.plain_pos + n]);
                self.plain_pos += n;
                return Ok(n);
            }
            if self.broken {
                return Err(invalid("secure channel: broken by an earlier bad frame"));
            }
            if let Some(range) = self.incoming.complete() {
                // A caller with room for the whole frame gets it decrypted in place: one copy
                // less on the bulk path.
                if out.len() >= range.len().saturating_sub(TAG_LEN) {
                    let n = self.open_frame(range, Some(out))?;
                    if n > 0 {
                        return Ok(n);
                    }
                } else {
                    self.plain_len = self.open_frame(range, None)?;
                    self.plain_pos = 0;
                }
                continue;
            }
            match *waits {
                None => *waits = Some((Instant::now(), self.tcp.read_timeout()?)),
                Some((first, Some(timeout))) => {
                    let left = timeout.saturating_sub(first.elapsed());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "secure channel: no whole frame within the read timeout",
                        ));
                    }
                    restore.get_or_insert(Some(timeout));
                    self.tcp.set_read_timeout(Some(left))?;
                }
                Some((_, None)) => {}
            }
            if !self.incoming.fill(&mut self.tcp)? {
                return if self.incoming.pending().is_empty() {
                    Ok(0)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "secure channel: closed in the middle of a frame",
                    ))
                };
            }
        }
    }
}

impl Write for SecureStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.push()?;
        if data.is_empty() {
            return Ok(0);
        }
        let taken = if self.plain_out.is_empty() && data.len() >= MAX_FRAME_PLAINTEXT {
            // A whole frame's worth: sealed straight from the caller's buffer.
            self.seal(&data[..MAX_FRAME_PLAINTEXT])?;
            MAX_FRAME_PLAINTEXT
        } else {
            let n = data.len().min(MAX_FRAME_PLAINTEXT - self.plain_out.len());
            self.plain_out.extend_from_slice(&data[..n]);
            if self.plain_out.len() == MAX_FRAME_PLAINTEXT {
                self.seal_buffered()?;
            }
            n
        };
        // The bytes are taken: a failure to send them now is reported by the next call, which
        // tries again first.
        let _ = self.push();
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push()?;
        self.seal_buffered()?;
        self.push()?;
        self.tcp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn keys(phrase_seed: u8, id_seed: u8) -> ChannelKeys {
        ChannelKeys::new(
            &NetworkKey::from_bytes([phrase_seed; 32]),
            Arc::new(Identity::from_seed(&[id_seed; 32])),
        )
    }

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// Runs the server side of a handshake in a thread.
    fn serve(
        server: TcpStream,
        keys: Option<ChannelKeys>,
    ) -> thread::JoinHandle<Result<SecureStream, ChannelError>> {
        thread::spawn(move || accept(server, keys.as_ref(), Instant::now() + TIMEOUT))
    }

    #[test]
    fn the_noise_parameters_are_accepted() {
        assert!(keys(1, 1).handshake(true).is_ok());
        assert!(keys(1, 1).handshake(false).is_ok());
    }

    #[test]
    fn both_sides_learn_each_other_and_bytes_cross_both_ways() {
        let (client, server) = pair();
        let (client_keys, server_keys) = (keys(7, 1), keys(7, 2));
        let server_id = server_keys.id();
        let client_id = client_keys.id();
        let served = thread::spawn(move || {
            let mut stream = accept(server, Some(&server_keys), Instant::now() + TIMEOUT)?;
            let mut request = [0u8; 5];
            stream.read_exact(&mut request)?;
            assert_eq!(&request, b"hello");
            stream.write_all(b"world")?;
            stream.flush()?;
            Ok::<_, ChannelError>(stream.peer_id())
        });
        let mut stream = connect(client, &client_keys, Some(server_id), TIMEOUT).unwrap();
        assert_eq!(stream.peer_id(), server_id);
        stream.write_all(b"hello").unwrap();
        stream.flush().unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        assert_eq!(answer, b"world");
        assert_eq!(served.join().unwrap().unwrap(), client_id);
    }

    #[test]
    fn a_large_transfer_arrives_whole_in_writes_and_reads_of_any_size() {
        let (client, server) = pair();
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let served = thread::spawn(move || {
            let mut stream = accept(server, Some(&keys(3, 2)), Instant::now() + TIMEOUT).unwrap();
            // Odd sizes: partial frames, frames filled across writes, whole-frame writes.
            let mut rest = &data[..];
            for size in [1, 7, 65_518, 65_519, 65_520, 200_000, 3].iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let n = (*size).min(rest.len());
                stream.write_all(&rest[..n]).unwrap();
                rest = &rest[n..];
            }
            stream.flush().unwrap();
        });
        let mut stream = connect(client, &keys(3, 1), None, TIMEOUT).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 100_000];
        for size in [1usize, 13, 65_519, 100_000].iter().cycle() {
            match stream.read(&mut buf[..*size]).unwrap() {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        served.join().unwrap();
        assert!(got == expected, "{} bytes of {}", got.len(), expected.len());
    }

    #[test]
    fn a_wrong_key_is_told_to_both_sides() {
        let (client, server) = pair();
        let served = serve(server, Some(keys(1, 2)));
        let result = connect(client, &keys(9, 1), None, TIMEOUT);
        assert!(
            matches!(result, Err(ChannelError::DifferentKey)),
            "{result:?}"
        );
        assert!(matches!(
            served.join().unwrap(),
            Err(ChannelError::DifferentKey)
        ));
    }

    #[test]
    fn a_server_with_a_wrong_key_fails_message_2() {
        // A server that answers message 1 whatever it holds (ours refuses first): the client
        // still sees a wrong key, never a channel.
        let (client, mut server) = pair();
        let answering = thread::spawn(move || {
            let mut incoming = FrameBuf::new();
            let deadline = Instant::now() + TIMEOUT;
            while incoming.pending().len() < 5 {
                fill_until(&mut server, &mut incoming, deadline, TIMEOUT).unwrap();
            }
            incoming.consume_to(5);
            let hello = read_frame_until(&mut server, &mut incoming, deadline, TIMEOUT).unwrap();
            let mut noise = keys(9, 2).handshake(false).unwrap();
            let mut message = [0u8; 256];
            // Decrypting fails with this key; answer with a well-formed message 2 regardless,
            // from a fresh responder that skipped message 1's check.
            let _ = noise.read_message(&hello, &mut message);
            let fake = [0x42u8; 48];
            let mut reply = Vec::new();
            push_frame(&mut reply, &fake).unwrap();
            server.write_all(&reply).unwrap();
            server
        });
        let result = connect(client, &keys(1, 1), None, TIMEOUT);
        assert!(
            matches!(result, Err(ChannelError::DifferentKey)),
            "{result:?}"
        );
        drop(answering.join());
    }

    #[test]
    fn an_open_server_refuses_with_no_key() {
        let (client, server) = pair();
        let served = serve(server, None);
        let result = connect(client, &keys(1, 1), None, TIMEOUT);
        assert!(
            matches!(result, Err(ChannelError::PeerHasNoKey)),
            "{result:?}"
        );
        assert!(matches!(
            served.join().unwrap(),
            Err(ChannelError::NoKeyHere)
        ));
    }

    #[test]
    fn another_version_is_refused_with_code_3() {
        let (mut client, server) = pair();
        let served = serve(server, Some(keys(1, 2)));
        client.write_all(b"P2PS\x02\x00\x00").unwrap();
        client.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).unwrap();
        assert_eq!(answer, [0, 1, Refusal::UnsupportedVersion.code()]);
        assert!(matches!(
            served.join().unwrap(),
            Err(ChannelError::UnsupportedVersion(2))
        ));
        for code in 1..=3 {
            assert_eq!(Refusal::from_code(code).unwrap().code(), code);
        }
        assert_eq!(Refusal::from_code(0), None);
        assert_eq!(Refusal::from_code(4), None);
    }

    #[test]
    fn a_server_proving_another_id_is_refused() {
        let (client, server) = pair();
        let served = serve(server, Some(keys(1, 2)));
        let expected = keys(1, 3).id();
        let result = connect(client, &keys(1, 1), Some(expected), TIMEOUT);
        match result {
            Err(ChannelError::WrongPeer {
                expected: e,
                actual,
            }) => {
                assert_eq!(e, expected);
                assert_eq!(actual, keys(1, 2).id());
            }
            other => panic!("{other:?}"),
        }
        // The server never got the client's proof.
        assert!(served.join().unwrap().is_err());
    }

    #[test]
    fn proofs_are_bound_to_their_session_and_side() {
        let id = Identity::from_seed(&[5; 32]);
        let proof = make_proof(&id, SERVER_PROOF_CONTEXT, b"hash one");
        assert_eq!(
            check_proof(&proof, SERVER_PROOF_CONTEXT, b"hash one").unwrap(),
            id.id()
        );
        assert!(check_proof(&proof, SERVER_PROOF_CONTEXT, b"hash two").is_err());
        assert!(check_proof(&proof, CLIENT_PROOF_CONTEXT, b"hash one").is_err());
        assert!(check_proof(&proof[..95], SERVER_PROOF_CONTEXT, b"hash one").is_err());
        let mut forged = proof;
        forged[0] ^= 1;
        assert!(check_proof(&forged, SERVER_PROOF_CONTEXT, b"hash one").is_err());
    }

    #[test]
    fn garbage_and_silence_end_the_handshake_without_hanging() {
        // Garbage after the magic: a frame that is no message 1.
        let (mut client, server) = pair();
        let served = serve(server, Some(keys(1, 2)));
        client.write_all(b"P2PS\x01\x00\x05hello").unwrap();
        assert!(matches!(
            served.join().unwrap(),
            Err(ChannelError::DifferentKey)
        ));
        // Not our magic.
        let (mut client, server) = pair();
        let served = serve(server, Some(keys(1, 2)));
        client.write_all(b"PUT / HTTP").unwrap();
        assert!(matches!(
            served.join().unwrap(),
            Err(ChannelError::Malformed(_))
        ));
        // Closed half-way through message 1.
        let (mut client, server) = pair();
        let served = serve(server, Some(keys(1, 2)));
        client.write_all(b"P2PS\x01\x00\x30abc").unwrap();
        drop(client);
        assert!(matches!(served.join().unwrap(), Err(ChannelError::Closed)));
        // Silence: the deadline ends it.
        let (_client, server) = pair();
        let started = Instant::now();
        let result = accept(
            server,
            Some(&keys(1, 2)),
            started + Duration::from_millis(200),
        );
        assert!(
            matches!(result, Err(ChannelError::Timeout(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        // A silent server: the client's timeout ends it.
        let (client, _server) = pair();
        let started = Instant::now();
        let result = connect(client, &keys(1, 1), None, Duration::from_millis(200));
        assert!(
            matches!(result, Err(ChannelError::Timeout(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    /// An open channel whose server side is driven by the test through the raw socket.
    fn open_then_raw() -> (SecureStream, TcpStream) {
        let (client, server) = pair();
        let raw = server.try_clone().unwrap();
        let served = serve(server, Some(keys(1, 2)));
        let stream = connect(client, &keys(1, 1), None, TIMEOUT).unwrap();
        // Keep the server's channel alive (its socket is `raw` too) but silent.
        let server_side = served.join().unwrap().unwrap();
        std::mem::forget(server_side);
        (stream, raw)
    }

    #[test]
    fn forged_truncated_and_short_frames_are_errors() {
        for bad in [
            &b"\x00\x20not a real frame, 32 bytes long!"[..],
            b"\x00\x05short",
            b"\x00\x00",
        ] {
            let (mut stream, mut raw) = open_then_raw();
            raw.write_all(bad).unwrap();
            let mut buf = [0u8; 100];
            let err = stream.read(&mut buf).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}");
            // Broken for good.
            assert!(stream.read(&mut buf).is_err());
        }
        // Closed in the middle of a frame.
        let (mut stream, mut raw) = open_then_raw();
        raw.write_all(b"\x01\x00abc").unwrap();
        raw.shutdown(Shutdown::Write).unwrap();
        let err = stream.read(&mut [0u8; 10]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_frame_trickling_in_cannot_stretch_one_read_past_the_timeout() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (client, server) = pair();
        let mut raw = client.try_clone().unwrap();
        let served = thread::spawn(move || {
            accept(server, Some(&keys(1, 2)), Instant::now() + TIMEOUT).unwrap()
        });
        let mut stream = connect(client, &keys(1, 1), None, TIMEOUT).unwrap();
        let mut server = served.join().unwrap();
        stream.seal(&[7u8; 40]).unwrap();
        let frame = std::mem::take(&mut stream.cipher_out);
        let all_sent = Arc::new(AtomicBool::new(false));
        let trickle = {
            let all_sent = Arc::clone(&all_sent);
            thread::spawn(move || {
                // Each byte well within the 300 ms timeout; the whole frame takes 5.8 s.
                for byte in frame {
                    if raw.write_all(&[byte]).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
                all_sent.store(true, Ordering::SeqCst);
            })
        };
        server
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let err = server.read(&mut [0u8; 100]).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{err}"
        );
        assert!(
            !all_sent.load(Ordering::SeqCst),
            "the read waited for the whole trickle"
        );
        // The caller's timeout is back.
        assert_eq!(
            server.get_ref().read_timeout().unwrap(),
            Some(Duration::from_millis(300))
        );
        drop(server);
        trickle.join().unwrap();
    }

    #[test]
    fn a_peer_that_takes_nothing_makes_writes_time_out_and_keeps_the_timeout() {
        let (client, server) = pair();
        let served = thread::spawn(move || {
            accept(server, Some(&keys(1, 2)), Instant::now() + TIMEOUT).unwrap()
        });
        let _client = connect(client, &keys(1, 1), None, TIMEOUT).unwrap();
        let mut server = served.join().unwrap();
        let timeout = Some(Duration::from_millis(300));
        server.get_ref().set_write_timeout(timeout).unwrap();
        // Far more than the socket buffers hold.
        let block = vec![1u8; 1 << 20];
        let err = (0..256)
            .find_map(|_| server.write_all(&block).err())
            .expect("a write times out");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{err}"
        );
        assert_eq!(server.get_ref().write_timeout().unwrap(), timeout);
    }

    #[test]
    fn a_read_timeout_mid_frame_keeps_what_arrived() {
        let (client, server) = pair();
        let mut raw = client.try_clone().unwrap();
        let served = thread::spawn(move || {
            let mut stream = accept(server, Some(&keys(1, 2)), Instant::now() + TIMEOUT).unwrap();
            stream
                .get_ref()
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut buf = [0u8; 10];
            // Half a frame, then a timeout: an error the caller may retry.
            let first = stream.read(&mut buf);
            let kind = first.unwrap_err().kind();
            assert!(matches!(
                kind,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ));
            stream
                .get_ref()
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream.read_exact(&mut buf).unwrap();
            buf
        });
        let mut stream = connect(client, &keys(1, 1), None, TIMEOUT).unwrap();
        // Seal one frame, send half, wait, send the rest.
        stream.seal(b"0123456789").unwrap();
        let frame = std::mem::take(&mut stream.cipher_out);
        raw.write_all(&frame[..10]).unwrap();
        thread::sleep(Duration::from_millis(300));
        raw.write_all(&frame[10..]).unwrap();
        assert_eq!(&served.join().unwrap(), b"0123456789");
    }
}
