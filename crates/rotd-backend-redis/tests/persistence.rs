//! How a node keeps a change across a restart, and how the connection is secured, on real servers: with
//! the users in an ACL file (`ACL SAVE`) or in redis.conf (`CONFIG REWRITE`), a node restarted after a
//! rotation still accepts the new credential and the untouched one; with `persist = "none"` it does not
//! (so the two tests above can fail). `check` refuses a `persist` that does not match the node. Over
//! TLS, only a server whose certificate chains to the configured CA is accepted, and there is no
//! plain-TCP fallback either way.

use std::time::Duration;

use rotd_backend_redis::{Persist, READ_WRITE_RULES, RedisBackend, RedisConfig, Tls};
use rotd_core::{Backend, Secret, Slot};
use rotd_testkit::fixtures::redis::{Redis, RedisOptions};

fn config(server: &Redis, persist: Persist, tls: Option<Tls>) -> RedisConfig {
    RedisConfig {
        nodes: vec![(server.host().to_owned(), server.port())],
        discover: false,
        tls,
        admin_user: server.admin_user().to_owned(),
        admin_password: Secret::from(server.admin_password()),
        user: "app".to_owned(),
        clone_user: Some("app_clone".to_owned()),
        rules: READ_WRITE_RULES.to_owned(),
        persist,
        timeout: Duration::from_secs(5),
    }
}

fn account(value: &Secret) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(value.expose_secret()).expect("account JSON");
    (
        v["AccountName"].as_str().expect("name").to_owned(),
        v["AccountPassword"].as_str().expect("password").to_owned(),
    )
}

fn accepts(server: &Redis, value: &Secret) -> bool {
    let (user, pw) = account(value);
    server.cli(&user, &pw, &["PING"]).as_deref() == Ok("PONG")
}

/// Creates the pair, rotates the clone, restarts the node; returns whether (primary, new clone) log in.
async fn rotate_then_restart(options: RedisOptions, persist: Persist) -> (bool, bool) {
    let mut server = Redis::start_with(options);
    let b = RedisBackend::new(config(&server, persist, None)).expect("config");
    b.check().await.expect("check");
    let created = b.create_accounts().await.expect("create the accounts");
    let primary = created
        .iter()
        .find(|(s, _)| *s == Slot::Primary)
        .map(|(_, v)| v.clone())
        .expect("primary");
    let new = b
        .compose(Slot::Clone, &Secret::from("a-new-Password-1"))
        .expect("compose");
    b.apply(Slot::Clone, &new).await.expect("apply");
    b.verify(Slot::Clone, &new).await.expect("verify");
    assert!(
        accepts(&server, &new) && accepts(&server, &primary),
        "before the restart"
    );
    tokio::task::block_in_place(|| server.restart());
    (accepts(&server, &primary), accepts(&server, &new))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_acl_file_a_restarted_node_keeps_both_accounts() {
    let kept = rotate_then_restart(RedisOptions::default(), Persist::AclFile).await;
    assert_eq!(kept, (true, true), "ACL SAVE kept the change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_users_in_redis_conf_a_restarted_node_keeps_both_accounts() {
    let options = RedisOptions {
        users_in_config: true,
        ..RedisOptions::default()
    };
    let kept = rotate_then_restart(options, Persist::Config).await;
    assert_eq!(kept, (true, true), "CONFIG REWRITE kept the change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_persistence_a_restarted_node_loses_the_change() {
    let kept = rotate_then_restart(RedisOptions::default(), Persist::None).await;
    assert_eq!(
        kept,
        (false, false),
        "nothing was saved, so the accounts rotd created are gone after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_a_persist_mode_the_node_cannot_honour() {
    let with_file = Redis::start();
    let e = RedisBackend::new(config(&with_file, Persist::Config, None))
        .expect("config")
        .check()
        .await
        .expect_err("CONFIG REWRITE does not write users loaded from an aclfile");
    assert!(e.message.contains("aclfile"), "{e}");
    assert_eq!(
        e.node.as_deref(),
        Some(format!("127.0.0.1:{}", with_file.port()).as_str())
    );

    let in_conf = Redis::start_with(RedisOptions {
        users_in_config: true,
        ..RedisOptions::default()
    });
    let e = RedisBackend::new(config(&in_conf, Persist::AclFile, None))
        .expect("config")
        .check()
        .await
        .expect_err("ACL SAVE needs an aclfile");
    assert!(e.message.contains("persist = \"config\""), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_accepts_only_the_configured_ca_and_never_falls_back_to_plain_tcp() {
    let tls_server = Redis::start_with(RedisOptions {
        tls: true,
        ..RedisOptions::default()
    });
    let ca = std::fs::read(tls_server.ca_path().expect("ca")).expect("read the CA");
    let trusted = Tls {
        ca_pem: Some(ca.clone()),
    };
    RedisBackend::new(config(&tls_server, Persist::AclFile, Some(trusted.clone())))
        .expect("config")
        .check()
        .await
        .expect("the configured CA verifies the server");
    // Without the CA the public roots are used, which do not know the test CA.
    let e = RedisBackend::new(config(&tls_server, Persist::AclFile, Some(Tls::default())))
        .expect("config")
        .check()
        .await
        .expect_err("an untrusted certificate is refused");
    assert!(e.message.to_lowercase().contains("certificate"), "{e}");
    // Plain TCP to a TLS-only server fails; TLS to a plain server fails.
    assert!(
        RedisBackend::new(config(&tls_server, Persist::AclFile, None))
            .expect("config")
            .check()
            .await
            .is_err()
    );
    let plain = Redis::start();
    assert!(
        RedisBackend::new(config(&plain, Persist::AclFile, Some(trusted)))
            .expect("config")
            .check()
            .await
            .is_err(),
        "no fallback to plain TCP"
    );
    // A CA file that is not PEM is refused when the backend is built.
    let e = RedisBackend::new(config(
        &tls_server,
        Persist::AclFile,
        Some(Tls {
            ca_pem: Some(b"not a certificate".to_vec()),
        }),
    ))
    .expect_err("a CA that does not parse");
    assert!(e.message.contains("TLS"), "{e}");
}
