//! The Debian package, installed into a fresh root: `scripts/package --dev`
//! packs the built binaries, `dpkg --root --install` installs it into an
//! empty dpkg database (its postinst run chrootless with DPKG_ROOT, so it
//! creates the tarkd group in that root, not on this host), and the installed
//! tarkd accepts the installed config (finding its worker in
//! /usr/libexec/tarkd).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, ensure};
use tark_tests::{fixtures, run_ok};

#[test]
fn the_package_installs_into_a_fresh_root() -> anyhow::Result<()> {
    let repo = fixtures::repo_root();
    let built = run_ok(Command::new(repo.join("scripts/package")).arg("--dev"))?;
    let deb = built
        .lines()
        .rev()
        .find(|l| l.ends_with(".deb"))
        .map(|l| repo.join(l.trim()))
        .context("no .deb named")?;

    let root = tempfile::tempdir()?;
    let r = root.path();
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        std::fs::create_dir_all(r.join(dir))?;
    }
    std::fs::write(r.join("var/lib/dpkg/status"), "")?;
    run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", r.display()))
            .args(["--force-depends", "--force-script-chrootless", "--install"])
            .arg(&deb),
    )?;

    for file in [
        "usr/bin/tarkd",
        "usr/bin/tarkctl",
        "usr/libexec/tarkd/tark-worker",
        "lib/systemd/system/tarkd.service",
        "usr/lib/sysusers.d/tarkd.conf",
        "usr/lib/tmpfiles.d/tarkd.conf",
        "etc/tarkd/tarkd.toml",
        "etc/logrotate.d/tarkd",
        "usr/share/man/man8/tarkd.8.gz",
        "usr/share/man/man1/tarkctl.1.gz",
        "usr/share/bash-completion/completions/tarkctl",
        "usr/share/zsh/vendor-completions/_tarkctl",
        "usr/share/fish/vendor_completions.d/tarkctl.fish",
        "usr/share/doc/tarkd/README.md",
    ] {
        ensure!(r.join(file).is_file(), "{file} not installed");
    }
    let status = run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", r.display()))
            .args(["--status", "tarkd"]),
    )?;
    ensure!(status.contains("Status: install ok installed"), "{status}");
    let conffiles = std::fs::read_to_string(r.join("var/lib/dpkg/info/tarkd.conffiles"))?;
    ensure!(
        conffiles
            .lines()
            .any(|l| l.trim() == "/etc/tarkd/tarkd.toml"),
        "{conffiles}"
    );
    let config = std::fs::read_to_string(r.join("etc/tarkd/tarkd.toml"))?;
    ensure!(config.lines().any(|l| l == "socket_group = \"tarkd\""));

    // The group the socket belongs to, made by the postinst in that root.
    let group = std::fs::read_to_string(r.join("etc/group"))?;
    ensure!(group.lines().any(|l| l.starts_with("tarkd:")), "{group}");

    let installed = |p: &str| r.join(p);
    let checked = run_ok(
        Command::new(installed("usr/bin/tarkd"))
            .arg("--check-config")
            .arg("--config")
            .arg(installed("etc/tarkd/tarkd.toml")),
    )?;
    let worker = installed("usr/libexec/tarkd/tark-worker");
    ensure!(
        checked.contains(&format!("worker {}", worker.display())),
        "{checked}"
    );
    ensure!(Path::new(&worker).is_file());
    Ok(())
}
