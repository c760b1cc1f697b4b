//! The CA and server certificate: files, permissions, idempotence, rotation, and a real handshake by a
//! client that trusts only `ca.pem`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rotd_api::tls::{self, TlsPaths};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn names() -> Vec<String> {
    vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// Completes a TLS handshake against a server using `dir`'s certificate and echoes one byte, as a client
/// trusting only `dir`'s CA and asking for `server_name`.
async fn handshake(dir: &Path, server_name: &str) -> Result<(), String> {
    let server = TlsAcceptor::from(tls::server_config(dir).map_err(|e| e.to_string())?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await
            && let Ok(mut s) = server.accept(tcp).await
        {
            let mut b = [0u8; 1];
            if s.read_exact(&mut b).await.is_ok() {
                let _ = s.write_all(&b).await;
                let _ = s.shutdown().await;
            }
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    for c in tls::read_certs(&TlsPaths::in_dir(dir).ca_cert).map_err(|e| e.to_string())? {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let mut s = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(b"x").await.map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
    assert_eq!(&b, b"x");
    Ok(())
}

#[tokio::test]
async fn ensure_creates_everything_once_with_private_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls_dir = dir.path().join("tls");
    let first = tls::ensure(&tls_dir, &names(), rotd_core::Clock::system().now()).expect("ensure");
    assert!(first.created_ca && first.created_server_cert);
    let p = TlsPaths::in_dir(&tls_dir);
    assert_eq!(mode(&p.ca_key), 0o600);
    assert_eq!(mode(&p.server_key), 0o600);
    assert_eq!(mode(&p.ca_cert), 0o644);
    let ca = std::fs::read(&p.ca_cert).expect("ca");
    let cert = std::fs::read(&p.server_cert).expect("cert");
    let again = tls::ensure(&tls_dir, &names(), rotd_core::Clock::system().now()).expect("ensure again");
    assert_eq!(again, tls::Ensured::default());
    assert_eq!(std::fs::read(&p.ca_cert).expect("ca"), ca);
    assert_eq!(std::fs::read(&p.server_cert).expect("cert"), cert);

    // A missing server certificate is re-issued from the existing CA.
    std::fs::remove_file(&p.server_cert).expect("rm");
    let third = tls::ensure(&tls_dir, &names(), rotd_core::Clock::system().now()).expect("ensure third");
    assert!(!third.created_ca && third.created_server_cert);
    assert_eq!(std::fs::read(&p.ca_cert).expect("ca"), ca);
}

#[tokio::test]
async fn a_client_trusting_only_the_ca_connects_by_ip_and_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    tls::ensure(dir.path(), &names(), rotd_core::Clock::system().now()).expect("ensure");
    handshake(dir.path(), "127.0.0.1").await.expect("ip handshake");
    handshake(dir.path(), "localhost").await.expect("dns handshake");
    let err = handshake(dir.path(), "example.com")
        .await
        .expect_err("wrong name must fail");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn rotation_reissues_from_the_same_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The CA is created for every name the rotation below uses: it may issue only for those.
    let mut all = names();
    all.extend(["rotd.internal".to_owned(), "::1".to_owned()]);
    tls::ensure(dir.path(), &all, rotd_core::Clock::system().now()).expect("ensure");
    let p = TlsPaths::in_dir(dir.path());
    let ca = std::fs::read(&p.ca_cert).expect("ca");
    let before = std::fs::read(&p.server_cert).expect("cert");
    let key_before = std::fs::read(&p.server_key).expect("key");
    let names2 = vec![
        "rotd.internal".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    tls::rotate_server_cert(dir.path(), &names2, rotd_core::Clock::system().now()).expect("rotate");
    assert_eq!(std::fs::read(&p.ca_cert).expect("ca"), ca);
    assert_ne!(std::fs::read(&p.server_cert).expect("cert"), before);
    assert_ne!(std::fs::read(&p.server_key).expect("key"), key_before);
    assert_eq!(mode(&p.server_key), 0o600);
    handshake(dir.path(), "rotd.internal").await.expect("new name");
    handshake(dir.path(), "127.0.0.1").await.expect("ip");
    assert!(
        handshake(dir.path(), "localhost").await.is_err(),
        "old name is gone"
    );
    assert!(matches!(
        tls::rotate_server_cert(dir.path(), &[], rotd_core::Clock::system().now()),
        Err(tls::TlsError::NoNames)
    ));
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = tls::server_config(dir.path()).expect_err("nothing there");
    assert!(err.to_string().contains("server.pem"), "{err}");
}

/// Signs a certificate for `name` with the CA key in `dir` directly, as someone who stole the key would,
/// and installs it as the server certificate.
fn forge(dir: &Path, name: &str) {
    let p = TlsPaths::in_dir(dir);
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&p.ca_key).expect("ca key")).expect("key");
    let mut ca = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "rotd instance CA");
    dn.push(rcgen::DnType::OrganizationName, "rotd");
    ca.distinguished_name = dn;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("sign");
    std::fs::write(&p.server_cert, cert.pem()).expect("cert");
    std::fs::write(&p.server_key, key.serialize_pem()).expect("key");
}

#[tokio::test]
async fn the_ca_cannot_vouch_for_names_it_was_not_created_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    tls::ensure(dir.path(), &names(), rotd_core::Clock::system().now()).expect("ensure");
    let p = TlsPaths::in_dir(dir.path());
    let cert = std::fs::read(&p.server_cert).expect("cert");
    // rotd refuses to issue what clients would refuse, and changes nothing.
    let e = tls::rotate_server_cert(
        dir.path(),
        &["bank.example.com".to_owned()],
        rotd_core::Clock::system().now(),
    )
    .expect_err("outside the CA's names");
    assert!(e.to_string().contains("would not be trusted by clients"), "{e}");
    assert!(e.to_string().contains("create a new CA"), "{e}");
    assert_eq!(std::fs::read(&p.server_cert).expect("cert"), cert);
    // A certificate forged with the CA key for a name inside its constraints is accepted (the forge
    // works), one for any other host is refused by a client that trusts ca.pem.
    forge(dir.path(), "localhost");
    handshake(dir.path(), "localhost")
        .await
        .expect("inside the constraints");
    forge(dir.path(), "bank.example.com");
    let err = handshake(dir.path(), "bank.example.com")
        .await
        .expect_err("a stolen CA key cannot vouch for another host");
    assert!(err.contains("NameConstraintViolation"), "{err}");
    // A wildcard name permits its subdomains.
    let wild = tempfile::tempdir().expect("tempdir");
    tls::ensure(
        wild.path(),
        &["*.svc.internal".to_owned()],
        rotd_core::Clock::system().now(),
    )
    .expect("wildcard");
    tls::rotate_server_cert(
        wild.path(),
        &["api.svc.internal".to_owned()],
        rotd_core::Clock::system().now(),
    )
    .expect("a name under the wildcard's domain");
    handshake(wild.path(), "api.svc.internal")
        .await
        .expect("handshake");
}

#[tokio::test]
async fn private_keys_readable_by_others_or_behind_a_symlink_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    tls::ensure(dir.path(), &names(), rotd_core::Clock::system().now()).expect("ensure");
    let p = TlsPaths::in_dir(dir.path());
    std::fs::set_permissions(&p.server_key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let e = tls::server_config(dir.path()).expect_err("group-readable server key");
    assert!(
        e.to_string()
            .contains("accessible by group or others (mode 0640)"),
        "{e}"
    );
    std::fs::set_permissions(&p.server_key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    tls::server_config(dir.path()).expect("0600 is fine");
    std::fs::set_permissions(&p.ca_key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = tls::rotate_server_cert(dir.path(), &names(), rotd_core::Clock::system().now())
        .expect_err("world-readable CA key");
    assert!(e.to_string().contains("ca-key.pem"), "{e}");
    std::fs::set_permissions(&p.ca_key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let real = dir.path().join("elsewhere.pem");
    std::fs::rename(&p.server_key, &real).expect("mv");
    std::os::unix::fs::symlink(&real, &p.server_key).expect("symlink");
    assert!(
        tls::server_config(dir.path()).is_err(),
        "a symlinked key is refused"
    );
}

/// The expiry rotd exports is what `openssl x509 -enddate` reads from the same files (the server
/// certificate and the CA), and a certificate that is not one is refused.
#[test]
fn expiry_matches_what_openssl_reads() {
    let dir = tempfile::tempdir().expect("dir");
    let now = rotd_core::Clock::system().now();
    tls::ensure(dir.path(), &names(), now).expect("ensure");
    let (server, ca) = tls::expiry(dir.path()).expect("expiry");
    let paths = TlsPaths::in_dir(dir.path());
    for (file, got) in [(&paths.server_cert, server), (&paths.ca_cert, ca)] {
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in"])
            .arg(file)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // notAfter=2027-12-02 00:00:00Z
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let when = text.trim().strip_prefix("notAfter=").expect("notAfter");
        let want = chrono::NaiveDateTime::parse_from_str(when.trim_end_matches('Z'), "%Y-%m-%d %H:%M:%S")
            .expect("date")
            .and_utc()
            .timestamp();
        assert_eq!(got, want, "{}", file.display());
    }
    assert!(
        now.timestamp() < server && server < ca,
        "server {server}, ca {ca}"
    );
    let junk = rustls_pki_types::CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    assert_eq!(tls::not_after(&junk), None);
    assert_eq!(
        tls::not_after(&rustls_pki_types::CertificateDer::from(Vec::new())),
        None
    );
}
