//! Self-tests for the real-server fixtures: each server starts, enforces password
//! authentication, survives stop/restart with its data, and is cleaned up on drop.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rotd_testkit::fixtures::{MariaDb, Postgres, Redis, Sshd, util};

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

    let exe = std::env::current_exe().expect("current test executable");
    let output = Command::new(exe)
        .args([
            "--exact",
            "watchdog_cleans_up_after_abort",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ABORT_CHILD_ENV, "1")
        .output()
        .expect("run the aborting child test");
    assert!(!output.status.success(), "the child run must abort");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("ROTD_CHILD ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("child did not report its server: {stdout}"));
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
