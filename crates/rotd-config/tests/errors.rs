//! One load reports every problem of every file, each at the right `file:line:col`.

use std::fs;
use std::path::{Path, PathBuf};

use rotd_config::{ConfigError, ConfigErrors, load, load_daemon};

/// Secret-looking values used in the broken files; no error message may contain them.
const LEAKS: [&str; 3] = ["hunter2-inline", "s3cr3t-import", "t0ken-in-redis"];

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).expect("write test file");
    p
}

const RDS_OK: &str = r#"
[rds]
engine = "mysql"
mode = "dual"
host = "db.internal"
admin = { file = "admin.json" }
[rds.account]
create = { prefix = "app", databases = ["app"], privilege = "ReadWrite" }
"#;

/// Writes rotd.toml and one secrets.d file per kind of mistake; returns the secrets.d path.
fn broken_tree(root: &Path) -> PathBuf {
    write(root, "rotd.toml", "data_dir = \"data\"\n");
    let s = root.join("secrets.d");
    fs::create_dir(&s).expect("secrets.d");
    // Not a .toml file: ignored even though it is not TOML at all.
    write(&s, "README", "this is = = not toml");

    write(&s, "a-valid.toml", "name = \"t/dup\"\ntype = \"Generic\"\n");
    write(
        &s,
        "b-unknown-key.toml",
        "name = \"t/unknown\"\ntype = \"Generic\"\n\n[rotation]\nintervall = \"30d\"\n",
    );
    write(
        &s,
        "c-bounds.toml",
        &format!("name = \"t/bounds\"\ntype = \"Rds\"\n[rotation]\ninterval = \"1h\"\n{RDS_OK}"),
    );
    write(&s, "d-bad-name.toml", "type = \"Generic\"\nname = \"bad name\"\n");
    write(
        &s,
        "e-inline.toml",
        "name = \"t/inline\"\ntype = \"Generic\"\n[generic]\ninitial_value = \"hunter2-inline\"\n",
    );
    write(
        &s,
        "f-inline-import.toml",
        &format!(
            "name = \"t/import\"\ntype = \"Rds\"\n{}",
            RDS_OK.replace(
                r#"create = { prefix = "app", databases = ["app"], privilege = "ReadWrite" }"#,
                r#"import = { user = "app", password = "s3cr3t-import" }"#
            )
        ),
    );
    write(
        &s,
        "g-password-key.toml",
        "name = \"t/redis\"\ntype = \"Redis\"\n[redis]\nhost = \"r.internal\"\n  password = \"t0ken-in-redis\"\n",
    );
    write(
        &s,
        "h-wrong-section.toml",
        &format!("name = \"t/wrong\"\ntype = \"Generic\"\n{RDS_OK}"),
    );
    write(
        &s,
        "i-dup.toml",
        "# same name as a-valid.toml\nname = \"t/dup\"\ntype = \"Generic\"\n",
    );
    write(
        &s,
        "j-bad-tag.toml",
        "name = \"t/tag\"\ntype = \"Generic\"\n[tags]\nteam = \"ok\"\naliyun_env = \"prod\"\n",
    );
    write(&s, "k-syntax.toml", "name = \"t/syntax\"\ntype = \"Generic\n");
    write(
        &s,
        "l-many.toml",
        concat!(
            "name = \"t/many\"\n",            // 1
            "type = \"Ram\"\n",               // 2: not a type
            "cmk = \"\"\n",                   // 3
            "[rotation]\n",                   // 4
            "interval = \"7d\"\n",            // 5
            "window = \"8d\"\n",              // 6
            "timezone = \"Europe/Berlin\"\n", // 7
        ),
    );
    write(
        &s,
        "m-ram.toml",
        concat!(
            "name = \"t/ram\"\n",                              // 1
            "type = \"RAMCredentials\"\n",                     // 2
            "[rotation]\n",                                    // 3
            "interval = \"7d\"\n",                             // 4
            "[ram]\n",                                         // 5
            "endpoint = \"not a host\"\n",                     // 6
            "delete_after = \"7d\"\n",                         // 7
            "admin = { file = \"/x\", credential = \"y\" }\n", // 8
        ),
    );
    s
}

fn short(e: &ConfigError) -> (String, usize, usize, String) {
    (
        e.file
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned(),
        e.line,
        e.col,
        e.key.clone(),
    )
}

fn find<'a>(errors: &'a ConfigErrors, file: &str, key: &str) -> &'a ConfigError {
    errors
        .iter()
        .find(|e| e.file.ends_with(file) && e.key == key)
        .unwrap_or_else(|| panic!("no error for {file} {key} in:\n{errors}"))
}

#[test]
fn one_load_reports_every_error_with_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = broken_tree(dir.path());
    let errors = load(&dir.path().join("rotd.toml")).expect_err("broken config");
    let text = errors.to_string();
    for leak in LEAKS {
        assert!(!text.contains(leak), "{leak} leaked into:\n{text}");
        assert!(!format!("{errors:?}").contains(leak), "{leak} leaked into Debug");
    }

    let got: Vec<_> = errors.iter().map(short).collect();
    let want: Vec<(String, usize, usize, String)> = [
        ("b-unknown-key.toml", 5, 1, "rotation.intervall"),
        ("c-bounds.toml", 4, 12, "rotation.interval"),
        ("d-bad-name.toml", 2, 8, "name"),
        ("e-inline.toml", 4, 17, "generic.initial_value"),
        ("f-inline-import.toml", 10, 37, "rds.account.import.password"),
        ("g-password-key.toml", 5, 3, "redis.password"),
        ("h-wrong-section.toml", 4, 1, "rds"),
        ("i-dup.toml", 2, 8, "name"),
        ("j-bad-tag.toml", 5, 1, "tags.aliyun_env"),
        // toml reports an unterminated string where the closing quote is missing: the line's end.
        ("k-syntax.toml", 2, 16, "type"),
        ("l-many.toml", 2, 8, "type"),
        ("l-many.toml", 3, 7, "cmk"),
        ("l-many.toml", 6, 10, "rotation.window"),
        ("l-many.toml", 7, 12, "rotation.timezone"),
        // A missing key is reported on its table's header.
        ("m-ram.toml", 5, 1, "ram.user_name"),
        ("m-ram.toml", 6, 12, "ram.endpoint"),
        ("m-ram.toml", 7, 16, "ram.delete_after"),
        ("m-ram.toml", 8, 9, "ram.admin"),
    ]
    .into_iter()
    .map(|(f, l, c, k)| (f.to_owned(), l, c, k.to_owned()))
    .collect();
    assert_eq!(got, want, "full output:\n{text}");

    // Every line reads file:line:col: key: message, with the absolute file path.
    let first = errors.iter().next().expect("an error");
    assert_eq!(
        first.to_string(),
        format!(
            "{}:5:1: rotation.intervall: {}",
            s.join("b-unknown-key.toml").display(),
            first.message
        )
    );
    assert_eq!(text.lines().count(), errors.len());

    let m = |file: &str, key: &str| find(&errors, file, key).message.clone();
    assert!(
        m("b-unknown-key.toml", "rotation.intervall")
            .starts_with("unknown field `intervall`, expected one of")
    );
    assert_eq!(
        m("c-bounds.toml", "rotation.interval"),
        "1h is out of bounds for Rds secrets; allowed is 6h to 365d"
    );
    assert!(m("d-bad-name.toml", "name").contains("character ' ' is not allowed"));
    for (file, key) in [
        ("e-inline.toml", "generic.initial_value"),
        ("f-inline-import.toml", "rds.account.import.password"),
        ("g-password-key.toml", "redis.password"),
    ] {
        let msg = m(file, key);
        assert!(
            msg.starts_with("secret material is never written inline"),
            "{msg}"
        );
        assert!(msg.contains("file") && msg.contains("credential") && msg.contains("secret"));
    }
    assert_eq!(
        m("h-wrong-section.toml", "rds"),
        "section [rds] does not apply to type Generic"
    );
    assert_eq!(
        m("i-dup.toml", "name"),
        format!(
            "secret t/dup is already declared in {}",
            s.join("a-valid.toml").display()
        )
    );
    assert!(m("j-bad-tag.toml", "tags.aliyun_env").contains("must not start with aliyun"));
    assert!(
        m("k-syntax.toml", "type").contains("invalid basic string"),
        "{text}"
    );
    assert!(m("l-many.toml", "type").contains("unknown type"));
    assert_eq!(
        m("m-ram.toml", "ram.delete_after"),
        "grace (1d) plus ram.delete_after (7d) must be shorter than the time between rotations (7d); a ram user holds at most two accesskeys"
    );
    assert_eq!(m("m-ram.toml", "ram.user_name"), "is required");
}

#[test]
fn semantic_errors_of_one_file_are_all_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rotd.toml", "");
    let s = dir.path().join("secrets.d");
    fs::create_dir(&s).expect("secrets.d");
    write(
        &s,
        "db.toml",
        concat!(
            "name = \"t/db\"\n",                  // 1
            "type = \"Rds\"\n",                   // 2
            "[rotation]\n",                       // 3
            "interval = \"30d\"\n",               // 4
            "window = \"31d\"\n",                 // 5
            "[rds]\n",                            // 6
            "engine = \"mysql\"\n",               // 7
            "mode = \"double\"\n",                // 8
            "host = \"db:3306\"\n",               // 9
            "tls = \"disable\"\n",                // 10
            "ca_file = \"ca.pem\"\n",             // 11
            "admin = { credential = \"a/b\" }\n", // 12
            "[rds.account]\n",                    // 13
            "import = { user = \"a_very_long_application_user_xy\", password = { secret = \"x\" } }\n", // 14
        ),
    );
    let errors = load(&dir.path().join("rotd.toml")).expect_err("broken");
    let got: Vec<_> = errors.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (5, "rotation.window"),
            (8, "rds.mode"),
            (9, "rds.host"),
            (11, "rds.ca_file"),
            (12, "rds.admin.credential"),
        ],
        "{errors}"
    );
    // With mode fixed, the 31-character name still fits MySQL's 32 but its clone does not.
    let text = fs::read_to_string(s.join("db.toml"))
        .expect("read")
        .replace("double", "dual");
    write(&s, "db.toml", &text);
    let errors = load(&dir.path().join("rotd.toml")).expect_err("broken");
    let e = find(&errors, "db.toml", "rds.account.import.user");
    assert_eq!((e.line, e.col), (14, 19));
    assert_eq!(
        e.message,
        "the clone account name a_very_long_application_user_xy_clone is 37 characters long; mysql allows at most 32; shorten the name"
    );
}

#[test]
fn daemon_file_errors_stop_before_the_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "rotd.toml",
        concat!(
            "[store]\n",                       // 1
            "engine = \"postgres\"\n",         // 2
            "[keyring]\n",                     // 3
            "file = \"k.json\"\n",             // 4
            "credential = \"rotd-keyring\"\n", // 5
            "[api]\n",                         // 6
            "listen = \"localhost:8443\"\n",   // 7
            "[log]\n",                         // 8
            "format = \"xml\"\n",              // 9
        ),
    );
    // secrets.d does not exist; that is not reported while rotd.toml itself is broken.
    let errors = load(&dir.path().join("rotd.toml")).expect_err("broken");
    let got: Vec<_> = errors.iter().map(|e| (e.line, e.col, e.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (2, 10, "store.engine"),
            (5, 14, "keyring.credential"),
            (7, 10, "api.listen"),
            (9, 10, "log.format"),
        ],
        "{errors}"
    );
    assert_eq!(
        errors.0[0].message,
        "the postgres store is not supported yet; use sqlite"
    );
    assert_eq!(errors.0[3].message, "must be one of text, json, journald");
    assert!(load_daemon(&dir.path().join("rotd.toml")).is_err());
}

#[test]
fn a_missing_secrets_dir_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "rotd.toml",
        "data_dir = \"d\"\nsecrets_dir = \"nope.d\"\n",
    );
    let daemon = load_daemon(&dir.path().join("rotd.toml")).expect("daemon file is fine");
    assert_eq!(daemon.secrets_dir, dir.path().join("nope.d"));
    let errors = load(&dir.path().join("rotd.toml")).expect_err("missing dir");
    assert_eq!(errors.len(), 1);
    let e = &errors.0[0];
    assert_eq!((e.line, e.col, e.key.as_str()), (2, 15, "secrets_dir"));
    assert_eq!(
        e.message,
        format!(
            "secrets directory {} does not exist",
            dir.path().join("nope.d").display()
        )
    );
}

#[test]
fn an_unknown_daemon_key_is_a_toml_error_with_its_key_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "rotd.toml",
        "[api]\nlisten = \"127.0.0.1:1\"\nprot = 3\n",
    );
    let errors = load_daemon(&dir.path().join("rotd.toml")).expect_err("unknown key");
    let e = &errors.0[0];
    assert_eq!((e.line, e.col, e.key.as_str()), (3, 1, "api.prot"));
    assert_eq!(
        e.message,
        "unknown field `prot`, expected one of `listen`, `tls_names`, `header_timeout`, `body_timeout`, `max_connections`, `per_source_rate`, `per_source_burst`, `trusted_proxies`"
    );
}

#[test]
fn defaults_fill_an_empty_daemon_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rotd.toml", "");
    fs::create_dir(dir.path().join("secrets.d")).expect("secrets.d");
    let cfg = load(&dir.path().join("rotd.toml")).expect("empty file is valid");
    let d = &cfg.daemon;
    assert_eq!(d.data_dir, dir.path().join("data"));
    assert_eq!(d.secrets_dir, dir.path().join("secrets.d"));
    assert_eq!(
        d.keyring,
        rotd_config::KeyringSource::File(dir.path().join("data/keyring.json"))
    );
    assert_eq!(d.default_cmk, "default");
    assert_eq!(d.api.tls_names, ["localhost", "127.0.0.1"]);
    assert_eq!(d.log.level, "info");
    assert!(cfg.secrets.is_empty());
}

#[test]
fn a_cron_window_that_could_skip_a_firing_is_refused_at_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rotd.toml", "");
    let s = dir.path().join("secrets.d");
    fs::create_dir(&s).expect("secrets.d");
    write(
        &s,
        "g.toml",
        concat!(
            "name = \"t/g\"\n",           // 1
            "type = \"Generic\"\n",       // 2
            "[rotation]\n",               // 3
            "schedule = \"0 3 * * *\"\n", // 4: every day at 03:00
            "window = \"2d\"\n",          // 5: longer than the 1-day gap
        ),
    );
    let errors = load(&dir.path().join("rotd.toml")).expect_err("refused");
    let e = find(&errors, "g.toml", "rotation.window");
    assert_eq!(e.line, 5);
    assert_eq!(
        e.message,
        "must be shorter than the shortest gap between the schedule's firings (1d), or firings are skipped"
    );
    // A window inside the gap is fine.
    write(
        &s,
        "g.toml",
        "name = \"t/g\"\ntype = \"Generic\"\n[rotation]\nschedule = \"0 3 * * *\"\nwindow = \"2h\"\n",
    );
    load(&dir.path().join("rotd.toml")).expect("a 2h window in a daily schedule");
}

#[test]
fn check_refuses_what_the_sql_backend_would_refuse_at_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rotd.toml", "");
    let s = dir.path().join("secrets.d");
    fs::create_dir(&s).expect("secrets.d");
    write(dir.path(), "admin.json", "{}");
    // 60 characters: the logins fit PostgreSQL's 63 (the clone is given explicitly), but the shared
    // owner role `<user>_owner` would be 66 characters long.
    let user = "a".repeat(60);
    write(
        &s,
        "pg.toml",
        &format!(
            concat!(
                "name = \"t/pg\"\n",              // 1
                "type = \"Rds\"\n",               // 2
                "[rds]\n",                        // 3
                "engine = \"postgres\"\n",        // 4
                "mode = \"dual\"\n",              // 5
                "host = \"db\"\n",                // 6
                "database = \"app-db\"\n",        // 7
                "admin = {{ secret = \"x\" }}\n", // 8
                "[rds.account]\n",                // 9
                "import = {{ user = \"{}\", password = {{ secret = \"y\" }}, clone_user = \"app_b\" }}\n", // 10
            ),
            user
        ),
    );
    let errors = load(&dir.path().join("rotd.toml")).expect_err("refused");
    let db = find(&errors, "pg.toml", "rds.database");
    assert_eq!(db.line, 7);
    assert!(db.message.contains("only A-Z a-z 0-9 _"), "{}", db.message);
    let e = errors
        .iter()
        .find(|e| e.key.starts_with("rds.account.import"))
        .unwrap_or_else(|| panic!("no account error: {errors}"));
    assert_eq!(e.line, 10, "{errors}");
    assert!(e.message.contains("owner role"), "{}", e.message);
}

#[test]
fn per_target_must_leave_slots_for_other_hosts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rotd.toml");
    write(
        dir.path(),
        "rotd.toml",
        "[rotation]\nmax_concurrent = 128\nper_backend = 128\nper_target = 96\n",
    );
    let d = load_daemon(&path).expect("a bulk tuning");
    assert_eq!(
        (
            d.rotation.max_concurrent,
            d.rotation.per_backend,
            d.rotation.per_target
        ),
        (128, 128, 96)
    );
    write(dir.path(), "rotd.toml", "[rotation]\n");
    assert_eq!(load_daemon(&path).expect("defaults").rotation.per_target, 1);
    write(
        dir.path(),
        "rotd.toml",
        "[rotation]\nmax_concurrent = 8\nper_target = 8\n",
    );
    let errors = load_daemon(&path).expect_err("every slot to one host");
    assert_eq!(errors.0[0].line, 3, "{errors}");
    assert_eq!(errors.0[0].key, "rotation.per_target");
    assert_eq!(
        errors.0[0].message,
        "must be less than rotation.max_concurrent (8), so one hung host cannot hold every slot"
    );
    write(dir.path(), "rotd.toml", "[rotation]\nper_target = 0\n");
    let errors = load_daemon(&path).expect_err("zero");
    assert_eq!(errors.0[0].message, "must be between 1 and 1024");
    // One slot in all and one per host is the one configuration where a host may take every slot.
    write(
        dir.path(),
        "rotd.toml",
        "[rotation]\nmax_concurrent = 1\nper_target = 1\n",
    );
    load_daemon(&path).expect("a single slot");
}

#[test]
fn retry_and_timeout_durations_beyond_what_the_engine_uses_are_refused_at_their_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "rotd.toml",
        concat!(
            "[rotation]\n",                  // 1
            "step_timeout = \"2d\"\n",       // 2
            "backoff = \"10m\"\n",           // 3
            "backoff_max = \"5m\"\n",        // 4
            "catch_up = \"99999999999d\"\n", // 5
        ),
    );
    let errors = load_daemon(&dir.path().join("rotd.toml")).expect_err("out of bounds");
    let got: Vec<_> = errors
        .iter()
        .map(|e| (e.line, e.key.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (2, "rotation.step_timeout", "must be at most 1d"),
            (
                4,
                "rotation.backoff_max",
                "must not be shorter than rotation.backoff (10m)"
            ),
            (5, "rotation.catch_up", "must be at most 7d"),
        ],
        "{errors}"
    );
    // A first delay longer than the default cap names the cap it collides with.
    write(dir.path(), "rotd.toml", "[rotation]\nbackoff = \"2h\"\n");
    let errors = load_daemon(&dir.path().join("rotd.toml")).expect_err("above the default cap");
    assert_eq!(
        errors.0[0].message,
        "must not be longer than rotation.backoff_max (1h, the default)"
    );
    write(
        dir.path(),
        "rotd.toml",
        "[rotation]\nbackoff = \"1d\"\nbackoff_max = \"1d\"\n",
    );
    assert!(
        load_daemon(&dir.path().join("rotd.toml")).is_ok(),
        "the bounds themselves are fine"
    );
}

#[test]
fn api_connection_limits_are_checked_at_their_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "rotd.toml",
        "[api]\nheader_timeout = \"0s\"\nbody_timeout = \"2h\"\nmax_connections = 0\n",
    );
    let errors = load_daemon(&dir.path().join("rotd.toml")).expect_err("invalid limits");
    let keys: Vec<(usize, &str)> = errors.0.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        keys,
        [
            (2, "api.header_timeout"),
            (3, "api.body_timeout"),
            (4, "api.max_connections")
        ],
        "{errors}"
    );
    write(
        dir.path(),
        "rotd.toml",
        "[api]\nheader_timeout = \"5s\"\nbody_timeout = \"1m\"\nmax_connections = 64\n",
    );
    let d = load_daemon(&dir.path().join("rotd.toml")).expect("valid limits");
    assert_eq!(d.api.header_timeout, std::time::Duration::from_secs(5));
    assert_eq!(d.api.body_timeout, std::time::Duration::from_secs(60));
    assert_eq!(d.api.max_connections, 64);
}

#[test]
fn api_source_budget_and_trusted_proxies_are_checked_at_their_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "rotd.toml",
        "[api]\nper_source_rate = 0\nper_source_burst = 2000000\ntrusted_proxies = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/33\",\n  \"lb.example\",\n]\n",
    );
    let errors = load_daemon(&dir.path().join("rotd.toml")).expect_err("invalid budget");
    let keys: Vec<(usize, &str)> = errors.0.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        keys,
        [
            (2, "api.per_source_rate"),
            (3, "api.per_source_burst"),
            (6, "api.trusted_proxies"),
            (7, "api.trusted_proxies")
        ],
        "{errors}"
    );
    let d = load_daemon_text(dir.path(), "[api]\n").expect("defaults");
    assert_eq!((d.api.per_source_rate, d.api.per_source_burst), (100, 200));
    assert!(d.api.trusted_proxies.is_empty());
    let d = load_daemon_text(
        dir.path(),
        "[api]\nper_source_rate = 5\nper_source_burst = 10\ntrusted_proxies = [\"10.0.0.1\", \"fd00::/8\"]\n",
    )
    .expect("valid budget");
    assert_eq!((d.api.per_source_rate, d.api.per_source_burst), (5, 10));
    let shown: Vec<String> = d.api.trusted_proxies.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.0.0.1/32", "fd00::/8"]);
}

fn load_daemon_text(dir: &Path, text: &str) -> Result<rotd_config::DaemonConfig, ConfigErrors> {
    write(dir, "rotd.toml", text);
    load_daemon(&dir.join("rotd.toml"))
}
