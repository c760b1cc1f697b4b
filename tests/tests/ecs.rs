//! ECS secrets end to end, as a new user declares them: the example files
//! `config/examples/secrets.d/ecs-password.toml` and `ecs-sshkey.toml` with only what differs on this
//! machine substituted (host, port, pinned host key, user, admin user, admin key file; the key example's
//! admin stays the systemd credential it names, handed over in `$CREDENTIALS_DIRECTORY`), on private real
//! sshds, with `rotd serve` as the only thing that changes a credential. Where a test needs more than one
//! secret from one example, or a variant the example mentions (`key_type`, `grace`, `initial_value`, an
//! admin that is another rotd secret), it changes that key and says so. Values are read as applications
//! read them (GetSecretValue over the HTTPS API) and tried with the system OpenSSH client, which checks
//! the host key strictly.
//!
//! - Password: the daemon sets the first password at start, each `rotd rotate` a new one; the old one
//!   stops working, and the new one never appears in a command line, an environment, rotd's log or sshd's.
//! - Key pair: the first key at start; a rotation adds a key and keeps the previous one until the next
//!   rotation (or for the file's `grace`); every line rotd did not write stays byte for byte; rotd creates
//!   `~/.ssh` and the file for a user who has none (the user's, 0700 and 0600).
//! - `initial_value` is the first version (`v1`), with no rotation at start; a wrong password is named by
//!   `rotd plan` and repaired by a rotation; an imported key is never removed by rotd.
//! - A changed host key stops rotd before it authenticates; status and metrics say why.
//! - One host down holds back only its own secret.
//! - `kill -9` at every step boundary of a key rotation leaves a key that logs in and no open rotation.
//! - An admin key that is itself a rotd secret and rotates: the secrets that log in with it keep working.
//! - Replaying a rotation request whose version already exists (an idempotent `rotd rotate --version-id`
//!   retry, or the daemon's replay after a kill right after promotion) changes nothing, not even the
//!   retire step the previous key is owed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rotd_e2e::{Api, Daemon, Env, http_get, repo_root, wait_for};
use rotd_testkit::fixtures::sshd::{Sshd, SshdOptions, SudoMode, TestUser};
use rotd_testkit::proc_sampler::ProcSampler;

/// The secret names the example files declare.
const PASSWORD_NAME: &str = "ops/bastion-deploy-password";
const KEY_NAME: &str = "ops/batch-runner-key";
/// The systemd credential the key example's `admin` names; the tests hand it over as systemd would, in
/// `$CREDENTIALS_DIRECTORY`.
const KEY_EXAMPLE_CREDENTIAL: &str = "batch-runner-admin-key";

// ---------------------------------------------------------------------------------------------
// Hosts, keys and files.

/// An Ed25519 key pair from the system's ssh-keygen: (private key, public key line).
fn keygen(comment: &str) -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("id");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-C", comment, "-f"])
        .arg(&path)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
    (
        std::fs::read_to_string(&path).expect("private key"),
        std::fs::read_to_string(path.with_extension("pub"))
            .expect("public key")
            .trim()
            .to_owned(),
    )
}

/// `ssh-keygen -l` of a public key line: "3072 SHA256:… comment (RSA)".
fn key_summary(public_line: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("key.pub");
    std::fs::write(&path, format!("{public_line}\n")).expect("write public key");
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&path)
        .output()
        .expect("run ssh-keygen -l");
    assert!(out.status.success(), "ssh-keygen -l: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A private sshd with `StrictModes yes` on which root logs in with a key (the management login of
/// most tests), and that key.
struct Host {
    sshd: Sshd,
    root_key: String,
}

impl Host {
    fn start() -> Self {
        let sshd = Sshd::start_with(SshdOptions {
            permit_root_login: true,
            strict_modes: true,
            password_authentication: true,
        });
        let (root_key, root_public) = keygen("rotd-admin");
        sshd.authorize_key("root", &root_public);
        Self { sshd, root_key }
    }
}

/// Writes `contents` to `rel` in the installation, mode 0600 (rotd refuses secret files others can read).
fn private_file(env: &Env, rel: &str, contents: &str) -> PathBuf {
    env.write(rel, contents);
    let path = env.path(rel);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path
}

/// The credentials directory systemd would hand the service, holding the key example's admin key.
fn credentials(env: &Env, admin_key: &str) -> PathBuf {
    let dir = env.path("credentials");
    std::fs::create_dir_all(&dir).expect("credentials dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod 700");
    private_file(env, &format!("credentials/{KEY_EXAMPLE_CREDENTIAL}"), admin_key);
    dir
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

fn uid_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .uid()
}

fn authorized_keys(user: &TestUser) -> PathBuf {
    user.home().join(".ssh/authorized_keys")
}

/// Writes the user's own `~/.ssh/authorized_keys` as the user would have it: `~/.ssh` 0700 and the file
/// with `mode`, both the user's.
fn write_authorized_keys(user: &TestUser, content: &str, mode: u32) {
    let meta = std::fs::metadata(user.home()).expect("home");
    let (uid, gid) = (meta.uid(), meta.gid());
    let dir = user.home().join(".ssh");
    std::fs::create_dir(&dir).expect("mkdir .ssh");
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown .ssh");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod .ssh");
    let file = authorized_keys(user);
    std::fs::write(&file, content).expect("write authorized_keys");
    std::os::unix::fs::chown(&file, Some(uid), Some(gid)).expect("chown authorized_keys");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod authorized_keys");
}

/// The base64 blob of a public key line (what identifies the key whatever its comment).
fn blob(public_line: &str) -> &str {
    public_line.split_whitespace().nth(1).expect("a public key line")
}

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Declaring secrets from the examples.

/// A TOML string.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A reference to a 0600 file: `{ file = "…" }`.
fn file_ref(path: &Path) -> String {
    format!("{{ file = {} }}", q(path.to_str().expect("utf-8 path")))
}

/// What differs on this machine from an example's `[ecs]`: the host, its port and key, the user and the
/// management user.
fn target(sshd: &Sshd, user: &str, admin_user: &str) -> Vec<(&'static str, String)> {
    vec![
        ("host", q(sshd.host())),
        ("port", sshd.port().to_string()),
        ("host_key_sha256", q(sshd.host_key_fingerprint_sha256())),
        ("user", q(user)),
        ("admin_user", q(admin_user)),
    ]
}

/// The example file `example` with each `key = …` line in `subs` replaced (comments and every other
/// line kept as the example has them); keys the example leaves at their default (the key example has no
/// `port`) are added at the end, which is inside `[ecs]`, the example's last table.
fn from_example(example: &str, subs: &[(&str, String)]) -> String {
    let text = std::fs::read_to_string(repo_root().join("config/examples/secrets.d").join(example))
        .expect("read the example");
    let last_table = text.lines().rfind(|l| l.trim_start().starts_with('['));
    assert_eq!(last_table, Some("[ecs]"), "{example}: [ecs] is the last table");
    let mut used = vec![false; subs.len()];
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match subs.iter().position(|(k, _)| *k == key) {
            Some(i) if line.contains('=') => {
                out.push_str(&format!("{key} = {}", subs[i].1));
                used[i] = true;
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    for ((k, v), used) in subs.iter().zip(used) {
        if !used {
            assert!(
                *k != "name",
                "{example}: every example names its secret, so `name` is replaced in place"
            );
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    out
}

/// Writes `secrets.d/<file>` from `example` with `subs`.
fn declare(env: &Env, example: &str, file: &str, subs: &[(&str, String)]) {
    env.write(&format!("secrets.d/{file}"), &from_example(example, subs));
}

/// `rotd check` with the credentials directory (if any) as the service has it; it must pass.
fn check(env: &Env, creds: Option<&Path>) {
    let mut cmd = env.command(&["check"]);
    if let Some(dir) = creds {
        cmd.env("CREDENTIALS_DIRECTORY", dir);
    }
    let out = cmd.output().expect("run rotd check");
    assert!(
        out.status.success(),
        "rotd check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("not checked"),
        "every referenced file and credential is checked"
    );
}

/// An installation whose listeners take free ports and whose retries come quickly; `extra` goes into
/// `[rotation]`.
fn installation(extra: &str) -> Env {
    let env = Env::new();
    env.write(
        "rotd.toml",
        &format!(
            "data_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n\
             [rotation]\nbackoff = \"1s\"\nbackoff_max = \"2s\"\n{extra}"
        ),
    );
    env
}

// ---------------------------------------------------------------------------------------------
// The daemon and its API.

/// A version as GetSecretValue returns it.
#[derive(Clone)]
struct Version {
    id: String,
    value: serde_json::Value,
}

impl Version {
    fn field(&self, name: &str) -> &str {
        self.value[name]
            .as_str()
            .unwrap_or_else(|| panic!("version {}: no string field {name}", self.id))
    }

    /// The value's field names, sorted.
    fn fields(&self) -> Vec<&str> {
        let mut f: Vec<&str> = self
            .value
            .as_object()
            .expect("a JSON object")
            .keys()
            .map(String::as_str)
            .collect();
        f.sort_unstable();
        f
    }
}

/// A running `rotd serve`, its API (signed with the first admin access key, trusting the instance CA)
/// and its admin listener.
struct Served {
    daemon: Daemon,
    admin: u16,
    api: Api,
}

/// Starts `rotd serve` and waits until it listens.
fn serve(env: &Env, log: &str, vars: &[(&str, &str)]) -> Served {
    let daemon = Daemon::start(env, log, vars);
    let mut started = None;
    wait_for("rotd started.", Duration::from_secs(60), || {
        daemon.assert_alive();
        started = daemon
            .log_text()
            .lines()
            .find(|l| l.contains("rotd started."))
            .map(str::to_owned);
        started.is_some()
    });
    let line = started.expect("the start line");
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            .to_owned()
    };
    let api = field("api=");
    let admin = field("admin=")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("admin port");
    let client = Api::new(env, &api);
    Served {
        daemon,
        admin,
        api: client,
    }
}

impl Served {
    /// The version at `stage`, or `None` while the secret has none there (or does not exist yet).
    fn value(&self, name: &str, stage: &str) -> Option<Version> {
        let (status, body) = self.api.get_secret_value(name, Some(stage));
        if status != 200 {
            let code = body["Code"].as_str().unwrap_or_default();
            assert!(
                status == 404 || code.contains("NotFound"),
                "GetSecretValue {name} {stage}: {status} {body}"
            );
            return None;
        }
        assert_eq!(body["SecretType"], "ECS", "{name}: {body}");
        let value = serde_json::from_str(body["SecretData"].as_str().expect("SecretData"))
            .expect("an ECS value is JSON");
        Some(Version {
            id: body["VersionId"].as_str().expect("VersionId").to_owned(),
            value,
        })
    }

    fn current(&self, name: &str) -> Version {
        self.value(name, "ACSCurrent")
            .unwrap_or_else(|| panic!("{name} has no ACSCurrent:\n{}", self.daemon.log_text()))
    }

    /// Waits for the first value (the daemon creates it at start, or the file gives it).
    fn first_value(&self, name: &str) -> Version {
        let mut found = None;
        wait_for(
            &format!("the first value of {name}"),
            Duration::from_secs(60),
            || {
                self.daemon.assert_alive();
                found = self.value(name, "ACSCurrent");
                found.is_some()
            },
        );
        found.expect("found")
    }

    /// Waits until `ACSCurrent` is no longer version `old` and returns it.
    fn next_value(&self, name: &str, old: &str) -> Version {
        let mut found = None;
        wait_for(
            &format!("a new ACSCurrent of {name}"),
            Duration::from_secs(60),
            || {
                self.daemon.assert_alive();
                found = self.value(name, "ACSCurrent").filter(|v| v.id != old);
                found.is_some()
            },
        );
        found.expect("found")
    }

    fn metrics(&self) -> String {
        http_get(self.admin, "/metrics").1
    }
}

/// `rotd rotate NAME`, which waits for the outcome; it must succeed.
fn rotate(env: &Env, served: &Served, name: &str) {
    let r = env.run(&["rotate", name]);
    assert_eq!(
        r.code,
        0,
        "rotd rotate {name}: {}{}\n{}",
        r.stdout,
        r.stderr,
        served.daemon.log_text()
    );
}

/// Queues a rotation without waiting, once the daemon's heartbeat is there.
fn rotate_no_wait(env: &Env, name: &str) {
    wait_for("the daemon's heartbeat", Duration::from_secs(30), || {
        env.run(&["rotate", name, "--no-wait"]).code == 0
    });
}

/// The `rotd status` row of `name`.
fn status_of(env: &Env, name: &str) -> serde_json::Value {
    let all = env.json(&["status"]);
    all.as_array()
        .and_then(|rows| rows.iter().find(|r| r["SecretName"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not in the status: {all}"))
}

/// The journal's steps for `name`, oldest first.
fn steps(env: &Env, name: &str) -> Vec<String> {
    env.json(&["rotation", "history", name])
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["step"].as_str().expect("step").to_owned())
        .collect()
}

/// Whether the system OpenSSH client (strict host key checking) logs in with the value.
fn logs_in(sshd: &Sshd, v: &Version) -> bool {
    let user = v.field("UserName");
    match v.value.get("Password").and_then(|p| p.as_str()) {
        Some(pw) => sshd.ssh_password_login(user, pw),
        None => sshd.ssh_key_login(user, v.field("PrivateKey")),
    }
}

/// The rotd daemon's log and sshd's must not hold `secret`.
fn assert_not_logged(served: &Served, sshd: &Sshd, secret: &str, what: &str) {
    assert!(
        !served.daemon.log_text().contains(secret),
        "{what} reached rotd's log"
    );
    assert!(
        !read_text(sshd.log_path()).contains(secret),
        "{what} reached sshd's log"
    );
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// The password example as the example has it: a management user that is not root, so rotd runs
/// chpasswd through sudo (here a NOPASSWD sudoer logging in with a key file), and no root login at all.
#[test]
fn the_password_example_sets_a_password_at_start_and_each_rotation_replaces_it_without_leaking_it() {
    let sshd = Sshd::start_with(SshdOptions {
        permit_root_login: false,
        strict_modes: true,
        password_authentication: true,
    });
    let user = sshd.create_user("deploy");
    let original = user.password().to_owned();
    assert!(sshd.ssh_password_login(user.name(), &original));
    let admin = sshd.create_sudoer("rotd", SudoMode::NoPassword);
    let (admin_key, admin_public) = keygen("rotd-admin");
    sshd.authorize_key(admin.name(), &admin_public);

    let env = installation("");
    let key_file = private_file(&env, "ssh/rotd_ed25519", &admin_key);
    let mut subs = target(&sshd, user.name(), admin.name());
    subs.push(("admin", file_ref(&key_file)));
    declare(&env, "ecs-password.toml", "ecs-password.toml", &subs);
    check(&env, None);

    // No `rotd rotate`: the daemon sets the first password as soon as it finds the file. Every process's
    // argv and environment is watched meanwhile.
    let sampler = ProcSampler::start(Duration::from_millis(1));
    let served = serve(&env, "serve.log", &[]);
    let first = served.first_value(PASSWORD_NAME);
    let seen = sampler.stop();
    assert_eq!(first.fields(), ["Password", "UserName"], "the vendor's value");
    assert_eq!(first.field("UserName"), user.name());
    assert!(
        seen.find(first.field("Password")).is_none(),
        "the first password was in a command line or environment ({} sweeps)",
        seen.count()
    );
    assert!(
        logs_in(&sshd, &first),
        "the system client logs in with ACSCurrent"
    );
    assert!(
        !sshd.ssh_password_login(user.name(), &original),
        "the user's original password no longer works"
    );

    let sampler = ProcSampler::start(Duration::from_millis(1));
    rotate(&env, &served, PASSWORD_NAME);
    let second = served.current(PASSWORD_NAME);
    let seen = sampler.stop();
    assert_ne!(second.id, first.id);
    assert_ne!(second.field("Password"), first.field("Password"));
    assert!(
        seen.count() > 10,
        "the sampler swept during the rotation ({} sweeps)",
        seen.count()
    );
    assert!(
        seen.find(second.field("Password")).is_none(),
        "the new password was in a command line or environment during the rotation"
    );
    assert!(logs_in(&sshd, &second), "the new password logs in");
    assert!(!logs_in(&sshd, &first), "the old password no longer does");
    let previous = served.value(PASSWORD_NAME, "ACSPrevious").expect("ACSPrevious");
    assert_eq!(previous.id, first.id, "the old value is ACSPrevious");

    for v in [&first, &second] {
        assert_not_logged(&served, &sshd, v.field("Password"), "a password");
    }
    let log = served.daemon.stop();
    assert!(!log.contains("panicked"), "{log}");
}

/// The key example (Ed25519 by default) on a user whose authorized_keys holds lines of its own, and the
/// same example with `key_type = "rsa3072"` and a `grace` on a user who has no `~/.ssh` at all.
#[test]
fn the_key_example_adds_a_key_at_start_keeps_the_previous_one_for_a_rotation_and_every_other_line() {
    let host = Host::start();
    let sshd = &host.sshd;
    let batch = sshd.create_user("batch");
    let fresh = sshd.create_user("fresh");

    // The batch user's own keys: a comment, a key with options, a CRLF line, and a last line without its
    // newline (a key the test logs in with afterwards, so it must not run into rotd's line).
    let (_, with_options) = keygen("ops@laptop");
    let (_, crlf) = keygen("windows@desktop");
    let (last_private, last) = keygen("backup@vault");
    let foreign = format!(
        "# keys of the batch user, kept by hand\n\
         no-port-forwarding,from=\"127.0.0.1,10.0.0.0/8\" {with_options}\n\
         {crlf}\r\n\
         {last}"
    );
    // 0640, not the 0600 rotd gives a file it creates: rotd keeps an existing file's mode.
    write_authorized_keys(&batch, &foreign, 0o640);
    let uid = uid_of(batch.home());
    let keys_file = authorized_keys(&batch);
    assert!(sshd.ssh_key_login(batch.name(), &last_private));
    assert!(!fresh.home().join(".ssh").exists());

    let env = installation("");
    let creds = credentials(&env, &host.root_key);
    declare(
        &env,
        "ecs-sshkey.toml",
        "ecs-sshkey.toml",
        &target(sshd, batch.name(), "root"),
    );
    let rsa_name = format!("{KEY_NAME}-rsa");
    let mut subs = target(sshd, fresh.name(), "root");
    subs.push(("name", q(&rsa_name)));
    subs.push(("key_type", q("rsa3072")));
    declare(&env, "ecs-sshkey.toml", "ecs-sshkey-rsa.toml", &subs);
    // With a `grace` the old key goes that long after the rotation, not at the next one.
    let text = read_text(&env.path("secrets.d/ecs-sshkey-rsa.toml"));
    env.write(
        "secrets.d/ecs-sshkey-rsa.toml",
        &format!("grace = \"8s\"\n{text}"),
    );
    check(&env, Some(&creds));
    let creds_var = creds.to_str().expect("utf-8");
    let served = serve(&env, "serve.log", &[("CREDENTIALS_DIRECTORY", creds_var)]);

    // The first keys, with no `rotd rotate`.
    let k1 = served.first_value(KEY_NAME);
    assert_eq!(
        k1.fields(),
        ["PrivateKey", "PublicKey", "UserName"],
        "the vendor's value"
    );
    assert_eq!(k1.field("UserName"), batch.name());
    assert!(
        k1.field("PublicKey").starts_with("ssh-ed25519 "),
        "Ed25519 by default"
    );
    assert!(logs_in(sshd, &k1), "the system client logs in with the first key");
    let line = |v: &Version| format!("{}\n", v.field("PublicKey").trim());
    assert_eq!(
        read_text(&keys_file),
        format!("{foreign}\n{}", line(&k1)),
        "every other line is kept byte for byte; the unterminated last line got its newline"
    );
    assert_eq!(
        (uid_of(&keys_file), mode_of(&keys_file)),
        (uid, 0o640),
        "the file keeps its owner and mode"
    );

    let r1 = served.first_value(&rsa_name);
    assert!(r1.field("PublicKey").starts_with("ssh-rsa "));
    assert!(
        key_summary(r1.field("PublicKey")).starts_with("3072 "),
        "an RSA-3072 key"
    );
    assert!(logs_in(sshd, &r1), "the system client logs in with the RSA key");
    let fresh_dir = fresh.home().join(".ssh");
    let fresh_keys = authorized_keys(&fresh);
    let fresh_uid = uid_of(fresh.home());
    assert_eq!(
        (uid_of(&fresh_dir), mode_of(&fresh_dir)),
        (fresh_uid, 0o700),
        "rotd created ~/.ssh as the user's, 0700"
    );
    assert_eq!(
        (uid_of(&fresh_keys), mode_of(&fresh_keys)),
        (fresh_uid, 0o600),
        "rotd created authorized_keys as the user's, 0600"
    );
    assert_eq!(read_text(&fresh_keys), line(&r1));

    // A rotation adds a key; the previous one keeps working until the next rotation (or for the grace).
    rotate(&env, &served, &rsa_name);
    let r2 = served.current(&rsa_name);
    assert!(
        logs_in(sshd, &r2) && logs_in(sshd, &r1),
        "the new RSA key and the previous one log in during the grace"
    );
    rotate(&env, &served, KEY_NAME);
    let k2 = served.current(KEY_NAME);
    assert_ne!(k2.field("PrivateKey"), k1.field("PrivateKey"));
    assert!(
        logs_in(sshd, &k2) && logs_in(sshd, &k1),
        "the new key and the previous one log in"
    );
    assert_eq!(
        read_text(&keys_file),
        format!("{foreign}\n{}{}", line(&k1), line(&k2))
    );

    // The next rotation removes the first key, and only it.
    rotate(&env, &served, KEY_NAME);
    let k3 = served.current(KEY_NAME);
    assert!(logs_in(sshd, &k3), "the newest key logs in");
    assert!(logs_in(sshd, &k2), "the previous key still logs in");
    assert!(!logs_in(sshd, &k1), "the first key no longer logs in");
    assert_eq!(
        read_text(&keys_file),
        format!("{foreign}\n{}{}", line(&k2), line(&k3)),
        "only rotd's retired line is gone"
    );
    assert_eq!((uid_of(&keys_file), mode_of(&keys_file)), (uid, 0o640));
    assert!(
        sshd.ssh_key_login(batch.name(), &last_private),
        "the user's own key still logs in"
    );

    // The grace is over: the first RSA key goes without another rotation.
    wait_for("the first RSA key to be removed", Duration::from_secs(40), || {
        !logs_in(sshd, &r1)
    });
    assert!(logs_in(sshd, &r2), "the current RSA key still logs in");
    assert_eq!(read_text(&fresh_keys), line(&r2));
    assert_eq!((uid_of(&fresh_keys), mode_of(&fresh_keys)), (fresh_uid, 0o600));

    let log = served.daemon.stop();
    assert!(!log.contains("panicked"), "{log}");
    for v in [&k1, &k2, &k3, &r1, &r2] {
        assert!(
            !log.contains(v.field("PrivateKey").trim()),
            "a private key reached the log"
        );
    }
}

/// `initial_value` is the first version, as the vendor's "initial secret value": the user's current
/// password, stored as `v1`, nothing rotated at start. A wrong one is stored too (rotd cannot know); `rotd
/// plan` names it, and a rotation sets a password that works through the management login.
#[test]
fn initial_value_is_the_first_version_and_a_wrong_one_is_named_by_plan_and_repaired_by_a_rotation() {
    let host = Host::start();
    let sshd = &host.sshd;
    let right = sshd.create_user("deploy");
    let wrong = sshd.create_user("wrong");

    let env = installation("");
    let key_file = private_file(&env, "ssh/rotd_ed25519", &host.root_key);
    let right_pw = private_file(&env, "initial/deploy.pw", &format!("{}\n", right.password()));
    let wrong_pw = private_file(&env, "initial/wrong.pw", "not-the-password-0123456789");
    let mut subs = target(sshd, right.name(), "root");
    subs.push(("admin", file_ref(&key_file)));
    subs.push(("initial_value", file_ref(&right_pw)));
    declare(&env, "ecs-password.toml", "ecs-password.toml", &subs);
    let wrong_name = format!("{PASSWORD_NAME}-wrong");
    let mut subs = target(sshd, wrong.name(), "root");
    subs.push(("name", q(&wrong_name)));
    subs.push(("admin", file_ref(&key_file)));
    subs.push(("initial_value", file_ref(&wrong_pw)));
    declare(&env, "ecs-password.toml", "ecs-password-wrong.toml", &subs);
    check(&env, None);

    let served = serve(&env, "serve.log", &[]);
    let first = served.first_value(PASSWORD_NAME);
    assert_eq!(first.id, "v1", "the vendor's default initial version id");
    assert_eq!(
        first.value,
        serde_json::json!({"UserName": right.name(), "Password": right.password()})
    );
    assert_eq!(served.first_value(&wrong_name).id, "v1");

    let plan = env.json(&["plan"]);
    let notes_of = |plan: &serde_json::Value, name: &str| {
        plan.as_array()
            .and_then(|rows| rows.iter().find(|r| r["SecretName"] == name))
            .map(|r| r["Notes"].to_string())
            .unwrap_or_else(|| panic!("{name} is not in the plan: {plan}"))
    };
    let wrong_notes = notes_of(&plan, &wrong_name);
    assert!(
        wrong_notes.contains("ACSCurrent (v1) does not log in: "),
        "plan names the wrong initial value: {wrong_notes}"
    );
    let right_notes = notes_of(&plan, PASSWORD_NAME);
    assert!(!right_notes.contains("does not log in"), "{right_notes}");

    // By now (the plan logged in several times) a rotation at start would have begun.
    for name in [PASSWORD_NAME, wrong_name.as_str()] {
        assert_eq!(steps(&env, name), ["created"], "{name}: nothing rotated at start");
    }
    assert!(logs_in(sshd, &first), "the user's password was left as it is");

    rotate(&env, &served, &wrong_name);
    let repaired = served.current(&wrong_name);
    assert_ne!(repaired.id, "v1");
    assert!(
        logs_in(sshd, &repaired),
        "the rotation set a password that logs in"
    );
    let notes = notes_of(&env.json(&["plan"]), &wrong_name);
    assert!(!notes.contains("does not log in"), "{notes}");
    assert_eq!(
        served.current(PASSWORD_NAME).id,
        "v1",
        "the other secret is untouched"
    );
    let log = served.daemon.stop();
    assert!(
        !log.contains(right.password()),
        "the initial password reached the log"
    );
    assert!(
        !log.contains(repaired.field("Password")),
        "a password reached the log"
    );
}

/// The key example with `initial_value`: the private key whose public key the user already has. It is the
/// first version (`v1`, the public key derived from it) and nothing rotates at start; since rotd did not
/// add that key, it never removes it: after two rotations it still logs in, and rotd's log says why.
#[test]
fn an_imported_key_pair_is_the_first_version_and_rotd_never_removes_a_key_it_did_not_add() {
    let host = Host::start();
    let sshd = &host.sshd;
    let user = sshd.create_user("batch");
    let (imported, imported_public) = keygen("imported@ops");
    write_authorized_keys(&user, &format!("{imported_public}\n"), 0o600);
    let env = installation("");
    let creds = credentials(&env, &host.root_key);
    let key_file = private_file(&env, "initial/batch.key", &imported);
    let mut subs = target(sshd, user.name(), "root");
    subs.push(("initial_value", file_ref(&key_file)));
    declare(&env, "ecs-sshkey.toml", "ecs-sshkey.toml", &subs);
    check(&env, Some(&creds));
    let creds_var = creds.to_str().expect("utf-8");
    let served = serve(&env, "serve.log", &[("CREDENTIALS_DIRECTORY", creds_var)]);

    let first = served.first_value(KEY_NAME);
    assert_eq!(first.id, "v1");
    assert_eq!(first.fields(), ["PrivateKey", "PublicKey", "UserName"]);
    assert_eq!(first.field("UserName"), user.name());
    assert_eq!(first.field("PrivateKey").trim(), imported.trim());
    assert_eq!(
        blob(first.field("PublicKey")),
        blob(&imported_public),
        "the public key of the imported private key"
    );
    assert!(logs_in(sshd, &first));

    rotate(&env, &served, KEY_NAME);
    assert_eq!(
        steps(&env, KEY_NAME),
        ["created", "pending", "applied", "verified", "promoted"],
        "one rotation, the requested one: none at start"
    );
    let second = served.current(KEY_NAME);
    assert!(logs_in(sshd, &second) && logs_in(sshd, &first));
    rotate(&env, &served, KEY_NAME);
    let third = served.current(KEY_NAME);
    assert!(logs_in(sshd, &third) && logs_in(sshd, &second));
    assert!(
        logs_in(sshd, &first),
        "the imported key was not added by rotd, so rotd leaves it"
    );
    assert_eq!(
        read_text(&authorized_keys(&user)),
        format!(
            "{imported_public}\n{}\n{}\n",
            second.field("PublicKey").trim(),
            third.field("PublicKey").trim()
        )
    );
    let log = served.daemon.stop();
    assert!(
        log.contains("The old key was not added by rotd"),
        "rotd says why the old key stays: {log}"
    );
    assert!(!log.contains(imported.trim()), "the imported key reached the log");
}

/// A host that presents another key than the pinned one gets nothing: no authentication attempt. The
/// rotation fails for good (quarantined), `rotd status` says why, and the metric flags the secret until
/// the operator pins the new key.
#[test]
fn a_changed_host_key_stops_the_rotation_before_any_login_and_status_and_metrics_say_so() {
    let mut host = Host::start();
    let user = host.sshd.create_user("batch");
    let env = installation("");
    let creds = declare_key_example(&env, &host, &user);
    let creds_var = creds.to_str().expect("utf-8");
    let served = serve(&env, "serve.log", &[("CREDENTIALS_DIRECTORY", creds_var)]);
    let first = served.first_value(KEY_NAME);
    assert!(logs_in(&host.sshd, &first));
    let series = format!("rotd_target_identity_mismatch{{secret=\"{KEY_NAME}\"}}");
    assert!(
        !served.metrics().contains(&format!("{series} 1")),
        "no mismatch before the change"
    );

    host.sshd.regenerate_host_key();
    let sshd_log_from = read_text(host.sshd.log_path()).len();
    let r = env.run(&["rotate", KEY_NAME]);
    assert_ne!(r.code, 0, "the rotation must fail: {}{}", r.stdout, r.stderr);
    let row = status_of(&env, KEY_NAME);
    let error = row["LastError"].as_str().unwrap_or_default();
    assert!(
        error.contains("host key") && error.contains(host.sshd.host_key_fingerprint_sha256()),
        "LastError names the host key it saw: {row}"
    );
    assert!(
        served.metrics().contains(&format!("{series} 1")),
        "the metric flags the secret:\n{}",
        served.metrics()
    );
    let after = read_text(host.sshd.log_path())[sshd_log_from..].to_owned();
    assert!(
        after.contains("Connection from 127.0.0.1"),
        "rotd did connect (so the absence below means something):\n{after}"
    );
    for word in [
        "Accepted",
        "Failed",
        "Postponed",
        "Invalid user",
        "authenticat",
        "userauth",
    ] {
        assert!(
            !after.contains(word),
            "sshd saw an authentication attempt ({word}) after the key change:\n{after}"
        );
    }
    let still = served.current(KEY_NAME);
    assert_eq!(still.id, first.id, "ACSCurrent is kept");
    assert!(logs_in(&host.sshd, &still), "and it still logs in");

    // The operator checks the new key out of band and pins it: the next rotation works.
    declare(
        &env,
        "ecs-sshkey.toml",
        "ecs-sshkey.toml",
        &target(&host.sshd, user.name(), "root"),
    );
    check(&env, Some(&creds));
    served.daemon.signal(libc::SIGHUP);
    wait_for("the reload", Duration::from_secs(30), || {
        served.daemon.log_text().contains("Reloaded the configuration.")
    });
    env.ok(&["rotation", "resume", KEY_NAME]);
    rotate(&env, &served, KEY_NAME);
    let next = served.current(KEY_NAME);
    assert!(logs_in(&host.sshd, &next), "the rotation with the new pin works");
    assert!(
        served.metrics().contains(&format!("{series} 0")) || !served.metrics().contains(&series),
        "the flag is cleared"
    );
    let log = served.daemon.stop();
    assert!(!log.contains("panicked"), "{log}");
}

/// Three hosts, each with its own user and secret; one host is down. Rotating all three: the two others
/// complete while the third keeps failing and `rotd status` names its host; once it is back, it completes.
#[test]
fn a_host_that_is_down_holds_back_only_its_own_secret() {
    let mut hosts: Vec<Host> = (0..3).map(|_| Host::start()).collect();
    let users: Vec<TestUser> = hosts.iter().map(|h| h.sshd.create_user("deploy")).collect();
    // Retries keep coming until the host is back (no quarantine meanwhile).
    let env = installation("max_attempts = 100\n");
    let names: Vec<String> = (1..=3).map(|i| format!("{PASSWORD_NAME}-{i}")).collect();
    for (i, (h, u)) in hosts.iter().zip(&users).enumerate() {
        let key_file = private_file(&env, &format!("ssh/host{i}_ed25519"), &h.root_key);
        let mut subs = target(&h.sshd, u.name(), "root");
        subs.push(("name", q(&names[i])));
        subs.push(("admin", file_ref(&key_file)));
        declare(
            &env,
            "ecs-password.toml",
            &format!("ecs-password-{i}.toml"),
            &subs,
        );
    }
    check(&env, None);
    let served = serve(&env, "serve.log", &[]);
    let firsts: Vec<Version> = names.iter().map(|n| served.first_value(n)).collect();
    for (h, v) in hosts.iter().zip(&firsts) {
        assert!(logs_in(&h.sshd, v));
    }

    hosts[2].sshd.stop();
    for n in &names {
        rotate_no_wait(&env, n);
    }
    for i in 0..2 {
        let v = served.next_value(&names[i], &firsts[i].id);
        assert!(
            logs_in(&hosts[i].sshd, &v),
            "{}: the new password logs in",
            names[i]
        );
        assert!(!logs_in(&hosts[i].sshd, &firsts[i]));
    }
    let down = format!("127.0.0.1:{}", hosts[2].sshd.port());
    wait_for("the third secret to fail twice", Duration::from_secs(30), || {
        status_of(&env, &names[2])["ConsecutiveFailures"]
            .as_u64()
            .is_some_and(|n| n >= 2)
    });
    let row = status_of(&env, &names[2]);
    assert!(
        row["LastError"].as_str().is_some_and(|e| e.contains(&down)),
        "status names the host that is down: {row}"
    );
    assert_eq!(row["State"], "rotating", "{row}");
    assert_eq!(row["Quarantined"], false, "{row}");
    assert_eq!(
        served.current(&names[2]).id,
        firsts[2].id,
        "not promoted while down"
    );

    hosts[2].sshd.restart();
    let third = served.next_value(&names[2], &firsts[2].id);
    assert!(logs_in(&hosts[2].sshd, &third), "completed once the host is back");
    assert!(!logs_in(&hosts[2].sshd, &firsts[2]));
    wait_for("the failures to be cleared", Duration::from_secs(10), || {
        status_of(&env, &names[2])["ConsecutiveFailures"] == 0
    });
    let log = served.daemon.stop();
    assert!(!log.contains("panicked"), "{log}");
}

/// The step boundaries `ROTD_FAILPOINT` parks a rotation at (see tests/tests/crash.rs).
const BOUNDARIES: [&str; 6] = [
    "pending",
    "stored",
    "applied",
    "verified",
    "promoted-store",
    "promoted",
];

/// The lines of an authorized_keys file that rotd added for `secret`.
fn rotd_lines(path: &Path, secret: &str) -> Vec<String> {
    let marker = format!(" rotd:{secret}:");
    read_text(path)
        .lines()
        .filter(|l| l.contains(&marker))
        .map(str::to_owned)
        .collect()
}

/// The key example, unchanged but for the target, declared for `user` on `host` and managed by root
/// with the key systemd hands the service as a credential; `rotd check` passes. Returns the credentials
/// directory to serve with.
fn declare_key_example(env: &Env, host: &Host, user: &TestUser) -> PathBuf {
    let creds = credentials(env, &host.root_key);
    declare(
        env,
        "ecs-sshkey.toml",
        "ecs-sshkey.toml",
        &target(&host.sshd, user.name(), "root"),
    );
    check(env, Some(&creds));
    creds
}

/// `kill -9` of the daemon at every step boundary of a key rotation (and of the rotation at start that
/// makes the first key), then a restart: the rotation completes, `ACSCurrent` logs in with the system
/// client, the previous key still does, authorized_keys holds exactly those two of rotd's keys, and no
/// rotation is left open.
#[test]
fn kill_9_at_every_step_boundary_of_a_key_rotation_leaves_a_key_that_logs_in() {
    let host = Host::start();
    let sshd = &host.sshd;
    let user = sshd.create_user("batch");
    let env = installation("step_timeout = \"20s\"\n");
    let creds = declare_key_example(&env, &host, &user);
    let creds_var = creds.to_str().expect("utf-8");
    let keys_file = authorized_keys(&user);

    // The rotation at start, killed after its key is added.
    let d = serve(
        &env,
        "start.log",
        &[
            ("CREDENTIALS_DIRECTORY", creds_var),
            ("ROTD_FAILPOINT", "applied"),
        ],
    );
    wait_for("the failpoint at start", Duration::from_secs(60), || {
        d.daemon.log_text().contains("Failpoint reached")
    });
    d.daemon.kill9();
    let d = serve(
        &env,
        "start-recovered.log",
        &[("CREDENTIALS_DIRECTORY", creds_var)],
    );
    let mut current = d.first_value(KEY_NAME);
    assert!(logs_in(sshd, &current), "the first key logs in after the crash");
    assert_eq!(
        rotd_lines(&keys_file, KEY_NAME),
        [current.field("PublicKey").trim()],
        "one key of rotd's"
    );
    d.daemon.stop();
    let mut known = 1;

    for boundary in BOUNDARIES {
        let d = serve(
            &env,
            &format!("{boundary}.log"),
            &[("CREDENTIALS_DIRECTORY", creds_var), ("ROTD_FAILPOINT", boundary)],
        );
        rotate_no_wait(&env, KEY_NAME);
        wait_for(
            &format!("the failpoint {boundary}"),
            Duration::from_secs(60),
            || {
                d.daemon.assert_alive();
                d.daemon.log_text().contains("Failpoint reached")
            },
        );
        d.daemon.kill9();
        let versions_before: Vec<String> = env
            .json(&["secret", "versions", KEY_NAME])
            .as_array()
            .expect("versions")
            .iter()
            .map(|v| v["VersionId"].as_str().expect("id").to_owned())
            .collect();

        let d = serve(
            &env,
            &format!("{boundary}-recovered.log"),
            &[("CREDENTIALS_DIRECTORY", creds_var)],
        );
        let next = d.next_value(KEY_NAME, &current.id);
        // The request the killed daemon left open is replayed at start (for every boundary but the last it
        // drives the resumed rotation): look only once that attempt has ended.
        wait_for(
            &format!("{boundary}: the replayed request"),
            Duration::from_secs(60),
            || {
                d.metrics()
                    .contains("rotd_rotations_total{kind=\"ECS\",result=\"success\"} 1")
            },
        );
        let row = status_of(&env, KEY_NAME);
        assert!(
            row["OpenRotation"].is_null(),
            "{boundary}: no open rotation: {row}"
        );
        assert!(logs_in(sshd, &next), "{boundary}: ACSCurrent logs in");
        let previous = d.value(KEY_NAME, "ACSPrevious").expect("ACSPrevious");
        assert_eq!(previous.id, current.id, "{boundary}: ACSPrevious is the old key");
        let versions = env.json(&["secret", "versions", KEY_NAME]);
        let versions = versions.as_array().expect("versions");
        assert!(
            versions
                .iter()
                .all(|v| !v["VersionStages"].to_string().contains("ACSPending")),
            "{boundary}: no ACSPending left: {versions:?}"
        );
        assert_eq!(versions.len(), known + 1, "{boundary}: exactly one new version");
        if versions_before.len() > known {
            // The value was stored before the crash: the rotation rolled forward with it.
            assert!(
                versions_before.contains(&next.id),
                "{boundary}: rolled forward with the stored pending version"
            );
        }
        known = versions.len();
        let log = d.daemon.stop();
        if boundary != "promoted" {
            assert!(
                log.contains("Resuming an unfinished rotation"),
                "{boundary}: {log}"
            );
        }
        assert!(
            !log.contains(next.field("PrivateKey").trim()),
            "{boundary}: a private key reached the log"
        );

        // The old key stays until the next rotation, also at `promoted`, where the restart replays the
        // request of a rotation promoted just before the kill (it must be recognised as done before any
        // retire step runs; see `an_idempotent_retry_of_a_rotation_keeps_the_previous_key`).
        let mut want = vec![
            current.field("PublicKey").trim().to_owned(),
            next.field("PublicKey").trim().to_owned(),
        ];
        want.sort();
        let mut have = rotd_lines(&keys_file, KEY_NAME);
        have.sort();
        let last_step = steps(&env, KEY_NAME).last().cloned().unwrap_or_default();
        let previous_logs_in = logs_in(sshd, &current);
        assert!(
            previous_logs_in && have == want && last_step == "promoted",
            "{boundary}: after the restart the previous key must still log in (it does: {previous_logs_in}), \
             authorized_keys must hold ACSCurrent's and ACSPrevious's keys of rotd's (it holds {} of them, \
             want 2), and the journal must end with the promotion (it ends with {last_step:?})",
            have.iter().filter(|l| want.contains(l)).count()
        );
        current = next;
    }
}

/// `rotd rotate --version-id ID` with an ID that exists is an idempotent retry in which nothing is
/// rotated: it must not remove the previous key either, which the key example's default grace keeps until
/// the next rotation. (It once did: `rotate_once` ran the retire step the last promotion owes before it
/// found that the requested version exists. The daemon takes the same path when it replays the request
/// of a rotation it was killed right after promoting: the `promoted` boundary of the crash test above.)
#[test]
fn an_idempotent_retry_of_a_rotation_keeps_the_previous_key() {
    let host = Host::start();
    let sshd = &host.sshd;
    let user = sshd.create_user("batch");
    let env = installation("");
    let creds = declare_key_example(&env, &host, &user);
    let creds_var = creds.to_str().expect("utf-8");
    let served = serve(&env, "serve.log", &[("CREDENTIALS_DIRECTORY", creds_var)]);
    let k1 = served.first_value(KEY_NAME);

    let id = "deploy-2026-12-02";
    let args = ["rotate", KEY_NAME, "--version-id", id];
    let r = env.run(&args);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let k2 = served.current(KEY_NAME);
    assert_eq!(k2.id, id);
    assert!(
        logs_in(sshd, &k2) && logs_in(sshd, &k1),
        "both keys after the rotation"
    );
    let journal = steps(&env, KEY_NAME);

    // The same command again, as a deploy script retrying after a timeout sends it.
    let r = env.run(&args);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(served.current(KEY_NAME).id, id, "nothing rotated");
    assert!(logs_in(sshd, &k2), "ACSCurrent logs in");
    assert!(
        logs_in(sshd, &k1),
        "the idempotent retry removed the previous key, which stays until the next rotation"
    );
    assert_eq!(
        steps(&env, KEY_NAME),
        journal,
        "the idempotent retry journaled steps although nothing was to be rotated"
    );
    served.daemon.stop();
}

/// The management login of one secret is the key of another: secret A is the SSH key of a sudoer
/// (managed through root), secret B the password of another user, changed by that sudoer with A's
/// `PrivateKey`. B's backend can be built only once A has a value, and must be rebuilt each time A
/// rotates: after A's second rotation its first key is gone, and B still rotates.
#[test]
fn an_admin_key_that_is_itself_a_rotating_secret_keeps_working_for_the_secrets_that_use_it() {
    let host = Host::start();
    let sshd = &host.sshd;
    let admin = sshd.create_sudoer("rotd", SudoMode::NoPassword);
    let user = sshd.create_user("deploy");
    let env = installation("");
    let creds = credentials(&env, &host.root_key);
    declare(
        &env,
        "ecs-sshkey.toml",
        "ecs-sshkey.toml",
        &target(sshd, admin.name(), "root"),
    );
    let mut subs = target(sshd, user.name(), admin.name());
    subs.push((
        "admin",
        format!("{{ secret = {}, field = \"PrivateKey\" }}", q(KEY_NAME)),
    ));
    declare(&env, "ecs-password.toml", "ecs-password.toml", &subs);
    check(&env, Some(&creds));
    let creds_var = creds.to_str().expect("utf-8");
    let served = serve(&env, "serve.log", &[("CREDENTIALS_DIRECTORY", creds_var)]);

    // Neither secret has a value at start: A's comes first, and B's follows with A's key.
    let a1 = served.first_value(KEY_NAME);
    assert!(logs_in(sshd, &a1), "the sudoer logs in with A");
    let b1 = served.first_value(PASSWORD_NAME);
    assert!(
        logs_in(sshd, &b1),
        "B's first password, set through A's key, logs in"
    );

    rotate(&env, &served, KEY_NAME);
    rotate(&env, &served, KEY_NAME);
    let a3 = served.current(KEY_NAME);
    assert!(!logs_in(sshd, &a1), "A's first key is gone");
    assert!(logs_in(sshd, &a3));

    rotate(&env, &served, PASSWORD_NAME);
    let b2 = served.current(PASSWORD_NAME);
    assert_ne!(b2.id, b1.id);
    assert!(logs_in(sshd, &b2), "B rotated with A's current key");
    assert!(!logs_in(sshd, &b1));
    let log = served.daemon.stop();
    assert!(
        log.contains("An admin credential rotated; rebuilding the backends that use it."),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
