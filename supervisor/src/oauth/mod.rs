//! OAuth sign-in as tark's manifests declare it (`[oauth]`), run by tarkd and
//! never by the plugin's own network access.
//!
//! tark runs the flow in the agent and writes the tokens to the plugin's
//! `credentials_path`, where the plugin reads them back with `fs_read`. tarkd
//! keeps that contract without a file: the tokens (after the plugin's
//! `auth_process_tokens`, when it has one) are stored in the plugin's own
//! storage for the tenant that signed in, and the broker answers an `fs_read`
//! of the credentials path from there, refreshing them first when they have
//! expired. So tenants never see each other's credentials and nothing is
//! written on the host.
//!
//! [`pkce`] builds the browser's URL, [`token`] the token endpoint's requests
//! and answers; the requests go through the plugin's broker, so the plugin's
//! approved http grant must cover the endpoints and the broker's address rules
//! and audit apply to them as to the plugin's own calls.

pub mod pkce;
pub mod token;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::plugins::manifest::OAuth;
use crate::plugins::manifest::oauth::placeholders;

/// The plugin storage key holding the tenant's credentials: the JSON tark
/// would have written to `credentials_path`.
pub const CREDENTIALS_KEY: &str = "tarkd.oauth.credentials";

/// How long a started PKCE login waits for its code.
pub const LOGIN_LIFETIME: Duration = Duration::from_secs(600);

/// Refresh this long before the stored `expires_at`.
const EXPIRY_MARGIN_S: u64 = 60;

/// Where the plugin reads its credentials: the manifest's `credentials_path`,
/// or tark's default for the plugin.
pub fn credentials_path(oauth: &OAuth, plugin: &str) -> String {
    oauth
        .credentials_path
        .clone()
        .unwrap_or_else(|| format!("~/.config/tark/{plugin}_oauth.json"))
}

/// `oauth` with every `${VAR}` filled from the plugin's secrets file (never
/// from tarkd's environment, which every plugin granted a name could read).
pub fn resolve(oauth: &OAuth, plugin: &str, secrets_dir: &Path) -> Result<OAuth, String> {
    let fill = |key: &str, text: &str| -> Result<String, String> {
        let mut out = text.to_owned();
        for name in placeholders(text).map_err(|e| format!("oauth.{key} {e}"))? {
            let value = crate::broker::secrets::lookup(secrets_dir, plugin, name)?
                .ok_or_else(|| {
                    format!(
                        "oauth.{key} needs ${{{name}}}, which is not in the plugin's secrets file {}",
                        secrets_dir.join(format!("{plugin}.env")).display()
                    )
                })?;
            out = out.replace(&format!("${{{name}}}"), &value);
        }
        Ok(out)
    };
    let mut o = oauth.clone();
    o.auth_url = fill("auth_url", &o.auth_url)?;
    o.token_url = fill("token_url", &o.token_url)?;
    o.client_id = fill("client_id", &o.client_id)?;
    o.redirect_uri = fill("redirect_uri", &o.redirect_uri)?;
    if let Some(s) = &o.client_secret {
        o.client_secret = Some(fill("client_secret", s)?);
    }
    for s in &mut o.scopes {
        *s = fill("scopes", s)?;
    }
    for (k, v) in &mut o.extra_params {
        *v = fill(&format!("extra_params.{k}"), v)?;
    }
    Ok(o)
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// tarkd's own record of when the stored credentials expire, beside them in
/// the plugin's storage: the credentials stay exactly what tark would have
/// written, so a plugin reading them sees no field it did not ask for.
pub const EXPIRY_KEY: &str = "tarkd.oauth.expires_at";

/// Credentials to store after a token response, and when they expire.
#[derive(Debug, PartialEq, Eq)]
pub struct Stored {
    /// The JSON tark writes to `credentials_path`.
    pub credentials: String,
    /// Seconds since the epoch, when the token endpoint said how long.
    pub expires_at: Option<u64>,
}

/// What to store after a token response, as tark writes it: the plugin's
/// `auth_process_tokens` answer verbatim when it has processed them (a plugin
/// may not expect a field of tarkd's: tark's own chatgpt plugin would compare
/// an `expires_at` against a clock that wasm32-unknown-unknown does not have),
/// else the response with `expires_at` added. The expiry is known either way.
pub fn to_store(tokens: &Map<String, Value>, processed: Option<&str>) -> Result<Stored, String> {
    let expires_at = tokens
        .get("expires_in")
        .and_then(Value::as_u64)
        .map(|secs| now_s().saturating_add(secs));
    let credentials = match processed {
        Some(p) => match serde_json::from_str::<Value>(p) {
            Ok(Value::Object(o)) => o,
            _ => return Err("auth_process_tokens did not return a JSON object".into()),
        },
        None => {
            let mut o = tokens.clone();
            if let Some(t) = expires_at {
                o.insert("expires_at".into(), json!(t));
            }
            o
        }
    };
    Ok(Stored {
        credentials: Value::Object(credentials).to_string(),
        expires_at,
    })
}

/// The refresh token of stored credentials that have expired (or will within
/// a minute); `None` while they are fresh or cannot be refreshed. The expiry
/// is the credentials' own `expires_at`, else tarkd's record of it.
pub fn needs_refresh(stored: &str, recorded: Option<u64>, now: u64) -> Option<String> {
    let o: Map<String, Value> = serde_json::from_str(stored).ok()?;
    let expires_at = o.get("expires_at").and_then(Value::as_u64).or(recorded)?;
    if now.saturating_add(EXPIRY_MARGIN_S) < expires_at {
        return None;
    }
    o.get("refresh_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Stored credentials with a refresh response merged in: new tokens replace
/// the old, a refresh token the server did not rotate is kept, what the
/// plugin added at sign-in (an account id, ...) stays, and `expires_at` is
/// updated only where the credentials carry one (the shape stays the same).
pub fn refreshed(stored: &str, tokens: &Map<String, Value>) -> Stored {
    let mut o: Map<String, Value> = serde_json::from_str(stored).unwrap_or_default();
    let had_expiry = o.contains_key("expires_at");
    for (k, v) in tokens {
        o.insert(k.clone(), v.clone());
    }
    let expires_at = tokens
        .get("expires_in")
        .and_then(Value::as_u64)
        .map(|secs| now_s().saturating_add(secs));
    if let Some(t) = expires_at.filter(|_| had_expiry) {
        o.insert("expires_at".into(), json!(t));
    }
    Stored {
        credentials: Value::Object(o).to_string(),
        expires_at,
    }
}

/// Whether a fresh read of the stored credentials is due for a refresh now.
pub fn refresh_due(stored: &str, recorded: Option<u64>) -> Option<String> {
    needs_refresh(stored, recorded, now_s())
}

/// A PKCE login waiting for the browser's redirect.
struct Pending {
    verifier: String,
    state: String,
    started: Instant,
}

/// PKCE logins in progress, one per tenant × plugin (a new one replaces the
/// old, whose code is then refused).
#[derive(Default)]
pub struct Logins(Mutex<HashMap<(String, String), Pending>>);

impl Logins {
    /// Starts a login: returns the challenge and state for the authorize URL.
    pub fn start(&self, tenant: &str, plugin: &str) -> Result<(String, String), String> {
        let (verifier, state) = (pkce::random_token()?, pkce::random_token()?);
        let challenge = pkce::challenge(&verifier);
        let mut logins = self.0.lock().unwrap_or_else(|p| p.into_inner());
        logins.retain(|_, p| p.started.elapsed() < LOGIN_LIFETIME);
        logins.insert(
            (tenant.to_owned(), plugin.to_owned()),
            Pending {
                verifier,
                state: state.clone(),
                started: Instant::now(),
            },
        );
        Ok((challenge, state))
    }

    /// Ends the tenant's login for `plugin` if `state` is its state (or the
    /// manifest turned state off): returns its verifier. Used once.
    pub fn finish(
        &self,
        tenant: &str,
        plugin: &str,
        state: &str,
        use_state: bool,
    ) -> Result<String, String> {
        let mut logins = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (tenant.to_owned(), plugin.to_owned());
        let Some(p) = logins.get(&key) else {
            return Err(
                "no sign-in is in progress (start one with tarkctl auth PLUGIN login)".into(),
            );
        };
        if p.started.elapsed() >= LOGIN_LIFETIME {
            logins.remove(&key);
            return Err("the sign-in expired; start it again".into());
        }
        if use_state && p.state != state {
            return Err("the redirect's state does not match this sign-in".into());
        }
        Ok(logins.remove(&key).map(|p| p.verifier).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_credentials_are_what_tark_writes() -> Result<(), String> {
        let tokens: Map<String, Value> =
            serde_json::from_str(r#"{"access_token":"A","refresh_token":"R","expires_in":3600}"#)
                .map_err(|e| e.to_string())?;
        let soon = |t: Option<u64>| t.is_some_and(|t| t >= now_s() + 3599);
        // Unprocessed: the response with expires_at, as tark writes it.
        let plain = to_store(&tokens, None)?;
        let json: Value = serde_json::from_str(&plain.credentials).map_err(|e| e.to_string())?;
        assert_eq!(json["access_token"], "A");
        assert!(soon(json["expires_at"].as_u64()) && soon(plain.expires_at));
        // Processed: the plugin's answer verbatim; tarkd keeps the expiry aside.
        let processed = to_store(&tokens, Some(r#"{"token":"A","account":"x"}"#))?;
        assert_eq!(processed.credentials, r#"{"account":"x","token":"A"}"#);
        assert!(soon(processed.expires_at));
        let kept = to_store(&tokens, Some(r#"{"expires_at":5}"#))?;
        assert_eq!(kept.credentials, r#"{"expires_at":5}"#);
        assert!(to_store(&tokens, Some("[1]")).is_err());
        let forever: Map<String, Value> =
            serde_json::from_str(r#"{"access_token":"A"}"#).map_err(|e| e.to_string())?;
        assert_eq!(to_store(&forever, None)?.expires_at, None);
        Ok(())
    }

    #[test]
    fn refresh_table() {
        let now = 1_000_000;
        // (stored credentials, tarkd's recorded expiry, refresh token due)
        for (stored, recorded, want) in [
            (
                r#"{"expires_at":999000,"refresh_token":"R"}"#,
                None,
                Some("R"),
            ),
            (
                r#"{"expires_at":1000030,"refresh_token":"R"}"#,
                None,
                Some("R"),
            ),
            (r#"{"expires_at":1000100,"refresh_token":"R"}"#, None, None),
            (r#"{"expires_at":999000}"#, None, None),
            (r#"{"refresh_token":"R"}"#, None, None),
            (r#"{"refresh_token":"R"}"#, Some(999_000), Some("R")),
            (r#"{"refresh_token":"R"}"#, Some(1_000_100), None),
            // The credentials' own expiry wins over tarkd's record.
            (
                r#"{"expires_at":1000100,"refresh_token":"R"}"#,
                Some(1),
                None,
            ),
            ("not json", Some(1), None),
        ] {
            assert_eq!(
                needs_refresh(stored, recorded, now).as_deref(),
                want,
                "{stored} {recorded:?}"
            );
        }
    }

    #[test]
    fn a_refresh_keeps_the_shape_of_the_credentials() {
        let tokens: Map<String, Value> =
            serde_json::from_str(r#"{"access_token":"A2","expires_in":60}"#).unwrap_or_default();
        let with = refreshed(
            r#"{"access_token":"A1","refresh_token":"R","account":"x","expires_at":1}"#,
            &tokens,
        );
        let merged: Value = serde_json::from_str(&with.credentials).unwrap_or_default();
        assert_eq!(merged["access_token"], "A2");
        assert_eq!(
            merged["refresh_token"], "R",
            "an unrotated refresh token is kept"
        );
        assert_eq!(merged["account"], "x");
        assert!(merged["expires_at"].as_u64().is_some_and(|t| t > 1));
        assert!(with.expires_at.is_some_and(|t| t > 1));
        let without = refreshed(r#"{"access_token":"A1","refresh_token":"R"}"#, &tokens);
        let merged: Value = serde_json::from_str(&without.credentials).unwrap_or_default();
        assert_eq!(merged["access_token"], "A2");
        assert!(merged.get("expires_at").is_none(), "{merged}");
        assert!(without.expires_at.is_some());
    }

    #[test]
    fn a_login_is_finished_once_with_its_own_state() -> Result<(), String> {
        let logins = Logins::default();
        let (challenge, state) = logins.start("t1", "p")?;
        assert_eq!(challenge.len(), 43);
        assert!(
            logins.finish("t2", "p", &state, true).is_err(),
            "another tenant's"
        );
        let wrong = logins.finish("t1", "p", "forged", true);
        assert!(wrong.is_err_and(|e| e.contains("state does not match")));
        let verifier = logins.finish("t1", "p", &state, true)?;
        assert_eq!(pkce::challenge(&verifier), challenge);
        assert!(logins.finish("t1", "p", &state, true).is_err(), "used once");
        let (_, _) = logins.start("t1", "p")?;
        assert!(
            logins.finish("t1", "p", "anything", false).is_ok(),
            "use_state = false"
        );
        Ok(())
    }

    #[test]
    fn placeholders_come_from_the_secrets_file_only() -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().map_err(|e| e.to_string())?;
        let file = d.path().join("p.env");
        std::fs::write(&file, "CID=abc\nSECRET=s3\n").map_err(|e| e.to_string())?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        let oauth = OAuth {
            flow: crate::plugins::manifest::oauth::Flow::Pkce,
            auth_url: "https://a/x".into(),
            token_url: "https://a/t".into(),
            client_id: "${CID}".into(),
            client_secret: Some("pre-${SECRET}".into()),
            scopes: vec![],
            redirect_uri: "http://localhost:1/cb".into(),
            credentials_path: None,
            process_tokens_callback: None,
            use_state: true,
            extra_params: Default::default(),
        };
        let r = resolve(&oauth, "p", d.path())?;
        assert_eq!(
            (r.client_id.as_str(), r.client_secret.as_deref()),
            ("abc", Some("pre-s3"))
        );
        let missing = OAuth {
            client_id: "${PATH}".into(),
            ..oauth
        };
        let err = resolve(&missing, "p", d.path()).err().unwrap_or_default();
        assert!(
            err.contains("needs ${PATH}, which is not in the plugin's secrets file"),
            "{err}"
        );
        Ok(())
    }
}
