//! The download history, read back from the events in `client.log`: the typed
//! [`FetchedEvent`] and [`DownloadEvent`] the download printed, parsed back as the same types.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use shared::events::{DownloadEvent, Event, FetchedEvent, Outcome, UpdateEvent};
use shared::text::terminal_safe;

use crate::format;

/// One finished (or failed) download as the history shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When it ended, as logged.
    pub time: String,
    /// The content.
    pub content: String,
    /// How it ended (`ok`, `failed`, `cancelled`); `None` when the log holds a word that is
    /// not an outcome (an edited log).
    pub outcome: Option<Outcome>,
    /// Size of the file.
    pub bytes: u64,
    /// Whether it was verified.
    pub verified: bool,
    /// Where the file went.
    pub path: String,
    /// Chunks received per source (`user@address`).
    pub sources: BTreeMap<String, usize>,
    /// Failed attempts on the way.
    pub failed_attempts: usize,
    /// When the download was a subscription's update that replaced the file: where the
    /// previous version is kept (`-` when there was none).
    pub replaced: Option<String>,
}

/// Reads the history from the text of `client.log`. Lines that are not events are skipped.
pub fn parse(log: &str) -> Vec<Entry> {
    let mut pending: BTreeMap<String, (BTreeMap<String, usize>, usize)> = BTreeMap::new();
    let mut entries = Vec::new();
    for (time, event) in log.lines().filter_map(Event::parse_log_line) {
        if let Some(fetched) = FetchedEvent::from_event(&event) {
            let (sources, failures) = pending.entry(fetched.content).or_default();
            if fetched.outcome == Outcome::Ok {
                let source = format!("{}@{}", fetched.user, fetched.source);
                *sources.entry(source).or_default() += 1;
            } else {
                *failures += 1;
            }
        } else if let Some(download) = DownloadEvent::from_event(&event) {
            let (sources, failed_attempts) = pending.remove(&download.content).unwrap_or_default();
            entries.push(Entry {
                time: time.to_owned(),
                content: download.content,
                outcome: download.outcome,
                bytes: download.bytes,
                verified: download.verified,
                path: download.path.unwrap_or_else(|| "-".to_owned()),
                sources,
                failed_attempts,
                replaced: None,
            });
        } else if let Some(update) = UpdateEvent::from_event(&event) {
            // It follows the download of the new version: that entry now names the file's
            // place, and where the old one went.
            if let Some(entry) = entries
                .iter_mut()
                .rev()
                .find(|e| e.content == update.content)
            {
                entry.path = update.path;
                entry.replaced = Some(update.kept.unwrap_or_else(|| "-".to_owned()));
            }
        }
    }
    entries
}

/// The history as a table. Every field read from the log is shown [`terminal_safe`]: names and
/// users came from the network, and the log may have been edited.
pub fn render(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return "No downloads yet.\n".to_owned();
    }
    // Names and sizes padded to their widest, in terminal columns (see `format::width`).
    let names: Vec<String> = entries
        .iter()
        .map(|e| terminal_safe(&e.content).into_owned())
        .collect();
    let sizes: Vec<String> = entries.iter().map(|e| format::size(e.bytes)).collect();
    let name_width = names.iter().map(|n| format::width(n)).max().unwrap_or(0);
    let size_width = sizes.iter().map(|s| format::width(s)).max().unwrap_or(0);
    let mut out = String::new();
    for ((e, name), size) in entries.iter().zip(&names).zip(&sizes) {
        let when: String = e
            .time
            .chars()
            .take(19)
            .collect::<String>()
            .replace('T', " ");
        let when = terminal_safe(&when);
        let check = match (e.outcome, e.verified) {
            (Some(Outcome::Ok), true) => "verified",
            (Some(Outcome::Ok), false) => "unverified",
            _ => "",
        };
        let sources: Vec<String> = e
            .sources
            .iter()
            .map(|(s, n)| {
                let s = terminal_safe(s);
                format!("{s} ({n} chunk{})", if *n == 1 { "" } else { "s" })
            })
            .collect();
        let line = format!(
            "{when}  {:<6}  {}  {}  {check}",
            e.outcome.map_or("?", Outcome::as_str),
            format::pad(name, name_width, true),
            format::pad(size, size_width, false),
        );
        let _ = writeln!(out, "{}", line.trim_end());
        if !sources.is_empty() {
            let _ = writeln!(out, "    from {}", sources.join(", "));
        }
        if e.failed_attempts > 0 {
            let _ = writeln!(
                out,
                "    {} failed attempt(s) on the way",
                e.failed_attempts
            );
        }
        if e.path != "-" {
            let _ = writeln!(out, "    saved as {}", terminal_safe(&e.path));
        }
        match e.replaced.as_deref() {
            Some("-") => {
                let _ = writeln!(out, "    subscription: first version");
            }
            Some(kept) => {
                let _ = writeln!(
                    out,
                    "    subscription update: the previous version is kept as {}",
                    terminal_safe(kept)
                );
            }
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-11-21T18:00:00.1Z [INFO] peer folder /x
2026-11-21T18:00:01.1Z [INFO] fetched content=\"my notes.txt\" chunk=1 source=127.0.0.2:5001 user=alice bytes=3 ms=1 outcome=ok verified=yes
2026-11-21T18:00:01.2Z [WARN] fetched content=\"my notes.txt\" chunk=2 source=127.0.0.3:5001 user=bob bytes=0 ms=1 outcome=unreachable verified=no reason=\"cannot connect\"
2026-11-21T18:00:01.3Z [INFO] fetched content=\"my notes.txt\" chunk=2 source=127.0.0.2:5001 user=alice bytes=3 ms=1 outcome=ok verified=yes
2026-11-21T18:00:01.4Z [INFO] download content=\"my notes.txt\" bytes=6 sha256=ab outcome=ok verified=yes path=\"/x/downloads/my notes.txt\"
2026-11-21T18:05:00.0Z [INFO] download content=ece bytes=0 sha256=- outcome=failed verified=no path=-
";

    #[test]
    fn an_update_names_the_replaced_version() {
        let log = format!(
            "{LOG}2026-11-21T18:06:00.0Z [INFO] download content=r.pdf bytes=3 sha256=cd outcome=ok verified=yes path=\"/x/downloads/r (1).pdf\"
2026-11-21T18:06:00.1Z [INFO] update content=r.pdf sha256=cd path=/x/downloads/r.pdf kept=/x/downloads/.previous/r.pdf.abababababab
"
        );
        let entries = parse(&log);
        let update = entries.last().unwrap();
        assert_eq!(update.path, "/x/downloads/r.pdf");
        assert_eq!(
            update.replaced.as_deref(),
            Some("/x/downloads/.previous/r.pdf.abababababab")
        );
        assert_eq!(entries[0].replaced, None);
        let text = render(&entries);
        assert!(
            text.contains("subscription update: the previous version is kept as /x/downloads/.previous/r.pdf.abababababab"),
            "{text}"
        );
    }

    #[test]
    fn groups_chunk_events_under_their_download() {
        let entries = parse(LOG);
        assert_eq!(entries.len(), 2);
        let first = &entries[0];
        assert_eq!(first.content, "my notes.txt");
        assert_eq!(first.sources["alice@127.0.0.2:5001"], 2);
        assert_eq!(first.failed_attempts, 1);
        assert!(first.verified);
        assert_eq!(entries[1].outcome, Some(Outcome::Failed));
        let text = render(&entries);
        assert!(
            text.contains("2026-11-21 18:00:01  ok      my notes.txt  6 B  verified"),
            "{text}"
        );
        assert!(text.contains("alice@127.0.0.2:5001 (2 chunks)"), "{text}");
        assert!(text.contains("failed  ece"), "{text}");
    }

    #[test]
    fn names_from_the_log_are_shown_escaped() {
        // As the downloader logs them: JSON escapes inside quotes, which parse back to the raw
        // characters; and a hand-edited line with them raw.
        let log = "\
2026-11-21T18:00:01.1Z [INFO] fetched content=\"gnp.\\u202eexe\" chunk=1 source=127.0.0.2:5001 user=\"mal\\u001b[31mlory\" bytes=3 ms=1 outcome=ok verified=yes
2026-11-21T18:00:01.4Z [INFO] download content=\"gnp.\\u202eexe\" bytes=6 sha256=ab outcome=ok verified=yes path=\"/x/downloads/gnp.\\u202eexe\\nfake\"
2026-11-21T18:05:00.0Z [INFO] download content=bell\u{7}\u{9b}x bytes=0 sha256=- outcome=fail\u{1b}[2J verified=no path=-
";
        let entries = parse(log);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].content, "gnp.\u{202e}exe");
        let text = render(&entries);
        for c in ['\u{202e}', '\u{1b}', '\u{7}', '\u{9b}'] {
            assert!(!text.contains(c), "{c:?} raw in:\n{text}");
        }
        assert!(text.contains("ok      gnp.\\u{202e}exe"), "{text}");
        assert!(text.contains("mal\\u{1b}[31mlory@127.0.0.2:5001"), "{text}");
        assert!(text.contains("gnp.\\u{202e}exe\\u{a}fake"), "{text}");
        assert!(text.contains("bell\\u{7}\\u{9b}x"), "{text}");
        assert_eq!(text.lines().count(), 4, "{text}");
    }

    #[test]
    fn empty_or_foreign_logs_have_no_history() {
        assert!(parse("").is_empty());
        assert!(parse("garbage\n[INFO]\n").is_empty());
        assert_eq!(render(&[]), "No downloads yet.\n");
    }

    #[test]
    fn wide_names_keep_the_history_columns_aligned() {
        let log = "\
2026-11-21T18:00:01.4Z [INFO] download content=\"日本語 🎉.txt\" bytes=6 sha256=ab outcome=ok verified=yes path=-
2026-11-21T18:05:00.0Z [INFO] download content=plain.txt bytes=2048 sha256=ab outcome=ok verified=yes path=-
";
        let text = render(&parse(log));
        let ends: Vec<usize> = text
            .lines()
            .map(|line| format::width(&line[..line.find("verified").unwrap()]))
            .collect();
        assert_eq!(ends.len(), 2, "{text}");
        assert_eq!(ends[0], ends[1], "{text}");
        assert!(text.contains("日本語 🎉.txt      6 B  verified"), "{text}");
        assert!(text.contains("plain.txt      2.0 KiB  verified"), "{text}");
    }
}
