//! `tarkd --check-host` and `tarkctl doctor`, through the real binaries: one
//! line per sandbox layer and requirement, each as this kernel answered
//! (the landlock ABI is read here too, and must match), and a non-zero exit
//! exactly when something the config requires is missing.

use std::process::Command;

use tark_tests::{Options, Tarkd, binary};

const NAMES: [&str; 8] = [
    "namespaces",
    "landlock",
    "seccomp",
    "cgroup",
    "worker",
    "state_dir",
    "socket_group",
    "fs.home",
];

/// The kernel's landlock ABI, asked here (0: none).
fn kernel_landlock_abi() -> i64 {
    // SAFETY: a version query (NULL attributes, size 0, flag 1).
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32,
        )
    };
    v.max(0)
}

fn check_host(config: &str) -> anyhow::Result<(bool, Vec<String>)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tarkd.toml");
    let text = format!(
        "socket = \"{0}/tarkd.sock\"\nstate_dir = \"{0}/state\"\nplugins_dir = \"{0}/plugins\"\nworker_path = \"{1}\"\n{config}",
        dir.path().display(),
        binary("tark-worker")?.display()
    );
    std::fs::write(&path, text)?;
    let out = Command::new(binary("tarkd")?)
        .arg("--check-host")
        .arg("--config")
        .arg(&path)
        .output()?;
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    Ok((out.status.success(), lines))
}

fn assert_one_line_each(lines: &[String]) {
    assert_eq!(lines.len(), NAMES.len(), "{lines:#?}");
    for (line, name) in lines.iter().zip(NAMES) {
        let rest = line.strip_prefix(&format!("{name}: ")).unwrap_or_default();
        assert!(
            rest.starts_with("ok")
                || rest.starts_with("degraded (")
                || rest.starts_with("missing ("),
            "{line}"
        );
    }
    let abi = kernel_landlock_abi();
    let landlock = &lines[1];
    if abi > 0 {
        assert!(
            landlock.contains(&format!("ABI {abi}")),
            "{landlock} (kernel: ABI {abi})"
        );
    } else {
        assert!(landlock.starts_with("landlock: missing"), "{landlock}");
    }
}

#[test]
fn check_host_names_every_layer_and_fails_only_on_a_required_one() -> anyhow::Result<()> {
    let (ok, lines) = check_host("[sandbox.cgroup]\nplace = \"off\"\n")?;
    assert_one_line_each(&lines);
    assert!(ok, "{lines:#?}");
    assert!(
        lines[3].starts_with("cgroup: missing (sandbox.cgroup.place = \"off\""),
        "{}",
        lines[3]
    );

    // A socket group the host lacks: tarkd could not start, and says so.
    let (ok, lines) = check_host("[api]\nsocket_group = \"tark-no-such-group\"\n")?;
    assert_one_line_each(&lines);
    assert!(!ok);
    assert!(
        lines[6].starts_with(
            "socket_group: missing (api.socket_group \"tark-no-such-group\" is no group"
        ) && lines[6].ends_with("[required]"),
        "{}",
        lines[6]
    );
    // The same layer, required, fails the check.
    let (ok, lines) =
        check_host("[sandbox]\nrequire = [\"cgroup\"]\n[sandbox.cgroup]\nplace = \"off\"\n")?;
    assert!(!ok && lines[3].ends_with("[required]"), "{lines:#?}");
    let abi = kernel_landlock_abi();
    if (1..6).contains(&abi) {
        let (ok, lines) = check_host("[sandbox.landlock]\nmin_abi = 6\n")?;
        assert!(!ok && lines[1].ends_with("[required]"), "{lines:#?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_asks_the_running_tarkd() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let out = t.ctl_ok(&["doctor"])?;
    let lines: Vec<String> = out.lines().map(str::to_owned).collect();
    assert_one_line_each(&lines);
    // The worker tarkd really runs.
    assert!(
        lines[4].contains(&binary("tark-worker")?.display().to_string()),
        "{}",
        lines[4]
    );
    Ok(())
}
