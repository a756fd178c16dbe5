//! "A provider is one file": no product code outside `crates/core/src/providers/` names a built-in
//! provider — not in code, strings, flags or comments. Everything else iterates over
//! `hookline_core::providers::BUILT_IN`. Tests (`tests/` folders, `#[cfg(test)]` modules) and
//! the test-support crate (`crates/testkit`) may name them: they exercise real providers.

use std::path::{Path, PathBuf};

use hookline_core::providers::BUILT_IN;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The product code of a source file: everything before its `#[cfg(test)]` module.
fn product_code(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// `(file:line, line)` for every product line outside the providers folder naming a provider.
fn mentions(root: &Path) -> Vec<(String, String)> {
    let providers_dir = root.join("crates/core/src/providers");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let krate = krate.unwrap().path();
        if krate.ends_with("testkit") {
            continue;
        }
        let src = krate.join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    let names: Vec<String> = BUILT_IN.iter().map(|b| b.name().to_lowercase()).collect();
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&providers_dir)) {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in product_code(&text).lines().enumerate() {
            let lower = line.to_lowercase();
            if names.iter().any(|name| names_word(&lower, name)) {
                let at = file.strip_prefix(root).unwrap().display();
                found.push((format!("{at}:{}", n + 1), line.trim().to_owned()));
            }
        }
    }
    found
}

/// Whether `name` occurs in `line` as a word: not inside a longer one (`ses` in `refuses`).
/// Anything but a letter bounds a word, so `telnyx_body` and `TELNYX_PUBLIC_KEY` name Telnyx.
fn names_word(line: &str, name: &str) -> bool {
    line.match_indices(name).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + name.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphabetic())
            && !after.is_some_and(|c| c.is_ascii_alphabetic())
    })
}

#[test]
fn a_provider_is_named_as_a_word() {
    assert!(names_word("let b = telnyx_body(x);", "telnyx"));
    assert!(names_word(
        "TELNYX_PUBLIC_KEY".to_lowercase().as_str(),
        "telnyx"
    ));
    assert!(names_word("/webhooks/ses", "ses"));
    assert!(!names_word("/// refuses a replay", "ses"));
    assert!(!names_word("posts and responses", "ses"));
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn no_crate_outside_the_providers_folder_names_a_provider() {
    let found = mentions(&root());
    assert!(
        found.is_empty(),
        "provider knowledge outside crates/core/src/providers/ (move it into the provider's \
         file and iterate over BUILT_IN):\n{}",
        found
            .iter()
            .map(|(at, line)| format!("  {at}: {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The check can fail: a product file naming a provider is reported.
#[test]
fn the_check_sees_a_provider_named_in_product_code() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("crates/example/src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(dir.path().join("crates/core/src/providers")).unwrap();
    let name = BUILT_IN[0].name();
    std::fs::write(
        src.join("lib.rs"),
        format!("fn route() -> &'static str {{ \"/webhooks/{name}\" }}\n#[cfg(test)]\nmod tests {{ const P: &str = \"{name}\"; }}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("crates/core/src/providers/x.rs"),
        format!("// {name}\n"),
    )
    .unwrap();
    let found = mentions(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "crates/example/src/lib.rs:1");
}
