//! Operator controls: `rotd rotate`, `rotd plan`, `rotd status`, `rotd rotation pause|resume|history|abandon`.
//!
//! The daemon is the only process that rotates, so two processes never race on one target: `rotate`
//! queues a request in the store and follows the journal while the daemon works; `pause` and `resume`
//! write the secret's control state and poke the daemon to re-read it.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use rotd_core::VersionId;
use rotd_store::{RequestKind, Step, Store, StoreError};
use serde_json::json;

use crate::cli::{Output, RotationCmd};
use crate::fail::{self, Fail};
use crate::output::{print_rows, ts};
use crate::wiring;

/// The vendor's limit on rotations per secret per hour.
const ROTATIONS_PER_HOUR: u64 = 50;
/// A heartbeat older than this means no daemon is running.
const HEARTBEAT_STALE: i64 = 20;

async fn require_secret(store: &Store, name: &str) -> anyhow::Result<()> {
    store.describe(name).await.map(|_| ()).map_err(fail::store)
}

pub(crate) async fn daemon_alive(store: &Store) -> anyhow::Result<bool> {
    Ok(store
        .last_heartbeat()
        .await?
        .is_some_and(|h| (rotd_core::Clock::system().now() - h.beat_at).num_seconds() <= HEARTBEAT_STALE))
}

pub async fn rotate(
    store: &Store,
    name: &str,
    version_id: Option<&str>,
    no_wait: bool,
    timeout: u64,
) -> anyhow::Result<()> {
    require_secret(store, name).await?;
    if let Some(v) = version_id {
        VersionId::parse(v).map_err(|e| Fail::data(e.to_string()))?;
    }
    if !daemon_alive(store).await? {
        return Err(fail::Fail {
            code: 69,
            message: "rotd serve is not running (no heartbeat in the last 20 s); start it and try again"
                .into(),
        }
        .into());
    }
    let since = store.journal(name).await?.last().map_or(0, |e| e.id);
    // Every request names its version, so a request the daemon completed but could not mark done
    // (a crash right after promotion) is recognised as done when replayed, instead of rotating twice.
    let version_id = version_id.map_or_else(|| super::new_version_id().to_string(), str::to_owned);
    let Some(id) = store
        .add_request_within_limit(
            name,
            RequestKind::Rotate,
            Some(&version_id),
            ROTATIONS_PER_HOUR,
            chrono::Duration::hours(1),
        )
        .await?
    else {
        return Err(Fail::data(format!(
            "secret {name} was rotated {ROTATIONS_PER_HOUR} times in the last hour; that is the limit, try again later"
        )));
    };
    if no_wait {
        println!("queued rotation request {id} for {name}");
        return Ok(());
    }
    let deadline = rotd_core::Clock::system().instant() + Duration::from_secs(timeout);
    let mut seen = since;
    loop {
        let last_seen = seen;
        for e in store
            .journal(name)
            .await?
            .into_iter()
            .filter(|e| e.id > last_seen)
        {
            seen = e.id;
            {
                let detail = match &e.step {
                    Step::Failed(f) | Step::Quarantined(f) => format!(" ({})", f.error),
                    step => step.slot().map(|s| format!(" ({s} account)")).unwrap_or_default(),
                };
                eprintln!("{}  {:<11}{}", ts(&e.at), e.kind().as_str(), detail);
            }
        }
        if let Some(req) = store.request(id).await?
            && let Some(result) = req.result
        {
            if result.is_ok() {
                println!("{name}: {result}");
                return Ok(());
            }
            return Err(anyhow::anyhow!("{name}: {result}"));
        }
        if rotd_core::Clock::system().instant() >= deadline {
            return Err(anyhow::anyhow!(
                "the rotation of {name} did not finish within {timeout} s; it continues in the daemon (see `rotd status`)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn status(store: &Store, out: Output) -> anyhow::Result<()> {
    let secrets = store.list().await?;
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    for m in &secrets {
        let name = m.name.as_str();
        let st = store.rotation_state(name).await?;
        let open = store
            .journal_tail(name)
            .await
            .ok()
            .and_then(|j| rotd_engine::open_rotation(&j));
        let no_value = m.planned_delete_at.is_none()
            && !store
                .stages(name)
                .await
                .map(|s| s.contains_key(&rotd_core::StageLabel::current()))
                .unwrap_or(true);
        let state = if m.planned_delete_at.is_some() {
            "deleting"
        } else if st.quarantined {
            "quarantined"
        } else if st.paused {
            "paused"
        } else if no_value && m.managed_by.is_some() {
            // The daemon creates the accounts (or the first value) right after the secret is declared.
            match m.kind {
                rotd_core::SecretType::Generic | rotd_core::SecretType::Ecs => "awaiting first value",
                _ => "creating accounts",
            }
        } else if open.is_some() {
            "rotating"
        } else if m.rotation.as_ref().is_some_and(|r| r.enabled) {
            "scheduled"
        } else {
            "manual"
        };
        let fmt = |t: &Option<chrono::DateTime<Utc>>| t.as_ref().map(ts).unwrap_or_default();
        rows.push(vec![
            name.to_owned(),
            m.kind.to_string(),
            state.to_owned(),
            fmt(&m.last_rotation_at),
            fmt(&m.next_rotation_at),
            st.consecutive_failures.to_string(),
            if st.quarantined {
                "yes".into()
            } else {
                String::new()
            },
        ]);
        docs.push(json!({
            "SecretName": name, "SecretType": m.kind.as_str(), "State": state,
            "LastRotationDate": m.last_rotation_at.as_ref().map(ts), "NextRotationDate": m.next_rotation_at.as_ref().map(ts),
            "ConsecutiveFailures": st.consecutive_failures, "Quarantined": st.quarantined, "Paused": st.paused,
            "LastError": st.last_error, "OpenRotation": open.map(|o| json!({"VersionId": o.version_id.as_str(), "Step": o.step.as_str()})),
        }));
    }
    print_rows(
        out,
        &[
            "secret",
            "type",
            "state",
            "last rotation",
            "next rotation",
            "failures",
            "quarantined",
        ],
        rows,
        docs,
    );
    if out == Output::Table {
        if !daemon_alive(store).await? {
            eprintln!("note: rotd serve is not running; nothing rotates until it starts");
        } else if let Some(h) = store.last_heartbeat().await?
            && let Some((at, errors)) = h.reload_failed
        {
            eprintln!(
                "note: the daemon refused the configuration reload at {} ({errors} error{}; see rotd check) and runs with the previous configuration",
                ts(&at),
                if errors == 1 { "" } else { "s" }
            );
        }
    }
    Ok(())
}

pub async fn control(store: &Store, cmd: &RotationCmd, out: Output) -> anyhow::Result<()> {
    match cmd {
        RotationCmd::Pause { name } => {
            require_secret(store, name).await?;
            store.set_paused(name, true).await?;
            store.add_request(name, RequestKind::Refresh, None).await?;
            println!("paused automatic rotation of {name}");
        }
        RotationCmd::Resume { name } => {
            require_secret(store, name).await?;
            store.set_paused(name, false).await?;
            store.clear_quarantine(name).await?;
            store.add_request(name, RequestKind::Refresh, None).await?;
            println!("resumed automatic rotation of {name}");
        }
        RotationCmd::Abandon { name } => {
            require_secret(store, name).await?;
            if !daemon_alive(store).await? {
                return Err(fail::Fail {
                    code: 69,
                    message:
                        "rotd serve is not running (no heartbeat in the last 20 s); start it and try again"
                            .into(),
                }
                .into());
            }
            let id = store.add_request(name, RequestKind::Abandon, None).await?;
            let deadline = rotd_core::Clock::system().instant() + Duration::from_secs(60);
            loop {
                if let Some(req) = store.request(id).await?
                    && let Some(result) = req.result
                {
                    if result.is_ok() {
                        println!("{name}: {}", result.message());
                        return Ok(());
                    }
                    return Err(Fail::data(format!("{name}: {}", result.message())));
                }
                if rotd_core::Clock::system().instant() >= deadline {
                    return Err(anyhow::anyhow!(
                        "the daemon did not answer the abandon request for {name} within 60 s"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        RotationCmd::History { name } => {
            let j = store.journal(name).await?;
            if j.is_empty()
                && let Err(StoreError::SecretNotFound { .. }) = store.describe(name).await
            {
                return Err(fail::store(StoreError::SecretNotFound { name: name.clone() }));
            }
            let rows = j
                .iter()
                .map(|e| {
                    vec![
                        ts(&e.at),
                        e.rotation_id.chars().take(12).collect(),
                        e.kind().as_str().to_owned(),
                        e.version_id.clone().unwrap_or_default(),
                        e.step.detail().to_string(),
                    ]
                })
                .collect();
            let docs = j
                .iter()
                .map(|e| serde_json::to_value(e).expect("journal entries serialize"))
                .collect();
            print_rows(
                out,
                &["time", "rotation", "step", "version", "detail"],
                rows,
                docs,
            );
        }
    }
    Ok(())
}

/// `rotd plan`: checks and predictions, no changes.
/// Whether the stored `ACSCurrent` still logs in at the target (a client's login, read-only), as a note
/// for `rotd plan` when it does not: an initial value that was wrong from the start (the vendor warns it
/// may be), or a credential changed behind rotd's back. The next rotation repairs it through the admin
/// login. `None`: it logs in, or there is nothing stored to try.
async fn current_logs_in(
    store: Option<&rotd_store::Store>,
    spec: &rotd_config::SecretSpec,
    backend: &dyn rotd_core::Backend,
    timeout: std::time::Duration,
) -> Option<String> {
    // Generic secrets have nothing to log in to.
    if matches!(spec.target, rotd_config::Target::Generic(_)) {
        return None;
    }
    let current = store?
        .get_value(spec.name.as_str(), &rotd_store::Selector::current())
        .await
        .ok()?;
    let slot = backend.slot_of(&current.value).unwrap_or(rotd_core::Slot::Single);
    match tokio::time::timeout(timeout, backend.verify(slot, &current.value)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!(
            "ACSCurrent ({}) does not log in: {e}; the next rotation (rotd rotate {}) sets a new credential through the admin login",
            current.info.version_id, spec.name
        )),
        Err(_) => Some(format!(
            "ACSCurrent ({}) could not be tried: timed out",
            current.info.version_id
        )),
    }
}

pub async fn plan(config: &Path, out: Output) -> anyhow::Result<()> {
    let cfg = rotd_config::load(config).map_err(|e| Fail::usage(e.to_string()))?;
    // Read the store only if there is one; `plan` must work before the first start too.
    let db = super::db_path(&cfg.daemon);
    let store = if db.exists() {
        Some(
            super::open_store(&cfg.daemon)
                .await
                .context("opening the store read-only")?,
        )
    } else {
        None
    };
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    let mut problems = 0;
    let mut notes_text = Vec::new();
    let tty = std::io::stderr().is_terminal();
    let total = cfg.secrets.len();
    for (i, spec) in cfg.secrets.iter().enumerate() {
        if tty {
            eprint!("\rchecking {}/{total}: {}\x1b[K", i + 1, spec.name);
        }
        let mut notes = Vec::new();
        let (check, action) = match wiring::backend_for(store.as_ref(), spec).await {
            Ok(b) => {
                let action = wiring::describe_action(spec, b.as_ref());
                match tokio::time::timeout(cfg.daemon.rotation.step_timeout, b.check()).await {
                    Ok(Ok(())) => {
                        match tokio::time::timeout(cfg.daemon.rotation.step_timeout, b.inspect()).await {
                            Ok(Ok(n)) => notes = n,
                            Ok(Err(e)) => notes.push(format!("could not inspect: {e}")),
                            Err(_) => notes.push("could not inspect: timed out".to_owned()),
                        }
                        if let Some(note) = current_logs_in(
                            store.as_ref(),
                            spec,
                            b.as_ref(),
                            cfg.daemon.rotation.step_timeout,
                        )
                        .await
                        {
                            notes.push(note);
                        }
                        ("ok".to_owned(), action)
                    }
                    Ok(Err(e)) => {
                        problems += 1;
                        (format!("failed: {e}"), action)
                    }
                    Err(_) => {
                        problems += 1;
                        ("failed: timed out".to_owned(), action)
                    }
                }
            }
            Err(reason) => ("not rotated".to_owned(), reason),
        };
        let meta = match &store {
            Some(s) => s.describe(spec.name.as_str()).await.ok(),
            None => None,
        };
        let first_value = match &store {
            Some(s) if meta.is_some() => match s.stages(spec.name.as_str()).await {
                Ok(st) => {
                    !st.contains_key(&rotd_core::StageLabel::current())
                        || (spec.is_dual() && !st.contains_key(&rotd_core::StageLabel::previous()))
                }
                Err(_) => false,
            },
            // Not created yet: the daemon creates accounts (or the clone's value) when it starts.
            _ => spec.creates_first_value(),
        };
        let next = match (&spec.rotation, &meta) {
            _ if first_value && check != "not rotated" => match spec.target {
                // The account exists; its first credential is set through the management login.
                rotd_config::Target::Ecs(_) => "at start: setting a first credential".to_owned(),
                _ => "at start: creating accounts".to_owned(),
            },
            (Some(p), _) if !p.enabled => "disabled".to_owned(),
            (Some(p), meta) => {
                let base = meta.as_ref().map_or_else(
                    || rotd_core::Clock::system().now(),
                    |m| m.last_rotation_at.unwrap_or(m.created_at),
                );
                match rotd_core::compile(&p.schedule)
                    .ok()
                    .and_then(|c| c.next_due(base))
                {
                    Some(t) => ts(&rotd_core::start_at(t, spec.name.as_str(), p.window_secs)),
                    None => "never".to_owned(),
                }
            }
            (None, _) => "on request".to_owned(),
        };
        rows.push(vec![
            spec.name.to_string(),
            spec.kind.to_string(),
            next.clone(),
            check.clone(),
            action.clone(),
        ]);
        for n in &notes {
            notes_text.push(format!("{}: {n}", spec.name));
        }
        docs.push(json!({"SecretName": spec.name.as_str(), "SecretType": spec.kind.as_str(), "NextRotation": next, "Check": check, "Action": action, "Notes": notes}));
    }
    if tty {
        eprint!("\r\x1b[K");
    }
    print_rows(
        out,
        &["secret", "type", "next rotation", "backend check", "would"],
        rows,
        docs,
    );
    if out == Output::Table && !notes_text.is_empty() {
        println!();
        for n in notes_text {
            println!("{n}");
        }
    }
    if problems > 0 {
        return Err(anyhow::anyhow!(
            "{problems} backend check{} failed",
            if problems == 1 { "" } else { "s" }
        ));
    }
    Ok(())
}
