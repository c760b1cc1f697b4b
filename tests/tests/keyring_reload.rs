//! The running daemon follows the keyring: after the README's `rotd key rotate && rotd key rewrap`, API
//! reads keep working without a restart; a rewrap the daemon could not follow is refused.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use rotd_aliyun::{AccessKey, RequestParts, percent, random_nonce};
use rotd_e2e::{Daemon, Env, free_port, wait_for};

fn env() -> Env {
    let env = Env::new();
    env.write(
        "rotd.toml",
        &format!(
            "data_dir = \"data\"\n[api]\nlisten = \"127.0.0.1:{}\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n",
            free_port(),
            free_port()
        ),
    );
    env
}

fn api_addr(daemon: &Daemon) -> String {
    let mut addr = None;
    wait_for("rotd started.", Duration::from_secs(60), || {
        daemon.assert_alive();
        addr = daemon
            .log_text()
            .lines()
            .find(|l| l.contains("rotd started."))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("api=")))
            .map(str::to_owned);
        addr.is_some()
    });
    addr.expect("api address")
}

fn admin_key(env: &Env) -> AccessKey {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("data/admin-access-key.json")).expect("key file"))
            .expect("json");
    AccessKey::new(
        v["AccessKeyId"].as_str().expect("id"),
        rotd_core::Secret::from(v["AccessKeySecret"].as_str().expect("secret")),
    )
}

/// A V3-signed GetSecretValue over TLS (trusting the instance CA); returns (status, body).
fn get_secret_value(env: &Env, addr: &str, key: &AccessKey, name: &str) -> (u16, serde_json::Value) {
    let query = vec![("SecretName".to_owned(), name.to_owned())];
    let mut headers = vec![
        ("host".to_owned(), addr.to_owned()),
        ("x-acs-action".to_owned(), "GetSecretValue".to_owned()),
        ("x-acs-version".to_owned(), "2016-01-20".to_owned()),
    ];
    let parts = RequestParts {
        method: "POST",
        path: "/",
        query: &query,
        headers: &headers,
        body: b"",
    };
    headers.extend(rotd_aliyun::v3::sign_request(
        key,
        &parts,
        rotd_core::Clock::system().now(),
        &random_nonce(),
    ));
    let mut head = format!("POST /?SecretName={} HTTP/1.1\r\n", percent::encode(name));
    for (n, v) in &headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("content-length: 0\r\nconnection: close\r\n\r\n");

    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(env.path("data/tls/ca.pem")).expect("ca.pem");
    for c in <rustls_pki_types::CertificateDer<'_> as rustls_pki_types::pem::PemObject>::pem_slice_iter(&pem)
    {
        roots.add(c.expect("pem")).expect("add");
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = std::net::TcpStream::connect(addr).expect("connect");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(head.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (h, b) = text.split_once("\r\n\r\n").expect("response");
    let status = h.split(' ').nth(1).expect("status").parse().expect("status");
    (status, serde_json::from_str(b).unwrap_or(serde_json::Value::Null))
}

#[test]
fn key_rotate_and_rewrap_reach_the_running_daemon() {
    let env = env();
    let daemon = Daemon::start(&env, "serve.log", &[]);
    let addr = api_addr(&daemon);
    let key = admin_key(&env);
    let r = env.run_stdin(&["secret", "create", "demo/db", "--value-stdin"], b"hunter2");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (s, b) = get_secret_value(&env, &addr, &key, "demo/db");
    assert_eq!(s, 200, "{b}");

    // The README's walkthrough step, against the running daemon.
    let rotated = env.run(&["key", "rotate"]);
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    assert!(!rotated.stderr.contains("warning"), "{}", rotated.stderr);
    env.ok(&["key", "rewrap"]);
    let listed = env.json(&["key", "list"]);
    assert!(
        listed
            .as_array()
            .expect("list")
            .iter()
            .any(|k| k["KeyVersion"] == 2 && k["DataKeys"].as_u64().is_some_and(|n| n >= 2)),
        "data keys moved to version 2: {listed}"
    );
    for _ in 0..3 {
        let (s, b) = get_secret_value(&env, &addr, &key, "demo/db");
        assert_eq!(s, 200, "an API read after rotate + rewrap, without restart: {b}");
        assert_eq!(b["SecretData"], "hunter2");
    }
    assert!(daemon.log_text().contains("Loaded the keyring."));

    // A daemon that cannot follow (stopped: its heartbeat is still fresh, but it reloads nothing) makes
    // rewrap refuse, and nothing moves.
    daemon.signal(libc::SIGSTOP);
    let rotated = env.run(&["key", "rotate"]);
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    assert!(
        rotated.stderr.contains("did not reload its keyring"),
        "{}",
        rotated.stderr
    );
    let refused = env.run(&["key", "rewrap"]);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("refusing to re-wrap"),
        "{}",
        refused.stderr
    );
    let listed = env.json(&["key", "list"]);
    assert!(
        listed
            .as_array()
            .expect("list")
            .iter()
            .all(|k| k["KeyVersion"] != 3 || k["DataKeys"] == 0),
        "nothing re-wrapped: {listed}"
    );
    daemon.signal(libc::SIGCONT);
    // Once it runs again it answers the pending request, and the rewrap goes through.
    env.ok(&["key", "rewrap"]);
    let (s, b) = get_secret_value(&env, &addr, &key, "demo/db");
    assert_eq!(s, 200, "{b}");
    let log = daemon.stop();
    assert!(!log.contains("hunter2"), "a value reached the log");
}
