//! Harness for end-to-end tests and benchmarks: real tarkd processes (which start
//! real workers) on a temp socket with a temp state dir.

mod calls;
pub mod fixtures;
pub mod https;
mod plugin_files;
mod process;
pub mod report_tables;
pub mod servers;
pub mod tls;

pub use calls::{Failed, StopOnDrop, Victim, call, for_tenant, invoke, output, probe};
pub use plugin_files::PluginFiles;
pub use process::{alive, children, cpu_ticks, eventually, eventually_async, parent, run_ok};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use tark_proto::plugin::v1 as pb;
use tonic::transport::{Channel, Endpoint};

/// How long a test waits for tarkd to come up or for an expected log line.
pub const STARTUP: Duration = Duration::from_secs(30);

/// The directory holding the workspace's built binaries: this test's own
/// target dir (target/<profile>), or `TARK_BIN_DIR` (to run the tests against
/// another build, e.g. to see a regression test fail on the code before a fix).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TARK_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// A built binary of the workspace; fails with a hint if it was not built.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let p = bin_dir().join(name);
    if !p.is_file() {
        bail!(
            "{} not found: build the binaries first (scripts/test does)",
            p.display()
        );
    }
    Ok(p)
}

/// A tarkd under test. Killed (with its workers) when dropped.
pub struct Tarkd {
    pub child: Option<Child>,
    pub dir: Arc<tempfile::TempDir>,
    pub socket: PathBuf,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
    config_path: PathBuf,
    env: Vec<(String, String)>,
    cgroup: Option<PathBuf>,
}

/// Options for [`Tarkd::start`].
#[derive(Default)]
pub struct Options {
    /// Extra config TOML (sections beyond the paths).
    pub config: String,
    /// Environment variables for tarkd.
    pub env: Vec<(String, String)>,
    /// Leave the plugins unapproved (by default each is approved for what its
    /// manifest declares, as an operator provisioning approvals would).
    pub unapproved: bool,
    /// A cgroup v2 directory tarkd starts in (as systemd starts a unit in its
    /// own cgroup).
    pub cgroup: Option<PathBuf>,
}

impl Tarkd {
    /// Installs `plugins` into a fresh plugins dir and starts tarkd on it.
    pub fn start(plugins: Vec<PluginFiles>, opts: Options) -> anyhow::Result<Self> {
        let dir = Arc::new(tempfile::tempdir()?);
        let plugins_dir = dir.path().join("plugins");
        let approvals = dir.path().join("state").join("approvals");
        std::fs::create_dir_all(&approvals)?;
        for p in plugins {
            let pdir = plugins_dir.join(&p.folder);
            std::fs::create_dir_all(&pdir)?;
            for (name, bytes) in p.files {
                if name == "plugin.toml" && !opts.unapproved {
                    approve(&approvals.join(format!("{}.toml", p.folder)), &bytes)?;
                }
                let path = pdir.join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(path, bytes)?;
            }
        }
        let socket = dir.path().join("tarkd.sock");
        let config_path = dir.path().join("tarkd.toml");
        let config = format!(
            "socket = {:?}\nstate_dir = {:?}\nplugins_dir = {:?}\n{}\n",
            socket,
            dir.path().join("state"),
            plugins_dir,
            opts.config
        );
        std::fs::write(&config_path, config)?;
        let mut t = Self {
            child: None,
            dir,
            socket,
            log: Arc::new((Mutex::new(Vec::new()), Condvar::new())),
            config_path,
            env: opts.env,
            cgroup: opts.cgroup,
        };
        t.launch()?;
        Ok(t)
    }

    /// Runs tarkctl: its trimmed stdout, or its trimmed stderr as the error.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<Result<String, String>> {
        let o = self.tarkctl(args)?;
        let out = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        let err = String::from_utf8_lossy(&o.stderr).trim().to_owned();
        Ok(if o.status.success() {
            Ok(out)
        } else {
            Err(err)
        })
    }

    /// Runs tarkctl, which must succeed; its trimmed stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        self.ctl(args)?
            .map_err(|e| anyhow::anyhow!("tarkctl {args:?} failed: {e}"))
    }

    /// The environment the next [`Self::launch`] gives tarkd.
    pub fn set_env(&mut self, env: Vec<(String, String)>) {
        self.env = env;
    }

    /// Starts (or restarts) the tarkd process on the same dirs and waits until it
    /// says it is serving.
    pub fn launch(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(binary("tarkd")?);
        cmd.arg("--config")
            .arg(&self.config_path)
            .env("TARKD_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(cgroup) = &self.cgroup {
            use std::os::fd::{AsRawFd, OwnedFd};
            use std::os::unix::process::CommandExt;
            let procs = OwnedFd::from(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(cgroup.join("cgroup.procs"))?,
            );
            let fd = procs.as_raw_fd();
            // SAFETY: write(2) between fork and exec, on a descriptor this
            // process holds open until spawn returns.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = cmd.spawn().context("starting tarkd");
            drop(procs);
            return self.watch(child?);
        }
        let child = cmd.spawn().context("starting tarkd")?;
        self.watch(child)
    }

    /// Relays a started tarkd's log and waits until it says it is serving.
    fn watch(&mut self, mut child: Child) -> anyhow::Result<()> {
        let stderr = child.stderr.take().context("tarkd stderr")?;
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let (lines, cv) = &*log;
                lines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(strip_ansi(&line));
                cv.notify_all();
            }
        });
        let pid = child.id();
        self.child = Some(child);
        self.wait_for_log(
            &format!("tarkd serving socket={} pid={pid}", self.socket.display()),
            STARTUP,
        )
        .context("tarkd did not start")?;
        Ok(())
    }

    /// Waits until a log line contains `needle`; returns that line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let (lines, cv) = &*self.log;
        let deadline = Instant::now() + timeout;
        let mut guard = lines.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(l) = guard.iter().find(|l| l.contains(needle)) {
                return Ok(l.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "no log line containing {needle:?} within {timeout:?}; log:\n{}",
                    guard.join("\n")
                );
            }
            guard = cv
                .wait_timeout(guard, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal to tarkd and waits for it to exit.
    pub fn stop(&mut self, signal: i32) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("tarkd is not running")?;
        // SAFETY: kill(2) with our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        Ok(child.wait()?)
    }

    /// A gRPC channel to tarkd's socket.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let path = self.socket.clone();
        Ok(Endpoint::from_static("http://tarkd")
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await?)
    }

    pub async fn tools(&self) -> anyhow::Result<pb::tools_client::ToolsClient<Channel>> {
        Ok(pb::tools_client::ToolsClient::new(self.channel().await?))
    }

    pub async fn plugins(&self) -> anyhow::Result<pb::plugins_client::PluginsClient<Channel>> {
        Ok(pb::plugins_client::PluginsClient::new(
            self.channel().await?,
        ))
    }

    pub async fn providers(
        &self,
    ) -> anyhow::Result<pb::providers_client::ProvidersClient<Channel>> {
        Ok(pb::providers_client::ProvidersClient::new(
            self.channel().await?,
        ))
    }

    pub async fn system(&self) -> anyhow::Result<pb::system_client::SystemClient<Channel>> {
        Ok(pb::system_client::SystemClient::new(self.channel().await?))
    }

    pub async fn auth(&self) -> anyhow::Result<pb::auth_client::AuthClient<Channel>> {
        Ok(pb::auth_client::AuthClient::new(self.channel().await?))
    }

    /// Runs tarkctl against this tarkd from the folder `dir` (`plugin add ./`).
    pub fn tarkctl_in(&self, dir: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(Command::new(binary("tarkctl")?)
            .current_dir(dir)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()?)
    }

    /// Runs tarkctl against this tarkd.
    pub fn tarkctl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(Command::new(binary("tarkctl")?)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()?)
    }
}

impl Drop for Tarkd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Options {
    /// Options with extra config TOML and nothing else.
    pub fn config(text: &str) -> Self {
        Self {
            config: text.to_owned(),
            ..Self::default()
        }
    }
}

/// Writes an approval of everything a manifest declares: its `[capabilities]`
/// table, which is the approval file's format.
fn approve(path: &Path, manifest: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let text = String::from_utf8_lossy(manifest);
    let caps = text
        .find("[capabilities]")
        .map(|at| &text[at..])
        .unwrap_or("[capabilities]\n");
    // Fixtures keep [capabilities] last; a later table would end it.
    let caps = match caps[1..].find("\n[") {
        Some(end) => &caps[..end + 1],
        None => caps,
    };
    std::fs::write(path, caps)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// A tool plugin folder: a manifest declaring `capabilities` (TOML lines) and the
/// given module.
pub fn tool_plugin(
    name: &str,
    capabilities: &str,
    wasm: anyhow::Result<Vec<u8>>,
) -> anyhow::Result<PluginFiles> {
    Ok(PluginFiles::new(
        name,
        &fixtures::manifest(name, "tool", capabilities),
        Some(wasm?),
    ))
}
