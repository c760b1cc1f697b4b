//! One managed secret per file under `secrets.d/`: its name, type, tags, rotation policy and the
//! target that rotation acts on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rotd_core::{
    DataType, PasswordPolicy, RotationInterval, RotationPolicy, RotationSchedule, SecretName, SecretType,
    Tag, Tags, VersionId,
};
use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use crate::check;
use crate::error::Diag;
use crate::secret_ref::{RawSecretRef, SecretRef, validate_ref};

/// One validated secret file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    /// The file the secret was declared in.
    pub file: PathBuf,
    pub name: SecretName,
    pub kind: SecretType,
    /// Empty when the file has none.
    pub description: String,
    pub tags: Tags,
    /// The CMK that wraps this secret's data keys: the file's `cmk` or the daemon's `default_cmk`.
    pub cmk: String,
    /// `None` when the file has no `[rotation]` section: the secret rotates only on request.
    pub rotation: Option<RotationPolicy>,
    /// The id of the version the secret is created with when the file gives its first value (a generic
    /// secret's, an imported account's): the file's `initial_version`, or `v1` as the vendor defaults it.
    pub initial_version: VersionId,
    pub target: Target,
    /// How long an old credential keeps working after a rotation before rotd revokes it, for backends
    /// that revoke (`grace`; RAM: deactivation; default 24h for RAM and Redis overlap, zero elsewhere). Backends that
    /// never revoke the old credential (dual accounts keep it until the next rotation) ignore it.
    pub grace: Duration,
    /// Commands run after every promotion (`[[hooks]]`), e.g. `systemctl reload app`.
    pub hooks: Vec<HookSpec>,
}

/// A command run after a promotion. It gets `ROTD_SECRET_NAME` and `ROTD_VERSION_ID`, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSpec {
    pub command: Vec<String>,
    pub timeout: Duration,
}

/// What rotation acts on; the variant always matches [`SecretSpec::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Generic(GenericSpec),
    Rds(DbSpec),
    PolarDb(DbSpec),
    Redis(RedisSpec),
    Ecs(EcsSpec),
    Ram(RamSpec),
}

/// A generic secret: a value rotd stores and, optionally, renews itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericSpec {
    pub data_type: DataType,
    /// The value to create the secret with when it does not exist yet. When `None`, the first value
    /// is generated with [`GenericSpec::generate`].
    pub initial_value: Option<SecretRef>,
    /// The generator policy: the file's `[generic.generate]` or [`PasswordPolicy::default`] (32
    /// characters of `[A-Za-z0-9_-]`). Rotation uses it whenever there is no `[exec]` command.
    pub generate: PasswordPolicy,
    /// A user command that performs rotation instead of the generator.
    pub exec: Option<ExecSpec>,
}

/// The exec plug-in of a generic secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// Program and arguments; the program is an absolute path. No shell is involved.
    pub command: Vec<String>,
    pub timeout: Duration,
}

/// An RDS or PolarDB database and the account(s) rotation manages on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSpec {
    pub engine: DbEngine,
    pub host: String,
    pub port: u16,
    /// The database to connect to: `None` for MySQL without one, always set for PostgreSQL.
    pub database: Option<String>,
    pub tls: DbTls,
    pub ca_file: Option<PathBuf>,
    /// How rotd logs in to manage accounts: JSON `{"AccountName","AccountPassword"}`, or a plain
    /// password for [`DbSpec::admin_user`] when that is set.
    pub admin: SecretRef,
    pub admin_user: Option<String>,
    /// The vendor instance id (RDS `DBInstanceId`, PolarDB `DBClusterId`), reported in ExtendedConfig.
    pub db_instance_id: Option<String>,
    pub accounts: Accounts,
    pub provisioning: Provisioning,
}

impl DbSpec {
    /// In import mode, the first account's name and where its current password is: what the first
    /// version of the secret is built from. `None` in create mode.
    pub fn imported_account(&self) -> Option<(&str, &SecretRef)> {
        match &self.provisioning {
            Provisioning::Import { password, .. } => Some((self.accounts.user(), password)),
            Provisioning::Create { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbEngine {
    Mysql,
    Postgres,
}

impl DbEngine {
    /// The longest account name the engine accepts.
    pub fn max_identifier_len(self) -> usize {
        match self {
            DbEngine::Mysql => 32,
            DbEngine::Postgres => 63,
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            DbEngine::Mysql => 3306,
            DbEngine::Postgres => 5432,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DbEngine::Mysql => "mysql",
            DbEngine::Postgres => "postgres",
        }
    }

    /// The vendor's `DBType` spelling.
    fn vendor_name(self) -> &'static str {
        match self {
            DbEngine::Mysql => "MySQL",
            DbEngine::Postgres => "PostgreSQL",
        }
    }
}

/// Transport security towards the database, in libpq's vocabulary (MySQL maps `verify-full` to
/// `VERIFY_IDENTITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbTls {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountMode {
    Single,
    Dual,
}

/// The account names rotation manages. In dual mode the two accounts take turns: a rotation resets
/// the one holding `ACSPrevious`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accounts {
    Single { user: String },
    Dual { user: String, clone_user: String },
}

impl Accounts {
    pub fn user(&self) -> &str {
        match self {
            Accounts::Single { user } | Accounts::Dual { user, .. } => user,
        }
    }

    pub fn clone_user(&self) -> Option<&str> {
        match self {
            Accounts::Single { .. } => None,
            Accounts::Dual { clone_user, .. } => Some(clone_user),
        }
    }

    pub fn mode(&self) -> AccountMode {
        match self {
            Accounts::Single { .. } => AccountMode::Single,
            Accounts::Dual { .. } => AccountMode::Dual,
        }
    }
}

/// Whether rotd creates the account(s) or takes over existing ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provisioning {
    /// rotd creates the account(s) and grants `privilege` on `databases`.
    Create {
        databases: Vec<String>,
        privilege: DbPrivilege,
    },
    /// The accounts exist; their current passwords seed the first versions. Without
    /// `clone_password`, rotd resets the clone account's password before it first uses it.
    Import {
        password: SecretRef,
        clone_password: Option<SecretRef>,
    },
}

/// The vendor's account privilege names. `Standard` and `Privileged` exist only for single accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbPrivilege {
    ReadWrite,
    ReadOnly,
    DdlOnly,
    DmlOnly,
    Standard,
    Privileged,
}

impl DbPrivilege {
    pub fn as_str(self) -> &'static str {
        match self {
            DbPrivilege::ReadWrite => "ReadWrite",
            DbPrivilege::ReadOnly => "ReadOnly",
            DbPrivilege::DdlOnly => "DDLOnly",
            DbPrivilege::DmlOnly => "DMLOnly",
            DbPrivilege::Standard => "Standard",
            DbPrivilege::Privileged => "Privileged",
        }
    }
}

/// Redis ACL users: a dual pair (the vendor's type), or with `mode = "overlap"` one account whose old and
/// new passwords overlap for the grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSpec {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    /// The admin user's password (plain text) for [`RedisSpec::admin_user`].
    pub admin: SecretRef,
    pub admin_user: String,
    pub user: String,
    /// The second account; `None` in overlap mode.
    pub clone_user: Option<String>,
    pub privilege: RedisPrivilege,
    pub instance_id: Option<String>,
    pub region_id: Option<String>,
    /// Every node the ACL change must reach. Empty means only `host:port`.
    pub nodes: Vec<Endpoint>,
    /// Also change the replicas each listed primary reports (`ROLE`).
    pub discover: bool,
    /// How each node keeps an ACL change across a restart.
    pub persist: RedisPersist,
}

/// `redis.persist`: `acl_file` (`ACL SAVE`, the default), `config` (`CONFIG REWRITE`, users in
/// redis.conf) or `none` (a managed service that persists by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisPersist {
    AclFile,
    Config,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisPrivilege {
    ReadWrite,
    ReadOnly,
    /// `redis.rules`: the operator's own ACL permission rules (keys, channels, commands), checked by
    /// `rotd check` against what rotd owns and what is dangerous.
    Custom(String),
}

impl RedisPrivilege {
    pub fn as_str(&self) -> &'static str {
        match self {
            RedisPrivilege::ReadWrite => "ReadWrite",
            RedisPrivilege::ReadOnly => "ReadOnly",
            RedisPrivilege::Custom(_) => "Custom",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// An SSH host whose login user's password or key pair rotates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsSpec {
    pub host: String,
    pub port: u16,
    /// The pinned host key fingerprint, `SHA256:` followed by unpadded base64 as `ssh-keygen -l`
    /// prints it. rotd never trusts a host key on first use.
    pub host_key_sha256: String,
    /// The login user whose credential rotates.
    pub user: String,
    pub credential: EcsCredential,
    /// The user rotd logs in as to change the credential.
    pub admin_user: String,
    /// The admin's password or private key.
    pub admin: SecretRef,
    /// Run the host-side commands through `sudo` (default: when `admin_user` is not root).
    pub sudo: bool,
    /// The password sudo asks for when the admin logs in with a key (a password login's own password is
    /// used otherwise).
    pub sudo_password: Option<SecretRef>,
    /// The first value (the vendor's "initial secret value"): the current password, or the private key
    /// whose public key is already authorized, or the vendor's JSON. Without it the daemon rotates at
    /// once when the secret is declared.
    pub initial_value: Option<SecretRef>,
    /// Where the user's keys are (`mode = "ssh_key"`): relative to its home directory, or absolute, `%u`
    /// the user; `.ssh/authorized_keys` by default.
    pub authorized_keys: String,
    pub instance_id: Option<String>,
    pub region_id: Option<String>,
}

/// The `grace` of an ECS key pair secret that gives none: the old key stays until the next rotation.
pub const UNTIL_NEXT_ROTATION: Duration = Duration::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsCredential {
    Password,
    SshKey(SshKeyType),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshKeyType {
    Ed25519,
    Rsa3072,
}

/// A RAM user's AccessKey pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamSpec {
    pub user_name: String,
    /// The RAM API endpoint: a host, `host:port` or an `http(s)://host[:port]` URL.
    pub endpoint: String,
    /// An AccessKey pair, JSON `{"AccessKeyId","AccessKeySecret"}`, allowed to manage the user's keys.
    pub admin: SecretRef,
    /// How long the previous AccessKey stays inactive (after the secret's `grace`) before it is
    /// deleted: the second retire step's own grace.
    pub delete_after: Duration,
    pub region_id: Option<String>,
}

impl SecretSpec {
    /// Every piece of secret material the file refers to, with the key that names it, so `rotd check`
    /// can read each one the way `serve` will.
    pub fn material_refs(&self) -> Vec<(String, &SecretRef)> {
        let mut out = Vec::new();
        match &self.target {
            Target::Generic(g) => {
                if let Some(r) = &g.initial_value {
                    out.push(("generic.initial_value".to_owned(), r));
                }
            }
            Target::Rds(db) | Target::PolarDb(db) => {
                let section = if matches!(self.target, Target::Rds(_)) {
                    "rds"
                } else {
                    "polardb"
                };
                out.push((format!("{section}.admin"), &db.admin));
                if let Provisioning::Import {
                    password,
                    clone_password,
                } = &db.provisioning
                {
                    out.push((format!("{section}.account.import.password"), password));
                    if let Some(c) = clone_password {
                        out.push((format!("{section}.account.import.clone_password"), c));
                    }
                }
            }
            Target::Redis(r) => out.push(("redis.admin".to_owned(), &r.admin)),
            Target::Ecs(e) => {
                out.push(("ecs.admin".to_owned(), &e.admin));
                if let Some(r) = &e.sudo_password {
                    out.push(("ecs.sudo_password".to_owned(), r));
                }
                if let Some(r) = &e.initial_value {
                    out.push(("ecs.initial_value".to_owned(), r));
                }
            }
            Target::Ram(r) => out.push(("ram.admin".to_owned(), &r.admin)),
        }
        out
    }

    /// Where the file departs from the vendor's conventions without being wrong: a RAMCredentials secret
    /// the vendor would name `acs/ram/user/<user>`, an ECS secret outside `acs/ecs/`. `rotd check` prints
    /// these; the file's name is used as it is.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        match &self.target {
            Target::Ram(ram) => {
                if let Ok(conventional) = rotd_core::ram_secret_name(&ram.user_name)
                    && conventional != self.name
                {
                    notes.push(format!(
                        "the vendor names this RAMCredentials secret {conventional}; rotd keeps the name {}",
                        self.name
                    ));
                }
            }
            Target::Ecs(_) => {
                if let Err(rule) = self.kind.check_vendor_name(self.name.as_str()) {
                    notes.push(format!(
                        "the vendor's convention: {rule}; rotd keeps the name {}",
                        self.name
                    ));
                }
            }
            Target::Generic(_) | Target::Rds(_) | Target::PolarDb(_) | Target::Redis(_) => {}
        }
        notes
    }

    /// Whether the secret has two alternating accounts (dual RDS, PolarDB, Redis).
    pub fn is_dual(&self) -> bool {
        match &self.target {
            Target::Rds(db) | Target::PolarDb(db) => db.accounts.clone_user().is_some(),
            Target::Redis(r) => r.clone_user.is_some(),
            Target::Generic(_) | Target::Ecs(_) | Target::Ram(_) => false,
        }
    }

    /// Whether the daemon makes this secret's first value itself, right after it is declared: accounts
    /// it creates, and a dual import whose clone password the file does not give (the clone is reset).
    pub fn creates_first_value(&self) -> bool {
        match &self.target {
            Target::Rds(db) | Target::PolarDb(db) => match &db.provisioning {
                Provisioning::Create { .. } => true,
                Provisioning::Import { clone_password, .. } => {
                    db.accounts.clone_user().is_some() && clone_password.is_none()
                }
            },
            Target::Redis(_) => true,
            Target::Ecs(e) => e.initial_value.is_none(),
            Target::Generic(_) | Target::Ram(_) => false,
        }
    }

    /// The vendor's `ExtendedConfig` JSON text for managed types, `None` for generic secrets. Optional
    /// ids the file does not set are left out rather than sent empty.
    pub fn extended_config(&self) -> Option<String> {
        let custom_data = serde_json::Map::new();
        let json = match &self.target {
            Target::Generic(_) => return None,
            Target::Rds(db) => serde_json::to_string(&RdsExt {
                secret_sub_type: match db.accounts.mode() {
                    AccountMode::Single => "SingleUser",
                    AccountMode::Dual => "DoubleUsers",
                },
                db_instance_id: db.db_instance_id.as_deref(),
                custom_data,
            }),
            Target::PolarDb(db) => serde_json::to_string(&PolarDbExt {
                secret_sub_type: "DoubleUsers",
                db_cluster_id: db.db_instance_id.as_deref(),
                db_type: db.engine.vendor_name(),
                account_name: db.accounts.user(),
                clone_account_name: db.accounts.clone_user(),
                custom_data,
            }),
            Target::Redis(r) => serde_json::to_string(&RedisExt {
                secret_sub_type: if r.clone_user.is_some() {
                    "DoubleUsers"
                } else {
                    "SingleUser"
                },
                account_name: &r.user,
                clone_account_name: r.clone_user.as_deref(),
                account_privilege: r.privilege.as_str(),
                instance_id: r.instance_id.as_deref(),
                region_id: r.region_id.as_deref(),
                custom_data,
            }),
            Target::Ecs(e) => serde_json::to_string(&EcsExt {
                secret_sub_type: match e.credential {
                    EcsCredential::Password => "Password",
                    EcsCredential::SshKey(_) => "SSHKey",
                },
                instance_id: e.instance_id.as_deref(),
                region_id: e.region_id.as_deref(),
                custom_data,
            }),
            Target::Ram(r) => serde_json::to_string(&RamExt {
                secret_sub_type: "RamUserAccessKey",
                user_name: &r.user_name,
                custom_data,
            }),
        };
        Some(json.expect("extended config is plain strings and always serializes"))
    }
}

// The ExtendedConfig shapes. Structs (rather than `json!`) keep the key order of the vendor's docs.

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RdsExt<'a> {
    secret_sub_type: &'a str,
    #[serde(rename = "DBInstanceId", skip_serializing_if = "Option::is_none")]
    db_instance_id: Option<&'a str>,
    custom_data: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PolarDbExt<'a> {
    secret_sub_type: &'a str,
    #[serde(rename = "DBClusterId", skip_serializing_if = "Option::is_none")]
    db_cluster_id: Option<&'a str>,
    #[serde(rename = "DBType")]
    db_type: &'a str,
    account_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    clone_account_name: Option<&'a str>,
    custom_data: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RedisExt<'a> {
    secret_sub_type: &'a str,
    account_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    clone_account_name: Option<&'a str>,
    account_privilege: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region_id: Option<&'a str>,
    custom_data: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EcsExt<'a> {
    secret_sub_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region_id: Option<&'a str>,
    custom_data: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RamExt<'a> {
    secret_sub_type: &'a str,
    user_name: &'a str,
    custom_data: serde_json::Map<String, serde_json::Value>,
}

// ---------------------------------------------------------------------------------------------
// Raw forms. Every key is optional here so that a missing key is reported together with every
// other problem of the file instead of stopping serde at the first one.

type S<T> = Spanned<T>;
type Opt<T> = Option<Spanned<T>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecret {
    pub(crate) name: Opt<String>,
    #[serde(rename = "type")]
    kind: Opt<String>,
    description: Opt<String>,
    initial_version: Opt<String>,
    cmk: Opt<String>,
    grace: Opt<String>,
    tags: Opt<BTreeMap<S<String>, S<String>>>,
    rotation: Opt<RawRotation>,
    generic: Opt<RawGeneric>,
    exec: Opt<RawExec>,
    rds: Opt<RawDb>,
    polardb: Opt<RawDb>,
    redis: Opt<RawRedis>,
    ecs: Opt<RawEcs>,
    ram: Opt<RawRam>,
    hooks: Opt<Vec<S<RawHook>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    command: Opt<Vec<S<String>>>,
    timeout: Opt<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRotation {
    enabled: Opt<bool>,
    interval: Opt<String>,
    schedule: Opt<String>,
    timezone: Opt<String>,
    window: Opt<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeneric {
    initial_value: Opt<RawSecretRef>,
    data_type: Opt<String>,
    generate: Opt<RawGenerate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGenerate {
    length: Opt<usize>,
    lowercase: Opt<bool>,
    uppercase: Opt<bool>,
    digits: Opt<bool>,
    symbols: Opt<String>,
    exclude: Opt<String>,
    require_each_class: Opt<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExec {
    command: Opt<Vec<S<String>>>,
    timeout: Opt<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDb {
    engine: Opt<String>,
    mode: Opt<String>,
    host: Opt<String>,
    port: Opt<u16>,
    database: Opt<String>,
    tls: Opt<String>,
    ca_file: Opt<String>,
    admin: Opt<RawSecretRef>,
    admin_user: Opt<String>,
    db_instance_id: Opt<String>,
    account: Opt<RawAccount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    create: Opt<RawCreate>,
    import: Opt<RawImport>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCreate {
    prefix: Opt<String>,
    databases: Opt<Vec<S<String>>>,
    privilege: Opt<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImport {
    user: Opt<String>,
    password: Opt<RawSecretRef>,
    clone_user: Opt<String>,
    clone_password: Opt<RawSecretRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    host: Opt<String>,
    port: Opt<u16>,
    tls: Opt<bool>,
    ca_file: Opt<String>,
    admin: Opt<RawSecretRef>,
    admin_user: Opt<String>,
    user: Opt<String>,
    clone_user: Opt<String>,
    privilege: Opt<String>,
    instance_id: Opt<String>,
    nodes: Opt<Vec<S<String>>>,
    persist: Opt<String>,
    rules: Opt<String>,
    allow_dangerous: Opt<bool>,
    mode: Opt<String>,
    discover: Opt<bool>,
    region_id: Opt<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEcs {
    host: Opt<String>,
    port: Opt<u16>,
    host_key_sha256: Opt<String>,
    user: Opt<String>,
    mode: Opt<String>,
    key_type: Opt<String>,
    admin_user: Opt<String>,
    admin: Opt<RawSecretRef>,
    sudo: Opt<bool>,
    sudo_password: Opt<RawSecretRef>,
    initial_value: Opt<RawSecretRef>,
    authorized_keys: Opt<String>,
    instance_id: Opt<String>,
    region_id: Opt<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRam {
    user_name: Opt<String>,
    endpoint: Opt<String>,
    admin: Opt<RawSecretRef>,
    /// Moved to the file's top-level `grace`; kept here only to say so.
    grace: Opt<String>,
    delete_after: Opt<String>,
    region_id: Opt<String>,
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// The longest `grace` or `ram.delete_after`: the longest rotation interval any type allows.
const MAX_GRACE: Duration = Duration::from_secs(365 * 86_400);
const DEFAULT_RAM_GRACE: Duration = Duration::from_secs(86_400);
const DEFAULT_RAM_DELETE_AFTER: Duration = Duration::from_secs(86_400);

/// What a secret file needs from the daemon file.
pub(crate) struct Context<'a> {
    /// The directory of rotd.toml: the base of relative paths in secret files.
    pub(crate) base: &'a Path,
    pub(crate) default_cmk: &'a str,
}

/// Validates one secret file. Returns `None` when anything was reported; every problem found is
/// reported, not just the first.
pub(crate) fn validate(
    d: &mut Diag<'_>,
    raw: &RawSecret,
    file: &Path,
    ctx: &Context<'_>,
) -> Option<SecretSpec> {
    let name = match &raw.name {
        Some(n) => match SecretName::parse(n.get_ref().as_str()) {
            Ok(name) => Some(name),
            Err(e) => d.at(n, "name", e.to_string()),
        },
        None => {
            d.error(0..0, "name", "is required");
            None
        }
    };
    let kind = match &raw.kind {
        Some(t) => match t.get_ref().parse::<SecretType>() {
            Ok(k) => Some(k),
            Err(e) => d.at(t, "type", e.reason),
        },
        None => {
            d.error(0..0, "type", "is required");
            None
        }
    };
    let description = raw
        .description
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_default();
    let cmk = match &raw.cmk {
        Some(c) => check::cmk(d, c, "cmk"),
        None => Some(ctx.default_cmk.to_owned()),
    };
    let tags = validate_tags(d, raw.tags.as_ref());

    let rotation = match &raw.rotation {
        Some(r) => validate_rotation(d, r, kind).map(Some),
        None => Some(None),
    };
    // Without a valid type there is nothing to check the type-specific parts against.
    let kind = kind?;
    let grace = match &raw.grace {
        Some(g) => check::duration_at_most(d, g, "grace", MAX_GRACE),
        None if kind == SecretType::RamCredentials || redis_overlap(raw) => Some(DEFAULT_RAM_GRACE),
        None if ecs_keys(raw) => Some(UNTIL_NEXT_ROTATION),
        None => Some(Duration::ZERO),
    };
    let target = validate_target(
        d,
        raw,
        kind,
        ctx,
        rotation.as_ref().and_then(Option::as_ref),
        grace,
    );
    let initial_version = validate_initial_version(d, raw.initial_version.as_ref(), target.as_ref());
    let hooks = validate_hooks(d, raw.hooks.as_ref());
    if d.has_errors() {
        return None;
    }
    Some(SecretSpec {
        file: file.to_owned(),
        name: name?,
        kind,
        description,
        tags: tags?,
        cmk: cmk?,
        rotation: rotation?,
        initial_version: initial_version?,
        target: target?,
        grace: grace?,
        hooks: hooks?,
    })
}

/// `initial_version` names the version a file's own first value is stored as; a secret whose first value
/// comes from a rotation (accounts rotd creates, Redis, ECS, RAM) has no such version, so the key is an
/// error there rather than silently ignored.
fn validate_initial_version(
    d: &mut Diag<'_>,
    raw: Option<&S<String>>,
    target: Option<&Target>,
) -> Option<VersionId> {
    let Some(raw) = raw else {
        return Some(VersionId::initial());
    };
    let id = match VersionId::parse(raw.get_ref().as_str()) {
        Ok(id) => id,
        Err(e) => return d.at(raw, "initial_version", e.to_string()),
    };
    let has_initial_value = match target {
        Some(Target::Generic(_)) => true,
        Some(Target::Rds(db) | Target::PolarDb(db)) => db.imported_account().is_some(),
        Some(Target::Redis(_) | Target::Ecs(_) | Target::Ram(_)) => false,
        // The target's own errors are reported already.
        None => return Some(id),
    };
    if !has_initial_value {
        return d.at(
            raw,
            "initial_version",
            "applies only to a secret created with a value from its file (generic, or an imported account); \
             this secret's first version comes from its first rotation",
        );
    }
    Some(id)
}

fn validate_hooks(d: &mut Diag<'_>, raw: Option<&S<Vec<S<RawHook>>>>) -> Option<Vec<HookSpec>> {
    let Some(raw) = raw else { return Some(Vec::new()) };
    let mut out = Vec::new();
    let mut ok = true;
    for h in raw.get_ref() {
        let command = match &h.get_ref().command {
            None => d.at(
                h,
                "hooks.command",
                "is required: the program (absolute path) and its arguments",
            ),
            Some(c) if c.get_ref().is_empty() => d.at(c, "hooks.command", "must name a program"),
            Some(c) if !c.get_ref()[0].get_ref().starts_with('/') => d.at(
                &c.get_ref()[0],
                "hooks.command",
                "the program must be an absolute path; no shell or PATH lookup is used",
            ),
            Some(c) => Some(
                c.get_ref()
                    .iter()
                    .map(|s| s.get_ref().clone())
                    .collect::<Vec<_>>(),
            ),
        };
        let timeout = match &h.get_ref().timeout {
            Some(t) => check::duration(d, t, "hooks.timeout"),
            None => Some(Duration::from_secs(30)),
        };
        match (command, timeout) {
            (Some(command), Some(timeout)) => out.push(HookSpec { command, timeout }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn validate_tags(d: &mut Diag<'_>, raw: Option<&S<BTreeMap<S<String>, S<String>>>>) -> Option<Tags> {
    let Some(raw) = raw else {
        return Some(Tags::default());
    };
    let mut tags = Vec::new();
    let mut ok = true;
    for (k, v) in raw.get_ref() {
        let key = format!("tags.{}", k.get_ref());
        match Tag::new(k.get_ref().as_str(), v.get_ref().as_str()) {
            Ok(t) => tags.push(t),
            Err(e) => {
                // The error says whether the key or the value is wrong; point at the one it means.
                let at = if e.what == "tag value" { v.span() } else { k.span() };
                d.error(at, &key, e.to_string());
                ok = false;
            }
        }
    }
    match Tags::new(tags) {
        Ok(t) if ok => Some(t),
        Ok(_) => None,
        Err(e) => d.at(raw, "tags", e.to_string()),
    }
}

/// Checks a `[rotation]` section. Without a valid `kind` (already reported) the interval bounds
/// are skipped but everything else is still checked.
fn validate_rotation(
    d: &mut Diag<'_>,
    raw: &S<RawRotation>,
    kind: Option<SecretType>,
) -> Option<RotationPolicy> {
    let r = raw.get_ref();
    let enabled = r.enabled.as_ref().is_none_or(|e| *e.get_ref());
    let schedule = match (&r.interval, &r.schedule) {
        (Some(_), Some(s)) => d.at(
            s,
            "rotation.schedule",
            "set only one of rotation.interval and rotation.schedule",
        ),
        (None, None) => d.at(
            raw,
            "rotation",
            "set one of rotation.interval (e.g. \"30d\") or rotation.schedule (a cron expression)",
        ),
        (Some(i), None) => {
            if let Some(tz) = &r.timezone {
                d.error(
                    tz.span(),
                    "rotation.timezone",
                    "only applies to rotation.schedule",
                );
            }
            check::interval(d, i, "rotation.interval").and_then(|interval| {
                match kind.map_or(Ok(()), |k| interval.check_bounds(k)) {
                    Ok(()) => Some(RotationSchedule::Interval { interval }),
                    Err(e) => d.at(i, "rotation.interval", e.reason),
                }
            })
        }
        (None, Some(s)) => {
            let timezone = match &r.timezone {
                Some(tz) if is_timezone_name(tz.get_ref()) => Some(tz.get_ref().clone()),
                Some(tz) => d.at(
                    tz,
                    "rotation.timezone",
                    "must be an IANA time zone name such as Europe/Berlin or UTC",
                ),
                None => Some("UTC".to_owned()),
            };
            let expression = s.get_ref().split_whitespace().collect::<Vec<_>>().join(" ");
            let schedule = RotationSchedule::Cron {
                expression,
                timezone: timezone?,
            };
            // croner and chrono-tz decide validity; the error names whichever key is wrong.
            match rotd_core::compile(&schedule) {
                Ok(compiled) => {
                    let too_often = kind.zip(compiled.min_interval_secs()).and_then(|(k, gap)| {
                        let (lo, _) = rotd_core::RotationInterval::bounds(k);
                        (gap < lo).then(|| {
                            format!(
                                "fires every {} at times; {k} secrets may rotate at most every {}",
                                rotd_core::RotationInterval::from_secs(gap),
                                rotd_core::RotationInterval::from_secs(lo)
                            )
                        })
                    });
                    match too_often {
                        Some(msg) => d.at(s, "rotation.schedule", msg),
                        None => Some(schedule),
                    }
                }
                Err(e) if e.what == "rotation timezone" => match &r.timezone {
                    Some(tz) => d.at(tz, "rotation.timezone", e.reason),
                    None => d.at(s, "rotation.schedule", e.reason),
                },
                Err(e) => d.at(s, "rotation.schedule", e.reason),
            }
        }
    };
    let window_secs = match &r.window {
        Some(w) => match (check::interval(d, w, "rotation.window"), &schedule) {
            (Some(window), Some(RotationSchedule::Interval { interval })) if window >= *interval => d.at(
                w,
                "rotation.window",
                format!("must be shorter than the rotation interval ({interval})"),
            ),
            // A cron window as long as the shortest gap between firings would let one rotation start
            // after the next firing, which is then skipped.
            (Some(window), Some(cron @ RotationSchedule::Cron { .. }))
                if rotd_core::compile(cron)
                    .ok()
                    .and_then(|c| c.min_interval_secs())
                    .is_some_and(|gap| window.as_secs() >= gap) =>
            {
                let gap = rotd_core::compile(cron)
                    .ok()
                    .and_then(|c| c.min_interval_secs())
                    .unwrap_or_default();
                d.at(
                    w,
                    "rotation.window",
                    format!(
                        "must be shorter than the shortest gap between the schedule's firings ({}), or firings are skipped",
                        rotd_core::RotationInterval::from_secs(gap)
                    ),
                )
            }
            (window, _) => window.map(|w| Some(w.as_secs())),
        },
        None => Some(None),
    };
    Some(RotationPolicy {
        enabled,
        schedule: schedule?,
        window_secs: window_secs?,
    })
}

/// `UTC` or an `Area/Location` name as in the IANA database. chrono-tz will check that it exists.
fn is_timezone_name(s: &str) -> bool {
    if s == "UTC" {
        return true;
    }
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() >= 2
        && parts[0].starts_with(|c: char| c.is_ascii_uppercase())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "_+-".contains(c)))
}

/// The type-specific sections and the type each belongs to.
const SECTIONS: [(&str, SecretType); 7] = [
    ("generic", SecretType::Generic),
    ("exec", SecretType::Generic),
    ("rds", SecretType::Rds),
    ("polardb", SecretType::PolarDb),
    ("redis", SecretType::Redis),
    ("ecs", SecretType::Ecs),
    ("ram", SecretType::RamCredentials),
];

fn validate_target(
    d: &mut Diag<'_>,
    raw: &RawSecret,
    kind: SecretType,
    ctx: &Context<'_>,
    rotation: Option<&RotationPolicy>,
    grace: Option<Duration>,
) -> Option<Target> {
    let spans = [
        raw.generic.as_ref().map(S::span),
        raw.exec.as_ref().map(S::span),
        raw.rds.as_ref().map(S::span),
        raw.polardb.as_ref().map(S::span),
        raw.redis.as_ref().map(S::span),
        raw.ecs.as_ref().map(S::span),
        raw.ram.as_ref().map(S::span),
    ];
    let mut misplaced = false;
    for ((section, for_kind), span) in SECTIONS.into_iter().zip(spans) {
        if let Some(span) = span
            && for_kind != kind
        {
            d.error(
                span,
                section,
                format!("section [{section}] does not apply to type {kind}"),
            );
            misplaced = true;
        }
    }
    let type_span = raw.kind.as_ref().map(S::span).unwrap_or(0..0);
    let missing = |d: &mut Diag<'_>, section: &str| -> Option<Target> {
        d.error(
            type_span.clone(),
            "type",
            format!("type {kind} needs a [{section}] section"),
        );
        None
    };
    let base = ctx.base;
    let target = match kind {
        SecretType::Generic => validate_generic(d, raw, base).map(Target::Generic),
        SecretType::Rds => match &raw.rds {
            Some(r) => validate_db(d, r, "rds", false, base).map(Target::Rds),
            None => missing(d, "rds"),
        },
        SecretType::PolarDb => match &raw.polardb {
            Some(r) => validate_db(d, r, "polardb", true, base).map(Target::PolarDb),
            None => missing(d, "polardb"),
        },
        SecretType::Redis => match &raw.redis {
            Some(r) => validate_redis(d, r, base, rotation, grace.map(|g| (g, raw.grace.as_ref())))
                .map(Target::Redis),
            None => missing(d, "redis"),
        },
        SecretType::Ecs => match &raw.ecs {
            Some(r) => validate_ecs(d, r, base).map(Target::Ecs),
            None => missing(d, "ecs"),
        },
        SecretType::RamCredentials => match &raw.ram {
            Some(r) => {
                validate_ram(d, r, base, rotation, grace.map(|g| (g, raw.grace.as_ref()))).map(Target::Ram)
            }
            None => missing(d, "ram"),
        },
    };
    if misplaced { None } else { target }
}

fn validate_generic(d: &mut Diag<'_>, raw: &RawSecret, base: &Path) -> Option<GenericSpec> {
    let exec = match &raw.exec {
        Some(e) => validate_exec(d, e).map(Some),
        None => Some(None),
    };
    let Some(g) = &raw.generic else {
        return Some(GenericSpec {
            data_type: DataType::Text,
            initial_value: None,
            generate: PasswordPolicy::default(),
            exec: exec?,
        });
    };
    let g = g.get_ref();
    let data_type = check::choice_or(
        d,
        g.data_type.as_ref(),
        "generic.data_type",
        &[("text", DataType::Text), ("binary", DataType::Binary)],
        DataType::Text,
    );
    if let (Some(_), Some(gen_table)) = (&g.initial_value, &g.generate) {
        d.error(
            gen_table.span(),
            "generic.generate",
            "set only one of generic.initial_value and generic.generate",
        );
    }
    let initial_value = match &g.initial_value {
        Some(r) => validate_ref(d, r, "generic.initial_value", base).map(Some),
        None => Some(None),
    };
    let generate = match &g.generate {
        Some(p) => validate_generate(d, p),
        None => Some(PasswordPolicy::default()),
    };
    Some(GenericSpec {
        data_type: data_type?,
        initial_value: initial_value?,
        generate: generate?,
        exec: exec?,
    })
}

fn validate_generate(d: &mut Diag<'_>, raw: &S<RawGenerate>) -> Option<PasswordPolicy> {
    let g = raw.get_ref();
    let def = PasswordPolicy::default();
    let flag = |v: &Opt<bool>, default: bool| v.as_ref().map_or(default, |b| *b.get_ref());
    let text = |v: &Opt<String>, default: &str| {
        v.as_ref()
            .map_or_else(|| default.to_owned(), |s| s.get_ref().clone())
    };
    let policy = PasswordPolicy {
        length: g.length.as_ref().map_or(def.length, |l| *l.get_ref()),
        lowercase: flag(&g.lowercase, def.lowercase),
        uppercase: flag(&g.uppercase, def.uppercase),
        digits: flag(&g.digits, def.digits),
        symbols: text(&g.symbols, &def.symbols),
        exclude: text(&g.exclude, &def.exclude),
        require_each_class: flag(&g.require_each_class, def.require_each_class),
    };
    match policy.validate() {
        Ok(()) => Some(policy),
        Err(e) => {
            // Point at the key the problem is most likely about.
            let (at, key) = if e.reason.contains("length") && g.length.is_some() {
                (g.length.as_ref().map(S::span), "generic.generate.length")
            } else if e.reason.contains("symbol") {
                (g.symbols.as_ref().map(S::span), "generic.generate.symbols")
            } else {
                (None, "generic.generate")
            };
            d.error(at.unwrap_or_else(|| raw.span()), key, e.reason);
            None
        }
    }
}

fn validate_exec(d: &mut Diag<'_>, raw: &S<RawExec>) -> Option<ExecSpec> {
    let e = raw.get_ref();
    let command = match check::required(d, e.command.as_ref(), raw.span(), "exec.command") {
        None => None,
        Some(c) if c.get_ref().is_empty() => d.at(
            c,
            "exec.command",
            "must name the program to run, e.g. [\"/usr/local/lib/rotd/rotate-token\"]",
        ),
        Some(c) => {
            let program = &c.get_ref()[0];
            if !Path::new(program.get_ref()).is_absolute() {
                d.at::<_, ()>(
                    program,
                    "exec.command",
                    "the program must be an absolute path; no shell or PATH lookup is used",
                );
                None
            } else {
                Some(c.get_ref().iter().map(|s| s.get_ref().clone()).collect())
            }
        }
    };
    let timeout = match &e.timeout {
        Some(t) => check::duration(d, t, "exec.timeout"),
        None => Some(Duration::from_secs(30)),
    };
    Some(ExecSpec {
        command: command?,
        timeout: timeout?,
    })
}

const DB_TLS: [(&str, DbTls); 4] = [
    ("disable", DbTls::Disable),
    ("prefer", DbTls::Prefer),
    ("require", DbTls::Require),
    ("verify-full", DbTls::VerifyFull),
];

fn validate_db(
    d: &mut Diag<'_>,
    raw: &S<RawDb>,
    section: &str,
    polardb: bool,
    base: &Path,
) -> Option<DbSpec> {
    let span = raw.span();
    let r = raw.get_ref();
    let k = |key: &str| format!("{section}.{key}");

    let engine = check::required(d, r.engine.as_ref(), span.clone(), &k("engine")).and_then(|e| {
        check::choice(
            d,
            e,
            &k("engine"),
            &[("mysql", DbEngine::Mysql), ("postgres", DbEngine::Postgres)],
        )
    });
    let mode = if polardb {
        match &r.mode {
            Some(m) if m.get_ref() == "dual" => Some(AccountMode::Dual),
            Some(m) => d.at(m, &k("mode"), "polardb supports only mode = \"dual\""),
            None => Some(AccountMode::Dual),
        }
    } else {
        check::required(d, r.mode.as_ref(), span.clone(), &k("mode")).and_then(|m| {
            check::choice(
                d,
                m,
                &k("mode"),
                &[("single", AccountMode::Single), ("dual", AccountMode::Dual)],
            )
        })
    };
    let host = check::required(d, r.host.as_ref(), span.clone(), &k("host"))
        .and_then(|h| check::host(d, h, &k("host")));
    let database = match &r.database {
        Some(db) => database_name(d, db, &k("database"), engine).map(Some),
        None => Some(match engine {
            Some(DbEngine::Postgres) => Some("postgres".to_owned()),
            _ => None,
        }),
    };
    let tls = check::choice_or(d, r.tls.as_ref(), &k("tls"), &DB_TLS, DbTls::Prefer);
    let ca_file = match &r.ca_file {
        Some(f) if tls == Some(DbTls::Disable) => d.at(
            f,
            &k("ca_file"),
            "has no effect with tls = \"disable\"; remove it or enable tls",
        ),
        Some(f) => check::path(d, f, &k("ca_file"), base).map(Some),
        None => Some(None),
    };
    let admin = check::required(d, r.admin.as_ref(), span.clone(), &k("admin"))
        .and_then(|a| validate_ref(d, a, &k("admin"), base));
    let admin_user = match &r.admin_user {
        Some(u) => check::account_name(d, u, &k("admin_user")).map(Some),
        None => Some(None),
    };
    let db_instance_id = match &r.db_instance_id {
        Some(v) => check::ident(d, v, &k("db_instance_id")).map(Some),
        None => Some(None),
    };
    let account = check::required(d, r.account.as_ref(), span.clone(), &k("account"))
        .and_then(|a| validate_account(d, a, section, engine?, mode?, base));
    let (accounts, provisioning) = account?;
    Some(DbSpec {
        engine: engine?,
        host: host?,
        port: r
            .port
            .as_ref()
            .map_or_else(|| engine.map_or(0, DbEngine::default_port), |p| *p.get_ref()),
        database: database?,
        tls: tls?,
        ca_file: ca_file?,
        admin: admin?,
        admin_user: admin_user?,
        db_instance_id: db_instance_id?,
        accounts,
        provisioning,
    })
}

/// A database name rotd grants on or connects to. The character set is narrower than what engines
/// allow with quoting, so the name can be used in any statement without escaping.
fn database_name(d: &mut Diag<'_>, v: &S<String>, key: &str, engine: Option<DbEngine>) -> Option<String> {
    let s = v.get_ref();
    let max = match engine {
        Some(DbEngine::Postgres) => 63,
        _ => 64,
    };
    if s.is_empty() || s.len() > max {
        return d.at(v, key, format!("must be 1 to {max} characters"));
    }
    // The backend owns the rule (it builds statements from the name): ask it, so `check` refuses
    // exactly what `serve` would.
    if let Some(engine) = engine
        && let Err(message) = rotd_backend_sql::check_database(sql_engine(engine), s)
    {
        return d.at(v, key, message);
    }
    Some(s.clone())
}

/// The SQL backend's engine for a configured one.
fn sql_engine(e: DbEngine) -> rotd_backend_sql::Engine {
    match e {
        DbEngine::Mysql => rotd_backend_sql::Engine::Mysql,
        DbEngine::Postgres => rotd_backend_sql::Engine::Postgres,
    }
}

fn validate_account(
    d: &mut Diag<'_>,
    raw: &S<RawAccount>,
    section: &str,
    engine: DbEngine,
    mode: AccountMode,
    base: &Path,
) -> Option<(Accounts, Provisioning)> {
    let a = raw.get_ref();
    let akey = format!("{section}.account");
    match (&a.create, &a.import) {
        (Some(_), Some(i)) => d.at(
            i,
            &format!("{akey}.import"),
            "set only one of account.create and account.import",
        ),
        (None, None) => d.at(
            raw,
            &akey,
            "set account.create (rotd creates the accounts) or account.import (take over existing ones)",
        ),
        (Some(c), None) => {
            let ckey = format!("{akey}.create");
            let cr = c.get_ref();
            let user = check::required(d, cr.prefix.as_ref(), c.span(), &format!("{ckey}.prefix"))
                .and_then(|p| db_account(d, p, &format!("{ckey}.prefix"), engine, mode, None));
            let databases =
                match check::required(d, cr.databases.as_ref(), c.span(), &format!("{ckey}.databases")) {
                    None => None,
                    Some(list) if list.get_ref().is_empty() => d.at(
                        list,
                        &format!("{ckey}.databases"),
                        "must name at least one database to grant on",
                    ),
                    Some(list) => {
                        let names: Vec<Option<String>> = list
                            .get_ref()
                            .iter()
                            .map(|db| database_name(d, db, &format!("{ckey}.databases"), Some(engine)))
                            .collect();
                        names.into_iter().collect()
                    }
                };
            let mut privileges = vec![
                ("ReadWrite", DbPrivilege::ReadWrite),
                ("ReadOnly", DbPrivilege::ReadOnly),
                ("DDLOnly", DbPrivilege::DdlOnly),
                ("DMLOnly", DbPrivilege::DmlOnly),
            ];
            if mode == AccountMode::Single {
                privileges.push(("Standard", DbPrivilege::Standard));
                privileges.push(("Privileged", DbPrivilege::Privileged));
            }
            let privilege = check::required(d, cr.privilege.as_ref(), c.span(), &format!("{ckey}.privilege"))
                .and_then(|p| check::choice(d, p, &format!("{ckey}.privilege"), &privileges));
            Some((
                user?,
                Provisioning::Create {
                    databases: databases?,
                    privilege: privilege?,
                },
            ))
        }
        (None, Some(i)) => {
            let ikey = format!("{akey}.import");
            let ir = i.get_ref();
            if mode == AccountMode::Single {
                for (v, key) in [
                    (ir.clone_user.as_ref().map(S::span), "clone_user"),
                    (ir.clone_password.as_ref().map(S::span), "clone_password"),
                ] {
                    if let Some(span) = v {
                        d.error(span, &format!("{ikey}.{key}"), "only applies to mode = \"dual\"");
                    }
                }
            }
            let user =
                check::required(d, ir.user.as_ref(), i.span(), &format!("{ikey}.user")).and_then(|u| {
                    db_account(
                        d,
                        u,
                        &format!("{ikey}.user"),
                        engine,
                        mode,
                        ir.clone_user.as_ref(),
                    )
                });
            let password = check::required(d, ir.password.as_ref(), i.span(), &format!("{ikey}.password"))
                .and_then(|p| validate_ref(d, p, &format!("{ikey}.password"), base));
            let clone_password = match &ir.clone_password {
                Some(p) => validate_ref(d, p, &format!("{ikey}.clone_password"), base).map(Some),
                None => Some(None),
            };
            Some((
                user?,
                Provisioning::Import {
                    password: password?,
                    clone_password: clone_password?,
                },
            ))
        }
    }
}

/// Checks an account name and, in dual mode, its clone's name against the engine's identifier
/// limit. Without an explicit clone name the clone is `<name>_clone`.
fn db_account(
    d: &mut Diag<'_>,
    user: &S<String>,
    key: &str,
    engine: DbEngine,
    mode: AccountMode,
    clone_user: Option<&S<String>>,
) -> Option<Accounts> {
    let max = engine.max_identifier_len();
    let name = check::account_name(d, user, key)?;
    let engine_name = engine.as_str();
    if name.len() > max {
        return d.at(
            user,
            key,
            format!(
                "account name is {} characters long; {engine_name} allows at most {max}",
                name.len()
            ),
        );
    }
    if mode == AccountMode::Single {
        let accounts = Accounts::Single { user: name };
        backend_accepts(d, &accounts, engine, user, key, None)?;
        return Some(accounts);
    }
    let clone = match clone_user {
        Some(c) => {
            let clone_key = key.replace(".user", ".clone_user");
            let clone = check::account_name(d, c, &clone_key)?;
            if clone.len() > max {
                return d.at(
                    c,
                    &clone_key,
                    format!(
                        "account name is {} characters long; {engine_name} allows at most {max}",
                        clone.len()
                    ),
                );
            }
            if clone == name {
                return d.at(c, &clone_key, "must differ from the first account's name");
            }
            clone
        }
        None => {
            let clone = format!("{name}_clone");
            if clone.len() > max {
                return d.at(
                    user,
                    key,
                    format!(
                        "the clone account name {clone} is {} characters long; {engine_name} allows \
                         at most {max}; shorten the name",
                        clone.len()
                    ),
                );
            }
            clone
        }
    };
    let accounts = Accounts::Dual {
        user: name,
        clone_user: clone,
    };
    backend_accepts(d, &accounts, engine, user, key, clone_user)?;
    Some(accounts)
}

/// Asks the SQL backend, which owns the naming rules, whether it would accept these accounts (for
/// example the PostgreSQL owner role `<user>_owner` must fit 63 characters too), and reports its answer
/// at the name's position.
fn backend_accepts(
    d: &mut Diag<'_>,
    accounts: &Accounts,
    engine: DbEngine,
    user: &S<String>,
    key: &str,
    clone_user: Option<&S<String>>,
) -> Option<()> {
    let backend_accounts = match accounts {
        Accounts::Single { user } => rotd_backend_sql::Accounts::Single { user: user.clone() },
        Accounts::Dual { user, clone_user } => rotd_backend_sql::Accounts::Dual {
            user: user.clone(),
            clone_user: clone_user.clone(),
        },
    };
    match rotd_backend_sql::check_accounts(sql_engine(engine), &backend_accounts) {
        Ok(()) => Some(()),
        Err(p) if p.field == "clone_user" => match clone_user {
            Some(c) => d.at(c, &key.replace(".user", ".clone_user"), p.message),
            None => d.at(user, key, format!("the clone account: {}", p.message)),
        },
        Err(p) => d.at(user, key, p.message),
    }
}

/// Whether the file asks for a Redis secret in overlap mode (whose old password, like a RAM user's old
/// AccessKey, stays valid for the grace period: 24h unless `grace` says otherwise).
fn redis_overlap(raw: &RawSecret) -> bool {
    raw.redis
        .as_ref()
        .and_then(|r| r.get_ref().mode.as_ref())
        .is_some_and(|m| m.get_ref() == "overlap")
}

/// Whether the file asks for an ECS key pair secret (whose old key stays until the next rotation unless
/// `grace` says otherwise).
fn ecs_keys(raw: &RawSecret) -> bool {
    raw.ecs
        .as_ref()
        .and_then(|r| r.get_ref().mode.as_ref())
        .is_some_and(|m| m.get_ref() == "ssh_key")
}

/// The shortest time between two rotations of a policy, in seconds (`None`: no automatic rotation).
fn shortest_gap(rotation: Option<&RotationPolicy>) -> Option<u64> {
    rotation.and_then(|p| match &p.schedule {
        RotationSchedule::Interval { interval } => Some(interval.as_secs()),
        cron @ RotationSchedule::Cron { .. } => {
            rotd_core::compile(cron).ok().and_then(|c| c.min_interval_secs())
        }
    })
}

fn validate_redis(
    d: &mut Diag<'_>,
    raw: &S<RawRedis>,
    base: &Path,
    rotation: Option<&RotationPolicy>,
    grace: Option<(Duration, Option<&S<String>>)>,
) -> Option<RedisSpec> {
    let span = raw.span();
    let r = raw.get_ref();
    let host = check::required(d, r.host.as_ref(), span.clone(), "redis.host")
        .and_then(|h| check::host(d, h, "redis.host"));
    let tls = r.tls.as_ref().is_some_and(|t| *t.get_ref());
    let ca_file = match &r.ca_file {
        Some(f) if !tls => d.at(
            f,
            "redis.ca_file",
            "has no effect without tls = true; remove it or enable tls",
        ),
        Some(f) => check::path(d, f, "redis.ca_file", base).map(Some),
        None => Some(None),
    };
    let admin = check::required(d, r.admin.as_ref(), span.clone(), "redis.admin")
        .and_then(|a| validate_ref(d, a, "redis.admin", base));
    let admin_user = match &r.admin_user {
        Some(u) => check::account_name(d, u, "redis.admin_user"),
        None => Some("default".to_owned()),
    };
    let user = check::required(d, r.user.as_ref(), span.clone(), "redis.user")
        .and_then(|u| check::account_name(d, u, "redis.user"));
    let overlap = match &r.mode {
        Some(m) => check::choice(d, m, "redis.mode", &[("dual", false), ("overlap", true)]),
        None => Some(false),
    };
    let clone_user = match (&r.clone_user, &user, overlap) {
        (Some(c), _, Some(true)) => d.at(
            c,
            "redis.clone_user",
            "has no effect with mode = \"overlap\" (one account whose passwords overlap); remove it",
        ),
        (None, _, Some(true)) => Some(None),
        (Some(c), Some(u), _) if c.get_ref() == u => {
            d.at(c, "redis.clone_user", "must differ from redis.user")
        }
        (Some(c), _, _) => check::account_name(d, c, "redis.clone_user").map(Some),
        (None, u, _) => u.as_ref().map(|u| Some(format!("{u}_clone"))),
    };
    // Overlap keeps the old password until the grace period ends, which must come before the next
    // rotation adds another one (the account then has at most two).
    if overlap == Some(true)
        && let Some((g, raw_grace)) = grace
        && let Some(gap) = shortest_gap(rotation)
        && g.as_secs() >= gap
    {
        let msg = format!(
            "grace ({}) must be shorter than the time between rotations ({}): with mode = \"overlap\" the old password is removed when it ends",
            RotationInterval::from_secs(g.as_secs()),
            RotationInterval::from_secs(gap),
        );
        match raw_grace {
            Some(v) => d.error(v.span(), "grace", msg),
            None => d.error(
                span.clone(),
                "redis",
                format!("{msg}; the default grace is 24h, set a shorter grace"),
            ),
        }
    }
    let allow_dangerous = r.allow_dangerous.as_ref().is_some_and(|a| *a.get_ref());
    let privilege = match (&r.privilege, &r.rules) {
        (Some(_), Some(rules)) => d.at(
            rules,
            "redis.rules",
            "set only one of redis.privilege (a preset) and redis.rules (your own ACL rules)",
        ),
        (None, Some(rules)) => {
            let text = rules.get_ref();
            if text.split_whitespace().next().is_none() {
                d.at(
                    rules,
                    "redis.rules",
                    "is empty; give ACL rules such as \"~app:* +@read\"",
                )
            } else if let Some(bad) = rotd_backend_redis::forbidden_rule(text) {
                d.at(
                    rules,
                    "redis.rules",
                    format!(
                        "must not contain {}: rotd sets the accounts' passwords and on/off state itself",
                        rule_shown(bad)
                    ),
                )
            } else if let Some(bad) = rotd_backend_redis::dangerous_rule(text).filter(|_| !allow_dangerous) {
                d.at(
                    rules,
                    "redis.rules",
                    format!(
                        "{bad} grants administrative or dangerous commands to an application account; set \
                         redis.allow_dangerous = true if that is intended"
                    ),
                )
            } else {
                Some(RedisPrivilege::Custom(
                    text.split_whitespace().collect::<Vec<_>>().join(" "),
                ))
            }
        }
        (p, None) => check::required(d, p.as_ref(), span.clone(), "redis.privilege").and_then(|p| {
            check::choice(
                d,
                p,
                "redis.privilege",
                &[("ReadWrite", true), ("ReadOnly", false)],
            )
            .map(|rw| {
                if rw {
                    RedisPrivilege::ReadWrite
                } else {
                    RedisPrivilege::ReadOnly
                }
            })
        }),
    };
    let instance_id = match &r.instance_id {
        Some(v) => check::ident(d, v, "redis.instance_id").map(Some),
        None => Some(None),
    };
    let region_id = match &r.region_id {
        Some(v) => check::ident(d, v, "redis.region_id").map(Some),
        None => Some(None),
    };
    let nodes = match &r.nodes {
        Some(list) => {
            let nodes: Vec<Option<Endpoint>> = list
                .get_ref()
                .iter()
                .map(|n| check::endpoint(d, n, "redis.nodes").map(|(host, port)| Endpoint { host, port }))
                .collect();
            nodes.into_iter().collect()
        }
        None => Some(Vec::new()),
    };
    let persist = match &r.persist {
        Some(p) => check::choice(
            d,
            p,
            "redis.persist",
            &[
                ("acl_file", RedisPersist::AclFile),
                ("config", RedisPersist::Config),
                ("none", RedisPersist::None),
            ],
        ),
        None => Some(RedisPersist::AclFile),
    };
    Some(RedisSpec {
        host: host?,
        port: r.port.as_ref().map_or(6379, |p| *p.get_ref()),
        tls,
        ca_file: ca_file?,
        admin: admin?,
        admin_user: admin_user?,
        user: user?,
        clone_user: clone_user?,
        privilege: privilege?,
        instance_id: instance_id?,
        region_id: region_id?,
        nodes: nodes?,
        discover: r.discover.as_ref().is_some_and(|v| *v.get_ref()),
        persist: persist?,
    })
}

/// How an offending ACL rule is named in an error: a password rule (`>…`, `<…`, `#…`, `!…`) only by
/// its kind, never its text.
fn rule_shown(rule: &str) -> String {
    match rule.chars().next() {
        Some('>') => "a password (>…)".to_owned(),
        Some('<') => "a password removal (<…)".to_owned(),
        Some('#') => "a password hash (#…)".to_owned(),
        Some('!') => "a password hash removal (!…)".to_owned(),
        _ => format!("{rule:?}"),
    }
}

/// `SHA256:` and the 43 unpadded base64 characters of a 32-byte digest, as `ssh-keygen -lf` prints.
fn is_sha256_fingerprint(s: &str) -> bool {
    let Some(b64) = s.strip_prefix("SHA256:") else {
        return false;
    };
    let b64 = b64.strip_suffix('=').unwrap_or(b64);
    b64.len() == 43
        && b64
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn validate_ecs(d: &mut Diag<'_>, raw: &S<RawEcs>, base: &Path) -> Option<EcsSpec> {
    let span = raw.span();
    let r = raw.get_ref();
    let host = check::required(d, r.host.as_ref(), span.clone(), "ecs.host")
        .and_then(|h| check::host(d, h, "ecs.host"));
    let fingerprint = check::required(
        d,
        r.host_key_sha256.as_ref(),
        span.clone(),
        "ecs.host_key_sha256",
    )
    .and_then(|f| {
        if is_sha256_fingerprint(f.get_ref()) {
            Some(f.get_ref().clone())
        } else {
            d.at(
                f,
                "ecs.host_key_sha256",
                "must be a SHA256 fingerprint as printed by ssh-keygen -lf, e.g. SHA256:<43 base64 characters>",
            )
        }
    });
    let user = check::required(d, r.user.as_ref(), span.clone(), "ecs.user")
        .and_then(|u| check::login_name(d, u, "ecs.user"));
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Password,
        SshKey,
    }
    let mode = check::required(d, r.mode.as_ref(), span.clone(), "ecs.mode").and_then(|m| {
        check::choice(
            d,
            m,
            "ecs.mode",
            &[("password", Mode::Password), ("ssh_key", Mode::SshKey)],
        )
    });
    let credential = match (mode, &r.key_type) {
        (Some(Mode::Password), Some(kt)) => d.at(kt, "ecs.key_type", "only applies to mode = \"ssh_key\""),
        (Some(Mode::Password), None) => Some(EcsCredential::Password),
        (Some(Mode::SshKey), kt) => check::choice_or(
            d,
            kt.as_ref(),
            "ecs.key_type",
            &[("ed25519", SshKeyType::Ed25519), ("rsa3072", SshKeyType::Rsa3072)],
            SshKeyType::Ed25519,
        )
        .map(EcsCredential::SshKey),
        (None, _) => None,
    };
    let admin_user = check::required(d, r.admin_user.as_ref(), span.clone(), "ecs.admin_user")
        .and_then(|u| check::login_name(d, u, "ecs.admin_user"));
    let admin = check::required(d, r.admin.as_ref(), span.clone(), "ecs.admin")
        .and_then(|a| validate_ref(d, a, "ecs.admin", base));
    let sudo = match (&r.sudo, &admin_user) {
        (Some(s), _) => *s.get_ref(),
        (None, Some(u)) => u != "root",
        (None, None) => false,
    };
    let sudo_password = match &r.sudo_password {
        Some(v) if !sudo => d.at(
            v,
            "ecs.sudo_password",
            "has no effect without sudo (admin_user is root, or sudo = false)",
        ),
        Some(v) => validate_ref(d, v, "ecs.sudo_password", base).map(Some),
        None => Some(None),
    };
    let initial_value = match &r.initial_value {
        Some(v) => validate_ref(d, v, "ecs.initial_value", base).map(Some),
        None => Some(None),
    };
    let authorized_keys = match (&r.authorized_keys, mode) {
        (Some(v), Some(Mode::Password)) => {
            d.at(v, "ecs.authorized_keys", "only applies to mode = \"ssh_key\"")
        }
        // Checked for any valid user name: `%u` expands to letters, digits, '_', '.' or '-' only.
        (Some(v), _) => match rotd_core::authorized_keys_path(v.get_ref(), "u") {
            Ok(_) => Some(v.get_ref().clone()),
            Err(why) => d.at(v, "ecs.authorized_keys", why),
        },
        (None, _) => Some(".ssh/authorized_keys".to_owned()),
    };
    let instance_id = match &r.instance_id {
        Some(v) => check::ident(d, v, "ecs.instance_id").map(Some),
        None => Some(None),
    };
    let region_id = match &r.region_id {
        Some(v) => check::ident(d, v, "ecs.region_id").map(Some),
        None => Some(None),
    };
    Some(EcsSpec {
        host: host?,
        port: r.port.as_ref().map_or(22, |p| *p.get_ref()),
        host_key_sha256: fingerprint?,
        user: user?,
        credential: credential?,
        admin_user: admin_user?,
        admin: admin?,
        sudo,
        sudo_password: sudo_password?,
        initial_value: initial_value?,
        authorized_keys: authorized_keys?,
        instance_id: instance_id?,
        region_id: region_id?,
    })
}

/// A RAM endpoint: `host`, `host:port` or `http(s)://host[:port]`, without a path.
fn is_endpoint(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    if rest.parse::<std::net::IpAddr>().is_ok() || check::is_dns_name(rest) {
        return true;
    }
    let Some((host, port)) = rest.rsplit_once(':') else {
        return false;
    };
    if port.parse::<u16>().is_err() {
        return false;
    }
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.parse::<std::net::Ipv4Addr>().is_ok() || check::is_dns_name(host),
    }
}

/// A RAM user name: 1–64 characters of letters, digits, `.`, `@`, `_` and `-`.
fn is_ram_user_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || ".@_-".contains(c))
}

fn validate_ram(
    d: &mut Diag<'_>,
    raw: &S<RawRam>,
    base: &Path,
    rotation: Option<&RotationPolicy>,
    grace: Option<(Duration, Option<&S<String>>)>,
) -> Option<RamSpec> {
    let span = raw.span();
    let r = raw.get_ref();
    let user_name = check::required(d, r.user_name.as_ref(), span.clone(), "ram.user_name").and_then(|u| {
        if is_ram_user_name(u.get_ref()) {
            Some(u.get_ref().clone())
        } else {
            d.at(
                u,
                "ram.user_name",
                "must be 1 to 64 characters of letters, digits, '.', '@', '_' and '-'",
            )
        }
    });
    let endpoint = match &r.endpoint {
        Some(e) if is_endpoint(e.get_ref()) => Some(e.get_ref().clone()),
        Some(e) => d.at(
            e,
            "ram.endpoint",
            "must be a host, host:port or http(s)://host[:port] without a path",
        ),
        None => Some("ram.aliyuncs.com".to_owned()),
    };
    let admin = check::required(d, r.admin.as_ref(), span.clone(), "ram.admin")
        .and_then(|a| validate_ref(d, a, "ram.admin", base));
    if let Some(g) = &r.grace {
        d.error(
            g.span(),
            "ram.grace",
            "moved: write grace at the top of the file (it applies to every type); ram.delete_after sets how long the deactivated key stays before it is deleted",
        );
    }
    let delete_after = match &r.delete_after {
        Some(v) => check::duration_at_most(d, v, "ram.delete_after", MAX_GRACE),
        None => Some(DEFAULT_RAM_DELETE_AFTER),
    };
    // A RAM user holds at most two AccessKeys, inactive ones included, so the old key must be
    // deleted before the next rotation creates a new one.
    if let (Some((g, raw_grace)), Some(del), Some(gap)) = (grace, delete_after, shortest_gap(rotation))
        && g.as_secs().saturating_add(del.as_secs()) >= gap
    {
        let msg = format!(
            "grace ({}) plus ram.delete_after ({}) must be shorter than the time between rotations ({}); a ram user holds at most two accesskeys",
            RotationInterval::from_secs(g.as_secs()),
            RotationInterval::from_secs(del.as_secs()),
            RotationInterval::from_secs(gap),
        );
        match (&r.delete_after, raw_grace) {
            (Some(v), _) => d.error(v.span(), "ram.delete_after", msg),
            (None, Some(v)) => d.error(v.span(), "grace", msg),
            (None, None) => d.error(span.clone(), "ram", msg),
        }
    }
    let region_id = match &r.region_id {
        Some(v) => check::ident(d, v, "ram.region_id").map(Some),
        None => Some(None),
    };
    Some(RamSpec {
        user_name: user_name?,
        endpoint: endpoint?,
        admin: admin?,
        delete_after: delete_after?,
        region_id: region_id?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        let fp = format!("SHA256:{}", "A".repeat(43));
        assert!(is_sha256_fingerprint(&fp));
        assert!(!is_sha256_fingerprint(&"A".repeat(43)));
        assert!(!is_sha256_fingerprint(&format!("SHA256:{}", "A".repeat(42))));
        assert!(!is_sha256_fingerprint("SHA256:!!"));
    }

    #[test]
    fn timezones() {
        for ok in [
            "UTC",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
        ] {
            assert!(is_timezone_name(ok), "{ok}");
        }
        for bad in ["utc", "Berlin", "Europe/", "europe/berlin", "Europe/Ber lin"] {
            assert!(!is_timezone_name(bad), "{bad}");
        }
    }

    #[test]
    fn endpoints() {
        for ok in [
            "ram.aliyuncs.com",
            "127.0.0.1:8080",
            "http://127.0.0.1:8080",
            "https://ram.example.com",
            "[::1]:443",
            "::1",
        ] {
            assert!(is_endpoint(ok), "{ok}");
        }
        for bad in ["https://x.example.com/path", "x:99999", "", "a b"] {
            assert!(!is_endpoint(bad), "{bad}");
        }
    }
}
