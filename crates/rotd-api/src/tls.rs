//! rotd's own certificate authority and the API's TLS server configuration.
//!
//! `rotd init` calls [`ensure`], which creates in one directory whatever is missing of: the CA certificate
//! `ca.pem` (the "instance CA certificate" that SDK clients are given as `cfg.ca`), its key `ca-key.pem`,
//! and a server certificate `server.pem` + `server-key.pem` whose subject alternative names are the
//! configured host names and IP addresses. `rotd tls rotate` calls [`rotate_server_cert`], which re-issues
//! the server certificate from the same CA, so clients keep trusting it. [`server_config`] turns the files
//! into a rustls configuration that names the aws-lc-rs provider explicitly, so nothing depends on a
//! process-wide default provider being installed.
//!
//! Keys are written 0600 through a temporary file and a rename, so a crash never leaves a half-written key
//! and a key is never readable by others, even for a moment. They are read the same way the keyring is:
//! opened once without following a symlink, and refused unless the handle is a regular file owned by
//! rotd's user with no group or other permission bits.
//!
//! A new CA carries X.509 name constraints for the names it was created for (`api.tls_names`: a DNS name
//! and its subdomains, a `*.` name's parent domain, each IP address exactly), so its key, if stolen,
//! cannot mint a certificate clients trusting `ca.pem` would accept for any other host. Every issued
//! server certificate is verified against `ca.pem` for each of its names before it is written; a name
//! the CA does not permit is refused with what to do. CAs created before this have no constraints and
//! keep working.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// The CA's common name. The CA is re-created from its key when a server certificate is issued, so this
/// name must never change for an existing CA.
const CA_COMMON_NAME: &str = "rotd instance CA";
const CA_ORGANIZATION: &str = "rotd";
/// How long the CA is valid: long, because every client has to be given a new CA file when it changes.
const CA_YEARS: i32 = 10;
/// How long a server certificate is valid; `rotd tls rotate` re-issues it.
const SERVER_YEARS: i32 = 1;

/// What went wrong creating or loading TLS material. Messages name files, never key material.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("no server names configured; at least one host name or IP address is needed")]
    NoNames,
    #[error("tls configuration: {0}")]
    Rustls(String),
}

/// Where the four files live inside the TLS directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// The instance CA certificate, the file clients trust.
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TlsPaths {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
        }
    }
}

/// What [`ensure`] created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ensured {
    pub created_ca: bool,
    pub created_server_cert: bool,
}

/// Creates whatever is missing in `dir`: the CA (certificate and key) and a server certificate for
/// `names` (DNS names or IP addresses). Existing files are kept, so running it twice changes nothing. A
/// new CA always gets a new server certificate, because the old one could not chain to it.
pub fn ensure(dir: &Path, names: &[String], now: DateTime<Utc>) -> Result<Ensured, TlsError> {
    fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
    let paths = TlsPaths::in_dir(dir);
    let mut out = Ensured::default();
    if !paths.ca_cert.exists() || !paths.ca_key.exists() {
        let key = KeyPair::generate().map_err(gen_err)?;
        if names.is_empty() {
            return Err(TlsError::NoNames);
        }
        let mut params = ca_params();
        params.name_constraints = Some(name_constraints(names));
        let (y, m, d) = day(now, 0);
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = day(now, CA_YEARS);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = params.self_signed(&key).map_err(gen_err)?;
        write_file(&paths.ca_key, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&paths.ca_cert, cert.pem().as_bytes(), 0o644)?;
        out.created_ca = true;
    }
    if out.created_ca || !paths.server_cert.exists() || !paths.server_key.exists() {
        rotate_server_cert(dir, names, now)?;
        out.created_server_cert = true;
    }
    Ok(out)
}

/// Issues a new server key and certificate for `names` from the existing CA in `dir`, replacing the old
/// pair. A running server picks it up through [`server_config`] and a reload.
pub fn rotate_server_cert(dir: &Path, names: &[String], now: DateTime<Utc>) -> Result<(), TlsError> {
    if names.is_empty() {
        return Err(TlsError::NoNames);
    }
    let paths = TlsPaths::in_dir(dir);
    let ca_pem = read_private(&paths.ca_key)?;
    let ca_key = KeyPair::from_pem(&ca_pem).map_err(|e| TlsError::Invalid {
        path: paths.ca_key.clone(),
        reason: format!("not a usable private key ({e})"),
    })?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut params = CertificateParams::new(names.to_vec()).map_err(gen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].clone());
    dn.push(DnType::OrganizationName, CA_ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let (y, m, d) = day(now, 0);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = day(now, SERVER_YEARS);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;
    check_chain(&paths.ca_cert, cert.der(), names, now)?;
    // The key goes first: a certificate on disk without its key would make the next start fail, while
    // a new key next to the old certificate is caught by `server_config` and fixed by running this again.
    write_file(&paths.server_key, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&paths.server_cert, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// The rustls server configuration for the API: the server certificate from `dir`, HTTP/1.1 only, TLS 1.2
/// and 1.3 with the aws-lc-rs provider.
pub fn server_config(dir: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let paths = TlsPaths::in_dir(dir);
    let certs = read_certs(&paths.server_cert)?;
    let key_bytes = read_private(&paths.server_key)?;
    let key = PrivateKeyDer::from_pem_slice(key_bytes.as_bytes()).map_err(|e| TlsError::Invalid {
        path: paths.server_key.clone(),
        reason: format!("no private key found ({e})"),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// When the API's certificates expire (Unix seconds): the server certificate and the CA, read from
/// `dir` (for `rotd_tls_certificate_expiry_timestamp_seconds`).
pub fn expiry(dir: &Path) -> Result<(i64, i64), TlsError> {
    let paths = TlsPaths::in_dir(dir);
    let one = |path: &Path| -> Result<i64, TlsError> {
        let certs = read_certs(path)?;
        not_after(&certs[0]).ok_or_else(|| TlsError::Invalid {
            path: path.to_owned(),
            reason: "cannot read the certificate's validity".to_owned(),
        })
    };
    Ok((one(&paths.server_cert)?, one(&paths.ca_cert)?))
}

/// A certificate's notAfter (Unix seconds), read straight from its DER: Certificate → tbsCertificate →
/// (optional `[0]` version), serialNumber, signature, issuer, validity → notAfter. `None` for anything
/// that is not that shape.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    /// One DER element at the start of `b`: (tag, content, rest).
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, b) = b.split_first()?;
        let (&first, mut b) = b.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || b.len() < n {
                return None;
            }
            let (num, rest) = b.split_at(n);
            b = rest;
            num.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x))
        };
        if b.len() < len {
            return None;
        }
        let (content, rest) = b.split_at(len);
        Some((tag, content, rest))
    }
    let (0x30, cert, _) = tlv(cert.as_ref())? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else { return None };
    let (tag, _, mut rest) = tlv(tbs)?;
    if tag == 0xa0 {
        (_, _, rest) = tlv(rest)?; // serialNumber
    }
    let (_, _, rest) = tlv(rest)?; // signature algorithm
    let (_, _, rest) = tlv(rest)?; // issuer
    let (0x30, validity, _) = tlv(rest)? else {
        return None;
    };
    let (_, _, after) = tlv(validity)?; // notBefore
    let (tag, time, _) = tlv(after)?;
    let text = std::str::from_utf8(time).ok()?;
    let full = match tag {
        // UTCTime YYMMDDHHMMSSZ: 50–99 are 19xx (RFC 5280).
        0x17 if text.len() == 13 => {
            let yy: u32 = text.get(..2)?.parse().ok()?;
            format!("{}{text}", if yy >= 50 { "19" } else { "20" })
        }
        0x18 if text.len() == 15 => text.to_owned(),
        _ => return None,
    };
    chrono::NaiveDateTime::parse_from_str(full.strip_suffix('Z')?, "%Y%m%d%H%M%S")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// Reads every certificate in a PEM file (for clients and tests that trust `ca.pem`).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            reason: format!("malformed PEM ({e})"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            path: path.to_owned(),
            reason: "no certificate found".to_owned(),
        });
    }
    Ok(certs)
}

/// The CA's parameters. They are rebuilt, not parsed, when issuing: the issuer name and the key identifier
/// (derived from the CA key) are all a signed certificate takes from its issuer.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, CA_ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Midnight UTC of `now`'s date, `years` later. February 29 becomes the 28th so every year has the day.
fn day(now: DateTime<Utc>, years: i32) -> (i32, u8, u8) {
    let d = now.date_naive();
    let month = u8::try_from(d.month()).unwrap_or(1);
    let dom = u8::try_from(d.day().min(28)).unwrap_or(1);
    (d.year() + years, month, dom)
}

fn gen_err(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

fn io_err(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The largest key file read; a PEM private key is a few kilobytes.
const MAX_KEY_BYTES: u64 = 64 << 10;

/// Reads a private key file: opened once without following a symlink, checked on the handle (a regular
/// file owned by this user, no group or other permission bits, not larger than a key) and read from it.
fn read_private(path: &Path) -> Result<zeroize::Zeroizing<String>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    let meta = f.metadata().map_err(|e| io_err(path, e))?;
    if !meta.file_type().is_file() {
        return Err(invalid("not a regular file".to_owned()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(invalid(format!(
            "a private key accessible by group or others (mode {mode:04o}); run `chmod 600 {}`",
            path.display()
        )));
    }
    // `/proc/self` is owned by the effective uid (no unsafe `geteuid` in a crate that forbids it).
    let me = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| io_err(Path::new("/proc/self"), e))?;
    if meta.uid() != me {
        return Err(invalid(format!(
            "a private key owned by uid {}, not by the user rotd runs as (uid {me})",
            meta.uid()
        )));
    }
    if meta.len() > MAX_KEY_BYTES {
        return Err(invalid("too large to be a private key".to_owned()));
    }
    let mut out = zeroize::Zeroizing::new(String::new());
    (&f).take(MAX_KEY_BYTES + 1)
        .read_to_string(&mut out)
        .map_err(|e| io_err(path, e))?;
    Ok(out)
}

/// The subtrees a new CA may issue for: each DNS name with its subdomains (a `*.` name's parent
/// domain), each IP address as a single-address subnet.
fn name_constraints(names: &[String]) -> NameConstraints {
    let mut permitted = Vec::new();
    for n in names {
        let subtree = match n.parse::<std::net::IpAddr>() {
            Ok(ip) => GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                ip,
                if ip.is_ipv4() { 32 } else { 128 },
            )),
            Err(_) => GeneralSubtree::DnsName(n.strip_prefix("*.").unwrap_or(n).to_owned()),
        };
        if !permitted.contains(&subtree) {
            permitted.push(subtree);
        }
    }
    NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: Vec::new(),
    }
}

/// Verifies a new server certificate against `ca.pem` for each of `names`, as a client would (webpki,
/// which enforces the CA's name constraints), so a certificate clients would refuse is never written.
fn check_chain(
    ca_cert: &Path,
    server: &CertificateDer<'_>,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<(), TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(ca_cert)? {
        roots.add(c).map_err(|e| TlsError::Invalid {
            path: ca_cert.to_owned(),
            reason: format!("not a usable CA certificate ({e})"),
        })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let at = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now.timestamp()).unwrap_or(0),
    ));
    for name in names {
        // A wildcard is checked with one concrete label under it.
        let probe = match name.strip_prefix("*.") {
            Some(parent) => format!("rotd-probe.{parent}"),
            None => name.clone(),
        };
        let server_name = rustls_pki_types::ServerName::try_from(probe.as_str())
            .map_err(|e| TlsError::Generate(format!("{name}: not a server name ({e})")))?;
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(server, &[], &server_name, &[], at)
            .map_err(|e| TlsError::Invalid {
                path: ca_cert.to_owned(),
                reason: format!(
                    "a certificate for {name} would not be trusted by clients ({e}); the CA permits only \
                     the names it was created for. To serve other names, create a new CA (move ca.pem \
                     and ca-key.pem away and run `rotd init`) and give clients the new ca.pem"
                ),
            })?;
    }
    Ok(())
}

/// Writes `bytes` to `path` with `mode` through a temporary file in the same directory, fsync'd and
/// renamed into place.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    // The umask may have narrowed the mode; set it exactly so the CA file is readable by clients.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| io_err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    Ok(())
}
