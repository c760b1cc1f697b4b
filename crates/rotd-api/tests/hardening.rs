//! The API under hostile or heavy use: the replay cache is taken only by keys allowed to run, slow and
//! unauthenticated clients cannot hold the service, and the audit stays fail-closed.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rotd_api::kms::{ApiConfig, Limits, RateLimit};
use rotd_store::Keyring;
use support::{Api, code, req};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// A disabled key's request is refused before its nonce is recorded: once the key is enabled again, the
/// very same signed request (same nonce) is accepted instead of being refused as a replay.
#[tokio::test]
async fn a_disabled_key_cannot_fill_the_nonce_cache() {
    let api = Api::start(ApiConfig::default()).await;
    api.create("s1", "v1", "x").await;
    let key = api.key(support::ALL).await;
    api.store
        .set_access_key_enabled(key.id(), false)
        .await
        .expect("disable");
    let r = req("GetSecretValue", &[("SecretName", "s1")]);
    let (head, body) = api.signed_v3(&key, &r);
    let (s, b) = api.raw(head.clone(), &body).await;
    assert_eq!((s, code(&b)), (403, "Forbidden.AccessKey"), "{b}");
    api.store
        .set_access_key_enabled(key.id(), true)
        .await
        .expect("enable");
    let (s, b) = api.raw(head.clone(), &body).await;
    assert_eq!(s, 200, "the refused request's nonce was recorded: {b}");
    // And now, accepted once, it is a replay.
    let (s, b) = api.raw(head, &body).await;
    assert_eq!((s, code(&b)), (400, "SignatureNonceUsed"));
}

/// A throttled request does not record its nonce either: retried once the bucket refills, it runs.
#[tokio::test]
async fn a_throttled_request_does_not_take_a_nonce() {
    let api = Api::start(ApiConfig {
        rate_limit: RateLimit {
            per_second: 2.0,
            burst: 1.0,
        },
        ..ApiConfig::default()
    })
    .await;
    api.create("s1", "v1", "x").await;
    let key = api.key(support::ALL).await;
    let (s, _) = api.v3(&key, req("GetSecretValue", &[("SecretName", "s1")])).await;
    assert_eq!(s, 200);
    let r = req("GetSecretValue", &[("SecretName", "s1")]);
    let (head, body) = api.signed_v3(&key, &r);
    let (s, b) = api.raw(head.clone(), &body).await;
    assert_eq!((s, code(&b)), (429, "Rejected.Throttling"), "{b}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (s, b) = api.raw(head, &body).await;
    assert_eq!(s, 200, "the throttled request's nonce was recorded: {b}");
}

/// A stored value whose CMK version the running keyring lacks is the server's failure
/// (`InternalFailure` 500), never `Forbidden.ResourceNotFound`: the secret exists.
#[tokio::test]
async fn a_missing_cmk_version_is_an_internal_error_not_not_found() {
    let old = Keyring::generate(rotd_core::Clock::system().now());
    let api = Api::start_with_keyring(ApiConfig::default(), copy(&old)).await;
    let mut newer = copy(&old);
    newer.rotate(rotd_store::DEFAULT_CMK, rotd_core::Clock::system().now());
    api.store.replace_keyring(newer);
    api.create("s1", "v1", "x").await;
    // The daemon now runs with a keyring that lacks version 2, which wraps s1's data key.
    api.store.replace_keyring(old);
    let (s, b) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", "s1")]))
        .await;
    assert_eq!((s, code(&b)), (500, "InternalFailure"), "{b}");
    // A CMK the request itself names and the keyring lacks is still the client's error.
    let mut r = req(
        "CreateSecret",
        &[
            ("SecretName", "s2"),
            ("VersionId", "v1"),
            ("EncryptionKeyId", "nope"),
        ],
    );
    r.body = Some("SecretData=x".to_owned());
    let (s, b) = api.v3(&api.admin, r).await;
    assert_eq!((s, code(&b)), (404, "Forbidden.ResourceNotFound"), "{b}");
}

fn copy(k: &Keyring) -> Keyring {
    Keyring::parse(&k.to_bytes()).expect("copy")
}

fn short_limits(max_connections: usize) -> ApiConfig {
    ApiConfig {
        limits: Limits {
            header_timeout: Duration::from_secs(2),
            body_timeout: Duration::from_secs(2),
            max_connections,
        },
        ..ApiConfig::default()
    }
}

/// Reads until the peer closes (Ok(true)), or gives up after `within` (Ok(false)).
async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = rotd_core::Clock::system().instant() + within;
    loop {
        match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Slowloris: 50 connections that send part of a request head (25 over TLS) or nothing at all (25 that
/// never even start TLS) are all closed once the header timeout passes, and a normal SDK-shaped request
/// is served meanwhile.
#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    let api = Api::start(short_limits(1024)).await;
    api.create("s1", "v1", "x").await;
    let started = rotd_core::Clock::system().instant();
    let mut partial = Vec::new();
    for _ in 0..25 {
        let mut s = api.tls().await;
        s.write_all(b"POST /?SecretName=s1 HTTP/1.1\r\nhost: localhost\r\nx-acs-act")
            .await
            .expect("write");
        s.flush().await.expect("flush");
        partial.push(s);
    }
    let mut silent = Vec::new();
    for _ in 0..25 {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", api.port))
                .await
                .expect("connect"),
        );
    }
    let (s, b) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", "s1")]))
        .await;
    assert_eq!(
        s, 200,
        "a normal client is served while 50 slow ones are open: {b}"
    );
    for s in &mut partial {
        assert!(
            closed_within(s, Duration::from_secs(6)).await,
            "a partial head is still open"
        );
    }
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(6)).await,
            "a silent connection is still open"
        );
    }
    let took = rotd_core::Clock::system().elapsed(started);
    assert!(
        took >= Duration::from_millis(1900),
        "closed before the timeout: {took:?}"
    );
}

/// A body that trickles in slower than the body timeout is refused with 408, and the connection ends.
#[tokio::test]
async fn a_trickled_body_is_cut_off_after_the_body_timeout() {
    let api = Api::start(short_limits(1024)).await;
    let mut s = api.tls().await;
    s.write_all(b"POST /?SecretName=s1 HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 100\r\n\r\nSecretData=")
        .await
        .expect("write");
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "still open after the body timeout");
    let (status, body) = support::parse_response(&out);
    assert_eq!((status, code(&body)), (408, "RequestTimeout"), "{body}");
}

/// At most `max_connections` are open: with the limit taken by idle clients, a new request waits until
/// the header timeout frees a slot, and is served then.
#[tokio::test]
async fn the_connection_limit_holds_new_clients_until_a_slot_frees() {
    let api = Api::start(short_limits(2)).await;
    api.create("s1", "v1", "x").await;
    let _a = api.tls().await;
    let _b = api.tls().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = rotd_core::Clock::system().instant();
    let (s, b) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", "s1")]))
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(
        rotd_core::Clock::system().elapsed(started) >= Duration::from_millis(1500),
        "served past the limit after {:?}",
        rotd_core::Clock::system().elapsed(started)
    );
}

/// HTTP/1.1 only: ALPN negotiates http/1.1 when h2 is offered too, and a client that offers no ALPN and
/// sends the HTTP/2 preface gets no HTTP/2 SETTINGS frame back.
#[tokio::test]
async fn only_http1_is_served() {
    let api = Api::start(ApiConfig::default()).await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rotd_api::tls::read_certs(&api.dir.path().join("tls/ca.pem")).expect("ca") {
        roots.add(c).expect("add");
    }
    let client = |alpn: Vec<Vec<u8>>| {
        let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        c.alpn_protocols = alpn;
        tokio_rustls::TlsConnector::from(Arc::new(c))
    };
    let name = || rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tcp = || tokio::net::TcpStream::connect(("127.0.0.1", api.port));

    let s = client(vec![b"h2".to_vec(), b"http/1.1".to_vec()])
        .connect(name(), tcp().await.expect("connect"))
        .await
        .expect("tls");
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    let mut s = client(Vec::new())
        .connect(name(), tcp().await.expect("connect"))
        .await
        .expect("tls");
    // The preface, then an empty SETTINGS frame, as an HTTP/2 client with prior knowledge sends.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let settings_frame = out.len() >= 9 && out[3] == 0x04;
    assert!(!settings_frame, "the server answered HTTP/2: {out:?}");
    assert!(out.is_empty() || out.starts_with(b"HTTP/1.1"), "{out:?}");
}

fn source_budget(burst: f64, trusted: &[&str]) -> ApiConfig {
    ApiConfig {
        per_source: RateLimit {
            per_second: 0.1,
            burst,
        },
        trusted_proxies: trusted.iter().map(|s| s.parse().expect("net")).collect(),
        ..ApiConfig::default()
    }
}

/// An unsigned request head carrying `X-Forwarded-For: xff`.
fn junk_forwarded_for(xff: &str) -> String {
    support::junk().replace(
        "host: localhost\r\n",
        &format!("host: localhost\r\nx-forwarded-for: {xff}\r\n"),
    )
}

/// A flood from one address spends that address's budget, and then even a correctly signed request from
/// it is throttled, before its key is looked up or its signature checked (its nonce is not taken: the
/// same signed request is served from another address). Another address is served throughout.
#[tokio::test]
async fn a_flood_from_one_address_is_throttled_while_another_is_served() {
    let api = Api::start(source_budget(20.0, &[])).await;
    api.create("s1", "v1", "x").await;
    let mut codes = Vec::new();
    for _ in 0..30 {
        let (s, b) = api.raw_from("127.0.0.1", support::junk(), b"").await;
        codes.push((s, code(&b).to_owned()));
    }
    // The create above took one token.
    let refused = codes.iter().filter(|c| c.0 == 400).count();
    let throttled = codes
        .iter()
        .filter(|c| *c == &(429, "Rejected.Throttling".to_owned()))
        .count();
    assert_eq!((refused, throttled), (19, 11), "{codes:?}");
    let r = req("GetSecretValue", &[("SecretName", "s1")]);
    let (head, body) = api.signed_v3(&api.admin, &r);
    let (s, b) = api.raw_from("127.0.0.1", head.clone(), &body).await;
    assert_eq!((s, code(&b)), (429, "Rejected.Throttling"), "{b}");
    let (s, b) = api.raw_from("127.0.0.2", head, &body).await;
    assert_eq!(
        s, 200,
        "another address is served, and the throttled request took no nonce: {b}"
    );
    // The throttled requests, the signed one included, failed before authentication: counted by
    // reason, and none of them is a line naming a key.
    let throttled = api
        .state
        .metrics()
        .auth_failures(rotd_api::kms::AuthFailure::Throttled);
    assert_eq!(throttled, 12);
    for l in support::audit_lines(&api) {
        if l["result"] == "Rejected.Throttling" {
            assert!(l["access_key_id"].is_null(), "the key was looked at: {l}");
            assert!(
                l["source"].as_str().is_some_and(|s| s.starts_with("127.0.0.1:")),
                "{l}"
            );
        }
    }
}

/// `X-Forwarded-For` from a peer that is not a trusted proxy changes nothing: the peer is the source for
/// the budget and the audit.
#[tokio::test]
async fn a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    // 127.0.0.2 is a trusted proxy; the requests come from 127.0.0.1.
    let api = Api::start(source_budget(3.0, &["127.0.0.2"])).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let (s, _) = api
            .raw_from("127.0.0.1", junk_forwarded_for(&format!("198.51.100.{i}")), b"")
            .await;
        statuses.push(s);
    }
    assert_eq!(
        statuses,
        [400, 400, 400, 429, 429],
        "each forged address got its own budget"
    );
    for l in support::audit_lines(&api) {
        assert!(
            l["source"].as_str().is_some_and(|s| s.starts_with("127.0.0.1:")),
            "{l}"
        );
        assert!(l.get("via").is_none(), "{l}");
    }
}

/// From a trusted proxy, the right-most address of `X-Forwarded-For` that is not a trusted proxy is the
/// source: each client behind the proxy has its own budget, a client cannot forge its way to another's
/// by prepending addresses, and the audit names the client and the proxy.
#[tokio::test]
async fn a_forwarded_for_from_a_trusted_proxy_is_honoured() {
    let api = Api::start(source_budget(2.0, &["127.0.0.0/30"])).await;
    let send = |xff: &'static str| {
        let api = &api;
        async move { api.raw_from("127.0.0.2", junk_forwarded_for(xff), b"").await.0 }
    };
    assert_eq!(send("198.51.100.1").await, 400);
    // A forged left part; the proxy chain (127.0.0.3 is trusted too) appended the real client.
    assert_eq!(send("203.0.113.50, 198.51.100.1, 127.0.0.3").await, 400);
    assert_eq!(send("198.51.100.1").await, 429, "the client's budget is spent");
    assert_eq!(
        send("203.0.113.50, 198.51.100.1").await,
        429,
        "forging does not help"
    );
    assert_eq!(
        send("198.51.100.2").await,
        400,
        "another client behind the proxy is served"
    );
    // The proxy's own budget is untouched by its clients': a request without the header is the proxy's.
    let (s, _) = api.raw_from("127.0.0.2", support::junk(), b"").await;
    assert_eq!(s, 400);
    let lines = support::audit_lines(&api);
    let sources: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["source"].as_str().unwrap_or(""),
                l["via"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(sources.len(), 6, "{sources:?}");
    for (source, via) in &sources[..5] {
        assert!(source.starts_with("198.51.100."), "{sources:?}");
        assert!(via.starts_with("127.0.0.2:"), "{sources:?}");
    }
    assert!(
        sources[5].0.starts_with("127.0.0.2:") && sources[5].1 == "-",
        "{sources:?}"
    );
}

/// Lifts the per-source budget: every test client comes from loopback.
fn unthrottled() -> ApiConfig {
    ApiConfig {
        per_source: RateLimit {
            per_second: 1e6,
            burst: 1e6,
        },
        ..ApiConfig::default()
    }
}

/// Sends `n` signed GetSecretValue requests at once, each on its own connection (all connected first,
/// then all written together); returns each one's (status, request id).
async fn concurrent_reads(api: &Arc<Api>, n: usize) -> Vec<(u16, String)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let api = api.clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let (head, body) = api.signed_v3(&api.admin, &req("GetSecretValue", &[("SecretName", "s1")]));
            let mut s = api.tls().await;
            barrier.wait().await;
            s.write_all(head.as_bytes()).await.expect("write");
            s.write_all(&body).await.expect("write body");
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            let (status, b) = support::parse_response(&out);
            (status, b["RequestId"].as_str().unwrap_or("").to_owned())
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.push(r.expect("task"));
    }
    out
}

/// Group commit: 200 requests at once each get their own audit line, whole (every line parses), and
/// before their response; the lines share syncs, so there are fewer syncs than lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_audit_syncs_and_each_gets_its_line() {
    const N: usize = 200;
    let api = Arc::new(Api::start(unthrottled()).await);
    api.create("s1", "v1", "x").await;
    let before = api.state.audit_stats();
    let answers = concurrent_reads(&api, N).await;
    let after = api.state.audit_stats();
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    let lines = support::audit_lines(&api);
    for (_, id) in &answers {
        let mine: Vec<_> = lines.iter().filter(|l| l["request_id"] == id.as_str()).collect();
        assert_eq!(mine.len(), 1, "request {id} has {} lines", mine.len());
        assert_eq!(mine[0]["result"], "Success");
    }
    let (lines, syncs) = (after.lines - before.lines, after.syncs - before.syncs);
    assert_eq!(lines, N as u64);
    assert!(syncs < lines, "{syncs} syncs for {lines} lines");
    eprintln!("{N} concurrent requests: {lines} audit lines, {syncs} syncs");
}

/// Fail-closed under concurrency: when the audit file cannot be written, every one of many concurrent
/// requests is refused with InternalFailure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_audit_log_refuses_every_concurrent_request() {
    let api = Arc::new(Api::start_with_audit(unthrottled(), "/dev/full".into()).await);
    let answers = concurrent_reads(&api, 50).await;
    assert!(
        answers.iter().all(|(s, _)| *s == 500),
        "a request was answered without its audit line: {answers:?}"
    );
    let stats = api.state.audit_stats();
    assert_eq!(stats.lines, 0);
    assert!(
        stats.failed_batches > 0 && stats.failed_batches == stats.syncs,
        "{stats:?}"
    );
}

/// Sends `heads` on one connection, pipelined (the last one closes it), and returns each answer's status.
async fn pipelined(api: &Api, heads: Vec<String>) -> Vec<u16> {
    let n = heads.len();
    let (mut rd, mut wr) = tokio::io::split(api.tls().await);
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    });
    for (i, head) in heads.into_iter().enumerate() {
        let head = if i + 1 == n {
            head
        } else {
            head.replace("connection: close\r\n", "")
        };
        wr.write_all(head.as_bytes()).await.expect("write");
    }
    wr.flush().await.expect("flush");
    let out = String::from_utf8_lossy(&reader.await.expect("reader")).into_owned();
    out.match_indices("HTTP/1.1 ")
        .map(|(i, _)| out[i + 9..i + 12].parse().expect("status"))
        .collect()
}

/// 500 requests without a valid signature are all counted by reason but only sampled into the audit log
/// (at most 10 a second), and the lines left out are accounted for by `suppressed` counts; a signed
/// request among them is audited in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_authentication_failures_are_counted_and_sampled() {
    use rotd_api::kms::AuthFailure;
    let api = Api::start(unthrottled()).await;
    api.create("s1", "v1", "x").await;
    let started = rotd_core::Clock::system().instant();
    let statuses = pipelined(&api, vec![support::junk(); 250]).await;
    assert_eq!(statuses, vec![400; 250]);
    let (s, b) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", "s1")]))
        .await;
    assert_eq!(s, 200, "{b}");
    let signed_id = b["RequestId"].as_str().expect("id").to_owned();
    let wrong = rotd_aliyun::AccessKey::new(api.admin.id(), rotd_core::Secret::from("nope"));
    let unknown = rotd_aliyun::AccessKey::new("LTAIunknown", rotd_core::Secret::from("nope"));
    let mut heads = Vec::new();
    for i in 0..250 {
        let key = if i < 150 { &wrong } else { &unknown };
        heads.push(
            api.signed_v3(key, &req("GetSecretValue", &[("SecretName", "s1")]))
                .0,
        );
    }
    let statuses = pipelined(&api, heads).await;
    assert_eq!(statuses.len(), 250);
    assert!(statuses[..150].iter().all(|s| *s == 400) && statuses[150..].iter().all(|s| *s == 404));
    let took = rotd_core::Clock::system().elapsed(started);
    // A last signed request carries the count of whatever was left out since the previous line.
    let (s, _) = api.v3(&api.admin, req("ListSecrets", &[])).await;
    assert_eq!(s, 200);

    let m = api.state.metrics();
    assert_eq!(m.auth_failures(AuthFailure::Unsigned), 250);
    assert_eq!(m.auth_failures(AuthFailure::BadSignature), 150);
    assert_eq!(m.auth_failures(AuthFailure::UnknownKey), 100);
    let lines = support::audit_lines(&api);
    let signed: Vec<_> = lines
        .iter()
        .filter(|l| l["request_id"] == signed_id.as_str())
        .collect();
    assert_eq!(signed.len(), 1);
    assert_eq!(signed[0]["access_key_id"], api.admin.id());
    assert_eq!(signed[0]["result"], "Success");
    let sampled = lines.iter().filter(|l| l["access_key_id"].is_null()).count() as u64;
    let suppressed: u64 = lines.iter().filter_map(|l| l["suppressed"].as_u64()).sum();
    let bound = 10 * (took.as_secs() + 2);
    assert!(sampled <= bound, "{sampled} pre-authentication lines in {took:?}");
    assert_eq!(sampled + suppressed, 500, "every failure is a line or in a count");
    eprintln!(
        "500 junk requests in {took:?}: {sampled} audit lines, {suppressed} suppressed, {} lines in all",
        lines.len()
    );
}
