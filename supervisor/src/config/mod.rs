//! tarkd's configuration: a TOML file (`--config`) whose every key has a default,
//! so an empty file (or `--dev`) is a working configuration.

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod api;
mod policy;
mod services;
pub mod tenants;

pub use api::{ApiConfig, MetricsConfig};
pub use policy::{PolicyConfig, Trust};
pub use services::{ChannelsConfig, HooksConfig};

/// Paths of the system service (`packaging/tarkd.service`).
pub const SYSTEM_SOCKET: &str = "/run/tarkd/tarkd.sock";
pub const SYSTEM_STATE_DIR: &str = "/var/lib/tarkd";

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole configuration. See README.md ("Configuration") for each key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The Unix socket tarkd serves the agent API on (mode 0660).
    pub socket: PathBuf,
    /// Storage database, artifact cache and other durable state.
    pub state_dir: PathBuf,
    /// Installed plugins, one folder each (`plugin.toml` + wasm).
    pub plugins_dir: PathBuf,
    /// The tark-worker executable; default: beside the tarkd executable.
    pub worker_path: Option<PathBuf>,
    /// The file this config was read from and its text as read (SIGHUP tells
    /// the operator whether it changed since).
    #[serde(skip)]
    pub source: Option<(PathBuf, String)>,
    /// The tark version plugins' `min_tark_version` is checked against.
    pub tark_version: String,
    pub limits: LimitsConfig,
    pub storage: crate::broker::storage::StorageLimits,
    pub sandbox: SandboxConfig,
    /// Restart backoff and quarantine of crashing workers.
    pub supervision: crate::workers::restart::RestartPolicy,
    /// How many log lines per second each worker's plugin may write.
    pub logs: crate::broker::ratelimit::Rate,
    /// Trust mode and global caps over every plugin's grant.
    pub policy: PolicyConfig,
    /// Outbound HTTP limits.
    pub http: crate::broker::http::HttpLimits,
    /// WebSocket limits.
    pub ws: crate::broker::ws::WsLimits,
    /// File reads.
    pub fs: crate::broker::files::FsConfig,
    /// Hook plugins: their deadline and failure policy.
    pub hooks: HooksConfig,
    /// Channel plugins: how often tarkd polls a started channel.
    pub channels: ChannelsConfig,
    /// Per-plugin secrets files (`<plugin>.env`, mode 0600); default
    /// `state_dir/secrets`.
    pub secrets_dir: Option<PathBuf>,
    /// The API socket's access.
    pub api: ApiConfig,
    /// Where Prometheus scrapes tarkd's metrics.
    pub metrics: MetricsConfig,
    /// The audit file's size cap and rotation.
    pub audit: crate::broker::audit::AuditConfig,
    /// How many workers may live, and how long an idle one lives.
    pub workers: crate::workers::bounds::WorkersConfig,
    /// `[lifecycle]`: what tarkd keeps of plugins' past versions.
    pub lifecycle: LifecycleConfig,
    /// `[sources]`: plugin roots besides `plugins_dir`, and conflicts.
    pub sources: crate::plugins::sources::SourcesConfig,
    /// Who may call tarkd, as what, for which tenants (root and tarkd's own
    /// uid are admins unless named here).
    pub principals: Vec<crate::access::PrincipalConfig>,
    /// Per-tenant plugins, worker cap and storage quotas.
    pub tenants: crate::config::tenants::Tenants,
}

/// Default per-call limits of every plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub deadline_ms: u64,
    pub memory_mib: u64,
    pub table_elements: u32,
    pub instances: u32,
    /// 0 disables fuel metering.
    pub fuel: u64,
    pub max_response_kib: u64,
    /// Extra time tarkd gives a worker past the deadline before killing it.
    pub kill_grace_ms: u64,
    /// Longest a streamed chat may run when the agent set no deadline of its own.
    pub stream_max_s: u64,
    /// A call that has used this much CPU runs on at idle priority
    /// (`SCHED_IDLE`), and so do its worker's next calls until one stays
    /// under it, so that heavy calls give way to light ones (0: never).
    pub idle_after_cpu_ms: u64,
    /// tark core modules: the most bytes tarkd writes into a guest's result
    /// buffer per import (`storage`, `http`, `env`, `fs`, `ws`), when a plugin
    /// allocates more than tark's published plugins do (128 KiB for http, fs
    /// and ws, 64 KiB for storage, 256 B for env).
    pub result_buffers: std::collections::HashMap<String, u32>,
}

/// Sandbox layers tarkd asks workers to apply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Apply the worker lockdown. Only a benchmark turns this off.
    pub lockdown: bool,
    /// Put each worker in its own user (when not root), network, mount, IPC and
    /// UTS namespaces.
    pub namespaces: bool,
    /// When tarkd runs as root, each tenant × plugin's worker runs as its own
    /// uid and gid, from `worker_id_base` up (`worker_id_count` of them).
    pub worker_id_base: u32,
    pub worker_id_count: u32,
    /// Layers that must be applied; a worker missing one is refused, with the
    /// kernel's reason, instead of running degraded.
    pub require: Vec<String>,
    /// `enforce`: a forbidden system call ends the worker (SIGSYS). `log`: it is
    /// allowed and logged by the kernel, to find what the policy misses during
    /// development. Never `log` in production.
    pub seccomp: SeccompMode,
    /// Each worker's own cgroup v2 (`[sandbox.cgroup]`).
    pub cgroup: crate::workers::cgroup::plan::CgroupConfig,
    /// `[sandbox.landlock]`.
    pub landlock: LandlockConfig,
}

/// `[sandbox.landlock]`: how much of landlock a kernel must give.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LandlockConfig {
    /// The lowest landlock ABI a worker's landlock layer counts as applied
    /// with, and a command tool may run under (0: run without landlock).
    /// Older kernels enforce the rights they know and name the rest; 1 (Linux
    /// 5.13) is the default, 6 (Linux 6.12) asks for every right tarkd uses.
    pub min_abi: u32,
}

impl Default for LandlockConfig {
    fn default() -> Self {
        Self { min_abi: 1 }
    }
}

/// `[lifecycle]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Versions of each plugin kept for `tarkctl plugin rollback` (the
    /// installed one not counted); 0 keeps none.
    pub keep_versions: usize,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self { keep_versions: 3 }
    }
}

/// What seccomp does with a forbidden system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompMode {
    #[default]
    Enforce,
    Log,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(SYSTEM_SOCKET),
            state_dir: PathBuf::from(SYSTEM_STATE_DIR),
            plugins_dir: PathBuf::from(SYSTEM_STATE_DIR).join("plugins"),
            worker_path: None,
            source: None,
            tark_version: env!("CARGO_PKG_VERSION").to_owned(),
            limits: LimitsConfig::default(),
            storage: crate::broker::storage::StorageLimits::default(),
            sandbox: SandboxConfig::default(),
            supervision: crate::workers::restart::RestartPolicy::default(),
            logs: crate::broker::ratelimit::Rate::default(),
            policy: PolicyConfig::default(),
            http: crate::broker::http::HttpLimits::default(),
            ws: crate::broker::ws::WsLimits::default(),
            fs: crate::broker::files::FsConfig::default(),
            hooks: HooksConfig::default(),
            channels: ChannelsConfig::default(),
            secrets_dir: None,
            api: ApiConfig::default(),
            metrics: MetricsConfig::default(),
            audit: crate::broker::audit::AuditConfig::default(),
            lifecycle: LifecycleConfig::default(),
            sources: Default::default(),
            workers: crate::workers::bounds::WorkersConfig::default(),
            principals: Vec::new(),
            tenants: crate::config::tenants::Tenants::new(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 5_000,
            memory_mib: 64,
            table_elements: 20_000,
            instances: 10,
            fuel: 0,
            max_response_kib: 1024,
            kill_grace_ms: 2_000,
            stream_max_s: 600,
            idle_after_cpu_ms: 20,
            result_buffers: std::collections::HashMap::new(),
        }
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            lockdown: true,
            namespaces: true,
            worker_id_base: 600_000,
            worker_id_count: 65_536,
            require: Vec::new(),
            seccomp: SeccompMode::Enforce,
            cgroup: crate::workers::cgroup::plan::CgroupConfig::default(),
            landlock: LandlockConfig::default(),
        }
    }
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        config.source = Some((path.to_owned(), text));
        Ok(config)
    }

    /// Parses config text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(listen) = &self.metrics.listen {
            let address = crate::metrics::listener::parse(listen)?;
            let m = &self.metrics;
            if matches!(address, crate::metrics::listener::Address::Tcp(_))
                && m.bearer_token_file.is_none()
                && !m.tcp_unauthenticated
            {
                return Err(format!(
                    "metrics.listen {listen:?}: a TCP endpoint is readable by every local user; set metrics.bearer_token_file (a token Prometheus sends with bearer_token_file), or metrics.tcp_unauthenticated = true to accept that, or listen on unix:/path"
                ));
            }
        }
        if self.audit.max_file_mib == 0 || self.audit.per_window == 0 || self.audit.window_s == 0 {
            return Err("audit.max_file_mib, per_window and window_s must be positive".into());
        }
        let a = &self.api;
        if a.max_message_bytes == 0
            || a.max_connections == 0
            || a.max_connections_per_uid == 0
            || a.first_request_ms == 0
            || a.max_streams_per_connection == 0
            || a.max_streams_per_principal == 0
            || a.keepalive_interval_s == 0
            || a.keepalive_timeout_s == 0
        {
            return Err("api.max_message_bytes, max_connections, max_connections_per_uid, first_request_ms, max_streams_per_connection, max_streams_per_principal, keepalive_interval_s and keepalive_timeout_s must be positive".into());
        }
        let l = &self.limits;
        if l.deadline_ms == 0 || l.memory_mib == 0 || l.max_response_kib == 0 {
            return Err(
                "limits.deadline_ms, memory_mib and max_response_kib must be positive".into(),
            );
        }
        let cgroup = &self.sandbox.cgroup;
        cgroup.place()?;
        if cgroup.memory_mib < l.memory_mib {
            return Err(format!(
                "sandbox.cgroup.memory_mib ({}) is below limits.memory_mib ({}): the kernel would kill a worker before wasmtime refused the memory",
                cgroup.memory_mib, l.memory_mib
            ));
        }
        let target = tark_proto::landlock::TARGET;
        if self.sandbox.landlock.min_abi > target {
            return Err(format!(
                "sandbox.landlock.min_abi = {}: tarkd uses landlock's rights up to ABI {target}",
                self.sandbox.landlock.min_abi
            ));
        }
        if cgroup.pids < 2 {
            return Err(
                "sandbox.cgroup.pids must be at least 2 (the worker and its PID-namespace reaper)"
                    .into(),
            );
        }
        let known = [
            "rlimits",
            "no_new_privs",
            "not_dumpable",
            "landlock",
            "seccomp",
            "namespaces",
            "worker_uid",
            "cgroup",
        ];
        if let Some(bad) = self
            .sandbox
            .require
            .iter()
            .find(|l| !known.contains(&l.as_str()))
        {
            return Err(format!(
                "sandbox.require: unknown layer {bad:?} (known: {})",
                known.join(", ")
            ));
        }
        self.check_worker_ids(&crate::workers::ids::Reserved::host())?;
        self.policy.validate()?;
        let h = &self.http;
        if h.max_request_kib == 0 || h.max_response_kib == 0 || h.timeout_ms == 0 {
            return Err(
                "http.max_request_kib, max_response_kib and timeout_ms must be positive".into(),
            );
        }
        if self.fs.home.as_ref().is_some_and(|h| !h.is_absolute()) {
            return Err("fs.home must be an absolute path".into());
        }
        semver::Version::parse(&self.tark_version)
            .map_err(|e| format!("tark_version {:?} is not semver: {e}", self.tark_version))?;
        let w = &self.workers;
        if w.max_live == 0 || w.max_live_per_tenant == 0 || w.describe_deadline_ms == 0 {
            return Err(
                "workers.max_live, max_live_per_tenant and describe_deadline_ms must be positive"
                    .into(),
            );
        }
        if let Some(addr) = &self.api.tcp {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("api.tcp {addr:?}: {e}"))?;
            let a = &self.api;
            if a.tls_cert.is_none() || a.tls_key.is_none() || a.client_ca.is_none() {
                return Err(
                    "api.tcp needs api.tls_cert, tls_key and client_ca: the TCP listener is mutual TLS only"
                        .into(),
                );
            }
        }
        if self.api.socket_mode & !0o777 != 0 {
            return Err(format!(
                "api.socket_mode {:#o} is not a permission mode",
                self.api.socket_mode
            ));
        }
        let problems = crate::access::principals::validate(&self.principals);
        if !problems.is_empty() {
            return Err(format!("principals: {}", problems.join("; ")));
        }
        let problems = crate::config::tenants::validate(&self.tenants);
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(())
    }

    /// The workers' uid range against this host's reserved uids, the
    /// principals' uids and gids and tarkd's own uid.
    fn check_worker_ids(&self, reserved: &crate::workers::ids::Reserved) -> Result<(), String> {
        let mut taken = vec![(
            nix::unistd::geteuid().as_raw(),
            "tarkd's own uid".to_owned(),
        )];
        for p in &self.principals {
            let who = |what: &str| format!("{what} of principal {}", p.name);
            taken.extend(p.uids.iter().map(|&u| (u, who("a uid"))));
            taken.extend(p.gids.iter().map(|&g| (g, who("a gid"))));
        }
        let s = &self.sandbox;
        crate::workers::ids::check_range(
            s.worker_id_base,
            s.worker_id_count,
            self.workers.max_live,
            reserved,
            &taken,
        )
    }

    /// Where secrets files are.
    pub fn secrets_dir(&self) -> PathBuf {
        self.secrets_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("secrets"))
    }

    /// What `~` means for fs grants: `fs.home`, else tarkd's `$HOME`.
    pub fn fs_home(&self) -> Option<PathBuf> {
        self.fs
            .home
            .clone()
            .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
            .filter(|h| h.is_absolute())
    }

    /// The zero-configuration mode: user-level XDG paths, no root needed.
    pub fn dev() -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        // The XDG spec: a variable that is unset, empty or relative is ignored.
        let var = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let xdg = |name: &str, fallback: &str| var(name).unwrap_or_else(|| home.join(fallback));
        let state_dir = xdg("XDG_STATE_HOME", ".local/state").join("tarkd");
        let plugins_dir = xdg("XDG_DATA_HOME", ".local/share")
            .join("tarkd")
            .join("plugins");
        let socket = match var("XDG_RUNTIME_DIR") {
            Some(dir) => dir.join("tarkd.sock"),
            None => state_dir.join("tarkd.sock"),
        };
        Self {
            socket,
            state_dir,
            plugins_dir,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        let c = Config::parse("", Path::new("t.toml")).ok();
        assert!(c.is_some_and(|c| c.limits.deadline_ms == 5_000 && c.socket == Path::new(SYSTEM_SOCKET)));
    }

    #[test]
    fn bad_configs_are_refused_with_the_path() {
        let cases = [
            ("unknown_key = 1", "unknown field"),
            ("[limits]\ndeadline_ms = 0", "must be positive"),
            ("tark_version = \"1.0\"", "not semver"),
            ("socket = 3", "invalid type"),
            ("[policy]\ntrust = \"maybe\"", "unknown variant"),
            ("[policy]\nhttp = [\"a.com/x\"]", "policy.http"),
            ("[http]\ntimeout_ms = 0", "must be positive"),
            ("[fs]\nhome = \"rel\"", "absolute"),
            (
                "[sandbox]\nworker_id_base = 4294967295",
                "sandbox.worker_id_base/worker_id_count",
            ),
            ("[sandbox]\nworker_id_base = 0", "would run as root"),
            (
                "[sandbox]\nworker_id_count = 2",
                "below workers.max_live (1024)",
            ),
            (
                "[sandbox]\nworker_id_base = 700000\n[[principals]]\nname = \"a\"\nuids = [700001]\ntenants = [\"t\"]\nrole = \"agent\"",
                "uid 700001 (a uid of principal a)",
            ),
        ];
        for (text, want) in cases {
            let err = Config::parse(text, Path::new("/etc/tarkd.toml"))
                .err()
                .map(|e| e.to_string());
            let err = err.unwrap_or_default();
            assert!(
                err.contains(want) && err.contains("/etc/tarkd.toml"),
                "{text:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn packaged_config_is_the_default() {
        let text = include_str!("../../../packaging/tarkd.toml");
        let packaged = Config::parse(text, Path::new("packaging/tarkd.toml"));
        assert_eq!(
            packaged.map(|c| format!("{c:?}")).ok(),
            Some(format!("{:?}", Config::default()))
        );
    }

    #[test]
    fn partial_sections_keep_other_defaults() {
        let c = Config::parse("[limits]\nmemory_mib = 8", Path::new("t")).ok();
        assert!(c.is_some_and(|c| c.limits.memory_mib == 8 && c.limits.deadline_ms == 5_000));
    }
}
