//! Names, labels and limits, with the vendor's validation rules.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// A secret value may hold at most this many bytes (the vendor's limit on `SecretData`).
pub const MAX_VALUE_BYTES: usize = 30_720;
/// At most this many versions are kept per secret; the oldest unlabelled one is dropped first.
pub const MAX_VERSIONS_PER_SECRET: usize = 10;
/// At most this many distinct stage labels may exist on one secret.
pub const MAX_STAGES_PER_SECRET: usize = 8;
/// At most this many tags per secret.
pub const MAX_TAGS: usize = 20;

/// A secret name is at most this many characters (the vendor's limit).
pub const MAX_NAME_CHARS: usize = 192;
const MAX_VERSION_ID_CHARS: usize = 64;
const MAX_STAGE_CHARS: usize = 64;
const MAX_TAG_CHARS: usize = 128;

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $validate:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: impl Into<String>) -> Result<Self, ValidationError> {
                let s = s.into();
                $validate(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype!(
    /// A secret's name: 1–192 characters of `[A-Za-z0-9_/+=.@-]`, unique in the store.
    SecretName,
    validate_secret_name
);
string_newtype!(
    /// A version id: 1–64 characters, unique within its secret, no whitespace or control characters.
    VersionId,
    validate_version_id
);
string_newtype!(
    /// A stage label such as `ACSCurrent`, `ACSPrevious`, `ACSPending` or a custom label.
    StageLabel,
    validate_stage
);

impl VersionId {
    /// The id of a secret's first version when none is given: `v1`, the vendor console's default for
    /// "Initial version". Versions made by rotation get ids of their own.
    pub fn initial() -> Self {
        Self("v1".to_owned())
    }
}

fn validate_secret_name(s: &str) -> Result<(), ValidationError> {
    const WHAT: &str = "secret name";
    if s.is_empty() {
        return Err(ValidationError::new(WHAT, "must not be empty"));
    }
    let n = s.chars().count();
    if n > MAX_NAME_CHARS {
        return Err(ValidationError::new(
            WHAT,
            format!("is {n} characters long; the limit is {MAX_NAME_CHARS}"),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_/+=.@-".contains(*c)))
    {
        return Err(ValidationError::new(
            WHAT,
            format!("character {c:?} is not allowed; use letters, digits and _ / + = . @ -"),
        ));
    }
    Ok(())
}

fn validate_version_id(s: &str) -> Result<(), ValidationError> {
    const WHAT: &str = "version id";
    if s.is_empty() {
        return Err(ValidationError::new(WHAT, "must not be empty"));
    }
    let n = s.chars().count();
    if n > MAX_VERSION_ID_CHARS {
        return Err(ValidationError::new(
            WHAT,
            format!("is {n} characters long; the limit is {MAX_VERSION_ID_CHARS}"),
        ));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ValidationError::new(
            WHAT,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

fn validate_stage(s: &str) -> Result<(), ValidationError> {
    const WHAT: &str = "stage label";
    if s.is_empty() {
        return Err(ValidationError::new(WHAT, "must not be empty"));
    }
    let n = s.chars().count();
    if n > MAX_STAGE_CHARS {
        return Err(ValidationError::new(
            WHAT,
            format!("is {n} characters long; the limit is {MAX_STAGE_CHARS}"),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(*c)))
    {
        return Err(ValidationError::new(
            WHAT,
            format!("character {c:?} is not allowed; use letters, digits and _ . -"),
        ));
    }
    Ok(())
}

impl StageLabel {
    pub const CURRENT: &'static str = "ACSCurrent";
    pub const PREVIOUS: &'static str = "ACSPrevious";
    pub const PENDING: &'static str = "ACSPending";

    pub fn current() -> Self {
        Self(Self::CURRENT.to_owned())
    }
    pub fn previous() -> Self {
        Self(Self::PREVIOUS.to_owned())
    }
    pub fn pending() -> Self {
        Self(Self::PENDING.to_owned())
    }
    pub fn is_current(&self) -> bool {
        self.0 == Self::CURRENT
    }
    pub fn is_previous(&self) -> bool {
        self.0 == Self::PREVIOUS
    }
    /// `ACSCurrent` and `ACSPrevious` can only be moved, never removed.
    pub fn is_builtin(&self) -> bool {
        self.is_current() || self.is_previous()
    }
}

/// The secret types the vendor defines. Managed types have their value written by rotation only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretType {
    Generic,
    Rds,
    PolarDb,
    Redis,
    Ecs,
    RamCredentials,
}

impl SecretType {
    pub const ALL: [SecretType; 6] = [
        SecretType::Generic,
        SecretType::Rds,
        SecretType::PolarDb,
        SecretType::Redis,
        SecretType::Ecs,
        SecretType::RamCredentials,
    ];

    /// The vendor's wire spelling, as returned by `DescribeSecret`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretType::Generic => "Generic",
            SecretType::Rds => "Rds",
            SecretType::PolarDb => "PolarDB",
            SecretType::Redis => "Redis",
            SecretType::Ecs => "ECS",
            SecretType::RamCredentials => "RAMCredentials",
        }
    }

    /// Managed secrets are written by rotation; applications may read only `ACSCurrent`/`ACSPrevious`.
    pub fn is_managed(self) -> bool {
        self != SecretType::Generic
    }

    /// The vendor's rule for the name of a secret of this type created through its API: ECS names start
    /// with `acs/ecs/`, RAMCredentials names are `acs/ram/user/<user>` (see [`ram_secret_name`]), and every
    /// other type stays out of the vendor's `acs/` namespace. The reference states the last rule for Generic,
    /// Rds and Redis; PolarDB is not mentioned and gets it too, since `acs/` holds only generated names.
    /// `Err` carries the reason, in the words an API error or a `rotd check` note uses.
    pub fn check_vendor_name(self, name: &str) -> Result<(), String> {
        match self {
            SecretType::Ecs if !name.starts_with(ECS_NAME_PREFIX) => {
                Err(format!("an ECS secret's name must start with {ECS_NAME_PREFIX}"))
            }
            SecretType::RamCredentials if !name.starts_with(RAM_NAME_PREFIX) => Err(format!(
                "a RAMCredentials secret's name is {RAM_NAME_PREFIX}<RAM user name>"
            )),
            SecretType::Generic | SecretType::Rds | SecretType::PolarDb | SecretType::Redis
                if name.starts_with("acs/") =>
            {
                Err(format!("a {self} secret's name must not start with acs/"))
            }
            _ => Ok(()),
        }
    }
}

const ECS_NAME_PREFIX: &str = "acs/ecs/";
const RAM_NAME_PREFIX: &str = "acs/ram/user/";

/// The name the vendor gives a RAMCredentials secret created with `SecretName=$Auto`:
/// `acs/ram/user/<RAM user name>`.
pub fn ram_secret_name(user_name: &str) -> Result<SecretName, ValidationError> {
    SecretName::parse(format!("{RAM_NAME_PREFIX}{user_name}"))
}

impl fmt::Display for SecretType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecretType {
    type Err = ValidationError;
    /// Accepts the vendor's spellings case-insensitively (`Rds` and the ListSecrets filter's `RDS`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecretType::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            ValidationError::new(
                "secret type",
                format!("unknown type {s:?}; expected one of Generic, Rds, PolarDB, Redis, ECS, RAMCredentials"),
            )
        })
    }
}

impl Serialize for SecretType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SecretType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether a version's value is text (UTF-8) or arbitrary bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Text,
    Binary,
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Text => "text",
            DataType::Binary => "binary",
        }
    }

    /// Checks a value against the data type and the size limit. The error never contains the value.
    pub fn validate_value(self, value: &crate::Secret) -> Result<(), ValidationError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(ValidationError::new(
                "secret value",
                format!("is {} bytes; the limit is {MAX_VALUE_BYTES}", value.len()),
            ));
        }
        if self == DataType::Text && value.expose_str().is_none() {
            return Err(ValidationError::new(
                "secret value",
                "is not valid UTF-8; store it as binary",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataType {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(DataType::Text),
            "binary" => Ok(DataType::Binary),
            _ => Err(ValidationError::new(
                "secret data type",
                format!("{s:?} is not one of text, binary"),
            )),
        }
    }
}

/// One validated tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl Tag {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Result<Self, ValidationError> {
        let (key, value) = (key.into(), value.into());
        check_tag_text("tag key", &key)?;
        if key.is_empty() {
            return Err(ValidationError::new("tag key", "must not be empty"));
        }
        let lower = key.to_ascii_lowercase();
        if lower.starts_with("aliyun") || lower.starts_with("acs:") {
            return Err(ValidationError::new(
                "tag key",
                format!("{key:?} must not start with aliyun or acs:"),
            ));
        }
        check_tag_text("tag value", &value)?;
        Ok(Self { key, value })
    }
}

fn check_tag_text(what: &'static str, s: &str) -> Result<(), ValidationError> {
    let n = s.chars().count();
    if n > MAX_TAG_CHARS {
        return Err(ValidationError::new(
            what,
            format!("is {n} characters long; the limit is {MAX_TAG_CHARS}"),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_alphanumeric() || "/\\_-.+=:@ ".contains(*c)))
    {
        return Err(ValidationError::new(
            what,
            format!("character {c:?} is not allowed; use letters, digits, space and / \\ _ - . + = : @"),
        ));
    }
    Ok(())
}

/// A secret's tags: at most [`MAX_TAGS`], keys unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(BTreeMap<String, String>);

impl Tags {
    pub fn new(tags: impl IntoIterator<Item = Tag>) -> Result<Self, ValidationError> {
        let mut map = BTreeMap::new();
        for t in tags {
            if map.insert(t.key.clone(), t.value).is_some() {
                return Err(ValidationError::new(
                    "tags",
                    format!("key {:?} appears twice", t.key),
                ));
            }
        }
        Self::check_count(map.len())?;
        Ok(Self(map))
    }

    fn check_count(n: usize) -> Result<(), ValidationError> {
        if n > MAX_TAGS {
            return Err(ValidationError::new(
                "tags",
                format!("{n} tags given; the limit is {MAX_TAGS}"),
            ));
        }
        Ok(())
    }

    /// Adds or replaces tags, keeping the limit.
    pub fn merge(&mut self, tags: impl IntoIterator<Item = Tag>) -> Result<(), ValidationError> {
        let mut next = self.0.clone();
        for t in tags {
            next.insert(t.key, t.value);
        }
        Self::check_count(next.len())?;
        self.0 = next;
        Ok(())
    }

    pub fn remove(&mut self, key: &str) -> bool {
        self.0.remove(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for ok in ["a", "app/db-password", "x_y+z=w.v@u-1", &"n".repeat(192)] {
            SecretName::parse(ok).expect(ok);
        }
        let e = SecretName::parse("").unwrap_err();
        assert_eq!(e.to_string(), "secret name: must not be empty");
        let e = SecretName::parse("n".repeat(193)).unwrap_err();
        assert!(
            e.to_string().contains("193 characters long; the limit is 192"),
            "{e}"
        );
        for bad in ["has space", "semi;colon", "quote'", "é", "tab\t"] {
            let e = SecretName::parse(bad).unwrap_err();
            assert!(e.reason.contains("is not allowed"), "{bad}: {e}");
        }
    }

    #[test]
    fn vendor_name_rules() {
        use SecretType::*;
        assert_eq!(VersionId::initial().as_str(), "v1");
        for (kind, name) in [
            (Generic, "app/x"),
            (Rds, "db/app"),
            (PolarDb, "db/p"),
            (Redis, "cache"),
            (Ecs, "acs/ecs/web-1"),
            (RamCredentials, "acs/ram/user/app"),
        ] {
            kind.check_vendor_name(name).expect(name);
        }
        for (kind, name, says) in [
            (Generic, "acs/x", "must not start with acs/"),
            (Rds, "acs/ram/user/x", "must not start with acs/"),
            (Redis, "acs/ecs/x", "must not start with acs/"),
            (PolarDb, "acs/p", "must not start with acs/"),
            (Ecs, "web-1", "must start with acs/ecs/"),
            (Ecs, "acs/ecs", "must start with acs/ecs/"),
            (RamCredentials, "ram/app", "acs/ram/user/<RAM user name>"),
        ] {
            let e = kind.check_vendor_name(name).unwrap_err();
            assert!(e.contains(says), "{kind} {name}: {e}");
        }
        assert_eq!(
            ram_secret_name("app-reader").unwrap().as_str(),
            "acs/ram/user/app-reader"
        );
        assert!(ram_secret_name("has space").is_err());
    }

    #[test]
    fn version_ids() {
        VersionId::parse("v1").unwrap();
        VersionId::parse("0".repeat(64)).unwrap();
        assert!(
            VersionId::parse("0".repeat(65))
                .unwrap_err()
                .reason
                .contains("limit is 64")
        );
        assert!(VersionId::parse("").is_err());
        assert!(VersionId::parse("a b").is_err());
        assert!(VersionId::parse("a\nb").is_err());
    }

    #[test]
    fn stage_labels() {
        assert!(StageLabel::parse("ACSCurrent").unwrap().is_current());
        assert!(StageLabel::parse("ACSPrevious").unwrap().is_builtin());
        assert!(!StageLabel::parse("MyStage").unwrap().is_builtin());
        assert!(StageLabel::parse("my stage").is_err());
        assert!(StageLabel::parse("").is_err());
        assert!(StageLabel::parse("s".repeat(65)).is_err());
    }

    #[test]
    fn secret_types_parse_case_insensitively() {
        assert_eq!("Rds".parse::<SecretType>().unwrap(), SecretType::Rds);
        assert_eq!("RDS".parse::<SecretType>().unwrap(), SecretType::Rds);
        assert_eq!("polardb".parse::<SecretType>().unwrap(), SecretType::PolarDb);
        assert_eq!("ECS".parse::<SecretType>().unwrap().as_str(), "ECS");
        assert!(
            "Oracle"
                .parse::<SecretType>()
                .unwrap_err()
                .reason
                .contains("expected one of")
        );
        for t in SecretType::ALL {
            assert_eq!(t.as_str().parse::<SecretType>().unwrap(), t);
        }
        assert!(!SecretType::Generic.is_managed());
        assert!(SecretType::RamCredentials.is_managed());
    }

    #[test]
    fn tags() {
        Tag::new("team", "pay ments/x\\y_z-1.2+3=4:5@6").unwrap();
        Tag::new("键", "值").unwrap();
        assert!(Tag::new("", "v").is_err());
        assert!(
            Tag::new("aliyunX", "v")
                .unwrap_err()
                .reason
                .contains("must not start")
        );
        assert!(Tag::new("ACS:foo", "v").is_err());
        assert!(Tag::new("k", "bad;value").is_err());
        assert!(Tag::new("k".repeat(129), "v").is_err());
        Tag::new("k".repeat(128), "v".repeat(128)).unwrap();
        let many: Vec<Tag> = (0..21).map(|i| Tag::new(format!("k{i}"), "v").unwrap()).collect();
        assert!(Tags::new(many[..20].to_vec()).is_ok());
        assert!(
            Tags::new(many.clone())
                .unwrap_err()
                .reason
                .contains("limit is 20")
        );
        let dup = vec![Tag::new("a", "1").unwrap(), Tag::new("a", "2").unwrap()];
        assert!(Tags::new(dup).unwrap_err().reason.contains("twice"));
        let mut t = Tags::new(many[..20].to_vec()).unwrap();
        assert!(t.merge([many[20].clone()]).is_err());
        assert_eq!(t.len(), 20, "a rejected merge changes nothing");
        t.merge([Tag::new("k0", "new").unwrap()]).unwrap();
        assert_eq!(t.get("k0"), Some("new"));
    }

    #[test]
    fn values() {
        let ok = crate::Secret::new(vec![b'a'; MAX_VALUE_BYTES]);
        DataType::Text.validate_value(&ok).unwrap();
        let big = crate::Secret::new(vec![b'a'; MAX_VALUE_BYTES + 1]);
        let e = DataType::Binary.validate_value(&big).unwrap_err();
        assert_eq!(e.to_string(), "secret value: is 30721 bytes; the limit is 30720");
        let bin = crate::Secret::new(vec![0xff, 0xfe]);
        assert!(DataType::Text.validate_value(&bin).is_err());
        DataType::Binary.validate_value(&bin).unwrap();
    }
}
