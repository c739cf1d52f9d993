//! How tarkctl shows tarkd's answers: aligned tables for people, JSON for scripts.

use serde_json::json;
use tark_proto::plugin::v1 as pb;

pub fn type_name(t: pb::PluginType) -> String {
    t.as_str_name()
        .trim_start_matches("PLUGIN_TYPE_")
        .to_lowercase()
        .replace("unspecified", "-")
}

pub fn state_name(s: pb::PluginState) -> String {
    s.as_str_name()
        .trim_start_matches("PLUGIN_STATE_")
        .to_lowercase()
}

pub fn risk_name(r: pb::RiskLevel) -> String {
    r.as_str_name()
        .trim_start_matches("RISK_LEVEL_")
        .to_lowercase()
        .replace('_', "-")
}

pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn workers_json(p: &pb::PluginInfo) -> serde_json::Value {
    json!(p
        .workers
        .iter()
        .map(|w| json!({ "tenant": w.tenant, "pid": w.pid, "running": w.running, "restarts": w.restarts,
                          "calls": w.calls, "last_error": w.last_error,
                          "sandbox": w.sandbox.iter().map(|l| json!({ "name": l.name, "applied": l.applied, "detail": l.detail })).collect::<Vec<_>>() }))
        .collect::<Vec<_>>())
}

pub fn plugin_json(p: &pb::PluginInfo) -> serde_json::Value {
    let caps = p.capabilities.clone().unwrap_or_default();
    json!({
        "id": p.id, "version": p.version, "type": type_name(p.r#type()), "state": state_name(p.state()),
        "description": p.description, "author": p.author, "homepage": p.homepage, "license": p.license,
        "path": p.path, "wasm_sha256": p.wasm_sha256, "diagnostics": p.diagnostics,
        "capabilities": { "storage": caps.storage, "http": caps.http, "env": caps.env,
                          "fs_read": caps.fs_read, "shell": caps.shell },
        "workers": workers_json(p),
        "approved": p.approved, "pending_approval": p.pending_approval,
        "wit": p.wit, "provides": p.provides, "accepted_wit": p.accepted_wit,
        "api_version": p.api_version, "activation": p.activation, "oauth_flow": p.oauth_flow,
        "signer": p.signer, "signature": p.signature, "origin": p.origin,
    })
}

pub fn status_json(s: &pb::StatusResponse) -> serde_json::Value {
    json!({
        "version": s.version, "pid": s.pid, "uptime_seconds": s.uptime_seconds, "socket": s.socket,
        "state_dir": s.state_dir, "plugins_dir": s.plugins_dir,
        "standby_ready": s.standby_ready, "standby_size": s.standby_size,
        "plugins": s.plugins.iter().map(plugin_json).collect::<Vec<_>>(),
    })
}

/// "8/9 (-cgroup)": layers applied of those reported, and the missing ones.
pub fn sandbox_summary(layers: &[pb::SandboxLayer]) -> String {
    if layers.is_empty() {
        return "-".into();
    }
    let missing: Vec<&str> = layers
        .iter()
        .filter(|l| !l.applied)
        .map(|l| l.name.as_str())
        .collect();
    let applied = layers.len() - missing.len();
    if missing.is_empty() {
        format!("{applied}/{}", layers.len())
    } else {
        format!("{applied}/{} (-{})", layers.len(), missing.join(",-"))
    }
}

pub fn print_status(s: &pb::StatusResponse) {
    println!(
        "tarkd {} (pid {}), up {}s",
        s.version, s.pid, s.uptime_seconds
    );
    println!(
        "socket {}  state {}  plugins {}",
        s.socket, s.state_dir, s.plugins_dir
    );
    println!(
        "standby workers {}/{} ready",
        s.standby_ready, s.standby_size
    );
    println!();
    let mut rows = Vec::new();
    for p in &s.plugins {
        if p.workers.is_empty() {
            let err = p.diagnostics.join("; ");
            rows.push(vec![
                p.id.clone(),
                state_name(p.state()),
                "-".into(),
                "-".into(),
                "0".into(),
                "0".into(),
                "-".into(),
                err,
            ]);
        }
        for w in &p.workers {
            let pid = if w.running {
                w.pid.to_string()
            } else {
                "-".into()
            };
            rows.push(vec![
                p.id.clone(),
                state_name(p.state()),
                w.tenant.clone(),
                pid,
                w.restarts.to_string(),
                w.calls.to_string(),
                sandbox_summary(&w.sandbox),
                w.last_error.clone(),
            ]);
        }
    }
    print_table(
        &[
            "PLUGIN",
            "STATE",
            "TENANT",
            "PID",
            "RESTARTS",
            "CALLS",
            "SANDBOX",
            "LAST ERROR",
        ],
        rows,
    );
}

pub fn print_info(p: &pb::PluginInfo) {
    let caps = p.capabilities.clone().unwrap_or_default();
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    println!("{} {} ({})", p.id, p.version, type_name(p.r#type()));
    println!("  state:       {}", state_name(p.state()));
    println!("  description: {}", p.description);
    if !p.author.is_empty() {
        println!("  author:      {}", p.author);
    }
    println!("  path:        {}", p.path);
    if !p.origin.is_empty() {
        println!("  source:      {}", p.origin);
    }
    println!("  wasm sha256: {}", p.wasm_sha256);
    match p.signer.as_str() {
        "" => println!("  signature:   {}", p.signature),
        key => println!("  signature:   {} (key {key})", p.signature),
    }
    let wit = if p.wit.is_empty() {
        "(known once a worker has loaded it)"
    } else {
        &p.wit
    };
    println!("  exports:     {wit}");
    if !p.provides.is_empty() {
        println!("  provides:    {}", p.provides.join(", "));
    }
    println!("  accepts:     {}", p.accepted_wit.join("; "));
    if !p.api_version.is_empty() {
        println!("  api version: {}", p.api_version);
    }
    if !p.activation.is_empty() {
        println!("  activation:  {}", p.activation.join(", "));
    }
    if !p.oauth_flow.is_empty() {
        println!(
            "  sign-in:     {} (tarkctl auth {} login)",
            p.oauth_flow, p.id
        );
    }
    println!("  capabilities:");
    println!("    storage: {}", caps.storage);
    println!("    http:    {}", list(&caps.http));
    println!("    env:     {}", list(&caps.env));
    println!("    fs_read: {}", list(&caps.fs_read));
    println!("    shell:   {}", caps.shell);
    if !p.approved {
        println!(
            "  approval:    none: nothing is granted (tarkctl plugin grants {} --approve-all)",
            p.id
        );
    } else if !p.pending_approval.is_empty() {
        println!("  awaiting approval: {}", p.pending_approval.join(", "));
    }
    for d in &p.diagnostics {
        println!("  diagnostic: {d}");
    }
    for w in &p.workers {
        let pid = if w.running {
            w.pid.to_string()
        } else {
            "-".into()
        };
        println!(
            "  worker [{}]: pid {pid}, {} restarts, {} calls{}",
            w.tenant,
            w.restarts,
            w.calls,
            if w.last_error.is_empty() {
                String::new()
            } else {
                format!(", last error: {}", w.last_error)
            }
        );
        for layer in &w.sandbox {
            println!("    sandbox {layer}");
        }
    }
}

pub fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let padded: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row);
    }
}

pub fn audit_json(r: &pb::AuditResponse) -> serde_json::Value {
    let entries: Vec<_> = r
        .entries
        .iter()
        .map(|e| {
            json!({ "time_ms": e.time_ms, "tenant": e.tenant, "plugin": e.plugin, "capability": e.capability,
                    "target": e.target, "decision": e.decision, "reason": e.reason })
        })
        .collect();
    let counts: Vec<_> = r
        .counts
        .iter()
        .map(|c| json!({ "plugin": c.plugin, "capability": c.capability, "denials": c.denials }))
        .collect();
    json!({ "entries": entries, "counts": counts })
}

/// How long ago a moment given in Unix milliseconds was, in the largest whole
/// unit ("40s ago", "12m ago", "3h ago", "5d ago"): what an operator reads at
/// a glance, where a raw timestamp says nothing.
pub fn ago(unix_ms: u64) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ago_at(now_ms, unix_ms)
}

fn ago_at(now_ms: u64, unix_ms: u64) -> String {
    let s = now_ms.saturating_sub(unix_ms) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3_600 => format!("{}m ago", s / 60),
        3_600..86_400 => format!("{}h ago", s / 3_600),
        _ => format!("{}d ago", s / 86_400),
    }
}

pub fn print_audit(r: &pb::AuditResponse) {
    let rows = r
        .entries
        .iter()
        .map(|e| {
            vec![
                ago(e.time_ms),
                e.tenant.clone(),
                e.plugin.clone(),
                e.capability.clone(),
                e.target.clone(),
                e.decision.clone(),
                e.reason.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "WHEN",
            "TENANT",
            "PLUGIN",
            "CAPABILITY",
            "TARGET",
            "DECISION",
            "REASON",
        ],
        rows,
    );
    if !r.counts.is_empty() {
        println!();
        let rows = r
            .counts
            .iter()
            .map(|c| {
                vec![
                    c.plugin.clone(),
                    c.capability.clone(),
                    c.denials.to_string(),
                ]
            })
            .collect();
        print_table(&["PLUGIN", "CAPABILITY", "DENIALS"], rows);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages_are_shown_in_their_largest_whole_unit() {
        let now = 10_000_000_000;
        let table = [
            (now, "0s ago"),
            (now - 59_999, "59s ago"),
            (now - 60_000, "1m ago"),
            (now - 3_599_000, "59m ago"),
            (now - 3_600_000, "1h ago"),
            (now - 86_400_000, "1d ago"),
            (now - 9 * 86_400_000, "9d ago"),
            // A clock that went back shows as now, not as a huge age.
            (now + 5_000, "0s ago"),
        ];
        for (then, shown) in table {
            assert_eq!(super::ago_at(now, then), shown, "{then}");
        }
    }
}
