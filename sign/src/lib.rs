//! Signed tark plugin packages, shared by tarkctl (which signs) and tarkd (which
//! verifies), so both compute the same bytes.
//!
//! A signature covers the **whole** package: the canonical digest is SHA-256
//! over one line per file (every file but `plugin.sig` itself, sorted by path):
//! the file's SHA-256, its length and its path (length-prefixed, so no path can
//! forge a line). Adding, removing, renaming or changing any file changes it.
//! `plugin.sig` holds the signer's key id, that digest and an ed25519 signature
//! over a domain string and the digest; verification recomputes the digest from
//! the files and uses `verify_strict` (no malleable signatures, no weak keys).

use std::path::Path;

use ed25519_dalek::{Signature, Signer};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The signature file at the package root.
pub const SIGNATURE_FILE: &str = "plugin.sig";
/// What a signature signs, before the digest: no signature made for anything
/// else verifies as a package signature.
const DOMAIN: &[u8] = b"tark-plugin-package-v1\n";

/// Why a package, key or signature file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("{SIGNATURE_FILE}: {0}")]
    Malformed(String),
    #[error(
        "the package changed since it was signed (its digest is {actual}, the signature's {signed})"
    )]
    Tampered { signed: String, actual: String },
    #[error("{SIGNATURE_FILE} names key {named}, not {given}")]
    OtherKey { named: String, given: String },
    #[error("the signature does not verify with key {0}")]
    BadSignature(String),
    #[error("key: {0}")]
    Key(String),
}

/// The canonical digest of a package given as (path relative to its root,
/// with `/` separators; contents).
pub fn digest<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> [u8; 32] {
    let mut files: Vec<(&str, &[u8])> = files
        .into_iter()
        .filter(|(path, _)| *path != SIGNATURE_FILE)
        .collect();
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = Sha256::new();
    h.update(DOMAIN);
    for (path, bytes) in files {
        let line = format!(
            "{} {} {}:{path}\n",
            hex::encode(Sha256::digest(bytes)),
            bytes.len(),
            path.len()
        );
        h.update(line.as_bytes());
    }
    h.finalize().into()
}

/// A public key's id: the first 8 bytes of its SHA-256, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The contents of `plugin.sig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    pub key_id: String,
    /// The canonical digest signed, hex.
    pub digest: String,
    /// ed25519 over `DOMAIN || digest`, hex.
    pub signature: String,
}

impl SignatureFile {
    pub fn parse(bytes: &[u8]) -> Result<Self, SignError> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| SignError::Malformed("not UTF-8".into()))?;
        toml::from_str(text).map_err(|e| SignError::Malformed(e.message().to_owned()))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

fn message(digest: &[u8; 32]) -> Vec<u8> {
    [DOMAIN, digest.as_slice()].concat()
}

/// Signs a package digest.
pub fn sign(key: &SigningKey, digest: &[u8; 32]) -> SignatureFile {
    SignatureFile {
        key_id: key_id(&key.verifying_key()),
        digest: hex::encode(digest),
        signature: hex::encode(key.sign(&message(digest)).to_bytes()),
    }
}

/// Checks `sig` against the package's own `digest` and the signer's `key`.
pub fn verify(sig: &SignatureFile, key: &VerifyingKey, digest: &[u8; 32]) -> Result<(), SignError> {
    let id = key_id(key);
    if sig.key_id != id {
        return Err(SignError::OtherKey {
            named: sig.key_id.clone(),
            given: id,
        });
    }
    let actual = hex::encode(digest);
    if sig.digest != actual {
        return Err(SignError::Tampered {
            signed: sig.digest.clone(),
            actual,
        });
    }
    let bytes: [u8; 64] = hex::decode(&sig.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SignError::Malformed("signature is not 64 bytes of hex".into()))?;
    key.verify_strict(&message(digest), &Signature::from_bytes(&bytes))
        .map_err(|_| SignError::BadSignature(id))
}

/// A fresh signing key from the operating system's randomness.
pub fn generate() -> Result<SigningKey, SignError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| SignError::Key(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A signing key file: `secret_key` (hex seed) and its `key_id`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    key_id: String,
    secret_key: String,
}

/// A public key file: what `tarkctl trust add` takes.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicFile {
    key_id: String,
    public_key: String,
}

/// The two key files' contents for `key`: (secret, public).
pub fn key_files(key: &SigningKey) -> (String, String) {
    let id = key_id(&key.verifying_key());
    let secret = SecretFile {
        key_id: id.clone(),
        secret_key: hex::encode(key.to_bytes()),
    };
    let public = PublicFile {
        key_id: id,
        public_key: hex::encode(key.verifying_key().as_bytes()),
    };
    (
        toml::to_string(&secret).unwrap_or_default(),
        toml::to_string(&public).unwrap_or_default(),
    )
}

fn bytes32(hex_text: &str, what: &str) -> Result<[u8; 32], SignError> {
    hex::decode(hex_text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SignError::Key(format!("{what} is not 32 bytes of hex")))
}

/// Reads a signing key file.
pub fn parse_secret(text: &str) -> Result<SigningKey, SignError> {
    let f: SecretFile = toml::from_str(text).map_err(|e| SignError::Key(e.message().to_owned()))?;
    Ok(SigningKey::from_bytes(&bytes32(
        &f.secret_key,
        "secret_key",
    )?))
}

/// Reads a public key: a public key file, or the key itself as hex.
pub fn parse_public(text: &str) -> Result<VerifyingKey, SignError> {
    let hex_text = match toml::from_str::<PublicFile>(text) {
        Ok(f) => f.public_key,
        Err(_) => text.trim().to_owned(),
    };
    VerifyingKey::from_bytes(&bytes32(&hex_text, "public_key")?)
        .map_err(|e| SignError::Key(e.to_string()))
}

/// The files of a plugin folder as tarkd reads them for a package (regular
/// files, recursively; names starting with `.` skipped; links refused), with
/// `/`-separated relative paths.
pub fn collect(root: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| {
                std::io::Error::other(format!("{}: not a UTF-8 name", entry.path().display()))
            })?;
            if name.starts_with('.') {
                continue;
            }
            let path = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(&entry.path(), &path, out)?;
            } else if kind.is_file() {
                out.push((path, std::fs::read(entry.path())?));
            } else {
                return Err(std::io::Error::other(format!(
                    "{}: not a regular file or folder",
                    entry.path().display()
                )));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, "", &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(files: &[(&str, &str)]) -> [u8; 32] {
        digest(files.iter().map(|(p, b)| (*p, b.as_bytes())))
    }

    #[test]
    fn the_digest_covers_every_file_and_nothing_else() {
        let base = [
            ("plugin.toml", "m"),
            ("plugin.wasm", "w"),
            ("data/a.txt", "a"),
        ];
        let d = pkg(&base);
        // Order does not matter; the signature file does not count.
        assert_eq!(
            d,
            pkg(&[
                ("data/a.txt", "a"),
                ("plugin.wasm", "w"),
                ("plugin.toml", "m")
            ])
        );
        assert_eq!(
            d,
            pkg(&[
                ("plugin.toml", "m"),
                ("plugin.wasm", "w"),
                ("data/a.txt", "a"),
                ("plugin.sig", "x")
            ])
        );
        // Each of these is another package.
        let others: [&[(&str, &str)]; 6] = [
            &[
                ("plugin.toml", "m"),
                ("plugin.wasm", "W"),
                ("data/a.txt", "a"),
            ],
            &[
                ("plugin.toml", "m"),
                ("plugin.wasm", "w"),
                ("data/b.txt", "a"),
            ],
            &[("plugin.toml", "m"), ("plugin.wasm", "w")],
            &[
                ("plugin.toml", "m"),
                ("plugin.wasm", "w"),
                ("data/a.txt", "a"),
                ("extra", ""),
            ],
            &[
                ("plugin.toml", "m"),
                ("plugin.wasm", "w"),
                ("data/a.txt", "a"),
                ("data/plugin.sig", "x"),
            ],
            &[
                ("plugin.toml", "m"),
                ("plugin.wasm", "w"),
                ("data/a.txt", "a\n"),
            ],
        ];
        for other in others {
            assert_ne!(pkg(other), d, "{other:?}");
        }
        // A path cannot pass for two files' lines.
        let empty = hex::encode(Sha256::digest(b""));
        let smuggled = format!("a\n{empty} 0 1:b");
        assert_ne!(
            pkg(&[("a", ""), ("b", "")]),
            pkg(&[(smuggled.as_str(), "")])
        );
    }

    #[test]
    fn signatures_verify_only_for_their_package_and_key() -> Result<(), SignError> {
        let key = generate()?;
        let other = generate()?;
        let d = pkg(&[("plugin.toml", "m"), ("plugin.wasm", "w")]);
        let changed = pkg(&[("plugin.toml", "m"), ("plugin.wasm", "W")]);
        let sig = sign(&key, &d);
        let round = SignatureFile::parse(sig.to_toml().as_bytes())?;
        assert_eq!(round, sig);
        verify(&sig, &key.verifying_key(), &d)?;
        assert!(matches!(
            verify(&sig, &key.verifying_key(), &changed),
            Err(SignError::Tampered { .. })
        ));
        assert!(matches!(
            verify(&sig, &other.verifying_key(), &d),
            Err(SignError::OtherKey { .. })
        ));
        // A signature file edited to claim the new digest no longer verifies.
        let forged = SignatureFile {
            digest: hex::encode(changed),
            ..sig.clone()
        };
        assert_eq!(
            verify(&forged, &key.verifying_key(), &changed),
            Err(SignError::BadSignature(key_id(&key.verifying_key())))
        );
        let garbled = SignatureFile {
            signature: "00".into(),
            ..sig
        };
        assert!(matches!(
            verify(&garbled, &key.verifying_key(), &d),
            Err(SignError::Malformed(_))
        ));
        assert!(SignatureFile::parse(b"key_id = 1").is_err());
        Ok(())
    }

    #[test]
    fn key_files_round_trip() -> Result<(), SignError> {
        let key = generate()?;
        let (secret, public) = key_files(&key);
        assert_eq!(parse_secret(&secret)?.to_bytes(), key.to_bytes());
        assert_eq!(parse_public(&public)?, key.verifying_key());
        let bare = hex::encode(key.verifying_key().as_bytes());
        assert_eq!(parse_public(&bare)?, key.verifying_key());
        assert!(parse_public("abcd").is_err());
        assert!(parse_secret(&public).is_err());
        Ok(())
    }

    #[test]
    fn collect_reads_what_tarkd_reads() -> std::io::Result<()> {
        let d = tempfile::tempdir()?;
        std::fs::create_dir_all(d.path().join("data/.git"))?;
        std::fs::write(d.path().join("plugin.toml"), "m")?;
        std::fs::write(d.path().join("data/a.txt"), "a")?;
        std::fs::write(d.path().join("data/.git/HEAD"), "x")?;
        std::fs::write(d.path().join(".editor.swp"), "x")?;
        let mut got: Vec<String> = collect(d.path())?.into_iter().map(|(p, _)| p).collect();
        got.sort();
        assert_eq!(got, ["data/a.txt", "plugin.toml"]);
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link"))?;
        assert!(collect(d.path()).is_err());
        Ok(())
    }
}
