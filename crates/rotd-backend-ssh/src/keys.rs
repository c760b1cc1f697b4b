//! Key pairs and values: generating the managed user's keys, and the vendor's value formats
//! `{"UserName","Password"}` and `{"UserName","PublicKey","PrivateKey"}`.

use rotd_core::Secret;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};
use zeroize::Zeroizing;

/// Which key pair a rotation generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// Ed25519, private key in OpenSSH format (what `ssh-keygen -t ed25519` writes).
    Ed25519,
    /// RSA 3072 bits, private key as a PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`, what
    /// `ssh-keygen -t rsa -b 3072 -m PEM` writes).
    Rsa3072,
}

/// A generated key pair: the private key text and the public key line (with `comment`).
pub(crate) struct KeyPair {
    pub private: Zeroizing<String>,
    pub public: String,
}

/// Generates a key pair. RSA keys come from aws-lc-rs (constant-time, fast even in debug builds); the
/// PEM is read back with russh so a key rotd hands out is one rotd itself can log in with.
pub(crate) fn generate(kind: KeyType, comment: &str) -> Result<KeyPair, String> {
    match kind {
        KeyType::Ed25519 => {
            let mut seed = Zeroizing::new([0u8; 32]);
            aws_lc_rs::rand::fill(seed.as_mut()).map_err(|_| "the random generator failed".to_owned())?;
            let kp = Ed25519Keypair::from_seed(&seed);
            let key = PrivateKey::new(KeypairData::Ed25519(kp), comment).map_err(|e| e.to_string())?;
            let private = key.to_openssh(LineEnding::LF).map_err(|e| e.to_string())?;
            let public = key.public_key().to_openssh().map_err(|e| e.to_string())?;
            Ok(KeyPair { private, public })
        }
        KeyType::Rsa3072 => {
            use aws_lc_rs::encoding::AsDer;
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::pkcs8::DecodePrivateKey;
            let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa3072)
                .map_err(|_| "RSA key generation failed".to_owned())?;
            let der = kp.as_der().map_err(|_| "RSA key export failed".to_owned())?;
            let rsa_key =
                rsa::PrivateKey::from_pkcs8_der(der.as_ref()).map_err(|e| format!("RSA key: {e}"))?;
            let pem = rsa_key
                .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
                .map_err(|e| format!("RSA key: {e}"))?;
            let private = Zeroizing::new(pem.to_string());
            let mut public = parse_private(&private)?.public_key().clone();
            public.set_comment(comment);
            let public = public.to_openssh().map_err(|e| e.to_string())?;
            Ok(KeyPair { private, public })
        }
    }
}

/// Reads a private key: OpenSSH format or a PKCS#1/PKCS#8 PEM, unencrypted.
pub(crate) fn parse_private(text: &str) -> Result<PrivateKey, String> {
    russh::keys::decode_secret_key(text, None)
        .map_err(|_| "the private key is not an unencrypted OpenSSH or PEM key".to_owned())
}

/// The key type and base64 blob of a public key line (`ssh-ed25519 AAAA… comment`): what identifies
/// the key, whatever its comment or options.
pub(crate) fn blob(line: &str) -> Option<(String, String)> {
    let key = PublicKey::from_openssh(line.trim()).ok()?;
    let mut bare = key.clone();
    bare.set_comment("");
    let text = bare.to_openssh().ok()?;
    let mut parts = text.split_whitespace();
    Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
}

/// A public key's `SHA256:` fingerprint, as `ssh-keygen -l` prints it.
pub(crate) fn fingerprint(line: &str) -> Option<String> {
    PublicKey::from_openssh(line.trim())
        .ok()
        .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
}

/// The SHA-256 fingerprint of a host key in the form `ecs.host_key_sha256` pins.
pub(crate) fn host_fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Compares two `SHA256:` fingerprints, with or without base64 padding.
pub(crate) fn same_fingerprint(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim().trim_end_matches('=').to_owned();
    norm(a) == norm(b)
}

/// The vendor's password value.
pub(crate) fn password_value(user: &str, password: &str) -> Secret {
    Secret::from(serde_json::json!({"UserName": user, "Password": password}).to_string())
}

/// The vendor's key pair value.
pub(crate) fn key_value(user: &str, pair: &KeyPair) -> Secret {
    Secret::from(
        serde_json::json!({"UserName": user, "PublicKey": pair.public, "PrivateKey": pair.private.as_str()})
            .to_string(),
    )
}

/// The fields of a stored value, never shown.
pub(crate) struct Value {
    pub user: String,
    pub password: Option<Zeroizing<String>>,
    pub public: Option<String>,
    pub private: Option<Zeroizing<String>>,
}

pub(crate) fn parse_value(value: &Secret) -> Result<Value, String> {
    let doc: serde_json::Value = serde_json::from_slice(value.expose_secret())
        .map_err(|_| "the value is not a JSON object".to_owned())?;
    let field = |k: &str| doc.get(k).and_then(|v| v.as_str());
    let user = field("UserName").ok_or("the value has no UserName")?.to_owned();
    Ok(Value {
        user,
        password: field("Password").map(|p| Zeroizing::new(p.to_owned())),
        public: field("PublicKey").map(str::to_owned),
        private: field("PrivateKey").map(|p| Zeroizing::new(p.to_owned())),
    })
}

/// The value a file's `initial_value` gives: the vendor's JSON, or the bare password or private key
/// (whose public key is derived from it).
pub(crate) fn initial(user: &str, material: &Secret, keys: bool) -> Result<Secret, String> {
    let text = material
        .expose_str()
        .ok_or_else(|| "initial_value is not UTF-8 text".to_owned())?;
    if text.trim_start().starts_with('{') {
        let v = parse_value(material)?;
        if v.user != user {
            return Err(format!(
                "initial_value names the user {}, the file manages {user}",
                v.user
            ));
        }
        return if keys {
            let private = v.private.ok_or("initial_value has no PrivateKey")?;
            key_from_private(user, &private)
        } else {
            let pw = v.password.ok_or("initial_value has no Password")?;
            Ok(password_value(user, &pw))
        };
    }
    if keys {
        key_from_private(user, text)
    } else {
        // A password file's trailing newline is not part of the password.
        let pw = text.strip_suffix('\n').unwrap_or(text);
        let pw = pw.strip_suffix('\r').unwrap_or(pw);
        if pw.is_empty() || pw.contains(['\n', '\0']) {
            return Err("initial_value must be one line of text".to_owned());
        }
        Ok(password_value(user, pw))
    }
}

fn key_from_private(user: &str, private: &str) -> Result<Secret, String> {
    let key = parse_private(private)?;
    let public = key.public_key().to_openssh().map_err(|e| e.to_string())?;
    let mut private = private.to_owned();
    if !private.ends_with('\n') {
        private.push('\n');
    }
    Ok(key_value(
        user,
        &KeyPair {
            private: Zeroizing::new(private),
            public,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_round_trips_through_russh() {
        let pair = generate(KeyType::Ed25519, "rotd:app:v1").expect("key");
        assert!(pair.private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(pair.public.starts_with("ssh-ed25519 ") && pair.public.ends_with(" rotd:app:v1"));
        let back = parse_private(&pair.private).expect("parses");
        assert_eq!(
            blob(&back.public_key().to_openssh().expect("openssh")),
            blob(&pair.public)
        );
    }

    #[test]
    fn rsa_is_3072_bits_pkcs1_pem() {
        let pair = generate(KeyType::Rsa3072, "c").expect("key");
        assert!(pair.private.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(pair.private.ends_with("-----END RSA PRIVATE KEY-----\n"));
        let key = parse_private(&pair.private).expect("parses");
        let KeypairData::Rsa(rsa) = key.key_data() else {
            panic!("not RSA");
        };
        assert_eq!(rsa.public().n().as_positive_bytes().map(<[u8]>::len), Some(384));
        assert!(pair.public.starts_with("ssh-rsa "));
    }

    #[test]
    fn blob_ignores_the_comment() {
        let pair = generate(KeyType::Ed25519, "one").expect("key");
        let (t, b) = blob(&pair.public).expect("blob");
        assert_eq!(t, "ssh-ed25519");
        assert_eq!(blob(&format!("{t} {b} another comment")), Some((t, b)));
        assert_eq!(blob("not a key"), None);
    }

    #[test]
    fn initial_values_in_every_form() {
        let password = |v: &Secret| parse_value(v).expect("v").password.map(|p| p.to_string());
        let pw = initial("deploy", &Secret::from("s3cret\n"), false).expect("plain");
        assert_eq!(password(&pw).as_deref(), Some("s3cret"));
        let json = initial(
            "deploy",
            &Secret::from(r#"{"UserName":"deploy","Password":"x"}"#),
            false,
        )
        .expect("json");
        assert_eq!(password(&json).as_deref(), Some("x"));
        let other = initial(
            "deploy",
            &Secret::from(r#"{"UserName":"root","Password":"x"}"#),
            false,
        );
        assert!(other.is_err_and(|e| e.contains("names the user root")));
        let pair = generate(KeyType::Ed25519, "x").expect("key");
        let k = initial("batch", &Secret::from(pair.private.as_str()), true).expect("key");
        let v = parse_value(&k).expect("v");
        assert_eq!(v.public.as_deref().and_then(blob), blob(&pair.public));
        assert!(initial("batch", &Secret::from("garbage"), true).is_err());
        assert!(initial("deploy", &Secret::from("two\nlines"), false).is_err());
    }

    #[test]
    fn fingerprints_compare_with_or_without_padding() {
        assert!(same_fingerprint("SHA256:abc", "SHA256:abc="));
        assert!(!same_fingerprint("SHA256:abc", "SHA256:abd"));
    }
}
