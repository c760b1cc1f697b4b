//! Rules of the secret-file format, one file at a time.

use std::fs;
use std::path::{Path, PathBuf};

use rotd_config::{Accounts, ConfigErrors, EcsCredential, GenericSpec, SecretRef, SecretSpec, Target, load};

/// Loads a tree with an empty rotd.toml and one secret file; returns the spec or the errors.
fn one(text: &str) -> (tempfile::TempDir, Result<SecretSpec, ConfigErrors>) {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("rotd.toml"),
        "[keyring]\ndefault_cmk = \"main\"\n",
    )
    .expect("rotd.toml");
    let s = dir.path().join("secrets.d");
    fs::create_dir(&s).expect("secrets.d");
    fs::write(s.join("x.toml"), text).expect("secret file");
    let r = load(&dir.path().join("rotd.toml")).map(|mut c| {
        assert_eq!(c.secrets.len(), 1);
        c.secrets.remove(0)
    });
    (dir, r)
}

fn ok(text: &str) -> (PathBuf, SecretSpec) {
    let (dir, r) = one(text);
    let spec = r.unwrap_or_else(|e| panic!("expected valid:\n{e}"));
    (dir.path().to_owned(), spec)
}

/// The (line, key, message) of every error.
fn errs(text: &str) -> Vec<(usize, String, String)> {
    let (_dir, r) = one(text);
    let e = r.expect_err("expected errors");
    e.iter()
        .map(|e| (e.line, e.key.clone(), e.message.clone()))
        .collect()
}

fn generic(spec: &SecretSpec) -> &GenericSpec {
    match &spec.target {
        Target::Generic(g) => g,
        other => panic!("not generic: {other:?}"),
    }
}

#[test]
fn a_minimal_generic_secret_gets_every_default() {
    let (_, s) = ok("name = \"a\"\ntype = \"generic\"\n");
    assert_eq!(s.cmk, "main", "the daemon's default_cmk");
    assert!(s.rotation.is_none());
    assert!(s.description.is_empty() && s.tags.is_empty());
    let g = generic(&s);
    assert_eq!(g.generate, rotd_core::PasswordPolicy::default());
    assert!(g.initial_value.is_none() && g.exec.is_none());
}

#[test]
fn secret_refs_resolve_and_validate() {
    let (dir, s) = ok("name = \"a\"\ntype = \"Generic\"\n[generic]\ninitial_value = { file = \"v/x.pw\" }\n");
    let dir = std::path::absolute(&dir).expect("absolute");
    assert_eq!(
        generic(&s).initial_value,
        Some(SecretRef::File(dir.join("v/x.pw"))),
        "relative files resolve against rotd.toml's directory"
    );
    let (_, s) =
        ok("name = \"a\"\ntype = \"Generic\"\n[generic]\ninitial_value = { credential = \"tok\" }\n");
    assert_eq!(
        generic(&s).initial_value,
        Some(SecretRef::Credential("tok".into()))
    );

    let bad = |r: &str| {
        errs(&format!(
            "name = \"a\"\ntype = \"Generic\"\n[generic]\ninitial_value = {r}\n"
        ))
    };
    assert_eq!(
        bad("{}"),
        [(
            4,
            "generic.initial_value".into(),
            "set exactly one of file, credential or secret in a secret reference".into()
        )]
    );
    assert_eq!(
        bad("{ file = \"a\", field = \"b\" }")[0].1,
        "generic.initial_value.field"
    );
    assert_eq!(
        bad("{ secret = \"bad name\" }")[0].1,
        "generic.initial_value.secret"
    );
    assert_eq!(
        bad("{ credential = \"../x\" }")[0].1,
        "generic.initial_value.credential"
    );
    // Numbers, arrays and unknown keys such as `value` are refused as inline material too.
    for inline in ["123456", "[\"a\"]", "{ value = \"pw-in-table\" }"] {
        let e = bad(inline);
        assert!(
            e[0].2.starts_with("secret material is never written inline"),
            "{inline}: {e:?}"
        );
        assert!(!e[0].2.contains("123456") && !e[0].2.contains("pw-in-table"));
    }
}

#[test]
fn echoed_strings_never_reach_messages() {
    let e = errs("name = \"a\"\ntype = \"Redis\"\n[redis]\nport = \"hunter2-port\"\n");
    assert_eq!(e[0].1, "redis.port");
    assert_eq!(e[0].2, "invalid type: a string, expected u16");
}

#[test]
fn generic_rules() {
    let e = errs(concat!(
        "name = \"a\"\ntype = \"Generic\"\n",
        "[generic]\ninitial_value = { file = \"x\" }\ndata_type = \"blob\"\n",
        "[generic.generate]\nlength = 4\n",
        "[exec]\ncommand = [\"rotate.sh\"]\n",
    ));
    let keys: Vec<&str> = e.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        keys,
        [
            "generic.data_type",
            "generic.generate",
            "generic.generate.length",
            "exec.command"
        ],
        "{e:?}"
    );
    assert_eq!(
        e[1].2,
        "set only one of generic.initial_value and generic.generate"
    );
    assert_eq!(e[2].2, "length 4 is outside 8 to 128");
    assert!(e[3].2.contains("absolute path"));

    let (_, s) = ok(concat!(
        "name = \"a\"\ntype = \"Generic\"\n",
        "[generic.generate]\nlength = 16\nsymbols = \"!@\"\nexclude = \"0O\"\n",
        "[exec]\ncommand = [\"/bin/rotate\", \"--fast\"]\n",
    ));
    let g = generic(&s);
    assert_eq!(g.generate.length, 16);
    assert_eq!(g.generate.symbols, "!@");
    assert_eq!(g.exec.as_ref().map(|e| e.timeout.as_secs()), Some(30));
}

#[test]
fn type_sections_must_match() {
    assert_eq!(
        errs("name = \"a\"\ntype = \"Rds\"\n"),
        [(2, "type".into(), "type Rds needs a [rds] section".into())]
    );
    let e = errs("name = \"a\"\ntype = \"ECS\"\n[exec]\ncommand = [\"/x\"]\n");
    assert_eq!(e[0], (2, "type".into(), "type ECS needs a [ecs] section".into()));
    assert_eq!(
        e[1],
        (
            3,
            "exec".into(),
            "section [exec] does not apply to type ECS".into()
        )
    );
}

#[test]
fn rotation_rules() {
    let base = "name = \"a\"\ntype = \"Generic\"\n[rotation]\n";
    let e = |r: &str| errs(&format!("{base}{r}"));
    assert_eq!(
        e("")[0].2,
        "set one of rotation.interval (e.g. \"30d\") or rotation.schedule (a cron expression)"
    );
    assert_eq!(
        e("interval = \"1d\"\nschedule = \"0 3 * * *\"\n")[0].1,
        "rotation.schedule"
    );
    assert_eq!(e("schedule = \"0 3 * *\"\n")[0].1, "rotation.schedule");
    assert!(
        e("schedule = \"0 3 * * *\"\ntimezone = \"Berlin\"\n")[0]
            .2
            .contains("IANA")
    );
    assert!(e("interval = \"30 days\"\n")[0].2.contains("not of the form"));
    assert!(e("interval = \"30s\"\n")[0].2.contains("allowed is 1m to 365d"));

    let (_, s) = ok(&format!("{base}enabled = false\nschedule = \"0  3 * * 1-5\"\n"));
    let r = s.rotation.expect("rotation");
    assert!(!r.enabled);
    assert_eq!(
        r.schedule,
        rotd_core::RotationSchedule::Cron {
            expression: "0 3 * * 1-5".into(),
            timezone: "UTC".into()
        }
    );
}

#[test]
fn tag_rules() {
    let many: String = (0..21).map(|i| format!("k{i} = \"v\"\n")).collect();
    let e = errs(&format!("name = \"a\"\ntype = \"Generic\"\n[tags]\n{many}"));
    assert_eq!(
        e,
        [(3, "tags".into(), "tags: 21 tags given; the limit is 20".into())]
    );
    let e = errs("name = \"a\"\ntype = \"Generic\"\n[tags]\nteam = \"a;b\"\n");
    assert_eq!(e[0].1, "tags.team");
    assert!(e[0].2.starts_with("tag value:"));
}

const DB: &str = "host = \"10.0.0.1\"\nadmin = { file = \"/a\" }\n";

#[test]
fn polardb_is_always_dual() {
    let e = errs(&format!(
        "name = \"a\"\ntype = \"PolarDB\"\n[polardb]\nengine = \"mysql\"\nmode = \"single\"\n{DB}\
         [polardb.account]\ncreate = {{ prefix = \"app\", databases = [\"app\"], privilege = \"ReadWrite\" }}\n"
    ));
    assert_eq!(
        e[0],
        (
            5,
            "polardb.mode".into(),
            "polardb supports only mode = \"dual\"".into()
        )
    );

    let (_, s) = ok(&format!(
        "name = \"a\"\ntype = \"PolarDB\"\n[polardb]\nengine = \"mysql\"\n{DB}\
         [polardb.account]\ncreate = {{ prefix = \"app\", databases = [\"app\"], privilege = \"DMLOnly\" }}\n"
    ));
    let Target::PolarDb(db) = &s.target else {
        panic!("polardb")
    };
    assert_eq!(db.port, 3306);
    assert_eq!(db.database, None);
    assert_eq!(db.accounts.clone_user(), Some("app_clone"));
}

#[test]
fn db_account_rules() {
    let file = |mode: &str, account: &str| {
        format!(
            "name = \"a\"\ntype = \"Rds\"\n[rds]\nengine = \"postgres\"\nmode = \"{mode}\"\n{DB}[rds.account]\n{account}\n"
        )
    };
    // Standard and Privileged exist only for single accounts.
    let e = errs(&file(
        "dual",
        "create = { prefix = \"app\", databases = [\"app\"], privilege = \"Privileged\" }",
    ));
    assert_eq!(e[0].1, "rds.account.create.privilege");
    assert!(
        e[0].2
            .starts_with("must be one of ReadWrite, ReadOnly, DDLOnly, DMLOnly")
    );
    let (_, s) = ok(&file(
        "single",
        "create = { prefix = \"app\", databases = [\"app\"], privilege = \"Privileged\" }",
    ));
    let Target::Rds(db) = &s.target else { panic!("rds") };
    assert_eq!(db.accounts, Accounts::Single { user: "app".into() });
    assert_eq!(db.database.as_deref(), Some("postgres"));
    assert_eq!(
        s.extended_config().as_deref(),
        Some(r#"{"SecretSubType":"SingleUser","CustomData":{}}"#),
        "an unset instance id is left out"
    );

    let e = errs(&file(
        "single",
        "import = { user = \"app\", password = { file = \"/p\" }, clone_user = \"b\" }",
    ));
    assert_eq!(e[0].1, "rds.account.import.clone_user");
    let e = errs(&file(
        "dual",
        "import = { user = \"app-1\", password = { file = \"/p\" } }",
    ));
    assert!(e[0].2.contains("must start with a letter"));
    let e = errs(&file(
        "dual",
        "import = { user = \"app\", password = { file = \"/p\" }, clone_user = \"app\" }",
    ));
    assert_eq!(e[0].1, "rds.account.import.clone_user");
    let long = "u".repeat(64);
    let e = errs(&file(
        "single",
        &format!("import = {{ user = \"{long}\", password = {{ file = \"/p\" }} }}"),
    ));
    assert_eq!(
        e[0].2,
        "account name is 64 characters long; postgres allows at most 63"
    );
    let e = errs(&file("dual", ""));
    assert!(e[0].2.starts_with("set account.create"));
}

#[test]
fn redis_rules() {
    let (_, s) = ok(
        "name = \"a\"\ntype = \"Redis\"\n[redis]\nhost = \"r\"\nadmin = { file = \"/a\" }\nuser = \"app\"\nprivilege = \"ReadOnly\"\n",
    );
    let Target::Redis(r) = &s.target else {
        panic!("redis")
    };
    assert_eq!((r.port, r.tls, r.admin_user.as_str()), (6379, false, "default"));
    assert_eq!(r.clone_user.as_deref(), Some("app_clone"));
    let e = errs(
        "name = \"a\"\ntype = \"Redis\"\n[redis]\nhost = \"r\"\nadmin = { file = \"/a\" }\nuser = \"app\"\nclone_user = \"app\"\nnodes = [\"r1\"]\n",
    );
    let keys: Vec<&str> = e.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        keys,
        ["redis.privilege", "redis.clone_user", "redis.nodes"],
        "{e:?}"
    );
    assert_eq!(e[0].0, 3, "a missing key is reported on its table's header");
    assert_eq!(e[0].2, "is required");
}

#[test]
fn redis_overlap_mode_has_one_account_and_a_grace_shorter_than_the_interval() {
    let base = "name = \"a\"\ntype = \"Redis\"\n[rotation]\ninterval = \"7d\"\n[redis]\nhost = \"r\"\nadmin = { file = \"/a\" }\nuser = \"app\"\nprivilege = \"ReadWrite\"\n";
    let (_, s) = ok(&format!(
        "{base}mode = \"overlap\"\ndiscover = true\nregion_id = \"cn-hangzhou\"\n"
    ));
    let Target::Redis(r) = &s.target else {
        panic!("redis")
    };
    assert_eq!((r.clone_user.as_deref(), r.discover), (None, true));
    assert!(!s.is_dual());
    assert_eq!(
        s.grace,
        std::time::Duration::from_secs(86_400),
        "overlap's default grace is 24h"
    );
    assert_eq!(
        s.extended_config().as_deref(),
        Some(
            r#"{"SecretSubType":"SingleUser","AccountName":"app","AccountPrivilege":"ReadWrite","RegionId":"cn-hangzhou","CustomData":{}}"#
        )
    );
    // Dual mode keeps a grace of zero: the old account stays valid until the next rotation anyway.
    let (_, s) = ok(base);
    assert_eq!((s.grace, s.is_dual()), (std::time::Duration::ZERO, true));

    let e = errs(&format!("{base}mode = \"overlap\"\nclone_user = \"app2\"\n"));
    assert_eq!(e[0].1, "redis.clone_user", "{e:?}");
    let e = errs(&format!("{base}mode = \"both\"\n"));
    assert_eq!(e[0].1, "redis.mode", "{e:?}");
    // The old password must be gone before the next rotation adds another.
    let e = errs(&format!("grace = \"7d\"\n{base}mode = \"overlap\"\n"));
    assert_eq!((e[0].0, e[0].1.as_str()), (1, "grace"), "{e:?}");
    let short = base.replace("\"7d\"", "\"12h\"");
    let e = errs(&format!("{short}mode = \"overlap\"\n"));
    assert!(e[0].2.contains("the default grace is 24h"), "{e:?}");
    ok(&format!("grace = \"2h\"\n{short}mode = \"overlap\"\n"));
}

#[test]
fn redis_custom_acl_rules_are_checked() {
    let base =
        "name = \"a\"\ntype = \"Redis\"\n[redis]\nhost = \"r\"\nadmin = { file = \"/a\" }\nuser = \"app\"\n";
    let (_, s) = ok(&format!("{base}rules = \"~cache:*  +@read +@write\"\n"));
    let Target::Redis(r) = &s.target else {
        panic!("redis")
    };
    assert_eq!(
        r.privilege,
        rotd_config::RedisPrivilege::Custom("~cache:* +@read +@write".to_owned())
    );
    // A password in the rules is refused without being repeated.
    let e = errs(&format!("{base}rules = \"~* +@all >s3cr3t-in-rules\"\n"));
    assert_eq!((e[0].0, e[0].1.as_str()), (7, "redis.rules"), "{e:?}");
    assert!(
        e[0].2.contains("a password (>…)") && !e[0].2.contains("s3cr3t"),
        "{e:?}"
    );
    for owned in ["on", "off", "nopass", "resetpass", "reset"] {
        let e = errs(&format!("{base}rules = \"~* +@read {owned}\"\n"));
        assert_eq!(e[0].1, "redis.rules", "{owned}: {e:?}");
    }
    for dangerous in ["+@admin", "+@dangerous", "+acl", "allcommands", "+@all"] {
        let rules = format!("rules = \"~* {dangerous}\"\n");
        let e = errs(&format!("{base}{rules}"));
        assert!(e[0].2.contains("allow_dangerous = true"), "{dangerous}: {e:?}");
        ok(&format!("{base}{rules}allow_dangerous = true\n"));
    }
    let e = errs(&format!(
        "{base}privilege = \"ReadOnly\"\nrules = \"~* +@read\"\n"
    ));
    assert!(e[0].2.starts_with("set only one of"), "{e:?}");
}

#[test]
fn ecs_rules() {
    let fp = format!("SHA256:{}", "a".repeat(43));
    let base = format!(
        "name = \"a\"\ntype = \"ECS\"\n[ecs]\nhost = \"h\"\nhost_key_sha256 = \"{fp}\"\nuser = \"deploy\"\nadmin_user = \"root\"\nadmin = {{ file = \"/k\" }}\n"
    );
    let (_, s) = ok(&format!("{base}mode = \"ssh_key\"\nkey_type = \"rsa3072\"\n"));
    let Target::Ecs(e) = &s.target else { panic!("ecs") };
    assert_eq!(
        e.credential,
        EcsCredential::SshKey(rotd_config::SshKeyType::Rsa3072)
    );
    assert_eq!(
        s.extended_config().as_deref(),
        Some(r#"{"SecretSubType":"SSHKey","CustomData":{}}"#)
    );
    let e = errs(&format!("{base}mode = \"password\"\nkey_type = \"ed25519\"\n"));
    assert_eq!(e[0].1, "ecs.key_type");
    let e = errs(&base.replace(&fp, "abc"));
    let keys: Vec<&str> = e.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(keys, ["ecs.mode", "ecs.host_key_sha256"], "{e:?}");
}

#[test]
fn ecs_sudo_initial_value_and_authorized_keys() {
    let fp = format!("SHA256:{}", "a".repeat(43));
    let head = format!(
        "name = \"a\"\ntype = \"ECS\"\n[ecs]\nhost = \"h\"\nhost_key_sha256 = \"{fp}\"\nuser = \"deploy\"\nadmin = {{ file = \"/k\" }}\n"
    );
    let ecs = |s: &SecretSpec| match &s.target {
        Target::Ecs(e) => e.clone(),
        _ => panic!("ecs"),
    };
    // sudo follows the admin user unless the file says otherwise.
    let (_, s) = ok(&format!("{head}admin_user = \"rotd\"\nmode = \"password\"\n"));
    assert!(ecs(&s).sudo);
    assert!(
        s.creates_first_value(),
        "no initial value: the daemon rotates at once"
    );
    assert_eq!(s.grace, std::time::Duration::ZERO);
    let (_, s) = ok(&format!("{head}admin_user = \"root\"\nmode = \"password\"\n"));
    assert!(!ecs(&s).sudo);
    let (_, s) = ok(&format!(
        "{head}admin_user = \"rotd\"\nsudo = false\nmode = \"ssh_key\"\ninitial_value = {{ file = \"/iv\" }}\n"
    ));
    assert!(!ecs(&s).sudo);
    assert!(!s.creates_first_value(), "the file gives the first value");
    assert_eq!(ecs(&s).authorized_keys, ".ssh/authorized_keys");
    assert_eq!(
        s.grace,
        rotd_config::UNTIL_NEXT_ROTATION,
        "key pairs: the old key stays until the next rotation"
    );
    let names: Vec<String> = s.material_refs().into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["ecs.admin", "ecs.initial_value"]);
    let (_, s) = ok(&format!(
        "{}admin_user = \"rotd\"\nmode = \"ssh_key\"\nauthorized_keys = \"/etc/ssh/keys/%u\"\nsudo_password = {{ file = \"/sp\" }}\n",
        head.replacen("name = \"a\"\n", "name = \"a\"\ngrace = \"2h\"\n", 1)
    ));
    assert_eq!(s.grace, std::time::Duration::from_secs(7200));
    assert_eq!(ecs(&s).authorized_keys, "/etc/ssh/keys/%u");
    assert!(ecs(&s).sudo_password.is_some());

    let e = errs(&format!(
        "{head}admin_user = \"root\"\nmode = \"password\"\nsudo_password = {{ file = \"/sp\" }}\n"
    ));
    assert_eq!(e[0].1, "ecs.sudo_password", "{e:?}");
    let e = errs(&format!(
        "{head}admin_user = \"rotd\"\nmode = \"password\"\nauthorized_keys = \".ssh/k\"\n"
    ));
    assert_eq!(e[0].1, "ecs.authorized_keys", "{e:?}");
    for bad in ["../../etc/shadow", ".ssh/a b", ".ssh/$(id)", ".ssh/", ""] {
        let e = errs(&format!(
            "{head}admin_user = \"rotd\"\nmode = \"ssh_key\"\nauthorized_keys = \"{bad}\"\n"
        ));
        assert_eq!(e[0].1, "ecs.authorized_keys", "{bad}: {e:?}");
    }
}

#[test]
fn ram_grace_and_delete_after_default_to_a_day() {
    let (_, s) = ok(
        "name = \"a\"\ntype = \"RAMCredentials\"\n[ram]\nuser_name = \"u\"\nadmin = { credential = \"ak\" }\n",
    );
    let Target::Ram(r) = &s.target else { panic!("ram") };
    assert_eq!(s.grace.as_secs(), 86_400);
    assert_eq!(r.delete_after.as_secs(), 86_400);
    assert_eq!(r.endpoint, "ram.aliyuncs.com");
}

#[test]
fn every_type_may_set_a_grace_and_it_is_bounded() {
    let rds = "name = \"a\"\ntype = \"Rds\"\ngrace = \"2h\"\n[rds]\nengine = \"mysql\"\nmode = \"single\"\nhost = \"db\"\nadmin = { file = \"/a\" }\n[rds.account]\nimport = { user = \"app\", password = { file = \"/p\" } }\n";
    let (_, s) = ok(rds);
    assert_eq!(s.grace.as_secs(), 7200);
    let (_, g) = ok("name = \"g\"\ntype = \"Generic\"\n");
    assert_eq!(g.grace.as_secs(), 0, "nothing to revoke unless the file says so");
    let e = errs(&rds.replace("\"2h\"", "\"366d\""));
    assert_eq!(e, [(3, "grace".to_owned(), "must be at most 365d".to_owned())]);
}

#[test]
fn ram_grace_plus_delete_after_must_fit_between_rotations() {
    let base = "name = \"a\"\ntype = \"RAMCredentials\"\ngrace = \"4d\"\n[rotation]\ninterval = \"7d\"\n[ram]\nuser_name = \"u\"\nadmin = { credential = \"ak\" }\n";
    let (_, s) = ok(base);
    assert_eq!(s.grace.as_secs(), 4 * 86_400);
    let e = errs(&format!("{base}delete_after = \"3d\"\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].0, e[0].1.as_str()), (9, "ram.delete_after"));
    assert!(
        e[0].2
            .contains("must be shorter than the time between rotations (7d)"),
        "{e:?}"
    );
    // Without delete_after the default day is counted, and the error points at grace.
    let e = errs(&base.replace("\"4d\"", "\"6d\""));
    assert_eq!((e[0].0, e[0].1.as_str()), (3, "grace"), "{e:?}");
    // The old key name says where it went.
    let e = errs(&format!("{base}grace = \"1d\"\n"));
    assert_eq!(e[0].1, "ram.grace");
    assert!(
        e[0].2.starts_with("moved: write grace at the top of the file"),
        "{e:?}"
    );
}

#[test]
fn paths_in_errors_are_the_secret_files() {
    let (dir, r) = one("name = \"a b\"\ntype = \"Generic\"\n");
    let e = r.expect_err("bad name");
    assert_eq!(e.0[0].file, dir.path().join("secrets.d/x.toml"));
    let _: &Path = dir.path();
}

#[test]
fn cron_schedules_are_parsed_by_croner_and_bounded_per_type() {
    let e = |ty: &str, r: &str| errs(&format!("name = \"a\"\ntype = \"{ty}\"\n[rotation]\n{r}"));
    let four = e("Generic", "schedule = \"0 3 * *\"\n");
    assert_eq!(four[0].1, "rotation.schedule");
    let bad_minute = e("Generic", "schedule = \"61 3 * * *\"\n");
    assert_eq!(bad_minute[0].1, "rotation.schedule", "{bad_minute:?}");
    let bad_zone = e(
        "Generic",
        "schedule = \"0 3 * * *\"\ntimezone = \"Europe/Berln\"\n",
    );
    assert_eq!(bad_zone[0].1, "rotation.timezone", "{bad_zone:?}");
    assert!(bad_zone[0].2.contains("Europe/Berln"), "{bad_zone:?}");
    // Rds secrets rotate at most every 6 hours, whatever the schedule says.
    let rds = e("Rds", "schedule = \"*/30 * * * *\"\n");
    let sched = rds
        .iter()
        .find(|x| x.1 == "rotation.schedule")
        .expect("a schedule error");
    assert!(sched.2.contains("at most every 6h"), "{sched:?}");
    let (_, ok_generic) = ok("name = \"a\"\ntype = \"Generic\"\n[rotation]\nschedule = \"*/30 * * * *\"\n");
    assert!(
        ok_generic.rotation.is_some(),
        "generic secrets may rotate every 30 minutes"
    );
}

#[test]
fn initial_version_defaults_to_v1_and_is_a_version_id() {
    let (_, s) = ok("name = \"a\"\ntype = \"Generic\"\n");
    assert_eq!(s.initial_version.as_str(), "v1");
    let (_, s) = ok("name = \"a\"\ntype = \"Generic\"\ninitial_version = \"2026-01\"\n");
    assert_eq!(s.initial_version.as_str(), "2026-01");
    let e = errs(&format!(
        "name = \"a\"\ntype = \"Generic\"\ninitial_version = \"{}\"\n",
        "v".repeat(65)
    ));
    assert_eq!(e[0].0, 3);
    assert_eq!(e[0].1, "initial_version");
    assert!(e[0].2.starts_with("version id:"), "{e:?}");
    let e = errs("name = \"a\"\ntype = \"Generic\"\ninitial_version = \"has space\"\n");
    assert_eq!(e[0].1, "initial_version");

    // An imported account's first version takes it; accounts rotd creates get theirs from a rotation.
    let import = format!(
        "name = \"a\"\ntype = \"Rds\"\ninitial_version = \"v0\"\n[rds]\nengine = \"mysql\"\nmode = \"single\"\n{DB}\
         [rds.account]\nimport = {{ user = \"app\", password = {{ file = \"/p\" }} }}\n"
    );
    let (_, s) = ok(&import);
    assert_eq!(s.initial_version.as_str(), "v0");
    let e = errs(&format!(
        "name = \"a\"\ntype = \"Rds\"\ninitial_version = \"v0\"\n[rds]\nengine = \"mysql\"\nmode = \"single\"\n{DB}\
         [rds.account]\ncreate = {{ prefix = \"app\", databases = [\"app\"], privilege = \"ReadWrite\" }}\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].0, e[0].1.as_str()), (3, "initial_version"));
    assert!(e[0].2.contains("first rotation"), "{e:?}");
    let e = errs(
        "name = \"a\"\ntype = \"RAMCredentials\"\ninitial_version = \"v1\"\n[ram]\nuser_name = \"u\"\nadmin = { credential = \"ak\" }\n",
    );
    assert_eq!(e[0].1, "initial_version");
}

#[test]
fn names_off_the_vendors_convention_are_noted_not_refused() {
    let ram = |name: &str| {
        ok(&format!(
            "name = \"{name}\"\ntype = \"RAMCredentials\"\n[ram]\nuser_name = \"ci-uploader\"\nadmin = {{ credential = \"ak\" }}\n"
        ))
        .1
    };
    assert!(ram("acs/ram/user/ci-uploader").notes().is_empty());
    let notes = ram("ci/uploader-ak").notes();
    assert_eq!(
        notes,
        [
            "the vendor names this RAMCredentials secret acs/ram/user/ci-uploader; rotd keeps the name ci/uploader-ak"
        ]
    );
    let fp = format!("SHA256:{}", "a".repeat(43));
    let ecs = |name: &str| {
        ok(&format!(
            "name = \"{name}\"\ntype = \"ECS\"\n[ecs]\nhost = \"h\"\nhost_key_sha256 = \"{fp}\"\nuser = \"deploy\"\nadmin_user = \"root\"\nadmin = {{ file = \"/k\" }}\nmode = \"password\"\n"
        ))
        .1
    };
    assert!(ecs("acs/ecs/web-1").notes().is_empty());
    let notes = ecs("ops/web-1").notes();
    assert_eq!(notes.len(), 1);
    assert!(notes[0].contains("must start with acs/ecs/"), "{notes:?}");
    // Other types are not noted, even inside acs/ (the API refuses that; a file may use it).
    assert!(ok("name = \"acs/x\"\ntype = \"Generic\"\n").1.notes().is_empty());
}
