//! Small helpers that reproduce Java behaviour the wire depends on.

/// Java's `String.hashCode()`: `h = 31 * h + c` over UTF-16 code units, wrapping.
///
/// Brokers store `tags.hashCode()` in the consume queue and filter pulls by it, so this must match
/// Java exactly, including for characters outside the BMP (two code units each).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// Current time in milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_golden_hashes() {
        assert_eq!(java_string_hash("TagA"), 2598919);
        assert_eq!(java_string_hash("TagB"), 2598920);
        assert_eq!(java_string_hash("*"), 42);
        assert_eq!(java_string_hash(""), 0);
        // "😀" is two UTF-16 units: 0xD83D, 0xDE00 -> 0xD83D * 31 + 0xDE00.
        assert_eq!(java_string_hash("😀"), 0xD83D * 31 + 0xDE00);
    }
}
