//! Usernames: which names a peer may announce, and how a name heard from the network is made
//! safe to show.
//!
//! Two programs must agree on these rules: the announcer refuses to announce a name
//! ([`validate`]) that the listener would have to mangle ([`sanitize`]) before writing it to
//! `tags.txt`, where the downloader shows it. Where a name comes from (the flag, the stored
//! file, the terminal) is the announcer's business, not this module's.

use std::fmt;

use crate::protocol::QUERY_USERNAME;
use crate::text::UnsafeText;
use crate::MAX_USERNAME_BYTES;

/// What makes a username unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Nothing but white space.
    Empty,
    /// More than [`MAX_USERNAME_BYTES`] bytes.
    TooLong,
    /// A character a terminal would obey or not show (newline, escape, a bidi control, a
    /// zero-width space…) or a flood of combining marks: it would garble logs and listings, and
    /// our listeners refuse it.
    Unshowable(UnsafeText),
    /// The name queries are sent under ([`QUERY_USERNAME`]), never a peer's.
    Reserved,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Empty => f.write_str("it is empty"),
            Problem::TooLong => write!(f, "it is longer than {MAX_USERNAME_BYTES} bytes"),
            Problem::Unshowable(e) => write!(f, "it {e}"),
            Problem::Reserved => write!(f, "{QUERY_USERNAME:?} is the name queries are sent under"),
        }
    }
}

/// Checks a username a peer would announce (already trimmed by the caller).
///
/// # Errors
/// The [`Problem`] with it.
pub fn validate(name: &str) -> Result<(), Problem> {
    if name.is_empty() {
        Err(Problem::Empty)
    } else if name.len() > MAX_USERNAME_BYTES {
        Err(Problem::TooLong)
    } else if name == QUERY_USERNAME {
        Err(Problem::Reserved)
    } else {
        crate::text::validate(name).map_err(Problem::Unshowable)
    }
}

/// A peer's username made safe to show: control, bidi and invisible characters
/// ([`must_escape`](crate::text::must_escape)) replaced by U+FFFD and the whole cut to
/// [`MAX_USERNAME_BYTES`] on a character boundary. An empty name stays empty.
pub fn sanitize(name: &str) -> String {
    let replaced: String = name
        .chars()
        .map(|c| {
            if crate::text::must_escape(c) {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect();
    truncate(&replaced, MAX_USERNAME_BYTES).to_owned()
}

/// A host name made into a username: trimmed, without the characters a terminal would obey or
/// not show, cut to [`MAX_USERNAME_BYTES`]; `None` when what is left is not a valid username.
pub fn from_host_name(host: &str) -> Option<String> {
    let name: String = host
        .trim()
        .chars()
        .filter(|&c| !crate::text::must_escape(c))
        .collect();
    let name = truncate(&name, MAX_USERNAME_BYTES);
    validate(name).is_ok().then(|| name.to_owned())
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_counts_bytes_not_chars() {
        let max = "é".repeat(MAX_USERNAME_BYTES / 2);
        assert_eq!(validate(&max), Ok(()));
        assert_eq!(validate(&format!("{max}é")), Err(Problem::TooLong));
        assert_eq!(validate("ünïcödé ok"), Ok(()));
    }

    #[test]
    fn the_name_queries_are_sent_under_is_refused() {
        assert_eq!(validate(QUERY_USERNAME), Err(Problem::Reserved));
    }

    #[test]
    fn sanitize_replaces_unshowable_characters_and_cuts_on_a_boundary() {
        assert_eq!(sanitize(""), "");
        assert_eq!(
            sanitize("a\nb\tc\u{1b}[31m"),
            "a\u{fffd}b\u{fffd}c\u{fffd}[31m"
        );
        assert_eq!(
            sanitize("mal\u{202e}yrol\u{200b}"),
            "mal\u{fffd}yrol\u{fffd}"
        );
        let long = "é".repeat(MAX_USERNAME_BYTES);
        let cut = sanitize(&long);
        assert_eq!(cut.len(), MAX_USERNAME_BYTES);
        let odd = format!("x{long}");
        let cut = sanitize(&odd);
        assert_eq!(cut.len(), MAX_USERNAME_BYTES - 1, "cut on a char boundary");
    }

    #[test]
    fn host_names_lose_what_a_terminal_would_obey() {
        assert_eq!(from_host_name("  box\u{1b}1 \n"), Some("box1".to_owned()));
        assert_eq!(from_host_name(" \u{200b} "), None);
        assert_eq!(from_host_name(QUERY_USERNAME), None);
        let long = "h".repeat(MAX_USERNAME_BYTES + 5);
        assert_eq!(
            from_host_name(&long).map(|n| n.len()),
            Some(MAX_USERNAME_BYTES)
        );
    }
}
