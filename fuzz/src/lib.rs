//! Helpers shared by the fuzz targets: the fixed access keys they verify against, and the "wire" input
//! form, an HTTP/1.1 request as text, in which the seed corpora hold real requests.
//!
//! Every target reads its first input byte as a mode: even means the rest is a wire request (seeds are in
//! this form, see `fuzz/seeds/gen_corpus.py`), odd means the rest is raw bytes for `arbitrary`, from which
//! the target builds and signs a request itself. libFuzzer mutates both halves; a seed's signature stays
//! valid until a mutation touches what it covers, so mutations start next to an accepted request.

use chrono::{DateTime, Utc};
use rotd_core::Secret;

/// The access keys the targets know: those of the official SDK vectors in
/// `crates/rotd-aliyun/testdata/sdk_vectors.json`, so that the seeds taken from them verify. The secrets
/// are pairwise distinct, which the targets' "another key must not verify" checks rely on.
pub const KEYS: [(&str, &str); 12] = [
    ("testid", "testsecret"),
    ("LTAI5tUnicodeKey", "unicode-secret-\u{00fc}"),
    ("ak-punct", "secret with spaces and / + ="),
    ("ak-empty", "sek"),
    ("ak-body", "body-secret"),
    ("ak-create", "create-secret"),
    ("ak-headers", "header-secret"),
    ("ak-order", "order-secret"),
    ("ak-path", "path-secret"),
    ("ak-long", "long-secret"),
    ("ak-rawkey", "rawkey-secret"),
    ("ak-get", "get-secret"),
];

/// The secret of a known access key id.
pub fn lookup(id: &str) -> Option<Secret> {
    KEYS.iter().find(|(k, _)| *k == id).map(|(_, s)| Secret::from(*s))
}

/// The access key at `index` (modulo the table).
pub fn key(index: u8) -> rotd_aliyun::AccessKey {
    let (id, secret) = KEYS[usize::from(index) % KEYS.len()];
    rotd_aliyun::AccessKey::new(id, Secret::from(secret))
}

/// A signing date from fuzz input: 2017-07-14 plus up to 136 years, whole seconds.
pub fn date(offset: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(1_500_000_000 + i64::from(offset), 0).expect("in range")
}

/// A request as it arrives: the request line split into method, path and raw query, header names and
/// values as bytes (the HTTP layer has not judged them yet), and the body.
#[derive(Debug)]
pub struct Wire<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub raw_query: &'a str,
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    pub body: &'a [u8],
}

/// Parses `METHOD SP target [SP version] CRLF (name ":" OWS value OWS CRLF)* CRLF body`. Lines may end in
/// LF alone. `None` when the request line is not UTF-8 or a header line has no colon: those never reach
/// the code under test, since the HTTP server refuses them.
pub fn parse_wire(data: &[u8]) -> Option<Wire<'_>> {
    let (head, body) = match find(data, b"\r\n\r\n") {
        Some(i) => (&data[..i], &data[i + 4..]),
        None => match find(data, b"\n\n") {
            Some(i) => (&data[..i], &data[i + 2..]),
            None => (data, &data[data.len()..]),
        },
    };
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = std::str::from_utf8(lines.next()?).ok()?;
    let mut parts = request_line.split(' ');
    let method = parts.next()?;
    let target = parts.next().unwrap_or("/");
    let (path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in lines {
        let colon = line.iter().position(|&b| b == b':')?;
        let value = trim_ows(&line[colon + 1..]);
        headers.push((&line[..colon], value));
    }
    Some(Wire {
        method,
        path,
        raw_query,
        headers,
        body,
    })
}

impl Wire<'_> {
    /// The headers as text, as the API hands them to the verifiers; `None` if one is not UTF-8 (the API
    /// refuses a header value that is not visible ASCII before any signature is checked).
    pub fn text_headers(&self) -> Option<Vec<(String, String)>> {
        self.headers
            .iter()
            .map(|(n, v)| {
                Some((
                    std::str::from_utf8(n).ok()?.to_owned(),
                    std::str::from_utf8(v).ok()?.to_owned(),
                ))
            })
            .collect()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Header value trimming as the V3 verifier does it (Python's `str.strip()`), for the targets' oracles.
pub fn sdk_trim(value: &str) -> &str {
    value.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}
