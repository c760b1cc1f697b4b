//! The API's metrics as Prometheus scrapes them: a running API, its series registered into a registry the
//! test owns (as the binary does), and `/metrics` of a running admin listener.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rotd_api::kms::ApiConfig;
use support::{Api, req};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(port: u16) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert!(out.contains("application/openmetrics-text"), "{out}");
    out
}

/// The value of the series `name` (exact, labels included) in an exposition.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_failures_latency_audit_writes_and_connections() {
    let api = Api::start(ApiConfig::default()).await;
    let mut registry = prometheus_client::registry::Registry::default();
    api.state.metrics().register(&mut registry);
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let (_ready, ready_rx) = tokio::sync::watch::channel(true);
    let admin = rotd_api::admin::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let admin_port = admin.local_addr().expect("addr").port();
    tokio::spawn(rotd_api::admin::serve(
        admin,
        Arc::new(registry),
        ready_rx,
        stop_rx,
    ));

    api.create("s1", "v1", "a-value-never-in-metrics").await;
    for _ in 0..2 {
        let (s, _) = api
            .v3(&api.admin, req("GetSecretValue", &[("SecretName", "s1")]))
            .await;
        assert_eq!(s, 200);
    }
    let (s, _) = api
        .v3(&api.admin, req("GetSecretValue", &[("SecretName", "nope")]))
        .await;
    assert_eq!(s, 404);
    // Unsigned, naming an action that does not exist: its label is "other", never the text sent.
    let junk = support::junk().replace("GetSecretValue", "DropAllTablesZZZ");
    let (s, _) = api.raw(junk, b"").await;
    assert_eq!(s, 400);
    // One idle connection stays open while the scrape runs.
    let _idle = api.tls().await;

    let mut text = scrape(admin_port).await;
    for _ in 0..50 {
        if value(&text, "rotd_api_connections_open") == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = scrape(admin_port).await;
    }
    let series = [
        (
            r#"rotd_api_requests_total{action="CreateSecret",code="Success"}"#,
            1.0,
        ),
        (
            r#"rotd_api_requests_total{action="GetSecretValue",code="Success"}"#,
            2.0,
        ),
        (
            r#"rotd_api_requests_total{action="GetSecretValue",code="Forbidden.ResourceNotFound"}"#,
            1.0,
        ),
        (
            r#"rotd_api_requests_total{action="other",code="IncompleteSignature"}"#,
            1.0,
        ),
        (r#"rotd_api_auth_failures_total{reason="unsigned"}"#, 1.0),
        ("rotd_api_request_duration_seconds_count", 5.0),
        ("rotd_api_connections_open", 1.0),
    ];
    for (name, want) in series {
        assert_eq!(value(&text, name), Some(want), "{name}:\n{text}");
    }
    // CreateSecret writes two lines (Started, Success), the reads one each, the junk one (sampled in):
    // at least one batch, at most one per line.
    let batches = value(&text, "rotd_api_audit_write_seconds_count").expect("audit histogram");
    assert!((1.0..=6.0).contains(&batches), "{batches}:\n{text}");
    assert!(
        text.contains("# TYPE rotd_api_audit_write_seconds histogram"),
        "{text}"
    );
    assert!(
        !text.contains("DropAllTables") && !text.contains("a-value-never"),
        "{text}"
    );
    assert!(!text.contains(api.admin.id()), "no key id in a label:\n{text}");
}
