use std::os::unix::fs::symlink;

use super::*;

fn roots(base: &Path) -> Roots {
    Roots {
        home: Some(base.join("home")),
        plugin_dir: base.join("plugin"),
        own_pid: Arc::default(),
    }
}

#[test]
fn expand_table() {
    let r = Roots {
        home: Some(PathBuf::from("/home/u")),
        plugin_dir: PathBuf::from("/plugins/p"),
        own_pid: Arc::default(),
    };
    let cases: &[(&str, Option<&str>)] = &[
        ("/etc/hosts", Some("/etc/hosts")),
        ("~/x/y", Some("/home/u/x/y")),
        ("~", Some("/home/u")),
        ("./data", Some("/plugins/p/data")),
        (".", Some("/plugins/p")),
        ("/a/./b/../c", Some("/a/c")),
        ("/../../etc", Some("/etc")),
        ("~/../../etc/shadow", Some("/etc/shadow")),
        ("./../other/secret", Some("/plugins/other/secret")),
        ("//etc//hosts", Some("/etc/hosts")),
        ("relative", None),
        ("~user/x", None),
        ("", None),
        ("/a\0b", None),
    ];
    for (path, want) in cases {
        assert_eq!(expand(path, &r), want.map(PathBuf::from), "{path:?}");
    }
    let homeless = Roots {
        home: None,
        ..r.clone()
    };
    assert_eq!(expand("~/x", &homeless), None);
    assert!(expand(&format!("/{}", "a".repeat(5000)), &r).is_none());
}

#[test]
fn under_is_component_wise() {
    let e = [PathBuf::from("/home/u/a")];
    assert!(under(Path::new("/home/u/a"), &e));
    assert!(under(Path::new("/home/u/a/b"), &e));
    assert!(!under(Path::new("/home/u/ab"), &e));
    assert!(!under(Path::new("/home/u"), &e));
    assert!(!under(Path::new("/home/u/a"), &[]));
}

#[test]
fn reads_allowed_files_and_refuses_escapes() -> std::io::Result<()> {
    let d = tempfile::tempdir()?;
    let base = d.path();
    let r = roots(base);
    std::fs::create_dir_all(base.join("home/allowed/sub"))?;
    std::fs::create_dir_all(base.join("plugin/data"))?;
    std::fs::write(base.join("home/allowed/ok.txt"), "ok")?;
    std::fs::write(base.join("home/secret.txt"), "secret")?;
    std::fs::write(base.join("plugin/data/d.txt"), "data")?;
    std::fs::write(base.join("home/allowed/big.txt"), vec![b'x'; 3000])?;
    std::fs::write(base.join("home/allowed/bin"), [0xff, 0xfe, 0x00])?;
    symlink(base.join("home/secret.txt"), base.join("home/allowed/link"))?;
    symlink("../secret.txt", base.join("home/allowed/rel-link"))?;
    symlink(
        base.join("home/allowed/ok.txt"),
        base.join("home/allowed/inner-link"),
    )?;
    symlink(base.join("home/allowed"), base.join("home/alias"))?;
    nix::unistd::mkfifo(
        &base.join("home/allowed/fifo"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .map_err(std::io::Error::from)?;

    let entries = vec!["~/allowed".to_owned(), "./data".to_owned()];
    let sources = [("not declared".to_owned(), entries.as_slice(), false)];
    let go = |p: &str| read(p, &sources, &r, 2048).map(|(t, _)| t);
    let ok = |p: &str, want: &str| assert_eq!(go(p).as_deref(), Ok(want), "{p}");
    let err = |p: &str, want: &str| {
        let got = go(p);
        assert!(
            got.as_ref().is_err_and(|e| e.to_string().contains(want)),
            "{p}: {got:?}"
        );
    };
    ok("~/allowed/ok.txt", "ok");
    ok("~/allowed/sub/../ok.txt", "ok");
    ok("~/allowed/inner-link", "ok");
    ok("./data/d.txt", "data");
    ok(&format!("{}/home/allowed/ok.txt", base.display()), "ok");
    err("~/secret.txt", "not declared");
    err("~/allowed/../secret.txt", "not declared");
    err("~/allowed/link", "through a symlink");
    err("~/allowed/rel-link", "through a symlink");
    err("~/alias/ok.txt", "not declared");
    err("~/allowed/missing.txt", "No such file");
    err("~/missing-outside.txt", "not declared");
    err("~/allowed/sub", "not a regular file");
    err("~/allowed/fifo", "not a regular file");
    err("~/allowed/big.txt", "over the 2 KiB read limit");
    err("~/allowed/bin", "not UTF-8");
    err("allowed/ok.txt", "not an absolute");
    err("/etc/hostname", "not declared");
    // An entry that is itself a symlink counts by where it points.
    let aliased = vec!["~/alias".to_owned()];
    let by_alias = [("no".to_owned(), aliased.as_slice(), false)];
    let got = read("~/alias/ok.txt", &by_alias, &r, 2048);
    assert_eq!(got.map(|(t, _)| t).as_deref(), Ok("ok"));
    // Every source must allow the path.
    let narrow = vec!["~/allowed/sub".to_owned()];
    let two = [
        ("not declared".to_owned(), entries.as_slice(), false),
        ("not approved".to_owned(), narrow.as_slice(), false),
    ];
    let got = read("~/allowed/ok.txt", &two, &r, 2048);
    assert!(got.is_err_and(|e| e.to_string() == "not approved"));
    // A soft list (warn mode) lets it through and hands back the refusal to log;
    // a hard one (policy) still refuses.
    let soft = [("not declared".to_owned(), entries.as_slice(), true)];
    let got = read("~/secret.txt", &soft, &r, 2048);
    assert_eq!(
        got,
        Ok(("secret".to_owned(), Some("not declared".to_owned())))
    );
    let policy = [
        ("not declared".to_owned(), entries.as_slice(), true),
        ("forbidden by policy".to_owned(), narrow.as_slice(), false),
    ];
    let got = read("~/secret.txt", &policy, &r, 2048);
    assert!(got.is_err_and(|e| e.to_string() == "forbidden by policy"));
    Ok(())
}

#[test]
fn other_processes_table() {
    for (path, own, other) in [
        ("/proc/1000/environ", 1000, false),
        ("/proc/1000", 1000, false),
        ("/proc/1000/task/1001/environ", 1000, false),
        ("/proc/1001/maps", 1000, true),
        ("/proc/1/environ", 1000, true),
        ("/proc/1000/environ", 0, true),
        ("/proc/self/environ", 1000, true),
        ("/proc/thread-self/mem", 1000, true),
        ("/proc/cpuinfo", 1000, false),
        ("/proc/sys/kernel/ostype", 0, false),
        ("/proc", 1000, false),
        ("/proc10/1000", 1000, false),
        ("/home/proc/1000", 1000, false),
        ("/", 1000, false),
    ] {
        assert_eq!(
            other_process(Path::new(path), own),
            other,
            "{path} (own {own})"
        );
    }
}

#[test]
fn proc_self_is_the_plugins_own_process() {
    let r = Roots {
        home: None,
        plugin_dir: PathBuf::from("/plugins/p"),
        own_pid: Arc::new(AtomicU32::new(4242)),
    };
    for (path, want) in [
        ("/proc/self/status", Some("/proc/4242/status")),
        ("/proc/self", Some("/proc/4242")),
        ("/proc/thread-self/environ", Some("/proc/4242/environ")),
        ("/proc/self/../1/environ", Some("/proc/1/environ")),
        ("/proc/selfish", Some("/proc/selfish")),
    ] {
        assert_eq!(expand(path, &r), want.map(PathBuf::from), "{path}");
    }
    let unknown = Roots {
        own_pid: Arc::default(),
        ..r
    };
    assert_eq!(
        expand("/proc/self/x", &unknown),
        Some(PathBuf::from("/proc/self/x"))
    );
}

/// Through `read` itself: a grant over all of /proc still never reaches
/// tarkd's environment, and a FIFO or device is refused unopened.
#[test]
fn proc_self_devices_and_fifos_are_refused() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).map_err(std::io::Error::from)?;
    let all = vec!["/".to_owned()];
    let sources = [("not declared".to_owned(), all.as_slice(), false)];
    let r = roots(dir.path());
    let other = "another process than the plugin's own";
    for (path, want) in [
        ("/proc/self/environ", other),
        ("/proc/thread-self/environ", other),
        (&format!("/proc/{}/maps", std::process::id()), other),
        ("/proc/self/fd", other),
        ("/proc/1/environ", other),
        (
            &format!("/{}", "a".repeat(MAX_PATH)),
            "over the 4096-byte limit",
        ),
        ("/dev/zero", "not a regular file"),
        (&fifo.display().to_string(), "not a regular file"),
    ] {
        let got = read(path, &sources, &r, 1 << 20);
        assert!(
            got.as_ref().is_err_and(|e| e.to_string().contains(want)),
            "{path}: {got:?}"
        );
    }
    assert!(read("/proc/cpuinfo", &sources, &r, 1 << 20).is_ok());
    // The plugin's own process is its to read, by /proc/self or its pid.
    r.own_pid.store(std::process::id(), Ordering::Relaxed);
    assert!(read("/proc/self/status", &sources, &r, 1 << 20).is_ok());
    let own = format!("/proc/{}/status", std::process::id());
    assert!(read(&own, &sources, &r, 1 << 20).is_ok());
    assert!(read("/proc/1/status", &sources, &r, 1 << 20).is_err());
    Ok(())
}
