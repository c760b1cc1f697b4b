//! A Redis secret as a new user declares it (`config/examples/secrets.d/redis.toml`), on private real
//! `redis-server`s with ACL users and `default` off: with no `rotd rotate`, the daemon creates both ACL
//! users on every listed node, so the secret is readable and both accounts log in everywhere at once;
//! each `rotd rotate` resets the account not holding `ACSCurrent` on every node, and the credential
//! applications hold keeps working. A node restarted afterwards still accepts `ACSCurrent` (ACL SAVE).

use std::time::Duration;

use rotd_e2e::{Daemon, Env, read_account};
use rotd_testkit::fixtures::Redis;

const NAME: &str = "web/redis-sessions";

/// Two nodes sharing the first one's admin credentials.
fn nodes() -> Vec<Redis> {
    let mut nodes = vec![Redis::start(), Redis::start()];
    let password = nodes[0].admin_password().to_owned();
    let user = nodes[1].admin_user().to_owned();
    nodes[1].admin_cli(&["ACL", "SETUSER", &user, "resetpass", &format!(">{password}")]);
    nodes[1].set_admin_password(&password);
    nodes[1].admin_cli(&["ACL", "SAVE"]);
    nodes
}

fn logs_in(node: &Redis, account: &(String, String, String)) -> bool {
    node.cli(&account.1, &account.2, &["SET", "rotd:e2e", "1"])
        .as_deref()
        == Ok("OK")
}

/// The example file with what differs on this machine: the node addresses, TLS off (the private servers
/// have no certificates), the admin user and password file.
fn declare(env: &Env, nodes: &[Redis]) {
    use std::os::unix::fs::PermissionsExt;
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/secrets.d/redis.toml"),
    )
    .expect("example");
    let pw_file = env.path("redis-admin.pw");
    std::fs::write(&pw_file, nodes[0].admin_password()).expect("admin file");
    std::fs::set_permissions(&pw_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let list: Vec<String> = nodes
        .iter()
        .map(|n| format!("\"127.0.0.1:{}\"", n.port()))
        .collect();
    let mut text = String::new();
    for line in example.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let line = match key {
            "host" => "host = \"127.0.0.1\"".to_owned(),
            "port" => format!("port = {}", nodes[0].port()),
            "tls" => "tls = false".to_owned(),
            "ca_file" => continue,
            "admin" => format!("admin = {{ file = \"{}\" }}", pw_file.display()),
            "admin_user" => format!("admin_user = \"{}\"", nodes[0].admin_user()),
            "nodes" => format!("nodes = [{}]", list.join(", ")),
            _ => line.to_owned(),
        };
        text.push_str(&line);
        text.push('\n');
    }
    env.write("secrets.d/redis.toml", &text);
    env.ok(&["check"]);
}

#[test]
fn a_declared_redis_secret_has_both_users_on_every_node_at_once_and_rotates_without_a_gap() {
    let mut nodes = nodes();
    let env = Env::new();
    env.write(
        "rotd.toml",
        "data_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    declare(&env, &nodes);
    let daemon = Daemon::start(&env, "serve.log", &[]);
    let start = rotd_core::Clock::system().instant();
    let (current, previous) = loop {
        daemon.assert_alive();
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
