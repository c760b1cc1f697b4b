//! Reading and writing the CMK keyring where it lives: a 0600 file, or a systemd credential under
//! `$CREDENTIALS_DIRECTORY`. rotd refuses a keyring file that group or others can read.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rotd_config::KeyringSource;
use rotd_store::Keyring;

/// Where the keyring's bytes come from, resolved against the environment.
pub fn path_of(source: &KeyringSource) -> anyhow::Result<PathBuf> {
    Ok(match source {
        KeyringSource::File(p) => p.clone(),
        KeyringSource::Credential(name) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").with_context(|| {
                format!(
                    "the keyring is the systemd credential {name:?}, but $CREDENTIALS_DIRECTORY is not set \
                     (add LoadCredential={name}:/path/to/keyring.json to the unit)"
                )
            })?;
            Path::new(&dir).join(name)
        }
    })
}

/// Refuses files that group or others can read or write.
pub fn check_private(path: &Path) -> anyhow::Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} is accessible by group or others (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

pub fn load(source: &KeyringSource) -> anyhow::Result<Keyring> {
    let path = path_of(source)?;
    // systemd credentials are already private to the service; their mode is systemd's business.
    if matches!(source, KeyringSource::File(_)) {
        check_private(&path).context("refusing to use the keyring")?;
    }
    let bytes = zeroize::Zeroizing::new(
        fs::read(&path).with_context(|| format!("reading keyring {}", path.display()))?,
    );
    Keyring::parse(&bytes).with_context(|| format!("keyring {}", path.display()))
}

/// Writes a keyring to a new file (mode 0600), failing if the file exists.
pub fn create(path: &Path, keyring: &Keyring) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating keyring {}", path.display()))?;
    f.write_all(&keyring.to_bytes())?;
    f.sync_all()?;
    sync_dir(path)
}

/// Replaces a keyring file atomically: write a 0600 temp file beside it, fsync, rename, fsync the dir.
pub fn replace(path: &Path, keyring: &Keyring) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.new");
    let _ = fs::remove_file(&tmp);
    create(&tmp, keyring)?;
    fs::rename(&tmp, path).with_context(|| format!("replacing keyring {}", path.display()))?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Writes a small private file (0600), replacing any previous one.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_group_readable_keyring_and_accepts_0600() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keyring.json");
        create(&path, &Keyring::generate(chrono::Utc::now())).expect("create");
        assert_eq!(
            fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        load(&KeyringSource::File(path.clone())).expect("0600 loads");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = format!("{:#}", load(&KeyringSource::File(path.clone())).unwrap_err());
        assert!(e.contains("accessible by group or others (mode 0640)"), "{e}");
        assert!(
            create(&path, &Keyring::generate(chrono::Utc::now())).is_err(),
            "never overwrites"
        );
    }

    #[test]
    fn replace_is_atomic_and_private() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keyring.json");
        let mut k = Keyring::generate(chrono::Utc::now());
        create(&path, &k).expect("create");
        k.rotate("default", chrono::Utc::now());
        replace(&path, &k).expect("replace");
        let back = load(&KeyringSource::File(path.clone())).expect("load");
        assert_eq!(back.list().len(), 2);
        assert_eq!(
            fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temp file left behind"
        );
    }
}
