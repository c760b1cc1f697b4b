//! `rotd key …`: CMK rotation and re-wrapping.
//!
//! A running daemon holds the keyring in memory, so both commands tell it to reload, the way `rotd rotate`
//! reaches it: through the store (`keyring_reload`), which the daemon polls every second. `rewrap` moves
//! data keys to the newest CMK versions only once the running daemon reports that it holds them; if it
//! does not (a stopped or wedged daemon, a reload it refused), the rewrap is refused, because every value
//! it moved would be unreadable to the daemon until a restart.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::bail;
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
            let version = keyfile::update(path, |keyring| {
                Ok(keyring.rotate(&id, rotd_core::Clock::system().now()))
            })?;
            let keyring = keyfile::load(&daemon.keyring)?;
            println!(
                "CMK {id} is now at version {version}; new values use it. Run `rotd key rewrap` to move \
                 existing data keys to it."
            );
            let store = super::open_store(daemon).await?;
            match daemon_follows(&store, &keyring).await? {
                Follow::NoDaemon | Follow::Yes => {}
                Follow::No(why) => eprintln!("warning: {why}"),
            }
        }
        KeyCmd::Rewrap => {
            let store = super::open_store(daemon).await?;
            let keyring = keyfile::load(&daemon.keyring)?;
            if let Follow::No(why) = daemon_follows(&store, &keyring).await? {
                anyhow::bail!("refusing to re-wrap: {why}; nothing was changed");
            }
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

/// How long the CLI waits for the running daemon to reload its keyring.
const RELOAD_WAIT: Duration = Duration::from_secs(5);

/// Whether the running daemon holds (at least) the newest CMK versions of `keyring`.
#[derive(Debug)]
enum Follow {
    NoDaemon,
    Yes,
    No(String),
}

/// Asks a running daemon to reload its keyring and waits until it reports holding every newest CMK
/// version of `keyring`.
async fn daemon_follows(store: &rotd_store::Store, keyring: &rotd_store::Keyring) -> anyhow::Result<Follow> {
    if !super::rotation::daemon_alive(store).await? {
        return Ok(Follow::NoDaemon);
    }
    let wanted = keyring.newest_versions();
    let n = store.request_keyring_reload().await?;
    let deadline = rotd_core::Clock::system().instant() + RELOAD_WAIT;
    loop {
        let state = store.keyring_reload().await?;
        if state.handled >= n {
            let missing: Vec<String> = wanted
                .iter()
                .filter(|(id, v)| state.loaded.get(*id).is_none_or(|have| have < *v))
                .map(|(id, v)| format!("CMK {id} version {v}"))
                .collect();
            if missing.is_empty() {
                return Ok(Follow::Yes);
            }
            let reason = state
                .error
                .map_or_else(String::new, |e| format!(" (its reload failed: {e})"));
            return Ok(Follow::No(format!(
                "the running daemon does not hold {}{reason}",
                missing.join(", ")
            )));
        }
        if rotd_core::Clock::system().instant() >= deadline {
            return Ok(Follow::No(format!(
                "the running daemon did not reload its keyring within {} s (send it SIGHUP, or check its log)",
                RELOAD_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
