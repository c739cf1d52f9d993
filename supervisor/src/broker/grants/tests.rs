use super::*;

fn caps(storage: bool, http: &[&str], env: &[&str], fs: &[&str]) -> Capabilities {
    let v = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
    Capabilities {
        storage,
        http: v(http),
        env: v(env),
        fs_read: v(fs),
        shell: false,
    }
}

fn target(url: &str) -> Target {
    hosts::parse_target(url, false).unwrap_or_else(|r| panic!("{url}: {r}"))
}

#[test]
fn each_source_must_allow_and_the_refusal_names_which_did_not() {
    let declared = caps(
        true,
        &["api.example.com", "*.cdn.example.com", "localhost"],
        &["A_*", "B"],
        &[],
    );
    let approved = caps(
        true,
        &["api.example.com", "img.cdn.example.com"],
        &["A_X"],
        &[],
    );
    let policy = PolicyConfig {
        http: Some(vec!["*.example.com".into()]),
        ..PolicyConfig::default()
    };
    let g = Grant::new("p", &declared, Some(&approved), &policy);
    assert_eq!(
        g.http(&target("https://api.example.com/")),
        Ok(Allow::Covered)
    );
    assert_eq!(
        g.http(&target("https://img.cdn.example.com/")),
        Ok(Allow::Covered)
    );
    let cases = [
        (
            "https://other.cdn.example.com/",
            "not approved by the operator",
        ),
        ("https://evil.com/", "forbidden by tarkd's policy"),
        (
            "https://localhost/",
            "http to https://localhost/ is forbidden by tarkd's policy",
        ),
    ];
    for (url, want) in cases {
        let got = g.http(&target(url));
        assert!(
            got.as_ref().is_err_and(|r| r.reason.contains(want)),
            "{url}: {got:?}"
        );
    }
    assert_eq!(g.env("A_X"), Ok(()));
    assert!(
        g.env("A_Y")
            .is_err_and(|e| e.reason.contains("not approved") && e.softened_by(Trust::Warn))
    );
    assert!(
        g.env("C")
            .is_err_and(|e| e.reason.contains("not declared") && !e.softened_by(Trust::Enforced))
    );
    assert_eq!(g.storage(), Ok(()));
}

#[test]
fn policy_caps_and_forbids() {
    let declared = caps(true, &["localhost"], &["A"], &["/etc/x"]);
    let forbid = PolicyConfig {
        storage: false,
        http: Some(vec![]),
        env: Some(vec![]),
        fs_read: Some(vec![]),
        ..PolicyConfig::default()
    };
    let g = Grant::new("p", &declared, Some(&declared), &forbid);
    assert!(
        g.storage()
            .is_err_and(|e| e.reason.contains("policy") && !e.softened_by(Trust::Disabled))
    );
    assert!(
        g.env("A")
            .is_err_and(|e| e.reason.contains("policy") && !e.softened_by(Trust::Warn))
    );
    let t = target("https://localhost/");
    assert!(
        g.http(&t)
            .is_err_and(|r| r.reason.contains("policy") && r.source == Source::Policy)
    );
    assert_eq!(g.fs_sources("/x").len(), 3);
    // No lists: the policy caps nothing and exact names stay Named.
    let open = Grant::new("p", &declared, Some(&declared), &PolicyConfig::default());
    assert_eq!(open.http(&t), Ok(Allow::Named));
    assert_eq!(open.fs_sources("/x").len(), 2);
}

#[test]
fn unapproved_plugins_get_nothing() {
    let declared = caps(true, &["api.example.com"], &["A"], &["/x"]);
    let g = Grant::new("p", &declared, None, &PolicyConfig::default());
    assert!(
        g.storage()
            .is_err_and(|e| e.reason.contains("tarkctl plugin grants p"))
    );
    assert!(g.env("A").is_err());
    assert!(g.http(&target("https://api.example.com/")).is_err());
}

#[test]
fn beyond_lists_what_needs_approval() {
    let declared = caps(
        true,
        &["api.example.com", "*.b.com", "http://localhost:1"],
        &["A_*", "B"],
        &["~/x", "/etc/y"],
    );
    assert!(beyond(&declared, &declared).is_empty());
    let wider = caps(
        true,
        &["*.example.com", "*.b.com", "http://localhost:1"],
        &["A_*", "B"],
        &["~", "/etc"],
    );
    assert!(beyond(&declared, &wider).is_empty());
    let narrow = caps(false, &["api.example.com"], &["A_X"], &["~/x/sub"]);
    assert_eq!(
        beyond(&declared, &narrow),
        [
            "storage",
            "http=*.b.com",
            "http=http://localhost:1",
            "env=A_*",
            "env=B",
            "fs_read=~/x",
            "fs_read=/etc/y"
        ]
    );
}

#[test]
fn policy_validation_names_the_entry() {
    let bad = [
        PolicyConfig {
            http: Some(vec!["a.com/x".into()]),
            ..PolicyConfig::default()
        },
        PolicyConfig {
            env: Some(vec!["*".into()]),
            ..PolicyConfig::default()
        },
        PolicyConfig {
            fs_read: Some(vec!["rel".into()]),
            ..PolicyConfig::default()
        },
    ];
    for p in bad {
        assert!(p.validate().is_err(), "{p:?}");
    }
    assert!(PolicyConfig::default().validate().is_ok());
}

#[test]
fn within_keeps_what_the_declaration_still_covers() {
    let approved = caps(
        true,
        &["api.example.com", "old.example.com"],
        &["A_X", "B"],
        &["~/x/y", "/z"],
    );
    let declared = caps(true, &["*.example.com"], &["A_*"], &["~/x"]);
    let kept = within(&approved, &declared);
    assert_eq!(
        kept,
        caps(
            true,
            &["api.example.com", "old.example.com"],
            &["A_X"],
            &["~/x/y"]
        )
    );
    assert!(beyond(&kept, &declared).is_empty());
    let none = within(&approved, &Capabilities::default());
    assert_eq!(none, Capabilities::default());
}

/// A plugin naming a host exactly may reach its private addresses; a cloud
/// metadata service only when tarkd's own policy names the host as well.
#[test]
fn only_the_policy_opens_what_a_metadata_service_holds() {
    let declared = caps(true, &["http://169.254.169.254"], &[], &[]);
    let t = target("http://169.254.169.254/latest/meta-data/");
    let plugin_only = Grant::new("p", &declared, Some(&declared), &PolicyConfig::default());
    assert_eq!(plugin_only.http(&t), Ok(Allow::Named));
    let covering = PolicyConfig {
        http: Some(vec!["*.example.com".into(), "169.254.169.254".into()]),
        ..PolicyConfig::default()
    };
    let scheme_differs = Grant::new("p", &declared, Some(&declared), &covering);
    assert!(
        scheme_differs.http(&t).is_err(),
        "the policy allows https only"
    );
    let naming = PolicyConfig {
        http: Some(vec!["http://169.254.169.254".into()]),
        ..PolicyConfig::default()
    };
    let opened = Grant::new("p", &declared, Some(&declared), &naming);
    assert_eq!(opened.http(&t), Ok(Allow::Policy));
}

/// A tenant's own policy narrows every plugin acting for it, is named in the
/// refusal, and no trust mode softens it; a list it lacks caps nothing.
#[test]
fn a_tenants_policy_narrows_and_is_never_softened() {
    let declared = caps(
        true,
        &["api.example.com", "cdn.example.com"],
        &["A", "B"],
        &["/data"],
    );
    let g = Grant::new("p", &declared, Some(&declared), &PolicyConfig::default());
    let policy = crate::config::tenants::TenantPolicy {
        storage: Some(false),
        http: Some(vec!["api.example.com".into()]),
        env: Some(vec!["A".into()]),
        fs_read: None,
        require_signed: None,
        shell: None,
    };
    let t = g.for_tenant("team-a", &policy);
    let named = "forbidden by tenant team-a's policy (tenants.team-a.policy)";
    assert_eq!(
        t.http(&target("https://api.example.com/")),
        Ok(Allow::Named)
    );
    let cdn = t.http(&target("https://cdn.example.com/"));
    assert!(
        cdn.as_ref()
            .is_err_and(|d| d.source == Source::Tenant && d.reason.contains(named)),
        "{cdn:?}"
    );
    assert_eq!(t.env("A"), Ok(()));
    assert!(
        t.env("B")
            .is_err_and(|d| d.reason.contains(named) && !d.softened_by(Trust::Warn))
    );
    assert!(t.storage().is_err_and(|d| d.source == Source::Tenant));
    // No fs_read list: the tenant's policy has no say on reads.
    assert_eq!(t.fs_sources("/data/x").len(), 2);
    // The grant itself (other tenants) is unchanged.
    assert!(g.http(&target("https://cdn.example.com/")).is_ok());
    assert!(g.storage().is_ok());
}

#[test]
fn shell_runs_only_declared_approved_and_allowed_whatever_the_trust_mode() {
    let with = |shell| Capabilities {
        shell,
        ..Capabilities::default()
    };
    let tenant = |shell| crate::config::tenants::TenantPolicy {
        shell,
        ..Default::default()
    };
    // (declared, approved, policy.shell, tenant's shell, trust) → refusing source
    let table = [
        (true, Some(true), true, None, Trust::Enforced, None),
        (true, Some(true), true, Some(true), Trust::Enforced, None),
        (
            false,
            Some(true),
            true,
            None,
            Trust::Enforced,
            Some(Source::Declared),
        ),
        (
            true,
            Some(false),
            true,
            None,
            Trust::Enforced,
            Some(Source::Approved),
        ),
        (
            true,
            None,
            true,
            None,
            Trust::Enforced,
            Some(Source::Approved),
        ),
        (
            true,
            Some(true),
            false,
            None,
            Trust::Enforced,
            Some(Source::Policy),
        ),
        (
            true,
            Some(true),
            true,
            Some(false),
            Trust::Enforced,
            Some(Source::Tenant),
        ),
        (
            true,
            Some(false),
            true,
            None,
            Trust::Warn,
            Some(Source::Approved),
        ),
        (
            false,
            None,
            true,
            None,
            Trust::Disabled,
            Some(Source::Declared),
        ),
    ];
    for (declared, approved, policy_shell, tenant_shell, trust, refused) in table {
        let policy = PolicyConfig {
            shell: policy_shell,
            trust,
            ..PolicyConfig::default()
        };
        let approved = approved.map(with);
        let mut g = Grant::new("git-helper", &with(declared), approved.as_ref(), &policy);
        if tenant_shell.is_some() {
            g = g.for_tenant("team-a", &tenant(tenant_shell));
        }
        let got = g.shell().err();
        let case = (
            declared,
            approved.is_some(),
            policy_shell,
            tenant_shell,
            trust,
        );
        assert_eq!(got.as_ref().map(|d| d.source), refused, "{case:?}");
        if let Some(d) = got {
            assert!(d.reason.starts_with("shell (running commands) "), "{d:?}");
        }
    }
}
