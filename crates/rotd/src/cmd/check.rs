//! `rotd check`: validate every configuration file and report every error at once, then read every
//! secret file the configuration refers to the way `rotd serve` will (exists, regular file, no access
//! for group or others, at most 30,720 bytes), so a file `serve` would refuse is refused here first.

use std::path::Path;

use rotd_config::SecretRef;

use crate::fail::Fail;

pub fn run(config: &Path) -> anyhow::Result<()> {
    let cfg = match rotd_config::load(config) {
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
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    let mut problems = Vec::new();
    let mut unchecked = 0;
    for spec in &cfg.secrets {
        for (key, r) in spec.material_refs() {
            match r {
                // Another rotd secret: it lives in the store, which `check` does not open.
                SecretRef::Secret { .. } => continue,
                SecretRef::Credential(name) if credentials.is_none() => {
                    println!(
                        "{}: {key}: systemd credential {name:?} not checked ($CREDENTIALS_DIRECTORY is not set; run under systemd to check it)",
                        spec.file.display()
                    );
                    unchecked += 1;
                    continue;
                }
                SecretRef::File(_) | SecretRef::Credential(_) => {}
            }
            if let Err(e) = rotd_config::read_material_with(r, credentials.as_deref()) {
                problems.push(format!("{}: {key}: {}", spec.file.display(), e));
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
