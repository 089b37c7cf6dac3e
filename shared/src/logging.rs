//! Logger set-up for the binaries: one call to [`init`] from `main`, never from library code,
//! which only uses the `log` macros.
//!
//! The terminal gets diagnostics on stderr; the program's log file (`server.log`, `client.log`)
//! gets the same lines, appended, with RFC 3339 UTC timestamps, so that the
//! [`events`](crate::events) in it can be read back.

use std::fs::OpenOptions;
use std::io;
use std::path::PathBuf;

use log::LevelFilter;
use simplelog::{
    ColorChoice, CombinedLogger, ConfigBuilder, SharedLogger, TermLogger, TerminalMode, WriteLogger,
};

/// Where log lines go.
#[derive(Debug, Clone)]
pub struct LogOptions {
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
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![TermLogger::new(
        options.terminal,
        config.clone(),
        TerminalMode::Stderr,
        ColorChoice::Never,
    )];
    if let Some((path, level)) = options.file {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
            })?;
        loggers.push(WriteLogger::new(level, config, file));
    }
    CombinedLogger::init(loggers).map_err(io::Error::other)
}

/// The whole `main` of a program that logs to the terminal only: starts logging (debug level
/// when `verbose`), runs `start`, and turns its error into one line on stderr and exit status 1.
pub fn run_terminal_program(
    name: &str,
    verbose: bool,
    start: impl FnOnce() -> Result<(), Box<dyn std::error::Error>>,
) -> std::process::ExitCode {
    let terminal = if verbose {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    if let Err(e) = init(LogOptions {
        terminal,
        file: None,
    }) {
        eprintln!("{name}: cannot start logging: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match start() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", describe_error(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
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
}
