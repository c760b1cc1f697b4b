//! Database secrets as a new user declares them, on private real MariaDB and PostgreSQL servers with
//! password authentication: `config/examples/secrets.d/rds-mysql-dual.toml` (accounts rotd creates) is
//! readable, with both accounts logging in and using their tables, seconds after `rotd serve` starts,
//! with no `rotd rotate`; and an operator's rollback (`rotd secret stage ... ACSCurrent --move-to` the
//! previous version) never makes the next rotation reset the account applications now hold.

use std::time::Duration;

use rotd_e2e::{Daemon, DbServer, Env, declare_rds_dual_example, read_account};
use rotd_testkit::fixtures::{MariaDb, Postgres};

const NAME: &str = "orders/mysql-app";

/// Logs in as an account and uses the application's table; `Err` carries the server's message.
trait Server {
    fn use_table(&self, user: &str, password: &str) -> Result<(), String>;
    fn host(&self) -> String;
    fn port(&self) -> u16;
    fn admin(&self) -> (String, String);
}

impl Server for MariaDb {
    fn use_table(&self, user: &str, password: &str) -> Result<(), String> {
        self.mysql_db(
            user,
            password,
            Some("orders"),
            "INSERT INTO t (note) VALUES ('x'); SELECT COUNT(*) FROM t;",
        )
        .map(|_| ())
    }
    fn host(&self) -> String {
        MariaDb::host(self).to_owned()
    }
    fn port(&self) -> u16 {
        MariaDb::port(self)
    }
    fn admin(&self) -> (String, String) {
        (self.admin_user().to_owned(), self.admin_password().to_owned())
    }
}

impl Server for Postgres {
    fn use_table(&self, user: &str, password: &str) -> Result<(), String> {
        self.psql_db(
            user,
            password,
            "orders",
            "INSERT INTO t (note) VALUES ('x'); SELECT COUNT(*) FROM t;",
        )
        .map(|_| ())
    }
    fn host(&self) -> String {
        Postgres::host(self).to_owned()
    }
    fn port(&self) -> u16 {
        Postgres::port(self)
    }
    fn admin(&self) -> (String, String) {
        (self.admin_user().to_owned(), self.admin_password().to_owned())
    }
}

fn rotate(env: &Env, daemon: &Daemon) {
    let r = env.run(&["rotate", NAME]);
    assert_eq!(
        r.code,
        0,
        "rotd rotate failed:\n{}{}\n--- rotd log\n{}",
        r.stdout,
        r.stderr,
        daemon.log_text()
    );
}

fn declared_dual_secret_is_readable_at_once_and_survives_a_rollback(db: &dyn Server, engine: &str) {
    let env = Env::new();
    env.write(
        "rotd.toml",
        "data_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    let (host, (admin_user, admin_password)) = (db.host(), db.admin());
    declare_rds_dual_example(
        &env,
        &DbServer {
            engine,
            host: &host,
            port: db.port(),
            admin_user: &admin_user,
            admin_password: &admin_password,
        },
    );
    let daemon = Daemon::start(&env, "serve.log", &[]);

    // No `rotd rotate`: the daemon creates both accounts when it finds the declared secret.
    let start = rotd_core::Clock::system().instant();
    let (current, previous) = loop {
        daemon.assert_alive();
        // ACSPrevious appears with the second (last) creation step; read ACSCurrent after it, so the
        // pair is read from the finished state.
        if let Some(p) = read_account(&env, NAME, "ACSPrevious")
            && let Some(c) = read_account(&env, NAME, "ACSCurrent")
        {
            break (c, p);
        }
        assert!(
            rotd_core::Clock::system().elapsed(start) < Duration::from_secs(60),
            "no value a minute after start:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "{engine}: both accounts readable {:?} after start",
        rotd_core::Clock::system().elapsed(start)
    );
    assert_eq!(current.1, "app_rw", "ACSCurrent is the first account");
    assert_eq!(previous.1, "app_rw_clone", "ACSPrevious is the clone");
    for (_, user, password) in [&current, &previous] {
        db.use_table(user, password)
            .unwrap_or_else(|e| panic!("{user} cannot use orders.t: {e}\n{}", daemon.log_text()));
    }
    let status = env.ok(&["status"]);
    assert!(
        status.contains(NAME) && !status.contains("creating accounts"),
        "{status}"
    );

    // An operator rolls back: ACSCurrent moves to the clone's version. Applications read it.
    env.ok(&["secret", "stage", NAME, "ACSCurrent", "--move-to", &previous.0]);
    let held = read_account(&env, NAME, "ACSCurrent").expect("current after the rollback");
    assert_eq!(held.1, "app_rw_clone");
    rotate(&env, &daemon);
    db.use_table(&held.1, &held.2).unwrap_or_else(|e| {
        panic!(
            "the credential applications held after the rollback stopped working: {e}\n{}",
            daemon.log_text()
        )
    });
    let after = read_account(&env, NAME, "ACSCurrent").expect("current");
    assert_eq!(
        after.1, "app_rw",
        "the rotation reset the account not holding ACSCurrent"
    );
    db.use_table(&after.1, &after.2)
        .expect("the new ACSCurrent works");
    // And the alternation goes on from there.
    rotate(&env, &daemon);
    let next = read_account(&env, NAME, "ACSCurrent").expect("current");
    assert_eq!(next.1, "app_rw_clone");
    db.use_table(&next.1, &next.2).expect("works");
    db.use_table(&after.1, &after.2).expect("ACSPrevious still works");
    let log = daemon.stop();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn mariadb_declared_dual_secret_is_readable_at_once_and_survives_a_rollback() {
    let db = MariaDb::start();
    db.admin_sql(
        "CREATE DATABASE orders; CREATE DATABASE orders_archive; \
         CREATE TABLE orders.t (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT)",
    );
    declared_dual_secret_is_readable_at_once_and_survives_a_rollback(&db, "mysql");
}

#[test]
fn postgres_declared_dual_secret_is_readable_at_once_and_survives_a_rollback() {
    let db = Postgres::start();
    db.admin_sql("CREATE DATABASE orders");
    db.admin_sql("CREATE DATABASE orders_archive");
    let (admin_user, admin_password) = Server::admin(&db);
    db.psql_db(
        &admin_user,
        &admin_password,
        "orders",
        "CREATE TABLE t (id SERIAL PRIMARY KEY, note TEXT)",
    )
    .expect("create orders.t");
    declared_dual_secret_is_readable_at_once_and_survives_a_rollback(&db, "postgres");
}
