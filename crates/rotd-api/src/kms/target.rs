//! What a request operates on: the secret name(s) resolved once from its parameters, after the signature
//! is checked and before the request is audited or runs. The action receives these names and the audit
//! record shows these names, so the two cannot disagree: a record never names a raw parameter, an ARN's
//! padding, or a `SecretName` that a BatchGetSecretValue carries as a decoy.
//!
//! A `SecretName` parameter is a name (1–192 characters, [`SecretName`]) or an ARN
//! `acs:kms:<region>:<account>:secret/<name>`. An ARN's region must be the daemon's region. Its account
//! must be the configured account; when none is configured (the default: rotd serves one account), any
//! account of 1–20 digits is accepted, so ARNs copied from the vendor's console keep working. An ARN of
//! another region or account answers `Forbidden.ResourceNotFound` (there is no such secret here); an ARN
//! that is not well formed, or longer than [`MAX_SECRET_PARAM_CHARS`], answers `InvalidParameter`. Nothing
//! is truncated.

use std::collections::BTreeMap;

use rotd_core::{SecretName, SecretType, VersionId};
use serde_json::Value;

use super::{ApiConfig, ApiError, Params};

/// The most secrets one BatchGetSecretValue may name.
pub(crate) const MAX_BATCH_SECRETS: usize = 100;

/// Longest region id accepted in an ARN (the vendor's are like `cn-hangzhou`, `ap-southeast-1`).
const MAX_REGION_CHARS: usize = 64;

/// Longest account id accepted in an ARN (the vendor's are 16 digits).
const MAX_ACCOUNT_DIGITS: usize = 20;

/// Longest `SecretName` parameter: an ARN with the longest region, account and name.
pub const MAX_SECRET_PARAM_CHARS: usize = "acs:kms:".len()
    + MAX_REGION_CHARS
    + 1
    + MAX_ACCOUNT_DIGITS
    + ":secret/".len()
    + rotd_core::MAX_NAME_CHARS;

/// What one request operates on.
#[derive(Debug)]
pub(crate) enum Target {
    /// ListSecrets, GetRandomPassword, and actions that are refused anyway.
    Nothing,
    /// One secret; `version` is the version id the action creates or requests, when it takes one.
    Secret {
        name: SecretName,
        version: Option<VersionId>,
    },
    /// A BatchGetSecretValue: one entry per element of `SecretsList`, in order.
    Batch(Vec<BatchEntry>),
}

/// One element of a BatchGetSecretValue's `SecretsList`.
#[derive(Debug)]
pub(crate) struct BatchEntry {
    pub name: SecretName,
    /// The entry's own read parameters (`VersionId`, `VersionStage`, `FetchExtendedConfig`).
    pub params: Params,
}

impl Target {
    /// Every secret name the request operates on, in order.
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::Nothing => Vec::new(),
            Self::Secret { name, .. } => vec![name.to_string()],
            Self::Batch(entries) => entries.iter().map(|e| e.name.to_string()).collect(),
        }
    }

    pub fn version(&self) -> Option<&VersionId> {
        match self {
            Self::Secret { version, .. } => version.as_ref(),
            Self::Nothing | Self::Batch(_) => None,
        }
    }
}

/// Resolves what `action` operates on from its parameters. Unknown actions operate on nothing (dispatch
/// refuses them).
pub(crate) fn resolve(config: &ApiConfig, action: &str, params: &Params) -> Result<Target, ApiError> {
    let version = |required: bool| -> Result<Option<VersionId>, ApiError> {
        match params.get("VersionId").filter(|v| !v.is_empty()) {
            Some(v) => Ok(Some(VersionId::parse(v)?)),
            None if required => Err(ApiError::MissingParameter("VersionId")),
            None => Ok(None),
        }
    };
    let one = |version: Option<VersionId>| -> Result<Target, ApiError> {
        Ok(Target::Secret {
            name: secret_param(config, params.required("SecretName")?)?,
            version,
        })
    };
    match action {
        "GetSecretValue" => {
            let name = secret_param(config, params.required("SecretName")?)?;
            Ok(Target::Secret {
                name,
                version: version(false)?,
            })
        }
        "PutSecretValue" | "RotateSecret" => {
            let name = secret_param(config, params.required("SecretName")?)?;
            Ok(Target::Secret {
                name,
                version: version(true)?,
            })
        }
        "DescribeSecret"
        | "ListSecretVersionIds"
        | "UpdateSecret"
        | "UpdateSecretVersionStage"
        | "UpdateSecretRotationPolicy"
        | "DeleteSecret"
        | "RestoreSecret"
        | "SetSecretPolicy"
        | "GetSecretPolicy" => one(None),
        "TagResource" | "UntagResource" => {
            if params.get("KeyId").is_some() || params.get("CertificateId").is_some() {
                return Err(ApiError::InvalidParameter(
                    "only SecretName resources are supported".to_owned(),
                ));
            }
            one(None)
        }
        "CreateSecret" => {
            let kind = match params.get("SecretType").filter(|s| !s.is_empty()) {
                None => SecretType::Generic,
                Some(s) => s.parse::<SecretType>()?,
            };
            Ok(Target::Secret {
                name: create_secret_name(params, kind)?,
                version: version(true)?,
            })
        }
        "BatchGetSecretValue" => batch(config, params),
        _ => Ok(Target::Nothing),
    }
}

/// The secret a `SecretName` parameter names: a name, or an ARN of this daemon's region and account.
pub(crate) fn secret_param(config: &ApiConfig, raw: &str) -> Result<SecretName, ApiError> {
    let chars = raw.chars().count();
    if chars > MAX_SECRET_PARAM_CHARS {
        return Err(ApiError::InvalidParameter(format!(
            "SecretName is {chars} characters long; the limit is {MAX_SECRET_PARAM_CHARS} for an ARN and {} for a name",
            rotd_core::MAX_NAME_CHARS
        )));
    }
    let Some(rest) = raw.strip_prefix("acs:kms:") else {
        return Ok(SecretName::parse(raw)?);
    };
    let bad = || {
        ApiError::InvalidParameter(
            "SecretName is not a valid secret ARN (acs:kms:<region>:<account>:secret/<name>)".to_owned(),
        )
    };
    let (region, rest) = rest.split_once(':').ok_or_else(bad)?;
    let (account, rest) = rest.split_once(':').ok_or_else(bad)?;
    let name = rest.strip_prefix("secret/").ok_or_else(bad)?;
    let region_ok = !region.is_empty()
        && region.len() <= MAX_REGION_CHARS
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let account_ok = !account.is_empty()
        && account.len() <= MAX_ACCOUNT_DIGITS
        && account.bytes().all(|b| b.is_ascii_digit());
    if !region_ok || !account_ok {
        return Err(bad());
    }
    let name = SecretName::parse(name)?;
    if region != config.region || !config.accepts_account(account) {
        return Err(ApiError::NotFound);
    }
    Ok(name)
}

/// CreateSecret's name under the vendor's rules: a RAMCredentials secret is created with `SecretName=$Auto`
/// and named after `ExtendedConfig.UserName`; other types give a name that keeps their type's rule
/// (`SecretType::check_vendor_name`). Declared files are not held to these rules. CreateSecret takes a
/// name, never an ARN, as the vendor's does.
fn create_secret_name(params: &Params, kind: SecretType) -> Result<SecretName, ApiError> {
    let raw = params.required("SecretName")?;
    if kind != SecretType::RamCredentials {
        let name = SecretName::parse(raw)?;
        kind.check_vendor_name(name.as_str())
            .map_err(|e| ApiError::InvalidParameter(format!("SecretName: {e}")))?;
        return Ok(name);
    }
    if raw != "$Auto" {
        return Err(ApiError::InvalidParameter(
            "SecretName of a RAMCredentials secret must be $Auto; it is named acs/ram/user/<UserName>"
                .to_owned(),
        ));
    }
    let user = params
        .get("ExtendedConfig")
        .and_then(|raw| serde_json::from_str::<Value>(raw).ok())
        .and_then(|v| v.get("UserName").and_then(Value::as_str).map(str::to_owned))
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ApiError::InvalidParameter("ExtendedConfig.UserName is required for RAMCredentials".to_owned())
        })?;
    Ok(rotd_core::ram_secret_name(&user)?)
}

/// `SecretsList` is JSON text: an array of secret names (names or ARNs), or, as SDK 3.x sends it, of objects
/// `{"SecretName","VersionId","VersionStage","FetchExtendedConfig"}`. Every entry must resolve to a secret
/// (a malformed, over-long or foreign name refuses the whole batch), so the audit record can name every
/// secret the batch reads. A `SecretName` parameter beside `SecretsList` is not part of the batch.
fn batch(config: &ApiConfig, params: &Params) -> Result<Target, ApiError> {
    let raw = params.required("SecretsList")?;
    let bad = || ApiError::InvalidParameter("SecretsList must be a JSON array of secret names".to_owned());
    let list: Vec<Value> = serde_json::from_str(raw).map_err(|_| bad())?;
    if list.is_empty() || list.len() > MAX_BATCH_SECRETS {
        return Err(ApiError::InvalidParameter(format!(
            "SecretsList must name 1 to {MAX_BATCH_SECRETS} secrets"
        )));
    }
    let mut entries = Vec::with_capacity(list.len());
    for item in &list {
        let mut params = BTreeMap::new();
        match item {
            Value::String(name) => {
                params.insert("SecretName".to_owned(), name.clone());
            }
            Value::Object(o) => {
                for key in ["SecretName", "VersionId", "VersionStage", "FetchExtendedConfig"] {
                    match o.get(key) {
                        None | Some(Value::Null) => {}
                        Some(Value::String(v)) => {
                            params.insert(key.to_owned(), v.clone());
                        }
                        Some(Value::Bool(b)) => {
                            params.insert(key.to_owned(), b.to_string());
                        }
                        Some(_) => return Err(bad()),
                    }
                }
            }
            _ => return Err(bad()),
        }
        let params = Params(params);
        let name = secret_param(config, params.required("SecretName")?)?;
        entries.push(BatchEntry { name, params });
    }
    Ok(Target::Batch(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(account: Option<&str>) -> ApiConfig {
        ApiConfig {
            account: account.map(str::to_owned),
            ..ApiConfig::default()
        }
    }

    #[test]
    fn arns_resolve_to_their_name_only_in_this_region_and_account() {
        let none = config(None);
        let ok = |c: &ApiConfig, raw: &str| secret_param(c, raw).map(|n| n.to_string());
        assert_eq!(ok(&none, "prod/db").unwrap(), "prod/db");
        assert_eq!(
            ok(&none, "acs:kms:cn-hangzhou:1:secret/prod/db").unwrap(),
            "prod/db"
        );
        assert_eq!(
            ok(&none, "acs:kms:cn-hangzhou:1234567890123456:secret/prod/db").unwrap(),
            "prod/db"
        );
        assert_eq!(
            ok(&none, "acs:kms:eu-central-1:1:secret/prod/db"),
            Err(ApiError::NotFound)
        );
        let configured = config(Some("1234"));
        assert_eq!(
            ok(&configured, "acs:kms:cn-hangzhou:1234:secret/prod/db").unwrap(),
            "prod/db"
        );
        assert_eq!(
            ok(&configured, "acs:kms:cn-hangzhou:1:secret/prod/db"),
            Err(ApiError::NotFound)
        );
        for bad in [
            format!("acs:kms:{}:secret/prod/db", "x".repeat(300)),
            format!("acs:kms:{}:1:secret/prod/db", "a".repeat(65)),
            "acs:kms:cn-hangzhou:1:secret/".to_owned(),
            "acs:kms:cn-hangzhou:12a:secret/prod/db".to_owned(),
            "acs:kms:cn-hangzhou:123456789012345678901:secret/prod/db".to_owned(),
            "acs:kms:CN:1:secret/prod/db".to_owned(),
            "acs:kms::1:secret/prod/db".to_owned(),
            "acs:kms:cn-hangzhou:1:key/prod/db".to_owned(),
            "acs:kms:cn-hangzhou:1:secret/a:b".to_owned(),
            format!("acs:kms:cn-hangzhou:1:secret/{}", "n".repeat(193)),
            "n".repeat(193),
        ] {
            assert!(
                matches!(secret_param(&none, &bad), Err(ApiError::InvalidParameter(_))),
                "{bad}"
            );
        }
        // The longest valid ARN fits the limit exactly.
        let longest = format!(
            "acs:kms:{}:{}:secret/{}",
            "r".repeat(MAX_REGION_CHARS),
            "1".repeat(MAX_ACCOUNT_DIGITS),
            "n".repeat(rotd_core::MAX_NAME_CHARS)
        );
        assert_eq!(longest.len(), MAX_SECRET_PARAM_CHARS);
        assert_eq!(secret_param(&none, &longest), Err(ApiError::NotFound));
    }
}
