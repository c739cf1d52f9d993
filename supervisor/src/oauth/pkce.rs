//! RFC 7636 (PKCE) and the authorization URL the user's browser visits.
//!
//! The verifier never leaves tarkd until the token exchange; the browser (and
//! anything watching it) sees only its S256 challenge and the `state` that ties
//! the redirect back to this login.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::plugins::manifest::OAuth;

/// 32 random bytes, base64url: 43 characters, within RFC 7636's 43..=128.
pub fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for the OAuth login: {e}"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// `BASE64URL(SHA256(verifier))`.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The authorization URL for `oauth` (placeholders already resolved).
pub fn authorize_url(oauth: &OAuth, challenge: &str, state: &str) -> Result<String, String> {
    let mut url = url::Url::parse(&oauth.auth_url)
        .map_err(|e| format!("oauth.auth_url {:?}: {e}", oauth.auth_url))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &oauth.client_id)
            .append_pair("redirect_uri", &oauth.redirect_uri)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        if !oauth.scopes.is_empty() {
            q.append_pair("scope", &oauth.scopes.join(" "));
        }
        if oauth.use_state {
            q.append_pair("state", state);
        }
        for (k, v) in &oauth.extra_params {
            q.append_pair(k, v);
        }
    }
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::manifest::oauth::Flow;

    #[test]
    fn the_rfc_7636_example_challenge() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn tokens_are_random_and_in_range() -> Result<(), String> {
        let (a, b) = (random_token()?, random_token()?);
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        Ok(())
    }

    #[test]
    fn the_authorize_url_carries_what_the_manifest_says() -> Result<(), String> {
        let mut oauth = OAuth {
            flow: Flow::Pkce,
            auth_url: "https://auth.example.com/authorize?audience=x".into(),
            token_url: "https://auth.example.com/token".into(),
            client_id: "app 1".into(),
            client_secret: None,
            scopes: vec!["openid".into(), "offline_access".into()],
            redirect_uri: "http://localhost:8888/callback".into(),
            credentials_path: None,
            process_tokens_callback: None,
            use_state: true,
            extra_params: [("prompt".to_owned(), "login".to_owned())].into(),
        };
        let url =
            url::Url::parse(&authorize_url(&oauth, "CH", "ST")?).map_err(|e| e.to_string())?;
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("audience"), Some("x"), "the URL's own query is kept");
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some("app 1"));
        assert_eq!(get("redirect_uri"), Some("http://localhost:8888/callback"));
        assert_eq!(get("code_challenge"), Some("CH"));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("scope"), Some("openid offline_access"));
        assert_eq!(get("state"), Some("ST"));
        assert_eq!(get("prompt"), Some("login"));
        oauth.use_state = false;
        assert!(!authorize_url(&oauth, "CH", "ST")?.contains("state="));
        Ok(())
    }
}
