//! Real messages written by other projects: the `.eml` files the mail-parser crate ships (found
//! through `cargo metadata`, so any machine that built the project has them) and, when
//! `POSTERN_CORPUS` names it, the shared corpus folder.

use std::path::{Path, PathBuf};

/// Every `.eml` file under `dir`, sorted.
pub fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "eml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The mail-parser crate's `resources/eml` folder, from the package cargo resolved.
pub fn mail_parser_resources() -> PathBuf {
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let package = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mail-parser")
        .expect("mail-parser is a dependency");
    let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap());
    let dir = manifest.parent().unwrap().join("resources").join("eml");
    assert!(dir.is_dir(), "{} is missing", dir.display());
    dir
}

/// What an SMTP client must send for a file: every bare LF and bare CR turned into CRLF, and a
/// final CRLF if the file has none.
pub fn as_wire_message(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}
