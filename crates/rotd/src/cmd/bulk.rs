//! `rotd secret create-bulk`: one secret file per instance from a template, all or none.
//!
//! rotd-config renders and validates every file (`rotd_config::bulk::render`); this module adds what
//! `rotd check` adds to loading, reading the files each secret refers to, and writes the result. A
//! file is written to a hidden temporary name in the output directory (which the loader ignores: it
//! does not end in `.toml`), synced, and then hard-linked to its real name: `link(2)` fails when the
//! name exists, so nothing is ever overwritten even if another process creates the file meanwhile,
//! and a daemon reloading on SIGHUP never sees a half-written file. If any file fails, every file
//! this run linked is removed again.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rotd_config::DaemonConfig;
use rotd_config::bulk::Rendered;
use serde_json::json;

use crate::cli::Output;
use crate::cmd::check::{Material, credentials_dir, material};
use crate::fail::Fail;
use crate::output::print_rows;

pub struct Args<'a> {
    pub template: &'a Path,
    pub instances: &'a Path,
    /// `None`: the daemon's secrets directory.
    pub out_dir: Option<&'a Path>,
    pub dry_run: bool,
}

pub fn run(daemon: &DaemonConfig, out: Output, args: &Args<'_>) -> anyhow::Result<()> {
    let out_dir = args.out_dir.unwrap_or(&daemon.secrets_dir);
    if !out_dir.is_dir() {
        return Err(Fail::usage(format!(
            "output directory {} does not exist or is not a directory",
            out_dir.display()
        )));
    }
    let rendered = rotd_config::bulk::render(daemon, args.template, args.instances, out_dir)
        .map_err(|errors| Fail::usage(with_count(errors.to_string(), errors.len())))?;

    // What `rotd check` adds to loading: every file a secret refers to is read as `serve` will.
    let credentials = credentials_dir();
    let mut problems = Vec::new();
    for r in &rendered {
        for found in material(&r.spec, credentials.as_deref()) {
            match found {
                Material::Problem { key, message } => problems.push(format!(
                    "{}: {key}: instance {}: {message}",
                    r.location(),
                    r.instance
                )),
                Material::Unchecked { key, credential } => eprintln!(
                    "{}: {key}: instance {}: systemd credential {credential:?} not checked ($CREDENTIALS_DIRECTORY is not set)",
                    r.location(),
                    r.instance
                ),
            }
        }
        for note in r.spec.notes() {
            eprintln!("{}: note: instance {}: {note}", r.location(), r.instance);
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        return Err(Fail::usage(with_count(problems.join("\n"), n)));
    }

    if !args.dry_run {
        let mode = FileMode::of_dir(out_dir)?;
        write_all(&rendered, mode)?;
    }
    let rows = rendered
        .iter()
        .map(|r| {
            vec![
                r.instance.clone(),
                r.spec.name.to_string(),
                r.spec.kind.to_string(),
                r.file.display().to_string(),
            ]
        })
        .collect();
    let json = rendered
        .iter()
        .map(|r| {
            json!({
                "Instance": r.instance,
                "SecretName": r.spec.name.as_str(),
                "SecretType": r.spec.kind.as_str(),
                "File": r.file.display().to_string(),
                "Written": !args.dry_run,
            })
        })
        .collect();
    print_rows(out, &["instance", "secret", "type", "file"], rows, json);
    let n = rendered.len();
    let files = if n == 1 { "file" } else { "files" };
    if args.dry_run {
        eprintln!("dry run: {n} secret {files} valid, nothing written");
    } else {
        eprintln!(
            "wrote {n} secret {files} to {}; reload the daemon (systemctl reload rotd, or SIGHUP) to manage them",
            out_dir.display()
        );
    }
    Ok(())
}

fn with_count(text: String, n: usize) -> String {
    format!(
        "{text}\n{n} error{} found; nothing was written",
        if n == 1 { "" } else { "s" }
    )
}

/// The permissions of the files written: whoever may read the directory may read them, as the loader
/// must (`serve` runs as its own user), and only the owner may write them. A directory `root:rotd
/// 0750` gives files `root:rotd 0640`; `0700` gives `0600`. Secret files hold no secret material, so
/// this discloses nothing the directory listing's readers should not see.
#[derive(Debug, Clone, Copy)]
struct FileMode {
    mode: u32,
    gid: u32,
}

impl FileMode {
    fn of_dir(dir: &Path) -> anyhow::Result<FileMode> {
        let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
        Ok(FileMode {
            mode: 0o600 | (meta.mode() & 0o044),
            gid: meta.gid(),
        })
    }
}

/// Writes every file or none. Three passes: every file to its temporary name, then each synced (after
/// all are written, so the file system can flush them together), then each linked to its name. On any
/// failure the names this run linked are removed again; the temporary names never stay.
fn write_all(rendered: &[Rendered], mode: FileMode) -> anyhow::Result<()> {
    let pid = std::process::id();
    let temps: Vec<PathBuf> = rendered
        .iter()
        .map(|r| {
            let name = r.file.file_name().map(|n| n.to_string_lossy().into_owned());
            r.file
                .with_file_name(format!(".{}.create-bulk-{pid}", name.unwrap_or_default()))
        })
        .collect();
    let mut created: Vec<&Path> = Vec::new();
    let mut linked: Vec<&Path> = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for (r, tmp) in rendered.iter().zip(&temps) {
            write_temp(tmp, &r.text, mode)?;
            created.push(tmp);
        }
        for tmp in &temps {
            File::open(tmp)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", tmp.display()))?;
        }
        for (r, tmp) in rendered.iter().zip(&temps) {
            std::fs::hard_link(tmp, &r.file).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Fail::data(format!(
                        "{} appeared while create-bulk was writing; nothing was written",
                        r.file.display()
                    ))
                } else {
                    anyhow::Error::new(e).context(format!("writing {}", r.file.display()))
                }
            })?;
            linked.push(&r.file);
        }
        Ok(())
    })();
    for tmp in created {
        let _ = std::fs::remove_file(tmp);
    }
    if result.is_err() {
        for done in linked.iter().rev() {
            // Best effort; the run fails either way, and a file left behind is named.
            if let Err(rm) = std::fs::remove_file(done) {
                eprintln!("error: could not remove {} again: {rm}", done.display());
            }
        }
    }
    result?;
    if let Some(dir) = rendered.first().and_then(|r| r.file.parent()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(())
}

/// Creates `tmp` (never an existing file) with `mode` and the directory's group, and writes `text`.
fn write_temp(tmp: &Path, text: &str, mode: FileMode) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode.mode)
        .open(tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    // The umask (077, set in main) narrowed the mode above; and a new file takes the process's
    // group, not the directory's.
    std::os::unix::fs::fchown(&f, None, Some(mode.gid))
        .with_context(|| format!("giving {} the group of its directory", tmp.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode.mode))
        .with_context(|| format!("setting the mode of {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(dir: &Path, names: &[&str]) -> Vec<Rendered> {
        let cfg_dir = dir.join("cfg");
        std::fs::create_dir_all(cfg_dir.join("secrets.d")).expect("mkdir");
        std::fs::write(cfg_dir.join("rotd.toml"), "").expect("rotd.toml");
        std::fs::write(
            cfg_dir.join("t.toml"),
            "name = \"t/{instance}\"\ntype = \"Generic\"\n",
        )
        .expect("t");
        let list: String = names
            .iter()
            .map(|n| format!("[[instance]]\ninstance = \"{n}\"\n"))
            .collect();
        std::fs::write(cfg_dir.join("i.toml"), list).expect("i");
        let daemon = rotd_config::load_daemon(&cfg_dir.join("rotd.toml")).expect("daemon");
        let out = dir.join("out");
        std::fs::create_dir_all(&out).expect("out");
        rotd_config::bulk::render(&daemon, &cfg_dir.join("t.toml"), &cfg_dir.join("i.toml"), &out)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failure_midway_removes_what_this_run_wrote() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let files = rendered(tmp.path(), &["a", "b", "c"]);
        // "c.toml" appears after validation (another process), so the third write fails.
        std::fs::write(tmp.path().join("out/c.toml"), "someone else's").expect("c");
        let mode = FileMode {
            mode: 0o640,
            gid: FileMode::of_dir(tmp.path()).expect("mode").gid,
        };
        let err = write_all(&files, mode).expect_err("refused");
        assert_eq!(
            err.downcast_ref::<Fail>().map(|f| f.code),
            Some(crate::fail::EX_DATAERR),
            "{err:#}"
        );
        assert_eq!(
            listing(&tmp.path().join("out")),
            vec!["c.toml"],
            "a and b removed, no temporary left"
        );
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("out/c.toml")).expect("c"),
            "someone else's",
            "never overwritten"
        );
    }

    #[test]
    fn files_get_the_directory_s_read_bits_and_group() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let files = rendered(tmp.path(), &["a"]);
        let out = tmp.path().join("out");
        for (dir_mode, file_mode) in [(0o750, 0o640), (0o700, 0o600), (0o755, 0o644)] {
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(dir_mode)).expect("chmod");
            write_all(&files, FileMode::of_dir(&out).expect("mode")).expect("written");
            let meta = std::fs::metadata(out.join("a.toml")).expect("meta");
            assert_eq!(meta.mode() & 0o777, file_mode, "directory {dir_mode:o}");
            assert_eq!(meta.gid(), std::fs::metadata(&out).expect("dir").gid());
            std::fs::remove_file(out.join("a.toml")).expect("rm");
        }
    }
}
