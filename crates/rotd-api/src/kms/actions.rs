//! The Secrets Manager actions: parameters in, vendor-shaped JSON out. Each action authorizes itself
//! (it knows which secret it touches) before reading or writing anything.

use chrono::{DateTime, TimeDelta, Utc};
use rotd_aliyun::format_timestamp;
use rotd_core::{
    DataType, PasswordPolicy, RotationInterval, RotationPolicy, RotationSchedule, Secret, SecretName,
    SecretType, StageLabel, Tag, Tags, VersionId,
};
use rotd_store::{DeleteMode, NewSecret, NewVersion, SecretMeta, SecretUpdate, Selector};
use serde_json::{Map, Value, json};

use super::policy;
use super::target::{BatchEntry, Target};
use super::{ApiError, ApiState, Call};

type Out = Result<Map<String, Value>, ApiError>;

const MAX_POLICY_BYTES: usize = 32_768;
const MAX_EXTENDED_CONFIG_CHARS: usize = 1_024;
/// A secret's `Description`. The vendor documents no limit for secrets; this is its limit for a key's
/// Description (CreateKey: 0 to 8,192 characters).
const MAX_DESCRIPTION_CHARS: usize = 8_192;
/// GetRandomPassword's `ExcludeCharacters`. The vendor documents no limit; its character universe is 94
/// printable ASCII characters plus space, so 128 lists each of them with room to spare.
const MAX_EXCLUDE_CHARS: usize = 128;
const ROTATIONS_PER_HOUR: u64 = 50;
/// The document `GetSecretPolicy` returns for a secret without one: nothing granted beyond key policies.
const DEFAULT_POLICY: &str = r#"{"Version":"1","Statement":[]}"#;

/// Every action [`dispatch`] serves, in its order; the `action` label of the API's metrics takes its
/// values from this list only.
pub(crate) const ACTIONS: [&str; 18] = [
    "GetSecretValue",
    "BatchGetSecretValue",
    "DescribeSecret",
    "ListSecrets",
    "ListSecretVersionIds",
    "CreateSecret",
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "UpdateSecretRotationPolicy",
    "RotateSecret",
    "DeleteSecret",
    "RestoreSecret",
    "GetRandomPassword",
    "TagResource",
    "UntagResource",
    "SetSecretPolicy",
    "GetSecretPolicy",
];

pub(super) async fn dispatch(state: &ApiState, action: &str, call: Call, target: Target) -> Out {
    let (name, entries) = match target {
        Target::Nothing => (None, Vec::new()),
        Target::Secret { name, .. } => (Some(name), Vec::new()),
        Target::Batch(entries) => (None, entries),
    };
    // `resolve` gives every action below the target it needs; a mismatch is a bug, not an input.
    let one = move || name.ok_or(ApiError::Internal);
    match action {
        "GetSecretValue" => get_secret_value(state, call, one()?.to_string()).await,
        "BatchGetSecretValue" => batch_get_secret_value(state, call, entries).await,
        "DescribeSecret" => describe_secret(state, call, one()?.to_string()).await,
        "ListSecrets" => list_secrets(state, call).await,
        "ListSecretVersionIds" => list_versions(state, call, one()?.to_string()).await,
        "CreateSecret" => create_secret(state, call, one()?).await,
        "PutSecretValue" => put_secret_value(state, call, one()?.to_string()).await,
        "UpdateSecret" => update_secret(state, call, one()?.to_string()).await,
        "UpdateSecretVersionStage" => update_version_stage(state, call, one()?.to_string()).await,
        "UpdateSecretRotationPolicy" => update_rotation_policy(state, call, one()?.to_string()).await,
        "RotateSecret" => rotate_secret(state, call, one()?.to_string()).await,
        "DeleteSecret" => delete_secret(state, call, one()?.to_string()).await,
        "RestoreSecret" => restore_secret(state, call, one()?.to_string()).await,
        "GetRandomPassword" => get_random_password(call),
        "TagResource" => tag_resource(state, call, one()?.to_string(), true).await,
        "UntagResource" => tag_resource(state, call, one()?.to_string(), false).await,
        "SetSecretPolicy" => set_policy(state, call, one()?.to_string()).await,
        "GetSecretPolicy" => get_policy(state, call, one()?.to_string()).await,
        _ => Err(ApiError::InvalidParameter(
            "the specified Action is not supported".to_owned(),
        )),
    }
}

/// Authorizes `action` on `name` and returns the secret's metadata. The key policy is checked before the
/// store is consulted, so a key that may not touch a name cannot learn whether it exists.
async fn authorized(state: &ApiState, call: &Call, action: &str, name: &str) -> Result<SecretMeta, ApiError> {
    authorized_all(state, call, &[action], name).await
}

/// Authorizes every one of `actions` on `name` (each must be allowed, and none denied).
async fn authorized_all(
    state: &ApiState,
    call: &Call,
    actions: &[&str],
    name: &str,
) -> Result<SecretMeta, ApiError> {
    let key_ok = actions
        .iter()
        .all(|a| policy::key_allows(&call.key_policy, a, Some(name)));
    let meta = state.inner.store.describe(name).await;
    let meta = match meta {
        Ok(m) => m,
        Err(e) if key_ok => return Err(e.into()),
        Err(_) => return Err(ApiError::NoPermission),
    };
    let caller = caller(state, call);
    if actions
        .iter()
        .all(|a| policy::allowed(&caller, meta.policy.as_deref(), a, name))
    {
        Ok(meta)
    } else {
        Err(ApiError::NoPermission)
    }
}

fn caller<'a>(state: &'a ApiState, call: &'a Call) -> policy::Caller<'a> {
    policy::Caller {
        key_id: &call.key_id,
        key_policy: &call.key_policy,
        account: state.inner.config.account.as_deref(),
    }
}

fn arn(state: &ApiState, name: &str) -> String {
    let c = &state.inner.config;
    format!("acs:kms:{}:{}:secret/{}", c.region, c.arn_account(), name)
}

fn ts(t: DateTime<Utc>) -> Value {
    Value::String(format_timestamp(t))
}

fn stages_json(stages: &[StageLabel]) -> Value {
    json!({ "VersionStage": stages.iter().map(|s| s.as_str()).collect::<Vec<_>>() })
}

fn tags_json(tags: &Tags) -> Value {
    let list: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
        .collect();
    json!({ "Tag": list })
}

/// The rotation fields of a managed secret, as GetSecretValue and DescribeSecret return them.
fn rotation_fields(out: &mut Map<String, Value>, meta: &SecretMeta) {
    let enabled = meta.rotation.as_ref().is_some_and(|r| r.enabled);
    out.insert(
        "AutomaticRotation".into(),
        Value::String(if enabled { "Enabled" } else { "Disabled" }.into()),
    );
    if let Some(i) = meta.rotation.as_ref().and_then(RotationPolicy::interval) {
        out.insert("RotationInterval".into(), Value::String(i.to_wire()));
    }
    if enabled && let Some(t) = next_rotation(meta) {
        out.insert("NextRotationDate".into(), ts(t));
    }
    if let Some(t) = meta.last_rotation_at {
        out.insert("LastRotationDate".into(), ts(t));
    }
}

fn next_rotation(meta: &SecretMeta) -> Option<DateTime<Utc>> {
    meta.next_rotation_at.or_else(|| {
        let i = meta.rotation.as_ref()?.interval()?;
        let base = meta.last_rotation_at.unwrap_or(meta.created_at);
        Some(base + TimeDelta::seconds(i64::try_from(i.as_secs()).ok()?))
    })
}

fn value_text(v: &Secret) -> String {
    match v.expose_str() {
        Some(s) => s.to_owned(),
        None => base64_encode(v.expose_secret()),
    }
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

async fn get_secret_value(state: &ApiState, call: Call, name: String) -> Out {
    let meta = authorized(state, &call, "GetSecretValue", &name).await?;
    read_value(state, &call, name, meta).await
}

/// GetSecretValue's read, once the caller is authorized.
async fn read_value(state: &ApiState, call: &Call, name: String, meta: SecretMeta) -> Out {
    let stage = call.params.get("VersionStage").filter(|s| !s.is_empty());
    let version = call.params.get("VersionId").filter(|s| !s.is_empty());
    let selector = if meta.kind.is_managed() {
        // Managed secrets ignore VersionId and expose only the two built-in stages.
        let stage = StageLabel::parse(stage.unwrap_or(StageLabel::CURRENT))?;
        if !(stage.is_current() || stage.is_previous()) {
            return Err(ApiError::InvalidParameter(
                "VersionStage must be ACSCurrent or ACSPrevious for a managed secret".to_owned(),
            ));
        }
        Selector::Stage(stage)
    } else {
        match (version, stage) {
            (Some(v), Some(s)) => Selector::Both(VersionId::parse(v)?, StageLabel::parse(s)?),
            (Some(v), None) => Selector::Version(VersionId::parse(v)?),
            (None, Some(s)) => Selector::Stage(StageLabel::parse(s)?),
            (None, None) => Selector::current(),
        }
    };
    let fetch_extended = call.params.bool("FetchExtendedConfig", false)?;
    let v = state.inner.store.get_value(&name, &selector).await?;
    let mut out = Map::new();
    out.insert("SecretName".into(), Value::String(name));
    out.insert("VersionId".into(), Value::String(v.info.version_id.to_string()));
    out.insert("CreateTime".into(), ts(v.info.created_at));
    out.insert("SecretData".into(), Value::String(value_text(&v.value)));
    out.insert(
        "SecretDataType".into(),
        Value::String(v.info.data_type.as_str().to_owned()),
    );
    out.insert("VersionStages".into(), stages_json(&v.info.stages));
    out.insert("SecretType".into(), Value::String(meta.kind.as_str().to_owned()));
    if meta.kind.is_managed() {
        rotation_fields(&mut out, &meta);
        if fetch_extended {
            out.insert(
                "ExtendedConfig".into(),
                Value::String(meta.extended_config.clone().unwrap_or_default()),
            );
        }
    }
    Ok(out)
}

/// Each entry of the resolved `SecretsList` is read like a GetSecretValue; a failing entry goes to
/// `Errors` and does not fail the batch. An entry is authorized as both `BatchGetSecretValue` and
/// `GetSecretValue` on its secret (as AWS does for its BatchGetSecretValue): a Deny of either in the
/// secret's policy, or a key policy that grants only one of them, leaves that entry `Forbidden.NoPermission`.
async fn batch_get_secret_value(state: &ApiState, call: Call, entries: Vec<BatchEntry>) -> Out {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        let name = entry.name.to_string();
        let one = Call {
            key_id: call.key_id.clone(),
            key_policy: call.key_policy.clone(),
            params: entry.params,
            now: call.now,
        };
        let actions = ["BatchGetSecretValue", "GetSecretValue"];
        let result = match authorized_all(state, &one, &actions, &name).await {
            Ok(meta) => read_value(state, &one, name.clone(), meta).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(v) => values.push(Value::Object(v)),
            Err(ApiError::Internal) => return Err(ApiError::Internal),
            Err(e) => {
                let (code, status, message) = e.parts();
                errors.push(json!({
                    "SecretName": name,
                    "Code": code,
                    "HttpStatus": status,
                    "Message": message,
                }));
            }
        }
    }
    let mut out = Map::new();
    out.insert("SecretValues".into(), Value::Array(values));
    out.insert("Errors".into(), Value::Array(errors));
    Ok(out)
}

fn describe_json(state: &ApiState, meta: &SecretMeta, fetch_tags: bool) -> Map<String, Value> {
    let mut out = Map::new();
    let name = meta.name.as_str();
    out.insert("SecretName".into(), Value::String(name.to_owned()));
    out.insert("Arn".into(), Value::String(arn(state, name)));
    out.insert("SecretType".into(), Value::String(meta.kind.as_str().to_owned()));
    out.insert("Description".into(), Value::String(meta.description.clone()));
    out.insert("EncryptionKeyId".into(), Value::String(meta.cmk_id.clone()));
    out.insert("CreateTime".into(), ts(meta.created_at));
    out.insert("UpdateTime".into(), ts(meta.updated_at));
    if let Some(t) = meta.planned_delete_at {
        out.insert("PlannedDeleteTime".into(), ts(t));
    }
    if meta.kind.is_managed() {
        rotation_fields(&mut out, meta);
        out.insert(
            "ExtendedConfig".into(),
            Value::String(meta.extended_config.clone().unwrap_or_default()),
        );
    }
    if fetch_tags {
        out.insert("Tags".into(), tags_json(&meta.tags));
    }
    out
}

async fn describe_secret(state: &ApiState, call: Call, name: String) -> Out {
    let meta = authorized(state, &call, "DescribeSecret", &name).await?;
    let fetch_tags = call.params.bool("FetchTags", false)?;
    Ok(describe_json(state, &meta, fetch_tags))
}

#[derive(serde::Deserialize)]
struct Filter {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Values", default)]
    values: Vec<String>,
}

fn filter_matches(f: &Filter, m: &SecretMeta) -> bool {
    f.values.iter().any(|v| match f.key.as_str() {
        "SecretName" => m.name.as_str().contains(v.as_str()),
        "Description" => m.description.contains(v.as_str()),
        "TagKey" => m.tags.get(v).is_some(),
        "TagValue" => m.tags.iter().any(|(_, tv)| tv == v),
        "SecretType" => m.kind.as_str().eq_ignore_ascii_case(v),
        _ => false,
    })
}

async fn list_secrets(state: &ApiState, call: Call) -> Out {
    if !policy::key_allows_action(&call.key_policy, "ListSecrets") {
        return Err(ApiError::NoPermission);
    }
    let page = call.params.int("PageNumber", 1, 1, 1_000_000)?;
    let size = call.params.int("PageSize", 10, 1, 100)?;
    let fetch_tags = call.params.bool("FetchTags", false)?;
    let filters: Vec<Filter> = match call.params.get("Filters").filter(|f| !f.is_empty()) {
        None => Vec::new(),
        Some(raw) => {
            if raw.len() > 16_384 {
                return Err(ApiError::InvalidParameter("Filters is too long".to_owned()));
            }
            let f: Vec<Filter> = serde_json::from_str(raw).map_err(|_| {
                ApiError::InvalidParameter("Filters is not a JSON list of {Key, Values}".to_owned())
            })?;
            if f.len() > 10 {
                return Err(ApiError::InvalidParameter(
                    "Filters holds more than 10 items".to_owned(),
                ));
            }
            f
        }
    };
    let all = state.inner.store.list().await?;
    let caller = caller(state, &call);
    let visible: Vec<&SecretMeta> = all
        .iter()
        .filter(|m| policy::allowed(&caller, m.policy.as_deref(), "ListSecrets", m.name.as_str()))
        .filter(|m| filters.iter().all(|f| filter_matches(f, m)))
        .collect();
    let total = visible.len();
    let skip = usize::try_from((page - 1) * size).unwrap_or(usize::MAX);
    let list: Vec<Value> = visible
        .iter()
        .skip(skip)
        .take(usize::try_from(size).unwrap_or(100))
        .map(|m| {
            let mut o = Map::new();
            o.insert("SecretName".into(), Value::String(m.name.to_string()));
            o.insert("SecretType".into(), Value::String(m.kind.as_str().to_owned()));
            o.insert("CreateTime".into(), ts(m.created_at));
            o.insert("UpdateTime".into(), ts(m.updated_at));
            if let Some(t) = m.planned_delete_at {
                o.insert("PlannedDeleteTime".into(), ts(t));
            }
            if fetch_tags {
                o.insert("Tags".into(), tags_json(&m.tags));
            }
            Value::Object(o)
        })
        .collect();
    let mut out = Map::new();
    out.insert("PageNumber".into(), json!(page));
    out.insert("PageSize".into(), json!(size));
    out.insert("TotalCount".into(), json!(total));
    out.insert("SecretList".into(), json!({ "Secret": list }));
    Ok(out)
}

async fn list_versions(state: &ApiState, call: Call, name: String) -> Out {
    authorized(state, &call, "ListSecretVersionIds", &name).await?;
    let include_deprecated = call.params.bool("IncludeDeprecated", false)?;
    let page = call.params.int("PageNumber", 1, 1, 1_000_000)?;
    let size = call.params.int("PageSize", 20, 1, 100)?;
    let versions = state.inner.store.list_versions(&name).await?;
    let kept: Vec<_> = versions
        .iter()
        .filter(|v| include_deprecated || !v.stages.is_empty())
        .collect();
    let skip = usize::try_from((page - 1) * size).unwrap_or(usize::MAX);
    let list: Vec<Value> = kept
        .iter()
        .skip(skip)
        .take(usize::try_from(size).unwrap_or(100))
        .map(|v| {
            json!({
                "VersionId": v.version_id.as_str(),
                "CreateTime": format_timestamp(v.created_at),
                "VersionStages": stages_json(&v.stages),
            })
        })
        .collect();
    let mut out = Map::new();
    out.insert("SecretName".into(), Value::String(name));
    out.insert("PageNumber".into(), json!(page));
    out.insert("PageSize".into(), json!(size));
    out.insert("TotalCount".into(), json!(kept.len()));
    out.insert("VersionIds".into(), json!({ "VersionId": list }));
    Ok(out)
}

fn parse_tags(raw: &str) -> Result<Vec<Tag>, ApiError> {
    #[derive(serde::Deserialize)]
    struct WireTag {
        #[serde(rename = "TagKey")]
        key: String,
        #[serde(rename = "TagValue", default)]
        value: String,
    }
    let wire: Vec<WireTag> = serde_json::from_str(raw).map_err(|_| {
        ApiError::InvalidParameter("Tags is not a JSON list of {TagKey, TagValue}".to_owned())
    })?;
    if wire.len() > rotd_core::MAX_TAGS {
        return Err(ApiError::InvalidParameter(
            "Tags holds more than 20 tags".to_owned(),
        ));
    }
    wire.into_iter()
        .map(|t| Tag::new(t.key, t.value).map_err(ApiError::from))
        .collect()
}

fn parse_data_type(call: &Call) -> Result<DataType, ApiError> {
    match call.params.get("SecretDataType").filter(|s| !s.is_empty()) {
        None => Ok(DataType::Text),
        Some(s) => Ok(s.parse::<DataType>()?),
    }
}

fn parse_rotation(call: &Call, kind: SecretType) -> Result<Option<RotationPolicy>, ApiError> {
    let enabled = call.params.bool("EnableAutomaticRotation", false)?;
    let interval = match call.params.get("RotationInterval").filter(|s| !s.is_empty()) {
        Some(raw) => {
            let i = raw.parse::<RotationInterval>()?;
            i.check_bounds(kind)?;
            Some(i)
        }
        None if enabled => return Err(ApiError::MissingParameter("RotationInterval")),
        None => None,
    };
    Ok(interval.map(|interval| RotationPolicy {
        enabled,
        schedule: RotationSchedule::Interval { interval },
        window_secs: None,
    }))
}

fn check_policy_doc(state: &ApiState, raw: &str) -> Result<(), ApiError> {
    if raw.len() > MAX_POLICY_BYTES {
        return Err(ApiError::InvalidParameter(
            "Policy exceeds 32768 bytes".to_owned(),
        ));
    }
    policy::validate_resource_policy(raw, state.inner.config.account.as_deref())
        .map_err(ApiError::InvalidParameter)
}

/// The first value of a new secret. Database types are created with the vendor's
/// `{"Accounts":[{"AccountName","AccountPassword"}]}` but read back as one account,
/// `{"AccountName","AccountPassword"}`: the first account becomes the stored value. Other types are
/// stored as sent.
fn initial_value(kind: SecretType, data: &str) -> Result<Secret, ApiError> {
    if !matches!(kind, SecretType::Rds | SecretType::PolarDb | SecretType::Redis) {
        return Ok(Secret::from(data));
    }
    let bad = || {
        ApiError::InvalidParameter("SecretData must be {\"Accounts\":[{\"AccountName\",\"AccountPassword\"}]} or {\"AccountName\",\"AccountPassword\"}".to_owned())
    };
    let doc: zeroize::Zeroizing<String> = zeroize::Zeroizing::new(data.to_owned());
    let v: Value = serde_json::from_str(&doc).map_err(|_| bad())?;
    let account = match v.get("Accounts") {
        Some(Value::Array(list)) => list.first().cloned().ok_or_else(bad)?,
        Some(_) => return Err(bad()),
        None => v,
    };
    match (
        account.get("AccountName").and_then(Value::as_str),
        account.get("AccountPassword").and_then(Value::as_str),
    ) {
        (Some(user), Some(pw)) => Ok(Secret::from(
            serde_json::json!({"AccountName": user, "AccountPassword": pw}).to_string(),
        )),
        _ => Err(bad()),
    }
}

async fn create_secret(state: &ApiState, call: Call, secret_name: SecretName) -> Out {
    let kind = match call.params.get("SecretType").filter(|s| !s.is_empty()) {
        None => SecretType::Generic,
        Some(s) => s.parse::<SecretType>()?,
    };
    let name = secret_name.to_string();
    if !policy::key_allows(&call.key_policy, "CreateSecret", Some(&name)) {
        return Err(ApiError::NoPermission);
    }
    let version_id = VersionId::parse(call.params.required("VersionId")?)?;
    let data = call.params.required("SecretData")?;
    let data_type = parse_data_type(&call)?;
    let extended_config = if kind.is_managed() {
        if data_type != DataType::Text {
            return Err(ApiError::InvalidParameter(
                "managed secrets accept only SecretDataType text".to_owned(),
            ));
        }
        let raw = call.params.required("ExtendedConfig")?;
        if raw.chars().count() > MAX_EXTENDED_CONFIG_CHARS {
            return Err(ApiError::InvalidParameter(
                "ExtendedConfig exceeds 1024 characters".to_owned(),
            ));
        }
        let parsed: Value = serde_json::from_str(raw)
            .map_err(|_| ApiError::InvalidParameter("ExtendedConfig is not a JSON object".to_owned()))?;
        if !parsed.is_object() || parsed.get("SecretSubType").is_none() {
            return Err(ApiError::InvalidParameter(
                "ExtendedConfig needs a SecretSubType".to_owned(),
            ));
        }
        Some(raw.to_owned())
    } else {
        None
    };
    let rotation = if kind.is_managed() {
        parse_rotation(&call, kind)?
    } else {
        None
    };
    let tags = match call.params.get("Tags").filter(|s| !s.is_empty()) {
        Some(raw) => Tags::new(parse_tags(raw)?)?,
        None => Tags::default(),
    };
    let policy_doc = match call.params.get("Policy").filter(|s| !s.is_empty()) {
        Some(raw) => {
            check_policy_doc(state, raw)?;
            Some(raw.to_owned())
        }
        None => None,
    };
    let cmk_id = call
        .params
        .get("EncryptionKeyId")
        .filter(|s| !s.is_empty())
        .unwrap_or(&state.inner.config.default_cmk)
        .to_owned();
    // `$Auto` asks the service to create the credential; the rotation engine writes the first version.
    let initial = match data {
        "$Auto" => None,
        data => Some(NewVersion {
            version_id: version_id.clone(),
            data_type,
            value: initial_value(kind, data)?,
        }),
    };
    let new = NewSecret {
        name: secret_name,
        kind,
        description: description(&call)?.unwrap_or_default(),
        tags,
        cmk_id,
        extended_config,
        rotation,
        policy: policy_doc,
        managed_by: None,
    };
    let meta = state.inner.store.create_secret(new, initial).await?;
    let mut out = Map::new();
    out.insert("Arn".into(), Value::String(arn(state, &name)));
    out.insert("VersionId".into(), Value::String(version_id.to_string()));
    out.insert("SecretName".into(), Value::String(name));
    out.insert("SecretType".into(), Value::String(kind.as_str().to_owned()));
    if kind.is_managed() {
        rotation_fields(&mut out, &meta);
        out.insert(
            "ExtendedConfig".into(),
            Value::String(meta.extended_config.unwrap_or_default()),
        );
    }
    Ok(out)
}

/// The `Description` parameter, within its limit.
fn description(call: &Call) -> Result<Option<String>, ApiError> {
    let Some(d) = call.params.get("Description") else {
        return Ok(None);
    };
    let n = d.chars().count();
    if n > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::InvalidParameter(format!(
            "Description is {n} characters long; the limit is {MAX_DESCRIPTION_CHARS}"
        )));
    }
    Ok(Some(d.to_owned()))
}

fn require_generic(meta: &SecretMeta, action: &str) -> Result<(), ApiError> {
    if meta.kind.is_managed() {
        return Err(ApiError::InvalidParameter(format!(
            "{action} applies to Generic secrets only"
        )));
    }
    Ok(())
}

fn require_managed(meta: &SecretMeta, action: &str) -> Result<(), ApiError> {
    if !meta.kind.is_managed() {
        return Err(ApiError::InvalidParameter(format!(
            "{action} does not apply to Generic secrets"
        )));
    }
    Ok(())
}

async fn put_secret_value(state: &ApiState, call: Call, name: String) -> Out {
    let meta = authorized(state, &call, "PutSecretValue", &name).await?;
    require_generic(&meta, "PutSecretValue")?;
    let version_id = VersionId::parse(call.params.required("VersionId")?)?;
    let data = call.params.required("SecretData")?;
    let stages = match call.params.get("VersionStages").filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => {
            let list: Vec<String> = serde_json::from_str(raw).map_err(|_| {
                ApiError::InvalidParameter("VersionStages is not a JSON list of strings".to_owned())
            })?;
            Some(
                list.into_iter()
                    .map(StageLabel::parse)
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
    };
    let new = NewVersion {
        version_id,
        data_type: parse_data_type(&call)?,
        value: Secret::from(data),
    };
    let outcome = state.inner.store.put_value(&name, new, stages).await?;
    let mut out = Map::new();
    out.insert("SecretName".into(), Value::String(name));
    out.insert("VersionId".into(), Value::String(outcome.version_id.to_string()));
    out.insert("VersionStages".into(), stages_json(&outcome.stages));
    Ok(out)
}

async fn update_secret(state: &ApiState, call: Call, name: String) -> Out {
    let meta = authorized(state, &call, "UpdateSecret", &name).await?;
    let mut update = SecretUpdate {
        description: description(&call)?,
        ..SecretUpdate::default()
    };
    let custom: Map<String, Value> = call
        .params
        .with_prefix("ExtendedConfig.CustomData.")
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    if !custom.is_empty() {
        require_managed(&meta, "ExtendedConfig.CustomData")?;
        if custom.len() > 10 {
            return Err(ApiError::InvalidParameter(
                "CustomData holds more than 10 pairs".to_owned(),
            ));
        }
        let mut ext: Map<String, Value> = meta
            .extended_config
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default();
        ext.insert("CustomData".to_owned(), Value::Object(custom));
        let text = Value::Object(ext).to_string();
        if text.chars().count() > MAX_EXTENDED_CONFIG_CHARS {
            return Err(ApiError::InvalidParameter(
                "ExtendedConfig exceeds 1024 characters".to_owned(),
            ));
        }
        update.extended_config = Some(Some(text));
    }
    state.inner.store.update_secret(&name, update).await?;
    Ok(Map::from_iter([("SecretName".to_owned(), Value::String(name))]))
}

async fn update_version_stage(state: &ApiState, call: Call, name: String) -> Out {
    let meta = authorized(state, &call, "UpdateSecretVersionStage", &name).await?;
    require_generic(&meta, "UpdateSecretVersionStage")?;
    let stage = StageLabel::parse(call.params.required("VersionStage")?)?;
    let opt_version = |p: &str| -> Result<Option<VersionId>, ApiError> {
        Ok(match call.params.get(p).filter(|s| !s.is_empty()) {
            Some(v) => Some(VersionId::parse(v)?),
            None => None,
        })
    };
    let remove = opt_version("RemoveFromVersion")?;
    let move_to = opt_version("MoveToVersion")?;
    if remove.is_none() && move_to.is_none() {
        return Err(ApiError::MissingParameter("MoveToVersion"));
    }
    state
        .inner
        .store
        .update_version_stage(&name, &stage, remove.as_ref(), move_to.as_ref())
        .await?;
    Ok(Map::from_iter([("SecretName".to_owned(), Value::String(name))]))
}

async fn update_rotation_policy(state: &ApiState, call: Call, name: String) -> Out {
    let meta = authorized(state, &call, "UpdateSecretRotationPolicy", &name).await?;
    require_managed(&meta, "UpdateSecretRotationPolicy")?;
    call.params.required("EnableAutomaticRotation")?;
    let enabled = call.params.bool("EnableAutomaticRotation", false)?;
    let rotation = match parse_rotation(&call, meta.kind)? {
        Some(p) => Some(p),
        None => meta.rotation.clone().map(|p| RotationPolicy { enabled, ..p }),
    };
    let update = SecretUpdate {
        rotation: Some(rotation),
        ..SecretUpdate::default()
    };
    state.inner.store.update_secret(&name, update).await?;
    Ok(Map::from_iter([("SecretName".to_owned(), Value::String(name))]))
}

async fn rotate_secret(state: &ApiState, call: Call, name: String) -> Out {
    let meta = authorized(state, &call, "RotateSecret", &name).await?;
    require_managed(&meta, "RotateSecret")?;
    if !state.can_rotate(&name) {
        return Err(ApiError::InvalidParameter(format!(
            "secret {name} has no rotation backend in this rotd; declare it in secrets.d to rotate it"
        )));
    }
    let version_id = VersionId::parse(call.params.required("VersionId")?)?;
    let store = &state.inner.store;
    let exists = store
        .list_versions(&name)
        .await?
        .iter()
        .any(|v| v.version_id == version_id);
    let queued = store
        .open_requests()
        .await?
        .iter()
        .any(|r| r.secret_name == name && r.version_id.as_deref() == Some(version_id.as_str()));
    // A VersionId that already exists (or is already queued) is an idempotent repeat: success, no rotation.
    if !exists && !queued {
        let queued = store
            .add_request_within_limit(
                &name,
                rotd_store::RequestKind::Rotate,
                Some(version_id.as_str()),
                ROTATIONS_PER_HOUR,
                TimeDelta::hours(1),
            )
            .await?;
        if queued.is_none() {
            return Err(ApiError::LimitExceeded(
                "at most 50 rotations per secret per hour".to_owned(),
            ));
        }
    }
    let mut out = Map::new();
    out.insert("Arn".into(), Value::String(arn(state, &name)));
    out.insert("SecretName".into(), Value::String(name));
    out.insert("VersionId".into(), Value::String(version_id.to_string()));
    Ok(out)
}

async fn delete_secret(state: &ApiState, call: Call, name: String) -> Out {
    authorized(state, &call, "DeleteSecret", &name).await?;
    let mode = if call.params.bool("ForceDeleteWithoutRecovery", false)? {
        DeleteMode::Force
    } else {
        let days = call.params.int("RecoveryWindowInDays", 30, 7, 30)?;
        DeleteMode::Recovery {
            days: u32::try_from(days).unwrap_or(30),
        }
    };
    let planned = state.inner.store.delete_secret(&name, mode).await?;
    let mut out = Map::new();
    out.insert("SecretName".into(), Value::String(name));
    out.insert("PlannedDeleteTime".into(), ts(planned));
    Ok(out)
}

async fn restore_secret(state: &ApiState, call: Call, name: String) -> Out {
    authorized(state, &call, "RestoreSecret", &name).await?;
    state.inner.store.restore_secret(&name).await?;
    Ok(Map::from_iter([("SecretName".to_owned(), Value::String(name))]))
}

fn get_random_password(call: Call) -> Out {
    if !policy::key_allows(&call.key_policy, "GetRandomPassword", None) {
        return Err(ApiError::NoPermission);
    }
    let p = &call.params;
    let mut pol = PasswordPolicy::vendor_default();
    pol.length = usize::try_from(p.int("PasswordLength", 32, 8, 128)?).unwrap_or(32);
    pol.lowercase = !p.bool("ExcludeLowercase", false)?;
    pol.uppercase = !p.bool("ExcludeUppercase", false)?;
    pol.digits = !p.bool("ExcludeNumbers", false)?;
    if p.bool("ExcludePunctuation", false)? {
        pol.symbols = String::new();
    }
    let exclude = p.get("ExcludeCharacters").unwrap_or("");
    let n = exclude.chars().count();
    if n > MAX_EXCLUDE_CHARS {
        return Err(ApiError::InvalidParameter(format!(
            "ExcludeCharacters is {n} characters long; the limit is {MAX_EXCLUDE_CHARS}"
        )));
    }
    pol.exclude = exclude.to_owned();
    pol.require_each_class = p.bool("RequireEachIncludedType", false)?;
    let pw = rotd_core::generate_password(&pol)?;
    Ok(Map::from_iter([(
        "RandomPassword".to_owned(),
        Value::String(value_text(&pw)),
    )]))
}

async fn tag_resource(state: &ApiState, call: Call, name: String, add: bool) -> Out {
    let action = if add { "TagResource" } else { "UntagResource" };
    let meta = authorized(state, &call, action, &name).await?;
    let mut tags = meta.tags.clone();
    if add {
        tags.merge(parse_tags(call.params.required("Tags")?)?)?;
    } else {
        let keys: Vec<String> = serde_json::from_str(call.params.required("TagKeys")?)
            .map_err(|_| ApiError::InvalidParameter("TagKeys is not a JSON list of strings".to_owned()))?;
        for k in keys {
            if k.is_empty() || k.len() > 128 {
                return Err(ApiError::InvalidParameter(
                    "each tag key must be 1 to 128 bytes".to_owned(),
                ));
            }
            tags.remove(&k);
        }
    }
    let update = SecretUpdate {
        tags: Some(tags),
        ..SecretUpdate::default()
    };
    state.inner.store.update_secret(&name, update).await?;
    Ok(Map::new())
}

fn check_policy_name(call: &Call) -> Result<(), ApiError> {
    match call.params.get("PolicyName") {
        None | Some("") | Some("default") => Ok(()),
        Some(_) => Err(ApiError::NotFound),
    }
}

async fn set_policy(state: &ApiState, call: Call, name: String) -> Out {
    authorized(state, &call, "SetSecretPolicy", &name).await?;
    check_policy_name(&call)?;
    let doc = call.params.required("Policy")?;
    check_policy_doc(state, doc)?;
    let update = SecretUpdate {
        policy: Some(Some(doc.to_owned())),
        ..SecretUpdate::default()
    };
    state.inner.store.update_secret(&name, update).await?;
    Ok(Map::new())
}

async fn get_policy(state: &ApiState, call: Call, name: String) -> Out {
    let meta = authorized(state, &call, "GetSecretPolicy", &name).await?;
    check_policy_name(&call)?;
    let doc = meta.policy.unwrap_or_else(|| DEFAULT_POLICY.to_owned());
    Ok(Map::from_iter([("Policy".to_owned(), Value::String(doc))]))
}
