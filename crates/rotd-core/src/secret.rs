//! [`Secret`], the one type a secret value lives in: zeroized on drop, printed as `**REDACTED**`, not
//! `Serialize`, read only through the explicit `expose_secret`.

use std::fmt;
use zeroize::Zeroizing;

/// A secret value: a password, a private key, an AccessKey secret or any generic secret payload.
///
/// The bytes are zeroized when the value is dropped, `Debug` and `Display` print `**REDACTED**`, and the
/// type deliberately implements neither `Serialize` nor `Deserialize`: the only way to reach the bytes is
/// [`Secret::expose_secret`], a call that is easy to find in review.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Gives access to the secret bytes. Keep the borrow short and never format it.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as UTF-8 text, when they are text.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares two secrets in time independent of where they first differ.
    pub fn constant_time_eq(&self, other: &Secret) -> bool {
        let (a, b) = (self.expose_secret(), other.expose_secret());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self::new(s.into_bytes())
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s.as_bytes().to_vec())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::from("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "**REDACTED**");
        assert_eq!(format!("{s}"), "**REDACTED**");
        assert_eq!(format!("{:?}", Some(&s)), "Some(**REDACTED**)");
        assert!(!format!("{:#?}", vec![s.clone()]).contains("hunter2"));
        assert_eq!(s.expose_str(), Some("hunter2-very-secret"));
    }

    #[test]
    fn constant_time_eq_compares_content() {
        assert!(Secret::from("abc").constant_time_eq(&Secret::from("abc")));
        assert!(!Secret::from("abc").constant_time_eq(&Secret::from("abd")));
        assert!(!Secret::from("abc").constant_time_eq(&Secret::from("abcd")));
    }
}
