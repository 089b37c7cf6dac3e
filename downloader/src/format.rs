//! Human-readable sizes and rates for the terminal.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
