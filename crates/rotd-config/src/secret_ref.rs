//! Secret references: how secret material enters rotd without ever being written into a TOML file.

use std::fmt;
use std::path::{Path, PathBuf};

use rotd_core::SecretName;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_spanned::Spanned;

use crate::error::{Diag, inline_secret_message};

/// Where a piece of secret material lives. The configuration only ever names it; the bytes are read
/// by [`crate::read_material`] when the daemon needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A file readable only by its owner. Always absolute after loading.
    File(PathBuf),
    /// A systemd credential, read from `$CREDENTIALS_DIRECTORY/<name>` (`LoadCredential=`).
    Credential(String),
    /// Another rotd secret's `ACSCurrent` value, or one field of it when the value is a JSON object.
    Secret { name: SecretName, field: Option<String> },
}

impl fmt::Display for SecretRef {
    /// A description for error messages and `rotd plan`; it names where the material is, never what.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::File(p) => write!(f, "file {}", p.display()),
            SecretRef::Credential(c) => write!(f, "credential {c}"),
            SecretRef::Secret {
                name,
                field: Some(field),
            } => write!(f, "secret {name} field {field}"),
            SecretRef::Secret { name, field: None } => write!(f, "secret {name}"),
        }
    }
}

/// The raw inline table. It has its own `Deserialize` so that a plain string, number or array in a
/// secret position is rejected with the "never inline" rule and without echoing what was typed.
#[derive(Debug)]
pub(crate) struct RawSecretRef {
    file: Option<Spanned<String>>,
    credential: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    field: Option<Spanned<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretRefFields {
    file: Option<Spanned<String>>,
    credential: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    field: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawSecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RefVisitor;

        fn inline<E: de::Error>() -> E {
            E::custom(inline_secret_message())
        }

        impl<'de> Visitor<'de> for RefVisitor {
            type Value = RawSecretRef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret reference table")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawSecretRef, A::Error> {
                let raw = RawSecretRefFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawSecretRef {
                    file: raw.file,
                    credential: raw.credential,
                    secret: raw.secret,
                    field: raw.field,
                })
            }

            // Every scalar is treated as a pasted secret. The default implementations would put the
            // value into the error message.
            fn visit_str<E: de::Error>(self, _: &str) -> Result<RawSecretRef, E> {
                Err(inline())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawSecretRef, E> {
                Err(inline())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawSecretRef, E> {
                Err(inline())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawSecretRef, E> {
                Err(inline())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawSecretRef, E> {
                Err(inline())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<RawSecretRef, A::Error> {
                Err(inline())
            }
        }

        d.deserialize_any(RefVisitor)
    }
}

/// Checks a raw reference. Relative files resolve against `base` (the directory of rotd.toml).
pub(crate) fn validate_ref(
    d: &mut Diag<'_>,
    raw: &Spanned<RawSecretRef>,
    key: &str,
    base: &Path,
) -> Option<SecretRef> {
    let r = raw.get_ref();
    let given = [r.file.is_some(), r.credential.is_some(), r.secret.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if given != 1 {
        return d.at(
            raw,
            key,
            "set exactly one of file, credential or secret in a secret reference",
        );
    }
    if let Some(field) = &r.field
        && r.secret.is_none()
    {
        return d.at(
            field,
            &format!("{key}.field"),
            "field is only allowed with a secret reference",
        );
    }
    if let Some(file) = &r.file {
        let key = format!("{key}.file");
        if file.get_ref().is_empty() {
            return d.at(file, &key, "must not be empty");
        }
        return Some(SecretRef::File(base.join(file.get_ref())));
    }
    if let Some(cred) = &r.credential {
        let key = format!("{key}.credential");
        return match check_credential_name(cred.get_ref()) {
            Ok(()) => Some(SecretRef::Credential(cred.get_ref().clone())),
            Err(m) => d.at(cred, &key, m),
        };
    }
    let secret = r.secret.as_ref()?;
    let name = match SecretName::parse(secret.get_ref().as_str()) {
        Ok(n) => n,
        Err(e) => return d.at(secret, &format!("{key}.secret"), e.to_string()),
    };
    let field = match &r.field {
        Some(f) if f.get_ref().is_empty() => {
            return d.at(f, &format!("{key}.field"), "must not be empty");
        }
        Some(f) => Some(f.get_ref().clone()),
        None => None,
    };
    Some(SecretRef::Secret { name, field })
}

/// A systemd credential name is a plain file name inside `$CREDENTIALS_DIRECTORY`.
pub(crate) fn check_credential_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("credential name must not be empty".to_owned());
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err("credential name must be a plain file name without '/'".to_owned());
    }
    if name.len() > 255 {
        return Err("credential name is longer than 255 bytes".to_owned());
    }
    Ok(())
}
