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
            secrets,
            secret_file,
        } => {
            for a in actions {
                if !(a == "kms:*" || a.starts_with("kms:")) {
                    return Err(Fail::data(format!("action {a:?} must be kms:* or kms:<Action>")));
                }
            }
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
            rotd_api::tls::rotate_server_cert(&dir, &daemon.api.tls_names, chrono::Utc::now())
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
