//! Starting tarkd: directories, storage, registry, and the agent API socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tokio::net::UnixListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::api::Api;
use crate::api::standard::StandardLayer;
use crate::broker::Authority;
use crate::broker::http::Outbound;
use crate::broker::storage::Storage;
use crate::config::Config;
use crate::daemon::Daemon;
use crate::plugins::approvals::Approvals;
use crate::plugins::bundled;
use crate::plugins::registry::Registry;
use crate::workers::Workers;
use crate::workers::cache::{self, ArtifactCache};
use crate::workers::spawn::Spawner;

/// Why tarkd could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tark-worker not found at {0} (set worker_path in the config)")]
    NoWorker(PathBuf),
    #[error("another tarkd is already serving on {0}")]
    SocketInUse(PathBuf),
    #[error("opening storage {path}: {source}")]
    Storage {
        path: PathBuf,
        source: crate::broker::storage::StorageError,
    },
    #[error("tark_version: {0}")]
    Version(#[from] semver::Error),
    #[error(transparent)]
    Approval(#[from] crate::plugins::approvals::ApprovalError),
    #[error("metrics.listen: {0}")]
    Metrics(String),
    #[error("api.tcp {addr}: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StartError + 'a {
    move |source| StartError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// A started tarkd: the daemon state and its bound socket.
pub struct Started {
    pub daemon: Arc<Daemon>,
    pub listener: UnixListener,
    /// The TCP listener with mutual TLS, when `api.tcp` is set.
    pub tcp: Option<(tokio::net::TcpListener, ServerTlsConfig)>,
    /// The metrics scrape listener, when `metrics.listen` is set, and the
    /// token its TCP scrapes must carry.
    pub metrics: Option<(crate::metrics::listener::Listener, Option<String>)>,
}

/// Prepares everything tarkd needs and binds the socket. With `dev`, the bundled
/// example plugins are installed into the plugins dir first.
pub async fn start(config: Config, dev: bool) -> Result<Started, StartError> {
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.state_dir)
        .map_err(io("creating state dir", &config.state_dir))?;
    cache::set_private(&config.state_dir).map_err(io("securing state dir", &config.state_dir))?;
    std::fs::create_dir_all(&config.plugins_dir)
        .map_err(io("creating plugins dir", &config.plugins_dir))?;
    let bundled = if dev {
        bundled::install_missing(&config.plugins_dir)
            .map_err(io("installing bundled plugins into", &config.plugins_dir))?
    } else {
        Vec::new()
    };
    let worker_path = worker_path(&config).map_err(io("locating", Path::new("tarkd")))?;
    if !worker_path.is_file() {
        return Err(StartError::NoWorker(worker_path));
    }
    let db = config.state_dir.join("storage.redb");
    let storage = Storage::open(&db, config.storage)
        .map_err(|source| StartError::Storage {
            path: db.clone(),
            source,
        })?
        .with_tenant_quotas(&config.tenants);
    let cache_dir = config.state_dir.join("cache");
    let cache = ArtifactCache::open(cache_dir.clone(), &worker_path)
        .map_err(io("opening artifact cache", &cache_dir))?;
    let spawner =
        Spawner::start(&worker_path).map_err(io("opening the worker executable", &worker_path))?;
    let version = semver::Version::parse(&config.tark_version)?;
    crate::plugins::lifecycle::clear_leftovers(&config.plugins_dir);
    let roots = crate::plugins::sources::roots(&config.sources, &config.plugins_dir);
    let seniority = Arc::new(crate::plugins::seniority::Seniority::open(
        &config.state_dir,
    ));
    let registry =
        Registry::scan_roots(&roots, config.sources.conflicts, &version, Some(&seniority))
            .map_err(io("scanning the plugin roots under", &config.plugins_dir))?;
    tracing::info!(plugins = registry.plugins.len(), dir = %config.plugins_dir.display(), "plugins scanned");
    let approvals = Approvals::new(&config.state_dir);
    // The bundled examples ship inside tarkd: installing them approves what
    // they declare, as installing tarkd did.
    for name in bundled {
        if let Some(loaded) = registry.get(name).and_then(|p| p.loaded.as_ref()) {
            approvals.set(name, &loaded.manifest.capabilities)?;
            tracing::info!(plugin = name, "installed bundled example plugin");
        }
    }
    let listener = bind(&config.socket, &config.api)?;
    let authority = Arc::new(Authority {
        storage,
        audit: Arc::new(crate::broker::audit::AuditLog::open(
            &config.state_dir.join("audit.log"),
            config.audit,
        )),
        grants: Arc::default(),
        outbound: Outbound::new(config.http.clone()),
        home: config.fs_home(),
        config: Arc::clone(&config),
    });
    let cgroups = crate::workers::cgroup::Cgroups::setup(&config.sandbox.cgroup);
    match &cgroups {
        Ok(c) => tracing::info!("workers get cgroups under {}", c.root().display()),
        Err(why) => tracing::warn!("workers get no cgroups: {why}"),
    }
    let workers = Workers::new(
        Arc::clone(&config),
        worker_path,
        authority,
        cache,
        spawner,
        cgroups,
    );
    let daemon = Arc::new(Daemon::new(
        config, registry, workers, approvals, version, seniority,
    ));
    daemon.refresh_grants();
    let tcp = match &daemon.config.api.tcp {
        Some(addr) => Some(bind_tls(addr, &daemon.config.api).await?),
        None => None,
    };
    let metrics = match &daemon.config.metrics.listen {
        Some(listen) => {
            let address = crate::metrics::listener::parse(listen).map_err(StartError::Metrics)?;
            let token = match &daemon.config.metrics.bearer_token_file {
                Some(path) => {
                    Some(crate::metrics::listener::read_token(path).map_err(StartError::Metrics)?)
                }
                None => None,
            };
            let bound = crate::metrics::listener::bind(&address)
                .await
                .map_err(|e| StartError::Metrics(format!("{listen}: {e}")))?;
            tracing::info!(%listen, token = token.is_some(), "metrics served");
            Some((bound, token))
        }
        None => None,
    };
    Ok(Started {
        daemon,
        listener,
        tcp,
        metrics,
    })
}

/// The tark-worker executable: `worker_path`, else beside tarkd (a build
/// tree), else `../libexec/tarkd/tark-worker` from tarkd (the package's
/// /usr/libexec/tarkd).
pub fn worker_path(config: &Config) -> std::io::Result<PathBuf> {
    if let Some(p) = &config.worker_path {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let beside = exe.with_file_name("tark-worker");
    let libexec = exe
        .parent()
        .and_then(Path::parent)
        .map(|prefix| prefix.join("libexec/tarkd/tark-worker"));
    Ok(match libexec {
        Some(l) if !beside.is_file() && l.is_file() => l,
        _ => beside,
    })
}

/// Binds the API socket with `api`'s mode and group. A stale socket (no one
/// answering) is replaced; a live one means another tarkd, and is left alone.
fn bind(path: &Path, api: &crate::config::ApiConfig) -> Result<UnixListener, StartError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating socket dir", parent))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(StartError::SocketInUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io("removing stale socket", path))?;
    }
    let listener = UnixListener::bind(path).map_err(io("binding", path))?;
    if let Some(name) = &api.socket_group {
        let group = nix::unistd::Group::from_name(name)
            .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
            .and_then(|g| {
                g.ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("api.socket_group {name:?}: no such group"),
                    )
                })
            })
            .map_err(io("finding the group of", path))?;
        // As the owner and a member of the group (the unit's
        // SupplementaryGroups=), no CAP_CHOWN is needed.
        let not_member = |e: nix::Error| {
            let why = if e == nix::Error::EPERM {
                format!(
                    "{e}: tarkd must be a member of group {name} (SupplementaryGroups= in its unit)"
                )
            } else {
                e.to_string()
            };
            std::io::Error::new(std::io::Error::from(e).kind(), why)
        };
        nix::unistd::chown(path, None, Some(group.gid))
            .map_err(not_member)
            .map_err(io("setting the group of", path))?;
        // The group must reach the socket too: its directory (tarkd's own,
        // e.g. /run/tarkd at 0750) gets the group and group search, nothing more.
        if let Some(dir) = path.parent() {
            let mode = std::fs::metadata(dir)
                .map_err(io("reading", dir))?
                .permissions()
                .mode();
            nix::unistd::chown(dir, None, Some(group.gid))
                .map_err(not_member)
                .map_err(io("setting the group of", dir))?;
            std::fs::set_permissions(
                dir,
                std::fs::Permissions::from_mode((mode & 0o7777) | 0o010),
            )
            .map_err(io("setting mode of", dir))?;
        }
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(api.socket_mode))
        .map_err(io("setting mode of", path))?;
    Ok(listener)
}

/// Binds the TCP listener and reads its TLS files: the listener's identity,
/// and the CA every client certificate must chain to (required: there is no
/// anonymous TCP access).
async fn bind_tls(
    addr: &str,
    api: &crate::config::ApiConfig,
) -> Result<(tokio::net::TcpListener, ServerTlsConfig), StartError> {
    let read = |path: &Option<PathBuf>, what: &'static str| -> Result<Vec<u8>, StartError> {
        let path = path.as_deref().unwrap_or(Path::new(""));
        std::fs::read(path).map_err(io(what, path))
    };
    let cert = read(&api.tls_cert, "reading api.tls_cert")?;
    let key = read(&api.tls_key, "reading api.tls_key")?;
    let ca = read(&api.client_ca, "reading api.client_ca")?;
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(ca))
        .client_auth_optional(false);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Tcp {
            addr: addr.to_owned(),
            source,
        })?;
    Ok((listener, tls))
}

/// The agent API's services, as health checks name them.
const AGENT_SERVICES: [&str; 7] = [
    <pb::plugins_server::PluginsServer<Api> as NamedService>::NAME,
    <pb::tools_server::ToolsServer<Api> as NamedService>::NAME,
    <pb::system_server::SystemServer<Api> as NamedService>::NAME,
    <pb::auth_server::AuthServer<Api> as NamedService>::NAME,
    <pb::providers_server::ProvidersServer<Api> as NamedService>::NAME,
    <pb::hooks_server::HooksServer<Api> as NamedService>::NAME,
    <pb::channels_server::ChannelsServer<Api> as NamedService>::NAME,
];

/// Server reflection of the agent API and the health service.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tark_proto::AGENT_API_DESCRIPTOR)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// The longest a TLS handshake may take, whatever api.first_request_ms says.
const FIRST_REQUEST_CAP: Duration = Duration::from_secs(10);

/// What every agent API connection may hold: streams, header bytes, and
/// the keepalive that finds dead peers.
fn http2(builder: Server, api: &crate::config::ApiConfig) -> Server {
    builder
        .max_concurrent_streams(api.max_streams_per_connection)
        .http2_max_header_list_size(crate::transport::headers::MAX_BLOCK as u32)
        .max_frame_size(crate::transport::headers::MAX_FRAME as u32)
        .http2_keepalive_interval(Some(Duration::from_secs(api.keepalive_interval_s)))
        .http2_keepalive_timeout(Some(Duration::from_secs(api.keepalive_timeout_s)))
        .tcp_keepalive(Some(Duration::from_secs(api.keepalive_interval_s)))
}

/// The socket's connection limits, the total lowered if tarkd's open-files
/// limit could not hold it beside its workers.
fn edge_limits(config: &Config) -> crate::transport::edge::Limits {
    let nofile = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let (max_connections, warning) =
        crate::transport::edge::plan(config.api.max_connections, nofile, config.workers.max_live);
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    crate::transport::edge::Limits {
        max_connections,
        max_connections_per_uid: config.api.max_connections_per_uid,
        first_request: Duration::from_millis(config.api.first_request_ms),
    }
}

/// Serves the agent API until `shutdown` resolves, then stops every worker.
pub async fn serve(
    started: Started,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let Started {
        daemon,
        listener,
        tcp,
        metrics,
    } = started;
    let api = Api(Arc::clone(&daemon));
    // SIGHUP (ExecReload, logrotate): the audit file is opened again, the
    // plugins dir rescanned, the config file checked.
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        let reloading = Arc::clone(&daemon);
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                crate::reload::on_hangup(&reloading).await;
            }
        });
    }
    if let Some((metrics, token)) = metrics {
        let scraped = api.clone();
        tokio::spawn(crate::metrics::listener::serve(
            metrics,
            token,
            Arc::new(move || scraped.metrics_text()),
        ));
    }
    // Rate-limited audit windows are summarised as they end, not only when
    // the next refusal of their kind comes.
    let audit = Arc::clone(&daemon.workers.authority.audit);
    let every = Duration::from_secs(daemon.config.audit.window_s.div_ceil(2).max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            audit.close_windows();
        }
    });
    // Memory a burst of connections held (hyper's buffers, the scanner's)
    // goes back to the system once they are closed, not at the next worker
    // reaping.
    tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            if crate::transport::edge::take_closed() >= 16 {
                // SAFETY: malloc_trim only releases free heap memory.
                unsafe { libc::malloc_trim(0) };
            }
        }
    });
    // Tool lists are described before the first agent asks for them.
    daemon.describe_all();
    let keeping = Arc::clone(&daemon);
    tokio::spawn(async move { keeping.workers.keep_standby().await });
    let resuming = api.clone();
    tokio::spawn(async move { resuming.resume_channels().await });
    if let Some(timeout) = daemon.config.workers.idle_timeout() {
        // Checked a few times per timeout, so a worker lives at most ~1.25 ×.
        let tick = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(15));
        let reaping = Arc::clone(&daemon);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            let mut freed = false;
            loop {
                every.tick().await;
                // What the workers stopped last tick held is freed by now:
                // hand it back to the system.
                if std::mem::take(&mut freed) {
                    // SAFETY: malloc_trim only releases free heap memory.
                    unsafe { libc::malloc_trim(0) };
                }
                freed = reaping.workers.reap_idle() > 0;
            }
        });
    }
    let socket = daemon.config.socket.clone();
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "tarkd serving");
    let gate = crate::access::GateLayer(Arc::new(crate::access::Gate {
        principals: daemon.config.principals.clone(),
        own_uid: nix::unistd::geteuid().as_raw(),
        common_name: daemon.config.api.cert_common_name,
        audit: Arc::clone(&daemon.workers.authority.audit),
        long_lived: Arc::default(),
        max_long_lived: daemon.config.api.max_streams_per_principal,
    }));
    let (health, health_service) = tonic_health::server::health_reporter();
    // Every agent service with the configured message size limit.
    let max = daemon.config.api.max_message_bytes;
    macro_rules! limited {
        ($server:expr) => {
            $server
                .max_decoding_message_size(max)
                .max_encoding_message_size(max)
        };
    }
    let mut routes = Routes::new(limited!(pb::plugins_server::PluginsServer::new(
        api.clone()
    )))
    .add_service(limited!(pb::tools_server::ToolsServer::new(api.clone())))
    .add_service(limited!(pb::system_server::SystemServer::new(api.clone())))
    .add_service(limited!(pb::auth_server::AuthServer::new(api.clone())))
    .add_service(limited!(pb::providers_server::ProvidersServer::new(
        api.clone()
    )))
    .add_service(limited!(pb::hooks_server::HooksServer::new(api.clone())))
    .add_service(limited!(pb::channels_server::ChannelsServer::new(api)))
    .add_service(health_service);
    // Reflection, v1 and v1alpha (the descriptors are compiled in: a failure
    // here is a build's, logged rather than fatal).
    match (reflection().build_v1(), reflection().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => routes = routes.add_service(v1).add_service(v1alpha),
        (Err(e), _) | (_, Err(e)) => tracing::error!("server reflection is off: {e}"),
    }
    // Serving from here; NOT_SERVING (overall and each service) once
    // `shutdown` resolves, while calls in flight drain.
    for name in AGENT_SERVICES {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let (fired, mut draining) = tokio::sync::watch::channel(false);
    crate::systemd::ready(&format!(
        "serving {} plugins on {}",
        daemon.registry().plugins.len(),
        socket.display()
    ));
    if let Some(every) = crate::systemd::watchdog_every() {
        tracing::info!(?every, "systemd watchdog: pinging while tarkd answers");
        tokio::spawn(crate::systemd::watchdog(Arc::clone(&daemon), every));
        #[cfg(feature = "test-hooks")]
        if std::env::var_os("TARKD_TEST_WEDGE_WORKERS").is_some() {
            let wedged = Arc::clone(&daemon);
            std::thread::spawn(move || {
                std::thread::sleep(every * 3);
                tracing::warn!("test hook: wedging the worker manager");
                wedged.workers.wedge();
            });
        }
    }
    let shutdown = async move {
        shutdown.await;
        crate::systemd::stopping();
        let _ = fired.send(true);
        for name in std::iter::once("").chain(AGENT_SERVICES) {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    };
    // Both listeners stop when `shutdown` resolves (or the socket's server ends).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let limits = edge_limits(&daemon.config);
    let tcp_served = match tcp {
        Some((listener, tls)) => {
            let addr = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            tracing::info!(%addr, "tarkd serving TCP with mutual TLS");
            let mut rx = stopped.clone();
            let served = http2(Server::builder(), &daemon.config.api)
                .tls_config(
                    tls.timeout(
                        FIRST_REQUEST_CAP
                            .min(Duration::from_millis(daemon.config.api.first_request_ms)),
                    ),
                )?
                .layer(StandardLayer)
                .layer(gate.clone())
                .add_routes(routes.clone())
                .serve_with_incoming_shutdown(
                    crate::transport::tcp::TcpEdge::new(listener, limits),
                    async move {
                        let _ = rx.wait_for(|s| *s).await;
                    },
                );
            Some(tokio::spawn(served))
        }
        None => None,
    };
    drop(stopped);
    let edge = crate::transport::edge::Edge::new(
        listener,
        daemon.config.principals.clone(),
        nix::unistd::geteuid().as_raw(),
        Arc::clone(&daemon.workers.authority.audit),
        limits,
    );
    let served = http2(Server::builder(), &daemon.config.api)
        .layer(StandardLayer)
        .layer(gate)
        .add_routes(routes)
        .serve_with_incoming_shutdown(edge, shutdown);
    // Calls in flight get a call's time to finish (deadline and kill grace);
    // streams that never end (Watch, SubscribeChannel) do not hold tarkd up.
    let l = &daemon.config.limits;
    let drain = Duration::from_millis(l.deadline_ms + l.kill_grace_ms);
    let served = tokio::select! {
        r = served => r,
        () = async {
            let _ = draining.wait_for(|d| *d).await;
            tokio::time::sleep(drain).await;
        } => {
            tracing::warn!("streams still open {} ms after the stop signal: closing them", drain.as_millis());
            Ok(())
        }
    };
    let _ = stop.send(true);
    if let Some(tcp) = tcp_served
        && let Ok(Err(e)) = tcp.await
    {
        tracing::error!("TCP listener: {e}");
    }
    daemon.workers.stop_all().await;
    daemon.workers.authority.audit.close_all_windows();
    let _ = std::fs::remove_file(&socket);
    tracing::info!("tarkd stopped");
    served
}
