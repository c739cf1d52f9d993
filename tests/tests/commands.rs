//! Command tools (tark's config-only plugins: `[[tools]]` that run a program)
//! through a real tarkd: listed from the manifest, run in tark-jail with the
//! argv from the template, able to read only what was declared and approved,
//! with no network, stopped at the deadline with everything they started, and
//! cut off at the output cap; refused while `shell` is not approved.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use tark_proto::plugin::v1 as pb;
use tark_tests::{Failed, Options, PluginFiles, Tarkd, call, invoke};
use tonic::Code;

/// A folder the jail's own uid may read (tempdirs are 0700).
fn open_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

fn helper(data: &Path) -> PluginFiles {
    let d = data.display();
    let manifest = format!(
        r#"[plugin]
name = "helper"
version = "1.0.0"
type = "tool"
description = "config-only helper"

[capabilities]
shell = true
fs_read = ["{d}"]

[[tools]]
name = "show"
description = "Print a file"
command = "cat"
args = ["{{file}}"]
risk = "read-only"

[[tools]]
name = "list"
description = "List the data folder"
command = "/bin/ls"
args = ["-1"]
cwd = "{d}"

[[tools]]
name = "touch"
command = "touch"
args = ["{{file}}"]

[[tools]]
name = "connect"
command = "bash"
args = ["-c", "exec 3<>/dev/tcp/127.0.0.1/$0 && echo connected", "{{port}}"]

[[tools]]
name = "flood"
command = "yes"
args = ["{{word}}"]

[[tools]]
name = "linger"
command = "sh"
args = ["-c", "sleep $0 & sleep $0", "{{seconds}}"]
"#
    );
    PluginFiles::new("helper", &manifest, None)
}

fn start(data: &Path, opts: Options) -> anyhow::Result<Tarkd> {
    Tarkd::start(vec![helper(data)], opts)
}

const LIMITS: &str = "[limits]\ndeadline_ms = 3000\nmax_response_kib = 64\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_tools_run_jailed_reading_only_what_was_declared() -> anyhow::Result<()> {
    let data = open_dir()?;
    std::fs::write(
        data.path().join("readme.txt"),
        "hello from the data folder\n",
    )?;
    std::fs::set_permissions(
        data.path().join("readme.txt"),
        std::fs::Permissions::from_mode(0o644),
    )?;
    let elsewhere = open_dir()?;
    let secret = elsewhere.path().join("secret.txt");
    std::fs::write(&secret, "not declared\n")?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644))?;
    let t = start(data.path(), Options::config(LIMITS))?;
    let mut tools = t.tools().await?;

    // Listed from the manifest: the risk as written (`risky` by default), the
    // schema made from the placeholders.
    let listed = tools
        .list_tools(pb::ListToolsRequest::default())
        .await?
        .into_inner();
    let show = listed.tools.iter().find(|t| t.name == "show");
    assert_eq!(
        show.map(|s| (s.plugin.as_str(), s.risk)),
        Some(("helper", pb::RiskLevel::ReadOnly as i32)),
        "{listed:?}"
    );
    let schema: serde_json::Value =
        serde_json::from_str(show.map_or("", |s| s.parameters_schema.as_str()))?;
    assert_eq!(schema["required"], serde_json::json!(["file"]));
    let list = listed.tools.iter().find(|t| t.name == "list");
    assert_eq!(list.map(|l| l.risk), Some(pb::RiskLevel::Risky as i32));

    // Reads what was declared; the argv is the template's, the value one
    // argument however it is written.
    let readme = data.path().join("readme.txt");
    let file = |p: &Path| serde_json::json!({ "file": p }).to_string();
    assert_eq!(
        call(&mut tools, "show", &file(&readme)).await.as_deref(),
        Ok("hello from the data folder\n")
    );
    assert_eq!(
        call(&mut tools, "list", "{}").await.as_deref(),
        Ok("readme.txt\n")
    );
    let spaced = format!("{} ; cat /etc/passwd", readme.display());
    let got = call(
        &mut tools,
        "show",
        &serde_json::json!({ "file": spaced }).to_string(),
    )
    .await;
    assert!(
        got.as_ref().is_err_and(|e| e.contains("No such file")),
        "{got:?}"
    );
    // An argument cannot become an option.
    let got = call(&mut tools, "show", r#"{"file":"--help"}"#).await;
    assert!(
        got.as_ref()
            .is_err_and(|e| e.contains("may not start with '-'")),
        "{got:?}"
    );

    // Nothing else: not a readable file elsewhere (not even there, in the
    // jail's own root), not tarkd's own state.
    let got = call(&mut tools, "show", &file(&secret)).await;
    assert!(
        got.as_ref()
            .is_err_and(|e| e.contains("No such file") || e.contains("Permission denied")),
        "{got:?}"
    );
    let config = t.dir.path().join("tarkd.toml");
    let got = call(&mut tools, "show", &file(&config)).await;
    assert!(got.is_err(), "{got:?}");

    // Read-only: no file is created, even in the declared folder.
    let new = data.path().join("new.txt");
    let got = call(&mut tools, "touch", &file(&new)).await;
    assert!(got.is_err(), "{got:?}");
    assert!(!new.exists());

    // No network: a listener on loopback is not reached.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let got = call(&mut tools, "connect", &format!(r#"{{"port":"{port}"}}"#)).await;
    assert!(got.is_err(), "{got:?}");
    assert!(
        listener.accept().is_err(),
        "the command reached the host's loopback"
    );

    // Every run is audited with its argv.
    let audit = t.ctl_ok(&["audit", "--plugin", "helper"])?;
    assert!(
        audit.contains("shell") && audit.contains("show: cat"),
        "{audit}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_and_output_cap_stop_a_command_and_all_it_started() -> anyhow::Result<()> {
    let data = open_dir()?;
    let t = start(data.path(), Options::config(LIMITS))?;
    let mut tools = t.tools().await?;

    let at = Instant::now();
    let got = tools
        .invoke_tool(invoke("flood", r#"{"word":"y"}"#))
        .await?
        .into_inner();
    let error = match got.result {
        Some(pb::invoke_tool_response::Result::Error(e)) => e,
        other => anyhow::bail!("{other:?}"),
    };
    assert!(
        error.contains("output over the limit of 65536 bytes"),
        "{error}"
    );
    assert!(
        at.elapsed() < Duration::from_secs(3),
        "stopped at the cap, not the deadline"
    );

    // A child left in the background dies with the command.
    let seconds = "4321";
    let status = tools
        .invoke_tool(invoke("linger", &format!(r#"{{"seconds":"{seconds}"}}"#)))
        .await
        .failed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status
            .message()
            .contains("tool linger: deadline of 3000 ms exceeded"),
        "{status:?}"
    );
    let lingering = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| c == format!("sleep\0{seconds}\0").as_bytes())
            })
            .count()
    };
    assert!(
        tark_tests::eventually(Duration::from_secs(10), || lingering() == 0).await,
        "sleep {seconds} outlived its command"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_only_with_shell_approved_and_allowed() -> anyhow::Result<()> {
    let data = open_dir()?;
    std::fs::write(data.path().join("a"), "a")?;
    std::fs::set_permissions(
        data.path().join("a"),
        std::fs::Permissions::from_mode(0o644),
    )?;
    let args = serde_json::json!({ "file": data.path().join("a") }).to_string();

    // Installed by the operator with fs_read approved but not shell: listed,
    // not run.
    let source = tempfile::tempdir()?;
    let folder = source.path().join("helper");
    std::fs::create_dir(&folder)?;
    for (name, bytes) in helper(data.path()).files {
        std::fs::write(folder.join(name), bytes)?;
    }
    let t = Tarkd::start(Vec::new(), Options::config(LIMITS))?;
    let folder = folder.to_string_lossy();
    let fs = format!("fs_read={}", data.path().display());
    t.ctl_ok(&["plugin", "add", &folder, "--grant", &fs])?;
    let mut tools = t.tools().await?;
    let status = tools.invoke_tool(invoke("show", &args)).await.failed();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(
            "tool show runs a command: shell (running commands) declared but not approved by the operator (tarkctl plugin grants helper)"
        ),
        "{status:?}"
    );
    let audit = t.ctl_ok(&["audit", "--plugin", "helper"])?;
    assert!(audit.contains("deny"), "{audit}");
    // Approved: it runs.
    t.ctl_ok(&["plugin", "grants", "helper", "--approve-all"])?;
    assert_eq!(call(&mut tools, "show", &args).await.as_deref(), Ok("a"));
    drop(t);

    // Approved, but forbidden by the host's policy or the tenant's.
    let policy = format!("{LIMITS}[policy]\nshell = false\n");
    let t = start(data.path(), Options::config(&policy))?;
    let status = t
        .tools()
        .await?
        .invoke_tool(invoke("show", &args))
        .await
        .failed();
    assert!(
        status.message().contains("forbidden by tarkd's policy"),
        "{status:?}"
    );
    drop(t);
    let tenant = format!("{LIMITS}[tenants.team-a.policy]\nshell = false\n");
    let t = start(data.path(), Options::config(&tenant))?;
    let mut tools = t.tools().await?;
    let status = tools
        .invoke_tool(tark_tests::for_tenant(invoke("show", &args), "team-a"))
        .await
        .failed();
    assert!(
        status
            .message()
            .contains("forbidden by tenant team-a's policy"),
        "{status:?}"
    );
    assert_eq!(call(&mut tools, "show", &args).await.as_deref(), Ok("a"));
    Ok(())
}
