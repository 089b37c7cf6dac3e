//! Logger set-up for the binaries: one call to [`init`] from `main`, never from library code,
//! which only uses the `log` macros.
//!
//! The terminal gets diagnostics on stderr in the style of every message the programs print,
//! `NAME: warning: …`, without timestamps ([`terminal_line`]); the program's log file
//! (`server.log`, `client.log`) gets the same lines, appended, with RFC 3339 UTC timestamps, so
//! that the [`events`](crate::events) in it can be read back. Both get every message
//! [`terminal_safe`]: what a line quotes from the network is shown, never obeyed.
//!
//! While a progress bar owns the terminal, [`route_terminal`] hands the terminal lines to it,
//! so that a warning is printed above the bar instead of through it.

use std::borrow::Cow;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use log::{LevelFilter, Log, Metadata, Record};
use simplelog::{CombinedLogger, Config, ConfigBuilder, SharedLogger, WriteLogger};

use crate::text::terminal_safe;

/// Where log lines go.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// The program's name, which starts every terminal line.
    pub name: &'static str,
    /// Level of lines on stderr.
    pub terminal: LevelFilter,
    /// The log file and the level of lines written to it.
    pub file: Option<(PathBuf, LevelFilter)>,
}

/// Starts the process-wide logger.
///
/// # Errors
/// When the log file cannot be opened, or a logger is already set.
pub fn init(options: LogOptions) -> io::Result<()> {
    let config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .set_level_padding(simplelog::LevelPadding::Off)
        .build();
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![TerminalSafe::wrap(Box::new(Terminal {
        name: options.name,
        level: options.terminal,
    }))];
    if let Some((path, level)) = options.file {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
            })?;
        loggers.push(TerminalSafe::wrap(WriteLogger::new(level, config, file)));
    }
    CombinedLogger::init(loggers).map_err(io::Error::other)
}

/// Where terminal lines go instead of stderr while [`route_terminal`]'s guard lives.
type TerminalSink = Box<dyn Fn(&str) + Send + Sync>;

static TERMINAL_SINK: Mutex<Option<TerminalSink>> = Mutex::new(None);

/// Sends every terminal line to `sink` (e.g. a progress bar's `suspend`, which prints it above
/// the bar) until the returned guard is dropped; then stderr again.
#[must_use = "the lines go back to stderr when the guard is dropped"]
pub fn route_terminal(sink: impl Fn(&str) + Send + Sync + 'static) -> TerminalRoute {
    *TERMINAL_SINK.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(sink));
    TerminalRoute(())
}

/// Keeps [`route_terminal`]'s routing in place while it lives.
#[derive(Debug)]
pub struct TerminalRoute(());

impl Drop for TerminalRoute {
    fn drop(&mut self) {
        *TERMINAL_SINK.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// One line on the terminal, in the style of the programs' other messages: `listener: warning:
/// …`, `chunk-server: error: …`, plain `chunk-server: …` for information. No timestamp: the
/// person reading it is watching now; the log file keeps the time.
pub fn terminal_line(name: &str, level: log::Level, message: &str) -> String {
    let kind = match level {
        log::Level::Error => "error: ",
        log::Level::Warn => "warning: ",
        log::Level::Info => "",
        log::Level::Debug => "debug: ",
        log::Level::Trace => "trace: ",
    };
    format!("{name}: {kind}{message}")
}

/// The logger of stderr: [`terminal_line`]s, or to the [`route_terminal`] sink.
struct Terminal {
    name: &'static str,
    level: LevelFilter,
}

impl Log for Terminal {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = terminal_line(self.name, record.level(), &record.args().to_string());
        match &*TERMINAL_SINK.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(sink) => sink(&line),
            // Nothing to do when stderr is gone.
            None => drop(writeln!(io::stderr().lock(), "{line}")),
        }
    }

    fn flush(&self) {}
}

impl SharedLogger for Terminal {
    fn level(&self) -> LevelFilter {
        self.level
    }

    fn config(&self) -> Option<&Config> {
        None
    }

    fn as_log(self: Box<Self>) -> Box<dyn Log> {
        self
    }
}

/// Hands every record on to the inner logger with its message made [`terminal_safe`]. Log
/// lines quote what came from the network (names, a peer's error message); the terminal shows
/// them, and so does a log file read with `cat` or `tail -f`, so neither may carry an escape
/// sequence or a bidi control raw. Event values are already escaped the JSON way
/// ([`events`](crate::events)), which this leaves alone.
struct TerminalSafe(Box<dyn SharedLogger>);

impl TerminalSafe {
    fn wrap(inner: Box<dyn SharedLogger>) -> Box<dyn SharedLogger> {
        Box::new(TerminalSafe(inner))
    }
}

impl Log for TerminalSafe {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.0.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        match terminal_safe(&message) {
            Cow::Borrowed(_) => self.0.log(record),
            Cow::Owned(safe) => self.0.log(
                &Record::builder()
                    .metadata(record.metadata().clone())
                    .args(format_args!("{safe}"))
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .build(),
            ),
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

impl SharedLogger for TerminalSafe {
    fn level(&self) -> LevelFilter {
        self.0.level()
    }

    fn config(&self) -> Option<&Config> {
        self.0.config()
    }

    fn as_log(self: Box<Self>) -> Box<dyn Log> {
        self
    }
}

/// An error and its causes on one line, for `main` to print once: `cannot listen on
/// 1.2.3.4:5001: Cannot assign requested address`. A cause whose text the message already
/// quotes is not repeated.
pub fn describe_error(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on {addr}")]
    struct Outer {
        addr: &'static str,
        source: io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open x: {0}")]
    struct Quoting(#[source] io::Error);

    #[test]
    fn causes_are_appended_once() {
        let e = Outer {
            addr: "1.2.3.4:5001",
            source: io::Error::other("address not available"),
        };
        assert_eq!(
            describe_error(&e),
            "cannot listen on 1.2.3.4:5001: address not available"
        );
        let quoting = Quoting(io::Error::other("denied"));
        assert_eq!(describe_error(&quoting), "cannot open x: denied");
    }

    #[test]
    fn terminal_lines_name_the_program_and_the_kind_without_a_timestamp() {
        use log::Level;
        for (level, expected) in [
            (Level::Error, "listener: error: cannot bind"),
            (Level::Warn, "listener: warning: cannot bind"),
            (Level::Info, "listener: cannot bind"),
            (Level::Debug, "listener: debug: cannot bind"),
            (Level::Trace, "listener: trace: cannot bind"),
        ] {
            assert_eq!(terminal_line("listener", level, "cannot bind"), expected);
        }
    }

    #[test]
    fn terminal_lines_go_to_the_route_while_it_lives() {
        use std::sync::Arc;
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let terminal = Terminal {
            name: "downloader",
            level: LevelFilter::Warn,
        };
        let log = |message: &str, level| {
            terminal.log(
                &Record::builder()
                    .level(level)
                    .args(format_args!("{message}"))
                    .build(),
            );
        };
        let route = {
            let seen = Arc::clone(&seen);
            route_terminal(move |line| seen.lock().unwrap().push(line.to_owned()))
        };
        log("holder gone", log::Level::Warn);
        log("too detailed", log::Level::Info);
        drop(route);
        log("after the bar", log::Level::Warn);
        assert_eq!(*seen.lock().unwrap(), ["downloader: warning: holder gone"]);
    }

    #[test]
    fn every_line_logged_is_terminal_safe() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let inner = WriteLogger::new(LevelFilter::Info, Config::default(), file.reopen().unwrap());
        let logger = TerminalSafe(inner);
        let log = |message: &str| {
            logger.log(
                &Record::builder()
                    .level(log::Level::Warn)
                    .args(format_args!("{message}"))
                    .build(),
            );
        };
        log("refused \u{1b}]0;owned\u{7} from \u{202e}evil");
        log("plain Résumé 日本語");
        logger.flush();
        let written = std::fs::read_to_string(file.path()).unwrap();
        assert!(
            written.contains("refused \\u{1b}]0;owned\\u{7} from \\u{202e}evil\n"),
            "{written:?}"
        );
        assert!(written.contains("plain Résumé 日本語\n"), "{written:?}");
        assert!(
            !written.contains(['\u{1b}', '\u{7}', '\u{202e}']),
            "{written:?}"
        );
    }
}
