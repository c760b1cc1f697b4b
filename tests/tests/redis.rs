//! A Redis secret as a new user declares it (`config/examples/secrets.d/redis.toml`, TLS and CA file
//! included), on private real `redis-server`s with ACL users and `default` off: with no `rotd rotate`,
//! the daemon creates both ACL users on every listed node, so the secret is readable and both accounts log
//! in everywhere at once; each `rotd rotate` resets the account not holding `ACSCurrent` on every node,
//! and the credential applications hold keeps working. A node restarted afterwards still accepts
//! `ACSCurrent` (ACL SAVE). A replica that is down holds a rotation back, and status and metrics name it;
//! with `discover = true` the replicas the primary reports are changed too, and `rotd plan` names a node
//! whose accounts differ.

use std::time::Duration;

use rotd_e2e::{Daemon, Env, free_port, http_get, read_account, wait_for};
use rotd_testkit::fixtures::Redis;
use rotd_testkit::fixtures::redis::RedisOptions;

const NAME: &str = "web/redis-sessions";

/// Makes every node after the first a replica of it (ACL users are not replicated; data is).
fn replicate(nodes: &[Redis]) {
    nodes[0].admin_cli(&["SET", "rotd:e2e", "1"]);
    for r in &nodes[1..] {
        replicate_one(&nodes[0], r);
    }
}

/// Makes `replica` a replica of `primary` and waits until it has synced and the primary reports it
/// online.
fn replicate_one(primary: &Redis, replica: &Redis) {
    replica.admin_cli(&["CONFIG", "SET", "masteruser", replica.admin_user()]);
    replica.admin_cli(&["CONFIG", "SET", "masterauth", replica.admin_password()]);
    replica.admin_cli(&["REPLICAOF", "127.0.0.1", &primary.port().to_string()]);
    // ROLE, which `discover` reads, reports a replica only once it is online; INFO lists it earlier.
    let listed = format!("port={},state=online", replica.port());
    wait_for("the replica to sync", Duration::from_secs(30), || {
        replica.admin_cli(&["EXISTS", "rotd:e2e"]) == "1"
            && primary.admin_cli(&["INFO", "replication"]).contains(&listed)
    });
}

type Account = (String, String, String);

/// Waits until both stages are readable and returns (ACSCurrent, ACSPrevious).
fn first_value(env: &Env, daemon: &Daemon) -> (Account, Account) {
    let start = rotd_core::Clock::system().instant();
    loop {
        daemon.assert_alive();
        if let Some(p) = read_account(env, NAME, "ACSPrevious")
            && let Some(c) = read_account(env, NAME, "ACSCurrent")
        {
            return (c, p);
        }
        assert!(
            rotd_core::Clock::system().elapsed(start) < Duration::from_secs(60),
            "no value a minute after start:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Logs in as the account and reads a key (replicas refuse writes).
fn logs_in(node: &Redis, account: &(String, String, String)) -> bool {
    node.cli(&account.1, &account.2, &["EXISTS", "rotd:e2e"]).is_ok()
}

/// The example file with what differs on this machine: the node addresses, the CA file (TLS stays as
/// the example has it when the servers speak TLS), the admin user and password file, and `extra` lines
/// after the `[redis]` keys.
fn declare(env: &Env, nodes: &[Redis], listed: usize, extra: &str) {
    use std::os::unix::fs::PermissionsExt;
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/secrets.d/redis.toml"),
    )
    .expect("example");
    let pw_file = env.path("redis-admin.pw");
    std::fs::write(&pw_file, nodes[0].admin_password()).expect("admin file");
    std::fs::set_permissions(&pw_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let list: Vec<String> = nodes[..listed]
        .iter()
        .map(|n| format!("\"127.0.0.1:{}\"", n.port()))
        .collect();
    let ca = nodes[0].ca_path();
    let mut text = String::new();
    for line in example.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let line = match key {
            "host" => "host = \"127.0.0.1\"".to_owned(),
            "port" => format!("port = {}", nodes[0].port()),
            "tls" if ca.is_some() => line.to_owned(),
            "tls" => "tls = false".to_owned(),
            "ca_file" => match &ca {
                Some(p) => format!("ca_file = \"{}\"", p.display()),
                None => continue,
            },
            "admin" => format!("admin = {{ file = \"{}\" }}", pw_file.display()),
            "admin_user" => format!("admin_user = \"{}\"", nodes[0].admin_user()),
            "nodes" => format!("nodes = [{}]", list.join(", ")),
            _ => line.to_owned(),
        };
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str(extra);
    env.write("secrets.d/redis.toml", &text);
    env.ok(&["check"]);
}

#[test]
fn a_declared_redis_secret_has_both_users_on_every_node_at_once_and_rotates_without_a_gap() {
    let mut nodes = Redis::start_nodes_with(
        2,
        RedisOptions {
            tls: true,
            ..RedisOptions::default()
        },
    );
    assert!(
        nodes[0].plain_tcp_refused(),
        "the fixture speaks only TLS, so a plain-TCP fallback would fail"
    );
    let env = Env::new();
    env.write(
        "rotd.toml",
        "data_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    declare(&env, &nodes, 2, "");
    let daemon = Daemon::start(&env, "serve.log", &[]);
    let (current, previous) = first_value(&env, &daemon);
    assert_eq!(
        (current.1.as_str(), previous.1.as_str()),
        ("sessions", "sessions_clone")
    );
    for n in &nodes {
        assert!(
            logs_in(n, &current) && logs_in(n, &previous),
            "both users on every node"
        );
    }
    let mut held = current;
    for round in 0..3 {
        let r = env.run(&["rotate", NAME]);
        assert_eq!(r.code, 0, "{}{}\n{}", r.stdout, r.stderr, daemon.log_text());
        let now = read_account(&env, NAME, "ACSCurrent").expect("current");
        assert_ne!(now.1, held.1, "round {round}: the accounts alternate");
        for n in &nodes {
            assert!(
                logs_in(n, &now),
                "round {round}: the new ACSCurrent logs in on every node"
            );
            assert!(
                logs_in(n, &held),
                "round {round}: the credential applications held still works"
            );
        }
        held = now;
    }
    // A node restarted after the rotations still knows the users (the change was ACL SAVEd).
    nodes[1].restart();
    assert!(logs_in(&nodes[1], &held), "ACSCurrent survives a node restart");
    let log = daemon.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains(held.2.as_str()), "a password reached the log");
}

#[test]
fn a_rotation_waits_for_a_replica_that_is_down_and_the_new_account_survives_a_failover() {
    let mut nodes = Redis::start_nodes(3);
    replicate(&nodes);
    let env = Env::new();
    let admin = free_port();
    env.write(
        "rotd.toml",
        &format!(
            "data_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[api]\nlisten = \"127.0.0.1:0\"\n\
             [rotation]\nbackoff = \"1s\"\nbackoff_max = \"2s\"\n"
        ),
    );
    declare(&env, &nodes, 3, "");
    let daemon = Daemon::start(&env, "serve.log", &[]);
    let (held, _) = first_value(&env, &daemon);
    for n in &nodes {
        assert!(logs_in(n, &held), "ACSCurrent on every node, replicas included");
    }

    // A replica goes down; a rotation is requested. It must not be promoted while that node lacks it.
    nodes[2].stop();
    let r = env.run(&["rotate", NAME, "--no-wait"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    std::thread::sleep(Duration::from_secs(4));
    let during = read_account(&env, NAME, "ACSCurrent").expect("current");
    assert_eq!(
        during.0,
        held.0,
        "not promoted with a node down:\n{}",
        daemon.log_text()
    );
    for n in &nodes[..2] {
        assert!(
            logs_in(n, &held),
            "the credential applications hold keeps working meanwhile"
        );
    }
    // Status and metrics name the node that holds the rotation back.
    let down = format!("127.0.0.1:{}", nodes[2].port());
    let series = format!("rotd_rotation_lagging_node{{secret=\"{NAME}\",node=\"{down}\"}} 1");
    wait_for("the lagging node in the metrics", Duration::from_secs(30), || {
        http_get(admin, "/metrics").1.contains(&series)
    });
    let status = env.json(&["status"]);
    let row = status
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["SecretName"] == NAME))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        row["LastError"].as_str().is_some_and(|e| e.contains(&down)),
        "status names the node: {row}"
    );
    // Back up: the open rotation completes on its own.
    nodes[2].restart();
    let start = rotd_core::Clock::system().instant();
    let now = loop {
        let c = read_account(&env, NAME, "ACSCurrent").expect("current");
        if c.0 != held.0 {
            break c;
        }
        assert!(
            rotd_core::Clock::system().elapsed(start) < Duration::from_secs(60),
            "the rotation did not complete after the node came back:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for n in &nodes {
        assert!(logs_in(n, &now), "the new ACSCurrent logs in on every node");
        assert!(logs_in(n, &held), "ACSPrevious still works on every node");
    }
    assert!(
        !http_get(admin, "/metrics")
            .1
            .contains("rotd_rotation_lagging_node{"),
        "no lagging node once the rotation completed"
    );
    // Failover: a replica becomes the primary; the application's ACSCurrent writes there.
    nodes[1].admin_cli(&["REPLICAOF", "NO", "ONE"]);
    assert_eq!(
        nodes[1].cli(&now.1, &now.2, &["SET", "rotd:e2e", "2"]).as_deref(),
        Ok("OK"),
        "ACSCurrent writes on the promoted replica"
    );
    let log = daemon.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains(now.2.as_str()), "a password reached the log");
}

#[test]
fn with_discover_the_replicas_the_primary_reports_are_changed_too_and_plan_names_a_node_that_differs() {
    let nodes = Redis::start_nodes(4);
    replicate(&nodes[..3]);
    let env = Env::new();
    env.write(
        "rotd.toml",
        "data_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    // Only the primary is listed.
    declare(&env, &nodes, 1, "discover = true\n");
    let daemon = Daemon::start(&env, "serve.log", &[]);
    let (held, previous) = first_value(&env, &daemon);
    for n in &nodes[..3] {
        assert!(
            logs_in(n, &held) && logs_in(n, &previous),
            "both users on the primary and the replicas it reports"
        );
    }
    let plan = env.json(&["plan"]);
    let notes = plan[0]["Notes"].to_string();
    assert!(
        notes.contains(&format!("127.0.0.1:{} (discovered): replica of", nodes[2].port())),
        "plan lists the discovered replicas: {notes}"
    );
    assert!(
        !notes.contains("differs") && !notes.contains("missing"),
        "{notes}"
    );

    // A replica added later lacks the users until the next rotation; plan says so.
    replicate_one(&nodes[0], &nodes[3]);
    assert!(!logs_in(&nodes[3], &held), "ACL users are not replicated");
    let plan = env.json(&["plan"]);
    let notes = plan[0]["Notes"].to_string();
    let late = format!("127.0.0.1:{}: account sessions missing", nodes[3].port());
    assert!(notes.contains(&late), "plan names the node that differs: {notes}");
    let table = env.ok(&["plan"]);
    assert!(table.contains(&late), "the table shows the notes too: {table}");

    let r = env.run(&["rotate", NAME]);
    assert_eq!(r.code, 0, "{}{}\n{}", r.stdout, r.stderr, daemon.log_text());
    let now = read_account(&env, NAME, "ACSCurrent").expect("current");
    assert!(logs_in(&nodes[3], &now), "the rotation reached the late replica");
    assert_eq!(
        now.1, "sessions_clone",
        "the rotation reset the account holding ACSPrevious"
    );
    let notes = env.json(&["plan"])[0]["Notes"].to_string();
    assert!(
        notes.contains(&late)
            && !notes.contains(&format!("127.0.0.1:{}: account sessions_clone", nodes[3].port())),
        "only the account the rotation did not touch still differs on the late node: {notes}"
    );
    let log = daemon.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains(now.2.as_str()), "a password reached the log");
}

#[test]
fn in_overlap_mode_one_account_keeps_its_old_password_for_the_grace_period_and_then_loses_it() {
    let nodes = Redis::start_nodes(2);
    let env = Env::new();
    env.write(
        "rotd.toml",
        "data_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    declare(&env, &nodes, 2, "mode = \"overlap\"\n");
    // grace goes at the top of the file, before any table.
    let path = env.path("secrets.d/redis.toml");
    let text = std::fs::read_to_string(&path).expect("declared file");
    env.write(
        "secrets.d/redis.toml",
        &format!("grace = \"4s\"\n{}", text.replace("clone_user", "# clone_user")),
    );
    env.ok(&["check"]);
    let daemon = Daemon::start(&env, "serve.log", &[]);
    wait_for("the first value", Duration::from_secs(60), || {
        read_account(&env, NAME, "ACSCurrent").is_some()
    });
    let old = read_account(&env, NAME, "ACSCurrent").expect("current");
    assert_eq!(old.1, "sessions", "one account, no clone");
    assert!(nodes.iter().all(|n| logs_in(n, &old)), "on every node");

    let r = env.run(&["rotate", NAME]);
    assert_eq!(r.code, 0, "{}{}\n{}", r.stdout, r.stderr, daemon.log_text());
    let new = read_account(&env, NAME, "ACSCurrent").expect("current");
    assert_eq!(new.1, "sessions", "the same account");
    assert_ne!(new.2, old.2, "a new password");
    for n in &nodes {
        assert!(
            logs_in(n, &new) && logs_in(n, &old),
            "old and new password both work during the grace period"
        );
    }
    wait_for("the old password to be removed", Duration::from_secs(60), || {
        nodes.iter().all(|n| !logs_in(n, &old))
    });
    assert!(
        nodes.iter().all(|n| logs_in(n, &new)),
        "the new password still works on every node"
    );
    let log = daemon.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains(new.2.as_str()), "a password reached the log");
}
