//! The baselines: a tonic unary echo over Unix sockets, three ways.
//!
//! - `same runtime`: client and server tasks on the bench's own runtime;
//! - `second runtime`: the server on runtime threads of its own (how tarkd-bench
//!   measured it before: each call crosses threads);
//! - `two hops`: client → a proxy process → an echo process, the floor of
//!   agent → tarkd → worker. The proxy runs a multi-thread runtime like tarkd,
//!   the echo process a current-thread one like a worker. Both are this binary,
//!   started with `--proxy` / `--echo-server`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tark_proto::worker::v1 as wpb;
use tonic::transport::Channel;

pub type Client = wpb::broker_client::BrokerClient<Channel>;

struct Echo;

#[tonic::async_trait]
impl wpb::broker_server::Broker for Echo {
    async fn env_get(
        &self,
        req: tonic::Request<wpb::EnvName>,
    ) -> Result<tonic::Response<wpb::EnvValue>, tonic::Status> {
        Ok(tonic::Response::new(wpb::EnvValue {
            value: Some(req.into_inner().name),
        }))
    }
}

/// Forwards each echo to the next process.
struct Proxy(Client);

#[tonic::async_trait]
impl wpb::broker_server::Broker for Proxy {
    async fn env_get(
        &self,
        req: tonic::Request<wpb::EnvName>,
    ) -> Result<tonic::Response<wpb::EnvValue>, tonic::Status> {
        self.0.clone().env_get(req.into_inner()).await
    }
}

async fn serve<S>(service: S, path: &Path) -> anyhow::Result<()>
where
    S: wpb::broker_server::Broker,
{
    let listener = tokio::net::UnixListener::bind(path)?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    tonic::transport::Server::builder()
        .add_service(wpb::broker_server::BrokerServer::new(service))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

pub async fn connect(path: PathBuf) -> anyhow::Result<Client> {
    let channel = tonic::transport::Endpoint::from_static("http://echo")
        .connect_with_connector(tower::service_fn(move |_| {
            let p = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await?;
    Ok(Client::new(channel))
}

/// One echo call.
pub async fn call(c: &Client) -> anyhow::Result<()> {
    c.clone()
        .env_get(wpb::EnvName {
            name: "ping".into(),
        })
        .await?;
    Ok(())
}

/// `--echo-server SOCK` and `--proxy SOCK UPSTREAM`: the two-hop processes.
/// `None` when the arguments ask for neither (the bench itself).
pub fn child_main(args: &[String]) -> Option<anyhow::Result<()>> {
    let (current_thread, job): (bool, _) = match args {
        [_, flag, sock] if flag == "--echo-server" => (true, (PathBuf::from(sock), None)),
        [_, flag, sock, up] if flag == "--proxy" => {
            (false, (PathBuf::from(sock), Some(PathBuf::from(up))))
        }
        _ => return None,
    };
    // Ends with the bench.
    // SAFETY: prctl(PR_SET_PDEATHSIG) with a valid signal number.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let rt = if current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    Some(rt.map_err(Into::into).and_then(|rt| {
        rt.block_on(async move {
            match job {
                (sock, None) => serve(Echo, &sock).await,
                (sock, Some(up)) => serve(Proxy(connect(up).await?), &sock).await,
            }
        })
    }))
}

/// The three baselines, ready to call; the processes end with it.
pub struct Baselines {
    pub same_runtime: Client,
    pub second_runtime: Client,
    pub two_hops: Client,
    /// The proxy and echo processes, for their CPU time.
    pub children: Vec<Child>,
}

impl Drop for Baselines {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn wait_for(path: &Path) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while !path.exists() {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

pub async fn start(dir: &Path) -> anyhow::Result<Baselines> {
    let same = dir.join("same.sock");
    let listener = tokio::net::UnixListener::bind(&same)?;
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(wpb::broker_server::BrokerServer::new(Echo))
            .serve_with_incoming(incoming)
            .await;
    });

    let second = dir.join("second.sock");
    let path = second.clone();
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            let _ = rt.block_on(serve(Echo, &path));
        }
    });

    let me = std::env::current_exe()?;
    let (echo_sock, proxy_sock) = (dir.join("hop2.sock"), dir.join("hop1.sock"));
    let mut children = vec![
        Command::new(&me)
            .arg("--echo-server")
            .arg(&echo_sock)
            .spawn()?,
    ];
    wait_for(&echo_sock).await?;
    children.push(
        Command::new(&me)
            .arg("--proxy")
            .arg(&proxy_sock)
            .arg(&echo_sock)
            .spawn()?,
    );
    wait_for(&proxy_sock).await?;
    wait_for(&second).await?;
    Ok(Baselines {
        same_runtime: connect(same).await?,
        second_runtime: connect(second).await?,
        two_hops: connect(proxy_sock).await?,
        children,
    })
}
