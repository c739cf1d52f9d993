//! tark-attack SOCKET ATTACK N [ARG]: an attacker of tarkd's agent API socket,
//! run by the adversary suite as another uid (a principal or not). Prints one
//! JSON line: what it managed and what tarkd did to it.
//!
//! - `hpack-bomb N BYTES`: N connections, each sending one HEADERS frame of
//!   BYTES of `01 80` (a literal `:authority` with a Huffman-coded empty
//!   value, repeated), then waiting (30 s at most) for tarkd to close it.
//! - `slow-headers N HOLD_S`: N connections, each declaring a HEADERS frame
//!   of 1,048,560 bytes and sending 100 of them, then holding on.
//! - `idle N HOLD_S`: N connections that send nothing and hold on.
//! - `streams N HOLD_S`: one connection, N concurrent health `Watch` calls,
//!   each held open.
//!
//! For the held attacks it reports how many connections tarkd closed (or
//! refused) while they were held.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame_head(len: usize, kind: u8, flags: u8, stream: u32) -> Vec<u8> {
    let mut f = (len as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f
}

/// The client preface and an empty SETTINGS frame.
fn hello() -> Vec<u8> {
    let mut b = PREFACE.to_vec();
    b.extend(frame_head(0, 0x4, 0, 0));
    b
}

/// Reads until tarkd closes the connection or `limit` passes: whether it
/// closed, and when.
async fn until_closed(stream: &mut UnixStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .ok()
        .map(|()| started.elapsed())
}

#[derive(Default)]
struct Tally {
    opened: AtomicUsize,
    connect_failed: AtomicUsize,
    closed: AtomicUsize,
    /// The longest any connection took to be closed, in ms.
    max_close_ms: AtomicUsize,
}

impl Tally {
    fn closed_after(&self, d: Duration) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        self.max_close_ms
            .fetch_max(d.as_millis() as usize, Ordering::Relaxed);
    }

    fn json(&self, attack: &str, extra: serde_json::Value) -> serde_json::Value {
        json!({
            "attack": attack,
            "opened": self.opened.load(Ordering::Relaxed),
            "connect_failed": self.connect_failed.load(Ordering::Relaxed),
            "closed_by_tarkd": self.closed.load(Ordering::Relaxed),
            "max_close_ms": self.max_close_ms.load(Ordering::Relaxed),
            "extra": extra,
        })
    }
}

/// Opens `n` connections at once, each running `each` on its stream.
async fn connections<F, Fut>(socket: &str, n: usize, tally: &Arc<Tally>, each: F)
where
    F: Fn(UnixStream, Arc<Tally>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        match UnixStream::connect(socket).await {
            Ok(s) => {
                tally.opened.fetch_add(1, Ordering::Relaxed);
                tasks.spawn(each(s, Arc::clone(tally)));
            }
            Err(_) => {
                tally.connect_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

async fn hpack_bomb(socket: &str, n: usize, bytes: usize) -> serde_json::Value {
    let tally = Arc::new(Tally::default());
    let mut attack = hello();
    attack.extend(frame_head(bytes, 0x1, 0x4, 1));
    attack.extend(std::iter::repeat_n([0x01u8, 0x80], bytes / 2).flatten());
    let attack = Arc::new(attack);
    connections(socket, n, &tally, |mut s, tally| {
        let attack = Arc::clone(&attack);
        async move {
            let started = Instant::now();
            // tarkd may close mid-write: that is an answer too.
            let _ = s.write_all(&attack).await;
            if until_closed(&mut s, Duration::from_secs(30))
                .await
                .is_some()
            {
                tally.closed_after(started.elapsed());
            }
        }
    })
    .await;
    tally.json("hpack-bomb", json!({ "bytes": bytes }))
}

async fn held(socket: &str, n: usize, hold: Duration, slow: bool) -> serde_json::Value {
    let tally = Arc::new(Tally::default());
    let mut opening = hello();
    if slow {
        opening.extend(frame_head(1_048_560, 0x1, 0x4, 1));
        opening.extend_from_slice(&[0x82; 100]);
    }
    let opening = Arc::new(opening);
    connections(socket, n, &tally, |mut s, tally| {
        let opening = Arc::clone(&opening);
        async move {
            let started = Instant::now();
            if slow {
                let _ = s.write_all(&opening).await;
            }
            if until_closed(&mut s, hold).await.is_some() {
                tally.closed_after(started.elapsed());
            }
            // Held to the end either way: the descriptors stay the attacker's
            // for the whole time, as a real one would keep them.
            tokio::time::sleep_until((started + hold).into()).await;
        }
    })
    .await;
    tally.json(if slow { "slow-headers" } else { "idle" }, json!({}))
}

async fn streams(socket: &str, n: usize, hold: Duration) -> anyhow::Result<serde_json::Value> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let path = socket.to_owned();
    let channel = tonic::transport::Endpoint::from_static("http://tarkd")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    UnixStream::connect(path).await?,
                ))
            }
        }))
        .await?;
    let client = HealthClient::new(channel);
    let codes = Arc::new(std::sync::Mutex::new(BTreeMap::<String, usize>::new()));
    // Streams held open at once (served, not yet dropped), and the most.
    let open = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let until = Instant::now() + hold;
    for _ in 0..n {
        let (mut client, codes) = (client.clone(), Arc::clone(&codes));
        let (open, most) = (Arc::clone(&open), Arc::clone(&most));
        tasks.spawn(async move {
            let code = match client
                .watch(HealthCheckRequest {
                    service: String::new(),
                })
                .await
            {
                Ok(r) => {
                    let mut stream = r.into_inner();
                    // Held open until the end; the first message says it is served.
                    let first = stream.message().await;
                    let code = match first {
                        Ok(Some(_)) => "Held".to_owned(),
                        Ok(None) => "Ended".to_owned(),
                        Err(s) => format!("{:?}", s.code()),
                    };
                    if code == "Held" {
                        let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep_until(until.into()).await;
                        drop(stream);
                        open.fetch_sub(1, Ordering::SeqCst);
                    }
                    code
                }
                Err(s) => format!("{:?}", s.code()),
            };
            if let Ok(mut c) = codes.lock() {
                *c.entry(code).or_default() += 1;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let codes = codes.lock().map(|c| c.clone()).unwrap_or_default();
    Ok(json!({
        "attack": "streams",
        "codes": codes,
        "most_held_at_once": most.load(Ordering::SeqCst),
    }))
}

/// Every descriptor this process may open (the attacks hold thousands).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: tark-attack SOCKET hpack-bomb|slow-headers|idle|streams N [BYTES|HOLD_S]";
    let (Some(socket), Some(attack), Some(n)) = (args.get(1), args.get(2), args.get(3)) else {
        anyhow::bail!("{usage}");
    };
    let n: usize = n.parse()?;
    let arg: u64 = args.get(4).map(|a| a.parse()).transpose()?.unwrap_or(0);
    raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let hold = Duration::from_secs(arg);
    let report = runtime.block_on(async {
        match attack.as_str() {
            "hpack-bomb" => Ok(hpack_bomb(socket, n, arg as usize).await),
            "slow-headers" => Ok(held(socket, n, hold, true).await),
            "idle" => Ok(held(socket, n, hold, false).await),
            "streams" => streams(socket, n, hold).await,
            _ => anyhow::bail!("{usage}"),
        }
    })?;
    println!("{report}");
    Ok(())
}
