//! rotd-backend-redis rotates Redis ACL users, the vendor's "ApsaraDB for Redis" secret type: always two
//! accounts, `user` and `user_clone`, created by rotd with the same permissions, on every node of the
//! deployment. ACL changes are per node and live in memory until persisted, so [`RedisBackend`] applies
//! each change to every node in `nodes` (primaries and replicas), persists it there (`ACL SAVE` or
//! `CONFIG REWRITE`), and verifies a new password by a fresh connection and `AUTH` on every node; a node
//! that is down fails the step as retryable, so the rotation stays open and is never promoted with a
//! node out of step.
//!
//! The admin connection never carries a plaintext password: accounts are created and reset with the
//! password's SHA-256 (`ACL SETUSER <u> resetpass #<sha256> on`). Only the verifying `AUTH` carries the
//! new password, as any client's login does.
//!
//! Values are `{"AccountName","AccountPassword"}`, so `slot_of` reads the account from the value.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, TlsCertificates,
};
use rotd_core::{
    Backend, BackendError, BackendResult, BoxFuture, Capabilities, PasswordPolicy, Secret, Slot,
};

mod pool;

/// The backend's label in logs, metrics and errors.
pub const KIND: &str = "redis";

/// The ACL rules `ReadWrite` maps to: every key and channel, every command except the `@admin` and
/// `@dangerous` categories (no `CONFIG`, `ACL`, `FLUSHALL`, `DEBUG`, `SHUTDOWN`, `KEYS`…).
pub const READ_WRITE_RULES: &str = "~* &* +@all -@admin -@dangerous";
/// The ACL rules `ReadOnly` maps to: every key and channel, read commands and connection handling only.
pub const READ_ONLY_RULES: &str = "~* &* +@read +@connection -@admin -@dangerous";

/// How a node keeps ACL changes across a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// The node loads its users from an ACL file: `ACL SAVE` after each change.
    AclFile,
    /// The users live in redis.conf: `CONFIG REWRITE` after each change.
    Config,
    /// Nothing is persisted (a managed service persists for itself); a restart loses the change.
    None,
}

/// TLS to every node, verified against `ca_pem` (PEM certificates) or, without one, the Mozilla root
/// set. The node's host name (or IP address) must be in its certificate. There is no plain-TCP fallback.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    pub ca_pem: Option<Vec<u8>>,
}

/// A node's address.
pub type Node = (String, u16);

/// The most replicas `discover` follows beyond the listed nodes.
pub const MAX_DISCOVERED: usize = 64;

/// One secret's Redis deployment and accounts.
#[derive(Clone)]
pub struct RedisConfig {
    /// Every node the ACL change must reach, `(host, port)`; the first is the secret's target.
    pub nodes: Vec<Node>,
    /// Also ask each listed primary for its replicas (`ROLE`) and change them too.
    pub discover: bool,
    pub tls: Option<Tls>,
    /// The ACL user rotd manages the accounts as, and its password.
    pub admin_user: String,
    pub admin_password: Secret,
    /// The account (slot primary, or the single account of overlap mode).
    pub user: String,
    /// The second account of a dual pair (slot clone); `None` is overlap mode: one account whose new
    /// password is added next to the old one, which is removed by the retire step after the grace period.
    pub clone_user: Option<String>,
    /// The permission rules the accounts get at creation and at every change (e.g. [`READ_WRITE_RULES`]).
    pub rules: String,
    pub persist: Persist,
    /// The limit of each connection attempt and each command.
    pub timeout: Duration,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("nodes", &self.nodes)
            .field("discover", &self.discover)
            .field("tls", &self.tls.is_some())
            .field("admin_user", &self.admin_user)
            .field("user", &self.user)
            .field("clone_user", &self.clone_user)
            .field("rules", &self.rules)
            .field("persist", &self.persist)
            .finish_non_exhaustive()
    }
}

/// A [`Backend`] over Redis ACL users on every node.
#[derive(Debug)]
pub struct RedisBackend {
    cfg: RedisConfig,
    /// Each node's shared admin connection and coalesced persistence (`pool.rs`), in `nodes` order.
    admin: Vec<Arc<pool::Node>>,
}

fn node_name((h, p): &Node) -> String {
    if h.contains(':') {
        format!("[{h}]:{p}")
    } else {
        format!("{h}:{p}")
    }
}

impl RedisBackend {
    /// Checks the shape of the configuration (at least one node, two distinct account names, rules
    /// that do not set passwords or switch the account on or off, a CA that parses); reaching the nodes
    /// is `check`'s job.
    pub fn new(cfg: RedisConfig) -> Result<Self, BackendError> {
        let invalid = |m: String| BackendError::permanent(KIND, "configure", m);
        if cfg.nodes.is_empty() {
            return Err(invalid("no node: give host and port, or nodes".to_owned()));
        }
        if cfg.clone_user.as_deref() == Some(cfg.user.as_str()) {
            return Err(invalid("user and clone_user must differ".to_owned()));
        }
        if let Some(bad) = forbidden_rule(&cfg.rules) {
            return Err(invalid(format!(
                "the ACL rule {bad:?} is not allowed in an account's permissions: rotd sets passwords \
                 and the on/off state itself"
            )));
        }
        if let Some(Tls { ca_pem: Some(pem) }) = &cfg.tls {
            use rustls_pki_types::CertificateDer;
            use rustls_pki_types::pem::PemObject;
            match CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>() {
                Ok(certs) if !certs.is_empty() => {}
                Ok(_) => return Err(invalid("the TLS CA file holds no PEM certificate".to_owned())),
                Err(e) => return Err(invalid(format!("the TLS CA file does not parse: {e}"))),
            }
        }
        let admin = cfg.nodes.iter().map(|n| shared_node(&cfg, n)).collect();
        let b = Self { cfg, admin };
        b.client(&b.cfg.nodes[0])
            .map_err(|e| invalid(format!("the TLS settings: {}", redact(&e))))?;
        Ok(b)
    }

    fn overlap(&self) -> bool {
        self.cfg.clone_user.is_none()
    }

    fn account(&self, slot: Slot) -> BackendResult<&str> {
        match (slot, &self.cfg.clone_user) {
            (Slot::Primary, Some(_)) | (Slot::Single, None) => Ok(&self.cfg.user),
            (Slot::Clone, Some(c)) => Ok(c),
            (Slot::Single, Some(_)) => Err(BackendError::permanent(
                KIND,
                "slot",
                "this redis secret has two accounts (user and user_clone), no single slot",
            )),
            (Slot::Primary | Slot::Clone, None) => Err(BackendError::permanent(
                KIND,
                "slot",
                "this redis secret has one account with overlapping passwords, no dual slots",
            )),
        }
    }

    /// The accounts rotd manages.
    fn accounts(&self) -> Vec<&str> {
        std::iter::once(self.cfg.user.as_str())
            .chain(self.cfg.clone_user.as_deref())
            .collect()
    }

    fn client(&self, (host, port): &Node) -> redis::RedisResult<redis::Client> {
        let addr = match &self.cfg.tls {
            Some(_) => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
            None => ConnectionAddr::Tcp(host.clone(), *port),
        };
        let info = addr
            .into_connection_info()?
            .set_redis_settings(RedisConnectionInfo::default().set_skip_set_lib_name());
        match &self.cfg.tls {
            Some(tls) => redis::Client::build_with_tls(
                info,
                TlsCertificates {
                    client_tls: None,
                    root_cert: tls.ca_pem.clone(),
                },
            ),
            None => redis::Client::open(info),
        }
    }

    /// A fresh connection to `node`, not yet authenticated (the `default` user is expected to be off).
    async fn connect(&self, node: &Node, op: &'static str) -> BackendResult<MultiplexedConnection> {
        let client = self.client(node).map_err(|e| node_err(node, op, &e))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.cfg.timeout))
            .set_response_timeout(Some(self.cfg.timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| node_err(node, op, &e))
    }

    /// Authenticates `con` as `user`. The password goes only into this command's buffer.
    async fn auth(
        &self,
        con: &mut MultiplexedConnection,
        node: &Node,
        op: &'static str,
        user: &str,
        password: &Secret,
    ) -> BackendResult<()> {
        let pw = password
            .expose_str()
            .ok_or_else(|| BackendError::permanent(KIND, op, "the password is not text"))?;
        redis::cmd("AUTH")
            .arg(user)
            .arg(pw)
            .query_async::<()>(con)
            .await
            .map_err(|e| node_err(node, op, &e))
    }

    /// A connection to `node` authenticated as the admin user.
    async fn admin(&self, node: &Node, op: &'static str) -> BackendResult<MultiplexedConnection> {
        let mut con = self.connect(node, op).await?;
        self.auth(&mut con, node, op, &self.cfg.admin_user, &self.cfg.admin_password)
            .await
            .map_err(|mut e| {
                e.message = format!(
                    "logging in as the admin user {}: {}",
                    self.cfg.admin_user, e.message
                );
                e
            })?;
        Ok(con)
    }

    /// Every node a change must reach: the listed ones and, with `discover`, the replicas each listed
    /// primary reports. A listed node that cannot be asked is still in the list (the step fails there).
    /// The replica addresses come from the servers, so they are bounded: a primary that reports more
    /// than [`MAX_DISCOVERED`] new nodes, or a replica on port 0, fails the step rather than being
    /// followed.
    async fn nodes(&self, op: &'static str) -> BackendResult<Vec<Node>> {
        let mut nodes = self.cfg.nodes.clone();
        if !self.cfg.discover {
            return Ok(nodes);
        }
        for listed in &self.cfg.nodes {
            let Ok(mut con) = self.admin(listed, op).await else {
                continue;
            };
            if let Ok(Role::Primary { replicas }) = role(&mut con).await {
                for r in replicas {
                    if r.1 == 0 || r.0.is_empty() {
                        return Err(BackendError::permanent(
                            KIND,
                            op,
                            format!("node {} reports a replica without an address", node_name(listed)),
                        )
                        .on_node(node_name(listed)));
                    }
                    if !nodes.contains(&r) {
                        nodes.push(r);
                    }
                }
                if nodes.len() > self.cfg.nodes.len() + MAX_DISCOVERED {
                    return Err(BackendError::permanent(
                        KIND,
                        op,
                        format!(
                            "the primaries report more than {MAX_DISCOVERED} replicas; list the nodes in `nodes` and set discover = false"
                        ),
                    ));
                }
            }
        }
        Ok(nodes)
    }

    /// Runs `ACL SETUSER <user> <rules…>` on `node` and persists it there, over the node's shared admin
    /// connection, with a save shared by the changes acknowledged meanwhile (`pool.rs`).
    async fn setuser(&self, node: &Node, op: &'static str, user: &str, rules: &[&str]) -> BackendResult<()> {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(user);
        for r in rules {
            cmd.arg(*r);
        }
        let shared = self.shared(node);
        shared
            .query(&cmd, || self.admin(node, op), |e| node_err(node, op, e))
            .await?;
        self.persist(&shared, node, op).await
    }

    /// `node`'s shared admin connection and persistence (`pool.rs`).
    fn shared(&self, node: &Node) -> Arc<pool::Node> {
        match self.cfg.nodes.iter().position(|n| n == node) {
            Some(i) => Arc::clone(&self.admin[i]),
            // A discovered replica: shared with other secrets while one of them uses it.
            None => shared_node(&self.cfg, node),
        }
    }

    /// Persists the changes `node` has acknowledged, with a save shared by the changes acknowledged
    /// meanwhile, whichever connection they came over.
    async fn persist(&self, shared: &pool::Node, node: &Node, op: &'static str) -> BackendResult<()> {
        shared
            .persist(
                self.cfg.persist,
                || self.admin(node, op),
                |e| {
                    let mut err = node_err(node, op, e);
                    err.message = format!("persisting the ACL change: {}", err.message);
                    err
                },
            )
            .await
    }

    /// The hashed form of a `{"AccountName","AccountPassword"}` value for `slot`'s account.
    fn hashed_for(&self, slot: Slot, value: &Secret, op: &'static str) -> BackendResult<(&str, Hashed)> {
        let account = self.account(slot)?;
        let (named, pw) = parse_value(value)
            .ok_or_else(|| BackendError::permanent(KIND, op, "the value is not an account JSON"))?;
        if named != account {
            return Err(BackendError::permanent(
                KIND,
                op,
                format!("the value is for account {named}, not {account}"),
            ));
        }
        Ok((account, Hashed::of(&pw)))
    }

    /// The permission rules, exactly, every time: drift on one node is repaired, and one SETUSER is
    /// applied atomically, so no client sees the account between its old and new rules.
    fn permission_rules(&self) -> Vec<&str> {
        let mut rules = vec!["resetkeys", "resetchannels", "-@all"];
        rules.extend(self.cfg.rules.split_whitespace());
        rules
    }
}

/// The shared admin connection of `node` under this secret's admin credential and transport.
fn shared_node(cfg: &RedisConfig, (host, port): &Node) -> Arc<pool::Node> {
    let transport = match &cfg.tls {
        None => pool::Transport::Tcp,
        Some(t) => pool::Transport::Tls {
            ca_sha256: t.ca_pem.as_deref().map(|pem| {
                let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pem);
                let mut out = [0u8; 32];
                out.copy_from_slice(d.as_ref());
                out
            }),
        },
    };
    pool::Node::shared(host, *port, transport, &cfg.admin_user, &cfg.admin_password)
}

/// A node's place in replication, from `ROLE`.
enum Role {
    Primary { replicas: Vec<Node> },
    Replica { primary: Node, linked: bool },
    Other(String),
}

async fn role(con: &mut MultiplexedConnection) -> redis::RedisResult<Role> {
    let reply: Vec<redis::Value> = redis::cmd("ROLE").query_async(con).await?;
    let kind = reply.first().and_then(text).unwrap_or_default();
    Ok(match kind.as_str() {
        "master" => Role::Primary {
            replicas: match reply.get(2) {
                Some(redis::Value::Array(items)) => items
                    .iter()
                    .filter_map(|r| match r {
                        redis::Value::Array(f) => {
                            let host = f.first().and_then(text)?;
                            let port = f.get(1).and_then(text)?.parse().ok()?;
                            Some((host, port))
                        }
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            },
        },
        "slave" => Role::Replica {
            primary: (
                reply.get(1).and_then(text).unwrap_or_default(),
                reply
                    .get(2)
                    .and_then(|v| match v {
                        redis::Value::Int(i) => u16::try_from(*i).ok(),
                        v => text(v)?.parse().ok(),
                    })
                    .unwrap_or(0),
            ),
            linked: reply.get(3).and_then(text).as_deref() == Some("connected"),
        },
        other => Role::Other(other.to_owned()),
    })
}

async fn setuser(
    con: &mut MultiplexedConnection,
    node: &Node,
    op: &'static str,
    user: &str,
    rules: &[&str],
) -> BackendResult<()> {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(user);
    for r in rules {
        cmd.arg(*r);
    }
    cmd.query_async::<()>(con)
        .await
        .map_err(|e| node_err(node, op, &e))
}

/// `ACL GETUSER <user>` as a map of field to value (`None`: no such user).
async fn getuser(
    con: &mut MultiplexedConnection,
    node: &Node,
    op: &'static str,
    user: &str,
) -> BackendResult<Option<BTreeMap<String, redis::Value>>> {
    let reply: Option<Vec<redis::Value>> = redis::cmd("ACL")
        .arg("GETUSER")
        .arg(user)
        .query_async(con)
        .await
        .map_err(|e| node_err(node, op, &e))?;
    Ok(reply.map(|fields| {
        fields
            .chunks(2)
            .filter_map(|pair| Some((pair.first().and_then(text)?, pair.get(1)?.clone())))
            .collect()
    }))
}

/// The text of a string reply.
fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// The strings of a list (or set) reply.
fn texts(v: Option<&redis::Value>) -> Vec<String> {
    match v {
        Some(redis::Value::Array(items) | redis::Value::Set(items)) => {
            items.iter().filter_map(text).collect()
        }
        Some(v) => text(v).into_iter().collect(),
        None => Vec::new(),
    }
}

/// A Redis error on `node`, classified: connection and timeout failures are retryable (the node may
/// come back), a refused login or command is permanent. Redis error texts never hold a password (they
/// name the command, not its arguments).
fn node_err(node: &Node, op: &'static str, e: &redis::RedisError) -> BackendError {
    let retryable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading | redis::ServerErrorKind::TryAgain)
        );
    let name = node_name(node);
    let message = format!("node {name}: {}", redact(e));
    if retryable {
        BackendError::retryable(KIND, op, message).on_node(name)
    } else {
        BackendError::permanent(KIND, op, message).on_node(name)
    }
}

/// A Redis error's kind and text, without anything a command carried.
fn redact(e: &redis::RedisError) -> String {
    let text = e.to_string();
    // Server replies such as "WRONGPASS invalid username-password pair" hold no argument; keep the
    // text, bounded.
    text.chars().take(300).collect()
}

/// A password's SHA-256 in the forms ACL rules take: `#<hex>` adds it, `!<hex>` removes it.
struct Hashed(zeroize::Zeroizing<String>);

impl Hashed {
    fn of(password: &Secret) -> Self {
        Self(sha256_hex(password))
    }
    fn hex(&self) -> &str {
        &self.0
    }
    fn add(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(format!("#{}", self.hex()))
    }
    fn remove(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(format!("!{}", self.hex()))
    }
}

/// The lowercase hex SHA-256 of a password, the form `ACL SETUSER … #<hash>` takes.
fn sha256_hex(password: &Secret) -> zeroize::Zeroizing<String> {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, password.expose_secret());
    zeroize::Zeroizing::new(hex::encode(d.as_ref()))
}

/// The first rule that would set a password, a hash, `nopass`, switch the account on or off or reset
/// it: rotd owns those.
pub fn forbidden_rule(rules: &str) -> Option<&str> {
    rules.split_whitespace().find(|r| {
        let l = r.to_ascii_lowercase();
        l == "on"
            || l == "off"
            || l == "nopass"
            || l.starts_with("reset")
            || r.starts_with('>')
            || r.starts_with('<')
            || r.starts_with('#')
            || r.starts_with('!')
    })
}

/// The rules that grant administrative or dangerous commands, refused in a permission unless the
/// operator says `allow_dangerous = true`.
pub fn dangerous_rule(rules: &str) -> Option<&str> {
    rules.split_whitespace().find(|r| {
        let l = r.to_ascii_lowercase();
        l == "+@admin"
            || l == "+@dangerous"
            || l == "+acl"
            || l.starts_with("+acl|")
            || l == "allcommands"
            || l == "+@all"
    })
}

fn account_value(account: &str, password: &str) -> Secret {
    Secret::from(serde_json::json!({"AccountName": account, "AccountPassword": password}).to_string())
}

/// The account and password of a `{"AccountName","AccountPassword"}` value.
fn parse_value(value: &Secret) -> Option<(String, Secret)> {
    let v: serde_json::Value = serde_json::from_slice(value.expose_secret()).ok()?;
    Some((
        v.get("AccountName")?.as_str()?.to_owned(),
        Secret::from(v.get("AccountPassword")?.as_str()?),
    ))
}

/// How one node's copy of a managed account compares, for `rotd plan`.
#[derive(PartialEq, Eq)]
enum AccountState {
    Missing,
    /// The password hashes (sorted) and everything else `ACL GETUSER` says (flags, commands, keys,
    /// channels, selectors), as text.
    Present {
        passwords: Vec<String>,
        rest: String,
    },
}

impl AccountState {
    fn of(fields: Option<BTreeMap<String, redis::Value>>) -> Self {
        let Some(mut fields) = fields else {
            return AccountState::Missing;
        };
        let mut passwords = texts(fields.remove("passwords").as_ref());
        passwords.sort();
        AccountState::Present {
            passwords,
            rest: format!("{fields:?}"),
        }
    }

    /// How `self` differs from the majority's `other`, in words without any hash.
    fn differs(&self, other: &AccountState) -> Option<&'static str> {
        match (self, other) {
            (a, b) if a == b => None,
            (AccountState::Missing, _) => Some("missing"),
            (_, AccountState::Missing) => Some("present where the other nodes have none"),
            (AccountState::Present { passwords: p, .. }, AccountState::Present { passwords: q, .. })
                if p != q =>
            {
                Some("has different passwords")
            }
            _ => Some("has different permissions or flags"),
        }
    }
}

impl Backend for RedisBackend {
    fn kind(&self) -> &str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        if self.overlap() {
            Capabilities {
                overlap: true,
                retire_steps: 1,
                creates_accounts: true,
                ..Capabilities::default()
            }
        } else {
            Capabilities {
                dual_accounts: true,
                creates_accounts: true,
                ..Capabilities::default()
            }
        }
    }

    fn target(&self) -> Option<String> {
        Some(node_name(&self.cfg.nodes[0]))
    }

    /// Every node answers the admin user, can persist the way the secret says, and has its `default`
    /// user off or passworded (otherwise a wrong password would "verify" as the default user).
    fn check(&self) -> BoxFuture<'_, BackendResult<()>> {
        Box::pin(async move {
            for node in &self.nodes("check").await? {
                let mut con = self.admin(node, "check").await?;
                let default = getuser(&mut con, node, "check", "default").await?;
                let flags = texts(default.as_ref().and_then(|f| f.get("flags")));
                if flags.iter().any(|f| f == "on") && flags.iter().any(|f| f == "nopass") {
                    return Err(BackendError::permanent(
                        KIND,
                        "check",
                        format!(
                            "node {}: the default user is on without a password; a wrong password would log in as it",
                            node_name(node)
                        ),
                    )
                    .on_node(node_name(node)));
                }
                let aclfile = aclfile(&mut con, node, "check").await?;
                let problem = match (self.cfg.persist, aclfile.is_some()) {
                    (Persist::AclFile, false) => Some(
                        "persist = \"acl_file\" but the node has no aclfile; use persist = \"config\" if its users live in redis.conf",
                    ),
                    (Persist::Config, true) => Some(
                        "persist = \"config\" but the node loads its users from an aclfile, which CONFIG REWRITE does not write; use persist = \"acl_file\"",
                    ),
                    _ => None,
                };
                if let Some(p) = problem {
                    return Err(BackendError::permanent(
                        KIND,
                        "check",
                        format!("node {}: {p}", node_name(node)),
                    )
                    .on_node(node_name(node)));
                }
            }
            Ok(())
        })
    }

    /// Per node: its role, how it keeps ACL changes, and whether the managed accounts on it differ from
    /// the other nodes' (a replica added later, a failed-over node restarted from an old file).
    fn inspect(&self) -> BoxFuture<'_, BackendResult<Vec<String>>> {
        Box::pin(async move {
            let nodes = self.nodes("inspect").await?;
            let mut lines = Vec::new();
            let mut states: Vec<(Node, Vec<AccountState>)> = Vec::new();
            for node in &nodes {
                let name = node_name(node);
                let listed = if self.cfg.nodes.contains(node) {
                    ""
                } else {
                    " (discovered)"
                };
                let mut con = match self.admin(node, "inspect").await {
                    Ok(c) => c,
                    Err(e) => {
                        lines.push(format!("{name}{listed}: unreachable: {}", e.message));
                        continue;
                    }
                };
                let role = match role(&mut con).await {
                    Ok(Role::Primary { replicas }) => format!("primary with {} replica(s)", replicas.len()),
                    Ok(Role::Replica { primary, linked }) => format!(
                        "replica of {}{}",
                        node_name(&primary),
                        if linked { "" } else { " (link down)" }
                    ),
                    Ok(Role::Other(r)) => r,
                    Err(e) => format!("role unknown ({})", redact(&e)),
                };
                let keeps = match (aclfile(&mut con, node, "inspect").await?, self.cfg.persist) {
                    (Some(f), Persist::AclFile) => format!("ACL SAVE to {f}"),
                    (None, Persist::Config) => "CONFIG REWRITE of its redis.conf".to_owned(),
                    (_, Persist::None) => "not persisted by rotd (persist = \"none\"): a restart loses a change unless the service keeps it".to_owned(),
                    (Some(f), Persist::Config) => format!("loads an aclfile ({f}) that persist = \"config\" would not write"),
                    (None, Persist::AclFile) => "no aclfile, so persist = \"acl_file\" cannot save".to_owned(),
                };
                lines.push(format!("{name}{listed}: {role}; changes kept by {keeps}"));
                let mut accounts = Vec::new();
                for a in self.accounts() {
                    accounts.push(AccountState::of(getuser(&mut con, node, "inspect", a).await?));
                }
                states.push((node.clone(), accounts));
            }
            // The majority of reachable nodes is the reference (the first node breaks ties).
            for (i, account) in self.accounts().into_iter().enumerate() {
                let reference = states
                    .iter()
                    .map(|(_, a)| &a[i])
                    .max_by_key(|s| states.iter().filter(|(_, a)| &a[i] == *s).count());
                let Some(reference) = reference else { continue };
                for (node, a) in &states {
                    if let Some(how) = a[i].differs(reference) {
                        lines.push(format!(
                            "{}: account {account} {how} compared with the other nodes; the next rotation sets it",
                            node_name(node)
                        ));
                    }
                }
            }
            Ok(lines)
        })
    }

    fn compose(&self, slot: Slot, password: &Secret) -> BackendResult<Secret> {
        let account = self.account(slot)?;
        let pw = password
            .expose_str()
            .ok_or_else(|| BackendError::permanent(KIND, "compose", "the password is not text"))?;
        Ok(account_value(account, pw))
    }

    fn slot_of(&self, value: &Secret) -> Option<Slot> {
        let (account, _) = parse_value(value)?;
        match &self.cfg.clone_user {
            None if account == self.cfg.user => Some(Slot::Single),
            Some(_) if account == self.cfg.user => Some(Slot::Primary),
            Some(c) if account == *c => Some(Slot::Clone),
            _ => None,
        }
    }

    /// Dual: resets the slot's account to the new password (and its configured permissions) on every
    /// node, in order. Overlap: adds the new password next to the ones the account has. A node that fails
    /// stops the step (the nodes before it keep the change, and a repeat redoes it harmlessly). An account
    /// that does not exist yet is created.
    fn apply<'a>(&'a self, slot: Slot, new: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            let (account, hashed) = self.hashed_for(slot, new, "apply")?;
            let add = hashed.add();
            let mut rules = self.permission_rules();
            if !self.overlap() {
                rules.push("resetpass");
            }
            rules.extend([add.as_str(), "on"]);
            for node in &self.nodes("apply").await? {
                self.setuser(node, "apply", account, &rules).await?;
            }
            Ok(())
        })
    }

    /// Logs in as the account on every node with a fresh connection.
    fn verify<'a>(&'a self, slot: Slot, secret: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            let account = self.account(slot)?;
            let (_, pw) = parse_value(secret)
                .filter(|(named, _)| named == account)
                .ok_or_else(|| {
                    BackendError::permanent(KIND, "verify", format!("the value is not for account {account}"))
                })?;
            for node in &self.nodes("verify").await? {
                let mut con = self.connect(node, "verify").await?;
                self.auth(&mut con, node, "verify", account, &pw).await?;
                redis::cmd("PING")
                    .query_async::<()>(&mut con)
                    .await
                    .map_err(|e| node_err(node, "verify", &e))?;
            }
            Ok(())
        })
    }

    /// Overlap mode: removes the old password from the account on every node where it still is.
    fn retire<'a>(&'a self, slot: Slot, old: &'a Secret, _step: u8) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            if !self.overlap() {
                return Ok(());
            }
            let (account, hashed) = self.hashed_for(slot, old, "retire")?;
            let remove = hashed.remove();
            for node in &self.nodes("retire").await? {
                let mut con = self.admin(node, "retire").await?;
                let has = match getuser(&mut con, node, "retire", account).await? {
                    Some(f) => texts(f.get("passwords")).iter().any(|p| p == hashed.hex()),
                    None => false,
                };
                if has {
                    setuser(&mut con, node, "retire", account, &[remove.as_str()]).await?;
                    self.persist(&self.shared(node), node, "retire").await?;
                }
            }
            Ok(())
        })
    }

    /// Creates (or resets) the accounts on every node with the configured permissions and fresh
    /// passwords, sent as hashes.
    fn create_accounts<'a>(&'a self) -> BoxFuture<'a, BackendResult<Vec<(Slot, Secret)>>> {
        Box::pin(async move {
            let slots: &[Slot] = if self.overlap() {
                &[Slot::Single]
            } else {
                &[Slot::Primary, Slot::Clone]
            };
            let nodes = self.nodes("create accounts").await?;
            let mut out = Vec::new();
            for &slot in slots {
                let account = self.account(slot)?;
                let pw = rotd_core::generate_password(&PasswordPolicy::default())
                    .map_err(|e| BackendError::permanent(KIND, "create accounts", e.to_string()))?;
                let add = Hashed::of(&pw).add();
                let mut rules = vec!["reset", "on", add.as_str()];
                rules.extend(self.cfg.rules.split_whitespace());
                for node in &nodes {
                    self.setuser(node, "create accounts", account, &rules).await?;
                }
                out.push((slot, self.compose(slot, &pw)?));
            }
            Ok(out)
        })
    }
}

/// The node's `aclfile` setting, `None` when it has none (its users live in redis.conf).
async fn aclfile(
    con: &mut MultiplexedConnection,
    node: &Node,
    op: &'static str,
) -> BackendResult<Option<String>> {
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("aclfile")
        .query_async(con)
        .await
        .map_err(|e| node_err(node, op, &e))?;
    Ok(v.into_iter().nth(1).filter(|f| !f.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_that_rotd_owns_or_that_grant_too_much_are_found() {
        assert_eq!(forbidden_rule("~* +@read >hunter2"), Some(">hunter2"));
        assert_eq!(forbidden_rule("~* on"), Some("on"));
        assert_eq!(forbidden_rule("resetkeys ~app:*"), Some("resetkeys"));
        assert_eq!(forbidden_rule("#abcd"), Some("#abcd"));
        assert_eq!(forbidden_rule(READ_WRITE_RULES), None);
        assert_eq!(forbidden_rule(READ_ONLY_RULES), None);
        assert_eq!(dangerous_rule("~* +@admin"), Some("+@admin"));
        assert_eq!(dangerous_rule("~* +ACL"), Some("+ACL"));
        assert_eq!(dangerous_rule("allcommands"), Some("allcommands"));
        assert_eq!(dangerous_rule(READ_ONLY_RULES), None);
        // READ_WRITE grants +@all and takes the dangerous categories away again.
        assert_eq!(dangerous_rule("~* +@all -@admin"), Some("+@all"));
    }

    #[test]
    fn the_hash_is_the_sha256_redis_stores() {
        // echo -n password | sha256sum
        assert_eq!(
            sha256_hex(&Secret::from("password")).as_str(),
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }
}
