//! `rotd serve`: the daemon's main loop.
//!
//! This stage of rotd loads the configuration, initializes a fresh installation, keeps declared secrets
//! in line with their files, purges secrets whose recovery window ended, and reloads the secrets
//! directory on SIGHUP. Rotation and the API plug into this loop in later stages.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rotd_config::{Config, LogConfig, LogFormat};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::fail::Fail;
use crate::reconcile;

/// How often secrets whose recovery window has ended are deleted for good.
const PURGE_EVERY: Duration = Duration::from_secs(60);

fn init_tracing(log: &LogConfig) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.level)
        .with_context(|| format!("log.level {:?} is not a valid filter", log.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        // journald stamps every line itself; a second timestamp is noise.
        LogFormat::Journald => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

fn load(config: &Path) -> Result<Config, rotd_config::ConfigErrors> {
    rotd_config::load(config)
}

pub async fn run(config: &Path) -> anyhow::Result<()> {
    let cfg = load(config).map_err(|e| Fail::usage(e.to_string()))?;
    init_tracing(&cfg.daemon.log)?;
    let (store, created) = super::init::ensure(&cfg.daemon).await?;
    if created.keyring {
        info!(keyring = %crate::keyfile::path_of(&cfg.daemon.keyring)?.display(), "Created a new keyring; back it up: without it nothing stored can be decrypted.");
    }
    if let Some((id, path)) = &created.access_key {
        info!(access_key_id = %id, file = %path.display(), "Created the first admin access key.");
    }
    info!(config = %config.display(), store = %super::db_path(&cfg.daemon).display(), secrets = cfg.secrets.len(), "rotd started.");

    reconcile::apply(&store, &cfg).await;
    purge(&store).await;

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut purge_tick = tokio::time::interval(PURGE_EVERY);
    purge_tick.tick().await;
    loop {
        tokio::select! {
            _ = term.recv() => { info!(signal = "SIGTERM", "Stopping."); break; }
            _ = int.recv() => { info!(signal = "SIGINT", "Stopping."); break; }
            _ = hup.recv() => match load(config) {
                Ok(next) => {
                    info!(secrets = next.secrets.len(), "Reloaded the configuration.");
                    reconcile::apply(&store, &next).await;
                }
                Err(errors) => {
                    for e in &errors.0 {
                        error!(error = %e, "Configuration error; keeping the previous configuration.");
                    }
                }
            },
            _ = purge_tick.tick() => purge(&store).await,
        }
    }
    store.close().await;
    info!("rotd stopped.");
    Ok(())
}

async fn purge(store: &rotd_store::Store) {
    match store.purge_expired(chrono::Utc::now()).await {
        Ok(names) => {
            for name in names {
                info!(secret = %name, "Deleted a secret whose recovery window ended.");
            }
        }
        Err(e) => warn!(error = %e, "Could not purge expired secrets; will retry."),
    }
}
