//! Alibaba Cloud's own clients against a real `rotd serve`: the KMS Python SDK (`alibabacloud-kms20160120`,
//! V3 and V2 signatures) and the caching client (`alibabacloud-secretsmanager-client-v2`). The test code that talks
//! to rotd is `tests/sdk/test_kms_sdk.py`; the pinned packages are in `tests/sdk/requirements.txt`, installed
//! into a virtualenv cached under the cargo target dir and keyed by a hash of that file.
//!
//! Needs python3 with the `venv` module and access to PyPI the first time; fails (does not skip) without them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rotd_e2e::{Daemon, Env, repo_root, rotd_bin, wait_for};
use rotd_testkit::fixtures::MariaDb;

fn sdk_dir() -> PathBuf {
    repo_root().join("tests").join("sdk")
}

/// FNV-1a, 64 bit: enough to key the cache by the requirements file's content.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// /usr/bin/python3, else python3 on PATH.
fn find_python() -> PathBuf {
    let system = PathBuf::from("/usr/bin/python3");
    if system.exists() {
        return system;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("python3"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "python3 not found (neither /usr/bin/python3 nor on PATH): the SDK compatibility tests need \
                 python3 with the venv module (Debian/Ubuntu: apt-get install python3 python3-venv)"
            )
        })
}

fn run_checked(what: &str, cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An exclusive lock on `path`, released when the returned file is dropped (flock(2)).
fn lock(path: &Path) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .expect("open venv lock file");
    // SAFETY: flock(2) on a descriptor we own; no memory is shared.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {}", path.display());
    f
}

/// The virtualenv with the pinned vendor packages (created once per requirements.txt content), returning its
/// python. Safe to call from several tests and processes at once.
fn venv_python() -> PathBuf {
    let requirements = sdk_dir().join("requirements.txt");
    let req = std::fs::read(&requirements).expect("read tests/sdk/requirements.txt");
    let python = find_python();
    let mut key = req.clone();
    key.extend_from_slice(python.as_os_str().as_encoded_bytes());
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || repo_root().join("target"),
        |d| repo_root().join(PathBuf::from(d)),
    );
    std::fs::create_dir_all(&target).expect("create target dir");
    let venv = target.join(format!("sdk-venv-{:016x}", fnv1a(&key)));
    let ready = venv.join(".rotd-ready");
    let py = venv.join("bin").join("python");

    let _guard = lock(&target.join(format!(
        "{}.lock",
        venv.file_name().expect("name").to_string_lossy()
    )));
    if ready.exists() && py.exists() {
        return py;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let start = rotd_core::Clock::system().instant();
    eprintln!(
        "creating {} with {} (first run only)",
        venv.display(),
        python.display()
    );
    run_checked(
        "creating the SDK virtualenv (is python3-venv installed?)",
        Command::new(&python).arg("-m").arg("venv").arg(&venv),
    );
    run_checked(
        "installing tests/sdk/requirements.txt from PyPI",
        Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-q",
                "-r",
            ])
            .arg(&requirements),
    );
    run_checked(
        "importing the vendor SDKs",
        Command::new(&py).args([
            "-c",
            "import alibabacloud_kms20160120.client, alibabacloud_tea_openapi.exceptions, \
             alibabacloud_secretsmanager_client_v2.secret_manager_cache_client_builder, pymysql",
        ]),
    );
    std::fs::write(&ready, b"ok\n").expect("mark venv ready");
    eprintln!(
        "virtualenv ready in {:?}",
        rotd_core::Clock::system().elapsed(start)
    );
    py
}

fn read_key(path: &Path) -> (String, String) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("access key json");
    (
        v["AccessKeyId"].as_str().expect("AccessKeyId").to_owned(),
        v["AccessKeySecret"].as_str().expect("AccessKeySecret").to_owned(),
    )
}

/// The API address from the "rotd started." log line (`api=127.0.0.1:PORT`).
fn api_addr(daemon: &Daemon) -> String {
    let mut addr = None;
    wait_for("rotd started.", Duration::from_secs(60), || {
        daemon.assert_alive();
        let log = daemon.log_text();
        addr = log
            .lines()
            .find(|l| l.contains("rotd started."))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("api=")))
            .map(str::to_owned);
        addr.is_some()
    });
    addr.expect("api address")
}

/// Starts a fresh `rotd serve`, creates the restricted key, and runs the script's `parts`; asserts it passed.
fn run_sdk_script(parts: &[&str]) {
    run_sdk_script_with(parts, None);
}

/// A declared database-backed secret for the script: MariaDB behind `app/db` (dual accounts, create mode).
struct RdsSetup<'a> {
    db: &'a MariaDb,
}

/// Like [`run_sdk_script`]; with `rds`, also declares `app/db` on that MariaDB, waits for the daemon to
/// create its accounts (no `rotd rotate`), and hands the script the database's address.
fn run_sdk_script_with(parts: &[&str], rds: Option<RdsSetup<'_>>) {
    let py = venv_python();
    let env = Env::new();
    env.write(
        "rotd.toml",
        "data_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
    );
    env.write(
        "secrets.d/rotated.toml",
        "name = \"app/cache/rotated\"\ntype = \"Generic\"\n[rotation]\ninterval = \"30d\"\n\
         [generic.generate]\nlength = 24\n",
    );
    if let Some(rds) = &rds {
        declare_rds(&env, rds.db);
    }
    let daemon = Daemon::start(&env, "serve.log", &[]);
    let api = api_addr(&daemon);
    wait_for("the declared secret", Duration::from_secs(30), || {
        env.run(&["secret", "describe", "app/cache/rotated"]).code == 0
    });
    if rds.is_some() {
        first_rds_value(&env, &daemon);
    }
    let ro_file = env.path("ro-key.json");
    env.ok(&[
        "access-key",
        "create",
        "--action",
        "kms:GetSecretValue",
        "--secret",
        "app/*",
        "--secret-file",
        ro_file.to_str().expect("utf-8 path"),
    ]);
    let quickstart = parts.contains(&"quickstart").then(|| quickstart_setup(&env));
    let admin = read_key(&env.path("data/admin-access-key.json"));
    let ro = read_key(&ro_file);
    let ca = env.path("data/tls/ca.pem");
    assert!(ca.exists(), "no CA at {}", ca.display());

    let start = rotd_core::Clock::system().instant();
    let out = Command::new(&py)
        .arg("-B")
        .arg(sdk_dir().join("test_kms_sdk.py"))
        .args(parts)
        .current_dir(env.dir.path())
        .env_clear()
        .envs(rds.iter().flat_map(|r| {
            [
                ("ROTD_MYSQL_HOST", r.db.host().to_owned()),
                ("ROTD_MYSQL_PORT", r.db.port().to_string()),
            ]
        }))
        .envs(quickstart.iter().flat_map(|q| {
            [
                ("ROTD_QS_AK_ID", q.key.0.clone()),
                ("ROTD_QS_AK_SECRET", q.key.1.clone()),
                ("ROTD_QS_VALUE", q.value.clone()),
            ]
        }))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.dir.path())
        .env("PYTHONUNBUFFERED", "1")
        .env("ROTD_ENDPOINT", &api)
        .env("ROTD_CA", &ca)
        .env("ROTD_ADMIN_AK_ID", &admin.0)
        .env("ROTD_ADMIN_AK_SECRET", &admin.1)
        .env("ROTD_RO_AK_ID", &ro.0)
        .env("ROTD_RO_AK_SECRET", &ro.1)
        .env("ROTD_BIN", rotd_bin())
        .env("ROTD_CONFIG_PATH", env.config())
        .output()
        .expect("run tests/sdk/test_kms_sdk.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    daemon.assert_alive();
    assert!(
        out.status.success(),
        "test_kms_sdk.py {parts:?} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- rotd log\n{}",
        out.status,
        daemon.log_text()
    );
    eprintln!(
        "test_kms_sdk.py {parts:?} passed in {:?}:\n{stdout}",
        rotd_core::Clock::system().elapsed(start)
    );
    let log = daemon.stop();
    assert!(!log.contains("panicked"), "{log}");
}

/// What the quickstart's operator made for the application: its access key and the secret's value.
struct Quickstart {
    key: (String, String),
    value: String,
}

/// The operator's half of the vendor's quickstart, with rotd's CLI in place of the console: a generic
/// secret with the initial version left at its default, a tag and a description, and an access key
/// holding the policies the quickstart grants the application.
fn quickstart_setup(env: &Env) -> Quickstart {
    let value = "quickstart-Passw0rd!";
    let r = env.run_stdin(
        &[
            "-o",
            "json",
            "secret",
            "create",
            "app/quickstart/db-password",
            "--value-stdin",
            "--tag",
            "env=prod",
            "--description",
            "the quickstart's database password",
        ],
        value.as_bytes(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let created: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(created["VersionId"], "v1", "the initial version defaults to v1");
    // A secret declared in a file gets the same default for the version its file's value is stored as.
    let declared = env.json(&["secret", "get", "app/cache/rotated"]);
    assert_eq!(declared["VersionId"], "v1", "{declared}");
    let file = env.path("quickstart-key.json");
    env.ok(&[
        "access-key",
        "create",
        "--policy",
        "AliyunKMSSecretUserAccess",
        "--policy",
        "AliyunKMSCryptoUserAccess",
        "--secret",
        "app/*",
        "--secret-file",
        file.to_str().expect("utf-8 path"),
    ]);
    Quickstart {
        key: read_key(&file),
        value: value.to_owned(),
    }
}

/// Writes the 0600 admin credential file and `secrets.d/app-db.toml` (Rds, mysql, dual, create mode).
fn declare_rds(env: &Env, db: &MariaDb) {
    use std::os::unix::fs::PermissionsExt;
    db.admin_sql("CREATE DATABASE shop");
    let admin_file = env.path("rds-admin.json");
    let admin = serde_json::json!({"AccountName": db.admin_user(), "AccountPassword": db.admin_password()});
    std::fs::write(&admin_file, admin.to_string()).expect("write rds-admin.json");
    std::fs::set_permissions(&admin_file, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let admin_path = serde_json::Value::String(admin_file.to_str().expect("utf-8 path").to_owned());
    env.write(
        "secrets.d/app-db.toml",
        &format!(
            "name = \"app/db\"\ntype = \"Rds\"\n[rds]\nengine = \"mysql\"\nmode = \"dual\"\n\
             host = \"{}\"\nport = {}\ntls = \"disable\"\nadmin = {{ file = {admin_path} }}\n[rds.account]\n\
             create = {{ prefix = \"appx\", databases = [\"shop\"], privilege = \"ReadWrite\" }}\n",
            db.host(),
            db.port()
        ),
    );
    env.ok(&["check"]);
}

/// Waits for the declared `app/db` to have its first value: the daemon creates the accounts as soon as
/// it finds the file, with no `rotd rotate` (a user deploying right after declaring it reads it at once).
fn first_rds_value(env: &Env, daemon: &Daemon) {
    let deadline = rotd_core::Clock::system().instant() + Duration::from_secs(60);
    loop {
        daemon.assert_alive();
        if env
            .run(&["secret", "get", "app/db", "--stage", "ACSPrevious"])
            .code
            == 0
        {
            break;
        }
        assert!(
            rotd_core::Clock::system().instant() < deadline,
            "app/db has no value a minute after start:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn vendor_sdk_v3_signature_rds_and_caching_client() {
    run_sdk_script(&["v3", "rds-v3", "cache"]);
}

/// Issue 18: the vendor's quickstart end to end, read with only endpoint, CA file and a preset access key.
#[test]
fn vendor_quickstart_with_default_initial_version_and_preset_key() {
    run_sdk_script(&["quickstart"]);
}

#[test]
fn vendor_sdk_v2_signature() {
    run_sdk_script(&["v2", "rds-v2"]);
}

/// Issue 5: the caching client reads a rotated, database-backed Rds secret and sees the new value after
/// refresh; both dual-mode accounts keep logging in to the real MariaDB.
#[test]
fn caching_client_rds_rotation_on_mariadb() {
    let db = MariaDb::start();
    run_sdk_script_with(&["rds-rotation"], Some(RdsSetup { db: &db }));
}
