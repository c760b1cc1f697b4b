//! Configuration errors and the bookkeeping that turns byte spans into `file:line:col`.
//!
//! Every error a user can see names a file, a 1-based line and column, the dotted key it is about and
//! a lowercase message. Messages never contain secret material: the serde messages that echo a rejected
//! string are rewritten before they leave this module.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column, counted in characters, of the offending text.
    pub col: usize,
    /// The dotted key path the error is about, e.g. `rds.account.create.prefix`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.key,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one load, in file order and, within a file, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The text of one configuration file, kept so byte spans can be turned into lines and columns.
pub(crate) struct Source {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
    /// Byte offset at which each line starts; `line_starts[0]` is always 0.
    line_starts: Vec<usize>,
}

impl Source {
    pub(crate) fn new(path: PathBuf, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            path,
            text,
            line_starts,
        }
    }

    /// The 1-based line and character column of a byte offset. Offsets past the end or inside a
    /// multi-byte character are clamped, so a bad span can never panic.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let mut end = offset;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let col = self.text[start..end].chars().count() + 1;
        (line, col)
    }

    /// The byte offset of a 1-based line and character column, the inverse of [`Source::position`].
    /// Positions past the end of a line or of the text are clamped.
    pub(crate) fn offset(&self, line: usize, col: usize) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        self.text[start..]
            .char_indices()
            .nth(col.saturating_sub(1))
            .map_or(self.text.len(), |(i, _)| start + i)
    }

    pub(crate) fn error_at(&self, span: Range<usize>, key: &str, message: String) -> ConfigError {
        let (line, col) = self.position(span.start);
        ConfigError {
            file: self.path.clone(),
            line,
            col,
            key: key.to_owned(),
            message,
        }
    }

    /// Deserializes the whole file into `T`, or explains why it cannot. Syntax errors are all reported
    /// (the parser recovers and keeps going); a structural error (unknown key, wrong type) stops serde,
    /// so at most one of those is reported per file.
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> Result<T, Vec<ConfigError>> {
        let doc = self.parse_document()?;
        T::deserialize(toml::de::Deserializer::from(doc.clone())).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let mut key = key_path_at(doc.get_ref(), span.clone());
            let message = clean_message(e.message());
            if let Some(field) = backticked(&message, "missing field `") {
                push_key(&mut key, field);
            }
            let message = match backticked(&message, "unknown field `") {
                Some(field) if looks_like_secret_key(field) => inline_secret_message(),
                _ => message,
            };
            vec![self.error_at(span, &key, message)]
        })
    }

    /// The file as a TOML document with the byte span of every key and value, or every syntax error.
    pub(crate) fn parse_document(&self) -> Result<Spanned<DeTable<'_>>, Vec<ConfigError>> {
        let (doc, mut syntax) = DeTable::parse_recoverable(&self.text);
        if !syntax.is_empty() {
            syntax.sort_by_key(|e| e.span().map_or(0, |s| s.start));
            let mut out: Vec<ConfigError> = Vec::new();
            for e in syntax {
                let span = e.span().unwrap_or(0..0);
                let key = key_on_line(&self.text, span.start);
                let err = self.error_at(span, &key, clean_message(e.message()));
                // The parser sometimes reports the same spot twice while recovering.
                if !out.iter().any(|o| o.line == err.line && o.message == err.message) {
                    out.push(err);
                }
            }
            return Err(out);
        }
        Ok(doc)
    }
}

/// Collects the semantic errors of one file while its raw form is validated.
pub(crate) struct Diag<'a> {
    pub(crate) src: &'a Source,
    pub(crate) errors: Vec<ConfigError>,
}

impl<'a> Diag<'a> {
    pub(crate) fn new(src: &'a Source) -> Self {
        Self {
            src,
            errors: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let e = self.src.error_at(span, key, message.into());
        self.errors.push(e);
    }

    /// Reports `message` at a spanned value and returns `None`, so validators can end with it.
    pub(crate) fn at<T, U>(
        &mut self,
        value: &Spanned<T>,
        key: &str,
        message: impl Into<String>,
    ) -> Option<U> {
        self.error(value.span(), key, message);
        None
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// What every rejected inline secret is told. It names the three ways secrets do enter rotd.
pub(crate) fn inline_secret_message() -> String {
    "secret material is never written inline; use a file ({ file = \"/etc/rotd/x.pw\" }), a systemd \
     credential ({ credential = \"name\" }) or a secret reference ({ secret = \"other/secret\" })"
        .to_owned()
}

/// Whether an unknown key is most likely someone pasting a secret into the file, in which case the
/// error explains the rule instead of listing the keys that are allowed.
fn looks_like_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    const EXACT: &[&str] = &[
        "value",
        "secret",
        "secret_value",
        "secret_data",
        "secret_string",
        "pass",
        "pwd",
        "token",
        "key",
        "private_key",
        "privatekey",
        "access_key_secret",
        "accesskeysecret",
        "api_key",
        "apikey",
    ];
    EXACT.contains(&k.as_str())
        || k.contains("password")
        || k.contains("passwd")
        || k.ends_with("_token")
        || k.ends_with("_secret")
}

/// The first line of a toml/serde message, lowercased at the start and with any echoed string value
/// removed: serde's `invalid type: string "hunter2", expected …` would otherwise put whatever the user
/// typed, possibly a password, into logs and terminals.
fn clean_message(message: &str) -> String {
    let mut m = message.lines().next().unwrap_or_default().trim().to_owned();
    for marker in ["invalid type: string \"", "invalid value: string \""] {
        if let Some(start) = m.find(marker) {
            // The expected part comes from our own types, so the last `", expected` is the real end.
            let end = m.rfind("\", expected").filter(|&e| e >= start + marker.len());
            let rest = end.map_or(String::new(), |e| m[e + 1..].to_owned());
            m = format!("{}a string{rest}", &m[..start + marker.len() - "string \"".len()]);
        }
    }
    if let Some(start) = m.find("unknown variant `") {
        let tail_start = start + "unknown variant `".len();
        if let Some(len) = m[tail_start..].rfind("`, expected") {
            m = format!("unknown value{}", &m[tail_start + len + 1..]);
        }
    }
    let m = m.trim_end_matches('.').to_owned();
    let mut chars = m.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "invalid toml".to_owned(),
    }
}

/// The text between `prefix` and the next backtick, e.g. the field name of "missing field `x`".
fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

/// The dotted key path of the most specific key or value whose span contains `span`. Tables declared
/// with a `[header]` only span their header, so the whole tree is searched rather than just the
/// branches whose span contains the offset.
fn key_path_at(root: &DeTable<'_>, span: Range<usize>) -> String {
    fn contains(s: &Range<usize>, target: &Range<usize>) -> bool {
        s.start <= target.start && (target.start < s.end || (s.start == s.end && s.start == target.start))
    }
    fn walk(table: &DeTable<'_>, path: &str, target: &Range<usize>, best: &mut Option<(usize, String)>) {
        for (k, v) in table.iter() {
            let mut here = path.to_owned();
            push_key(&mut here, k.get_ref());
            for s in [k.span(), v.span()] {
                if contains(&s, target) {
                    let width = s.end - s.start;
                    if best.as_ref().is_none_or(|(w, _)| width <= *w) {
                        *best = Some((width, here.clone()));
                    }
                }
            }
            walk_value(v.get_ref(), &here, target, best);
        }
    }
    fn walk_value(
        value: &DeValue<'_>,
        path: &str,
        target: &Range<usize>,
        best: &mut Option<(usize, String)>,
    ) {
        match value {
            DeValue::Table(t) => walk(t, path, target, best),
            DeValue::Array(items) => {
                for item in items.iter() {
                    walk_value(item.get_ref(), path, target, best);
                }
            }
            _ => {}
        }
    }
    let mut best = None;
    walk(root, "", &span, &mut best);
    best.map(|(_, p)| p).unwrap_or_default()
}

/// A best-effort key path for a syntax error, when no parsed document exists: the innermost
/// `[table]` header above the offset plus the key written on the offending line, if any.
fn key_on_line(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let mut header = String::new();
    let mut line_text = "";
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let end = pos + line.len();
        let trimmed = line.trim();
        if offset >= end {
            if let Some(h) = trimmed.strip_prefix('[') {
                let h = h.trim_start_matches('[');
                if let Some(close) = h.find(']') {
                    header = h[..close].trim().replace([' ', '"', '\''], "");
                }
            }
        } else {
            line_text = trimmed;
            break;
        }
        pos = end;
    }
    let mut key = header;
    if !line_text.starts_with('[') {
        if let Some((k, _)) = line_text.split_once('=') {
            let k = k.trim().replace([' ', '"', '\''], "");
            if !k.is_empty() && !k.contains('#') {
                push_key(&mut key, &k);
            }
        }
    } else if let Some(h) = line_text.strip_prefix('[') {
        let h = h.trim_start_matches('[');
        key = h.split(']').next().unwrap_or_default().trim().to_owned();
    }
    if key.is_empty() { "(toml)".to_owned() } else { key }
}

/// A file that could not be read at all.
pub(crate) fn io_error(path: &Path, key: &str, message: String) -> ConfigError {
    ConfigError {
        file: path.to_owned(),
        line: 1,
        col: 1,
        key: key.to_owned(),
        message,
    }
}

/// An `io::Error` as a lowercase message fragment ("no such file or directory (os error 2)").
pub(crate) fn io_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "input/output error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let s = Source::new("f.toml".into(), "a = 1\nü = \"x\"\n".to_owned());
        assert_eq!(s.position(0), (1, 1));
        assert_eq!(s.position(4), (1, 5));
        assert_eq!(s.position(6), (2, 1));
        // `ü` is two bytes but one column, so the `=` at byte 9 is column 3.
        assert_eq!(s.position(9), (2, 3));
        assert_eq!(s.position(1000), (3, 1));
    }

    #[test]
    fn echoed_strings_are_removed_from_messages() {
        let m = clean_message("invalid type: string \"hunter2\", expected u16");
        assert_eq!(m, "invalid type: a string, expected u16");
        let m = clean_message("invalid value: string \"a\\\", expected b\", expected a thing");
        assert_eq!(m, "invalid value: a string, expected a thing");
        let m = clean_message("unknown variant `hunter2`, expected `a` or `b`");
        assert_eq!(m, "unknown value, expected `a` or `b`");
        assert_eq!(clean_message("Duplicate key.\nmore"), "duplicate key");
    }

    #[test]
    fn syntax_error_keys_come_from_the_header_and_line() {
        let t = "a = 1\n[rds]\nhost = = 2\n[rds.account\n";
        assert_eq!(key_on_line(t, t.find("= 2").expect("present")), "rds.host");
        assert_eq!(key_on_line(t, t.len() - 1), "rds.account");
        assert_eq!(key_on_line("= 1", 0), "(toml)");
    }
}
