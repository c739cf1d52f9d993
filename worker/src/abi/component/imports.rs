//! The host interfaces every world imports (storage, http, env, log, fs, ws),
//! generated once and shared by each world's bindings (`with`), so each import is
//! implemented once: by forwarding to the broker through [`HostState`]. tark's
//! published (unversioned) contract has the same interfaces but for http's
//! `request`; [`host_imports!`] implements both from one text.

use tark_proto::worker::v1 as pb;

use crate::abi::host::HostState;

wasmtime::component::bindgen!({
    inline: "
        package tarkd:host;
        world imports {
            import tark:plugin/storage@0.1.0;
            import tark:plugin/http@0.1.0;
            import tark:plugin/env@0.1.0;
            import tark:plugin/log@0.1.0;
            import tark:plugin/fs@0.1.0;
            import tark:plugin/ws@0.1.0;
        }
    ",
    path: "../wit/tark.wit",
    world: "imports",
    imports: { default: async },
});

pub use tark::plugin::{env, fs, http, log, storage, ws};

/// Implements every host interface for the generated module `$m`: storage, env,
/// log, fs, ws, and http's get and post (`$http_extra`: the contract's other http
/// functions), with `http_answer` to shape the broker's reply.
macro_rules! host_imports {
    ($($m:ident)::+ $(, $http_extra:item)*) => {
        impl $($m)::+::storage::Host for HostState {
            async fn get(&mut self, key: String) -> Option<String> {
                self.storage_get(key).await
            }
            async fn set(&mut self, key: String, value: String) -> Result<(), String> {
                self.storage_set(key, value).await.map_err(String::from)
            }
            async fn delete(&mut self, key: String) -> Result<(), String> {
                self.storage_delete(key).await.map_err(String::from)
            }
            async fn list_keys(&mut self) -> Vec<String> {
                self.storage_list_keys().await
            }
        }

        impl $($m)::+::env::Host for HostState {
            async fn get(&mut self, name: String) -> Option<String> {
                self.env_get(name).await
            }
        }

        impl $($m)::+::log::Host for HostState {
            async fn debug(&mut self, message: String) {
                self.log(tark_proto::worker::v1::LogLevel::Debug, message).await;
            }
            async fn info(&mut self, message: String) {
                self.log(tark_proto::worker::v1::LogLevel::Info, message).await;
            }
            async fn warn(&mut self, message: String) {
                self.log(tark_proto::worker::v1::LogLevel::Warn, message).await;
            }
            async fn error(&mut self, message: String) {
                self.log(tark_proto::worker::v1::LogLevel::Error, message).await;
            }
        }

        impl $($m)::+::fs::Host for HostState {
            async fn read(&mut self, path: String) -> Result<String, String> {
                self.fs_read(path).await.map_err(String::from)
            }
        }

        impl $($m)::+::ws::Host for HostState {
            async fn connect(&mut self, url: String, headers_json: String) -> String {
                self.ws_connect(url, headers_json).await
            }
            async fn send(&mut self, handle: i64, data: String) -> String {
                self.ws_send(handle, data).await
            }
            async fn recv(&mut self, handle: i64, timeout_ms: i64, max_bytes: i64) -> String {
                self.ws_recv(handle, timeout_ms, max_bytes).await
            }
            async fn close(&mut self, handle: i64) -> String {
                self.ws_close(handle).await
            }
        }

        impl $($m)::+::http::Host for HostState {
            async fn get(
                &mut self,
                url: String,
                headers: Vec<(String, String)>,
            ) -> Result<$($m)::+::http::HttpResponse, $($m)::+::http::HttpError> {
                http_answer($crate::abi::component::imports::http_call(self, "GET", url, headers, None).await)
            }

            async fn post(
                &mut self,
                url: String,
                body: String,
                headers: Vec<(String, String)>,
            ) -> Result<$($m)::+::http::HttpResponse, $($m)::+::http::HttpError> {
                http_answer($crate::abi::component::imports::http_call(self, "POST", url, headers, Some(body)).await)
            }

            $($http_extra)*
        }

        /// The broker's answer as the guest's http result.
        fn http_answer(
            r: Result<tark_proto::worker::v1::HttpResponse, $crate::abi::host::Refusal>,
        ) -> Result<$($m)::+::http::HttpResponse, $($m)::+::http::HttpError> {
            match r {
                Ok(r) => Ok($($m)::+::http::HttpResponse {
                    status: u16::try_from(r.status).unwrap_or(0),
                    headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
                    body: r.body,
                }),
                Err(refusal) => Err($($m)::+::http::HttpError {
                    message: refusal.message,
                    status: None,
                }),
            }
        }
    };
}
pub(super) use host_imports;

host_imports!(
    tark::plugin,
    async fn request(
        &mut self,
        req: http::HttpRequest,
    ) -> Result<http::HttpResponse, http::HttpError> {
        http_answer(http_call(self, &req.method, req.url, req.headers, req.body).await)
    }
);

/// One HTTP request through the broker: status, headers and body, or why not.
pub(super) async fn http_call(
    state: &mut HostState,
    method: &str,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
) -> Result<pb::HttpResponse, crate::abi::host::Refusal> {
    let req = pb::HttpRequest {
        method: method.to_owned(),
        url,
        headers: headers
            .into_iter()
            .map(|(name, value)| pb::HttpHeader { name, value })
            .collect(),
        body,
    };
    state.http(req).await
}
