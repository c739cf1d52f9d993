//! Command tools reached the host's Unix sockets by path: a 0777 socket
//! under /tmp answered from inside the jail, since neither landlock's rights
//! nor the empty network namespace cover `connect()` to a pathname socket
//! (journald's `/dev/log`, D-Bus, a container runtime's socket on a real
//! host). Now the jail's root holds none of the host's `/tmp`, `/run` or
//! `/dev` but what it needs, and `socket(AF_UNIX)` is refused unless the
//! tool declares the socket it may use, which then works.

use std::cell::Cell;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use tark_tests::{Options, PluginFiles, Tarkd, call};

/// A listening socket anyone may connect to, counting who did; removed
/// (with the folder made for it) when dropped.
///
/// A Unix-socket `connect()` returns once the connection is queued on the
/// listener, so counting drains that queue when asked: a connection the tool
/// reported is always counted, with no thread racing the assertion.
struct Listening {
    path: PathBuf,
    made_dir: Option<PathBuf>,
    listener: UnixListener,
    accepted: Cell<usize>,
}

impl Listening {
    fn at(path: &Path) -> anyhow::Result<Self> {
        let parent = path.parent().unwrap_or(Path::new("/"));
        let made_dir = (!parent.exists()).then(|| parent.to_owned());
        std::fs::create_dir_all(parent)?;
        if made_dir.is_some() {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o777))?;
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            path: path.to_owned(),
            made_dir,
            listener,
            accepted: Cell::new(0),
        })
    }

    /// Every connection made so far.
    fn accepted(&self) -> usize {
        while self.listener.accept().is_ok() {
            self.accepted.set(self.accepted.get() + 1);
        }
        self.accepted.get()
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(d) = &self.made_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A command tool plugin, `name`, that connects to the socket at its
/// argument; `declared` adds the tool's `sockets` line.
fn connector(name: &str, data: &Path, allowed: &Path, declared: bool) -> PluginFiles {
    let sockets = if declared {
        format!("sockets = [\"{}\"]", allowed.display())
    } else {
        String::new()
    };
    let manifest = format!(
        r#"[plugin]
name = "{name}"
version = "1.0.0"
type = "tool"

[capabilities]
shell = true
fs_read = ["{}", "{}"]

[[tools]]
name = "{name}"
command = "python3"
args = ["-c", "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print('connected')", "{{path}}"]
{sockets}
"#,
        data.display(),
        allowed.display(),
    );
    PluginFiles::new(name, &manifest, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_tools_reach_no_host_socket_but_a_declared_one() -> anyhow::Result<()> {
    if !Path::new("/usr/bin/python3").exists() {
        eprintln!("SKIPPED: no /usr/bin/python3 to connect with (scripts/deps installs it)");
        return Ok(());
    }
    let id = std::process::id();
    let tmp_dir = tempfile::tempdir()?;
    std::fs::set_permissions(tmp_dir.path(), std::fs::Permissions::from_mode(0o777))?;
    let in_tmp = Listening::at(&tmp_dir.path().join("open.sock"))?;
    let in_run = Listening::at(Path::new(&format!("/run/tark-adversary-{id}/open.sock")))?;
    // journald's socket, where this machine has none (a test's own).
    let dev_log = (!Path::new("/dev/log").exists())
        .then(|| Listening::at(Path::new("/dev/log")))
        .transpose()?;
    let allowed = Listening::at(Path::new(&format!("/run/tark-adversary-{id}/allowed.sock")))?;
    let data = tempfile::tempdir()?;
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755))?;
    let t = Tarkd::start(
        vec![
            connector("connect", data.path(), &allowed.path, false),
            connector("declared", data.path(), &allowed.path, true),
        ],
        Options::default(),
    )?;
    let tools = t.tools().await?;
    let connect = |tool: &'static str, path: &Path| {
        let args = serde_json::json!({ "path": path }).to_string();
        let mut tools = tools.clone();
        async move { call(&mut tools, tool, &args).await }
    };
    let mut targets = vec![&in_tmp, &in_run];
    targets.extend(dev_log.as_ref());
    for target in &targets {
        let got = connect("connect", &target.path).await;
        assert!(
            got.as_ref().is_err_and(|e| !e.contains("connected")),
            "{}: {got:?}",
            target.path.display()
        );
        // Nor through a tool that may use a socket: only its own is there.
        let got = connect("declared", &target.path).await;
        assert!(got.is_err(), "{}: {got:?}", target.path.display());
        assert_eq!(
            target.accepted(),
            0,
            "{} answered from inside the jail",
            target.path.display()
        );
    }
    // The declared socket is the one it can use.
    let got = connect("declared", &allowed.path).await;
    assert_eq!(got.as_deref(), Ok("connected\n"));
    assert_eq!(allowed.accepted(), 1);
    // Without a declared socket, no Unix socket can even be made.
    let got = connect("connect", &allowed.path).await;
    assert!(
        got.as_ref().is_err_and(|e| e.contains("PermissionError")),
        "{got:?}"
    );
    Ok(())
}
