//! Editing `authorized_keys` line by line: every line rotd did not write stays byte for byte, rotd's
//! own lines carry the comment `rotd:<secret>:<version>`, and a key is recognised by its base64 blob
//! whatever its options or comment.

/// The comment rotd gives a key it adds: `rotd:<secret>:<version>`.
pub(crate) fn marker(secret: &str, version: &str) -> String {
    format!("rotd:{secret}:{version}")
}

fn tokens(line: &str) -> impl Iterator<Item = &str> {
    line.split_ascii_whitespace()
}

/// Whether `line` (not a comment) holds the key whose base64 blob is `blob`.
fn has_blob(line: &str, blob: &str) -> bool {
    let t = line.trim_start();
    !t.starts_with('#') && tokens(t).any(|tok| tok == blob)
}

/// Whether `line` is one rotd added for `secret`.
fn is_ours(line: &str, secret: &str) -> bool {
    let prefix = format!("rotd:{secret}:");
    let t = line.trim_start();
    !t.starts_with('#') && tokens(t).any(|tok| tok.starts_with(&prefix))
}

/// The file's lines with their terminators, so joining them gives the file back exactly.
fn lines(content: &str) -> Vec<&str> {
    content.split_inclusive('\n').collect()
}

/// Whether the file already holds the key `blob`.
pub(crate) fn contains(content: &str, blob: &str) -> bool {
    lines(content).iter().any(|l| has_blob(l, blob))
}

/// The file with `line` appended, or `None` when it already holds that key. A last line without its
/// newline gets one, so the new key does not run into it.
pub(crate) fn add(content: &str, line: &str, blob: &str) -> Option<String> {
    if contains(content, blob) {
        return None;
    }
    let mut out = String::with_capacity(content.len() + line.len() + 2);
    out.push_str(content);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line.trim_end());
    out.push('\n');
    Some(out)
}

/// What removing a key would leave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// The key is not in the file (already removed, or never there).
    Absent,
    /// The key is there but rotd did not add it (no `rotd:<secret>:` comment): it stays.
    NotOurs,
    /// Removing it would leave no key rotd added for this secret: it stays.
    Last,
    /// The new file content.
    Removed(String),
}

/// The file without the rotd-added lines holding key `blob`, as long as another key rotd added for
/// `secret` (the current one) remains.
pub(crate) fn remove(content: &str, blob: &str, secret: &str) -> Removal {
    let all = lines(content);
    let with_key: Vec<&&str> = all.iter().filter(|l| has_blob(l, blob)).collect();
    if with_key.is_empty() {
        return Removal::Absent;
    }
    if !with_key.iter().any(|l| is_ours(l, secret)) {
        return Removal::NotOurs;
    }
    let kept: Vec<&str> = all
        .iter()
        .copied()
        .filter(|l| !(has_blob(l, blob) && is_ours(l, secret)))
        .collect();
    if !kept.iter().any(|l| is_ours(l, secret)) {
        return Removal::Last;
    }
    Removal::Removed(kept.concat())
}

/// How many keys the file holds, and how many of them rotd added for `secret`.
pub(crate) fn census(content: &str, secret: &str) -> (usize, usize) {
    let keys: Vec<&str> = lines(content)
        .into_iter()
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .collect();
    let ours = keys.iter().filter(|l| is_ours(l, secret)).count();
    (keys.len(), ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OTHER: &str = "from=\"10.0.0.0/8\" ssh-ed25519 AAAAother admin@laptop\r\n# a comment AAAAold\n\n";

    #[test]
    fn add_keeps_other_lines_byte_for_byte() {
        let out = add(OTHER, "ssh-ed25519 AAAAnew rotd:app:v2", "AAAAnew").expect("added");
        assert_eq!(out, format!("{OTHER}ssh-ed25519 AAAAnew rotd:app:v2\n"));
        assert_eq!(add(&out, "ssh-ed25519 AAAAnew x", "AAAAnew"), None);
    }

    #[test]
    fn add_terminates_an_unterminated_last_line() {
        assert_eq!(
            add("ssh-rsa AAAAa me", "ssh-ed25519 AAAAb c", "AAAAb").as_deref(),
            Some("ssh-rsa AAAAa me\nssh-ed25519 AAAAb c\n")
        );
        assert_eq!(add("", "k AAAAb c", "AAAAb").as_deref(), Some("k AAAAb c\n"));
    }

    #[test]
    fn remove_only_what_rotd_added_and_never_the_last() {
        let f = format!("{OTHER}ssh-ed25519 AAAAold rotd:app:v1\nssh-ed25519 AAAAnew rotd:app:v2\n");
        assert_eq!(
            remove(&f, "AAAAold", "app"),
            Removal::Removed(format!("{OTHER}ssh-ed25519 AAAAnew rotd:app:v2\n"))
        );
        assert_eq!(remove(&f, "AAAAgone", "app"), Removal::Absent);
        assert_eq!(remove(&f, "AAAAother", "app"), Removal::NotOurs);
        // Another secret's marker is not ours.
        assert_eq!(remove(&f, "AAAAold", "other"), Removal::NotOurs);
        let only = format!("{OTHER}ssh-ed25519 AAAAnew rotd:app:v2\n");
        assert_eq!(remove(&only, "AAAAnew", "app"), Removal::Last);
        // The commented-out line that mentions the blob is not a key.
        assert!(!contains("# AAAAx\n", "AAAAx"));
    }

    #[test]
    fn census_counts_keys_and_ours() {
        let f = format!("{OTHER}ssh-ed25519 AAAAnew rotd:app:v2\n");
        assert_eq!(census(&f, "app"), (2, 1));
    }
}
