//! Keeping the store in line with the per-secret TOML files.
//!
//! A declared secret that does not exist is created (with its initial value where the file gives one).
//! One that exists has its metadata and rotation policy brought in line with its file: the file wins.
//! A secret whose file disappeared stops being managed (`managed_by` is cleared) but keeps all its data.
//! Secrets created through the CLI or API are never touched. Errors are per secret: one bad secret
//! never stops the others.

use std::collections::BTreeSet;

use anyhow::{Context, bail};
use rotd_config::{Config, Provisioning, SecretRef, SecretSpec, Target};
use rotd_core::{DataType, Secret, StageLabel};
use rotd_store::{NewSecret, NewVersion, SecretUpdate, Selector, Store, StoreError};
use serde_json::json;
use tracing::{error, info, warn};

/// What one pass changed, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub released: Vec<String>,
    pub failed: Vec<String>,
}

pub async fn apply(store: &Store, cfg: &Config) -> Report {
    let mut report = Report::default();
    for spec in &cfg.secrets {
        let name = spec.name.to_string();
        match one(store, spec).await {
            Ok(Change::Created) => {
                info!(secret = %name, file = %spec.file.display(), "Created a declared secret.");
                report.created.push(name);
            }
            Ok(Change::Updated) => {
                info!(secret = %name, file = %spec.file.display(), "Updated a secret's metadata from its file.");
                report.updated.push(name);
            }
            Ok(Change::None) => {}
            Err(e) => {
                error!(secret = %name, file = %spec.file.display(), error = %format!("{e:#}"), "Could not apply a declared secret.");
                report.failed.push(name);
            }
        }
    }
    let declared: BTreeSet<&str> = cfg.secrets.iter().map(|s| s.name.as_str()).collect();
    match store.list().await {
        Ok(all) => {
            for meta in all
                .iter()
                .filter(|m| m.managed_by.is_some() && !declared.contains(m.name.as_str()))
            {
                if meta.planned_delete_at.is_some() {
                    continue;
                }
                let update = SecretUpdate {
                    managed_by: Some(None),
                    ..Default::default()
                };
                match store.update_secret(meta.name.as_str(), update).await {
                    Ok(_) => {
                        info!(secret = %meta.name, "Its file is gone: no longer managed; its data is kept.");
                        report.released.push(meta.name.to_string());
                    }
                    Err(e) => {
                        warn!(secret = %meta.name, error = %e, "Could not release an undeclared secret.")
                    }
                }
            }
        }
        Err(e) => error!(error = %e, "Could not list secrets to release undeclared ones."),
    }
    report
}

enum Change {
    Created,
    Updated,
    None,
}

async fn one(store: &Store, spec: &SecretSpec) -> anyhow::Result<Change> {
    let file = spec.file.display().to_string();
    match store.describe(spec.name.as_str()).await {
        Err(StoreError::SecretNotFound { .. }) => {
            let initial = initial_version(store, spec).await?;
            let new = NewSecret {
                name: spec.name.clone(),
                kind: spec.kind,
                description: spec.description.clone(),
                tags: spec.tags.clone(),
                cmk_id: spec.cmk.clone(),
                extended_config: spec.extended_config(),
                rotation: spec.rotation.clone(),
                policy: None,
                managed_by: Some(file),
            };
            store.create_secret(new, initial).await?;
            // A dual import with both passwords known: the clone's value is ACSPrevious from the start, so
            // both accounts are readable and the first rotation resets the clone. (Without it, the daemon
            // resets the clone at once: a secret with dual accounts is never left with one value.)
            if let Some(clone) = imported_clone(store, spec).await? {
                store
                    .put_value(spec.name.as_str(), clone, Some(vec![StageLabel::previous()]))
                    .await?;
            }
            Ok(Change::Created)
        }
        Err(e) => Err(e.into()),
        Ok(meta) => {
            if meta.kind != spec.kind {
                bail!(
                    "the store holds it as a {} secret, but the file declares {}; the type of a secret cannot change",
                    meta.kind,
                    spec.kind
                );
            }
            if meta.planned_delete_at.is_some() {
                bail!(
                    "it is scheduled for deletion; restore it with `rotd secret restore` to manage it again"
                );
            }
            let mut update = SecretUpdate::default();
            let mut changed = false;
            if meta.description != spec.description {
                update.description = Some(spec.description.clone());
                changed = true;
            }
            if meta.tags != spec.tags {
                update.tags = Some(spec.tags.clone());
                changed = true;
            }
            if meta.rotation != spec.rotation {
                update.rotation = Some(spec.rotation.clone());
                changed = true;
            }
            let ext = spec.extended_config();
            if meta.extended_config != ext {
                update.extended_config = Some(ext);
                changed = true;
            }
            if meta.managed_by.as_deref() != Some(file.as_str()) {
                update.managed_by = Some(Some(file));
                changed = true;
            }
            if !changed {
                return Ok(Change::None);
            }
            store.update_secret(spec.name.as_str(), update).await?;
            Ok(Change::Updated)
        }
    }
}

/// The clone's value of a dual import whose file gives `clone_password`.
async fn imported_clone(store: &Store, spec: &SecretSpec) -> anyhow::Result<Option<NewVersion>> {
    let (Target::Rds(db) | Target::PolarDb(db)) = &spec.target else {
        return Ok(None);
    };
    let (
        Provisioning::Import {
            clone_password: Some(password),
            ..
        },
        Some(clone_user),
    ) = (&db.provisioning, db.accounts.clone_user())
    else {
        return Ok(None);
    };
    let pw = resolve(store, password)
        .await
        .context("reading the imported clone account's password")?;
    let pw = pw
        .expose_str()
        .context("the imported clone password is not UTF-8 text")?;
    let doc = json!({"AccountName": clone_user, "AccountPassword": pw});
    // The clone's version is not the secret's initial version (that id, `v1` by default, is the first
    // account's): it gets a generated id, as versions made by rotation do, so it can never collide with
    // `initial_version` or with an id an operator chooses later.
    Ok(Some(NewVersion {
        version_id: crate::cmd::new_version_id(),
        data_type: DataType::Text,
        value: Secret::from(doc.to_string()),
    }))
}

/// The value a declared secret is created with, if its file gives one.
async fn initial_version(store: &Store, spec: &SecretSpec) -> anyhow::Result<Option<NewVersion>> {
    let version_id = spec.initial_version.clone();
    let (value, data_type) = match &spec.target {
        Target::Generic(g) => {
            let value = match &g.initial_value {
                Some(r) => resolve(store, r).await.context("reading initial_value")?,
                None => rotd_core::generate_password(&g.generate)?,
            };
            (value, g.data_type)
        }
        Target::Rds(db) | Target::PolarDb(db) => match db.imported_account() {
            Some((user, password)) => {
                let pw = resolve(store, password)
                    .await
                    .context("reading the imported account's password")?;
                let pw = pw
                    .expose_str()
                    .context("the imported password is not UTF-8 text")?;
                let doc = json!({"AccountName": user, "AccountPassword": pw});
                (Secret::from(doc.to_string()), DataType::Text)
            }
            // Accounts rotd creates get their first version from a rotation the daemon runs at once.
            _ => return Ok(None),
        },
        Target::Ecs(e) => match &e.initial_value {
            Some(r) => {
                let material = resolve(store, r).await.context("reading ecs.initial_value")?;
                let keys = matches!(e.credential, rotd_config::EcsCredential::SshKey(_));
                let value = rotd_backend_ssh::initial_value(&e.user, &material, keys)
                    .map_err(|m| anyhow::anyhow!("ecs.initial_value: {m}"))?;
                (value, DataType::Text)
            }
            // Without one, the daemon rotates at once: the new credential is set through the management login.
            None => return Ok(None),
        },
        Target::Redis(_) | Target::Ram(_) => return Ok(None),
    };
    Ok(Some(NewVersion {
        version_id,
        data_type,
        value,
    }))
}

/// Reads secret material a configuration file refers to: a private file, a systemd credential, or
/// another rotd secret (optionally one field of its JSON value).
pub async fn resolve(store: &Store, r: &SecretRef) -> anyhow::Result<Secret> {
    match r {
        SecretRef::Secret { name, field } => {
            let v = store.get_value(name.as_str(), &Selector::current()).await?;
            match field {
                None => Ok(v.value),
                Some(field) => {
                    let doc: serde_json::Value = serde_json::from_slice(v.value.expose_secret())
                        .with_context(|| format!("secret {name} is not JSON, so it has no field {field}"))?;
                    let s = doc
                        .get(field)
                        .and_then(|f| f.as_str())
                        .with_context(|| format!("secret {name} has no string field {field}"))?;
                    Ok(Secret::from(s))
                }
            }
        }
        other => Ok(rotd_config::read_material(other)?),
    }
}
