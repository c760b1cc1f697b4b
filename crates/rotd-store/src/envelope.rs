//! Envelope encryption: every sealed value gets its own random 256-bit data key (AES-256-GCM, random
//! nonce), and the data key is wrapped by the newest version of a named CMK (AES key wrap with padding,
//! RFC 5649). The associated data binds the value to where it belongs (its kind, the secret name, the
//! version id and the CMK id), so a ciphertext moved to another row, or a flipped byte, fails to decrypt.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
use rotd_core::Secret;
use zeroize::Zeroizing;

use crate::{Keyring, StoreError};

/// A sealed value as stored in a row.
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    pub cmk_id: String,
    pub cmk_version: u32,
    pub wrapped_key: Vec<u8>,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Where a sealed value lives; part of its associated data.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Context<'a> {
    SecretVersion { secret: &'a str, version: &'a str },
    AccessKey { id: &'a str },
}

impl Context<'_> {
    fn aad(&self, cmk_id: &str) -> Vec<u8> {
        let parts: [&[u8]; 3] = match self {
            Context::SecretVersion { secret, version } => {
                [b"secret-version", secret.as_bytes(), version.as_bytes()]
            }
            Context::AccessKey { id } => [b"access-key", id.as_bytes(), b""],
        };
        // Length-prefixing every part makes the encoding unambiguous ("a","bc" differs from "ab","c").
        let mut aad = b"rotd-envelope-v1".to_vec();
        for p in parts.iter().chain(std::iter::once(&cmk_id.as_bytes())) {
            aad.extend_from_slice(&(p.len() as u32).to_be_bytes());
            aad.extend_from_slice(p);
        }
        aad
    }

    fn describe(&self) -> String {
        match self {
            Context::SecretVersion { secret, version } => format!("secret {secret} version {version}"),
            Context::AccessKey { id } => format!("access key {id}"),
        }
    }
}

fn crypto_err(ctx: &Context<'_>, reason: &str) -> StoreError {
    StoreError::Decrypt {
        what: ctx.describe(),
        reason: reason.to_owned(),
    }
}

pub(crate) fn seal(
    keyring: &Keyring,
    cmk_id: &str,
    ctx: Context<'_>,
    value: &Secret,
) -> Result<Sealed, StoreError> {
    let cmk = keyring.newest(cmk_id)?;
    let mut dek = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(dek.as_mut())
        .map_err(|_| StoreError::Keyring("random number generator failed".into()))?;

    let key = RandomizedNonceKey::new(&AES_256_GCM, dek.as_ref())
        .map_err(|_| StoreError::Keyring("could not create a data key".into()))?;
    let mut buf = Zeroizing::new(value.expose_secret().to_vec());
    let nonce = key
        .seal_in_place_append_tag(Aad::from(ctx.aad(cmk_id).as_slice()), &mut *buf)
        .map_err(|_| StoreError::Keyring("encryption failed".into()))?;
    let ciphertext = buf.to_vec();

    let wrapped_key = wrap(&cmk.material, dek.as_ref())?;
    Ok(Sealed {
        cmk_id: cmk_id.to_owned(),
        cmk_version: cmk.version,
        wrapped_key,
        nonce: nonce.as_ref().to_vec(),
        ciphertext,
    })
}

pub(crate) fn open(keyring: &Keyring, ctx: Context<'_>, sealed: &Sealed) -> Result<Secret, StoreError> {
    let cmk = keyring.version(&sealed.cmk_id, sealed.cmk_version)?;
    let dek = unwrap(&cmk.material, &sealed.wrapped_key)
        .map_err(|_| crypto_err(&ctx, "the data key does not unwrap under its CMK"))?;
    let key =
        RandomizedNonceKey::new(&AES_256_GCM, dek.as_ref()).map_err(|_| crypto_err(&ctx, "bad data key"))?;
    let nonce_bytes: [u8; NONCE_LEN] = sealed
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| crypto_err(&ctx, "bad nonce length"))?;
    let mut buf = Zeroizing::new(sealed.ciphertext.clone());
    let plain = key
        .open_in_place(
            Nonce::from(&nonce_bytes),
            Aad::from(ctx.aad(&sealed.cmk_id).as_slice()),
            &mut buf,
        )
        .map_err(|_| {
            crypto_err(
                &ctx,
                "authentication failed (the ciphertext was altered or belongs elsewhere)",
            )
        })?;
    Ok(Secret::new(plain.to_vec()))
}

/// Re-wraps a sealed value's data key under the newest version of its CMK; the ciphertext is unchanged.
/// Returns `None` when it already uses the newest version.
pub(crate) fn rewrap(
    keyring: &Keyring,
    ctx: Context<'_>,
    sealed: &Sealed,
) -> Result<Option<Sealed>, StoreError> {
    let newest = keyring.newest(&sealed.cmk_id)?;
    if newest.version == sealed.cmk_version {
        return Ok(None);
    }
    let old = keyring.version(&sealed.cmk_id, sealed.cmk_version)?;
    let dek = unwrap(&old.material, &sealed.wrapped_key)
        .map_err(|_| crypto_err(&ctx, "the data key does not unwrap under its CMK"))?;
    Ok(Some(Sealed {
        cmk_version: newest.version,
        wrapped_key: wrap(&newest.material, dek.as_ref())?,
        ..sealed.clone()
    }))
}

fn wrap(kek: &[u8; 32], dek: &[u8]) -> Result<Vec<u8>, StoreError> {
    let kek = AesKek::new(&AES_256, kek).map_err(|_| StoreError::Keyring("bad CMK material".into()))?;
    let mut out = vec![0u8; dek.len() + 16];
    let n = kek
        .wrap_with_padding(dek, &mut out)
        .map_err(|_| StoreError::Keyring("key wrap failed".into()))?
        .len();
    out.truncate(n);
    Ok(out)
}

fn unwrap(kek: &[u8; 32], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, ()> {
    let kek = AesKek::new(&AES_256, kek).map_err(|_| ())?;
    let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
    let n = kek.unwrap_with_padding(wrapped, &mut out).map_err(|_| ())?.len();
    out.truncate(n);
    if out.len() != 32 {
        return Err(());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(s: &'a str, v: &'a str) -> Context<'a> {
        Context::SecretVersion {
            secret: s,
            version: v,
        }
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let kr = Keyring::generate(rotd_core::Clock::system().now());
        let value = Secret::from("correct horse battery staple");
        let sealed = seal(&kr, "default", ctx("a", "v1"), &value).unwrap();
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"correct"));
        assert_eq!(open(&kr, ctx("a", "v1"), &sealed).unwrap(), value);

        // Moved to another secret or version: refused.
        let e = open(&kr, ctx("b", "v1"), &sealed).unwrap_err().to_string();
        assert!(e.contains("authentication failed"), "{e}");
        assert!(open(&kr, ctx("a", "v2"), &sealed).is_err());

        // One flipped bit anywhere: refused.
        for field in 0..3 {
            let mut t = sealed.clone();
            let buf = match field {
                0 => &mut t.ciphertext,
                1 => &mut t.nonce,
                _ => &mut t.wrapped_key,
            };
            buf[0] ^= 1;
            assert!(open(&kr, ctx("a", "v1"), &t).is_err(), "field {field}");
        }
    }

    #[test]
    fn rotation_and_rewrap() {
        let mut kr = Keyring::generate(rotd_core::Clock::system().now());
        let value = Secret::from("x");
        let old = seal(&kr, "default", ctx("a", "v1"), &value).unwrap();
        kr.rotate("default", rotd_core::Clock::system().now());
        assert_eq!(
            open(&kr, ctx("a", "v1"), &old).unwrap(),
            value,
            "old versions still decrypt"
        );
        let new = rewrap(&kr, ctx("a", "v1"), &old).unwrap().expect("needs rewrap");
        assert_eq!(new.cmk_version, 2);
        assert_eq!(new.ciphertext, old.ciphertext);
        assert_eq!(open(&kr, ctx("a", "v1"), &new).unwrap(), value);
        assert!(rewrap(&kr, ctx("a", "v1"), &new).unwrap().is_none());
        let fresh = seal(&kr, "default", ctx("a", "v2"), &value).unwrap();
        assert_eq!(fresh.cmk_version, 2, "new values use the newest version");
    }

    #[test]
    fn missing_cmk_is_a_clear_error() {
        let kr = Keyring::generate(rotd_core::Clock::system().now());
        let e = seal(&kr, "nope", ctx("a", "v1"), &Secret::from("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
