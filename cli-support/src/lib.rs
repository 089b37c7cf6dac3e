//! What the four programs' command lines share and the `shared` library must not carry (it
//! stays free of clap): `--generate`, which prints a man page or a shell completion script made
//! from a program's own clap definition, as ripgrep does. One place, so the four programs offer
//! the same kinds under the same names.

use std::io::{self, Write};
use std::process::ExitCode;

pub mod peer_toml;

use clap::{Command, CommandFactory, ValueEnum};
use clap_complete::Shell;

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// A roff man page (section 1): `man -l -` reads it.
    Man,
    /// A bash completion script.
    CompleteBash,
    /// A zsh completion script (install it as `_PROGRAM` in a folder of `$fpath`).
    CompleteZsh,
    /// A fish completion script.
    CompleteFish,
}

/// `what`, made from `command` (the program's full clap definition).
///
/// # Panics
/// Only if clap_mangen broke its invariants: writing to a `Vec` cannot fail, and the page it
/// writes is UTF-8.
pub fn generate(what: Generate, mut command: Command) -> Vec<u8> {
    let shell = match what {
        Generate::Man => return man_page(command),
        Generate::CompleteBash => Shell::Bash,
        Generate::CompleteZsh => Shell::Zsh,
        Generate::CompleteFish => Shell::Fish,
    };
    let mut text = Vec::new();
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, &mut command, name, &mut text);
    text
}

/// The man page. `--help`'s closing text becomes two sections: its paragraph on
/// `DIR/peer.toml` ([`peer_toml::help_note`]) a FILES section, its examples (laid out in
/// columns, from the line `Examples:` on) an EXAMPLES section kept as it is written (`.nf`), not
/// clap_mangen's EXTRA section, which would run its lines together into one paragraph.
fn man_page(command: Command) -> Vec<u8> {
    let after_help = command.get_after_help().map(ToString::to_string);
    let mut page = Vec::new();
    clap_mangen::Man::new(command.after_help(None::<&str>))
        .render(&mut page)
        .expect("writing to a Vec cannot fail");
    let Some(after_help) = after_help else {
        return page;
    };
    let mut page = String::from_utf8(page).expect("clap_mangen writes UTF-8");
    let (note, examples) = match after_help.find("Examples:") {
        Some(at) => after_help.split_at(at),
        None => ("", after_help.as_str()),
    };
    let mut sections = String::new();
    if !note.trim().is_empty() {
        sections.push_str(
            ".SH FILES
",
        );
        // One filled paragraph: man wraps it to the reader's terminal.
        let paragraph = note.split_whitespace().collect::<Vec<_>>().join(" ");
        sections.push_str(&roff_lines(std::iter::once(paragraph.as_str())));
    }
    sections.push_str(".SH EXAMPLES\n.nf\n");
    sections.push_str(&roff_lines(
        examples.lines().skip_while(|l| l.trim_end().ends_with(':')),
    ));
    sections.push_str(".fi\n");
    match page.find(".SH VERSION") {
        Some(at) => page.insert_str(at, &sections),
        None => page.push_str(&sections),
    }
    page.into_bytes()
}

/// Text lines as roff input lines: backslashes and dashes escaped, and a line that would start
/// with a control character (`.`, `'`) made plain text.
fn roff_lines<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for line in lines {
        let line = line.replace('\\', "\\e").replace('-', "\\-");
        if line.starts_with(['.', '\'']) {
            out.push_str("\\&");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// [`generate`] to stdout, for `main`: success, also when the reader went away early
/// (`| head`); otherwise the error on stderr and exit status 1.
pub fn print(what: Generate, command: Command) -> ExitCode {
    let name = command.get_name().to_owned();
    let text = generate(what, command);
    let mut stdout = io::stdout().lock();
    match stdout.write_all(&text).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `--generate KIND` flag, the same in every program: `#[command(flatten)]` it into the
/// program's `Args`, and call [`GenerateFlag::print`] right after parsing.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GenerateFlag {
    /// Print a man page or a shell completion script (made from these flags) to stdout, and exit
    /// without running.
    #[arg(long = "generate", value_name = "KIND", value_enum)]
    pub kind: Option<Generate>,
}

impl GenerateFlag {
    /// With `--generate`: prints what it asks for, made from `A`'s clap definition, and says how
    /// the program exits; `None` to run normally.
    pub fn print<A: CommandFactory>(&self) -> Option<ExitCode> {
        self.kind.map(|what| print(what, A::command()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> Command {
        Command::new("demo")
            .about("A demo")
            .arg(clap::Arg::new("dir").long("dir"))
            .after_help("Settings may also\ncome from a-file.\n\nExamples:\n  demo --dir a     one\n.odd line")
    }

    #[test]
    fn man_page_keeps_the_examples_as_written() {
        let page = String::from_utf8(generate(Generate::Man, command())).unwrap();
        assert!(page.contains(".TH demo 1"), "{page}");
        assert!(!page.contains(".SH EXTRA"), "{page}");
        assert!(
            page.contains(".SH FILES\nSettings may also come from a\\-file.\n.SH EXAMPLES"),
            "{page}"
        );
        let examples = page
            .split(".SH EXAMPLES\n")
            .nth(1)
            .expect("an EXAMPLES section");
        assert!(
            examples.starts_with(".nf\n  demo \\-\\-dir a     one\n\\&.odd line\n.fi\n"),
            "{examples}"
        );
    }

    #[test]
    fn completions_name_the_program() {
        for what in [
            Generate::CompleteBash,
            Generate::CompleteZsh,
            Generate::CompleteFish,
        ] {
            let script = String::from_utf8(generate(what, command())).unwrap();
            assert!(
                script.contains("demo") && script.contains("dir"),
                "{what:?}: {script}"
            );
        }
    }
}
