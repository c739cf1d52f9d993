//! The token endpoint's side of OAuth 2.0 (RFC 6749, RFC 8628): the form
//! requests tarkd sends and what their answers mean. Pure: the requests are
//! sent through the plugin's broker (its http grant, address rules and audit),
//! not from here.

use serde_json::{Map, Value};
use tark_proto::worker::v1 as pb;

use crate::plugins::manifest::OAuth;

/// RFC 8628's grant type for a device code.
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A form POST to `url`.
fn form(url: &str, fields: &[(&str, &str)]) -> pb::HttpRequest {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().filter(|(_, v)| !v.is_empty()))
        .finish();
    let header = |name: &str, value: &str| pb::HttpHeader {
        name: name.into(),
        value: value.into(),
    };
    pb::HttpRequest {
        method: "POST".into(),
        url: url.into(),
        headers: vec![
            header("content-type", "application/x-www-form-urlencoded"),
            header("accept", "application/json"),
        ],
        body: Some(body),
    }
}

fn client<'a>(oauth: &'a OAuth, mut fields: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    fields.push(("client_id", &oauth.client_id));
    if let Some(secret) = &oauth.client_secret {
        fields.push(("client_secret", secret));
    }
    fields
}

/// The authorization code exchange (with the PKCE verifier).
pub fn exchange(oauth: &OAuth, code: &str, verifier: &str) -> pb::HttpRequest {
    let fields = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", oauth.redirect_uri.as_str()),
        ("code_verifier", verifier),
    ];
    form(&oauth.token_url, &client(oauth, fields))
}

/// A refresh with the stored refresh token.
pub fn refresh(oauth: &OAuth, refresh_token: &str) -> pb::HttpRequest {
    let fields = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    form(&oauth.token_url, &client(oauth, fields))
}

/// RFC 8628 §3.1: ask `auth_url` (the device-authorization endpoint) for a code.
pub fn device_authorization(oauth: &OAuth) -> pb::HttpRequest {
    let scope = oauth.scopes.join(" ");
    let mut fields = vec![("scope", scope.as_str())];
    fields.extend(
        oauth
            .extra_params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    form(&oauth.auth_url, &client(oauth, fields))
}

/// RFC 8628 §3.4: one poll of the token endpoint.
pub fn device_poll(oauth: &OAuth, device_code: &str) -> pb::HttpRequest {
    let fields = vec![("grant_type", DEVICE_GRANT), ("device_code", device_code)];
    form(&oauth.token_url, &client(oauth, fields))
}

/// What a token endpoint answered.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// A token response (an object with `access_token`).
    Tokens(Map<String, Value>),
    /// RFC 8628: the user has not finished yet.
    Pending,
    /// RFC 8628: poll more slowly.
    SlowDown,
    /// The code or grant has expired.
    Expired,
    /// Refused, with the server's reason.
    Refused(String),
}

/// Reads a token endpoint's answer.
pub fn answer(resp: &pb::HttpResponse) -> Answer {
    let body: Option<Map<String, Value>> = serde_json::from_str(&resp.body).ok();
    let text =
        |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
    match body {
        Some(o) if (200..300).contains(&resp.status) && text(&o, "access_token").is_some() => {
            Answer::Tokens(o)
        }
        Some(o) => match text(&o, "error").as_deref() {
            Some("authorization_pending") => Answer::Pending,
            Some("slow_down") => Answer::SlowDown,
            Some("expired_token") => Answer::Expired,
            Some(e) => Answer::Refused(match text(&o, "error_description") {
                Some(d) => format!("{e}: {d}"),
                None => e.to_owned(),
            }),
            None => Answer::Refused(format!(
                "HTTP {} without an access_token or an error",
                resp.status
            )),
        },
        None => Answer::Refused(format!(
            "HTTP {} with a body that is not a JSON object",
            resp.status
        )),
    }
}

/// A device-authorization response, RFC 8628 §3.2.
pub fn device_code(resp: &pb::HttpResponse) -> Result<tark_proto::plugin::v1::DeviceCode, String> {
    let o: Map<String, Value> = serde_json::from_str(&resp.body)
        .map_err(|_| format!("HTTP {}: the answer is not a JSON object", resp.status))?;
    let text = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    if !(200..300).contains(&resp.status) || text("device_code").is_empty() {
        let why = text("error");
        return Err(format!(
            "HTTP {}: no device code{}",
            resp.status,
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            }
        ));
    }
    let number = |k: &str| o.get(k).and_then(Value::as_u64);
    let url = Some(text("verification_uri_complete"))
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| text("verification_uri"));
    Ok(tark_proto::plugin::v1::DeviceCode {
        device_code: text("device_code"),
        user_code: text("user_code"),
        verification_url: url,
        expires_in: number("expires_in").unwrap_or(600),
        interval: number("interval").unwrap_or(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::manifest::oauth::Flow;

    fn oauth() -> OAuth {
        OAuth {
            flow: Flow::Pkce,
            auth_url: "https://a.example/device".into(),
            token_url: "https://a.example/token".into(),
            client_id: "cid".into(),
            client_secret: Some("s&cret".into()),
            scopes: vec!["a".into(), "b".into()],
            redirect_uri: "http://localhost:8888/cb".into(),
            credentials_path: None,
            process_tokens_callback: None,
            use_state: true,
            extra_params: Default::default(),
        }
    }

    fn fields(r: &pb::HttpRequest) -> Vec<(String, String)> {
        url::form_urlencoded::parse(r.body.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn requests_are_forms_to_the_right_endpoint() {
        let o = oauth();
        type Case<'a> = (pb::HttpRequest, &'a str, &'a [(&'a str, &'a str)]);
        let cases: [Case; 4] = [
            (
                exchange(&o, "C0DE", "VER"),
                "https://a.example/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", "C0DE"),
                    ("redirect_uri", "http://localhost:8888/cb"),
                    ("code_verifier", "VER"),
                    ("client_id", "cid"),
                    ("client_secret", "s&cret"),
                ],
            ),
            (
                refresh(&o, "R1"),
                "https://a.example/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", "R1"),
                    ("client_id", "cid"),
                    ("client_secret", "s&cret"),
                ],
            ),
            (
                device_authorization(&o),
                "https://a.example/device",
                &[
                    ("scope", "a b"),
                    ("client_id", "cid"),
                    ("client_secret", "s&cret"),
                ],
            ),
            (
                device_poll(&o, "DC"),
                "https://a.example/token",
                &[
                    ("grant_type", DEVICE_GRANT),
                    ("device_code", "DC"),
                    ("client_id", "cid"),
                    ("client_secret", "s&cret"),
                ],
            ),
        ];
        for (req, url, want) in cases {
            assert_eq!((req.method.as_str(), req.url.as_str()), ("POST", url));
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(fields(&req), want);
            assert!(
                req.headers
                    .iter()
                    .any(|h| h.value == "application/x-www-form-urlencoded")
            );
        }
    }

    #[test]
    fn answers_table() {
        let resp = |status, body: &str| pb::HttpResponse {
            status,
            headers: vec![],
            body: body.into(),
        };
        let cases = [
            (200, r#"{"access_token":"A","expires_in":60}"#, "tokens"),
            (400, r#"{"error":"authorization_pending"}"#, "pending"),
            (400, r#"{"error":"slow_down"}"#, "slow"),
            (400, r#"{"error":"expired_token"}"#, "expired"),
            (
                400,
                r#"{"error":"access_denied","error_description":"no"}"#,
                "refused: access_denied: no",
            ),
            (
                400,
                r#"{"error":"invalid_grant"}"#,
                "refused: invalid_grant",
            ),
            (
                500,
                "<html>",
                "refused: HTTP 500 with a body that is not a JSON object",
            ),
            (
                200,
                r#"{"token":"A"}"#,
                "refused: HTTP 200 without an access_token or an error",
            ),
            (
                404,
                r#"{"access_token":"A"}"#,
                "refused: HTTP 404 without an access_token or an error",
            ),
        ];
        for (status, body, want) in cases {
            let got = match answer(&resp(status, body)) {
                Answer::Tokens(_) => "tokens".to_owned(),
                Answer::Pending => "pending".into(),
                Answer::SlowDown => "slow".into(),
                Answer::Expired => "expired".into(),
                Answer::Refused(r) => format!("refused: {r}"),
            };
            assert_eq!(got, want, "{status} {body}");
        }
        let code = device_code(&resp(
            200,
            r#"{"device_code":"D","user_code":"U","verification_uri":"https://v","interval":2}"#,
        ));
        assert_eq!(
            code.map(|c| (
                c.device_code,
                c.user_code,
                c.verification_url,
                c.interval,
                c.expires_in
            )),
            Ok(("D".into(), "U".into(), "https://v".into(), 2, 600))
        );
        let err = device_code(&resp(400, r#"{"error":"invalid_client"}"#));
        assert_eq!(
            err.err().as_deref(),
            Some("HTTP 400: no device code (invalid_client)")
        );
    }
}
