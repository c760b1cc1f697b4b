//! The daemon rotates on schedule, operators can rotate now, pause and resume, and Prometheus sees it.

use std::time::Duration;

use rotd_e2e::{Daemon, Env, free_port, http_get, wait_for};

fn setup(interval: &str) -> (Env, u16) {
    let env = Env::new();
    let admin = free_port();
    env.write(
        "rotd.toml",
        &format!("data_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[api]\nlisten = \"127.0.0.1:{}\"\n", free_port()),
    );
    env.write(
        "secrets.d/token.toml",
        &format!("name = \"app/token\"\ntype = \"Generic\"\n[rotation]\ninterval = \"{interval}\"\n[generic.generate]\nlength = 24\n"),
    );
    (env, admin)
}

#[test]
fn a_generic_secret_rotates_on_schedule_and_metrics_show_it() {
    let (env, admin) = setup("1m");
    let d = Daemon::start(&env, "serve.log", &[]);
    wait_for("the secret", Duration::from_secs(30), || {
        env.run(&["secret", "describe", "app/token"]).code == 0
    });
    let first = env.ok(&["secret", "get", "app/token", "--reveal"]);
    let meta = env.json(&["secret", "describe", "app/token"]);
    assert_eq!(meta["RotationInterval"], "60s");
    assert!(meta["NextRotationDate"].is_string(), "{meta}");

    let (status, _) = http_get(admin, "/healthz");
    assert_eq!(status, 200);
    let (status, _) = http_get(admin, "/readyz");
    assert_eq!(status, 200);

    // Created now, due a minute later: wait for the scheduled rotation (no operator action).
    wait_for("the scheduled rotation", Duration::from_secs(100), || {
        env.run(&["secret", "get", "app/token", "--reveal"]).stdout != first
    });
    let prev = env.json(&["secret", "get", "app/token", "--stage", "ACSPrevious", "--reveal"]);
    assert_eq!(prev["SecretData"], first.as_str());
    let meta = env.json(&["secret", "describe", "app/token"]);
    assert!(meta["LastRotationDate"].is_string(), "{meta}");

    let (status, body) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("application/openmetrics-text"), "{body}");
    assert!(
        body.contains("rotd_rotations_total{kind=\"Generic\",result=\"success\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("rotd_last_success_timestamp_seconds{secret=\"app/token\"}"),
        "{body}"
    );
    assert!(
        body.contains("rotd_next_due_timestamp_seconds{secret=\"app/token\"}"),
        "{body}"
    );
    assert!(
        body.contains("rotd_rotation_failures_consecutive{secret=\"app/token\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("rotd_quarantined{secret=\"app/token\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("rotd_rotation_duration_seconds_count{kind=\"Generic\"} 1"),
        "{body}"
    );
    assert!(body.contains("rotd_build_info{version="), "{body}");
    assert!(body.contains("rotd_rotations_in_progress 0"), "{body}");
    // The API registered its own series into the daemon's one registry.
    assert!(body.contains("rotd_api_connections_open 0"), "{body}");
    // (Label families with no series yet, like rotd_api_requests_total, are not rendered.)
    assert!(
        body.contains("# TYPE rotd_api_request_duration_seconds histogram"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE rotd_api_audit_write_seconds histogram"),
        "{body}"
    );
    assert!(!body.contains(&first), "no secret in metrics");
    let log = d.stop();
    assert!(log.contains("Rotation promoted"), "{log}");
    assert!(!log.contains(&first), "no secret in the log");
}

#[test]
fn operators_rotate_now_pause_and_resume() {
    let (env, _) = setup("30d");
    let r = env.run(&["status"]);
    assert_eq!(r.code, 64, "before init: {}", r.stderr);
    let d = Daemon::start(&env, "serve.log", &[]);
    wait_for("the secret", Duration::from_secs(30), || {
        env.run(&["secret", "describe", "app/token"]).code == 0
    });
    let before = env.ok(&["secret", "get", "app/token", "--reveal"]);

    let mut rotated = None;
    wait_for("a manual rotation", Duration::from_secs(30), || {
        let r = env.run(&["rotate", "app/token", "--version-id", "manual-1"]);
        if r.code == 0 {
            rotated = Some(r);
            true
        } else {
            assert!(r.stderr.contains("not running"), "{}", r.stderr);
            false
        }
    });
    let r = rotated.expect("rotated");
    assert!(r.stdout.contains("ok: version manual-1"), "{}", r.stdout);
    for step in ["pending", "applied", "verified", "promoted"] {
        assert!(r.stderr.contains(step), "progress shows {step}: {}", r.stderr);
    }
    let now = env.json(&["secret", "get", "app/token", "--reveal"]);
    assert_eq!(now["VersionId"], "manual-1");
    assert_ne!(now["SecretData"], before.as_str());
    // The same version id again: idempotent, nothing rotates.
    let again = env.ok(&["rotate", "app/token", "--version-id", "manual-1"]);
    assert!(again.contains("ok: version manual-1"), "{again}");
    assert_eq!(
        env.json(&["secret", "versions", "app/token"])
            .as_array()
            .expect("versions")
            .len(),
        2
    );

    env.ok(&["rotation", "pause", "app/token"]);
    let status = env.json(&["status"]);
    assert_eq!(status[0]["State"], "paused", "{status}");
    env.ok(&["rotation", "resume", "app/token"]);
    let status = env.json(&["status"]);
    assert_eq!(status[0]["State"], "scheduled", "{status}");
    assert!(env.ok(&["status"]).contains("app/token"));

    let history = env.json(&["rotation", "history", "app/token"]);
    assert_eq!(
        history
            .as_array()
            .expect("history")
            .iter()
            .filter(|e| e["step"] == "promoted")
            .count(),
        1
    );

    // The hourly limit: 48 more requests fit (50 in all), the next is refused.
    for _ in 0..48 {
        env.ok(&["rotate", "app/token", "--no-wait"]);
    }
    let r = env.run(&["rotate", "app/token", "--no-wait"]);
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(r.stderr.contains("the limit"), "{}", r.stderr);
    let r = env.run(&["rotate", "missing/secret"]);
    assert_eq!(r.code, 66, "{}", r.stderr);
    d.stop();
}

#[test]
fn plan_checks_backends_and_changes_nothing() {
    let (env, _) = setup("1h");
    env.write(
        "secrets.d/db.toml",
        "name = \"app/db\"\ntype = \"Rds\"\n[rds]\nengine = \"mysql\"\nmode = \"dual\"\nhost = \"127.0.0.1\"\nadmin = { file = \"/nonexistent\" }\nadmin_user = \"root\"\n[rds.account]\ncreate = { prefix = \"app\", databases = [\"app\"], privilege = \"ReadWrite\" }\n",
    );
    let out = env.run(&["plan"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("app/token"), "{}", out.stdout);
    assert!(
        out.stdout.contains("generate a new 24-character value"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("not rotated"), "{}", out.stdout);
    assert!(!env.path("data").exists(), "plan created nothing");
}

#[test]
fn post_rotation_hooks_run_with_name_and_version_but_never_the_value() {
    let (env, _) = setup("30d");
    let out = env.path("hook.out");
    let envdump = env.path("hook.env");
    env.write(
        "secrets.d/token.toml",
        &format!(
            "name = \"app/token\"\ntype = \"Generic\"\n[rotation]\ninterval = \"30d\"\n\
             [[hooks]]\ncommand = [\"/bin/sh\", \"-c\", \"echo \\\"$ROTD_SECRET_NAME $ROTD_VERSION_ID\\\" >> {}; env > {}; cat /proc/$$/cmdline >> {}\"]\ntimeout = \"5s\"\n\
             [[hooks]]\ncommand = [\"/bin/sleep\", \"30\"]\ntimeout = \"1s\"\n",
            out.display(),
            envdump.display(),
            envdump.display()
        ),
    );
    let d = Daemon::start(&env, "serve.log", &[]);
    wait_for("a manual rotation", Duration::from_secs(40), || {
        env.run(&["rotate", "app/token", "--version-id", "hooked"]).code == 0
    });
    wait_for("the hook's output", Duration::from_secs(10), || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("app/token hooked"))
    });
    let value = env.json(&["secret", "get", "app/token", "--reveal"])["SecretData"]
        .as_str()
        .expect("value")
        .to_owned();
    let dumped = std::fs::read_to_string(&envdump).expect("env dump");
    assert!(!dumped.contains(&value), "the hook saw the secret value");
    wait_for("the hanging hook to be killed", Duration::from_secs(10), || {
        d.log_text().contains("Post-rotation hook timed out")
    });
    let log = d.stop();
    assert!(log.contains("Post-rotation hook succeeded"), "{log}");
}
