//! Self-tests for the real-server fixtures: each server starts, enforces password
//! authentication, survives stop/restart with its data, and is cleaned up on drop; the sshd
//! fixture's options, keys, host key rotation and sudoers; and the process sampler's sensitivity.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rotd_testkit::fixtures::{ClientAuth, MariaDb, Postgres, Redis, Sshd, SshdOptions, SudoMode, util};
use rotd_testkit::proc_sampler::ProcSampler;

/// Asserts that nothing listens on `port` any more and the fixture directory is gone, which is
/// what "drop cleans up" means for every fixture.
fn assert_cleaned_up(port: u16, dir: &std::path::Path) {
    assert!(
        !util::port_accepts(port),
        "port {port} still accepts connections after drop"
    );
    assert!(
        !dir.exists(),
        "fixture dir {} still exists after drop",
        dir.display()
    );
}

#[test]
fn postgres_enforces_auth_and_survives_restart() {
    let mut pg = Postgres::start();
    let port = pg.port();
    let dir = pg
        .data_dir()
        .parent()
        .expect("data dir has a parent")
        .to_path_buf();
    let (admin, pw) = (pg.admin_user().to_owned(), pg.admin_password().to_owned());

    assert_eq!(pg.host(), "127.0.0.1");
    assert_eq!(
        pg.psql(&admin, &pw, "SELECT current_user").as_deref(),
        Ok("rotd_admin")
    );
    let err = pg
        .psql(&admin, "wrong-password", "SELECT 1")
        .expect_err("a wrong password must be rejected");
    assert!(
        err.contains("password authentication failed"),
        "unexpected error: {err}"
    );
    let err = pg
        .psql(&admin, "", "SELECT 1")
        .expect_err("an empty password must be rejected");
    assert!(!err.is_empty());
    assert!(
        pg.url("u", "p w", "db")
            .ends_with(&format!("u:p%20w@127.0.0.1:{port}/db"))
    );

    // A role created by the admin can log in with its own password only.
    pg.admin_sql("CREATE ROLE app LOGIN PASSWORD 'app-secret'");
    assert_eq!(
        pg.psql("app", "app-secret", "SELECT current_user").as_deref(),
        Ok("app")
    );
    assert!(pg.psql("app", "app-secret-wrong", "SELECT 1").is_err());

    pg.set_conf("log_statement", "all");
    assert_eq!(pg.admin_sql("SHOW log_statement"), "all");
    pg.admin_sql("CREATE TABLE keep (v text); INSERT INTO keep VALUES ('survives')");
    assert!(
        util::read_lossy(pg.log_path()).contains("INSERT INTO keep"),
        "log_statement=all is logged"
    );

    pg.stop();
    assert!(!pg.is_running());
    assert!(
        pg.psql(&admin, &pw, "SELECT 1").is_err(),
        "a stopped server must refuse logins"
    );
    pg.restart();
    assert_eq!(pg.port(), port);
    assert_eq!(pg.admin_sql("SELECT v FROM keep"), "survives");
    assert_eq!(
        pg.admin_sql("SHOW log_statement"),
        "all",
        "ALTER SYSTEM persists across restart"
    );

    drop(pg);
    assert_cleaned_up(port, &dir);
}

#[test]
fn mariadb_enforces_auth_and_survives_restart() {
    let mut db = MariaDb::start();
    let port = db.port();
    let dir = db
        .socket_path()
        .parent()
        .expect("socket has a parent")
        .to_path_buf();
    let (admin, pw) = (db.admin_user().to_owned(), db.admin_password().to_owned());

    assert_eq!(
        db.mysql(&admin, &pw, "SELECT CURRENT_USER()").as_deref(),
        Ok("rotd_admin@%")
    );
    let err = db
        .mysql(&admin, "wrong-password", "SELECT 1")
        .expect_err("a wrong password must be rejected");
    assert!(err.contains("Access denied"), "unexpected error: {err}");
    assert!(
        db.mysql(&admin, "", "SELECT 1").is_err(),
        "an empty password must be rejected"
    );
    assert!(
        db.mysql("root", "", "SELECT 1").is_err(),
        "root must not be reachable over TCP"
    );
    assert!(
        db.url("u", "p@w", "db")
            .ends_with(&format!("u:p%40w@127.0.0.1:{port}/db"))
    );

    db.admin_sql("CREATE USER 'app'@'%' IDENTIFIED BY 'app-secret'");
    assert_eq!(db.mysql("app", "app-secret", "SELECT 1").as_deref(), Ok("1"));
    assert!(db.mysql("app", "app-secret-wrong", "SELECT 1").is_err());

    db.set_general_log(true);
    db.admin_sql(
        "CREATE DATABASE keep; CREATE TABLE keep.t (v TEXT); INSERT INTO keep.t VALUES ('survives')",
    );
    db.set_general_log(false);
    assert!(util::read_lossy(db.general_log_path()).contains("INSERT INTO keep.t"));

    db.stop();
    assert!(!db.is_running());
    assert!(
        db.mysql(&admin, &pw, "SELECT 1").is_err(),
        "a stopped server must refuse logins"
    );
    db.restart();
    assert_eq!(db.port(), port);
    assert_eq!(
        db.mysql_db(&admin, &pw, Some("keep"), "SELECT v FROM t")
            .as_deref(),
        Ok("survives")
    );

    drop(db);
    assert_cleaned_up(port, &dir);
}

#[test]
fn redis_enforces_auth_and_survives_restart() {
    let mut redis = Redis::start();
    let port = redis.port();
    let dir = redis
        .acl_file_path()
        .parent()
        .expect("acl file has a parent")
        .to_path_buf();
    let (admin, pw) = (redis.admin_user().to_owned(), redis.admin_password().to_owned());

    assert_eq!(
        redis.cli(&admin, &pw, &["ACL", "WHOAMI"]).as_deref(),
        Ok("rotd_admin")
    );
    let err = redis
        .cli_unauthenticated(&["PING"])
        .expect_err("unauthenticated commands must fail");
    assert!(err.contains("NOAUTH"), "unexpected error: {err}");
    let err = redis
        .cli(&admin, "wrong-password", &["PING"])
        .expect_err("a wrong password must be rejected");
    assert!(err.contains("WRONGPASS"), "unexpected error: {err}");
    assert!(
        redis.cli("default", "", &["PING"]).is_err(),
        "the default user must be disabled"
    );

    redis.admin_cli(&["ACL", "SETUSER", "app", "on", ">app-secret", "~app:*", "+@all"]);
    assert_eq!(
        redis.cli("app", "app-secret", &["SET", "app:k", "v"]).as_deref(),
        Ok("OK")
    );
    assert!(redis.cli("app", "app-secret-wrong", &["GET", "app:k"]).is_err());
    redis.admin_cli(&["ACL", "SAVE"]);
    assert!(util::read_lossy(redis.acl_file_path()).contains("user app on"));

    assert_eq!(redis.admin_cli(&["SET", "keep", "survives"]), "OK");
    redis.stop();
    assert!(!redis.is_running());
    assert!(
        redis.cli(&admin, &pw, &["PING"]).is_err(),
        "a stopped server must refuse commands"
    );
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.admin_cli(&["GET", "keep"]), "survives");
    assert_eq!(
        redis.cli("app", "app-secret", &["GET", "app:k"]).as_deref(),
        Ok("v"),
        "ACL SAVE persists users"
    );

    drop(redis);
    assert_cleaned_up(port, &dir);
}

#[test]
fn sshd_enforces_password_auth_and_cleans_up_users() {
    let mut sshd = Sshd::start();
    let port = sshd.port();
    let dir = sshd
        .conf_path()
        .parent()
        .expect("config has a parent")
        .to_path_buf();
    assert!(sshd.host_key_fingerprint_sha256().starts_with("SHA256:"));
    assert!(sshd.host_public_key().starts_with("ssh-ed25519 "));
    assert!(
        sshd.known_hosts_line()
            .starts_with(&format!("[127.0.0.1]:{port} ssh-ed25519 "))
    );

    let mut user = sshd.create_user("Self Test");
    let name = user.name().to_owned();
    assert!(name.starts_with("rotdt-selftest-") && name.len() <= 32, "{name}");
    assert!(user.home().is_dir());
    let password = user.password().to_owned();

    assert_eq!(
        sshd.ssh_password_exec(&name, &password, "id -un").as_deref(),
        Ok(name.as_str())
    );
    assert!(
        !sshd.ssh_password_login(&name, "wrong-password"),
        "a wrong password must be rejected"
    );
    assert!(
        !sshd.ssh_password_login(&name, ""),
        "an empty password must be rejected"
    );
    assert!(
        !sshd.ssh_password_login("root", "whatever"),
        "root login must be refused"
    );
    assert!(util::read_lossy(sshd.log_path()).contains(&format!("Failed password for {name}")));

    // Changing the password takes effect immediately and invalidates the old one.
    user.set_password("second-Password-1");
    assert!(sshd.ssh_password_login(&name, "second-Password-1"));
    assert!(!sshd.ssh_password_login(&name, &password));

    sshd.stop();
    assert!(!sshd.is_running());
    assert!(
        !sshd.ssh_password_login(&name, "second-Password-1"),
        "a stopped server must refuse logins"
    );
    sshd.restart();
    assert_eq!(sshd.port(), port);
    assert!(sshd.ssh_password_login(&name, "second-Password-1"));

    let home = user.home().to_path_buf();
    drop(user);
    let exists = Command::new("id")
        .arg(&name)
        .output()
        .expect("run id")
        .status
        .success();
    assert!(!exists, "user {name} still exists after drop");
    assert!(!home.exists(), "home {} still exists after drop", home.display());

    drop(sshd);
    assert_cleaned_up(port, &dir);
}

#[test]
fn parallel_fixtures_get_distinct_ports() {
    let a = Redis::start();
    let b = Redis::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.admin_password(), b.admin_password());
    assert!(b.cli(a.admin_user(), a.admin_password(), &["PING"]).is_err());
}

#[test]
#[should_panic(expected = "rotd-no-such-binary not found: apt-get install rotd-no-such-package")]
fn missing_binary_fails_loudly() {
    util::which("rotd-no-such-binary", "rotd-no-such-package");
}

/// Set in the child run of [`watchdog_cleans_up_after_abort`] to make it start a server and abort.
const ABORT_CHILD_ENV: &str = "ROTD_TESTKIT_ABORT_CHILD";

#[test]
fn watchdog_cleans_up_after_abort() {
    if std::env::var_os(ABORT_CHILD_ENV).is_some() {
        let redis = Redis::start();
        let dir = redis
            .acl_file_path()
            .parent()
            .expect("acl file has a parent")
            .to_path_buf();
        println!("ROTD_CHILD port={} dir={}", redis.port(), dir.display());
        // Abort skips every destructor, like a SIGKILL would, leaving only the watchdog.
        std::process::abort();
    }

    let line = run_aborting_child("watchdog_cleans_up_after_abort", ABORT_CHILD_ENV);
    let line = line.as_str();
    let mut port = 0u16;
    let mut dir = PathBuf::new();
    for field in line.split_whitespace() {
        if let Some(p) = field.strip_prefix("port=") {
            port = p.parse().expect("numeric port");
        } else if let Some(d) = field.strip_prefix("dir=") {
            dir = PathBuf::from(d);
        }
    }
    let cleaned = util::wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        !util::port_accepts(port) && !dir.exists()
    });
    assert!(
        cleaned,
        "the watchdog did not stop redis on port {port} and remove {}",
        dir.display()
    );
}

/// The kinds of client key the sshd tests log in with.
#[derive(Debug, Clone, Copy)]
enum KeyKind {
    /// ssh-keygen's default: an OpenSSH-format ("BEGIN OPENSSH PRIVATE KEY") ed25519 key.
    Ed25519,
    /// A PKCS#1 PEM RSA key ("BEGIN RSA PRIVATE KEY"), the format older tooling hands out.
    RsaPem,
}

/// A fresh client key pair from ssh-keygen: the private key file's text and the public key line.
fn client_key(kind: KeyKind) -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir for a client key");
    let path = dir.path().join("id");
    let mut cmd = Command::new(util::which("ssh-keygen", "openssh-client"));
    cmd.args(["-q", "-N", "", "-C", "rotd-testkit-client", "-f"])
        .arg(&path);
    match kind {
        KeyKind::Ed25519 => cmd.args(["-t", "ed25519"]),
        KeyKind::RsaPem => cmd.args(["-t", "rsa", "-b", "2048", "-m", "PEM"]),
    };
    util::run_checked(&mut cmd, None, Duration::from_secs(60), "ssh-keygen client key");
    let private = util::read_lossy(&path);
    let public = util::read_lossy(&path.with_extension("pub")).trim().to_owned();
    (private, public)
}

/// The sshd log since byte `from`, for asserting on what one login attempt caused.
fn log_since(sshd: &Sshd, from: usize) -> String {
    util::read_lossy(sshd.log_path())
        .get(from..)
        .unwrap_or_default()
        .to_owned()
}

/// The uid of an OS account.
fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").arg("-u").arg(user).output().expect("run id");
    assert!(out.status.success(), "id -u {user} failed");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric uid")
}

fn user_exists(user: &str) -> bool {
    Command::new("id")
        .arg(user)
        .output()
        .expect("run id")
        .status
        .success()
}

#[test]
fn sshd_key_login_accepts_openssh_and_pem_keys() {
    let sshd = Sshd::start();
    let user = sshd.create_user("keys");
    let name = user.name();
    let (ed25519, ed25519_pub) = client_key(KeyKind::Ed25519);
    let (rsa, rsa_pub) = client_key(KeyKind::RsaPem);
    assert!(ed25519.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    assert!(rsa.starts_with("-----BEGIN RSA PRIVATE KEY-----"));

    assert!(
        !sshd.ssh_key_login(name, &ed25519),
        "a key that is not authorized must be refused"
    );
    sshd.authorize_key(name, &ed25519_pub);
    // Without the newline: authorize_key adds one, so the next line does not run into this one.
    sshd.authorize_key(name, rsa_pub.trim_end());
    let keys_file = sshd.authorized_keys_path(name);
    let meta = std::fs::metadata(&keys_file).expect("authorize_key created the file");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o644));
    assert_eq!(
        util::read_lossy(&keys_file),
        format!("{ed25519_pub}\n{rsa_pub}\n")
    );

    // A key text without its final newline is fixed up (ssh itself refuses such a file).
    assert_eq!(
        sshd.ssh_key_exec(name, ed25519.trim_end(), "id -un").as_deref(),
        Ok(name)
    );
    assert_eq!(sshd.ssh_key_exec(name, &rsa, "id -un").as_deref(), Ok(name));
    let (stranger, _) = client_key(KeyKind::Ed25519);
    assert!(
        !sshd.ssh_key_login(name, &stranger),
        "another key must be refused"
    );
    assert!(
        !sshd.ssh_key_login("root", &ed25519),
        "root login is refused by default"
    );
}

#[test]
fn sshd_strict_modes_checks_home_authorized_keys() {
    let strict = Sshd::start_with(SshdOptions {
        strict_modes: true,
        ..SshdOptions::default()
    });
    // The same home file is offered to a server without StrictModes, to show that the
    // refusals below come from StrictModes and nothing else.
    let lax = Sshd::start();
    assert!(util::read_lossy(strict.conf_path()).contains("StrictModes yes\n"));
    let user = strict.create_user("strict");
    let name = user.name();

    // The fixture's own keys file passes StrictModes: that is why it is not under /tmp.
    let (fixture_key, fixture_pub) = client_key(KeyKind::Ed25519);
    strict.authorize_key(name, &fixture_pub);
    assert!(
        strict.ssh_key_login(name, &fixture_key),
        "StrictModes refused the fixture's own keys file:\n{}",
        util::log_tail(strict.log_path(), 20)
    );

    // ~/.ssh/authorized_keys owned by the user, 0600 in a 0700 ~/.ssh: accepted.
    let (key, public) = client_key(KeyKind::Ed25519);
    let uid = uid_of(name);
    let ssh_dir = user.home().join(".ssh");
    std::fs::create_dir(&ssh_dir).expect("create ~/.ssh");
    util::set_mode(&ssh_dir, 0o700);
    std::os::unix::fs::chown(&ssh_dir, Some(uid), None).expect("chown ~/.ssh");
    let home_keys = ssh_dir.join("authorized_keys");
    std::fs::write(&home_keys, format!("{public}\n")).expect("write ~/.ssh/authorized_keys");
    std::os::unix::fs::chown(&home_keys, Some(uid), None).expect("chown authorized_keys");
    util::set_mode(&home_keys, 0o600);
    assert!(
        strict.ssh_key_login(name, &key),
        "a 0600 keys file owned by the user must be accepted:\n{}",
        util::log_tail(strict.log_path(), 20)
    );

    let refusal = format!(
        "Authentication refused: bad ownership or modes for file {}",
        home_keys.display()
    );
    let set = |owner: u32, mode: u32| {
        std::os::unix::fs::chown(&home_keys, Some(owner), None).expect("chown authorized_keys");
        util::set_mode(&home_keys, mode);
    };
    let nobody = uid_of("nobody");
    for (owner, mode, what) in [
        (uid, 0o664, "group-writable"),
        (uid, 0o666, "world-writable"),
        // Readable by the user, so only StrictModes has a reason to refuse it.
        (nobody, 0o644, "owned by another user"),
    ] {
        set(owner, mode);
        let from = util::read_lossy(strict.log_path()).len();
        assert!(
            !strict.ssh_key_login(name, &key),
            "StrictModes accepted a keys file that is {what}"
        );
        let log = log_since(&strict, from);
        assert!(
            log.contains(&refusal),
            "no StrictModes refusal ({what}) in:\n{log}"
        );
        assert!(
            lax.ssh_key_login(name, &key),
            "without StrictModes a keys file that is {what} is accepted"
        );
    }
    set(uid, 0o600);
    assert!(strict.ssh_key_login(name, &key), "accepted again once fixed");
}

#[test]
fn sshd_root_key_login_needs_permit_root_login() {
    let (key, public) = client_key(KeyKind::Ed25519);

    let refusing = Sshd::start();
    refusing.authorize_key("root", &public);
    let from = util::read_lossy(refusing.log_path()).len();
    assert!(
        !refusing.ssh_key_login("root", &key),
        "PermitRootLogin no must refuse root"
    );
    let log = log_since(&refusing, from);
    assert!(log.contains("ROOT LOGIN REFUSED"), "unexpected log:\n{log}");

    let admitting = Sshd::start_with(SshdOptions {
        permit_root_login: true,
        ..SshdOptions::default()
    });
    assert!(util::read_lossy(admitting.conf_path()).contains("PermitRootLogin prohibit-password\n"));
    assert!(
        !admitting.ssh_key_login("root", &key),
        "root's keys come only from the fixture's file, which is still empty"
    );
    admitting.authorize_key("root", &public);
    assert_eq!(
        admitting.ssh_key_exec("root", &key, "id -u").as_deref(),
        Ok("0"),
        "log:\n{}",
        util::log_tail(admitting.log_path(), 20)
    );
    // prohibit-password: root's password never logs in. The log cannot tell this from a wrong
    // password (sshd runs the check anyway so as not to reveal the policy), and root's real
    // password is not ours to know, hence the config line asserted above.
    let err = admitting
        .ssh_password_exec("root", "whatever", "true")
        .expect_err("root password login must be refused");
    assert!(err.contains("Permission denied"), "unexpected error: {err}");
}

#[test]
fn sshd_password_authentication_can_be_turned_off() {
    let sshd = Sshd::start_with(SshdOptions {
        password_authentication: false,
        ..SshdOptions::default()
    });
    let user = sshd.create_user("keyonly");
    let name = user.name();
    assert!(
        !sshd.ssh_password_login(name, user.password()),
        "the right password must be refused when password authentication is off"
    );
    let err = sshd
        .ssh_password_exec(name, user.password(), "true")
        .expect_err("password login is off");
    assert!(
        err.contains("Permission denied (publickey)"),
        "the server must offer only publickey: {err}"
    );

    let (key, public) = client_key(KeyKind::Ed25519);
    sshd.authorize_key(name, &public);
    assert_eq!(sshd.ssh_key_exec(name, &key, "id -un").as_deref(), Ok(name));
}

#[test]
fn sshd_regenerated_host_key_refuses_the_old_known_hosts_line() {
    let mut sshd = Sshd::start();
    let user = sshd.create_user("hostkey");
    let name = user.name().to_owned();
    let password = user.password().to_owned();
    let (key, public) = client_key(KeyKind::Ed25519);
    sshd.authorize_key(&name, &public);
    let port = sshd.port();
    let old_fingerprint = sshd.host_key_fingerprint_sha256().to_owned();
    let old_line = sshd.known_hosts_line();
    assert!(sshd.ssh_key_login(&name, &key));
    assert!(sshd.ssh_password_login(&name, &password));

    // The client really checks: a line naming another key for this host is refused. (The
    // client key serves as "another ed25519 key".)
    let other_key = public.split_whitespace().nth(1).expect("public key field");
    let wrong_line = format!("[127.0.0.1]:{port} ssh-ed25519 {other_key}");
    let err = sshd
        .ssh_exec(&name, ClientAuth::PrivateKey(&key), "true", None, &wrong_line)
        .expect_err("a wrong known_hosts line must be refused");
    assert!(
        err.contains("Host key verification failed"),
        "unexpected error: {err}"
    );

    sshd.regenerate_host_key();
    assert!(sshd.is_running());
    assert_eq!(sshd.port(), port);
    assert!(sshd.host_key_fingerprint_sha256().starts_with("SHA256:"));
    assert_ne!(sshd.host_key_fingerprint_sha256(), old_fingerprint);
    assert_ne!(sshd.known_hosts_line(), old_line);
    for auth in [ClientAuth::PrivateKey(&key), ClientAuth::Password(&password)] {
        let err = sshd
            .ssh_exec(&name, auth, "true", None, &old_line)
            .expect_err("the old host key line must no longer connect");
        assert!(
            err.contains("Host key verification failed"),
            "unexpected error ({auth:?}): {err}"
        );
    }
    assert!(sshd.ssh_key_login(&name, &key), "the new line connects");
    assert!(sshd.ssh_password_login(&name, &password));
}

#[test]
fn sudoer_without_password_runs_sudo_n() {
    let sshd = Sshd::start();
    let plain = sshd.create_user("plain");
    assert!(plain.sudoers_file().is_none());
    let err = sshd
        .ssh_password_exec(plain.name(), plain.password(), "sudo -n true")
        .expect_err("a user without a drop-in may not sudo");
    assert!(!err.is_empty());

    let admin = sshd.create_sudoer("nopw", SudoMode::NoPassword);
    let file = admin
        .sudoers_file()
        .expect("a sudoer has a drop-in")
        .to_path_buf();
    assert_eq!(file, Path::new("/etc/sudoers.d").join(admin.name()));
    let meta = std::fs::metadata(&file).expect("the drop-in exists");
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (0, 0, 0o440));
    assert!(util::read_lossy(&file).contains(&format!("{} ALL=(ALL:ALL) NOPASSWD: ALL\n", admin.name())));
    assert_eq!(
        sshd.ssh_password_exec(admin.name(), admin.password(), "sudo -n id -u")
            .as_deref(),
        Ok("0")
    );

    drop(admin);
    assert!(!file.exists(), "{} still exists after drop", file.display());
}

#[test]
fn sudoer_with_password_is_asked_every_time() {
    let sshd = Sshd::start();
    let admin = sshd.create_sudoer("pw", SudoMode::Password);
    let (name, password) = (admin.name(), admin.password());
    let file = admin
        .sudoers_file()
        .expect("a sudoer has a drop-in")
        .to_path_buf();
    assert!(util::read_lossy(&file).contains(&format!("Defaults:{name} timestamp_timeout=0\n")));

    let err = sshd
        .ssh_password_exec(name, password, "sudo -n true")
        .expect_err("sudo -n must fail when a password is required");
    assert!(err.contains("a password is required"), "unexpected error: {err}");

    // The password travels on ssh's stdin to `sudo -S`, never in a command line.
    let answer = format!("{password}\n");
    assert_eq!(
        sshd.ssh_password_exec_stdin(name, password, "sudo -S -p '' id -u", answer.as_bytes())
            .as_deref(),
        Ok("0")
    );
    // No cached credential: right after a successful sudo, the next one asks again.
    let err = sshd
        .ssh_password_exec_stdin(
            name,
            password,
            "sudo -S -p '' true && sudo -n true",
            answer.as_bytes(),
        )
        .expect_err("timestamp_timeout=0 must make sudo ask every time");
    assert!(err.contains("a password is required"), "unexpected error: {err}");
    assert!(
        sshd.ssh_password_exec_stdin(name, password, "sudo -S -p '' true", b"not-the-password\n")
            .is_err(),
        "a wrong password must be refused by sudo"
    );
}

/// Set in the child run of [`sshd_watchdog_cleans_up_after_abort`].
const SSHD_ABORT_CHILD_ENV: &str = "ROTD_TESTKIT_SSHD_ABORT_CHILD";

#[test]
fn sshd_watchdog_cleans_up_after_abort() {
    if std::env::var_os(SSHD_ABORT_CHILD_ENV).is_some() {
        let sshd = Sshd::start();
        let sudoer = sshd.create_sudoer("abort", SudoMode::NoPassword);
        sshd.authorize_key(sudoer.name(), &client_key(KeyKind::Ed25519).1);
        let keys_dir = sshd
            .authorized_keys_path(sudoer.name())
            .parent()
            .and_then(Path::parent)
            .expect("keys file is two levels below the fixture's keys dir")
            .to_path_buf();
        println!(
            "ROTD_CHILD port={} dir={} keys={} user={} sudoers={}",
            sshd.port(),
            sshd.conf_path().parent().expect("config has a parent").display(),
            keys_dir.display(),
            sudoer.name(),
            sudoer.sudoers_file().expect("drop-in").display()
        );
        std::process::abort();
    }

    let line = run_aborting_child("sshd_watchdog_cleans_up_after_abort", SSHD_ABORT_CHILD_ENV);
    let line = line.as_str();
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            .to_owned()
    };
    let port: u16 = field("port=").parse().expect("numeric port");
    let paths = [field("dir="), field("keys="), field("sudoers=")].map(PathBuf::from);
    let user = field("user=");
    assert!(paths[1].starts_with(rotd_testkit::fixtures::sshd::KEYS_PARENT));
    let cleaned = util::wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        !util::port_accepts(port) && paths.iter().all(|p| !p.exists()) && !user_exists(&user)
    });
    assert!(
        cleaned,
        "the watchdogs did not stop sshd on port {port}, remove {paths:?} and delete {user}"
    );
}

#[test]
fn proc_sampler_sees_short_lived_argv_and_environ() {
    let argv_needle = format!("rotd-needle-argv-{}", util::random_lower(16));
    let env_needle = format!("rotd-needle-env-{}", util::random_lower(16));
    let absent = format!("rotd-needle-absent-{}", util::random_lower(16));

    let sampler = ProcSampler::start(Duration::from_millis(1));
    // The trailing `; :` stops sh from exec'ing sleep in its place, so the needle (sh's $0)
    // stays in its argv for the 200 ms that sleep runs, and no longer.
    let status = Command::new("sh")
        .args(["-c", "sleep 0.2; :"])
        .arg(&argv_needle)
        .status()
        .expect("run sh");
    assert!(status.success());
    let status = Command::new("sleep")
        .arg("0.2")
        .env("ROTD_TEST_NEEDLE", &env_needle)
        .status()
        .expect("run sleep");
    assert!(status.success());
    let samples = sampler.stop();

    // 400 ms at a 1 ms interval; far fewer sweeps would mean the interval is not honoured.
    assert!(samples.count() >= 20, "only {} sweeps", samples.count());
    let hit = samples
        .find(&argv_needle)
        .unwrap_or_else(|| panic!("the argv needle was missed in {} sweeps", samples.count()));
    assert!(
        hit.contains(" cmdline: sh -c sleep 0.2; : rotd-needle-argv-"),
        "unexpected entry: {hit}"
    );
    let hit = samples
        .find(&env_needle)
        .unwrap_or_else(|| panic!("the environ needle was missed in {} sweeps", samples.count()));
    assert!(
        hit.contains(" environ: ") && hit.contains("ROTD_TEST_NEEDLE=rotd-needle-env-"),
        "unexpected entry: {hit}"
    );
    assert_eq!(samples.find(&absent), None);
    assert!(
        !format!("{samples:?}").contains("rotd-needle"),
        "Debug shows only counts"
    );
}

/// Runs test `name` again in a child process with `env_var` set, where it starts fixtures, prints their
/// details on a `ROTD_CHILD ` line and aborts (skipping every destructor, as a SIGKILL would); returns that
/// line's fields.
fn run_aborting_child(name: &str, env_var: &str) -> String {
    let exe = std::env::current_exe().expect("current test executable");
    let output = Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env_var, "1")
        .output()
        .expect("run the aborting child test");
    assert!(!output.status.success(), "the child run must abort");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("ROTD_CHILD ").map(|(_, rest)| rest.to_owned()))
        .unwrap_or_else(|| panic!("child did not report its server: {stdout}"))
}
