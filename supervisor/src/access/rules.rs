//! What each RPC of the agent API needs: the least role, and whether it acts
//! for one tenant (the caller's, chosen by `tark-tenant` among its own) or on
//! tarkd as a whole. One table, checked against the `.proto` so no RPC is
//! left out; an RPC missing from it is refused to everyone but admins.

use super::principals::{Principal, Role};

/// The least role an RPC needs.
pub type Rule = (&'static str, &'static str, Role);

/// `(service, method, least role)`. Changing what is installed or granted
/// changes every tenant, so it is an admin's (until plugins can be enabled
/// per tenant); status, audit, restarts and reading grants are an operator's,
/// scoped to its tenants; using plugins is an agent's.
pub const RULES: &[Rule] = &[
    ("Plugins", "ListPlugins", Role::Agent),
    ("Plugins", "GetPlugin", Role::Agent),
    ("Plugins", "InstallPlugin", Role::Admin),
    ("Plugins", "RemovePlugin", Role::Admin),
    ("Plugins", "PluginHistory", Role::Operator),
    ("Plugins", "RollbackPlugin", Role::Admin),
    ("Plugins", "AddTrustedKey", Role::Admin),
    ("Plugins", "ListTrustedKeys", Role::Operator),
    ("Plugins", "RevokeTrustedKey", Role::Admin),
    ("Plugins", "EnablePlugin", Role::Admin),
    ("Plugins", "DisablePlugin", Role::Admin),
    ("Plugins", "ReloadPlugins", Role::Admin),
    ("Plugins", "RestartPlugin", Role::Operator),
    ("Plugins", "GetGrants", Role::Operator),
    ("Plugins", "SetGrants", Role::Admin),
    ("Tools", "ListTools", Role::Agent),
    ("Tools", "InvokeTool", Role::Agent),
    ("Auth", "GetAuthStatus", Role::Agent),
    ("Auth", "StartDeviceFlow", Role::Agent),
    ("Auth", "PollDeviceFlow", Role::Agent),
    ("Auth", "GetToken", Role::Agent),
    ("Auth", "Logout", Role::Agent),
    ("Auth", "StartOAuthLogin", Role::Agent),
    ("Auth", "CompleteOAuthLogin", Role::Agent),
    ("Providers", "ListProviders", Role::Agent),
    ("Providers", "ListModels", Role::Agent),
    ("Providers", "Chat", Role::Agent),
    ("Providers", "ChatStream", Role::Agent),
    ("Providers", "GetCredentials", Role::Agent),
    ("Hooks", "DispatchHook", Role::Agent),
    ("Channels", "ListChannels", Role::Agent),
    ("Channels", "StartChannel", Role::Agent),
    ("Channels", "StopChannel", Role::Agent),
    ("Channels", "HandleWebhook", Role::Agent),
    ("Channels", "PollChannel", Role::Agent),
    ("Channels", "SendMessage", Role::Agent),
    ("Channels", "SubscribeChannel", Role::Agent),
    ("System", "Status", Role::Operator),
    ("System", "Audit", Role::Operator),
    ("System", "Metrics", Role::Admin),
    ("System", "CheckHost", Role::Admin),
];

/// The standard gRPC services tarkd serves beside its own, by full name:
/// health and reflection tell any principal what it could learn from the
/// `.proto` and from calling.
pub const STANDARD: &[Rule] = &[
    ("grpc.health.v1.Health", "Check", Role::Agent),
    ("grpc.health.v1.Health", "Watch", Role::Agent),
    (
        "grpc.reflection.v1.ServerReflection",
        "ServerReflectionInfo",
        Role::Agent,
    ),
    (
        "grpc.reflection.v1alpha.ServerReflection",
        "ServerReflectionInfo",
        Role::Agent,
    ),
];

/// RPCs a call of which may stay open indefinitely (a stream, or a poll
/// that waits): each holds memory and a stream until it ends, so a
/// principal may have only `api.max_streams_per_principal` of them at once.
pub const LONG_LIVED: &[&str] = &[
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/tark.plugin.v1.Providers/ChatStream",
    "/tark.plugin.v1.Channels/SubscribeChannel",
    "/tark.plugin.v1.Auth/PollDeviceFlow",
];

/// Whether a call of this path may stay open indefinitely.
pub fn long_lived(path: &str) -> bool {
    LONG_LIVED.contains(&path)
}

/// The agent API's package: its paths are `/tark.plugin.v1.<Service>/<Method>`.
const PACKAGE: &str = "tark.plugin.v1";

/// The least role for a request path; admin for anything in neither table.
pub fn needed(path: &str) -> Role {
    rule(path).unwrap_or(Role::Admin)
}

/// Whether a path is an RPC tarkd serves (metrics label only these).
pub fn known(path: &str) -> bool {
    rule(path).is_some()
}

fn rule(path: &str) -> Option<Role> {
    let (service, method) = path.strip_prefix('/').and_then(|p| p.split_once('/'))?;
    let ours = service
        .strip_prefix(PACKAGE)
        .and_then(|s| s.strip_prefix('.'))
        .and_then(|s| RULES.iter().find(|(rs, rm, _)| *rs == s && *rm == method));
    let standard = || {
        STANDARD
            .iter()
            .find(|(rs, rm, _)| *rs == service && *rm == method)
    };
    ours.or_else(standard).map(|r| r.2)
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The peer is no configured principal.
    Unknown(String),
    /// The principal may not do this, or not for that tenant.
    Denied(String),
}

/// The tenant an identified caller's request acts for, or why it may not be
/// made: the role first, then the tenant it names.
pub fn decide(who: &Principal, path: &str, asked: Option<&str>) -> Result<String, Refusal> {
    let need = needed(path);
    if who.role < need {
        return Err(Refusal::Denied(format!(
            "principal {} ({}) may not call {path}: it needs the {need} role",
            who.name, who.role
        )));
    }
    who.tenant(asked).map_err(Refusal::Denied)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every RPC of the agent API's `.proto`, as `(service, method)`.
    fn rpcs() -> Vec<(String, String)> {
        let proto = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proto/tark/plugin/v1/plugin.proto"
        );
        let text = std::fs::read_to_string(proto).unwrap_or_default();
        let mut service = String::new();
        let mut out = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.trim_end_matches('{').trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().unwrap_or("").trim().to_owned();
                out.push((service.clone(), method));
            }
        }
        out
    }

    #[test]
    fn every_streaming_rpc_is_long_lived() {
        let proto = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proto/tark/plugin/v1/plugin.proto"
        );
        let text = std::fs::read_to_string(proto).unwrap_or_default();
        let mut service = String::new();
        let mut streaming = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.trim_end_matches('{').trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("rpc ")
                && line.contains("returns (stream ")
            {
                let method = rest.split('(').next().unwrap_or("").trim();
                streaming.push(format!("/{PACKAGE}.{service}/{method}"));
            }
        }
        assert!(streaming.len() >= 2, "{streaming:?}");
        for path in &streaming {
            assert!(long_lived(path), "{path} streams but is not long-lived");
        }
        for path in LONG_LIVED {
            assert!(known(path), "{path} is no RPC tarkd serves");
        }
    }

    #[test]
    fn every_rpc_has_exactly_one_rule() {
        let rpcs = rpcs();
        assert!(rpcs.len() >= 30, "read {} RPCs from the proto", rpcs.len());
        for (s, m) in &rpcs {
            let n = RULES
                .iter()
                .filter(|(rs, rm, _)| rs == s && rm == m)
                .count();
            assert_eq!(n, 1, "{s}/{m} has {n} rules");
        }
        for (s, m, _) in RULES {
            assert!(
                rpcs.iter().any(|(ps, pm)| ps == s && pm == m),
                "{s}/{m} is not in the proto"
            );
        }
    }

    /// Every RPC × role × the caller's own tenant, another tenant, none named.
    #[test]
    fn every_rpc_by_role_and_tenant() {
        let principal = |role| Principal {
            name: format!("{role}-p"),
            role,
            tenants: if role == Role::Admin {
                vec![]
            } else {
                vec!["own".into(), "own2".into()]
            },
        };
        for (service, method, need) in RULES {
            let path = format!("/tark.plugin.v1.{service}/{method}");
            for role in [Role::Agent, Role::Operator, Role::Admin] {
                let who = principal(role);
                for (asked, other) in [(Some("own2"), false), (Some("other"), true), (None, false)]
                {
                    let got = decide(&who, &path, asked);
                    let want_ok = role >= *need && (!other || role == Role::Admin);
                    assert_eq!(got.is_ok(), want_ok, "{path} {role} {asked:?}: {got:?}");
                    match (&got, asked) {
                        (Ok(t), Some(a)) => assert_eq!(t, a),
                        (Ok(t), None) if role == Role::Admin => assert_eq!(t, "default"),
                        (Ok(t), None) => assert_eq!(t, "own", "the principal's default"),
                        (Err(Refusal::Denied(why)), _) => assert!(why.contains(&who.name)),
                        (Err(e), _) => panic!("{path} {role}: {e:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_paths_are_for_admins_only() {
        for path in [
            "/tark.plugin.v1.Tools/Nope",
            "/tark.plugin.v1.Nope/InvokeTool",
            "/tark.plugin.v2.Tools/InvokeTool",
            "/tark.plugin.v1Tools/InvokeTool",
            "",
            "/",
            "Tools/InvokeTool",
        ] {
            assert_eq!(needed(path), Role::Admin, "{path}");
        }
        assert_eq!(needed("/tark.plugin.v1.Tools/InvokeTool"), Role::Agent);
        assert_eq!(needed("/grpc.health.v1.Health/Check"), Role::Agent);
        assert_eq!(
            needed("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Role::Agent
        );
        for path in [
            "/grpc.health.v1.Health/Nope",
            "/tark.plugin.v1.grpc.health.v1.Health/Check",
            "/Health/Check",
        ] {
            assert_eq!(needed(path), Role::Admin, "{path}");
        }
    }
}
