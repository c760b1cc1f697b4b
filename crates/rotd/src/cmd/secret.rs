//! `rotd secret …`: the store's operations from the command line.

use std::io::Read;

use anyhow::Context;
use base64::Engine;
use rotd_config::DaemonConfig;
use rotd_core::{DataType, PasswordPolicy, Secret, SecretName, SecretType, StageLabel, Tag, Tags, VersionId};
use rotd_store::{DeleteMode, NewSecret, NewVersion, Selector, Store};
use serde_json::json;

use crate::cli::{Output, SecretCmd, ValueSource};
use crate::fail::{self, Fail};
use crate::output::{self, meta_json, print_object, print_rows, ts, version_json};

/// A random 32-hex-digit version id, the shape of the vendor's generated ids.
pub fn new_version_id() -> VersionId {
    VersionId::parse(format!("{:032x}", rand::random::<u128>())).expect("hex ids are valid")
}

fn parse<T>(r: Result<T, rotd_core::ValidationError>) -> anyhow::Result<T> {
    r.map_err(|e| Fail::data(e.to_string()))
}

fn read_value(src: &ValueSource) -> anyhow::Result<Secret> {
    if let Some(path) = &src.value_file {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(Secret::new(bytes));
    }
    if src.value_stdin {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the value from standard input")?;
        return Ok(Secret::new(buf));
    }
    Ok(rotd_core::generate_password(&PasswordPolicy::default())?)
}

/// A version to write; without `--version-id` its id is `default`'s.
fn new_version(
    version_id: &Option<String>,
    default: fn() -> VersionId,
    binary: bool,
    value: Secret,
) -> anyhow::Result<NewVersion> {
    let version_id = match version_id {
        Some(v) => parse(VersionId::parse(v.as_str()))?,
        None => default(),
    };
    let data_type = if binary { DataType::Binary } else { DataType::Text };
    parse(data_type.validate_value(&value))?;
    Ok(NewVersion {
        version_id,
        data_type,
        value,
    })
}

fn parse_tags(tags: &[String]) -> anyhow::Result<Tags> {
    let parsed = tags
        .iter()
        .map(|t| {
            let (k, v) = t
                .split_once('=')
                .ok_or_else(|| Fail::data(format!("tag {t:?} is not KEY=VALUE")))?;
            parse(Tag::new(k, v))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    parse(Tags::new(parsed))
}

pub async fn run(cmd: &SecretCmd, out: Output, daemon: &DaemonConfig, store: &Store) -> anyhow::Result<()> {
    match cmd {
        SecretCmd::Create {
            name,
            value,
            kind,
            description,
            tags,
            version_id,
            binary,
            cmk,
        } => {
            let name = parse(SecretName::parse(name.as_str()))?;
            let kind: SecretType = parse(kind.parse())?;
            let new = NewSecret {
                name,
                kind,
                description: description.clone(),
                tags: parse_tags(tags)?,
                cmk_id: cmk.clone().unwrap_or_else(|| daemon.default_cmk.clone()),
                extended_config: None,
                rotation: None,
                policy: None,
                managed_by: None,
            };
            let version = new_version(version_id, VersionId::initial, *binary, read_value(value)?)?;
            let vid = version.version_id.clone();
            let meta = store
                .create_secret(new, Some(version))
                .await
                .map_err(fail::store)?;
            print_object(
                out,
                &json!({"SecretName": meta.name.as_str(), "SecretType": meta.kind.as_str(), "VersionId": vid.as_str()}),
            );
        }
        SecretCmd::Put {
            name,
            value,
            version_id,
            stages,
            binary,
        } => {
            let stages = if stages.is_empty() {
                None
            } else {
                Some(
                    stages
                        .iter()
                        .map(|s| parse(StageLabel::parse(s.as_str())))
                        .collect::<anyhow::Result<Vec<_>>>()?,
                )
            };
            let version = new_version(version_id, new_version_id, *binary, read_value(value)?)?;
            let outcome = store
                .put_value(name, version, stages)
                .await
                .map_err(fail::store)?;
            print_object(
                out,
                &json!({
                    "SecretName": name,
                    "VersionId": outcome.version_id.as_str(),
                    "VersionStages": outcome.stages.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    "Created": outcome.created,
                }),
            );
        }
        SecretCmd::Get {
            name,
            stage,
            version_id,
            reveal,
        } => {
            let stage = stage
                .as_deref()
                .map(StageLabel::parse)
                .transpose()
                .map_err(|e| Fail::data(e.to_string()))?;
            let version = version_id
                .as_deref()
                .map(VersionId::parse)
                .transpose()
                .map_err(|e| Fail::data(e.to_string()))?;
            let selector = match (version, stage) {
                (Some(v), Some(s)) => Selector::Both(v, s),
                (Some(v), None) => Selector::Version(v),
                (None, Some(s)) => Selector::Stage(s),
                (None, None) => Selector::current(),
            };
            let v = store.get_value(name, &selector).await.map_err(fail::store)?;
            let mut doc = version_json(name, &v.info);
            if *reveal {
                let shown = match v.info.data_type {
                    DataType::Text => v.value.expose_str().unwrap_or_default().to_owned(),
                    DataType::Binary => {
                        base64::engine::general_purpose::STANDARD.encode(v.value.expose_secret())
                    }
                };
                if out == Output::Table {
                    // Only the value, so `rotd secret get NAME --reveal > file` captures it exactly.
                    print!("{shown}");
                    return Ok(());
                }
                doc["SecretData"] = json!(shown);
            }
            print_object(out, &doc);
        }
        SecretCmd::Describe { name } => {
            let meta = store.describe(name).await.map_err(fail::store)?;
            print_object(out, &meta_json(&meta));
        }
        SecretCmd::List => {
            let all = store.list().await.map_err(fail::store)?;
            let rows = all
                .iter()
                .map(|m| {
                    vec![
                        m.name.to_string(),
                        m.kind.to_string(),
                        m.managed_by.clone().map_or("store".into(), |_| "file".into()),
                        m.planned_delete_at.map_or(String::new(), |t| ts(&t)),
                        m.description.clone(),
                    ]
                })
                .collect();
            let json = all.iter().map(meta_json).collect();
            print_rows(
                out,
                &["name", "type", "declared by", "planned deletion", "description"],
                rows,
                json,
            );
        }
        SecretCmd::Versions { name } => {
            let versions = store.list_versions(name).await.map_err(fail::store)?;
            let rows = versions
                .iter()
                .map(|v| {
                    vec![
                        v.version_id.to_string(),
                        ts(&v.created_at),
                        v.data_type.to_string(),
                        v.stages.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
                    ]
                })
                .collect();
            let json = versions.iter().map(|v| version_json(name, v)).collect();
            print_rows(out, &["version id", "created", "type", "stages"], rows, json);
        }
        SecretCmd::Stage {
            name,
            stage,
            move_to,
            remove_from,
        } => {
            let stage = parse(StageLabel::parse(stage.as_str()))?;
            let move_to = move_to
                .as_deref()
                .map(VersionId::parse)
                .transpose()
                .map_err(|e| Fail::data(e.to_string()))?;
            let remove_from = remove_from
                .as_deref()
                .map(VersionId::parse)
                .transpose()
                .map_err(|e| Fail::data(e.to_string()))?;
            let map = store
                .update_version_stage(name, &stage, remove_from.as_ref(), move_to.as_ref())
                .await
                .map_err(fail::store)?;
            let rows = map
                .iter()
                .map(|(s, v)| vec![s.to_string(), v.to_string()])
                .collect();
            let json = map
                .iter()
                .map(|(s, v)| json!({"VersionStage": s.as_str(), "VersionId": v.as_str()}))
                .collect();
            print_rows(out, &["stage", "version id"], rows, json);
        }
        SecretCmd::Delete {
            name,
            recovery_days,
            force,
        } => {
            let mode = if *force {
                DeleteMode::Force
            } else {
                DeleteMode::Recovery { days: *recovery_days }
            };
            let planned = store.delete_secret(name, mode).await.map_err(fail::store)?;
            print_object(
                out,
                &json!({"SecretName": name, "PlannedDeleteTime": output::ts(&planned), "Forced": force}),
            );
        }
        SecretCmd::Restore { name } => {
            let meta = store.restore_secret(name).await.map_err(fail::store)?;
            print_object(out, &json!({"SecretName": meta.name.as_str(), "Restored": true}));
        }
        // Dispatched before the store is opened: it writes files and needs no store.
        SecretCmd::CreateBulk { .. } => unreachable!("create-bulk is run by cmd::bulk"),
    }
    Ok(())
}
