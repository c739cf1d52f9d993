//! Installing and updating plugins, and changing what they are granted.
//!
//! Installing is two steps: a plan (what the plugin declares, what of it the
//! current approval does not cover) that the operator reviews, then the install
//! with the operator's approval. The folder is staged next to its final place and
//! exchanged with the installed copy in one rename, so a crash leaves the old
//! plugin or the new, never half of one and never neither.

use std::path::Path;

use tonic::Code;

use crate::broker::grants;
use crate::plugins::folder::Folder;
use crate::plugins::manifest::{self, Capabilities};
use crate::plugins::registry::Plugin;
use crate::plugins::trust::Verdict;
use crate::workers::CallError;

/// A plugin read from its source folder, validated, not yet installed.
pub struct Plan {
    pub plugin: Plugin,
    /// The whole folder as read: what the install writes.
    pub folder: Folder,
    /// What the operator should know (a folder named unlike the plugin, ...).
    pub notes: Vec<String>,
    /// The approval of the installed plugin of the same name, if any.
    pub current: Option<Capabilities>,
    /// Declared items `current` does not cover.
    pub needs_approval: Vec<String>,
    /// Its signature, judged from the folder as read.
    pub verdict: Verdict,
}

pub(crate) fn invalid(message: impl Into<String>) -> CallError {
    CallError::new(Code::InvalidArgument, message)
}

/// The plugin name a folder's manifest gives, before full validation (which
/// needs the name to compare the folder with).
pub(crate) fn peek_name(source: &Path, folder: &Folder) -> Result<String, CallError> {
    if folder.file(Path::new("plugin.toml")).is_none()
        && let Some(text) = folder.file(Path::new(manifest::extension::FILE))
    {
        return peek_extension_id(source, text);
    }
    let path = source.join("plugin.toml");
    let text = folder
        .file(Path::new("plugin.toml"))
        .ok_or_else(|| invalid(format!("{} has no plugin.toml", source.display())))?;
    let table: toml::Table = std::str::from_utf8(text)
        .map_err(|_| invalid(format!("{} is not UTF-8", path.display())))
        .and_then(|t| toml::from_str(t).map_err(|e| invalid(format!("{}: {e}", path.display()))))?;
    let name = table
        .get("plugin")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| invalid(format!("{}: plugin.name is required", path.display())))?;
    if !manifest::valid_name(name) {
        return Err(invalid(format!(
            "{}: plugin.name {name:?} must be lowercase letters, digits and hyphens",
            path.display()
        )));
    }
    Ok(name.to_owned())
}

/// A tau extension's `id`, its plugin name.
fn peek_extension_id(source: &Path, text: &[u8]) -> Result<String, CallError> {
    let path = source.join(manifest::extension::FILE);
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    let id = value["id"]
        .as_str()
        .ok_or_else(|| invalid(format!("{}: id is required", path.display())))?;
    if !manifest::valid_name(id) {
        return Err(invalid(format!(
            "{}: id {id:?} must be lowercase letters, digits and hyphens",
            path.display()
        )));
    }
    Ok(id.to_owned())
}

/// Puts the staged folder at `dest` in one step: exchanged with the installed
/// copy when there is one (so no instant has neither), which is then where the
/// staged copy was (says `true`). The directory is synced before returning.
pub(crate) fn switch_in(staging: &Path, dest: &Path) -> std::io::Result<bool> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    let replaced = dest.exists();
    if replaced {
        renameat2(
            AT_FDCWD,
            staging,
            AT_FDCWD,
            dest,
            RenameFlags::RENAME_EXCHANGE,
        )?;
    } else {
        std::fs::rename(staging, dest)?;
    }
    if let Some(dir) = dest.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(replaced)
}

/// Problems with an approval's own entries, and items it grants beyond what
/// the plugin declares.
pub(crate) fn check_approval(
    id: &str,
    declared: &Capabilities,
    approved: &Capabilities,
) -> Result<(), CallError> {
    for h in &approved.http {
        crate::broker::hosts::parse_rule(h)
            .map_err(|e| invalid(format!("plugin {id}: approval http {e}")))?;
    }
    let extra = grants::beyond(approved, declared);
    if !extra.is_empty() {
        return Err(invalid(format!(
            "plugin {id}: the approval grants more than the plugin declares: {}",
            extra.join(", ")
        )));
    }
    Ok(())
}
