//! What Tab offers at the prompt: the command words at the start of a line, and the names of
//! the files on offer (as last listed), both matched ignoring case, so `rep<Tab>` completes
//! `Report.pdf`. A name is the rest of the line, spaces included (as `Command::parse` reads
//! it), so names with spaces complete without quoting.
//!
//! [`candidates`] is the pure rule; [`Completion`] hands it to `rustyline`, which owns the
//! editing (and the history, kept by `input`).

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};
use shared::text::terminal_safe;

use crate::catalog::Catalog;
use crate::command::{NETWORK_WORDS, WORDS};

/// The names Tab offers, shared between the prompt (which refreshes them with each listing)
/// and the line editor's thread (which reads them on Tab).
pub(crate) type Names = Arc<Mutex<Vec<String>>>;

/// The names of `catalog` that can be typed: each once, and none that holds a character a
/// terminal would obey (those are picked by number, as the listing shows them escaped); and
/// the folders of nested names (`photos/`, `photos/2024/`), which `get` takes whole.
pub(crate) fn names_of(catalog: &Catalog) -> Vec<String> {
    let mut names: Vec<String> = catalog
        .targets
        .iter()
        .map(|t| t.name.clone())
        .filter(|name| matches!(terminal_safe(name), Cow::Borrowed(_)))
        .collect();
    let folders: Vec<String> = names
        .iter()
        .flat_map(|name| name.match_indices('/').map(|(i, _)| name[..=i].to_owned()))
        .collect();
    names.extend(folders);
    names.sort();
    names.dedup();
    names
}

/// Where the text to replace starts in `line` (cursor at byte `pos`), and what may replace
/// it: command words (with a space after `get`) and names when the cursor is in the first
/// word; names only after `get`, or once the first word is not a command (a name with spaces).
pub(crate) fn candidates(line: &str, pos: usize, names: &[String]) -> (usize, Vec<String>) {
    let head = &line[..pos];
    let start = head.len() - head.trim_start().len();
    let text = &head[start..];
    let names_from = |prefix: &str| -> Vec<String> {
        names
            .iter()
            .filter(|name| starts_with_ignoring_case(name, prefix))
            .cloned()
            .collect()
    };
    match text.split_once(char::is_whitespace) {
        None => {
            let words = WORDS
                .iter()
                .filter(|word| starts_with_ignoring_case(word, text))
                .map(|&word| match word {
                    // These take an argument: the space after them is typed too.
                    "get" | "find" | "files" | "send" | "accept" | "decline" | "unsend" => {
                        format!("{word} ")
                    }
                    word => word.to_owned(),
                });
            (start, words.chain(names_from(text)).collect())
        }
        Some((word, rest)) if matches!(word.to_lowercase().as_str(), "get" | "download" | "d") => {
            let name = rest.trim_start();
            (pos - name.len(), names_from(name))
        }
        // Its subcommand (a phrase is not completed: it is secret, and not in any list here).
        Some((word, rest)) if word.eq_ignore_ascii_case("network") => {
            let sub = rest.trim_start();
            let offered = if sub.contains(char::is_whitespace) {
                Vec::new()
            } else {
                NETWORK_WORDS
                    .iter()
                    .filter(|w| starts_with_ignoring_case(w, sub))
                    .map(|&w| {
                        if w == "join" {
                            "join ".to_owned()
                        } else {
                            w.to_owned()
                        }
                    })
                    .collect()
            };
            (pos - sub.len(), offered)
        }
        Some(_) => (start, names_from(text)),
    }
}

fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    text.to_lowercase().starts_with(&prefix.to_lowercase())
}

/// The line editor's helper: completion only (no hints, colours or multi-line input).
pub(crate) struct Completion {
    /// Written by the prompt after each listing; read here on Tab.
    names: Names,
}

impl Completion {
    pub(crate) fn new(names: Names) -> Completion {
        Completion { names }
    }
}

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, found) = candidates(line, pos, &names);
        let pairs = found
            .into_iter()
            .map(|replacement| Pair {
                display: replacement.trim_end().to_owned(),
                replacement,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for Completion {
    type Hint = String;
}

impl Highlighter for Completion {}

impl Validator for Completion {}

impl Helper for Completion {}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        [
            "Report.pdf",
            "report 2024.txt",
            "my holiday photo.png",
            "get.txt",
        ]
        .map(String::from)
        .to_vec()
    }

    fn complete(line: &str) -> (usize, Vec<String>) {
        candidates(line, line.len(), &names())
    }

    #[test]
    fn the_first_word_completes_commands_and_names_ignoring_case() {
        assert_eq!(complete("hi"), (0, vec!["history".to_owned()]));
        assert_eq!(complete("Q"), (0, vec!["quit".to_owned()]));
        assert_eq!(
            complete("ge"),
            (0, vec!["get ".to_owned(), "get.txt".to_owned()])
        );
        assert_eq!(
            complete("  rep"),
            (
                2,
                vec!["Report.pdf".to_owned(), "report 2024.txt".to_owned()]
            )
        );
        assert_eq!(complete("REPORT."), (0, vec!["Report.pdf".to_owned()]));
        assert_eq!(complete("zzz"), (0, vec![]));
        assert_eq!(complete("").1.len(), WORDS.len() + names().len());
    }

    #[test]
    fn after_get_only_names_complete_spaces_included() {
        assert_eq!(
            complete("get rep"),
            (
                4,
                vec!["Report.pdf".to_owned(), "report 2024.txt".to_owned()]
            )
        );
        assert_eq!(
            complete("GET  report "),
            (5, vec!["report 2024.txt".to_owned()])
        );
        assert_eq!(
            complete("get my h"),
            (4, vec!["my holiday photo.png".to_owned()])
        );
        assert_eq!(complete("download g"), (9, vec!["get.txt".to_owned()]));
        assert_eq!(complete("get ").1.len(), names().len());
        // A bare name with spaces is the whole line.
        assert_eq!(
            complete("my holiday p"),
            (0, vec!["my holiday photo.png".to_owned()])
        );
        // Only what is left of the cursor counts.
        assert_eq!(candidates("get repXYZ", 7, &names()).1.len(), 2);
    }

    #[test]
    fn network_completes_its_subcommands() {
        assert_eq!(complete("netw"), (0, vec!["network".to_owned()]));
        assert_eq!(
            complete("network "),
            (
                8,
                vec![
                    "status".to_owned(),
                    "new".to_owned(),
                    "join ".to_owned(),
                    "leave".to_owned()
                ]
            )
        );
        assert_eq!(complete("network j"), (8, vec!["join ".to_owned()]));
        assert_eq!(complete("NETWORK  le"), (9, vec!["leave".to_owned()]));
        assert!(
            complete("network join abandon ab").1.is_empty(),
            "a phrase is not completed"
        );
    }

    #[test]
    fn folders_of_nested_names_complete_too() {
        let mut c = Catalog::default();
        for name in ["notes.txt", "photos/2024/a.jpg", "photos/2024/b.jpg"] {
            c.targets.push(crate::catalog::Target {
                name: name.into(),
                sha256: None,
                size: None,
                holders: Vec::new(),
            });
        }
        let names = names_of(&c);
        assert_eq!(
            names,
            [
                "notes.txt",
                "photos/",
                "photos/2024/",
                "photos/2024/a.jpg",
                "photos/2024/b.jpg"
            ]
        );
        let (_, offered) = candidates("get pho", 7, &names);
        assert_eq!(
            offered,
            [
                "photos/",
                "photos/2024/",
                "photos/2024/a.jpg",
                "photos/2024/b.jpg"
            ]
        );
    }

    #[test]
    fn names_that_a_terminal_would_obey_are_not_offered() {
        let mut c = Catalog::default();
        for name in ["ok.txt", "ok.txt", "bad\u{1b}[2J.txt", "日本語.txt"] {
            c.targets.push(crate::catalog::Target {
                name: name.into(),
                sha256: None,
                size: None,
                holders: Vec::new(),
            });
        }
        assert_eq!(
            names_of(&c),
            vec!["ok.txt".to_owned(), "日本語.txt".to_owned()]
        );
    }
}
