//! The files in packaging/ as systemd reads them: the unit's hardening, scored
//! by `systemd-analyze security --offline=yes`, stays at or under 3.0.

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
fn the_unit_is_hardened_to_an_exposure_of_at_most_3() -> anyhow::Result<()> {
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
    ] {
        ensure!(text.lines().any(|l| l.starts_with(line)), "no {line}");
    }
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
