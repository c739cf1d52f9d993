//! The agent API as tests call it: requests, tool outputs, failures, tarkd's
//! status read back, and a victim workload that must keep succeeding.

use anyhow::Context;
use tark_proto::plugin::v1 as pb;
use tonic::transport::Channel;

use crate::Tarkd;

/// A request acting for `tenant`.
pub fn for_tenant<T>(msg: T, tenant: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Ok(v) = tenant.parse() {
        req.metadata_mut().insert("tark-tenant", v);
    }
    req
}

/// Runs the probe plugin's one tool with `args` for the default tenant and
/// returns its JSON report (or the failure, as a JSON string).
pub async fn probe(t: &Tarkd, args: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let mut tools = t.tools().await?;
    Ok(match call(&mut tools, "probe", &args.to_string()).await {
        Ok(o) => serde_json::from_str(&o)?,
        Err(e) => serde_json::Value::String(e),
    })
}

/// Invokes a tool: its output, or a description of what happened instead.
pub async fn call(
    tools: &mut pb::tools_client::ToolsClient<Channel>,
    tool: &str,
    args: &str,
) -> Result<String, String> {
    output(tools.invoke_tool(invoke(tool, args)).await)
}

/// An InvokeTool request.
pub fn invoke(tool: &str, args: &str) -> pb::InvokeToolRequest {
    pb::InvokeToolRequest {
        tool: tool.into(),
        arguments_json: args.into(),
    }
}

/// The output of a successful tool call, or a description of what happened.
pub fn output(
    r: Result<tonic::Response<pb::InvokeToolResponse>, tonic::Status>,
) -> Result<String, String> {
    match r {
        Ok(r) => match r.into_inner().result {
            Some(pb::invoke_tool_response::Result::Output(o)) => Ok(o),
            other => Err(format!("tool did not succeed: {other:?}")),
        },
        Err(s) => Err(format!("{:?}: {}", s.code(), s.message())),
    }
}

impl Tarkd {
    /// One plugin's inventory entry (manifest, state, workers).
    pub async fn plugin_info(&self, id: &str) -> anyhow::Result<pb::PluginInfo> {
        Ok(self
            .plugins()
            .await?
            .get_plugin(pb::PluginRef { id: id.into() })
            .await?
            .into_inner())
    }

    /// Every provider plugin's info, and the errors of those that could not answer.
    pub async fn list_providers(&self) -> anyhow::Result<pb::ListProvidersResponse> {
        Ok(self
            .providers()
            .await?
            .list_providers(pb::ListProvidersRequest {})
            .await?
            .into_inner())
    }

    /// tarkd's status.
    pub async fn status(&self) -> anyhow::Result<pb::StatusResponse> {
        Ok(self
            .system()
            .await?
            .status(pb::StatusRequest {})
            .await?
            .into_inner())
    }

    /// The running worker of a plugin for a tenant, from tarkd's status.
    pub async fn worker_pid(&self, plugin: &str, tenant: &str) -> anyhow::Result<Option<u32>> {
        let s = self.status().await?;
        let mut workers = s
            .plugins
            .iter()
            .filter(|p| p.id == plugin)
            .flat_map(|p| &p.workers);
        Ok(workers
            .find(|w| w.tenant == tenant && w.running)
            .map(|w| w.pid))
    }

    /// The running worker of a plugin for a tenant; an error if there is none.
    pub async fn running_worker(&self, plugin: &str, tenant: &str) -> anyhow::Result<u32> {
        self.worker_pid(plugin, tenant)
            .await?
            .with_context(|| format!("no running worker of {plugin} for tenant {tenant}"))
    }

    /// SIGKILLs the running worker of a plugin for a tenant, as a crash would.
    pub async fn kill_worker(&self, plugin: &str, tenant: &str) -> anyhow::Result<()> {
        let pid = self.running_worker(plugin, tenant).await?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        Ok(())
    }

    /// Every running worker, from tarkd's status.
    pub async fn worker_pids(&self) -> anyhow::Result<Vec<u32>> {
        let s = self.status().await?;
        Ok(s.plugins
            .iter()
            .flat_map(|p| &p.workers)
            .filter(|w| w.running)
            .map(|w| w.pid)
            .collect())
    }
}

/// The status a call failed with; a call that succeeded gives an OK status that
/// says so, which no assertion on a failure code will accept.
pub trait Failed {
    fn failed(self) -> tonic::Status;
}

impl<T> Failed for Result<tonic::Response<T>, tonic::Status> {
    fn failed(self) -> tonic::Status {
        self.err()
            .unwrap_or_else(|| tonic::Status::ok("the call succeeded"))
    }
}

/// Stops a background workload however the test ends.
pub struct StopOnDrop(pub std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A victim workload: reads the note `v` (which must say `x`) over and over
/// until stopped, and fails at the first call that does not succeed. Stopped by
/// dropping the returned guard too.
pub struct Victim {
    task: tokio::task::JoinHandle<Result<u32, String>>,
    _stop: StopOnDrop,
}

impl Victim {
    pub fn start(tools: &pb::tools_client::ToolsClient<Channel>) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, mut tools) = (std::sync::Arc::clone(&stop), tools.clone());
        let task = tokio::spawn(async move {
            let mut ok = 0u32;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && ok < 100_000 {
                match output(
                    tools
                        .invoke_tool(invoke("notes_get", r#"{"title":"v"}"#))
                        .await,
                ) {
                    Ok(o) if o == "x" => ok += 1,
                    other => return Err(format!("victim call {ok} failed: {other:?}")),
                }
            }
            Ok(ok)
        });
        Self {
            task,
            _stop: StopOnDrop(stop),
        }
    }

    /// Stops the workload; the number of calls it made, all successful.
    pub async fn finish(self) -> anyhow::Result<u32> {
        self._stop
            .0
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let ok = self.task.await?.map_err(anyhow::Error::msg)?;
        anyhow::ensure!(ok > 0, "the victim made no calls");
        Ok(ok)
    }
}
