//! `[oauth]`: the sign-in a published plugin declares and tarkd runs for it.
//!
//! tark runs these flows in the agent's own process; tarkd runs them itself
//! (never through the plugin's network access), so what is checked here is
//! what tarkd will do with the table: the endpoints it will call, the loopback
//! address `tarkctl` will listen on, and the `${VAR}` placeholders it will fill
//! from the plugin's secrets file when the flow runs.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Which flow the plugin's provider supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Authorization code with PKCE: the user's browser visits `auth_url`,
    /// the provider redirects to the loopback `redirect_uri`.
    Pkce,
    /// RFC 8628: `auth_url` is the device-authorization endpoint.
    DeviceFlow,
}

/// A validated `[oauth]` table. Strings may hold `${VAR}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth {
    pub flow: Flow,
    pub auth_url: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    /// Where tark wrote the tokens; the plugin reads them back with `fs_read`.
    pub credentials_path: Option<String>,
    /// The export given the token response (tark: `auth_process_tokens`).
    pub process_tokens_callback: Option<String>,
    pub use_state: bool,
    pub extra_params: BTreeMap<String, String>,
}

/// `[oauth]` as written; checked by [`validate`].
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawOAuth {
    flow: Option<String>,
    auth_url: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scopes: Vec<String>,
    redirect_uri: Option<String>,
    credentials_path: Option<String>,
    process_tokens_callback: Option<String>,
    use_state: Option<bool>,
    extra_params: BTreeMap<String, String>,
}

/// The names of the `${VAR}` placeholders in `text`, in order; `Err` for a
/// `${` that is not closed or names nothing a secrets file could hold.
pub fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("{text:?} has an unclosed ${{"));
        };
        let name = &after[..end];
        if !crate::broker::policy::valid_env_name(name) {
            return Err(format!("{text:?}: ${{{name}}} is not a variable name"));
        }
        names.push(name);
        rest = &after[end + 1..];
    }
    Ok(names)
}

/// Whether `uri` is a plain-http address on this machine's loopback, which is where `tarkctl auth login` can listen.
pub fn loopback_redirect(uri: &str) -> Option<(std::net::IpAddr, u16, String)> {
    let url = url::Url::parse(uri).ok()?;
    if url.scheme() != "http" || url.username() != "" || url.password().is_some() {
        return None;
    }
    let ip = match url.host()? {
        url::Host::Domain("localhost") => std::net::IpAddr::from([127, 0, 0, 1]),
        url::Host::Ipv4(ip) if ip.is_loopback() => ip.into(),
        url::Host::Ipv6(ip) if ip.is_loopback() => ip.into(),
        _ => return None,
    };
    Some((ip, url.port_or_known_default()?, url.path().to_owned()))
}

fn https_or_http(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        matches!(u.scheme(), "https" | "http") && u.host().is_some() && u.username().is_empty()
    })
}

/// Checks `[oauth]`; every problem is pushed to `problems` prefixed `oauth.`.
pub(super) fn validate(raw: RawOAuth, problems: &mut Vec<String>) -> Option<OAuth> {
    let before = problems.len();
    let flow = match raw.flow.as_deref() {
        Some("pkce") => Some(Flow::Pkce),
        Some("device_flow") => Some(Flow::DeviceFlow),
        Some(other) => {
            problems.push(format!(
                "oauth.flow {other:?} is not one of pkce, device_flow"
            ));
            None
        }
        None => {
            problems.push("oauth.flow is required (pkce or device_flow)".to_owned());
            None
        }
    };
    let mut required = |key: &str, value: Option<String>| {
        let value = value.unwrap_or_default();
        if value.is_empty() {
            problems.push(format!("oauth.{key} is required"));
        }
        value
    };
    let auth_url = required("auth_url", raw.auth_url);
    let token_url = required("token_url", raw.token_url);
    let client_id = required("client_id", raw.client_id);
    let redirect_uri = match flow {
        Some(Flow::Pkce) => required("redirect_uri", raw.redirect_uri),
        _ => raw.redirect_uri.unwrap_or_default(),
    };
    let mut texts: Vec<(String, &str)> = vec![
        ("auth_url".into(), &auth_url),
        ("token_url".into(), &token_url),
        ("client_id".into(), &client_id),
        ("redirect_uri".into(), &redirect_uri),
    ];
    if let Some(s) = &raw.client_secret {
        texts.push(("client_secret".into(), s));
    }
    texts.extend(raw.scopes.iter().map(|s| ("scopes".into(), s.as_str())));
    texts.extend(
        raw.extra_params
            .iter()
            .map(|(k, v)| (format!("extra_params.{k}"), v.as_str())),
    );
    for (key, text) in &texts {
        if let Err(e) = placeholders(text) {
            problems.push(format!("oauth.{key} {e}"));
        }
    }
    for (key, url) in [("auth_url", &auth_url), ("token_url", &token_url)] {
        if !url.is_empty() && !url.contains("${") && !https_or_http(url) {
            problems.push(format!("oauth.{key} {url:?} is not an http(s) URL"));
        }
    }
    if flow == Some(Flow::Pkce)
        && !redirect_uri.is_empty()
        && !redirect_uri.contains("${")
        && loopback_redirect(&redirect_uri).is_none()
    {
        problems.push(format!(
            "oauth.redirect_uri {redirect_uri:?} must be http://localhost:PORT/... (or 127.0.0.1, [::1]): \
             tarkctl listens there for the browser's redirect"
        ));
    }
    if let Some(p) = &raw.credentials_path
        && !crate::broker::policy::valid_fs_entry(p)
    {
        problems.push(format!(
            "oauth.credentials_path {p:?} must be an absolute or ~/ path without .."
        ));
    }
    if let Some(cb) = &raw.process_tokens_callback
        && cb != "auth_process_tokens"
    {
        problems.push(format!(
            "oauth.process_tokens_callback {cb:?}: tark's ABI calls auth_process_tokens"
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(OAuth {
        flow: flow?,
        auth_url,
        token_url,
        client_id,
        client_secret: raw.client_secret,
        scopes: raw.scopes,
        redirect_uri,
        credentials_path: raw.credentials_path,
        process_tokens_callback: raw.process_tokens_callback,
        use_state: raw.use_state.unwrap_or(true),
        extra_params: raw.extra_params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_table() {
        for (text, want) in [
            ("plain", Ok(vec![])),
            ("${A}", Ok(vec!["A"])),
            ("x${A_B}y${C}", Ok(vec!["A_B", "C"])),
            ("$A {B}", Ok(vec![])),
            ("${A", Err(())),
            ("${}", Err(())),
            ("${A-B}", Err(())),
            ("${A*}", Err(())),
        ] {
            assert_eq!(placeholders(text).map_err(|_| ()), want, "{text:?}");
        }
    }

    #[test]
    fn loopback_table() {
        for (uri, ok) in [
            ("http://localhost:8888/callback", true),
            ("http://127.0.0.1:1/", true),
            ("http://[::1]:9000/cb", true),
            ("http://127.9.9.9:80/x", true),
            ("http://localhost/callback", true),
            ("https://localhost:8888/callback", false),
            ("http://example.com:8888/callback", false),
            ("http://10.0.0.1:8888/", false),
            ("http://u:p@localhost:8888/", false),
            ("http://localhost.evil.com:8888/", false),
            ("not a url", false),
        ] {
            assert_eq!(loopback_redirect(uri).is_some(), ok, "{uri}");
        }
    }

    fn raw(flow: &str, redirect: &str) -> RawOAuth {
        RawOAuth {
            flow: Some(flow.into()),
            auth_url: Some("https://auth.example.com/authorize".into()),
            token_url: Some("https://auth.example.com/token".into()),
            client_id: Some("${CLIENT_ID}".into()),
            redirect_uri: Some(redirect.into()),
            ..RawOAuth::default()
        }
    }

    #[test]
    fn validation_table() {
        let ok = |r: RawOAuth| {
            let mut p = Vec::new();
            let o = validate(r, &mut p);
            (o, p.join("; "))
        };
        let (o, p) = ok(raw("pkce", "http://localhost:8888/callback"));
        assert!(
            o.is_some_and(|o| o.flow == Flow::Pkce && o.use_state),
            "{p}"
        );
        let (o, _) = ok(raw("device_flow", ""));
        assert!(o.is_some_and(|o| o.flow == Flow::DeviceFlow));
        let cases: Vec<(RawOAuth, &str)> = vec![
            (raw("implicit", ""), "not one of pkce"),
            (raw("pkce", ""), "oauth.redirect_uri is required"),
            (
                raw("pkce", "https://evil.com/cb"),
                "must be http://localhost",
            ),
            (
                RawOAuth {
                    token_url: Some("file:///etc/passwd".into()),
                    ..raw("device_flow", "")
                },
                "token_url \"file:///etc/passwd\" is not an http(s) URL",
            ),
            (
                RawOAuth {
                    client_id: None,
                    ..raw("device_flow", "")
                },
                "oauth.client_id is required",
            ),
            (
                RawOAuth {
                    client_secret: Some("${OPEN".into()),
                    ..raw("device_flow", "")
                },
                "oauth.client_secret",
            ),
            (
                RawOAuth {
                    credentials_path: Some("../x".into()),
                    ..raw("device_flow", "")
                },
                "oauth.credentials_path",
            ),
            (
                RawOAuth {
                    process_tokens_callback: Some("run_anything".into()),
                    ..raw("device_flow", "")
                },
                "auth_process_tokens",
            ),
            (
                RawOAuth {
                    flow: None,
                    ..RawOAuth::default()
                },
                "oauth.flow is required",
            ),
        ];
        for (r, want) in cases {
            let (o, p) = ok(r);
            assert!(o.is_none() && p.contains(want), "{want}: {p}");
        }
    }
}
