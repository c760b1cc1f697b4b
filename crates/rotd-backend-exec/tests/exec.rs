//! The exec backend against real plug-ins: shell scripts written into a temporary directory, and the
//! file-backed fake target in `tests/fixtures/fake-target.py`. What every backend must do is the shared
//! conformance suite's job (`tests/conformance.rs`); this file holds what only the exec backend has: the
//! protocol, timeouts and process-group kills, output bounds and scrubbing, and the fake target's switches.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rotd_backend_exec::{ExecBackend, ExecConfig, REDACTED, testing::fake_target_script};
use rotd_core::{Backend, BackendError, Capabilities, ErrorClass, Secret, Slot};
use tempfile::TempDir;

const NAME: &str = "app/token";
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Writes an executable `#!/bin/sh` plug-in into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    path
}

fn backend_with(command: Vec<String>, timeout: Duration) -> ExecBackend {
    ExecBackend::new(ExecConfig {
        secret_name: NAME.to_owned(),
        command,
        timeout,
    })
    .expect("valid config")
}

/// A single-account backend running `program` with the temp dir as its one fixed argument.
fn backend(program: &Path, dir: &Path) -> ExecBackend {
    backend_with(vec![path_str(program), path_str(dir)], CALL_TIMEOUT)
}

fn fake_target(state: &Path) -> ExecBackend {
    backend_with(
        vec![path_str(&fake_target_script()), path_str(state)],
        CALL_TIMEOUT,
    )
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path).expect("read file")
}

fn expect_err(result: Result<(), BackendError>) -> BackendError {
    match result {
        Ok(()) => panic!("the call succeeded but should have failed"),
        Err(e) => e,
    }
}

/// Whether `pid` no longer runs: gone, a zombie (its parent was killed and nobody reaped it yet), or
/// reused by a process that is not `comm`.
fn is_dead(pid: u32, comm: &str) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let Some((head, tail)) = stat.rsplit_once(')') else {
        return true;
    };
    let name = head.split_once('(').map_or("", |(_, n)| n);
    let state = tail.trim_start().chars().next().unwrap_or('?');
    name != comm || state == 'Z' || state == 'X'
}

fn wait_dead(pid: u32, comm: &str) -> bool {
    let deadline = rotd_core::Clock::system().instant() + Duration::from_secs(10);
    while rotd_core::Clock::system().instant() < deadline {
        if is_dead(pid, comm) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn read_pid(path: impl AsRef<Path>) -> u32 {
    read(path).trim().parse().expect("pid file holds a pid")
}

// ---- the fake target --------------------------------------------------------------------------------------

#[tokio::test]
async fn a_slot_the_shape_lacks_is_refused_before_the_plugin_runs() {
    let state = TempDir::new().expect("tempdir");
    let b = fake_target(state.path());
    assert_eq!(b.capabilities(), Capabilities::default(), "one account");
    // An exec secret has no primary/clone slot: the engine asking for one is a bug, refused before the
    // plug-in runs.
    let a = Secret::from("primary-pw");
    for slot in [Slot::Primary, Slot::Clone] {
        let e = expect_err(b.apply(slot, &a).await);
        assert_eq!(e.class, ErrorClass::Permanent, "{e}");
        let e = expect_err(b.verify(slot, &a).await);
        assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    }
    assert!(
        !state.path().join("calls.log").exists(),
        "the plug-in ran for a slot its secret does not have"
    );
}

#[tokio::test]
async fn fail_next_switch_injects_retryable_then_permanent_failures() {
    let state = TempDir::new().expect("tempdir");
    let b = fake_target(state.path());
    let new = Secret::from("after-faults");
    fs::write(state.path().join("fail-next"), "2\n").expect("switch");
    for _ in 0..2 {
        let e = expect_err(b.apply(Slot::Single, &new).await);
        assert_eq!(e.class, ErrorClass::Retryable, "{e}");
        assert!(e.message.contains("injected failure"), "{e}");
    }
    b.apply(Slot::Single, &new).await.expect("third apply");
    b.verify(Slot::Single, &new).await.expect("verify");

    fs::write(state.path().join("fail-next"), "1 permanent\n").expect("switch");
    let e = expect_err(b.check().await);
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    b.check().await.expect("check after the fault");
}

#[tokio::test]
async fn check_fails_permanently_without_the_state_directory() {
    let state = TempDir::new().expect("tempdir");
    let b = fake_target(&state.path().join("missing"));
    let e = expect_err(b.check().await);
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(e.message.contains("does not exist"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_switch_times_out_and_kills_the_fake_targets_children() {
    let state = TempDir::new().expect("tempdir");
    fs::write(state.path().join("hang"), "").expect("switch");
    let b = backend_with(
        vec![path_str(&fake_target_script()), path_str(state.path())],
        Duration::from_secs(2),
    );
    let e = expect_err(b.apply(Slot::Single, &Secret::from("v")).await);
    assert_eq!(e.class, ErrorClass::Retryable, "{e}");
    assert!(e.message.contains("timed out after 2s"), "{e}");
    let leader = read_pid(state.path().join("hang.pid"));
    let child = read_pid(state.path().join("hang-child.pid"));
    assert!(
        wait_dead(child, "sleep"),
        "the fake target's sleep child {child} survived the timeout"
    );
    assert!(
        wait_dead(leader, "python3"),
        "the fake target {leader} survived the timeout"
    );
}

// ---- process handling -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_plugin_and_its_children() {
    let dir = TempDir::new().expect("tempdir");
    let plugin = script(
        dir.path(),
        "hang.sh",
        "sleep 1000 &\necho $! > \"$1/child.pid\"\necho $$ > \"$1/leader.pid\"\nwait\n",
    );
    let b = backend_with(
        vec![path_str(&plugin), path_str(dir.path())],
        Duration::from_secs(1),
    );
    let started = rotd_core::Clock::system().instant();
    let e = expect_err(b.apply(Slot::Single, &Secret::from("v")).await);
    assert!(
        rotd_core::Clock::system().elapsed(started) < Duration::from_secs(10),
        "the call outlived its timeout by far"
    );
    assert_eq!(e.class, ErrorClass::Retryable, "{e}");
    assert!(e.message.contains("timed out after 1s"), "{e}");
    assert!(e.message.contains("apply"), "{e}");
    let child = read_pid(dir.path().join("child.pid"));
    let leader = read_pid(dir.path().join("leader.pid"));
    assert!(
        wait_dead(child, "sleep"),
        "sleep 1000 (pid {child}) survived the timeout"
    );
    assert!(
        wait_dead(leader, "hang.sh"),
        "the plug-in (pid {leader}) survived the timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_call_kills_the_plugin_and_its_children() {
    let dir = TempDir::new().expect("tempdir");
    let plugin = script(
        dir.path(),
        "slow.sh",
        "sleep 1000 &\necho $! > \"$1/child.pid\"\necho $$ > \"$1/leader.pid\"\nwait\n",
    );
    let b = backend_with(vec![path_str(&plugin), path_str(dir.path())], CALL_TIMEOUT);
    // The engine drops a call's future when a rotation is cancelled or rotd shuts down.
    let value = Secret::from("v");
    let abandoned = tokio::time::timeout(Duration::from_secs(1), b.apply(Slot::Single, &value)).await;
    assert!(abandoned.is_err(), "the plug-in should still have been running");
    let child = read_pid(dir.path().join("child.pid"));
    let leader = read_pid(dir.path().join("leader.pid"));
    assert!(
        wait_dead(child, "sleep"),
        "sleep 1000 (pid {child}) survived the abandoned call"
    );
    assert!(
        wait_dead(leader, "slow.sh"),
        "the plug-in (pid {leader}) survived the abandoned call"
    );
}

#[tokio::test]
async fn the_secret_never_appears_in_argv_or_environment() {
    let dir = TempDir::new().expect("tempdir");
    let plugin = script(
        dir.path(),
        "spy.sh",
        "tr '\\0' '\\n' < /proc/$$/cmdline > \"$1/cmdline\"\n\
         tr '\\0' '\\n' < /proc/$$/environ > \"$1/environ\"\n\
         cat > \"$1/stdin\"\n",
    );
    let b = backend(&plugin, dir.path());
    let value = "Zq9-very-secret-value";
    b.apply(Slot::Single, &Secret::from(value)).await.expect("apply");

    let cmdline = read(dir.path().join("cmdline"));
    let environ = read(dir.path().join("environ"));
    assert!(!cmdline.contains(value) && !environ.contains(value));
    assert_eq!(
        cmdline.lines().collect::<Vec<_>>(),
        ["/bin/sh", &path_str(&plugin), &path_str(dir.path())]
    );
    let mut env: Vec<&str> = environ.lines().collect();
    env.sort_unstable();
    assert_eq!(
        env,
        [
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "ROTD_ACTION=apply",
            "ROTD_SECRET_NAME=app/token"
        ]
    );

    // The value does reach the plug-in, on stdin, as one JSON line.
    let stdin = read(dir.path().join("stdin"));
    assert!(stdin.ends_with('\n') && stdin.lines().count() == 1, "{stdin:?}");
    let request: serde_json::Value = serde_json::from_str(&stdin).expect("json request");
    assert_eq!(
        request,
        serde_json::json!({"version": 1, "action": "apply", "secret_name": NAME, "slot": "single", "value": value})
    );
}

#[tokio::test]
async fn check_runs_without_a_value() {
    let dir = TempDir::new().expect("tempdir");
    let plugin = script(
        dir.path(),
        "check.sh",
        "cat > \"$1/stdin\"\necho \"$ROTD_ACTION\" > \"$1/action\"\n",
    );
    backend(&plugin, dir.path()).check().await.expect("check");
    let request: serde_json::Value = serde_json::from_str(&read(dir.path().join("stdin"))).expect("json");
    assert_eq!(
        request,
        serde_json::json!({"version": 1, "action": "check", "secret_name": NAME})
    );
    assert_eq!(read(dir.path().join("action")), "check\n");
}

#[tokio::test]
async fn the_secret_never_appears_in_an_error() {
    let dir = TempDir::new().expect("tempdir");
    // The value needs JSON escaping, so the raw text, serde_json's escaping and Python's ASCII escaping all
    // differ; the plug-in prints all three to stderr and fails.
    let value = "s3cr\"et\\vålue";
    let plugin = script(
        dir.path(),
        "leak.sh",
        "exec python3 -c '\n\
import json, sys\n\
line = sys.stdin.buffer.readline().decode()\n\
value = json.loads(line)[\"value\"]\n\
sys.stderr.write(\"request: \" + line)\n\
sys.stderr.write(\"raw: \" + value + \"\\n\")\n\
sys.stderr.write(\"ascii: \" + json.dumps(value) + \"\\n\")\n\
sys.exit(1)\n\
'\n",
    );
    for (action, result) in [
        (
            "apply",
            backend(&plugin, dir.path())
                .apply(Slot::Single, &Secret::from(value))
                .await,
        ),
        (
            "retire",
            backend(&plugin, dir.path())
                .retire(Slot::Single, &Secret::from(value), 1)
                .await,
        ),
    ] {
        let e = expect_err(result);
        let shown = e.to_string();
        assert_eq!(e.class, ErrorClass::Retryable, "{shown}");
        assert!(shown.contains(action), "{shown}");
        assert!(shown.contains(REDACTED), "{shown}");
        assert!(shown.contains("raw: **REDACTED**"), "{shown}");
        assert!(shown.contains("ascii: \"**REDACTED**\""), "{shown}");
        assert!(shown.contains("\"value\":\"**REDACTED**\""), "{shown}");
        for fragment in ["s3cr", "vålue", "v\\u00e5lue"] {
            assert!(!shown.contains(fragment), "{fragment:?} leaked: {shown}");
        }
    }

    // The plug-in's own error text is redacted too.
    let plugin = script(
        dir.path(),
        "leak-json.sh",
        "echo '{\"ok\":false,\"error\":\"rejected hunter2-xyz for app\",\"retryable\":false}'\nexit 1\n",
    );
    let e = expect_err(
        backend(&plugin, dir.path())
            .verify(Slot::Single, &Secret::from("hunter2-xyz"))
            .await,
    );
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(e.message.ends_with("rejected **REDACTED** for app"), "{e}");
}

#[tokio::test]
async fn exit_codes_classify_failures() {
    let dir = TempDir::new().expect("tempdir");
    let v = Secret::from("pw-0123456789");
    let cases: [(&str, &str, ErrorClass, &str); 6] = [
        (
            "sysexits.sh",
            "echo 'bad config' >&2\nexit 65\n",
            ErrorClass::Permanent,
            "exited with code 65: bad config",
        ),
        (
            "one.sh",
            "echo 'connection refused' >&2\nexit 1\n",
            ErrorClass::Retryable,
            "exited with code 1: connection refused",
        ),
        (
            "tempfail.sh",
            "exit 75\n",
            ErrorClass::Permanent,
            "exited with code 75: no output on stderr",
        ),
        (
            "json-permanent.sh",
            "echo '{\"ok\":false,\"error\":\"no such user\",\"retryable\":false}'\nexit 1\n",
            ErrorClass::Permanent,
            "exited with code 1: no such user",
        ),
        (
            "json-retryable.sh",
            "echo '{\"ok\":false,\"error\":\"busy\",\"retryable\":true}'\nexit 2\n",
            ErrorClass::Retryable,
            "exited with code 2: busy",
        ),
        (
            "exit0-fail.sh",
            "echo '{\"ok\":false,\"error\":\"busy\"}'\n",
            ErrorClass::Retryable,
            "exited with code 0 and reported: busy",
        ),
    ];
    for (name, body, class, text) in cases {
        let e = expect_err(
            backend(&script(dir.path(), name, body), dir.path())
                .apply(Slot::Single, &v)
                .await,
        );
        assert_eq!(e.class, class, "{name}: {e}");
        assert_eq!(e.operation, "apply", "{name}");
        assert!(e.message.starts_with("apply failed: plug-in /"), "{name}: {e}");
        assert!(e.message.ends_with(text), "{name}: {e}");
    }

    // A non-zero exit is a failure even when stdout claims success.
    let e = expect_err(
        backend(
            &script(dir.path(), "liar.sh", "echo '{\"ok\":true}'\nexit 1\n"),
            dir.path(),
        )
        .check()
        .await,
    );
    assert_eq!(e.class, ErrorClass::Retryable, "{e}");

    let e = expect_err(
        backend(&script(dir.path(), "signal.sh", "kill -9 $$\n"), dir.path())
            .check()
            .await,
    );
    assert_eq!(e.class, ErrorClass::Retryable, "{e}");
    assert!(e.message.contains("killed by signal 9"), "{e}");
}

#[tokio::test]
async fn exit_zero_answers() {
    let dir = TempDir::new().expect("tempdir");
    let ok = [
        ("silent.sh", "exit 0\n"),
        ("blank.sh", "echo\necho '   '\n"),
        ("ok.sh", "echo '{\"ok\":true}'\n"),
        (
            "ok-extra.sh",
            "echo '{\"ok\":true,\"note\":\"fields from later versions are ignored\"}'\n",
        ),
        ("chatty.sh", "echo 'rows: 1'\necho '{\"ok\":true}'\necho\n"),
    ];
    for (name, body) in ok {
        backend(&script(dir.path(), name, body), dir.path())
            .check()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let broken = [
        ("garbage.sh", "echo 'all good'\n"),
        ("not-object.sh", "echo 1\n"),
        ("bad-ok.sh", "echo '{\"ok\":\"sure\"}'\n"),
    ];
    for (name, body) in broken {
        let e = expect_err(backend(&script(dir.path(), name, body), dir.path()).check().await);
        assert_eq!(e.class, ErrorClass::Permanent, "{name}: {e}");
        assert!(e.message.contains("broke the protocol"), "{name}: {e}");
    }
}

#[tokio::test]
async fn a_protocol_error_does_not_quote_stdout() {
    let dir = TempDir::new().expect("tempdir");
    // serde_json's own message would quote the string; the backend keeps only the error's position.
    let plugin = script(dir.path(), "echo-ok.sh", "echo '{\"ok\":\"pw-in-stdout\"}'\n");
    let e = expect_err(
        backend(&plugin, dir.path())
            .apply(Slot::Single, &Secret::from("pw-in-stdout"))
            .await,
    );
    assert!(!e.message.contains("pw-in-stdout"), "{e}");
}

#[tokio::test]
async fn missing_or_unrunnable_programs_fail_permanently() {
    let dir = TempDir::new().expect("tempdir");
    let missing = dir.path().join("no-such-plugin");
    let e = expect_err(backend(&missing, dir.path()).check().await);
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(e.message.contains(&path_str(&missing)), "{e}");
    assert!(e.message.contains("no such file"), "{e}");

    let not_executable = script(dir.path(), "plain.sh", "exit 0\n");
    fs::set_permissions(&not_executable, fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = expect_err(backend(&not_executable, dir.path()).check().await);
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(e.message.contains(&path_str(&not_executable)), "{e}");
    assert!(e.message.contains("permission denied"), "{e}");

    let bad_interpreter = dir.path().join("bad-interpreter.sh");
    fs::write(&bad_interpreter, "#!/nonexistent/interpreter\n").expect("write");
    fs::set_permissions(&bad_interpreter, fs::Permissions::from_mode(0o755)).expect("chmod");
    let e = expect_err(backend(&bad_interpreter, dir.path()).check().await);
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
}

#[test]
fn invalid_configurations_are_rejected() {
    let cfg = |command: Vec<&str>, timeout: Duration| ExecConfig {
        secret_name: NAME.to_owned(),
        command: command.into_iter().map(str::to_owned).collect(),
        timeout,
    };
    let second = Duration::from_secs(1);
    for bad in [
        cfg(vec![], second),
        cfg(vec!["fake-target.py"], second),
        cfg(vec!["./fake-target.py"], second),
        cfg(vec!["/bin/true", "a\0b"], second),
        cfg(vec!["/bin/true"], Duration::ZERO),
        ExecConfig {
            secret_name: String::new(),
            ..cfg(vec!["/bin/true"], second)
        },
    ] {
        let Err(e) = ExecBackend::new(bad.clone()) else {
            panic!("{bad:?} must be rejected");
        };
        assert_eq!(e.class, ErrorClass::Permanent);
    }
    let e = ExecBackend::new(cfg(vec!["relative/plugin"], second)).expect_err("relative");
    assert!(e.message.contains("not absolute"), "{e}");
    assert!(e.message.contains("relative/plugin"), "{e}");

    let b = ExecBackend::new(cfg(vec!["/bin/true"], second)).expect("valid");
    assert_eq!(b.kind(), "exec");
    assert_eq!(b.capabilities(), Capabilities::default());
    let password = Secret::from("generated-pw");
    assert_eq!(b.compose(Slot::Single, &password).expect("compose"), password);
}

#[tokio::test]
async fn a_non_utf8_value_fails_before_the_plugin_runs() {
    let dir = TempDir::new().expect("tempdir");
    let plugin = script(dir.path(), "marker.sh", "touch \"$1/ran\"\n");
    let e = expect_err(
        backend(&plugin, dir.path())
            .apply(Slot::Single, &Secret::new(vec![0xff, 0xfe, b'a']))
            .await,
    );
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(e.message.contains("not UTF-8"), "{e}");
    assert!(!dir.path().join("ran").exists());
}

#[tokio::test]
async fn output_is_bounded() {
    let dir = TempDir::new().expect("tempdir");
    // 8 MiB on each stream: the backend must drain it without keeping it, and quote only a short excerpt.
    let plugin = script(
        dir.path(),
        "flood.sh",
        "head -c 8388608 /dev/zero | tr '\\0' o\nhead -c 8388608 /dev/zero | tr '\\0' e >&2\necho ' the end' >&2\nexit 1\n",
    );
    let e = expect_err(
        backend(&plugin, dir.path())
            .apply(Slot::Single, &Secret::from("v"))
            .await,
    );
    assert_eq!(e.class, ErrorClass::Retryable, "{e}");
    assert!(e.message.ends_with("eee the end"), "{e}");
    assert!(e.message.len() < 1024, "the message is {} bytes", e.message.len());

    // A plug-in that exits 0 after flooding stdout has no readable response.
    let plugin = script(
        dir.path(),
        "flood-ok.sh",
        "head -c 1048576 /dev/zero | tr '\\0' o\necho '{\"ok\":true}'\n",
    );
    let e = expect_err(backend(&plugin, dir.path()).check().await);
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert!(e.message.contains("exceeded 64 KiB"), "{e}");
}

#[tokio::test]
async fn a_plugin_that_ignores_stdin_does_not_block() {
    let dir = TempDir::new().expect("tempdir");
    // Larger than a pipe buffer, so writing it would block forever if the backend waited for the write.
    let big = Secret::from("x".repeat(256 * 1024));
    let quits = script(dir.path(), "quits.sh", "exit 0\n");
    backend(&quits, dir.path())
        .apply(Slot::Single, &big)
        .await
        .expect("apply");
    let lingers = script(dir.path(), "lingers.sh", "sleep 0.2\necho '{\"ok\":true}'\n");
    backend(&lingers, dir.path())
        .apply(Slot::Single, &big)
        .await
        .expect("apply");
}
