//! Reading the secret material a [`SecretRef`] names. This is the one place in the crate that opens
//! secret files; loading the configuration never does, so `rotd check` works on a machine that does
//! not hold the secrets.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rotd_core::{MAX_VALUE_BYTES, Secret, SecretName};
use thiserror::Error;

use crate::error::io_message;
use crate::secret_ref::{SecretRef, check_credential_name};

/// Why secret material could not be read. Messages name the file or credential, never its content.
#[derive(Debug, Error)]
pub enum MaterialError {
    /// The reference points at another rotd secret; the caller resolves it against the store.
    #[error("secret reference {name} must be resolved from the store")]
    SecretReference { name: SecretName, field: Option<String> },
    #[error(
        "credential {name}: $CREDENTIALS_DIRECTORY is not set; run rotd under systemd with LoadCredential={name}:<path>"
    )]
    NoCredentialsDirectory { name: String },
    #[error("credential {name}: {reason}")]
    BadCredentialName { name: String, reason: String },
    #[error("cannot read {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{} is not a regular file", path.display())]
    NotRegularFile { path: PathBuf },
    #[error("{} is {access} by group or others (mode {mode:04o}); chmod 600 it", path.display())]
    TooOpen {
        path: PathBuf,
        mode: u32,
        access: &'static str,
    },
    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: usize },
}

/// Reads the material behind a file or credential reference, looking up `$CREDENTIALS_DIRECTORY`
/// in the process environment.
pub fn read_material(r: &SecretRef) -> Result<Secret, MaterialError> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    read_material_with(r, dir.as_deref())
}

/// [`read_material`] with the credentials directory passed in, so tests need not touch the
/// environment.
///
/// Files (and credentials) must be regular files with no permission bits for group or others. One
/// trailing newline is removed, because editors and `echo` add one that is not part of the secret.
pub fn read_material_with(r: &SecretRef, credentials_dir: Option<&Path>) -> Result<Secret, MaterialError> {
    match r {
        SecretRef::File(path) => read_secret_file(path),
        SecretRef::Credential(name) => {
            check_credential_name(name).map_err(|reason| MaterialError::BadCredentialName {
                name: name.clone(),
                reason,
            })?;
            let dir = credentials_dir
                .ok_or_else(|| MaterialError::NoCredentialsDirectory { name: name.clone() })?;
            read_secret_file(&dir.join(name))
        }
        SecretRef::Secret { name, field } => Err(MaterialError::SecretReference {
            name: name.clone(),
            field: field.clone(),
        }),
    }
}

fn read_secret_file(path: &Path) -> Result<Secret, MaterialError> {
    let io = |e: std::io::Error| MaterialError::Io {
        path: path.to_owned(),
        message: io_message(&e),
    };
    // O_NONBLOCK keeps a FIFO planted at the path from blocking the daemon; the checks below then
    // run on the opened handle, so the file cannot be swapped between check and read.
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(MaterialError::NotRegularFile {
            path: path.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(MaterialError::TooOpen {
            path: path.to_owned(),
            mode,
            access: if mode & 0o044 != 0 {
                "readable"
            } else {
                "writable or executable"
            },
        });
    }
    // One byte of slack for the trailing newline that is stripped below.
    let limit = MAX_VALUE_BYTES + 1;
    let mut buf = presized_buffer(meta.len());
    file.take(limit as u64 + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() > limit {
        return Err(MaterialError::TooLarge {
            path: path.to_owned(),
            limit: MAX_VALUE_BYTES,
        });
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(Secret::new(buf))
}

/// A buffer sized up front so that reading does not reallocate and leave copies of the secret behind
/// in freed memory, where [`Secret`]'s zeroize-on-drop cannot reach them.
fn presized_buffer(len: u64) -> Vec<u8> {
    let cap = usize::try_from(len)
        .unwrap_or(usize::MAX)
        .min(MAX_VALUE_BYTES + 2);
    Vec::with_capacity(cap + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, content: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, content).expect("write test file");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod test file");
        p
    }

    const SECRET: &str = "hunter2-do-not-print";

    #[test]
    fn reads_a_private_file_and_strips_one_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "pw", format!("{SECRET}\n").as_bytes(), 0o600);
        let s = read_material_with(&SecretRef::File(p), None).expect("readable");
        assert_eq!(s.expose_str(), Some(SECRET));

        let p = write(dir.path(), "pw2", b"two\n\n", 0o400);
        let s = read_material_with(&SecretRef::File(p), None).expect("readable");
        assert_eq!(s.expose_str(), Some("two\n"), "only one newline is stripped");
    }

    #[test]
    fn refuses_group_or_world_access_without_leaking_the_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "pw", SECRET.as_bytes(), 0o644);
        let e = read_material_with(&SecretRef::File(p.clone()), None).expect_err("0644 refused");
        let msg = e.to_string();
        assert_eq!(
            msg,
            format!(
                "{} is readable by group or others (mode 0644); chmod 600 it",
                p.display()
            )
        );
        assert!(!msg.contains(SECRET));
        assert!(!format!("{e:?}").contains(SECRET));

        let p = write(dir.path(), "pw-w", SECRET.as_bytes(), 0o620);
        let e = read_material_with(&SecretRef::File(p), None).expect_err("0620 refused");
        assert!(
            e.to_string()
                .contains("writable or executable by group or others (mode 0620)")
        );
    }

    #[test]
    fn no_error_contains_the_file_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = SECRET.repeat(MAX_VALUE_BYTES / SECRET.len() + 2);
        let cases = [
            write(dir.path(), "open", SECRET.as_bytes(), 0o604),
            write(dir.path(), "group", SECRET.as_bytes(), 0o640),
            write(dir.path(), "big", big.as_bytes(), 0o600),
        ];
        for p in cases {
            let e = read_material_with(&SecretRef::File(p), None).expect_err("refused");
            assert!(!e.to_string().contains(SECRET), "{e}");
            assert!(!format!("{e:?}").contains(SECRET), "{e:?}");
        }
    }

    #[test]
    fn refuses_directories_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e =
            read_material_with(&SecretRef::File(dir.path().to_owned()), None).expect_err("directory refused");
        assert!(matches!(e, MaterialError::NotRegularFile { .. }), "{e}");
        let missing = dir.path().join("missing");
        let e = read_material_with(&SecretRef::File(missing), None).expect_err("missing");
        assert!(e.to_string().contains("no such file or directory"), "{e}");
    }

    #[test]
    fn refuses_oversized_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "big", &vec![b'a'; MAX_VALUE_BYTES + 2], 0o600);
        let e = read_material_with(&SecretRef::File(p), None).expect_err("too large");
        assert!(matches!(e, MaterialError::TooLarge { .. }), "{e}");
        let p = write(dir.path(), "max", &vec![b'a'; MAX_VALUE_BYTES], 0o600);
        assert_eq!(
            read_material_with(&SecretRef::File(p), None)
                .expect("at the limit")
                .len(),
            MAX_VALUE_BYTES
        );
    }

    #[test]
    fn credentials_come_from_the_injected_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "db-admin", SECRET.as_bytes(), 0o400);
        let r = SecretRef::Credential("db-admin".into());
        let s = read_material_with(&r, Some(dir.path())).expect("credential");
        assert_eq!(s.expose_str(), Some(SECRET));

        let e = read_material_with(&r, None).expect_err("no credentials directory");
        assert!(
            e.to_string()
                .starts_with("credential db-admin: $CREDENTIALS_DIRECTORY is not set"),
            "{e}"
        );

        let bad = SecretRef::Credential("../etc/shadow".into());
        assert!(matches!(
            read_material_with(&bad, Some(dir.path())),
            Err(MaterialError::BadCredentialName { .. })
        ));
    }

    #[test]
    fn secret_references_are_left_to_the_caller() {
        let r = SecretRef::Secret {
            name: SecretName::parse("app/db").expect("valid name"),
            field: Some("AccountPassword".into()),
        };
        let e = read_material_with(&r, None).expect_err("not readable here");
        assert!(matches!(e, MaterialError::SecretReference { .. }));
    }
}
