//! The structured lines of `server.log` and `client.log`.
//!
//! Each served or downloaded chunk is logged as one event: a word, then `key=value` fields.
//! Values with spaces, quotes or `=` are JSON-quoted, so file names of any shape survive and the
//! downloader's `history` can read the lines back; inside the quotes, control, bidi and
//! invisible characters are `\uXXXX` escapes, so a line shows on a terminal as it is.
//!
//! ```text
//! 2026-11-21T18:00:01.5Z [INFO] served chunk=photo.png_3 peer=127.0.0.3:41234 bytes=209716 ms=12 outcome=ok
//! 2026-11-21T18:00:01.6Z [INFO] fetched content="my notes.txt" chunk=3 source=127.0.0.2:5001 user=alice bytes=209716 ms=4 outcome=ok verified=yes
//! ```

use std::fmt::{self, Write as _};

use crate::text;

/// One logged event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened: `served`, `fetched`, `download`.
    pub name: String,
    /// The fields, in order.
    pub fields: Vec<(String, String)>,
}

impl Event {
    /// An event with no fields yet.
    pub fn new(name: &str) -> Event {
        Event {
            name: name.to_owned(),
            fields: Vec::new(),
        }
    }

    /// Adds a field.
    pub fn with(mut self, key: &str, value: impl fmt::Display) -> Event {
        self.fields.push((key.to_owned(), value.to_string()));
        self
    }

    /// The value of the first field named `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `outcome` field, when it holds a word of the [`Outcome`] vocabulary.
    pub fn outcome(&self) -> Option<Outcome> {
        self.get("outcome").and_then(Outcome::parse)
    }

    /// Parses a message written by [`Display`](fmt::Display).
    pub fn parse(message: &str) -> Option<Event> {
        let message = message.trim();
        let (name, mut rest) = message.split_once(' ').unwrap_or((message, ""));
        if name.is_empty() || name.contains('=') {
            return None;
        }
        let mut event = Event::new(name);
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                return Some(event);
            }
            let (key, after) = rest.split_once('=')?;
            if key.is_empty() || key.contains(char::is_whitespace) {
                return None;
            }
            let (value, after) = if after.starts_with('"') {
                let mut stream = serde_json::Deserializer::from_str(after).into_iter::<String>();
                let value = stream.next()?.ok()?;
                (value, &after[stream.byte_offset()..])
            } else {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (after[..end].to_owned(), &after[end..])
            };
            event.fields.push((key.to_owned(), value));
            rest = after;
        }
    }

    /// Parses a whole log line: a timestamp, a `[LEVEL]` tag, then the event. Returns the
    /// timestamp as written and the event; `None` for lines that are not events.
    pub fn parse_log_line(line: &str) -> Option<(&str, Event)> {
        let (time, rest) = line.split_once(' ')?;
        let rest = rest.trim_start();
        let rest = rest.strip_prefix('[')?;
        let (_, message) = rest.split_once(']')?;
        Some((time, Event::parse(message)?))
    }
}

/// The `outcome` field of every event: one vocabulary for `served` and `refused` (the chunk
/// server), `fetched` and `download` (the downloader), so `history` reads back the very type the
/// programs print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The chunk or file was served, fetched or assembled whole.
    Ok,
    /// A download ended without its file.
    Failed,
    /// The request was not one the server understands.
    BadRequest,
    /// The server holds no such chunk.
    NotFound,
    /// The server holds the name but not the content asked for (another digest).
    WrongContent,
    /// The request or answer did not parse.
    Malformed,
    /// Larger than allowed.
    TooLarge,
    /// Nothing arrived in time.
    Timeout,
    /// The connection closed before sending anything.
    Empty,
    /// The server was at its limit of connections.
    TooManyConnections,
    /// The server could not serve now (the content is still being prepared).
    Busy,
    /// The other side moved data slower than allowed.
    TooSlow,
    /// An error of the server's own (a file it could not read).
    Error,
    /// The holder could not be reached.
    Unreachable,
    /// The request could not be sent.
    SendFailed,
    /// The holder answered with an error.
    Refused,
    /// The holder's answer broke the protocol.
    ProtocolError,
    /// The chunk ended before its announced length.
    Truncated,
    /// The transfer broke off.
    TransferFailed,
    /// The bytes did not match their digest.
    BadData,
    /// The bytes could not be written to disk.
    WriteFailed,
    /// Stopped by the user (a signal).
    Cancelled,
    /// A transfer cut short because another copy of the chunk arrived first (endgame).
    Superseded,
    /// The bytes contradict a manifest their sender never vouched for: no proof against it.
    UnconfirmedMismatch,
    /// The two sides of a transfer hold different network keys (or one has none).
    WrongKey,
    /// A plaintext request to a chunk server of a private network.
    PrivateNetwork,
    /// A member of the network that the allow list does not name.
    NotAllowed,
}

impl Outcome {
    /// Every outcome, for tests and documentation.
    pub const ALL: [Outcome; 27] = [
        Outcome::Ok,
        Outcome::Failed,
        Outcome::BadRequest,
        Outcome::NotFound,
        Outcome::WrongContent,
        Outcome::Malformed,
        Outcome::TooLarge,
        Outcome::Timeout,
        Outcome::Empty,
        Outcome::TooManyConnections,
        Outcome::Busy,
        Outcome::TooSlow,
        Outcome::Error,
        Outcome::Unreachable,
        Outcome::SendFailed,
        Outcome::Refused,
        Outcome::ProtocolError,
        Outcome::Truncated,
        Outcome::TransferFailed,
        Outcome::BadData,
        Outcome::WriteFailed,
        Outcome::Cancelled,
        Outcome::Superseded,
        Outcome::UnconfirmedMismatch,
        Outcome::WrongKey,
        Outcome::PrivateNetwork,
        Outcome::NotAllowed,
    ];

    /// The word written in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::BadRequest => "bad_request",
            Outcome::NotFound => "not_found",
            Outcome::WrongContent => "wrong_content",
            Outcome::Malformed => "malformed",
            Outcome::TooLarge => "too_large",
            Outcome::Timeout => "timeout",
            Outcome::Empty => "empty",
            Outcome::TooManyConnections => "too_many_connections",
            Outcome::Busy => "busy",
            Outcome::TooSlow => "too_slow",
            Outcome::Error => "error",
            Outcome::Unreachable => "unreachable",
            Outcome::SendFailed => "send_failed",
            Outcome::Refused => "refused",
            Outcome::ProtocolError => "protocol_error",
            Outcome::Truncated => "truncated",
            Outcome::TransferFailed => "transfer_failed",
            Outcome::BadData => "bad_data",
            Outcome::WriteFailed => "write_failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Superseded => "superseded",
            Outcome::UnconfirmedMismatch => "unconfirmed_mismatch",
            Outcome::WrongKey => "wrong_key",
            Outcome::PrivateNetwork => "private_network",
            Outcome::NotAllowed => "not_allowed",
        }
    }

    /// The outcome a log word names.
    pub fn parse(word: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == word)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `yes`/`no`, as the `verified` field says it.
fn yes_no(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "no"
    }
}

/// A `fetched` event: one attempt by the downloader at one chunk, whatever its outcome.
///
/// ```text
/// fetched content=<name> chunk=<1..5> source=<ip:port> user=<user> bytes=<n> [resumed_from=<n>] ms=<n> rate_mbps=<x> outcome=<word> verified=<yes|no> [reason="<text>"]
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedEvent {
    /// The content's name.
    pub content: String,
    /// The chunk's index, 1 to 5.
    pub chunk: u8,
    /// The holder's chunk server, `ip:port`.
    pub source: String,
    /// The holder's username.
    pub user: String,
    /// Bytes of the chunk on disk after the attempt, resumed ones included.
    pub bytes: u64,
    /// Bytes that were already on disk when the attempt started.
    pub resumed_from: u64,
    /// How long the attempt took.
    pub ms: u128,
    /// Megabits per second of what this attempt moved.
    pub rate_mbps: f64,
    /// How it ended.
    pub outcome: Outcome,
    /// Whether the chunk was checked against its digest.
    pub verified: bool,
    /// Why it failed, for a failed attempt.
    pub reason: Option<String>,
}

impl FetchedEvent {
    /// The event's name.
    pub const NAME: &'static str = "fetched";

    /// The event as logged.
    pub fn to_event(&self) -> Event {
        let mut event = Event::new(Self::NAME)
            .with("content", &self.content)
            .with("chunk", self.chunk)
            .with("source", &self.source)
            .with("user", &self.user)
            .with("bytes", self.bytes);
        if self.resumed_from > 0 {
            event = event.with("resumed_from", self.resumed_from);
        }
        event = event
            .with("ms", self.ms)
            .with("rate_mbps", format!("{:.1}", self.rate_mbps))
            .with("outcome", self.outcome)
            .with("verified", yes_no(self.verified));
        match &self.reason {
            Some(reason) => event.with("reason", reason),
            None => event,
        }
    }

    /// The `fetched` event `event` holds; `None` for another event, or one whose content,
    /// chunk, source, user or outcome is missing or unreadable (an edited log). Missing
    /// numbers read as 0.
    pub fn from_event(event: &Event) -> Option<FetchedEvent> {
        if event.name != Self::NAME {
            return None;
        }
        let number = |key| event.get(key).and_then(|v| v.parse::<u64>().ok());
        Some(FetchedEvent {
            content: event.get("content")?.to_owned(),
            chunk: event.get("chunk")?.parse().ok()?,
            source: event.get("source")?.to_owned(),
            user: event.get("user")?.to_owned(),
            bytes: number("bytes").unwrap_or(0),
            resumed_from: number("resumed_from").unwrap_or(0),
            ms: event.get("ms").and_then(|v| v.parse().ok()).unwrap_or(0),
            rate_mbps: event
                .get("rate_mbps")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
            outcome: event.outcome()?,
            verified: event.get("verified") == Some("yes"),
            reason: event.get("reason").map(str::to_owned),
        })
    }
}

/// A `download` event: how one download ended, logged once per download.
///
/// ```text
/// download content=<name> bytes=<n> sha256=<hex|-> outcome=<ok|failed|cancelled> verified=<yes|no> path=<path|->
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadEvent {
    /// The content's name.
    pub content: String,
    /// The file's size; 0 without a file.
    pub bytes: u64,
    /// The file's SHA-256 in hex; `None` without a file.
    pub sha256: Option<String>,
    /// How it ended; `None` when the log holds a word that is no outcome (an edited log).
    pub outcome: Option<Outcome>,
    /// Whether every chunk and the whole file were checked.
    pub verified: bool,
    /// Where the file went; `None` without a file.
    pub path: Option<String>,
}

impl DownloadEvent {
    /// The event's name.
    pub const NAME: &'static str = "download";

    /// The event as logged.
    pub fn to_event(&self) -> Event {
        Event::new(Self::NAME)
            .with("content", &self.content)
            .with("bytes", self.bytes)
            .with("sha256", self.sha256.as_deref().unwrap_or("-"))
            .with("outcome", self.outcome.map_or("?", Outcome::as_str))
            .with("verified", yes_no(self.verified))
            .with("path", self.path.as_deref().unwrap_or("-"))
    }

    /// The `download` event `event` holds; `None` for another event or one without a content.
    pub fn from_event(event: &Event) -> Option<DownloadEvent> {
        if event.name != Self::NAME {
            return None;
        }
        let text = |key| event.get(key).filter(|v| *v != "-").map(str::to_owned);
        Some(DownloadEvent {
            content: event.get("content")?.to_owned(),
            bytes: event.get("bytes").and_then(|b| b.parse().ok()).unwrap_or(0),
            sha256: text("sha256"),
            outcome: event.outcome(),
            verified: event.get("verified") == Some("yes"),
            path: text("path"),
        })
    }
}

/// A subscribed content's file replaced by a newer version (`downloader sync`):
///
/// ```text
/// update content=<name> sha256=<hex> path=<path> kept=<path|->
/// ```
/// It follows the `download` event of the new version; `kept` is where the replaced file went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateEvent {
    /// The content's name.
    pub content: String,
    /// The new version's SHA-256 in hex.
    pub sha256: String,
    /// Where the file now is.
    pub path: String,
    /// Where the replaced version is kept; `None` when there was none.
    pub kept: Option<String>,
}

impl UpdateEvent {
    /// The event's name.
    pub const NAME: &'static str = "update";

    /// The event as logged.
    pub fn to_event(&self) -> Event {
        Event::new(Self::NAME)
            .with("content", &self.content)
            .with("sha256", &self.sha256)
            .with("path", &self.path)
            .with("kept", self.kept.as_deref().unwrap_or("-"))
    }

    /// The `update` event `event` holds; `None` for another event or an incomplete one.
    pub fn from_event(event: &Event) -> Option<UpdateEvent> {
        if event.name != Self::NAME {
            return None;
        }
        Some(UpdateEvent {
            content: event.get("content")?.to_owned(),
            sha256: event.get("sha256")?.to_owned(),
            path: event.get("path")?.to_owned(),
            kept: event.get("kept").filter(|k| *k != "-").map(str::to_owned),
        })
    }
}

fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=')
        || text::validate(value).is_err()
}

/// Writes `value` as a JSON string in which every character a terminal must not see raw
/// ([`text::scan`]) is a `\uXXXX` escape: values often come from the network (a requested
/// chunk name, a holder's message), and the log is read with `cat` and `tail -f`. Any JSON
/// reader, [`Event::parse`] included, gets the value back exactly.
fn write_quoted(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    f.write_char('"')?;
    for (c, escape) in text::scan(value) {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c if escape => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(f, "\\u{unit:04x}")?;
                }
            }
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (key, value) in &self.fields {
            write!(f, " {key}=")?;
            if needs_quotes(value) {
                write_quoted(f, value)?;
            } else {
                f.write_str(value)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_awkward_values() {
        let event = Event::new("fetched")
            .with("content", "my \"notes\" = 100%.txt")
            .with("chunk", 3)
            .with("user", "")
            .with("source", "127.0.0.2:5001")
            .with("note", "tab\tand\nnewline");
        let text = event.to_string();
        assert!(!text.contains('\n'));
        assert_eq!(Event::parse(&text), Some(event.clone()));
        assert_eq!(event.get("chunk"), Some("3"));
        assert_eq!(event.get("missing"), None);
    }

    #[test]
    fn values_from_the_network_are_escaped_and_read_back_exactly() {
        let flood = format!("z{}", "\u{301}".repeat(20));
        for value in [
            "esc\u{1b}[31mred",
            "bell\u{7}",
            "del\u{7f}",
            "csi\u{9b}2J",
            "gnp.\u{202e}exe",
            "zero\u{200b}width",
            "line\u{2028}para\u{2029}",
            "tag\u{e0041}",
            "\u{301}stray",
            flood.as_str(),
            "back\\slash \"quoted\" \u{202e}",
        ] {
            let event = Event::new("refused").with("chunk", value).with("n", 1);
            let text = event.to_string();
            assert!(
                matches!(text::terminal_safe(&text), std::borrow::Cow::Borrowed(_)),
                "{value:?} logged as {text:?}"
            );
            assert_eq!(Event::parse(&text), Some(event), "{text}");
        }
        assert_eq!(
            Event::new("x").with("c", "a\u{202e}b").to_string(),
            "x c=\"a\\u202eb\""
        );
        assert_eq!(
            Event::new("x").with("c", "\u{e0041}").to_string(),
            "x c=\"\\udb40\\udc41\""
        );
        // Plain Unicode stays readable, unquoted.
        assert_eq!(
            Event::new("x").with("c", "Résumé_日本語🎉").to_string(),
            "x c=Résumé_日本語🎉"
        );
    }

    #[test]
    fn every_outcome_word_reads_back_as_itself() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
            let event = Event::new("x").with("outcome", outcome);
            assert_eq!(
                Event::parse(&event.to_string()).unwrap().outcome(),
                Some(outcome)
            );
        }
        assert_eq!(Outcome::parse("OK"), None);
        assert_eq!(Event::new("x").with("outcome", "weird").outcome(), None);
    }

    #[test]
    fn update_events_read_back_as_printed() {
        let update = UpdateEvent {
            content: "my report.pdf".into(),
            sha256: "cd".repeat(32),
            path: "/x/downloads/my report.pdf".into(),
            kept: Some("/x/downloads/.previous/my report.pdf.abababababab".into()),
        };
        let line = update.to_event().to_string();
        assert!(
            line.starts_with("update content=\"my report.pdf\" sha256=cdcd"),
            "{line}"
        );
        let parsed = Event::parse(&line).unwrap();
        assert_eq!(UpdateEvent::from_event(&parsed), Some(update.clone()));
        assert_eq!(DownloadEvent::from_event(&parsed), None);
        let first = UpdateEvent {
            kept: None,
            ..update
        };
        let parsed = Event::parse(&first.to_event().to_string()).unwrap();
        assert_eq!(UpdateEvent::from_event(&parsed), Some(first));
    }

    #[test]
    fn typed_events_read_back_as_printed() {
        let fetched = FetchedEvent {
            content: "my notes.txt".into(),
            chunk: 3,
            source: "127.0.0.2:5001".into(),
            user: "alice".into(),
            bytes: 209_716,
            resumed_from: 100,
            ms: 4,
            rate_mbps: 12.5,
            outcome: Outcome::TooSlow,
            verified: false,
            reason: Some("sent 3 bytes in 10 s".into()),
        };
        let line = fetched.to_event().to_string();
        assert_eq!(
            line,
            "fetched content=\"my notes.txt\" chunk=3 source=127.0.0.2:5001 user=alice \
             bytes=209716 resumed_from=100 ms=4 rate_mbps=12.5 outcome=too_slow verified=no \
             reason=\"sent 3 bytes in 10 s\""
        );
        let parsed = Event::parse(&line).unwrap();
        assert_eq!(FetchedEvent::from_event(&parsed), Some(fetched.clone()));
        assert_eq!(DownloadEvent::from_event(&parsed), None);
        let first_try = FetchedEvent {
            resumed_from: 0,
            reason: None,
            outcome: Outcome::Ok,
            ..fetched
        };
        let line = first_try.to_event().to_string();
        assert!(
            !line.contains("resumed_from") && !line.contains("reason"),
            "{line}"
        );
        assert_eq!(
            FetchedEvent::from_event(&Event::parse(&line).unwrap()),
            Some(first_try)
        );

        let done = DownloadEvent {
            content: "a b".into(),
            bytes: 6,
            sha256: Some("ab".repeat(32)),
            outcome: Some(Outcome::Ok),
            verified: true,
            path: Some("/x/downloads/a b".into()),
        };
        let parsed = Event::parse(&done.to_event().to_string()).unwrap();
        assert_eq!(DownloadEvent::from_event(&parsed), Some(done));
        let failed = DownloadEvent {
            content: "a".into(),
            bytes: 0,
            sha256: None,
            outcome: Some(Outcome::Failed),
            verified: false,
            path: None,
        };
        let line = failed.to_event().to_string();
        assert_eq!(
            line,
            "download content=a bytes=0 sha256=- outcome=failed verified=no path=-"
        );
        assert_eq!(
            DownloadEvent::from_event(&Event::parse(&line).unwrap()),
            Some(failed)
        );
        // An edited log: an unknown outcome word still reads, as no outcome.
        let edited = Event::parse("download content=a outcome=weird").unwrap();
        assert_eq!(DownloadEvent::from_event(&edited).unwrap().outcome, None);
        let no_outcome = Event::parse("fetched content=a chunk=1 source=s user=u").unwrap();
        assert_eq!(FetchedEvent::from_event(&no_outcome), None);
    }

    #[test]
    fn log_lines_parse_and_other_lines_do_not() {
        let line = "2026-11-21T18:00:01.5Z [INFO] served chunk=a_1 peer=127.0.0.3:4 bytes=5";
        let (time, event) = Event::parse_log_line(line).unwrap();
        assert_eq!(time, "2026-11-21T18:00:01.5Z");
        assert_eq!(event.name, "served");
        assert_eq!(event.get("bytes"), Some("5"));
        for junk in [
            "",
            "hello",
            "2026 [INFO]",
            "x [WARN] =oops",
            "t [INFO] a b=\"unterminated",
        ] {
            assert_eq!(Event::parse_log_line(junk), None, "{junk:?}");
        }
    }
}
