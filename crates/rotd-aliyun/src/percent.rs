//! Percent-encoding as the Alibaba Cloud SDKs do it for signing, and strict form/query decoding for the
//! server.
//!
//! The two directions are deliberately different. Signing uses RFC 3986 encoding (`quote(v, safe='~')` in
//! the Python SDK): only `A-Za-z0-9-_.~` stay literal, a space is `%20`, `*` is `%2A`, hex digits are
//! uppercase. What travels on the wire is produced by the HTTP library's form encoder instead (a space is
//! `+`), so the server decodes with form rules and then re-encodes with signing rules. A general-purpose
//! form serializer must therefore never be used to build a canonical string.

use std::collections::HashSet;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use thiserror::Error;

/// Every byte except the RFC 3986 unreserved characters is escaped.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a query string or form body could not be decoded. Offsets count bytes from the start of the input
/// handed to the parser; the offending bytes themselves are never echoed, because a form body can hold a
/// secret value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// A `%` not followed by two hex digits.
    #[error("invalid percent escape at byte {offset}")]
    InvalidEscape { offset: usize },
    /// The decoded bytes of a name or value are not UTF-8.
    #[error("name or value starting at byte {offset} is not utf-8")]
    InvalidUtf8 { offset: usize },
}

/// RFC 3986-encodes `s` exactly as the SDKs do when they build a canonical string.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// Appends the RFC 3986 encoding of `s` to `out`, without an intermediate allocation.
pub fn encode_into(out: &mut String, s: &str) {
    out.extend(utf8_percent_encode(s, RFC3986));
}

/// Whether [`encode`] would change `s`, i.e. whether it holds anything but unreserved characters.
pub fn needs_encoding(s: &str) -> bool {
    s.bytes()
        .any(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')))
}

/// Decodes one form/query component: `+` is a space, `%XX` is a byte (either hex case), and the result must
/// be UTF-8. A malformed escape is an error rather than being passed through literally (as lenient
/// decoders do), so two different byte strings can never decode to the same parameter.
pub fn decode_component(s: &str) -> Result<String, DecodeError> {
    decode_bytes(s.as_bytes(), 0)
}

/// Parses a raw query string (without the leading `?`) into name/value pairs in wire order. Duplicates are
/// kept, so the caller can reject them; empty segments (`a=1&&b=2`) are skipped and a segment without `=`
/// is a name with an empty value, as the common form decoders treat them.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, DecodeError> {
    parse_pairs(raw.as_bytes())
}

/// Parses an `application/x-www-form-urlencoded` body the same way as [`parse_query`]. The body is raw
/// bytes because it comes straight off the wire; bytes that are not UTF-8 after decoding are an error.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    parse_pairs(body)
}

/// The first parameter name that occurs more than once, if any.
pub fn find_duplicate(params: &[(String, String)]) -> Option<&str> {
    let mut seen = HashSet::with_capacity(params.len());
    params
        .iter()
        .map(|(name, _)| name.as_str())
        .find(|name| !seen.insert(*name))
}

fn parse_pairs(input: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    let mut pairs = Vec::new();
    let mut start = 0;
    for segment in input.split(|&b| b == b'&') {
        let segment_start = start;
        start += segment.len() + 1;
        if segment.is_empty() {
            continue;
        }
        let (name, value, value_start) = match segment.iter().position(|&b| b == b'=') {
            Some(eq) => (&segment[..eq], &segment[eq + 1..], segment_start + eq + 1),
            None => (segment, &segment[segment.len()..], segment_start + segment.len()),
        };
        pairs.push((
            decode_bytes(name, segment_start)?,
            decode_bytes(value, value_start)?,
        ));
    }
    Ok(pairs)
}

fn decode_bytes(input: &[u8], base: usize) -> Result<String, DecodeError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = input.get(i + 1).and_then(|&b| hex_value(b));
                let lo = input.get(i + 2).and_then(|&b| hex_value(b));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                    _ => return Err(DecodeError::InvalidEscape { offset: base + i }),
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::InvalidUtf8 { offset: base })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_sdk() {
        assert_eq!(encode("AZaz09-_.~"), "AZaz09-_.~");
        assert_eq!(encode("my secret/1"), "my%20secret%2F1");
        assert_eq!(encode("a*b+c=d&e"), "a%2Ab%2Bc%3Dd%26e");
        assert_eq!(encode("é✓"), "%C3%A9%E2%9C%93");
        assert_eq!(encode("2016-03-28T03:13:08Z"), "2016-03-28T03%3A13%3A08Z");
        assert_eq!(encode(""), "");
        let mut out = String::from("x=");
        encode_into(&mut out, "a b");
        assert_eq!(out, "x=a%20b");
        assert!(!needs_encoding("ExtendedConfig.CustomData.k_1-~"));
        assert!(needs_encoding("my key"));
    }

    #[test]
    fn decodes_form_components() {
        assert_eq!(decode_component("s+1%2F%C3%A9").unwrap(), "s 1/é");
        assert_eq!(decode_component("%2a%2A").unwrap(), "**");
        assert_eq!(decode_component("%2B").unwrap(), "+");
        assert_eq!(decode_component("").unwrap(), "");
        assert_eq!(
            decode_component("%"),
            Err(DecodeError::InvalidEscape { offset: 0 })
        );
        assert_eq!(
            decode_component("ab%4"),
            Err(DecodeError::InvalidEscape { offset: 2 })
        );
        assert_eq!(
            decode_component("%zz"),
            Err(DecodeError::InvalidEscape { offset: 0 })
        );
        assert_eq!(
            decode_component("%C3"),
            Err(DecodeError::InvalidUtf8 { offset: 0 })
        );
        assert_eq!(
            decode_component("%FF%FE"),
            Err(DecodeError::InvalidUtf8 { offset: 0 })
        );
    }

    #[test]
    fn parses_query_in_order_with_duplicates() {
        let pairs = parse_query("b=2&a=1&&a=3&flag&=empty&c=").unwrap();
        let expected = [
            ("b", "2"),
            ("a", "1"),
            ("a", "3"),
            ("flag", ""),
            ("", "empty"),
            ("c", ""),
        ];
        let got: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, expected);
        assert_eq!(find_duplicate(&pairs), Some("a"));
        assert_eq!(find_duplicate(&pairs[..2]), None);
        assert_eq!(parse_query("").unwrap(), vec![]);
        assert_eq!(
            parse_query("a=1&b=%G1"),
            Err(DecodeError::InvalidEscape { offset: 6 })
        );
        assert_eq!(
            parse_query("a=1&b%C3=1"),
            Err(DecodeError::InvalidUtf8 { offset: 4 })
        );
    }

    #[test]
    fn parses_form_bodies_and_rejects_raw_non_utf8() {
        let pairs = parse_form(b"SecretData=%7B%22a%22%3A%22b+c%22%7D").unwrap();
        assert_eq!(
            pairs,
            vec![("SecretData".to_owned(), r#"{"a":"b c"}"#.to_owned())]
        );
        assert_eq!(parse_form(b"a=\xff"), Err(DecodeError::InvalidUtf8 { offset: 2 }));
        assert_eq!(parse_form("a=é".as_bytes()).unwrap()[0].1, "é");
    }

    #[test]
    fn decode_inverts_encode() {
        for s in ["", "plain", "a b+c", "日本語 😀", "%41", "~*'()!"] {
            assert_eq!(decode_component(&encode(s)).unwrap(), s);
        }
    }
}
