//! Human-readable sizes and rates for the terminal, and the display width that keeps table
//! columns aligned when names hold wide (CJK, emoji) or zero-width (combining) characters.

use unicode_width::UnicodeWidthStr;

/// `1.0 MiB`, `512 B`, …
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss)] // display only
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Megabytes (10^6 bytes) per second, for logs and reports.
pub fn rate_mbps(bytes: u64, millis: u128) -> f64 {
    #[allow(clippy::cast_precision_loss)] // display only
    let (bytes, millis) = (bytes as f64, millis.max(1) as f64);
    bytes / 1000.0 / millis
}

/// How many terminal columns `text` takes: 2 per wide character, 0 per combining mark; not
/// its `char` count, which would misalign a table holding `日本語` or an emoji.
pub fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// `text` padded with spaces to `columns` display columns, on the right (`left_aligned`) or
/// on the left; unchanged when already as wide.
pub fn pad(text: &str, columns: usize, left_aligned: bool) -> String {
    let fill = " ".repeat(columns.saturating_sub(width(text)));
    if left_aligned {
        format!("{text}{fill}")
    } else {
        format!("{fill}{text}")
    }
}

/// A table: `header` and `rows`, each column padded to its widest cell in display columns
/// (see [`width`]) and two spaces apart; the columns numbered in `right_aligned` (numbers,
/// sizes) are aligned right, the others left. Cells are shown as they are: the caller makes
/// what came from the network [`terminal_safe`](shared::text::terminal_safe) first.
pub fn table<const N: usize>(
    header: [&str; N],
    rows: &[[String; N]],
    right_aligned: &[usize],
) -> String {
    let mut widths = header.map(width);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header.map(String::from)).chain(rows.iter().cloned()) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| pad(cell, w, !right_aligned.contains(&i)))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_wide_cells_and_right_aligns_numbers() {
        let rows = [
            ["日本語.txt".to_owned(), "3".to_owned()],
            ["a".to_owned(), "12".to_owned()],
        ];
        assert_eq!(
            table(["NAME", "N"], &rows, &[1]),
            "NAME         N\n日本語.txt   3\na           12\n"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(1024 * 1024 + 3), "1.0 MiB");
        assert_eq!(size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn rates() {
        assert!((rate_mbps(10_000_000, 1000) - 10.0).abs() < 1e-9);
        assert!(rate_mbps(5, 0) > 0.0);
    }

    #[test]
    fn wide_characters_take_two_columns_and_marks_none() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("日本語"), 6);
        assert_eq!(width("🎉"), 2);
        assert_eq!(width("e\u{301}"), 1);
        assert_eq!(pad("日本", 6, true), "日本  ");
        assert_eq!(pad("7", 3, false), "  7");
        assert_eq!(pad("toolong", 3, true), "toolong");
    }
}
