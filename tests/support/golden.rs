//! Access to `golden-4.9.8.txt`: byte-exact frames and bodies printed by the real Java 4.9.8
//! classes, kept in the shared reference directory beside the repository.
//!
//! The file is found through `ROCKETMQ_SHARED_DIR` (the `shared` directory) when set, otherwise by
//! walking up from `CARGO_MANIFEST_DIR` looking for `shared/reference/golden-4.9.8.txt` in each
//! ancestor (CI clones the repository with `shared/` beside it). A missing file is a test failure,
//! never a skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

const FILE: &str = "golden-4.9.8.txt";

/// The path of the golden file; panics with an explanation when it cannot be found.
pub fn golden_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("ROCKETMQ_SHARED_DIR") {
        let p = Path::new(&dir).join("reference").join(FILE);
        assert!(
            p.is_file(),
            "ROCKETMQ_SHARED_DIR is set but {} does not exist",
            p.display()
        );
        return p;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in manifest.ancestors() {
        let p = dir.join("shared").join("reference").join(FILE);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "cannot find shared/reference/{FILE} in any ancestor of {}; set ROCKETMQ_SHARED_DIR to \
         the directory holding reference/{FILE}",
        manifest.display()
    );
}

/// The golden file split into `(title, content)` sections. A section starts at a `### title`
/// line and runs to the next one; trailing blank lines are dropped.
pub fn sections() -> Vec<(String, String)> {
    let path = golden_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("### ") {
            out.push((title.trim().to_owned(), String::new()));
        } else if let Some((_, content)) = out.last_mut() {
            if !content.is_empty() {
                content.push('\n');
            }
            content.push_str(line);
        }
    }
    for (_, content) in &mut out {
        let trimmed = content.trim_end_matches('\n').len();
        content.truncate(trimmed);
    }
    out
}

/// The content of the section titled exactly `title`; panics if there is none.
pub fn section(title: &str) -> String {
    sections()
        .into_iter()
        .find(|(t, _)| t == title)
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("golden file has no section titled {title:?}"))
}

/// Decodes a hex string (whitespace ignored); panics on bad input.
pub fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).expect("hex is ASCII");
            u8::from_str_radix(s, 16).unwrap_or_else(|_| panic!("bad hex byte {s:?}"))
        })
        .collect()
}

/// Wraps header bytes into a whole frame with no body: total length, header word, header.
pub fn frame_from_header(serialize_type: u8, header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + header.len());
    out.extend_from_slice(&((4 + header.len()) as u32).to_be_bytes());
    out.extend_from_slice(&(((serialize_type as u32) << 24) | header.len() as u32).to_be_bytes());
    out.extend_from_slice(header);
    out
}
