//! The files in packaging/: the unit's hardening, scored by `systemd-analyze
//! security --offline=yes`, stays at or under 3.0 (scripts/vm-test reads the
//! running unit's score in a Debian 12 guest); the Kubernetes DaemonSet
//! keeps the unit's capabilities and a valid tarkd config (docs/deploy.md).

use std::process::Command;

use anyhow::{Context, ensure};
use tark_tests::fixtures;

/// The overall exposure systemd-analyze gives a unit file.
fn exposure(unit: &std::path::Path) -> anyhow::Result<f64> {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit)
        .output()
        .context("systemd-analyze (scripts/deps installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .with_context(|| format!("no exposure in: {text}"))?;
    let score = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .context("exposure value")?;
    Ok(score.parse()?)
}

#[test]
fn the_unit_is_hardened_to_an_exposure_of_at_most_3_0() -> anyhow::Result<()> {
    let root = fixtures::repo_root();
    let unit = root.join("packaging/tarkd.service");
    let score = exposure(&unit)?;
    println!("systemd-analyze security: {score}");
    ensure!(score <= 3.0, "exposure {score} > 3.0");
    let text = std::fs::read_to_string(&unit)?;
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=",
        "NoNewPrivileges=yes",
        // The socket's group without CAP_CHOWN.
        "SupplementaryGroups=tarkd",
    ] {
        ensure!(text.lines().any(|l| l.starts_with(line)), "no {line}");
    }
    // Installing a plugin folder opens files with openat2, which systemd 252
    // (Debian 12) does not allow by any group.
    ensure!(
        text.lines()
            .any(|l| l.starts_with("SystemCallFilter=@")
                && l.split_whitespace().any(|w| w == "openat2")),
        "openat2 is not in the unit's allow list"
    );
    // The score must be able to fail: the same unit without its hardening.
    let bare: String = text
        .lines()
        .filter(|l| {
            l.starts_with('[') || l.starts_with("ExecStart") || l.starts_with("Description")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = tempfile::tempdir()?;
    let bare_unit = dir.path().join("tarkd.service");
    std::fs::write(&bare_unit, bare)?;
    ensure!(exposure(&bare_unit)? > 9.0);
    Ok(())
}

/// The block under `tarkd.toml: |` in the DaemonSet's ConfigMap, unindented.
fn configmap_toml(yaml: &str) -> Option<String> {
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim() != "tarkd.toml: |")
        .skip(1);
    let first = lines.next()?;
    let indent = first.len() - first.trim_start().len();
    let mut text = format!("{}\n", &first[indent..]);
    for line in lines {
        if line.trim().is_empty() {
            text.push('\n');
        } else if line.len() - line.trim_start().len() >= indent {
            text.push_str(&line[indent..]);
            text.push('\n');
        } else {
            break;
        }
    }
    Some(text)
}

#[test]
fn the_daemonset_keeps_the_units_capabilities_paths_and_ports() -> anyhow::Result<()> {
    let root = fixtures::repo_root();
    let yaml = std::fs::read_to_string(root.join("packaging/kubernetes/tarkd-daemonset.yaml"))?;
    let unit = std::fs::read_to_string(root.join("packaging/tarkd.service"))?;
    // The same capabilities as the unit's bounding set, and no others.
    let from_unit: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .context("no CapabilityBoundingSet")?
        .split_whitespace()
        .map(|c| format!("\"{}\"", c.trim_start_matches("CAP_")))
        .collect();
    let added = format!("add: [{}]", from_unit.join(", "));
    ensure!(yaml.contains(&added), "the DaemonSet does not {added}");
    ensure!(yaml.contains("drop: [\"ALL\"]"));
    // Its config is a valid tarkd config, serving where the volumes are.
    let text = configmap_toml(&yaml).context("no tarkd.toml in the ConfigMap")?;
    let config = tarkd::config::Config::parse(&text, std::path::Path::new("configmap"))?;
    ensure!(config.socket == std::path::Path::new("/run/tarkd/tarkd.sock"));
    ensure!(config.state_dir == std::path::Path::new("/var/lib/tarkd"));
    for path in [
        "path: /run/tarkd",
        "path: /var/lib/tarkd",
        "mountPath: /etc/tarkd",
    ] {
        ensure!(yaml.contains(path), "no {path}");
    }
    let port = config
        .metrics
        .listen
        .as_deref()
        .and_then(|l| l.rsplit(':').next())
        .context("no metrics.listen port")?;
    ensure!(yaml.contains(&format!("prometheus.io/port: \"{port}\"")));
    ensure!(yaml.contains(&format!("containerPort: {port}")));
    Ok(())
}
