//! The replica's layers, checked: every file of `control/src` imports only from its own
//! layer or the layers above it, and no two files in different folders import each
//! other. Reads the source as text (the `crate::` paths outside `#[cfg(test)]` modules),
//! so it needs nothing but the files.
//!
//! From the top: `model` and the metrics counters (0), `store` (1), `replica` (2), `api`
//! (3), the scrape-time metrics view (4), then `server`, `security`, `tls`, `config`,
//! `logging` and the binary (5).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of a module path below `crate::`, e.g. `store::state` or `model`.
fn layer_of_module(path: &str) -> Option<u8> {
    let mut parts = path.split("::");
    let first = parts.next()?;
    let second = parts.next();
    match (first, second) {
        ("model", _) => Some(0),
        ("metrics", Some("replica_state")) => Some(4),
        ("metrics", _) => Some(0),
        ("store", _) => Some(1),
        ("replica", _) => Some(2),
        ("api", _) => Some(3),
        (
            "server" | "security" | "tls" | "config" | "logging" | "serve" | "Config"
            | "ServerError",
            _,
        ) => Some(5),
        _ => None,
    }
}

/// The module path of a source file, e.g. `store::state` for `store/state.rs`.
fn module_of_file(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.last_mut() {
        *last = last.trim_end_matches(".rs").to_owned();
    }
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts.join("::")
}

/// The source outside `#[cfg(test)]` items: everything before the first one (the
/// project keeps unit tests in a `mod tests` at the end of each file).
fn production_code(source: &str) -> &str {
    source
        .find("#[cfg(test)]")
        .map_or(source, |at| &source[..at])
}

/// Every `crate::a::b` path named in `code` (in `use` items and inline, not in comments),
/// as `a::b`, with `crate::a::{b, c::d}` groups expanded one level (`a::b`, `a::c`).
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let head = ident_path(rest);
            let after = &rest[head.len()..];
            if let Some(group) = after.strip_prefix('{') {
                let items = &group[..group.find('}').unwrap_or(group.len())];
                for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    let item = ident_path(item);
                    paths.insert(path_prefix(&format!("{head}{item}")));
                }
            } else {
                paths.insert(path_prefix(head));
            }
        }
    }
    paths
}

/// The leading `a::b::` of `text`: identifiers joined by `::`, with the trailing `::`.
fn ident_path(text: &str) -> &str {
    let mut end = 0;
    let bytes = text.as_bytes();
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
        end += 1;
        if text[end..].starts_with("::") {
            end += 2;
        }
    }
    &text[..end]
}

/// The first two segments of a path, `a::b`.
fn path_prefix(text: &str) -> String {
    text.split("::")
        .filter(|p| !p.is_empty() && *p != "self")
        .take(2)
        .collect::<Vec<_>>()
        .join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("read control/src");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// What each file of `control/src` imports: its module path, and the module paths it
/// names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files
        .iter()
        .map(|file| {
            let source = std::fs::read_to_string(file).expect("read a source file");
            let relative = file.strip_prefix(&root).expect("under src");
            (
                module_of_file(relative),
                crate_paths(production_code(&source)),
            )
        })
        .collect()
}

#[test]
fn every_file_imports_only_from_its_layer_or_above() {
    let mut violations = Vec::new();
    for (module, paths) in imports() {
        let Some(own) = layer_of_module(&module).or_else(|| module.is_empty().then_some(5)) else {
            violations.push(format!("{module}: not in any layer"));
            continue;
        };
        for path in paths {
            match layer_of_module(&path) {
                Some(layer) if layer > own => violations.push(format!(
                    "{module} (layer {own}) imports crate::{path} (layer {layer}), below it"
                )),
                Some(_) => {}
                None => violations.push(format!("{module}: crate::{path} is in no layer")),
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layer violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn no_two_files_in_different_folders_import_each_other() {
    let imports = imports();
    let folder = |module: &str| module.split("::").next().unwrap_or_default().to_owned();
    let imports_file = |from: &str, to: &str| {
        imports.get(from).is_some_and(|paths| {
            paths
                .iter()
                .any(|p| p == to || p.starts_with(&format!("{to}::")))
        })
    };
    let mut circles = Vec::new();
    for a in imports.keys() {
        for b in imports.keys() {
            if a < b
                && folder(a) != folder(b)
                && !a.is_empty()
                && !b.is_empty()
                && imports_file(a, b)
                && imports_file(b, a)
            {
                circles.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "files in different folders import each other:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_checker_sees_imports() {
    let paths = crate_paths(
        "use crate::store::{Store, StoreError};\nuse crate::{api::auth, model::Foo};\nlet x = crate::replica::acks::X;",
    );
    assert!(paths.contains("store::Store"), "{paths:?}");
    assert!(paths.contains("api::auth"), "{paths:?}");
    assert!(paths.contains("model::Foo"), "{paths:?}");
    assert!(paths.contains("replica::acks"), "{paths:?}");
    assert_eq!(layer_of_module("store::state"), Some(1));
    assert_eq!(layer_of_module("metrics::replica_state"), Some(4));
    assert_eq!(module_of_file(Path::new("store/mod.rs")), "store");
    let found = imports();
    assert!(found.contains_key("api::session"), "{:?}", found.keys());
    assert!(
        found["api::session"]
            .iter()
            .any(|p| p.starts_with("replica")),
        "api::session imports the replica"
    );
}
