//! Standard status codes at the edge of the agent API, where tonic's own
//! differ from what gRPC clients expect.
//!
//! - A call whose `grpc-timeout` passes is `DEADLINE_EXCEEDED`. tonic's
//!   server answers `CANCELLED "Timeout expired"`; this layer sits inside
//!   tonic's timeout, arms its own timer first (in `call`, before tonic arms
//!   its own) and is polled first, so its answer always wins.
//! - A message over `api.max_message_bytes` is `RESOURCE_EXHAUSTED` (the code
//!   grpc-core and grpc-go use), not tonic's `OUT_OF_RANGE`.
//!
//! Both carry an ErrorInfo ([`crate::reasons`]). Every call is counted here
//! too, by RPC and code, with its latency ([`crate::metrics`]), and every
//! status message is bounded ([`reasons::bound_message`]): one that quotes a
//! caller's megabyte of input would not fit in a header.

use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tonic::{Code, Status};

use super::deadline;
use crate::metrics::METRICS;
use crate::reasons::{self, Reason};

/// The layer, over every service of the server.
#[derive(Clone, Copy)]
pub struct StandardLayer;

impl<S> tower::Layer<S> for StandardLayer {
    type Service = Standard<S>;

    fn layer(&self, inner: S) -> Standard<S> {
        Standard { inner }
    }
}

#[derive(Clone)]
pub struct Standard<S> {
    inner: S,
}

/// The answer for a call whose deadline passed.
fn deadline_exceeded(path: &str, after: Duration) -> Status {
    reasons::status(
        Code::DeadlineExceeded,
        format!(
            "{path}: the caller's deadline of {} ms passed before tarkd answered",
            after.as_millis()
        ),
        Reason::DeadlineExceeded,
        None,
        None,
    )
}

/// A request message that does not decode (a `string` field that is not
/// UTF-8, a malformed message) is the caller's error: `INVALID_ARGUMENT`, not
/// the `INTERNAL` tonic answers.
fn undecodable(response: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    if status.code() != Code::Internal
        || !status
            .message()
            .starts_with("failed to decode Protobuf message")
    {
        return response;
    }
    reasons::status(
        Code::InvalidArgument,
        format!("the request does not decode: {}", status.message()),
        Reason::BadRequest,
        None,
        None,
    )
    .into_http()
}

/// tonic's answer to a message over the size limit, as the standard code.
fn standard_code(response: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let response = undecodable(response);
    let oversize = response.headers().get("grpc-status").map(|v| v.as_bytes()) == Some(b"11")
        && Status::from_header_map(response.headers())
            .is_some_and(|s| s.message().contains("message length too large"));
    if !oversize {
        return response;
    }
    let message = Status::from_header_map(response.headers())
        .map(|s| s.message().to_owned())
        .unwrap_or_default();
    reasons::status(
        Code::ResourceExhausted,
        format!("{message} (api.max_message_bytes)"),
        Reason::MessageTooLarge,
        None,
        None,
    )
    .into_http()
}

impl<S, B> tower::Service<http::Request<B>> for Standard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(deadline::parse);
        let path = req.uri().path().to_owned();
        // Armed now, before tonic's own timer (see the module doc).
        let timer = timeout.map(|t| (t, tokio::time::sleep(t)));
        let call = self.inner.call(req);
        let started = std::time::Instant::now();
        Box::pin(async move {
            let answer = match timer {
                None => call.await.map(standard_code),
                Some((after, timer)) => tokio::select! {
                    biased;
                    r = call => r.map(standard_code),
                    () = timer => Ok(deadline_exceeded(&path, after).into_http()),
                },
            }
            .map(reasons::bound_message);
            if let Ok(response) = &answer {
                // The code when the headers carry it (a refusal, a unary
                // error); a stream that started is counted as OK.
                let code =
                    Status::from_header_map(response.headers()).map_or(Code::Ok, |s| s.code());
                let rpc = if crate::access::rules::known(&path) {
                    path.as_str()
                } else {
                    "other"
                };
                METRICS.api_call(rpc, code, started.elapsed());
            }
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: Status) -> http::Response<tonic::body::Body> {
        standard_code(status.into_http())
    }

    #[test]
    fn only_the_size_limit_becomes_resource_exhausted() {
        let table = [
            (
                Status::out_of_range(
                    "Error, decoded message length too large: found 9 bytes, the limit is: 4 bytes",
                ),
                Code::ResourceExhausted,
            ),
            (
                Status::out_of_range("offset past the end"),
                Code::OutOfRange,
            ),
            (Status::not_found("no plugin"), Code::NotFound),
            (Status::ok(""), Code::Ok),
        ];
        for (status, want) in table {
            let r = answer(status);
            let got = Status::from_header_map(r.headers()).map_or(Code::Ok, |s| s.code());
            assert_eq!(got, want);
        }
    }
}
