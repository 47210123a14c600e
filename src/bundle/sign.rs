//! The bundle's signature: `SHA256SUMS` (which lists `manifest.json`, which lists every
//! artifact) signed last with a minisign secret key the user holds, written beside it as
//! `SHA256SUMS.minisig`. A receiver checks it with the standard tool alone
//! (`minisign -Vm SHA256SUMS -p forge.pub`, then `sha256sum -c SHA256SUMS`), or with
//! `forge verify --key forge.pub`.
//!
//! Keys: `--sign-key FILE` (or `FORGE_SIGN_KEY`), a minisign secret key; a password-less one
//! (`minisign -G -W`) signs as is, an encrypted one needs its password in
//! `FORGE_SIGN_KEY_PASSWORD` (forge never prompts: it runs in CI). Neither the key nor the
//! password is written into the bundle or a log: only the key id (public) is.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use minisign::{PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};

use super::SUMS;
use crate::atomic::write_atomically;
use crate::error::{Error, Result};
use crate::report::Check;

/// The signature's file name (minisign's default for `SHA256SUMS`).
pub const SIG: &str = "SHA256SUMS.minisig";
/// The environment variable holding an encrypted key's password.
pub const PASSWORD_ENV: &str = "FORGE_SIGN_KEY_PASSWORD";

/// The id of the key this process signs the bundle with, once loaded: the release report names
/// the signature file before it is made (it is made last, over SHA256SUMS, which lists the report).
static SIGNING: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The id of the key this process signs with, if any.
pub fn signing_key_id() -> Option<&'static str> {
    SIGNING.get().map(String::as_str)
}

/// A secret key, loaded and decrypted, with its public half and id.
pub struct SignKey {
    sk: SecretKey,
    pk: PublicKey,
    /// The key id, as minisign prints it (16 hex digits).
    pub id: String,
}

impl std::fmt::Debug for SignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(f, "SignKey({})", self.id)
    }
}

fn key_id(keynum: &[u8]) -> String {
    let mut n = [0u8; 8];
    n.copy_from_slice(&keynum[..8]);
    format!("{:016X}", u64::from_le_bytes(n))
}

fn bad_key(path: &Path, what: &str, hint: &str) -> Error {
    Error::usage(
        format!("cannot use `{}` as a signing key: {what}", path.display()),
        Some(hint),
    )
}

/// The decoded key of a secret key file (the base64 line after the comment).
fn unencrypted_bytes(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    text.lines().nth(1).and_then(|l| {
        base64::engine::general_purpose::STANDARD
            .decode(l.trim())
            .ok()
    })
}

/// Whether a secret key file's key is encrypted (minisign's layout: signature algorithm, then
/// the KDF algorithm, `\0\0` for none).
fn is_encrypted(text: &str) -> bool {
    unencrypted_bytes(text).is_some_and(|b| b.get(2..4) != Some(&[0, 0]))
}

impl SignKey {
    /// Load the minisign secret key at `path`; its password, if it has one, from
    /// [`PASSWORD_ENV`].
    pub fn load(path: &Path) -> Result<SignKey> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            bad_key(
                path,
                &e.to_string(),
                "make a key pair with `minisign -G -W -s forge.key -p forge.pub` (no password) and pass `--sign-key forge.key`",
            )
        })?;
        let boxed = SecretKeyBox::from_string(&text).map_err(|e| {
            bad_key(
                path,
                &e.to_string(),
                "pass a minisign secret key (`minisign -G` writes one), not the public key",
            )
        })?;
        // A secret key is 158 bytes (a public key 42): anything else is not one.
        if unencrypted_bytes(&text).is_none_or(|b| b.len() != 158) {
            return Err(bad_key(
                path,
                "it is not a minisign secret key",
                "pass the secret key (`minisign -G -W -s forge.key -p forge.pub` writes forge.key), not the public key",
            ));
        }
        let sk = if is_encrypted(&text) {
            let Some(pw) = std::env::var(PASSWORD_ENV).ok() else {
                return Err(bad_key(
                    path,
                    "it is encrypted and no password was given",
                    "set FORGE_SIGN_KEY_PASSWORD to its password (forge never prompts), or use a key made with `minisign -G -W`",
                ));
            };
            boxed.into_secret_key(Some(pw)).map_err(|e| {
                bad_key(
                    path,
                    &e.to_string().to_lowercase(),
                    "check FORGE_SIGN_KEY_PASSWORD, or that the file is a minisign secret key",
                )
            })?
        } else {
            // Read the bytes directly: Debian's minisign 0.11 writes password-less keys
            // (`-G -W`) with an all-zero checksum, which the crate's `into_unencrypted_secret_key`
            // calls corrupted. A damaged key still fails: `sign` checks every signature it makes
            // against the public half.
            unencrypted_bytes(&text)
                .and_then(|b| SecretKey::from_bytes(&b).ok())
                .ok_or_else(|| {
                    bad_key(
                        path,
                        "it is not a minisign secret key",
                        "pass a minisign secret key (`minisign -G -W` writes one), not the public key",
                    )
                })?
        };
        let pk = PublicKey::from_secret_key(&sk).map_err(|e| {
            bad_key(
                path,
                &e.to_string(),
                "make a new key pair with `minisign -G -W`",
            )
        })?;
        let id = key_id(sk.keynum());
        let _ = SIGNING.set(id.clone());
        Ok(SignKey { sk, pk, id })
    }

    /// The public key in minisign's file format (what a receiver needs).
    pub fn public_box(&self) -> String {
        self.pk
            .to_box()
            .map(PublicKeyBox::into_string)
            .unwrap_or_default()
    }
}

/// Sign `dir/SHA256SUMS` with `key` into `dir/SHA256SUMS.minisig`; returns its path.
pub fn sign(dir: &Path, key: &SignKey, run: &str) -> Result<PathBuf> {
    let sums_path = dir.join(SUMS);
    let sums = std::fs::read(&sums_path).map_err(|e| Error::io("read", &sums_path, e))?;
    let trusted = format!(
        "forge bundle {run}, SHA256SUMS, timestamp:{}",
        chrono::Utc::now().timestamp()
    );
    let untrusted = format!("signature from forge, minisign key {}", key.id);
    let sig = minisign::sign(
        Some(&key.pk),
        &key.sk,
        Cursor::new(&sums),
        Some(&trusted),
        Some(&untrusted),
    )
    .map_err(|e| Error::usage(format!("cannot sign {SUMS}: {e}"), None))?;
    let out = dir.join(SIG);
    write_atomically(&out, sig.into_string().as_bytes())?;
    Ok(out)
}

/// Remove a signature that no longer matches `SHA256SUMS`; whether there was one.
pub fn remove_stale(dir: &Path) -> Result<bool> {
    let p = dir.join(SIG);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove", &p, e)),
    }
}

/// What signing a bundle after its `SHA256SUMS` was (re)written did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// Signed with the key of this id.
    Signed { path: PathBuf, key_id: String },
    /// No key given; a signature that no longer matched was removed.
    RemovedStale,
    /// No key given and none there.
    Unsigned,
}

impl Signed {
    /// One line for stderr.
    pub fn line(&self) -> String {
        match self {
            Signed::Signed { path, key_id } => {
                format!("signed {SUMS}: {} (minisign key {key_id})", path.display())
            }
            Signed::RemovedStale => format!(
                "removed the stale {SIG}: {SUMS} changed, so it no longer matched (hint: pass `--sign-key FILE` to sign again)"
            ),
            Signed::Unsigned => format!("{SUMS} not signed (pass `--sign-key FILE` to sign it)"),
        }
    }
}

/// After `SHA256SUMS` was written: sign it with `key`, or, without one, remove a signature
/// left from before (it no longer matches).
pub fn after_sums(dir: &Path, key: Option<&SignKey>, run: &str) -> Result<Signed> {
    match key {
        Some(k) => Ok(Signed::Signed {
            path: sign(dir, k, run)?,
            key_id: k.id.clone(),
        }),
        None if remove_stale(dir)? => Ok(Signed::RemovedStale),
        None => Ok(Signed::Unsigned),
    }
}

/// Load the public key at `path` (a minisign `.pub` file, or its base64 line alone).
pub fn load_public(path: &Path) -> Result<PublicKey> {
    let hint =
        "pass the minisign public key (`forge.pub`, made by `minisign -G` beside the secret key)";
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(
            format!("cannot read the public key `{}`: {e}", path.display()),
            Some(hint),
        )
    })?;
    let parsed = if text.trim_start().starts_with("untrusted comment:") {
        PublicKeyBox::from_string(&text).and_then(PublicKeyBox::into_public_key)
    } else {
        PublicKey::from_base64(text.trim())
    };
    parsed.map_err(|e| {
        Error::usage(
            format!("`{}` is not a minisign public key: {e}", path.display()),
            Some(hint),
        )
    })
}

/// `verify.signature`: `SHA256SUMS.minisig` against `SHA256SUMS` and `key` (a skip without a
/// key, saying whether there is a signature to check).
pub fn verify_check(dir: &Path, key: Option<&PublicKey>) -> Check {
    let id = "verify.signature";
    let title = "SHA256SUMS is signed by the expected key (minisign)";
    let sig_path = dir.join(SIG);
    let Some(pk) = key else {
        let why = if sig_path.is_file() {
            format!("{SIG} is there but not checked: no `--key` given")
        } else {
            format!("the bundle is not signed (no {SIG}) and no `--key` given")
        };
        return Check::skip(id, title, why)
            .with_hint("pass the sender's public key: `forge verify DIR --key forge.pub`");
    };
    let sig = match std::fs::read_to_string(&sig_path)
        .map_err(|e| e.to_string())
        .and_then(|t| SignatureBox::from_string(&t).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            return Check::fail(id, title, format!("cannot read {SIG}: {e}")).with_hint(
                "the bundle was not signed, or the signature was lost: ask the sender for it",
            );
        }
    };
    let sums = match std::fs::read(dir.join(SUMS)) {
        Ok(b) => b,
        Err(e) => return Check::fail(id, title, format!("cannot read {SUMS}: {e}")),
    };
    let want = key_id(pk.keynum());
    let got = key_id(sig.keynum());
    if want != got {
        return Check::fail(
            id,
            title,
            format!("{SIG} was made by key {got}, the key given is {want}"),
        )
        .with_hint("pass the public key of the key that signed it (the sender's forge.pub)");
    }
    match minisign::verify(pk, &sig, Cursor::new(&sums), true, false, false) {
        Ok(()) => Check::pass(
            id,
            title,
            format!(
                "{SIG} verifies with key {want}; trusted comment: {}",
                sig.trusted_comment().unwrap_or_default()
            ),
        ),
        Err(e) => Check::fail(
            id,
            title,
            format!("{SIG} does not verify with key {want}: {e}"),
        )
        .with_hint(format!(
            "{SUMS} or its signature changed after signing: get the bundle again from the sender"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(dir: &Path) -> PathBuf {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let p = dir.join("forge.key");
        std::fs::write(&p, kp.sk.to_box(None).unwrap().into_string()).unwrap();
        std::fs::write(dir.join("forge.pub"), kp.pk.to_box().unwrap().into_string()).unwrap();
        p
    }

    #[test]
    fn signs_and_verifies_and_rejects_a_changed_byte() {
        let tmp = tempdir();
        let t = tmp.path();
        let key = SignKey::load(&keypair(t)).unwrap();
        std::fs::write(t.join(SUMS), "00  manifest.json\n").unwrap();
        sign(t, &key, "r1").unwrap();
        let pk = load_public(&t.join("forge.pub")).unwrap();
        assert_eq!(
            verify_check(t, Some(&pk)).status,
            crate::report::Status::Pass
        );
        std::fs::write(t.join(SUMS), "01  manifest.json\n").unwrap();
        assert_eq!(
            verify_check(t, Some(&pk)).status,
            crate::report::Status::Fail
        );
        assert!(remove_stale(t).unwrap());
        assert_eq!(after_sums(t, None, "r1").unwrap(), Signed::Unsigned);
    }

    #[test]
    fn the_public_key_is_no_signing_key() {
        let tmp = tempdir();
        let t = tmp.path();
        keypair(t);
        let e = SignKey::load(&t.join("forge.pub")).unwrap_err();
        assert!(e.to_string().contains("signing key"), "{e}");
        assert!(e.hint().is_some());
    }

    /// A fresh temp dir, removed (also when the test panics) when the guard drops.
    fn tempdir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("forge-sign-")
            .tempdir()
            .unwrap()
    }
}
