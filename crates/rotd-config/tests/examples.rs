//! Every example configuration in `config/` loads, and means what its comments say.

use std::path::{Path, PathBuf};

use rotd_config::{
    Accounts, DbEngine, DbTls, EcsCredential, KeyringSource, LogFormat, Provisioning, SecretRef, SecretSpec,
    SshKeyType, StoreConfig, Target, load,
};
use rotd_core::{RotationSchedule, SecretType};

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

fn by_name<'a>(secrets: &'a [SecretSpec], name: &str) -> &'a SecretSpec {
    secrets
        .iter()
        .find(|s| s.name.as_str() == name)
        .unwrap_or_else(|| panic!("{name} is declared"))
}

#[test]
fn quickstart_loads_without_any_other_file() {
    let dir = config_dir().join("quickstart");
    let cfg = load(&dir.join("rotd.toml")).unwrap_or_else(|e| panic!("{e}"));
    let root = std::path::absolute(&dir).expect("absolute");
    assert_eq!(cfg.daemon.data_dir, root.join("data"));
    assert_eq!(
        cfg.daemon.store,
        StoreConfig::Sqlite {
            path: root.join("data/rotd.db")
        }
    );
    assert_eq!(
        cfg.daemon.keyring,
        KeyringSource::File(root.join("data/keyring.json"))
    );
    assert_eq!(cfg.daemon.api.listen.to_string(), "127.0.0.1:8443");
    assert_eq!(cfg.daemon.admin.listen.to_string(), "127.0.0.1:9464");

    assert_eq!(cfg.secrets.len(), 1);
    let s = &cfg.secrets[0];
    assert_eq!(s.name.as_str(), "quickstart/api-token");
    assert_eq!(s.kind, SecretType::Generic);
    assert_eq!(s.cmk, "default");
    assert_eq!(s.tags.get("team"), Some("quickstart"));
    let rotation = s.rotation.as_ref().expect("rotation");
    assert!(rotation.enabled);
    assert_eq!(rotation.interval().map(|i| i.as_secs()), Some(120));
    let Target::Generic(g) = &s.target else {
        panic!("generic target")
    };
    assert!(g.initial_value.is_none() && g.exec.is_none());
    assert_eq!(g.generate.length, 40);
    assert!(g.generate.require_each_class);
    assert_eq!(s.extended_config(), None);
}

#[test]
fn production_examples_load_one_secret_per_type() {
    let dir = config_dir().join("examples");
    let cfg = load(&dir.join("rotd.toml")).unwrap_or_else(|e| panic!("{e}"));
    let d = &cfg.daemon;
    assert_eq!(d.data_dir, Path::new("/var/lib/rotd"));
    assert_eq!(
        d.store,
        StoreConfig::Sqlite {
            path: "/var/lib/rotd/rotd.db".into()
        }
    );
    assert_eq!(d.keyring, KeyringSource::Credential("rotd-keyring".into()));
    assert_eq!(d.log.format, LogFormat::Journald);
    assert_eq!(
        d.secrets_dir,
        std::path::absolute(dir.join("secrets.d")).expect("absolute")
    );

    let mut kinds: Vec<&str> = cfg.secrets.iter().map(|s| s.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "ECS",
            "ECS",
            "Generic",
            "PolarDB",
            "RAMCredentials",
            "Rds",
            "Rds",
            "Redis"
        ]
    );
    // Files load in name order.
    let files: Vec<_> = cfg
        .secrets
        .iter()
        .map(|s| {
            s.file
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted);

    let generic = by_name(&cfg.secrets, "billing/partner-api-key");
    let Target::Generic(g) = &generic.target else {
        panic!("generic")
    };
    assert_eq!(
        g.initial_value,
        Some(SecretRef::File("/etc/rotd/values/partner-api-key".into()))
    );
    let exec = g.exec.as_ref().expect("exec");
    assert_eq!(exec.command[0], "/usr/local/lib/rotd/rotate-partner-key");
    assert_eq!(exec.timeout.as_secs(), 120);
    assert_eq!(generic.rotation.as_ref().and_then(|r| r.window_secs), Some(7200));

    let mysql = by_name(&cfg.secrets, "orders/mysql-app");
    let Target::Rds(db) = &mysql.target else {
        panic!("rds")
    };
    assert_eq!(db.engine, DbEngine::Mysql);
    assert_eq!(db.tls, DbTls::VerifyFull);
    assert_eq!(
        db.accounts,
        Accounts::Dual {
            user: "app_rw".into(),
            clone_user: "app_rw_clone".into()
        }
    );
    assert!(matches!(&db.provisioning, Provisioning::Create { databases, .. } if databases.len() == 2));
    assert_eq!(
        mysql.extended_config().as_deref(),
        Some(r#"{"SecretSubType":"DoubleUsers","DBInstanceId":"rm-uf6orders0001","CustomData":{}}"#)
    );

    let pg = by_name(&cfg.secrets, "reporting/postgres-readonly");
    let Target::Rds(db) = &pg.target else {
        panic!("rds")
    };
    assert_eq!(db.port, 5432);
    assert_eq!(
        db.accounts,
        Accounts::Single {
            user: "reporting_ro".into()
        }
    );
    assert!(matches!(
        &db.provisioning,
        Provisioning::Import {
            password: SecretRef::File(_),
            clone_password: None
        }
    ));
    assert_eq!(db.admin, SecretRef::Credential("analytics-admin".into()));
    assert_eq!(
        db.imported_account(),
        Some((
            "reporting_ro",
            &SecretRef::File("/etc/rotd/rds/reporting-ro.pw".into())
        ))
    );
    assert_eq!(
        pg.rotation.as_ref().map(|r| r.schedule.clone()),
        Some(RotationSchedule::Cron {
            expression: "0 3 1 * *".into(),
            timezone: "Europe/Berlin".into()
        })
    );
    assert_eq!(
        pg.extended_config().as_deref(),
        Some(r#"{"SecretSubType":"SingleUser","DBInstanceId":"pgm-bp1analytics01","CustomData":{}}"#)
    );

    let polar = by_name(&cfg.secrets, "catalog/polardb-app");
    let Target::PolarDb(db) = &polar.target else {
        panic!("polardb")
    };
    assert!(matches!(&db.admin, SecretRef::Secret { name, field: Some(f) }
        if name.as_str() == "platform/polardb-admin" && f == "AccountPassword"));
    assert_eq!(
        polar.extended_config().as_deref(),
        Some(
            r#"{"SecretSubType":"DoubleUsers","DBClusterId":"pc-2ze0catalog01","DBType":"PostgreSQL","AccountName":"catalog_app","CloneAccountName":"catalog_app_clone","CustomData":{}}"#
        )
    );

    let redis = by_name(&cfg.secrets, "web/redis-sessions");
    let Target::Redis(r) = &redis.target else {
        panic!("redis")
    };
    assert_eq!(r.clone_user.as_deref(), Some("sessions_clone"));
    assert_eq!(r.nodes.len(), 3);
    assert_eq!(
        redis.extended_config().as_deref(),
        Some(
            r#"{"SecretSubType":"DoubleUsers","AccountName":"sessions","CloneAccountName":"sessions_clone","AccountPrivilege":"ReadWrite","InstanceId":"r-bp1web0001","RegionId":"cn-hangzhou","CustomData":{}}"#
        )
    );

    let ecs_pw = by_name(&cfg.secrets, "ops/bastion-deploy-password");
    let Target::Ecs(e) = &ecs_pw.target else {
        panic!("ecs")
    };
    assert_eq!(e.credential, EcsCredential::Password);
    assert_eq!(e.port, 22);
    assert_eq!(
        ecs_pw.extended_config().as_deref(),
        Some(
            r#"{"SecretSubType":"Password","InstanceId":"i-bp1bastion0001","RegionId":"cn-hangzhou","CustomData":{}}"#
        )
    );
    let ecs_key = by_name(&cfg.secrets, "ops/batch-runner-key");
    let Target::Ecs(e) = &ecs_key.target else {
        panic!("ecs")
    };
    assert_eq!(e.credential, EcsCredential::SshKey(SshKeyType::Ed25519));
    assert!(
        ecs_key
            .extended_config()
            .expect("managed")
            .contains(r#""SecretSubType":"SSHKey""#)
    );

    let ram = by_name(&cfg.secrets, "ci/oss-uploader-ak");
    let Target::Ram(r) = &ram.target else {
        panic!("ram")
    };
    assert_eq!(ram.grace.as_secs(), 86_400);
    assert_eq!(r.delete_after.as_secs(), 86_400);
    assert_eq!(
        ram.extended_config().as_deref(),
        Some(r#"{"SecretSubType":"RamUserAccessKey","UserName":"ci-oss-uploader","CustomData":{}}"#)
    );
}

#[test]
fn every_example_file_is_covered_by_a_test() {
    // A new example must be added to the assertions above; this keeps the count honest.
    let count = |dir: &str| {
        std::fs::read_dir(config_dir().join(dir))
            .expect("example dir")
            .filter(|e| {
                e.as_ref()
                    .expect("dir entry")
                    .path()
                    .extension()
                    .is_some_and(|x| x == "toml")
            })
            .count()
    };
    assert_eq!(count("quickstart/secrets.d"), 1);
    assert_eq!(count("examples/secrets.d"), 8);
}

#[test]
fn bulk_examples_render_the_same_fleet_from_toml_and_csv() {
    let dir = config_dir().join("examples");
    let daemon = rotd_config::load_daemon(&dir.join("rotd.toml")).unwrap_or_else(|e| panic!("{e}"));
    let out = tempfile::tempdir().expect("tempdir");
    let render = |instances: &str| {
        rotd_config::bulk::render(
            &daemon,
            &dir.join("bulk/redis-template.toml"),
            &dir.join("bulk").join(instances),
            out.path(),
        )
        .unwrap_or_else(|e| panic!("{instances}: {e}"))
    };
    let from_toml = render("redis-instances.toml");
    let from_csv = render("redis-instances.csv");
    let names: Vec<&str> = from_toml.iter().map(|r| r.spec.name.as_str()).collect();
    assert_eq!(
        names,
        ["redis/sessions-eu", "redis/sessions-us", "redis/carts-eu"]
    );
    for (t, c) in from_toml.iter().zip(&from_csv) {
        assert_eq!(t.spec, c.spec, "the CSV holds the same fleet");
        assert_eq!(t.text, c.text);
        assert_eq!(t.file, out.path().join(format!("{}.toml", t.instance)));
    }
    let carts = &from_toml[2];
    let Target::Redis(r) = &carts.spec.target else {
        panic!("redis")
    };
    assert_eq!(
        (r.host.as_str(), r.port, r.user.as_str()),
        ("10.0.5.20", 6380, "carts")
    );
    assert_eq!(
        r.admin,
        SecretRef::File("/etc/rotd/redis/carts-eu-admin.pw".into())
    );
    assert_eq!(r.instance_id.as_deref(), Some("r-bp1shop002"));
    assert!(r.nodes.is_empty());
    assert_eq!(carts.spec.tags.get("team"), Some("shop"));
    assert_eq!(carts.spec.description, "carts user on carts-eu");
    let Target::Redis(eu) = &from_toml[0].spec.target else {
        panic!("redis")
    };
    assert_eq!(eu.nodes.len(), 3);
    assert_eq!(from_toml[0].declared_at.1, 6, "the [[instance]] line");
}
