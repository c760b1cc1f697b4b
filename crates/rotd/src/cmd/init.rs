//! `rotd init`, and the same steps when `rotd serve` starts on a fresh machine.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;

use anyhow::{Context, bail};
use rotd_config::{DaemonConfig, KeyringSource};
use rotd_store::{Keyring, Store};
use serde_json::json;

use crate::keyfile;

/// The policy of the first access key: every action on every secret.
const ADMIN_POLICY: &str = r#"{"Actions":["kms:*"],"Secrets":["*"]}"#;

/// What `ensure` created; empty on an initialized installation.
#[derive(Debug, Default)]
pub struct Created {
    pub data_dir: bool,
    pub keyring: bool,
    pub store: bool,
    pub access_key: Option<(String, std::path::PathBuf)>,
    pub tls_ca: bool,
}

/// Creates whatever of data dir, keyring, store and first access key is missing, and opens the store.
/// Never replaces a keyring, and refuses to make a new one for a store that already holds data.
pub async fn ensure(daemon: &DaemonConfig) -> anyhow::Result<(Store, Created)> {
    let mut created = Created::default();
    if !daemon.data_dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&daemon.data_dir)
            .with_context(|| format!("creating data directory {}", daemon.data_dir.display()))?;
        created.data_dir = true;
    }
    let db = super::db_path(daemon);
    let keyring_path = keyfile::path_of(&daemon.keyring)?;
    if !keyring_path.exists() {
        if db.exists() {
            bail!(
                "the store {} exists but its keyring {} is missing; restore the keyring from your backup \
                 (a new keyring could not decrypt anything stored)",
                db.display(),
                keyring_path.display()
            );
        }
        match &daemon.keyring {
            KeyringSource::File(path) => {
                keyfile::create(path, &Keyring::generate(rotd_core::Clock::system().now()))?;
                created.keyring = true;
            }
            KeyringSource::Credential(name) => bail!(
                "the keyring credential {name:?} does not exist at {}; create a keyring with a file-based \
                 configuration first, then point LoadCredential= at it",
                keyring_path.display()
            ),
        }
    }
    created.store = !db.exists();
    // The API's CA ("instance CA certificate" clients trust) and server certificate.
    let tls = rotd_api::tls::ensure(
        &super::api::tls_dir(daemon),
        &daemon.api.tls_names,
        rotd_core::Clock::system().now(),
    )
    .context("creating the API's TLS certificates")?;
    created.tls_ca = tls.created_ca;
    let keyring = keyfile::load(&daemon.keyring)?;
    let store = Store::open_sqlite(db, keyring)
        .await
        .with_context(|| format!("opening the store {}", db.display()))?;
    if store.list_access_keys().await?.is_empty() {
        let (info, secret) = store
            .create_access_key(
                "first admin key, created by rotd init",
                ADMIN_POLICY,
                &daemon.default_cmk,
            )
            .await?;
        let path = daemon.data_dir.join("admin-access-key.json");
        let doc = zeroize::Zeroizing::new(
            serde_json::to_vec_pretty(&json!({
                "AccessKeyId": info.id,
                "AccessKeySecret": secret.expose_str().expect("access key secrets are ASCII"),
            }))
            .expect("json"),
        );
        keyfile::write_private(&path, &doc)?;
        created.access_key = Some((info.id, path));
    }
    Ok((store, created))
}

pub async fn run(daemon: &DaemonConfig, keyring_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut daemon = daemon.clone();
    if let (KeyringSource::Credential(_), Some(path)) = (&daemon.keyring, keyring_file)
        && std::env::var_os("CREDENTIALS_DIRECTORY").is_none()
    {
        // Outside systemd the credential is the file LoadCredential= will read; make that file.
        daemon.keyring = KeyringSource::File(path.to_path_buf());
    }
    let daemon = &daemon;
    let (store, created) = ensure(daemon).await?;
    let line = |done: bool, what: &str| println!("{} {what}", if done { "created" } else { "exists " });
    line(
        created.data_dir,
        &format!("data directory {}", daemon.data_dir.display()),
    );
    line(
        created.keyring,
        &format!("keyring {}", keyfile::path_of(&daemon.keyring)?.display()),
    );
    line(
        created.store,
        &format!("store {}", super::db_path(daemon).display()),
    );
    line(
        created.tls_ca,
        &format!(
            "API CA certificate {} (clients trust this file)",
            super::api::tls_dir(daemon).join("ca.pem").display()
        ),
    );
    match &created.access_key {
        Some((id, path)) => {
            println!(
                "created first admin access key {id}; its secret is in {} (mode 0600)",
                path.display()
            )
        }
        None => println!("exists  access keys ({})", store.list_access_keys().await?.len()),
    }
    store.close().await;
    Ok(())
}
