//! Trust roots for signed plugin packages, and the verdict on a package.
//!
//! The operator trusts ed25519 public keys (`tarkctl trust add`), each with an
//! optional expiry; a key is revoked for good (`trust revoke`), or rotated: the
//! new key is added naming the old one, which from then on verifies nothing.
//! Kept as one TOML file per key in `state_dir/trust/` (0600, written whole).
//!
//! [`judge`] is the whole decision, pure and table-tested: a package with no
//! `plugin.sig` is unsigned; one with a signature is verified only if the key is
//! trusted, unrevoked, unexpired and not rotated away, and the signature covers
//! exactly the files present (`tark_sign`). Anything else is refused, with why.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plugins::folder::Folder;

/// A trusted key, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    pub key_id: String,
    /// hex
    pub public_key: String,
    pub added_unix: u64,
    pub expires_unix: Option<u64>,
    pub revoked_unix: Option<u64>,
    /// The key this one was replaced by (it verifies nothing since).
    pub rotated_to: Option<String>,
    /// The key this one replaced.
    pub rotated_from: Option<String>,
    #[serde(default)]
    pub comment: String,
}

/// What tarkd concluded about a package's signature.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verdict {
    #[default]
    Unsigned,
    Verified {
        key_id: String,
    },
    Refused(String),
}

impl Verdict {
    /// For `plugin info`: (signer, status).
    pub fn shown(&self) -> (String, String) {
        match self {
            Verdict::Unsigned => (String::new(), "unsigned".into()),
            Verdict::Verified { key_id } => (key_id.clone(), "verified".into()),
            Verdict::Refused(why) => (String::new(), format!("refused: {why}")),
        }
    }
}

/// RFC 3339 for a unix time (UTC), for messages and listings.
pub fn rfc3339(unix: u64) -> String {
    let t = i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok());
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| format!("{unix} (unix)"))
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The verdict on a package (its files as read) under `keys` at `now`.
pub fn judge(files: &[(&str, &[u8])], keys: &[TrustedKey], now: u64) -> Verdict {
    let Some((_, sig)) = files.iter().find(|(p, _)| *p == tark_sign::SIGNATURE_FILE) else {
        return Verdict::Unsigned;
    };
    let sig = match tark_sign::SignatureFile::parse(sig) {
        Ok(s) => s,
        Err(e) => return Verdict::Refused(e.to_string()),
    };
    let id = &sig.key_id;
    let Some(key) = keys.iter().find(|k| k.key_id == *id) else {
        return Verdict::Refused(format!(
            "signed by key {id}, which is not trusted (tarkctl trust add)"
        ));
    };
    if let Some(at) = key.revoked_unix {
        return Verdict::Refused(format!("signed by key {id}, revoked at {}", rfc3339(at)));
    }
    if let Some(new) = &key.rotated_to {
        return Verdict::Refused(format!(
            "signed by key {id}, which was rotated to {new}: sign with the new key"
        ));
    }
    if let Some(at) = key.expires_unix
        && at <= now
    {
        return Verdict::Refused(format!(
            "signed by key {id}, which expired at {}",
            rfc3339(at)
        ));
    }
    let public = match tark_sign::parse_public(&key.public_key) {
        Ok(k) => k,
        Err(e) => return Verdict::Refused(format!("trusted key {id}: {e}")),
    };
    let digest = tark_sign::digest(files.iter().copied());
    match tark_sign::verify(&sig, &public, &digest) {
        Ok(()) => Verdict::Verified { key_id: id.clone() },
        Err(e) => Verdict::Refused(e.to_string()),
    }
}

/// A folder's files as the package they make: `/`-separated relative paths.
pub fn package(folder: &Folder) -> Result<Vec<(&str, &[u8])>, String> {
    folder
        .files
        .iter()
        .map(|(p, b)| {
            p.to_str()
                .map(|s| (s, b.as_slice()))
                .ok_or_else(|| format!("{}: not a UTF-8 path", p.display()))
        })
        .collect()
}

/// Judges installed plugins from their folders on disk and records each
/// verdict; those judged already are left unless `again` (the trust roots
/// changed). A store that cannot be read refuses every signed package.
pub fn judge_installed<'a>(
    store: &TrustStore,
    plugins: impl IntoIterator<Item = &'a crate::plugins::registry::Plugin>,
    again: bool,
) {
    let keys = store.list();
    let now = now_unix();
    for plugin in plugins {
        let mut slot = plugin.signature.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() && !again {
            continue;
        }
        let verdict = match (&keys, read_package(&plugin.dir)) {
            (_, Ok(None)) => Verdict::Unsigned,
            (Ok(keys), Ok(Some(folder))) => match package(&folder) {
                Ok(files) => judge(&files, keys, now),
                Err(e) => Verdict::Refused(e),
            },
            (Err(e), Ok(Some(_))) => Verdict::Refused(e.to_string()),
            (_, Err(e)) => Verdict::Refused(e),
        };
        if let Verdict::Refused(why) = &verdict {
            tracing::warn!(plugin = %plugin.id, "signature refused: {why}");
        }
        *slot = Some(verdict);
    }
}

/// The whole folder, read as an install reads it, if it holds a signature.
fn read_package(dir: &Path) -> Result<Option<Folder>, String> {
    if !dir.join(tark_sign::SIGNATURE_FILE).exists() {
        return Ok(None);
    }
    crate::plugins::folder::read(dir, None, crate::plugins::folder::Limits::default())
        .map(Some)
        .map_err(|e| format!("reading the package: {e}"))
}

/// Why a plugin with `verdict` may not be installed, switched in or run: a
/// signature that does not verify, or none while `required_by` (what asks for
/// signatures: the policy, or a tenant) says one is needed.
pub fn gate(id: &str, verdict: &Verdict, required_by: Option<&str>) -> Result<(), String> {
    match (verdict, required_by) {
        (Verdict::Refused(why), _) => Err(format!("plugin {id}: signature refused: {why}")),
        (Verdict::Unsigned, Some(by)) => Err(format!(
            "plugin {id} is not signed, and {by} (tarkctl plugin sign)"
        )),
        _ => Ok(()),
    }
}

/// `required_by` for `policy.require_signed`.
pub fn by_policy(require_signed: bool) -> Option<&'static str> {
    require_signed.then_some("policy.require_signed is set")
}

/// Why the trust store could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("trust store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

impl From<TrustError> for crate::workers::CallError {
    fn from(e: TrustError) -> Self {
        match e {
            TrustError::Io { .. } => Self::new(tonic::Code::Internal, e.to_string()),
            TrustError::Refused(m) => Self::new(tonic::Code::InvalidArgument, m),
        }
    }
}

/// The trusted keys, on disk.
#[derive(Debug, Clone)]
pub struct TrustStore {
    dir: PathBuf,
}

impl TrustStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("trust"),
        }
    }

    fn io(&self, source: std::io::Error) -> TrustError {
        TrustError::Io {
            path: self.dir.clone(),
            source,
        }
    }

    /// Every key, by id.
    pub fn list(&self) -> Result<Vec<TrustedKey>, TrustError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let mut keys = Vec::new();
        for e in entries {
            let path = e.map_err(|e| self.io(e))?.path();
            if path.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| self.io(e))?;
            let key: TrustedKey = toml::from_str(&text).map_err(|e| {
                TrustError::Refused(format!("trust store {}: {}", path.display(), e.message()))
            })?;
            keys.push(key);
        }
        keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        Ok(keys)
    }

    fn save(&self, key: &TrustedKey) -> Result<(), TrustError> {
        let text = toml::to_string(key).map_err(|e| TrustError::Refused(e.to_string()))?;
        crate::durable::write_private(&self.dir, &format!("{}.toml", key.key_id), text.as_bytes())
            .map_err(|e| self.io(e))
    }

    fn find(keys: &[TrustedKey], id: &str) -> Result<TrustedKey, TrustError> {
        keys.iter()
            .find(|k| k.key_id == id)
            .cloned()
            .ok_or_else(|| TrustError::Refused(format!("no trusted key {id}")))
    }

    /// Trusts a public key (hex, or a `tarkctl keygen` public key file); with
    /// `rotate_from`, it replaces that key. Adding a key again changes its
    /// expiry; a revoked key is never trusted again.
    pub fn add(
        &self,
        public: &str,
        expires_unix: Option<u64>,
        rotate_from: Option<&str>,
        comment: &str,
        now: u64,
    ) -> Result<TrustedKey, TrustError> {
        let key =
            tark_sign::parse_public(public).map_err(|e| TrustError::Refused(e.to_string()))?;
        let id = tark_sign::key_id(&key);
        let keys = self.list()?;
        let existing = keys.iter().find(|k| k.key_id == id).cloned();
        if let Some(k) = &existing
            && k.revoked_unix.is_some()
        {
            return Err(TrustError::Refused(format!(
                "key {id} was revoked; a revoked key is never trusted again"
            )));
        }
        let mut new = existing.unwrap_or(TrustedKey {
            key_id: id.clone(),
            public_key: hex::encode(key.as_bytes()),
            added_unix: now,
            expires_unix: None,
            revoked_unix: None,
            rotated_to: None,
            rotated_from: None,
            comment: String::new(),
        });
        new.expires_unix = expires_unix;
        if !comment.is_empty() {
            new.comment = comment.to_owned();
        }
        if let Some(old_id) = rotate_from {
            if old_id == id {
                return Err(TrustError::Refused(format!(
                    "key {id} cannot replace itself"
                )));
            }
            let mut old = Self::find(&keys, old_id)?;
            if old.revoked_unix.is_some() {
                return Err(TrustError::Refused(format!(
                    "key {old_id} was revoked: revoked keys are not rotated, add the new key alone"
                )));
            }
            old.rotated_to = Some(id.clone());
            new.rotated_from = Some(old_id.to_owned());
            // The new key first: a crash in between leaves both trusted, not neither.
            self.save(&new)?;
            self.save(&old)?;
        } else {
            self.save(&new)?;
        }
        Ok(new)
    }

    /// Revokes a key for good.
    pub fn revoke(&self, id: &str, now: u64) -> Result<TrustedKey, TrustError> {
        let mut key = Self::find(&self.list()?, id)?;
        if key.revoked_unix.is_none() {
            key.revoked_unix = Some(now);
            self.save(&key)?;
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Signer(tark_sign::SigningKey);

    impl Signer {
        fn new() -> Self {
            Self(tark_sign::generate().unwrap_or_else(|e| panic!("{e}")))
        }
        fn id(&self) -> String {
            tark_sign::key_id(&self.0.verifying_key())
        }
        fn trusted(&self) -> TrustedKey {
            TrustedKey {
                key_id: self.id(),
                public_key: hex::encode(self.0.verifying_key().as_bytes()),
                added_unix: 0,
                expires_unix: None,
                revoked_unix: None,
                rotated_to: None,
                rotated_from: None,
                comment: String::new(),
            }
        }
        fn sig(&self, files: &[(&str, &[u8])]) -> Vec<u8> {
            tark_sign::sign(&self.0, &tark_sign::digest(files.iter().copied()))
                .to_toml()
                .into_bytes()
        }
    }

    /// (package files, trusted keys, the verdict or words of the refusal)
    type Case = (
        Vec<(String, Vec<u8>)>,
        Vec<TrustedKey>,
        Result<Verdict, &'static str>,
    );

    #[test]
    fn verdicts() {
        let (a, b) = (Signer::new(), Signer::new());
        let files: Vec<(&str, &[u8])> = vec![("plugin.toml", b"m"), ("plugin.wasm", b"w")];
        let signed_a = a.sig(&files);
        let signed_b = b.sig(&files);
        let with = |sig: &[u8], wasm: &'static [u8]| -> Vec<(String, Vec<u8>)> {
            vec![
                ("plugin.toml".into(), b"m".to_vec()),
                ("plugin.wasm".into(), wasm.to_vec()),
                ("plugin.sig".into(), sig.to_vec()),
            ]
        };
        let now = 1_000;
        let revoked = TrustedKey {
            revoked_unix: Some(500),
            ..a.trusted()
        };
        let expired = TrustedKey {
            expires_unix: Some(1_000),
            ..a.trusted()
        };
        let later = TrustedKey {
            expires_unix: Some(1_001),
            ..a.trusted()
        };
        let rotated = TrustedKey {
            rotated_to: Some(b.id()),
            ..a.trusted()
        };
        let ok_a = Verdict::Verified { key_id: a.id() };
        // (package, trusted keys, verdict or the refusal's words)
        let cases: Vec<Case> = vec![
            (with(&signed_a, b"w"), vec![a.trusted()], Ok(ok_a.clone())),
            (with(&signed_a, b"w"), vec![later], Ok(ok_a.clone())),
            (
                with(&signed_a, b"W"),
                vec![a.trusted()],
                Err("changed since it was signed"),
            ),
            (
                with(&signed_a, b"w"),
                vec![b.trusted()],
                Err("which is not trusted"),
            ),
            (with(&signed_a, b"w"), vec![], Err("which is not trusted")),
            (
                with(&signed_a, b"w"),
                vec![revoked],
                Err("revoked at 1970-01-01T00:08:20Z"),
            ),
            (
                with(&signed_a, b"w"),
                vec![expired],
                Err("expired at 1970-01-01T00:16:40Z"),
            ),
            (
                with(&signed_a, b"w"),
                vec![rotated.clone(), b.trusted()],
                Err("rotated to"),
            ),
            (
                with(&signed_b, b"w"),
                vec![rotated, b.trusted()],
                Ok(Verdict::Verified { key_id: b.id() }),
            ),
            (
                with(b"not toml", b"w"),
                vec![a.trusted()],
                Err("plugin.sig:"),
            ),
            (
                vec![
                    ("plugin.toml".into(), b"m".to_vec()),
                    ("plugin.wasm".into(), b"w".to_vec()),
                ],
                vec![a.trusted()],
                Ok(Verdict::Unsigned),
            ),
        ];
        for (i, (pkg, keys, want)) in cases.into_iter().enumerate() {
            let files: Vec<(&str, &[u8])> = pkg
                .iter()
                .map(|(p, b)| (p.as_str(), b.as_slice()))
                .collect();
            let got = judge(&files, &keys, now);
            match want {
                Ok(v) => assert_eq!(got, v, "case {i}"),
                Err(words) => assert!(
                    matches!(&got, Verdict::Refused(why) if why.contains(words)),
                    "case {i}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn store_adds_rotates_and_revokes_for_good() -> Result<(), TrustError> {
        let d = tempfile::tempdir().map_err(|e| TrustError::Refused(e.to_string()))?;
        let store = TrustStore::new(d.path());
        let (a, b) = (Signer::new(), Signer::new());
        let (_, a_pub) = tark_sign::key_files(&a.0);
        let b_hex = hex::encode(b.0.verifying_key().as_bytes());
        let added = store.add(&a_pub, Some(5_000), None, "release key", 10)?;
        assert_eq!(
            (added.key_id.clone(), added.expires_unix),
            (a.id(), Some(5_000))
        );
        let rotated = store.add(&b_hex, None, Some(&a.id()), "", 20)?;
        assert_eq!(rotated.rotated_from, Some(a.id()));
        let keys = store.list()?;
        assert_eq!(keys.len(), 2);
        let old = keys.iter().find(|k| k.key_id == a.id()).cloned();
        assert_eq!(old.and_then(|k| k.rotated_to), Some(b.id()));
        store.revoke(&b.id(), 30)?;
        let again = store.add(&b_hex, None, None, "", 40);
        assert!(matches!(again, Err(TrustError::Refused(m)) if m.contains("never trusted again")));
        assert!(store.revoke("0000", 1).is_err());
        assert!(store.add("nonsense", None, None, "", 1).is_err());
        assert!(store.add(&b_hex, None, Some(&b.id()), "", 1).is_err());
        Ok(())
    }
}
