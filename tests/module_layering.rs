//! The crate's modules form layers (DESIGN.md, "Module map"): a module may name only the
//! modules below it, never one above, so there is no import cycle. This test reads `src/` and
//! fails on any path `crate::<module>` that points up or sideways-up.
//!
//! The unit of layering is the top-level module, except that `remoting::protocol` is its own
//! layer at the bottom (pure codec, no I/O) while the rest of `remoting` sits above `error`.
//! A root re-export such as `crate::Error` counts as the module that defines it (read from the
//! `pub use` lines of `src/lib.rs`).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Bottom first. A unit may name itself and the units before it.
const LAYERS: &[&str] = &[
    "remoting::protocol",
    "service_state",
    "executor",
    "error",
    // The in-process fake broker speaks only the wire protocol; unit tests anywhere use it,
    // those of the remoting client included.
    "testing",
    "remoting",
    // ACL signing: an RPCHook over remoting commands.
    "acl",
    "common",
    "codec",
    "client",
    "producer",
    "consumer",
    "admin",
];

fn rank(unit: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| *l == unit)
        .unwrap_or_else(|| panic!("module `{unit}` is not in LAYERS: place it there"))
}

/// The layer a path after `crate::` (e.g. `remoting::protocol::body::X`) belongs to.
fn unit_of_path(path: &str, root_items: &HashMap<String, String>) -> Option<String> {
    let mut segs = path.split("::");
    let first = segs.next()?;
    if first.starts_with(|c: char| c.is_ascii_uppercase()) {
        return Some(
            root_items
                .get(first)
                .unwrap_or_else(|| panic!("`crate::{first}` is not a root re-export in lib.rs"))
                .clone(),
        );
    }
    if first == "remoting" && segs.next() == Some("protocol") {
        return Some("remoting::protocol".to_owned());
    }
    Some(first.to_owned())
}

/// The layer a source file belongs to, `None` for `lib.rs` (which re-exports everything) and
/// for the binaries under `src/bin/`, which are crates of their own: their `crate::` paths name
/// their own modules, and they use the library from outside, as any user does.
fn unit_of_file(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let top = parts[0].trim_end_matches(".rs").to_owned();
    match top.as_str() {
        "lib" | "bin" => None,
        "remoting" if parts.get(1).map(String::as_str) == Some("protocol") => {
            Some("remoting::protocol".to_owned())
        }
        _ => Some(top),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::a::b::...` path in `text` (the identifier chain after `crate::`).
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let before = &rest[..i];
            rest = &rest[i + "crate::".len()..];
            // `$crate::` in macros and identifiers ending in `crate` are not paths of ours.
            if before.ends_with(|c: char| c == '$' || c == '_' || c.is_ascii_alphanumeric()) {
                continue;
            }
            let path: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':' || *c == '{')
                .collect();
            // `crate::{a, b}` keeps its brace so the caller can refuse it; `a::{B, C}` is `a`.
            let path = match path.find('{') {
                Some(0) | None => path.as_str(),
                Some(b) => &path[..b],
            };
            out.push((n + 1, path.trim_end_matches(':').to_owned()));
        }
    }
    out
}

/// `name -> layer` for the items `src/lib.rs` re-exports with `pub use module::...`.
fn root_items(lib: &str) -> HashMap<String, String> {
    let mut items = HashMap::new();
    for stmt in lib.split(';') {
        let Some(i) = stmt.find("pub use ") else {
            continue;
        };
        let body = &stmt[i + "pub use ".len()..];
        let path: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let unit = unit_of_path(&path, &HashMap::new()).unwrap();
        for name in body
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with(|c: char| c.is_ascii_uppercase()))
        {
            items.insert(name.to_owned(), unit.clone());
        }
    }
    items
}

#[test]
fn no_module_names_a_module_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let roots = root_items(&fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "read the source tree: {}", src.display());
    let mut violations = Vec::new();
    for file in &files {
        let Some(unit) = unit_of_file(&src, file) else {
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        for (line, path) in crate_paths(&text) {
            assert!(
                !path.starts_with('{'),
                "{}:{line}: write `crate::{{...}}` as one path per module so this test sees it",
                file.display()
            );
            let Some(target) = unit_of_path(&path, &roots) else {
                continue;
            };
            if rank(&target) > rank(&unit) {
                violations.push(format!(
                    "{}:{line}: {unit} -> {target} (crate::{path})",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "modules that name a module above them (layers, bottom first: {LAYERS:?}):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_paths_and_root_re_exports() {
    let roots =
        root_items("pub use error::{Error, Result};\npub use remoting::protocol::ResponseCode;");
    assert_eq!(roots["Error"], "error");
    assert_eq!(roots["ResponseCode"], "remoting::protocol");
    let paths = crate_paths("use crate::consumer::stats::X; $crate::y; see [`crate::Error`].");
    assert_eq!(
        paths,
        vec![
            (1, "consumer::stats::X".to_owned()),
            (1, "Error".to_owned())
        ]
    );
    assert_eq!(
        unit_of_path("remoting::protocol::body::B", &roots).as_deref(),
        Some("remoting::protocol")
    );
    assert_eq!(
        unit_of_path("remoting::RemotingClient", &roots).as_deref(),
        Some("remoting")
    );
    assert_eq!(unit_of_path("Error", &roots).as_deref(), Some("error"));
}
