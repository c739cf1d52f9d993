//! Conversions between tarkd's types and the agent API's messages.

use tark_proto::plugin::v1 as pb;
use tark_proto::worker::v1 as wpb;

use crate::config::Trust;
use crate::daemon::Daemon;
use crate::plugins::manifest::{Capabilities, PluginType};
use crate::workers::CallError;

pub fn plugin_type(t: PluginType) -> pb::PluginType {
    match t {
        PluginType::Auth => pb::PluginType::Auth,
        PluginType::Tool => pb::PluginType::Tool,
        PluginType::Provider => pb::PluginType::Provider,
        PluginType::Channel => pb::PluginType::Channel,
        PluginType::Hook => pb::PluginType::Hook,
    }
}

pub fn risk(r: wpb::RiskLevel) -> pb::RiskLevel {
    match r {
        wpb::RiskLevel::ReadOnly => pb::RiskLevel::ReadOnly,
        wpb::RiskLevel::Write => pb::RiskLevel::Write,
        wpb::RiskLevel::Risky => pb::RiskLevel::Risky,
        wpb::RiskLevel::Dangerous => pb::RiskLevel::Dangerous,
        wpb::RiskLevel::Unspecified => pb::RiskLevel::Unspecified,
    }
}

pub fn caps_to_pb(c: &Capabilities) -> pb::Capabilities {
    pb::Capabilities {
        storage: c.storage,
        http: c.http.clone(),
        env: c.env.clone(),
        fs_read: c.fs_read.clone(),
        shell: c.shell,
    }
}

pub fn caps_from_pb(c: pb::Capabilities) -> Capabilities {
    Capabilities {
        storage: c.storage,
        http: c.http,
        env: c.env,
        fs_read: c.fs_read,
        shell: c.shell,
    }
}

/// A plugin's grant as the API shows it.
/// A trusted key as the API shows it (0 and "" for what is not set).
pub fn trusted_key(k: crate::plugins::trust::TrustedKey) -> pb::TrustedKey {
    pb::TrustedKey {
        key_id: k.key_id,
        public_key: k.public_key,
        added_unix: k.added_unix,
        expires_unix: k.expires_unix.unwrap_or(0),
        revoked_unix: k.revoked_unix.unwrap_or(0),
        rotated_to: k.rotated_to.unwrap_or_default(),
        rotated_from: k.rotated_from.unwrap_or_default(),
        comment: k.comment,
    }
}

pub fn grants(daemon: &Daemon, id: &str) -> Result<pb::Grants, CallError> {
    let plugin = daemon.plugin(id)?;
    let declared = plugin.declared();
    let approved = daemon.approvals.get(id)?;
    let policy = &daemon.config.policy;
    let mut lines = Vec::new();
    if !policy.storage {
        lines.push("storage: forbidden".to_owned());
    }
    for (name, list) in [
        ("http", &policy.http),
        ("env", &policy.env),
        ("fs_read", &policy.fs_read),
    ] {
        match list {
            Some(l) if l.is_empty() => lines.push(format!("{name}: forbidden")),
            Some(l) => lines.push(format!("{name}: only {}", l.join(", "))),
            None => {}
        }
    }
    Ok(pb::Grants {
        id: id.to_owned(),
        pending: daemon
            .workers
            .authority
            .grants
            .get(id)
            .map(|g| g.pending.clone())
            .unwrap_or_default(),
        declared: Some(caps_to_pb(&declared)),
        approved: approved.as_ref().map(caps_to_pb),
        trust: match policy.trust {
            Trust::Disabled => "disabled",
            Trust::Warn => "warn",
            Trust::Enforced => "enforced",
        }
        .to_owned(),
        policy: lines,
    })
}
