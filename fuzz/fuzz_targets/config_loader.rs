//! The configuration loader (`rotd_config`): `rotd.toml` and the secret files, validated from text by
//! `load_from_text`, which runs exactly what `load` runs after reading the files.
//!
//! The input is the daemon file, then each secret file, separated by NUL bytes (seeds: `config/examples`
//! and the loader tests' files). Checked: nothing panics; a refusal lists at least one error, and every
//! error names one of the files, a line and column inside it, a key, and a non-empty message that starts
//! in lower case; an accepted configuration has one spec per secret file and loads the same twice.

#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let daemon_text = parts.next().unwrap_or_default();
    let daemon_file = Path::new("/fuzz/rotd.toml");
    let secrets: Vec<(PathBuf, String)> = parts
        .take(8)
        .enumerate()
        .map(|(i, t)| {
            (
                PathBuf::from(format!("/fuzz/secrets.d/{i:02}.toml")),
                t.to_owned(),
            )
        })
        .collect();
    let result = rotd_config::load_from_text(daemon_file, daemon_text, &secrets);
    match &result {
        Ok(config) => {
            assert_eq!(config.secrets.len(), secrets.len());
            let again = rotd_config::load_from_text(daemon_file, daemon_text, &secrets);
            assert_eq!(again.as_ref(), Ok(config), "loading is not deterministic");
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "a refusal without an error");
            for e in errors {
                let file_text = if e.file == daemon_file {
                    daemon_text
                } else {
                    secrets
                        .iter()
                        .find(|(p, _)| *p == e.file)
                        .unwrap_or_else(|| panic!("error names an unknown file: {e}"))
                        .1
                        .as_str()
                };
                let lines: Vec<&str> = file_text.split('\n').collect();
                assert!(e.line >= 1 && e.line <= lines.len(), "line outside the file: {e}");
                let line_chars = lines[e.line - 1].chars().count();
                assert!(
                    e.col >= 1 && e.col <= line_chars + 1,
                    "column outside the line: {e}"
                );
                assert!(!e.key.is_empty(), "error without a key: {e}");
                let first = e.message.chars().next();
                assert!(first.is_some(), "error without a message: {e}");
                assert!(
                    !first.is_some_and(char::is_uppercase),
                    "message not in lower case: {e}"
                );
            }
        }
    }
});
