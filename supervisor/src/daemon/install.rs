//! Planning and performing installs, updates and grant changes: the daemon
//! side of `plugins::install` (see there for the two steps and the one rename).

use std::path::Path;
use std::sync::Arc;

use tonic::Code;

use super::Daemon;
use crate::broker::grants;
use crate::plugins::folder::{self, Refused};
use crate::plugins::install::{Plan, check_approval, invalid, peek_name, switch_in};
use crate::plugins::manifest::Capabilities;
use crate::plugins::registry::{self, Plugin};
use crate::plugins::trust::{self, Verdict};
use crate::reasons::Reason;
use crate::workers::CallError;

impl Daemon {
    /// Reads and validates a plugin folder and says what installing it asks for.
    /// `caller` is the uid of the process that asked (from the socket's peer
    /// credentials): tarkd may read files its caller cannot, so a caller other
    /// than root or tarkd's own user may only install files it owns.
    pub fn plan(&self, source: &str, caller: Option<u32>) -> Result<Plan, CallError> {
        let source = Path::new(source);
        if !source.is_absolute() {
            return Err(invalid(format!(
                "{} is not an absolute path (give a folder tarkd can read)",
                source.display()
            )));
        }
        // tarkd may read what its caller cannot: links are not followed, and
        // an unprivileged caller must own what it asks tarkd to read.
        let me = nix::unistd::geteuid().as_raw();
        let Some(caller) = caller else {
            return Err(CallError::new(
                Code::PermissionDenied,
                "installing needs a caller tarkd can identify (its Unix socket)",
            ));
        };
        let must_own = Some(caller).filter(|&uid| uid != 0 && uid != me);
        self.plan_folder(source, must_own)
    }

    /// [`Self::plan`] of a folder tarkd may read: every entry must belong to
    /// `must_own` when given.
    pub fn plan_folder(&self, source: &Path, must_own: Option<u32>) -> Result<Plan, CallError> {
        let folder =
            folder::read(source, must_own, folder::Limits::default()).map_err(|e| match e {
                Refused::NotOwned(m) => CallError::new(Code::PermissionDenied, m),
                Refused::Invalid(m) => invalid(m),
            })?;
        let id = peek_name(source, &folder)?;
        // Validated exactly as the registry would, from the bytes read.
        let plugin = registry::from_folder(source, &id, &folder, &self.host_version);
        let Some(loaded) = &plugin.loaded else {
            return Err(invalid(format!(
                "plugin {id} cannot be installed: {}",
                plugin.diagnostics.join("; ")
            )));
        };
        let mut notes = Vec::new();
        let folder_name = source.file_name().map(|n| n.to_string_lossy().into_owned());
        if folder_name.as_deref() != Some(id.as_str()) {
            notes.push(format!(
                "the folder is named {}; the plugin installs as {id} (its plugin.name)",
                folder_name.unwrap_or_default()
            ));
        }
        notes.push(format!(
            "copies {} files ({} bytes) from {}",
            folder.files.len(),
            folder.bytes,
            source.display()
        ));
        // What the installed copy's approval still grants under the new
        // declaration (an update may drop capabilities).
        let declared = &loaded.manifest.capabilities;
        let current = self
            .approvals
            .get(&id)?
            .filter(|_| self.registry().get(&id).is_some())
            .map(|a| grants::within(&a, declared));
        let needs_approval = grants::beyond(declared, &current.clone().unwrap_or_default());
        // The whole package, as read, against the trust roots.
        let files = trust::package(&folder).map_err(invalid)?;
        let verdict = trust::judge(&files, &self.trust.list()?, trust::now_unix());
        trust::gate(
            &id,
            &verdict,
            trust::by_policy(self.config.policy.require_signed),
        )
        .map_err(|m| {
            CallError::new(Code::FailedPrecondition, m).because(Reason::PluginSignature, &id)
        })?;
        // What was judged is what the plan's plugin carries (a validation
        // worker checks it as any worker would).
        *plugin.signature.lock().unwrap_or_else(|p| p.into_inner()) = Some(verdict.clone());
        notes.push(match &verdict {
            Verdict::Verified { key_id } => format!("signed by key {key_id}: verified"),
            _ => "unsigned".to_owned(),
        });
        Ok(Plan {
            plugin,
            folder,
            notes,
            current,
            needs_approval,
            verdict,
        })
    }

    /// Installs (or updates) a planned plugin with `approved`, replacing any
    /// installed copy and its workers. A package not signed by a trusted key
    /// replaces a signed version only with `allow_unsigned` (or as an
    /// explicit rollback): else an unsigned 3.0.0 would replace a signed
    /// 2.0.0 where signatures are not required, and the downgrade check that
    /// protects signed versions would protect nothing after.
    pub async fn install(
        &self,
        plan: Plan,
        approved: Capabilities,
        rollback: bool,
        allow_unsigned: bool,
    ) -> Result<Arc<Plugin>, CallError> {
        let _one_at_a_time = self.install_lock.lock().await;
        let id = plan.plugin.id.clone();
        check_approval(&id, &plan.plugin.declared(), &approved)?;
        let Some(new) = &plan.plugin.loaded else {
            return Err(invalid(format!("plugin {id} is not valid")));
        };
        // The project's copy would shadow an installed one.
        if let Some(current) = self.registry().get(&id)
            && current.origin == crate::plugins::sources::Origin::Project
        {
            crate::plugins::lifecycle::managed(current)?;
        }
        // A signed plugin is not taken back to an older version (an old,
        // validly signed, vulnerable one) except by an explicit rollback.
        if let Some(installed) = self.registry().get(&id)
            && let Some(old) = &installed.loaded
            && matches!(installed.verdict(), Verdict::Verified { .. })
            && new.manifest.version < old.manifest.version
            && !rollback
        {
            return Err(CallError::new(
                Code::FailedPrecondition,
                format!(
                    "plugin {id}: {} is older than the installed {}, which is signed: a downgrade is refused (tarkctl plugin rollback {id} --to {} if that version is kept)",
                    new.manifest.version, old.manifest.version, new.manifest.version
                ),
            )
            .because(Reason::PluginSignature, &id));
        }
        if let Some(installed) = self.registry().get(&id)
            && let Some(old) = &installed.loaded
            && let Verdict::Verified { key_id } = installed.verdict()
            && !matches!(plan.verdict, Verdict::Verified { .. })
            && !rollback
        {
            let what = format!(
                "the installed {} is signed (key {key_id}); this {} is {}",
                old.manifest.version,
                new.manifest.version,
                plan.verdict.shown().1
            );
            if !allow_unsigned {
                return Err(CallError::new(
                    Code::FailedPrecondition,
                    format!(
                        "plugin {id}: {what}: a package not signed by a trusted key does not replace a signed one (an admin may allow it: tarkctl plugin add --allow-unsigned, audited)"
                    ),
                )
                .because(Reason::PluginSignature, &id));
            }
            self.workers.authority.audit.record(
                "-",
                &id,
                "install",
                &new.manifest.version.to_string(),
                "allow-unsigned",
                &format!("{what}; installed with --allow-unsigned"),
            );
        }
        // Its module must load, in a worker, before anything changes.
        self.workers.validate(&plan.plugin).await.map_err(|e| {
            CallError::new(
                Code::FailedPrecondition,
                format!("plugin {id} cannot be installed: {}", e.message),
            )
            .because(Reason::PluginNotRunnable, &id)
        })?;
        let io = |what: &str, e: std::io::Error| {
            CallError::new(Code::Internal, format!("plugin {id}: {what}: {e}"))
        };
        let plugins_dir = &self.config.plugins_dir;
        let staging = plugins_dir.join(format!(".{id}.staging"));
        let _ = std::fs::remove_dir_all(&staging);
        plan.folder.write(&staging).map_err(|e| io("staging", e))?;
        crate::crash::point("install:staged");
        self.approvals.set(&id, &approved)?;
        crate::crash::point("install:approved");
        let dest = plugins_dir.join(&id);
        let replaced =
            switch_in(&staging, &dest).map_err(|e| io("moving the plugin into place", e))?;
        crate::crash::point("install:switched");
        // The replaced version (now where the staged copy was) is kept.
        if replaced && let Err(e) = self.history.push(&id, &staging) {
            tracing::warn!(plugin = %id, "the replaced version was not kept: {e}");
            let _ = std::fs::remove_dir_all(&staging);
        }
        crate::crash::point("install:kept");
        let mut installed = registry::load(&dest, &id, &self.host_version);
        // A new plugin takes the last place; an update keeps its own.
        installed.seniority = self.seniority.of(&id);
        let installed = Arc::new(installed);
        self.replace_plugin(Arc::clone(&installed));
        self.refresh_grant(&id);
        let stopped = self.workers.restart(&id).await;
        tracing::info!(plugin = %id, stopped, "installed");
        Ok(installed)
    }

    /// Replaces a plugin's approval; applies to the next host call.
    pub fn set_grants(&self, id: &str, approved: Capabilities) -> Result<(), CallError> {
        let plugin = self.plugin(id)?;
        let Some(loaded) = plugin.loaded.as_ref() else {
            return Err(invalid(format!(
                "plugin {id} is not valid: nothing to grant"
            )));
        };
        check_approval(id, &loaded.manifest.capabilities, &approved)?;
        self.approvals.set(id, &approved)?;
        self.refresh_grant(id);
        tracing::info!(plugin = id, "grants changed");
        Ok(())
    }
}
