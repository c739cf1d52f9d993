//! The host side of every import a plugin can make: each one is a broker RPC to
//! tarkd, which decides. The worker adds nothing and allows nothing on its own.
//!
//! A refusal or a broken channel becomes an error value (or `none`) for the guest,
//! never a trap: a plugin must be able to handle "no" gracefully.

use std::time::{Duration, Instant};

use serde_json::json;
use tark_proto::worker::v1 as pb;
use tark_proto::worker::v1::broker_client::BrokerClient;
use tonic::transport::Channel;

use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use super::wasi::Setup;
use super::wasi::refuse::Audit;
use crate::limits::Limiter;

/// Per-store state: the broker connection, the store's limiter, when the
/// current call must end, and the guest's WASI context (see [`super::wasi`]).
pub struct HostState {
    pub broker: BrokerClient<Channel>,
    pub limiter: Limiter,
    pub call_deadline: Option<Instant>,
    pub wasi: Setup,
    /// Made at the guest's first WASI call: most plugins make none.
    ctx: Option<WasiCtx>,
    table: ResourceTable,
    /// WebSocket handles this instance opened and has not closed.
    ws_open: Vec<i64>,
}

/// How many of an instance's WebSocket handles are remembered for closing.
const MAX_TRACKED_WS: usize = 1024;

/// An instance dropped after a trap, a deadline or a call cut off cannot close
/// its WebSockets any more: they are closed for it, or they would stay open in
/// tarkd until the worker exits and count against the worker's limit, so a
/// plugin that reconnects from its next instance would in time be refused.
impl Drop for HostState {
    fn drop(&mut self) {
        if self.ws_open.is_empty() {
            return;
        }
        let (handles, mut broker) = (std::mem::take(&mut self.ws_open), self.broker.clone());
        // Outside a runtime the worker is exiting, and its connections close with it.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for handle in handles {
                    let _ = broker.ws_close(pb::WsHandle { handle }).await;
                }
            });
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let wasi = &self.wasi;
        WasiCtxView {
            ctx: self.ctx.get_or_insert_with(|| wasi.component()),
            table: &mut self.table,
        }
    }
}

/// Tells tarkd a WASI call was refused here, for its audit. Like a log
/// line, a record that cannot be delivered never fails the guest.
impl Audit for HostState {
    async fn refused(&mut self, capability: &str, function: String, answer: &str) {
        let _ = self
            .broker
            .refused(pb::RefusedCall {
                capability: capability.to_owned(),
                function,
                answer: answer.to_owned(),
            })
            .await;
    }
}

impl HostState {
    pub fn new(broker: BrokerClient<Channel>, limiter: Limiter, wasi: Setup) -> Self {
        Self {
            broker,
            limiter,
            call_deadline: None,
            ctx: None,
            wasi,
            table: ResourceTable::new(),
            ws_open: Vec::new(),
        }
    }

    /// Sends what the guest wrote to stdout (as info) and stderr (as
    /// warnings) to its log, line by line, like its own log calls.
    pub async fn flush_output(&mut self) {
        for (pipe, level) in [
            (self.wasi.stdout.clone(), pb::LogLevel::Info),
            (self.wasi.stderr.clone(), pb::LogLevel::Warn),
        ] {
            for line in pipe.drain() {
                self.log(level, line).await;
            }
        }
    }

    /// A broker request carrying the time the call has left (`tark-budget-ms`),
    /// so tarkd bounds slow host calls (http, ws) by the plugin call's deadline
    /// and answers with its own "timed out" error. The host call ends a little
    /// before the deadline (a tenth, at most 250 ms), so the plugin still has time
    /// to handle that error.
    fn timed<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        if let Some(d) = self.call_deadline {
            let left = d.saturating_duration_since(Instant::now());
            let budget = left.saturating_sub((left / 10).min(Duration::from_millis(250)));
            if let Ok(v) = budget.as_millis().to_string().parse() {
                req.metadata_mut().insert("tark-budget-ms", v);
            }
        }
        req
    }

    pub async fn storage_get(&mut self, key: String) -> Option<String> {
        let r = self.broker.storage_get(pb::StorageKey { key }).await;
        r.ok().and_then(|r| r.into_inner().value)
    }

    pub async fn storage_set(&mut self, key: String, value: String) -> Result<(), Refusal> {
        let r = self
            .broker
            .storage_set(pb::StorageEntry { key, value })
            .await;
        r.map(drop).map_err(Refusal::from)
    }

    pub async fn storage_delete(&mut self, key: String) -> Result<(), Refusal> {
        let r = self.broker.storage_delete(pb::StorageKey { key }).await;
        r.map(drop).map_err(Refusal::from)
    }

    pub async fn storage_list_keys(&mut self) -> Vec<String> {
        let r = self.broker.storage_list_keys(pb::Empty {}).await;
        r.map(|r| r.into_inner().keys).unwrap_or_default()
    }

    pub async fn env_get(&mut self, name: String) -> Option<String> {
        let r = self.broker.env_get(pb::EnvName { name }).await;
        r.ok().and_then(|r| r.into_inner().value)
    }

    pub async fn log(&mut self, level: pb::LogLevel, message: String) {
        // A log line that cannot be delivered is dropped: logging must never fail
        // the plugin's call.
        let _ = self
            .broker
            .log(pb::LogRecord {
                level: level as i32,
                message,
            })
            .await;
    }

    pub async fn fs_read(&mut self, path: String) -> Result<String, Refusal> {
        let r = self.broker.fs_read(pb::FsPath { path }).await;
        r.map(|r| r.into_inner().content).map_err(Refusal::from)
    }

    pub async fn http(&mut self, req: pb::HttpRequest) -> Result<pb::HttpResponse, Refusal> {
        let req = self.timed(req);
        self.broker
            .http(req)
            .await
            .map(|r| r.into_inner())
            .map_err(Refusal::from)
    }

    pub async fn ws_connect(&mut self, url: String, headers_json: String) -> String {
        let req = self.timed(pb::WsConnectRequest { url, headers_json });
        let r = self.broker.ws_connect(req).await.map(|h| {
            let handle = h.into_inner().handle;
            // tarkd forgets handles the server closed without telling the
            // worker: the list is bounded instead of exact.
            if self.ws_open.len() >= MAX_TRACKED_WS {
                self.ws_open.remove(0);
            }
            self.ws_open.push(handle);
            json!({ "ok": true, "handle": handle })
        });
        ws_json(r)
    }

    pub async fn ws_send(&mut self, handle: i64, data: String) -> String {
        let req = self.timed(pb::WsSendRequest { handle, data });
        let r = self.broker.ws_send(req).await;
        ws_json(r.map(|_| json!({ "ok": true })))
    }

    pub async fn ws_recv(&mut self, handle: i64, timeout_ms: i64, max_bytes: i64) -> String {
        let req = self.timed(pb::WsRecvRequest {
            handle,
            timeout_ms,
            max_bytes,
        });
        let r = self
            .broker
            .ws_recv(req)
            .await
            .map(|m| match m.into_inner().data {
                Some(data) => json!({ "ok": true, "data": data }),
                None => json!({ "ok": true, "timeout": true }),
            });
        ws_json(r)
    }

    pub async fn ws_close(&mut self, handle: i64) -> String {
        self.ws_open.retain(|h| *h != handle);
        let r = self.broker.ws_close(pb::WsHandle { handle }).await;
        ws_json(r.map(|_| json!({ "ok": true })))
    }
}

/// A host call tarkd refused or could not make: the message the guest is
/// given, and whether it was a capability denial (ABIs with error codes tell
/// the two apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub denied: bool,
    pub message: String,
}

impl From<tonic::Status> for Refusal {
    fn from(status: tonic::Status) -> Self {
        Self {
            denied: status.code() == tonic::Code::PermissionDenied,
            message: message(status),
        }
    }
}

impl From<Refusal> for String {
    fn from(r: Refusal) -> Self {
        r.message
    }
}

/// What the guest is told when tarkd refuses or the channel fails.
fn message(status: tonic::Status) -> String {
    match status.code() {
        // tarkd's own answers about the request: passed on as they are.
        tonic::Code::Unimplemented
        | tonic::Code::PermissionDenied
        | tonic::Code::InvalidArgument
        | tonic::Code::NotFound
        | tonic::Code::ResourceExhausted
        | tonic::Code::DeadlineExceeded => status.message().to_owned(),
        _ => format!("host call failed: {}", status.message()),
    }
}

/// The ws interface answers in JSON strings (tark's published contract).
fn ws_json(r: Result<serde_json::Value, tonic::Status>) -> String {
    r.unwrap_or_else(|s| json!({ "ok": false, "error": message(s) }))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_answers_are_json() {
        assert_eq!(
            ws_json(Ok(json!({ "ok": true, "handle": 7 }))),
            r#"{"handle":7,"ok":true}"#
        );
        let denied = tonic::Status::permission_denied("ws to \"x\" denied");
        assert_eq!(
            ws_json(Err(denied)),
            r#"{"error":"ws to \"x\" denied","ok":false}"#
        );
    }
}
