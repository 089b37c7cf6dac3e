//! What `--json` prints: the output shapes of `list` (and `find`), `peers`, `get` and
//! `history`, one dedicated serde struct per shape. They are a public contract for scripts (documented with examples in
//! `docs/JSON.md`), kept apart from the internal types so that a refactoring of the catalog or
//! the history cannot change them by accident.
//!
//! Names and users are printed as they are (JSON escapes every control character), not
//! [`terminal_safe`](shared::text::terminal_safe)d: a script gets the real name.

use std::io::Write;

use serde::Serialize;
use shared::tags::Proto;

use crate::catalog::{Holder, Target};
use crate::download::DownloadedFile;
use crate::error::Error;
use crate::history::Entry;
use crate::peer_view::PeerView;
use crate::wording::write_out;

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// For people: tables and sentences.
    #[default]
    Text,
    /// For scripts: one JSON value on stdout (`--json`).
    Json,
}

impl Format {
    /// [`Format::Json`] when `json`, else [`Format::Text`].
    pub fn json_if(json: bool) -> Format {
        if json {
            Format::Json
        } else {
            Format::Text
        }
    }
}

/// One content on offer, as `list --json` prints it (an array of these).
#[derive(Debug, Serialize)]
pub struct ListedContent {
    /// Its number in the listing (what `get NUMBER` takes), counted before any filtering.
    pub number: usize,
    /// The content (file) name.
    pub name: String,
    /// Size in bytes; `null` when only legacy peers announce it.
    pub size: Option<u64>,
    /// SHA-256 of the whole file in hex; `null` when only legacy peers announce it.
    pub sha256: Option<String>,
    /// Whether the download can be verified (a SHA-256 is known).
    pub verified: bool,
    /// The chunk numbers (1 to 5) some holder has, ascending.
    pub chunks: Vec<u8>,
    /// Whether all five chunks are available.
    pub complete: bool,
    /// Who holds it.
    pub holders: Vec<ListedHolder>,
}

/// One holder of a listed content.
#[derive(Debug, Serialize)]
pub struct ListedHolder {
    /// Its username.
    pub user: String,
    /// Its chunk server, `IP:PORT`.
    pub address: String,
    /// `"p2p"` or `"legacy"`.
    pub protocol: &'static str,
    /// The chunk numbers it announced.
    pub chunks: Vec<u8>,
    /// On a private network, its peer ID (`ABCD-EFGH-IJKL-MNOP`); `null` on an open network
    /// and for legacy peers.
    pub peer_id: Option<String>,
    /// Whether it announced under a username pinned to another peer ID (listed apart).
    pub impostor: bool,
}

/// One peer heard, as `peers --json` prints it (an array of these, sorted by user, then
/// address).
#[derive(Debug, Serialize)]
pub struct ListedPeer {
    /// Its username.
    pub user: String,
    /// On a private network, its peer ID (`ABCD-EFGH-IJKL-MNOP`); `null` on an open network
    /// and for legacy peers.
    pub peer_id: Option<String>,
    /// Whether it announced under a username pinned to another peer ID (listed apart).
    pub impostor: bool,

    /// Its chunk server, `IP:PORT`.
    pub address: String,
    /// `"p2p"` or `"legacy"`.
    pub protocol: &'static str,
    /// The version of our protocol it speaks; `null` for a legacy peer.
    pub version: Option<u32>,
    /// How many different files (name and digest) it offers.
    pub files: usize,
    /// When it was last heard (RFC 3339, UTC).
    pub last_seen: String,
    /// Its announce interval in seconds.
    pub interval: u64,
    /// Whether its chunk server answered just now (ours: sent a manifest; legacy: accepted a
    /// connection), within 500 ms.
    pub answers: bool,
}

/// The result `get --json` prints on success.
#[derive(Debug, Serialize)]
pub struct GetSuccess {
    /// Always `true`.
    pub ok: bool,
    /// The content name.
    pub name: String,
    /// Where the file is.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256 in hex.
    pub sha256: String,
    /// Whether every chunk and the whole file were checked against the announced digest.
    pub verified: bool,
    /// Whether an identical file was already in `downloads/` (nothing was fetched).
    pub already_present: bool,
    /// `user@IP:PORT` of every holder that sent a chunk, sorted.
    pub sources: Vec<String>,
}

/// The result `get --json` prints on failure (the exit status is not 0 either).
#[derive(Debug, Serialize)]
pub struct GetFailure {
    /// Always `false`.
    pub ok: bool,
    /// The name or number asked for.
    pub name: String,
    /// The one-line reason, as on stderr.
    pub error: String,
    /// Whether the download was stopped by Ctrl-C or SIGTERM.
    pub cancelled: bool,
}

/// One past download, as `history --json` prints it (an array of these, oldest first).
#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    /// When it ended, as logged (RFC 3339, UTC).
    pub time: String,
    /// The content name.
    pub name: String,
    /// `"ok"`, `"failed"` or `"cancelled"`; `null` for a word the log should not hold.
    pub outcome: Option<&'static str>,
    /// Size of the file in bytes (0 when it failed).
    pub size: u64,
    /// Whether it was verified.
    pub verified: bool,
    /// Where the file went; `null` when it did not complete.
    pub path: Option<String>,
    /// Chunks received per holder.
    pub sources: Vec<HistorySource>,
    /// Chunk requests that failed on the way.
    pub failed_attempts: usize,
    /// For a subscription's update: where the replaced version is kept (`null` when there was
    /// none); absent for other downloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Option<String>>,
}

/// Chunks one holder sent during a past download.
#[derive(Debug, Serialize)]
pub struct HistorySource {
    /// `user@IP:PORT`.
    pub holder: String,
    /// How many chunks it sent.
    pub chunks: usize,
}

impl ListedContent {
    /// The listing entry of `target`, number `number`.
    pub fn new(number: usize, target: &Target) -> ListedContent {
        let available = target.available();
        ListedContent {
            number,
            name: target.name.clone(),
            size: target.size,
            sha256: target.sha256.map(|d| d.to_string()),
            verified: target.sha256.is_some(),
            chunks: available.indexes().collect(),
            complete: available.is_complete(),
            holders: target.holders.iter().map(ListedHolder::new).collect(),
        }
    }
}

impl ListedPeer {
    /// The JSON form of a peer seen by `peers`.
    pub fn new(peer: &PeerView) -> ListedPeer {
        ListedPeer {
            user: peer.user.clone(),
            peer_id: peer.id.map(|id| id.to_string()),
            impostor: peer.impostor,
            address: peer.addr.to_string(),
            protocol: protocol_word(peer.proto),
            version: match peer.proto {
                Proto::Legacy => None,
                Proto::P2p(v) => Some(v),
            },
            files: peer.files,
            last_seen: peer
                .last_seen
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            interval: peer.interval,
            answers: peer.answers.unwrap_or(false),
        }
    }
}

/// `"p2p"` or `"legacy"`, as every shape names a protocol.
fn protocol_word(proto: Proto) -> &'static str {
    match proto {
        Proto::Legacy => "legacy",
        Proto::P2p(_) => "p2p",
    }
}

impl ListedHolder {
    fn new(holder: &Holder) -> ListedHolder {
        ListedHolder {
            user: holder.user.clone(),
            address: holder.addr.to_string(),
            protocol: protocol_word(holder.proto),
            chunks: holder.chunks.indexes().collect(),
            peer_id: holder.id.map(|id| id.to_string()),
            impostor: holder.impostor,
        }
    }
}

impl GetSuccess {
    /// The result of downloading `name` into `file`.
    pub fn new(name: &str, file: &DownloadedFile) -> GetSuccess {
        GetSuccess {
            ok: true,
            name: name.to_owned(),
            path: file.path.display().to_string(),
            size: file.size,
            sha256: file.sha256.to_string(),
            verified: file.verified,
            already_present: file.already_present,
            sources: file.sources.iter().cloned().collect(),
        }
    }
}

impl GetFailure {
    /// The failure of `get NAME`: `error` with its causes, as one line.
    pub fn new(name: &str, error: &Error) -> GetFailure {
        GetFailure {
            ok: false,
            name: name.to_owned(),
            error: shared::logging::describe_error(error),
            cancelled: error.is_cancelled(),
        }
    }
}

impl HistoryEntry {
    /// The JSON form of a history entry.
    pub fn new(entry: &Entry) -> HistoryEntry {
        HistoryEntry {
            time: entry.time.clone(),
            name: entry.content.clone(),
            outcome: entry.outcome.map(shared::events::Outcome::as_str),
            size: entry.bytes,
            verified: entry.verified,
            path: Some(entry.path.clone()).filter(|p| p != "-"),
            sources: entry
                .sources
                .iter()
                .map(|(holder, &chunks)| HistorySource {
                    holder: holder.clone(),
                    chunks,
                })
                .collect(),
            failed_attempts: entry.failed_attempts,
            replaced: entry
                .replaced
                .as_ref()
                .map(|kept| (kept != "-").then(|| kept.clone())),
        }
    }
}

/// Writes `value` as one line of JSON.
///
/// # Errors
/// When `out` cannot be written.
pub fn write_json(out: &mut dyn Write, value: &impl Serialize) -> Result<(), Error> {
    // Serializing these plain structs cannot fail: strings, numbers, booleans and arrays.
    let text = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    write_out(out, &format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    use shared::chunk::ChunkSet;
    use shared::digest::Digest;

    #[test]
    fn a_listed_content_carries_its_holders_and_chunks() {
        let target = Target {
            name: "a\u{1b}b.txt".into(),
            sha256: Some(Digest::of(b"x")),
            size: Some(10),
            holders: vec![Holder {
                user: "alice".into(),
                addr: SocketAddr::from(([127, 0, 0, 2], 5001)),
                proto: Proto::P2p(1),
                chunks: ChunkSet::parse("12-4-").unwrap(),
                root: None,
                id: None,
                impostor: false,
            }],
        };
        let text = serde_json::to_string(&ListedContent::new(3, &target)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["number"], 3);
        assert_eq!(value["name"], "a\u{1b}b.txt");
        assert!(text.contains("\\u001b"), "escaped: {text}");
        assert_eq!(value["sha256"], Digest::of(b"x").to_string());
        assert_eq!(value["chunks"], serde_json::json!([1, 2, 4]));
        assert_eq!(value["complete"], false);
        assert_eq!(value["holders"][0]["address"], "127.0.0.2:5001");
        assert_eq!(value["holders"][0]["protocol"], "p2p");
    }

    #[test]
    fn a_listed_peer_carries_its_protocol_count_and_answer() {
        let peer = PeerView {
            user: "ece".into(),
            id: None,
            impostor: false,
            addr: SocketAddr::from(([127, 0, 0, 9], 5001)),
            proto: Proto::Legacy,
            files: 2,
            last_seen: chrono::DateTime::parse_from_rfc3339("2026-11-21T17:59:58Z")
                .unwrap()
                .into(),
            interval: 60,
            answers: Some(true),
            sample: None,
        };
        let text = serde_json::to_string(&ListedPeer::new(&peer)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["user"], "ece");
        assert_eq!(value["address"], "127.0.0.9:5001");
        assert_eq!(value["protocol"], "legacy");
        assert_eq!(value["version"], serde_json::Value::Null);
        assert_eq!(value["files"], 2);
        assert_eq!(value["last_seen"], "2026-11-21T17:59:58Z");
        assert_eq!(value["interval"], 60);
        assert_eq!(value["answers"], true);
    }
}
