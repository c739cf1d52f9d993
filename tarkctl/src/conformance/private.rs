//! A tarkd of the conformance run's own: a temporary state dir, plugins dir
//! and socket, started from the tarkd binary beside tarkctl (or
//! `$TARKCTL_TARKD`), ready when it says so over `NOTIFY_SOCKET` (the systemd
//! protocol tarkd already speaks), stopped when dropped. The plugin under test
//! runs in its sandboxed workers exactly as it would in production, and
//! nothing of the host's tarkd (its plugins, grants, storage) is touched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tonic::transport::Channel;

/// How long tarkd may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The private tarkd; killed on drop.
pub struct Private {
    child: tokio::process::Child,
    pub channel: Channel,
    /// Holds the state, the plugins and the socket until the run ends.
    dir: tempfile::TempDir,
}

/// The tarkd binary: `$TARKCTL_TARKD`, else the one beside tarkctl, else
/// `tarkd` on PATH.
fn tarkd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TARKCTL_TARKD") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("tarkd")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("tarkd"))
}

impl Private {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tarkctl-conformance-")
            .tempdir()?;
        let socket = dir.path().join("tarkd.sock");
        let config = dir.path().join("tarkd.toml");
        std::fs::write(
            &config,
            format!(
                "socket = {:?}\nstate_dir = {:?}\nplugins_dir = {:?}\n\n[sandbox.cgroup]\nplace = \"off\"\n",
                socket,
                dir.path().join("state"),
                dir.path().join("plugins"),
            ),
        )?;
        let notify_path = dir.path().join("notify");
        let notify = tokio::net::UnixDatagram::bind(&notify_path)?;
        let log = std::fs::File::create(dir.path().join("tarkd.log"))?;
        let binary = tarkd_binary();
        let mut child = tokio::process::Command::new(&binary)
            .arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} for the conformance run", binary.display()))?;
        let ready = async {
            let mut buf = [0u8; 4096];
            loop {
                let n = notify.recv(&mut buf).await?;
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
                {
                    return Ok::<_, std::io::Error>(());
                }
            }
        };
        tokio::select! {
            r = tokio::time::timeout(READY_WITHIN, ready) => match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => bail!("waiting for the private tarkd: {e}"),
                Err(_) => bail!("the private tarkd was not ready within {READY_WITHIN:?}{}", log_tail(dir.path())),
            },
            status = child.wait() => bail!(
                "the private tarkd exited ({}){}",
                status.map(|s| s.to_string()).unwrap_or_default(),
                log_tail(dir.path())
            ),
        }
        let channel = crate::connect(socket).await?;
        Ok(Self {
            child,
            channel,
            dir,
        })
    }

    /// The end of the private tarkd's log, to explain a failure.
    pub fn log(&self) -> String {
        log_tail(self.dir.path())
    }

    /// Stops it (SIGTERM, so its workers are stopped too) and waits.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("tarkd.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n  ");
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its log ends:\n  {tail}")
    }
}
