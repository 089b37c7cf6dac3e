//! The words the user reads: what a download says as it starts, progresses and ends (shared by
//! `downloader get` and the prompt), and the writers that put them on the terminal.
//!
//! Everything shown passes [`terminal_safe`]: names and messages come from the network or
//! `tags.txt`. Diagnostics go through `log`, not here.

use std::io::Write;
use std::time::Duration;

use shared::text::terminal_safe;

use crate::catalog::Target;
use crate::download::{DownloadedFile, Progress};
use crate::error::Error;
use crate::format;

/// The lines announcing a download: what, how big, whether verified, from how many holders,
/// and a note when other files share its name.
pub(crate) fn starting(target: &Target, same_name: usize) -> Vec<String> {
    let digest = target.sha256.map_or(
        "unverified: announced by legacy peers only".to_owned(),
        |d| format!("sha256 {}", d.short(16)),
    );
    let size = target.size.map_or("size unknown".to_owned(), format::size);
    let mut lines = vec![format!(
        "Downloading {} ({size}, {digest}) from {} holder(s); chunks available: {}",
        target.name,
        target.holders.len(),
        target.available(),
    )];
    if same_name > 1 {
        lines.push(format!(
            "Note: {same_name} different files are named \"{}\"; taking the most available \
             one. Use --sha256 PREFIX (or the list number) to pick another.",
            target.name
        ));
    }
    lines
}

/// The line reporting `progress`, if it gets one. Failures get none as they happen: the
/// summary at the end names them once ([`failure_summary`]), or [`retried`] counts them.
pub(crate) fn progress_line(progress: &Progress) -> Option<String> {
    Some(match progress {
        Progress::ChunkKept { index, .. } => format!("  chunk {index}/5 already here, verified"),
        Progress::ChunkDone {
            index,
            holder,
            bytes,
            millis,
            verified,
            ..
        } => format!(
            "  chunk {index}/5 from {holder}: {} in {millis} ms, {}",
            format::size(*bytes),
            if *verified { "verified" } else { "unverified" }
        ),
        Progress::Started { .. }
        | Progress::Transfers(_)
        | Progress::AttemptFailed { .. }
        | Progress::HolderFailed { .. }
        | Progress::ChunkUnavailable { .. } => return None,
    })
}

/// What a finished download moved: `moved` bytes in `elapsed` at `rate` bytes/s from
/// `sources` holders, besides `resumed` bytes that were here already.
pub(crate) fn moved(
    moved: u64,
    resumed: u64,
    elapsed: Duration,
    rate: u64,
    sources: usize,
) -> String {
    if moved == 0 {
        return format!(
            "Nothing to receive: all {} was kept from before.",
            format::size(resumed)
        );
    }
    let mut line = format!(
        "Received {} in {:.1} s ({}/s) from {sources} holder(s)",
        format::size(moved),
        elapsed.as_secs_f64(),
        format::size(rate)
    );
    if resumed > 0 {
        line.push_str(&format!(
            ", besides {} kept from before",
            format::size(resumed)
        ));
    }
    line.push('.');
    line
}

/// The note of a download that succeeded after `failed` attempts failed.
pub(crate) fn retried(failed: usize) -> String {
    format!("Note: {failed} attempt(s) failed and were taken over by other holders (details in client.log).")
}

/// The one summary of a failed download: each chunk missing (index, name), then each holder
/// of them (`user@address`, the missing chunks it has, the one-line reason it did not deliver),
/// then that partial data is kept.
pub(crate) fn failure_summary(
    missing: &[(u8, String)],
    holders: &[(String, Vec<u8>, String)],
) -> Vec<String> {
    let mut lines = vec![format!(
        "Download failed: {} of 5 chunks could not be fetched:",
        missing.len()
    )];
    for (_, chunk) in missing {
        lines.push(format!(
            "  CHUNK {chunk} CANNOT BE DOWNLOADED FROM ONLINE PEERS."
        ));
    }
    if holders.is_empty() {
        lines.push("No online holder has them.".to_owned());
    } else {
        lines.push("Holders asked:".to_owned());
    }
    for (holder, has, reason) in holders {
        let has: Vec<String> = has.iter().map(u8::to_string).collect();
        lines.push(format!("  {holder} (chunks {}): {reason}", has.join(", ")));
    }
    lines.push("partial data is kept: run the same command again to resume".to_owned());
    lines
}

/// The lines closing a download: where the file is, and how it was checked.
pub(crate) fn finished(outcome: &DownloadedFile) -> Vec<String> {
    let check = if outcome.verified {
        "verified: every chunk and the whole file match the announced SHA-256"
    } else {
        "unverified: legacy peers send no checksums"
    };
    let mut lines = Vec::new();
    if outcome.already_present {
        lines.push(format!("Already downloaded: {}", outcome.path.display()));
    }
    lines.push(format!(
        "Done: {} ({}), {check}.",
        outcome.path.display(),
        format::size(outcome.size)
    ));
    lines
}

/// Writes one line for the user, [`terminal_safe`]: it may quote names and messages from the
/// network or `tags.txt`.
///
/// # Errors
/// When the terminal cannot be written.
pub(crate) fn write_line(out: &mut dyn Write, line: &str) -> Result<(), Error> {
    write_out(out, &format!("{}\n", terminal_safe(line)))
}

/// [`write_line`] for progress, where a terminal that went away must not stop the download.
pub(crate) fn say(ui: &mut dyn Write, line: &str) {
    let _ = writeln!(ui, "{}", terminal_safe(line));
}

/// Writes `text` as it is and flushes it.
///
/// # Errors
/// When the terminal cannot be written.
pub(crate) fn write_out(out: &mut dyn Write, text: &str) -> Result<(), Error> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| Error::Io {
            context: "cannot write to the terminal".into(),
            source,
        })
}
