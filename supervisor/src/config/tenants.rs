//! Per-tenant settings (`[tenants.<name>]`): which plugins a tenant may use,
//! how many workers it may have live, and its storage quotas. A tenant the
//! table does not name gets the global settings: every plugin, and
//! `workers.max_live_per_tenant` and `[storage]`'s quotas.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One tenant's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// The plugins this tenant may use; absent: every installed plugin.
    pub plugins: Option<Vec<String>>,
    /// Its live workers; absent: `workers.max_live_per_tenant`.
    pub max_live: Option<usize>,
    /// Keys and bytes each of its plugins may store; absent: `[storage]`'s.
    pub storage_max_keys: Option<u64>,
    pub storage_max_total_bytes: Option<u64>,
    /// Narrows what plugins may do for this tenant, on top of `[policy]`.
    pub policy: Option<TenantPolicy>,
}

/// A tenant's own capability policy: each list present caps that capability
/// for every plugin acting for the tenant (absent: no cap beyond `[policy]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantPolicy {
    pub storage: Option<bool>,
    pub http: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub fs_read: Option<Vec<String>>,
    /// Only plugins signed by a trusted key act for this tenant (on top of
    /// `policy.require_signed`, which covers every tenant).
    pub require_signed: Option<bool>,
    /// `false`: no command tool runs for this tenant (on top of `policy.shell`).
    pub shell: Option<bool>,
}

/// The `[tenants]` table.
pub type Tenants = BTreeMap<String, TenantConfig>;

/// Whether `tenant` may use `plugin`. tarkd's own tenants (`@…`) may use any.
pub fn enabled(tenants: &Tenants, tenant: &str, plugin: &str) -> bool {
    tenant.starts_with('@')
        || tenants
            .get(tenant)
            .and_then(|t| t.plugins.as_ref())
            .is_none_or(|list| list.iter().any(|p| p == plugin))
}

/// Why a plugin is refused to a tenant, naming the setting.
pub fn not_enabled(tenant: &str, plugin: &str) -> String {
    format!("plugin {plugin} is not enabled for tenant {tenant} (tenants.{tenant}.plugins)")
}

/// Problems with the table, each naming the tenant.
pub fn validate(tenants: &Tenants) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, t) in tenants {
        if !crate::plugins::manifest::valid_name(name) {
            problems.push(format!(
                "tenants.{name}: a tenant name is lowercase letters, digits and hyphens"
            ));
        }
        if t.max_live == Some(0) {
            problems.push(format!("tenants.{name}.max_live must be positive"));
        }
        if let Some(p) = &t.policy {
            // The same entries as `[policy]`'s, checked the same way.
            let as_global = super::PolicyConfig {
                http: p.http.clone(),
                env: p.env.clone(),
                fs_read: p.fs_read.clone(),
                ..Default::default()
            };
            if let Err(e) = as_global.validate() {
                problems.push(format!("tenants.{name}.{e}"));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enablement_table() {
        let mut t = Tenants::new();
        t.insert(
            "team-a".into(),
            TenantConfig {
                plugins: Some(vec!["notes".into()]),
                ..Default::default()
            },
        );
        t.insert(
            "team-none".into(),
            TenantConfig {
                plugins: Some(vec![]),
                ..Default::default()
            },
        );
        t.insert("team-all".into(), TenantConfig::default());
        for (tenant, plugin, want) in [
            ("team-a", "notes", true),
            ("team-a", "echo", false),
            ("team-a", "note", false),
            ("team-none", "notes", false),
            ("team-all", "echo", true),
            ("unlisted", "echo", true),
            ("@describe", "echo", true),
        ] {
            assert_eq!(enabled(&t, tenant, plugin), want, "{tenant} {plugin}");
        }
    }

    #[test]
    fn the_table_is_checked() {
        let mut t = Tenants::new();
        t.insert("Team A".into(), TenantConfig::default());
        t.insert(
            "ok".into(),
            TenantConfig {
                max_live: Some(0),
                ..Default::default()
            },
        );
        t.insert(
            "bad-policy".into(),
            TenantConfig {
                policy: Some(TenantPolicy {
                    env: Some(vec!["*".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        let problems = validate(&t);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("tenants.Team A"));
        assert!(problems[1].starts_with("tenants.bad-policy.policy.env"));
        assert!(problems[2].contains("tenants.ok.max_live"));
    }
}
