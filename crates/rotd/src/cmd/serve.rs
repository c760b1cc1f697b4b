//! `rotd serve`: the daemon's main loop.
//!
//! Start-up: load the configuration (exit 64 if invalid), initialize a fresh installation, bring
//! declared secrets in line with their files, start the rotation engine (which first rolls forward any
//! rotation a previous process left unfinished) and the admin listener (`/metrics`, `/healthz`,
//! `/readyz`). SIGHUP reloads the secrets directory and the keyring (as does a reload request from
//! `rotd key rotate`/`rewrap`, polled every second through the store); SIGTERM/SIGINT stop new work, let rotations in
//! progress finish (up to 30 s; anything cut off resumes from the journal next time) and exit 0.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rotd_config::{Config, LogConfig, LogFormat};
use rotd_engine::{Engine, Metrics};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::fail::Fail;
use crate::{reconcile, wiring};

/// How often secrets whose recovery window has ended are deleted for good.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// How long a stop waits for rotations in progress.
const DRAIN: Duration = Duration::from_secs(30);
/// How often the store is asked whether the CLI wants the keyring reloaded.
const KEYRING_POLL: Duration = Duration::from_secs(1);

fn init_tracing(log: &LogConfig) -> anyhow::Result<()> {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_new(&log.level)
        .with_context(|| format!("log.level {:?} is not a valid filter", log.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Journald => match journald_layer() {
            Ok(journald) => {
                // A fresh filter: the builder above owns the first one.
                let filter = tracing_subscriber::EnvFilter::try_new(&log.level)
                    .with_context(|| format!("log.level {:?} is not a valid filter", log.level))?;
                tracing_subscriber::registry()
                    .with(journald.with_filter(filter))
                    .try_init()
                    .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))?;
                return Ok(());
            }
            Err(e) => {
                // No journal here (a container, a shell): text lines on stderr, with timestamps since
                // nothing else adds them, and say why.
                let r = builder.with_ansi(false).try_init();
                warn!(error = %e, "log.format is journald but the journal socket cannot be opened; logging text to stderr.");
                r
            }
        },
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

/// Native journal protocol: each field is its own journal field (`SECRET=`, `ROTATION_ID=`, `ERROR=`,
/// with the span's `secret` and `rotation_id` on every line logged inside it), `SYSLOG_IDENTIFIER=rotd`,
/// and priorities that match the level (INFO is 6, not the crate's default 5).
fn journald_layer() -> std::io::Result<tracing_journald::Layer> {
    use tracing_journald::{Priority, PriorityMappings};
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_syslog_identifier("rotd".to_owned())
        .with_priority_mappings(PriorityMappings {
            error: Priority::Error,
            warn: Priority::Warning,
            info: Priority::Informational,
            debug: Priority::Debug,
            trace: Priority::Debug,
        }))
}

/// Applies a configuration: declared secrets into the store, rotatable ones into the engine.
async fn apply(store: &rotd_store::Store, engine: &Engine, cfg: &Config) {
    reconcile::apply(store, cfg).await;
    let (entries, skipped) = wiring::entries(store, cfg).await;
    for (name, reason) in skipped {
        warn!(secret = %name, reason = %reason, "Not rotated.");
    }
    engine.set_secrets(entries).await;
}

pub async fn run(config: &Path) -> anyhow::Result<()> {
    let cfg = rotd_config::load(config).map_err(|e| Fail::usage(e.to_string()))?;
    init_tracing(&cfg.daemon.log)?;
    // Installed first, so a stop during a long start-up (thousands of declared secrets) is handled once
    // start-up finishes instead of killing the process.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (store, created) = super::init::ensure(&cfg.daemon).await?;
    if created.keyring {
        info!(keyring = %crate::keyfile::path_of(&cfg.daemon.keyring)?.display(), "Created a new keyring; back it up: without it nothing stored can be decrypted.");
    }
    if let Some((id, path)) = &created.access_key {
        info!(access_key_id = %id, file = %path.display(), "Created the first admin access key.");
    }
    match store.keyring_reload().await {
        Ok(state) => reload_keyring(&store, &cfg.daemon, state.requested).await,
        Err(e) => warn!(error = %e, "Could not read the keyring reload state."),
    }
    let admin = rotd_api::admin::bind(cfg.daemon.admin.listen)
        .await
        .with_context(|| format!("binding the admin listener on {}", cfg.daemon.admin.listen))?;
    let api_listener = std::net::TcpListener::bind(cfg.daemon.api.listen)
        .with_context(|| format!("binding the API listener on {}", cfg.daemon.api.listen))?;
    let api_addr = api_listener.local_addr()?;
    let tls_dir = super::api::tls_dir(&cfg.daemon);
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(
        rotd_api::tls::server_config(&tls_dir).context("loading the API's TLS certificate")?,
    );
    let audit = rotd_api::kms::AuditLog::open(&super::api::audit_path(&cfg.daemon))
        .context("opening the audit log")?;
    // Kept to reopen the file on SIGHUP (logrotate).
    let audit_file = audit.clone();

    // The one Prometheus registry: the binary owns it, each crate registers its own series into it.
    let mut registry = prometheus_client::registry::Registry::default();
    register_build_info(&mut registry);
    let reload = ReloadMetrics::register(&mut registry);
    reload.certificates(&tls_dir);
    let metrics = Metrics::register(&mut registry);
    let engine = Engine::new(store.clone(), wiring::engine_config(&cfg.daemon), metrics.clone());
    let rotatable = {
        let engine = engine.clone();
        std::sync::Arc::new(move |name: &str| engine.manages(name)) as rotd_api::kms::Rotatable
    };
    let api_state = rotd_api::kms::ApiState::new(
        store.clone(),
        audit,
        rotd_api::kms::ApiConfig {
            default_cmk: cfg.daemon.default_cmk.clone(),
            limits: rotd_api::kms::Limits {
                header_timeout: cfg.daemon.api.header_timeout,
                body_timeout: cfg.daemon.api.body_timeout,
                max_connections: cfg.daemon.api.max_connections,
            },
            per_source: rotd_api::kms::RateLimit {
                per_second: f64::from(cfg.daemon.api.per_source_rate),
                burst: f64::from(cfg.daemon.api.per_source_burst),
            },
            trusted_proxies: cfg.daemon.api.trusted_proxies.clone(),
            ..Default::default()
        },
    )
    .with_rotatable(rotatable);
    api_state.metrics().register(&mut registry);
    let registry = std::sync::Arc::new(registry);

    apply(&store, &engine, &cfg).await;
    purge(&store).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = watch::channel(false);
    let admin_addr = admin.local_addr()?;
    let api_task = tokio::spawn(rotd_api::kms::serve(
        api_listener,
        tls.clone(),
        api_state,
        stop_rx.clone(),
    ));
    let admin_task = tokio::spawn(rotd_api::admin::serve(admin, registry, ready_rx, stop_rx.clone()));
    let engine_task = tokio::spawn(engine.clone().run(stop_rx));
    let _ = ready_tx.send(true);
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("running"),
    ]);
    let watchdog =
        sd_notify::watchdog_enabled().map(|interval| tokio::spawn(feed_watchdog(engine.clone(), interval)));
    info!(
        config = %config.display(),
        store = %super::db_path(&cfg.daemon).display(),
        admin = %admin_addr,
        api = %api_addr,
        secrets = cfg.secrets.len(),
        "rotd started."
    );

    // A previous daemon's refused reload no longer describes this one's configuration.
    if let Err(e) = store.record_reload(None).await {
        warn!(error = %e, "Could not clear the reload state for rotd status.");
    }
    let mut promotions = engine.subscribe_promotions();
    let mut current = cfg;
    let mut purge_tick = tokio::time::interval(PURGE_EVERY);
    purge_tick.tick().await;
    let mut keyring_tick = tokio::time::interval(KEYRING_POLL);
    keyring_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = term.recv() => { info!(signal = "SIGTERM", "Stopping."); break; }
            _ = int.recv() => { info!(signal = "SIGINT", "Stopping."); break; }
            _ = hup.recv() => {
                if let Err(e) = audit_file.reopen().await {
                    error!(error = %e, file = %audit_file.path().display(), "Could not reopen the audit log; still writing the old file.");
                }
                match rotd_config::load(config) {
                    Ok(next) => {
                        notify(&[sd_notify::NotifyState::Reloading]);
                        info!(secrets = next.secrets.len(), "Reloaded the configuration.");
                        reload.succeeded();
                        if let Err(e) = store.record_reload(None).await {
                            warn!(error = %e, "Could not record the reload for rotd status.");
                        }
                        apply(&store, &engine, &next).await;
                        match store.keyring_reload().await {
                            Ok(state) => reload_keyring(&store, &next.daemon, state.requested).await,
                            Err(e) => error!(error = %e, "Could not read the keyring reload state."),
                        }
                        current = next;
                        match rotd_api::tls::server_config(&tls_dir) {
                            Ok(c) => {
                                tls.reload_from_config(c);
                                reload.certificates(&tls_dir);
                            }
                            Err(e) => error!(error = %e, "Could not reload the API certificate; keeping the old one."),
                        }
                        notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("running")]);
                    }
                    Err(errors) => {
                        for e in &errors.0 {
                            error!(error = %e, "Configuration error; keeping the previous configuration.");
                        }
                        reload.failed();
                        if let Err(e) = store.record_reload(u32::try_from(errors.0.len()).ok()).await {
                            warn!(error = %e, "Could not record the refused reload for rotd status.");
                        }
                        let status = format!(
                            "running with the previous configuration: the reload found {} error(s), see rotd check",
                            errors.0.len()
                        );
                        notify(&[sd_notify::NotifyState::Status(&status)]);
                    }
                }
            }
            _ = purge_tick.tick() => purge(&store).await,
            _ = keyring_tick.tick() => match store.keyring_reload().await {
                Ok(state) if state.requested > state.handled => {
                    reload_keyring(&store, &current.daemon, state.requested).await;
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "Could not read the keyring reload state."),
            },
            Ok(name) = promotions.recv() => {
                // A rotated admin credential: rebuild the backends that log in with it.
                if wiring::uses_admin_secret(&current, &name) {
                    info!(secret = %name, "An admin credential rotated; rebuilding the backends that use it.");
                    let (entries, _) = wiring::entries(&store, &current).await;
                    engine.set_secrets(entries).await;
                }
            }
        }
    }
    let _ = ready_tx.send(false);
    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping"),
    ]);
    if let Some(w) = watchdog {
        w.abort();
    }
    if !engine.drain(DRAIN).await {
        warn!("Rotations still running at shutdown; they resume from the journal at the next start.");
    }
    let _ = stop_tx.send(true);
    let _ = engine_task.await;
    match api_task.await {
        Ok(Err(e)) => warn!(error = %e, "The API listener failed."),
        Err(e) => warn!(error = %e, "The API listener task failed."),
        Ok(Ok(())) => {}
    }
    match admin_task.await {
        Ok(Err(e)) => warn!(error = %e, "The admin listener failed."),
        Err(e) => warn!(error = %e, "The admin listener task failed."),
        Ok(Ok(())) => {}
    }
    store.close().await;
    info!("rotd stopped.");
    Ok(())
}

/// Whether the last configuration reload worked, and when the configuration in use was loaded.
struct ReloadMetrics {
    success: prometheus_client::metrics::gauge::Gauge,
    loaded_at: prometheus_client::metrics::gauge::Gauge,
    /// When the API's server certificate and CA expire, read again at every reload.
    cert_expiry: prometheus_client::metrics::family::Family<
        [(&'static str, &'static str); 1],
        prometheus_client::metrics::gauge::Gauge,
    >,
}

impl ReloadMetrics {
    /// Registers both series, as after a successful load (the daemon's start).
    fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self {
            success: Default::default(),
            loaded_at: Default::default(),
            cert_expiry: Default::default(),
        };
        registry.register(
            "rotd_tls_certificate_expiry_timestamp_seconds",
            "When the API's TLS certificate (cert=\"server\") and rotd's CA (cert=\"ca\") expire (Unix time)",
            m.cert_expiry.clone(),
        );
        registry.register(
            "rotd_config_reload_success",
            "1 if the last configuration load (start or SIGHUP) worked, 0 if the last reload failed and the previous configuration is still in use",
            m.success.clone(),
        );
        registry.register(
            "rotd_config_last_reload_timestamp_seconds",
            "When the configuration in use was loaded (Unix time)",
            m.loaded_at.clone(),
        );
        m.succeeded();
        m
    }

    fn succeeded(&self) {
        self.success.set(1);
        self.loaded_at.set(rotd_core::Clock::system().now().timestamp());
    }

    fn failed(&self) {
        self.success.set(0);
    }

    /// Reads the certificates' expiry from the TLS directory (at start and after each reload).
    fn certificates(&self, tls_dir: &std::path::Path) {
        match rotd_api::tls::expiry(tls_dir) {
            Ok((server, ca)) => {
                self.cert_expiry.get_or_create(&[("cert", "server")]).set(server);
                self.cert_expiry.get_or_create(&[("cert", "ca")]).set(ca);
            }
            Err(e) => warn!(error = %e, "Could not read the API certificates' expiry."),
        }
    }
}

/// `rotd_build_info{version} 1`.
fn register_build_info(registry: &mut prometheus_client::registry::Registry) {
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    let build = Family::<[(&'static str, &'static str); 1], Gauge>::default();
    registry.register("rotd_build_info", "rotd's version", build.clone());
    build
        .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
        .set(1);
}

/// Tells systemd about a state change; a no-op outside systemd (no `$NOTIFY_SOCKET`).
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "Could not notify systemd.");
    }
}

/// Feeds the systemd watchdog at half its interval, but only while the scheduler loop is alive: a
/// free-running timer would keep a wedged daemon "healthy".
async fn feed_watchdog(engine: std::sync::Arc<Engine>, interval: Duration) {
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tick.tick().await;
        if engine.since_last_tick() < interval / 2 {
            notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            warn!(
                stalled_secs = engine.since_last_tick().as_secs(),
                "The scheduler loop is stalled; not feeding the watchdog."
            );
        }
    }
}

async fn purge(store: &rotd_store::Store) {
    match store.purge_expired(rotd_core::Clock::system().now()).await {
        Ok(names) => {
            for name in names {
                info!(secret = %name, "Deleted a secret whose recovery window ended.");
            }
        }
        Err(e) => warn!(error = %e, "Could not purge expired secrets; will retry."),
    }
}

/// Reloads the keyring from where the configuration says it lives and reports the outcome to the store as
/// the answer to reload request `handled`. A keyring that cannot be read, or that lacks a CMK version some
/// stored data key is wrapped with, is refused and the previous one kept: swapping it in would make those
/// values unreadable.
async fn reload_keyring(store: &rotd_store::Store, daemon: &rotd_config::DaemonConfig, handled: i64) {
    let outcome = match crate::keyfile::load(&daemon.keyring) {
        Err(e) => Err(format!("{e:#}")),
        Ok(next) => match store.cmk_usage().await {
            Err(e) => Err(format!("reading which CMK versions are in use: {e}")),
            Ok(usage) => {
                let missing: Vec<String> = usage
                    .iter()
                    .filter(|u| !next.has_version(&u.cmk_id, u.cmk_version))
                    .map(|u| {
                        format!(
                            "CMK {} version {} ({} data keys)",
                            u.cmk_id, u.cmk_version, u.data_keys
                        )
                    })
                    .collect();
                if missing.is_empty() {
                    Ok(next)
                } else {
                    Err(format!(
                        "the new keyring lacks {}, which stored values need",
                        missing.join(", ")
                    ))
                }
            }
        },
    };
    let (loaded, error) = match outcome {
        Ok(next) => {
            let loaded = next.newest_versions();
            store.replace_keyring(next);
            info!(cmks = ?loaded, "Loaded the keyring.");
            (loaded, None)
        }
        Err(e) => {
            error!(error = %e, "Could not reload the keyring; keeping the previous one.");
            (store.keyring_newest_versions(), Some(e))
        }
    };
    if let Err(e) = store
        .record_keyring_reload(handled, &loaded, error.as_deref())
        .await
    {
        warn!(error = %e, "Could not record the keyring reload.");
    }
}
