//! The Redis backend passes the backend conformance suite against real `redis-server`s with ACL users and
//! the `default` user off (so a wrong password really fails): on one node, and on three nodes the suite
//! can take down one at a time (each restarted from its ACL file, so what was `ACL SAVE`d survives).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rotd_backend_redis::{Persist, READ_WRITE_RULES, RedisBackend, RedisConfig};
use rotd_core::{Backend, BoxFuture, Secret, Slot};
use rotd_testkit::backend_suite::{BackendUnderTest, NodeControl};
use rotd_testkit::fixtures::redis::Redis;

fn backend(servers: &[Redis]) -> RedisBackend {
    RedisBackend::new(RedisConfig {
        nodes: servers.iter().map(|s| (s.host().to_owned(), s.port())).collect(),
        admin_user: servers[0].admin_user().to_owned(),
        admin_password: Secret::from(servers[0].admin_password()),
        user: "app".to_owned(),
        clone_user: "app_clone".to_owned(),
        rules: READ_WRITE_RULES.to_owned(),
        persist: Persist::AclFile,
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

async fn under_test(n: usize) -> BackendUnderTest {
    let servers = Redis::start_nodes(n);
    let b = backend(&servers);
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
        under_test(1).await
    }
    rotd_testkit::backend_conformance!(factory);
}

mod three_nodes {
    use super::*;
    async fn factory() -> BackendUnderTest {
        under_test(3).await
    }
    rotd_testkit::backend_conformance!(factory);
}
