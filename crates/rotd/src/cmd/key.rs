//! `rotd key …`: CMK rotation and re-wrapping.

use std::io::IsTerminal;

use anyhow::bail;
use chrono::Utc;
use rotd_config::{DaemonConfig, KeyringSource};
use serde_json::json;

use crate::cli::{KeyCmd, Output};
use crate::keyfile;
use crate::output::{print_rows, ts};

pub async fn run(cmd: &KeyCmd, out: Output, daemon: &DaemonConfig) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::List => {
            let keyring = keyfile::load(&daemon.keyring)?;
            let store = super::open_store(daemon).await?;
            let usage = store.cmk_usage().await?;
            let count = |id: &str, v: u32| {
                usage
                    .iter()
                    .find(|u| u.cmk_id == id && u.cmk_version == v)
                    .map_or(0, |u| u.data_keys)
            };
            let list = keyring.list();
            let rows = list
                .iter()
                .map(|k| {
                    vec![
                        k.id.clone(),
                        k.version.to_string(),
                        ts(&k.created_at),
                        if k.newest { "yes".into() } else { String::new() },
                        count(&k.id, k.version).to_string(),
                    ]
                })
                .collect();
            let json = list
                .iter()
                .map(|k| {
                    json!({"KeyId": k.id, "KeyVersion": k.version, "CreateTime": ts(&k.created_at),
                           "Newest": k.newest, "DataKeys": count(&k.id, k.version)})
                })
                .collect();
            print_rows(
                out,
                &["cmk", "version", "created", "newest", "data keys"],
                rows,
                json,
            );
        }
        KeyCmd::Rotate { cmk } => {
            let KeyringSource::File(path) = &daemon.keyring else {
                bail!(
                    "the keyring is a systemd credential, which rotd cannot change; rotate a copy with a \
                     file-based configuration and re-provision the credential"
                );
            };
            let id = cmk.clone().unwrap_or_else(|| daemon.default_cmk.clone());
            let version = keyfile::update(path, |keyring| Ok(keyring.rotate(&id, Utc::now())))?;
            println!(
                "CMK {id} is now at version {version}; new values use it. Run `rotd key rewrap` to move \
                 existing data keys to it, and restart or reload the daemon."
            );
        }
        KeyCmd::Rewrap => {
            let store = super::open_store(daemon).await?;
            let tty = std::io::stderr().is_terminal();
            let changed = store
                .rewrap_all(|done, total| {
                    if tty && (done % 100 == 0 || done == total) {
                        eprint!("\rre-wrapping data keys: {done}/{total}");
                    }
                })
                .await?;
            if tty {
                eprintln!();
            }
            println!(
                "re-wrapped {changed} data key{} under the newest CMK versions",
                if changed == 1 { "" } else { "s" }
            );
        }
    }
    Ok(())
}
