//! Identity from the connection, through real processes with real uids: tarkd
//! (as root) configured with an agent and an operator principal, and tarkctl
//! run as each of their uids and as a uid no principal names. A caller acts
//! only for its own tenants, sees only their workers and audit entries, and
//! every refusal is audited with the principal's name.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use tark_tests::{Options, PluginFiles, Tarkd};

const AGENT_A: u32 = 60_101;
const OPS_B: u32 = 60_102;
const NOBODY: u32 = 60_103;

/// tarkctl as `uid` (and the same gid; std drops root's supplementary groups).
fn tarkctl_as(t: &Tarkd, uid: u32, args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(tark_tests::binary("tarkctl")?)
        .arg("--socket")
        .arg(&t.socket)
        .args(args)
        .uid(uid)
        .gid(uid)
        .output()?)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs as `uid` and expects success; its stdout.
fn ok(t: &Tarkd, uid: u32, args: &[&str]) -> anyhow::Result<String> {
    let o = tarkctl_as(t, uid, args)?;
    anyhow::ensure!(o.status.success(), "{args:?} as {uid}: {}", text(&o));
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Runs as `uid` and expects a refusal containing `why`.
fn refused(t: &Tarkd, uid: u32, args: &[&str], why: &str) -> anyhow::Result<()> {
    let o = tarkctl_as(t, uid, args)?;
    let shown = text(&o);
    anyhow::ensure!(
        !o.status.success() && shown.contains(why),
        "{args:?} as {uid} should be refused with {why:?}: {shown}"
    );
    Ok(())
}

/// Tenants of the running workers of `plugin` in a `tarkctl --json status`.
fn worker_tenants(status: &str, plugin: &str) -> anyhow::Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(status)?;
    let mut tenants: Vec<String> = v["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["id"] == plugin)
        .flat_map(|p| p["workers"].as_array().cloned().unwrap_or_default())
        .filter_map(|w| w["tenant"].as_str().map(str::to_owned))
        .collect();
    tenants.sort();
    Ok(tenants)
}

#[test]
fn callers_act_only_for_their_own_tenants() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let config = format!(
        r#"
[api]
socket_mode = 0o666

[[principals]]
name = "agent-a"
uids = [{AGENT_A}]
tenants = ["team-a"]
role = "agent"

[[principals]]
name = "ops-b"
uids = [{OPS_B}]
tenants = ["team-b"]
role = "operator"
"#
    );
    let t = Tarkd::start(
        vec![PluginFiles::notes()?, PluginFiles::echo()?],
        Options::config(&config),
    )?;
    // The test's temp dir is 0700: let the other uids reach the socket in it.
    std::fs::set_permissions(t.dir.path(), std::fs::Permissions::from_mode(0o711))?;

    // root is an admin: it may act for any tenant.
    for tenant in ["team-a", "team-b"] {
        ok(
            &t,
            0,
            &[
                "--tenant",
                tenant,
                "invoke",
                "notes_save",
                "--args",
                &format!(r#"{{"title":"t","body":"{tenant} secret"}}"#),
            ],
        )?;
    }

    // The agent: its tenant by default, and only its own.
    let mine = ok(
        &t,
        AGENT_A,
        &["invoke", "notes_get", "--args", r#"{"title":"t"}"#],
    )?;
    assert!(mine.contains("team-a secret"), "{mine}");
    ok(&t, AGENT_A, &["chat", "echo", "--model", "echo", "hi"])?;
    let other = "principal agent-a may not act for tenant team-b";
    for args in [
        &[
            "--tenant",
            "team-b",
            "invoke",
            "notes_get",
            "--args",
            r#"{"title":"t"}"#,
        ][..],
        &["--tenant", "team-b", "tools"],
        &[
            "--tenant", "team-b", "chat", "echo", "--model", "echo", "hi",
        ],
        &["--tenant", "team-b", "auth", "echo", "status"],
        &["--tenant", "team-b", "providers"],
        &["--tenant", "team-b", "channels"],
        &["--tenant", "team-b", "hook", "before-tool"],
    ] {
        refused(&t, AGENT_A, args, other)?;
    }
    for args in [&["status"][..], &["audit"], &["restart", "notes"]] {
        refused(&t, AGENT_A, args, "needs the operator role")?;
    }
    refused(
        &t,
        AGENT_A,
        &["plugin", "grants", "notes"],
        "needs the operator role",
    )?;

    // The operator sees and restarts its tenant's workers only.
    let status = ok(&t, OPS_B, &["--json", "status"])?;
    assert_eq!(worker_tenants(&status, "notes")?, ["team-b"], "{status}");
    let all = ok(&t, 0, &["--json", "status"])?;
    assert_eq!(
        worker_tenants(&all, "notes")?,
        ["team-a", "team-b"],
        "{all}"
    );
    let restarted = ok(&t, OPS_B, &["restart", "notes"])?;
    assert!(restarted.contains("stopped 1 worker"), "{restarted}");
    let after = ok(&t, 0, &["--json", "status"])?;
    let running: Vec<String> = serde_json::from_str::<serde_json::Value>(&after)?["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["id"] == "notes")
        .flat_map(|p| p["workers"].as_array().cloned().unwrap_or_default())
        .filter(|w| w["running"] == true)
        .filter_map(|w| w["tenant"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(running, ["team-a"], "team-a's worker kept running: {after}");
    refused(
        &t,
        OPS_B,
        &["--tenant", "team-a", "status"],
        "principal ops-b may not act for tenant team-a",
    )?;
    refused(
        &t,
        OPS_B,
        &["plugin", "grants", "notes", "--approve-all"],
        "needs the admin role",
    )?;

    // No principal: refused before anything else.
    refused(&t, NOBODY, &["tools"], "is no configured principal")?;
    refused(&t, NOBODY, &["status"], "is no configured principal")?;

    // Every RPC of the API, through a real connection by each peer.
    let every = |uid: u32, tenant: &str| -> anyhow::Result<Vec<(String, String)>> {
        let out = Command::new(tark_tests::binary("tark-every-rpc")?)
            .arg(&t.socket)
            .arg(tenant)
            .uid(uid)
            .gid(uid)
            .output()?;
        anyhow::ensure!(out.status.success(), "{}", text(&out));
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(rpc, code)| (rpc.to_owned(), code.to_owned()))
            .collect())
    };
    let rpcs = tarkd::access::rules::RULES.len();
    let other = every(AGENT_A, "team-b")?;
    assert_eq!(other.len(), rpcs);
    for (rpc, code) in &other {
        assert_eq!(code, "PermissionDenied", "{rpc} for another tenant");
    }
    // No principal: its connection is refused before a byte is read, with
    // a GOAWAY (INADEQUATE_SECURITY) that gRPC clients report as
    // PERMISSION_DENIED (or, when the close overtakes it, as a cancelled or
    // unavailable call); no RPC is served.
    let refused_all = every(NOBODY, "team-a")?;
    for (rpc, code) in &refused_all {
        assert!(
            matches!(
                code.as_str(),
                "PermissionDenied" | "Cancelled" | "Unavailable"
            ),
            "{rpc} by no principal: {code}"
        );
    }
    assert!(refused_all.iter().any(|(_, c)| c == "PermissionDenied"));
    for (rpc, code) in every(AGENT_A, "team-a")? {
        let need = tarkd::access::rules::needed(&format!("/tark.plugin.v1.{rpc}"));
        let denied = matches!(code.as_str(), "PermissionDenied" | "Unauthenticated");
        assert_eq!(
            denied,
            need > tarkd::access::Role::Agent,
            "{rpc} by the agent for its own tenant: {code}"
        );
    }

    // The operator's audit holds its tenant's refusals, not the others'.
    let audit = ok(&t, OPS_B, &["--json", "audit"])?;
    let entries: serde_json::Value = serde_json::from_str(&audit)?;
    let entries = entries["entries"].as_array().cloned().unwrap_or_default();
    assert!(!entries.is_empty(), "{audit}");
    assert!(entries.iter().all(|e| e["tenant"] == "team-b"), "{audit}");

    // The admin's audit names each refused principal, and the unknown uid.
    let audit = ok(&t, 0, &["audit", "--limit", "100"])?;
    for want in [
        "principal agent-a may not act for tenant team-b",
        "(principal agent-a)",
        "principal ops-b may not act for tenant team-a",
        &format!("uid {NOBODY} gid {NOBODY} is no configured principal"),
    ] {
        assert!(audit.contains(want), "{want}: {audit}");
    }
    Ok(())
}

/// `api.socket_group` lets a principal's user in that group reach the socket
/// (and the directory it is in), with no other change to the host.
#[test]
fn the_socket_group_can_connect() -> anyhow::Result<()> {
    // Debian's nogroup (65534) as the agents' group; the agent's uid is its own.
    let config = format!(
        "[api]\nsocket_group = \"nogroup\"\n[[principals]]\nname = \"agent-a\"\nuids = [{AGENT_A}]\ntenants = [\"team-a\"]\nrole = \"agent\"\n"
    );
    let t = Tarkd::start(vec![PluginFiles::notes()?], Options::config(&config))?;
    let as_member = |gid: u32| -> anyhow::Result<Output> {
        Ok(Command::new(tark_tests::binary("tarkctl")?)
            .arg("--socket")
            .arg(&t.socket)
            .arg("tools")
            .uid(AGENT_A)
            .gid(gid)
            .output()?)
    };
    let member = as_member(65534)?;
    assert!(member.status.success(), "{}", text(&member));
    assert!(text(&member).contains("notes_save"));
    // The same uid outside the group cannot even connect.
    let outsider = as_member(AGENT_A)?;
    assert!(!outsider.status.success());
    assert!(
        text(&outsider).contains("cannot reach tarkd"),
        "{}",
        text(&outsider)
    );
    Ok(())
}
