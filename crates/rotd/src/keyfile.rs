//! Reading and writing the CMK keyring where it lives: a 0600 file, or a systemd credential under
//! `$CREDENTIALS_DIRECTORY`. rotd refuses a keyring file that group or others can read.
//!
//! The file is opened once (no symlink followed, no blocking on a FIFO) and every check is made on
//! that handle (`fstat`): a regular file, owned by rotd's user, mode without group or other bits; the
//! bytes are read from the same handle, so nothing can be swapped in between the check and the read.
//! Changing the keyring ([`update`]) holds an exclusive lock on `<file>.lock` across read, change
//! and replace, and writes through a temp file with a unique name, so two `rotd key rotate` at once
//! never lose a CMK version.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// The largest keyring file read: thousands of CMK versions fit; anything bigger is not a keyring.
const MAX_KEYRING_BYTES: u64 = 4 << 20;

pub fn load(source: &KeyringSource) -> anyhow::Result<Keyring> {
    let path = path_of(source)?;
    let bytes = read_checked(&path, matches!(source, KeyringSource::File(_)))?;
    Keyring::parse(&bytes).with_context(|| format!("keyring {}", path.display()))
}

/// Opens `path` once and checks the handle: a regular file (not a FIFO, device or symlink), not
/// larger than a keyring can be and, for a keyring file (`private`), owned by this user with no
/// group or other permission bits. systemd credentials are private to the service already; their
/// mode and owner are systemd's business.
fn read_checked(path: &Path, private: bool) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    let f = OpenOptions::new()
        .read(true)
        // O_NONBLOCK: opening a FIFO must not hang start-up; O_NOFOLLOW: the name itself is no symlink.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| {
            format!(
                "refusing to use the keyring: cannot open {} (a symlink is refused)",
                path.display()
            )
        })?;
    let meta = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !meta.file_type().is_file() {
        bail!(
            "refusing to use the keyring: {} is not a regular file",
            path.display()
        );
    }
    if meta.len() > MAX_KEYRING_BYTES {
        bail!(
            "refusing to use the keyring: {} is {} bytes, more than a keyring can be",
            path.display(),
            meta.len()
        );
    }
    if private {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "refusing to use the keyring: {} is accessible by group or others (mode {mode:04o}); run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
        // `/proc/self` is owned by the effective uid (no unsafe `geteuid` in a crate that forbids it).
        let me = fs::metadata("/proc/self")
            .map(|m| m.uid())
            .context("reading /proc/self")?;
        if meta.uid() != me {
            bail!(
                "refusing to use the keyring: {} belongs to uid {}, not to the user rotd runs as (uid {me})",
                path.display(),
                meta.uid()
            );
        }
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0)));
    (&f).take(MAX_KEYRING_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading keyring {}", path.display()))?;
    Ok(bytes)
}

/// Changes a keyring file under an exclusive lock: reads it, applies `change`, and replaces it
/// atomically, so concurrent changes are serialized and none is lost. Returns what `change` returned.
pub fn update<T>(path: &Path, change: impl FnOnce(&mut Keyring) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let _lock = lock(path)?;
    let mut keyring = load(&KeyringSource::File(path.to_owned()))?;
    let out = change(&mut keyring)?;
    replace(path, &keyring)?;
    Ok(out)
}

/// Takes the exclusive lock that serializes changes to the keyring at `path` (`<path>.lock`, 0600,
/// never removed: removing a lock file others may hold open breaks the lock).
fn lock(path: &Path) -> anyhow::Result<File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&lock_path)
        .with_context(|| format!("opening the keyring lock {}", lock_path.display()))?;
    f.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    Ok(f)
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

/// Replaces a keyring file atomically: write a 0600 temp file with a unique name beside it, fsync,
/// rename, fsync the dir. Callers that read, change and replace use [`update`], which holds the lock.
pub fn replace(path: &Path, keyring: &Keyring) -> anyhow::Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keyring".to_owned());
    let tmp = path.with_file_name(format!(
        ".{file_name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    create(&tmp, keyring)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("replacing keyring {}", path.display()));
    }
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
        create(&path, &Keyring::generate(rotd_core::Clock::system().now())).expect("create");
        assert_eq!(
            fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        load(&KeyringSource::File(path.clone())).expect("0600 loads");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = format!("{:#}", load(&KeyringSource::File(path.clone())).unwrap_err());
        assert!(e.contains("accessible by group or others (mode 0640)"), "{e}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(
            create(&path, &Keyring::generate(rotd_core::Clock::system().now())).is_err(),
            "never overwrites"
        );
    }

    #[test]
    fn replace_is_atomic_and_private() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keyring.json");
        let mut k = Keyring::generate(rotd_core::Clock::system().now());
        create(&path, &k).expect("create");
        k.rotate("default", rotd_core::Clock::system().now());
        replace(&path, &k).expect("replace");
        let back = load(&KeyringSource::File(path.clone())).expect("load");
        assert_eq!(back.list().len(), 2);
        assert_eq!(
            fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temp file left behind"
        );
    }

    #[test]
    fn a_symlink_a_fifo_or_a_directory_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("dir");
        let real = dir.path().join("real.json");
        create(&real, &Keyring::generate(rotd_core::Clock::system().now())).expect("create");
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let e = format!("{:#}", load(&KeyringSource::File(link)).unwrap_err());
        assert!(e.contains("a symlink is refused"), "{e}");
        let fifo = dir.path().join("fifo.json");
        let made = std::process::Command::new("mkfifo")
            .arg("-m")
            .arg("600")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success(), "mkfifo");
        // Opening a FIFO for reading would block until a writer comes; this returns at once.
        let e = format!("{:#}", load(&KeyringSource::File(fifo)).unwrap_err());
        assert!(e.contains("is not a regular file"), "{e}");
        let e = format!(
            "{:#}",
            load(&KeyringSource::File(dir.path().to_owned())).unwrap_err()
        );
        assert!(e.contains("is not a regular file"), "{e}");
    }

    #[test]
    fn concurrent_updates_lose_no_cmk_version() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keyring.json");
        create(&path, &Keyring::generate(rotd_core::Clock::system().now())).expect("create");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        update(&path, |k| {
                            // Widen the read-modify-write window, as a slow disk would.
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            Ok(k.rotate("default", rotd_core::Clock::system().now()))
                        })
                        .expect("update");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let back = load(&KeyringSource::File(path)).expect("load");
        let versions = back.list().iter().filter(|c| c.id == "default").count();
        assert_eq!(versions, 41, "1 + 8 × 5 rotations, none lost");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
