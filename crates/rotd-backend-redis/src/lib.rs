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

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
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

/// One secret's Redis deployment and accounts.
#[derive(Clone)]
pub struct RedisConfig {
    /// Every node the ACL change must reach, `(host, port)`; the first is the secret's target.
    pub nodes: Vec<(String, u16)>,
    /// The ACL user rotd manages the accounts as, and its password.
    pub admin_user: String,
    pub admin_password: Secret,
    /// The account pair: `user` (slot primary) and `user_clone` (slot clone).
    pub user: String,
    pub clone_user: String,
    /// The permission rules both accounts get at creation (e.g. [`READ_WRITE_RULES`]).
    pub rules: String,
    pub persist: Persist,
    /// The limit of each connection attempt and each command.
    pub timeout: Duration,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("nodes", &self.nodes)
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

impl RedisBackend {
    /// Checks the shape of the configuration (at least one node, two distinct account names, rules
    /// that do not set passwords or switch the account on or off); reaching the nodes is `check`'s job.
    pub fn new(cfg: RedisConfig) -> Result<Self, BackendError> {
        let invalid = |m: String| BackendError::permanent(KIND, "configure", m);
        if cfg.nodes.is_empty() {
            return Err(invalid("no node: give host and port, or nodes".to_owned()));
        }
        if cfg.user == cfg.clone_user {
            return Err(invalid("user and clone_user must differ".to_owned()));
        }
        if let Some(bad) = forbidden_rule(&cfg.rules) {
            return Err(invalid(format!(
                "the ACL rule {bad:?} is not allowed in an account's permissions: rotd sets passwords \
                 and the on/off state itself"
            )));
        }
        let admin = cfg
            .nodes
            .iter()
            .map(|(host, port)| pool::Node::shared(host, *port, &cfg.admin_user, &cfg.admin_password))
            .collect();
        Ok(Self { cfg, admin })
    }

    fn account(&self, slot: Slot) -> BackendResult<&str> {
        match slot {
            Slot::Primary => Ok(&self.cfg.user),
            Slot::Clone => Ok(&self.cfg.clone_user),
            Slot::Single => Err(BackendError::permanent(
                KIND,
                "slot",
                "redis secrets have two accounts (user and user_clone), no single slot",
            )),
        }
    }

    fn node_name(&self, node: usize) -> String {
        let (h, p) = &self.cfg.nodes[node];
        format!("{h}:{p}")
    }

    /// A fresh connection to `node`, not yet authenticated (the `default` user is expected to be off).
    async fn connect(&self, node: usize, op: &'static str) -> BackendResult<MultiplexedConnection> {
        let (host, port) = &self.cfg.nodes[node];
        let info = ConnectionAddr::Tcp(host.clone(), *port)
            .into_connection_info()
            .map_err(|e| self.node_err(node, op, &e))?
            .set_redis_settings(RedisConnectionInfo::default().set_skip_set_lib_name());
        let client = redis::Client::open(info).map_err(|e| self.node_err(node, op, &e))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.cfg.timeout))
            .set_response_timeout(Some(self.cfg.timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.node_err(node, op, &e))
    }

    /// Authenticates `con` as `user`. The password goes only into this command's buffer.
    async fn auth(
        &self,
        con: &mut MultiplexedConnection,
        node: usize,
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
            .map_err(|e| self.node_err(node, op, &e))
    }

    /// A connection to `node` authenticated as the admin user.
    async fn admin(&self, node: usize, op: &'static str) -> BackendResult<MultiplexedConnection> {
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

    /// Runs `ACL SETUSER <user> <rules…>` on `node` and persists it there, over the node's shared admin
    /// connection, with a save shared by the changes acknowledged meanwhile (`pool.rs`).
    async fn setuser(&self, node: usize, op: &'static str, user: &str, rules: &[&str]) -> BackendResult<()> {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(user);
        for r in rules {
            cmd.arg(*r);
        }
        let shared = &self.admin[node];
        let connect = || self.admin(node, op);
        shared
            .query(&cmd, connect, |e| self.node_err(node, op, e))
            .await?;
        shared
            .persist(self.cfg.persist, connect, |e| {
                let mut err = self.node_err(node, op, e);
                err.message = format!("persisting the ACL change: {}", err.message);
                err
            })
            .await
    }

    /// A Redis error on `node`, classified: connection and timeout failures are retryable (the node
    /// may come back), a refused login or command is permanent. Redis error texts never hold a
    /// password (they name the command, not its arguments).
    fn node_err(&self, node: usize, op: &'static str, e: &redis::RedisError) -> BackendError {
        let retryable = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || matches!(
                e.kind(),
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::BusyLoading | redis::ServerErrorKind::TryAgain
                )
            );
        let message = format!("node {}: {}", self.node_name(node), redact(e));
        if retryable {
            BackendError::retryable(KIND, op, message)
        } else {
            BackendError::permanent(KIND, op, message)
        }
    }
}

/// A Redis error's kind and text, without anything a command carried.
fn redact(e: &redis::RedisError) -> String {
    let text = e.to_string();
    // Server replies such as "WRONGPASS invalid username-password pair" hold no argument; keep the
    // text, bounded.
    text.chars().take(300).collect()
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

/// The `flags` of an `ACL GETUSER` reply (a flat list of names and values).
fn user_flags(reply: &[redis::Value]) -> Vec<String> {
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    reply
        .chunks(2)
        .find(|pair| pair.first().and_then(text).as_deref() == Some("flags"))
        .and_then(|pair| match pair.get(1) {
            Some(redis::Value::Array(items) | redis::Value::Set(items)) => {
                Some(items.iter().filter_map(text).collect())
            }
            _ => None,
        })
        .unwrap_or_default()
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

impl Backend for RedisBackend {
    fn kind(&self) -> &str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dual_accounts: true,
            creates_accounts: true,
            ..Capabilities::default()
        }
    }

    fn target(&self) -> Option<String> {
        Some(self.node_name(0))
    }

    /// Every node answers the admin user, persists the way the secret says, and has its `default` user
    /// off or passworded (otherwise a wrong password would "verify" as the default user).
    fn check(&self) -> BoxFuture<'_, BackendResult<()>> {
        Box::pin(async move {
            for node in 0..self.cfg.nodes.len() {
                let mut con = self.admin(node, "check").await?;
                let flags: Vec<redis::Value> = redis::cmd("ACL")
                    .arg("GETUSER")
                    .arg("default")
                    .query_async(&mut con)
                    .await
                    .map_err(|e| self.node_err(node, "check", &e))?;
                let flags = user_flags(&flags);
                if flags.iter().any(|f| f == "on") && flags.iter().any(|f| f == "nopass") {
                    return Err(BackendError::permanent(
                        KIND,
                        "check",
                        format!(
                            "node {}: the default user is on without a password; a wrong password would log in as it",
                            self.node_name(node)
                        ),
                    ));
                }
                if self.cfg.persist == Persist::AclFile {
                    let v: Vec<String> = redis::cmd("CONFIG")
                        .arg("GET")
                        .arg("aclfile")
                        .query_async(&mut con)
                        .await
                        .map_err(|e| self.node_err(node, "check", &e))?;
                    if v.get(1).is_none_or(String::is_empty) {
                        return Err(BackendError::permanent(
                            KIND,
                            "check",
                            format!(
                                "node {}: persist = \"acl_file\" but the node has no aclfile; use persist = \"config\"",
                                self.node_name(node)
                            ),
                        ));
                    }
                }
            }
            Ok(())
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
        if account == self.cfg.user {
            Some(Slot::Primary)
        } else if account == self.cfg.clone_user {
            Some(Slot::Clone)
        } else {
            None
        }
    }

    /// Resets the slot's account to the new password (and its configured permissions) on every node, in
    /// order; a node that fails stops the step (the nodes before it keep the change, and a repeat redoes
    /// it harmlessly). An account that does not exist yet is created.
    fn apply<'a>(&'a self, slot: Slot, new: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            let account = self.account(slot)?;
            let (named, pw) = parse_value(new)
                .ok_or_else(|| BackendError::permanent(KIND, "apply", "the value is not an account JSON"))?;
            if named != account {
                return Err(BackendError::permanent(
                    KIND,
                    "apply",
                    format!("the value is for account {named}, not {account}"),
                ));
            }
            let hash = sha256_hex(&pw);
            let hashed = format!("#{}", hash.as_str());
            let hashed = zeroize::Zeroizing::new(hashed);
            // The permissions are set exactly, every time: the account is created if it does not
            // exist yet (a secret's first value), and drift on one node is repaired. One SETUSER is
            // applied atomically, so no client sees the account between its old and new rules.
            let mut rules = vec!["resetkeys", "resetchannels", "-@all"];
            rules.extend(self.cfg.rules.split_whitespace());
            rules.extend(["resetpass", hashed.as_str(), "on"]);
            for node in 0..self.cfg.nodes.len() {
                self.setuser(node, "apply", account, &rules).await?;
            }
            Ok(())
        })
    }

    /// Logs in as the account on every node with a fresh connection.
    fn verify<'a>(&'a self, slot: Slot, secret: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            let account = self.account(slot)?;
            let (named, pw) = parse_value(secret)
                .ok_or_else(|| BackendError::permanent(KIND, "verify", "the value is not an account JSON"))?;
            if named != account {
                return Err(BackendError::permanent(
                    KIND,
                    "verify",
                    format!("the value is for account {named}, not {account}"),
                ));
            }
            for node in 0..self.cfg.nodes.len() {
                let mut con = self.connect(node, "verify").await?;
                self.auth(&mut con, node, "verify", account, &pw).await?;
                redis::cmd("PING")
                    .query_async::<()>(&mut con)
                    .await
                    .map_err(|e| self.node_err(node, "verify", &e))?;
            }
            Ok(())
        })
    }

    /// Creates (or resets) both accounts on every node with the configured permissions and fresh
    /// passwords, sent as hashes.
    fn create_accounts<'a>(&'a self) -> BoxFuture<'a, BackendResult<Vec<(Slot, Secret)>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for slot in [Slot::Primary, Slot::Clone] {
                let account = self.account(slot)?;
                let pw = rotd_core::generate_password(&PasswordPolicy::default())
                    .map_err(|e| BackendError::permanent(KIND, "create accounts", e.to_string()))?;
                let hashed = zeroize::Zeroizing::new(format!("#{}", sha256_hex(&pw).as_str()));
                let mut rules = vec!["reset", "on", hashed.as_str()];
                rules.extend(self.cfg.rules.split_whitespace());
                for node in 0..self.cfg.nodes.len() {
                    self.setuser(node, "create accounts", account, &rules).await?;
                }
                out.push((slot, self.compose(slot, &pw)?));
            }
            Ok(out)
        })
    }
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
