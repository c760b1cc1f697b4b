//! Turning configuration into the engine's inputs: which backend rotates each declared secret, and the
//! engine's tunables from `[rotation]` in rotd.toml.

use std::sync::Arc;

use rotd_backend_exec::{ExecBackend, ExecConfig};
use rotd_backend_redis::{RedisBackend, RedisConfig};
use rotd_backend_sql::{SqlBackend, SqlConfig};
use rotd_backend_ssh::{SshBackend, SshConfig};
use rotd_config::{
    Accounts, Config, DaemonConfig, DbEngine, DbPrivilege, DbSpec, DbTls, EcsCredential, EcsSpec,
    Provisioning, RedisPersist, RedisPrivilege, RedisSpec, SecretSpec, SshKeyType, Target,
};
use rotd_core::{Backend, PasswordPolicy, Secret};
use rotd_engine::{EngineConfig, FailurePolicy, Generator, Hook, Managed, SecretEntry, StepLimits};
use rotd_store::Store;

pub fn engine_config(daemon: &DaemonConfig) -> EngineConfig {
    let r = &daemon.rotation;
    EngineConfig {
        max_concurrent: r.max_concurrent,
        per_backend: r.per_backend,
        per_target: r.per_target,
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

/// The admin credential of a database secret: a `{"AccountName","AccountPassword"}` JSON value, or a plain
/// password with `admin_user` in the file.
async fn admin_credential(store: Option<&Store>, db: &DbSpec) -> Result<(String, Secret), String> {
    let value = match (store, &db.admin) {
        (Some(store), r) => crate::reconcile::resolve(store, r).await,
        (None, rotd_config::SecretRef::Secret { name, .. }) => {
            return Err(format!(
                "the admin credential is the rotd secret {name}, and there is no store yet"
            ));
        }
        (None, r) => rotd_config::read_material(r).map_err(anyhow::Error::from),
    }
    .map_err(|e| format!("reading the admin credential: {e:#}"))?;
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(value.expose_secret())
        && let (Some(user), Some(pw)) = (doc["AccountName"].as_str(), doc["AccountPassword"].as_str())
    {
        return Ok((
            db.admin_user.clone().unwrap_or_else(|| user.to_owned()),
            Secret::from(pw),
        ));
    }
    let user = db
        .admin_user
        .clone()
        .ok_or("admin_user is required when the admin credential is a plain password")?;
    Ok((user, value))
}

async fn sql_backend(store: Option<&Store>, db: &DbSpec) -> Result<Arc<dyn Backend>, String> {
    let (admin_user, admin_password) = admin_credential(store, db).await?;
    let (privilege, databases) = match &db.provisioning {
        Provisioning::Create { databases, privilege } => (
            match privilege {
                DbPrivilege::ReadWrite => rotd_backend_sql::Privilege::ReadWrite,
                DbPrivilege::ReadOnly => rotd_backend_sql::Privilege::ReadOnly,
                DbPrivilege::DdlOnly => rotd_backend_sql::Privilege::DdlOnly,
                DbPrivilege::DmlOnly => rotd_backend_sql::Privilege::DmlOnly,
                DbPrivilege::Standard => rotd_backend_sql::Privilege::Standard,
                DbPrivilege::Privileged => rotd_backend_sql::Privilege::Privileged,
            },
            databases.clone(),
        ),
        // Imported accounts keep their grants; a missing clone copies them from its twin.
        Provisioning::Import { .. } => (rotd_backend_sql::Privilege::ReadWrite, Vec::new()),
    };
    let cfg = SqlConfig {
        engine: match db.engine {
            DbEngine::Mysql => rotd_backend_sql::Engine::Mysql,
            DbEngine::Postgres => rotd_backend_sql::Engine::Postgres,
        },
        host: db.host.clone(),
        port: db.port,
        database: db.database.clone(),
        tls: match db.tls {
            DbTls::Disable => rotd_backend_sql::Tls::Disable,
            DbTls::Prefer => rotd_backend_sql::Tls::Prefer,
            DbTls::Require => rotd_backend_sql::Tls::Require,
            DbTls::VerifyFull => rotd_backend_sql::Tls::VerifyFull,
        },
        ca_file: db.ca_file.clone(),
        admin_user,
        admin_password,
        accounts: match &db.accounts {
            Accounts::Single { user } => rotd_backend_sql::Accounts::Single { user: user.clone() },
            Accounts::Dual { user, clone_user } => rotd_backend_sql::Accounts::Dual {
                user: user.clone(),
                clone_user: clone_user.clone(),
            },
        },
        privilege,
        databases,
        connect_timeout: std::time::Duration::from_secs(10),
        // Test-only, as for the engine's failpoints: `sql-created` parks an account creation between
        // CREATE USER and the grants (MySQL/MariaDB).
        failpoint: std::env::var("ROTD_FAILPOINT").ok(),
    };
    SqlBackend::new(cfg)
        .map(|b| Arc::new(b) as Arc<dyn Backend>)
        .map_err(|e| e.to_string())
}

/// Reads secret material for a backend: through the store (which also resolves other rotd secrets)
/// when there is one, from the file or credential otherwise.
async fn material(store: Option<&Store>, r: &rotd_config::SecretRef, what: &str) -> Result<Secret, String> {
    match (store, r) {
        (Some(store), r) => crate::reconcile::resolve(store, r).await,
        (None, rotd_config::SecretRef::Secret { name, .. }) => {
            return Err(format!(
                "the {what} is the rotd secret {name}, and there is no store yet"
            ));
        }
        (None, r) => rotd_config::read_material(r).map_err(anyhow::Error::from),
    }
    .map_err(|e| format!("reading the {what}: {e:#}"))
}

async fn redis_backend(store: Option<&Store>, r: &RedisSpec) -> Result<Arc<dyn Backend>, String> {
    let tls = match (r.tls, &r.ca_file) {
        (false, _) => None,
        (true, None) => Some(rotd_backend_redis::Tls::default()),
        (true, Some(path)) => Some(rotd_backend_redis::Tls {
            ca_pem: Some(
                read_ca(path).map_err(|e| format!("reading redis.ca_file {}: {e}", path.display()))?,
            ),
        }),
    };
    let admin_password = material(store, &r.admin, "redis admin password").await?;
    let mut nodes = vec![(r.host.clone(), r.port)];
    for n in &r.nodes {
        if !nodes.iter().any(|(h, p)| *h == n.host && *p == n.port) {
            nodes.push((n.host.clone(), n.port));
        }
    }
    RedisBackend::new(RedisConfig {
        nodes,
        discover: r.discover,
        tls,
        admin_user: r.admin_user.clone(),
        admin_password,
        user: r.user.clone(),
        clone_user: r.clone_user.clone(),
        rules: match &r.privilege {
            RedisPrivilege::ReadWrite => rotd_backend_redis::READ_WRITE_RULES.to_owned(),
            RedisPrivilege::ReadOnly => rotd_backend_redis::READ_ONLY_RULES.to_owned(),
            RedisPrivilege::Custom(rules) => rules.clone(),
        },
        persist: match r.persist {
            RedisPersist::AclFile => rotd_backend_redis::Persist::AclFile,
            RedisPersist::Config => rotd_backend_redis::Persist::Config,
            RedisPersist::None => rotd_backend_redis::Persist::None,
        },
        timeout: std::time::Duration::from_secs(10),
    })
    .map(|b| Arc::new(b) as Arc<dyn Backend>)
    .map_err(|e| e.to_string())
}

/// The ECS backend of one secret; `secret_name` goes into the comment of every key rotd adds.
pub async fn ssh_backend(
    store: Option<&Store>,
    secret_name: &str,
    e: &EcsSpec,
) -> Result<SshBackend, String> {
    let admin = material(store, &e.admin, "ecs admin credential").await?;
    let sudo_password = match &e.sudo_password {
        Some(r) => Some(material(store, r, "ecs sudo password").await?),
        None => None,
    };
    SshBackend::new(SshConfig {
        secret_name: secret_name.to_owned(),
        host: e.host.clone(),
        port: e.port,
        host_key_sha256: e.host_key_sha256.clone(),
        user: e.user.clone(),
        credential: match e.credential {
            EcsCredential::Password => rotd_backend_ssh::Credential::Password,
            EcsCredential::SshKey(SshKeyType::Ed25519) => {
                rotd_backend_ssh::Credential::Key(rotd_backend_ssh::KeyType::Ed25519)
            }
            EcsCredential::SshKey(SshKeyType::Rsa3072) => {
                rotd_backend_ssh::Credential::Key(rotd_backend_ssh::KeyType::Rsa3072)
            }
        },
        admin_user: e.admin_user.clone(),
        admin,
        sudo: e.sudo,
        sudo_password,
        authorized_keys: e.authorized_keys.clone(),
        timeout: std::time::Duration::from_secs(15),
    })
}

/// A CA bundle (public certificates, PEM): a regular file of at most 1 MiB.
fn read_ca(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    const MAX: u64 = 1 << 20;
    let f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut pem = Vec::new();
    f.take(MAX + 1).read_to_end(&mut pem)?;
    if pem.len() as u64 > MAX {
        return Err(std::io::Error::other("larger than 1 MiB"));
    }
    Ok(pem)
}

/// The backend that rotates a declared secret, or why there is none (yet). `store` resolves admin
/// credentials that are references to other rotd secrets.
pub async fn backend_for(store: Option<&Store>, spec: &SecretSpec) -> Result<Arc<dyn Backend>, String> {
    match &spec.target {
        Target::Rds(db) | Target::PolarDb(db) => sql_backend(store, db).await,
        Target::Redis(r) => redis_backend(store, r).await,
        Target::Ecs(e) => ssh_backend(store, spec.name.as_str(), e)
            .await
            .map(|b| Arc::new(b) as Arc<dyn Backend>),
        Target::Generic(g) => match &g.exec {
            Some(exec) => ExecBackend::new(ExecConfig {
                secret_name: spec.name.to_string(),
                command: exec.command.clone(),
                timeout: exec.timeout,
            })
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
            .map_err(|e| e.to_string()),
            None => Ok(Arc::new(Generator)),
        },
        Target::Ram(_) => {
            Err("no RAM backend is built into this rotd yet; the secret is stored but not rotated".to_owned())
        }
    }
}

fn password_policy(spec: &SecretSpec) -> PasswordPolicy {
    match &spec.target {
        Target::Generic(g) => g.generate.clone(),
        _ => PasswordPolicy::default(),
    }
}

/// One engine entry per declared secret that has a backend; the others with the reason.
pub async fn entries(store: &Store, cfg: &Config) -> (Vec<SecretEntry>, Vec<(String, String)>) {
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for spec in &cfg.secrets {
        match backend_for(Some(store), spec).await {
            Ok(backend) => ok.push(SecretEntry {
                managed: Managed {
                    name: spec.name.clone(),
                    kind: spec.kind,
                    backend,
                    password: password_policy(spec),
                    grace: rotd_engine::Grace {
                        first: spec.grace,
                        between_steps: match &spec.target {
                            Target::Ram(r) => r.delete_after,
                            _ => std::time::Duration::ZERO,
                        },
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

/// Whether any declared secret's backend reads the rotd secret `name` (an admin credential, a sudo
/// password), so it must be rebuilt when `name` rotates. Every type's references count, from
/// [`SecretSpec::material_refs`], so a new type cannot be forgotten here.
pub fn uses_admin_secret(cfg: &Config, name: &str) -> bool {
    cfg.secrets.iter().any(|s| {
        s.material_refs()
            .iter()
            .any(|(_, r)| matches!(r, rotd_config::SecretRef::Secret { name: n, .. } if n.as_str() == name))
    })
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
        Target::Ecs(e) if caps.overlap => format!(
            "generate a key pair, add its public key to {}'s authorized_keys, log in with it, promote it, remove the old key {}",
            e.user,
            if spec.grace >= rotd_config::UNTIL_NEXT_ROTATION {
                "at the next rotation".to_owned()
            } else {
                format!(
                    "after the grace period ({})",
                    rotd_core::RotationInterval::from_secs(spec.grace.as_secs())
                )
            }
        ),
        Target::Ecs(e) => format!(
            "set a new password for {} with chpasswd (on stdin), verify it, promote it",
            e.user
        ),
        _ if caps.dual_accounts => {
            "reset the account holding ACSPrevious, verify it, swap the labels".to_owned()
        }
        _ if caps.overlap => format!(
            "add a new password next to the current one, verify it, promote it, remove the old one after the grace period ({})",
            rotd_core::RotationInterval::from_secs(spec.grace.as_secs())
        ),
        _ => "reset the account's password, verify it, promote it".to_owned(),
    }
}
