//! The `rotd` command line, end to end: init, secrets, keys, permissions and exit statuses.

use std::os::unix::fs::PermissionsExt;

use rotd_e2e::Env;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn init_is_idempotent_and_creates_private_files() {
    let env = Env::new();
    let out = env.ok(&["init"]);
    assert!(out.contains("created data directory"), "{out}");
    assert!(out.contains("created first admin access key LTAI"), "{out}");
    assert_eq!(mode(&env.path("data")), 0o700);
    assert_eq!(mode(&env.path("data/keyring.json")), 0o600);
    assert_eq!(mode(&env.path("data/rotd.db")), 0o600);
    assert_eq!(mode(&env.path("data/admin-access-key.json")), 0o600);
    let key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("data/admin-access-key.json")).expect("read"))
            .expect("json");
    let secret = key["AccessKeySecret"].as_str().expect("secret").to_owned();
    assert_eq!(secret.len(), 30);
    assert!(
        !out.contains(&secret),
        "init must not print the access key secret"
    );

    let keyring_before = std::fs::read(env.path("data/keyring.json")).expect("keyring");
    let again = env.ok(&["init"]);
    assert!(again.contains("exists  keyring"), "{again}");
    assert!(!again.contains("created"), "{again}");
    assert_eq!(
        std::fs::read(env.path("data/keyring.json")).expect("keyring"),
        keyring_before,
        "never replaced"
    );
}

#[test]
fn refuses_a_store_whose_keyring_is_missing() {
    let env = Env::new();
    env.ok(&["init"]);
    std::fs::remove_file(env.path("data/keyring.json")).expect("rm keyring");
    let r = env.run(&["init"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("exists but its keyring"), "{}", r.stderr);
    assert!(
        !env.path("data/keyring.json").exists(),
        "no new keyring that could never decrypt the store"
    );
}

#[test]
fn refuses_a_group_readable_keyring() {
    let env = Env::new();
    env.ok(&["init"]);
    let kr = env.path("data/keyring.json");
    std::fs::set_permissions(&kr, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let r = env.run(&["secret", "list"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("accessible by group or others (mode 0644)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
}

#[test]
fn commands_before_init_say_what_to_do() {
    let env = Env::new();
    let r = env.run(&["secret", "list"]);
    assert_eq!(r.code, 64);
    assert!(r.stderr.contains("run `rotd init"), "{}", r.stderr);
}

#[test]
fn secret_lifecycle() {
    let env = Env::new();
    env.ok(&["init"]);
    let value = "s3cr3t-initial-value";
    let r = env.run_stdin(
        &[
            "-o",
            "json",
            "secret",
            "create",
            "app/token",
            "--value-stdin",
            "--tag",
            "team=pay",
            "--description",
            "demo",
        ],
        value.as_bytes(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let created: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(
        created["VersionId"], "v1",
        "without --version-id the initial version is v1"
    );

    // Without --reveal, no value anywhere in the output.
    let meta = env.ok(&["secret", "get", "app/token"]);
    assert!(!meta.contains(value), "{meta}");
    assert!(meta.contains("ACSCurrent"), "{meta}");
    // With --reveal in table mode, exactly the value.
    assert_eq!(env.ok(&["secret", "get", "app/token", "--reveal"]), value);

    let file = env.path("v2.txt");
    std::fs::write(&file, "second-value").expect("write");
    let put = env.json(&[
        "secret",
        "put",
        "app/token",
        "--value-file",
        file.to_str().expect("utf8"),
        "--version-id",
        "v2",
    ]);
    assert_eq!(put["VersionStages"], serde_json::json!(["ACSCurrent"]));
    let prev = env.json(&["secret", "get", "app/token", "--stage", "ACSPrevious", "--reveal"]);
    assert_eq!(prev["SecretData"], value);
    assert_eq!(prev["VersionId"], "v1");

    // Idempotent repeat, then a conflicting one (exit 65, nothing changed).
    let again = env.json(&[
        "secret",
        "put",
        "app/token",
        "--value-file",
        file.to_str().expect("utf8"),
        "--version-id",
        "v2",
    ]);
    assert_eq!(again["Created"], false);
    let conflict = env.run_stdin(
        &[
            "secret",
            "put",
            "app/token",
            "--value-stdin",
            "--version-id",
            "v2",
        ],
        b"different",
    );
    assert_eq!(conflict.code, 65, "{}", conflict.stderr);
    assert!(
        conflict
            .stderr
            .contains("already has a version v2 with a different value"),
        "{}",
        conflict.stderr
    );
    assert!(!conflict.stderr.contains("different\n") && !conflict.stderr.contains("second-value"));

    let versions = env.json(&["secret", "versions", "app/token"]);
    assert_eq!(versions.as_array().expect("array").len(), 2);
    let staged = env.json(&["secret", "stage", "app/token", "Blue", "--move-to", "v1"]);
    assert!(
        staged
            .as_array()
            .expect("array")
            .iter()
            .any(|s| s["VersionStage"] == "Blue" && s["VersionId"] == "v1")
    );

    let described = env.json(&["secret", "describe", "app/token"]);
    assert_eq!(described["Description"], "demo");
    assert_eq!(described["Tags"][0]["TagKey"], "team");

    let list = env.ok(&["secret", "list"]);
    assert!(list.contains("app/token"), "{list}");

    let del = env.json(&["secret", "delete", "app/token", "--recovery-days", "7"]);
    assert!(del["PlannedDeleteTime"].is_string());
    let blocked = env.run(&["secret", "get", "app/token"]);
    assert_eq!(blocked.code, 65, "{}", blocked.stderr);
    assert!(
        blocked.stderr.contains("scheduled for deletion"),
        "{}",
        blocked.stderr
    );
    env.ok(&["secret", "restore", "app/token"]);
    assert_eq!(
        env.ok(&["secret", "get", "app/token", "--reveal"]),
        "second-value"
    );
    env.ok(&["secret", "delete", "app/token", "--force"]);
    assert_eq!(env.run(&["secret", "describe", "app/token"]).code, 66);
}

#[test]
fn bad_input_is_rejected_with_precise_errors_and_stores_nothing() {
    let env = Env::new();
    env.ok(&["init"]);
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["secret", "create", "bad name", "--generate"],
            65,
            "secret name: character ' ' is not allowed",
        ),
        (
            &["secret", "create", "ok", "--generate", "--tag", "aliyun:x=1"],
            65,
            "must not start with aliyun",
        ),
        (
            &["secret", "create", "ok", "--generate", "--tag", "novalue"],
            65,
            "is not KEY=VALUE",
        ),
        (
            &["secret", "create", "ok", "--generate", "--type", "Oracle"],
            65,
            "unknown type",
        ),
        (
            &[
                "secret",
                "create",
                "ok",
                "--generate",
                "--version-id",
                &"x".repeat(65),
            ],
            65,
            "limit is 64",
        ),
        (&["secret", "get", "missing"], 66, "secret missing not found"),
        (
            &["secret", "delete", "missing", "--recovery-days", "3"],
            65,
            "outside 7 to 30",
        ),
    ];
    for (args, code, msg) in cases {
        let r = env.run(args);
        assert_eq!(r.code, *code, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(msg), "{args:?}: {}", r.stderr);
    }
    // A value must never be an argument.
    let r = env.run(&["secret", "create", "ok"]);
    assert_eq!(
        r.code, 2,
        "clap rejects a create with no value source: {}",
        r.stderr
    );
    let big = vec![b'x'; 30_721];
    let r = env.run_stdin(&["secret", "create", "big", "--value-stdin"], &big);
    assert_eq!(r.code, 65, "{}", r.stderr);
    assert!(
        r.stderr.contains("is 30721 bytes; the limit is 30720"),
        "{}",
        r.stderr
    );
    let list = env.json(&["secret", "list"]);
    assert_eq!(
        list,
        serde_json::json!([]),
        "nothing was stored by rejected commands"
    );
}

#[test]
fn binary_values_round_trip_base64() {
    let env = Env::new();
    env.ok(&["init"]);
    let bytes = [0u8, 159, 146, 150, 255, 10];
    let r = env.run_stdin(&["secret", "create", "bin", "--value-stdin", "--binary"], &bytes);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = env.json(&["secret", "get", "bin", "--reveal"]);
    assert_eq!(got["SecretDataType"], "binary");
    assert_eq!(got["SecretData"], "AJ+Slv8K");
    let r = env.run_stdin(&["secret", "create", "nottext", "--value-stdin"], &bytes);
    assert_eq!(r.code, 65);
    assert!(r.stderr.contains("not valid UTF-8"), "{}", r.stderr);
}

#[test]
fn key_rotate_and_rewrap() {
    let env = Env::new();
    env.ok(&["init"]);
    env.run_stdin(&["secret", "create", "a", "--value-stdin"], b"one");
    let out = env.ok(&["key", "rotate"]);
    assert!(out.contains("CMK default is now at version 2"), "{out}");
    assert_eq!(mode(&env.path("data/keyring.json")), 0o600);
    env.run_stdin(&["secret", "put", "a", "--value-stdin"], b"two");
    let keys = env.json(&["key", "list"]);
    let count = |v: u64| {
        keys.as_array()
            .expect("array")
            .iter()
            .find(|k| k["KeyVersion"] == v)
            .expect("version")["DataKeys"]
            .clone()
    };
    // Version 1 wraps the first value and the admin access key; version 2 the new value.
    assert_eq!(count(1), 2);
    assert_eq!(count(2), 1);
    let out = env.ok(&["key", "rewrap"]);
    assert!(out.contains("re-wrapped 2 data keys"), "{out}");
    let keys = env.json(&["key", "list"]);
    assert_eq!(
        keys.as_array()
            .expect("array")
            .iter()
            .find(|k| k["KeyVersion"] == 2)
            .expect("v2")["DataKeys"],
        3
    );
    assert_eq!(
        env.json(&["secret", "get", "a", "--stage", "ACSPrevious", "--reveal"])["SecretData"],
        "one"
    );
}

#[test]
fn help_is_there_for_every_command() {
    let env = Env::new();
    for args in [
        vec!["--help"],
        vec!["secret", "--help"],
        vec!["secret", "put", "--help"],
        vec!["key", "--help"],
        vec!["serve", "--help"],
        vec!["check", "--help"],
        vec!["init", "--help"],
    ] {
        let out = env.ok(&args);
        assert!(out.contains("Usage: rotd"), "{args:?}: {out}");
    }
    assert!(env.ok(&["secret", "put", "--help"]).contains("--value-stdin"));
}

#[test]
fn access_keys_tls_and_audit_commands() {
    let env = Env::new();
    let out = env.ok(&["init"]);
    assert!(out.contains("created API CA certificate"), "{out}");
    for f in ["ca.pem", "server.pem"] {
        assert!(env.path(&format!("data/tls/{f}")).exists(), "{f}");
    }
    for f in ["ca-key.pem", "server-key.pem"] {
        assert_eq!(mode(&env.path(&format!("data/tls/{f}"))), 0o600, "{f}");
    }
    let secret_file = env.path("reader.json");
    let created = env.ok(&[
        "access-key",
        "create",
        "--description",
        "reader",
        "--action",
        "kms:GetSecretValue",
        "--secret",
        "app/*",
        "--secret-file",
        secret_file.to_str().expect("utf8"),
    ]);
    assert_eq!(mode(&secret_file), 0o600);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&secret_file).expect("read")).expect("json");
    let id = doc["AccessKeyId"].as_str().expect("id").to_owned();
    let secret = doc["AccessKeySecret"].as_str().expect("secret").to_owned();
    assert!(created.contains(&id) && !created.contains(&secret), "{created}");
    let list = env.json(&["access-key", "list"]);
    let keys = list.as_array().expect("keys");
    assert_eq!(keys.len(), 2, "the admin key and the new one");
    let mine = keys
        .iter()
        .find(|k| k["AccessKeyId"] == id.as_str())
        .expect("listed");
    assert_eq!(
        mine["Policy"],
        r#"{"Actions":["kms:GetSecretValue"],"Secrets":["app/*"]}"#
    );
    assert!(!list.to_string().contains(&secret), "list never shows secrets");
    env.ok(&["access-key", "disable", &id]);
    assert_eq!(
        env.json(&["access-key", "list"])
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["AccessKeyId"] == id.as_str())
            .expect("k")["Enabled"],
        false
    );
    env.ok(&["access-key", "enable", &id]);
    env.ok(&["access-key", "delete", &id]);
    assert_eq!(env.run(&["access-key", "delete", &id]).code, 66);
    let bad = env.run(&["access-key", "create", "--action", "s3:GetObject"]);
    assert_eq!(bad.code, 65, "{}", bad.stderr);

    let before = std::fs::read(env.path("data/tls/server.pem")).expect("cert");
    let ca_before = std::fs::read(env.path("data/tls/ca.pem")).expect("ca");
    env.ok(&["tls", "rotate"]);
    assert_ne!(
        std::fs::read(env.path("data/tls/server.pem")).expect("cert"),
        before,
        "a new server certificate"
    );
    assert_eq!(
        std::fs::read(env.path("data/tls/ca.pem")).expect("ca"),
        ca_before,
        "clients keep trusting the same CA"
    );
    assert_eq!(
        env.run(&["audit", "tail"]).code,
        1,
        "no audit log before the API served a request"
    );
}

#[test]
fn check_reads_every_secret_file_the_way_serve_will() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.write(
        "admin.json",
        "{\"AccountName\":\"root\",\"AccountPassword\":\"pw\"}",
    );
    std::fs::set_permissions(env.path("admin.json"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    env.write(
        "secrets.d/db.toml",
        &format!(
            "name = \"t/db\"\ntype = \"Rds\"\n[rds]\nengine = \"mysql\"\nmode = \"single\"\nhost = \"db\"\n\
             admin = {{ file = \"{}\" }}\n[rds.account]\ncreate = {{ prefix = \"app\", databases = [\"app\"], privilege = \"ReadWrite\" }}\n",
            env.path("admin.json").display()
        ),
    );
    env.write(
        "secrets.d/cred.toml",
        "name = \"t/cred\"\ntype = \"Generic\"\n[generic]\ninitial_value = { credential = \"token\" }\n",
    );
    let r = env.run(&["check"]);
    assert_eq!(r.code, 64, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("db.toml: rds.admin:"), "{}", r.stderr);
    assert!(r.stderr.contains("1 error found"), "{}", r.stderr);
    assert!(!r.stderr.contains("\"pw\""), "no secret in the report");
    assert!(
        r.stdout.contains("not checked"),
        "a credential without $CREDENTIALS_DIRECTORY: {}",
        r.stdout
    );
    std::fs::set_permissions(env.path("admin.json"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let r = env.run(&["check"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("1 credential reference not checked"),
        "{}",
        r.stdout
    );
}

/// `rotd check --secrets-dir` checks a candidate directory against rotd.toml before it is moved into
/// place: its errors are reported with the candidate's file:line, and the configured directory is not
/// what is checked.
#[test]
fn check_validates_a_candidate_secrets_directory() {
    let env = Env::new();
    env.write("secrets.d/ok.toml", "name = \"t/ok\"\ntype = \"Generic\"\n");
    env.write(
        "candidate/bad.toml",
        "name = \"t/bad\"\ntype = \"Generic\"\n\n[rotation]\ninterval = \"forever\"\n",
    );
    let candidate = env.path("candidate");
    let r = env.run(&["check", "--secrets-dir", candidate.to_str().expect("utf-8")]);
    assert_eq!(r.code, 64, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("candidate/bad.toml:5:"),
        "the candidate's file and line: {}",
        r.stderr
    );
    let r = env.run(&["check"]);
    assert_eq!(
        r.code, 0,
        "the configured directory is still valid: {}{}",
        r.stdout, r.stderr
    );
    env.write(
        "candidate/bad.toml",
        "name = \"t/bad\"\ntype = \"Generic\"\n\n[rotation]\ninterval = \"7d\"\n",
    );
    let r = env.run(&["check", "--secrets-dir", candidate.to_str().expect("utf-8")]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("candidate"),
        "names the directory it checked: {}",
        r.stdout
    );
    let r = env.run(&[
        "check",
        "--secrets-dir",
        env.path("missing").to_str().expect("utf-8"),
    ]);
    assert_eq!(r.code, 64, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
}

/// `rotd store backup` copies a store online (with the daemon running), writes a new 0600 file and says
/// the keyring is not in it; `rotd store restore` refuses while the daemon runs, refuses a backup the
/// keyring cannot decrypt or that is not a store (changing nothing), and otherwise puts the backup in
/// place, keeping the store it replaces.
#[test]
fn store_backup_and_restore() {
    let (env, admin) = rotd_e2e::quickstart();
    env.ok(&["init"]);
    let r = env.run_stdin(
        &["secret", "create", "app/token", "--value-stdin"],
        b"before-backup",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let daemon = rotd_e2e::Daemon::start(&env, "serve.log", &[]);
    rotd_e2e::wait_for("the daemon", std::time::Duration::from_secs(60), || {
        daemon.assert_alive();
        std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
    });
    let backup = env.path("backup.db");
    let r = env.run(&["store", "backup", backup.to_str().expect("utf-8")]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("is not in the backup"), "{}", r.stdout);
    assert_eq!(mode(&backup), 0o600);
    let r = env.run(&["store", "backup", backup.to_str().expect("utf-8")]);
    assert_eq!(r.code, 64, "an existing file is not overwritten: {}", r.stderr);
    let r = env.run(&["store", "restore", backup.to_str().expect("utf-8")]);
    assert_eq!(r.code, 69, "refused while the daemon runs: {}", r.stderr);
    drop(daemon);

    // After the backup: a new version, which the restore takes back.
    let file = env.path("v2.txt");
    std::fs::write(&file, "after-backup").expect("write");
    env.ok(&[
        "secret",
        "put",
        "app/token",
        "--value-file",
        file.to_str().expect("utf-8"),
        "--version-id",
        "v2",
    ]);
    // Heartbeats are 20 s fresh; wait until the stopped daemon no longer counts as running.
    rotd_e2e::wait_for(
        "the daemon to count as stopped",
        std::time::Duration::from_secs(40),
        || {
            env.run(&["store", "restore", "/nonexistent"]).code == 64
                && env.run(&["status"]).stderr.contains("not running")
        },
    );

    // Garbage and a backup from another installation (another keyring) change nothing.
    std::fs::write(env.path("junk.db"), b"not a database").expect("write");
    let r = env.run(&["store", "restore", env.path("junk.db").to_str().expect("utf-8")]);
    assert_eq!(r.code, 65, "{}{}", r.stdout, r.stderr);
    let other = Env::new();
    other.ok(&["init"]);
    let r = other.run_stdin(&["secret", "create", "other/x", "--value-stdin"], b"x");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let foreign = env.path("foreign.db");
    other.ok(&["store", "backup", foreign.to_str().expect("utf-8")]);
    let r = env.run(&["store", "restore", foreign.to_str().expect("utf-8")]);
    assert_eq!(
        r.code, 65,
        "a backup the keyring cannot decrypt: {}{}",
        r.stdout, r.stderr
    );
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
    assert_eq!(
        env.ok(&["secret", "get", "app/token", "--reveal"]),
        "after-backup"
    );

    let r = env.run(&["store", "restore", backup.to_str().expect("utf-8")]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("versions checked") || r.stdout.contains("version checked"),
        "{}",
        r.stdout
    );
    assert_eq!(
        env.ok(&["secret", "get", "app/token", "--reveal"]),
        "before-backup"
    );
    let kept: Vec<_> = std::fs::read_dir(env.path("data"))
        .expect("data dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("before-restore"))
        .collect();
    assert_eq!(kept.len(), 1, "the replaced store is kept");
}

/// Man pages (one per command, from the same clap definition the binary parses with) and completions
/// for bash, zsh and fish, for packaging; the hidden generator itself has no page.
#[test]
fn generate_docs_writes_man_pages_and_completions() {
    let env = Env::new();
    let out = env.path("docs");
    let r = env.run(&["generate-docs", "--out-dir", out.to_str().expect("utf-8")]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let pages: Vec<String> = std::fs::read_dir(out.join("man"))
        .expect("man dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for want in [
        "rotd.1",
        "rotd-check.1",
        "rotd-serve.1",
        "rotd-plan.1",
        "rotd-secret-create.1",
        "rotd-rotation-abandon.1",
        "rotd-store-backup.1",
    ] {
        assert!(pages.contains(&want.to_owned()), "no {want} in {pages:?}");
    }
    assert!(!pages.iter().any(|p| p.contains("generate-docs")), "{pages:?}");
    for p in &pages {
        let text = std::fs::read_to_string(out.join("man").join(p)).expect("page");
        assert!(
            text.contains("\n.TH ") && text.contains("\n.SH NAME"),
            "{p} is not a man page"
        );
    }
    let check = std::fs::read_to_string(out.join("man/rotd-check.1")).expect("page");
    assert!(
        check.contains("secrets\\-dir"),
        "the page documents the options: {check}"
    );
    let bash = out.join("completions/rotd.bash");
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&bash)
        .status()
        .expect("bash");
    assert!(syntax.success(), "the bash completion parses");
    let zsh = std::fs::read_to_string(out.join("completions/_rotd")).expect("zsh");
    assert!(zsh.starts_with("#compdef rotd"), "{zsh}");
    let fish = std::fs::read_to_string(out.join("completions/rotd.fish")).expect("fish");
    assert!(fish.contains("complete -c rotd"), "{fish}");
}
