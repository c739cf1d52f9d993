//! `[policy]`: the operator's global caps over every plugin's grant, and how
//! a call the grant does not cover is treated. Read here with the rest of the
//! configuration; applied by `broker::grants`.

use serde::Deserialize;

use crate::broker::{hosts, policy};

/// How tarkd treats a call the grant does not cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// Capabilities are not checked (network-safety rules still apply).
    Disabled,
    /// Allowed, logged and audited as `allow-undeclared`.
    Warn,
    /// Denied.
    #[default]
    Enforced,
}

/// `[policy]`: global caps over every plugin's grant. A list that is absent caps
/// nothing; an empty list forbids the capability.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub trust: Trust,
    pub storage: bool,
    pub http: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub fs_read: Option<Vec<String>>,
    /// Only plugins signed by a trusted key are installed, reloaded and run.
    pub require_signed: bool,
    /// Whether command tools (`[[tools]]`, the `shell` capability) may run
    /// at all on this host, once approved; `false` forbids every one.
    pub shell: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            trust: Trust::Enforced,
            storage: true,
            http: None,
            env: None,
            fs_read: None,
            require_signed: false,
            shell: true,
        }
    }
}

impl PolicyConfig {
    /// Problems with the policy's own entries.
    pub fn validate(&self) -> Result<(), String> {
        for h in self.http.iter().flatten() {
            hosts::parse_rule(h).map_err(|e| format!("policy.http: {e}"))?;
        }
        if let Some(bad) = self
            .env
            .iter()
            .flatten()
            .find(|e| !policy::valid_env_pattern(e))
        {
            return Err(format!("policy.env: {bad:?} must be {}", policy::ENV_RULE));
        }
        if let Some(bad) = self
            .fs_read
            .iter()
            .flatten()
            .find(|e| !policy::valid_fs_entry(e))
        {
            return Err(format!(
                "policy.fs_read: {bad:?} is not an absolute or ~/ path"
            ));
        }
        Ok(())
    }
}
