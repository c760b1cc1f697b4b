//! `rotd access-key …`, `rotd tls rotate`, `rotd audit tail`: the API's keys, certificate and audit log.

use std::path::PathBuf;

use anyhow::Context;
use rotd_config::DaemonConfig;
use rotd_store::Store;
use serde_json::json;

use crate::cli::{AccessKeyCmd, AuditCmd, Output, TlsCmd};
use crate::fail::{EX_NOINPUT, Fail};
use crate::keyfile;
use crate::output::{print_rows, ts};

/// Where the API's CA, server certificate and keys live.
pub fn tls_dir(daemon: &DaemonConfig) -> PathBuf {
    daemon.data_dir.join("tls")
}

/// The API audit log.
pub fn audit_path(daemon: &DaemonConfig) -> PathBuf {
    daemon.data_dir.join("audit.log")
}

fn not_found(id: &str) -> anyhow::Error {
    Fail {
        code: EX_NOINPUT,
        message: format!("access key {id} not found"),
    }
    .into()
}

/// The read actions on secrets the vendor's `AliyunKMSSecretUserAccess` system policy grants.
const SECRET_USER_ACTIONS: [&str; 6] = [
    "kms:GetSecretValue",
    "kms:BatchGetSecretValue",
    "kms:DescribeSecret",
    "kms:ListSecrets",
    "kms:ListSecretVersionIds",
    "kms:GetRandomPassword",
];

/// The actions of a policy preset, by the vendor's policy name. `AliyunKMSCryptoUserAccess` grants the
/// decryption a read needs; rotd's read actions include it, so the preset adds no action and exists so
/// that scripts written for the vendor's quickstart run unchanged.
fn preset_actions(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "AliyunKMSSecretUserAccess" => Some(&SECRET_USER_ACTIONS),
        "AliyunKMSCryptoUserAccess" => Some(&[]),
        _ => None,
    }
}

/// The key's actions: `--action`s and the presets' actions, without repeats; `kms:GetSecretValue` when
/// neither is given.
fn key_actions(actions: &[String], policies: &[String]) -> anyhow::Result<Vec<String>> {
    if actions.is_empty() && policies.is_empty() {
        return Ok(vec!["kms:GetSecretValue".to_owned()]);
    }
    let mut out: Vec<String> = Vec::new();
    for p in policies {
        let preset = preset_actions(p).ok_or_else(|| {
            Fail::data(format!(
                "policy {p:?} is not a preset; use AliyunKMSSecretUserAccess or AliyunKMSCryptoUserAccess"
            ))
        })?;
        out.extend(preset.iter().map(|a| (*a).to_owned()));
    }
    out.extend(actions.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|a| seen.insert(a.clone()));
    if out.is_empty() {
        eprintln!(
            "note: AliyunKMSCryptoUserAccess alone grants no action in rotd; add --policy AliyunKMSSecretUserAccess to read secrets"
        );
    }
    Ok(out)
}

pub async fn access_key(
    store: &Store,
    daemon: &DaemonConfig,
    cmd: &AccessKeyCmd,
    out: Output,
) -> anyhow::Result<()> {
    match cmd {
        AccessKeyCmd::Create {
            description,
            actions,
            policies,
            secrets,
            secret_file,
        } => {
            for a in actions {
                if !(a == "kms:*" || a.starts_with("kms:")) {
                    return Err(Fail::data(format!("action {a:?} must be kms:* or kms:<Action>")));
                }
            }
            let actions = key_actions(actions, policies)?;
            let policy = json!({"Actions": actions, "Secrets": secrets}).to_string();
            let (info, secret) = store
                .create_access_key(description, &policy, &daemon.default_cmk)
                .await?;
            let doc = zeroize::Zeroizing::new(
                serde_json::to_vec_pretty(&json!({
                    "AccessKeyId": info.id,
                    "AccessKeySecret": secret.expose_str().expect("access key secrets are ASCII"),
                }))
                .expect("json"),
            );
            match secret_file {
                Some(path) => {
                    keyfile::write_private(path, &doc)?;
                    println!(
                        "created access key {} (secret in {}, mode 0600)",
                        info.id,
                        path.display()
                    );
                }
                None => {
                    eprintln!("The secret is shown only now; store it safely.");
                    println!("{}", String::from_utf8_lossy(&doc));
                }
            }
        }
        AccessKeyCmd::List => {
            let keys = store.list_access_keys().await?;
            let rows = keys
                .iter()
                .map(|k| {
                    vec![
                        k.id.clone(),
                        if k.enabled {
                            "enabled".into()
                        } else {
                            "disabled".into()
                        },
                        ts(&k.created_at),
                        k.policy.clone(),
                        k.description.clone(),
                    ]
                })
                .collect();
            let docs = keys
                .iter()
                .map(|k| {
                    json!({"AccessKeyId": k.id, "Enabled": k.enabled, "CreateTime": ts(&k.created_at),
                           "Policy": k.policy, "Description": k.description})
                })
                .collect();
            print_rows(
                out,
                &["access key id", "status", "created", "policy", "description"],
                rows,
                docs,
            );
        }
        AccessKeyCmd::Disable { id } | AccessKeyCmd::Enable { id } => {
            let enable = matches!(cmd, AccessKeyCmd::Enable { .. });
            if !store.set_access_key_enabled(id, enable).await? {
                return Err(not_found(id));
            }
            println!("{} access key {id}", if enable { "enabled" } else { "disabled" });
        }
        AccessKeyCmd::Delete { id } => {
            if !store.delete_access_key(id).await? {
                return Err(not_found(id));
            }
            println!("deleted access key {id}");
        }
    }
    Ok(())
}

pub fn tls(daemon: &DaemonConfig, cmd: &TlsCmd) -> anyhow::Result<()> {
    match cmd {
        TlsCmd::Rotate => {
            let dir = tls_dir(daemon);
            rotd_api::tls::rotate_server_cert(&dir, &daemon.api.tls_names, rotd_core::Clock::system().now())
                .with_context(|| format!("re-issuing the server certificate in {}", dir.display()))?;
            println!(
                "issued a new server certificate for {} in {}; send SIGHUP to a running daemon (systemctl reload rotd)",
                daemon.api.tls_names.join(", "),
                dir.display()
            );
        }
    }
    Ok(())
}

pub fn audit(daemon: &DaemonConfig, cmd: &AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Tail { lines } => {
            let path = audit_path(daemon);
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let all: Vec<&str> = text.lines().collect();
            for line in &all[all.len().saturating_sub(*lines)..] {
                println!("{line}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn policy_presets() {
        assert_eq!(key_actions(&[], &[]).unwrap(), strings(&["kms:GetSecretValue"]));
        let user = key_actions(&[], &strings(&["AliyunKMSSecretUserAccess"])).unwrap();
        assert_eq!(user, strings(&SECRET_USER_ACTIONS));
        // The crypto preset adds nothing to the read actions, and repeats are dropped.
        let both = key_actions(
            &strings(&["kms:GetSecretValue", "kms:PutSecretValue"]),
            &strings(&["AliyunKMSSecretUserAccess", "AliyunKMSCryptoUserAccess"]),
        )
        .unwrap();
        let mut want = strings(&SECRET_USER_ACTIONS);
        want.push("kms:PutSecretValue".to_owned());
        assert_eq!(both, want);
        assert!(
            key_actions(&[], &strings(&["AliyunKMSCryptoUserAccess"]))
                .unwrap()
                .is_empty()
        );
        let e = key_actions(&[], &strings(&["AdministratorAccess"])).unwrap_err();
        assert!(e.to_string().contains("not a preset"), "{e}");
    }
}
