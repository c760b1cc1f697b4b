//! kill -9 at every step of account creation, on a private real MariaDB server: the example dual secret
//! (`config/examples/secrets.d/rds-mysql-dual.toml`, accounts rotd creates) is declared, `rotd serve`
//! starts creating both accounts at once (the clone first, then the primary), and a failpoint parks one
//! creation at one boundary: `sql-created` (right after `CREATE USER … ACCOUNT LOCK`, before any grant),
//! then each engine step boundary. Each boundary is run for the clone's creation (the first rotation
//! reaching the failpoint) and for the primary's (the clone's is parked after `promoted` first). The
//! daemon is killed there and restarted without the failpoint. Afterwards both
//! accounts exist exactly once, are unlocked, hold the same configured privileges, log in and use
//! `orders.t`, and ACSCurrent/ACSPrevious name the primary and the clone.
//!
//! The declaration helper is `rotd_e2e::declare_rds_dual_example`, shared with `database.rs` (the example
//! with only the address, TLS and the admin file changed).

use std::time::Duration;

use rotd_e2e::{Daemon, DbServer, Env, declare_rds_dual_example, read_account};
use rotd_testkit::fixtures::MariaDb;

const NAME: &str = "orders/mysql-app";
const PRIMARY: &str = "app_rw";
const CLONE: &str = "app_rw_clone";

/// The journal's steps, oldest first, without `failed` attempts.
fn steps(env: &Env) -> Vec<String> {
    let r = env.run(&["-o", "json", "rotation", "history", NAME]);
    if r.code != 0 {
        return Vec::new();
    }
    let h: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_default();
    h.as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["step"] != "failed")
                .filter_map(|e| e["step"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The stage labels of every version: (version id, stages).
fn versions(env: &Env) -> Vec<(String, Vec<String>)> {
    let r = env.run(&["-o", "json", "secret", "versions", NAME]);
    if r.code != 0 {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|v| {
                    let id = v["VersionId"].as_str().unwrap_or_default().to_owned();
                    let stages = v["VersionStages"]
                        .as_array()
                        .map(|s| s.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default();
                    (id, stages)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has_stage(env: &Env, stage: &str) -> bool {
    versions(env).iter().any(|(_, s)| s.iter().any(|x| x == stage))
}

fn account_rows(db: &MariaDb, user: &str) -> u32 {
    db.admin_sql(&format!("SELECT COUNT(*) FROM mysql.user WHERE user='{user}'"))
        .trim()
        .parse()
        .expect("a count")
}

/// Which of the two creations the failpoint parks: the clone's (the first rotation) or the primary's
/// (the second; the test first parks the clone's after `promoted` and restarts with the failpoint).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Creation {
    Clone,
    Primary,
}

impl Creation {
    /// How many rotations were promoted before this one.
    fn before(self) -> usize {
        match self {
            Creation::Clone => 0,
            Creation::Primary => 1,
        }
    }
    fn account(self) -> &'static str {
        match self {
            Creation::Clone => CLONE,
            Creation::Primary => PRIMARY,
        }
    }
}

/// Whether the `which` creation reached `boundary`, as the journal, the store or the server show it.
/// The engine runs one rotation per secret, so the other creation waits meanwhile.
fn reached(env: &Env, db: &MariaDb, boundary: &str, which: Creation) -> bool {
    let all = steps(env);
    // This rotation's entries: those after the promotions of the ones before it.
    let mut promoted = 0;
    let tail: Vec<&str> = all
        .iter()
        .filter(|s| {
            let mine = promoted >= which.before();
            if *s == "promoted" {
                promoted += 1;
            }
            mine
        })
        .map(String::as_str)
        .collect();
    let last = tail.last().copied().unwrap_or_default();
    // Promotion's store transaction gives the secret its first value (the clone) or its second (the
    // primary, shifting the clone to ACSPrevious); its journal entry is not written yet.
    let promoted_stage = match which {
        Creation::Clone => "ACSCurrent",
        Creation::Primary => "ACSPrevious",
    };
    match boundary {
        "sql-created" => account_rows(db, which.account()) == 1,
        // `pending` is journaled before the value is stored; `stored` after.
        "pending" => last == "pending",
        "stored" => last == "pending" && has_stage(env, "ACSPending"),
        "applied" => last == "applied",
        "verified" => last == "verified",
        "promoted-store" => last == "verified" && has_stage(env, promoted_stage),
        "promoted" => tail.contains(&"promoted"),
        _ => panic!("unknown boundary {boundary}"),
    }
}

/// Starts `rotd serve` with the failpoint at `boundary` and kills it (-9) once the `which` creation is
/// parked there. Returns the daemon's log.
fn park_and_kill(env: &Env, db: &MariaDb, log: &str, boundary: &str, which: Creation) -> String {
    let daemon = Daemon::start(env, log, &[("ROTD_FAILPOINT", boundary)]);
    let start = rotd_core::Clock::system().instant();
    loop {
        daemon.assert_alive();
        // The failpoint's own log line says the rotation is parked there and not a step short of it.
        if reached(env, db, boundary, which) && daemon.log_text().contains("Failpoint reached") {
            break;
        }
        assert!(
            rotd_core::Clock::system().elapsed(start) < Duration::from_secs(20),
            "{boundary}: the creation did not park there; journal {:?}\n{}",
            steps(env),
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = daemon.log_text();
    daemon.kill9();
    text
}

/// `SHOW GRANTS` of an account, with the account name and password hash taken out so two accounts'
/// lists compare equal when they hold the same privileges.
fn grants(db: &MariaDb, user: &str) -> Vec<String> {
    let mut out: Vec<String> = db
        .admin_sql(&format!("SHOW GRANTS FOR '{user}'@'%'"))
        .lines()
        .map(|l| {
            let l = l.replace(&format!("`{user}`@`%`"), "<account>");
            match l.find(" IDENTIFIED BY PASSWORD") {
                Some(i) => l[..i].to_owned(),
                None => l,
            }
        })
        .collect();
    out.sort();
    out
}

fn crash_during_creation(boundary: &str, which: Creation) {
    let case = format!("{boundary} ({})", which.account());
    let t0 = rotd_core::Clock::system().instant();
    let db = MariaDb::start();
    db.admin_sql(
        "CREATE DATABASE orders; CREATE DATABASE orders_archive; \
         CREATE TABLE orders.t (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT)",
    );
    let env = Env::new();
    env.write(
        "rotd.toml",
        "data_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n[rotation]\nstep_timeout = \"20s\"\nbackoff = \"1s\"\n",
    );
    declare_rds_dual_example(
        &env,
        &DbServer {
            engine: "mysql",
            host: db.host(),
            port: db.port(),
            admin_user: db.admin_user(),
            admin_password: db.admin_password(),
        },
    );
    let t_ready = rotd_core::Clock::system().elapsed(t0);

    let mut first_log = String::new();
    if which == Creation::Primary {
        // The clone is created; the process dies right after its promotion is journaled.
        first_log += &park_and_kill(&env, &db, "clone.log", "promoted", Creation::Clone);
    }
    first_log += &park_and_kill(&env, &db, "first.log", boundary, which);
    if which == Creation::Clone {
        assert!(
            read_account(&env, NAME, "ACSPrevious").is_none(),
            "{case}: the failpoint parked the first creation, not the second"
        );
    }
    let before = versions(&env);

    let second = Daemon::start(&env, "second.log", &[]);
    let start = rotd_core::Clock::system().instant();
    let (current, previous) = loop {
        second.assert_alive();
        // ACSPrevious appears with the last creation step: read ACSCurrent after it.
        if let Some(p) = read_account(&env, NAME, "ACSPrevious")
            && let Some(c) = read_account(&env, NAME, "ACSCurrent")
            && !has_stage(&env, "ACSPending")
        {
            break (c, p);
        }
        assert!(
            rotd_core::Clock::system().elapsed(start) < Duration::from_secs(30),
            "{case}: both accounts not created after the restart; journal {:?}\n{}",
            steps(&env),
            second.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let t_recovered = rotd_core::Clock::system().elapsed(start);

    assert_eq!(current.1, PRIMARY, "{case}: ACSCurrent is the primary account");
    assert_eq!(previous.1, CLONE, "{case}: ACSPrevious is the clone");
    for (_, user, password) in [&current, &previous] {
        db.mysql_db(
            user,
            password,
            Some("orders"),
            "INSERT INTO t (note) VALUES ('x'); SELECT COUNT(*) FROM t;",
        )
        .unwrap_or_else(|e| panic!("{case}: {user} cannot use orders.t: {e}\n{}", second.log_text()));
    }
    for user in [PRIMARY, CLONE] {
        assert_eq!(account_rows(&db, user), 1, "{case}: {user} exists exactly once");
        let create = db.admin_sql(&format!("SHOW CREATE USER '{user}'@'%'"));
        assert!(
            !create.contains("ACCOUNT LOCK"),
            "{case}: {user} is left locked: {create}"
        );
    }
    let primary = grants(&db, PRIMARY);
    let clone = grants(&db, CLONE);
    assert_eq!(primary, clone, "{case}: the two accounts' privileges differ");
    assert_eq!(
        primary,
        [
            "GRANT ALL PRIVILEGES ON `orders_archive`.* TO <account>",
            "GRANT ALL PRIVILEGES ON `orders`.* TO <account>",
            "GRANT USAGE ON *.* TO <account>",
        ],
        "{case}: exactly the configured privileges"
    );

    // Nothing the first process stored is lost, and the creation made one version per account.
    let after = versions(&env);
    for (id, _) in &before {
        assert!(
            after.iter().any(|(x, _)| x == id),
            "{case}: version {id} was lost: {after:?}"
        );
    }
    assert_eq!(after.len(), 2, "{case}: one version per account: {after:?}");

    let log = second.stop();
    if boundary != "promoted" {
        assert!(
            log.contains("Resuming an unfinished rotation"),
            "{case}: the restart resumed the parked creation:\n{log}"
        );
    }
    for password in [&current.2, &previous.2] {
        assert!(
            !log.contains(password.as_str()) && !first_log.contains(password.as_str()),
            "{case}: a password reached the log"
        );
    }
    eprintln!(
        "{case}: server ready {t_ready:?}, recovered {t_recovered:?} after the restart, total {:?}",
        rotd_core::Clock::system().elapsed(t0)
    );
}

#[test]
fn clone_kill_between_create_user_and_grant() {
    crash_during_creation("sql-created", Creation::Clone);
}

#[test]
fn primary_kill_between_create_user_and_grant() {
    crash_during_creation("sql-created", Creation::Primary);
}

#[test]
fn clone_kill_after_pending_is_journaled() {
    crash_during_creation("pending", Creation::Clone);
}

#[test]
fn primary_kill_after_pending_is_journaled() {
    crash_during_creation("pending", Creation::Primary);
}

#[test]
fn clone_kill_after_the_pending_value_is_stored() {
    crash_during_creation("stored", Creation::Clone);
}

#[test]
fn primary_kill_after_the_pending_value_is_stored() {
    crash_during_creation("stored", Creation::Primary);
}

#[test]
fn clone_kill_after_apply() {
    crash_during_creation("applied", Creation::Clone);
}

#[test]
fn primary_kill_after_apply() {
    crash_during_creation("applied", Creation::Primary);
}

#[test]
fn clone_kill_after_verify() {
    crash_during_creation("verified", Creation::Clone);
}

#[test]
fn primary_kill_after_verify() {
    crash_during_creation("verified", Creation::Primary);
}

#[test]
fn clone_kill_inside_promotion_after_the_store_transaction() {
    crash_during_creation("promoted-store", Creation::Clone);
}

#[test]
fn primary_kill_inside_promotion_after_the_store_transaction() {
    crash_during_creation("promoted-store", Creation::Primary);
}

#[test]
fn clone_kill_after_promotion() {
    crash_during_creation("promoted", Creation::Clone);
}

#[test]
fn primary_kill_after_promotion() {
    crash_during_creation("promoted", Creation::Primary);
}
