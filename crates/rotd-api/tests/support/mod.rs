//! A real API on loopback for the hardening tests: a TLS listener, a SQLite store, an admin key, and a
//! V3 signer, with the [`ApiConfig`] chosen by the test.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rotd_aliyun::{AccessKey, RequestParts, percent, random_nonce};
use rotd_api::kms::{self, ApiConfig, ApiState, AuditLog};
use rotd_api::tls;
use rotd_store::{Keyring, Store};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

pub const ALL: &str = r#"{"Actions":["kms:*"],"Secrets":["*"]}"#;

pub struct Api {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub connector: TlsConnector,
    pub admin: AccessKey,
    pub store: Store,
    pub audit: PathBuf,
    pub state: ApiState,
    _stop: tokio::sync::watch::Sender<bool>,
}

pub struct Req<'a> {
    pub action: &'a str,
    pub query: Vec<(&'a str, &'a str)>,
    pub body: Option<String>,
    pub date: DateTime<Utc>,
    pub nonce: String,
    /// Extra headers, signed with the rest (V3 signs every header it is given).
    pub headers: Vec<(String, String)>,
}

pub fn req<'a>(action: &'a str, query: &[(&'a str, &'a str)]) -> Req<'a> {
    Req {
        action,
        query: query.to_vec(),
        body: None,
        date: rotd_core::Clock::system().now(),
        nonce: random_nonce(),
        headers: Vec::new(),
    }
}

/// An unsigned request head, as junk from the network looks.
pub fn junk() -> String {
    "POST /?SecretName=s1 HTTP/1.1\r\nhost: localhost\r\nx-acs-action: GetSecretValue\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        .to_owned()
}

/// The audit log's lines, parsed.
pub fn audit_lines(api: &Api) -> Vec<Value> {
    std::fs::read_to_string(&api.audit)
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit line is one JSON object"))
        .collect()
}

pub fn code(v: &Value) -> &str {
    v["Code"].as_str().unwrap_or("")
}

impl Api {
    pub async fn start(config: ApiConfig) -> Self {
        Self::start_with_keyring(config, Keyring::generate(rotd_core::Clock::system().now())).await
    }

    pub async fn start_with_keyring(config: ApiConfig, keyring: Keyring) -> Self {
        Self::start_full(config, keyring, None).await
    }

    /// Starts the API with its audit log at `audit` (`/dev/full` makes every write fail).
    pub async fn start_with_audit(config: ApiConfig, audit: PathBuf) -> Self {
        Self::start_full(
            config,
            Keyring::generate(rotd_core::Clock::system().now()),
            Some(audit),
        )
        .await
    }

    async fn start_full(config: ApiConfig, keyring: Keyring, audit: Option<PathBuf>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        tls::ensure(&dir.path().join("tls"), &names, rotd_core::Clock::system().now()).expect("tls");
        let store = Store::open_sqlite(&dir.path().join("rotd.db"), keyring)
            .await
            .expect("store");
        let (info, secret) = store
            .create_access_key("admin", ALL, rotd_store::DEFAULT_CMK)
            .await
            .expect("key");
        let audit = audit.unwrap_or_else(|| dir.path().join("audit.log"));
        let state = ApiState::new(store.clone(), AuditLog::open(&audit).expect("audit"), config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let config = tls::server_config(&dir.path().join("tls")).expect("server config");
        let rustls_config = axum_server::tls_rustls::RustlsConfig::from_config(config);
        let (stop, rx) = tokio::sync::watch::channel(false);
        let serving = state.clone();
        tokio::spawn(async move {
            kms::serve(listener, rustls_config, serving, rx)
                .await
                .expect("serve");
        });
        let mut roots = rustls::RootCertStore::empty();
        for c in tls::read_certs(&dir.path().join("tls/ca.pem")).expect("ca") {
            roots.add(c).expect("add");
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Self {
            dir,
            port,
            connector: TlsConnector::from(Arc::new(client)),
            admin: AccessKey::new(info.id, secret),
            store,
            audit,
            state,
            _stop: stop,
        }
    }

    pub async fn key(&self, policy: &str) -> AccessKey {
        let (info, secret) = self
            .store
            .create_access_key("t", policy, rotd_store::DEFAULT_CMK)
            .await
            .expect("key");
        AccessKey::new(info.id, secret)
    }

    pub async fn tls(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        self.connector.connect(name, tcp).await.expect("tls")
    }

    /// A TLS connection from the local address `from` (any of 127.0.0.0/8 reaches the loopback
    /// listener, so tests can be several clients).
    pub async fn tls_from(&self, from: &str) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{from}:0").parse().expect("local address"))
            .expect("bind");
        let tcp = socket
            .connect(([127, 0, 0, 1], self.port).into())
            .await
            .expect("connect");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        self.connector.connect(name, tcp).await.expect("tls")
    }

    /// Sends raw bytes on a new connection and returns (status, JSON body).
    pub async fn raw(&self, head: String, body: &[u8]) -> (u16, Value) {
        self.raw_from("127.0.0.1", head, body).await
    }

    /// Like [`Api::raw`], from the local address `from`.
    pub async fn raw_from(&self, from: &str, head: String, body: &[u8]) -> (u16, Value) {
        let mut s = self.tls_from(from).await;
        s.write_all(head.as_bytes()).await.expect("write");
        s.write_all(body).await.expect("write body");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        parse_response(&out)
    }

    /// The request head and body of a V3-signed request.
    pub fn signed_v3(&self, key: &AccessKey, r: &Req<'_>) -> (String, Vec<u8>) {
        let query: Vec<(String, String)> = r
            .query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = r.body.clone().unwrap_or_default();
        let mut headers = vec![
            ("host".to_owned(), format!("localhost:{}", self.port)),
            ("x-acs-action".to_owned(), r.action.to_owned()),
            ("x-acs-version".to_owned(), "2016-01-20".to_owned()),
        ];
        headers.extend(r.headers.iter().cloned());
        if r.body.is_some() {
            headers.push((
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ));
        }
        let parts = RequestParts {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            body: body.as_bytes(),
        };
        headers.extend(rotd_aliyun::v3::sign_request(key, &parts, r.date, &r.nonce));
        let qs = query
            .iter()
            .map(|(k, v)| format!("{}={}", percent::encode(k), percent::encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut head = format!("POST /?{qs} HTTP/1.1\r\n");
        for (n, v) in &headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        ));
        (head, body.into_bytes())
    }

    pub async fn v3(&self, key: &AccessKey, r: Req<'_>) -> (u16, Value) {
        let (head, body) = self.signed_v3(key, &r);
        self.raw(head, &body).await
    }

    pub async fn create(&self, name: &str, version: &str, value: &str) {
        let mut r = req("CreateSecret", &[("SecretName", name), ("VersionId", version)]);
        r.body = Some(format!("SecretData={}", percent::encode(value)));
        let (status, body) = self.v3(&self.admin, r).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Splits an HTTP/1.1 response into its status and JSON body (Null when the body is not JSON).
pub fn parse_response(out: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(out).into_owned();
    let Some((h, b)) = text.split_once("\r\n\r\n") else {
        panic!("no response: {text:?}");
    };
    let status: u16 = h.split(' ').nth(1).expect("status").parse().expect("status");
    (status, serde_json::from_str(b).unwrap_or(Value::Null))
}
