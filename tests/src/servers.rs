//! Real servers on loopback for the broker's network tests: an HTTP server with
//! routes for each behaviour under test, and a WebSocket echo server that counts
//! its open connections. Each runs on its own thread and runtime, independent of
//! the test's, until the process ends.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

pub mod pkce;

/// A running HTTP server.
pub struct HttpServer {
    pub port: u16,
    /// Requests received, all routes.
    pub hits: Arc<AtomicUsize>,
}

/// A running WebSocket echo server.
pub struct WsServer {
    pub port: u16,
    /// Connections open now.
    pub open: Arc<AtomicUsize>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
}

/// Binds a loopback port on a thread (and runtime) of its own and runs
/// `connection` for each stream accepted there; returns the port.
pub(crate) fn serve<F, Fut>(connection: F) -> anyhow::Result<u16>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
                return;
            };
            let Ok(addr) = listener.local_addr() else {
                return;
            };
            let _ = tx.send(addr.port());
            while let Ok((stream, _)) = listener.accept().await {
                // As servers on the internet do: without it a TLS handshake's
                // small writes wait out the client's delayed ACK (40 ms).
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream));
            }
        });
    });
    Ok(rx.recv_timeout(Duration::from_secs(10))?)
}

/// An HTTP/1 server on loopback whose every request is answered by `answer`
/// (the request head and whole body in; status and body out).
fn serve_answers<F>(answer: F) -> anyhow::Result<u16>
where
    F: Fn(&hyper::http::request::Parts, Bytes) -> (u16, String) + Clone + Send + Sync + 'static,
{
    serve(move |stream| {
        let answer = answer.clone();
        async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let answer = answer.clone();
                async move {
                    let (head, body) = req.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes());
                    let (status, text) = answer(&head, body.unwrap_or_default());
                    let mut r = Response::new(Full::new(Bytes::from(text)));
                    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        }
    })
}

type Body = Full<Bytes>;

async fn route(req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let reply = |status: u16, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
        r
    };
    let redirect = |status: u16, to: &str| {
        let mut r = reply(status, String::new());
        if let Ok(v) = hyper::header::HeaderValue::from_str(to) {
            r.headers_mut().insert(hyper::header::LOCATION, v);
        }
        r
    };
    Ok(match path.as_str() {
        "/hello" => reply(200, "hello".into()),
        "/headers" => {
            let h: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (k.as_str().to_owned(), serde_json::Value::String(v))
                })
                .collect();
            reply(200, serde_json::Value::Object(h).to_string())
        }
        "/echo" => {
            let method = req.method().to_string();
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let body = body.map(|b| String::from_utf8_lossy(&b).into_owned());
            reply(200, format!("{method} {}", body.unwrap_or_default()))
        }
        "/redirect" => redirect(302, query.strip_prefix("to=").unwrap_or("/hello")),
        "/see-other" => redirect(303, "/echo"),
        "/loop" => redirect(302, "/loop"),
        "/big" => reply(200, "x".repeat(2 << 20)),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(20)).await;
            reply(200, "late".into())
        }
        _ => reply(404, "not found".into()),
    })
}

impl HttpServer {
    pub fn start() -> anyhow::Result<Self> {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        let port = serve(move |stream| {
            let hits = Arc::clone(&counted);
            async move {
                let svc = hyper::service::service_fn(move |req| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    route(req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            }
        })?;
        Ok(Self { port, hits })
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl WsServer {
    pub fn start() -> anyhow::Result<Self> {
        let (open, accepted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let counted = (Arc::clone(&open), Arc::clone(&accepted));
        let port = serve(move |stream| {
            let (open, accepted) = (Arc::clone(&counted.0), Arc::clone(&counted.1));
            async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                open.fetch_add(1, Ordering::SeqCst);
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            }
        })?;
        Ok(Self {
            port,
            open,
            accepted,
        })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A running OAuth 2.0 device-authorization server (RFC 8628): `POST
/// /device/code` hands out a code, `POST /token` answers
/// `authorization_pending` for the first `pending` polls of each code, then a
/// token. The client id `expire` gets a code whose polls answer `expired_token`.
pub struct OAuthServer {
    pub port: u16,
    /// Token requests received.
    pub polls: Arc<AtomicUsize>,
}

/// The access token the server issues.
pub const OAUTH_TOKEN: &str = "tok-3f9a";

impl OAuthServer {
    pub fn start(pending: usize) -> anyhow::Result<Self> {
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&polls);
        let port = serve_answers(move |req, body| {
            let form = String::from_utf8_lossy(&body);
            let (status, json) = oauth_answer(req.uri.path(), &form, &counted, pending);
            (status, json.to_string())
        })?;
        Ok(Self { port, polls })
    }

    pub fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }
}

fn oauth_answer(
    path: &str,
    form: &str,
    polls: &AtomicUsize,
    pending: usize,
) -> (u16, serde_json::Value) {
    use serde_json::json;
    let has = |pair: &str| form.split('&').any(|p| p == pair);
    match path {
        "/device/code" => {
            let code = if has("client_id=expire") {
                "dc-expire"
            } else {
                "dc-1"
            };
            let answer = json!({ "device_code": code, "user_code": "WDJB-MJHT",
                "verification_uri": "https://example.com/device", "expires_in": 60, "interval": 0 });
            (200, answer)
        }
        "/token" if !has("grant_type=urn:ietf:params:oauth:grant-type:device_code") => {
            (400, json!({ "error": "unsupported_grant_type" }))
        }
        "/token" if has("device_code=dc-expire") => (400, json!({ "error": "expired_token" })),
        "/token" if has("device_code=dc-1") => {
            let n = polls.fetch_add(1, Ordering::SeqCst);
            if n < pending {
                (400, json!({ "error": "authorization_pending" }))
            } else {
                (
                    200,
                    json!({ "access_token": OAUTH_TOKEN, "token_type": "bearer" }),
                )
            }
        }
        _ => (400, json!({ "error": "invalid_request" })),
    }
}

/// A running OpenAI-compatible chat server (what Ollama and others serve):
/// `GET /v1/models` lists `tiny`; `POST /v1/chat/completions` answers "you said:
/// <the last message>", whole or as server-sent events word by word. Every
/// request must carry `authorization: Bearer <key>`.
pub struct OpenAiServer {
    pub port: u16,
}

impl OpenAiServer {
    pub fn start(key: &'static str) -> anyhow::Result<Self> {
        let port = serve_answers(move |req, body| {
            let authorized = req
                .headers
                .get(hyper::header::AUTHORIZATION)
                .is_some_and(|v| v.as_bytes() == format!("Bearer {key}").as_bytes());
            if !authorized {
                return (401, r#"{"error":"unauthorized"}"#.to_owned());
            }
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            openai_answer(req.uri.path(), &body)
        })?;
        Ok(Self { port })
    }
}

fn openai_answer(path: &str, body: &serde_json::Value) -> (u16, String) {
    use serde_json::json;
    match path {
        "/v1/models" => (200, json!({ "data": [{ "id": "tiny" }] }).to_string()),
        "/v1/chat/completions" => {
            let last = body["messages"]
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["content"].as_str())
                .unwrap_or("");
            let reply = format!("you said: {last}");
            let usage =
                json!({ "prompt_tokens": 3, "completion_tokens": reply.split(' ').count() });
            if body["stream"].as_bool() == Some(true) {
                let mut sse = String::new();
                for word in reply.split_inclusive(' ') {
                    let event = json!({ "choices": [{ "delta": { "content": word } }] });
                    sse.push_str(&format!("data: {event}\n\n"));
                }
                let last = json!({ "choices": [{ "delta": {}, "finish_reason": "stop" }], "usage": usage });
                sse.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
                (200, sse)
            } else {
                let answer = json!({
                    "choices": [{ "message": { "role": "assistant", "content": reply }, "finish_reason": "stop" }],
                    "usage": usage,
                });
                (200, answer.to_string())
            }
        }
        _ => (404, r#"{"error":"not found"}"#.to_owned()),
    }
}
