//! kill -9 at every step boundary of a rotation, then restart: the rotation completes with the same
//! pending value, ACSCurrent authenticates against the target, and nothing stored is lost.
//!
//! The target is the exec backend's file-backed fake (`fake-target.py`): it accepts exactly the password
//! in its state file, so "ACSCurrent authenticates" is a real comparison. `ROTD_FAILPOINT` parks the
//! rotation at one boundary so the kill lands exactly there.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rotd_e2e::{Daemon, Env, repo_root, wait_for};

const NAME: &str = "crash/target";
const INITIAL: &str = "initial-password-0123456789";

fn setup() -> Env {
    let env = Env::new();
    // Port 0: the kernel picks free ports, so parallel tests never collide.
    env.write(
        "rotd.toml",
        "data_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n[rotation]\nstep_timeout = \"20s\"\nbackoff = \"1s\"\n",
    );
    let state = env.path("target-state");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(state.join("current"), INITIAL).expect("seed target");
    env.write("initial.pw", INITIAL);
    std::fs::set_permissions(env.path("initial.pw"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let script = repo_root().join("crates/rotd-backend-exec/tests/fixtures/fake-target.py");
    env.write(
        "secrets.d/target.toml",
        &format!(
            "name = \"{NAME}\"\ntype = \"Generic\"\n[generic]\ninitial_value = {{ file = \"{}\" }}\n[exec]\ncommand = [\"{}\", \"{}\"]\ntimeout = \"20s\"\n",
            env.path("initial.pw").display(),
            script.display(),
            state.display()
        ),
    );
    env
}

fn target_password(env: &Env) -> String {
    std::fs::read_to_string(env.path("target-state/current")).expect("target state")
}

fn last_step(env: &Env) -> String {
    let h = env.json(&["rotation", "history", NAME]);
    h.as_array()
        .and_then(|a| a.iter().rev().find(|e| e["step"] != "failed"))
        .map(|e| e["step"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

fn crash_at(boundary: &str) {
    let env = setup();
    let d = Daemon::start(&env, "first.log", &[("ROTD_FAILPOINT", boundary)]);
    wait_for("the declared secret", Duration::from_secs(30), || {
        env.run(&["secret", "describe", NAME]).code == 0
    });
    assert_eq!(env.ok(&["secret", "get", NAME, "--reveal"]), INITIAL);
    // Wait for the heartbeat so `rotate` accepts the request.
    wait_for("the daemon's heartbeat", Duration::from_secs(20), || {
        env.run(&["rotate", NAME, "--no-wait"]).code == 0
    });
    wait_for(
        &format!("the failpoint {boundary}"),
        Duration::from_secs(30),
        || d.log_text().contains("Failpoint reached"),
    );
    d.kill9();

    let versions_before: Vec<String> = env
        .json(&["secret", "versions", NAME])
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["VersionId"].as_str().expect("id").to_owned())
        .collect();

    let d = Daemon::start(&env, "second.log", &[]);
    wait_for("recovery to promote", Duration::from_secs(60), || {
        last_step(&env) == "promoted"
    });
    let current = env.json(&["secret", "get", NAME, "--reveal"]);
    let value = current["SecretData"].as_str().expect("value").to_owned();
    assert_ne!(value, INITIAL, "{boundary}: the rotation completed");
    assert_eq!(
        value,
        target_password(&env),
        "{boundary}: ACSCurrent authenticates against the target"
    );
    let prev = env.json(&["secret", "get", NAME, "--stage", "ACSPrevious", "--reveal"]);
    assert_eq!(
        prev["SecretData"], INITIAL,
        "{boundary}: the previous value is kept"
    );
    let versions = env.json(&["secret", "versions", NAME]);
    let versions = versions.as_array().expect("versions");
    assert_eq!(
        versions.len(),
        2,
        "{boundary}: exactly one new version: {versions:?}"
    );
    assert!(
        versions.iter().all(|v| !v["VersionStages"]
            .as_array()
            .expect("stages")
            .iter()
            .any(|s| s == "ACSPending")),
        "{boundary}: no ACSPending left"
    );
    for v in &versions_before {
        assert!(
            versions.iter().any(|x| x["VersionId"] == v.as_str()),
            "{boundary}: version {v} was lost"
        );
    }
    // Rolled forward with the same pending version (if one existed before the crash).
    if versions_before.len() == 2 {
        assert_eq!(
            versions_before.iter().collect::<std::collections::BTreeSet<_>>(),
            versions
                .iter()
                .map(|v| v["VersionId"].as_str().expect("id").to_owned())
                .collect::<Vec<_>>()
                .iter()
                .collect()
        );
    }
    let log = d.stop();
    if boundary != "promoted" {
        assert!(
            log.contains("Resuming an unfinished rotation"),
            "{boundary}: {log}"
        );
    }
    assert!(
        !log.contains(&value) && !log.contains(INITIAL),
        "{boundary}: a secret value reached the log"
    );
}

#[test]
fn kill_after_pending_is_journaled() {
    crash_at("pending");
}

#[test]
fn kill_after_the_pending_value_is_stored() {
    crash_at("stored");
}

#[test]
fn kill_after_apply() {
    crash_at("applied");
}

#[test]
fn kill_after_verify() {
    crash_at("verified");
}

#[test]
fn kill_inside_promotion_after_the_store_transaction() {
    crash_at("promoted-store");
}

#[test]
fn kill_after_promotion() {
    crash_at("promoted");
}
