//! Turning configuration into the engine's inputs: which backend rotates each declared secret, and the
//! engine's tunables from `[rotation]` in rotd.toml.

use std::sync::Arc;

use rotd_backend_exec::{ExecBackend, ExecConfig};
use rotd_config::{Config, DaemonConfig, SecretSpec, Target};
use rotd_core::{Backend, PasswordPolicy};
use rotd_engine::{EngineConfig, FailurePolicy, Generator, Hook, Managed, SecretEntry, StepLimits};

pub fn engine_config(daemon: &DaemonConfig) -> EngineConfig {
    let r = &daemon.rotation;
    EngineConfig {
        max_concurrent: r.max_concurrent,
        per_backend: r.per_backend,
        // ROTD_FAILPOINT exists for the process-level crash tests only (tests/tests/crash.rs).
        limits: StepLimits {
            step_timeout: r.step_timeout,
            failpoint: std::env::var("ROTD_FAILPOINT").ok(),
        },
        failure: FailurePolicy {
            max_attempts: r.max_attempts,
            backoff_base: r.backoff,
            backoff_max: r.backoff_max,
        },
        catch_up_spread: r.catch_up,
        poll: std::time::Duration::from_secs(1),
    }
}

/// The backend that rotates a declared secret, or why there is none (yet).
pub fn backend_for(spec: &SecretSpec) -> Result<Arc<dyn Backend>, String> {
    match &spec.target {
        Target::Generic(g) => match &g.exec {
            Some(exec) => ExecBackend::new(ExecConfig {
                secret_name: spec.name.to_string(),
                command: exec.command.clone(),
                timeout: exec.timeout,
                dual: false,
            })
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
            .map_err(|e| e.to_string()),
            None => Ok(Arc::new(Generator)),
        },
        other => Err(format!(
            "no {} backend is built into this rotd yet; the secret is stored but not rotated",
            match other {
                Target::Rds(_) => "RDS",
                Target::PolarDb(_) => "PolarDB",
                Target::Redis(_) => "Redis",
                Target::Ecs(_) => "ECS",
                Target::Ram(_) => "RAM",
                Target::Generic(_) => "generic",
            }
        )),
    }
}

fn password_policy(spec: &SecretSpec) -> PasswordPolicy {
    match &spec.target {
        Target::Generic(g) => g.generate.clone(),
        _ => PasswordPolicy::default(),
    }
}

/// One engine entry per declared secret that has a backend; the others with the reason.
pub fn entries(cfg: &Config) -> (Vec<SecretEntry>, Vec<(String, String)>) {
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for spec in &cfg.secrets {
        match backend_for(spec) {
            Ok(backend) => ok.push(SecretEntry {
                managed: Managed {
                    name: spec.name.clone(),
                    kind: spec.kind,
                    backend,
                    password: password_policy(spec),
                    grace: match &spec.target {
                        Target::Ram(r) => r.grace,
                        _ => std::time::Duration::ZERO,
                    },
                },
                policy: spec.rotation.clone(),
                hooks: spec
                    .hooks
                    .iter()
                    .map(|h| Hook {
                        command: h.command.clone(),
                        timeout: h.timeout,
                    })
                    .collect(),
            }),
            Err(reason) => skipped.push((spec.name.to_string(), reason)),
        }
    }
    (ok, skipped)
}

/// What one rotation of this secret would do, in words, for `rotd plan`.
pub fn describe_action(spec: &SecretSpec, backend: &dyn Backend) -> String {
    let caps = backend.capabilities();
    match &spec.target {
        Target::Generic(g) => match &g.exec {
            Some(e) => format!(
                "generate a new value and hand it to {} (apply, verify)",
                e.command[0]
            ),
            None => format!("generate a new {}-character value", g.generate.length),
        },
        _ if caps.dual_accounts => {
            "reset the account holding ACSPrevious, verify it, swap the labels".to_owned()
        }
        _ => "reset the account's password, verify it, promote it".to_owned(),
    }
}
