//! Who is calling: a connection's peer credentials (`SO_PEERCRED` on the Unix
//! socket), or the names of its verified client certificate (the TCP listener's
//! mutual TLS), matched against the configured `[[principals]]`. The tenants a
//! caller may act for come from here, never from the request: `tark-tenant`
//! only chooses among them.

use serde::Deserialize;

/// What a principal may do, each role including the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Use the plugins (tools, providers, auth, hooks, channels) for its tenants.
    Agent,
    /// Also see status and audit, restart workers and read grants, for its tenants.
    Operator,
    /// Everything, for every tenant: install, grants, every tenant's data.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Agent => "agent",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// One `[[principals]]` entry of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    pub name: String,
    /// Peer uids that are this principal.
    #[serde(default)]
    pub uids: Vec<u32>,
    /// Peer primary gids that are this principal (after every uid match).
    #[serde(default)]
    pub gids: Vec<u32>,
    /// An identity of the client certificate that is this principal on the
    /// TCP listener: a DNS name (a DNS SAN; the CN only for a certificate
    /// without SANs) or, with `://`, a URI SAN such as a SPIFFE ID.
    #[serde(default)]
    pub cert: Option<String>,
    /// Tenants it may act for; the first is its default. An admin may act
    /// for any tenant whatever this says.
    #[serde(default)]
    pub tenants: Vec<String>,
    pub role: Role,
}

/// An identified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// The tenants it may act for, its default first; empty for an admin
    /// (every tenant, default `default`).
    pub tenants: Vec<String>,
}

/// The tenant a request acts for when an admin names none.
pub const DEFAULT_TENANT: &str = "default";

impl Principal {
    /// Whether it may act for, and see, `tenant`.
    pub fn may_act_for(&self, tenant: &str) -> bool {
        self.role == Role::Admin || self.tenants.iter().any(|t| t == tenant)
    }

    /// The tenant a request acts for: the one it names if the principal may
    /// act for it, else its default.
    pub fn tenant(&self, asked: Option<&str>) -> Result<String, String> {
        match asked {
            Some(t) if self.may_act_for(t) => Ok(t.to_owned()),
            Some(t) => Err(format!(
                "principal {} may not act for tenant {t} (its tenants: {})",
                self.name,
                self.tenants.join(", ")
            )),
            None => Ok(self
                .tenants
                .first()
                .map_or(DEFAULT_TENANT, String::as_str)
                .to_owned()),
        }
    }
}

/// The credentials of a connection's peer, from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
}

/// Problems with the `[[principals]]` table, each naming the entry.
pub fn validate(principals: &[PrincipalConfig]) -> Vec<String> {
    let mut problems = Vec::new();
    for p in principals {
        if p.uids.is_empty() && p.gids.is_empty() && p.cert.is_none() {
            problems.push(format!("principal {}: names no uids, gids or cert", p.name));
        }
        if p.role != Role::Admin && p.tenants.is_empty() {
            problems.push(format!(
                "principal {} ({}) needs at least one tenant",
                p.name, p.role
            ));
        }
        for t in &p.tenants {
            if !crate::plugins::manifest::valid_name(t) {
                problems.push(format!(
                    "principal {}: tenant {t:?} must be lowercase letters, digits and hyphens",
                    p.name
                ));
            }
        }
    }
    problems
}

/// The principal a peer is: the first entry naming its uid, else the first
/// naming its gid, else root and tarkd's own uid are admins; anyone else is
/// no one (refused).
pub fn identify(principals: &[PrincipalConfig], peer: Peer, own_uid: u32) -> Option<Principal> {
    let of = |p: &PrincipalConfig| Principal {
        name: p.name.clone(),
        role: p.role,
        tenants: p.tenants.clone(),
    };
    if let Some(p) = principals.iter().find(|p| p.uids.contains(&peer.uid)) {
        return Some(of(p));
    }
    if let Some(p) = principals.iter().find(|p| p.gids.contains(&peer.gid)) {
        return Some(of(p));
    }
    let builtin = |name: &str| Principal {
        name: name.to_owned(),
        role: Role::Admin,
        tenants: Vec::new(),
    };
    if peer.uid == 0 {
        Some(builtin("root"))
    } else if peer.uid == own_uid {
        Some(builtin("tarkd"))
    } else {
        None
    }
}

/// The principal a verified client certificate is: the first entry whose
/// `cert` is one of the certificate's identities ([`super::certs`]). Never a
/// built-in admin.
pub fn identify_cert(
    principals: &[PrincipalConfig],
    names: &[super::certs::Name],
) -> Option<Principal> {
    principals
        .iter()
        .find(|p| {
            p.cert
                .as_ref()
                .is_some_and(|c| names.iter().any(|n| n.is(c)))
        })
        .map(|p| Principal {
            name: p.name.clone(),
            role: p.role,
            tenants: p.tenants.clone(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<PrincipalConfig> {
        let p = |name: &str, uids: &[u32], gids: &[u32], tenants: &[&str], role| PrincipalConfig {
            name: name.into(),
            uids: uids.to_vec(),
            gids: gids.to_vec(),
            cert: None,
            tenants: tenants.iter().map(|t| (*t).to_owned()).collect(),
            role,
        };
        let mut remote = p("remote", &[], &[], &["team-r"], Role::Agent);
        remote.cert = Some("agent-r.example".into());
        vec![
            p("agent-a", &[1001], &[], &["team-a", "team-a2"], Role::Agent),
            p("ops", &[], &[2000], &["team-b"], Role::Operator),
            p("shared", &[1002], &[2000], &["team-c"], Role::Agent),
            remote,
        ]
    }

    #[test]
    fn peers_are_identified() {
        let own = 999;
        // (uid, gid, principal name)
        let cases: &[(u32, u32, Option<&str>)] = &[
            (1001, 1001, Some("agent-a")),
            (1001, 2000, Some("agent-a")), // a uid entry wins over a gid one
            (1002, 2000, Some("shared")),  // the first uid match
            (1003, 2000, Some("ops")),     // by primary gid
            (0, 0, Some("root")),
            (999, 999, Some("tarkd")),
            (1003, 1003, None),
            (65534, 65534, None),
        ];
        for &(uid, gid, want) in cases {
            let got = identify(&table(), Peer { uid, gid }, own);
            assert_eq!(got.as_ref().map(|p| p.name.as_str()), want, "{uid}:{gid}");
        }
        // root configured as a principal is that principal, not an admin.
        let mut t = table();
        t[0].uids.push(0);
        let root = identify(&t, Peer { uid: 0, gid: 0 }, own);
        assert_eq!(root.map(|p| p.role), Some(Role::Agent));
    }

    #[test]
    fn certificates_are_identified_by_name_only() {
        let names = |n: &[&str]| {
            n.iter()
                .map(|s| super::super::certs::Name::Dns(s.to_ascii_lowercase()))
                .collect::<Vec<_>>()
        };
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["agent-r.example"], Some("remote")),
            (&["other.example", "agent-r.example"], Some("remote")),
            (&["agent-r.example.evil"], None),
            (&["AGENT-R.EXAMPLE"], Some("remote")), // DNS names ignore case
            (&["root"], None),
            (&["agent-a"], None), // a principal's name is not a certificate name
            (&[], None),
        ];
        for (n, want) in cases {
            let got = identify_cert(&table(), &names(n));
            assert_eq!(got.as_ref().map(|p| p.name.as_str()), *want, "{n:?}");
        }
    }

    #[test]
    fn tenants_are_chosen_among_the_principals() {
        let agent = identify(&table(), Peer { uid: 1001, gid: 1 }, 0);
        let Some(agent) = agent else {
            panic!("agent-a not identified");
        };
        assert_eq!(agent.tenant(None).as_deref(), Ok("team-a"));
        assert_eq!(agent.tenant(Some("team-a2")).as_deref(), Ok("team-a2"));
        assert!(
            agent
                .tenant(Some("team-b"))
                .is_err_and(|e| e.contains("agent-a may not act for tenant team-b"))
        );
        let Some(root) = identify(&[], Peer { uid: 0, gid: 0 }, 5) else {
            panic!("root not identified");
        };
        assert_eq!(root.tenant(None).as_deref(), Ok("default"));
        assert_eq!(root.tenant(Some("anyone")).as_deref(), Ok("anyone"));
    }

    #[test]
    fn the_table_is_checked() {
        let mut t = table();
        t.push(PrincipalConfig {
            name: "empty".into(),
            uids: vec![],
            gids: vec![],
            cert: None,
            tenants: vec!["Bad Name".into()],
            role: Role::Agent,
        });
        t.push(PrincipalConfig {
            name: "lonely".into(),
            uids: vec![7],
            gids: vec![],
            cert: None,
            tenants: vec![],
            role: Role::Operator,
        });
        let problems = validate(&t);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("empty: names no uids, gids or cert"));
        assert!(problems[1].contains("\"Bad Name\""));
        assert!(problems[2].contains("lonely (operator) needs at least one tenant"));
    }
}
