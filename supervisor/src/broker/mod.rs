//! The broker: tarkd's answer to every host call a plugin makes.
//!
//! One `Broker` serves one worker and is built with that worker's identity (tenant
//! and plugin) from the socket tarkd spawned it with. Nothing in a request names
//! the caller, so a plugin cannot speak for anyone else. Each call is checked
//! against the plugin's current grant (declared ∩ approved ∩ policy), read at the
//! call, so a narrowed grant applies to the next call of a running worker.
//!
//! A refusal is an error status the worker hands to the plugin as an error value;
//! it is also logged on the `audit` target and written to the audit log.

pub mod addresses;
pub mod audit;
mod credentials;
pub mod files;
pub mod grants;
pub mod hosts;
pub mod http;
pub mod policy;
pub mod ratelimit;
pub mod secrets;
pub mod storage;
pub mod ws;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tark_proto::worker::v1 as pb;
use tonic::{Request, Response, Status};

use crate::broker::audit::AuditLog;
use crate::broker::grants::{Denial, Grant, GrantTable};
use crate::broker::hosts::{Allow, Refusal, Target};
use crate::broker::http::clients::Clients;
use crate::broker::http::{HttpError, Outbound};
use crate::broker::ratelimit::TokenBucket;
use crate::broker::storage::{Namespace, Storage, StorageError};
use crate::broker::ws::Sessions;
use crate::config::Config;
use crate::config::Trust;
use files::{FsError, Roots};

/// Longest log line a plugin may write; longer lines are cut.
const MAX_LOG_LINE: usize = 4096;

/// Longest a host call may take when the worker sends no deadline.
const DEFAULT_BUDGET: Duration = Duration::from_secs(30);

/// What all brokers share: tarkd's authority, handed out one checked call at a
/// time, and the configuration that bounds it.
pub struct Authority {
    pub config: Arc<Config>,
    pub storage: Storage,
    pub audit: Arc<AuditLog>,
    pub grants: Arc<GrantTable>,
    pub outbound: Outbound,
    /// What `~` means for fs grants (`Config::fs_home`, resolved once).
    pub home: Option<PathBuf>,
}

impl Authority {
    /// `plugin`'s grant now, narrowed by `tenant`'s own policy if it has
    /// one; `None` for a plugin no longer installed.
    pub fn grant_for(&self, plugin: &str, tenant: &str) -> Option<Arc<Grant>> {
        let grant = self.grants.get(plugin)?;
        let policy = self
            .config
            .tenants
            .get(tenant)
            .and_then(|t| t.policy.as_ref());
        Some(match policy {
            Some(policy) => Arc::new(grant.for_tenant(tenant, policy)),
            None => grant,
        })
    }
}

/// Serves one worker's host calls.
pub struct Broker {
    ns: Namespace,
    roots: Roots,
    shared: Arc<Authority>,
    /// Log lines the plugin may write, and how many were dropped since the last
    /// one that went through.
    log_rate: std::sync::Mutex<(TokenBucket, u64)>,
    ws: Sessions,
    /// Outbound HTTP connections and TLS sessions: this worker's alone, closed
    /// with it.
    clients: Clients,
}

impl Broker {
    /// `own_pid` is the worker's pid, as tarkd sees it, once known.
    pub fn new(
        tenant: String,
        plugin: String,
        plugin_dir: PathBuf,
        own_pid: Arc<std::sync::atomic::AtomicU32>,
        shared: Arc<Authority>,
    ) -> Self {
        let log_rate = TokenBucket::new(shared.config.logs, std::time::Instant::now());
        Self {
            ns: Namespace { tenant, plugin },
            roots: Roots {
                home: shared.home.clone(),
                plugin_dir,
                own_pid,
            },
            log_rate: std::sync::Mutex::new((log_rate, 0)),
            clients: shared.outbound.clients(),
            shared,
            ws: Sessions::default(),
        }
    }

    /// The plugin's grant now, narrowed by the tenant's own policy if it has
    /// one; a plugin removed since its worker started has none.
    fn grant(&self) -> Result<Arc<Grant>, Status> {
        self.shared
            .grant_for(&self.ns.plugin, &self.ns.tenant)
            .ok_or_else(|| self.deny("any", "", "the plugin is no longer installed"))
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
                self.shared.config.logs.per_second
            );
            *dropped = 0;
        }
        true
    }

    fn record(&self, capability: &str, target: &str, decision: &str, reason: &str) {
        // A plugin chooses the target, and the reason may quote it.
        let (target, reason) = (&crate::reasons::cut(target), &crate::reasons::cut(reason));
        let (tenant, plugin) = (&self.ns.tenant, &self.ns.plugin);
        let audit = &self.shared.audit;
        // What the audit's rate limit leaves out of the file stays out of
        // the log too (its summary is in the file).
        if !audit.record(tenant, plugin, capability, target, decision, reason) {
            return;
        }
        tracing::warn!(
            target: "audit",
            tenant = %self.ns.tenant,
            plugin = %self.ns.plugin,
            capability,
            target_name = target,
            decision,
            reason,
            "{}",
            if decision == "deny" { "host call denied" } else { "host call allowed outside the grant" }
        );
    }

    fn deny(&self, capability: &str, target: &str, reason: &str) -> Status {
        self.record(capability, target, "deny", reason);
        crate::reasons::status(
            tonic::Code::PermissionDenied,
            format!("{reason} (plugin {})", self.ns.plugin),
            crate::reasons::Reason::CapabilityDenied,
            Some(&self.ns.plugin),
            Some(capability),
        )
    }

    /// Applies the trust mode to a grant's refusal: enforced denies, warn allows
    /// and audits, disabled allows; the policy's refusals always deny.
    fn undeclared(
        &self,
        trust: Trust,
        capability: &str,
        target: &str,
        d: &Denial,
    ) -> Result<(), Status> {
        if !d.softened_by(trust) {
            return Err(self.deny(capability, target, &d.reason));
        }
        if trust == Trust::Warn {
            self.record(capability, target, "allow-undeclared", &d.reason);
        }
        Ok(())
    }

    /// One variable as the plugin may read it: checked against the grant
    /// (denials audited) and looked up in its secrets file, then in tarkd's
    /// environment. `None` for a refusal as for an unset variable.
    fn env_value(&self, grant: &Grant, name: &str) -> Option<String> {
        if !crate::broker::policy::valid_env_name(name) {
            self.record(
                "env",
                name,
                "deny",
                &format!(
                    "not a variable name ({} bytes; ASCII letters, digits and _, at most 255)",
                    name.len()
                ),
            );
            return None;
        }
        if let Err(d) = grant.env(name)
            && self.undeclared(grant.trust, "env", name, &d).is_err()
        {
            return None;
        }
        let secrets_dir = self.shared.config.secrets_dir();
        let secret = crate::broker::secrets::lookup(&secrets_dir, &self.ns.plugin, name)
            .unwrap_or_else(|e| {
                tracing::warn!(plugin = %self.ns.plugin, "{e}");
                None
            });
        secret.or_else(|| std::env::var(name).ok())
    }

    fn check_storage(&self, key: &str) -> Result<(), Status> {
        let grant = self.grant()?;
        match grant.storage() {
            Ok(()) => Ok(()),
            Err(d) => self.undeclared(grant.trust, "storage", key, &d),
        }
    }

    /// The host check for http and ws hops, trust mode applied. Undeclared hosts
    /// allowed by warn or disabled modes are treated as `*.suffix` matches: public
    /// addresses only.
    fn host_check(
        &self,
        grant: &Grant,
        capability: &'static str,
    ) -> impl Fn(&Target) -> Result<Allow, Refusal> + Sync {
        move |target: &Target| match grant.http(target) {
            Ok(allow) => Ok(allow),
            Err(d) if !d.softened_by(grant.trust) => Err(Refusal(d.reason)),
            Err(d) => {
                if grant.trust == Trust::Warn {
                    self.record(
                        capability,
                        target.url.as_str(),
                        "allow-undeclared",
                        &d.reason,
                    );
                }
                Ok(Allow::Covered)
            }
        }
    }

    /// What the plugin is told about a failed network call.
    fn net_status(&self, capability: &str, target: &str, e: HttpError) -> Status {
        match e {
            HttpError::Denied(reason) => self.deny(capability, target, &reason),
            HttpError::Invalid(m) => Status::invalid_argument(m),
            HttpError::TooLarge(m) => Status::resource_exhausted(m),
            HttpError::Timeout(m) => Status::deadline_exceeded(m),
            HttpError::Failed(m) => Status::unavailable(m),
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
        let (storage, ns) = (self.shared.storage.clone(), self.ns.clone());
        match tokio::task::spawn_blocking(move || f(&storage, &ns)).await {
            Ok(r) => r.map_err(|e| self.storage_status(e)),
            Err(e) => Err(Status::internal(format!("storage task failed: {e}"))),
        }
    }
}

/// The time left for a host call: the worker sends its call's remaining
/// deadline as `tark-budget-ms` (a worker can only shorten it: tarkd's own
/// limits and its kill backstop still apply).
pub fn budget<T>(req: &Request<T>) -> Duration {
    req.metadata()
        .get("tark-budget-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_BUDGET)
        .min(DEFAULT_BUDGET)
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
            .shared
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
            .shared
            .storage
            .list_keys(&self.ns)
            .map_err(|e| self.storage_status(e))?;
        Ok(Response::new(pb::StorageKeys { keys }))
    }

    async fn env_get(&self, req: Request<pb::EnvName>) -> Result<Response<pb::EnvValue>, Status> {
        let name = req.into_inner().name;
        let grant = self.grant()?;
        // `none`, not an error, for a refusal: a plugin cannot tell a refused
        // variable from an unset one, so it cannot probe tarkd's environment.
        let value = self.env_value(&grant, &name);
        Ok(Response::new(pb::EnvValue { value }))
    }

    async fn env_list(&self, _req: Request<pb::Empty>) -> Result<Response<pb::EnvVars>, Status> {
        let grant = self.grant()?;
        let mut names: Vec<String> = Vec::new();
        for pattern in grant.declared_env() {
            match pattern.strip_suffix('*') {
                None => names.push(pattern.clone()),
                // A pattern lists what tarkd's environment has under it; each
                // name is then checked like a read of it.
                Some(prefix) => names.extend(
                    std::env::vars_os()
                        .filter_map(|(k, _)| k.into_string().ok())
                        .filter(|k| k.starts_with(prefix)),
                ),
            }
        }
        names.sort();
        names.dedup();
        let vars = names
            .into_iter()
            .filter_map(|name| {
                let value = self.env_value(&grant, &name)?;
                Some(pb::EnvVar { name, value })
            })
            .collect();
        Ok(Response::new(pb::EnvVars { vars }))
    }

    async fn refused(&self, req: Request<pb::RefusedCall>) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        // The worker refused it already: only the record is made here, under
        // one of the two capabilities it may name.
        let capability = match r.capability.as_str() {
            c @ ("wasi:sockets" | "wasi:filesystem") => c,
            _ => "wasi",
        };
        self.record(
            capability,
            &r.function,
            "deny",
            &format!(
                "not provided to plugins (answered {}: tarkd gives WASI guests no sockets, files or directories)",
                r.answer
            ),
        );
        Ok(Response::new(pb::Empty {}))
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
        req: Request<pb::HttpRequest>,
    ) -> Result<Response<pb::HttpResponse>, Status> {
        let budget = budget(&req);
        let req = req.into_inner();
        let url = req.url.clone();
        let grant = self.grant()?;
        let check = self.host_check(&grant, "http");
        let fetch = self
            .shared
            .outbound
            .fetch(&self.clients, req, budget, &check);
        match fetch.await {
            Ok(resp) => Ok(Response::new(resp)),
            Err(e) => Err(self.net_status("http", &url, e)),
        }
    }

    async fn fs_read(&self, req: Request<pb::FsPath>) -> Result<Response<pb::FsContent>, Status> {
        let budget = budget(&req);
        let path = req.into_inner().path;
        let grant = self.grant()?;
        if let Some(oauth) = self.credentials_read(&grant, &path) {
            return self.read_credentials(&grant, &oauth, &path, budget).await;
        }
        let (roots, max) = (
            self.roots.clone(),
            self.shared.config.fs.max_read_kib * 1024,
        );
        let (request, reading) = (path.clone(), Arc::clone(&grant));
        let read = tokio::task::spawn_blocking(move || {
            files::read(&request, &reading.fs_sources(&request), &roots, max)
        })
        .await
        .map_err(|e| Status::internal(format!("fs task failed: {e}")))?;
        match read {
            Ok((content, unlisted)) => {
                if let Some(reason) = unlisted
                    && grant.trust == Trust::Warn
                {
                    self.record("fs", &path, "allow-undeclared", &reason);
                }
                Ok(Response::new(pb::FsContent { content }))
            }
            Err(FsError::Denied(reason)) => Err(self.deny("fs", &path, &reason)),
            Err(FsError::Invalid(m)) => Err(Status::invalid_argument(m)),
            Err(FsError::NotFound(m)) => Err(Status::not_found(m)),
            Err(FsError::TooLarge(m)) => Err(Status::resource_exhausted(m)),
        }
    }

    async fn ws_connect(
        &self,
        req: Request<pb::WsConnectRequest>,
    ) -> Result<Response<pb::WsHandle>, Status> {
        let budget = budget(&req);
        let req = req.into_inner();
        let grant = self.grant()?;
        let check = self.host_check(&grant, "ws");
        let limits = &self.shared.config.ws;
        let tls = match self.clients.ws_tls() {
            Ok(tls) => tls,
            Err(e) => return Err(self.net_status("ws", &req.url, e)),
        };
        match self
            .ws
            .connect(&req.url, &req.headers_json, limits, tls, budget, &check)
            .await
        {
            Ok(handle) => Ok(Response::new(pb::WsHandle { handle })),
            Err(e) => Err(self.net_status("ws", &req.url, e)),
        }
    }

    async fn ws_send(
        &self,
        req: Request<pb::WsSendRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let budget = budget(&req);
        let req = req.into_inner();
        let target = req.handle.to_string();
        match self.ws.send(req.handle, req.data, budget).await {
            Ok(()) => Ok(Response::new(pb::Empty {})),
            Err(e) => Err(self.net_status("ws", &target, e)),
        }
    }

    async fn ws_recv(
        &self,
        req: Request<pb::WsRecvRequest>,
    ) -> Result<Response<pb::WsMessage>, Status> {
        let budget = budget(&req);
        let req = req.into_inner();
        let wait = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0)).min(budget);
        let max = usize::try_from(req.max_bytes).unwrap_or(0);
        let max = if max == 0 { usize::MAX } else { max };
        match self.ws.recv(req.handle, wait, max).await {
            Ok(data) => Ok(Response::new(pb::WsMessage {
                timeout: data.is_none(),
                data,
            })),
            Err(e) => Err(self.net_status("ws", &req.handle.to_string(), e)),
        }
    }

    async fn ws_close(&self, req: Request<pb::WsHandle>) -> Result<Response<pb::Empty>, Status> {
        let handle = req.into_inner().handle;
        match self.ws.close(handle).await {
            Ok(()) => Ok(Response::new(pb::Empty {})),
            Err(e) => Err(self.net_status("ws", &handle.to_string(), e)),
        }
    }
}
