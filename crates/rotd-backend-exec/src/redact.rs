//! Keeping a secret value out of what a plug-in printed before any of it reaches an error message.
//!
//! A plug-in may echo its request or the value by mistake. Every byte of the captured output that belongs to
//! an occurrence of the value, in any of the forms a plug-in is likely to print, is hidden, and each run of
//! hidden bytes becomes one `**REDACTED**`. Matching uses a KMP automaton so that a repetitive value or
//! output cannot make redaction quadratic.

use rotd_core::Secret;

/// What replaces a secret value in plug-in output.
pub const REDACTED: &str = "**REDACTED**";

/// The forms of one secret value to hide, each held as a zeroizing [`Secret`].
pub(crate) struct Redactor {
    needles: Vec<Secret>,
}

impl Redactor {
    /// A redactor for `value`; `None` or an empty value hides nothing, since an empty needle matches
    /// everywhere and there is nothing secret to protect.
    pub(crate) fn new(value: Option<&str>) -> Self {
        let mut needles: Vec<Secret> = Vec::new();
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            let forms = [
                Secret::from(value),
                json_escaped(value, false),
                json_escaped(value, true),
            ];
            for form in forms {
                if !needles.iter().any(|n| n.expose_secret() == form.expose_secret()) {
                    needles.push(form);
                }
            }
        }
        Self { needles }
    }

    /// Returns `text` with every occurrence of a needle replaced. `cut_front` says that `text` is the tail
    /// of a longer output, so its first bytes may be the end of an occurrence whose start was discarded;
    /// such a fragment is hidden too.
    pub(crate) fn redact(&self, text: &[u8], cut_front: bool) -> Vec<u8> {
        if self.needles.is_empty() || text.is_empty() {
            return text.to_vec();
        }
        // `depth[i]` counts the occurrences covering byte i, built as a difference array so that many
        // overlapping occurrences cost no more than one.
        let mut diff = vec![0i64; text.len() + 1];
        for needle in &self.needles {
            let needle = needle.expose_secret();
            let m = needle.len();
            let fail = failure_table(m, |i| needle[i]);
            kmp_scan(
                m,
                |i| needle[i],
                &fail,
                text.len(),
                |i| text[i],
                |end| {
                    diff[end + 1 - m] += 1;
                    diff[end + 1] -= 1;
                },
            );
            if cut_front {
                // The longest suffix of the needle that is a prefix of the text is the longest prefix of
                // the reversed needle that is a suffix of the reversed text: the automaton's final state.
                let head = text.len().min(m);
                let rev_fail = failure_table(m, |i| needle[m - 1 - i]);
                let k = kmp_scan(
                    m,
                    |i| needle[m - 1 - i],
                    &rev_fail,
                    head,
                    |i| text[head - 1 - i],
                    |_| {},
                );
                if k > 0 {
                    diff[0] += 1;
                    diff[k] -= 1;
                }
            }
        }
        let mut out = Vec::with_capacity(text.len());
        let mut depth = 0i64;
        let mut in_run = false;
        for (i, &byte) in text.iter().enumerate() {
            depth += diff[i];
            if depth > 0 {
                if !in_run {
                    out.extend_from_slice(REDACTED.as_bytes());
                    in_run = true;
                }
            } else {
                out.push(byte);
                in_run = false;
            }
        }
        out
    }

    /// [`Redactor::redact`] for complete text (the plug-in's `error` field). A valid UTF-8 needle only ever
    /// matches on character boundaries of valid UTF-8 text, so the result stays valid.
    pub(crate) fn redact_str(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.redact(text.as_bytes(), false)).into_owned()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The value as it appears inside a JSON string: serde_json's escaping (quote, backslash and control
/// characters), or, with `ascii`, also every non-ASCII character as `\uXXXX` (Python's `json.dumps`).
fn json_escaped(value: &str, ascii: bool) -> Secret {
    // Sized for the worst case up front, so the buffer never reallocates and leaves no unzeroized copy.
    let mut out = Vec::with_capacity(value.len() * 12);
    for c in value.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            c if (c as u32) < 0x20 || (ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(b"\\u");
                    for shift in [12, 8, 4, 0] {
                        out.push(HEX[usize::from((*unit >> shift) & 0xf)]);
                    }
                }
            }
            c => {
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    Secret::new(out)
}

/// The KMP failure function of a pattern of length `m` given by `pat`.
fn failure_table(m: usize, pat: impl Fn(usize) -> u8) -> Vec<usize> {
    let mut fail = vec![0usize; m];
    let mut k = 0;
    for i in 1..m {
        while k > 0 && pat(i) != pat(k) {
            k = fail[k - 1];
        }
        if pat(i) == pat(k) {
            k += 1;
        }
        fail[i] = k;
    }
    fail
}

/// Runs the KMP automaton of the pattern over the text, calling `on_match` with the index of the last byte
/// of every (possibly overlapping) occurrence, and returns the length of the longest pattern prefix that
/// is a suffix of the text.
fn kmp_scan(
    m: usize,
    pat: impl Fn(usize) -> u8,
    fail: &[usize],
    n: usize,
    text: impl Fn(usize) -> u8,
    mut on_match: impl FnMut(usize),
) -> usize {
    let mut k = 0;
    for i in 0..n {
        let byte = text(i);
        while k > 0 && byte != pat(k) {
            k = fail[k - 1];
        }
        if byte == pat(k) {
            k += 1;
        }
        if k == m {
            on_match(i);
            k = fail[k - 1];
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(value: &str, text: &str) -> String {
        String::from_utf8_lossy(&Redactor::new(Some(value)).redact(text.as_bytes(), false)).into_owned()
    }

    #[test]
    fn replaces_every_occurrence() {
        assert_eq!(
            redact("hunter2", "a hunter2 b hunter2"),
            "a **REDACTED** b **REDACTED**"
        );
        assert_eq!(redact("hunter2", "hunter2hunter2"), "**REDACTED**");
        assert_eq!(redact("hunter2", "nothing here"), "nothing here");
    }

    #[test]
    fn overlapping_occurrences_are_hidden_whole() {
        assert_eq!(redact("aba", "xababax"), "x**REDACTED**x");
        assert_eq!(redact("aa", "aaaaa"), "**REDACTED**");
    }

    #[test]
    fn json_escaped_forms_are_hidden() {
        let value = "p\"w\\d\né😀";
        let line = serde_json::to_string(&serde_json::json!({ "value": value })).expect("json");
        assert_eq!(redact(value, &line), r#"{"value":"**REDACTED**"}"#);
        let python = r#"{"value": "p\"w\\d\n\u00e9\ud83d\ude00"}"#;
        assert_eq!(redact(value, python), r#"{"value": "**REDACTED**"}"#);
        assert_eq!(redact(value, value), "**REDACTED**");
    }

    #[test]
    fn empty_or_absent_value_hides_nothing() {
        assert_eq!(Redactor::new(None).redact(b"abc", true), b"abc");
        assert_eq!(Redactor::new(Some("")).redact(b"abc", true), b"abc");
    }

    #[test]
    fn fragment_at_a_cut_front_edge_is_hidden() {
        let r = Redactor::new(Some("secretvalue"));
        assert_eq!(r.redact(b"value and more", true), b"**REDACTED** and more");
        assert_eq!(r.redact(b"value and more", false), b"value and more");
        assert_eq!(r.redact(b"tvalue", true), b"**REDACTED**");
        assert_eq!(r.redact(b"e", true), b"**REDACTED**");
        assert_eq!(r.redact(b"x", true), b"x");
    }

    #[test]
    fn pathological_input_is_linear() {
        let value = "a".repeat(30_000);
        let text = "a".repeat(200_000);
        let out = Redactor::new(Some(&value)).redact(text.as_bytes(), true);
        assert_eq!(out, REDACTED.as_bytes());
    }
}
