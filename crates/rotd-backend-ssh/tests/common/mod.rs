//! Real hosts for the SSH backend's tests: a private sshd, a managed user, and a management login as
//! root (a key), or as a sudoer (NOPASSWD, or a sudo that asks for the password), each the way an
//! operator would set it up.

#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use rotd_backend_ssh::{Credential, KeyType, SshBackend, SshConfig};
use rotd_core::{Backend, Secret, Slot};
use rotd_testkit::fixtures::sshd::{Sshd, SshdOptions, SudoMode, TestUser};
use rotd_testkit::fixtures::util;

pub const SECRET: &str = "acs/ecs/test-host";

/// Who manages the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// root, logging in with a key (sshd: PermitRootLogin prohibit-password).
    RootKey,
    /// A sudoer with NOPASSWD, logging in with its password.
    SudoNoPassword,
    /// A sudoer whose sudo asks for the password, logging in with that password.
    SudoPassword,
    /// A sudoer whose sudo asks for the password, logging in with a key; `sudo_password` is set.
    SudoPasswordKeyLogin,
}

#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub credential: Credential,
    pub admin: Admin,
    pub strict_modes: bool,
    pub password_authentication: bool,
}

impl Setup {
    pub fn new(credential: Credential, admin: Admin) -> Self {
        Self {
            credential,
            admin,
            strict_modes: true,
            password_authentication: true,
        }
    }
}

/// A host with everything a test needs kept alive.
pub struct Host {
    pub sshd: Sshd,
    pub user: TestUser,
    pub admin_user: Option<TestUser>,
    pub setup: Setup,
    admin_name: String,
    admin: Secret,
    sudo_password: Option<Secret>,
}

/// An Ed25519 key pair from the system's ssh-keygen: (private, public line).
pub fn keygen() -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("id");
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-N", "", "-t", "ed25519", "-C", "admin", "-f"])
        .arg(&path);
    util::run_checked(&mut cmd, None, Duration::from_secs(60), "ssh-keygen");
    (
        std::fs::read_to_string(&path).expect("private"),
        std::fs::read_to_string(path.with_extension("pub"))
            .expect("public")
            .trim()
            .to_owned(),
    )
}

impl Host {
    pub fn start(setup: Setup) -> Self {
        let sshd = Sshd::start_with(SshdOptions {
            permit_root_login: setup.admin == Admin::RootKey,
            strict_modes: setup.strict_modes,
            password_authentication: setup.password_authentication,
        });
        let user = sshd.create_user("managed");
        let (admin_user, admin_name, admin, sudo_password) = match setup.admin {
            Admin::RootKey => {
                let (private, public) = keygen();
                sshd.authorize_key("root", &public);
                (None, "root".to_owned(), Secret::from(private), None)
            }
            Admin::SudoNoPassword | Admin::SudoPassword => {
                let mode = if setup.admin == Admin::SudoNoPassword {
                    SudoMode::NoPassword
                } else {
                    SudoMode::Password
                };
                let a = sshd.create_sudoer("adm", mode);
                let (name, secret) = if setup.password_authentication {
                    (a.name().to_owned(), Secret::from(a.password()))
                } else {
                    let (private, public) = keygen();
                    sshd.authorize_key(a.name(), &public);
                    (a.name().to_owned(), Secret::from(private))
                };
                let sudo = (mode == SudoMode::Password && !setup.password_authentication)
                    .then(|| Secret::from(a.password()));
                (Some(a), name, secret, sudo)
            }
            Admin::SudoPasswordKeyLogin => {
                let a = sshd.create_sudoer("adm", SudoMode::Password);
                let (private, public) = keygen();
                sshd.authorize_key(a.name(), &public);
                let pw = Secret::from(a.password());
                let name = a.name().to_owned();
                (Some(a), name, Secret::from(private), Some(pw))
            }
        };
        Self {
            sshd,
            user,
            admin_user,
            setup,
            admin_name,
            admin,
            sudo_password,
        }
    }

    pub fn config(&self) -> SshConfig {
        SshConfig {
            secret_name: SECRET.to_owned(),
            host: self.sshd.host().to_owned(),
            port: self.sshd.port(),
            host_key_sha256: self.sshd.host_key_fingerprint_sha256().to_owned(),
            user: self.user.name().to_owned(),
            credential: self.setup.credential,
            admin_user: self.admin_name.clone(),
            admin: self.admin.clone(),
            sudo: self.setup.admin != Admin::RootKey,
            sudo_password: self.sudo_password.clone(),
            authorized_keys: ".ssh/authorized_keys".to_owned(),
            timeout: Duration::from_secs(15),
        }
    }

    pub fn backend(&self) -> SshBackend {
        SshBackend::new(self.config()).expect("valid config")
    }

    /// The managed user's uid (its home directory's owner).
    pub fn user_uid(&self) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.user.home()).expect("home").uid()
    }

    /// The user's authorized_keys in its home (where the backend writes by default).
    pub fn authorized_keys(&self) -> std::path::PathBuf {
        self.user.home().join(".ssh/authorized_keys")
    }

    /// The value the user's credential has now: its password, or a key rotd added in an earlier
    /// rotation (marked as rotd's, so retiring it is rotd's to do).
    pub async fn initial(&self, backend: &SshBackend) -> Secret {
        match self.setup.credential {
            Credential::Password => Secret::from(
                serde_json::json!({"UserName": self.user.name(), "Password": self.user.password()})
                    .to_string(),
            ),
            Credential::Key(_) => {
                let v = backend
                    .compose_version(Slot::Single, &Secret::from("unused"), "v0")
                    .expect("compose");
                backend
                    .apply(Slot::Single, &v)
                    .await
                    .expect("the earlier rotation's key");
                v
            }
        }
    }
}

/// The fields of a value.
pub fn field(value: &Secret, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(value.expose_secret()).expect("JSON value");
    v[name].as_str().unwrap_or_else(|| panic!("no {name}")).to_owned()
}

/// Whether the system OpenSSH client logs in with `value` (password through sshpass, or the key).
pub fn system_client_logs_in(host: &Host, value: &Secret) -> bool {
    let user = field(value, "UserName");
    match host.setup.credential {
        Credential::Password => host.sshd.ssh_password_login(&user, &field(value, "Password")),
        Credential::Key(_) => host.sshd.ssh_key_login(&user, &field(value, "PrivateKey")),
    }
}

pub fn ed25519() -> Credential {
    Credential::Key(KeyType::Ed25519)
}

pub fn rsa() -> Credential {
    Credential::Key(KeyType::Rsa3072)
}
