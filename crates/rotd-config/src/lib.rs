//! rotd-config is the `rotd` binary's configuration loader, and only the binary depends on it. It reads
//! the daemon's `rotd.toml` and one TOML file per managed secret under `secrets.d/`, and turns them
//! into typed, validated structures built from rotd-core's vocabulary.
//!
//! Loading is strict and happens in three steps: TOML is deserialized into raw structs that reject
//! unknown keys; `validate()` checks every value and collects *all* problems of *all* files, each with
//! `file:line:col` taken from the spans kept on the raw fields; the result is typed structs whose
//! defaults are already applied. Secret material is never written in these files: a file, a systemd
//! credential or another rotd secret is named instead ([`SecretRef`]), and only [`read_material`]
//! ever opens such a file, so loading works on a machine that holds none of the secrets.
//!
//! [`bulk`] renders a template once per instance for `rotd secret create-bulk` and loads each
//! rendering with the same code, so a file it accepts is one `rotd check` accepts.
//!
//! The reference for every key is `config/README.md`.

pub mod bulk;
mod check;
mod daemon;
mod error;
mod material;
mod secret_ref;
mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rotd_core::SecretName;

pub use daemon::{
    AdminConfig, ApiConfig, DEFAULT_ADMIN_LISTEN, DEFAULT_API_LISTEN, DaemonConfig, KeyringSource, LogConfig,
    LogFormat, RotationConfig, StoreConfig,
};
pub use error::{ConfigError, ConfigErrors};
pub use material::{MaterialError, read_material, read_material_with};
pub use secret_ref::SecretRef;
pub use spec::{
    AccountMode, Accounts, DbEngine, DbPrivilege, DbSpec, DbTls, EcsCredential, EcsSpec, Endpoint, ExecSpec,
    GenericSpec, HookSpec, Provisioning, RamSpec, RedisPersist, RedisPrivilege, RedisSpec, SecretSpec,
    SshKeyType, Target, UNTIL_NEXT_ROTATION,
};

use error::{ConfigError as Error, Diag, Source, io_error, io_message};

/// The whole configuration: the daemon file and every secret file, in file-name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub secrets: Vec<SecretSpec>,
}

/// Loads `rotd.toml` alone, for commands that do not need the secrets (e.g. `rotd init`).
pub fn load_daemon(path: &Path) -> Result<DaemonConfig, ConfigErrors> {
    daemon::load(path).map(|d| d.config).map_err(ConfigErrors)
}

/// Loads `rotd.toml` and every `*.toml` file in its secrets directory. When `rotd.toml` parses, every
/// secret file is loaded even if earlier ones fail, and the error lists every problem found.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let daemon = daemon::load(path).map_err(ConfigErrors)?;
    let files = secret_files(&daemon).map_err(|e| ConfigErrors(vec![e]))?;
    let texts = files.into_iter().map(|file| {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| io_error(&file, "(file)", format!("cannot read: {}", io_message(&e))));
        (file, text)
    });
    load_secrets(daemon, texts)
}

/// [`load`] with the secret files of `secrets_dir` instead of the directory rotd.toml names: for
/// `rotd check --secrets-dir`, which validates a candidate directory before it is moved into place.
/// Relative paths in the secret files still resolve against rotd.toml's directory, as they will once the
/// files are in place.
pub fn load_candidate(path: &Path, secrets_dir: &Path) -> Result<Config, ConfigErrors> {
    let mut daemon = daemon::load(path).map_err(ConfigErrors)?;
    daemon.config.secrets_dir = secrets_dir.to_owned();
    daemon.secrets_dir_span = None;
    let files = secret_files(&daemon).map_err(|e| ConfigErrors(vec![e]))?;
    let texts = files.into_iter().map(|file| {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| io_error(&file, "(file)", format!("cannot read: {}", io_message(&e))));
        (file, text)
    });
    load_secrets(daemon, texts)
}

/// [`load`] on texts instead of files, for the fuzz targets in `fuzz/` (not an API): `daemon_file` is
/// where `rotd.toml` would be (an absolute path) and `secrets` are the secret files as (path, text), in
/// the order `load` would read them. Nothing is read from the file system.
#[doc(hidden)]
pub fn load_from_text(
    daemon_file: &Path,
    daemon_text: &str,
    secrets: &[(PathBuf, String)],
) -> Result<Config, ConfigErrors> {
    let daemon = daemon::from_text(daemon_file.to_owned(), daemon_text.to_owned()).map_err(ConfigErrors)?;
    load_secrets(
        daemon,
        secrets
            .iter()
            .map(|(path, text)| (path.clone(), Ok(text.clone()))),
    )
}

/// Validates every secret file against a loaded daemon file. Every file is validated even if earlier
/// ones fail, and the error lists every problem found.
fn load_secrets(
    daemon: daemon::LoadedDaemon,
    files: impl Iterator<Item = (PathBuf, Result<String, Error>)>,
) -> Result<Config, ConfigErrors> {
    let ctx = spec::Context {
        base: daemon.config.config_dir(),
        default_cmk: &daemon.config.default_cmk,
    };
    let mut errors = Vec::new();
    let mut secrets = Vec::new();
    let mut seen = HashMap::new();
    for (file, text) in files {
        match text
            .map_err(|e| vec![e])
            .and_then(|text| load_secret(&file, text, &ctx, &mut seen))
        {
            Ok(spec) => secrets.push(spec),
            Err(mut e) => {
                e.sort_by_key(|e| (e.line, e.col));
                errors.extend(e);
            }
        }
    }
    if errors.is_empty() {
        Ok(Config {
            daemon: daemon.config,
            secrets,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The `*.toml` files of the secrets directory, sorted by name. A missing directory is reported on
/// the `secrets_dir` key of rotd.toml (or its first line, when the default was used).
fn secret_files(daemon: &daemon::LoadedDaemon) -> Result<Vec<PathBuf>, Error> {
    let dir = &daemon.config.secrets_dir;
    let fail = |message: String| {
        let span = daemon.secrets_dir_span.clone().unwrap_or(0..0);
        daemon.source.error_at(span, "secrets_dir", message)
    };
    secret_files_in(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail(format!("secrets directory {} does not exist", dir.display())),
        _ => fail(format!(
            "cannot read secrets directory {}: {}",
            dir.display(),
            io_message(&e)
        )),
    })
}

/// The files of `dir` that are secret files, sorted by name: regular files (or links to them) whose
/// name ends in `.toml`. Editors' backup files and subdirectories are ignored.
fn secret_files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn load_secret(
    path: &Path,
    text: String,
    ctx: &spec::Context<'_>,
    seen: &mut HashMap<SecretName, PathBuf>,
) -> Result<SecretSpec, Vec<Error>> {
    let source = Source::new(path.to_owned(), text);
    let raw: spec::RawSecret = source.parse()?;
    let mut d = Diag::new(&source);
    // Duplicates are checked on the raw name so that a second file is flagged even when something
    // else in it is wrong too.
    if let Some(n) = &raw.name
        && let Ok(name) = SecretName::parse(n.get_ref().as_str())
    {
        match seen.get(&name) {
            Some(first) => d.error(
                n.span(),
                "name",
                format!("secret {name} is already declared in {}", first.display()),
            ),
            None => {
                seen.insert(name, path.to_owned());
            }
        }
    }
    let spec = spec::validate(&mut d, &raw, path, ctx);
    match spec {
        Some(spec) if !d.has_errors() => Ok(spec),
        _ => Err(d.errors),
    }
}
