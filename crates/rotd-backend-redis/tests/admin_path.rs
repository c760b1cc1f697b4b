//! The plaintext never crosses the admin connection. Redis redacts `ACL SETUSER` arguments in `MONITOR`
//! and the slowlog, so this test puts a TCP relay between the backend and a real server and inspects the
//! bytes rotd sent: they hold each new password's SHA-256 and never the password.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rotd_backend_redis::{Persist, READ_WRITE_RULES, RedisBackend, RedisConfig};
use rotd_core::{Backend, Secret, Slot};
use rotd_testkit::fixtures::redis::Redis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Relays every connection to `target`, recording what the client sent.
async fn relay(target: u16) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let server = TcpStream::connect(("127.0.0.1", target)).await.expect("server");
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        record.lock().expect("record").extend_from_slice(&buf[..n]);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (port, seen)
}

fn sha256_hex(s: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn password_of(value: &Secret) -> String {
    let v: serde_json::Value = serde_json::from_slice(value.expose_secret()).expect("json");
    v["AccountPassword"].as_str().expect("password").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_connection_carries_hashes_never_passwords() {
    let server = Redis::start();
    let (port, seen) = relay(server.port()).await;
    let cfg = |port: u16| RedisConfig {
        nodes: vec![("127.0.0.1".to_owned(), port)],
        admin_user: server.admin_user().to_owned(),
        admin_password: Secret::from(server.admin_password()),
        user: "app".to_owned(),
        clone_user: Some("app_clone".to_owned()),
        discover: false,
        tls: None,
        rules: READ_WRITE_RULES.to_owned(),
        persist: Persist::AclFile,
        timeout: Duration::from_secs(5),
    };
    // Admin operations go through the relay; verification (a client login, which must carry the
    // password) goes straight to the server.
    let through_relay = RedisBackend::new(cfg(port)).expect("config");
    let direct = RedisBackend::new(cfg(server.port())).expect("config");
    let created = through_relay.create_accounts().await.expect("create");
    let new = through_relay
        .compose(
            Slot::Clone,
            &Secret::from("Rotated-Passw0rd-Never-On-The-Admin-Wire"),
        )
        .expect("compose");
    through_relay.apply(Slot::Clone, &new).await.expect("apply");
    direct
        .verify(Slot::Clone, &new)
        .await
        .expect("the new password logs in");
    let bytes = seen.lock().expect("record").clone();
    let wire = String::from_utf8_lossy(&bytes);
    assert!(wire.contains("SETUSER"), "the relay saw the admin traffic");
    let mut passwords: Vec<String> = created.iter().map(|(_, v)| password_of(v)).collect();
    passwords.push(password_of(&new));
    for pw in &passwords {
        assert!(
            !wire.contains(pw.as_str()),
            "a password crossed the admin connection"
        );
        assert!(
            wire.contains(&sha256_hex(pw)),
            "the admin connection carries the password's SHA-256"
        );
    }
}
