//! The API under hostile or heavy use: the replay cache is taken only by keys allowed to run, slow and
//! unauthenticated clients cannot hold the service, and the audit stays fail-closed.

mod support;

use std::time::Duration;

use rotd_api::kms::{ApiConfig, RateLimit};
use rotd_store::Keyring;
use support::{Api, code, req};

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
    let old = Keyring::generate(chrono::Utc::now());
    let api = Api::start_with_keyring(ApiConfig::default(), copy(&old)).await;
    let mut newer = copy(&old);
    newer.rotate(rotd_store::DEFAULT_CMK, chrono::Utc::now());
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
