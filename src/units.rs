//! Sizes and counts as people read them, one way everywhere (decimal units, as `df -H`, Docker
//! and PyPI print them), and the default thread count. A leaf.

/// `12.3 GB`: one decimal, gigabytes (thresholds of disk, memory, image size).
pub fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// `45.6 MB`: one decimal, megabytes (wheels, archives, logs).
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Megabytes or, from 1 GB, gigabytes with two decimals (report tables).
pub fn size(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.2} GB", bytes as f64 / 1e9)
    } else {
        mb(bytes)
    }
}

/// Threads for CPU-bound work (wheel reading, compression) unless told: the machine's cores.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_round_as_printed() {
        assert_eq!(gb(1_550_000_000), "1.6 GB");
        assert_eq!(mb(2_340_000), "2.3 MB");
        assert_eq!(size(999_999_999), "1000.0 MB");
        assert_eq!(size(1_234_567_890), "1.23 GB");
        assert!(threads() >= 1);
    }
}
