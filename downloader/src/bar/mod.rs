//! What `get` shows while a download runs, and after it failed: a live progress bar on a
//! terminal (`indicatif`), a few plain lines elsewhere, nothing with `--quiet`; and one summary
//! of the chunks that could not be fetched, from whom and why.
//!
//! The numbers come from `tally` (bytes here, resumed, moved, holders sending, failures), so
//! the bar, the plain lines, the final line and the summary agree; the words are `wording`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared::chunk::chunk_ranges;
use shared::logging::{self, TerminalRoute};
use shared::text::terminal_safe;

use crate::catalog::Target;
use crate::download::{DownloadedFile, Progress, Transfer};
use crate::format;
use crate::wording::{self, say};

mod tally;

use tally::{duration, rate, Tally};

/// How `get` reports a download as it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// A live bar, redrawn in place: stderr is a terminal.
    Bar,
    /// The live bar, and under it one bar per chunk in flight with its holder (the prompt's
    /// view, on a terminal).
    ChunkBars,
    /// Plain lines: the start, each chunk, a progress line every few seconds at most, the end.
    Lines,
    /// Nothing but the failure summary (`-q`).
    Quiet,
}

/// A plain progress line is written at most this often.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Reports one download to the user, the way [`Feedback`] says.
pub(crate) struct Display<'a> {
    feedback: Feedback,
    ui: &'a mut dyn Write,
    bar: Option<ProgressBar>,
    /// With [`Feedback::ChunkBars`]: the bars together, and each chunk's bar, by index.
    multi: Option<MultiProgress>,
    chunk_bars: BTreeMap<u8, ProgressBar>,
    tally: Tally,
    holders: usize,
    /// `user@address` of the holders of each chunk, by index.
    holders_of: BTreeMap<u8, Vec<String>>,
    started: Instant,
    last_line: Instant,
    told_resuming: bool,
    /// While the bars are drawn, warnings are printed above them, not through them.
    _log_route: Option<TerminalRoute>,
}

impl<'a> Display<'a> {
    /// Starts reporting the download of `target` on `ui` (the bar draws on stderr itself).
    pub(crate) fn new(feedback: Feedback, target: &Target, ui: &'a mut dyn Write) -> Self {
        let multi = (feedback == Feedback::ChunkBars)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        let bar = matches!(feedback, Feedback::Bar | Feedback::ChunkBars).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(target.size.unwrap_or(0)),
                ProgressDrawTarget::stderr_with_hz(10),
            );
            let bar = match &multi {
                Some(multi) => multi.add(bar),
                None => bar,
            };
            let style = ProgressStyle::with_template("{prefix} [{bar:28.cyan/blue}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(terminal_safe(&target.name).into_owned());
            bar
        });
        let log_route = match (&multi, &bar) {
            (Some(multi), _) => {
                let multi = multi.clone();
                Some(logging::route_terminal(move |line| {
                    multi.suspend(|| eprintln!("{line}"));
                }))
            }
            (None, Some(bar)) => {
                let bar = bar.clone();
                Some(logging::route_terminal(move |line| {
                    bar.suspend(|| eprintln!("{line}"));
                }))
            }
            (None, None) => None,
        };
        Display {
            feedback,
            ui,
            bar,
            multi,
            chunk_bars: BTreeMap::new(),
            tally: Tally {
                total: target.size,
                ..Tally::default()
            },
            holders: target.holders.len(),
            holders_of: (1..=5u8)
                .map(|i| {
                    let of = target.holders.iter().filter(|h| h.chunks.contains(i));
                    (i, of.map(crate::catalog::Holder::label).collect())
                })
                .collect(),
            started: Instant::now(),
            last_line: Instant::now(),
            told_resuming: false,
            _log_route: log_route,
        }
    }

    /// Writes a line to `ui`, above the bars (hidden meanwhile) if any.
    fn line(&mut self, line: &str) {
        let ui = &mut *self.ui;
        match (&self.multi, &self.bar) {
            (Some(multi), _) => multi.suspend(|| say(ui, line)),
            (None, Some(bar)) => bar.suspend(|| say(ui, line)),
            (None, None) => say(ui, line),
        }
    }

    /// The lines announcing the download.
    pub(crate) fn starting(&mut self, lines: &[String]) {
        if self.feedback != Feedback::Quiet {
            for line in lines {
                self.line(line);
            }
        }
    }

    /// Takes in one event of the download.
    pub(crate) fn progress(&mut self, progress: &Progress) {
        self.tally.add(progress);
        if self.feedback == Feedback::Quiet {
            return;
        }
        let first_news = matches!(
            progress,
            Progress::Transfers(_) | Progress::ChunkDone { .. }
        );
        if first_news && !self.told_resuming {
            self.told_resuming = true;
            let resumed = self.tally.resumed();
            if resumed > 0 {
                self.line(&format!("resuming: {} already here", format::size(resumed)));
            }
        }
        if let Some(line) = wording::progress_line(progress) {
            if self.bar.is_none() || self.feedback == Feedback::Lines {
                self.line(&line);
            }
        }
        if self.multi.is_some() {
            self.chunk_view(progress);
        }
        let status = self.status();
        match &self.bar {
            Some(bar) => {
                bar.set_length(self.tally.total.unwrap_or(0).max(self.tally.here()));
                bar.set_position(self.tally.here());
                bar.set_message(status);
            }
            None => {
                if self.last_line.elapsed() >= LINE_EVERY
                    && matches!(progress, Progress::Transfers(_))
                {
                    self.last_line = Instant::now();
                    say(self.ui, &format!("  {status}"));
                }
            }
        }
    }

    /// [`Feedback::ChunkBars`]: a bar per chunk in flight, showing its furthest copy and who
    /// sends it; gone once the chunk is done.
    fn chunk_view(&mut self, progress: &Progress) {
        let Some(multi) = &self.multi else { return };
        match progress {
            Progress::Transfers(flights) => {
                let ranges = self.tally.total.map(chunk_ranges);
                let mut furthest: BTreeMap<u8, &Transfer> = BTreeMap::new();
                for t in flights {
                    let best = furthest.entry(t.index).or_insert(t);
                    if t.bytes > best.bytes {
                        *best = t;
                    }
                }
                for (index, t) in furthest {
                    let len = ranges
                        .as_ref()
                        .and_then(|r| r.get(usize::from(index).wrapping_sub(1)))
                        .map_or(t.bytes, |r| r.len());
                    let bar = self.chunk_bars.entry(index).or_insert_with(|| {
                        let bar = multi.add(ProgressBar::new(len));
                        let style =
                            ProgressStyle::with_template("  chunk {prefix} [{bar:20}] {msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_bar())
                                .progress_chars("=> ");
                        bar.set_style(style);
                        bar.set_prefix(format!("{index}/5"));
                        bar
                    });
                    bar.set_length(len.max(t.bytes));
                    bar.set_position(t.bytes);
                    bar.set_message(
                        terminal_safe(&format!(
                            "{} / {} from {}",
                            format::size(t.bytes),
                            format::size(len),
                            t.holder
                        ))
                        .into_owned(),
                    );
                }
            }
            Progress::ChunkDone { index, .. } => {
                if let Some(bar) = self.chunk_bars.remove(index) {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
            }
            _ => {}
        }
    }

    /// Clears the chunks' bars.
    fn clear_chunk_bars(&mut self) {
        for (_, bar) in std::mem::take(&mut self.chunk_bars) {
            bar.finish_and_clear();
        }
    }

    /// `12.0 MiB / 100.0 MiB  8.5 MiB/s  ETA 10s  2/3 holders sending`.
    fn status(&self) -> String {
        let here = self.tally.here();
        let rate = rate(self.tally.moved(), self.started.elapsed());
        let total = self.tally.total;
        let mut status = format!(
            "{} / {}",
            format::size(here),
            total.map_or("?".to_owned(), format::size)
        );
        if rate > 0 {
            status.push_str(&format!("  {}/s", format::size(rate)));
            if let Some(total) = total {
                let eta = total.saturating_sub(here) / rate;
                status.push_str(&format!("  ETA {}", duration(eta)));
            }
        }
        if self.holders > 1 {
            status.push_str(&format!(
                "  {}/{} holders sending",
                self.tally.sending(),
                self.holders
            ));
        }
        status
    }

    /// The download ended with `outcome`: the bar goes, the final lines say what moved.
    pub(crate) fn finished(mut self, outcome: &DownloadedFile) {
        self.clear_chunk_bars();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.feedback == Feedback::Quiet {
            return;
        }
        let elapsed = self.started.elapsed();
        let moved = outcome.size.saturating_sub(self.tally.resumed());
        let mut lines = wording::finished(outcome);
        if !outcome.already_present {
            lines.push(wording::moved(
                moved,
                self.tally.resumed().min(outcome.size),
                elapsed,
                rate(moved, elapsed),
                outcome.sources.len(),
            ));
        }
        let retried: usize = self.tally.failures.values().map(Vec::len).sum();
        if retried > 0 {
            lines.push(wording::retried(retried));
        }
        for line in lines {
            say(self.ui, &line);
        }
    }

    /// The download failed: the bar goes, one summary says which chunks are missing, who was
    /// asked and why each failed, and that the partial data is kept. Other failures (Ctrl-C, a
    /// full disk) get none: their error says it all.
    pub(crate) fn failed(mut self) {
        self.clear_chunk_bars();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.tally.unavailable.is_empty() {
            return;
        }
        let mut missing = self.tally.unavailable.clone();
        missing.sort_unstable();
        let why = self.why_missing(&missing.iter().map(|(i, _)| *i).collect::<Vec<_>>());
        for line in wording::failure_summary(&missing, &why) {
            say(self.ui, &line);
        }
    }
}

impl Display<'_> {
    /// Each holder of a chunk in `missing`, with the missing chunks it has and why it did not
    /// deliver them: its own failures on them, else the failure that made the download stop
    /// asking it (on another chunk, or its manifest), else that it was not asked.
    fn why_missing(&self, missing: &[u8]) -> Vec<(String, Vec<u8>, String)> {
        let mut holders: Vec<&String> = missing
            .iter()
            .flat_map(|i| self.holders_of.get(i).into_iter().flatten())
            .collect();
        let mut seen = BTreeSet::new();
        holders.retain(|h| seen.insert(*h));
        let failures = &self.tally.failures;
        holders
            .into_iter()
            .map(|holder| {
                let has: Vec<u8> = (missing.iter().copied())
                    .filter(|i| self.holders_of.get(i).is_some_and(|l| l.contains(holder)))
                    .collect();
                let reasons_on = |chunks: &mut dyn Iterator<Item = &u8>| {
                    let mut reasons: Vec<&str> = chunks
                        .filter_map(|i| failures.get(i))
                        .flatten()
                        .filter(|f| f.holder == *holder)
                        .map(|f| f.reason.as_str())
                        .collect();
                    let mut seen = BTreeSet::new();
                    reasons.retain(|r| seen.insert(*r));
                    reasons.join("; ")
                };
                let own = reasons_on(&mut has.iter());
                let reason = if !own.is_empty() {
                    own
                } else if let Some(reason) = self.tally.unusable.get(holder) {
                    reason.clone()
                } else {
                    match reasons_on(&mut failures.keys()) {
                        r if r.is_empty() => "not asked".to_owned(),
                        r => format!("not asked again: {r}"),
                    }
                };
                (holder.clone(), has, reason)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_each_holder_once_with_its_chunks_and_reason() {
        use crate::catalog::Holder;
        use shared::chunk::{ChunkName, ChunkSet};
        let holder = |user: &str, ip: u8, chunks: &str| Holder {
            user: user.into(),
            addr: ([127, 0, 0, ip], 5001).into(),
            proto: shared::tags::Proto::Legacy,
            chunks: ChunkSet::parse(chunks).unwrap(),
            root: None,
            id: None,
            impostor: false,
        };
        let target = Target {
            name: "f".into(),
            sha256: None,
            size: Some(10),
            holders: vec![holder("a", 2, "12345"), holder("b", 3, "---45")],
        };
        let mut sink = Vec::new();
        let mut display = Display::new(Feedback::Quiet, &target, &mut sink);
        for (index, holder, reason) in [
            (4, "a@127.0.0.2:5001", "refused"),
            (5, "b@127.0.0.3:5001", "reset"),
        ] {
            display.progress(&Progress::AttemptFailed {
                index,
                holder: holder.into(),
                reason: reason.into(),
            });
        }
        for index in [3, 4, 5] {
            let chunk = ChunkName::new("f", index).unwrap();
            display.progress(&Progress::ChunkUnavailable { chunk });
        }
        display.failed();
        let text = String::from_utf8(sink).unwrap();
        assert_eq!(
            text,
            "Download failed: 3 of 5 chunks could not be fetched:\n\
             \x20 CHUNK f_3 CANNOT BE DOWNLOADED FROM ONLINE PEERS.\n\
             \x20 CHUNK f_4 CANNOT BE DOWNLOADED FROM ONLINE PEERS.\n\
             \x20 CHUNK f_5 CANNOT BE DOWNLOADED FROM ONLINE PEERS.\n\
             Holders asked:\n\
             \x20 a@127.0.0.2:5001 (chunks 3, 4, 5): refused\n\
             \x20 b@127.0.0.3:5001 (chunks 4, 5): reset\n\
             partial data is kept: run the same command again to resume\n"
        );
    }
}
