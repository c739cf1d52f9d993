//! tarkd under systemd's service protocol, against a fake `NOTIFY_SOCKET`:
//! `READY=1` only once the API socket accepts, `WATCHDOG=1` pings while tarkd
//! answers, `STOPPING=1` on SIGTERM; and, with the `test-hooks` feature, the
//! pings stop when the worker manager is wedged.

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

use tark_tests::{Options, Tarkd};

/// A fake systemd: the notify socket, and every message it received.
struct Manager {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Manager {
    fn bind(path: &std::path::Path) -> anyhow::Result<Self> {
        let socket = UnixDatagram::bind(path)?;
        socket.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self {
            socket,
            seen: Vec::new(),
        })
    }

    /// The next message (waiting up to 30 s).
    fn next(&mut self) -> anyhow::Result<String> {
        let mut buf = vec![0u8; 4096];
        let n = self.socket.recv(&mut buf)?;
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.seen.push(msg.clone());
        Ok(msg)
    }

    /// Messages until one contains `what`.
    fn until(&mut self, what: &str) -> anyhow::Result<String> {
        loop {
            let msg = self.next()?;
            if msg.lines().any(|l| l == what) {
                return Ok(msg);
            }
        }
    }
}

fn options(notify: &std::path::Path, watchdog_usec: u32, extra: &[(&str, &str)]) -> Options {
    let mut env = vec![
        ("NOTIFY_SOCKET".to_owned(), notify.display().to_string()),
        ("WATCHDOG_USEC".to_owned(), watchdog_usec.to_string()),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Options {
        env,
        ..Options::default()
    }
}

#[test]
fn ready_after_the_socket_binds_pings_then_stopping() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("notify");
    let mut systemd = Manager::bind(&path)?;
    let mut t = Tarkd::start(vec![], options(&path, 400_000, &[]))?;
    let ready = systemd.until("READY=1")?;
    assert!(ready.contains("STATUS=serving 0 plugins on"), "{ready}");
    // READY=1 means the agent can connect.
    UnixStream::connect(&t.socket)?;
    let ping = systemd.until("WATCHDOG=1")?;
    assert!(ping.contains("STATUS=serving; 0 live workers"), "{ping}");
    systemd.until("WATCHDOG=1")?;
    let status = t.stop(libc::SIGTERM)?;
    assert!(status.success(), "{status:?}");
    systemd.until("STOPPING=1")?;
    let ready_at = systemd.seen.iter().position(|m| m.contains("READY=1"));
    assert_eq!(ready_at, Some(0), "READY=1 comes first: {:?}", systemd.seen);
    Ok(())
}

/// With tarkd's test hook (scripts/test builds it): a wedged worker manager.
#[cfg(feature = "test-hooks")]
mod wedged {
    use super::*;
    use tark_tests::eventually;

    impl Manager {
        /// How many messages already queued contain `what` (not waiting).
        fn drain_count(&mut self, what: &str) -> anyhow::Result<usize> {
            self.socket.set_nonblocking(true)?;
            let mut n = 0;
            let mut buf = vec![0u8; 4096];
            while let Ok(len) = self.socket.recv(&mut buf) {
                n += usize::from(
                    String::from_utf8_lossy(&buf[..len])
                        .lines()
                        .any(|l| l == what),
                );
            }
            self.socket.set_nonblocking(false)?;
            Ok(n)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pings_stop_while_the_worker_manager_is_wedged() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("notify");
        let mut systemd = Manager::bind(&path)?;
        let hook = [("TARKD_TEST_WEDGE_WORKERS", "1")];
        let mut t = Tarkd::start(vec![], options(&path, 200_000, &hook))?;
        systemd.until("READY=1")?;
        systemd.until("WATCHDOG=1")?;
        t.wait_for_log(
            "test hook: wedging the worker manager",
            Duration::from_secs(30),
        )?;
        // Two ticks refused: the probe that was in flight, if any, has answered.
        let refusals = |t: &Tarkd| t.log().iter().filter(|l| l.contains("not pinging")).count();
        assert!(eventually(Duration::from_secs(30), || refusals(&t) >= 2).await);
        systemd.drain_count("WATCHDOG=1")?;
        // From here on, tick after tick, nothing.
        let seen = refusals(&t);
        assert!(eventually(Duration::from_secs(30), || refusals(&t) >= seen + 5).await);
        assert_eq!(systemd.drain_count("WATCHDOG=1")?, 0, "pinged while wedged");
        t.stop(libc::SIGKILL)?;
        Ok(())
    }
}
