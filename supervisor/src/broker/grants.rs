//! What a plugin may do: declared (its manifest) ∩ approved (by the operator, at
//! install) ∩ policy (tarkd's config). A host call is checked against each of the
//! three in turn, so the refusal names which one said no.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::broker::files::PathList;
use crate::broker::hosts::{self, Allow, HostRule, Target};
use crate::broker::policy;
use crate::config::{PolicyConfig, Trust};
use crate::plugins::manifest::Capabilities;

/// One of the sources of a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Declared,
    Approved,
    Policy,
    /// The calling tenant's own policy (`tenants.<name>.policy`).
    Tenant,
}

impl Source {
    /// Whether `trust` lets through what this source does not allow: a missing
    /// declaration or approval may be, the operator's policies never.
    pub fn softened_by(self, trust: Trust) -> bool {
        trust != Trust::Enforced && matches!(self, Source::Declared | Source::Approved)
    }
}

/// Which capability a check is about (a policy without a list for it caps
/// nothing).
#[derive(Clone, Copy)]
enum Cap {
    Http,
    Env,
    Fs,
}

/// A tenant's own policy, parsed, with which lists it has.
#[derive(Debug, Clone)]
struct TenantLists {
    tenant: String,
    lists: Parsed,
    http: bool,
    env: bool,
    fs: bool,
}

/// A refusal and the source that refused: the trust mode may soften a missing
/// declaration or approval, never the operator's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub source: Source,
    pub reason: String,
}

impl Denial {
    /// Whether `trust` lets the call through anyway (audited in warn mode).
    pub fn softened_by(&self, trust: Trust) -> bool {
        self.source.softened_by(trust)
    }
}

/// A capability list parsed once for checking.
#[derive(Debug, Clone, Default)]
struct Parsed {
    storage: bool,
    shell: bool,
    http: Vec<HostRule>,
    env: Vec<String>,
    fs_read: Vec<String>,
}

impl Parsed {
    fn from_caps(c: &Capabilities) -> Self {
        Self {
            storage: c.storage,
            shell: c.shell,
            // Entries were validated when the manifest or approval was read;
            // one that does not parse grants nothing.
            http: c
                .http
                .iter()
                .filter_map(|h| hosts::parse_rule(h).ok())
                .collect(),
            env: c.env.clone(),
            fs_read: c.fs_read.clone(),
        }
    }
}

/// A plugin's effective grant.
#[derive(Debug, Clone)]
pub struct Grant {
    plugin: String,
    pub trust: Trust,
    declared: Parsed,
    approved: Parsed,
    policy: Parsed,
    /// Whether the policy has a list for http, env, fs_read (else it caps nothing).
    policy_http: bool,
    policy_env: bool,
    policy_fs: bool,
    /// Whether the operator approved the plugin at all.
    pub approved_at_all: bool,
    /// Declared items the approval does not cover (`storage`, `http=HOST`, ...).
    pub pending: Vec<String>,
    /// The manifest's `[oauth]`: a read of its credentials path is answered
    /// from the tenant's stored sign-in (see `crate::oauth`).
    pub oauth: Option<std::sync::Arc<crate::plugins::manifest::OAuth>>,
    /// The calling tenant's policy, when it has one ([`Grant::for_tenant`]).
    tenant: Option<TenantLists>,
}

impl Grant {
    /// `approved` is `None` for a plugin nobody approved: nothing is granted.
    pub fn new(
        plugin: &str,
        declared: &Capabilities,
        approved: Option<&Capabilities>,
        policy: &PolicyConfig,
    ) -> Self {
        let caps = Capabilities {
            storage: policy.storage,
            http: policy.http.clone().unwrap_or_default(),
            env: policy.env.clone().unwrap_or_default(),
            fs_read: policy.fs_read.clone().unwrap_or_default(),
            shell: policy.shell,
        };
        Self {
            plugin: plugin.to_owned(),
            trust: policy.trust,
            declared: Parsed::from_caps(declared),
            approved: approved.map(Parsed::from_caps).unwrap_or_default(),
            policy: Parsed::from_caps(&caps),
            policy_http: policy.http.is_some(),
            policy_env: policy.env.is_some(),
            policy_fs: policy.fs_read.is_some(),
            approved_at_all: approved.is_some(),
            pending: beyond(declared, approved.unwrap_or(&Capabilities::default())),
            oauth: None,
            tenant: None,
        }
    }

    /// This grant as it applies to `tenant`, narrowed by its own policy.
    pub fn for_tenant(&self, tenant: &str, policy: &crate::config::tenants::TenantPolicy) -> Self {
        let caps = Capabilities {
            storage: policy.storage.unwrap_or(true),
            http: policy.http.clone().unwrap_or_default(),
            env: policy.env.clone().unwrap_or_default(),
            fs_read: policy.fs_read.clone().unwrap_or_default(),
            shell: policy.shell.unwrap_or(true),
        };
        let mut g = self.clone();
        g.tenant = Some(TenantLists {
            tenant: tenant.to_owned(),
            lists: Parsed::from_caps(&caps),
            http: policy.http.is_some(),
            env: policy.env.is_some(),
            fs: policy.fs_read.is_some(),
        });
        g
    }

    fn refusal(&self, source: Source) -> String {
        let plugin = &self.plugin;
        match source {
            Source::Declared => "not declared in the plugin's manifest".to_owned(),
            Source::Approved => format!(
                "declared but not approved by the operator (tarkctl plugin grants {plugin})"
            ),
            Source::Policy => "forbidden by tarkd's policy".to_owned(),
            Source::Tenant => {
                let t = self.tenant.as_ref().map_or("", |t| t.tenant.as_str());
                format!("forbidden by tenant {t}'s policy (tenants.{t}.policy)")
            }
        }
    }

    /// Whether `source` has a say on `cap` (a policy without a list has none).
    fn consulted(&self, source: Source, cap: Cap) -> bool {
        match (source, cap) {
            (Source::Policy, Cap::Http) => self.policy_http,
            (Source::Policy, Cap::Env) => self.policy_env,
            (Source::Policy, Cap::Fs) => self.policy_fs,
            (Source::Tenant, cap) => self.tenant.as_ref().is_some_and(|t| match cap {
                Cap::Http => t.http,
                Cap::Env => t.env,
                Cap::Fs => t.fs,
            }),
            _ => true,
        }
    }

    /// The policies first: their refusals are the ones no trust mode softens,
    /// so they must be found even when the others refuse too.
    fn sources(&self) -> Vec<(Source, &Parsed)> {
        let mut sources = vec![(Source::Policy, &self.policy)];
        if let Some(t) = &self.tenant {
            sources.push((Source::Tenant, &t.lists));
        }
        sources.push((Source::Declared, &self.declared));
        sources.push((Source::Approved, &self.approved));
        sources
    }

    fn denial(&self, source: Source, what: impl std::fmt::Display) -> Denial {
        Denial {
            source,
            reason: format!("{what} {}", self.refusal(source)),
        }
    }

    pub fn storage(&self) -> Result<(), Denial> {
        for (source, list) in self.sources() {
            if !list.storage {
                return Err(self.denial(source, "storage"));
            }
        }
        Ok(())
    }

    /// Whether the plugin's command tools may run. No trust mode softens
    /// this: a command runs only when declared, approved and allowed.
    pub fn shell(&self) -> Result<(), Denial> {
        for (source, list) in self.sources() {
            if !list.shell {
                return Err(self.denial(source, "shell (running commands)"));
            }
        }
        Ok(())
    }

    /// The environment patterns the plugin declared (`NAME` or `PREFIX_*`):
    /// where a WASI guest's starting environment is looked for. Each name
    /// found is still checked with [`Grant::env`].
    pub fn declared_env(&self) -> &[String] {
        &self.declared.env
    }

    pub fn env(&self, name: &str) -> Result<(), Denial> {
        for (source, list) in self.sources() {
            if !self.consulted(source, Cap::Env) {
                continue;
            }
            if !policy::env_allowed(&list.env, name) {
                return Err(self.denial(source, format_args!("environment variable {name}")));
            }
        }
        Ok(())
    }

    /// Whether every source allows `target`; `Named` only if each names the
    /// host, `Policy` if tarkd's own policy names it as well.
    pub fn http(&self, target: &Target) -> Result<Allow, Denial> {
        let mut allow = Allow::Named;
        let mut policy_named = false;
        for (source, list) in self.sources() {
            if !self.consulted(source, Cap::Http) {
                continue;
            }
            match hosts::allowed(&list.http, target) {
                Ok(Allow::Covered) => allow = Allow::Covered,
                Ok(_) => policy_named |= source == Source::Policy,
                Err(r) if source == Source::Declared => {
                    return Err(Denial {
                        source,
                        reason: r.0,
                    });
                }
                Err(_) if matches!(source, Source::Policy | Source::Tenant) => {
                    let url = &target.url;
                    return Err(self.denial(source, format_args!("http to {url} is")));
                }
                Err(r) => return Err(self.denial(source, format_args!("{r}:"))),
            }
        }
        Ok(match allow {
            Allow::Named if policy_named => Allow::Policy,
            other => other,
        })
    }

    /// The path lists that must all allow reading `path` (the policy's only
    /// when it has one), each with its refusal and whether the trust mode
    /// softens it.
    pub fn fs_sources(&self, path: &str) -> Vec<PathList<'_>> {
        self.sources()
            .into_iter()
            .filter(|(s, _)| self.consulted(*s, Cap::Fs))
            .map(|(s, l)| {
                let refusal = format!("reading {path:?} {}", self.refusal(s));
                (refusal, l.fs_read.as_slice(), s.softened_by(self.trust))
            })
            .collect()
    }
}

/// Items of `declared` that `approved` does not cover: what an install or an
/// update would need the operator to approve.
pub fn beyond(declared: &Capabilities, approved: &Capabilities) -> Vec<String> {
    split(declared, approved).1
}

/// The part of `approved` that `declared` covers: what an approval still grants
/// after an update dropped some of what the plugin declared.
pub fn within(approved: &Capabilities, declared: &Capabilities) -> Capabilities {
    split(approved, declared).0
}

/// Splits `items` into what `cover` covers and the rest, written as items
/// (`storage`, `http=HOST`, `env=NAME`, `fs_read=PATH`, `shell`).
fn split(items: &Capabilities, cover: &Capabilities) -> (Capabilities, Vec<String>) {
    let mut rest = Vec::new();
    if items.storage && !cover.storage {
        rest.push("storage".to_owned());
    }
    let rules: Vec<HostRule> = cover
        .http
        .iter()
        .filter_map(|h| hosts::parse_rule(h).ok())
        .collect();
    let mut list = |kind: &str, list: &[String], covered: &dyn Fn(&str) -> bool| {
        let (kept, left): (Vec<String>, Vec<String>) =
            list.iter().cloned().partition(|i| covered(i));
        rest.extend(left.into_iter().map(|i| format!("{kind}={i}")));
        kept
    };
    let kept = Capabilities {
        storage: items.storage && cover.storage,
        http: list("http", &items.http, &|h| {
            hosts::parse_rule(h).is_ok_and(|h| rules.iter().any(|r| r.covers(&h)))
        }),
        env: list("env", &items.env, &|e| {
            cover.env.iter().any(|c| policy::env_covers(c, e))
        }),
        fs_read: list("fs_read", &items.fs_read, &|f| {
            cover.fs_read.iter().any(|c| policy::path_covers(c, f))
        }),
        shell: items.shell && cover.shell,
    };
    if items.shell && !cover.shell {
        rest.push("shell".to_owned());
    }
    (kept, rest)
}

/// The current grant of every plugin, shared by all brokers: a change (an
/// approval narrowed, a plugin updated) applies to the next host call.
#[derive(Debug, Default)]
pub struct GrantTable {
    grants: RwLock<HashMap<String, Arc<Grant>>>,
}

impl GrantTable {
    pub fn get(&self, plugin: &str) -> Option<Arc<Grant>> {
        let g = self.grants.read().unwrap_or_else(|p| p.into_inner());
        g.get(plugin).cloned()
    }

    pub fn set(&self, plugin: &str, grant: Grant) {
        let mut g = self.grants.write().unwrap_or_else(|p| p.into_inner());
        g.insert(plugin.to_owned(), Arc::new(grant));
    }

    pub fn remove(&self, plugin: &str) {
        let mut g = self.grants.write().unwrap_or_else(|p| p.into_inner());
        g.remove(plugin);
    }
}

#[cfg(test)]
mod tests;
