//! The agent API socket's front door: who gets a connection at all.
//!
//! A Unix socket tells who connected before a byte is read (`SO_PEERCRED`).
//! A peer that is no principal could never make a call, so it gets none of
//! tarkd's parsing: its connection is answered with a fixed HTTP/2 GOAWAY
//! saying why (a client shows it as the reason its channel failed) and
//! closed, its bytes unread. The rest are counted, in all and per uid, and
//! refused the same way past `api.max_connections` or
//! `api.max_connections_per_uid`: an idle connection holds a descriptor
//! tarkd also needs for its workers ([`plan`] keeps room for them under
//! `RLIMIT_NOFILE`). When accepting fails anyway (EMFILE, ENFILE, ENOMEM),
//! the loop waits before it tries again instead of spinning on a listener
//! that stays readable.
//!
//! Every refusal is audited (the audit's rate limit keeps a flood to a few
//! lines) and counted in `tarkd_api_connections_refused_total`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_stream::Stream;

use super::UnixConn;
use crate::access::principals::{self, Peer, PrincipalConfig};
use crate::broker::audit::AuditLog;
use crate::metrics::{METRICS, Why};

/// What the door lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_uid: usize,
    /// How long a connection may take to send its first request.
    pub first_request: Duration,
}

/// Descriptors tarkd keeps for itself besides its workers': the listeners,
/// the database, the audit file, the artifact cache, the runtime.
const OWN_FDS: u64 = 64;
/// Descriptors one live worker holds in tarkd: its two channels, its stderr,
/// its process, its cgroup, and its broker's idle outbound HTTP connections.
const FDS_PER_WORKER: u64 = 8 + crate::broker::http::clients::MAX_IDLE_SOCKETS as u64;
/// Connections served whatever the descriptor limit says.
const MIN_CONNECTIONS: usize = 16;

/// The connection cap under `nofile` (tarkd's `RLIMIT_NOFILE`) with room
/// for `max_live` workers, and a warning when that lowers the configured one.
pub fn plan(configured: usize, nofile: u64, max_live: usize) -> (usize, Option<String>) {
    let reserve = OWN_FDS + FDS_PER_WORKER * max_live as u64;
    let room = usize::try_from(nofile.saturating_sub(reserve)).unwrap_or(usize::MAX);
    if room >= configured {
        return (configured, None);
    }
    let cap = room.max(MIN_CONNECTIONS);
    let warning = format!(
        "api.max_connections lowered from {configured} to {cap}: the open-files limit ({nofile}) must also hold {reserve} descriptors for tarkd and {max_live} workers (workers.max_live); raise LimitNOFILE"
    );
    (cap, Some(warning))
}

#[derive(Debug, Default)]
struct Counts {
    all: usize,
    by_uid: HashMap<u32, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    NoPrincipal(Peer),
    Full(usize),
    UidFull(u32, usize),
}

impl Refused {
    /// The HTTP/2 error code of the GOAWAY, and the metric's reason.
    fn code(&self) -> (u32, &'static str) {
        match self {
            // INADEQUATE_SECURITY
            Refused::NoPrincipal(_) => (0xc, "no_principal"),
            // ENHANCE_YOUR_CALM
            Refused::Full(_) => (0xb, "max_connections"),
            Refused::UidFull(..) => (0xb, "max_connections_per_uid"),
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NoPrincipal(p) => write!(
                f,
                "uid {} gid {} is no configured principal of tarkd",
                p.uid, p.gid
            ),
            Refused::Full(n) => write!(f, "tarkd has {n} connections open (api.max_connections)"),
            Refused::UidFull(uid, n) => write!(
                f,
                "uid {uid} has {n} connections open (api.max_connections_per_uid)"
            ),
        }
    }
}

/// Whether a peer (a principal or not) may have one more connection.
fn decide(counts: &Counts, peer: Peer, principal: bool, limits: &Limits) -> Result<(), Refused> {
    if !principal {
        return Err(Refused::NoPrincipal(peer));
    }
    if counts.all >= limits.max_connections {
        return Err(Refused::Full(counts.all));
    }
    let mine = counts.by_uid.get(&peer.uid).copied().unwrap_or(0);
    if mine >= limits.max_connections_per_uid {
        return Err(Refused::UidFull(peer.uid, mine));
    }
    Ok(())
}

/// Connections closed since [`take_closed`] was last called.
static CLOSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many connections (admitted or refused) have closed since the last
/// call: what they held is free heap that tarkd can hand back.
pub fn take_closed() -> usize {
    CLOSED.swap(0, std::sync::atomic::Ordering::Relaxed)
}

/// One connection's place under the limits, given back when it is dropped.
#[derive(Debug)]
pub struct Admitted {
    counts: Arc<Mutex<Counts>>,
    uid: u32,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.all = c.all.saturating_sub(1);
        if let Some(n) = c.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                c.by_uid.remove(&self.uid);
            }
        }
        METRICS.api_connections.dec();
        CLOSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What a refused peer reads: the server's connection preface (an empty
/// SETTINGS frame) and a GOAWAY with `code` and `why` as its debug data.
pub fn refusal(code: u32, why: &str) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    let debug = &why.as_bytes()[..why.len().min(1024)];
    let len = 8 + debug.len();
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[0x7, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(debug);
    out
}

/// Accepted connections, as tonic's `incoming` stream.
pub struct Edge {
    listener: UnixListener,
    principals: Vec<PrincipalConfig>,
    own_uid: u32,
    audit: Arc<AuditLog>,
    limits: Limits,
    counts: Arc<Mutex<Counts>>,
    backoff: Backoff,
    /// Refused connections still open until their clients read why.
    lingering: Arc<std::sync::atomic::AtomicUsize>,
}

/// Connections handled in one poll before the stream yields to the runtime.
const BATCH: usize = 64;

impl Edge {
    pub fn new(
        listener: UnixListener,
        principals: Vec<PrincipalConfig>,
        own_uid: u32,
        audit: Arc<AuditLog>,
        limits: Limits,
    ) -> Self {
        Self {
            listener,
            principals,
            own_uid,
            audit,
            limits,
            counts: Arc::default(),
            backoff: Backoff::default(),
            lingering: Arc::default(),
        }
    }

    /// Admits or refuses one accepted stream.
    fn door(&self, stream: UnixStream) -> Option<UnixConn> {
        let peer = match stream.peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                gid: c.gid(),
            },
            // No credentials: no one.
            Err(_) => Peer {
                uid: u32::MAX,
                gid: u32::MAX,
            },
        };
        let known = principals::identify(&self.principals, peer, self.own_uid).is_some();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match decide(&counts, peer, known, &self.limits) {
            Ok(()) => {
                counts.all += 1;
                *counts.by_uid.entry(peer.uid).or_default() += 1;
                drop(counts);
                METRICS.api_connections.inc();
                let admitted = Admitted {
                    counts: Arc::clone(&self.counts),
                    uid: peer.uid,
                };
                Some(UnixConn::admitted(
                    stream,
                    admitted,
                    self.limits.first_request,
                ))
            }
            Err(refused) => {
                drop(counts);
                let (code, reason) = refused.code();
                let why = refused.to_string();
                // Best effort, never waiting: the socket's buffer is empty.
                let _ = stream.try_write(&refusal(code, &format!("tarkd: {why}")));
                self.linger(stream);
                METRICS
                    .api_connections_refused
                    .get_or_create(&Why {
                        reason: reason.to_owned(),
                    })
                    .inc();
                self.audit.record("-", "-", "api", "connect", "deny", &why);
                None
            }
        }
    }
}

impl Edge {
    /// Closes a refused connection once the client has read why (its
    /// preface, written meanwhile, is read and dropped: closed at once, the
    /// socket would fail the client's write with EPIPE before it could read
    /// the GOAWAY). At most [`MAX_LINGERING`] at a time, each for at most
    /// [`LINGER`] and [`LINGER_BYTES`]; past that, closed at once.
    fn linger(&self, stream: UnixStream) {
        use std::sync::atomic::Ordering;
        if self.lingering.fetch_add(1, Ordering::AcqRel) >= MAX_LINGERING {
            self.lingering.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let lingering = Arc::clone(&self.lingering);
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = stream;
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            let drain = async {
                let mut read = 0;
                while read < LINGER_BYTES {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER, drain).await;
            lingering.fetch_sub(1, Ordering::AcqRel);
            CLOSED.fetch_add(1, Ordering::Relaxed);
        });
    }
}

/// Refused connections kept open at once until their clients have read why.
const MAX_LINGERING: usize = 256;
/// How long, and how many bytes, a refused client is read and ignored.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 << 10;

/// Whether an accept error means "out of a resource, try later" rather than
/// "this one connection failed".
fn exhausted(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The wait after `failures` shortages in a row: 10 ms, doubling to 1 s.
fn wait_after(failures: u32) -> Duration {
    Duration::from_millis(10 << failures.min(7)).min(Duration::from_secs(1))
}

/// Waiting between accepts while accepting fails for want of a resource
/// (10 ms, doubling to 1 s), instead of spinning on a listener that stays
/// readable.
#[derive(Default)]
pub struct Backoff {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    failures: u32,
}

impl Backoff {
    /// Ready once any wait is over.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(sleep) = self.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        Poll::Ready(())
    }

    /// An accept succeeded.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// An accept failed: true if it is a shortage to wait out (the wait is
    /// armed and its wake-up registered), false if only that connection
    /// failed.
    pub fn failed(&mut self, e: &std::io::Error, cx: &mut Context<'_>, what: &str) -> bool {
        if !exhausted(e) {
            tracing::debug!("accept ({what}): {e}");
            return false;
        }
        let wait = wait_after(self.failures);
        if self.failures == 0 {
            tracing::error!(
                "accepting {what} connections: {e}; retrying every {} ms while it lasts",
                wait.as_millis()
            );
        }
        self.failures += 1;
        let mut sleep = Box::pin(tokio::time::sleep(wait));
        // Registers the wake-up; a fresh sleep is never ready.
        let _ = sleep.as_mut().poll(cx);
        self.sleep = Some(sleep);
        true
    }
}

impl Stream for Edge {
    type Item = std::io::Result<UnixConn>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.backoff.poll_ready(cx).is_pending() {
            return Poll::Pending;
        }
        for _ in 0..BATCH {
            match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((stream, _))) => {
                    this.backoff.reset();
                    if let Some(conn) = this.door(stream) {
                        return Poll::Ready(Some(Ok(conn)));
                    }
                }
                Poll::Ready(Err(e)) => {
                    if this.backoff.failed(&e, cx, "agent API") {
                        return Poll::Pending;
                    }
                }
            }
        }
        // Many refusals in a row: let the runtime run others, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_connections: 3,
        max_connections_per_uid: 2,
        first_request: Duration::from_secs(10),
    };

    #[test]
    fn a_shortage_is_waited_out_and_one_failed_connection_is_not() {
        let waits: Vec<u64> = (0..10).map(|n| wait_after(n).as_millis() as u64).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        for (errno, shortage) in [
            (libc::EMFILE, true),
            (libc::ENFILE, true),
            (libc::ENOBUFS, true),
            (libc::ENOMEM, true),
            (libc::ECONNABORTED, false),
            (libc::EPROTO, false),
            (libc::EPERM, false),
        ] {
            assert_eq!(
                exhausted(&std::io::Error::from_raw_os_error(errno)),
                shortage,
                "{errno}"
            );
        }
    }

    #[test]
    fn the_door_decides_by_principal_then_totals_then_uid() {
        let peer = |uid| Peer { uid, gid: uid };
        let counts = |all, mine: &[(u32, usize)]| Counts {
            all,
            by_uid: mine.iter().copied().collect(),
        };
        let cases = [
            (
                counts(0, &[]),
                peer(7),
                false,
                Err(Refused::NoPrincipal(peer(7))),
            ),
            (counts(0, &[]), peer(7), true, Ok(())),
            (counts(2, &[(7, 1), (8, 1)]), peer(7), true, Ok(())),
            (
                counts(2, &[(7, 2)]),
                peer(7),
                true,
                Err(Refused::UidFull(7, 2)),
            ),
            (counts(2, &[(7, 2)]), peer(8), true, Ok(())),
            (
                counts(3, &[(8, 1), (9, 2)]),
                peer(7),
                true,
                Err(Refused::Full(3)),
            ),
            // No principal is refused even with room to spare.
            (
                counts(0, &[]),
                peer(0),
                false,
                Err(Refused::NoPrincipal(peer(0))),
            ),
        ];
        for (c, p, known, want) in cases {
            assert_eq!(decide(&c, p, known, &LIMITS), want, "{c:?} {p:?} {known}");
        }
    }

    #[test]
    fn the_connection_cap_leaves_room_for_workers() {
        let cases = [
            // (configured, nofile, max_live) → cap, warned
            (1024, 524_288, 1024, 1024, false),
            (1024, 20_000, 1024, 1024, false),
            (1024, 17_000, 1024, 552, true),
            (1024, 9_000, 1024, MIN_CONNECTIONS, true),
            (1024, 1024, 1024, MIN_CONNECTIONS, true),
            (100, 1024, 10, 100, false),
        ];
        for (configured, nofile, live, cap, warned) in cases {
            let (got, warning) = plan(configured, nofile, live);
            assert_eq!(
                (got, warning.is_some()),
                (cap, warned),
                "{configured} {nofile} {live}"
            );
        }
        assert!(
            plan(1024, 1024, 1024)
                .1
                .is_some_and(|w| w.contains("LimitNOFILE"))
        );
    }

    #[test]
    fn a_refusal_is_a_settings_frame_and_a_goaway() {
        let bytes = refusal(
            0xc,
            "tarkd: uid 7 gid 7 is no configured principal of tarkd",
        );
        assert_eq!(&bytes[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let goaway = &bytes[9..];
        let len = usize::from(goaway[1]) << 8 | usize::from(goaway[2]);
        assert_eq!((goaway[0], goaway[3], len), (0, 0x7, goaway.len() - 9));
        assert_eq!(
            &goaway[9..13],
            &[0, 0, 0, 0],
            "last stream 0: nothing was processed"
        );
        assert_eq!(&goaway[13..17], &0xcu32.to_be_bytes());
        assert!(goaway[17..].starts_with(b"tarkd: uid 7"));
        assert!(refusal(0xb, &"x".repeat(5000)).len() < 1100);
    }
}
