//! Command tools: tark's config-only tool plugins (`[[tools]]` in
//! `plugin.toml`), whose tools run a program instead of calling a module.
//!
//! A call runs only when the plugin's `shell` capability is declared,
//! approved and allowed by tarkd's and the tenant's policies
//! ([`Grant::shell`]), whatever the trust mode; each run is audited. The argv
//! comes from the manifest's template ([`template`]), never from a shell
//! string. The program runs in tark-jail (tark-worker's `jail` module): its
//! own uid and namespaces like a worker, and tarkd hands it the command only
//! once it has seen the process in a network namespace of its own; inside,
//! landlock lets it read the system's programs and the declared (and
//! approved) `fs_read` paths, and nothing else. The call's deadline kills it
//! (and, through its PID namespace, everything it started); its output is
//! capped at `limits.max_response_kib`.

pub mod process;
pub mod template;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tark_proto::worker::v1 as wpb;
use tokio::io::{AsyncRead, AsyncReadExt};
use tonic::Code;

use crate::broker::Authority;
use crate::broker::files::{self, Roots};
use crate::plugins::manifest::CommandTool;
use crate::plugins::registry::Plugin;
use crate::reasons::Reason;
use crate::workers::CallError;
use crate::workers::spawn::{Confinement, Spawner};

/// Address space a command may map (RLIMIT_AS).
const ADDRESS_SPACE_BYTES: u64 = 2 << 30;
/// How much of a failed command's stderr its error shows.
const MAX_STDERR_BYTES: usize = 4 << 10;

/// What a command run needs of tarkd: the spawner, the confinement of the
/// tenant × plugin, the grants and the audit log, and the call's limits.
pub struct Jail {
    pub spawner: Spawner,
    pub confinement: Confinement,
    pub authority: Arc<Authority>,
    pub deadline: Duration,
    pub max_output: usize,
    /// The run's own cgroup, when tarkd makes workers' (removed, and anything
    /// left in it killed, when the run is dropped).
    pub cgroup: Option<crate::workers::cgroup::Leaf>,
    /// The tenant × plugin's uid, held until the run is dropped (after its
    /// process has exited).
    pub uid_lease: Option<crate::workers::ids::Lease>,
    /// `sandbox.landlock.min_abi`: below it, the jail refuses to run.
    pub landlock_min_abi: u32,
}

impl Jail {
    /// The gate every command run passes: the plugin still installed, and
    /// its `shell` capability declared, approved and allowed for `tenant`. A
    /// refusal is audited under `target` and names the run (`what`).
    fn shell_gate(
        &self,
        tenant: &str,
        plugin: &Plugin,
        target: &str,
        what: &str,
    ) -> Result<Arc<crate::broker::grants::Grant>, CallError> {
        let id = &plugin.id;
        let grant = self.authority.grant_for(id, tenant).ok_or_else(|| {
            CallError::new(
                Code::NotFound,
                format!("plugin {id} is no longer installed"),
            )
            .because(Reason::PluginNotFound, id)
        })?;
        if let Err(denial) = grant.shell() {
            self.audit(tenant, id, "deny", target, &denial.reason);
            return Err(CallError::new(
                Code::PermissionDenied,
                format!("plugin {id}: {what}: {}", denial.reason),
            )
            .because(Reason::CapabilityDenied, id));
        }
        Ok(grant)
    }

    /// One audit record of a command run (capability `shell`).
    fn audit(&self, tenant: &str, plugin: &str, decision: &str, target: &str, reason: &str) {
        self.authority
            .audit
            .record(tenant, plugin, "shell", target, decision, reason);
    }
}

/// Runs one command tool for `tenant`. Bad arguments and a failing command
/// are the tool's result (as a module's tool would answer); a refusal, the
/// deadline or a jail that could not start are errors.
pub async fn run(
    jail: Jail,
    tenant: &str,
    plugin: &Plugin,
    tool: &CommandTool,
    arguments_json: &str,
) -> Result<wpb::ToolResult, CallError> {
    let id = &plugin.id;
    let what = format!("tool {} runs a command", tool.name);
    let grant = jail.shell_gate(tenant, plugin, &tool.name, &what)?;
    let failed = |message: String| wpb::ToolResult {
        result: Some(wpb::tool_result::Result::Error(message)),
    };
    let args = match tool.args.render(arguments_json) {
        Ok(a) => a,
        Err(e) => return Ok(failed(format!("{}: {e}", tool.name))),
    };
    let roots = Roots {
        home: jail.authority.home.clone(),
        plugin_dir: plugin.dir.clone(),
        own_pid: Arc::default(),
    };
    let read = readable(&grant, &plugin.declared().fs_read, &roots);
    let cwd = match &tool.cwd {
        None => PathBuf::from("/"),
        Some(c) => match files::expand(c, &roots).filter(|p| files::under(p, &read)) {
            Some(p) => p,
            None => {
                return Err(CallError::new(
                    Code::PermissionDenied,
                    format!("plugin {id}: tool {}: its cwd {c:?} is not readable: fs_read not approved or forbidden by policy", tool.name),
                )
                .because(Reason::CapabilityDenied, id));
            }
        },
    };
    // Declared sockets the grant reaches (as `read` is made).
    let sockets: Vec<PathBuf> = tool
        .sockets
        .iter()
        .filter_map(|s| files::expand(s, &roots).filter(|p| files::under(p, &read)))
        .collect();
    let line = std::iter::once(tool.command.as_str())
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    jail.audit(tenant, id, "allow", &format!("{}: {line}", tool.name), "");
    let spec = wpb::CommandSpec {
        program: tool.command.clone(),
        args,
        cwd: cwd.to_string_lossy().into_owned(),
        read: read
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        cpu_seconds: jail.deadline.as_secs() + 1,
        address_space_bytes: ADDRESS_SPACE_BYTES,
        sockets: sockets
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        landlock_min_abi: jail.landlock_min_abi,
        stdin: Vec::new(),
        exec: Vec::new(),
    };
    execute(&jail, &format!("{tenant}/{id}/{}", tool.name), spec)
        .await
        .map(|r| r.into_result(&tool.name, jail.max_output))
        .map_err(|e| e.at(id, &format!("tool {}", tool.name), jail.deadline))
}

/// The declared `fs_read` entries every source of the grant allows (none
/// softened by the trust mode), expanded.
fn readable(
    grant: &crate::broker::grants::Grant,
    declared: &[String],
    roots: &Roots,
) -> Vec<PathBuf> {
    declared
        .iter()
        .filter_map(|entry| {
            let sources = grant.fs_sources(entry);
            match files::permitted(entry, &sources, roots) {
                Ok(p) if p.unlisted.is_none() => Some(p.lexical),
                _ => None,
            }
        })
        .collect()
}

/// How a run ended.
pub(crate) struct Finished {
    pub(crate) status: std::process::ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) over: bool,
    pub(crate) stderr: Vec<u8>,
}

impl Finished {
    fn into_result(self, tool: &str, cap: usize) -> wpb::ToolResult {
        use std::os::unix::process::ExitStatusExt;
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_owned();
        let result = if self.over {
            wpb::tool_result::Result::Error(format!(
                "{tool}: output over the limit of {cap} bytes (limits.max_response_kib); the command was stopped"
            ))
        } else if self.status.success() {
            wpb::tool_result::Result::Success(String::from_utf8_lossy(&self.stdout).into_owned())
        } else {
            let how = match (self.status.code(), self.status.signal()) {
                (Some(c), _) => format!("exited with status {c}"),
                (_, Some(s)) => format!("was killed by signal {s}"),
                _ => "failed".to_owned(),
            };
            let stderr = text(&self.stderr);
            wpb::tool_result::Result::Error(if stderr.is_empty() {
                format!("{tool}: the command {how}")
            } else {
                format!("{tool}: the command {how}: {stderr}")
            })
        };
        wpb::ToolResult {
            result: Some(result),
        }
    }
}

/// Why a run produced no result.
pub(crate) enum Failure {
    Deadline,
    Jail(String),
}

impl Failure {
    /// The error for `what` ("tool NAME", "hook NAME") of `plugin`.
    pub(crate) fn at(self, plugin: &str, what: &str, deadline: Duration) -> CallError {
        match self {
            Failure::Deadline => CallError::new(
                Code::DeadlineExceeded,
                format!(
                    "plugin {plugin}: {what}: deadline of {} ms exceeded; the command was killed",
                    deadline.as_millis()
                ),
            )
            .because(Reason::DeadlineExceeded, plugin),
            Failure::Jail(why) => CallError::new(
                Code::FailedPrecondition,
                format!("plugin {plugin}: {what} could not be run: {why}"),
            )
            .because(Reason::SandboxIncomplete, plugin),
        }
    }
}

pub(crate) async fn execute(
    jail: &Jail,
    label: &str,
    spec: wpb::CommandSpec,
) -> Result<Finished, Failure> {
    let procs = jail
        .cgroup
        .as_ref()
        .map(crate::workers::cgroup::Leaf::procs)
        .transpose()
        .map_err(|e| Failure::Jail(format!("joining its cgroup: {e}")))?;
    let jailed = jail
        .spawner
        .jail(label.to_owned(), jail.confinement, procs)
        .await
        .map_err(|e| Failure::Jail(format!("starting tark-jail: {e}")))?;
    let mut child = jailed.child;
    // The command is handed over only once the jail is seen cut off from
    // the network; until then it holds nothing to run. Where tarkd may not
    // read another uid's /proc (its unit's ProtectProc=invisible, no
    // CAP_SYS_PTRACE), the spawn itself is the proof: a jail's unshare of its
    // namespaces failing fails the spawn.
    if crate::workers::spawn::own_namespace(jailed.pid, "net") == Some(false) {
        let _ = child.start_kill();
        return Err(Failure::Jail(
            "tark-jail did not get a network namespace of its own (is sandbox.namespaces on, and does this host allow them?)".into(),
        ));
    }
    let bytes = spec.encode_to_vec();
    let mut pipe = std::fs::File::from(jailed.spec);
    let written = tokio::task::spawn_blocking(move || pipe.write_all(&bytes)).await;
    if !matches!(written, Ok(Ok(()))) {
        let _ = child.start_kill();
        let stderr = match child.stderr.take() {
            Some(e) => read_capped(e, MAX_STDERR_BYTES, true).await.0,
            None => Vec::new(),
        };
        return Err(Failure::Jail(format!(
            "handing over the command: {}",
            String::from_utf8_lossy(&stderr).trim()
        )));
    }
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.start_kill();
        return Err(Failure::Jail("tark-jail's output was not piped".into()));
    };
    let pid = nix::unistd::Pid::from_raw(jailed.pid as i32);
    let run = async {
        let out = async {
            let (stdout, over) = read_capped(stdout, jail.max_output, false).await;
            if over {
                // Stopped rather than drained. The pid is still tark-jail's:
                // it is not reaped before the wait below.
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            (stdout, over)
        };
        let ((stdout, over), (stderr, _)) =
            tokio::join!(out, read_capped(stderr, MAX_STDERR_BYTES, true));
        let status = child.wait().await;
        (status, stdout, over, stderr)
    };
    let (status, stdout, over, stderr) = match tokio::time::timeout(jail.deadline, run).await {
        Ok(done) => done,
        // Dropping the child kills tark-jail's reaper; its death signal then
        // ends the PID namespace and everything in it.
        Err(_) => return Err(Failure::Deadline),
    };
    let status = status.map_err(|e| Failure::Jail(format!("waiting for tark-jail: {e}")))?;
    if status.code() == Some(126) && stderr.starts_with(b"tark-jail: ") {
        return Err(Failure::Jail(
            String::from_utf8_lossy(&stderr["tark-jail: ".len()..])
                .trim()
                .to_owned(),
        ));
    }
    Ok(Finished {
        status,
        stdout,
        over,
        stderr,
    })
}

/// Reads the stream to its end (every process holding it closed it), keeping
/// up to `cap` bytes; `true` if there was more. With `drain`, the rest is
/// read and dropped; without, reading stops there.
async fn read_capped(mut from: impl AsyncRead + Unpin, cap: usize, drain: bool) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut over = false;
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return (out, over),
            Ok(n) if out.len() + n > cap => {
                out.extend_from_slice(&buf[..cap - out.len()]);
                over = true;
                if !drain {
                    return (out, over);
                }
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}
