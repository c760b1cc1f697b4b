//! `rotd check`: validate every configuration file and report every error at once.

use std::path::Path;

use crate::fail::Fail;

pub fn run(config: &Path) -> anyhow::Result<()> {
    match rotd_config::load(config) {
        Ok(cfg) => {
            // Notes are not errors: the file is valid and used as it is, so the exit status stays 0.
            for spec in &cfg.secrets {
                for note in spec.notes() {
                    println!("{}: note: {}: {note}", spec.file.display(), spec.name);
                }
            }
            println!(
                "{}: ok ({} secret{} declared in {})",
                config.display(),
                cfg.secrets.len(),
                if cfg.secrets.len() == 1 { "" } else { "s" },
                cfg.daemon.secrets_dir.display()
            );
            Ok(())
        }
        Err(errors) => {
            let n = errors.0.len();
            Err(Fail::usage(format!(
                "{errors}\n{n} error{} found",
                if n == 1 { "" } else { "s" }
            )))
        }
    }
}
