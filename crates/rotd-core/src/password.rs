//! The password generator: policy as data, drawn from the operating system's CSPRNG.
//!
//! The options mirror the vendor's `GetRandomPassword` (length 8–128, exclusions per character class,
//! excluded characters, one of each included class). The default is 32 characters from `[A-Za-z0-9_-]`
//! (~190 bits): it needs no escaping in URLs, shells, SQL literals or TOML.

use rand::RngExt;
use rand::seq::SliceRandom;

use crate::{Secret, ValidationError};

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";
/// Every ASCII punctuation character: the vendor's punctuation universe.
pub const ASCII_PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// What a generated password may and must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub length: usize,
    pub lowercase: bool,
    pub uppercase: bool,
    pub digits: bool,
    /// The punctuation characters allowed; empty means none.
    pub symbols: String,
    /// Characters never used, whatever their class.
    pub exclude: String,
    /// Each included class contributes at least one character.
    pub require_each_class: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            length: 32,
            lowercase: true,
            uppercase: true,
            digits: true,
            symbols: "_-".to_owned(),
            exclude: String::new(),
            require_each_class: false,
        }
    }
}

impl PasswordPolicy {
    /// The vendor's `GetRandomPassword` defaults: 32 characters from letters, digits and all ASCII
    /// punctuation.
    pub fn vendor_default() -> Self {
        Self {
            symbols: ASCII_PUNCTUATION.to_owned(),
            ..Self::default()
        }
    }

    /// The character classes left after exclusions, each as a list of characters.
    fn classes(&self) -> Vec<Vec<char>> {
        let keep = |set: &str| {
            set.chars()
                .filter(|c| !self.exclude.contains(*c))
                .collect::<Vec<_>>()
        };
        let mut classes = Vec::new();
        for (on, set) in [
            (self.lowercase, LOWER),
            (self.uppercase, UPPER),
            (self.digits, DIGITS),
        ] {
            if on {
                classes.push(keep(set));
            }
        }
        if !self.symbols.is_empty() {
            classes.push(keep(&self.symbols));
        }
        classes
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        const WHAT: &str = "password policy";
        if !(8..=128).contains(&self.length) {
            return Err(ValidationError::new(
                WHAT,
                format!("length {} is outside 8 to 128", self.length),
            ));
        }
        if let Some(c) = self.symbols.chars().find(|c| !ASCII_PUNCTUATION.contains(*c)) {
            return Err(ValidationError::new(
                WHAT,
                format!("symbol {c:?} is not ASCII punctuation"),
            ));
        }
        let classes = self.classes();
        if classes.iter().all(Vec::is_empty) {
            return Err(ValidationError::new(WHAT, "excludes every character"));
        }
        if self.require_each_class {
            if classes.iter().any(Vec::is_empty) {
                return Err(ValidationError::new(
                    WHAT,
                    "a required character class has every character excluded",
                ));
            }
            if classes.len() > self.length {
                return Err(ValidationError::new(
                    WHAT,
                    "length is shorter than the number of required classes",
                ));
            }
        }
        Ok(())
    }

    /// Whether a password satisfies this policy (used to re-check every generated password).
    pub fn accepts(&self, pw: &str) -> bool {
        let classes = self.classes();
        pw.chars().count() == self.length
            && pw.chars().all(|c| classes.iter().any(|cl| cl.contains(&c)))
            && (!self.require_each_class || classes.iter().all(|cl| pw.chars().any(|c| cl.contains(&c))))
    }
}

/// Generates a password that satisfies `policy`, from the thread-local CSPRNG seeded by the OS.
pub fn generate_password(policy: &PasswordPolicy) -> Result<Secret, ValidationError> {
    policy.validate()?;
    let classes = policy.classes();
    let universe: Vec<char> = classes.iter().flatten().copied().collect();
    let mut rng = rand::rng();
    let mut chars: Vec<char> = Vec::with_capacity(policy.length);
    if policy.require_each_class {
        for class in &classes {
            chars.push(class[rng.random_range(0..class.len())]);
        }
    }
    while chars.len() < policy.length {
        chars.push(universe[rng.random_range(0..universe.len())]);
    }
    chars.shuffle(&mut rng);
    let pw: String = chars.iter().collect();
    chars.iter_mut().for_each(|c| *c = '\0');
    debug_assert!(policy.accepts(&pw));
    Ok(Secret::from(pw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_32_url_safe_chars() {
        let p = PasswordPolicy::default();
        for _ in 0..200 {
            let pw = generate_password(&p).unwrap();
            let s = pw.expose_str().unwrap();
            assert_eq!(s.len(), 32);
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "{s}"
            );
        }
        let a = generate_password(&p).unwrap();
        let b = generate_password(&p).unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn every_output_passes_its_policy() {
        let policies = [
            PasswordPolicy {
                length: 8,
                require_each_class: true,
                ..PasswordPolicy::vendor_default()
            },
            PasswordPolicy {
                length: 128,
                exclude: "0O1lI".into(),
                ..PasswordPolicy::vendor_default()
            },
            PasswordPolicy {
                lowercase: false,
                uppercase: false,
                symbols: String::new(),
                length: 12,
                ..PasswordPolicy::default()
            },
            PasswordPolicy {
                symbols: "!@#$%^&*()_+-=".into(),
                require_each_class: true,
                ..Default::default()
            },
        ];
        for p in &policies {
            for _ in 0..300 {
                let pw = generate_password(p).unwrap();
                assert!(p.accepts(pw.expose_str().unwrap()), "{p:?}");
                assert!(!pw.expose_str().unwrap().chars().any(|c| p.exclude.contains(c)));
            }
        }
    }

    #[test]
    fn rejects_impossible_policies() {
        let too_short = PasswordPolicy {
            length: 7,
            ..Default::default()
        };
        assert!(
            generate_password(&too_short)
                .unwrap_err()
                .reason
                .contains("outside 8 to 128")
        );
        let nothing = PasswordPolicy {
            lowercase: false,
            uppercase: false,
            digits: false,
            symbols: String::new(),
            ..Default::default()
        };
        assert!(
            generate_password(&nothing)
                .unwrap_err()
                .reason
                .contains("excludes every character")
        );
        let bad_symbol = PasswordPolicy {
            symbols: "é".into(),
            ..Default::default()
        };
        assert!(generate_password(&bad_symbol).is_err());
        let all_digits_excluded = PasswordPolicy {
            exclude: DIGITS.into(),
            require_each_class: true,
            ..Default::default()
        };
        assert!(generate_password(&all_digits_excluded).is_err());
    }
}
