//! The KMS API end to end: a real TLS listener on loopback, a SQLite store, and requests signed with
//! rotd-aliyun's client signer (V3 and V1), checked for the vendor's response shapes and error codes.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use rotd_aliyun::{AccessKey, RequestParts, percent, random_nonce};
use rotd_api::kms::{self, ApiConfig, ApiState, AuditLog};
use rotd_api::tls;
use rotd_store::{Keyring, Store};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

const ALL: &str = r#"{"Actions":["kms:*"],"Secrets":["*"]}"#;

struct Api {
    _dir: tempfile::TempDir,
    port: u16,
    connector: TlsConnector,
    admin: AccessKey,
    store: Store,
    audit: PathBuf,
}

struct Req<'a> {
    action: &'a str,
    query: Vec<(&'a str, &'a str)>,
    body: Option<String>,
    date: DateTime<Utc>,
    nonce: String,
}

fn req<'a>(action: &'a str, query: &[(&'a str, &'a str)]) -> Req<'a> {
    Req {
        action,
        query: query.to_vec(),
        body: None,
        date: rotd_core::Clock::system().now(),
        nonce: random_nonce(),
    }
}

impl Api {
    async fn start() -> Self {
        Self::start_with_audit(None).await
    }

    /// Starts the API with its audit log at `audit` (default: a file in the temp dir).
    async fn start_with_audit(audit_override: Option<std::path::PathBuf>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        tls::ensure(&dir.path().join("tls"), &names, rotd_core::Clock::system().now()).expect("tls");
        let store = Store::open_sqlite(
            &dir.path().join("rotd.db"),
            Keyring::generate(rotd_core::Clock::system().now()),
        )
        .await
        .expect("store");
        let (info, secret) = store
            .create_access_key("admin", ALL, rotd_store::DEFAULT_CMK)
            .await
            .expect("key");
        let audit = audit_override.unwrap_or_else(|| dir.path().join("audit.log"));
        let state = ApiState::new(
            store.clone(),
            AuditLog::open(&audit).expect("audit"),
            ApiConfig::default(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let config = tls::server_config(&dir.path().join("tls")).expect("server config");
        let rustls_config = axum_server::tls_rustls::RustlsConfig::from_config(config);
        let (_tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _keep = _tx;
            kms::serve(listener, rustls_config, state, rx)
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
            _dir: dir,
            port,
            connector: TlsConnector::from(Arc::new(client)),
            admin: AccessKey::new(info.id, secret),
            store,
            audit,
        }
    }

    async fn key(&self, policy: &str) -> AccessKey {
        let (info, secret) = self
            .store
            .create_access_key("t", policy, rotd_store::DEFAULT_CMK)
            .await
            .expect("key");
        AccessKey::new(info.id, secret)
    }

    /// Sends raw bytes and returns (status, JSON body).
    async fn raw(&self, head: String, body: &[u8]) -> (u16, Value) {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let mut s = self.connector.connect(name, tcp).await.expect("tls");
        s.write_all(head.as_bytes()).await.expect("write");
        s.write_all(body).await.expect("write body");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        let (h, b) = text.split_once("\r\n\r\n").expect("response");
        let status: u16 = h.split(' ').nth(1).expect("status").parse().expect("status");
        (status, serde_json::from_str(b).unwrap_or(Value::Null))
    }

    fn query_string(q: &[(String, String)]) -> String {
        q.iter()
            .map(|(k, v)| format!("{}={}", percent::encode(k), percent::encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    async fn v3(&self, key: &AccessKey, r: Req<'_>) -> (u16, Value) {
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
        let mut head = format!("POST /?{} HTTP/1.1\r\n", Self::query_string(&query));
        for (n, v) in &headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        ));
        self.raw(head, body.as_bytes()).await
    }

    async fn v1(&self, key: &AccessKey, r: Req<'_>) -> (u16, Value) {
        self.v1_with_headers(key, r, &[]).await
    }

    /// A V1-signed request with extra (unsigned) headers, as the legacy SDK or a proxy in between adds.
    async fn v1_with_headers(&self, key: &AccessKey, r: Req<'_>, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut query: Vec<(String, String)> = r
            .query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in [
            ("Action", r.action),
            ("Version", "2016-01-20"),
            ("Format", "JSON"),
        ] {
            query.push((k.to_owned(), v.to_owned()));
        }
        let body = r.body.clone().unwrap_or_default();
        let mut all = query.clone();
        all.extend(percent::parse_form(body.as_bytes()).expect("form"));
        query.extend(rotd_aliyun::v1::sign_v1(key, "POST", &all, r.date, &r.nonce));
        let extra: String = extra.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
        let head = format!(
            "POST /?{} HTTP/1.1\r\nhost: localhost\r\n{extra}content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            Self::query_string(&query),
            body.len()
        );
        self.raw(head, body.as_bytes()).await
    }

    async fn create(&self, name: &str, version: &str, value: &str) {
        let mut r = req("CreateSecret", &[("SecretName", name), ("VersionId", version)]);
        r.body = Some(format!("SecretData={}", percent::encode(value)));
        let (status, body) = self.v3(&self.admin, r).await;
        assert_eq!(status, 200, "{body}");
    }
}

fn code(v: &Value) -> &str {
    v["Code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn generic_secret_lifecycle_v3() {
    let api = Api::start().await;
    let mut r = req(
        "CreateSecret",
        &[
            ("SecretName", "app/db"),
            ("VersionId", "v1"),
            ("Tags", r#"[{"TagKey":"team","TagValue":"a b"}]"#),
            ("Description", "d"),
        ],
    );
    r.body = Some("SecretData=%7B%22a%22%3A%22b+c%22%7D".to_owned());
    let (s, b) = api.v3(&api.admin, r).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["Arn"], "acs:kms:cn-hangzhou:1:secret/app/db");
    assert_eq!(b["SecretType"], "Generic");
    assert_eq!(b["RequestId"].as_str().expect("id").len(), 36);

    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "GetSecretValue",
                &[("SecretName", "app/db"), ("FetchExtendedConfig", "True")],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["SecretData"], r#"{"a":"b c"}"#);
    assert_eq!(b["VersionId"], "v1");
    assert_eq!(b["SecretDataType"], "text");
    assert_eq!(b["VersionStages"]["VersionStage"][0], "ACSCurrent");
    assert!(b["CreateTime"].as_str().expect("time").ends_with('Z'));
    assert!(b.get("ExtendedConfig").is_none());

    // Create again: conflict.
    let mut r = req("CreateSecret", &[("SecretName", "app/db"), ("VersionId", "v1")]);
    r.body = Some("SecretData=x".to_owned());
    let (s, b) = api.v3(&api.admin, r).await;
    assert_eq!((s, code(&b)), (409, "Rejected.ResourceExist"));

    let mut r = req("PutSecretValue", &[("SecretName", "app/db"), ("VersionId", "v2")]);
    r.body = Some("SecretData=second".to_owned());
    let (s, b) = api.v3(&api.admin, r).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["VersionStages"]["VersionStage"][0], "ACSCurrent");

    let (_, b) = api
        .v3(
            &api.admin,
            req(
                "GetSecretValue",
                &[("SecretName", "app/db"), ("VersionStage", "ACSPrevious")],
            ),
        )
        .await;
    assert_eq!(b["VersionId"], "v1");
    let (_, b) = api
        .v3(
            &api.admin,
            req("GetSecretValue", &[("SecretName", "app/db"), ("VersionId", "v1")]),
        )
        .await;
    assert_eq!(b["SecretData"], r#"{"a":"b c"}"#);
    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "GetSecretValue",
                &[
                    ("SecretName", "app/db"),
                    ("VersionId", "v1"),
                    ("VersionStage", "ACSCurrent"),
                ],
            ),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"));

    let (s, b) = api
        .v3(
            &api.admin,
            req("ListSecretVersionIds", &[("SecretName", "app/db")]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["TotalCount"], 2);

    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "DescribeSecret",
                &[("SecretName", "app/db"), ("FetchTags", "TRUE")],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["Tags"]["Tag"][0]["TagValue"], "a b");
    assert_eq!(b["Description"], "d");

    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "ListSecrets",
                &[("Filters", r#"[{"Key":"SecretName","Values":["app/"]}]"#)],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["TotalCount"], 1);
    assert_eq!(b["SecretList"]["Secret"][0]["SecretName"], "app/db");

    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "UpdateSecretVersionStage",
                &[
                    ("SecretName", "app/db"),
                    ("VersionStage", "ACSCurrent"),
                    ("MoveToVersion", "v1"),
                ],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", "app/db")]))
        .await;
    assert_eq!(b["VersionId"], "v1");

    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "UpdateSecret",
                &[("SecretName", "app/db"), ("Description", "new")],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "DeleteSecret",
                &[("SecretName", "app/db"), ("RecoveryWindowInDays", "7")],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["PlannedDeleteTime"].is_string());
    let (s, b) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", "app/db")]))
        .await;
    assert_eq!((s, code(&b)), (409, "Rejected.ResourceInDeleteWindow"));
    let (s, b) = api
        .v3(&api.admin, req("RestoreSecret", &[("SecretName", "app/db")]))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", "app/db")]))
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .v3(
            &api.admin,
            req(
                "DeleteSecret",
                &[("SecretName", "app/db"), ("ForceDeleteWithoutRecovery", "true")],
            ),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", "app/db")]))
        .await;
    assert_eq!((s, code(&b)), (404, "Forbidden.ResourceNotFound"));
    assert_eq!(b["HostId"], "rotd");

    // The audit log has a line per request and never a value.
    let audit = std::fs::read_to_string(&api.audit).expect("audit");
    assert!(audit.lines().count() >= 15);
    assert!(!audit.contains("b c") && !audit.contains("second"));
    // A write is recorded before it runs ("Started") and again with its result.
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(
        (lines[0]["action"].as_str(), lines[0]["result"].as_str()),
        (Some("CreateSecret"), Some("Started"))
    );
    assert_eq!(
        (lines[1]["action"].as_str(), lines[1]["result"].as_str()),
        (Some("CreateSecret"), Some("Success"))
    );
    assert_eq!(lines[0]["request_id"], lines[1]["request_id"]);
}

#[tokio::test]
async fn v1_signatures_with_form_body() {
    let api = Api::start().await;
    let mut r = req("CreateSecret", &[("SecretName", "s 1/é"), ("VersionId", "v1")]);
    r.body = Some("SecretData=hello+world".to_owned());
    let (s, b) = api.v1(&api.admin, r).await;
    // A space and é are not valid secret-name characters: the vendor rule rejects them.
    assert_eq!((s, code(&b)), (400, "InvalidParameter"), "{b}");
    let mut r = req("CreateSecret", &[("SecretName", "s1"), ("VersionId", "v1")]);
    r.body = Some("SecretData=hello+world".to_owned());
    let (s, b) = api.v1(&api.admin, r).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api
        .v1(&api.admin, req("GetSecretValue", &[("SecretName", "s1")]))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["SecretData"], "hello world");
}

#[tokio::test]
async fn authentication_failures() {
    let api = Api::start().await;
    api.create("s1", "v1", "x").await;
    // Wrong secret for a known id.
    let wrong = AccessKey::new(api.admin.id(), rotd_core::Secret::from("nope"));
    let (s, b) = api
        .v3(&wrong, req("GetSecretValue", &[("SecretName", "s1")]))
        .await;
    assert_eq!((s, code(&b)), (400, "IncompleteSignature"));
    let (s, b) = api
        .v1(&wrong, req("GetSecretValue", &[("SecretName", "s1")]))
        .await;
    assert_eq!((s, code(&b)), (400, "IncompleteSignature"));
    // Unknown key id.
    let unknown = AccessKey::new("LTAIunknown", rotd_core::Secret::from("nope"));
    let (s, b) = api
        .v3(&unknown, req("GetSecretValue", &[("SecretName", "s1")]))
        .await;
    assert_eq!((s, code(&b)), (404, "InvalidAccessKeyId.NotFound"));
    // Skew.
    let mut r = req("GetSecretValue", &[("SecretName", "s1")]);
    r.date = rotd_core::Clock::system().now() - TimeDelta::minutes(16);
    let (s, b) = api.v3(&api.admin, r).await;
    assert_eq!((s, code(&b)), (400, "IllegalTimestamp"));
    // Replay.
    let nonce = random_nonce();
    let mut r = req("GetSecretValue", &[("SecretName", "s1")]);
    r.nonce = nonce.clone();
    let (s, _) = api.v3(&api.admin, r).await;
    assert_eq!(s, 200);
    let mut r = req("GetSecretValue", &[("SecretName", "s1")]);
    r.nonce = nonce;
    let (s, b) = api.v3(&api.admin, r).await;
    assert_eq!((s, code(&b)), (400, "SignatureNonceUsed"));
    // Unsigned.
    let head = "POST /?SecretName=s1 HTTP/1.1\r\nhost: localhost\r\nx-acs-action: GetSecretValue\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        .to_owned();
    let (s, b) = api.raw(head, b"").await;
    assert_eq!((s, code(&b)), (400, "IncompleteSignature"));
}

#[tokio::test]
async fn policies_are_enforced_and_deny_wins() {
    let api = Api::start().await;
    api.create("app/a", "v1", "x").await;
    api.create("db/b", "v1", "y").await;
    let reader = api
        .key(r#"{"Actions":["kms:GetSecretValue"],"Secrets":["app/*"]}"#)
        .await;
    let (s, _) = api
        .v3(&reader, req("GetSecretValue", &[("SecretName", "app/a")]))
        .await;
    assert_eq!(s, 200);
    let (s, b) = api
        .v3(&reader, req("GetSecretValue", &[("SecretName", "db/b")]))
        .await;
    assert_eq!((s, code(&b)), (403, "Forbidden.NoPermission"));
    let (s, b) = api
        .v3(&reader, req("GetSecretValue", &[("SecretName", "app/missing")]))
        .await;
    assert_eq!((s, code(&b)), (404, "Forbidden.ResourceNotFound"));
    let (s, b) = api
        .v3(&reader, req("DeleteSecret", &[("SecretName", "app/a")]))
        .await;
    assert_eq!((s, code(&b)), (403, "Forbidden.NoPermission"));

    let deny = format!(
        r#"{{"Version":"1","Statement":[{{"Effect":"Deny","Principal":{{"RAM":["{}"]}},"Action":["kms:GetSecretValue"],"Resource":["*"]}}]}}"#,
        reader.id()
    );
    let (s, b) = api
        .v3(
            &api.admin,
            req("SetSecretPolicy", &[("SecretName", "app/a"), ("Policy", &deny)]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api
        .v3(&api.admin, req("GetSecretPolicy", &[("SecretName", "app/a")]))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["Policy"], deny.as_str());
    let (s, b) = api
        .v3(&reader, req("GetSecretValue", &[("SecretName", "app/a")]))
        .await;
    assert_eq!((s, code(&b)), (403, "Forbidden.NoPermission"));
    let (s, _) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", "app/a")]))
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn bad_input_never_panics_or_500s() {
    let api = Api::start().await;
    api.create("s1", "v1", "x").await;
    // Duplicated parameter.
    let (s, b) = api
        .v3(
            &api.admin,
            req("GetSecretValue", &[("SecretName", "s1"), ("SecretName", "s1")]),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"));
    // Malformed percent escape and non-UTF-8.
    for q in ["SecretName=%zz", "SecretName=%ff%fe"] {
        let head = format!(
            "POST /?{q} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let (s, b) = api.raw(head, b"").await;
        assert_eq!((s, code(&b)), (400, "InvalidParameter"), "{q}");
    }
    // Oversized body, refused from Content-Length before it is read.
    let head = "POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 10000000\r\nconnection: close\r\n\r\n"
        .to_owned();
    let (s, b) = api.raw(head, b"").await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"));
    // Wrong method.
    let head = "GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n".to_owned();
    let (s, b) = api.raw(head, b"").await;
    assert_eq!((s, code(&b)), (403, "UnsupportedHTTPMethod"));
    // Huge and malformed Filters.
    let huge = format!(
        "[{}]",
        vec![r#"{"Key":"SecretName","Values":["a"]}"#; 300].join(",")
    );
    let (s, b) = api
        .v3(&api.admin, req("ListSecrets", &[("Filters", &huge)]))
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"));
    let (s, b) = api
        .v3(&api.admin, req("ListSecrets", &[("Filters", "{not json")]))
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"));
    let (s, b) = api
        .v3(&api.admin, req("ListSecrets", &[("PageSize", "101")]))
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"));
    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "GetSecretValue",
                &[("SecretName", "s1"), ("FetchExtendedConfig", "maybe")],
            ),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"));
    let (s, b) = api.v3(&api.admin, req("GetSecretValue", &[])).await;
    assert_eq!((s, code(&b)), (400, "MissingParameter"));
    let (s, b) = api.v3(&api.admin, req("NoSuchAction", &[])).await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"));
}

#[tokio::test]
async fn random_password_and_tags() {
    let api = Api::start().await;
    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "GetRandomPassword",
                &[("PasswordLength", "20"), ("ExcludePunctuation", "True")],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let pw = b["RandomPassword"].as_str().expect("pw");
    assert_eq!(pw.len(), 20);
    assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()));
    let (s, b) = api
        .v3(&api.admin, req("GetRandomPassword", &[("PasswordLength", "7")]))
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"));

    api.create("t1", "v1", "x").await;
    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "TagResource",
                &[
                    ("SecretName", "t1"),
                    ("Tags", r#"[{"TagKey":"k","TagValue":"v"}]"#),
                ],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = api
        .v3(
            &api.admin,
            req("DescribeSecret", &[("SecretName", "t1"), ("FetchTags", "true")]),
        )
        .await;
    assert_eq!(b["Tags"]["Tag"][0]["TagKey"], "k");
    let (s, _) = api
        .v3(
            &api.admin,
            req("UntagResource", &[("SecretName", "t1"), ("TagKeys", r#"["k"]"#)]),
        )
        .await;
    assert_eq!(s, 200);
    let (_, b) = api
        .v3(
            &api.admin,
            req("DescribeSecret", &[("SecretName", "t1"), ("FetchTags", "true")]),
        )
        .await;
    assert_eq!(b["Tags"]["Tag"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn managed_secret_rotation_requests() {
    let api = Api::start().await;
    let mut r = req(
        "CreateSecret",
        &[
            ("SecretName", "rds1"),
            ("VersionId", "v1"),
            ("SecretType", "Rds"),
            (
                "ExtendedConfig",
                r#"{"SecretSubType":"SingleUser","DBInstanceId":"rm-1","CustomData":{}}"#,
            ),
            ("EnableAutomaticRotation", "True"),
            ("RotationInterval", "7d"),
        ],
    );
    r.body = Some(format!(
        "SecretData={}",
        percent::encode(r#"{"AccountName":"u","AccountPassword":"p"}"#)
    ));
    let (s, b) = api.v3(&api.admin, r).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["RotationInterval"], "604800s");
    assert_eq!(b["AutomaticRotation"], "Enabled");

    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "GetSecretValue",
                &[("SecretName", "rds1"), ("FetchExtendedConfig", "True")],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["SecretType"], "Rds");
    assert!(b["ExtendedConfig"].as_str().expect("ext").contains("SingleUser"));
    assert!(b["NextRotationDate"].is_string());
    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "GetSecretValue",
                &[("SecretName", "rds1"), ("VersionStage", "custom")],
            ),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"));

    let mut r = req("PutSecretValue", &[("SecretName", "rds1"), ("VersionId", "v2")]);
    r.body = Some("SecretData=x".to_owned());
    let (s, b) = api.v3(&api.admin, r).await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"));

    // Existing version: success without queueing.
    let (s, b) = api
        .v3(
            &api.admin,
            req("RotateSecret", &[("SecretName", "rds1"), ("VersionId", "v1")]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(api.store.open_requests().await.expect("requests").len(), 0);
    let (s, _) = api
        .v3(
            &api.admin,
            req("RotateSecret", &[("SecretName", "rds1"), ("VersionId", "v2")]),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .v3(
            &api.admin,
            req("RotateSecret", &[("SecretName", "rds1"), ("VersionId", "v2")]),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(api.store.open_requests().await.expect("requests").len(), 1);
    for i in 0..49 {
        api.store
            .add_request("rds1", rotd_store::RequestKind::Rotate, Some(&format!("x{i}")))
            .await
            .expect("add");
    }
    let (s, b) = api
        .v3(
            &api.admin,
            req("RotateSecret", &[("SecretName", "rds1"), ("VersionId", "v9")]),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "Rejected.LimitExceeded"));

    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "UpdateSecret",
                &[("SecretName", "rds1"), ("ExtendedConfig.CustomData.env", "prod")],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = api
        .v3(&api.admin, req("DescribeSecret", &[("SecretName", "rds1")]))
        .await;
    assert!(
        b["ExtendedConfig"]
            .as_str()
            .expect("ext")
            .contains(r#""env":"prod""#),
        "{b}"
    );
    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "UpdateSecretRotationPolicy",
                &[("SecretName", "rds1"), ("EnableAutomaticRotation", "false")],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = api
        .v3(&api.admin, req("DescribeSecret", &[("SecretName", "rds1")]))
        .await;
    assert_eq!(b["AutomaticRotation"], "Disabled");
}

#[tokio::test]
async fn batch_get_secret_value() {
    let api = Api::start().await;
    api.create("app/a", "v1", "alpha").await;
    api.create("app/b", "v1", "beta").await;
    api.create("db/c", "v1", "gamma").await;
    let mut r = req("PutSecretValue", &[("SecretName", "app/b"), ("VersionId", "v2")]);
    r.body = Some("SecretData=beta2".to_owned());
    assert_eq!(api.v3(&api.admin, r).await.0, 200);

    // A JSON array of names (the reference), with a missing secret reported in Errors.
    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "BatchGetSecretValue",
                &[("SecretsList", r#"["app/a","app/b","app/missing"]"#)],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let values = b["SecretValues"].as_array().expect("SecretValues");
    assert_eq!(values.len(), 2, "{b}");
    assert_eq!(values[0]["SecretName"], "app/a");
    assert_eq!(values[0]["SecretData"], "alpha");
    assert_eq!(values[1]["SecretData"], "beta2");
    assert_eq!(values[1]["VersionId"], "v2");
    assert_eq!(values[1]["VersionStages"]["VersionStage"][0], "ACSCurrent");
    let errors = b["Errors"].as_array().expect("Errors");
    assert_eq!(errors.len(), 1, "{b}");
    assert_eq!(errors[0]["SecretName"], "app/missing");
    assert_eq!(errors[0]["Code"], "Forbidden.ResourceNotFound");
    assert_eq!(errors[0]["HttpStatus"], 404);
    assert!(b["RequestId"].is_string());

    // Objects, as SDK 3.x sends them (VersionStage / VersionId per entry), over a V1 signature.
    let list =
        r#"[{"SecretName":"app/b","VersionStage":"ACSPrevious"},{"SecretName":"app/b","VersionId":"v2"}]"#;
    let (s, b) = api
        .v1(&api.admin, req("BatchGetSecretValue", &[("SecretsList", list)]))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["SecretValues"][0]["SecretData"], "beta");
    assert_eq!(b["SecretValues"][1]["SecretData"], "beta2");
    assert_eq!(b["Errors"].as_array().map(Vec::len), Some(0), "{b}");

    // Authorized per secret: the restricted key gets app/*, and NoPermission for the rest.
    let reader = api
        .key(r#"{"Actions":["kms:GetSecretValue","kms:BatchGetSecretValue"],"Secrets":["app/*"]}"#)
        .await;
    let (s, b) = api
        .v3(
            &reader,
            req("BatchGetSecretValue", &[("SecretsList", r#"["app/a","db/c"]"#)]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["SecretValues"].as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b["SecretValues"][0]["SecretData"], "alpha");
    assert_eq!(b["Errors"][0]["SecretName"], "db/c");
    assert_eq!(b["Errors"][0]["Code"], "Forbidden.NoPermission");
    assert_eq!(b["Errors"][0]["HttpStatus"], 403);
    assert!(!b.to_string().contains("gamma"), "{b}");

    // A batch needs both actions: a key granted only GetSecretValue reads nothing through a batch.
    let single = api
        .key(r#"{"Actions":["kms:GetSecretValue"],"Secrets":["app/*"]}"#)
        .await;
    let (s, b) = api
        .v3(
            &single,
            req("BatchGetSecretValue", &[("SecretsList", r#"["app/a"]"#)]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["SecretValues"].as_array().map(Vec::len), Some(0), "{b}");
    assert_eq!(b["Errors"][0]["Code"], "Forbidden.NoPermission", "{b}");
    assert!(!b.to_string().contains("alpha"), "{b}");

    // Malformed lists are the whole request's error, and so is an entry that names no secret here.
    let padded = format!("[\"acs:kms:{}:secret/app/a\"]", "x".repeat(300));
    for bad in [
        "",
        "not json",
        "[]",
        "[1]",
        r#"{"SecretName":"app/a"}"#,
        r#"["app/a", "bad name"]"#,
        r#"[{"VersionId":"v1"}]"#,
        &padded,
    ] {
        let (s, b) = api
            .v3(&api.admin, req("BatchGetSecretValue", &[("SecretsList", bad)]))
            .await;
        assert_eq!(s, 400, "{bad}: {b}");
        assert!(
            matches!(code(&b), "InvalidParameter" | "MissingParameter"),
            "{bad}: {b}"
        );
    }
}

#[tokio::test]
async fn an_unwritable_audit_log_refuses_requests_and_changes_nothing() {
    // Writes to /dev/full always fail (ENOSPC): the audit log cannot be written.
    let api = Api::start_with_audit(Some(std::path::PathBuf::from("/dev/full"))).await;
    let mut r = req(
        "CreateSecret",
        &[("SecretName", "app/audited"), ("VersionId", "v1")],
    );
    r.body = Some("SecretData=never-stored".to_owned());
    let (s, b) = api.v3(&api.admin, r).await;
    assert_eq!((s, code(&b)), (500, "InternalFailure"), "{b}");
    assert!(
        matches!(
            api.store.describe("app/audited").await,
            Err(rotd_store::StoreError::SecretNotFound { .. })
        ),
        "a write whose audit record failed must not happen"
    );
    let (s, b) = api.v3(&api.admin, req("ListSecrets", &[])).await;
    assert_eq!(
        (s, code(&b)),
        (500, "InternalFailure"),
        "reads are refused too: {b}"
    );
}

#[tokio::test]
async fn a_v1_request_runs_only_its_signed_action_whatever_its_headers_say() {
    let api = Api::start().await;
    api.create("app/keep", "v1", "value").await;
    // A GetSecretValue signed with V1, with `x-acs-action: DeleteSecret` added in flight (V1 signs no
    // header): refused, and the secret is not scheduled for deletion.
    let (s, b) = api
        .v1_with_headers(
            &api.admin,
            req("GetSecretValue", &[("SecretName", "app/keep")]),
            &[("x-acs-action", "DeleteSecret")],
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(code(&b), "InvalidParameter", "{b}");
    let meta = api.store.describe("app/keep").await.expect("still there");
    assert!(
        meta.planned_delete_at.is_none(),
        "the unsigned header deleted the secret"
    );
    // A mismatched version header is refused the same way.
    let (s, b) = api
        .v1_with_headers(
            &api.admin,
            req("GetSecretValue", &[("SecretName", "app/keep")]),
            &[("x-acs-version", "2099-01-01")],
        )
        .await;
    assert_eq!(s, 400, "{b}");
    // What the legacy SDK sends (headers that agree with the signed parameters) works.
    let (s, b) = api
        .v1_with_headers(
            &api.admin,
            req("GetSecretValue", &[("SecretName", "app/keep")]),
            &[
                ("x-acs-action", "GetSecretValue"),
                ("x-acs-version", "2016-01-20"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["SecretData"], "value");
}

/// The names the vendor reserves: RAMCredentials secrets are created with `SecretName=$Auto` and named
/// after the RAM user, ECS names start with `acs/ecs/`, and every other type stays out of `acs/`.
#[tokio::test]
async fn create_secret_applies_the_vendors_naming_rules() {
    let api = Api::start().await;
    let create = |name: &'static str, kind: &'static str, ext: &'static str, data: &str| {
        let mut r = req(
            "CreateSecret",
            &[
                ("SecretName", name),
                ("VersionId", "v1"),
                ("SecretType", kind),
                ("ExtendedConfig", ext),
            ],
        );
        r.body = Some(format!("SecretData={}", percent::encode(data)));
        r
    };
    const RAM: &str = r#"{"SecretSubType":"RamUserAccessKey","UserName":"app-reader"}"#;
    const ECS: &str = r#"{"SecretSubType":"Password","RegionId":"cn-hangzhou","InstanceId":"i-1"}"#;
    const RDS: &str = r#"{"SecretSubType":"SingleUser","DBInstanceId":"rm-1"}"#;
    let ak = r#"{"AccessKeys":[{"AccessKeyId":"LTAIx","AccessKeySecret":"s"}]}"#;
    let account = r#"{"Accounts":[{"AccountName":"u","AccountPassword":"p"}]}"#;

    let (s, b) = api
        .v3(&api.admin, create("$Auto", "RAMCredentials", RAM, ak))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["SecretName"], "acs/ram/user/app-reader");
    assert_eq!(b["Arn"], "acs:kms:cn-hangzhou:1:secret/acs/ram/user/app-reader");
    api.store
        .describe("acs/ram/user/app-reader")
        .await
        .expect("stored under the generated name");
    // The same user again: the generated name exists.
    let (s, b) = api
        .v3(&api.admin, create("$Auto", "RAMCredentials", RAM, ak))
        .await;
    assert_eq!((s, code(&b)), (409, "Rejected.ResourceExist"), "{b}");

    let ecs_value = r#"{"UserName":"ecs-user","Password":"p"}"#;
    let (s, b) = api
        .v3(&api.admin, create("acs/ecs/web-1", "ECS", ECS, ecs_value))
        .await;
    assert_eq!(s, 200, "{b}");

    for (name, kind, ext, data, says) in [
        ("acs/ram/user/x", "RAMCredentials", RAM, ak, "must be $Auto"),
        ("app-reader", "RAMCredentials", RAM, ak, "must be $Auto"),
        (
            "$Auto",
            "RAMCredentials",
            r#"{"SecretSubType":"RamUserAccessKey"}"#,
            ak,
            "UserName",
        ),
        ("web-1", "ECS", ECS, ecs_value, "must start with acs/ecs/"),
        ("acs/app", "Generic", "", "x", "must not start with acs/"),
        ("acs/db", "Rds", RDS, account, "must not start with acs/"),
        ("acs/cache", "Redis", RDS, account, "must not start with acs/"),
        ("acs/polar", "PolarDB", RDS, account, "must not start with acs/"),
        ("$Auto", "Generic", "", "x", "secret name"),
    ] {
        let (s, b) = api.v3(&api.admin, create(name, kind, ext, data)).await;
        assert_eq!((s, code(&b)), (400, "InvalidParameter"), "{name} {kind}: {b}");
        let msg = b["Message"].as_str().unwrap_or("");
        assert!(msg.contains(says), "{name} {kind}: {msg}");
    }
    assert!(api.store.describe("acs/app").await.is_err());
}

/// The audit log's lines, parsed.
fn audit_lines(api: &Api) -> Vec<Value> {
    std::fs::read_to_string(&api.audit)
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// An ARN is audited as the name it resolves to, a padded or foreign ARN is refused (never truncated into
/// the audit), and the ARN's region and account must be this daemon's.
#[tokio::test]
async fn the_audit_names_the_secret_an_arn_resolves_to() {
    let api = Api::start().await;
    api.create("prod/db", "v1", "value").await;

    let padded = format!("acs:kms:{}:secret/prod/db", "p".repeat(300));
    let (s, b) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", &padded)]))
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"), "{b}");
    assert!(!b.to_string().contains("value"), "{b}");
    let last = audit_lines(&api).pop().expect("a line");
    assert_eq!(last["result"], "InvalidParameter");
    assert!(last["secret_name"].is_null(), "{last}");
    assert!(
        !last.to_string().contains("ppp"),
        "the padding reached the audit: {last}"
    );

    // The same padding as a region (a syntactically valid one) names no secret here.
    let region = format!("acs:kms:{}:1:secret/prod/db", "p".repeat(60));
    let (s, b) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", &region)]))
        .await;
    assert_eq!((s, code(&b)), (404, "Forbidden.ResourceNotFound"), "{b}");

    for arn in [
        "acs:kms:cn-hangzhou:1:secret/prod/db",
        // No account is configured: the vendor's 16-digit account ids are accepted.
        "acs:kms:cn-hangzhou:1234567890123456:secret/prod/db",
    ] {
        let (s, b) = api
            .v3(&api.admin, req("GetSecretValue", &[("SecretName", arn)]))
            .await;
        assert_eq!(s, 200, "{arn}: {b}");
        assert_eq!(b["SecretName"], "prod/db");
        let last = audit_lines(&api).pop().expect("a line");
        assert_eq!(last["secret_name"], "prod/db", "{last}");
        assert_eq!(last["version_id"], "v1", "the version read is recorded: {last}");
        assert_eq!(last["result"], "Success");
    }
    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "DeleteSecret",
                &[("SecretName", "acs:kms:ap-southeast-1:1:secret/prod/db")],
            ),
        )
        .await;
    assert_eq!((s, code(&b)), (404, "Forbidden.ResourceNotFound"), "{b}");
    assert!(
        api.store
            .describe("prod/db")
            .await
            .expect("kept")
            .planned_delete_at
            .is_none()
    );

    // A write is recorded, before it runs, under the resolved name.
    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "DeleteSecret",
                &[("SecretName", "acs:kms:cn-hangzhou:1:secret/prod/db")],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let lines = audit_lines(&api);
    let started = &lines[lines.len() - 2];
    assert_eq!(
        (started["result"].as_str(), started["secret_name"].as_str()),
        (Some("Started"), Some("prod/db")),
        "{started}"
    );

    // Over-long parameters are refused, not cut: a 193-character name, a 65-character version id.
    let long = "n".repeat(193);
    let (s, b) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", &long)]))
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"), "{b}");
    let version = "v".repeat(65);
    let mut r = req(
        "PutSecretValue",
        &[("SecretName", "prod/db"), ("VersionId", &version)],
    );
    r.body = Some("SecretData=x".to_owned());
    let (s, b) = api.v3(&api.admin, r).await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"), "{b}");
    let last = audit_lines(&api).pop().expect("a line");
    assert!(last["version_id"].is_null(), "{last}");
}

/// A batch's audit line lists every secret it read, and a `SecretName` parameter beside `SecretsList`
/// (a decoy) is neither read nor audited.
#[tokio::test]
async fn a_batch_audits_every_name_and_never_a_decoy() {
    let api = Api::start().await;
    api.create("app/a", "v1", "alpha").await;
    api.create("app/b", "v1", "beta").await;
    api.create("decoy", "v1", "gamma").await;
    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "BatchGetSecretValue",
                &[
                    (
                        "SecretsList",
                        r#"["app/a","acs:kms:cn-hangzhou:1:secret/app/b","app/missing"]"#,
                    ),
                    ("SecretName", "decoy"),
                ],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["SecretValues"].as_array().map(Vec::len), Some(2), "{b}");
    assert!(!b.to_string().contains("gamma"), "{b}");
    let last = audit_lines(&api).pop().expect("a line");
    assert_eq!(last["action"], "BatchGetSecretValue");
    assert_eq!(
        last["secret_names"],
        serde_json::json!(["app/a", "app/b", "app/missing"]),
        "{last}"
    );
    assert!(last["secret_name"].is_null(), "{last}");
    assert!(!last.to_string().contains("decoy"), "{last}");
    // Other actions keep the single `secret_name` field, without `secret_names`.
    let (s, _) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", "app/a")]))
        .await;
    assert_eq!(s, 200);
    let last = audit_lines(&api).pop().expect("a line");
    assert_eq!(last["secret_name"], "app/a");
    assert!(last.get("secret_names").is_none(), "{last}");
}

/// A Deny of `kms:BatchGetSecretValue` in a secret's policy keeps that secret out of every batch, while
/// GetSecretValue (not denied) still reads it.
#[tokio::test]
async fn a_deny_of_batch_get_secret_value_applies_to_batches() {
    let api = Api::start().await;
    api.create("app/a", "v1", "alpha").await;
    api.create("app/b", "v1", "beta").await;
    let reader = api
        .key(r#"{"Actions":["kms:GetSecretValue","kms:BatchGetSecretValue"],"Secrets":["app/*"]}"#)
        .await;
    let deny = format!(
        r#"{{"Version":"1","Statement":[{{"Effect":"Deny","Principal":{{"RAM":["{}"]}},"Action":["kms:BatchGetSecretValue"],"Resource":["*"]}}]}}"#,
        reader.id()
    );
    let (s, b) = api
        .v3(
            &api.admin,
            req("SetSecretPolicy", &[("SecretName", "app/a"), ("Policy", &deny)]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api
        .v3(
            &reader,
            req("BatchGetSecretValue", &[("SecretsList", r#"["app/a","app/b"]"#)]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["SecretValues"].as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b["SecretValues"][0]["SecretName"], "app/b");
    assert_eq!(b["Errors"][0]["SecretName"], "app/a");
    assert_eq!(b["Errors"][0]["Code"], "Forbidden.NoPermission");
    assert!(!b.to_string().contains("alpha"), "{b}");
    let (s, b) = api
        .v3(&reader, req("GetSecretValue", &[("SecretName", "app/a")]))
        .await;
    assert_eq!(s, 200, "{b}");
}

/// SetSecretPolicy and CreateSecret refuse what the policy grammar does not cover (here an Allow that
/// would be limited by a `Condition`, which rotd cannot evaluate), instead of dropping it.
#[tokio::test]
async fn a_policy_with_a_condition_is_refused() {
    let api = Api::start().await;
    api.create("app/a", "v1", "x").await;
    let conditional = r#"{"Version":"1","Statement":[{"Effect":"Allow","Principal":{"RAM":["*"]},"Action":["kms:GetSecretValue"],"Resource":["*"],"Condition":{"IpAddress":{"acs:SourceIp":["10.0.0.0/8"]}}}]}"#;
    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "SetSecretPolicy",
                &[("SecretName", "app/a"), ("Policy", conditional)],
            ),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"), "{b}");
    assert!(b["Message"].as_str().unwrap_or("").contains("Condition"), "{b}");
    assert!(api.store.describe("app/a").await.expect("meta").policy.is_none());

    let mut r = req(
        "CreateSecret",
        &[
            ("SecretName", "app/b"),
            ("VersionId", "v1"),
            ("Policy", conditional),
        ],
    );
    r.body = Some("SecretData=x".to_owned());
    let (s, b) = api.v3(&api.admin, r).await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"), "{b}");
    assert!(
        api.store.describe("app/b").await.is_err(),
        "created despite the refused policy"
    );

    // A Deny written with NotPrincipal would match nothing: refused too.
    let not_principal = r#"{"Version":"1","Statement":[{"Effect":"Deny","NotPrincipal":{"RAM":["LTAIx"]},"Action":["kms:*"],"Resource":["*"]}]}"#;
    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "SetSecretPolicy",
                &[("SecretName", "app/a"), ("Policy", not_principal)],
            ),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"), "{b}");
}

/// A stored policy that no longer parses (written before the strict grammar) denies every action on its
/// secret, even to a key whose own policy allows everything, and hides the secret from listings.
#[tokio::test]
async fn a_stored_policy_that_does_not_parse_denies() {
    let api = Api::start().await;
    api.create("app/legacy", "v1", "legacy-value").await;
    api.create("app/other", "v1", "other-value").await;
    let legacy = r#"{"Version":"1","Statement":[{"Effect":"Allow","Principal":{"RAM":["*"]},"Action":["kms:*"],"Resource":["*"],"Condition":{"Bool":{"acs:SecureTransport":"true"}}}]}"#;
    api.store
        .update_secret(
            "app/legacy",
            rotd_store::SecretUpdate {
                policy: Some(Some(legacy.to_owned())),
                ..Default::default()
            },
        )
        .await
        .expect("store the legacy policy");
    for action in [
        "GetSecretValue",
        "DescribeSecret",
        "DeleteSecret",
        "GetSecretPolicy",
    ] {
        let (s, b) = api
            .v3(&api.admin, req(action, &[("SecretName", "app/legacy")]))
            .await;
        assert_eq!((s, code(&b)), (403, "Forbidden.NoPermission"), "{action}: {b}");
        assert!(!b.to_string().contains("legacy-value"), "{b}");
    }
    let (s, b) = api
        .v3(
            &api.admin,
            req(
                "BatchGetSecretValue",
                &[("SecretsList", r#"["app/legacy","app/other"]"#)],
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["Errors"][0]["Code"], "Forbidden.NoPermission", "{b}");
    assert_eq!(b["SecretValues"][0]["SecretName"], "app/other", "{b}");
    let (s, b) = api.v3(&api.admin, req("ListSecrets", &[])).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["TotalCount"], 1, "{b}");
    assert!(
        api.store
            .describe("app/legacy")
            .await
            .expect("kept")
            .planned_delete_at
            .is_none()
    );
}

/// V3 writes query names unescaped into the canonical query, so a name holding `&` or `=` would sign like
/// other parameters: such names (anything outside `A-Za-z0-9-_.~`) are refused before any key lookup.
#[tokio::test]
async fn v3_query_names_outside_the_unreserved_set_are_refused() {
    let api = Api::start().await;
    api.create("s1", "v1", "x").await;
    for name in ["a&b", "VersionStage=ACSPrevious&x", "my key"] {
        let (s, b) = api
            .v3(
                &api.admin,
                req("GetSecretValue", &[("SecretName", "s1"), (name, "c")]),
            )
            .await;
        assert_eq!((s, code(&b)), (400, "InvalidParameter"), "{name}: {b}");
    }
    let (s, b) = api
        .v3(
            &api.admin,
            req("GetSecretValue", &[("SecretName", "s1"), ("Extra.Name_1-~", "c")]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

/// `Description` (CreateSecret, UpdateSecret) and `ExcludeCharacters` (GetRandomPassword) have limits:
/// over them the request is refused, and nothing is stored.
#[tokio::test]
async fn description_and_exclude_characters_have_limits() {
    let api = Api::start().await;
    let long = "d".repeat(8_193);
    let mut r = req(
        "CreateSecret",
        &[
            ("SecretName", "app/d"),
            ("VersionId", "v1"),
            ("Description", &long),
        ],
    );
    r.body = Some("SecretData=x".to_owned());
    let (s, b) = api.v3(&api.admin, r).await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"), "{b}");
    assert!(api.store.describe("app/d").await.is_err());
    let longest = "d".repeat(8_192);
    let mut r = req(
        "CreateSecret",
        &[
            ("SecretName", "app/d"),
            ("VersionId", "v1"),
            ("Description", &longest),
        ],
    );
    r.body = Some("SecretData=x".to_owned());
    let (s, b) = api.v3(&api.admin, r).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api
        .v3(
            &api.admin,
            req("UpdateSecret", &[("SecretName", "app/d"), ("Description", &long)]),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"), "{b}");
    assert_eq!(
        api.store.describe("app/d").await.expect("meta").description,
        longest
    );

    let exclude = "a".repeat(129);
    let (s, b) = api
        .v3(
            &api.admin,
            req("GetRandomPassword", &[("ExcludeCharacters", &exclude)]),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidParameter"), "{b}");
    let (s, b) = api
        .v3(
            &api.admin,
            req("GetRandomPassword", &[("ExcludeCharacters", &exclude[..128])]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}
