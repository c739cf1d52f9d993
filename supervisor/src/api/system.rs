//! The `System` service: tarkd's status and the audit log.

use tark_proto::plugin::v1 as pb;
use tonic::{Request, Response, Status};

use super::Api;

impl Api {
    /// The metrics text, with the gauges read now.
    pub fn metrics_text(&self) -> String {
        let m = &crate::metrics::METRICS;
        let (live, standby) = self.0.workers.answers();
        m.live_workers.set(i64::try_from(live).unwrap_or(i64::MAX));
        m.standby_workers
            .set(i64::try_from(standby).unwrap_or(i64::MAX));
        match self.0.workers.authority.storage.total_bytes() {
            Ok(b) => {
                m.storage_bytes.set(i64::try_from(b).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!("metrics: reading storage usage: {e}"),
        }
        crate::metrics::render()
    }
}

#[tonic::async_trait]
impl pb::system_server::System for Api {
    async fn metrics(
        &self,
        _req: Request<pb::MetricsRequest>,
    ) -> Result<Response<pb::MetricsResponse>, Status> {
        Ok(Response::new(pb::MetricsResponse {
            text: self.metrics_text(),
        }))
    }

    async fn check_host(
        &self,
        _req: Request<pb::CheckHostRequest>,
    ) -> Result<Response<pb::CheckHostResponse>, Status> {
        // The probes start a process and read files: off the runtime threads.
        let daemon = std::sync::Arc::clone(&self.0);
        let findings = tokio::task::spawn_blocking(move || daemon.workers.host_findings())
            .await
            .map_err(|e| Status::internal(format!("checking the host: {e}")))?;
        let failed = findings.iter().filter(|f| f.fails()).count();
        Ok(Response::new(pb::CheckHostResponse {
            lines: findings.iter().map(ToString::to_string).collect(),
            failed: u32::try_from(failed).unwrap_or(u32::MAX),
        }))
    }

    async fn audit(
        &self,
        req: Request<pb::AuditRequest>,
    ) -> Result<Response<pb::AuditResponse>, Status> {
        // Only what concerns the caller's tenants (an admin's: every tenant).
        let who = crate::access::caller(&req);
        let req = req.into_inner();
        let audit = &self.0.workers.authority.audit;
        let plugin = (!req.plugin.is_empty()).then_some(req.plugin.as_str());
        let limit = if req.limit == 0 {
            100
        } else {
            req.limit as usize
        };
        let entries = audit
            .recent(
                |e| plugin.is_none_or(|p| e.plugin == p) && who.may_act_for(&e.tenant),
                limit,
            )
            .into_iter()
            .map(|e| pb::AuditEntry {
                time_ms: e.time_ms,
                tenant: e.tenant,
                plugin: e.plugin,
                capability: e.capability,
                target: e.target,
                decision: e.decision,
                reason: e.reason,
            })
            .collect();
        let mut visible = std::collections::BTreeMap::<(String, String), u64>::new();
        for ((tenant, p, capability), n) in audit.counts() {
            if plugin.is_none_or(|want| p == want) && who.may_act_for(&tenant) {
                *visible.entry((p, capability)).or_default() += n;
            }
        }
        let counts = visible
            .into_iter()
            .map(|((plugin, capability), denials)| pb::AuditCount {
                plugin,
                capability,
                denials,
            })
            .collect();
        Ok(Response::new(pb::AuditResponse { entries, counts }))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let who = crate::access::caller(&req);
        let d = &self.0;
        Ok(Response::new(pb::StatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_seconds: d.started.elapsed().as_secs(),
            socket: d.config.socket.display().to_string(),
            state_dir: d.config.state_dir.display().to_string(),
            plugins_dir: d.config.plugins_dir.display().to_string(),
            standby_ready: u32::try_from(d.workers.standby_ready()).unwrap_or(u32::MAX),
            standby_size: u32::try_from(d.config.workers.standby).unwrap_or(u32::MAX),
            plugins: d
                .registry()
                .plugins
                .values()
                .map(|p| self.plugin_info(p, &who))
                .collect(),
        }))
    }
}
