//! `DIR/peer.toml`: a peer's settings in one file, read by all four programs, so that one peer
//! is started by one short command per program. The file only supplies flags the command line
//! left out: a flag given on the command line always wins, and a repeatable one (`--peer`)
//! replaces the file's list rather than adding to it.
//!
//! ```toml
//! bind = "127.0.0.2"              # top level: every program with that flag
//! announce-port = 5000            # announcer and listener --port
//! [chunk-server]                  # a program's table: its long flags by name
//! max-rate = 1000000
//! ```
//!
//! How: argv is parsed first, as if there were no file (so `--help`, `--version` and usage
//! errors behave as always, and `--dir` is known); then the file's settings for flags the
//! command line did not give are put in front of argv as `--flag=value` words and the whole is
//! parsed again. Every value goes through the flag's own clap parser, so the file accepts
//! exactly what the command line accepts; what it cannot accept is reported with the file's
//! name and the line, exit status 2 like any usage error. Only this edge reads files; the rest
//! ([`settings`], [`injected`]) is pure.

use std::any::TypeId;
use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt;
use std::io::ErrorKind as IoErrorKind;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, Parser};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The file's name in the peer folder.
pub const FILE_NAME: &str = "peer.toml";

/// The programs that read the file, which are also its tables' names.
pub const PROGRAMS: [&str; 4] = ["announcer", "listener", "chunk-server", "downloader"];

/// The top-level keys: settings of the peer rather than of one program, each with the
/// programs it applies to and the flag it sets there. A program without the flag ignores the
/// key (the downloader has no `--port`); a key that is not here is an error everywhere.
/// `chunk-port` is not the announcer's `--chunk-port`: the announcer already announces the
/// port its folder's chunk server records, and announces nothing while none runs.
pub const SHARED_KEYS: &[(&str, &[(&str, &str)])] = &[
    ("username", &[("announcer", "username")]),
    (
        "bind",
        &[
            ("announcer", "bind"),
            ("listener", "bind"),
            ("chunk-server", "bind"),
            ("downloader", "bind"),
        ],
    ),
    (
        "announce-port",
        &[("announcer", "port"), ("listener", "port")],
    ),
    ("chunk-port", &[("chunk-server", "port")]),
    (
        "broadcast",
        &[("announcer", "broadcast"), ("listener", "broadcast")],
    ),
    ("peer", &[("announcer", "peer"), ("listener", "peer")]),
    (
        "allow-legacy",
        &[
            ("listener", "allow-legacy"),
            ("chunk-server", "allow-legacy"),
        ],
    ),
];

/// Flags the file cannot set: `--dir` says where the file is, the others are not settings.
const NOT_SETTABLE: [&str; 4] = ["dir", "generate", "help", "version"];

/// What the file sets for one flag of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The clap id of the flag.
    pub id: String,
    /// Its words on a command line: `--bind=127.0.0.2`, `--peer=a`, `--peer=b`, `--verbose`;
    /// none for a switch set to `false` or an empty list.
    pub words: Vec<String>,
    /// The line of the file that sets it (1-based).
    pub line: usize,
}

/// Something wrong in the file: where (1-based line, when known) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The line of the file, when the problem has one.
    pub line: Option<usize>,
    /// What is wrong, e.g. `unknown key "chunk_prot" (did you mean chunk-port?); …`.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why the arguments could not be had.
#[derive(Debug)]
pub enum Error {
    /// The command line itself (or `--help`, `--version`): clap's own report.
    Usage(clap::Error),
    /// The peer folder's `peer.toml`.
    File {
        /// The program, which starts the message like every other error of it.
        program: String,
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        error: FileError,
    },
}

impl Error {
    /// Prints the error as the program's usage errors are printed, and exits: status 2, or 0
    /// for `--help` and `--version`.
    pub fn exit(self) -> ! {
        match self {
            Error::Usage(e) => e.exit(),
            Error::File {
                program,
                path,
                error,
            } => {
                eprintln!("{program}: error: {}", file_message(&path, &error));
                std::process::exit(2)
            }
        }
    }
}

/// `DIR/peer.toml line 3: …`
fn file_message(path: &Path, error: &FileError) -> String {
    match error.line {
        Some(line) => format!("{} line {line}: {}", path.display(), error.message),
        None => format!("{}: {}", path.display(), error.message),
    }
}

/// The program's arguments: its command line, completed from `DIR/peer.toml` when that file
/// exists. Exits like clap's own `parse` on a bad command line (or after `--help`), and with
/// status 2 on a bad file.
pub fn parse<A: Parser>() -> A {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// [`parse`] from the given argv (its first word the program's name), returning what is wrong.
///
/// # Errors
/// [`Error::Usage`] for the command line (also `--help`), [`Error::File`] for the file.
pub fn try_parse_from<A: Parser>(
    argv: impl IntoIterator<Item = impl Into<OsString>>,
) -> Result<A, Error> {
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut command = A::command();
    command.build();
    let matches = command
        .clone()
        .try_get_matches_from(&argv)
        .map_err(Error::Usage)?;
    let mut matches = match read_file(&command, &matches) {
        None => matches,
        Some((path, text)) => {
            let program = command.get_name().to_owned();
            let file_error = |error| Error::File {
                program: program.clone(),
                path: path.clone(),
                error,
            };
            let text = text.map_err(file_error)?;
            let dir = path.parent().unwrap_or(Path::new("."));
            let settings = settings(&text, &command, dir).map_err(file_error)?;
            let words = injected(&command, &matches, &settings);
            let argv = argv[..1]
                .iter()
                .cloned()
                .chain(words)
                .chain(argv[1..].iter().cloned());
            // The command line alone parsed, so what fails now comes from the file: two of its
            // flags that exclude each other, say.
            command.clone().try_get_matches_from(argv).map_err(|e| {
                file_error(FileError {
                    line: None,
                    message: clap_message(&e),
                })
            })?
        }
    };
    A::from_arg_matches_mut(&mut matches).map_err(Error::Usage)
}

/// The file and its text, when it is to be read: it exists in `--dir`, and the command line
/// does not just ask for `--generate` (which prints what the flags are, whatever the folder).
/// The text is a [`FileError`] when the file exists but cannot be read.
fn read_file(
    command: &Command,
    matches: &ArgMatches,
) -> Option<(PathBuf, Result<String, FileError>)> {
    let id_of = |long: &str| {
        command
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .map(|a| a.get_id().as_str().to_owned())
    };
    if let Some(generate) = id_of("generate") {
        if matches.value_source(&generate) == Some(ValueSource::CommandLine) {
            return None;
        }
    }
    let dir = matches.get_one::<PathBuf>(&id_of("dir")?)?;
    let path = dir.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        // No file, or no folder yet (the program reports a --dir that is not one its own way).
        Err(e) if matches!(e.kind(), IoErrorKind::NotFound | IoErrorKind::NotADirectory) => {
            return None
        }
        Err(e) => Err(FileError {
            line: None,
            message: format!("cannot read it: {e}"),
        }),
    };
    Some((path, text))
}

/// What the file `text` sets for `command` (a built clap command: its name says which table is
/// its own), in file order, a program table's key winning over the top-level key for the same
/// flag. A relative path given to a path flag (`share = ["music"]`) is taken from `dir`, the
/// file's folder, as paths in a file usually are, rather than from wherever the program starts.
///
/// # Errors
/// The first problem: bad TOML, an unknown table or key, a key the file cannot set, a value
/// of the wrong type or one the flag's parser refuses.
pub fn settings(text: &str, command: &Command, dir: &Path) -> Result<Vec<Setting>, FileError> {
    let program = command.get_name();
    let document = DeTable::parse(text).map_err(|e| FileError {
        line: e.span().map(|s| line_of(text, s.start)),
        message: e.message().trim_end().to_owned(),
    })?;
    let mut settings: Vec<Setting> = Vec::new();
    let mut own_table = None;
    for (key, value) in in_file_order(document.get_ref()) {
        let line = line_of(text, key.span().start);
        let name: &str = key.get_ref();
        if PROGRAMS.contains(&name) {
            let Some(table) = value.get_ref().as_table() else {
                return Err(FileError {
                    line: Some(line),
                    message: format!(
                        "\"{name}\" is a program: its settings go in a table, [{name}]"
                    ),
                });
            };
            if name == program {
                own_table = Some(table);
            }
            continue;
        }
        let Some((_, programs)) = SHARED_KEYS.iter().find(|(k, _)| *k == name) else {
            return Err(unknown_top_level(name, value.get_ref(), line));
        };
        // Through the flag's own parser where it applies; elsewhere its type is still checked,
        // so that a wrong type is reported whichever program starts first.
        for (p, flag) in *programs {
            if *p == program {
                settings.push(setting(command, name, flag, value, (text, dir))?);
            }
        }
        if !programs.iter().any(|(p, _)| *p == program) {
            check_shared_type(name, value, text)?;
        }
    }
    for (key, value) in own_table.map(in_file_order).unwrap_or_default() {
        let name: &str = key.get_ref();
        let line = line_of(text, key.span().start);
        if NOT_SETTABLE.contains(&name) {
            return Err(FileError {
                line: Some(line),
                message: format!("--{name} cannot be set in {FILE_NAME}"),
            });
        }
        let s = setting(command, name, name, value, (text, dir)).map_err(|mut e| {
            if e.message.starts_with("unknown") {
                e.message = format!(
                    "unknown key \"{name}\" in [{program}]: {program} has no --{name}{}",
                    suggestion(name, command.get_arguments().filter_map(|a| a.get_long()))
                );
            }
            e
        })?;
        settings.retain(|old| old.id != s.id);
        settings.push(s);
    }
    settings.sort_by_key(|s| s.line);
    Ok(settings)
}

type Entry<'a, 'i> = (&'a Spanned<Cow<'i, str>>, &'a Spanned<DeValue<'i>>);

/// A table's entries as they stand in the file (the parser keeps them sorted by name), so that
/// the first mistake reported is the first one in the file.
fn in_file_order<'a, 'i>(table: &'a DeTable<'i>) -> Vec<Entry<'a, 'i>> {
    let mut entries: Vec<Entry<'a, 'i>> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// The error for a top-level key that is neither shared nor a program's table.
fn unknown_top_level(name: &str, value: &DeValue<'_>, line: usize) -> FileError {
    let message = if value.is_table() {
        format!(
            "unknown table [{name}]{}; the tables are [{}]",
            suggestion(name, PROGRAMS.iter().copied()),
            PROGRAMS.join("], [")
        )
    } else {
        let keys: Vec<&str> = SHARED_KEYS.iter().map(|(k, _)| *k).collect();
        format!(
            "unknown key \"{name}\"{}; the top-level keys are {}, a program's other flags go \
             in its table ([chunk-server] max-rate = 1000000)",
            suggestion(name, keys.iter().copied()),
            keys.join(", ")
        )
    };
    FileError {
        line: Some(line),
        message,
    }
}

/// ` (did you mean chunk-port?)` when `name` is one of `known` but for `_` or case, or one
/// letter off or two swapped; else nothing.
fn suggestion<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let normal = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let name = normal(name);
    known
        .into_iter()
        .find(|k| {
            let k = normal(k);
            k == name || near(&k, &name)
        })
        .map(|k| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
}

/// Whether two names differ by one letter changed, added or removed, or two adjacent ones
/// swapped: the usual typos (an optimal-string-alignment distance of 1).
fn near(a: &str, b: &str) -> bool {
    strsim::osa_distance(a, b) <= 1
}

/// A shared key this program has no flag for: at least its type is checked (one value or an
/// array of them), since its own program checks the rest.
fn check_shared_type(key: &str, value: &Spanned<DeValue<'_>>, text: &str) -> Result<(), FileError> {
    let elements: Vec<&Spanned<DeValue<'_>>> = match value.get_ref() {
        DeValue::Array(items) => items.iter().collect(),
        _ => vec![value],
    };
    for element in elements {
        text_of(element.get_ref()).ok_or_else(|| FileError {
            line: Some(line_of(text, element.span().start)),
            message: format!(
                "\"{key}\" takes a string or a number, not {}",
                type_name(element.get_ref())
            ),
        })?;
    }
    Ok(())
}

/// The setting of `command`'s flag `--flag` by the file's `key` = `value`; the file's `text`
/// (for line numbers) and folder (for relative paths).
fn setting(
    command: &Command,
    key: &str,
    flag: &str,
    value: &Spanned<DeValue<'_>>,
    (text, dir): (&str, &Path),
) -> Result<Setting, FileError> {
    let line = line_of(text, value.span().start);
    let error = |line, message| FileError {
        line: Some(line),
        message,
    };
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some(flag) && !a.is_positional())
        .ok_or_else(|| error(line, format!("unknown key \"{key}\"")))?;
    let id = arg.get_id().as_str().to_owned();
    let is_path = arg.get_value_parser().type_id() == TypeId::of::<PathBuf>();
    let words = match arg.get_action() {
        ArgAction::SetTrue | ArgAction::Count => match value.get_ref() {
            DeValue::Boolean(true) => vec![format!("--{flag}")],
            DeValue::Boolean(false) => Vec::new(),
            other => {
                return Err(error(
                    line,
                    format!(
                        "\"{key}\" is a switch: true or false, not {}",
                        type_name(other)
                    ),
                ))
            }
        },
        ArgAction::Set | ArgAction::Append => {
            let elements: Vec<&Spanned<DeValue<'_>>> = match value.get_ref() {
                DeValue::Array(items) if matches!(arg.get_action(), ArgAction::Append) => {
                    items.iter().collect()
                }
                DeValue::Array(_) => {
                    return Err(error(
                        line,
                        format!("\"{key}\" takes one value, not an array"),
                    ))
                }
                _ => vec![value],
            };
            let mut words = Vec::new();
            for element in elements {
                let line = line_of(text, element.span().start);
                let value = text_of(element.get_ref()).ok_or_else(|| {
                    error(
                        line,
                        format!(
                            "\"{key}\" takes a string or a number, not {}",
                            type_name(element.get_ref())
                        ),
                    )
                })?;
                let value = if is_path && Path::new(&value).is_relative() {
                    dir.join(value).to_string_lossy().into_owned()
                } else {
                    value
                };
                check_value(command, arg, &value)
                    .map_err(|message| error(line, format!("{key}: {message}")))?;
                words.push(format!("--{flag}={value}"));
            }
            words
        }
        _ => {
            return Err(error(
                line,
                format!("--{flag} cannot be set in {FILE_NAME}"),
            ))
        }
    };
    Ok(Setting { id, words, line })
}

/// Whether the flag's own parser takes `value`; clap's complaint if not. (clap offers no
/// public way to run one argument's parser alone, so a command line of that flag alone is
/// parsed: only a complaint about the value counts, the final parse reports the rest.)
fn check_value(command: &Command, arg: &clap::Arg, value: &str) -> Result<(), String> {
    let flag = arg.get_long().unwrap_or_default();
    let argv = [command.get_name().to_owned(), format!("--{flag}={value}")];
    match command.clone().try_get_matches_from(argv) {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation
            ) =>
        {
            Err(clap_message(&e))
        }
        _ => Ok(()),
    }
}

/// The first line of a clap error, without its `error: `.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// A scalar as a command-line word: strings as they are, numbers in decimal.
fn text_of(value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(|n| n.to_string()),
        DeValue::Float(f) => Some(f.as_str().to_owned()),
        _ => None,
    }
}

/// "a boolean", "an array"…, for the messages.
fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The words to put in front of argv: the settings of flags the command line did not give,
/// nor excludes (a `--quiet` given beats a `verbose = true` in the file).
pub fn injected(command: &Command, matches: &ArgMatches, settings: &[Setting]) -> Vec<OsString> {
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let given_ids: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| given(a.get_id().as_str()))
        .collect();
    let excluded = |id: &str| {
        let Some(arg) = command.get_arguments().find(|a| a.get_id() == id) else {
            return false;
        };
        given_ids.iter().any(|g| {
            command
                .get_arg_conflicts_with(g)
                .iter()
                .any(|c| c.get_id() == id)
                || command
                    .get_arg_conflicts_with(arg)
                    .iter()
                    .any(|c| c.get_id() == g.get_id())
        })
    };
    settings
        .iter()
        .filter(|s| !given(&s.id) && !excluded(&s.id))
        .flat_map(|s| s.words.iter().map(OsString::from))
        .collect()
}

/// The paragraph of `--help` above the examples that tells where else settings come from:
/// `program`'s table and the top-level keys that apply to it.
pub fn help_note(program: &str) -> String {
    let shared: Vec<String> = SHARED_KEYS
        .iter()
        .filter_map(|(key, programs)| {
            let (_, flag) = programs.iter().find(|(p, _)| *p == program)?;
            Some(if key == flag {
                (*key).to_owned()
            } else {
                format!("{key} (--{flag})")
            })
        })
        .collect();
    let shared = match shared.as_slice() {
        [] => String::new(),
        [one] => format!(", and its top-level key {one} is shared with the other programs"),
        [rest @ .., last] => format!(
            ", and its top-level keys {} and {last} are shared with the other programs",
            rest.join(", ")
        ),
    };
    let text = format!(
        "Settings may also come from DIR/{FILE_NAME}: the keys of its [{program}] table are the \
         long flags above (verbose = true; a repeatable flag takes an array){shared}. A flag \
         given here overrides the file."
    );
    wrap(&text, 95)
}

/// `--help`'s closing text: [`help_note`], then the program's examples (which stay last).
pub fn after_help(program: &str, examples: &str) -> String {
    format!("{}\n\n{examples}", help_note(program))
}

/// `text` in lines of at most `width` columns, broken between words.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split_whitespace() {
        if line_len > 0 && line_len + 1 + word.len() > width {
            out.push('\n');
            line_len = 0;
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{value_parser, Arg};

    /// A program like the four: a numbered port, repeatable peers, a switch and one that
    /// excludes it, a global flag and a subcommand.
    fn command(name: &'static str) -> Command {
        let mut command = Command::new(name)
            .arg(
                Arg::new("dir")
                    .long("dir")
                    .default_value(".")
                    .value_parser(value_parser!(PathBuf))
                    .global(true),
            )
            .arg(
                Arg::new("bind")
                    .long("bind")
                    .value_parser(value_parser!(std::net::IpAddr))
                    .global(true),
            )
            .arg(
                Arg::new("port")
                    .long("port")
                    .default_value("5000")
                    .value_parser(value_parser!(u16)),
            )
            .arg(Arg::new("peer").long("peer").action(ArgAction::Append))
            .arg(
                Arg::new("share")
                    .long("share")
                    .action(ArgAction::Append)
                    .value_parser(value_parser!(PathBuf)),
            )
            .arg(
                Arg::new("broadcast")
                    .long("broadcast")
                    .action(ArgAction::Append),
            )
            .arg(
                Arg::new("max_rate")
                    .long("max-rate")
                    .value_parser(value_parser!(u64)),
            )
            .arg(
                Arg::new("verbose")
                    .short('v')
                    .long("verbose")
                    .action(ArgAction::SetTrue)
                    .global(true)
                    .conflicts_with("quiet"),
            )
            .arg(
                Arg::new("quiet")
                    .short('q')
                    .long("quiet")
                    .action(ArgAction::SetTrue)
                    .global(true),
            )
            .subcommand(
                Command::new("list").arg(Arg::new("json").long("json").action(ArgAction::SetTrue)),
            );
        command.build();
        command
    }

    fn words(text: &str, program: &'static str) -> Result<Vec<String>, FileError> {
        let settings = settings(text, &command(program), Path::new("/peer"))?;
        Ok(settings.into_iter().flat_map(|s| s.words).collect())
    }

    fn error(text: &str) -> FileError {
        words(text, "listener").expect_err(text)
    }

    #[test]
    fn top_level_keys_set_the_flags_of_the_programs_they_apply_to() {
        let text = "bind = \"127.0.0.2\"\nannounce-port = 5002\nchunk-port = 5003\n\
                    peer = [\"a:1\", \"b\"]\nusername = \"alice\"\nbroadcast = \"127.255.255.255\"\n";
        // The listener: no --username here and chunk-port is not its --port.
        assert_eq!(
            words(text, "listener").unwrap(),
            [
                "--bind=127.0.0.2",
                "--port=5002",
                "--peer=a:1",
                "--peer=b",
                "--broadcast=127.255.255.255"
            ]
        );
        assert_eq!(
            words(text, "chunk-server").unwrap(),
            ["--bind=127.0.0.2", "--port=5003"]
        );
    }

    #[test]
    fn the_programs_table_takes_its_long_flags_and_wins_over_the_top_level() {
        let text = "bind = \"127.0.0.2\"\n[listener]\nbind = \"127.0.0.3\"\nmax-rate = 0x10\n\
                    verbose = true\nquiet = false\n[announcer]\nwhatever = 1\n";
        assert_eq!(
            words(text, "listener").unwrap(),
            ["--bind=127.0.0.3", "--max-rate=16", "--verbose"]
        );
        let settings = settings(text, &command("listener"), Path::new("/peer")).unwrap();
        assert_eq!(settings[0].line, 3, "{settings:?}");
        // Another program's table is that program's business.
        assert_eq!(words(text, "downloader").unwrap(), ["--bind=127.0.0.2"]);
    }

    #[test]
    fn relative_paths_are_the_files_folders() {
        assert_eq!(
            words(
                "[listener]\nshare = [\"music\", \"/srv/x\", \"../y\"]\n",
                "listener"
            )
            .unwrap(),
            [
                "--share=/peer/music",
                "--share=/srv/x",
                "--share=/peer/../y"
            ]
        );
        // Not a path flag: the text as it is.
        assert_eq!(words("peer = \"h\"\n", "listener").unwrap(), ["--peer=h"]);
    }

    #[test]
    fn mistakes_name_the_key_and_the_line() {
        let e = error("bind = \"127.0.0.2\"\n\nchunk_prot = 5001\n");
        assert_eq!(e.line, Some(3));
        assert!(
            e.message.contains("\"chunk_prot\"")
                && e.message.contains(" (did you mean chunk-port?); "),
            "{e}"
        );
        let e = error("[listener]\nmax-rat = 1\n");
        assert_eq!(e.line, Some(2));
        assert!(
            e.message
                .contains("listener has no --max-rat (did you mean max-rate?)"),
            "{e}"
        );
        let e = error("[listner]\nport = 1\n");
        assert_eq!(e.line, Some(1));
        assert!(
            e.message
                .contains("unknown table [listner] (did you mean listener?); "),
            "{e}"
        );
        let e = error("[listener]\ndir = \"x\"\n");
        assert_eq!(
            (e.line, e.message.as_str()),
            (Some(2), "--dir cannot be set in peer.toml")
        );
        let e = error("listener = 5\n");
        assert!(e.message.contains("table, [listener]"), "{e}");
    }

    #[test]
    fn the_first_mistake_in_the_file_is_reported() {
        let e = error("zz = 1\naa = 2\n[listener]\nzz = 1\n");
        assert_eq!(e.line, Some(1), "{e}");
        let e = error("[listener]\nzz = 1\naa = 2\n");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn wrong_types_and_values_are_refused_where_they_stand() {
        let e = error("[listener]\nverbose = \"yes\"\n");
        assert_eq!(
            e.to_string(),
            "line 2: \"verbose\" is a switch: true or false, not a string"
        );
        let e = error("[listener]\nport = [1, 2]\n");
        assert_eq!(
            e.to_string(),
            "line 2: \"port\" takes one value, not an array"
        );
        let e = error("[listener]\nport = 70000\n");
        assert!(
            e.message
                .starts_with("port: invalid value '70000' for '--port"),
            "{e}"
        );
        let e = error("peer = [\"a\",\n  true]\n");
        assert_eq!(
            e.to_string(),
            "line 2: \"peer\" takes a string or a number, not a boolean"
        );
        let e = error("announce-port = \"x\"\n");
        assert!(
            e.message
                .starts_with("announce-port: invalid value 'x' for '--port"),
            "{e}"
        );
        // A shared key this program lacks is still checked for its type.
        let e = error("username = [[1]]\n");
        assert_eq!(e.line, Some(1), "{e}");
        let e = error("bind = \n");
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn the_command_line_wins_and_excludes() {
        let command = command("listener");
        let text = "peer = [\"a\"]\n[listener]\nport = 1\nverbose = true\nbind = \"127.0.0.2\"\n";
        let settings = settings(text, &command, Path::new("/peer")).unwrap();
        let argv = [
            "listener",
            "--peer",
            "z",
            "list",
            "-q",
            "--bind",
            "127.0.0.9",
        ];
        let matches = command.clone().try_get_matches_from(argv).unwrap();
        // --peer replaces the file's list, -q excludes verbose, a global --bind given after
        // the subcommand still counts as given.
        assert_eq!(injected(&command, &matches, &settings), ["--port=1"]);
        let matches = command
            .clone()
            .try_get_matches_from(["listener", "list"])
            .unwrap();
        assert_eq!(
            injected(&command, &matches, &settings),
            ["--peer=a", "--port=1", "--verbose", "--bind=127.0.0.2"]
        );
    }

    #[test]
    fn near_names_are_one_typo_apart() {
        assert!(near("chunk-port", "chunk-prot"));
        assert!(near("max-rate", "max-rat"));
        assert!(near("bind", "bnd"));
        assert!(near("peer", "peers"));
        assert!(!near("port", "bind"));
        assert!(!near("peer", "pear-x"));
    }

    #[test]
    fn the_help_note_lists_the_programs_shared_keys() {
        let note = help_note("announcer");
        assert!(note.contains("[announcer] table"), "{note}");
        assert!(
            note.replace('\n', " ")
                .contains("keys username, bind, announce-port (--port), broadcast and peer are"),
            "{note}"
        );
        assert!(note.lines().all(|l| l.len() <= 95), "{note}");
        let note = after_help("downloader", "Examples:\n  x");
        assert!(
            note.replace('\n', " ")
                .contains("its top-level key bind is shared"),
            "{note}"
        );
        assert!(
            note.ends_with(" overrides the file.\n\nExamples:\n  x"),
            "{note}"
        );
    }
}
