//! Where the prompt's lines come from: the line editor (`rustyline`) when standard input is a
//! terminal, with editing, Tab completion ([`super::complete`]) and a history kept in the peer
//! folder; plain lines otherwise (a pipe, a script), read as they come.
//!
//! Either way the reading happens on a thread of its own and the prompt waits for it while
//! watching the shutdown flag, so a SIGTERM (or a Ctrl-C sent with `kill`) ends the prompt at
//! once, even while it waits for input. A Ctrl-C *typed* at the editor never becomes a signal:
//! the editor holds the terminal in raw mode and reads it as a key (`Interrupted`), which also
//! quits. Between two lines the terminal is back in its normal mode, so a Ctrl-C during a
//! download is the usual SIGINT that cancels it.

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::Duration;

use rustyline::config::{CompletionType, Config as EditorConfig};
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::Editor;
use shared::shutdown::Shutdown;

use super::complete::{Completion, Names};
use crate::error::Error;
use crate::wording::write_out;

/// How often the prompt looks at the shutdown flag while it waits for input.
const INPUT_POLL: Duration = Duration::from_millis(100);

/// The prompt the user types after.
pub(super) const PROMPT: &str = "> ";

/// The most lines the history file keeps (the oldest go first).
const HISTORY_LINES: usize = 1000;

/// What the prompt reads next.
pub(super) enum Next {
    /// A line, without its end.
    Line(String),
    /// End of input, `quit`-like keys (Ctrl-C, Ctrl-D at the editor) or a shutdown signal.
    Quit,
}

/// One reading of the line editor, sent back from its thread.
pub(super) enum Read {
    Line(String),
    /// Ctrl-C or Ctrl-D at the prompt.
    Quit,
    Failed(io::Error),
}

/// The source of the prompt's lines.
pub(super) enum Input {
    /// Plain lines, read ahead by a thread.
    Lines(Receiver<io::Result<String>>),
    /// The line editor, on a thread that reads one line each time it is asked: it must not
    /// hold the terminal in raw mode while a download runs.
    Editor {
        ask: Sender<()>,
        read: Receiver<Read>,
        /// The terminal's mode before the editor first changed it, put back should a signal
        /// end the prompt while the editor's thread holds it raw.
        #[cfg(unix)]
        saved: Option<nix::sys::termios::Termios>,
    },
}

impl Input {
    /// Plain lines from `input`.
    pub(super) fn lines(input: impl BufRead + Send + 'static) -> Input {
        let (tx, rx) = mpsc::sync_channel::<io::Result<String>>(1);
        std::thread::spawn(move || {
            for line in input.lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Input::Lines(rx)
    }

    /// The line editor on the terminal of standard input, completing from `names`, its
    /// history read from and appended to `history` (created at the first line typed).
    pub(super) fn editor(history: PathBuf, names: Names) -> Input {
        #[cfg(unix)]
        let saved = nix::sys::termios::tcgetattr(io::stdin()).ok();
        let (ask, asked) = mpsc::channel::<()>();
        let (tx, read) = mpsc::sync_channel::<Read>(1);
        std::thread::spawn(move || edit(&history, names, &asked, &tx));
        Input::Editor {
            ask,
            read,
            #[cfg(unix)]
            saved,
        }
    }

    /// Waits for the next line, writing the prompt first (the editor writes its own).
    ///
    /// # Errors
    /// When the input or the terminal fails.
    pub(super) fn next(
        &mut self,
        out: &mut dyn io::Write,
        shutdown: &Shutdown,
    ) -> Result<Next, Error> {
        let failed = |source| Error::Io {
            context: "cannot read the terminal".into(),
            source,
        };
        match self {
            Input::Lines(lines) => {
                write_out(out, PROMPT)?;
                match wait(lines, shutdown) {
                    Some(Ok(line)) => Ok(Next::Line(line)),
                    Some(Err(e)) => Err(failed(e)),
                    None => {
                        write_out(out, "\n")?;
                        Ok(Next::Quit)
                    }
                }
            }
            Input::Editor { ask, read, .. } => {
                if ask.send(()).is_err() {
                    return Ok(Next::Quit);
                }
                match wait(read, shutdown) {
                    Some(Read::Line(line)) => Ok(Next::Line(line)),
                    Some(Read::Quit) => Ok(Next::Quit),
                    Some(Read::Failed(e)) => Err(failed(e)),
                    None => {
                        self.restore_terminal();
                        write_out(out, "\n")?;
                        Ok(Next::Quit)
                    }
                }
            }
        }
    }

    /// Puts the terminal back as it was before the editor, whose thread may still hold it
    /// raw (waiting for a key) when a signal ends the prompt: the shell must not inherit a
    /// terminal that neither echoes nor reads lines.
    fn restore_terminal(&self) {
        #[cfg(unix)]
        if let Input::Editor {
            saved: Some(saved), ..
        } = self
        {
            use nix::sys::termios::{tcsetattr, SetArg};
            if let Err(e) = tcsetattr(io::stdin(), SetArg::TCSANOW, saved) {
                log::warn!("cannot restore the terminal's mode: {e}");
            }
            // The editor also turned bracketed paste on.
            let _ = write_out(&mut io::stdout(), "\x1b[?2004l");
        }
    }
}

/// The next item from `rx`, or `None` at its end or once `shutdown` is triggered.
fn wait<T>(rx: &Receiver<T>, shutdown: &Shutdown) -> Option<T> {
    loop {
        if shutdown.is_triggered() {
            return None;
        }
        match rx.recv_timeout(INPUT_POLL) {
            Ok(item) => return Some(item),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// The editor's thread: reads a line each time `asked`, until the prompt goes away.
fn edit(history: &Path, names: Names, asked: &Receiver<()>, tx: &SyncSender<Read>) {
    let config = EditorConfig::builder()
        .completion_type(CompletionType::List)
        .max_history_size(HISTORY_LINES)
        .and_then(|c| c.history_ignore_dups(true))
        .map(|c| c.auto_add_history(true).build());
    let editor = config
        .and_then(Editor::<Completion, FileHistory>::with_config)
        .map_err(|e| io::Error::other(e.to_string()));
    let mut editor = match editor {
        Ok(editor) => editor,
        Err(e) => {
            let _ = asked.recv();
            let _ = tx.send(Read::Failed(e));
            return;
        }
    };
    editor.set_helper(Some(Completion::new(names)));
    if history.exists() {
        if let Err(e) = editor.load_history(history) {
            log::warn!("cannot read the prompt history {}: {e}", history.display());
        }
    }
    while asked.recv().is_ok() {
        let read = match editor.readline(PROMPT) {
            Ok(line) => {
                // Appended at once: the prompt may end by a signal, with no chance to save.
                if let Err(e) = editor.append_history(history) {
                    log::warn!("cannot write the prompt history {}: {e}", history.display());
                }
                Read::Line(line)
            }
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => Read::Quit,
            Err(ReadlineError::Io(e)) => Read::Failed(e),
            Err(e) => Read::Failed(io::Error::other(e.to_string())),
        };
        if tx.send(read).is_err() {
            break;
        }
    }
}
