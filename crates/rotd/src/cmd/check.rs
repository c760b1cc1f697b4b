//! `rotd check`: validate every configuration file and report every error at once, then read every
//! secret file the configuration refers to the way `rotd serve` will (exists, regular file, no access
//! for group or others, at most 30,720 bytes), so a file `serve` would refuse is refused here first.

use std::path::{Path, PathBuf};

use rotd_config::{SecretRef, SecretSpec};

use crate::fail::Fail;

pub fn run(config: &Path, secrets_dir: Option<&Path>) -> anyhow::Result<()> {
    let loaded = match secrets_dir {
        Some(dir) => rotd_config::load_candidate(config, dir),
        None => rotd_config::load(config),
    };
    let cfg = match loaded {
        Ok(cfg) => cfg,
        Err(errors) => {
            let n = errors.0.len();
            return Err(Fail::usage(format!(
                "{errors}\n{n} error{} found",
                if n == 1 { "" } else { "s" }
            )));
        }
    };
    // Notes are not errors: the file is valid and used as it is, so they do not change the exit status.
    for spec in &cfg.secrets {
        for note in spec.notes() {
            println!("{}: note: {}: {note}", spec.file.display(), spec.name);
        }
    }
    let credentials = credentials_dir();
    let mut problems = Vec::new();
    let mut unchecked = 0;
    for spec in &cfg.secrets {
        for found in material(spec, credentials.as_deref()) {
            match found {
                Material::Unchecked { key, credential } => {
                    println!(
                        "{}: {key}: systemd credential {credential:?} not checked ($CREDENTIALS_DIRECTORY is not set; run under systemd to check it)",
                        spec.file.display()
                    );
                    unchecked += 1;
                }
                Material::Problem { key, message } => {
                    problems.push(format!("{}: {key}: {message}", spec.file.display()));
                }
            }
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        return Err(Fail::usage(format!(
            "{}\n{n} error{} found",
            problems.join("\n"),
            if n == 1 { "" } else { "s" }
        )));
    }
    println!(
        "{}: ok ({} secret{} declared in {}{})",
        config.display(),
        cfg.secrets.len(),
        if cfg.secrets.len() == 1 { "" } else { "s" },
        cfg.daemon.secrets_dir.display(),
        if unchecked > 0 {
            format!(
                "; {unchecked} credential reference{} not checked",
                if unchecked == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `$CREDENTIALS_DIRECTORY`, where systemd puts a service's credentials.
pub(crate) fn credentials_dir() -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from)
}

/// What reading one of a secret's material references found, when it is not fine.
pub(crate) enum Material {
    /// A file or credential `serve` would refuse.
    Problem { key: String, message: String },
    /// A systemd credential, not checked because `$CREDENTIALS_DIRECTORY` is not set.
    Unchecked { key: String, credential: String },
}

/// Reads every file and credential `spec` refers to the way `rotd serve` will, and returns what is
/// wrong or could not be checked. References to other rotd secrets live in the store and are not read.
pub(crate) fn material(spec: &SecretSpec, credentials: Option<&Path>) -> Vec<Material> {
    let mut out = Vec::new();
    for (key, r) in spec.material_refs() {
        match r {
            SecretRef::Secret { .. } => continue,
            SecretRef::Credential(name) if credentials.is_none() => {
                out.push(Material::Unchecked {
                    key,
                    credential: name.clone(),
                });
                continue;
            }
            SecretRef::File(_) | SecretRef::Credential(_) => {}
        }
        if let Err(e) = rotd_config::read_material_with(r, credentials) {
            out.push(Material::Problem {
                key,
                message: e.to_string(),
            });
        }
    }
    out
}
