//! The running daemon follows the keyring: after the README's `rotd key rotate && rotd key rewrap`, API
//! reads keep working without a restart; a rewrap the daemon could not follow is refused.

use std::time::Duration;

use rotd_e2e::{Api, Daemon, Env, free_port, wait_for};

fn env() -> Env {
    let env = Env::new();
    env.write(
        "rotd.toml",
        &format!(
            "data_dir = \"data\"\n[api]\nlisten = \"127.0.0.1:{}\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n",
            free_port(),
            free_port()
        ),
    );
    env
}

fn api_addr(daemon: &Daemon) -> String {
    let mut addr = None;
    wait_for("rotd started.", Duration::from_secs(60), || {
        daemon.assert_alive();
        addr = daemon
            .log_text()
            .lines()
            .find(|l| l.contains("rotd started."))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("api=")))
            .map(str::to_owned);
        addr.is_some()
    });
    addr.expect("api address")
}

#[test]
fn key_rotate_and_rewrap_reach_the_running_daemon() {
    let env = env();
    let daemon = Daemon::start(&env, "serve.log", &[]);
    let addr = api_addr(&daemon);
    let api = Api::new(&env, &addr);
    let r = env.run_stdin(&["secret", "create", "demo/db", "--value-stdin"], b"hunter2");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (s, b) = api.get_secret_value("demo/db", None);
    assert_eq!(s, 200, "{b}");

    // The README's walkthrough step, against the running daemon.
    let rotated = env.run(&["key", "rotate"]);
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    assert!(!rotated.stderr.contains("warning"), "{}", rotated.stderr);
    env.ok(&["key", "rewrap"]);
    let listed = env.json(&["key", "list"]);
    assert!(
        listed
            .as_array()
            .expect("list")
            .iter()
            .any(|k| k["KeyVersion"] == 2 && k["DataKeys"].as_u64().is_some_and(|n| n >= 2)),
        "data keys moved to version 2: {listed}"
    );
    for _ in 0..3 {
        let (s, b) = api.get_secret_value("demo/db", None);
        assert_eq!(s, 200, "an API read after rotate + rewrap, without restart: {b}");
        assert_eq!(b["SecretData"], "hunter2");
    }
    assert!(daemon.log_text().contains("Loaded the keyring."));

    // A daemon that cannot follow (stopped: its heartbeat is still fresh, but it reloads nothing) makes
    // rewrap refuse, and nothing moves.
    daemon.signal(libc::SIGSTOP);
    let rotated = env.run(&["key", "rotate"]);
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    assert!(
        rotated.stderr.contains("did not reload its keyring"),
        "{}",
        rotated.stderr
    );
    let refused = env.run(&["key", "rewrap"]);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("refusing to re-wrap"),
        "{}",
        refused.stderr
    );
    let listed = env.json(&["key", "list"]);
    assert!(
        listed
            .as_array()
            .expect("list")
            .iter()
            .all(|k| k["KeyVersion"] != 3 || k["DataKeys"] == 0),
        "nothing re-wrapped: {listed}"
    );
    daemon.signal(libc::SIGCONT);
    // Once it runs again it answers the pending request, and the rewrap goes through.
    env.ok(&["key", "rewrap"]);
    let (s, b) = api.get_secret_value("demo/db", None);
    assert_eq!(s, 200, "{b}");
    let log = daemon.stop();
    assert!(!log.contains("hunter2"), "a value reached the log");
}
