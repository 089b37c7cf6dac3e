//! Text from elsewhere (the network, `tags.txt`, a log file) made safe to show on a terminal.
//!
//! A name is only text, but a terminal obeys some characters instead of showing them: ESC and
//! the other C0 and C1 controls start escape sequences (colours, cursor moves, the window title,
//! a clear screen), BEL rings, a line feed starts a line that looks like ours. Others show as
//! nothing while changing what is around them: the bidi controls (`gnp.\u{202e}exe.txt` shows
//! as `gnp.txt.exe`), the zero-width characters, the line and paragraph separators. And a flood
//! of combining marks stacks into a smear over the lines above and below.
//!
//! - [`must_escape`] says which characters are never shown raw;
//! - [`terminal_safe`] escapes them visibly, as `\u{202e}`, for display: text without them
//!   comes back as it is, so ordinary Unicode (accents, CJK, emoji, spaces) is untouched;
//! - [`validate`] refuses text that holds them, on the way in: content names
//!   ([`validate_content_name`](crate::chunk::validate_content_name)), usernames and the lines of
//!   `tags.txt`.
//!
//! Combining marks are fine in moderation (`é` may be `e` + U+0301): a mark must follow a
//! character it can sit on, and at most [`MAX_COMBINING_RUN`] may follow one character; the
//! rest of a longer run is escaped (or refused).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::{self, Write as _};

/// Most combining marks shown on one character. Real text needs at most a handful (the
/// longest Tibetan stacks have about 8); a flood has dozens.
pub const MAX_COMBINING_RUN: usize = 8;

/// Whether `c` must never reach a terminal raw: a control character (C0, DEL, C1), or one a
/// terminal shows as nothing while it changes the text around it (bidi controls, zero-width
/// and other format characters, line and paragraph separators, blank fillers).
pub fn must_escape(c: char) -> bool {
    c.is_control() || in_table(HIDDEN, c)
}

/// Whether `c` is a combining mark (Unicode categories Mn, Mc, Me): drawn on the character
/// before it.
pub fn is_combining_mark(c: char) -> bool {
    in_table(COMBINING_MARKS, c)
}

/// Every character of `text`, with whether it must be escaped: it is [`must_escape`], or a
/// combining mark with no character to sit on, or beyond [`MAX_COMBINING_RUN`] on one.
pub fn scan(text: &str) -> impl Iterator<Item = (char, bool)> + '_ {
    // Marks seen since the last character they can sit on; `None` before the first one.
    let mut run: Option<usize> = None;
    text.chars().map(move |c| {
        let escape = if must_escape(c) {
            // Shown as `\u{…}`: its `}` is what a following mark sits on.
            run = Some(0);
            true
        } else if is_combining_mark(c) {
            match run {
                Some(n) if n < MAX_COMBINING_RUN => {
                    run = Some(n + 1);
                    false
                }
                _ => true,
            }
        } else {
            run = Some(0);
            false
        };
        (c, escape)
    })
}

/// `text` with every character [`scan`] marks replaced by its visible escape, `\u{202e}`.
/// Borrowed, unchanged, when there is none.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    if scan(text).all(|(_, escape)| !escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (c, escape) in scan(text) {
        if escape {
            let _ = write!(out, "{}", Escaped(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Why text cannot be shown as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeText {
    /// A control, bidi, zero-width or other invisible character ([`must_escape`]).
    #[error("contains {}, a control, bidi or invisible character", Escaped(*.0))]
    Hidden(char),
    /// Begins with a combining mark, which would sit on whatever is shown before it.
    #[error("begins with the combining mark {}", Escaped(*.0))]
    StrayMark(char),
    /// More than [`MAX_COMBINING_RUN`] combining marks on one character.
    #[error("has more than {MAX_COMBINING_RUN} combining marks in a row")]
    MarkFlood,
}

/// Checks that `text` can be shown as it is: [`terminal_safe`] would leave it unchanged.
///
/// # Errors
/// [`UnsafeText`] naming the first problem.
pub fn validate(text: &str) -> Result<(), UnsafeText> {
    match scan(text).enumerate().find(|(_, (_, escape))| *escape) {
        None => Ok(()),
        Some((_, (c, _))) if must_escape(c) => Err(UnsafeText::Hidden(c)),
        Some((0, (c, _))) => Err(UnsafeText::StrayMark(c)),
        Some(_) => Err(UnsafeText::MarkFlood),
    }
}

/// A character as `\u{hex}`, the form [`terminal_safe`] shows it in.
struct Escaped(char);

impl fmt::Display for Escaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\\u{{{:x}}}", u32::from(self.0))
    }
}

fn in_table(table: &[(u32, u32)], c: char) -> bool {
    let c = u32::from(c);
    table
        .binary_search_by(|&(first, last)| {
            if last < c {
                Ordering::Less
            } else if first > c {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        })
        .is_ok()
}

/// Characters other than controls that a terminal shows as nothing, or that change how the text
/// around them is shown: every format character (Unicode category Cf), the line and paragraph
/// separators, and letters and marks that render blank. Sorted, inclusive ranges.
const HIDDEN: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),   // soft hyphen
    (0x0600, 0x0605),   // Arabic signs spanning numbers
    (0x061C, 0x061C),   // Arabic letter mark (bidi)
    (0x06DD, 0x06DD),   // Arabic end of ayah
    (0x070F, 0x070F),   // Syriac abbreviation mark
    (0x0890, 0x0891),   // Arabic pound and piastre marks above
    (0x08E2, 0x08E2),   // Arabic disputed end of ayah
    (0x115F, 0x1160),   // Hangul fillers
    (0x17B4, 0x17B5),   // Khmer inherent vowels
    (0x180B, 0x180F),   // Mongolian variation selectors and vowel separator
    (0x200B, 0x200F),   // zero width space, non-joiner, joiner; LRM, RLM
    (0x2028, 0x202E),   // line and paragraph separators; bidi embeddings and overrides
    (0x2060, 0x2064),   // word joiner, invisible operators
    (0x2066, 0x206F),   // bidi isolates; deprecated format characters
    (0x3164, 0x3164),   // Hangul filler
    (0xFEFF, 0xFEFF),   // zero width no-break space (byte order mark)
    (0xFFA0, 0xFFA0),   // halfwidth Hangul filler
    (0xFFF9, 0xFFFB),   // interlinear annotation
    (0x110BD, 0x110BD), // Kaithi number sign
    (0x110CD, 0x110CD), // Kaithi number sign above
    (0x13430, 0x1343F), // Egyptian hieroglyph format controls
    (0x1BCA0, 0x1BCA3), // shorthand format controls
    (0x1D173, 0x1D17A), // musical symbol format controls
    (0xE0000, 0xE007F), // tags
];

/// The combining marks (categories Mn, Mc, Me) as sorted, inclusive ranges, generated from
/// Python's `unicodedata` (Unicode 14.0).
#[rustfmt::skip]
const COMBINING_MARKS: &[(u32, u32)] = &[
    (0x0300, 0x036F), (0x0483, 0x0489), (0x0591, 0x05BD), (0x05BF, 0x05BF),
    (0x05C1, 0x05C2), (0x05C4, 0x05C5), (0x05C7, 0x05C7), (0x0610, 0x061A),
    (0x064B, 0x065F), (0x0670, 0x0670), (0x06D6, 0x06DC), (0x06DF, 0x06E4),
    (0x06E7, 0x06E8), (0x06EA, 0x06ED), (0x0711, 0x0711), (0x0730, 0x074A),
    (0x07A6, 0x07B0), (0x07EB, 0x07F3), (0x07FD, 0x07FD), (0x0816, 0x0819),
    (0x081B, 0x0823), (0x0825, 0x0827), (0x0829, 0x082D), (0x0859, 0x085B),
    (0x0898, 0x089F), (0x08CA, 0x08E1), (0x08E3, 0x0903), (0x093A, 0x093C),
    (0x093E, 0x094F), (0x0951, 0x0957), (0x0962, 0x0963), (0x0981, 0x0983),
    (0x09BC, 0x09BC), (0x09BE, 0x09C4), (0x09C7, 0x09C8), (0x09CB, 0x09CD),
    (0x09D7, 0x09D7), (0x09E2, 0x09E3), (0x09FE, 0x09FE), (0x0A01, 0x0A03),
    (0x0A3C, 0x0A3C), (0x0A3E, 0x0A42), (0x0A47, 0x0A48), (0x0A4B, 0x0A4D),
    (0x0A51, 0x0A51), (0x0A70, 0x0A71), (0x0A75, 0x0A75), (0x0A81, 0x0A83),
    (0x0ABC, 0x0ABC), (0x0ABE, 0x0AC5), (0x0AC7, 0x0AC9), (0x0ACB, 0x0ACD),
    (0x0AE2, 0x0AE3), (0x0AFA, 0x0AFF), (0x0B01, 0x0B03), (0x0B3C, 0x0B3C),
    (0x0B3E, 0x0B44), (0x0B47, 0x0B48), (0x0B4B, 0x0B4D), (0x0B55, 0x0B57),
    (0x0B62, 0x0B63), (0x0B82, 0x0B82), (0x0BBE, 0x0BC2), (0x0BC6, 0x0BC8),
    (0x0BCA, 0x0BCD), (0x0BD7, 0x0BD7), (0x0C00, 0x0C04), (0x0C3C, 0x0C3C),
    (0x0C3E, 0x0C44), (0x0C46, 0x0C48), (0x0C4A, 0x0C4D), (0x0C55, 0x0C56),
    (0x0C62, 0x0C63), (0x0C81, 0x0C83), (0x0CBC, 0x0CBC), (0x0CBE, 0x0CC4),
    (0x0CC6, 0x0CC8), (0x0CCA, 0x0CCD), (0x0CD5, 0x0CD6), (0x0CE2, 0x0CE3),
    (0x0D00, 0x0D03), (0x0D3B, 0x0D3C), (0x0D3E, 0x0D44), (0x0D46, 0x0D48),
    (0x0D4A, 0x0D4D), (0x0D57, 0x0D57), (0x0D62, 0x0D63), (0x0D81, 0x0D83),
    (0x0DCA, 0x0DCA), (0x0DCF, 0x0DD4), (0x0DD6, 0x0DD6), (0x0DD8, 0x0DDF),
    (0x0DF2, 0x0DF3), (0x0E31, 0x0E31), (0x0E34, 0x0E3A), (0x0E47, 0x0E4E),
    (0x0EB1, 0x0EB1), (0x0EB4, 0x0EBC), (0x0EC8, 0x0ECD), (0x0F18, 0x0F19),
    (0x0F35, 0x0F35), (0x0F37, 0x0F37), (0x0F39, 0x0F39), (0x0F3E, 0x0F3F),
    (0x0F71, 0x0F84), (0x0F86, 0x0F87), (0x0F8D, 0x0F97), (0x0F99, 0x0FBC),
    (0x0FC6, 0x0FC6), (0x102B, 0x103E), (0x1056, 0x1059), (0x105E, 0x1060),
    (0x1062, 0x1064), (0x1067, 0x106D), (0x1071, 0x1074), (0x1082, 0x108D),
    (0x108F, 0x108F), (0x109A, 0x109D), (0x135D, 0x135F), (0x1712, 0x1715),
    (0x1732, 0x1734), (0x1752, 0x1753), (0x1772, 0x1773), (0x17B4, 0x17D3),
    (0x17DD, 0x17DD), (0x180B, 0x180D), (0x180F, 0x180F), (0x1885, 0x1886),
    (0x18A9, 0x18A9), (0x1920, 0x192B), (0x1930, 0x193B), (0x1A17, 0x1A1B),
    (0x1A55, 0x1A5E), (0x1A60, 0x1A7C), (0x1A7F, 0x1A7F), (0x1AB0, 0x1ACE),
    (0x1B00, 0x1B04), (0x1B34, 0x1B44), (0x1B6B, 0x1B73), (0x1B80, 0x1B82),
    (0x1BA1, 0x1BAD), (0x1BE6, 0x1BF3), (0x1C24, 0x1C37), (0x1CD0, 0x1CD2),
    (0x1CD4, 0x1CE8), (0x1CED, 0x1CED), (0x1CF4, 0x1CF4), (0x1CF7, 0x1CF9),
    (0x1DC0, 0x1DFF), (0x20D0, 0x20F0), (0x2CEF, 0x2CF1), (0x2D7F, 0x2D7F),
    (0x2DE0, 0x2DFF), (0x302A, 0x302F), (0x3099, 0x309A), (0xA66F, 0xA672),
    (0xA674, 0xA67D), (0xA69E, 0xA69F), (0xA6F0, 0xA6F1), (0xA802, 0xA802),
    (0xA806, 0xA806), (0xA80B, 0xA80B), (0xA823, 0xA827), (0xA82C, 0xA82C),
    (0xA880, 0xA881), (0xA8B4, 0xA8C5), (0xA8E0, 0xA8F1), (0xA8FF, 0xA8FF),
    (0xA926, 0xA92D), (0xA947, 0xA953), (0xA980, 0xA983), (0xA9B3, 0xA9C0),
    (0xA9E5, 0xA9E5), (0xAA29, 0xAA36), (0xAA43, 0xAA43), (0xAA4C, 0xAA4D),
    (0xAA7B, 0xAA7D), (0xAAB0, 0xAAB0), (0xAAB2, 0xAAB4), (0xAAB7, 0xAAB8),
    (0xAABE, 0xAABF), (0xAAC1, 0xAAC1), (0xAAEB, 0xAAEF), (0xAAF5, 0xAAF6),
    (0xABE3, 0xABEA), (0xABEC, 0xABED), (0xFB1E, 0xFB1E), (0xFE00, 0xFE0F),
    (0xFE20, 0xFE2F), (0x101FD, 0x101FD), (0x102E0, 0x102E0), (0x10376, 0x1037A),
    (0x10A01, 0x10A03), (0x10A05, 0x10A06), (0x10A0C, 0x10A0F), (0x10A38, 0x10A3A),
    (0x10A3F, 0x10A3F), (0x10AE5, 0x10AE6), (0x10D24, 0x10D27), (0x10EAB, 0x10EAC),
    (0x10F46, 0x10F50), (0x10F82, 0x10F85), (0x11000, 0x11002), (0x11038, 0x11046),
    (0x11070, 0x11070), (0x11073, 0x11074), (0x1107F, 0x11082), (0x110B0, 0x110BA),
    (0x110C2, 0x110C2), (0x11100, 0x11102), (0x11127, 0x11134), (0x11145, 0x11146),
    (0x11173, 0x11173), (0x11180, 0x11182), (0x111B3, 0x111C0), (0x111C9, 0x111CC),
    (0x111CE, 0x111CF), (0x1122C, 0x11237), (0x1123E, 0x1123E), (0x112DF, 0x112EA),
    (0x11300, 0x11303), (0x1133B, 0x1133C), (0x1133E, 0x11344), (0x11347, 0x11348),
    (0x1134B, 0x1134D), (0x11357, 0x11357), (0x11362, 0x11363), (0x11366, 0x1136C),
    (0x11370, 0x11374), (0x11435, 0x11446), (0x1145E, 0x1145E), (0x114B0, 0x114C3),
    (0x115AF, 0x115B5), (0x115B8, 0x115C0), (0x115DC, 0x115DD), (0x11630, 0x11640),
    (0x116AB, 0x116B7), (0x1171D, 0x1172B), (0x1182C, 0x1183A), (0x11930, 0x11935),
    (0x11937, 0x11938), (0x1193B, 0x1193E), (0x11940, 0x11940), (0x11942, 0x11943),
    (0x119D1, 0x119D7), (0x119DA, 0x119E0), (0x119E4, 0x119E4), (0x11A01, 0x11A0A),
    (0x11A33, 0x11A39), (0x11A3B, 0x11A3E), (0x11A47, 0x11A47), (0x11A51, 0x11A5B),
    (0x11A8A, 0x11A99), (0x11C2F, 0x11C36), (0x11C38, 0x11C3F), (0x11C92, 0x11CA7),
    (0x11CA9, 0x11CB6), (0x11D31, 0x11D36), (0x11D3A, 0x11D3A), (0x11D3C, 0x11D3D),
    (0x11D3F, 0x11D45), (0x11D47, 0x11D47), (0x11D8A, 0x11D8E), (0x11D90, 0x11D91),
    (0x11D93, 0x11D97), (0x11EF3, 0x11EF6), (0x16AF0, 0x16AF4), (0x16B30, 0x16B36),
    (0x16F4F, 0x16F4F), (0x16F51, 0x16F87), (0x16F8F, 0x16F92), (0x16FE4, 0x16FE4),
    (0x16FF0, 0x16FF1), (0x1BC9D, 0x1BC9E), (0x1CF00, 0x1CF2D), (0x1CF30, 0x1CF46),
    (0x1D165, 0x1D169), (0x1D16D, 0x1D172), (0x1D17B, 0x1D182), (0x1D185, 0x1D18B),
    (0x1D1AA, 0x1D1AD), (0x1D242, 0x1D244), (0x1DA00, 0x1DA36), (0x1DA3B, 0x1DA6C),
    (0x1DA75, 0x1DA75), (0x1DA84, 0x1DA84), (0x1DA9B, 0x1DA9F), (0x1DAA1, 0x1DAAF),
    (0x1E000, 0x1E006), (0x1E008, 0x1E018), (0x1E01B, 0x1E021), (0x1E023, 0x1E024),
    (0x1E026, 0x1E02A), (0x1E130, 0x1E136), (0x1E2AE, 0x1E2AE), (0x1E2EC, 0x1E2EF),
    (0x1E8D0, 0x1E8D6), (0x1E944, 0x1E94A), (0xE0100, 0xE01EF),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// One character of each kind that must never be shown raw.
    const EVERY_KIND: &[(char, &str)] = &[
        ('\u{0}', "NUL"),
        ('\u{7}', "BEL"),
        ('\u{8}', "backspace"),
        ('\u{9}', "tab"),
        ('\u{a}', "line feed"),
        ('\u{d}', "carriage return"),
        ('\u{1b}', "ESC"),
        ('\u{7f}', "DEL"),
        ('\u{80}', "C1 PAD"),
        ('\u{85}', "C1 next line"),
        ('\u{9b}', "C1 CSI"),
        ('\u{9d}', "C1 OSC"),
        ('\u{9f}', "C1 APC"),
        ('\u{202a}', "left-to-right embedding"),
        ('\u{202b}', "right-to-left embedding"),
        ('\u{202c}', "pop directional formatting"),
        ('\u{202d}', "left-to-right override"),
        ('\u{202e}', "right-to-left override"),
        ('\u{2066}', "left-to-right isolate"),
        ('\u{2067}', "right-to-left isolate"),
        ('\u{2068}', "first strong isolate"),
        ('\u{2069}', "pop directional isolate"),
        ('\u{200e}', "left-to-right mark"),
        ('\u{200f}', "right-to-left mark"),
        ('\u{61c}', "Arabic letter mark"),
        ('\u{200b}', "zero width space"),
        ('\u{200c}', "zero width non-joiner"),
        ('\u{200d}', "zero width joiner"),
        ('\u{2060}', "word joiner"),
        ('\u{feff}', "zero width no-break space"),
        ('\u{ad}', "soft hyphen"),
        ('\u{2028}', "line separator"),
        ('\u{2029}', "paragraph separator"),
        ('\u{3164}', "Hangul filler"),
        ('\u{e0041}', "tag latin capital A"),
    ];

    #[test]
    fn every_kind_of_hidden_character_is_escaped_and_refused() {
        for &(c, what) in EVERY_KIND {
            assert!(must_escape(c), "{what}");
            let text = format!("a{c}b");
            let shown = terminal_safe(&text);
            assert_eq!(shown, format!("a\\u{{{:x}}}b", u32::from(c)), "{what}");
            assert!(!shown.contains(c), "{what}");
            assert_eq!(validate(&text), Err(UnsafeText::Hidden(c)), "{what}");
        }
        assert_eq!(terminal_safe("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(terminal_safe("gnp.\u{202e}exe.txt"), "gnp.\\u{202e}exe.txt");
    }

    #[test]
    fn every_format_character_is_hidden() {
        // Unicode 14's category Cf, from Python's unicodedata.
        let format_chars = [
            (0xAD, 0xAD),
            (0x600, 0x605),
            (0x61C, 0x61C),
            (0x6DD, 0x6DD),
            (0x70F, 0x70F),
            (0x890, 0x891),
            (0x8E2, 0x8E2),
            (0x180E, 0x180E),
            (0x200B, 0x200F),
            (0x202A, 0x202E),
            (0x2060, 0x2064),
            (0x2066, 0x206F),
            (0xFEFF, 0xFEFF),
            (0xFFF9, 0xFFFB),
            (0x110BD, 0x110BD),
            (0x110CD, 0x110CD),
            (0x13430, 0x13438),
            (0x1BCA0, 0x1BCA3),
            (0x1D173, 0x1D17A),
            (0xE0001, 0xE0001),
            (0xE0020, 0xE007F),
        ];
        for (first, last) in format_chars {
            for c in (first..=last).filter_map(char::from_u32) {
                assert!(must_escape(c), "U+{:04X}", u32::from(c));
            }
        }
    }

    #[test]
    fn tables_are_sorted_and_disjoint() {
        for table in [HIDDEN, COMBINING_MARKS] {
            for (first, last) in table {
                assert!(first <= last);
            }
            for pair in table.windows(2) {
                assert!(pair[0].1 < pair[1].0, "{pair:?}");
            }
        }
    }

    #[test]
    fn plain_unicode_is_left_untouched() {
        for text in [
            "notes.txt",
            "my file (1).tar.gz",
            "Résumé – naïve café.pdf",
            "Tiếng Việt",
            "Tie\u{302}\u{301}ng Vie\u{323}\u{302}t", // decomposed, as macOS stores names
            "日本語のファイル.txt",
            "한국어",
            "中文 文件",
            "Ελληνικά",
            "Русский",
            "עִבְרִית",
            "العربية",
            "हिन्दी",
            "ภาษาไทย",
            "བསྒྲུབས",
            "emoji 🎉😀 ❤️ 👍🏽 🇫🇷 1️⃣",
            "spaces\u{a0}and\u{3000}ideographic",
            "",
        ] {
            assert!(matches!(terminal_safe(text), Cow::Borrowed(_)), "{text}");
            assert_eq!(validate(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn combining_floods_are_cut_and_refused() {
        let acute = '\u{301}';
        let ok: String = std::iter::once('a')
            .chain(std::iter::repeat_n(acute, MAX_COMBINING_RUN))
            .collect();
        assert_eq!(validate(&ok), Ok(()));
        assert_eq!(terminal_safe(&ok), ok);

        let flood: String = std::iter::once('z')
            .chain(std::iter::repeat_n(acute, 40))
            .chain("algo".chars())
            .collect();
        assert_eq!(validate(&flood), Err(UnsafeText::MarkFlood));
        let shown = terminal_safe(&flood);
        let raw_marks = shown.chars().filter(|&c| c == acute).count();
        assert_eq!(raw_marks, MAX_COMBINING_RUN, "{shown}");
        assert_eq!(shown.matches("\\u{301}").count(), 40 - MAX_COMBINING_RUN);
        assert!(shown.ends_with("\\u{301}algo"), "{shown}");

        // Any mark counts, not only the common accents; a new base starts a new run.
        let mixed: String = "a"
            .chars()
            .chain(std::iter::repeat_n('\u{5b4}', 5))
            .chain(std::iter::repeat_n('\u{20dd}', 5))
            .collect();
        assert_eq!(validate(&mixed), Err(UnsafeText::MarkFlood));
        let runs = format!("a{0}b{0}", "\u{301}".repeat(MAX_COMBINING_RUN));
        assert_eq!(validate(&runs), Ok(()));

        // A mark with nothing to sit on would land on what is shown before the text.
        assert_eq!(validate("\u{301}x"), Err(UnsafeText::StrayMark('\u{301}')));
        assert_eq!(terminal_safe("\u{301}x"), "\\u{301}x");
    }

    #[test]
    fn validate_agrees_with_terminal_safe_and_its_messages_are_safe() {
        for text in ["ok", "a\u{202e}b", "\u{300}", "x\u{7}", "e\u{301}"] {
            let unchanged = matches!(terminal_safe(text), Cow::Borrowed(_));
            assert_eq!(validate(text).is_ok(), unchanged, "{text:?}");
            if let Err(e) = validate(text) {
                let message = e.to_string();
                assert!(
                    matches!(terminal_safe(&message), Cow::Borrowed(_)),
                    "{message}"
                );
            }
        }
        assert_eq!(
            UnsafeText::Hidden('\u{202e}').to_string(),
            "contains \\u{202e}, a control, bidi or invisible character"
        );
    }
}
