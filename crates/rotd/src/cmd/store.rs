//! `rotd store backup` and `rotd store restore`: an online, consistent copy of the SQLite store, and
//! putting one back once it has been checked against the keyring in use.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rotd_config::DaemonConfig;

use crate::cli::StoreCmd;
use crate::fail::Fail;

pub async fn run(daemon: &DaemonConfig, cmd: &StoreCmd) -> anyhow::Result<()> {
    match cmd {
        StoreCmd::Backup { file } => backup(daemon, file).await,
        StoreCmd::Restore { file } => restore(daemon, file).await,
    }
}

async fn backup(daemon: &DaemonConfig, file: &Path) -> anyhow::Result<()> {
    if file.exists() || file.is_symlink() {
        return Err(Fail::usage(format!(
            "{} already exists; a backup is written to a new file",
            file.display()
        )));
    }
    let store = super::open_store(daemon).await?;
    let result = store.backup(file).await;
    store.close().await;
    result.with_context(|| format!("writing the backup {}", file.display()))?;
    // rotd runs with umask 077, so SQLite created it 0600; make sure of it whatever the umask was.
    std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", file.display()))?;
    let keyring = match crate::keyfile::path_of(&daemon.keyring) {
        Ok(p) => p.display().to_string(),
        Err(_) => "the keyring credential".to_owned(),
    };
    println!(
        "wrote {} (values encrypted; restore with `rotd store restore`)",
        file.display()
    );
    println!(
        "note: the keyring ({keyring}) is not in the backup; without it nothing in the backup can be decrypted: back it up separately"
    );
    Ok(())
}

async fn restore(daemon: &DaemonConfig, file: &Path) -> anyhow::Result<()> {
    let db = super::db_path(daemon).to_owned();
    if !file.is_file() {
        return Err(Fail::usage(format!("{} is not a backup file", file.display())));
    }
    // A running daemon holds the database open; replacing it under the daemon would lose what it writes.
    if db.exists() {
        let current = super::open_store(daemon).await?;
        let alive = super::rotation::daemon_alive(&current).await;
        current.close().await;
        if alive? {
            return Err(Fail {
                code: 69,
                message: "rotd serve is running; stop it (systemctl stop rotd) before restoring".into(),
            }
            .into());
        }
    }
    // Check a private copy, so the backup file itself is never changed (opening runs migrations).
    let dir = db
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let staged = sibling(&db, "restore-tmp");
    remove_db(&staged);
    std::fs::copy(file, &staged).with_context(|| format!("copying {}", file.display()))?;
    let checked = async {
        let keyring = crate::keyfile::load(&daemon.keyring)?;
        let store = rotd_store::Store::open_sqlite(&staged, keyring)
            .await
            .context("opening the backup")?;
        let n = store.verify_all().await;
        store.close().await;
        n.context("checking the backup with the current keyring")
    }
    .await;
    let versions = match checked {
        Ok(n) => n,
        Err(e) => {
            remove_db(&staged);
            return Err(Fail::data(format!("{e:#}; nothing was changed")));
        }
    };
    // Each database moves with its WAL and shared-memory files, so neither copy can lose what only its
    // WAL holds.
    let kept = if db.exists() {
        let stamp = rotd_core::Clock::system()
            .now()
            .format("%Y%m%dT%H%M%SZ")
            .to_string();
        let kept = sibling(&db, &format!("before-restore-{stamp}"));
        move_db(&db, &kept).with_context(|| format!("moving {} aside", db.display()))?;
        Some(kept)
    } else {
        None
    };
    move_db(&staged, &db).with_context(|| format!("putting the backup in place at {}", db.display()))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    println!(
        "restored {} from {} ({versions} version{} checked)",
        db.display(),
        file.display(),
        if versions == 1 { "" } else { "s" }
    );
    if let Some(kept) = kept {
        println!("the previous store is kept as {}", kept.display());
    }
    Ok(())
}

/// `<db>.<suffix>` in the same directory.
fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".");
    p.push(suffix);
    PathBuf::from(p)
}

/// A database file's companions: itself, its WAL and its shared-memory file.
fn files_of(db: &Path) -> [PathBuf; 3] {
    [db.to_owned(), sibling_dash(db, "wal"), sibling_dash(db, "shm")]
}

fn sibling_dash(db: &Path, suffix: &str) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-");
    p.push(suffix);
    PathBuf::from(p)
}

/// Renames a database and whichever of its WAL and shared-memory files exist.
fn move_db(from: &Path, to: &Path) -> std::io::Result<()> {
    for (a, b) in files_of(from).iter().zip(files_of(to)) {
        if a.exists() {
            std::fs::rename(a, b)?;
        }
    }
    Ok(())
}

fn remove_db(db: &Path) {
    for f in files_of(db) {
        let _ = std::fs::remove_file(f);
    }
}
