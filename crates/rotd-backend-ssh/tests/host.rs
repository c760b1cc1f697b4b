//! What the SSH backend promises on a real host beyond the conformance suite: `authorized_keys` keeps
//! every line rotd did not write, byte for byte, and its owner and mode; a symbolic link planted by the
//! user (towards root's keys) is refused, and the file it points to is untouched; a changed host key is
//! refused before anything is sent; sudo's password problems are told apart; `check` names what is
//! wrong; and an sshd that is down mid-rotation leaves the rotation open until it is back, with the
//! current key working throughout.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;

use common::{Admin, Host, SECRET, Setup, ed25519, system_client_logs_in};
use rotd_backend_ssh::{Credential, SshBackend};
use rotd_core::{Backend, PasswordPolicy, Secret, SecretName, SecretType, Slot};
use rotd_engine::{Managed, StepLimits, rotate};
use rotd_store::{Selector, Store};

fn start(setup: Setup) -> Host {
    tokio::task::block_in_place(|| Host::start(setup))
}

fn new_key(backend: &SshBackend, version: &str) -> Secret {
    backend
        .compose_version(Slot::Single, &Secret::from("unused"), version)
        .expect("compose")
}

/// The lines an operator (or cloud-init) wrote: a comment, a key with options, a CRLF line, and a last
/// line without its newline.
const FOREIGN: &str = "# managed by hand\r\nfrom=\"10.0.0.0/8\",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@laptop\r\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb last-no-newline";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_keys_keeps_foreign_lines_owner_and_mode() {
    let host = start(Setup::new(ed25519(), Admin::SudoNoPassword));
    let path = host.authorized_keys();
    let dir = path.parent().expect("dir").to_path_buf();
    std::fs::create_dir_all(&dir).expect("mkdir .ssh");
    std::fs::write(&path, FOREIGN).expect("write foreign lines");
    let uid = host.user_uid();
    std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).expect("chown dir");
    std::os::unix::fs::chown(&path, Some(uid), Some(uid)).expect("chown file");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod dir");
    // 0640 is an operator's choice StrictModes accepts; rotd keeps it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod file");

    let backend = host.backend();
    let k1 = new_key(&backend, "v1");
    let k2 = new_key(&backend, "v2");
    backend.apply(Slot::Single, &k1).await.expect("apply v1");
    backend.apply(Slot::Single, &k2).await.expect("apply v2");
    let after = std::fs::read_to_string(&path).expect("read");
    let foreign_then_newline = format!("{FOREIGN}\n");
    assert!(
        after.starts_with(&foreign_then_newline),
        "every foreign line is kept byte for byte (a newline ends the unterminated last one):\n{after:?}"
    );
    let added: Vec<&str> = after[foreign_then_newline.len()..].lines().collect();
    assert_eq!(added.len(), 2, "two keys added: {added:?}");
    assert!(added[0].ends_with(&format!(" rotd:{SECRET}:v1")), "{}", added[0]);
    assert!(added[1].ends_with(&format!(" rotd:{SECRET}:v2")), "{}", added[1]);
    let meta = std::fs::metadata(&path).expect("stat");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777),
        (uid, 0o640),
        "owner and mode kept"
    );
    // No temp file is left next to it.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".rotd-keys"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    // Both keys log in with the system client (StrictModes is on); retiring v1 leaves v2 and the rest.
    assert!(system_client_logs_in(&host, &k1));
    assert!(system_client_logs_in(&host, &k2));
    backend.retire(Slot::Single, &k1, 1).await.expect("retire v1");
    let retired = std::fs::read_to_string(&path).expect("read");
    assert_eq!(retired, format!("{foreign_then_newline}{}\n", added[1]));
    assert!(!system_client_logs_in(&host, &k1));
    assert!(system_client_logs_in(&host, &k2));
    // The last key rotd added is never removed, and a foreign key is never touched.
    backend
        .retire(Slot::Single, &k2, 1)
        .await
        .expect("retire the last: refused quietly");
    assert!(system_client_logs_in(&host, &k2));
    assert_eq!(std::fs::read_to_string(&path).expect("read"), retired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_is_the_users_and_0600() {
    let host = start(Setup::new(ed25519(), Admin::RootKey));
    let backend = host.backend();
    backend.check().await.expect("check passes before ~/.ssh exists");
    let k = new_key(&backend, "v1");
    backend.apply(Slot::Single, &k).await.expect("apply");
    let uid = host.user_uid();
    let path = host.authorized_keys();
    let file = std::fs::metadata(&path).expect("stat file");
    let dir = std::fs::metadata(path.parent().expect("dir")).expect("stat dir");
    assert_eq!((file.uid(), file.mode() & 0o7777), (uid, 0o600));
    assert_eq!((dir.uid(), dir.mode() & 0o7777), (uid, 0o700));
    assert!(system_client_logs_in(&host, &k));
}

/// The user points `~/.ssh` at a directory holding root's keys; rotd, running as root, must not add the
/// user's key there (that would let the key's holder log in as root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_symlink_is_refused_and_its_target_untouched() {
    let host = start(Setup::new(ed25519(), Admin::RootKey));
    let victim = tempfile::Builder::new()
        .prefix("rotd-victim-")
        .tempdir_in("/run")
        .expect("victim dir");
    std::fs::set_permissions(victim.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let victim_keys = victim.path().join("authorized_keys");
    std::fs::write(&victim_keys, "ssh-ed25519 AAAAroot root@host\n").expect("victim keys");
    std::os::unix::fs::symlink(victim.path(), host.user.home().join(".ssh")).expect("plant the link");

    let backend = host.backend();
    let e = backend
        .apply(Slot::Single, &new_key(&backend, "v1"))
        .await
        .expect_err("a link on the way is refused");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&victim_keys).expect("read"),
        "ssh-ed25519 AAAAroot root@host\n"
    );

    // The file itself as a link is refused too.
    std::fs::remove_file(host.user.home().join(".ssh")).expect("unlink");
    let dir = host.user.home().join(".ssh");
    std::fs::create_dir(&dir).expect("mkdir");
    std::os::unix::fs::chown(&dir, Some(host.user_uid()), None).expect("chown");
    std::os::unix::fs::symlink(&victim_keys, dir.join("authorized_keys")).expect("link the file");
    let e = backend
        .apply(Slot::Single, &new_key(&backend, "v2"))
        .await
        .expect_err("a linked file is refused");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&victim_keys).expect("read"),
        "ssh-ed25519 AAAAroot root@host\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_is_refused_before_anything_is_sent() {
    let mut host = start(Setup::new(Credential::Password, Admin::SudoPassword));
    let backend = host.backend();
    backend.check().await.expect("check with the right key");
    tokio::task::block_in_place(|| host.sshd.regenerate_host_key());
    let log_before = std::fs::read_to_string(host.sshd.log_path()).expect("log").len();
    let value = Secret::from(
        serde_json::json!({"UserName": host.user.name(), "Password": "Never-Sent-9x"}).to_string(),
    );
    for e in [
        backend.check().await.expect_err("check"),
        backend.apply(Slot::Single, &value).await.expect_err("apply"),
        backend.verify(Slot::Single, &value).await.expect_err("verify"),
    ] {
        assert!(e.identity_mismatch, "marked as an identity failure: {e}");
        assert!(!e.is_retryable(), "{e}");
        assert!(
            e.to_string().contains("not the pinned ecs.host_key_sha256"),
            "{e}"
        );
        assert!(
            e.to_string().contains(host.sshd.host_key_fingerprint_sha256()),
            "names the key seen: {e}"
        );
    }
    let log = std::fs::read_to_string(host.sshd.log_path()).expect("log");
    let after = &log[log_before..];
    for word in ["Accepted", "Failed", "Invalid user", "password"] {
        assert!(
            !after.contains(word),
            "sshd saw a login attempt ({word}):\n{after}"
        );
    }
    // The old login still works: nothing was changed.
    assert!(
        host.sshd
            .ssh_password_login(host.user.name(), host.user.password())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sudo_password_problems_are_named() {
    let host = start(Setup::new(Credential::Password, Admin::SudoPasswordKeyLogin));
    let mut cfg = host.config();
    cfg.sudo_password = None;
    let e = SshBackend::new(cfg.clone())
        .expect("config")
        .check()
        .await
        .expect_err("sudo asks and rotd has no password");
    assert!(e.to_string().contains("set ecs.sudo_password"), "{e}");
    cfg.sudo_password = Some(Secret::from("wrong-password"));
    let e = SshBackend::new(cfg)
        .expect("config")
        .check()
        .await
        .expect_err("a wrong sudo password");
    assert!(e.to_string().contains("sudo refused the password"), "{e}");
    assert!(!e.to_string().contains("wrong-password"), "{e}");
    host.backend().check().await.expect("the right one works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_what_is_wrong() {
    let host = start(Setup::new(Credential::Password, Admin::SudoNoPassword));
    let mut cfg = host.config();
    cfg.user = "rotdt-nobody-here".to_owned();
    let e = SshBackend::new(cfg)
        .expect("config")
        .check()
        .await
        .expect_err("no such user");
    assert!(e.to_string().contains("does not exist"), "{e}");
    let mut cfg = host.config();
    cfg.sudo = false;
    let e = SshBackend::new(cfg)
        .expect("config")
        .check()
        .await
        .expect_err("not root, no sudo");
    assert!(e.to_string().contains("set ecs.sudo"), "{e}");
    let mut cfg = host.config();
    cfg.admin = Secret::from("not-the-password");
    let e = SshBackend::new(cfg)
        .expect("config")
        .check()
        .await
        .expect_err("wrong admin password");
    assert!(e.to_string().contains("refused the login"), "{e}");
}

/// sshd stops after the new key is applied: verify fails (retryable), the rotation stays open, and once
/// sshd is back the same rotation finishes with the key it journaled; the previous key worked before
/// and still works after (overlap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_down_mid_rotation_keeps_it_open_until_it_is_back() {
    let mut host = start(Setup::new(ed25519(), Admin::RootKey));
    let backend = Arc::new(host.backend());
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open_sqlite(&dir.path().join("rotd.db"), rotd_testkit::store_suite::keyring())
        .await
        .expect("store");
    store
        .create_secret(
            rotd_testkit::store_suite::new_secret(SECRET, SecretType::Ecs),
            None,
        )
        .await
        .expect("create");
    let managed = Managed {
        name: SecretName::parse(SECRET).expect("name"),
        kind: SecretType::Ecs,
        backend: backend.clone() as Arc<dyn Backend>,
        password: PasswordPolicy::default(),
        grace: rotd_engine::Grace {
            first: std::time::Duration::MAX,
            between_steps: std::time::Duration::ZERO,
        },
    };
    let limits = StepLimits {
        failpoint: None,
        ..StepLimits::default()
    };
    // The first value, as the daemon makes it at declaration.
    rotate(&store, &managed, &limits, None)
        .await
        .expect("first value");
    let first = store
        .get_value(SECRET, &Selector::current())
        .await
        .expect("current")
        .value;
    assert!(system_client_logs_in(&host, &first));

    tokio::task::block_in_place(|| host.sshd.stop());
    let e = rotate(&store, &managed, &limits, None)
        .await
        .expect_err("sshd is down");
    assert!(e.class() == rotd_core::ErrorClass::Retryable, "{e}");
    let open = rotd_engine::open_rotation(&store.journal_tail(SECRET).await.expect("journal"))
        .expect("the rotation stays open");
    tokio::task::block_in_place(|| host.sshd.restart());
    assert!(
        system_client_logs_in(&host, &first),
        "ACSCurrent works while the rotation is open"
    );
    let done = rotate(&store, &managed, &limits, None).await.expect("resumed");
    assert!(done.resumed);
    assert_eq!(
        done.version_id, open.version_id,
        "the journaled version, not a new one"
    );
    let current = store
        .get_value(SECRET, &Selector::current())
        .await
        .expect("current")
        .value;
    assert!(system_client_logs_in(&host, &current));
    assert!(
        system_client_logs_in(&host, &first),
        "the previous key stays until the next rotation"
    );
    // The next rotation retires the first key before it adds its own.
    rotate(&store, &managed, &limits, None).await.expect("next");
    assert!(!system_client_logs_in(&host, &first));
    assert!(system_client_logs_in(&host, &current));
}
