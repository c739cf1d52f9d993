//! The host interfaces every world imports (storage, http, env, log, fs, ws),
//! generated once and shared by each world's bindings (`with`), so each import is
//! implemented once: by forwarding to the broker through [`HostState`].

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

impl storage::Host for HostState {
    async fn get(&mut self, key: String) -> Option<String> {
        self.storage_get(key).await
    }
    async fn set(&mut self, key: String, value: String) -> Result<(), String> {
        self.storage_set(key, value).await
    }
    async fn delete(&mut self, key: String) -> Result<(), String> {
        self.storage_delete(key).await
    }
    async fn list_keys(&mut self) -> Vec<String> {
        self.storage_list_keys().await
    }
}

impl env::Host for HostState {
    async fn get(&mut self, name: String) -> Option<String> {
        self.env_get(name).await
    }
}

impl log::Host for HostState {
    async fn debug(&mut self, message: String) {
        self.log(pb::LogLevel::Debug, message).await;
    }
    async fn info(&mut self, message: String) {
        self.log(pb::LogLevel::Info, message).await;
    }
    async fn warn(&mut self, message: String) {
        self.log(pb::LogLevel::Warn, message).await;
    }
    async fn error(&mut self, message: String) {
        self.log(pb::LogLevel::Error, message).await;
    }
}

impl fs::Host for HostState {
    async fn read(&mut self, path: String) -> Result<String, String> {
        self.fs_read(path).await
    }
}

impl ws::Host for HostState {
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

impl http::Host for HostState {
    async fn get(
        &mut self,
        url: String,
        headers: Vec<(String, String)>,
    ) -> Result<http::HttpResponse, http::HttpError> {
        self.request(http::HttpRequest {
            method: "GET".into(),
            url,
            headers,
            body: None,
        })
        .await
    }

    async fn post(
        &mut self,
        url: String,
        body: String,
        headers: Vec<(String, String)>,
    ) -> Result<http::HttpResponse, http::HttpError> {
        let req = http::HttpRequest {
            method: "POST".into(),
            url,
            headers,
            body: Some(body),
        };
        self.request(req).await
    }

    async fn request(
        &mut self,
        req: http::HttpRequest,
    ) -> Result<http::HttpResponse, http::HttpError> {
        let headers = |h: Vec<(String, String)>| {
            h.into_iter()
                .map(|(name, value)| pb::HttpHeader { name, value })
                .collect()
        };
        let req = pb::HttpRequest {
            method: req.method,
            url: req.url,
            headers: headers(req.headers),
            body: req.body,
        };
        match self.http(req).await {
            Ok(r) => Ok(http::HttpResponse {
                status: u16::try_from(r.status).unwrap_or(0),
                headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
                body: r.body,
            }),
            Err(message) => Err(http::HttpError {
                message,
                status: None,
            }),
        }
    }
}
