//! Rolling back to a kept version: the daemon side of `plugins::history`.

use std::sync::Arc;

use tonic::Code;

use super::Daemon;
use crate::plugins::history::pick;
use crate::plugins::registry::Plugin;
use crate::workers::CallError;

impl Daemon {
    /// Installs a kept version of `id` again: the newest, or the newest of
    /// `version`. Validated and approved as any install: the current approval,
    /// narrowed to what that version declares; anything beyond stays pending.
    pub async fn rollback(
        &self,
        id: &str,
        version: &str,
    ) -> Result<(Arc<Plugin>, crate::plugins::manifest::Capabilities), CallError> {
        crate::plugins::lifecycle::managed(&*self.plugin(id)?)?;
        let wanted = (!version.is_empty())
            .then(|| semver::Version::parse(version))
            .transpose()
            .map_err(|e| {
                CallError::new(
                    Code::InvalidArgument,
                    format!("plugin {id}: version {version:?}: {e}"),
                )
            })?;
        let kept = self.history.list(id, &self.host_version);
        let Some(entry) = pick(&kept, wanted.as_ref()).cloned() else {
            let have: Vec<String> = kept
                .iter()
                .filter_map(|k| k.version.as_ref().map(ToString::to_string))
                .collect();
            return Err(CallError::new(
                Code::FailedPrecondition,
                format!(
                    "plugin {id}: no kept version{} to roll back to (kept: {})",
                    wanted.map(|v| format!(" {v}")).unwrap_or_default(),
                    if have.is_empty() {
                        "none".into()
                    } else {
                        have.join(", ")
                    }
                ),
            ));
        };
        let plan = self.plan_folder(&entry.dir, None)?;
        let approved = plan.current.clone().unwrap_or_default();
        // Out of the kept ones while it is installed, so that keeping the
        // replaced version does not push out another; back if the install fails.
        let taken = entry.dir.with_extension("taken");
        std::fs::rename(&entry.dir, &taken).map_err(|e| {
            CallError::new(
                Code::Internal,
                format!("plugin {id}: taking {}: {e}", entry.dir.display()),
            )
        })?;
        crate::crash::point("rollback:taken");
        let installed = match self.install(plan, approved.clone(), true, false).await {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::rename(&taken, &entry.dir);
                return Err(e);
            }
        };
        let _ = std::fs::remove_dir_all(&taken);
        tracing::info!(plugin = id, version = ?entry.version, "rolled back");
        Ok((installed, approved))
    }
}
