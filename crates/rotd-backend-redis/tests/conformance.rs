//! The Redis backend passes the backend conformance suite against real `redis-server`s with ACL users and
//! the `default` user off (so a wrong password really fails): on one node, and on three nodes the suite
//! can take down one at a time (each restarted from its ACL file, so what was `ACL SAVE`d survives); over
//! TLS only (verified against the server's CA); with the users in redis.conf (`CONFIG REWRITE`); and in
//! overlap mode (one account, old and new password both valid until the retire step).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rotd_backend_redis::{Persist, READ_WRITE_RULES, RedisBackend, RedisConfig, Tls};
use rotd_core::{Backend, BoxFuture, Secret, Slot};
use rotd_testkit::backend_suite::{BackendUnderTest, NodeControl};
use rotd_testkit::fixtures::redis::{Redis, RedisOptions};

#[derive(Clone, Copy, Default)]
struct Setup {
    nodes: usize,
    options: RedisOptions,
    overlap: bool,
}

fn backend(servers: &[Redis], setup: Setup) -> RedisBackend {
    RedisBackend::new(RedisConfig {
        nodes: servers.iter().map(|s| (s.host().to_owned(), s.port())).collect(),
        discover: false,
        tls: servers[0].ca_path().map(|ca| Tls {
            ca_pem: Some(std::fs::read(ca).expect("the fixture's CA")),
        }),
        admin_user: servers[0].admin_user().to_owned(),
        admin_password: Secret::from(servers[0].admin_password()),
        user: "app".to_owned(),
        clone_user: (!setup.overlap).then(|| "app_clone".to_owned()),
        rules: READ_WRITE_RULES.to_owned(),
        persist: if setup.options.users_in_config {
            Persist::Config
        } else {
            Persist::AclFile
        },
        timeout: Duration::from_secs(5),
    })
    .expect("valid config")
}

/// The suite's control over real nodes: down is a stopped server, up a restarted one.
struct RedisNodes(Arc<Vec<Mutex<Redis>>>);

fn account(value: &Secret) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(value.expose_secret()).expect("account JSON");
    (
        v["AccountName"].as_str().expect("name").to_owned(),
        v["AccountPassword"].as_str().expect("password").to_owned(),
    )
}

impl NodeControl for RedisNodes {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn set_reachable(&self, node: usize, reachable: bool) -> BoxFuture<'_, ()> {
        tokio::task::block_in_place(|| {
            let mut s = self.0[node].lock().expect("node");
            if reachable {
                s.restart();
            } else {
                s.stop();
            }
        });
        Box::pin(async {})
    }

    fn accepts<'a>(&'a self, node: usize, _slot: Slot, secret: &'a Secret) -> BoxFuture<'a, bool> {
        let (user, pw) = account(secret);
        let ok = tokio::task::block_in_place(|| {
            self.0[node]
                .lock()
                .expect("node")
                .cli(&user, &pw, &["PING"])
                .as_deref()
                == Ok("PONG")
        });
        Box::pin(async move { ok })
    }
}

async fn under_test(setup: Setup) -> BackendUnderTest {
    let n = setup.nodes;
    let servers = Redis::start_nodes_with(n, setup.options);
    let b = backend(&servers, setup);
    b.check().await.expect("the fixture passes the backend's check");
    let initial = b.create_accounts().await.expect("create the accounts");
    let shared = Arc::new(servers.into_iter().map(Mutex::new).collect::<Vec<_>>());
    BackendUnderTest {
        backend: Arc::new(b) as Arc<dyn Backend>,
        initial,
        guard: Box::new(Arc::clone(&shared)),
        nodes: (n > 1).then(|| Arc::new(RedisNodes(shared)) as Arc<dyn NodeControl>),
    }
}

mod one_node {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(Setup {
            nodes: 1,
            ..Setup::default()
        })
        .await
    }
    rotd_testkit::backend_conformance!(factory);
}

mod three_nodes {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(Setup {
            nodes: 3,
            ..Setup::default()
        })
        .await
    }
    rotd_testkit::backend_conformance!(factory);
}

mod tls_only {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(Setup {
            nodes: 1,
            options: RedisOptions {
                tls: true,
                ..RedisOptions::default()
            },
            ..Setup::default()
        })
        .await
    }
    rotd_testkit::backend_conformance!(factory);
}

/// Users in redis.conf, two nodes (so a restarted node must have had its config rewritten).
mod users_in_config {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(Setup {
            nodes: 2,
            options: RedisOptions {
                users_in_config: true,
                ..RedisOptions::default()
            },
            ..Setup::default()
        })
        .await
    }
    rotd_testkit::backend_conformance!(factory);
}

mod overlap_two_nodes {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(Setup {
            nodes: 2,
            overlap: true,
            ..Setup::default()
        })
        .await
    }
    rotd_testkit::backend_conformance!(factory);
}
