//! The `main` every program shares: start logging, install the signal handler, run, and turn
//! the result into one message and an exit status.
//!
//! Each `main.rs` parses its `Args` (clap stays in the binaries), turns them into its library's
//! `Config`, and hands a closure to [`run_main`]; so the four programs start, report errors and
//! exit the same way.
//!
//! # Exit status
//! | status | when |
//! |---|---|
//! | 0 | the program finished, or stopped cleanly on a signal |
//! | 1 | it failed; one line `NAME: error: …` on stderr says why, with its causes |
//! | 2 | the command line was wrong (clap says why) |
//! | 128 + N | a failure that is the signal N's doing: 130 for Ctrl-C, 143 for SIGTERM |

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use log::LevelFilter;

use crate::instance::InstanceLock;
use crate::logging::{self, describe_error, LogOptions};
use crate::peer_dir::PeerDir;
use crate::shutdown::{self, Shutdown};
use crate::text::terminal_safe;

/// How a program runs: its name, its peer folder and where it logs.
#[derive(Debug, Clone)]
pub struct Program {
    /// The program's name, which starts every error line.
    pub name: &'static str,
    /// A folder created before anything else (the peer folder, where the log file goes).
    pub create_dir: Option<PathBuf>,
    /// The most detailed level shown on stderr.
    pub terminal: LevelFilter,
    /// A log file and its level.
    pub log_file: Option<(PathBuf, LevelFilter)>,
    /// The peer folder this program must be the only one of its kind in: its
    /// [`InstanceLock`] is taken before logging starts and held until the program ends.
    pub single_in: Option<PathBuf>,
}

impl Program {
    /// A program that logs to stderr only, at debug level when `verbose`, else info.
    pub fn new(name: &'static str, verbose: bool) -> Program {
        Program {
            name,
            create_dir: None,
            terminal: if verbose {
                LevelFilter::Debug
            } else {
                LevelFilter::Info
            },
            log_file: None,
            single_in: None,
        }
    }

    /// This program, required to be the only one of its kind running in the peer folder `dir`
    /// (the chunk server, announcer and listener of one peer).
    pub fn alone_in(self, dir: impl Into<PathBuf>) -> Program {
        Program {
            single_in: Some(dir.into()),
            ..self
        }
    }
}

/// Why a program stopped with an error: any error, plus whether it is the result of a signal
/// (a download cut short by Ctrl-C), which sets the exit status to 128 + the signal.
///
/// Any [`std::error::Error`] converts into it, so a start function uses `?` freely.
pub struct MainError {
    error: Box<dyn StdError + Send + Sync>,
    cancelled: bool,
}

impl MainError {
    /// An error given as text: `MainError::msg(format!("bad --peer: {e}"))`.
    pub fn msg(text: impl Into<String>) -> MainError {
        MainError {
            error: text.into().into(),
            cancelled: false,
        }
    }

    /// `error`, marked as the result of a signal when `cancelled`.
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync>>, cancelled: bool) -> MainError {
        MainError {
            error: error.into(),
            cancelled,
        }
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for MainError {
    fn from(error: E) -> MainError {
        MainError::new(error, false)
    }
}

impl fmt::Debug for MainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} (cancelled: {})", self.error, self.cancelled)
    }
}

/// The whole `main` of a program: creates [`Program::create_dir`], takes the folder's
/// instance lock, starts logging, installs the signal handler
/// ([`shutdown::install_ctrlc_handler`]), calls `start` with the shutdown flag and returns the
/// exit status (see the [module](self) table).
pub fn run_main(
    program: Program,
    start: impl FnOnce(&Shutdown) -> Result<(), MainError>,
) -> ExitCode {
    run_main_asking(program, || (), |shutdown, ()| start(shutdown))
}

/// [`run_main`] for a program that may ask the user something at the terminal before it runs
/// (the announcer's username): `ask` runs once the folder is known to be this program's (so
/// nobody is asked a question only to be told the folder is in use), and before the signal
/// handler is installed (so Ctrl-C at the question ends the program at once).
pub fn run_main_asking<T>(
    program: Program,
    ask: impl FnOnce() -> T,
    start: impl FnOnce(&Shutdown, T) -> Result<(), MainError>,
) -> ExitCode {
    let shutdown = Shutdown::new();
    // `_lock` lives until the program returns: it is what makes it the folder's only one.
    let result = claim(&program).and_then(|_lock| {
        let answer = ask();
        start_logging_and_signals(&program, &shutdown)?;
        start(&shutdown, answer)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote names and peers' messages: shown, never obeyed.
            eprintln!(
                "{}: error: {}",
                program.name,
                terminal_safe(&describe_error(e.error.as_ref()))
            );
            shutdown
                .exit_status()
                .filter(|_| e.cancelled)
                .map_or(ExitCode::FAILURE, ExitCode::from)
        }
    }
}

/// Creates the folder to create and takes the instance lock, if the program has them.
fn claim(program: &Program) -> Result<Option<InstanceLock>, MainError> {
    if let Some(dir) = &program.create_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            MainError::msg(format!(
                "cannot create the peer folder {}: {e}",
                dir.display()
            ))
        })?;
    }
    let lock = program
        .single_in
        .as_ref()
        .map(|dir| InstanceLock::acquire(&PeerDir::new(dir), program.name))
        .transpose()?;
    Ok(lock)
}

fn start_logging_and_signals(program: &Program, shutdown: &Shutdown) -> Result<(), MainError> {
    logging::init(LogOptions {
        name: program.name,
        terminal: program.terminal,
        file: program.log_file.clone(),
    })
    .map_err(|e| MainError::msg(format!("cannot start logging: {e}")))?;
    shutdown::install_ctrlc_handler(shutdown)
        .map_err(|e| MainError::msg(format!("cannot install the signal handler: {e}")))
}
