//! A running OAuth 2.0 provider for tarkd's own sign-in (a manifest's
//! `[oauth]`): an authorization endpoint that redirects the "browser" back with
//! a code, a token endpoint that checks the PKCE verifier against the
//! challenge (RFC 7636, computed here independently of tarkd), refreshes, and
//! RFC 8628 device codes. Counts what it was asked.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The client id the provider knows.
pub const CLIENT_ID: &str = "example-client";

#[derive(Default)]
struct State {
    /// Issued codes: code → (challenge, redirect_uri, scope).
    codes: HashMap<String, (String, String, String)>,
    issued: usize,
}

/// What the provider was asked, by kind.
#[derive(Default)]
pub struct Counts {
    pub exchanges: AtomicUsize,
    pub refreshes: AtomicUsize,
    pub device_polls: AtomicUsize,
}

pub struct PkceServer {
    pub port: u16,
    pub counts: Arc<Counts>,
}

impl PkceServer {
    /// `first_expires_in`: the lifetime of the token a code buys (0: expired
    /// at once, so the first read refreshes it).
    pub fn start(first_expires_in: u64) -> anyhow::Result<Self> {
        let counts = Arc::new(Counts::default());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&counts);
        let port = super::serve(move |stream| {
            let (counts, state) = (Arc::clone(&shared), Arc::clone(&state));
            async move {
                let svc = hyper::service::service_fn(move |req| {
                    let (counts, state) = (Arc::clone(&counts), Arc::clone(&state));
                    async move { answer(req, &counts, &state, first_expires_in).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            }
        })?;
        Ok(Self { port, counts })
    }

    pub fn exchanges(&self) -> usize {
        self.counts.exchanges.load(Ordering::SeqCst)
    }

    pub fn refreshes(&self) -> usize {
        self.counts.refreshes.load(Ordering::SeqCst)
    }
}

fn reply(status: u16, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    r
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    counts: &Counts,
    state: &Mutex<State>,
    first_expires_in: u64,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    Ok(match path.as_str() {
        "/authorize" => {
            let q = |k: &str| query.get(k).cloned().unwrap_or_default();
            if q("client_id") != CLIENT_ID
                || q("response_type") != "code"
                || q("code_challenge_method") != "S256"
            {
                return Ok(reply(400, json!({ "error": "invalid_request" })));
            }
            state.issued += 1;
            let code = format!("code-{}", state.issued);
            let redirect = q("redirect_uri");
            state.codes.insert(
                code.clone(),
                (q("code_challenge"), redirect.clone(), q("scope")),
            );
            let Ok(mut to) = url::Url::parse(&redirect) else {
                return Ok(reply(400, json!({ "error": "invalid_request" })));
            };
            to.query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &q("state"));
            let mut r = reply(302, json!({}));
            if let Ok(v) = hyper::header::HeaderValue::from_str(to.as_str()) {
                r.headers_mut().insert(hyper::header::LOCATION, v);
            }
            r
        }
        "/token" if field("client_id") != CLIENT_ID => {
            reply(401, json!({ "error": "invalid_client" }))
        }
        "/token" if field("grant_type") == "authorization_code" => {
            counts.exchanges.fetch_add(1, Ordering::SeqCst);
            let Some((challenge, redirect, scope)) = state.codes.remove(field("code")) else {
                return Ok(reply(
                    400,
                    json!({ "error": "invalid_grant", "error_description": "unknown or used code" }),
                ));
            };
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(field("code_verifier").as_bytes()));
            if computed != challenge || redirect != field("redirect_uri") {
                return Ok(reply(
                    400,
                    json!({ "error": "invalid_grant", "error_description": "PKCE verification failed" }),
                ));
            }
            reply(
                200,
                json!({ "access_token": "access-1", "refresh_token": "refresh-1",
                               "token_type": "bearer", "expires_in": first_expires_in, "scope": scope }),
            )
        }
        "/token" if field("grant_type") == "refresh_token" => {
            if field("refresh_token") != "refresh-1" {
                return Ok(reply(400, json!({ "error": "invalid_grant" })));
            }
            let n = counts.refreshes.fetch_add(1, Ordering::SeqCst) + 2;
            reply(
                200,
                json!({ "access_token": format!("access-{n}"), "token_type": "bearer", "expires_in": 3600 }),
            )
        }
        "/device/code" => reply(
            200,
            json!({ "device_code": "dc-7", "user_code": "ABCD-EFGH",
            "verification_uri": "https://example.com/device", "expires_in": 60, "interval": 0 }),
        ),
        "/token" if field("grant_type") == "urn:ietf:params:oauth:grant-type:device_code" => {
            let n = counts.device_polls.fetch_add(1, Ordering::SeqCst);
            if field("device_code") != "dc-7" {
                reply(400, json!({ "error": "invalid_grant" }))
            } else if n == 0 {
                reply(400, json!({ "error": "authorization_pending" }))
            } else {
                reply(
                    200,
                    json!({ "access_token": "device-access", "refresh_token": "refresh-1",
                                   "expires_in": 3600, "scope": "device" }),
                )
            }
        }
        _ => reply(404, json!({ "error": "not_found" })),
    })
}
