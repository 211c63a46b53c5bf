//! Small helpers that reproduce Java behaviour the wire depends on.

/// Java's `String.hashCode()`: `h = 31 * h + c` over UTF-16 code units, wrapping.
///
/// Brokers store `tags.hashCode()` in the consume queue and filter pulls by it, so this must match
/// Java exactly, including for characters outside the BMP (two code units each).
pub(crate) fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// Current time in milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Uppercase hex of `bytes`, appended to `out` (Java `UtilAll.bytes2string`).
pub(crate) fn write_hex_upper(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
}

/// Uppercase hex of `bytes` (Java `UtilAll.bytes2string`).
#[cfg(test)]
pub(crate) fn bytes_to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    write_hex_upper(&mut s, bytes);
    s
}

/// Parses hex (either case) into bytes (Java `UtilAll.string2bytes`); `None` for an odd length
/// or a non-hex character.
pub(crate) fn hex_to_bytes(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    s.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// This host's first non-loopback IPv4 address, found by resolving its host name (what Java's
/// `InetAddress.getLocalHost()` does), or `None`. Computed once; no packet is sent.
pub(crate) fn local_ipv4() -> Option<std::net::Ipv4Addr> {
    use std::net::{IpAddr, ToSocketAddrs};
    use std::sync::OnceLock;
    static IP: OnceLock<Option<std::net::Ipv4Addr>> = OnceLock::new();
    *IP.get_or_init(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())?;
        (host.as_str(), 0)
            .to_socket_addrs()
            .ok()?
            .find_map(|a| match a.ip() {
                IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => Some(v4),
                _ => None,
            })
    })
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

    #[test]
    fn hex_round_trip() {
        assert_eq!(bytes_to_hex(&[0x7f, 0, 0xab]), "7F00AB");
        assert_eq!(hex_to_bytes("7f00Ab"), Some(vec![0x7f, 0, 0xab]));
        assert_eq!(hex_to_bytes("7"), None);
        assert_eq!(hex_to_bytes("zz"), None);
    }
}
