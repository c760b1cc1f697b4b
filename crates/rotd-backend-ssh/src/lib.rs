//! The ECS backend: a login user's password or SSH key pair on a Linux host, over SSH (russh).
//!
//! rotd logs in as a management user (`admin_user`, with a password or a private key, through `sudo`
//! when it is not root) to a host whose key must match the pinned `SHA256:` fingerprint: a host that
//! presents another key gets nothing, not even a login attempt.
//!
//! - **Password** (single account, no overlap: the vendor's behaviour): `apply` runs `chpasswd` with
//!   `user:password` on its stdin, never in argv; `verify` logs in over SSH as the user with the new
//!   password, or, where sshd refuses password logins, checks it through the management login with
//!   pam_unix's `unix_chkpwd` (also fed on stdin).
//! - **SSH key pair** (overlap, one retire step): a rotation generates an Ed25519 or RSA-3072 key pair,
//!   `apply` adds the public key to the user's `authorized_keys` (temp file and rename in the same
//!   directory, the file's owner and mode kept, every other line byte for byte), `verify` logs in with
//!   the new private key, and `retire` removes the old key after the grace period: only a key rotd
//!   added (its comment `rotd:<secret>:<version>`), and never the last one rotd added.

mod authorized;
mod keys;
mod remote;
mod scripts;

use std::time::Duration;

use rotd_core::{Backend, BackendError, BackendResult, BoxFuture, Capabilities, Secret, Slot};
use russh::MethodKind;
use russh::keys::PrivateKey;
use tracing::warn;
use zeroize::Zeroizing;

pub use keys::KeyType;

use remote::{Endpoint, ExecFailure, Failure, Login, Output};

const KIND: &str = "ssh";

/// What rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Password,
    Key(KeyType),
}

/// One managed login on one host.
#[derive(Clone)]
pub struct SshConfig {
    /// The rotd secret, named in the comment of every key rotd adds.
    pub secret_name: String,
    pub host: String,
    pub port: u16,
    /// The pinned host key, `SHA256:<base64>` as `ssh-keygen -l` prints it.
    pub host_key_sha256: String,
    /// The login whose credential rotates.
    pub user: String,
    pub credential: Credential,
    /// The management login.
    pub admin_user: String,
    /// Its password or private key (OpenSSH or PEM), or a JSON value with `Password` or `PrivateKey`
    /// (another ECS secret).
    pub admin: Secret,
    /// Run the host-side commands through `sudo` (the management login is not root).
    pub sudo: bool,
    /// The password sudo asks for, when it asks and the management login is a key; a password login's
    /// own password is used otherwise.
    pub sudo_password: Option<Secret>,
    /// Where the user's keys are: relative to the home directory, or absolute; `%u` is the user.
    pub authorized_keys: String,
    /// Each connection, login and command.
    pub timeout: Duration,
}

impl std::fmt::Debug for SshConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("credential", &self.credential)
            .field("admin_user", &self.admin_user)
            .field("sudo", &self.sudo)
            .finish_non_exhaustive()
    }
}

/// How the management login authenticates.
enum AdminAuth {
    Password(Zeroizing<String>),
    Key(Box<PrivateKey>),
}

pub struct SshBackend {
    cfg: SshConfig,
    ep: Endpoint,
    admin: AdminAuth,
    /// The authorized_keys path with `%u` expanded and a leading `%h/` or `~/` dropped.
    keys_path: String,
}

impl std::fmt::Debug for SshBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshBackend")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn admin_auth(material: &Secret) -> Result<AdminAuth, String> {
    let text = material
        .expose_str()
        .ok_or_else(|| "the admin credential is not UTF-8 text".to_owned())?;
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        let doc: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|_| "the admin credential is not valid JSON".to_owned())?;
        if let Some(k) = doc.get("PrivateKey").and_then(|v| v.as_str()) {
            return keys::parse_private(k).map(|k| AdminAuth::Key(Box::new(k)));
        }
        if let Some(p) = doc.get("Password").and_then(|v| v.as_str()) {
            return Ok(AdminAuth::Password(Zeroizing::new(p.to_owned())));
        }
        return Err("the admin credential's JSON has neither PrivateKey nor Password".to_owned());
    }
    if trimmed.starts_with("-----BEGIN") {
        return keys::parse_private(text).map(|k| AdminAuth::Key(Box::new(k)));
    }
    let pw = text.strip_suffix('\n').unwrap_or(text);
    let pw = pw.strip_suffix('\r').unwrap_or(pw);
    if pw.is_empty() {
        return Err("the admin password is empty".to_owned());
    }
    Ok(AdminAuth::Password(Zeroizing::new(pw.to_owned())))
}

/// The value a file's `initial_value` gives for `user`, in the vendor's format, checked: the bare
/// password (one line) or private key (its public key derived), or the vendor's JSON. Never echoes the
/// material in an error.
pub fn initial_value(user: &str, material: &Secret, keys: bool) -> Result<Secret, String> {
    keys::initial(user, material, keys)
}

impl SshBackend {
    pub fn new(cfg: SshConfig) -> Result<Self, String> {
        if !rotd_core::is_login_name(&cfg.user) {
            return Err(format!("{:?} is not a login name", cfg.user));
        }
        if !rotd_core::is_login_name(&cfg.admin_user) {
            return Err(format!("{:?} is not a login name", cfg.admin_user));
        }
        if !cfg.host_key_sha256.starts_with("SHA256:") {
            return Err("host_key_sha256 must be a SHA256: fingerprint".to_owned());
        }
        let keys_path = rotd_core::authorized_keys_path(&cfg.authorized_keys, &cfg.user)
            .map_err(|why| format!("authorized_keys {:?} {why}", cfg.authorized_keys))?;
        let admin = admin_auth(&cfg.admin)?;
        Ok(Self {
            ep: Endpoint {
                host: cfg.host.clone(),
                port: cfg.port,
                host_key_sha256: cfg.host_key_sha256.clone(),
                timeout: cfg.timeout,
            },
            admin,
            keys_path,
            cfg,
        })
    }

    fn is_keys(&self) -> bool {
        matches!(self.cfg.credential, Credential::Key(_))
    }

    fn node(&self) -> String {
        format!("{}:{}", self.cfg.host, self.cfg.port)
    }

    fn err_connect(&self, op: &'static str, who: &str, f: Failure) -> BackendError {
        let at = self.node();
        match f {
            Failure::HostKey { seen } => BackendError::permanent(
                KIND,
                op,
                format!(
                    "{at} presented the host key {}, not the pinned ecs.host_key_sha256 {}; nothing was sent. \
                     If the host was rebuilt, check its key out of band (ssh-keyscan on the host's console) and update the file",
                    seen.as_deref().unwrap_or("(none)"),
                    self.cfg.host_key_sha256
                ),
            )
            .identity_mismatch(),
            Failure::Transport(m) => BackendError::retryable(KIND, op, format!("connecting to {at}: {m}")),
            Failure::TimedOut => BackendError::retryable(
                KIND,
                op,
                format!("{at} did not answer within {:?}", self.cfg.timeout),
            ),
            Failure::Refused { .. } => {
                BackendError::permanent(KIND, op, format!("{at} refused the login of {who}"))
            }
        }
    }

    /// The management login.
    async fn admin_session(&self, op: &'static str) -> BackendResult<remote::Session> {
        let how = match &self.admin {
            AdminAuth::Password(pw) => Login::Password(pw),
            AdminAuth::Key(k) => Login::Key(k),
        };
        remote::login(&self.ep, &self.cfg.admin_user, how)
            .await
            .map_err(|f| self.err_connect(op, &format!("the management user {}", self.cfg.admin_user), f))
    }

    fn sudo_password(&self) -> Option<Zeroizing<String>> {
        if let Some(p) = &self.cfg.sudo_password {
            return p.expose_str().map(|s| {
                let s = s.strip_suffix('\n').unwrap_or(s);
                Zeroizing::new(s.to_owned())
            });
        }
        match &self.admin {
            AdminAuth::Password(pw) => Some(pw.clone()),
            AdminAuth::Key(_) => None,
        }
    }

    /// Runs a script as root over its own management login; `secret` (the payload's secret part) is
    /// scrubbed from any message.
    async fn run(
        &self,
        op: &'static str,
        script: &str,
        args: &[&str],
        stdin: &[u8],
        secret: Option<&str>,
    ) -> BackendResult<Output> {
        let session = self.admin_session(op).await?;
        let out = self.run_on(&session, op, script, args, stdin, secret).await;
        session.close().await;
        out
    }

    /// [`run`](Self::run) over a management login the caller holds, so the steps of one edit (read,
    /// then write) share one SSH handshake. The sudo password, like `secret`, is scrubbed from messages.
    async fn run_on(
        &self,
        session: &remote::Session,
        op: &'static str,
        script: &str,
        args: &[&str],
        stdin: &[u8],
        secret: Option<&str>,
    ) -> BackendResult<Output> {
        let cmd = remote::command(script, args, self.cfg.sudo);
        let sudo_pw = self.sudo_password();
        let out = session
            .run(&cmd, sudo_pw.as_deref().map(String::as_str), stdin)
            .await;
        let at = self.node();
        let mut out = out.map_err(|e| match e {
            ExecFailure::Transport(m) => BackendError::retryable(KIND, op, format!("{at}: {m}")),
            ExecFailure::TimedOut => {
                BackendError::retryable(KIND, op, format!("{at}: the command did not finish within {:?}", self.cfg.timeout))
            }
            ExecFailure::SudoNeedsPassword => BackendError::permanent(
                KIND,
                op,
                format!(
                    "{at}: sudo asks {} for a password; set ecs.sudo_password, or allow the commands with NOPASSWD",
                    self.cfg.admin_user
                ),
            ),
            ExecFailure::SudoRefused => BackendError::permanent(
                KIND,
                op,
                format!("{at}: sudo refused the password of {}", self.cfg.admin_user),
            ),
            ExecFailure::TooMuchOutput => {
                BackendError::permanent(KIND, op, format!("{at}: the command printed more than rotd reads"))
            }
        })?;
        for s in [secret, sudo_pw.as_deref().map(String::as_str)]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
        {
            out.stderr = out.stderr.replace(s, "[redacted]");
        }
        Ok(out)
    }

    /// An error for a script that ended badly.
    fn script_err(&self, op: &'static str, out: &Output) -> BackendError {
        let at = self.node();
        let why = if out.stderr.is_empty() {
            "no message".to_owned()
        } else {
            out.stderr.clone()
        };
        if !out.ready {
            // sudo (or the login shell) refused before the script ran.
            return BackendError::permanent(
                KIND,
                op,
                format!(
                    "{at}: the command did not start ({}): {why}",
                    status_text(out.status)
                ),
            );
        }
        match out.status {
            Some(10..=12 | 20) => BackendError::permanent(KIND, op, format!("{at}: {why}")),
            _ => BackendError::retryable(KIND, op, format!("{at}: {} ({why})", status_text(out.status))),
        }
    }

    /// The user's authorized_keys: its content and the checksum a write must find, or `None` if missing.
    async fn read_keys(
        &self,
        session: &remote::Session,
        op: &'static str,
    ) -> BackendResult<Option<(String, String)>> {
        let out = self
            .run_on(
                session,
                op,
                &scripts::read_keys(),
                &[&self.cfg.user, &self.keys_path],
                &[],
                None,
            )
            .await?;
        if out.status != Some(0) {
            return Err(self.script_err(op, &out));
        }
        let text = String::from_utf8(out.stdout).map_err(|_| {
            BackendError::permanent(
                KIND,
                op,
                format!("{}: authorized_keys is not UTF-8 text", self.node()),
            )
        })?;
        if let Some(rest) = text.strip_prefix("present\n") {
            let sum = hex::encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                rest.as_bytes(),
            ));
            Ok(Some((rest.to_owned(), sum)))
        } else if text.starts_with("missing\n") {
            Ok(None)
        } else {
            Err(BackendError::retryable(
                KIND,
                op,
                format!("{}: unexpected output while reading authorized_keys", self.node()),
            ))
        }
    }

    async fn write_keys(
        &self,
        session: &remote::Session,
        op: &'static str,
        content: &str,
        expect: &str,
    ) -> BackendResult<()> {
        let out = self
            .run_on(
                session,
                op,
                &scripts::write_keys(),
                &[&self.cfg.user, &self.keys_path, expect],
                content.as_bytes(),
                None,
            )
            .await?;
        if out.status == Some(0) && out.stdout.starts_with(b"written") {
            Ok(())
        } else {
            Err(self.script_err(op, &out))
        }
    }

    /// One edit of the user's authorized_keys over one management login: read it, let `change` make the
    /// new content from the current one (`None`: nothing to write), write it if nobody changed the file
    /// meanwhile. A concurrent edit is retried once at once, then left to the engine's backoff.
    async fn edit_keys(
        &self,
        op: &'static str,
        change: impl Fn(&str) -> Option<String>,
    ) -> BackendResult<()> {
        let session = self.admin_session(op).await?;
        let mut result = Ok(());
        for attempt in 0..2 {
            result = match self.read_keys(&session, op).await {
                Ok(current) => {
                    let (content, expect) = match &current {
                        Some((c, sum)) => (c.as_str(), sum.as_str()),
                        None => ("", "missing"),
                    };
                    match change(content) {
                        None => Ok(()),
                        Some(next) => self.write_keys(&session, op, &next, expect).await,
                    }
                }
                Err(e) => Err(e),
            };
            match &result {
                Err(e) if attempt == 0 && e.is_retryable() => continue,
                _ => break,
            }
        }
        session.close().await;
        result
    }

    /// Checks a password through the management login (for hosts that refuse password logins).
    async fn check_password_via_admin(&self, pw: &str) -> BackendResult<()> {
        let mut input = Zeroizing::new(Vec::with_capacity(pw.len() + 1));
        input.extend_from_slice(pw.as_bytes());
        input.push(0);
        let out = self
            .run(
                "verify",
                &scripts::check_password(),
                &[&self.cfg.user],
                &input,
                Some(pw),
            )
            .await?;
        match out.status {
            Some(0) if out.ready => Ok(()),
            Some(12) => Err(self.script_err("verify", &out)),
            _ if out.ready => Err(BackendError::permanent(
                KIND,
                "verify",
                format!(
                    "{}: the password of {} does not match (checked with unix_chkpwd through the management login)",
                    self.node(),
                    self.cfg.user
                ),
            )),
            _ => Err(self.script_err("verify", &out)),
        }
    }

    fn value_for(&self, op: &'static str, value: &Secret) -> BackendResult<keys::Value> {
        let v = keys::parse_value(value).map_err(|m| BackendError::permanent(KIND, op, m))?;
        if v.user != self.cfg.user {
            return Err(BackendError::permanent(
                KIND,
                op,
                format!("the value is for the user {}, not {}", v.user, self.cfg.user),
            ));
        }
        Ok(v)
    }

    fn public_of(&self, op: &'static str, v: &keys::Value) -> BackendResult<(String, String)> {
        let line = v
            .public
            .as_deref()
            .ok_or_else(|| BackendError::permanent(KIND, op, "the value has no PublicKey"))?;
        let (_, blob) = keys::blob(line).ok_or_else(|| {
            BackendError::permanent(KIND, op, "the value's PublicKey is not an OpenSSH public key")
        })?;
        Ok((line.trim().to_owned(), blob))
    }

    /// Composes a key pair value whose public key is marked with the secret and `version`.
    fn compose_key(&self, kind: KeyType, version: &str) -> BackendResult<Secret> {
        let pair = keys::generate(kind, &authorized::marker(&self.cfg.secret_name, version))
            .map_err(|m| BackendError::permanent(KIND, "compose", m))?;
        Ok(keys::key_value(&self.cfg.user, &pair))
    }
}

fn status_text(s: Option<u32>) -> String {
    match s {
        Some(c) => format!("exit status {c}"),
        None => "no exit status".to_owned(),
    }
}

impl Backend for SshBackend {
    fn kind(&self) -> &str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        match self.cfg.credential {
            Credential::Password => Capabilities::default(),
            Credential::Key(_) => Capabilities {
                overlap: true,
                retire_steps: 1,
                ..Capabilities::default()
            },
        }
    }

    fn target(&self) -> Option<String> {
        Some(format!("ssh {}", self.node()))
    }

    /// The pinned host key, the management login, root (or sudo), the user, and the tools.
    fn check(&self) -> BoxFuture<'_, BackendResult<()>> {
        Box::pin(async move {
            let mode = if self.is_keys() { "key" } else { "password" };
            let out = self
                .run(
                    "check",
                    &scripts::check(),
                    &[&self.cfg.user, mode, &self.keys_path],
                    &[],
                    None,
                )
                .await?;
            // `ok`, or `missing` when the user has no authorized_keys directory yet (the first
            // rotation creates it).
            if out.status == Some(0) && (out.stdout.starts_with(b"ok") || out.stdout.starts_with(b"missing"))
            {
                Ok(())
            } else {
                Err(self.script_err("check", &out))
            }
        })
    }

    fn inspect(&self) -> BoxFuture<'_, BackendResult<Vec<String>>> {
        Box::pin(async move {
            let mut lines = vec![format!(
                "{}: host key {} matches the pin",
                self.node(),
                self.cfg.host_key_sha256
            )];
            let session = self.admin_session("inspect").await?;
            if self.cfg.sudo {
                let probe = session.run(scripts::sudo_probe(), None, &[]).await;
                let how = match probe {
                    Ok(o) if o.status == Some(0) => "sudo without a password".to_owned(),
                    Ok(_) if self.sudo_password().is_some() => "sudo with the password".to_owned(),
                    Ok(_) => {
                        "sudo asks for a password and none is configured (set ecs.sudo_password)".to_owned()
                    }
                    Err(_) => "sudo could not be probed".to_owned(),
                };
                lines.push(format!("management login {}: {how}", self.cfg.admin_user));
            } else {
                lines.push(format!("management login {} (no sudo)", self.cfg.admin_user));
            }
            let keys = if self.is_keys() {
                Some(self.read_keys(&session, "inspect").await)
            } else {
                None
            };
            session.close().await;
            if let Some(keys) = keys {
                match keys? {
                    Some((content, _)) => {
                        let (all, ours) = authorized::census(&content, &self.cfg.secret_name);
                        lines.push(format!(
                            "{} of {}: {all} key(s), {ours} added by rotd for this secret; rotd removes only keys it added",
                            self.keys_path, self.cfg.user
                        ));
                    }
                    None => lines.push(format!(
                        "{} of {} does not exist yet; the first rotation creates it (mode 0600)",
                        self.keys_path, self.cfg.user
                    )),
                }
            } else {
                let methods = remote::methods(&self.ep, &self.cfg.user)
                    .await
                    .map_err(|f| self.err_connect("inspect", &self.cfg.user, f))?;
                lines.push(if methods.contains(&MethodKind::Password) {
                    "password logins over SSH are accepted: a new password is verified by logging in with it".to_owned()
                } else if methods.contains(&MethodKind::KeyboardInteractive) {
                    "sshd takes passwords only through keyboard-interactive: a new password is verified that way".to_owned()
                } else {
                    "sshd refuses password logins (PasswordAuthentication no): a new password is verified with unix_chkpwd through the management login".to_owned()
                });
            }
            Ok(lines)
        })
    }

    fn compose(&self, slot: Slot, password: &Secret) -> BackendResult<Secret> {
        self.compose_version(slot, password, "new")
    }

    fn compose_version(&self, _slot: Slot, password: &Secret, version_id: &str) -> BackendResult<Secret> {
        match self.cfg.credential {
            Credential::Password => {
                let pw = password.expose_str().ok_or_else(|| {
                    BackendError::permanent(KIND, "compose", "the generated password is not text")
                })?;
                Ok(keys::password_value(&self.cfg.user, pw))
            }
            Credential::Key(kind) => self.compose_key(kind, version_id),
        }
    }

    fn apply<'a>(&'a self, _slot: Slot, new: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            let v = self.value_for("apply", new)?;
            match self.cfg.credential {
                Credential::Password => {
                    let pw = v
                        .password
                        .as_deref()
                        .ok_or_else(|| BackendError::permanent(KIND, "apply", "the value has no Password"))?;
                    if pw.contains(['\n', '\0']) {
                        return Err(BackendError::permanent(
                            KIND,
                            "apply",
                            "the password holds a line break",
                        ));
                    }
                    let line = Zeroizing::new(format!("{}:{pw}\n", self.cfg.user).into_bytes());
                    // chpasswd gives up when another tool holds the shadow lock (useradd, passwd): a few
                    // quick tries before the engine's backoff takes over.
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        let out = self
                            .run(
                                "apply",
                                &scripts::set_password(),
                                &[&self.cfg.user],
                                &line,
                                Some(pw),
                            )
                            .await?;
                        if out.status == Some(0) && out.ready {
                            return Ok(());
                        }
                        let busy = out.stderr.contains("lock") || out.stderr.contains("try again");
                        if !busy || tries >= 5 {
                            return Err(self.script_err("apply", &out));
                        }
                        tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                    }
                }
                Credential::Key(_) => {
                    let (line, blob) = self.public_of("apply", &v)?;
                    self.edit_keys("apply", |content| authorized::add(content, &line, &blob))
                        .await
                }
            }
        })
    }

    fn verify<'a>(&'a self, _slot: Slot, secret: &'a Secret) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            let v = self.value_for("verify", secret)?;
            let user = self.cfg.user.as_str();
            match self.cfg.credential {
                Credential::Password => {
                    let pw = v.password.as_deref().ok_or_else(|| {
                        BackendError::permanent(KIND, "verify", "the value has no Password")
                    })?;
                    match remote::login(&self.ep, user, Login::Password(pw)).await {
                        Ok(s) => {
                            s.close().await;
                            Ok(())
                        }
                        Err(Failure::Refused { methods }) if !methods.contains(&MethodKind::Password) => {
                            if methods.contains(&MethodKind::KeyboardInteractive)
                                && remote::login_interactive(&self.ep, user, pw).await.is_ok()
                            {
                                return Ok(());
                            }
                            // sshd takes no passwords over SSH: check it on the host.
                            self.check_password_via_admin(pw).await
                        }
                        Err(f) => Err(self.err_connect("verify", user, f)),
                    }
                }
                Credential::Key(_) => {
                    let private = v.private.as_deref().ok_or_else(|| {
                        BackendError::permanent(KIND, "verify", "the value has no PrivateKey")
                    })?;
                    let key = keys::parse_private(private)
                        .map_err(|m| BackendError::permanent(KIND, "verify", m))?;
                    match remote::login(&self.ep, user, Login::Key(&key)).await {
                        Ok(s) => {
                            s.close().await;
                            Ok(())
                        }
                        Err(f) => Err(self.err_connect("verify", &format!("{user} with the key"), f)),
                    }
                }
            }
        })
    }

    /// Removes the old public key (key pairs only): a key rotd added, while another key rotd added for
    /// this secret stays. A key rotd did not add (an imported initial key) is left, with a warning.
    fn retire<'a>(&'a self, _slot: Slot, old: &'a Secret, _step: u8) -> BoxFuture<'a, BackendResult<()>> {
        Box::pin(async move {
            if !self.is_keys() {
                return Ok(());
            }
            let v = self.value_for("retire", old)?;
            let (_, blob) = self.public_of("retire", &v)?;
            self.edit_keys("retire", |content| {
                match authorized::remove(content, &blob, &self.cfg.secret_name) {
                    authorized::Removal::Absent => None,
                    authorized::Removal::NotOurs => {
                        warn!(key = %keys::fingerprint(v.public.as_deref().unwrap_or_default()).unwrap_or_default(),
                            "The old key was not added by rotd (an imported key); it stays in authorized_keys. Remove it yourself once no client uses it.");
                        None
                    }
                    authorized::Removal::Last => {
                        warn!(
                            "The old key is the only one rotd added for this secret (the current key is missing from authorized_keys); it stays so the user is not locked out. The next rotation adds a new key.");
                        None
                    }
                    authorized::Removal::Removed(next) => Some(next),
                }
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_credentials_in_every_form() {
        assert!(
            matches!(admin_auth(&Secret::from("pw\n")), Ok(AdminAuth::Password(p)) if p.as_str() == "pw")
        );
        assert!(matches!(
            admin_auth(&Secret::from(r#"{"UserName":"a","Password":"x"}"#)),
            Ok(AdminAuth::Password(p)) if p.as_str() == "x"
        ));
        let pair = keys::generate(KeyType::Ed25519, "c").expect("key");
        assert!(matches!(
            admin_auth(&Secret::from(pair.private.as_str())),
            Ok(AdminAuth::Key(_))
        ));
        let json = serde_json::json!({"UserName":"a","PrivateKey": pair.private.as_str()}).to_string();
        assert!(matches!(admin_auth(&Secret::from(json)), Ok(AdminAuth::Key(_))));
        assert!(admin_auth(&Secret::from("-----BEGIN OPENSSH PRIVATE KEY-----\nbad\n")).is_err());
        assert!(admin_auth(&Secret::from("\n")).is_err());
    }
}
