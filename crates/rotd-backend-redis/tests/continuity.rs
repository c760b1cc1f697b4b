//! Continuity under rotation, with the real engine and store: while rotd rotates the account pair 200
//! times on two real nodes, a client reads `ACSCurrent` from the store every ~3 ms, opens a fresh
//! connection to a node (alternating) and `AUTH`s with it. Zero refused logins.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rotd_backend_redis::{Persist, READ_WRITE_RULES, RedisBackend, RedisConfig};
use rotd_core::{Backend, PasswordPolicy, Secret, SecretName, SecretType, Slot, Tags};
use rotd_engine::{Managed, StepLimits, rotate};
use rotd_store::{NewSecret, Selector, Store};
use rotd_testkit::fixtures::redis::Redis;

const NAME: &str = "cache/app";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_rotations_on_two_nodes_refuse_no_login() {
    let nodes = Redis::start_nodes(2);
    let password = nodes[0].admin_password().to_owned();
    let ports: Vec<u16> = nodes.iter().map(Redis::port).collect();
    let backend = Arc::new(
        RedisBackend::new(RedisConfig {
            nodes: ports.iter().map(|p| ("127.0.0.1".to_owned(), *p)).collect(),
            admin_user: nodes[0].admin_user().to_owned(),
            admin_password: Secret::from(password.as_str()),
            user: "app".to_owned(),
            clone_user: Some("app_clone".to_owned()),
            discover: false,
            tls: None,
            rules: READ_WRITE_RULES.to_owned(),
            persist: Persist::AclFile,
            timeout: Duration::from_secs(5),
        })
        .expect("config"),
    );
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open_sqlite(&dir.path().join("rotd.db"), rotd_testkit::store_suite::keyring())
        .await
        .expect("store");
    store
        .create_secret(
            NewSecret {
                name: SecretName::parse(NAME).expect("name"),
                kind: SecretType::Redis,
                description: String::new(),
                tags: Tags::default(),
                cmk_id: "default".into(),
                extended_config: None,
                rotation: None,
                policy: None,
                managed_by: None,
            },
            None,
        )
        .await
        .expect("create");
    let managed = Managed {
        name: SecretName::parse(NAME).expect("name"),
        kind: SecretType::Redis,
        backend: backend.clone() as Arc<dyn Backend>,
        password: PasswordPolicy::default(),
        grace: rotd_engine::Grace::NONE,
    };
    let limits = StepLimits::default();
    // The first value: both accounts, as the daemon creates them at declaration.
    while rotd_engine::needs_first_value(&store, &managed)
        .await
        .expect("state")
    {
        rotate(&store, &managed, &limits, None)
            .await
            .expect("first value");
    }
    assert_eq!(
        backend.slot_of(
            &store
                .get_value(NAME, &Selector::current())
                .await
                .expect("current")
                .value
        ),
        Some(Slot::Primary)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (store, stop, ports) = (store.clone(), stop.clone(), ports.clone());
        tokio::spawn(async move {
            let (mut attempts, mut failures) = (0u32, 0u32);
            while !stop.load(Ordering::SeqCst) {
                let current = store
                    .get_value(NAME, &Selector::current())
                    .await
                    .expect("ACSCurrent")
                    .value;
                let port = ports[attempts as usize % ports.len()];
                attempts += 1;
                if !common::logs_in(port, &current).await {
                    failures += 1;
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            (attempts, failures)
        })
    };
    let started = rotd_core::Clock::system().instant();
    for i in 0..200 {
        rotate(&store, &managed, &limits, None)
            .await
            .unwrap_or_else(|e| panic!("rotation {i}: {e}"));
    }
    let took = rotd_core::Clock::system().elapsed(started);
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::SeqCst);
    let (attempts, failures) = client.await.expect("client");
    println!(
        "redis dual, 2 nodes: 200 rotations in {took:?} ({:.1} ms each); {attempts} fresh logins, {failures} refused",
        took.as_secs_f64() * 1000.0 / 200.0
    );
    assert!(attempts >= 200, "the client kept logging in ({attempts})");
    assert_eq!(failures, 0, "a rotation refused the credential applications read");
}
