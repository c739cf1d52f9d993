//! The broker: tarkd's answer to every host call a plugin makes.
//!
//! One `Broker` serves one worker and is built with that worker's identity (tenant
//! and plugin) and grant, from the socket tarkd spawned it with. Nothing in a
//! request names the caller, so a plugin cannot speak for anyone else.
//!
//! A refusal is a `PERMISSION_DENIED` status the worker hands to the plugin as an
//! error value; it is also logged on the `audit` target with tenant, plugin,
//! capability, target and reason.

use std::sync::Arc;

use tark_proto::worker::v1 as pb;
use tonic::{Request, Response, Status};

use crate::audit::AuditLog;
use crate::manifest::Capabilities;
use crate::policy;
use crate::ratelimit::{Rate, TokenBucket};
use crate::storage::{Namespace, Storage, StorageError};

/// Longest log line a plugin may write; longer lines are cut.
const MAX_LOG_LINE: usize = 4096;

/// Serves one worker's host calls.
pub struct Broker {
    ns: Namespace,
    grant: Arc<Capabilities>,
    storage: Storage,
    /// Log lines the plugin may write, and how many were dropped since the last
    /// one that went through.
    log_rate: std::sync::Mutex<(TokenBucket, u64)>,
    log_limit: Rate,
    audit: Arc<AuditLog>,
}

impl Broker {
    pub fn new(
        tenant: String,
        plugin: String,
        grant: Arc<Capabilities>,
        storage: Storage,
        log_limit: Rate,
        audit: Arc<AuditLog>,
    ) -> Self {
        Self {
            ns: Namespace { tenant, plugin },
            grant,
            storage,
            log_rate: std::sync::Mutex::new((
                TokenBucket::new(log_limit, std::time::Instant::now()),
                0,
            )),
            log_limit,
            audit,
        }
    }

    /// Whether a log line may go through now; when it may after some were
    /// dropped, says how many were, once.
    fn admit_log_line(&self) -> bool {
        let mut guard = self.log_rate.lock().unwrap_or_else(|p| p.into_inner());
        let (bucket, dropped) = &mut *guard;
        if !bucket.take(std::time::Instant::now()) {
            *dropped += 1;
            return false;
        }
        if *dropped > 0 {
            tracing::warn!(
                target: "plugin",
                tenant = %self.ns.tenant,
                plugin = %self.ns.plugin,
                "{dropped} log lines dropped: over {} lines/s",
                self.log_limit.per_second
            );
            *dropped = 0;
        }
        true
    }

    fn deny(&self, capability: &str, target: &str, reason: &str) -> Status {
        tracing::warn!(
            target: "audit",
            tenant = %self.ns.tenant,
            plugin = %self.ns.plugin,
            capability,
            target_name = target,
            decision = "deny",
            reason,
            "host call denied"
        );
        self.audit.record(
            &self.ns.tenant,
            &self.ns.plugin,
            capability,
            target,
            "deny",
            reason,
        );
        Status::permission_denied(format!("{reason} (plugin {})", self.ns.plugin))
    }

    fn check_storage(&self, key: &str) -> Result<(), Status> {
        if self.grant.storage {
            Ok(())
        } else {
            Err(self.deny("storage", key, "storage access denied: not declared"))
        }
    }

    /// What the plugin is told about a failed storage operation.
    fn storage_status(&self, e: StorageError) -> Status {
        match e {
            StorageError::Backend(_) => {
                tracing::error!(plugin = %self.ns.plugin, "{e}");
                Status::internal(e.to_string())
            }
            e @ StorageError::QuotaExceeded(_) => Status::resource_exhausted(e.to_string()),
            e => Status::invalid_argument(e.to_string()),
        }
    }

    /// Runs a storage write off the async threads (its commit fsyncs).
    async fn blocking(
        &self,
        f: impl FnOnce(&Storage, &Namespace) -> Result<(), StorageError> + Send + 'static,
    ) -> Result<(), Status> {
        let (storage, ns) = (self.storage.clone(), self.ns.clone());
        match tokio::task::spawn_blocking(move || f(&storage, &ns)).await {
            Ok(r) => r.map_err(|e| self.storage_status(e)),
            Err(e) => Err(Status::internal(format!("storage task failed: {e}"))),
        }
    }
}

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} host calls are not implemented by this tarkd version"
    ))
}

#[tonic::async_trait]
impl pb::broker_server::Broker for Broker {
    async fn storage_get(
        &self,
        req: Request<pb::StorageKey>,
    ) -> Result<Response<pb::StorageValue>, Status> {
        let key = req.into_inner().key;
        self.check_storage(&key)?;
        // Reads take no fsync and are served from redb's cache: answered inline,
        // saving a hand-off to the blocking pool.
        let value = self
            .storage
            .get(&self.ns, &key)
            .map_err(|e| self.storage_status(e))?;
        Ok(Response::new(pb::StorageValue { value }))
    }

    async fn storage_set(
        &self,
        req: Request<pb::StorageEntry>,
    ) -> Result<Response<pb::Empty>, Status> {
        let pb::StorageEntry { key, value } = req.into_inner();
        self.check_storage(&key)?;
        self.blocking(move |s, ns| s.set(ns, &key, &value)).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn storage_delete(
        &self,
        req: Request<pb::StorageKey>,
    ) -> Result<Response<pb::Empty>, Status> {
        let key = req.into_inner().key;
        self.check_storage(&key)?;
        self.blocking(move |s, ns| s.delete(ns, &key)).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn storage_list_keys(
        &self,
        _req: Request<pb::Empty>,
    ) -> Result<Response<pb::StorageKeys>, Status> {
        self.check_storage("*")?;
        let keys = self
            .storage
            .list_keys(&self.ns)
            .map_err(|e| self.storage_status(e))?;
        Ok(Response::new(pb::StorageKeys { keys }))
    }

    async fn env_get(&self, req: Request<pb::EnvName>) -> Result<Response<pb::EnvValue>, Status> {
        let name = req.into_inner().name;
        if !policy::env_allowed(&self.grant.env, &name) {
            // `none`, not an error: a plugin cannot tell a refused variable from an
            // unset one, so it cannot probe tarkd's environment.
            let _ = self.deny(
                "env",
                &name,
                "environment variable access denied: not declared",
            );
            return Ok(Response::new(pb::EnvValue { value: None }));
        }
        Ok(Response::new(pb::EnvValue {
            value: std::env::var(&name).ok(),
        }))
    }

    async fn log(&self, req: Request<pb::LogRecord>) -> Result<Response<pb::Empty>, Status> {
        let rec = req.into_inner();
        if !self.admit_log_line() {
            return Ok(Response::new(pb::Empty {}));
        }
        let mut msg = rec.message;
        if msg.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
            msg.push_str(" [truncated]");
        }
        let (tenant, plugin) = (&self.ns.tenant, &self.ns.plugin);
        match pb::LogLevel::try_from(rec.level).unwrap_or(pb::LogLevel::Info) {
            pb::LogLevel::Debug => tracing::debug!(target: "plugin", %tenant, %plugin, "{msg}"),
            pb::LogLevel::Warn => tracing::warn!(target: "plugin", %tenant, %plugin, "{msg}"),
            pb::LogLevel::Error => tracing::error!(target: "plugin", %tenant, %plugin, "{msg}"),
            pb::LogLevel::Info | pb::LogLevel::Unspecified => {
                tracing::info!(target: "plugin", %tenant, %plugin, "{msg}")
            }
        }
        Ok(Response::new(pb::Empty {}))
    }

    async fn http(
        &self,
        _req: Request<pb::HttpRequest>,
    ) -> Result<Response<pb::HttpResponse>, Status> {
        Err(unimplemented("http"))
    }

    async fn fs_read(&self, _req: Request<pb::FsPath>) -> Result<Response<pb::FsContent>, Status> {
        Err(unimplemented("fs"))
    }

    async fn ws_connect(
        &self,
        _req: Request<pb::WsConnectRequest>,
    ) -> Result<Response<pb::WsHandle>, Status> {
        Err(unimplemented("ws"))
    }

    async fn ws_send(
        &self,
        _req: Request<pb::WsSendRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        Err(unimplemented("ws"))
    }

    async fn ws_recv(
        &self,
        _req: Request<pb::WsRecvRequest>,
    ) -> Result<Response<pb::WsMessage>, Status> {
        Err(unimplemented("ws"))
    }

    async fn ws_close(&self, _req: Request<pb::WsHandle>) -> Result<Response<pb::Empty>, Status> {
        Err(unimplemented("ws"))
    }
}
