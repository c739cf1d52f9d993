//! Signing plugins and managing tarkd's trust roots: `keygen`, `plugin sign`,
//! `trust add|list|revoke`. Keys and signatures are made here, on the
//! operator's machine; tarkd only ever sees public keys.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::json;
use tark_proto::plugin::v1 as pb;

use crate::render::print_json;

/// Writes a new signing key to `out` (0600) and its public key to `out.pub`.
pub fn keygen(out: &Path, json_out: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = tark_sign::generate()?;
    let (secret, public) = tark_sign::key_files(&key);
    let public_path = out.with_extension("pub");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("{} (an existing key is never overwritten)", out.display()))?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    std::fs::write(&public_path, public)?;
    let id = tark_sign::key_id(&key.verifying_key());
    if json_out {
        print_json(&json!({"key_id": id, "secret_key_file": out, "public_key_file": public_path}));
    } else {
        println!("key {id}");
        println!(
            "  secret: {} (keep it off the hosts tarkd runs on)",
            out.display()
        );
        println!(
            "  public: {} (tarkctl trust add {})",
            public_path.display(),
            public_path.display()
        );
    }
    Ok(())
}

/// Signs the plugin folder `dir` with the key in `key_file`: writes
/// `dir/plugin.sig` over every file in it.
pub fn sign(key_file: &Path, dir: &Path, json_out: bool) -> anyhow::Result<()> {
    let key = std::fs::read_to_string(key_file)
        .with_context(|| format!("reading {}", key_file.display()))?;
    let key = tark_sign::parse_secret(&key)?;
    let files = tark_sign::collect(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !files.iter().any(|(p, _)| p == "plugin.toml") {
        bail!("{} has no plugin.toml", dir.display());
    }
    let digest = tark_sign::digest(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    let sig = tark_sign::sign(&key, &digest);
    std::fs::write(dir.join(tark_sign::SIGNATURE_FILE), sig.to_toml())?;
    let signed = files
        .iter()
        .filter(|(p, _)| p != tark_sign::SIGNATURE_FILE)
        .count();
    if json_out {
        print_json(&json!({"key_id": sig.key_id, "digest": sig.digest, "files": signed}));
    } else {
        println!(
            "signed {} ({signed} files, digest {}) with key {}",
            dir.display(),
            sig.digest,
            sig.key_id
        );
    }
    Ok(())
}

/// RFC 3339 to unix seconds.
pub fn parse_time(text: &str) -> anyhow::Result<u64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{text:?} is not an RFC 3339 time (2027-01-31T00:00:00Z)"))?;
    u64::try_from(t.unix_timestamp()).context("a time before 1970")
}

fn shown_time(unix: u64) -> String {
    if unix == 0 {
        return "-".into();
    }
    i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn key_json(k: &pb::TrustedKey) -> serde_json::Value {
    json!({
        "key_id": k.key_id, "public_key": k.public_key, "added": shown_time(k.added_unix),
        "expires": shown_time(k.expires_unix), "revoked": shown_time(k.revoked_unix),
        "rotated_to": k.rotated_to, "rotated_from": k.rotated_from, "comment": k.comment,
    })
}

fn key_line(k: &pb::TrustedKey) -> String {
    let state = if k.revoked_unix != 0 {
        format!("revoked {}", shown_time(k.revoked_unix))
    } else if !k.rotated_to.is_empty() {
        format!("rotated to {}", k.rotated_to)
    } else if k.expires_unix != 0 {
        format!("trusted until {}", shown_time(k.expires_unix))
    } else {
        "trusted".into()
    };
    let from = if k.rotated_from.is_empty() {
        String::new()
    } else {
        format!(" (replaces {})", k.rotated_from)
    };
    format!("{}  {state}{from}  {}", k.key_id, k.comment)
}

/// `trust add|list|revoke`.
pub async fn run(
    c: &mut pb::plugins_client::PluginsClient<tonic::transport::Channel>,
    cmd: crate::TrustCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    let shown = match cmd {
        crate::TrustCommand::Add {
            key,
            expires,
            rotate_from,
            comment,
        } => {
            // A file (the .pub keygen writes) or the key itself.
            let public_key = match std::fs::read_to_string(&key) {
                Ok(text) => text,
                Err(_) => key,
            };
            let expires_unix = expires.as_deref().map(parse_time).transpose()?.unwrap_or(0);
            let k = c
                .add_trusted_key(pb::AddTrustedKeyRequest {
                    public_key,
                    expires_unix,
                    rotate_from: rotate_from.unwrap_or_default(),
                    comment: comment.unwrap_or_default(),
                })
                .await
                .map_err(crate::status_error)?
                .into_inner();
            vec![k]
        }
        crate::TrustCommand::List => {
            c.list_trusted_keys(pb::ListTrustedKeysRequest {})
                .await
                .map_err(crate::status_error)?
                .into_inner()
                .keys
        }
        crate::TrustCommand::Revoke { key_id } => {
            let k = c
                .revoke_trusted_key(pb::TrustedKeyRef { key_id })
                .await
                .map_err(crate::status_error)?
                .into_inner();
            vec![k]
        }
    };
    if json_out {
        print_json(&json!(shown.iter().map(key_json).collect::<Vec<_>>()));
    } else {
        for k in &shown {
            println!("{}", key_line(k));
        }
    }
    Ok(())
}
