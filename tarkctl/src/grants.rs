//! `tarkctl plugin add` and `tarkctl plugin grants`: what a plugin asks for, and
//! the operator's answer.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use serde_json::json;
use tark_proto::plugin::v1 as pb;

/// One capability item as written on the command line and shown by tarkd:
/// `storage`, `http=HOST`, `env=NAME`, `fs_read=PATH`, `shell`.
pub fn parse_item(item: &str, into: &mut pb::Capabilities) -> anyhow::Result<()> {
    match item.split_once('=') {
        None if item == "storage" => into.storage = true,
        None if item == "shell" => into.shell = true,
        Some(("http", v)) => into.http.push(v.to_owned()),
        Some(("env", v)) => into.env.push(v.to_owned()),
        Some(("fs_read" | "fs", v)) => into.fs_read.push(v.to_owned()),
        _ => bail!("{item:?}: a capability is storage, http=HOST, env=NAME, fs_read=PATH or shell"),
    }
    Ok(())
}

/// The items of a capability set, in the form `parse_item` reads.
pub fn items(c: &pb::Capabilities) -> Vec<String> {
    let mut out = Vec::new();
    if c.storage {
        out.push("storage".to_owned());
    }
    out.extend(c.http.iter().map(|h| format!("http={h}")));
    out.extend(c.env.iter().map(|e| format!("env={e}")));
    out.extend(c.fs_read.iter().map(|f| format!("fs_read={f}")));
    if c.shell {
        out.push("shell".to_owned());
    }
    out
}

/// `c` without the items in `remove`.
pub fn without(c: &pb::Capabilities, remove: &[String]) -> anyhow::Result<pb::Capabilities> {
    let mut gone = pb::Capabilities::default();
    for r in remove {
        parse_item(r, &mut gone)?;
    }
    Ok(pb::Capabilities {
        storage: c.storage && !gone.storage,
        http: c
            .http
            .iter()
            .filter(|h| !gone.http.contains(h))
            .cloned()
            .collect(),
        env: c
            .env
            .iter()
            .filter(|e| !gone.env.contains(e))
            .cloned()
            .collect(),
        fs_read: c
            .fs_read
            .iter()
            .filter(|f| !gone.fs_read.contains(f))
            .cloned()
            .collect(),
        shell: c.shell && !gone.shell,
    })
}

/// Warnings about `fs_read` entries over the host's kernel interfaces: the
/// broker never lets them reach tarkd's own process, but they still show the
/// host's processes, hardware and configuration to the plugin.
pub fn kernel_path_warnings(c: &pb::Capabilities) -> Vec<String> {
    const KERNEL: &[(&str, &str)] = &[
        ("/proc", "every process's and the kernel's state"),
        ("/sys", "the kernel's and the hardware's configuration"),
        ("/dev", "device files (tarkd reads only regular files)"),
    ];
    let mut out = Vec::new();
    for entry in &c.fs_read {
        let path = entry.trim_end_matches('/');
        for (root, what) in KERNEL {
            let covers = path.is_empty() || *root == path || root.starts_with(&format!("{path}/"));
            let inside = path.starts_with(&format!("{root}/"));
            if covers || inside {
                out.push(format!(
                    "warning: fs_read={entry} reaches {root}: {what} of this host"
                ));
            }
        }
    }
    out
}

fn show_list(title: &str, list: &[String]) {
    if list.is_empty() {
        println!("{title}: none");
    } else {
        println!("{title}:");
        for i in list {
            println!("  {i}");
        }
    }
}

/// Asks on the terminal; refuses when there is none to ask on.
fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("approval needed: run again with --yes, or name what to approve with --grant");
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// How `plugin add` / `update` approves: `--yes`, `--grant`, and whether an
/// unsigned package may replace a signed version (`--allow-unsigned`).
pub struct How<'a> {
    pub yes: bool,
    pub grant: &'a [String],
    pub allow_unsigned: bool,
}

/// `plugin add`: plan, show, ask (or take --yes / --grant), install.
pub async fn add(
    c: &mut pb::plugins_client::PluginsClient<tonic::transport::Channel>,
    source: &str,
    how: &How<'_>,
    json_out: bool,
    update_of: Option<&str>,
) -> anyhow::Result<()> {
    let (yes, grant) = (how.yes, how.grant);
    let origin = crate::source::origin(source);
    // `_staged` is kept until the install is done: a staged source is deleted with it.
    let (_staged, source, plan) = plan(c, source).await?;
    let info = plan.plugin.clone().unwrap_or_default();
    if let Some(id) = update_of {
        if info.id != id {
            bail!(
                "{source} holds plugin {}, not {id}: nothing installed",
                info.id
            );
        }
        if plan.current.is_none() {
            bail!("plugin {id} is not installed: use tarkctl plugin add");
        }
    }
    let requested = plan.requested.clone().unwrap_or_default();
    let update = plan.current.is_some();
    let approved = if !grant.is_empty() {
        let mut a = pb::Capabilities::default();
        for g in grant {
            parse_item(g, &mut a)?;
        }
        a
    } else if update && plan.needs_approval.is_empty() {
        // An update asking for nothing new keeps the current approval.
        plan.current.clone().unwrap_or_default()
    } else {
        if !json_out {
            println!(
                "{} {} ({})",
                info.id,
                info.version,
                if update { "update" } else { "new" }
            );
            for n in &plan.notes {
                println!("  note: {n}");
            }
            show_list("requests", &items(&requested));
            for w in kernel_path_warnings(&requested) {
                println!("  {w}");
            }
            if update {
                show_list("beyond the current approval", &plan.needs_approval);
            }
        }
        if !yes && !confirm("Approve these capabilities and install?")? {
            bail!("not installed: the capabilities were not approved");
        }
        requested
    };
    let done = c
        .install_plugin(pb::InstallPluginRequest {
            source,
            approved: Some(approved.clone()),
            origin,
            allow_unsigned: how.allow_unsigned,
        })
        .await
        .map_err(crate::status_error)?
        .into_inner();
    show_installed(done, &approved, json_out);
    Ok(())
}

/// tarkd's plan for installing `source` (nothing is installed): the staged
/// folder (deleted when dropped), its path as tarkd was given it, the answer.
async fn plan(
    c: &mut pb::plugins_client::PluginsClient<tonic::transport::Channel>,
    source: &str,
) -> anyhow::Result<(crate::source::Staged, String, pb::InstallPluginResponse)> {
    let mut staged = crate::source::stage(source)?;
    let plan_of = |folder: String| pb::InstallPluginRequest {
        source: folder,
        approved: None,
        origin: String::new(),
        allow_unsigned: false,
    };
    let mut source = staged.folder.display().to_string();
    let plan = match c.install_plugin(plan_of(source.clone())).await {
        Err(s) if hidden_tmp(&s, &staged.folder) => {
            // tarkd runs with a /tmp of its own: hand it a copy it can see.
            staged = crate::source::stage_copy(&staged.folder)?;
            source = staged.folder.display().to_string();
            c.install_plugin(plan_of(source.clone())).await
        }
        answer => answer,
    }
    .map_err(crate::status_error)?
    .into_inner();
    Ok((staged, source, plan))
}

/// `tarkctl plugin validate`: the plugin at `source` (a folder, or its
/// plugin.toml or extension.json) checked by tarkd exactly as an install
/// would check it, installing nothing.
pub async fn validate(
    c: &mut pb::plugins_client::PluginsClient<tonic::transport::Channel>,
    source: &str,
    json_out: bool,
) -> anyhow::Result<()> {
    let path = std::path::Path::new(source);
    let manifest = path
        .file_name()
        .and_then(|f| f.to_str())
        .filter(|f| ["plugin.toml", "extension.json"].contains(f) && path.is_file());
    let folder = match (manifest, path.parent()) {
        (Some(_), Some(dir)) if !dir.as_os_str().is_empty() => dir.display().to_string(),
        (Some(_), _) => ".".to_owned(),
        (None, _) => source.to_owned(),
    };
    let (_staged, _, plan) = plan(c, &folder).await?;
    let info = plan.plugin.clone().unwrap_or_default();
    let requested = plan.requested.clone().unwrap_or_default();
    if json_out {
        crate::render::print_json(&json!({
            "valid": true, "plugin": crate::render::plugin_json(&info),
            "requests": items(&requested), "notes": plan.notes,
        }));
        return Ok(());
    }
    println!("{source}: valid");
    crate::render::print_info(&info);
    show_list("requests", &items(&requested));
    for n in &plan.notes {
        println!("  note: {n}");
    }
    Ok(())
}

/// Whether tarkd's answer says it did not find `folder`, a folder in the
/// operator's /tmp (which tarkd, under its unit's PrivateTmp, does not see).
fn hidden_tmp(status: &tonic::Status, folder: &std::path::Path) -> bool {
    crate::source::in_private_tmp(folder)
        && matches!(
            status.code(),
            tonic::Code::InvalidArgument | tonic::Code::NotFound
        )
        && status.message().contains("ENOENT")
}

/// What an install or rollback did.
pub fn show_installed(
    done: pb::InstallPluginResponse,
    approved: &pb::Capabilities,
    json_out: bool,
) {
    let info = done.plugin.unwrap_or_default();
    if json_out {
        crate::render::print_json(&json!({
            "installed": done.installed, "plugin": crate::render::plugin_json(&info),
            "approved": items(approved), "needs_approval": done.needs_approval,
            "notes": done.notes,
        }));
    } else {
        println!("installed {} {}", info.id, info.version);
        for n in &done.notes {
            println!("  note: {n}");
        }
        for d in &info.diagnostics {
            println!("  diagnostic: {d}");
        }
        show_list("approved", &items(approved));
        if !done.needs_approval.is_empty() {
            show_list("not granted (declared, not approved)", &done.needs_approval);
        }
    }
}

/// `plugin grants`: show, or narrow (--revoke), or approve what is pending.
pub async fn grants(
    c: &mut pb::plugins_client::PluginsClient<tonic::transport::Channel>,
    id: String,
    revoke: &[String],
    approve_all: bool,
    json_out: bool,
) -> anyhow::Result<()> {
    let mut g = c
        .get_grants(pb::PluginRef { id: id.clone() })
        .await
        .map_err(crate::status_error)?
        .into_inner();
    if approve_all || !revoke.is_empty() {
        let base = if approve_all {
            g.declared.clone().unwrap_or_default()
        } else {
            g.approved.clone().unwrap_or_default()
        };
        let approved = without(&base, revoke)?;
        g = c
            .set_grants(pb::SetGrantsRequest {
                id,
                approved: Some(approved),
            })
            .await
            .map_err(crate::status_error)?
            .into_inner();
    }
    let declared = items(&g.declared.clone().unwrap_or_default());
    let approved = g.approved.as_ref().map(items);
    if json_out {
        crate::render::print_json(&json!({
            "id": g.id, "trust": g.trust, "declared": declared, "approved": approved,
            "pending": g.pending, "policy": g.policy,
        }));
        return Ok(());
    }
    println!("{} (trust: {})", g.id, g.trust);
    show_list("declared", &declared);
    match &approved {
        Some(a) => show_list("approved", a),
        None => println!("approved: nothing (the plugin was never approved)"),
    }
    if !g.pending.is_empty() {
        show_list("awaiting approval", &g.pending);
    }
    if !g.policy.is_empty() {
        show_list("policy", &g.policy);
    }
    for w in kernel_path_warnings(&g.approved.clone().unwrap_or_default()) {
        println!("{w}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_over_kernel_paths_are_warned_about() {
        for (entry, reaches) in [
            ("/proc", &["/proc"][..]),
            ("/proc/", &["/proc"]),
            ("/proc/cpuinfo", &["/proc"]),
            ("/sys/class/net", &["/sys"]),
            ("/dev/null", &["/dev"]),
            ("/", &["/proc", "/sys", "/dev"]),
            ("/proc2", &[]),
            ("/devices", &[]),
            ("~/.config/app.json", &[]),
            ("./data", &[]),
            ("/home/u/proc", &[]),
        ] {
            let c = pb::Capabilities {
                fs_read: vec![entry.to_owned()],
                ..Default::default()
            };
            let warnings = kernel_path_warnings(&c);
            assert_eq!(warnings.len(), reaches.len(), "{entry}: {warnings:?}");
            for (w, root) in warnings.iter().zip(reaches) {
                assert!(w.contains(&format!("reaches {root}:")), "{entry}: {w}");
            }
        }
    }

    #[test]
    fn items_round_trip_and_revoke() -> anyhow::Result<()> {
        let mut c = pb::Capabilities::default();
        for i in [
            "storage",
            "http=api.example.com",
            "env=A_*",
            "fs_read=~/x",
            "fs=/y",
        ] {
            parse_item(i, &mut c)?;
        }
        assert_eq!(
            items(&c),
            [
                "storage",
                "http=api.example.com",
                "env=A_*",
                "fs_read=~/x",
                "fs_read=/y"
            ]
        );
        let narrowed = without(&c, &["storage".into(), "http=api.example.com".into()])?;
        assert_eq!(items(&narrowed), ["env=A_*", "fs_read=~/x", "fs_read=/y"]);
        parse_item("shell", &mut c)?;
        assert_eq!(items(&c).last().map(String::as_str), Some("shell"));
        assert!(!without(&c, &["shell".into()])?.shell);
        assert!(parse_item("ftp=x", &mut c).is_err());
        Ok(())
    }
}
