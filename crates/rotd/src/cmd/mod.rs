//! One module per command. Each takes the parsed CLI and the loaded configuration and returns
//! `anyhow::Result`; [`crate::fail::Fail`] carries a specific exit status.

mod api;
mod bulk;
mod check;
mod init;
mod key;
mod rotation;
pub(crate) mod secret;
mod serve;
mod store;

use std::path::Path;

use anyhow::Context;
use rotd_config::{DaemonConfig, StoreConfig};
use rotd_store::Store;

use crate::cli::{Cli, Command, SecretCmd};
pub use secret::new_version_id;

use crate::fail::Fail;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Check { secrets_dir } => check::run(&cli.config, secrets_dir.as_deref()),
        Command::Init { keyring_file } => {
            init::run(&load_daemon(&cli.config)?, keyring_file.as_deref()).await
        }
        Command::Serve => serve::run(&cli.config).await,
        Command::Secret(SecretCmd::CreateBulk {
            template,
            instances,
            out_dir,
            dry_run,
        }) => bulk::run(
            &load_daemon(&cli.config)?,
            cli.output,
            &bulk::Args {
                template,
                instances,
                out_dir: out_dir.as_deref(),
                dry_run: *dry_run,
            },
        ),
        Command::Secret(c) => {
            let daemon = load_daemon(&cli.config)?;
            let store = open_store(&daemon).await?;
            secret::run(c, cli.output, &daemon, &store).await
        }
        Command::Key(c) => key::run(c, cli.output, &load_daemon(&cli.config)?).await,
        Command::Rotate {
            name,
            version_id,
            no_wait,
            timeout,
        } => {
            let daemon = load_daemon(&cli.config)?;
            let store = open_store(&daemon).await?;
            rotation::rotate(&store, name, version_id.as_deref(), *no_wait, *timeout).await
        }
        Command::Plan => rotation::plan(&cli.config, cli.output).await,
        Command::Status => {
            let daemon = load_daemon(&cli.config)?;
            let store = open_store(&daemon).await?;
            rotation::status(&store, cli.output).await
        }
        Command::AccessKey(c) => {
            let daemon = load_daemon(&cli.config)?;
            let store = open_store(&daemon).await?;
            api::access_key(&store, &daemon, c, cli.output).await
        }
        Command::Tls(c) => api::tls(&load_daemon(&cli.config)?, c),
        Command::Audit(c) => api::audit(&load_daemon(&cli.config)?, c),
        Command::Store(c) => store::run(&load_daemon(&cli.config)?, c).await,
        Command::GenerateDocs { out_dir } => generate_docs(out_dir),
        Command::Rotation(c) => {
            let daemon = load_daemon(&cli.config)?;
            let store = open_store(&daemon).await?;
            rotation::control(&store, c, cli.output).await
        }
    }
}

/// Loads rotd.toml alone, turning configuration errors into exit status 64.
pub fn load_daemon(path: &Path) -> anyhow::Result<DaemonConfig> {
    rotd_config::load_daemon(path).map_err(|errors| Fail::usage(errors.to_string()))
}

pub fn db_path(daemon: &DaemonConfig) -> &Path {
    match &daemon.store {
        StoreConfig::Sqlite { path } => path,
    }
}

/// The man pages and shell completions, from the same clap definition the binary parses with, so they
/// cannot drift from it.
fn generate_docs(out_dir: &Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let man = out_dir.join("man");
    let completions = out_dir.join("completions");
    std::fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    std::fs::create_dir_all(&completions).with_context(|| format!("creating {}", completions.display()))?;
    clap_mangen::generate_to(Cli::command(), &man).context("writing the man pages")?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut Cli::command(), "rotd", &completions)
            .with_context(|| format!("writing the {shell} completions"))?;
    }
    println!("wrote {} and {}", man.display(), completions.display());
    Ok(())
}

/// Opens the store of an initialized installation.
pub async fn open_store(daemon: &DaemonConfig) -> anyhow::Result<Store> {
    let db = db_path(daemon);
    if !db.exists() {
        return Err(Fail::usage(format!(
            "no store at {}; run `rotd init -c {}` first",
            db.display(),
            daemon.file.display()
        )));
    }
    let keyring = crate::keyfile::load(&daemon.keyring)?;
    Store::open_sqlite(db, keyring)
        .await
        .with_context(|| format!("opening the store {}", db.display()))
}
